"""The wall monitor of the ``gated`` recording: ``run.completed`` listed once, no retries.

The recording's live stream re-emits ``build``'s and ``deploy``'s transitions and sends
``run.completed`` three times; the page must show one run with no retry.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from playwright.sync_api import expect

from tests.browser import wait_until
from tests.gateway.server import ADMIN_TOKEN
from tests.replay_support import runs_of
from tests.replay_thread import ReplayThread

if TYPE_CHECKING:
    from collections.abc import Callable

    from playwright.sync_api import Page

    from tests.browser import DashboardServer


def test_the_wall_lists_each_transition_of_the_gated_run_once(
    serve_dashboard: Callable[..., DashboardServer], page: Page
) -> None:
    run = runs_of("gated-run.jsonl")[0]
    replay = ReplayThread([run], token=ADMIN_TOKEN, speed=4.0, loop=False)
    try:
        server = serve_dashboard(replay.gateway.url)
        page.goto(server.url(f"runId={run.run_id}&view=monitor"), wait_until="domcontentloaded")
        wait_until(lambda: replay.call(lambda: replay.gateway.run_done(run.run_id)), 60, "the gated run to end", page)
        recent = page.locator("ul.sd-recent")
        expect(recent.locator('li[data-event="run.completed"]')).to_have_count(1, timeout=30_000)
        expect(recent.locator('li[data-event="approval.decided"]')).to_have_count(1, timeout=30_000)
        expect(recent.locator('li[data-event="node.started"]')).to_have_count(2)
        expect(recent.locator('li[data-event="approval.requested"]')).to_have_count(1)
        expect(page.locator('[data-testid="task-summary"]')).to_have_attribute("data-retries", "0")
    finally:
        replay.stop()

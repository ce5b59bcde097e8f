"""Each task's last heartbeat on its tree row, in a real browser, from the real Gateway.

The suite's ``agents`` workflow on a slow Gateway (``PACE``): its scripted agents print and
report actions for seconds, and Smithers' engine sends ``task.heartbeat`` for them (its
``queueHeartbeat`` on every output chunk, persisted and emitted at most every 500 ms). The
row of a running task shows a marker with the heartbeat's age and its tooltip says "heartbeat
… ago"; the age keeps counting in the browser; the page gets at most one ``beats`` message a
second however many heartbeats the run sends; the node details of the selected running task
say its last heartbeat too.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import pytest
from playwright.sync_api import expect

from tests.browser import DashboardServer, tree_messages, wait_until
from tests.gateway.server import ADMIN_TOKEN, GatewayServer

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from playwright.sync_api import Page

    from tests.browser import BrowserLog

#: The scripted agents sleep 60 ms x PACE between steps: each runs for several seconds.
PACE = 15.0
_AGE = re.compile(r"heartbeat ([\d.]+) s ago")


@pytest.fixture(scope="module")
def slow_gateway(gateway_install: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayServer]:
    server = GatewayServer(gateway_install, tmp_path_factory.mktemp("gateway-beats"), pace=PACE)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def beats_dashboard(slow_gateway: GatewayServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DashboardServer]:
    with DashboardServer(slow_gateway.url, ADMIN_TOKEN, tmp_path_factory.mktemp("panel")) as server:
        yield server


def heartbeat_count(gateway: GatewayServer, run_id: str) -> int:
    """``TaskHeartbeat`` rows in the run's durable history (what the Gateway sent live)."""
    response = gateway.client.get("/v1/api/events", params={"runId": run_id, "limit": 5000},
                                  headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    response.raise_for_status()
    rows = response.json()["data"]
    return sum(1 for row in rows if isinstance(row, dict) and row.get("event") == "TaskHeartbeat")


def age_of(title: str | None) -> float | None:
    match = _AGE.search(title or "")
    return float(match.group(1)) if match else None


def test_running_task_rows_show_a_live_heartbeat_age(
    slow_gateway: GatewayServer, beats_dashboard: DashboardServer, page: Page, browser_log: BrowserLog
) -> None:
    run_id = slow_gateway.launch_run("agents")
    page.goto(beats_dashboard.url(f"runId={run_id}"))
    row = page.locator('.st-row[data-type="task"]', has_text="research").first
    marker = row.locator(".st-beat")
    wait_until(lambda: marker.count() and (marker.text_content() or "").startswith("♥ "), 90,
               "a heartbeat marker on the running task", page)
    assert row.get_attribute("data-state") == "in-progress"
    assert slow_gateway.get_run(run_id)["status"] == "running"
    assert age_of(row.get_attribute("title")) is not None, row.get_attribute("title")
    assert row.get_attribute("data-heartbeat-ms")

    # The selected running task's node details say its last heartbeat as well.
    row.locator(".st-label").click()
    expect(page.locator('[data-testid="task-heartbeat"]')).to_contain_text("last heartbeat", timeout=20_000)

    # Once the task has finished it beats no more: the marker goes, and the tooltip's age
    # keeps growing in the browser from the same heartbeat.
    wait_until(lambda: row.get_attribute("data-state") == "finished", 120, "the task finishes", page)
    expect(marker).to_have_text("", timeout=10_000)
    # (The engine may flush one last heartbeat just after the task ends: count from the newest.)
    base: dict[str, object] = {}

    def counting_on() -> bool:
        at, age = row.get_attribute("data-heartbeat-ms"), age_of(row.get_attribute("title"))
        if age is None or base.get("at") != at:
            base.update(at=at, age=age)
            return False
        return age >= float(base["age"]) + 2  # type: ignore[arg-type]

    wait_until(counting_on, 30, "the age counting on from the same heartbeat", page)

    slow_gateway.wait_for_run(run_id, timeout=180)
    beats = [m for m in tree_messages(browser_log) if m["type"] == "beats"]
    sent = heartbeat_count(slow_gateway, run_id)
    assert beats, "the page got beats messages"
    span = beats[-1]["t"] - beats[0]["t"]
    assert len(beats) <= span + 3, f"{len(beats)} beats messages in {span:.1f} s: not throttled to one a second"
    assert sent > len(beats), f"the Gateway sent {sent} heartbeats; the page got {len(beats)} messages"

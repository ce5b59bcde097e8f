"""A token rotated under a live wall view: the page recovers without a reload (issue 12, item 7).

``smithers-dashboard serve --token-file FILE`` watches a replay Gateway (in this process,
on its own thread) in Chromium's ``?view=monitor``. The Gateway rotates its token: the old
one is revoked and its sockets closed, as after a revocation. The wall says so, with the
Gateway's refresh hint. The new token is written to the file; at its next retry the server
reads the file again and the same page (never reloaded) is live again.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tests.browser import wait_until
from tests.deploy_support import Served, cli, free_port
from tests.recordings import recording
from tests.replay_thread import ReplayThread

if TYPE_CHECKING:
    from pathlib import Path

    from playwright.sync_api import Page

OLD_TOKEN = "rotation-old-token-1f4a9c"
NEW_TOKEN = "rotation-new-token-77b0e2"


def test_wall_view_recovers_after_a_token_rotation_without_a_reload(tmp_path: Path, page: Page) -> None:
    from inspector.transcript import load_runs

    replay = ReplayThread(load_runs(recording("wide-run.jsonl")), token=OLD_TOKEN, speed=0.5)
    dashboard: Served | None = None
    try:
        run_id = replay.call(lambda: replay.gateway.run_ids()[0])
        gateway_url = replay.gateway.url
        token_file = tmp_path / "token"
        token_file.write_text(OLD_TOKEN + "\n")
        port = free_port()
        dashboard = Served(cli("serve", "--gateway", gateway_url, "--token-file", str(token_file), "--port", str(port)),
                           tmp_path / "serve.log")
        base = f"http://127.0.0.1:{port}"
        dashboard.wait_status(f"{base}/healthz")
        page.goto(f"{base}/apps?view=monitor&runId={run_id}")
        badge = page.locator("[data-connection-status]")

        def status() -> str | None:
            return badge.first.get_attribute("data-connection-status") if badge.count() else None

        wait_until(lambda: status() == "online", 60, "the wall live on the old token", page=page)
        page.evaluate("window.__sd_same_page = true")

        closed = replay.call(lambda: replay.gateway.rotate_token(NEW_TOKEN))
        assert closed >= 1, "the dashboard's socket used the old token"
        wait_until(lambda: status() == "unauthorized", 60, "the wall to say the token was rejected", page=page)
        wait_until(lambda: "smithers token issue" in (badge.first.text_content() or ""), 30,
                   "the Gateway's refresh hint on the wall", page=page)

        token_file.write_text(NEW_TOKEN + "\n")
        wait_until(lambda: status() == "online", 60, "the wall live again on the new token", page=page)
        assert page.evaluate("window.__sd_same_page === true"), "the page was reloaded"
        log = dashboard.log()
        assert OLD_TOKEN not in log and NEW_TOKEN not in log
        assert "Traceback" not in log, log[-3000:]
    finally:
        page.goto("about:blank")  # leave the dashboard before it stops (no failed reconnect in the console)
        if dashboard is not None:
            dashboard.stop()
        replay.stop()

#!/usr/bin/env python
"""Screenshots of every view of the dashboard, on a REAL Smithers Gateway, into docs/screenshots/.

    .venv/bin/python scripts/screenshots.py [--out docs/screenshots] [--pace 2.0]

Starts the pinned Gateway (``tests/gateway/server.py``; installed by ``tests/gateway/install.py``
if needed), runs ``demo``, ``doomed`` and ``rich`` to completion, serves the dashboard with
``panel serve apps/`` (as ``smithers-dashboard serve`` does) and drives Debian's Chromium:

- ``run-list.png``: the run list;
- ``full.png``: the finished ``rich`` run, whole page;
- ``node-detail.png``: node ``plan`` selected, Output tab (its ``<script>`` text shown as text);
- ``scores.png``, ``timeline.png``, ``events.png``: the run's bottom tabs;
- ``frames.png``: the Frames tab with the scrubber moved back to an earlier frame;
- ``monitor.png``: ``?view=monitor`` while a ``slow`` run (30 sequential tasks) is executing;
- ``monitor-offline.png``: the same monitor a few seconds after the Gateway was killed.

Every wait polls a condition with a deadline; it stops with a message naming what never came.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from playwright.sync_api import expect, sync_playwright  # noqa: E402

from tests.browser import (  # noqa: E402
    CHROMIUM,
    CHROMIUM_ARGS,
    DashboardServer,
    page_rows,
    rows_diff,
    snapshot_states,
    wait_until,
)
from tests.gateway.install import install  # noqa: E402
from tests.gateway.server import ADMIN_TOKEN, GatewayServer  # noqa: E402

if TYPE_CHECKING:
    from playwright.sync_api import Dialog, Locator, Page

XSS = "<script>alert('xss')</script>"


def bottom_tab(page: Page, name: str) -> Locator:
    """A tab of the run page's bottom tab bar (the detail pane has a "Scores" tab too)."""
    return page.locator(".bk-tab", has_text=re.compile(f"^{name}$")).last


def settle(page: Page) -> None:
    """Let pending layout and transitions finish before a screenshot (a wait, not a sync)."""
    page.mouse.move(0, 0)
    page.wait_for_load_state("networkidle")
    page.wait_for_timeout(600)


def shoot(page: Page, out: Path, name: str, full_page: bool = True) -> None:
    settle(page)
    path = out / name
    page.screenshot(path=str(path), full_page=full_page)
    print(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}", flush=True)


def on_dialog(dialog: Dialog) -> None:
    """No view may open a dialog (an output's ``<script>`` must stay text): say so loudly."""
    print(f"A DIALOG OPENED (this is a bug): {dialog.message}", file=sys.stderr)
    dialog.dismiss()


def open_run(
    page: Page, server: DashboardServer, gw: GatewayServer, run_id: str, *, wait: bool = True, reload: bool = True
) -> None:
    """Open a run (unless ``reload`` is False) and wait until its tree equals the Gateway's."""
    if reload:
        page.goto(server.url(f"runId={run_id}"), wait_until="domcontentloaded")
    if not wait:
        return
    truth = snapshot_states(gw.rpc("getDevToolsSnapshot", {"runId": run_id}))
    try:
        wait_until(lambda: page_rows(page) == truth, 60, f"the tree of run {run_id}", page)
    except AssertionError as exc:
        raise AssertionError(f"{exc}: {rows_diff(page_rows(page), truth)}") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    parser.add_argument("--pace", type=float, default=2.0, help="Gateway PACE (multiplies workflow sleeps)")
    args = parser.parse_args(argv)
    out: Path = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="smithers-shots-"))

    with GatewayServer(install(), work / "gateway", pace=args.pace) as gw:
        runs = {name: gw.launch_run(name) for name in ("demo", "doomed")}
        for run_id in runs.values():
            gw.wait_for_run(run_id, timeout=120)
        with DashboardServer(gw.url, ADMIN_TOKEN, work / "panel") as server, sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            context = browser.new_context(viewport={"width": 1440, "height": 1000}, device_scale_factor=1)
            page = context.new_page()
            page.set_default_timeout(30_000)
            page.on("dialog", on_dialog)

            # The whole run page, watched from launch to the end (the timeline is built from
            # the node events the dashboard sees).
            page.goto(server.url(), wait_until="domcontentloaded")  # loads the app once
            expect(page.get_by_text("click a run to open it")).to_be_visible()
            rich = gw.launch_run("rich")
            open_run(page, server, gw, rich, wait=False)
            gw.wait_for_run(rich, timeout=120)
            open_run(page, server, gw, rich, reload=False)
            expect(page.locator(".sd-pill")).to_have_attribute("data-run-status", "finished")
            shoot(page, out, "full.png")

            # Node detail: plan's output, with its <script> shown as text.
            page.locator(".st-row", has_text=re.compile(r"^\W*plan")).first.click()
            expect(page.locator(".sd-node-title")).to_contain_text("plan")
            page.locator(".bk-tab", has_text=re.compile(r"^Output$")).click()
            expect(page.locator(".tabulator-cell", has_text=XSS).first).to_be_visible()
            shoot(page, out, "node-detail.png", full_page=False)

            # The bottom tabs.
            for tab, name, ready in (
                ("Scores", "scores.png", page.get_by_text(re.compile(r"^\d+ scores?\b"))),
                ("Timeline", "timeline.png", page.get_by_text(re.compile(r"^\d+ attempts on \d+ tasks"))),
                ("Events", "events.png", page.locator(".tabulator-cell", has_text="node.finished")),
            ):
                bottom_tab(page, tab).click()
                bottom_tab(page, tab).scroll_into_view_if_needed()
                if tab == "Events":  # the node events, not the run's heartbeats
                    page.locator("select").filter(has=page.locator("option", has_text="failures")).select_option("nodes")
                ready.first.wait_for(state="visible")
                page.mouse.wheel(0, 2000)
                shoot(page, out, name, full_page=False)

            # Frames: the scrubber moved back to an earlier frame.
            bottom_tab(page, "Frames").click()
            handle = page.locator(".noUi-handle").last
            handle.wait_for(state="visible")
            latest = int(float(handle.get_attribute("aria-valuenow") or "0"))
            target = 2
            handle.focus()
            for _ in range(latest - target):
                page.keyboard.press("ArrowLeft")
            status = page.get_by_text(re.compile(rf"^Frame {target} of {latest} · \d+ node"))
            status.wait_for(state="visible")
            page.mouse.wheel(0, 2000)
            shoot(page, out, "frames.png", full_page=False)

            # The run list (after the bottom tabs: the click away from the run page comes last).
            page.get_by_role("button", name="← All runs").click()
            expect(page.locator(".tabulator-cell", has_text=rich)).to_be_visible()
            shoot(page, out, "run-list.png")

            # The wall monitor while a run executes (``slow``: 30 sequential tasks), then offline.
            live = gw.launch_run("slow")
            page.goto(server.url("view=monitor"), wait_until="domcontentloaded")
            badge = page.locator("[data-connection-status]")
            expect(page.locator(".sd-runid", has_text=live)).to_be_visible()
            expect(badge).to_have_attribute("data-connection-status", "online")
            wait_until(lambda: "in-progress" in page_rows(page).values(), 60, "a running task on the monitor", page)
            shoot(page, out, "monitor.png", full_page=False)
            gw.kill()
            expect(badge).to_have_attribute("data-connection-status", "offline", timeout=40_000)
            expect(badge).to_contain_text(re.compile(r"Offline for \d+ s"), timeout=20_000)
            shoot(page, out, "monitor-offline.png", full_page=False)
            browser.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The served dashboard in Debian's Chromium against the REAL Smithers Gateway.

``panel serve apps/`` runs in a subprocess with the Gateway's URL and token in its
environment (``tests/browser.py``); Playwright drives Chromium. What the page shows is
compared with what the Gateway says (``getDevToolsSnapshot``, ``getRun``), matched by
DevTools id. Every wait polls a condition with a deadline; the page fixture fails a test
on any dialog, uncaught script error, non-loopback request or token in a WebSocket frame.
"""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING, Any

import pytest
from playwright.sync_api import expect

from tests.browser import (
    expected_summary,
    gateway_counts,
    mark_rows,
    page_rows,
    rows_diff,
    rows_since_mark,
    snapshot_states,
    states_seen,
    task_summary,
    tree_trace,
    wait_until,
)
from tests.gateway.server import ADMIN_TOKEN

if TYPE_CHECKING:
    from collections.abc import Callable

    from playwright.sync_api import Page

    from tests.browser import BrowserLog, DashboardServer
    from tests.gateway.plugin import GatewayFactory
    from tests.gateway.server import GatewayServer

pytestmark = [pytest.mark.browser, pytest.mark.gateway]

XSS = "<script>alert('xss')</script>"
TERMINAL = ("finished", "failed", "cancelled")


def snapshot(gw: GatewayServer, run_id: str) -> dict[str, Any]:
    snap: dict[str, Any] = gw.rpc("getDevToolsSnapshot", {"runId": run_id})
    return snap


def open_run(page: Page, server: DashboardServer, run_id: str, extra: str = "") -> None:
    page.goto(server.url(f"runId={run_id}{extra}"), wait_until="domcontentloaded")
    expect(page.locator(f'.sd-runid:text-is("{run_id}")')).to_be_visible(timeout=30_000)


def wait_rows_equal(
    page: Page, gw: GatewayServer, run_id: str, timeout: float = 30.0, log: BrowserLog | None = None
) -> dict[str, str]:
    """Poll until the rows on screen equal the Gateway's snapshot exactly; return them.

    On timeout the assertion names the ids missing, extra and in a different state.
    """
    deadline = time.monotonic() + timeout
    while True:
        truth = snapshot_states(snapshot(gw, run_id))
        rows = page_rows(page)
        if rows == truth:
            return rows
        if time.monotonic() > deadline:
            raise AssertionError(
                f"rows never matched getDevToolsSnapshot: {rows_diff(rows, truth)}; the header's "
                f"task-summary says {task_summary(page)}, the Gateway's counts "
                f"{expected_summary(gateway_counts(snapshot(gw, run_id)))}; tree footer "
                f"{page.locator('.st-footer').inner_text()!r}"
                + ("\n" + tree_trace(page, log, [i for i in truth if rows.get(i) != truth[i]]) if log else "")
            )
        page.wait_for_timeout(100)


def wait_summary(page: Page, counts: dict[str, int], timeout: float = 10.0) -> None:
    """Poll until the header's task-summary attributes equal the Gateway's counts."""
    want = expected_summary(counts)
    deadline = time.monotonic() + timeout
    while (got := task_summary(page)) != want:
        if time.monotonic() > deadline:
            raise AssertionError(f"task-summary {got} never matched the Gateway's {want}")
        page.wait_for_timeout(100)


def footer_count(page: Page) -> int:
    text = page.locator(".st-footer").inner_text()
    match = re.match(r"([\d,]+) nodes", text)
    assert match, f"footer says {text!r}"
    return int(match.group(1).replace(",", ""))


# ---------------------------------------------------------------------------- 1. live run


def test_live_rich_run_shows_every_true_state(
    make_gateway: GatewayFactory, serve_dashboard: Callable[..., DashboardServer], page: Page, browser_log: BrowserLog
) -> None:
    # PACE 6: ~22 s of run. A page load on a busy 2-CPU machine was measured at 6 to 16 s
    # (launch to first rows), and the run must still be executing when the rows appear.
    gw = make_gateway(pace=6)
    server = serve_dashboard(gw.url)
    # Load the app once (the first session pays for the imports), so the run is watched live.
    page.goto(server.url(), wait_until="domcontentloaded")
    expect(page.locator(".sd-run-list").first).to_be_visible(timeout=30_000)
    run_id = gw.launch_run("rich")
    launched = time.monotonic()
    open_run(page, server, run_id)
    page_open = time.monotonic() - launched
    header_at: float | None = None

    def first_rows() -> bool:
        nonlocal header_at
        if header_at is None and task_summary(page)["total"] > 0:
            header_at = time.monotonic() - launched
        return bool(page_rows(page))

    wait_until(first_rows, 30, "the first rows", page)
    rows_at = time.monotonic() - launched
    status = gw.get_run(run_id)["status"]
    assert status == "running", (
        f"the run had ended ({status}) before the page showed any row: launched at 0 s, page open at "
        f"{page_open:.1f} s, header counted the run's tasks at {header_at} s, first rows at {rows_at:.1f} s"
    )
    final = gw.wait_for_run(run_id, timeout=90)
    assert final["status"] == "finished"
    rows = wait_rows_equal(page, gw, run_id, log=browser_log)
    snap = snapshot(gw, run_id)
    truth = snapshot_states(snap)
    assert footer_count(page) == len(truth), "the tree holds a different number of nodes than the Gateway"
    tasks = {i for i, s in truth.items() if s}
    assert len(tasks) >= 12 and rows == truth
    seen = states_seen(page)
    went_live = sorted(i for i, states in seen.items() if "in-progress" in states)
    assert went_live, f"no row ever showed in-progress; states seen: {seen}"
    # Every task row ended where the Gateway says it is.
    assert {i: seen[i][-1] for i in tasks} == {i: truth[i] for i in tasks}
    wait_summary(page, gateway_counts(snap))
    expect(page.locator(".sd-pill")).to_have_attribute("data-run-status", "finished", timeout=10_000)


# ---------------------------------------------------------------------------- 2. hostile output


def test_script_output_renders_as_text_without_a_dialog(
    gateway: GatewayServer, dashboard: DashboardServer, page: Page, browser_log: BrowserLog
) -> None:
    run_id = gateway.launch_run("rich")
    gateway.wait_for_run(run_id, timeout=60)
    open_run(page, dashboard, run_id, "&nodeId=plan")
    expect(page.locator(".sd-node-title")).to_contain_text("plan", timeout=20_000)
    page.locator(".bk-tab", has_text=re.compile(r"^Output$")).click()
    cell = page.locator(".tabulator-cell", has_text=XSS)
    expect(cell.first).to_be_visible(timeout=20_000)
    assert XSS in cell.first.inner_text()
    assert page.locator("img[src='x']").count() == 0
    assert page.locator(".tabulator-cell script").count() == 0
    # A rogue onerror would have fired by now; make a round trip to the server to be sure.
    page.locator(".bk-tab", has_text=re.compile(r"^Task$")).click()
    expect(page.locator(".sd-kv")).to_contain_text("plan", timeout=10_000)
    assert browser_log.dialogs == []


def test_a_run_opened_after_it_finished_shows_its_history(
    gateway: GatewayServer, dashboard: DashboardServer, page: Page
) -> None:
    """Nobody watched the run live: its node events come from the Gateway's replay
    (streamRunEvents) with the times of its durable history, into the Events tab and the
    Timeline (``rich``: 14 task rows, ``flaky`` fails once and is retried)."""
    run_id = gateway.launch_run("rich")
    gateway.wait_for_run(run_id, timeout=60)
    open_run(page, dashboard, run_id)
    page.locator(".bk-tab", has_text=re.compile(r"^Timeline$")).last.click()
    expect(page.get_by_text("15 attempts on 14 tasks · 1 failed · 1 retry")).to_be_visible(timeout=30_000)
    page.locator(".bk-tab", has_text=re.compile(r"^Events$")).last.click()
    page.get_by_placeholder("Filter: node, event, message…").fill("flaky")
    for event in ("node.started", "node.failed", "node.retrying", "node.finished"):
        expect(page.locator(".tabulator-cell", has_text=event).first).to_be_visible(timeout=20_000)
    times = {t.strip() for t in page.locator('.tabulator-cell[tabulator-field="time"]').all_inner_texts()}
    assert len(times) >= 4, f"history events must keep their own times, not one replay time: {times}"


# ---------------------------------------------------------------------------- 3. rewind


def test_rewind_mid_run_leaves_no_stale_row(
    make_gateway: GatewayFactory, serve_dashboard: Callable[..., DashboardServer], page: Page, browser_log: BrowserLog
) -> None:
    gw = make_gateway(pace=3)
    server = serve_dashboard(gw.url)
    run_id = gw.launch_run("rich")
    open_run(page, server, run_id)
    wait_until(lambda: (snapshot(gw, run_id).get("frameNo") or 0) >= 6, 60, "frame 6", page)
    expect(page.locator(".st-row[data-node-id]").first).to_be_visible(timeout=30_000)
    gw.rpc("rewindRun", {"runId": run_id, "frameNo": 2, "confirm": True, "force": True}, token=ADMIN_TOKEN)
    expect(page.locator(".sd-notice")).to_contain_text("Rewound", timeout=20_000)
    final = gw.wait_for_run(run_id, statuses=("finished", "cancelled"), timeout=90)
    rows = wait_rows_equal(page, gw, run_id, log=browser_log)
    truth = snapshot_states(snapshot(gw, run_id))
    assert rows == truth
    assert footer_count(page) == len(truth)
    wait_summary(page, gateway_counts(snapshot(gw, run_id)))
    expect(page.locator(".sd-notice")).to_contain_text(re.compile(r"Rewound from frame \d+ to 2"))
    assert final["status"] in ("finished", "cancelled")


# ---------------------------------------------------------------------------- 4. run switch


def test_switching_runs_never_shows_the_previous_runs_rows(
    gateway: GatewayServer, dashboard: DashboardServer, page: Page, browser_log: BrowserLog
) -> None:
    run_a = gateway.launch_run("demo")
    gateway.wait_for_run(run_a, timeout=60)
    open_run(page, dashboard, run_a)
    wait_rows_equal(page, gateway, run_a)
    run_b = gateway.launch_run("rich")
    ids_a = set(snapshot_states(snapshot(gateway, run_a)))
    page.get_by_role("button", name="← All runs").click()
    cell = page.locator(".sd-run-list .tabulator-cell", has_text=run_b)
    expect(cell).to_be_visible(timeout=20_000)
    mark_rows(page)  # the moment of the switch: every row shown from now on is recorded
    cell.click()
    expect(page.locator(f'.sd-runid:text-is("{run_b}")')).to_be_visible(timeout=20_000)
    gateway.wait_for_run(run_b, timeout=60)
    rows = wait_rows_equal(page, gateway, run_b, log=browser_log)
    ids_b = set(snapshot_states(snapshot(gateway, run_b)))
    only_a = ids_a - ids_b
    assert only_a, "the two runs share every DevTools id: the test cannot tell them apart"
    shown = rows_since_mark(page)
    assert ids_b <= set(shown), "the recorder missed rows of the new run"
    stale = {i: shown[i] for i in only_a if i in shown}
    assert not stale, f"rows of the previous run {run_a} were shown after switching to {run_b}: {stale}"
    assert set(rows) == ids_b
    assert page.url.find(f"runId={run_b}") >= 0


PUSHED_URLS_JS = """() => {
  window.__pushed = [];
  const push = history.pushState.bind(history);
  history.pushState = (state, title, url) => { window.__pushed.push(String(url)); return push(state, title, url) };
}"""


def test_all_runs_from_a_run_page_keeps_the_overviews_filters_in_the_url(
    gateway: GatewayServer, dashboard: DashboardServer, page: Page
) -> None:
    """Issue 14: a run page builds the runs overview when "← All runs" asks for it. Its
    filters are then synced with the URL (reload and copied links keep them) and the
    closing run is neither reopened nor left in the URL (``runId=null`` was)."""
    failed = gateway.launch_run("doomed")
    run_a = gateway.launch_run("demo")
    assert gateway.wait_for_run(failed, timeout=60)["status"] == "failed"
    gateway.wait_for_run(run_a, timeout=60)
    open_run(page, dashboard, run_a)
    page.evaluate(PUSHED_URLS_JS)
    page.get_by_role("button", name="← All runs").click()
    cells = page.locator(".sd-run-list .tabulator-cell")
    expect(cells.filter(has_text=run_a)).to_be_visible(timeout=20_000)
    page.get_by_label("Status").select_option("failed")
    expect(page).to_have_url(re.compile(r"[?&]status=failed(&|$)"), timeout=10_000)
    expect(cells.filter(has_text=failed)).to_be_visible(timeout=10_000)
    expect(cells.filter(has_text=run_a)).to_have_count(0)
    expect(page.locator(".sd-runid")).to_have_count(0)  # the closed run was not reopened
    pushed: list[str] = page.evaluate("() => window.__pushed")
    assert pushed and not [u for u in pushed if "runId" in u or "null" in u], f"URLs pushed: {pushed}"
    assert len(pushed) == 2, f"one history entry for the switch, one for the filter: {pushed}"
    url = page.url
    page.reload(wait_until="domcontentloaded")
    expect(page.get_by_label("Status")).to_have_value("failed", timeout=30_000)
    expect(cells.filter(has_text=failed)).to_be_visible(timeout=20_000)
    expect(cells.filter(has_text=run_a)).to_have_count(0)
    expect(page.locator(".sd-runid")).to_have_count(0)
    assert "runId" not in page.url and "status=failed" in page.url, f"{url} became {page.url}"


# ---------------------------------------------------------------------------- 5. monitor


def test_monitor_goes_offline_and_back_by_itself(
    make_gateway: GatewayFactory, serve_dashboard: Callable[..., DashboardServer], page: Page
) -> None:
    gw = make_gateway(pace=0.5)
    run_id = gw.launch_run("demo")
    server = serve_dashboard(gw.url)
    page.goto(server.url("view=monitor"), wait_until="domcontentloaded")
    badge = page.locator("[data-connection-status]")
    expect(page.locator(f'.sd-runid:text-is("{run_id}")')).to_be_visible(timeout=30_000)
    expect(badge).to_have_attribute("data-connection-status", "online", timeout=30_000)
    assert not grey(page)
    navigations: list[str] = []
    page.on("framenavigated", lambda f: navigations.append(f.url) if f == page.main_frame else None)
    gw.kill()
    expect(badge).to_have_attribute("data-connection-status", "offline", timeout=40_000)
    expect(badge).to_contain_text("Offline for", timeout=5_000)
    since = badge.get_attribute("title") or ""
    assert re.fullmatch(r"since \d\d:\d\d:\d\d", since), f"the badge does not say since when: {since!r}"
    wait_until(lambda: grey(page), 10, "the monitor to grey out", page)
    gw.start()
    expect(badge).to_have_attribute("data-connection-status", "online", timeout=40_000)
    wait_until(lambda: not grey(page), 10, "the monitor to lose its grey", page)
    assert navigations == [], f"the page reloaded: {navigations}"


GREY_JS = """() => {
  const hits = [];
  const walk = (root) => {
    for (const el of root.querySelectorAll("*")) {
      if (getComputedStyle(el).filter.includes("grayscale")) hits.push(el.tagName);
      if (el.shadowRoot) walk(el.shadowRoot);
    }
  };
  walk(document);
  return hits.length;
}"""


def grey(page: Page) -> bool:
    """Is some element of the page greyed out (the monitor's offline style)?"""
    return bool(page.evaluate(GREY_JS))


# ---------------------------------------------------------------------------- 7. assets and token


SHADOW_HTML_JS = """() => {
  const parts = [document.documentElement.outerHTML];
  const walk = (root) => {
    for (const el of root.querySelectorAll("*")) {
      if (el.shadowRoot) { parts.push(el.shadowRoot.innerHTML); walk(el.shadowRoot) }
    }
  };
  walk(document);
  return parts.join("\\n");
}"""


def test_page_is_local_and_never_carries_the_token(
    gateway: GatewayServer, dashboard: DashboardServer, page: Page, browser_log: BrowserLog
) -> None:
    run_id = gateway.launch_run("rich")
    open_run(page, dashboard, run_id, "&nodeId=plan")
    gateway.wait_for_run(run_id, timeout=60)
    wait_rows_equal(page, gateway, run_id)
    page.locator(".bk-tab", has_text=re.compile(r"^Output$")).click()
    expect(page.locator(".tabulator-cell", has_text=XSS).first).to_be_visible(timeout=20_000)
    page.goto(dashboard.url(), wait_until="domcontentloaded")  # the run list too
    expect(page.locator(".sd-run-list .tabulator-cell", has_text=run_id)).to_be_visible(timeout=20_000)
    assert browser_log.websockets, "the page opened no WebSocket"
    assert all(u.startswith(f"ws://127.0.0.1:{dashboard.port}/") for u in browser_log.websockets)
    assert browser_log.external_requests == []
    assert ADMIN_TOKEN not in page.content()
    assert ADMIN_TOKEN not in page.evaluate(SHADOW_HTML_JS)
    # The page did receive the Bokeh document and the run (so the check below means something).
    assert any(run_id in f for f in browser_log.ws_received)
    assert browser_log.frames_with(ADMIN_TOKEN) == []

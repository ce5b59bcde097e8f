"""The runs overview and the run comparison in Chromium, on a REAL Gateway's runs.

One Gateway of this module's own (so no other test's runs change the figures) runs two
groups of runs a few seconds apart: ``demo``, ``rich``, ``doomed`` (fails), then ``rich``,
``demo`` and ``gated`` (waits for an approval). The page's ``workflow-stats`` figures are
checked against ``listRuns``; the scatter is brushed with the real x-box-select tool (a
mouse drag on the canvas) and a run is tapped with a real click, both at pixel positions
computed from the Bokeh plot's own scales; a run launched while the page is open must
appear in the same plot (the same Bokeh figure, its data patched). Every wait polls a
condition with a deadline.
"""

from __future__ import annotations

import statistics
import time
from collections import defaultdict
from typing import TYPE_CHECKING, Any

import pytest
from playwright.sync_api import expect

from tests.browser import DashboardServer, wait_until
from tests.gateway.plugin import default_pace
from tests.gateway.server import ADMIN_TOKEN, GatewayServer

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from playwright.sync_api import Page

pytestmark = [pytest.mark.browser, pytest.mark.gateway]

TERMINAL = ("finished", "failed", "cancelled")

#: The scatter's Bokeh view: the Figure whose data source has ``runId`` and ``duration_s``.
_SCATTER = r"""
(() => {
  const seen = new Set()
  const found = []
  const visit = (v) => {
    if (!v || seen.has(v)) return
    seen.add(v)
    if (v.model && v.model.type === 'Figure') {
      for (const r of v.model.renderers) {
        const data = r.data_source && r.data_source.data
        if (data && 'runId' in data && 'duration_s' in data) found.push([v, r])
      }
    }
    for (const c of (v.child_views ?? [])) visit(c)
    if (v.renderer_views) for (const c of v.renderer_views.values()) visit(c)
  }
  const idx = Bokeh.index
  for (const root of (idx.roots ? [...idx.roots] : Object.values(idx))) visit(root)
  return found[0] ?? null
})()
"""

SCATTER_STATE_JS = "() => { const f = " + _SCATTER + """;
  if (!f) return null
  const [view, r] = f
  return {figure: view.model.id, runIds: [...r.data_source.data.runId]} }"""

FRAME_JS = "() => { const f = " + _SCATTER + """;
  if (!f) return null
  const [view] = f
  const rect = view.el.getBoundingClientRect(), b = view.frame.bbox
  return {x: rect.x + b.x0, y: rect.y + b.y0, width: b.width, height: b.height} }"""

POINT_JS = "(runId) => { const f = " + _SCATTER + """;
  if (!f) return null
  const [view, r] = f
  const data = r.data_source.data, i = [...data.runId].indexOf(runId)
  if (i < 0) return null
  const rect = view.el.getBoundingClientRect()
  return {x: rect.x + view.frame.x_scale.compute(data.start[i]), y: rect.y + view.frame.y_scale.compute(data.duration_s[i]),
          start: data.start[i]} }"""

#: Where the "Runs per workflow" bar of a workflow is on screen (its stacked segment's middle).
BAR_JS = r"""(workflow) => {
  const seen = new Set()
  let hit = null
  const visit = (v) => {
    if (!v || seen.has(v) || hit) return
    seen.add(v)
    if (v.model && v.model.type === 'Figure') {
      for (const r of v.model.renderers) {
        const data = r.data_source && r.data_source.data
        if (!data || !('workflow' in data) || !('runs' in data)) continue
        const i = [...data.workflow].indexOf(workflow)
        if (i < 0) continue
        const rect = v.el.getBoundingClientRect()
        const top = data.top ? data.top[i] : data.runs[i], bottom = data.bottom ? data.bottom[i] : 0
        hit = {x: rect.x + v.frame.x_scale.compute(workflow), y: rect.y + v.frame.y_scale.compute((top + bottom) / 2)}
      }
    }
    for (const c of (v.child_views ?? [])) visit(c)
    if (v.renderer_views) for (const c of v.renderer_views.values()) visit(c)
  }
  const idx = Bokeh.index
  for (const root of (idx.roots ? [...idx.roots] : Object.values(idx))) visit(root)
  return hit
}"""

START_PX_JS = "(ms) => { const f = " + _SCATTER + """;
  if (!f) return null
  const [view] = f
  return view.el.getBoundingClientRect().x + view.frame.x_scale.compute(ms) }"""


@pytest.fixture(scope="module")
def history(gateway_install: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A Gateway of this module's own with two groups of runs; yields it and the run ids."""
    gw = GatewayServer(gateway_install, tmp_path_factory.mktemp("gateway-overview"), pace=default_pace())
    gw.start()
    try:
        early = {w: gw.launch_run(w) for w in ("demo", "rich", "doomed")}
        for run_id in early.values():
            gw.wait_for_run(run_id, timeout=90)
        late = {w: gw.launch_run(w) for w in ("rich", "demo", "gated")}
        for w, run_id in late.items():
            gw.wait_for_run(run_id, ("waiting-approval",) if w == "gated" else TERMINAL, timeout=90)
        yield {"gw": gw, "early": early, "late": late}
    finally:
        gw.stop()


@pytest.fixture(scope="module")
def server(history: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator[DashboardServer]:
    with DashboardServer(history["gw"].url, ADMIN_TOKEN, tmp_path_factory.mktemp("panel-overview")) as server:
        yield server


def expected_stats(gw: GatewayServer) -> dict[str, dict[str, str]]:
    """What ``workflow-stats`` must say, computed here from ``listRuns``."""
    rows = gw.rpc("listRuns", {"filter": {"limit": 1000}})
    by_workflow: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        by_workflow[row["workflowKey"]].append(row)
    out = {}
    for workflow, runs in by_workflow.items():
        durations = [r["finishedAtMs"] - r["startedAtMs"] for r in runs if r["status"] in TERMINAL]
        out[workflow] = {
            "runs": str(len(runs)),
            "failed": str(sum(r["status"] == "failed" for r in runs)),
            "p50": f"{statistics.median(durations):.0f}" if durations else "",
        }
    return out


def page_stats(page: Page) -> dict[str, dict[str, str]]:
    items = page.locator('[data-testid="workflow-stats"]').evaluate_all(
        "els => els.map(e => [e.dataset.workflow, e.dataset.runs, e.dataset.failed, e.dataset.p50Ms])")
    return {w: {"runs": r, "failed": f, "p50": p} for w, r, f, p in items}


def table_run_ids(page: Page) -> list[str]:
    """Run ids in the overview's run table (the first Tabulator on the landing page)."""
    table = page.locator(".tabulator").first
    return table.locator('.tabulator-cell[tabulator-field="runId"]').all_inner_texts()


def open_overview(page: Page, server: DashboardServer, query: str = "") -> None:
    page.goto(server.url(query), wait_until="domcontentloaded")
    expect(page.locator('[data-testid="workflow-stats"]').first).to_be_attached(timeout=30_000)
    wait_until(lambda: page.evaluate(FRAME_JS), 30, "the runs-over-time chart", page)


def test_workflow_stats_equal_list_runs(page: Page, server: DashboardServer, history: dict[str, Any]) -> None:
    gw = history["gw"]
    open_overview(page, server)
    expected = expected_stats(gw)
    assert set(expected) == {"demo", "rich", "doomed", "gated"}
    wait_until(lambda: page_stats(page) == expected, 20, f"workflow-stats == {expected} (page: {page_stats(page)})",
               page)
    assert expected["doomed"]["failed"] == "1" and expected["gated"]["p50"] == ""
    # getRun agrees with the rows the figures came from.
    assert gw.get_run(history["early"]["doomed"])["status"] == "failed"


def test_brushing_a_time_range_filters_the_run_table(page: Page, server: DashboardServer,
                                                     history: dict[str, Any]) -> None:
    gw = history["gw"]
    open_overview(page, server)
    early, late = set(history["early"].values()), set(history["late"].values())
    wait_until(lambda: set(table_run_ids(page)) == early | late, 20, "every run in the table", page)
    runs = {r["runId"]: r for r in gw.rpc("listRuns", {"filter": {"limit": 1000}})}
    last_early = max(runs[r]["startedAtMs"] for r in early)
    first_late = min(runs[r]["startedAtMs"] for r in late)
    frame = page.evaluate(FRAME_JS)
    split = page.evaluate(START_PX_JS, (last_early + first_late) / 2)
    assert frame["x"] < split < frame["x"] + frame["width"], (frame, split)
    y = frame["y"] + frame["height"] / 2
    # The x-box-select tool is the chart's active drag: a real drag from the left edge to the split.
    page.mouse.move(frame["x"] + 2, y)
    page.mouse.down()
    page.mouse.move((frame["x"] + split) / 2, y, steps=4)
    page.mouse.move(split, y, steps=4)
    page.mouse.up()
    wait_until(lambda: set(table_run_ids(page)) == early, 20,
               f"only the early runs in the table (table: {table_run_ids(page)})", page)
    stats = wait_until(lambda: (s := page_stats(page)) and "gated" not in s and s, 20, "stats of the brushed range", page)
    assert {w: s["runs"] for w, s in stats.items()} == {"demo": "1", "rich": "1", "doomed": "1"}
    page.get_by_role("button", name="Clear selection").click()
    wait_until(lambda: set(table_run_ids(page)) == early | late, 20, "every run back after clearing", page)


def test_tapping_a_run_opens_it(page: Page, server: DashboardServer, history: dict[str, Any]) -> None:
    open_overview(page, server)
    target = history["early"]["doomed"]
    point = wait_until(lambda: page.evaluate(POINT_JS, target), 20, "the doomed run's point", page)
    page.mouse.click(point["x"], point["y"])
    wait_until(lambda: f"runId={target}" in page.url, 20, f"?runId={target} after the tap (url {page.url})", page)
    expect(page.locator(f'.sd-runid:text-is("{target}")')).to_be_visible(timeout=30_000)


def test_tapping_a_workflow_bar_filters_the_scatter_and_the_table(page: Page, server: DashboardServer,
                                                                 history: dict[str, Any]) -> None:
    open_overview(page, server)
    everyone = set(history["early"].values()) | set(history["late"].values())
    wait_until(lambda: set(table_run_ids(page)) == everyone, 20, "every run in the table", page)
    bar = wait_until(lambda: page.evaluate(BAR_JS, "rich"), 20, "the rich bar", page)
    page.mouse.click(bar["x"], bar["y"])
    rich = {history["early"]["rich"], history["late"]["rich"]}
    wait_until(lambda: "workflow=rich" in page.url, 20, f"?workflow=rich after the tap (url {page.url})", page)
    wait_until(lambda: set(table_run_ids(page)) == rich, 20, f"only rich runs (table {table_run_ids(page)})", page)
    wait_until(lambda: set(page.evaluate(SCATTER_STATE_JS)["runIds"]) == rich, 20, "only rich runs in the scatter", page)
    # The same bar again picks no workflow.
    bar = wait_until(lambda: page.evaluate(BAR_JS, "rich"), 20, "the rich bar", page)
    page.mouse.click(bar["x"], bar["y"])
    wait_until(lambda: set(table_run_ids(page)) == everyone, 20, "every run back after the second tap", page)


def test_a_run_finishing_appears_without_a_reload(page: Page, server: DashboardServer,
                                                  history: dict[str, Any]) -> None:
    gw = history["gw"]
    open_overview(page, server)
    before = wait_until(lambda: page.evaluate(SCATTER_STATE_JS), 20, "the scatter's data", page)
    demo_runs = int(page_stats(page)["demo"]["runs"])
    run_id = gw.launch_run("demo")
    wait_until(lambda: run_id in page.evaluate(SCATTER_STATE_JS)["runIds"], 30, "the new run in the scatter", page)
    gw.wait_for_run(run_id, timeout=90)
    expected = expected_stats(gw)
    assert expected["demo"]["runs"] == str(demo_runs + 1)
    wait_until(lambda: page_stats(page) == expected, 30, f"stats updated to {expected} ({page_stats(page)})", page)
    wait_until(lambda: run_id in table_run_ids(page), 20, "the new run in the table", page)
    after = page.evaluate(SCATTER_STATE_JS)
    # Patched in place: the same Bokeh figure, new data (a rebuilt plot would be a new model).
    assert after["figure"] == before["figure"]


def test_filters_live_in_the_url(page: Page, server: DashboardServer, history: dict[str, Any]) -> None:
    open_overview(page, server, "workflow=rich&status=finished&window=24h")
    rich = {history["early"]["rich"], history["late"]["rich"]}
    wait_until(lambda: set(table_run_ids(page)) == rich, 20, f"only rich runs (table {table_run_ids(page)})", page)
    page.locator("select").nth(2).select_option("failed")  # Window, Workflow, Status
    wait_until(lambda: "status=failed" in page.url, 20, f"?status=failed in the URL ({page.url})", page)
    wait_until(lambda: table_run_ids(page) == [], 20, "no failed rich run", page)


def test_comparison_of_two_rich_runs(page: Page, server: DashboardServer, history: dict[str, Any],
                                     tmp_path: Path) -> None:
    gw = history["gw"]
    a, b = history["early"]["rich"], history["late"]["rich"]
    expected: set[str] = set()
    for run_id in (a, b):
        events = gw.client.get("/v1/api/events", params={"runId": run_id, "limit": 1000},
                               headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}).json()["data"]
        for e in events:
            if e["event"] == "NodeStarted":
                node, iteration = e["payload"]["nodeId"], e["payload"].get("iteration") or 0
                expected.add(f"{node} [{iteration}]" if iteration else node)
    page.goto(server.url(f"compare={a},{b}"), wait_until="domcontentloaded")
    rows = page.locator('[data-testid="compare-row"]')
    deadline = time.monotonic() + 30
    while rows.count() != len(expected) and time.monotonic() < deadline:
        page.wait_for_timeout(100)
    keys = rows.evaluate_all("els => els.map(e => e.dataset.nodeId)")
    assert sorted(keys) == sorted(expected)
    assert {"plan", "flaky", "ship", "refine [2]"} <= set(keys)
    # The output diff pane names both runs (identical outputs say so; different ones are a diff).
    expect(page.get_by_text(a, exact=False).last).to_be_visible(timeout=20_000)
    page.screenshot(path=str(tmp_path / "compare.png"), full_page=True)


def test_compare_with_the_previous_run_from_a_run_page(page: Page, server: DashboardServer,
                                                       history: dict[str, Any]) -> None:
    gw = history["gw"]
    early, late = history["early"]["rich"], history["late"]["rich"]
    # The previous run of the same workflow, by listRuns: the rich run that started last before `late`.
    rows = [r for r in gw.rpc("listRuns", {"filter": {"limit": 1000}}) if r["workflowKey"] == "rich"]
    start = {r["runId"]: r["startedAtMs"] for r in rows}
    previous = max((r for r in rows if r["startedAtMs"] < start[late]), key=lambda r: r["startedAtMs"])["runId"]
    assert previous == early
    page.goto(server.url(f"runId={late}"), wait_until="domcontentloaded")
    link = page.locator('[data-testid="compare-previous"]')
    expect(link).to_have_attribute("data-previous", early, timeout=30_000)
    link.click()
    wait_until(lambda: f"compare={early},{late}" in page.url.replace("%2C", ","), 20,
               f"?compare={early},{late} (url {page.url})", page)
    expect(page.locator('[data-testid="compare-row"]').first).to_be_attached(timeout=30_000)
    # The first run of a workflow has nothing to compare with.
    page.goto(server.url(f"runId={history['early']['demo']}"), wait_until="domcontentloaded")
    expect(page.locator('[data-testid="compare-previous"]')).to_have_text("No previous run of this workflow",
                                                                         timeout=30_000)

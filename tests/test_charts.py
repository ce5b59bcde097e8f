"""The timeline and scores charts: bars coloured by outcome, a "now" line while live, tap
selects the node on the whole page, and Gateway text in hovers is text (checked in Chromium,
where Bokeh renders the tooltip).

The in-place property (an update changes data, never the figure) is guarded by
``tests/test_timeline_inplace.py``; the charts are measured against their HoloViews versions
by ``tests/benchmarks/bench_charts.py``.
"""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING, Any

import panel as pn
import pytest
from playwright.sync_api import expect

from dashboard.format import STATE_COLOURS
from dashboard.store import EventRecord, RunStore
from dashboard.views import ScoresView, Timeline
from inspector.tree import DevToolsTree
from inspector.vocabulary import TaskState
from tests.gateway.server import free_port

from .test_hub import snapshot_event, task_node
from .test_timeline_inplace import poll, rendered

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

    from tests.browser import DashboardServer
    from tests.gateway.server import GatewayServer

XSS = "<script>alert('x')</script><img src=x onerror=alert(2)>"


def store_with(*tasks: dict[str, Any]) -> RunStore:
    store = RunStore()
    store.tree = DevToolsTree(snapshot_event("r1", 5, list(tasks)))
    store.tree_version += 1
    return store


def test_timeline_colours_bars_by_outcome() -> None:
    store = RunStore()
    view = Timeline(store=store)
    rendered(view)
    store.events = (
        EventRecord(1.0, "node.started", node_id="ok"), EventRecord(2.0, "node.finished", node_id="ok"),
        EventRecord(1.0, "node.started", node_id="bad"), EventRecord(3.0, "node.failed", node_id="bad"),
        EventRecord(1.5, "node.started", node_id="again"), EventRecord(1.7, "node.started", node_id="again"),
        EventRecord(4.0, "node.started", node_id="busy"),
    )
    data = view._source.data
    colours = {(n, a): c for n, a, c in zip(data["node"], data["attempt"], data["colour"], strict=True)}
    assert colours == {
        ("ok", 1): STATE_COLOURS[TaskState.FINISHED],
        ("bad", 1): STATE_COLOURS[TaskState.FAILED],
        ("again", 1): "#80868b",  # interrupted: started again before it closed
        ("again", 2): STATE_COLOURS[TaskState.IN_PROGRESS],
        ("busy", 1): STATE_COLOURS[TaskState.IN_PROGRESS],
    }
    (renderer,) = view._figure.renderers
    assert renderer.glyph.fill_color == "colour" and "colour" in view._source.data, "each bar its colour column"


def test_now_line_shows_while_live_only() -> None:
    store = RunStore()
    view = Timeline(store=store)
    rendered(view)
    assert view._now.visible is False
    before = time.time()
    store.events = (EventRecord(before - 3, "node.started", node_id="a"),)
    assert view._now.visible is True
    assert view._now.location >= view._source.data["start"][0]
    store.run = {"runId": "r", "status": "finished"}
    assert view._now.visible is False


async def test_the_now_line_goes_when_the_run_ends_not_when_the_throttle_allows() -> None:
    store = RunStore()
    view = Timeline(store=store)
    rendered(view)
    store.events = (EventRecord(time.time() - 3, "node.started", node_id="a"),)  # the throttle's leading edge
    assert view._now.visible is True
    view._throttle.interval = 30.0
    store.events = (*store.events, EventRecord(time.time(), "node.started", node_id="b"))
    assert view._throttle._handle is not None, "a redraw waits out the interval"
    store.run = {"runId": "r", "status": "finished"}
    assert view._now.visible is False
    assert view._throttle._handle is None


def test_tap_on_a_bar_or_a_point_selects_the_node() -> None:
    store = store_with(task_node(10, "plan", "finished"), task_node(11, "refine", "in-progress", iteration=2))
    timeline = Timeline(store=store)
    rendered(timeline)
    store.events = (EventRecord(1.0, "node.started", node_id="plan", iteration=0),
                    EventRecord(2.0, "node.started", node_id="refine", iteration=2))
    timeline._source.selected.indices = [1]  # what the browser's tap tool sets
    assert store.selected_node == 11
    scores = ScoresView(store=store)
    rendered(scores)
    store.scores = [{"nodeId": "refine", "iteration": 2, "scorerName": "len", "score": 0.4},
                    {"nodeId": "plan", "iteration": 0, "scorerName": "len", "score": 0.9}]
    scores._source.selected.indices = [0]  # rows are sorted by node: plan first
    assert store.selected_node == 10
    scores._source.selected.indices = []  # a tap on nothing keeps the selection
    assert store.selected_node == 10
    # New data clears a selection whose indices would now point at other marks.
    scores._source.selected.indices = [1]
    store.scores = [*store.scores, {"nodeId": "plan", "iteration": 0, "scorerName": "other", "score": 0.1}]
    assert scores._source.selected.indices == []


# ---------------------------------------------------------------------------- in Chromium

#: Page coordinates of the centre of the first bar (``hbar``) or point (``scatter``) of the plot ``id``.
FIRST_MARK = """(id) => {
  const v = Bokeh.index.find_one_by_id(id);
  const r = v.model.renderers.find((r) => r.data_source != null);
  const d = r.data_source.data, g = r.glyph;
  const val = (spec) => d[spec.field][0];
  const x = g.left != null ? (val(g.left) + val(g.right)) / 2 : val(g.x);
  const box = v.canvas_view.el.getBoundingClientRect();
  return [box.left + v.frame.x_scale.compute(x), box.top + v.frame.y_scale.compute(val(g.y))];
}"""


def _hover_then_tap(page: Page, figure_id: str) -> str:
    x, y = page.evaluate(FIRST_MARK, figure_id)
    page.mouse.move(x - 2, y)
    page.mouse.move(x, y)
    tooltip = page.locator(".bk-tooltip-content").first
    tooltip.wait_for(state="visible", timeout=10_000)
    text = tooltip.inner_text()
    assert tooltip.locator("script, img").count() == 0, "Gateway text became markup in the hover"
    page.mouse.click(x, y)
    return text


@pytest.mark.browser
def test_served_charts_hover_is_text_and_tap_selects(chromium: Browser) -> None:
    """In Chromium through a real Panel server: hovering a bar (a point) whose node id (scorer,
    reason) is a script shows it as text, and clicking it selects that node in the store."""
    store = store_with(task_node(10, XSS, "in-progress"), task_node(11, "plan", "finished"))
    store.events = (EventRecord(time.time() - 5, "node.started", node_id=XSS, iteration=0),)
    store.scores = [{"nodeId": "plan", "iteration": 0, "scorerName": XSS, "score": 0.5, "reason": XSS}]
    views: list[Any] = []

    def make() -> Any:
        views[:] = [Timeline(store=store), ScoresView(store=store)]
        return pn.Column(*views, sizing_mode="stretch_width")

    port = free_port()
    server = pn.serve(make, port=port, threaded=True, show=False, start=True)
    context = chromium.new_context(viewport={"width": 1200, "height": 1200})
    page = context.new_page()
    errors: list[str] = []
    dialogs: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    try:
        deadline = time.monotonic() + 20
        while True:  # the server thread needs a moment to listen
            try:
                page.goto(f"http://127.0.0.1:{port}/", wait_until="load")
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                page.wait_for_timeout(100)
        poll(lambda: len(views) == 2, 20, "the session's views", page)
        timeline, scores = views
        for view in views:
            # (the Timeline builds its figure once the page has loaded)
            poll(lambda v=view: hasattr(v, "_figure")
                 and page.evaluate("(id) => Bokeh.index.find_one_by_id(id) != null", v._figure.id),
                 20, "the plot view", page)
        text = _hover_then_tap(page, timeline._figure.id)
        assert XSS in text
        poll(lambda: store.selected_node == 10, 20, "the tapped bar's node selected", page)
        page.mouse.move(5, 5)
        text = _hover_then_tap(page, scores._figure.id)
        assert text.count(XSS) == 2, "scorer and reason as text"
        poll(lambda: store.selected_node == 11, 20, "the tapped point's node selected", page)
        assert errors == [] and dialogs == []
    finally:
        context.close()
        server.stop()


#: Page coordinates of the centre of the timeline bar of ``node`` (the Gantt: the glyph whose
#: data has a ``duration`` column), scrolled into view first.
BAR_OF = """(node) => {
  const view = [...Bokeh.index.query((v) => v.model && v.model.type === "GlyphRenderer")]
    .find((v) => v.model.data_source.data.duration != null);
  if (!view) return null;
  const i = [...view.model.data_source.data.node].indexOf(node);
  if (i < 0) return null;
  const canvas = view.parent.canvas_view.el;
  canvas.scrollIntoView({block: "center"});
  const box = canvas.getBoundingClientRect(), g = view.glyph;
  return [box.left + (g.sleft[i] + g.sright[i]) / 2, box.top + g.sy[i]];
}"""


@pytest.mark.browser
@pytest.mark.gateway
def test_tapping_a_timeline_bar_opens_that_task(gateway: GatewayServer, dashboard: DashboardServer, page: Page) -> None:
    """The real app on a real Gateway run (``rich``): a click on the ``flaky`` task's bar in the
    Timeline tab selects it, and the node detail shows it."""
    run_id = gateway.launch_run("rich")
    gateway.wait_for_run(run_id, timeout=60)
    page.goto(dashboard.url(f"runId={run_id}&nodeId=plan"), wait_until="domcontentloaded")
    expect(page.locator(".sd-node-title")).to_contain_text("plan", timeout=30_000)
    page.locator(".bk-tab", has_text=re.compile(r"^Timeline$")).last.click()
    expect(page.get_by_text(re.compile(r"attempts on \d+ tasks"))).to_be_visible(timeout=30_000)
    point = poll(lambda: page.evaluate(BAR_OF, "flaky"), 20, "the flaky task's bar", page)
    page.mouse.click(*point)
    expect(page.locator(".sd-node-title")).to_contain_text("flaky", timeout=20_000)

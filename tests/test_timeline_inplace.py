"""The timeline and scores charts update IN PLACE: one Bokeh figure for the life of the view.

A regression guard that does not time anything: replacing the chart's plot on every redraw (a
new HoloViews object in a ``pn.pane.HoloViews``) cost the browser 0.3-0.5 s of main-thread time
per redraw on a big live run (docs/performance.md, section 2). These tests render the views into
a Bokeh document, change the store several times and check that the figure, its data source,
glyph and hover tool are the same models as before, that no new plot model appeared, and that
what changed is the data source's data, the row factors and the height; the browser test checks
the same in Chromium (the page keeps one plot view, the same object, across updates) through a
real Panel server, where a change made outside the session's document lock would raise.
"""

from __future__ import annotations

import contextlib
import time
from typing import TYPE_CHECKING, Any

import panel as pn
import pytest
from bokeh.document import Document
from bokeh.models import ColumnDataSource, GlyphRenderer, HoverTool, Plot

from dashboard.format import shorten
from dashboard.store import EventRecord, RunStore
from dashboard.views import ScoresView, Timeline
from dashboard.views.timeline import (
    LABEL_WIDTHS,
    MAX_ROWS,
    ROW_HEIGHT,
    ROW_SLOTS,
    chart_height,
    is_blank_factor,
    label_width,
    row_slots,
)
from inspector import DevToolsTree
from tests import wire
from tests.gateway.server import free_port

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from bokeh.model import Model
    from playwright.sync_api import Browser, Page

XSS = "<script>alert('x')</script><img src=x onerror=alert(2)>"


def rendered(view: Any) -> tuple[Document, Model, list[tuple[str, str]]]:
    """The view's root in a document of its own, and the (model type, attribute) of every
    change the document sees from now on."""
    doc = Document()
    root = pn.panel(view).get_root(doc)
    doc.add_root(root)
    changes: list[tuple[str, str]] = []
    doc.on_change(lambda event: changes.append((type(getattr(event, "model", None)).__name__,
                                                str(getattr(event, "attr", type(event).__name__)))))
    return doc, root, changes


def plots(doc: Document) -> list[Model]:
    return [m for m in doc.models if isinstance(m, Plot)]


def structural(doc: Document) -> dict[str, str]:
    """Ids of the models a plot rebuild would replace: plots, sources, glyph renderers, hovers."""
    kinds = (Plot, ColumnDataSource, GlyphRenderer, HoverTool)
    return {m.id: type(m).__name__ for m in doc.models if isinstance(m, kinds)}


def started(t: float, node: str, **kw: Any) -> EventRecord:
    return EventRecord(t, "node.started", node_id=node, **kw)


def finished(t: float, node: str, event: str = "node.finished", **kw: Any) -> EventRecord:
    return EventRecord(t, event, node_id=node, **kw)


def test_timeline_redraws_change_data_not_the_plot() -> None:
    store = RunStore()
    store.events = (started(1.0, "a"),)
    view = Timeline(store=store)
    doc, root, changes = rendered(view)
    assert len(plots(doc)) == 1
    figure_id, source_id = view._figure.id, view._source.id
    before = structural(doc)
    assert view._source.data["row"] == ["a"]

    events = list(store.events)
    for step in range(1, 7):
        t = 1.0 + step
        events += [finished(t, f"t{step - 1}" if step > 1 else "a"), started(t, f"t{step}"),
                   started(t + 0.1, XSS if step == 3 else f"u{step}", iteration=step)]
        if step == 4:
            events += [finished(t + 0.2, f"u{step}", "node.failed", iteration=step),
                       EventRecord(t + 0.3, "node.retrying", node_id=f"u{step}", iteration=step, attempt=2),
                       started(t + 0.4, f"u{step}", iteration=step)]
        changes.clear()
        store.events = tuple(events)

        # The same plot, data source, glyph and hover; no plot model came or went.
        assert [p.id for p in plots(doc)] == [figure_id]
        assert view._source.id == source_id
        assert structural(doc) == before
        assert root.children[1] is view._figure, "the layout still holds the same figure"
        # What changed: the bars' data, the row factors (when rows came), the height.
        assert ("ColumnDataSource", "data") in changes
        assert ("Column", "children") not in changes and not any(kind == "RootAddedEvent" for _, kind in changes)
        assert {model for model, _ in changes} <= {"ColumnDataSource", "FactorRange", "figure", "HTML", "Span",
                                                   "CustomJSTickFormatter"}
        rows = list(dict.fromkeys(view._source.data["row"]))
        factors = list(view._figure.y_range.factors)
        slots = row_slots(len(rows))
        assert len(factors) == slots and all(is_blank_factor(f) for f in factors[: slots - len(rows)])
        assert factors[slots - len(rows):] == sorted(rows, key=lambda r: rows.index(r), reverse=True)
        assert view._figure.height == max(160, 60 + ROW_HEIGHT * slots)
    assert len(view._source.data["row"]) == 1 + 6 * 2 + 1, "every attempt is a bar (u4 retried)"
    data = view._source.data
    assert [(o, a) for n, o, a in zip(data["node"], data["outcome"], data["attempt"], strict=True) if n == "u4"] == [
        ("failed", 1), ("running", 2)]
    assert "u4 [4]" in view._figure.y_range.factors and shorten(XSS + " [3]") in view._figure.y_range.factors
    assert view._figure.y_range.factors[-1] == "a", "the oldest task is the top row"
    assert "14 attempts on 13 tasks · 1 failed · 1 retry" in view._note.object
    # The hover shows Gateway text as text: plain @field references (Bokeh escapes them).
    (hover,) = [m for m in doc.models if isinstance(m, HoverTool)]
    assert [name for name, _ in hover.tooltips] == ["node", "iteration", "attempt", "outcome", "duration"]
    assert all("{safe}" not in value for _, value in hover.tooltips)


def test_timeline_many_tasks_keep_readable_rows() -> None:
    """A burst of many tasks grows the figure (22 px a row, at most MAX_ROWS rows); it never
    squeezes the bars; and the cap keeps running and failed tasks."""
    store = RunStore()
    view = Timeline(store=store)
    doc, _, _ = rendered(view)
    events = [started(float(i), f"task-{i}") for i in range(400)]
    events += [finished(400.0 + i, f"task-{i}") for i in range(5, 400)]
    events += [finished(900.0, "task-0", "node.failed")]
    store.events = tuple(events)
    factors = list(view._figure.y_range.factors)
    assert len(factors) == MAX_ROWS
    assert view._figure.height == 60 + ROW_HEIGHT * MAX_ROWS
    assert {"task-0", "task-1", "task-4", "task-399"} <= set(factors)
    assert len(plots(doc)) == 1


def test_timeline_grows_in_steps_so_the_page_is_laid_out_rarely() -> None:
    """A new figure height makes BokehJS lay out the whole page again: as a run's tasks start
    one by one, the height changes only at the steps of ROW_SLOTS, never per row, and blank
    rows (never equal to a Gateway label, even a zero-width one) hold the space below."""
    store = RunStore()
    view = Timeline(store=store)
    doc, _, changes = rendered(view)
    heights = []
    events: list[EventRecord] = [started(0.0, "\u200b")]  # a hostile id that looks like a blank row
    for i in range(1, 60):
        events.append(started(float(i), f"task-{i}"))
        store.events = tuple(events)
        if not heights or heights[-1] != view._figure.height:
            heights.append(view._figure.height)
        factors = list(view._figure.y_range.factors)
        assert len(set(factors)) == len(factors), "no duplicate factor (BokehJS would throw)"
        assert factors[-1] == view._source.data["row"][0], "the oldest row on top"
        if len(events) <= MAX_ROWS:
            assert factors[-2:] == ["task-1", "\u200b"]
    assert heights == [chart_height(slots) for slots in ROW_SLOTS]
    changes.clear()
    store.events = ()  # another run: nothing to show; the next one starts small again
    assert view._figure.visible is False
    store.events = (started(100.0, "next"),)
    assert view._figure.height == chart_height(ROW_SLOTS[0])
    assert list(view._figure.y_range.factors)[-1] == "next"
    # Once the run has ended, no row will come: the figure fits its rows, no blank ones.
    store.events = (started(100.0, "next"), finished(101.0, "next"), started(102.0, "last"))
    store.run = {"runId": "r", "status": "finished"}
    assert list(view._figure.y_range.factors) == ["last", "next"]
    assert view._figure.height == chart_height(2)


def test_a_big_runs_figure_takes_its_live_height_at_once() -> None:
    """The tree lists a run's tasks before they start: a live run with more tasks than the
    chart shows is drawn at its full live height from its first bar, and keeps it as its tasks
    start (growing by ROW_SLOTS as they started was a layout of the whole page each time, the
    longest task of a run page's first seconds beside the Monitor). A small run is sized for
    its tasks; an ended run still fits its rows."""
    big = RunStore()
    big.tree = DevToolsTree()
    big.tree.apply(wire.snap(wire.node(1, [wire.task(10 + i, f"task-{i}") for i in range(40)], type="workflow")))
    view = Timeline(store=big)
    rendered(view)
    heights = set()
    for started_tasks in range(1, 40, 3):
        big.events = tuple(started(float(i), f"task-{i}") for i in range(started_tasks))
        heights.add(view._figure.height)
    assert heights == {chart_height(MAX_ROWS)}

    small = RunStore()
    small.tree = DevToolsTree()
    small.tree.apply(wire.snap(wire.node(1, [wire.task(10 + i, f"task-{i}") for i in range(12)], type="workflow")))
    small_view = Timeline(store=small)
    rendered(small_view)
    small.events = (started(0.0, "task-0"),)
    assert small_view._figure.height == chart_height(row_slots(12))
    small.run = {"runId": "r", "status": "finished"}
    assert small_view._figure.height == chart_height(1)


def test_the_task_axis_keeps_its_width_while_the_run_streams() -> None:
    """BokehJS lays the plot out again whenever an axis changes size: while a run is live the
    task labels are padded (monospace, in the browser) to a width that steps up through
    LABEL_WIDTHS and never down, so ``a-9`` giving way to ``b-120`` changes nothing; an ended
    run's axis fits its labels; another run starts narrow again."""
    assert label_width([]) == LABEL_WIDTHS[0] and label_width(["x" * 9]) == 16 and label_width(["x" * 3], 24) == 24
    store = RunStore()
    view = Timeline(store=store)
    doc, _, changes = rendered(view)
    (axis,) = view._figure.yaxis
    assert axis.major_label_text_font == "monospace"
    # The time axis keeps its height too: one date line under its first tick at every scale
    # (no second line under millisecond ticks, none missing from months on).
    context = view._figure.xaxis[0].formatter.context
    assert context.context is None
    assert all(getattr(context, scale) for scale in ("microseconds", "milliseconds", "seconds", "minsec", "minutes",
                                                     "hourmin", "hours", "days", "months", "years"))
    widths = []
    events: list[EventRecord] = []
    names = ["a-9", "b-120", "c", "dddddddddd", "e", "f-1"]
    for i, node in enumerate(names):
        events.append(started(float(i), node))
        if i:
            events.append(finished(i + 0.5, names[i - 1]))
        store.events = tuple(events)
        width = axis.formatter.args["width"]
        if not widths or widths[-1] != width:
            widths.append(width)
    assert widths == [8, 16], "one step for the 10-character label, none back down"
    changes.clear()
    events.append(started(7.0, "g"))
    store.events = tuple(events)  # a redraw whose labels fit: the formatter stays
    assert ("ColumnDataSource", "data") in changes and ("CustomJSTickFormatter", "args") not in changes
    store.run = {"runId": "r", "status": "finished"}
    store.events = tuple(events)
    assert axis.formatter.args["width"] == len("dddddddddd"), "an ended run's axis fits its labels"
    store.run = {"runId": "s", "status": "running"}
    store.events = ()
    store.events = (started(100.0, "next"),)
    assert axis.formatter.args["width"] == LABEL_WIDTHS[0]
    assert len(plots(doc)) == 1


def test_long_node_ids_and_scorer_names_are_shortened_on_the_charts_only() -> None:
    """A 300-character node id or scorer name would push the plot off the page: the axes and
    the legend shorten it; the data (and so the hover) keeps it whole."""
    long_id = "n" * 300
    store = RunStore()
    timeline = Timeline(store=store)
    rendered(timeline)
    store.events = (started(1.0, long_id), started(2.0, "short"))
    factors = list(timeline._figure.y_range.factors)
    assert factors[-1] == "n" * 31 + "…" and "short" in factors
    assert long_id in timeline._source.data["node"]
    scores = ScoresView(store=store)
    rendered(scores)
    store.scores = [{"nodeId": long_id, "iteration": 0, "scorerName": "s" * 300, "score": 0.5, "reason": "r"},
                    {"nodeId": long_id, "iteration": 1, "scorerName": "s", "score": 0.5, "reason": "r"}]
    assert list(scores._figure.x_range.factors) == ["n" * 31 + "…", "n" * 28 + "… #2"]
    assert scores._source.data["node"] == [long_id, long_id]
    assert scores._source.data["scorer"] == ["s" * 300, "s"]
    assert [len(x) for x in scores._source.data["scorer_label"]] == [24, 1]


def test_hidden_timeline_does_no_work_until_shown() -> None:
    store = RunStore()
    view = Timeline(store=store)
    store.events = (started(1.0, "a"),)  # never rendered: nothing on screen to update
    assert view._stale and view._source.data["row"] == []
    doc, _, _ = rendered(view)
    view.refresh()
    assert not view._stale and view._source.data["row"] == ["a"]
    assert len(plots(doc)) == 1


def test_scores_update_data_not_the_plot() -> None:
    store = RunStore()
    view = ScoresView(store=store)
    doc, root, changes = rendered(view)
    figure_id = view._figure.id
    before = structural(doc)
    rows: list[dict[str, Any]] = []
    for i in range(4):
        rows.append({"nodeId": f"n{i}", "iteration": i % 2, "scorerName": f"s{i % 3}", "score": 0.2 * i, "reason": XSS})
        changes.clear()
        store.scores = list(rows)
        assert [p.id for p in plots(doc)] == [figure_id]
        assert structural(doc) == before
        assert ("ColumnDataSource", "data") in changes
        assert ("Column", "children") not in changes
    assert list(view._figure.x_range.factors) == ["n0[0]", "n1[1]", "n2[0]", "n3[1]"]
    assert list(view._colours.factors) == ["s0", "s1", "s2"]
    assert view._source.data["reason"] == [XSS] * 4
    assert view._figure.y_range.end == pytest.approx(1.05)
    store.scores = [*rows, {"nodeId": "n9", "scorerName": "s0", "score": 2.0}]
    assert view._figure.y_range.end == pytest.approx(2.1)
    (hover,) = [m for m in doc.models if isinstance(m, HoverTool)]
    assert all("{safe}" not in value for _, value in hover.tooltips)


# ---------------------------------------------------------------------------- in Chromium

FACTORS = """(figureId) => [...Bokeh.index.find_one_by_id(figureId).model.y_range.factors]"""

PLOT_VIEWS = """(figureId) => {
  const views = [...Bokeh.index.query((v) => v.model != null && (v.model.type === "Figure" || v.model.type === "Plot"))];
  const mine = views.find((v) => v.model.id === figureId);
  const source = mine ? mine.model.renderers[0].data_source : null;
  return {plots: views.length, stamp: mine ? (mine.__stamp || null) : null,
          rows: source ? source.data.row.length : -1, factors: mine ? mine.model.y_range.factors.length : -1,
          canvases: views.map((v) => v.canvas_view ? 1 : 0).reduce((a, b) => a + b, 0)};
}"""


def poll(predicate: Callable[[], Any], timeout: float, what: str, page: Any) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = predicate()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        page.wait_for_timeout(20)


@contextlib.contextmanager
def served_timeline(chromium: Browser, store: RunStore, built: Callable[[Timeline], None] | None = None,
                    ) -> Iterator[tuple[Page, list[Timeline], list[str]]]:
    """A Timeline of ``store`` served by a real Panel server and open in Chromium: the page,
    the session's view (once it has built its chart) and the page's errors. ``built`` is called in the
    session, with the view, right after it is built."""
    views: list[Timeline] = []

    def make() -> Any:
        view = Timeline(store=store)
        views.append(view)
        if built is not None:
            built(view)
        return view

    port = free_port()
    server = pn.serve(make, port=port, threaded=True, show=False, start=True)
    context = chromium.new_context(viewport={"width": 1200, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
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
        # Once the page has loaded, the view builds its chart.
        poll(lambda: views and hasattr(views[0], "_figure"), 20, "the session's view and its chart", page)
        yield page, views, errors
    finally:
        context.close()
        server.stop()


@pytest.mark.browser
def test_served_timeline_keeps_one_plot_view(chromium: Browser) -> None:
    """Through a real Panel server (changes land on the session's next tick, under its lock)
    into Chromium: after several store updates the page still has one plot view, the very
    same object (a stamp set on it survives), showing the new bars."""
    store = RunStore()
    store.events = (started(time.time() - 5, "a"),)
    with served_timeline(chromium, store) as (page, views, errors):
        figure_id = views[0]._figure.id
        state = poll(lambda: (s := page.evaluate(PLOT_VIEWS, figure_id))["rows"] == 1 and s, 20, "the first bar", page)
        assert state["plots"] == 1
        page.evaluate("(id) => { Bokeh.index.find_one_by_id(id).__stamp = 'first'; }", figure_id)
        now = time.time()
        events = list(store.events)
        for step in range(1, 3):  # 21 rows: under MAX_ROWS
            events += [started(now + step * 0.1, f"task-{step}-{i}") for i in range(10)]
            store.events = tuple(events)  # the Throttle (no loop in this thread) redraws at once
            want = 1 + 10 * step
            state = poll(lambda w=want: (s := page.evaluate(PLOT_VIEWS, figure_id))["rows"] == w and s, 20,
                         f"{want} bars", page)
            assert state == {"plots": 1, "stamp": "first", "rows": want, "factors": row_slots(want), "canvases": 1}
        assert views[0]._figure.id == figure_id and len(views) == 1
        assert errors == []


#: Counts the task axis' changes of width on the plot view of ``figureId`` (what makes BokehJS
#: lay the whole plot out again), from the check BokehJS itself runs before each repaint.
AXIS_WIDTH_HOOK = """(figureId) => {
  const view = Bokeh.index.find_one_by_id(figureId);
  const axis = view.renderer_views.get(view.model.left[0]);
  if (!(axis.layout.bbox.width > 0)) return false;  // not laid out yet
  window.__axisWidths = [];
  const check = view._invalidate_layout_if_needed.bind(view);
  view._invalidate_layout_if_needed = () => {
    const {width} = axis.layout._content_size();
    if (width !== axis.layout.bbox.width) window.__axisWidths.push([axis.layout.bbox.width, width]);
    return check();
  };
  return true;
}"""

AXIS_LABELS = """(figureId) => {
  const view = Bokeh.index.find_one_by_id(figureId);
  const axis = view.model.left[0];
  const factors = view.model.y_range.factors;
  return axis.formatter.format_graphics(factors, {loc: 0}).map((label) => label.text);
}"""


@pytest.mark.browser
def test_served_timeline_keeps_its_axis_width_as_labels_change(chromium: Browser) -> None:
    """In Chromium: while the run is live, tasks of other name lengths (``a-9``, ``b-120``,
    ``c``) come and go and the task axis keeps its width, so BokehJS never lays the plot out
    again for them (it did on every such change: the longest tasks of a streaming page)."""
    store = RunStore()
    now = time.time()
    events = [started(now - 5, "a-9")]
    store.events = tuple(events)
    with served_timeline(chromium, store) as (page, views, errors):
        figure_id = views[0]._figure.id
        poll(lambda: page.evaluate(PLOT_VIEWS, figure_id)["rows"] == 1, 20, "the first bar", page)
        poll(lambda: page.evaluate(AXIS_WIDTH_HOOK, figure_id), 20, "the axis laid out", page)
        for step, (done, node) in enumerate([("a-9", "b-120"), ("b-120", "c"), ("c", "dd-7")], start=1):
            events += [finished(now - 5 + step, done), started(now - 5 + step, node)]
            store.events = tuple(events)
            poll(lambda n=node: n in page.evaluate(FACTORS, figure_id), 20, f"the row of {node}", page)
        assert page.evaluate("window.__axisWidths") == [], "the axis changed width: the plot was laid out again"
        labels = page.evaluate(AXIS_LABELS, figure_id)
        assert [label.strip() for label in labels[-4:]] == ["dd-7", "c", "b-120", "a-9"]
        assert {len(label) for label in labels[-4:]} == {8}, "padded to the width's first step"
        assert errors == []


#: Records, for every patch the server sends the page, what each of its events changed.
PATCH_HOOK = """() => {
  const doc = Bokeh.documents[0];
  window.__patches = [];
  const apply = doc.apply_json_patch.bind(doc);
  doc.apply_json_patch = (patch, ...rest) => {
    window.__patches.push((patch.events || []).map((e) => e.attr || e.kind));
    return apply(patch, ...rest);
  };
  return true;
}"""


@pytest.mark.browser
def test_served_timeline_sends_rows_and_bars_as_one_change(chromium: Browser) -> None:
    """In Chromium: with the chart full (MAX_ROWS), tasks that start push finished ones off it.
    The new rows and the new bars reach BokehJS in one patch: sent apart, a repaint between
    them drew the old bars on the new rows (no bounds: both axes lost their size and the plot
    was laid out twice, ~20-60 ms each, traced beside a streaming tree)."""
    store = RunStore()
    now = time.time()
    events = [started(now - 30 + i * 0.1, f"t-{i}") for i in range(MAX_ROWS)]
    store.events = tuple(events)
    with served_timeline(chromium, store) as (page, views, errors):
        figure_id = views[0]._figure.id
        poll(lambda: page.evaluate(PLOT_VIEWS, figure_id)["rows"] == MAX_ROWS, 20, "the first bars", page)
        page.evaluate(PATCH_HOOK)
        for step in range(5):
            for i in range(2):
                k = 2 * step + i
                events += [finished(now - 10 + k * 0.1, f"t-{k}"), started(now - 10 + k * 0.1, f"u-{k}")]
            store.events = tuple(events)
            last = f"u-{2 * step + 1}"
            poll(lambda n=last: n in page.evaluate(FACTORS, figure_id), 20, f"the row of {last}", page)
        assert "t-0" not in page.evaluate(FACTORS, figure_id), "finished rows gave way"
        with_rows = [attrs for attrs in page.evaluate("window.__patches") if "factors" in attrs]
        assert len(with_rows) == 5
        assert all("data" in attrs for attrs in with_rows), f"rows and bars sent apart: {with_rows}"
        assert errors == []


@pytest.mark.browser
def test_served_timeline_joins_the_page_drawn(chromium: Browser) -> None:
    """The chart joins the page (once it has loaded) as it is, in the patch that adds it.
    Tasks that started after the view was built (a run page's store catching up) used to be
    drawn after the join: three page layouts in a row (the join, the chart turning visible,
    its rows and height), the longest tasks of a run page's first second beside the Monitor."""
    store = RunStore()
    now = time.time()
    changed: list[Any] = []

    def built(view: Timeline) -> None:
        store.events = tuple(started(now - 5 + i * 0.1, f"t-{i}") for i in range(12))
        pn.state.curdoc.on_change(changed.append)  # what the session sends the page from now on

    with served_timeline(chromium, store, built) as (page, views, errors):
        figure = views[0]._figure
        poll(lambda: page.evaluate(PLOT_VIEWS, figure.id)["rows"] == 12, 20, "the bars", page)
        # Shown: built with nothing to draw, the chart was hidden before it ever had a model.
        assert page.evaluate("(id) => Bokeh.index.find_one_by_id(id).model.visible", figure.id) is True
        chart = {model.id for model in figure.references()}
        joined = [e for e in changed if getattr(e, "attr", None) == "children"
                  and chart <= {m.id for m in e.model.references()}]
        later = [(type(e.model).__name__, e.attr) for e in changed if getattr(e, "model", None) is not None
                 and e.model.id in chart and e.setter is None]  # sent by the server, not synced back
        assert len(joined) == 1 and later == [], f"the chart changed after it joined: {later}"
        assert errors == []

"""The timeline and scores charts update IN PLACE: one plot for the life of the view.

A regression guard that does not time anything: replacing the chart's plot on every redraw
(a new HoloViews object in a ``pn.pane.HoloViews``) cost the browser 0.3-0.5 s of main-thread
time per redraw on a big live run (docs/performance.md, section 2). The charts are
``hv.DynamicMap`` s over a ``Pipe``; these tests render the views into a Bokeh document, change
the store several times and check that the plot, its data source, glyph renderer and hover
tool are the same models as before, that no plot model appeared, and that what changed is the
data source's data, the axis ranges and ticks and the height; the browser test checks the same
in Chromium (the page keeps one plot view, the same object, across updates) through a real
Panel server, where a change made outside the session's document lock would raise.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import panel as pn
import pytest
from bokeh.document import Document
from bokeh.models import ColumnDataSource, GlyphRenderer, HoverTool, Plot

from dashboard.format import shorten
from dashboard.store import EventRecord, RunStore
from dashboard.views import ScoresView, Timeline
from dashboard.views.timeline import MAX_ROWS, ROW_HEIGHT, ROW_SLOTS, chart_height, row_slots
from tests.gateway.server import free_port

if TYPE_CHECKING:
    from collections.abc import Callable

    from bokeh.model import Model
    from playwright.sync_api import Browser

XSS = "<script>alert('x')</script><img src=x onerror=alert(2)>"

#: Models a data update may change: the data, the ranges, the axis ticks and labels, the
#: figure's height (and HoloViews' ``hold_render``), the "now" line, the note above.
IN_PLACE = {"ColumnDataSource", "Range1d", "FixedTicker", "LinearAxis", "figure", "Span", "HTML", "HoverTool",
            "Quad", "Scatter", "DataTabulator"}


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


def figure_of(view: Any) -> Any:
    """The Bokeh figure HoloViews drew the view's chart on."""
    ((plot, _),) = view._chart._plots.values()
    return plot.state


def source_of(view: Any) -> ColumnDataSource:
    (renderer,) = [r for r in figure_of(view).renderers if isinstance(r, GlyphRenderer)]
    return renderer.data_source


def ticks(axis: Any) -> list[str]:
    """The axis' labels, from its first tick position up."""
    overrides = axis.major_label_overrides
    return [overrides[k] for k in sorted(overrides)]


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
    fig = figure_of(view)
    source_id = source_of(view).id
    before = structural(doc)
    assert list(source_of(view).data["row"]) == ["a"]

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
        assert [p.id for p in plots(doc)] == [fig.id]
        assert source_of(view).id == source_id
        assert structural(doc) == before
        assert figure_of(view) is fig, "HoloViews kept its plot"
        # What changed: the bars' data, the ranges, the row ticks, the height.
        assert ("ColumnDataSource", "data") in changes
        assert not any(kind == "RootAddedEvent" for _, kind in changes)
        assert ("Column", "children") not in changes and ("Row", "children") not in changes
        assert {model for model, _ in changes} <= IN_PLACE, changes
        source = source_of(view)
        rows = list(dict.fromkeys(source.data["row"]))
        slots = row_slots(len(rows))
        labels = ticks(fig.yaxis[0])
        assert labels == rows[::-1], "one tick per task row, the oldest on top"
        assert (fig.y_range.start, fig.y_range.end) == (-0.5, slots - 0.5), "blank rows below the task rows"
        assert fig.height == max(160, 60 + ROW_HEIGHT * slots)
    data = source_of(view).data
    assert len(data["row"]) == 1 + 6 * 2 + 1, "every attempt is a bar (u4 retried)"
    assert [(o, a) for n, o, a in zip(data["node"], data["outcome"], data["attempt"], strict=True) if n == "u4"] == [
        ("failed", 1), ("running", 2)]
    assert "u4 [4]" in ticks(fig.yaxis[0]) and shorten(XSS + " [3]") in ticks(fig.yaxis[0])
    assert ticks(fig.yaxis[0])[-1] == "a", "the oldest task is the top row"
    assert "14 attempts on 13 tasks · 1 failed · 1 retries" in view._note.object
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
    fig = figure_of(view)
    labels = ticks(fig.yaxis[0])
    assert len(labels) == MAX_ROWS
    assert fig.height == 60 + ROW_HEIGHT * MAX_ROWS
    assert {"task-0", "task-1", "task-4", "task-399"} <= set(labels)
    assert len(plots(doc)) == 1


def test_timeline_grows_in_steps_so_the_page_is_laid_out_rarely() -> None:
    """A new figure height makes BokehJS lay out the whole page again: as a run's tasks start
    one by one, the height changes only at the steps of ROW_SLOTS, never per row, and the
    blank rows are below the task rows (a hostile id that looks blank is just a row)."""
    store = RunStore()
    view = Timeline(store=store)
    rendered(view)
    fig = figure_of(view)
    heights = []
    events: list[EventRecord] = [started(0.0, "\u200b")]
    for i in range(1, 60):
        events.append(started(float(i), f"task-{i}"))
        store.events = tuple(events)
        if not heights or heights[-1] != fig.height:
            heights.append(fig.height)
        positions = sorted(fig.yaxis[0].major_label_overrides)
        rows = min(len(events), MAX_ROWS)
        assert len(positions) == rows
        assert positions[-1] == fig.y_range.end - 0.5, "the top row is the chart's top"
        if len(events) <= MAX_ROWS:
            assert ticks(fig.yaxis[0])[-2:] == ["task-1", "\u200b"]
    assert heights == [chart_height(slots) for slots in ROW_SLOTS]
    store.events = ()  # another run: nothing to show; the next one starts small again
    assert view._chart.visible is False
    store.events = (started(100.0, "next"),)
    assert fig.height == chart_height(ROW_SLOTS[0])
    assert ticks(fig.yaxis[0]) == ["next"]
    # Once the run has ended, no row will come: the figure fits its rows, no blank ones.
    store.events = (started(100.0, "next"), finished(101.0, "next"), started(102.0, "last"))
    store.run = {"runId": "r", "status": "finished"}
    assert ticks(fig.yaxis[0]) == ["last", "next"]
    assert (fig.y_range.start, fig.y_range.end) == (-0.5, 1.5)
    assert fig.height == chart_height(2)


def test_long_node_ids_and_scorer_names_are_shortened_on_the_charts_only() -> None:
    """A 300-character node id or scorer name would push the plot off the page: the axes and
    the legend shorten it; the data (and so the hover) keeps it whole."""
    long_id = "n" * 300
    store = RunStore()
    timeline = Timeline(store=store)
    rendered(timeline)
    store.events = (started(1.0, long_id), started(2.0, "short"))
    labels = ticks(figure_of(timeline).yaxis[0])
    assert labels[-1] == "n" * 31 + "…" and "short" in labels
    assert long_id in list(source_of(timeline).data["node"])
    scores = ScoresView(store=store)
    rendered(scores)
    store.scores = [{"nodeId": long_id, "iteration": 0, "scorerName": "s" * 300, "score": 0.5, "reason": "r"},
                    {"nodeId": long_id, "iteration": 1, "scorerName": "s", "score": 0.5, "reason": "r"}]
    assert ticks(figure_of(scores).xaxis[0]) == ["n" * 31 + "…", "n" * 28 + "… #2"]
    data = source_of(scores).data
    assert list(data["node"]) == [long_id, long_id]
    assert list(data["scorer"]) == ["s" * 300, "s"]
    assert [len(x) for x in data["scorer_label"]] == [24, 1]
    assert "s" * 23 + "…" in scores._legend.object and "s" * 300 not in scores._legend.object


def test_hidden_timeline_does_no_work_until_shown() -> None:
    store = RunStore()
    view = Timeline(store=store)
    store.events = (started(1.0, "a"),)  # never rendered: nothing on screen to update
    assert view._stale and view._pipe.data.bars.empty
    doc, _, _ = rendered(view)
    view.refresh()
    assert not view._stale and list(source_of(view).data["row"]) == ["a"]
    assert len(plots(doc)) == 1


def test_scores_update_data_not_the_plot() -> None:
    store = RunStore()
    view = ScoresView(store=store)
    doc, _, changes = rendered(view)
    fig = figure_of(view)
    before = structural(doc)
    rows: list[dict[str, Any]] = []
    for i in range(4):
        rows.append({"nodeId": f"n{i}", "iteration": i % 2, "scorerName": f"s{i % 3}", "score": 0.2 * i, "reason": XSS})
        changes.clear()
        store.scores = list(rows)
        assert [p.id for p in plots(doc)] == [fig.id]
        assert structural(doc) == before
        assert ("ColumnDataSource", "data") in changes
        assert ("Column", "children") not in changes
        assert {model for model, _ in changes} <= IN_PLACE, changes
    assert ticks(fig.xaxis[0]) == ["n0[0]", "n1[1]", "n2[0]", "n3[1]"]
    data = source_of(view).data
    assert list(dict.fromkeys(data["scorer"])) == ["s0", "s1", "s2"]
    assert len(set(data["color"])) == 3, "one colour per scorer"
    assert list(data["reason"]) == [XSS] * 4
    assert fig.y_range.end == pytest.approx(1.05)
    store.scores = [*rows, {"nodeId": "n9", "scorerName": "s0", "score": 2.0}]
    assert fig.y_range.end == pytest.approx(2.1)
    (hover,) = [m for m in doc.models if isinstance(m, HoverTool)]
    assert all("{safe}" not in value for _, value in hover.tooltips)


# ---------------------------------------------------------------------------- in Chromium

PLOT_VIEWS = """(figureId) => {
  const views = [...Bokeh.index.query((v) => v.model != null && (v.model.type === "Figure" || v.model.type === "Plot"))];
  const mine = views.find((v) => v.model.id === figureId);
  const glyphs = mine ? mine.model.renderers.filter((r) => r.data_source != null) : [];
  const source = glyphs.length ? glyphs[0].data_source : null;
  const axis = mine ? mine.model.left.find((a) => a.ticker != null) : null;
  return {plots: views.length, stamp: mine ? (mine.__stamp || null) : null,
          rows: source ? source.data.row.length : -1, ticks: axis ? axis.ticker.ticks.length : -1,
          top: mine ? mine.model.y_range.end : null,
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


@pytest.mark.browser
def test_served_timeline_keeps_one_plot_view(chromium: Browser) -> None:
    """Through a real Panel server (changes land on the session's next tick, under its lock)
    into Chromium: after several store updates the page still has one plot view, the very
    same object (a stamp set on it survives), showing the new bars."""
    store = RunStore()
    store.events = (started(time.time() - 5, "a"),)
    views: list[Timeline] = []

    def make() -> Any:
        view = Timeline(store=store)
        views.append(view)
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
        poll(lambda: views and views[0]._chart._plots, 20, "the session's view", page)
        figure_id = figure_of(views[0]).id
        state = poll(lambda: (s := page.evaluate(PLOT_VIEWS, figure_id))["rows"] == 1 and s, 20, "the first bar", page)
        assert state["plots"] == 1
        page.evaluate("(id) => { Bokeh.index.find_one_by_id(id).__stamp = 'first'; }", figure_id)
        now = time.time()
        events = list(store.events)
        for step in range(1, 5):  # 41 rows: under MAX_ROWS
            events += [started(now + step * 0.1, f"task-{step}-{i}") for i in range(10)]
            store.events = tuple(events)  # the Throttle (no loop in this thread) redraws at once
            want = 1 + 10 * step
            state = poll(lambda w=want: (s := page.evaluate(PLOT_VIEWS, figure_id))["rows"] == w and s, 20,
                         f"{want} bars", page)
            assert state == {"plots": 1, "stamp": "first", "rows": want, "ticks": want,
                             "top": row_slots(want) - 0.5, "canvases": 1}
        assert figure_of(views[0]).id == figure_id and len(views) == 1
        assert errors == []
    finally:
        context.close()
        server.stop()

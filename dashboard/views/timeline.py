# mypy: allow-untyped-calls
"""Timeline: a Gantt of task attempts over time: what ran in parallel, what retried,
what took long.

Built from the run events the store logged (``node.pending`` gives a node's iteration,
``node.started`` opens an attempt, ``node.retrying`` names the next attempt,
``node.finished`` / ``node.failed`` close it) plus the tree for tasks still running.
Live node events carry no timestamps: their times are when the hub received them (a few
ms after the fact). Events from before we looked come from the Gateway's event replay
(``streamRunEvents``) stamped with the times of its durable history (``/v1/api/events``).

The chart is ONE Bokeh figure for the life of the view, updated in place
(:class:`InPlaceChart`): a redraw replaces its ``ColumnDataSource.data``, its row factors
and its height, never the figure. Replacing the figure (what a new HoloViews object in a
``pn.pane.HoloViews`` does) makes the browser build a new plot view per redraw: 0.3-0.5 s of
main-thread time on a big live run (docs/performance.md, section 2), and 0.4-0.7 s of the
server's loop. Measured against a HoloViews ``DynamicMap`` over a ``Pipe`` (which does update
in place), this figure costs the server a sixth and the browser's longest task a seventh
(docs/performance.md, "Charts: HoloViews vs Bokeh"). Hover tooltips use plain ``@field``
references, which Bokeh escapes (never ``{safe}``): node ids are Gateway text. Tapping a
bar selects its task on the whole page (``RunStore.select_task``); a dashed line marks "now"
while the run is live.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import panel as pn
from bokeh.models import (
    ColumnDataSource,
    CustomJSTickFormatter,
    DatetimeTickFormatter,
    FactorRange,
    HoverTool,
    TapTool,
)
from bokeh.models.annotations.geometry import Span
from bokeh.plotting import figure

from inspector.vocabulary import (
    DONE_TASK_STATES,
    NODE_EVENT_PREFIX,
    NODE_EVENT_STATE,
    TERMINAL_RUN_STATUSES,
    RunEventName,
    TaskState,
)

from ..format import STATE_COLOURS, format_duration, short_labels
from .base import StoreView
from .widgets import Throttle

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping

    from bokeh.document import Document

    from ..store import EventRecord

__all__ = ["Attempt", "InPlaceChart", "Timeline", "build_attempts", "is_blank_factor", "label_width", "padded_factors",
           "row_slots", "timeline_chart", "timeline_data"]

_OUTCOME_COLOURS = {
    "running": STATE_COLOURS[TaskState.IN_PROGRESS],
    **{state.value: STATE_COLOURS[state] for state in DONE_TASK_STATES},
    "interrupted": "#80868b",
}
#: Node events that close an attempt, and the outcome they give it.
_CLOSE = {name.value: state.value for name, state in NODE_EVENT_STATE.items() if state in DONE_TASK_STATES}


@dataclass(slots=True)
class Attempt:
    node_id: str
    iteration: int
    attempt: int
    start: float
    end: float | None = None
    outcome: str = "running"

    @property
    def row(self) -> str:
        return f"{self.node_id} [{self.iteration}]" if self.iteration else self.node_id


def build_attempts(events: Iterable[EventRecord], states: Mapping[tuple[str, int], str] | None = None) -> list[Attempt]:
    """Attempts from the event log, oldest first.

    ``states`` maps (nodeId, iteration) to the task state the tree shows now: an attempt
    still open in the log whose task the tree says is over (its closing event was
    missed, e.g. across a resync) is closed with that outcome at the last event's time.
    """
    iteration: dict[str, int] = {}
    next_attempt: dict[tuple[str, int], int] = {}
    open_: dict[tuple[str, int], Attempt] = {}
    out: list[Attempt] = []
    last = 0.0
    for e in events:
        last = max(last, e.time)
        if not e.node_id or not e.event.startswith(NODE_EVENT_PREFIX):
            continue
        node = e.node_id
        if e.iteration is not None:
            iteration[node] = e.iteration
        key = (node, e.iteration if e.iteration is not None else iteration.get(node, 0))
        if e.event == RunEventName.NODE_RETRYING:
            next_attempt[key] = e.attempt or next_attempt.get(key, 1) + 1
            continue
        if e.event == RunEventName.NODE_STARTED:
            prev = open_.pop(key, None)
            if prev is not None:
                prev.end, prev.outcome = e.time, "interrupted"
            number = e.attempt or next_attempt.get(key) or (sum(1 for a in out if (a.node_id, a.iteration) == key) + 1)
            next_attempt[key] = number + 1
            attempt = Attempt(node, key[1], number, e.time)
            open_[key] = attempt
            out.append(attempt)
            continue
        outcome = _CLOSE.get(e.event)
        if outcome is not None:
            current = open_.pop(key, None)
            if current is not None:
                current.end, current.outcome = e.time, outcome
    for key, attempt in open_.items():
        # Only a state that ends an attempt closes it: a task the tree still shows pending
        # has just started (run events can arrive before the DevTools delta that says so).
        state = (states or {}).get(key)
        if state in DONE_TASK_STATES:
            attempt.end = last
            attempt.outcome = state
    return out


#: Most task rows the chart draws, at :data:`ROW_HEIGHT` px a row. The browser's cost of a
#: redraw is mostly handing the repainted canvas to the compositor, which grows with the
#: canvas: traced on a big live run (2 cores, software compositing), 150 rows (a 3,360 px
#: canvas) cost ~0.3 s of main thread per second of redraws, 50 rows ~0.17 s. One repaint
#: is one main-thread task, and on the full page beside a streaming tree it was the page's
#: longest (a 50-row repaint: 20-130 ms on a quiet machine, the axis labels' extents and
#: BokehJS's computed-style reads most of it): 30 rows keep it under the 100 ms a page may
#: block for while a run streams (docs/performance.md, "Issue 14: full page vs the Monitor").
MAX_ROWS = 30

#: Seconds between redraws at least (the chart's own clock: running bars grow). See
#: :meth:`Timeline._update` for the upper part of the interval.
MIN_INTERVAL = 2.0

#: Pixels per task row. A bar is :data:`BAR_HEIGHT` of its row (14 px): the figure grows with
#: its rows instead of squeezing them, so a burst of many tasks keeps readable bars.
ROW_HEIGHT = 22
BAR_HEIGHT = 0.64

#: Shortest bar drawn, as a share of the chart's time span: a 20 ms attempt in a 10-minute
#: run would be a fraction of a pixel. Only the drawing is stretched; the hover says the
#: real duration.
MIN_BAR_SHARE = 0.003

_COLUMNS = ("start", "end", "row", "node", "iteration", "attempt", "outcome", "duration", "colour")


def recent_attempts(attempts: list[Attempt], limit: int = MAX_ROWS) -> list[Attempt]:
    """The attempts of at most ``limit`` task rows: every running or failed one first, then
    the most recently started; in their original (oldest first) order."""
    latest: dict[str, tuple[int, float]] = {}
    for a in attempts:
        urgent = 1 if a.outcome in ("running", TaskState.FAILED) else 0
        prev = latest.get(a.row)
        key = (max(urgent, prev[0]) if prev else urgent, max(a.start, prev[1]) if prev else a.start)
        latest[a.row] = key
    if len(latest) <= limit:
        return attempts
    keep = set(sorted(latest, key=lambda row: latest[row], reverse=True)[:limit])
    return [a for a in attempts if a.row in keep]


def _local_ms(t: float) -> float:
    """Epoch seconds as the milliseconds Bokeh's datetime axis shows as this machine's wall
    clock (Bokeh formats epoch ms as UTC, so the local offset is added to the number)."""
    return (t + time.localtime(t).tm_gmtoff) * 1000.0


def timeline_data(attempts: list[Attempt], now: float | None = None) -> tuple[dict[str, list[Any]], list[str]]:
    """The chart's columns (one entry per attempt) and its task rows, top row first.

    Rows are ordered by their first attempt's start (the oldest on top); an attempt still
    running ends ``now``. O(attempts): this runs on every redraw.
    """
    now = time.time() if now is None else now
    first: dict[str, float] = {}
    for a in attempts:
        if a.row not in first or a.start < first[a.row]:
            first[a.row] = a.start
    # The axis shows each row's label (a 300-character node id would push the plot off the
    # page); the hover shows the whole node id from the data.
    labels = short_labels(sorted(first, key=first.__getitem__))
    rows = list(labels.values())
    ends = [a.end if a.end is not None else now for a in attempts]
    span = (max(ends) - min(a.start for a in attempts)) if attempts else 0.0
    shortest = max(0.02, span * MIN_BAR_SHARE)
    data: dict[str, list[Any]] = {c: [] for c in _COLUMNS}
    for a, end in zip(attempts, ends, strict=True):
        data["start"].append(_local_ms(a.start))
        data["end"].append(_local_ms(max(end, a.start + shortest)))
        data["row"].append(labels[a.row])
        data["node"].append(a.node_id)
        data["iteration"].append(a.iteration)
        data["attempt"].append(a.attempt)
        data["outcome"].append(a.outcome)
        data["duration"].append(format_duration(end - a.start))
        data["colour"].append(_OUTCOME_COLOURS.get(a.outcome, "#80868b"))
    return data, rows


def chart_height(rows: int) -> int:
    """The figure's height for ``rows`` task rows: room for the axis and toolbar, then
    :data:`ROW_HEIGHT` a row."""
    return max(160, 60 + ROW_HEIGHT * rows)


#: The row counts the figure is sized for while its run is live. A new height makes BokehJS lay
#: out the whole page again (``invalidate_layout`` bubbles to the root: 100-340 ms of main
#: thread on a full page here, traced), so while the run executes the figure grows in these
#: steps, never row by row, and does not shrink; the rows it does not use yet are blank. A run
#: whose tree already lists more tasks than have started is sized for them from its first draw
#: (:class:`Timeline`). Once the run has ended it fits its rows exactly.
ROW_SLOTS = (10, 25, MAX_ROWS)


def row_slots(rows: int, current: int = 0) -> int:
    """The rows the figure is sized for when it shows ``rows`` task rows and was sized for
    ``current``: the first step of :data:`ROW_SLOTS` that holds them, never fewer than
    ``current``."""
    fits = next((slots for slots in ROW_SLOTS if slots >= rows), rows)
    return max(fits, current)


#: The y axis' labels are drawn in a monospace font, right-aligned and padded to the width
#: :func:`label_width` gives. Why: BokehJS measures the axis on every repaint, and when the
#: widest label's width changes (``a-9`` gives way to ``b-120``) it lays the whole plot out
#: again (``compute_layout``): the page's longest main-thread tasks while a run streams
#: (traced beside the Monitor: 100-210 ms animation frames, docs/performance.md). Padded, the
#: axis keeps its width from one redraw to the next, as the figure keeps its height
#: (:func:`row_slots`). The code is ours and constant; a label reaches the canvas as text.
PAD_LABELS_JS = "return String(tick).padStart(width)"

#: The label widths (characters) the axis steps through while its run is live (labels are
#: at most 32 characters: :func:`dashboard.format.short_labels`).
LABEL_WIDTHS = (8, 16, 24, 32)


def date_context() -> DatetimeTickFormatter:
    """The date under the time axis' first tick: one line at every scale a run spans. BokehJS's
    default adds a second line (the time of day) under millisecond ticks, so the axis lost a
    line of height as a live run's span passed a second, and the plot was laid out again."""
    date, date_time = "%b %d, %Y", "%b %d, %Y %T"
    return DatetimeTickFormatter(microseconds=date_time, milliseconds=date_time, seconds=date, minsec=date,
                                 minutes=date, hourmin=date, hours=date, days="%Y", months="%Y", years="%Y",
                                 hide_repeats=True)


def label_width(rows: Iterable[str], current: int = 0) -> int:
    """The characters the axis pads its labels to when it shows ``rows`` and was padding to
    ``current``: the first step of :data:`LABEL_WIDTHS` that holds the longest, never fewer
    than ``current`` (as :func:`row_slots`)."""
    longest = max((len(row) for row in rows), default=0)
    fits = next((width for width in LABEL_WIDTHS if width >= longest), longest)
    return max(fits, current)


def padded_factors(rows: list[str], slots: int) -> list[str]:
    """The y axis factors for ``rows`` (top row first) in a figure sized for ``slots`` rows:
    a categorical axis puts its first factor at the bottom, so the blank rows (distinct
    zero-width labels, none equal to a real label) come first, then the rows bottom up."""
    taken = set(rows)
    blanks: list[str] = []
    width = 1
    while len(blanks) < slots - len(rows):
        label = "\u200b" * width
        width += 1
        if label not in taken:
            blanks.append(label)
    return blanks + rows[::-1]


def is_blank_factor(factor: str) -> bool:
    """A row :func:`padded_factors` added to keep the figure's height."""
    return bool(factor) and not factor.strip("\u200b")


class InPlaceChart:
    """A Bokeh figure shown by a ``pn.pane.Bokeh`` for the life of a view, changed in place.

    :meth:`apply` runs a change to the figure's models (new ``ColumnDataSource.data``,
    range factors, height) where Bokeh allows it: at once when the figure is on no server
    page (a test's ``Document``, a notebook cell, not rendered yet), else on the page's
    next tick, when the session holds its document lock (a server session refuses model
    changes made outside it: Bokeh raises "_pending_writes should be non-None"), all in one
    patch. Changes queued before that tick collapse into the latest: a burst costs one update.
    """

    def __init__(self, fig: Any, **pane_params: Any) -> None:
        self.figure = fig
        self.pane = pn.pane.Bokeh(fig, **pane_params)
        self._pending: Callable[[], None] | None = None
        self._scheduled: Document | None = None

    def apply(self, change: Callable[[], None]) -> None:
        doc = self.figure.document
        if doc is None or doc.session_context is None:
            self._pending = None
            change()
            self._push(doc)
            return
        self._pending = change
        if self._scheduled is not doc:
            self._scheduled = doc
            doc.add_next_tick_callback(self._run_pending)

    def _run_pending(self) -> None:
        self._scheduled = None
        change, self._pending = self._pending, None
        if change is not None:
            # One patch for the whole change: sent as a message per model, the page could
            # repaint between them (the new rows with the old bars: no bounds, both axes
            # collapsed and the plot laid out twice).
            with pn.io.hold(self.figure.document):
                change()

    def _push(self, doc: Document | None) -> None:
        """In a notebook the changes travel through the cell's comm, which Panel pushes only
        for its own updates."""
        if doc is None:
            return
        for ref in list(self.pane._models):
            view = pn.state._views.get(ref)
            if view is not None and view[3] is not None and view[2] is doc:
                pn.io.notebook.push(doc, view[3])


def timeline_chart() -> tuple[Any, ColumnDataSource]:
    """An empty Gantt figure and its data source: one bar (``hbar``) per attempt, coloured by
    outcome, on a row per task (a categorical y axis, oldest task on top) over a datetime x
    axis, a tap tool and a hidden "now" line (the ``Span`` named ``now``). Fill it with
    :func:`timeline_data` (``source.data``, ``y_range.factors`` reversed, :func:`chart_height`)."""
    source = ColumnDataSource({c: [] for c in _COLUMNS})
    hover = HoverTool(
        tooltips=[("node", "@node"), ("iteration", "@iteration"), ("attempt", "@attempt"), ("outcome", "@outcome"),
                  ("duration", "@duration")],
    )
    fig = figure(
        x_axis_type="datetime",
        y_range=FactorRange(factors=[]),
        height=chart_height(0),
        sizing_mode="stretch_width",
        tools=[hover, TapTool(), "xpan", "xwheel_zoom", "xbox_zoom", "reset", "save"],
        toolbar_location="above",
        x_axis_label="time",
    )
    fig.hbar(y="row", left="start", right="end", height=BAR_HEIGHT, source=source, fill_color="colour",
             line_color="colour", nonselection_fill_alpha=0.45, nonselection_line_alpha=0.45)
    fig.add_layout(Span(location=0, dimension="height", line_color="#5f6368", line_dash="dashed", line_width=1,
                        visible=False, name="now"))
    fig.yaxis.major_label_text_font_size = "11px"
    fig.yaxis.major_label_text_font = "monospace"
    fig.xaxis.formatter = DatetimeTickFormatter(context=date_context())
    fig.yaxis.formatter = CustomJSTickFormatter(args={"width": 0}, code=PAD_LABELS_JS)
    fig.yaxis.major_tick_line_color = None  # a row is its label and its grid line
    fig.outline_line_color = None
    return fig, source


class Timeline(StoreView):
    """Gantt of the run's task attempts (see the module docstring)."""

    #: The chart, built by :meth:`_show_chart` (``None`` until then).
    _plot: InPlaceChart | None
    _figure: Any
    _source: ColumnDataSource
    _now: Span
    _chart: pn.pane.Bokeh

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self._note = pn.pane.Str("", margin=(5, 10))
        # The chart is built and joins the page once the page has loaded (at once outside a
        # served session): its plot is the largest part of a run page's first document after
        # the tree, and the tree's first rows should not wait for BokehJS to build it. Built
        # then, not here: the figure was ~15% of a run page's session build (its first
        # bytes), work the server now does while the browser loads the page's scripts.
        self._plot = None
        self._layout = pn.Column(self._note, sizing_mode="stretch_width")
        self._throttle = Throttle(self._update, MIN_INTERVAL)
        self._stale = False
        self._slots = 0  # rows the figure is sized for (row_slots); 0 while it shows nothing
        self._label_width = 0  # characters the axis pads its labels to (label_width)
        self.store.param.watch(self._changed, ["events", "tree_version", "run"])
        self._update()
        pn.state.onload(self._show_chart)

    def _build_chart(self) -> None:
        self._figure, self._source = timeline_chart()
        self._now = self._figure.select_one({"name": "now"})
        self._source.selected.on_change("indices", self._on_tap)
        self._plot = InPlaceChart(self._figure, sizing_mode="stretch_width", min_height=160)
        self._chart = self._plot.pane
        self._stale = True  # drawn by the refresh that follows

    def _show_chart(self) -> None:
        # Drawn before it joins (on no page yet, the change applies at once): the join then
        # carries the chart as it is, in one patch. Drawn after, the page laid itself out three
        # times in a row: for the join, for the chart turning visible, for its rows and height
        # (the first second of a run page; docs/performance.md, section 3).
        if self._plot is None:
            self._build_chart()
        self.refresh()
        if self._chart not in self._layout.objects:
            self._layout.append(self._chart)

    def _changed(self, *_: Any) -> None:
        # Not on screen (a hidden dynamic tab has no models): remember, redraw when shown.
        # A redraw is cheap (new data for one figure), but computing the attempts walks
        # the event log and the tree: skipped while nobody looks, and spaced so they take
        # at most ~5% of the loop (see _update).
        if self._plot is None or not self._chart._models:
            self._stale = True
            return
        if self._now.visible and self._ended():
            # The run ended: its "now" line and its running bars must go at once, not when
            # the throttle's interval (up to 30 s on a big run) is out.
            self._throttle.flush()
            return
        self._throttle()

    def _ended(self) -> bool:
        return (self.store.run or {}).get("status") in TERMINAL_RUN_STATUSES

    def refresh(self) -> None:
        """Redraw now if something changed while the chart was not shown (tab switched to it)."""
        if self._stale:
            self._stale = False
            self._update()

    def _states(self) -> dict[tuple[str, int], str]:
        tree = self.store.tree
        if tree is None:
            return {}
        return {(n.node_id, n.iteration or 0): n.state or "" for n in tree.walk() if n.node_id}

    def _update(self) -> None:
        self._stale = False
        started = time.perf_counter()
        states = self._states()
        attempts = build_attempts(self.store.events, states)
        tasks = len({a.row for a in attempts})
        attempts = recent_attempts(attempts)
        now = time.time()
        data, rows = timeline_data(attempts, now)
        live = bool(attempts) and not self._ended()
        now_ms = _local_ms(now) if live else None
        if not attempts:
            self._slots = self._label_width = 0
        elif self._ended():  # no attempt starts: fit the rows
            self._slots = len(rows)
            self._label_width = max(len(row) for row in rows)
        else:
            # Sized for the rows to come too: the tree lists the run's tasks before they start,
            # so a big run's figure takes its live height at once instead of stepping up as its
            # tasks start (each step a layout of the whole page, the longest task of a run
            # page's first seconds beside the Monitor: docs/performance.md, section 3, round 8).
            self._slots = row_slots(max(len(rows), min(len(states), MAX_ROWS)), self._slots)
            self._label_width = label_width(rows, self._label_width)
        slots, width = self._slots, self._label_width
        with pn.io.hold():
            if not attempts:
                self._note.object = (
                    "No task attempts seen yet: the timeline fills in as tasks start while the dashboard watches."
                )
            else:
                retries = sum(1 for a in attempts if a.attempt > 1)
                failed = sum(1 for a in attempts if a.outcome == TaskState.FAILED)
                shown = len(rows)
                note = (f"{len(attempts)} attempts on {shown} tasks · {failed} failed · "
                        f"{retries} {'retry' if retries == 1 else 'retries'}")
                if shown < tasks:
                    note += f" (the {shown} running, failed or latest of {tasks} tasks)"
                self._note.object = note
        if self._plot is None:
            self._stale = True  # drawn when the chart is built
            return
        self._plot.apply(lambda: self._draw(data, rows, slots, width, now_ms, shown=bool(attempts)))
        # At most ~5% of the server's loop: 20x the cost of this redraw, between 2 and 30 s
        # (the browser's part, a canvas repaint, is what bounds the rate).
        self._throttle.interval = max(MIN_INTERVAL, min(30.0, 20 * (time.perf_counter() - started)))

    def _draw(self, data: dict[str, list[Any]], rows: list[str], slots: int, width: int,
              now_ms: float | None = None, shown: bool = True) -> None:
        """Change the figure's models, never the figure: the labels' width if its step changed,
        factors (a bar whose row is not a factor yet is not drawn), then the bars, then the
        height if the row slots changed, and whether it is shown at all (nothing to draw: hidden).

        Shown or hidden by the figure's own ``visible``, not the pane's: it then travels with
        the rows in one patch, and a Bokeh pane hidden before it had a model could not be shown
        again (Panel 1.9 read the hidden figure's ``visible`` back into the pane)."""
        formatter = self._figure.yaxis[0].formatter
        if formatter.args.get("width") != width:
            formatter.args = {"width": width}
        factors = padded_factors(rows, slots)
        if list(self._figure.y_range.factors) != factors:
            self._figure.y_range.factors = factors
        if self._source.selected.indices:  # they would point at other bars
            self._source.selected.indices = []
        self._source.data = data
        if now_ms is not None:
            self._now.update(location=now_ms, visible=True)
        elif self._now.visible:
            self._now.visible = False
        height = chart_height(slots)
        if self._figure.height != height:
            self._figure.height = height
        if self._figure.visible != shown:
            self._figure.visible = shown

    def _on_tap(self, attr: str, old: Any, new: list[int]) -> None:
        """A tapped bar selects its task everywhere on the page."""
        if not new or new[0] >= len(self._source.data["node"]):
            return
        i = new[0]
        self.store.select_task(str(self._source.data["node"][i]), int(self._source.data["iteration"][i]))

    def __panel__(self) -> pn.viewable.Viewable:
        return self._layout

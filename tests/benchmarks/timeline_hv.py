# mypy: allow-untyped-calls
"""Timeline: a Gantt of task attempts over time: what ran in parallel, what retried,
what took long.

Built from the run events the store logged (``node.pending`` gives a node's iteration,
``node.started`` opens an attempt, ``node.retrying`` names the next attempt,
``node.finished`` / ``node.failed`` close it) plus the tree for tasks still running.
Live node events carry no timestamps: their times are when the hub received them (a few
ms after the fact). Events from before we looked come from the Gateway's event replay
(``streamRunEvents``) stamped with the times of its durable history (``/v1/api/events``).

The chart is a HoloViews ``DynamicMap`` of ``hv.Rectangles`` (one bar per attempt, coloured
by outcome) with a dashed ``hv.VLine`` at "now" while the run is live, both over one
:class:`~dashboard.views.livechart.SessionPipe`: a redraw sends a :class:`GanttFrame` and
HoloViews changes the plot's data source, ranges, tick labels and (through a hook) height in
place, never the plot (a new plot per redraw costs the browser a whole plot build: 0.3-0.5 s
of main thread on a big live run, docs/performance.md). Tapping a bar selects its task in
the whole page (``hv.streams.Selection1D`` -> ``RunStore.select_task``). Hover tooltips use
plain ``@field`` references, which Bokeh escapes (never ``{safe}``): node ids are Gateway
text; the axis' row labels are canvas text.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

import holoviews as hv
import pandas as pd
import panel as pn

from dashboard.format import STATE_COLOURS, format_duration, short_labels
from dashboard.views.base import StoreView
from dashboard.views.widgets import Throttle
from inspector.vocabulary import (
    DONE_TASK_STATES,
    NODE_EVENT_PREFIX,
    NODE_EVENT_STATE,
    TERMINAL_RUN_STATUSES,
    RunEventName,
    TaskState,
)
from tests.benchmarks.livechart_hv import SessionPipe

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from dashboard.store import EventRecord

__all__ = ["OUTCOME_COLOURS", "Attempt", "GanttFrame", "HoloViewsTimeline", "build_attempts", "gantt_frame", "row_slots"]

#: Bar colour per attempt outcome: the task states' colours, plus "interrupted" (an attempt
#: whose task started again before it closed).
OUTCOME_COLOURS = {
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
#: canvas) cost ~0.3 s of main thread per second of redraws, 50 rows ~0.17 s.
MAX_ROWS = 50

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

#: The bars' columns. The edges are named as Bokeh's ``quad`` names them and the colour as
#: HoloViews names a style column, so the data source carries each column once.
_COLUMNS = ("left", "bottom", "right", "top", "row", "node", "iteration", "attempt", "outcome", "duration", "color")


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


def local_ms(t: float) -> float:
    """Epoch seconds as the milliseconds Bokeh's datetime axis shows as this machine's wall
    clock (Bokeh formats epoch ms as UTC, so the local offset is added to the number)."""
    return (t + time.localtime(t).tm_gmtoff) * 1000.0


def chart_height(rows: int) -> int:
    """The figure's height for ``rows`` task rows: room for the axis and toolbar, then
    :data:`ROW_HEIGHT` a row."""
    return max(160, 60 + ROW_HEIGHT * rows)


#: The row counts the figure is sized for while its run is live. A new height makes BokehJS lay
#: out the whole page again (``invalidate_layout`` bubbles to the root: 100-340 ms of main
#: thread on a full page here, traced), so while the run executes the figure grows in these
#: steps, never row by row, and does not shrink; the rows it does not use yet are blank (below
#: the task rows). Once the run has ended it fits its rows exactly.
ROW_SLOTS = (10, 25, MAX_ROWS)


def row_slots(rows: int, current: int = 0) -> int:
    """The rows the figure is sized for when it shows ``rows`` task rows and was sized for
    ``current``: the first step of :data:`ROW_SLOTS` that holds them, never fewer than
    ``current``."""
    fits = next((slots for slots in ROW_SLOTS if slots >= rows), rows)
    return max(fits, current)


@dataclass(frozen=True, slots=True)
class GanttFrame:
    """What the chart shows: one bar per attempt, the task rows' labels, the rows it is sized for."""

    bars: pd.DataFrame = field(default_factory=lambda: pd.DataFrame({c: [] for c in _COLUMNS}))
    #: (y position, label) of each task row, top row first. Row ``k`` is at ``slots - 1 - k``:
    #: the blank rows of a figure sized for more rows are at the bottom.
    ticks: tuple[tuple[int, str], ...] = ()
    slots: int = 0
    #: The "now" line (local epoch ms, as the bars), or ``None`` when the run is not live.
    now_ms: float | None = None


def gantt_frame(attempts: list[Attempt], slots: int, now: float | None = None, live: bool = False) -> GanttFrame:
    """The chart's data for ``attempts`` in a figure sized for ``slots`` rows.

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
    slots = max(slots, len(labels))
    position = {row: slots - 1 - k for k, row in enumerate(labels)}
    ends = [a.end if a.end is not None else now for a in attempts]
    span = (max(ends) - min(a.start for a in attempts)) if attempts else 0.0
    shortest = max(0.02, span * MIN_BAR_SHARE)
    data: dict[str, list[Any]] = {c: [] for c in _COLUMNS}
    for a, end in zip(attempts, ends, strict=True):
        y = position[a.row]
        data["left"].append(local_ms(a.start))
        data["right"].append(local_ms(max(end, a.start + shortest)))
        data["bottom"].append(y - BAR_HEIGHT / 2)
        data["top"].append(y + BAR_HEIGHT / 2)
        data["row"].append(labels[a.row])
        data["node"].append(a.node_id)
        data["iteration"].append(a.iteration)
        data["attempt"].append(a.attempt)
        data["outcome"].append(a.outcome)
        data["duration"].append(format_duration(end - a.start))
        data["color"].append(OUTCOME_COLOURS.get(a.outcome, "#80868b"))
    bars = pd.DataFrame(data, columns=list(_COLUMNS))
    bars["left"] = pd.to_datetime(bars["left"].astype(float), unit="ms")
    bars["right"] = pd.to_datetime(bars["right"].astype(float), unit="ms")
    ticks = tuple((position[row], label) for row, label in labels.items())
    return GanttFrame(bars, ticks, slots, local_ms(now) if live and attempts else None)


def _set_height(height: int, plot: Any, element: Any) -> None:
    """A HoloViews hook: the figure's height for this frame's row slots (HoloViews sizes a
    responsive plot once)."""
    if plot.state.height != height:
        plot.state.height = height


class HoloViewsTimeline(StoreView):
    """Gantt of the run's task attempts (see the module docstring)."""

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self._note = pn.pane.Str("", margin=(5, 10))
        self._pipe = SessionPipe(GanttFrame())
        bars = hv.DynamicMap(self._bars, streams=[self._pipe.pipe])
        now_line = hv.DynamicMap(self._now_line, streams=[self._pipe.pipe])
        self._pick = hv.streams.Selection1D(source=bars)
        self._pick.add_subscriber(self._on_pick)
        self._chart = pn.pane.HoloViews(bars * now_line, sizing_mode="stretch_width", min_height=160,
                                        linked_axes=False)
        self._pipe.pane = self._chart
        self._throttle = Throttle(self._update, MIN_INTERVAL)
        self._stale = False
        self._slots = 0  # rows the figure is sized for (row_slots); 0 while it shows nothing
        self.store.param.watch(self._changed, ["events", "tree_version", "run"])
        self._update()

    # ------------------------------------------------------------------ HoloViews elements

    @staticmethod
    def _bars(data: GanttFrame) -> hv.Rectangles:
        return hv.Rectangles(data.bars, kdims=["left", "bottom", "right", "top"],
                             vdims=["row", "node", "iteration", "attempt", "outcome", "duration", "color"]).opts(
            color="color", line_color="color", nonselection_alpha=0.45,
            tools=["hover", "tap"], default_tools=["xpan", "xwheel_zoom", "xbox_zoom", "reset", "save"],
            active_tools=["xpan", "tap"], toolbar="above",
            hover_tooltips=[("node", "@{node}"), ("iteration", "@{iteration}"), ("attempt", "@{attempt}"),
                            ("outcome", "@{outcome}"), ("duration", "@{duration}")],
            responsive=True, height=chart_height(data.slots), hooks=[partial(_set_height, chart_height(data.slots))],
            ylim=(-0.5, max(data.slots, 1) - 0.5), yticks=list(data.ticks) or [(0, "")],
            xlabel="time", ylabel="", show_grid=True, framewise=True,
            backend_opts={"yaxis.major_label_text_font_size": "11px", "yaxis.major_tick_line_color": None,
                          "yaxis.minor_tick_line_color": None, "plot.outline_line_color": None,
                          "xgrid.grid_line_alpha": 0.4},
        )

    @staticmethod
    def _now_line(data: GanttFrame) -> hv.VLine:
        """The dashed "now" line while the run is live; a hidden line otherwise (the overlay
        keeps its layers: the line's model is only moved or hidden)."""
        at = data.now_ms if data.now_ms is not None else (data.bars["left"].min() if len(data.bars) else 0.0)
        x = pd.Timestamp(at, unit="ms") if isinstance(at, int | float) else at
        return hv.VLine(x).opts(color="#5f6368", line_dash="dashed", line_width=1,
                                alpha=0.9 if data.now_ms is not None else 0.0)

    # ------------------------------------------------------------------ data flow

    def _changed(self, *_: Any) -> None:
        # Not on screen (a hidden dynamic tab has no models): remember, redraw when shown.
        # A redraw is cheap (new data for one plot), but computing the attempts walks
        # the event log and the tree: skipped while nobody looks, and spaced so they take
        # at most ~5% of the loop (see _update).
        if not self._chart._models:
            self._stale = True
            return
        self._throttle()

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
        attempts = build_attempts(self.store.events, self._states())
        tasks = len({a.row for a in attempts})
        attempts = recent_attempts(attempts)
        rows = len({a.row for a in attempts})
        ended = (self.store.run or {}).get("status") in TERMINAL_RUN_STATUSES
        if not attempts:
            self._slots = 0
        elif ended:  # no attempt starts: fit the rows
            self._slots = rows
        else:
            self._slots = row_slots(rows, self._slots)
        frame = gantt_frame(attempts, self._slots, live=not ended)
        with pn.io.hold():
            self._chart.visible = bool(attempts)
            if not attempts:
                self._note.object = (
                    "No task attempts seen yet: the timeline fills in as tasks start while the dashboard watches."
                )
            else:
                retries = sum(1 for a in attempts if a.attempt > 1)
                failed = sum(1 for a in attempts if a.outcome == TaskState.FAILED)
                note = f"{len(attempts)} attempts on {rows} tasks · {failed} failed · {retries} retries"
                if rows < tasks:
                    note += f" (the {rows} running, failed or latest of {tasks} tasks)"
                self._note.object = note
        self._pipe.send(frame)
        # At most ~5% of the server's loop: 20x the cost of this redraw, between 2 and 30 s
        # (the browser's part, a canvas repaint, is what bounds the rate).
        self._throttle.interval = max(MIN_INTERVAL, min(30.0, 20 * (time.perf_counter() - started)))

    def _on_pick(self, index: list[int] | None = None, **_: Any) -> None:
        """A tapped bar selects its task everywhere on the page."""
        bars = self._pipe.data.bars
        if not index or index[0] >= len(bars):
            return
        row = bars.iloc[index[0]]
        self.store.select_task(str(row["node"]), int(row["iteration"]))

    def __panel__(self) -> pn.viewable.Viewable:
        return pn.Column(self._note, self._chart, sizing_mode="stretch_width")

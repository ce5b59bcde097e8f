# mypy: allow-untyped-calls
"""The timeline as a HoloViews chart, kept for ``bench_charts.py``: the dashboard keeps the
hand-built Bokeh figure (``dashboard/views/timeline.py``), which measured better
(docs/performance.md, "Charts: HoloViews vs Bokeh"). The attempts are the dashboard's own
(:func:`~dashboard.views.timeline.build_attempts`).

The chart is a HoloViews ``DynamicMap`` of ``hv.Rectangles`` (one bar per attempt, coloured
by outcome) with a dashed ``hv.VLine`` at "now" while the run is live, both over one
:class:`~tests.benchmarks.livechart_hv.SessionPipe`: a redraw sends a :class:`GanttFrame` and
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
from typing import Any

import holoviews as hv
import pandas as pd
import panel as pn

from dashboard.format import format_duration, short_labels
from dashboard.views.base import StoreView
from dashboard.views.timeline import (
    _OUTCOME_COLOURS as OUTCOME_COLOURS,
    BAR_HEIGHT,
    MIN_BAR_SHARE,
    MIN_INTERVAL,
    Attempt,
    _local_ms as local_ms,
    build_attempts,
    chart_height,
    recent_attempts,
    row_slots,
)
from dashboard.views.widgets import Throttle
from inspector.vocabulary import TERMINAL_RUN_STATUSES, TaskState
from tests.benchmarks.livechart_hv import SessionPipe

__all__ = ["OUTCOME_COLOURS", "Attempt", "GanttFrame", "HoloViewsTimeline", "build_attempts", "gantt_frame", "row_slots"]

#: The bars' columns. The edges are named as Bokeh's ``quad`` names them and the colour as
#: HoloViews names a style column, so the data source carries each column once.
_COLUMNS = ("left", "bottom", "right", "top", "row", "node", "iteration", "attempt", "outcome", "duration", "color")


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

# mypy: allow-untyped-calls
"""The timeline as a hand-built Bokeh figure changed in place: the comparison for
``bench_charts.py`` (the dashboard draws it with HoloViews, ``dashboard/views/timeline.py``).

One Bokeh figure for the life of the view (:class:`InPlaceChart`): a redraw replaces its
``ColumnDataSource.data``, its row factors (a categorical y axis) and its height, never the
figure. The attempts come from the dashboard's own :func:`build_attempts`.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import panel as pn
from bokeh.models import ColumnDataSource, FactorRange, HoverTool
from bokeh.plotting import figure

from dashboard.format import format_duration, short_labels
from dashboard.views.base import StoreView
from dashboard.views.timeline import (
    MAX_ROWS,
    MIN_BAR_SHARE,
    MIN_INTERVAL,
    OUTCOME_COLOURS,
    ROW_HEIGHT,
    ROW_SLOTS,
    Attempt,
    build_attempts,
    chart_height,
    recent_attempts,
    row_slots,
)
from dashboard.views.widgets import Throttle
from inspector.vocabulary import TERMINAL_RUN_STATUSES, TaskState

if TYPE_CHECKING:
    from collections.abc import Callable

    from bokeh.document import Document

__all__ = ["BokehTimeline", "InPlaceChart", "is_blank_factor", "padded_factors", "timeline_chart", "timeline_data"]

BAR_HEIGHT = 0.64

_COLUMNS = ("start", "end", "row", "node", "iteration", "attempt", "outcome", "duration", "colour")


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
        data["colour"].append(OUTCOME_COLOURS.get(a.outcome, "#80868b"))
    return data, rows


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
    changes made outside it: Bokeh raises "_pending_writes should be non-None"). Changes
    queued before that tick collapse into the latest: a burst costs one update.
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
    axis. Fill it with :func:`timeline_data` (``source.data``, ``y_range.factors`` reversed,
    :func:`chart_height`)."""
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
        tools=[hover, "xpan", "xwheel_zoom", "xbox_zoom", "reset", "save"],
        toolbar_location="above",
        x_axis_label="time",
    )
    fig.hbar(y="row", left="start", right="end", height=BAR_HEIGHT, source=source, fill_color="colour",
             line_color="colour")
    fig.yaxis.major_label_text_font_size = "11px"
    fig.yaxis.major_tick_line_color = None  # a row is its label and its grid line
    fig.outline_line_color = None
    return fig, source


class BokehTimeline(StoreView):
    """Gantt of the run's task attempts (see the module docstring)."""

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self._note = pn.pane.Str("", margin=(5, 10))
        self._figure, self._source = timeline_chart()
        self._plot = InPlaceChart(self._figure, sizing_mode="stretch_width", min_height=160)
        self._chart = self._plot.pane
        self._throttle = Throttle(self._update, MIN_INTERVAL)
        self._stale = False
        self._slots = 0  # rows the figure is sized for (row_slots); 0 while it shows nothing
        self.store.param.watch(self._changed, ["events", "tree_version", "run"])
        self._update()

    def _changed(self, *_: Any) -> None:
        # Not on screen (a hidden dynamic tab has no models): remember, redraw when shown.
        # A redraw is cheap (new data for one figure), but computing the attempts walks
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
        data, rows = timeline_data(attempts)
        if not attempts:
            self._slots = 0
        elif (self.store.run or {}).get("status") in TERMINAL_RUN_STATUSES:  # no attempt starts: fit the rows
            self._slots = len(rows)
        else:
            self._slots = row_slots(len(rows), self._slots)
        slots = self._slots
        with pn.io.hold():
            self._chart.visible = bool(attempts)
            if not attempts:
                self._note.object = (
                    "No task attempts seen yet: the timeline fills in as tasks start while the dashboard watches."
                )
            else:
                retries = sum(1 for a in attempts if a.attempt > 1)
                failed = sum(1 for a in attempts if a.outcome == TaskState.FAILED)
                shown = len(rows)
                note = f"{len(attempts)} attempts on {shown} tasks · {failed} failed · {retries} retries"
                if shown < tasks:
                    note += f" (the {shown} running, failed or latest of {tasks} tasks)"
                self._note.object = note
        self._plot.apply(lambda: self._draw(data, rows, slots))
        # At most ~5% of the server's loop: 20x the cost of this redraw, between 2 and 30 s
        # (the browser's part, a canvas repaint, is what bounds the rate).
        self._throttle.interval = max(MIN_INTERVAL, min(30.0, 20 * (time.perf_counter() - started)))

    def _draw(self, data: dict[str, list[Any]], rows: list[str], slots: int) -> None:
        """Change the figure's models, never the figure: factors first (a bar whose row is
        not a factor yet is not drawn), then the bars, then the height if the row slots changed."""
        factors = padded_factors(rows, slots)
        if list(self._figure.y_range.factors) != factors:
            self._figure.y_range.factors = factors
        self._source.data = data
        height = chart_height(slots)
        if self._figure.height != height:
            self._figure.height = height

    def __panel__(self) -> pn.viewable.Viewable:
        return pn.Column(self._note, self._chart, sizing_mode="stretch_width")

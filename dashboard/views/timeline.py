# mypy: allow-untyped-calls
"""Timeline: a Gantt of task attempts over time: what ran in parallel, what retried,
what took long.

Built from the run events the store logged (``node.pending`` gives a node's iteration,
``node.started`` opens an attempt, ``node.retrying`` names the next attempt,
``node.finished`` / ``node.failed`` close it) plus the tree for tasks still running.
Live node events carry no timestamps: their times are when the hub received them (a few
ms after the fact). Events from before we looked come from the Gateway's event replay
(``streamRunEvents``) stamped with the times of its durable history (``/v1/api/events``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import holoviews as hv
import pandas as pd
import panel as pn
import param
from bokeh.models import HoverTool

from ..format import STATE_COLOURS, format_duration
from ..store import EventRecord, RunStore
from . import Throttle

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

__all__ = ["Attempt", "Timeline", "build_attempts", "timeline_chart"]

if "bokeh" not in hv.Store.renderers:
    import holoviews.plotting.bokeh  # noqa: F401

_OUTCOME_COLOURS = {
    "running": STATE_COLOURS["in-progress"],
    "finished": STATE_COLOURS["finished"],
    "failed": STATE_COLOURS["failed"],
    "cancelled": STATE_COLOURS["cancelled"],
    "skipped": STATE_COLOURS["skipped"],
    "interrupted": "#80868b",
}
_CLOSE = {"node.finished": "finished", "node.failed": "failed", "node.cancelled": "cancelled", "node.skipped": "skipped"}


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
        if not e.node_id or not e.event.startswith("node."):
            continue
        node = e.node_id
        if e.iteration is not None:
            iteration[node] = e.iteration
        key = (node, e.iteration if e.iteration is not None else iteration.get(node, 0))
        if e.event == "node.retrying":
            next_attempt[key] = e.attempt or next_attempt.get(key, 1) + 1
            continue
        if e.event == "node.started":
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
        state = (states or {}).get(key)
        if state is not None and state not in ("in-progress", "retrying"):
            attempt.end = last
            attempt.outcome = state if state in _OUTCOME_COLOURS else "interrupted"
    return out


#: Most task rows the chart draws. A chart is one Bokeh plot rebuilt whole, at 22 px a row:
#: 4,000 rows would be an 88,000 px canvas and a multi-second main-thread task per redraw.
MAX_ROWS = 150


def recent_attempts(attempts: list[Attempt], limit: int = MAX_ROWS) -> list[Attempt]:
    """The attempts of at most ``limit`` task rows: every running or failed one first, then
    the most recently started; in their original (oldest first) order."""
    latest: dict[str, tuple[int, float]] = {}
    for a in attempts:
        urgent = 1 if a.outcome in ("running", "failed") else 0
        prev = latest.get(a.row)
        key = (max(urgent, prev[0]) if prev else urgent, max(a.start, prev[1]) if prev else a.start)
        latest[a.row] = key
    if len(latest) <= limit:
        return attempts
    keep = set(sorted(latest, key=lambda row: latest[row], reverse=True)[:limit])
    return [a for a in attempts if a.row in keep]


def timeline_frame(attempts: list[Attempt], now: float | None = None) -> pd.DataFrame:
    now = time.time() if now is None else now
    rows = sorted({a.row: min(b.start for b in attempts if b.row == a.row) for a in attempts}.items(), key=lambda kv: kv[1])
    index = {name: i for i, (name, _) in enumerate(rows)}
    records = []
    for a in attempts:
        end = a.end if a.end is not None else now
        records.append(
            {
                "start": datetime.fromtimestamp(a.start),
                "end": datetime.fromtimestamp(max(end, a.start + 0.02)),
                "y": index[a.row],
                "y1": index[a.row],
                "node": a.row,
                "attempt": a.attempt,
                "outcome": a.outcome,
                "duration": format_duration(end - a.start),
                "colour": _OUTCOME_COLOURS.get(a.outcome, "#80868b"),
            }
        )
    return pd.DataFrame.from_records(
        records, columns=["start", "y", "end", "y1", "node", "attempt", "outcome", "duration", "colour"]
    )


def timeline_chart(frame: pd.DataFrame, *, row_height: int = 22) -> hv.Segments:
    rows = frame.drop_duplicates("y").sort_values("y")
    yticks = list(zip(rows["y"], rows["node"], strict=True))
    hover = HoverTool(tooltips=[("node", "@node"), ("attempt", "@attempt"), ("outcome", "@outcome"), ("duration", "@duration")])
    height = max(160, 60 + row_height * len(yticks))
    segments = hv.Segments(frame, ["start", "y", "end", "y1"], ["node", "attempt", "outcome", "duration", "colour"])
    return segments.opts(
        color="colour",
        line_width=max(6, row_height - 8),
        yticks=yticks or None,
        invert_yaxis=True,
        height=height,
        responsive=True,
        tools=[hover],
        xlabel="time",
        ylabel="",
        show_grid=True,
        toolbar="above",
        ylim=(-0.8, max(len(yticks), 1) - 0.2),
    )


class Timeline(pn.viewable.Viewer):
    """Gantt of the run's task attempts (see the module docstring)."""

    store: RunStore = param.ClassSelector(class_=RunStore, doc="The session's store.")  # type: ignore[assignment]

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self._note = pn.pane.Str("", margin=(5, 10))
        self._chart = pn.pane.HoloViews(sizing_mode="stretch_width", min_height=160)
        self._throttle = Throttle(self._update, 1.0)
        self._stale = False
        self.store.param.watch(self._changed, ["events", "tree_version"])
        self._update()

    def _changed(self, *_: Any) -> None:
        # Not on screen (a hidden dynamic tab has no models): remember, redraw when shown.
        # A chart is rebuilt whole (a new HoloViews/Bokeh plot: ~0.4-0.7 s of the server's
        # loop and a long task in the browser on a big run), so redraws are skipped while
        # nobody looks and spaced so they take at most ~5% of the loop (see _update).
        if self._chart.object is not None and not self._chart._models:
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
        frame = timeline_frame(attempts)
        with pn.io.hold():
            self._chart.visible = bool(attempts)
            if not attempts:
                self._note.object = (
                    "No task attempts seen yet: the timeline fills in as tasks start while the dashboard watches."
                )
            else:
                retries = sum(1 for a in attempts if a.attempt > 1)
                failed = sum(1 for a in attempts if a.outcome == "failed")
                shown = frame["node"].nunique()
                note = f"{len(attempts)} attempts on {shown} tasks · {failed} failed · {retries} retries"
                if shown < tasks:
                    note += f" (the {shown} running, failed or latest of {tasks} tasks)"
                self._note.object = note
            self._chart.object = timeline_chart(frame)
        # At most ~5% of the server's loop: 20x the cost of this redraw, between 1 and 30 s.
        self._throttle.interval = max(1.0, min(30.0, 20 * (time.perf_counter() - started)))

    def __panel__(self) -> pn.viewable.Viewable:
        return pn.Column(self._note, self._chart, sizing_mode="stretch_width")

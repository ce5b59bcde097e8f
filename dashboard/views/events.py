# mypy: allow-untyped-calls
"""EventLog: the run's events, newest on top, filterable by text and kind.

Bounded by the store's ring buffer. "Follow" keeps the newest event on top as events
arrive; switching it off freezes the table (so a row can be read while a busy run keeps
going) and the toggle counts what arrived meanwhile. Redraws are throttled to twice a
second. Messages are Gateway text shown with the ``plaintext`` formatter.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

import pandas as pd
import panel as pn
import param

from ..store import EventRecord, RunStore
from . import Throttle, plaintext

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = ["KINDS", "EventLog", "events_frame", "filter_events"]

#: Event-kind filter choices: label -> name prefixes.
KINDS: dict[str, tuple[str, ...]] = {
    "all": (),
    "nodes": ("node.",),
    "failures": ("node.failed", "run.failed", "connection.", "stream.resynced"),
    "run": ("run.",),
    "approvals": ("approval.", "node.waiting_approval"),
    "connection": ("connection.", "stream."),
}
_COLUMNS = ["time", "event", "nodeId", "iteration", "state", "attempt", "message"]


def filter_events(events: Iterable[EventRecord], text: str = "", kind: str = "all") -> list[EventRecord]:
    """Records matching ``kind`` and containing ``text`` (case-insensitive) anywhere."""
    prefixes = KINDS.get(kind, ())
    needle = text.strip().lower()
    out = []
    for e in events:
        if prefixes and not e.event.startswith(prefixes):
            continue
        if needle and needle not in f"{e.event} {e.node_id or ''} {e.state or ''} {e.message}".lower():
            continue
        out.append(e)
    return out


def events_frame(records: list[EventRecord], newest_first: bool = True) -> pd.DataFrame:
    rows = []
    for e in reversed(records) if newest_first else records:
        rows.append(
            {
                "time": datetime.fromtimestamp(e.time).strftime("%H:%M:%S.%f")[:-3],
                "event": e.event,
                "nodeId": e.node_id or "",
                "iteration": "" if e.iteration is None else str(e.iteration),
                "state": e.state or "",
                "attempt": "" if e.attempt is None else str(e.attempt),
                "message": e.message,
            }
        )
    return pd.DataFrame.from_records(rows, columns=_COLUMNS)


class EventLog(pn.viewable.Viewer):
    """Filterable, followable event log (see the module docstring)."""

    store: RunStore = param.ClassSelector(class_=RunStore, doc="The session's store.")  # type: ignore[assignment]

    height = param.Integer(default=420, doc="Table height in pixels.")

    theme = param.String(default="simple", doc="Tabulator theme (``midnight`` on the dark wall monitor).")

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self._search = pn.widgets.TextInput(placeholder="Filter: node, event, message…", width=260)
        self._kind = pn.widgets.Select(options=list(KINDS), value="all", width=140)
        self._follow = pn.widgets.Toggle(label="Following", value=True, color="primary", width=140)
        self._count = pn.pane.Str("", margin=(12, 10))
        self._table = pn.widgets.Tabulator(
            events_frame([]),
            show_index=False,
            disabled=True,
            formatters=plaintext(*_COLUMNS),
            layout="fit_data_stretch",
            sizing_mode="stretch_width",
            height=self.height,
            pagination=None,
            theme=self.theme,
        )
        self._seen = 0
        self._throttle = Throttle(self._update, 0.5)
        self.store.param.watch(self._on_events, "events")
        self._search.param.watch(lambda e: self._update(), "value_input")
        self._kind.param.watch(lambda e: self._update(), "value")
        self._follow.param.watch(self._on_follow, "value")
        self._update()

    def _on_events(self, event: Any) -> None:
        if self._follow.value:
            self._throttle()
        else:
            waiting = len(self.store.events) - self._seen
            self._follow.name = f"Paused (+{max(0, waiting)})"

    def _on_follow(self, event: Any) -> None:
        self._follow.name = "Following" if event.new else "Paused"
        self._follow.button_type = "primary" if event.new else "default"
        if event.new:
            self._update()

    def _update(self) -> None:
        events = self.store.events
        self._seen = len(events)
        shown = filter_events(events, self._search.value_input or "", self._kind.value)
        with pn.io.hold():
            self._table.value = events_frame(shown)
            self._count.object = f"{len(shown)} of {len(events)} events"

    def __panel__(self) -> pn.viewable.Viewable:
        controls = pn.Row(self._search, self._kind, self._follow, self._count, sizing_mode="stretch_width")
        return pn.Column(controls, self._table, sizing_mode="stretch_width")

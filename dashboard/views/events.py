# mypy: allow-untyped-calls
"""EventLog: the run's events, newest on top, filterable by text and kind.

Bounded by the store's ring buffer. Both lists show each transition once: the store
drops what Smithers' live stream re-emits and keeps task heartbeats out of the log
(``dashboard/events_dedup.py``). "Follow" keeps the newest event on top as events
arrive; switching it off freezes the table (so a row can be read while a busy run keeps
going) and the toggle counts what arrived meanwhile. Redraws are throttled to twice a
second. Messages are Gateway text shown with the ``plaintext`` formatter.

Cost: while following with no filter, only the records that arrived since the last redraw
are sent (``Tabulator.stream`` with a rollover at the ring buffer's size); the browser shows
them newest first by sorting on a hidden arrival number. Resending the whole log twice a
second cost a 2,000-row table (~100 KB and a ~1 s main-thread task) per redraw on a busy
run. A filter change, a resume or a run switch sends the (filtered) log once.
"""

from __future__ import annotations

import html
from datetime import datetime
from typing import TYPE_CHECKING, Any

import pandas as pd
import panel as pn
import param

from inspector.vocabulary import (
    APPROVAL_EVENT_PREFIX,
    NODE_EVENT_PREFIX,
    RUN_EVENT_PREFIX,
    LogEventName,
    RunEventName,
)

from ..format import shorten
from ..htmlpane import TextHTML
from .base import StoreView
from .widgets import Throttle, plaintext, stylesheet

if TYPE_CHECKING:
    from collections.abc import Iterable

    from ..store import EventRecord

__all__ = ["KINDS", "QUIET_EVENTS", "EventLog", "RecentEvents", "events_frame", "filter_events"]

#: Event-kind filter choices: label -> name prefixes.
KINDS: dict[str, tuple[str, ...]] = {
    "all": (),
    "nodes": (NODE_EVENT_PREFIX,),
    "failures": (RunEventName.NODE_FAILED, RunEventName.RUN_FAILED, RunEventName.RUN_ERROR,
                 RunEventName.RUN_GAP_RESYNC, LogEventName.CONNECTION_PREFIX, LogEventName.STREAM_RESYNCED),
    "run": (RUN_EVENT_PREFIX,),
    "approvals": (APPROVAL_EVENT_PREFIX, RunEventName.NODE_WAITING_APPROVAL),
    "connection": (LogEventName.CONNECTION_PREFIX, LogEventName.STREAM_PREFIX),
}
#: Events the wall list leaves out: a heartbeat every few seconds would push everything
#: that happened off the screen of a quiet run (the badge shows the last heartbeat; the
#: store keeps task heartbeats out of the log, this is the list's own guard).
QUIET_EVENTS = frozenset({RunEventName.RUN_HEARTBEAT, "heartbeat", RunEventName.TICK, RunEventName.TASK_HEARTBEAT})
_COLUMNS = ["time", "event", "nodeId", "iteration", "state", "attempt", "message"]
#: Hidden arrival number: the table sorts on it (newest first) in the browser.
_ORDER = "n"


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


def _numbered(records: list[EventRecord], first: int) -> pd.DataFrame:
    """Oldest first, with the arrival number the browser sorts on."""
    frame = events_frame(records, newest_first=False)
    frame.insert(0, _ORDER, range(first, first + len(records)))
    return frame


class EventLog(StoreView):
    """Filterable, followable event log (see the module docstring)."""

    height = param.Integer(default=420, doc="Table height in pixels.")

    theme = param.String(default="simple", doc="Tabulator theme (``midnight`` on the dark wall monitor).")

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self._search = pn.widgets.TextInput(placeholder="Filter: node, event, message…", width=260)
        self._kind = pn.widgets.Select(options=list(KINDS), value="all", width=140)
        self._follow = pn.widgets.Toggle(label="Following", value=True, color="primary", width=140)
        self._count = pn.pane.Str("", margin=(12, 10))
        self._table = pn.widgets.Tabulator(
            _numbered([], 0),
            sorters=[{"field": _ORDER, "dir": "desc"}],
            hidden_columns=[_ORDER],
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
        self._last: EventRecord | None = None  # the newest record in the table
        self._next = 0  # arrival number of the next row
        self._throttle = Throttle(self._update, 0.5)
        self.store.param.watch(self._on_events, "events")
        self._search.param.watch(lambda e: self._update(full=True), "value_input")
        self._kind.param.watch(lambda e: self._update(full=True), "value")
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

    def _appended(self, events: tuple[EventRecord, ...]) -> list[EventRecord] | None:
        """The records after the newest one shown, or ``None`` if that one is gone (a run
        switch, or more arrived than the ring buffer holds): then the log is resent."""
        if self._last is None:
            return list(events) if not self._table.value.shape[0] else None
        for i in range(len(events) - 1, -1, -1):  # from the end: O(new records)
            if events[i] is self._last:
                return list(events[i + 1 :])
        return None

    def _update(self, *, full: bool = False) -> None:
        events = self.store.events
        self._seen = len(events)
        text, kind = self._search.value_input or "", self._kind.value
        # Streamed only into a table the page shows: Tabulator.stream before the table has a
        # model updates its value but not the data its model is then built from (a log first
        # opened on a run with events showed "245 of 245 events" over an empty table).
        new = None if full or not self._table._models else self._appended(events)
        with pn.io.hold():
            if new is not None and not text and kind == "all":
                if new:
                    self._table.stream(_numbered(new, self._next), rollover=max(len(events), 1), follow=False)
                    self._next += len(new)
                shown_count = len(events)
            else:
                shown = filter_events(events, text, kind)
                self._table.value = _numbered(shown, self._next)
                self._next += len(shown)
                shown_count = len(shown)
            self._last = events[-1] if events else None
            self._count.object = f"{shown_count} of {len(events)} events"

    def __panel__(self) -> pn.viewable.Viewable:
        controls = pn.Row(self._search, self._kind, self._follow, self._count, sizing_mode="stretch_width")
        return pn.Column(controls, self._table, sizing_mode="stretch_width")


class RecentEvents(StoreView):
    """The newest ``limit`` events as a plain list, for the wall monitor (nobody scrolls or
    filters there).

    One escaped HTML pane in a fixed-height box, redrawn at most once a second: a few KB per
    redraw and no table layout, where a Tabulator re-measuring itself on every appended
    row cost the wall's browser several long tasks a second on a busy run.
    """

    limit = param.Integer(default=40, bounds=(1, None), doc="Events shown (newest first).")

    height = param.Integer(default=560, doc="Height of the list in pixels.")

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self._pane = TextHTML(self._render(), stylesheets=[stylesheet()], sizing_mode="stretch_width",
                                  height=self.height, styles={"overflow": "hidden"})
        self._throttle = Throttle(self._update, 1.0, self._load_stretch)
        self.store.param.watch(self._throttle, "events")

    def _render(self) -> str:
        events = self.store.events
        shown: list[EventRecord] = []
        for e in reversed(events):
            if len(shown) >= self.limit:
                break
            if e.event not in QUIET_EVENTS:
                shown.append(e)
        shared = self.store.shared
        if shared is None:
            return self._html(shown, len(events))
        # The stores of a run share their records (dashboard/shared.py): the same newest
        # records give the same list, rendered once for every wall screen on the run.
        key = (tuple(id(e) for e in shown), len(events))
        return shared.memo(f"recent-{self.limit}", key, shown, lambda: self._html(shown, len(events)))

    @staticmethod
    def _html(shown: list[EventRecord], count: int) -> str:
        rows: list[str] = []
        for e in shown:
            when = datetime.fromtimestamp(e.time).strftime("%H:%M:%S")
            # Each part cut on its own: a 300-character node id must not hide the message.
            detail = " · ".join(x for x in (shorten(e.node_id or "", 60), shorten(e.state or "", 40), e.message[:200]) if x)
            rows.append(
                f'<li data-event="{html.escape(e.event, quote=True)}"><span class="sd-muted">{when}</span> '
                f"<b>{html.escape(shorten(e.event, 60))}</b> {html.escape(detail)}</li>"
            )
        if not rows:
            return '<div class="sd-recent sd-muted">No events yet.</div>'
        return f'<ul class="sd-recent" data-count="{count}">{"".join(rows)}</ul>'

    def _update(self) -> None:
        self._pane.object = self._render()

    def __panel__(self) -> pn.viewable.Viewable:
        return self._pane

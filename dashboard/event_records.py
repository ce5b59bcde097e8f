"""The event log's lines: one :class:`EventRecord` per run event, in plain text.

Kept apart from the store so the record (what a log line says) can be read and tested
without the store's subscription machinery; the store and :mod:`dashboard.shared` make
them, the event log and the wall's list show them.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from inspector.vocabulary import NODE_EVENT_STATE, RUN_EVENT_PREFIX, RunEventName, RunStatus

from .events_dedup import gap_message

if TYPE_CHECKING:
    from inspector.items import RunEvent

__all__ = ["EventRecord", "event_record"]


@dataclass(frozen=True, slots=True)
class EventRecord:
    """One line of the event log.

    ``event`` is the Gateway's event name (``node.started``) or, for what the
    subscription itself did, a ``stream.*`` / ``connection.*`` name. ``message`` is plain
    text from the Gateway (an error message, a reason): show it as text, never as HTML.
    """

    time: float
    event: str
    node_id: str | None = None
    iteration: int | None = None
    state: str | None = None
    attempt: int | None = None
    message: str = ""
    seq: int | None = None

    def as_row(self) -> dict[str, Any]:
        return {
            "time": self.time,
            "event": self.event,
            "nodeId": self.node_id or "",
            "iteration": self.iteration,
            "state": self.state or "",
            "attempt": self.attempt,
            "message": self.message,
        }


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _str(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _error_message(value: object) -> str:
    if isinstance(value, Mapping):
        message = value.get("message")
        name = value.get("code") or value.get("name")
        if isinstance(message, str):
            return f"{name}: {message}" if isinstance(name, str) and name and name != "Error" else message
    if isinstance(value, str):
        return value
    return ""


def event_record(item: RunEvent, at: float | None = None) -> EventRecord:
    """The log line of a run event (``received_at`` from the hub when it has one)."""
    frame = item.frame
    payload = frame.payload if isinstance(frame.payload, Mapping) else {}
    when = getattr(item, "received_at", None) or at or time.time()
    message = _error_message(payload.get("error"))
    if not message and frame.event == RunEventName.RUN_COMPLETED:
        message = f"run {payload.get('status', RunStatus.FINISHED.value)}"
    if not message:
        for key in ("reason", "message", "note", "decision"):
            text = _str(payload.get(key))
            if text:
                message = text
                break
    if not message and frame.event == RunEventName.RUN_GAP_RESYNC:
        message = gap_message(payload)
    state = _str(payload.get("state")) or (_str(payload.get("status")) if frame.event.startswith(RUN_EVENT_PREFIX) else None)
    if state == "waiting" and frame.event in NODE_EVENT_STATE:  # the live payload says only "waiting"
        state = NODE_EVENT_STATE[RunEventName(frame.event)].value
    return EventRecord(
        time=when,
        event=frame.event,
        node_id=_str(payload.get("nodeId")),
        iteration=_int(payload.get("iteration")),
        state=state,
        attempt=_int(payload.get("attempt")),
        message=message[:2000],
        seq=frame.seq,
    )

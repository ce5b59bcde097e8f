"""Run events that are not a new line of the event log, taken apart before the store logs.

- ``task.heartbeat``: a running agent's task beats every few seconds (a 4-task agentic run
  sends ~60 in 10 s). Logged, the beats would push what happened out of the ring buffer
  and off the wall's list; they are kept per task in ``RunStore.task_heartbeats`` instead
  (the node details show the selected task's last one).
- A re-emitted transition: Smithers' live stream sends a node's pending / started /
  finished and ``run.completed`` again with new seqs. :class:`inspector.transitions.TransitionLog`
  tells them apart from news; a repeat is dropped, so the event log, the wall's list and
  the timeline's attempt counts see each transition once.
- ``run.error`` (the Gateway stopped this run's event stream: a slow consumer, a failed
  replay) is logged AND kept in ``RunStore.stream_error`` for the run header's banner,
  until a run event arrives after it.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from inspector.transitions import TransitionLog
from inspector.vocabulary import RunEventName

if TYPE_CHECKING:
    from inspector.stream import RunEvent

    from .store import RunStore

__all__ = ["RunEventTriage", "gap_message", "heartbeat_of"]


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def gap_message(payload: Mapping[str, Any]) -> str:
    """The log line of ``run.gap_resync``: which events the Gateway's replay window lost."""
    first, last = _int(payload.get("fromSeq")), _int(payload.get("toSeq"))
    span = f"events {first}–{last}" if first is not None and last is not None else "some events"
    return f"The Gateway no longer holds {span} of this run: the log may miss them (the tree is complete)."


def heartbeat_of(item: RunEvent) -> tuple[tuple[str, int], float] | None:
    """``((nodeId, iteration), when)`` of a ``task.heartbeat`` event, else ``None``."""
    frame = item.frame
    if frame.event != RunEventName.TASK_HEARTBEAT:
        return None
    payload = frame.payload if isinstance(frame.payload, Mapping) else {}
    node_id = payload.get("nodeId")
    if not isinstance(node_id, str):
        return None
    at = getattr(item, "received_at", None) or item.at or time.time()
    return (node_id, _int(payload.get("iteration")) or 0), at


def _error_text(value: object) -> str:
    if isinstance(value, Mapping):
        code, message = value.get("code"), value.get("message")
        if isinstance(message, str) and message:
            return f"{code}: {message}" if isinstance(code, str) and code else message
    return value if isinstance(value, str) and value else "the Gateway reported an error on the run's event stream"


class RunEventTriage:
    """One session's sorting of run events into log lines and the rest (see the module doc).

    With a hub the run's :class:`~dashboard.shared.SharedRunView` tells the repeats (one
    :class:`~inspector.transitions.TransitionLog` per run, its answer per item shared by the
    sessions); a store without one keeps its own log here."""

    def __init__(self) -> None:
        self.transitions = TransitionLog()

    def reset(self) -> None:
        """A new run, or a rewind of this one: nothing is a repeat of what came before."""
        self.transitions.reset()

    def unlogged(self, item: RunEvent, pending: dict[str, Any], store: RunStore) -> bool:
        """Take from ``item`` what is not a log line into ``pending`` (the store's next
        ``param.update``); True if ``item`` is not to be logged at all."""
        frame = item.frame
        payload = frame.payload if isinstance(frame.payload, Mapping) else {}
        if frame.event == RunEventName.TASK_HEARTBEAT:
            beat = heartbeat_of(item)
            if beat is not None:
                # One copy per batch, not per beat: a run with thousands of tasks beats
                # hundreds of times a second.
                beats = pending.get("task_heartbeats")
                if beats is None:
                    beats = pending["task_heartbeats"] = dict(store.task_heartbeats)
                beats[beat[0]] = beat[1]
            return True
        shared = store.shared
        if shared.repeated(item) if shared is not None else self.transitions.is_repeat(frame.event, payload):
            return True
        if frame.event == RunEventName.RUN_ERROR:
            pending["stream_error"] = _error_text(payload.get("error"))
        elif not item.replayed and (pending.get("stream_error") or store.stream_error):
            pending["stream_error"] = None  # events flow again
        return False

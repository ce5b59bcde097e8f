"""The Gateway's durable event history (``/v1/api/events`` rows) in the live events' terms.

Pure functions: the subscription machine uses them to stand the durable history in for an
empty replay, and to date replayed events (live node events carry no timestamps).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any, TypeAlias

from .agents import DURABLE_EVENT_NAMES
from .items import RunEvent
from .protocol import EventFrame
from .vocabulary import NODE_EVENT_STATE, RunStatus

__all__ = ["DURABLE_SOURCE", "LIVE_SOURCE", "HistoryTimes", "durable_run_events", "event_source", "history_times", "take_time"]

#: The :meth:`inspector.agents.RunAgents.apply` ``source`` of the live run-event stream and of
#: the durable history: the two number the same event differently.
LIVE_SOURCE = "live"
DURABLE_SOURCE = "history"


def _dotted(name: str) -> str:
    """``NodeWaitingApproval`` (event history) -> ``node.waiting_approval`` (live event names).

    The names the Gateway does not derive by rule (``NodeOutput`` is ``task.output``,
    ``TokenUsageReported`` is ``token.usage``) come from its ``mapEvent`` table, kept as
    :data:`inspector.agents.DURABLE_EVENT_NAMES`.
    """
    if "." in name or not name:
        return name
    if name in DURABLE_EVENT_NAMES and name not in _DURABLE_RUN_END:
        return DURABLE_EVENT_NAMES[name]
    words = re.findall(r"[A-Z][a-z0-9]*", name)
    if not words:
        return name
    return str(words[0]).lower() + "." + "_".join(str(w).lower() for w in words[1:])


#: Durable history entries that are bookkeeping, not something that happened to the run.
_DURABLE_SKIP = frozenset({"FrameCommitted", "SnapshotCaptured"})
#: Durable run endings -> the live ``run.completed`` status.
_DURABLE_RUN_END = {
    "RunFinished": RunStatus.FINISHED, "RunFailed": RunStatus.FAILED, "RunCancelled": RunStatus.CANCELLED,
}
#: The ``state`` a live node event carries, for durable entries (which carry none).
#: Only the states a live node event itself carries: a durable waiting event gets none, as
#: its live twin says only ``waiting`` (the table's ``waiting-*`` row state is not on the wire).
_NODE_EVENT_STATE: dict[str, str] = {
    name: state for name, state in NODE_EVENT_STATE.items() if not name.startswith("node.waiting")
}


def _stamp(row: Mapping[str, Any], payload: Mapping[str, Any]) -> float | None:
    stamp = row.get("timestampMs", payload.get("timestampMs"))
    return stamp / 1000.0 if isinstance(stamp, int | float) and not isinstance(stamp, bool) else None


def durable_run_events(rows: Iterable[Mapping[str, Any]], run_id: str) -> list[RunEvent]:
    """The Gateway's durable event history (``/v1/api/events`` rows, oldest first) as the
    replayed :class:`RunEvent` s its ``streamRunEvents`` would have sent, with their times.

    The Gateway keeps a run's replay window in memory only until a second after the run
    ends (``RUN_EVENT_TERMINAL_WINDOW_GRACE_MS`` in its gateway.js); a run opened later gets
    an empty replay. Its durable history still has every event, under other names
    (``NodeStarted`` for ``node.started``, ``RunFinished`` for ``run.completed``) and
    without the live payloads' ``state``: both are put back here. ``NodeOutput``'s ``text``
    is the live ``task.output``'s ``output``; its iteration and attempt (which the live
    event lacks) are kept.

    Each event's frame carries the durable row's ``seq`` (``frame.seq``; the item's own
    ``seq`` stays ``None``, the live stream numbers events differently): see
    :func:`event_source`.
    """
    out: list[RunEvent] = []
    for row in rows:
        kind = row.get("event")
        if not isinstance(kind, str) or kind in _DURABLE_SKIP:
            continue
        raw = row.get("payload")
        payload: dict[str, Any] = dict(raw) if isinstance(raw, Mapping) else {}
        payload.pop("type", None)
        payload.pop("correlation", None)
        payload["runId"] = run_id
        if kind in _DURABLE_RUN_END:
            name = "run.completed"
            payload.setdefault("status", _DURABLE_RUN_END[kind])
        else:
            name = _dotted(kind)
            if name in _NODE_EVENT_STATE:
                payload.setdefault("state", _NODE_EVENT_STATE[name])
            if kind == "NodeOutput" and "output" not in payload:
                payload["output"] = payload.pop("text", None)
        seq = row.get("seq")
        durable_seq = seq if isinstance(seq, int) and not isinstance(seq, bool) else None
        out.append(RunEvent(EventFrame(name, payload, seq=durable_seq), None, True, _stamp(row, payload)))
    return out


def event_source(item: RunEvent) -> tuple[str, int | None]:
    """Where a run event came from and its number there: ``(LIVE_SOURCE, item.seq)`` for the
    run-event stream, ``(DURABLE_SOURCE, durable seq)`` for what :func:`durable_run_events`
    made (replayed, without a stream seq). The pair is what
    :meth:`inspector.agents.RunAgents.apply` deduplicates on."""
    if item.replayed and item.seq is None:
        return DURABLE_SOURCE, item.frame.seq
    return LIVE_SOURCE, item.seq


HistoryTimes: TypeAlias = dict[tuple[str, str], list[float]]


def history_times(rows: Iterable[Mapping[str, Any]]) -> HistoryTimes:
    """When each past node event happened, per (live event name, node id), oldest last."""
    times: HistoryTimes = {}
    for row in rows:
        raw = row.get("payload")
        payload: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
        stamp = _stamp(row, payload)
        if stamp is None:
            continue
        # Keyed without the iteration: live payloads may omit it where the history has it,
        # and per (event, node) both list the same occurrences in the same order.
        key = (_dotted(str(row.get("event", ""))), str(payload.get("nodeId", "")))
        times.setdefault(key, []).append(stamp)
    for stamps in times.values():
        stamps.reverse()  # pop() from the end takes the oldest first
    return times


def take_time(times: HistoryTimes, frame: EventFrame) -> float | None:
    """The timestamp of the next unclaimed history event matching ``frame``."""
    payload = frame.payload if isinstance(frame.payload, Mapping) else {}
    stamps = times.get((frame.event, str(payload.get("nodeId", ""))))
    return stamps.pop() if stamps else None



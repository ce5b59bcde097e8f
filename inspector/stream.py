"""The resilient DevTools subscription: one run's tree, kept right through any network weather.

``async for item in client.devtools(run_id): ...`` yields, in order:

- :class:`StatusChanged` whenever the connection status changes (``connecting``,
  ``online``, ``offline`` with the retry delay and when the outage began,
  ``unauthorized``);
- :class:`TreeUpdated` after every applied DevTools event (the tree is
  ``subscription.tree``; the change says what moved);
- :class:`Resynced` when the subscription threw its stream away and rebaselined, and why
  (a gap, a malformed frame, ``BackpressureDisconnect``, a rewind, a lost connection);
- :class:`TimeTravelled` on ``run.time_travel_jumped`` (bare or inside ``run.event``);
- :class:`RunEvent` for the run's other events (``node.started``, ``run.completed``, ...);
- :class:`Heartbeat` on each ``tick``;
- :class:`Settled` once the run is terminal, the stream has been quiet for
  ``settle_quiet`` seconds (``run.completed`` may come before the last delta), and the tree
  has been reconciled with ``getDevToolsSnapshot`` (the stream can end without a delta for
  the last task-state change; the snapshot is the truth).

Reconnects use exponential backoff with full jitter (250 ms base, 10 s cap), reset only
once a connection has proved healthy (a live delta, a heartbeat, or five quiet seconds),
so a Gateway that accepts and drops us at once is not hammered. Each (re)subscription
opens a fresh socket: the Gateway has no unsubscribe, and frames of an abandoned stream
must not reach the new tree. A rejected token moves to ``unauthorized`` and retries
only slowly. Cancelling the consuming task, or :meth:`DevToolsSubscription.stop`, ends
everything cleanly.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeAlias

from .errors import (
    DevToolsError,
    ErrorCode,
    FrameDecodeError,
    GatewayRpcError,
    GatewayStalled,
    GatewayUnavailable,
)
from .protocol import (
    DevToolsDelta,
    DevToolsSnapshot,
    EventFrame,
    ResponseFrame,
    TimeTravelJump,
    decode_devtools_payload,
    is_terminal_run_status,
    time_travel_jump,
    unwrap_run_event,
)
from .status import Backoff, ConnectionState, ConnectionStatus
from .tree import DevToolsTree, TreeChange

if TYPE_CHECKING:
    from .client import GatewayClient, GatewayConnection

__all__ = [
    "DevToolsSubscription",
    "Heartbeat",
    "Resynced",
    "durable_run_events",
    "RunEvent",
    "Settled",
    "StatusChanged",
    "SubscriptionItem",
    "SubscriptionStats",
    "TimeTravelled",
    "TreeUpdated",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class StatusChanged:
    state: ConnectionState


@dataclass(frozen=True, slots=True)
class TreeUpdated:
    change: TreeChange
    tree: DevToolsTree


@dataclass(frozen=True, slots=True)
class Resynced:
    """The stream was abandoned and a fresh one requested; ``reason`` is for humans."""

    reason: str
    error: BaseException | None = None


@dataclass(frozen=True, slots=True)
class TimeTravelled:
    jump: TimeTravelJump


@dataclass(frozen=True, slots=True)
class RunEvent:
    """One of the run's events, unwrapped from ``run.event`` when it came through the
    run-event stream. ``seq`` is the Gateway's per-run event number (when known);
    ``replayed`` marks history the Gateway sent on subscribing, as opposed to news."""

    frame: EventFrame
    seq: int | None = None
    replayed: bool = False
    #: When it happened (seconds since the epoch) as the Gateway's event history says, for
    #: replayed events; ``None`` for news (take the time of receipt: node events carry none).
    at: float | None = None


@dataclass(frozen=True, slots=True)
class Heartbeat:
    at: float


@dataclass(frozen=True, slots=True)
class Settled:
    """The run is terminal and the tree equals the Gateway's last snapshot."""

    run_status: str
    seq: int | None


SubscriptionItem: TypeAlias = StatusChanged | TreeUpdated | Resynced | TimeTravelled | RunEvent | Heartbeat | Settled


@dataclass(slots=True)
class SubscriptionStats:
    """Counters for reliability reports: what went wrong and how often we recovered."""

    connects: int = 0
    connect_failures: int = 0
    resyncs: int = 0
    frames: int = 0
    deltas_applied: int = 0
    snapshots_applied: int = 0
    stale_deltas_skipped: int = 0
    reasons: Counter[str] = field(default_factory=Counter)


def _dotted(name: str) -> str:
    """``NodeWaitingApproval`` (event history) -> ``node.waiting_approval`` (live event names)."""
    if "." in name or not name:
        return name
    words = re.findall(r"[A-Z][a-z0-9]*", name)
    if not words:
        return name
    return str(words[0]).lower() + "." + "_".join(str(w).lower() for w in words[1:])


#: Durable history entries that are bookkeeping, not something that happened to the run.
_DURABLE_SKIP = frozenset({"FrameCommitted", "SnapshotCaptured"})
#: Durable run endings -> the live ``run.completed`` status.
_DURABLE_RUN_END = {"RunFinished": "finished", "RunFailed": "failed", "RunCancelled": "cancelled"}
#: The ``state`` a live node event carries, for durable entries (which carry none).
_NODE_EVENT_STATE = {
    "node.pending": "pending", "node.started": "in-progress", "node.retrying": "in-progress",
    "node.finished": "finished", "node.failed": "failed", "node.cancelled": "cancelled", "node.skipped": "skipped",
}


def durable_run_events(rows: Iterable[Mapping[str, Any]], run_id: str) -> list[RunEvent]:
    """The Gateway's durable event history (``/v1/api/events`` rows, oldest first) as the
    replayed :class:`RunEvent` s its ``streamRunEvents`` would have sent, with their times.

    The Gateway keeps a run's replay window in memory only until a second after the run
    ends (``RUN_EVENT_TERMINAL_WINDOW_GRACE_MS`` in its gateway.js); a run opened later gets
    an empty replay. Its durable history still has every event, under other names
    (``NodeStarted`` for ``node.started``, ``RunFinished`` for ``run.completed``) and
    without the live payloads' ``state``: both are put back here.
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
        stamp = row.get("timestampMs", payload.get("timestampMs"))
        at = stamp / 1000.0 if isinstance(stamp, int | float) and not isinstance(stamp, bool) else None
        out.append(RunEvent(EventFrame(name, payload), None, True, at))
    return out


def _take_time(times: dict[tuple[str, str], list[float]], frame: EventFrame) -> float | None:
    """The timestamp of the next unclaimed history event matching ``frame``."""
    payload = frame.payload if isinstance(frame.payload, Mapping) else {}
    stamps = times.get((frame.event, str(payload.get("nodeId", ""))))
    return stamps.pop() if stamps else None


class _Resubscribe(Exception):
    def __init__(self, reason: str, *, fresh: bool = True, error: BaseException | None = None, kind: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.fresh = fresh
        self.error = error
        self.kind = kind or type(error).__name__ if error else kind or "resync"


class _Done(Exception):
    """The run settled and the caller asked to stop there."""


class DevToolsSubscription:
    """A resilient ``streamDevTools`` subscription to one run. Iterate it (once)."""

    def __init__(
        self,
        client: GatewayClient,
        run_id: str,
        *,
        tree: DevToolsTree | None = None,
        backoff: Backoff | None = None,
        stop_when_settled: bool = False,
        stall_timeout: float | None = None,
        unauthorized_retry: float = 30.0,
        settle_quiet: float = 0.5,
    ) -> None:
        self.client = client
        self.run_id = run_id
        self.tree = tree if tree is not None else DevToolsTree()
        self.backoff = backoff or Backoff()
        self.stop_when_settled = stop_when_settled
        self.stall_timeout = stall_timeout
        self.unauthorized_retry = unauthorized_retry
        #: After the run completes, how long the stream must be quiet before the final
        #: comparison with ``getDevToolsSnapshot``: ``run.completed`` can arrive before the
        #: last delta, and settling on the first snapshot would miss it.
        self.settle_quiet = settle_quiet
        #: How long the stream may wait, once per connection, for the event history's times.
        self.history_timeout = 2.0
        self.state = ConnectionState()
        self.stats = SubscriptionStats()
        self.run_status: str | None = None
        self.settled = False
        self._stop = asyncio.Event()
        self._started = False
        self._conn: GatewayConnection | None = None
        self._event_seq = 0  # last run-event seq seen, so a reconnect does not repeat history
        self._durable_replayed = False  # the durable history stood in for an empty replay
        self._durable_task: asyncio.Future[list[dict[str, Any]]] | None = None
        #: How long the durable event history may take to load (in the background).
        self.durable_history_timeout = 20.0

    def __repr__(self) -> str:
        return f"DevToolsSubscription({self.run_id!r}, {self.state.status.value}, seq={self.tree.seq})"

    def stop(self) -> None:
        """End the iteration at the next opportunity (also interrupts a backoff wait)."""
        self._stop.set()
        if self._conn is not None:
            self._conn.interrupt()

    def __aiter__(self) -> AsyncIterator[SubscriptionItem]:
        if self._started:
            raise RuntimeError("a DevToolsSubscription can be iterated only once")
        self._started = True
        return self._run()

    # ------------------------------------------------------------------ status

    def _status(self, status: ConnectionStatus, **changes: Any) -> StatusChanged | None:
        now = time.time()
        if status is ConnectionStatus.ONLINE:
            changes.setdefault("outage_since", None)
            changes.setdefault("error", None)
            changes.setdefault("retry_in", None)
            changes.setdefault("required_scope", None)
        elif status in (ConnectionStatus.OFFLINE, ConnectionStatus.UNAUTHORIZED):
            changes.setdefault("outage_since", self.state.outage_since or now)
        new = self.state.moved(status, now, attempt=self.backoff.attempt, **changes)
        if new == self.state:
            return None
        self.state = new
        return StatusChanged(new)

    async def _pause(self, delay: float) -> bool:
        """Wait ``delay`` seconds unless stopped first; True when we should go on."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), timeout=delay)
        return not self._stop.is_set()

    # ------------------------------------------------------------------ main loop

    async def _run(self) -> AsyncIterator[SubscriptionItem]:
        fresh = self.tree.empty
        try:
            while not self._stop.is_set():
                item = self._status(ConnectionStatus.CONNECTING)
                if item:
                    yield item
                try:
                    conn = await self.client.open(subscribe=[self.run_id])
                except GatewayRpcError as exc:
                    self.stats.connect_failures += 1
                    if exc.unauthorized:
                        item = self._status(ConnectionStatus.UNAUTHORIZED, error=str(exc.message), retry_in=self.unauthorized_retry)
                        if item:
                            yield item
                        if not await self._pause(self.unauthorized_retry):
                            return
                        continue
                    delay = self.backoff.delay()
                    item = self._status(ConnectionStatus.OFFLINE, error=str(exc), retry_in=delay)
                    if item:
                        yield item
                    if not await self._pause(delay):
                        return
                    continue
                except GatewayUnavailable as exc:
                    self.stats.connect_failures += 1
                    delay = self.backoff.delay()
                    item = self._status(ConnectionStatus.OFFLINE, error=str(exc), retry_in=delay)
                    if item:
                        yield item
                    if not await self._pause(delay):
                        return
                    continue

                self.stats.connects += 1
                delay = 0.0
                self._conn = conn
                stalled = False
                try:
                    async for out in self._session(conn, fresh):
                        yield out
                    return  # the session ends by itself only when told to stop
                except _Done:
                    return
                except _Resubscribe as exc:
                    self.stats.resyncs += 1
                    self.stats.reasons[exc.kind] += 1
                    fresh = exc.fresh
                    log.info("devtools %s: resubscribing (%s)", self.run_id, exc.reason)
                    yield Resynced(exc.reason, exc.error)
                    if self._healthy:
                        self.backoff.reset()
                    else:
                        delay = self.backoff.delay()
                except GatewayRpcError as exc:
                    if exc.unauthorized:
                        item = self._status(ConnectionStatus.UNAUTHORIZED, error=str(exc.message), retry_in=self.unauthorized_retry)
                        if item:
                            yield item
                        delay = self.unauthorized_retry
                    else:
                        delay = self.backoff.delay()
                        item = self._status(
                            ConnectionStatus.OFFLINE, error=str(exc), retry_in=delay, required_scope=exc.required_scope
                        )
                        if item:
                            yield item
                    fresh = True
                except GatewayUnavailable as exc:
                    stalled = isinstance(exc, GatewayStalled)
                    if stalled:
                        await conn.close(abort=True)  # now: a silent peer would stall a polite close
                    self.stats.reasons["connection lost"] += 1
                    delay = 0.0 if self._healthy else self.backoff.delay()
                    if self._healthy:
                        self.backoff.reset()
                    item = self._status(ConnectionStatus.OFFLINE, error=str(exc), retry_in=delay)
                    if item:
                        yield item
                    text = str(exc)
                    yield Resynced(text if text.startswith("connection lost") else f"connection lost: {text}", exc)
                    fresh = self.tree.empty
                finally:
                    self._conn = None
                    if self._durable_task is not None:
                        self._durable_task.cancel()
                        self._durable_task = None
                    await conn.close(abort=stalled)
                if delay and not await self._pause(delay):
                    return
        finally:
            self.state = self.state.moved(ConnectionStatus.IDLE, time.time(), retry_in=None)

    # ------------------------------------------------------------------ one socket

    async def _session(self, conn: GatewayConnection, fresh: bool) -> AsyncIterator[SubscriptionItem]:
        tree = self.tree
        connected_at = time.monotonic()
        self._healthy = False
        params: dict[str, Any] = {"runId": self.run_id}
        if not fresh and tree.seq is not None:
            params["afterSeq"] = tree.seq
        stream_req = await conn.send_request("streamDevTools", params)
        run_req: asyncio.Future[ResponseFrame] | None = await conn.send_request("getRun", {"runId": self.run_id})
        # The run's recent event history (node.started, ...) for timelines and logs; a Gateway
        # without it (or that refuses) still sends live events to a subscribed socket.
        events_req = await conn.send_request("streamRunEvents", {"runId": self.run_id, "afterSeq": self._event_seq})
        history_until = -1
        # Bare run events that arrive before the streamRunEvents answer: that stream's replay
        # will repeat them (with their numbers), so they are held and dropped once it answers,
        # or delivered if the Gateway refused the stream.
        held: list[RunEvent] | None = []
        history_times: dict[tuple[str, str], list[float]] | None = None
        durable: asyncio.Future[list[dict[str, Any]]] | None = None
        stream_id: str | None = None
        stream_answered = False
        online = False
        got_snapshot = False
        settle_at: float | None = None  # when to compare with the Gateway's final snapshot
        stall = self.stall_timeout or max(45.0, 3 * conn.heartbeat_ms / 1000)

        def healthy() -> None:
            # Only a session that delivered the tree counts: a Gateway that takes the socket
            # and ticks but never sends a snapshot must not reset the backoff each time.
            if not self._healthy and got_snapshot:
                self._healthy = True
                self.backoff.reset()

        while not self._stop.is_set():
            if not stream_answered and stream_req.done():
                stream_answered = True
                stream_id = self._subscribed(stream_req.result())
                if not online:
                    online = True
                    item = self._status(ConnectionStatus.ONLINE)
                    if item:
                        yield item
            if run_req is not None and run_req.done():
                status = self._run_status(run_req.result())
                run_req = None
                if is_terminal_run_status(status):
                    self.run_status = status
                    if not self.settled:
                        settle_at = time.monotonic() + self.settle_quiet
            if history_until < 0 and events_req.done():
                answer = events_req.result()
                if not answer.ok and answer.error is not None and answer.error.code is ErrorCode.SEQ_OUT_OF_RANGE:
                    # The Gateway restarted and its event numbering with it: take its history afresh.
                    self._event_seq = 0
                    events_req = await conn.send_request("streamRunEvents", {"runId": self.run_id, "afterSeq": 0})
                else:
                    history_until = self._history_until(answer)
                    if not answer.ok and held:
                        for event in held:
                            yield event
                    held = None
            if (
                durable is None
                and not self._durable_replayed
                and history_until == 0
                and self._event_seq == 0
                and is_terminal_run_status(self.run_status)
            ):
                # A finished run's replay is empty once the Gateway let its window go: read
                # the durable history instead, in the background (the tree does not wait).
                durable = self._durable_task = asyncio.ensure_future(
                    asyncio.wait_for(self.client.list_run_events(self.run_id), self.durable_history_timeout)
                )
            if durable is not None and durable.done():
                self._durable_replayed = True
                self._durable_task = None
                for event in self._durable_events(durable):
                    yield event
                durable = None
            if settle_at is not None and got_snapshot and time.monotonic() >= settle_at:
                settle_at = None
                async for out in self._reconcile(conn):
                    yield out
                healthy()
                if self.stop_when_settled:
                    raise _Done
            if time.monotonic() - connected_at >= self.backoff.healthy_after:
                healthy()

            waiting = [f for f in (None if stream_answered else stream_req, run_req, durable) if f is not None]
            timeout = stall
            if settle_at is not None and got_snapshot:
                timeout = max(0.0, min(stall, settle_at - time.monotonic()))
            if waiting:
                getter = asyncio.ensure_future(conn.next_event(timeout, idle_ok=settle_at is not None))
                awaited: list[asyncio.Future[Any]] = [getter, *waiting]
                done, _ = await asyncio.wait(awaited, return_when=asyncio.FIRST_COMPLETED)
                if getter not in done:
                    getter.cancel()
                    with contextlib.suppress(BaseException):
                        await getter
                    continue
                item_or_error = getter.result()
            else:
                item_or_error = await conn.next_event(timeout, idle_ok=settle_at is not None)
            if item_or_error is None:
                continue
            self.stats.frames += 1
            if isinstance(item_or_error, FrameDecodeError):
                raise _Resubscribe(f"the gateway sent an undecodable frame ({item_or_error})", error=item_or_error)
            event_seq: int | None = None
            replayed = False
            if item_or_error.event == "run.event" and isinstance(item_or_error.payload, Mapping):
                raw_seq = item_or_error.payload.get("seq")
                if isinstance(raw_seq, int) and not isinstance(raw_seq, bool):
                    if raw_seq <= self._event_seq:
                        continue  # already seen before a reconnect
                    self._event_seq = event_seq = raw_seq
                    if history_until < 0 and events_req.done():
                        history_until = self._history_until(events_req.result())
                        held = None
                    replayed = raw_seq <= history_until
            frame = unwrap_run_event(item_or_error)
            name = frame.event
            if name == "tick":
                healthy()
                yield Heartbeat(time.time())
                continue
            if name == "devtools.event":
                updated = self._devtools_event(frame, stream_id)
                if updated is None:
                    continue
                if not online:
                    online = True
                    item = self._status(ConnectionStatus.ONLINE)
                    if item:
                        yield item
                if settle_at is not None:
                    settle_at = time.monotonic() + self.settle_quiet  # still moving: wait for quiet
                if updated.change.kind == "snapshot":
                    got_snapshot = True
                elif got_snapshot:
                    healthy()
                yield updated
                continue
            if name == "devtools.error":
                self._devtools_error(frame, stream_id)
                continue
            jump = None if replayed else time_travel_jump(frame)
            if jump is not None and (not jump.run_id or jump.run_id == self.run_id):
                self.settled = False
                self.run_status = None
                yield TimeTravelled(jump)
                raise _Resubscribe(
                    f"run rewound from frame {jump.from_frame_no} to frame {jump.to_frame_no}", kind="time travel"
                )
            payload = frame.payload if isinstance(frame.payload, Mapping) else {}
            if payload.get("runId") != self.run_id:
                continue
            if name == "run.completed":
                status = payload.get("status")
                self.run_status = status if isinstance(status, str) else "finished"
                if not self.settled and settle_at is None:
                    settle_at = time.monotonic() + self.settle_quiet
            elif name.startswith("run.") and name not in ("run.completed",) and self.settled:
                # The run moved again (resumed, rewound by another path): expect changes.
                if name in ("run.started", "run.resumed"):
                    self.settled = False
            at = None
            if replayed:
                if history_times is None:
                    history_times = await self._history_times()
                at = _take_time(history_times, frame)
            event = RunEvent(frame, event_seq, replayed, at)
            if event_seq is None and held is not None:
                held.append(event)
                continue
            yield event

    # ------------------------------------------------------------------ frame handling

    def _durable_events(self, loaded: asyncio.Future[list[dict[str, Any]]]) -> list[RunEvent]:
        """The durable history as replayed events; nothing (and a log line) if it failed."""
        try:
            rows = loaded.result()
        except TimeoutError:
            log.info("durable event history for %s took over %.0f s", self.run_id, self.durable_history_timeout)
            return []
        except (GatewayRpcError, GatewayUnavailable) as exc:
            log.info("no durable event history for %s: %s", self.run_id, exc)
            return []
        return durable_run_events(rows, self.run_id)

    async def _history_times(self) -> dict[tuple[str, str], list[float]]:
        """When each past node event happened, from the durable history (best effort)."""
        try:
            # Best effort, and bounded: the tree must not wait on a slow or hung HTTP API.
            rows = await asyncio.wait_for(self.client.list_run_events(self.run_id), self.history_timeout)
        except TimeoutError:
            log.info("event history for %s took over %.1f s; using receipt times", self.run_id, self.history_timeout)
            return {}
        except (GatewayRpcError, GatewayUnavailable) as exc:
            log.info("no event history for %s: %s", self.run_id, exc)
            return {}
        times: dict[tuple[str, str], list[float]] = {}
        for row in rows:
            payload = row.get("payload") if isinstance(row.get("payload"), Mapping) else {}
            assert isinstance(payload, Mapping)
            stamp = row.get("timestampMs", payload.get("timestampMs"))
            if not isinstance(stamp, int | float) or isinstance(stamp, bool):
                continue
            # Keyed without the iteration: live payloads may omit it where the history has it,
            # and per (event, node) both list the same occurrences in the same order.
            key = (_dotted(str(row.get("event", ""))), str(payload.get("nodeId", "")))
            times.setdefault(key, []).append(stamp / 1000.0)
        for stamps in times.values():
            stamps.reverse()  # pop() from the end takes the oldest first
        return times

    @staticmethod
    def _history_until(frame: ResponseFrame) -> int:
        """The last replayed event seq of a ``streamRunEvents`` answer (0 when refused)."""
        payload = frame.payload if frame.ok and isinstance(frame.payload, Mapping) else {}
        value = payload.get("currentSeq")
        return value if isinstance(value, int) and not isinstance(value, bool) else 0

    def _subscribed(self, frame: ResponseFrame) -> str | None:
        if frame.ok:
            payload = frame.payload if isinstance(frame.payload, Mapping) else {}
            sid = payload.get("streamId")
            return sid if isinstance(sid, str) else None
        assert frame.error is not None
        error = frame.error.to_exception(method="streamDevTools")
        if error.code is ErrorCode.SEQ_OUT_OF_RANGE:
            raise _Resubscribe("the gateway's history is shorter than ours (SeqOutOfRange)", error=error)
        raise error

    @staticmethod
    def _run_status(frame: ResponseFrame) -> str | None:
        if not frame.ok or not isinstance(frame.payload, Mapping):
            return None
        status = frame.payload.get("status")
        return status if isinstance(status, str) else None

    def _devtools_event(self, frame: EventFrame, stream_id: str | None) -> TreeUpdated | None:
        raw = frame.payload if isinstance(frame.payload, Mapping) else {}
        if raw.get("runId") not in (None, self.run_id):
            return None  # another run's stream on a shared socket
        if stream_id is not None and raw.get("streamId") not in (None, stream_id):
            return None  # an abandoned or foreign stream
        try:
            payload = decode_devtools_payload(frame.payload)
        except (FrameDecodeError, DevToolsError) as exc:
            raise _Resubscribe(f"malformed DevTools event: {exc}", error=exc) from None
        event = payload.event
        tree = self.tree
        if (
            isinstance(event, DevToolsDelta)
            and tree.seq is not None
            and event.seq <= tree.seq
            and event.base_seq < tree.seq
        ):
            # Already covered (a duplicate, or a trailing delta after a reconcile snapshot).
            self.stats.stale_deltas_skipped += 1
            return None
        try:
            change = tree.apply(event)
        except DevToolsError as exc:
            raise _Resubscribe(f"could not apply a DevTools event: {exc}", error=exc) from None
        if isinstance(event, DevToolsSnapshot):
            self.stats.snapshots_applied += 1
        else:
            self.stats.deltas_applied += 1
        return TreeUpdated(change, tree)

    def _devtools_error(self, frame: EventFrame, stream_id: str | None) -> None:
        payload = frame.payload if isinstance(frame.payload, Mapping) else {}
        if payload.get("runId") not in (None, self.run_id):
            return
        if stream_id is not None and payload.get("streamId") not in (None, stream_id):
            return
        raw_error = payload.get("error")
        error: Mapping[str, Any] = raw_error if isinstance(raw_error, Mapping) else {}
        code = str(error.get("code", "unknown"))
        message = str(error.get("message", ""))
        exc = GatewayRpcError(code, message, method="streamDevTools")
        if exc.unauthorized:
            raise exc
        raise _Resubscribe(f"the gateway stopped the stream ({code}: {message})", error=exc, kind=code)

    async def _reconcile(self, conn: GatewayConnection) -> AsyncIterator[SubscriptionItem]:
        """Read the Gateway's final snapshot and make the tree equal to it."""
        snapshot = await conn.request("getDevToolsSnapshot", {"runId": self.run_id})
        tree = self.tree
        event = {"version": 1, "kind": "snapshot", "snapshot": snapshot}
        if not isinstance(snapshot, Mapping) or snapshot.get("root") != tree.snapshot()["root"] or snapshot.get(
            "seq"
        ) != tree.seq:
            try:
                change = tree.apply(event)
            except DevToolsError as exc:
                raise _Resubscribe(f"the gateway's final snapshot is malformed: {exc}", error=exc) from None
            self.stats.snapshots_applied += 1
            yield TreeUpdated(change, tree)
        self.settled = True
        yield Settled(self.run_status or "finished", tree.seq)

    _healthy = False

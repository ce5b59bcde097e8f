"""The DevTools subscription's policy as a pure state machine (sans-I/O, like websockets' ``protocol.py``).

A :class:`SubscriptionMachine` decides everything about following one run's tree and
never touches a socket, a task or a clock, so each decision can be tested frame by frame.
Its driver (:class:`inspector.stream.DevToolsSubscription`) does the I/O and feeds it.

What goes in (every input carries ``now``, monotonic seconds for deadlines, and may carry
``wall``, seconds since the epoch for the stamps a view shows; ``wall`` defaults to ``now``):

- :meth:`~SubscriptionMachine.connecting`, then :meth:`~SubscriptionMachine.connected`
  (with the hello's heartbeat) or :meth:`~SubscriptionMachine.connect_failed` (a
  :class:`~inspector.errors.ProtocolUnsupported` Gateway ends it: no reconnect loop);
- :meth:`~SubscriptionMachine.receive_frame`: an event frame, or the
  :class:`~inspector.errors.FrameDecodeError` of one that could not be decoded;
- :meth:`~SubscriptionMachine.receive_response`: the answer to a :class:`SendRequest`
  (``streamDevTools``, ``getRun``, ``streamRunEvents``), by its ``kind``;
- :meth:`~SubscriptionMachine.receive_snapshot` (the :class:`Reconcile` answer),
  :meth:`~SubscriptionMachine.receive_history_times` (:class:`LoadHistoryTimes`) and
  :meth:`~SubscriptionMachine.receive_durable_history` (:class:`LoadDurableHistory`);
- :meth:`~SubscriptionMachine.tick` when the driver woke up with nothing new (a
  deadline passed), :meth:`~SubscriptionMachine.connection_lost` when the socket failed.

What comes out, in order, from :meth:`~SubscriptionMachine.next_actions`: the public items
the subscription yields (:mod:`inspector.items`: :class:`StatusChanged`, :class:`TreeUpdated`, :class:`Resynced`,
:class:`TimeTravelled`, :class:`RunEvent`, :class:`Heartbeat`, :class:`Settled`) mixed with
commands for the driver (:class:`SendRequest`, :class:`Reconcile`, :class:`LoadHistoryTimes`,
:class:`LoadDurableHistory`, :class:`Resubscribe`, :class:`Stop`). Order matters: a
``Resynced`` comes before the ``Resubscribe`` that closes the socket. :class:`Reconcile` and
:class:`LoadHistoryTimes` block: the machine emits nothing more until their answer is fed
(frames fed meanwhile wait in a backlog). :meth:`~SubscriptionMachine.read_timeout` and
:meth:`~SubscriptionMachine.next_deadline` tell the driver how long it may wait for a frame.

Why pure: the policy (held run events, replay and durable history, seq de-duplication,
the settle deadline, rebaselines, backoff resets) is where the subtle bugs live; fused with
sockets it could only be tested through a network, slowly and by timing.
"""

from __future__ import annotations

import functools
import logging
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias

from .errors import (
    DevToolsError,
    ErrorCode,
    FrameDecodeError,
    GatewayRpcError,
    GatewayStalled,
    GatewayUnavailable,
    ProtocolUnsupported,
)
from .items import (
    Heartbeat,
    Resynced,
    RunEvent,
    Settled,
    StatusChanged,
    SubscriptionItem,
    SubscriptionStats,
    TimeTravelled,
    TreeUpdated,
)
from .protocol import (
    DevToolsDelta,
    DevToolsSnapshot,
    EventFrame,
    ResponseFrame,
    decode_devtools_payload,
    is_terminal_run_status,
    time_travel_jump,
    unwrap_run_event,
)
from .run_history import HistoryTimes, durable_run_events, history_times, take_time
from .status import Backoff, ConnectionState, ConnectionStatus
from .tree import DevToolsTree
from .vocabulary import RunEventName

__all__ = [
    "Command",
    "LoadDurableHistory",
    "LoadHistoryTimes",
    "Output",
    "Reconcile",
    "RequestKind",
    "Resubscribe",
    "SendRequest",
    "Stop",
    "SubscriptionMachine",
]

log = logging.getLogger("inspector.stream")

# --------------------------------------------------------------------------- commands (executed)

#: Which answer a :class:`SendRequest` expects: ``streamDevTools``, ``getRun``, ``streamRunEvents``.
RequestKind: TypeAlias = Literal["stream", "run", "events"]


@dataclass(frozen=True, slots=True)
class SendRequest:
    """Send a request on the socket without waiting; feed its answer to ``receive_response(kind, ...)``."""

    kind: RequestKind
    method: str
    params: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Reconcile:
    """Ask for the Gateway's current snapshot and wait for it (frames wait too); feed the
    payload to ``receive_snapshot``. An error answer or a timeout is a ``connection_lost``."""

    method: str
    params: dict[str, Any]


@dataclass(frozen=True, slots=True)
class LoadHistoryTimes:
    """Read the run's durable event history (bounded by ``timeout``) and feed its rows, or
    ``None`` when it failed, to ``receive_history_times`` before any other frame."""

    run_id: str
    timeout: float


@dataclass(frozen=True, slots=True)
class LoadDurableHistory:
    """Read the run's durable event history in the background (bounded by ``timeout``);
    feed its rows, or ``None``, to ``receive_durable_history`` whenever they arrive."""

    run_id: str
    timeout: float


@dataclass(frozen=True, slots=True)
class Resubscribe:
    """Drop this socket (``abort``: without a closing handshake), wait ``delay`` seconds,
    then connect again. The next stream is fresh, or resumes after ``after_seq``."""

    reason: str
    fresh: bool
    after_seq: int | None
    delay: float
    abort: bool = False


@dataclass(frozen=True, slots=True)
class Stop:
    """The run settled and the caller asked to stop there: close and end."""


Command: TypeAlias = SendRequest | Reconcile | LoadHistoryTimes | LoadDurableHistory | Resubscribe | Stop
Output: TypeAlias = SubscriptionItem | Command


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


# --------------------------------------------------------------------------- the machine


class _Rebaseline(Exception):
    """Internal: this stream cannot go on; start a fresh one."""

    def __init__(self, reason: str, *, error: BaseException | None = None, kind: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.error = error
        self.kind = kind or (type(error).__name__ if error else "resync")


@dataclass(slots=True)
class _Session:
    """What the machine knows about one socket; forgotten when it closes."""

    connected_at: float
    stall_after: float
    stream_id: str | None = None
    #: The last replayed run-event seq; -1 until ``streamRunEvents`` answers.
    history_until: int = -1
    #: Bare run events that arrive before the ``streamRunEvents`` answer: that stream's
    #: replay repeats them (with their numbers), so they are held and dropped once it
    #: answers, or delivered if the Gateway refused the stream.
    held: list[RunEvent] | None = field(default_factory=list)
    times: HistoryTimes | None = None
    durable_loading: bool = False
    online: bool = False
    got_snapshot: bool = False
    healthy: bool = False
    #: When to compare with the Gateway's final snapshot.
    settle_at: float | None = None
    #: A blocking command is out (history times or the reconcile snapshot).
    blocked: bool = False
    #: The replayed run event that waits for the history's times.
    waiting_event: tuple[EventFrame, int | None] | None = None
    backlog: deque[Callable[[], None]] = field(default_factory=deque)
    #: The run-event stream's id (the ``streamRunEvents`` answer), and when it was last
    #: asked for again after the Gateway stopped it with ``run.error``.
    events_stream_id: str | None = None
    events_rerequested_at: float | None = None


class SubscriptionMachine:
    """The policy of one run's resilient DevTools subscription, without I/O (see the module doc).

    ``tree`` is the tree it keeps (a new one by default); ``backoff`` paces reconnects and
    is reset only once a connection proved healthy (it delivered the tree and then a live
    delta, a heartbeat, a settle, or ``backoff.healthy_after`` seconds passed).
    """

    def __init__(
        self,
        run_id: str,
        *,
        tree: DevToolsTree | None = None,
        backoff: Backoff | None = None,
        stop_when_settled: bool = False,
        stall_timeout: float | None = None,
        unauthorized_retry: float = 30.0,
        settle_quiet: float = 0.5,
        history_timeout: float = 2.0,
        durable_history_timeout: float = 20.0,
    ) -> None:
        self.run_id = run_id
        self.tree = tree if tree is not None else DevToolsTree()
        self.backoff = backoff or Backoff()
        self.stop_when_settled = stop_when_settled
        #: Seconds of silence that mean a dead socket (default: three heartbeats, at least 45 s).
        self.stall_timeout = stall_timeout
        self.unauthorized_retry = unauthorized_retry
        #: After the run completes, how long the stream must be quiet before the final
        #: comparison with ``getDevToolsSnapshot``: ``run.completed`` can arrive before the
        #: last delta, and settling on the first snapshot would miss it.
        self.settle_quiet = settle_quiet
        #: How long the stream may wait, once per connection, for the event history's times.
        self.history_timeout = history_timeout
        #: How long the durable event history may take to load (in the background).
        self.durable_history_timeout = durable_history_timeout
        self.state = ConnectionState()
        self.stats = SubscriptionStats()
        self.run_status: str | None = None
        self.settled = False
        self._outputs: list[Output] = []
        self._session: _Session | None = None
        self._fresh: bool | None = None  # decided when the first connection starts
        self._event_seq = 0  # last run-event seq seen, so a reconnect does not repeat history
        self._durable_replayed = False  # the durable history stood in for an empty replay
        self._gap_until = 0  # the last run-event seq a run.gap_resync said was lost

    def __repr__(self) -> str:
        return f"SubscriptionMachine({self.run_id!r}, {self.state.status.value}, seq={self.tree.seq})"

    # ------------------------------------------------------------------ outputs

    def next_actions(self) -> list[Output]:
        """The items and commands produced since the last call, in order."""
        out, self._outputs = self._outputs, []
        return out

    def next_deadline(self) -> float | None:
        """When the machine wants a :meth:`tick` even if no frame comes (the settle deadline)."""
        s = self._session
        if s is None or s.settle_at is None or not s.got_snapshot:
            return None
        return s.settle_at

    def read_timeout(self, now: float) -> tuple[float, bool]:
        """How long the driver may wait for the next frame, and whether silence that long
        is expected (waiting for quiet before settling) rather than a dead socket."""
        s = self._session
        if s is None:
            return 0.0, True
        timeout = s.stall_after
        deadline = self.next_deadline()
        if deadline is not None:
            timeout = max(0.0, min(timeout, deadline - now))
        return timeout, s.settle_at is not None

    # ------------------------------------------------------------------ connection inputs

    def connecting(self, now: float, wall: float | None = None) -> None:
        """A connection attempt starts."""
        if self._fresh is None:
            self._fresh = self.tree.empty
        self._status(ConnectionStatus.CONNECTING, _wall(now, wall))

    def connect_failed(
        self, error: GatewayRpcError | GatewayUnavailable | ProtocolUnsupported, now: float, wall: float | None = None
    ) -> None:
        """The socket could not be opened (refused, unreachable, token rejected, or a
        Gateway on a protocol we do not speak: then :class:`Stop`, with one message)."""
        self.stats.connect_failures += 1
        w = _wall(now, wall)
        if isinstance(error, ProtocolUnsupported):
            self.stats.reasons["protocol unsupported"] += 1
            self._status(ConnectionStatus.UNSUPPORTED, w, error=str(error), retry_in=None)
            self._emit(Stop())
            return
        if isinstance(error, GatewayRpcError) and error.unauthorized:
            self._status(ConnectionStatus.UNAUTHORIZED, w, error=str(error.message), retry_in=self.unauthorized_retry)
            delay = self.unauthorized_retry
        else:
            delay = self.backoff.delay()
            self._status(ConnectionStatus.OFFLINE, w, error=str(error), retry_in=delay)
        self._emit(Resubscribe(str(error), *self._resume_from(), delay))

    def connected(self, now: float, wall: float | None = None, *, heartbeat_ms: int = 15_000) -> None:
        """A socket is open and authenticated: subscribe (tree, run status, run events)."""
        self.stats.connects += 1
        if self._fresh is None:
            self._fresh = self.tree.empty
        stall = self.stall_timeout or max(45.0, 3 * heartbeat_ms / 1000)
        self._session = _Session(connected_at=now, stall_after=stall)
        params: dict[str, Any] = {"runId": self.run_id}
        if not self._fresh and self.tree.seq is not None:
            params["afterSeq"] = self.tree.seq
        self._emit(SendRequest("stream", "streamDevTools", params))
        self._emit(SendRequest("run", "getRun", {"runId": self.run_id}))
        # The run's recent event history (node.started, ...) for timelines and logs; a Gateway
        # without it (or that refuses) still sends live events to a subscribed socket.
        self._emit(SendRequest("events", "streamRunEvents", {"runId": self.run_id, "afterSeq": self._event_seq}))

    def connection_lost(self, error: GatewayRpcError | GatewayUnavailable, now: float, wall: float | None = None) -> None:
        """The socket failed (closed, cut, stalled, or an error answer the stream needs)."""
        if self._session is not None:
            self._fail(error, _wall(now, wall))

    def finish(self, now: float, wall: float | None = None) -> None:
        """The driver ended (stopped, settled, cancelled): the status goes back to idle."""
        self._session = None
        self.state = self.state.moved(ConnectionStatus.IDLE, _wall(now, wall), retry_in=None)

    # ------------------------------------------------------------------ session inputs

    def receive_frame(self, frame: EventFrame | FrameDecodeError, now: float, wall: float | None = None) -> None:
        """An event frame from the socket (or why one could not be decoded)."""
        self._input(functools.partial(self._frame, frame, now, _wall(now, wall)), now, _wall(now, wall))

    def receive_response(self, kind: RequestKind, frame: ResponseFrame, now: float, wall: float | None = None) -> None:
        """The answer to a :class:`SendRequest` of this ``kind``."""
        handler = {"stream": self._stream_answer, "run": self._run_answer, "events": self._events_answer}[kind]
        self._input(functools.partial(handler, frame, now, _wall(now, wall)), now, _wall(now, wall))

    def tick(self, now: float, wall: float | None = None) -> None:
        """Time passed with no frame (a deadline, or the driver was woken)."""
        s = self._session
        if s is not None and not s.blocked:
            self._input(lambda: None, now, _wall(now, wall))

    def receive_snapshot(self, payload: Any, now: float, wall: float | None = None) -> None:
        """The :class:`Reconcile` answer: make the tree equal to it, then settle."""
        s = self._session
        if s is None or not s.blocked:
            return
        w = _wall(now, wall)
        s.blocked = False
        try:
            self._reconciled(payload, s)
        except _Rebaseline as exc:
            self._rebaseline(exc)
            return
        self._healthy(s)
        if self.stop_when_settled:
            self._end(Stop())
            return
        self._after_input(now, w)
        self._drain(now, w)

    def receive_history_times(self, rows: Iterable[Mapping[str, Any]] | None, now: float, wall: float | None = None) -> None:
        """The :class:`LoadHistoryTimes` answer (``None`` when the history was unavailable)."""
        s = self._session
        if s is None or not s.blocked or s.waiting_event is None:
            return
        w = _wall(now, wall)
        s.blocked = False
        s.times = history_times(rows) if rows is not None else {}
        frame, seq = s.waiting_event
        s.waiting_event = None
        self._deliver(s, RunEvent(frame, seq, True, take_time(s.times, frame)))
        self._after_input(now, w)
        self._drain(now, w)

    def receive_durable_history(self, rows: Iterable[Mapping[str, Any]] | None, now: float, wall: float | None = None) -> None:
        """The :class:`LoadDurableHistory` answer (``None`` when it failed or took too long)."""
        s = self._session
        if s is None or not s.durable_loading:
            return
        s.durable_loading = False
        self._durable_replayed = True
        events = durable_run_events(rows, self.run_id) if rows is not None else []
        self._input(lambda: self._outputs.extend(events), now, _wall(now, wall))

    # ------------------------------------------------------------------ internals: plumbing

    def _emit(self, output: Output) -> None:
        self._outputs.append(output)

    def _input(self, handle: Callable[[], None], now: float, wall: float) -> None:
        s = self._session
        if s is None:
            return
        if s.blocked:
            s.backlog.append(handle)
            return
        try:
            handle()
        except _Rebaseline as exc:
            self._rebaseline(exc)
            return
        except GatewayRpcError as exc:
            self._fail(exc, wall)
            return
        if self._session is s and not s.blocked:
            self._after_input(now, wall)

    def _drain(self, now: float, wall: float) -> None:
        s = self._session
        while s is not None and self._session is s and not s.blocked and s.backlog:
            handle = s.backlog.popleft()
            self._input(handle, now, wall)

    def _end(self, command: Resubscribe | Stop) -> None:
        self._session = None
        self._emit(command)

    def _resume_from(self) -> tuple[bool, int | None]:
        fresh = bool(self._fresh)
        return fresh, None if fresh else self.tree.seq

    def _status(self, status: ConnectionStatus, wall: float, **changes: Any) -> None:
        if status is ConnectionStatus.ONLINE:
            changes.setdefault("outage_since", None)
            changes.setdefault("error", None)
            changes.setdefault("retry_in", None)
            changes.setdefault("required_scope", None)
        elif status in (ConnectionStatus.OFFLINE, ConnectionStatus.UNAUTHORIZED):
            changes.setdefault("outage_since", self.state.outage_since or wall)
        new = self.state.moved(status, wall, attempt=self.backoff.attempt, **changes)
        if new != self.state:
            self.state = new
            self._emit(StatusChanged(new))

    def _online(self, s: _Session, wall: float) -> None:
        if not s.online:
            s.online = True
            self._status(ConnectionStatus.ONLINE, wall)

    def _healthy(self, s: _Session) -> None:
        # Only a session that delivered the tree counts: a Gateway that takes the socket
        # and ticks but never sends a snapshot must not reset the backoff each time.
        if not s.healthy and s.got_snapshot:
            s.healthy = True
            self.backoff.reset()

    # ------------------------------------------------------------------ internals: endings

    def _rebaseline(self, exc: _Rebaseline) -> None:
        s = self._session
        if s is None:
            return
        self.stats.resyncs += 1
        self.stats.reasons[exc.kind] += 1
        self._fresh = True
        log.info("devtools %s: resubscribing (%s)", self.run_id, exc.reason)
        self._emit(Resynced(exc.reason, exc.error))
        delay = 0.0
        if s.healthy:
            self.backoff.reset()
        else:
            delay = self.backoff.delay()
        self._end(Resubscribe(exc.reason, True, None, delay))

    def _fail(self, error: GatewayRpcError | GatewayUnavailable, wall: float) -> None:
        s = self._session
        if s is None:
            return
        abort = False
        if isinstance(error, GatewayRpcError):
            if error.unauthorized:
                self._status(ConnectionStatus.UNAUTHORIZED, wall, error=str(error.message), retry_in=self.unauthorized_retry)
                delay = self.unauthorized_retry
            else:
                delay = self.backoff.delay()
                self._status(ConnectionStatus.OFFLINE, wall, error=str(error), retry_in=delay,
                             required_scope=error.required_scope)
            self._fresh = True
        else:
            abort = isinstance(error, GatewayStalled)
            self.stats.reasons["connection lost"] += 1
            delay = 0.0 if s.healthy else self.backoff.delay()
            if s.healthy:
                self.backoff.reset()
            self._status(ConnectionStatus.OFFLINE, wall, error=str(error), retry_in=delay)
            text = str(error)
            self._emit(Resynced(text if text.startswith("connection lost") else f"connection lost: {text}", error))
            self._fresh = self.tree.empty
        self._end(Resubscribe(str(error), *self._resume_from(), delay, abort))

    # ------------------------------------------------------------------ internals: the checks after every input

    def _after_input(self, now: float, wall: float) -> None:
        s = self._session
        if s is None:
            return
        if (
            not s.durable_loading
            and not self._durable_replayed
            and s.history_until == 0
            and self._event_seq == 0
            and is_terminal_run_status(self.run_status)
        ):
            # A finished run's replay is empty once the Gateway let its window go: read
            # the durable history instead, in the background (the tree does not wait).
            s.durable_loading = True
            self._emit(LoadDurableHistory(self.run_id, self.durable_history_timeout))
        if s.settle_at is not None and s.got_snapshot and now >= s.settle_at:
            s.settle_at = None
            s.blocked = True
            self._emit(Reconcile("getDevToolsSnapshot", {"runId": self.run_id}))
            return
        if now - s.connected_at >= self.backoff.healthy_after:
            self._healthy(s)

    # ------------------------------------------------------------------ internals: answers

    def _stream_answer(self, frame: ResponseFrame, now: float, wall: float) -> None:
        s = self._session
        assert s is not None
        if frame.ok:
            payload = frame.payload if isinstance(frame.payload, Mapping) else {}
            sid = payload.get("streamId")
            s.stream_id = sid if isinstance(sid, str) else None
        else:
            assert frame.error is not None
            error = frame.error.to_exception(method="streamDevTools")
            if error.code is ErrorCode.SEQ_OUT_OF_RANGE:
                raise _Rebaseline("the gateway's history is shorter than ours (SeqOutOfRange)", error=error)
            raise error
        self._online(s, wall)

    def _run_answer(self, frame: ResponseFrame, now: float, wall: float) -> None:
        s = self._session
        assert s is not None
        status = frame.payload.get("status") if frame.ok and isinstance(frame.payload, Mapping) else None
        if is_terminal_run_status(status):
            assert isinstance(status, str)
            self.run_status = status
            if not self.settled:
                s.settle_at = now + self.settle_quiet

    def _events_answer(self, frame: ResponseFrame, now: float, wall: float) -> None:
        s = self._session
        assert s is not None
        if s.history_until >= 0:
            return
        if not frame.ok and frame.error is not None and frame.error.code is ErrorCode.SEQ_OUT_OF_RANGE:
            # The Gateway restarted and its event numbering with it: take its history afresh.
            self._event_seq = 0
            self._emit(SendRequest("events", "streamRunEvents", {"runId": self.run_id, "afterSeq": 0}))
            return
        payload = frame.payload if frame.ok and isinstance(frame.payload, Mapping) else {}
        s.history_until = _int(payload.get("currentSeq")) or 0
        stream_id = payload.get("streamId")
        s.events_stream_id = stream_id if isinstance(stream_id, str) else None
        if not frame.ok and s.held:
            self._outputs.extend(s.held)
        s.held = None

    def _reconciled(self, snapshot: Any, s: _Session) -> None:
        tree = self.tree
        if not isinstance(snapshot, Mapping) or snapshot.get("root") != tree.snapshot()["root"] or snapshot.get(
            "seq"
        ) != tree.seq:
            try:
                change = tree.apply({"version": 1, "kind": "snapshot", "snapshot": snapshot})
            except DevToolsError as exc:
                raise _Rebaseline(f"the gateway's final snapshot is malformed: {exc}", error=exc) from None
            self.stats.snapshots_applied += 1
            self._emit(TreeUpdated(change, tree))
        self.settled = True
        self._emit(Settled(self.run_status or "finished", tree.seq))

    # ------------------------------------------------------------------ internals: frames

    def _frame(self, raw: EventFrame | FrameDecodeError, now: float, wall: float) -> None:
        s = self._session
        assert s is not None
        self.stats.frames += 1
        if isinstance(raw, FrameDecodeError):
            raise _Rebaseline(f"the gateway sent an undecodable frame ({raw})", error=raw)
        event_seq: int | None = None
        replayed = False
        if raw.event == "run.event" and isinstance(raw.payload, Mapping):
            raw_seq = _int(raw.payload.get("seq"))
            if raw_seq is not None:
                if raw_seq <= self._event_seq:
                    return  # already seen before a reconnect
                self._event_seq = event_seq = raw_seq
                replayed = raw_seq <= s.history_until
        frame = unwrap_run_event(raw)
        name = frame.event
        if name == "tick":
            self._healthy(s)
            self._emit(Heartbeat(wall))
            return
        if name == "devtools.event":
            self._devtools_event(s, frame, now, wall)
            return
        if name == "devtools.error":
            self._devtools_error(s, frame)
            return
        jump = None if replayed else time_travel_jump(frame)
        if jump is not None and (not jump.run_id or jump.run_id == self.run_id):
            self.settled = False
            self.run_status = None
            self._emit(TimeTravelled(jump))
            raise _Rebaseline(
                f"run rewound from frame {jump.from_frame_no} to frame {jump.to_frame_no}", kind="time travel"
            )
        payload = frame.payload if isinstance(frame.payload, Mapping) else {}
        if payload.get("runId") != self.run_id:
            return
        if name == RunEventName.RUN_GAP_RESYNC:
            self._gap(frame, payload)
            return
        if name == RunEventName.RUN_ERROR:
            self._deliver(s, RunEvent(frame, event_seq, replayed))
            self._events_stopped(s, payload, now)
            return
        if name == "run.completed":
            status = payload.get("status")
            self.run_status = status if isinstance(status, str) else "finished"
            if not self.settled and s.settle_at is None:
                s.settle_at = now + self.settle_quiet
        elif name in ("run.started", "run.resumed") and self.settled:
            self.settled = False  # the run moved again (resumed, rewound by another path): expect changes
        if replayed and s.times is None:
            s.blocked = True
            s.waiting_event = (frame, event_seq)
            self._emit(LoadHistoryTimes(self.run_id, self.history_timeout))
            return
        at = take_time(s.times, frame) if replayed and s.times is not None else None
        self._deliver(s, RunEvent(frame, event_seq, replayed, at))

    #: Seconds between two requests for the run events again after ``run.error``s: a
    #: consumer too slow for the stream must not turn into a request loop.
    EVENTS_RETRY_INTERVAL = 5.0

    def _events_stopped(self, s: _Session, payload: Mapping[str, Any], now: float) -> None:
        """``run.error``: the Gateway stopped this run's event stream (a slow consumer:
        ``BackpressureDisconnect``; a failed replay) and sends nothing more on it. Ask for
        the events after the last seq seen again (the replay fills what was dropped, seq
        dedup drops the rest), at most once per :data:`EVENTS_RETRY_INTERVAL`; the DevTools
        tree is another stream and goes on."""
        stream_id = payload.get("streamId")
        if s.events_stream_id is not None and stream_id not in (None, s.events_stream_id):
            return  # an abandoned stream's error
        if s.events_rerequested_at is not None and now - s.events_rerequested_at < self.EVENTS_RETRY_INTERVAL:
            return
        s.events_rerequested_at = now
        s.history_until = -1
        s.held = None
        self._emit(SendRequest("events", "streamRunEvents", {"runId": self.run_id, "afterSeq": self._event_seq}))

    def _gap(self, frame: EventFrame, payload: Mapping[str, Any]) -> None:
        """``run.gap_resync`` (``sendRunGapResync`` in the Gateway's gateway.js): on
        subscribing after ``afterSeq``, the Gateway's replay window no longer held events
        ``fromSeq``..``toSeq``; the window's frames follow and are deduplicated by seq as
        usual. Yielded once per gap, never held with the bare events the replay repeats
        (it does not repeat this one), and not again when a reconnect reports the same
        gap: a reconnecting subscription must not log it once per attempt."""
        to_seq = _int(payload.get("toSeq"))
        if to_seq is not None and to_seq <= self._gap_until:
            return
        self._gap_until = max(self._gap_until, to_seq or 0)
        self._emit(RunEvent(frame, None, True))

    def _deliver(self, s: _Session, event: RunEvent) -> None:
        if event.seq is None and s.held is not None:
            s.held.append(event)
        else:
            self._emit(event)

    def _devtools_event(self, s: _Session, frame: EventFrame, now: float, wall: float) -> None:
        raw = frame.payload if isinstance(frame.payload, Mapping) else {}
        if raw.get("runId") not in (None, self.run_id):
            return  # another run's stream on a shared socket
        if s.stream_id is not None and raw.get("streamId") not in (None, s.stream_id):
            return  # an abandoned or foreign stream
        try:
            payload = decode_devtools_payload(frame.payload)
        except (FrameDecodeError, DevToolsError) as exc:
            raise _Rebaseline(f"malformed DevTools event: {exc}", error=exc) from None
        event = payload.event
        tree = self.tree
        if isinstance(event, DevToolsDelta) and tree.seq is not None and event.seq <= tree.seq and event.base_seq < tree.seq:
            # Already covered (a duplicate, or a trailing delta after a reconcile snapshot).
            self.stats.stale_deltas_skipped += 1
            return
        try:
            change = tree.apply(event)
        except DevToolsError as exc:
            raise _Rebaseline(f"could not apply a DevTools event: {exc}", error=exc) from None
        if isinstance(event, DevToolsSnapshot):
            self.stats.snapshots_applied += 1
        else:
            self.stats.deltas_applied += 1
        self._online(s, wall)
        if s.settle_at is not None:
            s.settle_at = now + self.settle_quiet  # still moving: wait for quiet
        if change.kind == "snapshot":
            s.got_snapshot = True
        elif s.got_snapshot:
            self._healthy(s)
        self._emit(TreeUpdated(change, tree))

    def _devtools_error(self, s: _Session, frame: EventFrame) -> None:
        payload = frame.payload if isinstance(frame.payload, Mapping) else {}
        if payload.get("runId") not in (None, self.run_id):
            return
        if s.stream_id is not None and payload.get("streamId") not in (None, s.stream_id):
            return
        raw_error = payload.get("error")
        error: Mapping[str, Any] = raw_error if isinstance(raw_error, Mapping) else {}
        code = str(error.get("code", "unknown"))
        message = str(error.get("message", ""))
        exc = GatewayRpcError(code, message, method="streamDevTools")
        if exc.unauthorized:
            raise exc
        raise _Rebaseline(f"the gateway stopped the stream ({code}: {message})", error=exc, kind=code)


def _wall(now: float, wall: float | None) -> float:
    return now if wall is None else wall

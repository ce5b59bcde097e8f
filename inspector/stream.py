"""The resilient DevTools subscription: one run's tree, kept right through any network weather.

``async for item in DevToolsSubscription(client, run_id): ...`` yields, in order:

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

Every one of those decisions is made by the pure
:class:`~inspector.subscription.SubscriptionMachine`; this module is its async driver: it
opens sockets, sends what the machine asks, feeds it frames, answers and clock ticks, and
yields the items it produces.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING, Any, Generic, TypeVar, overload

from .errors import GatewayRpcError, GatewayStalled, GatewayUnavailable, ProtocolUnsupported
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
from .protocol import Hello, protocol_refusal, read_hello
from .run_history import durable_run_events
from .subscription import (
    LoadDurableHistory,
    LoadHistoryTimes,
    Output,
    Reconcile,
    RequestKind,
    Resubscribe,
    SendRequest,
    Stop,
    SubscriptionMachine,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from .client import GatewayClient, GatewayConnection
    from .protocol import ResponseFrame
    from .status import Backoff, ConnectionState
    from .tree import DevToolsTree

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

_T = TypeVar("_T")
_Ending = Resubscribe | Stop


class _MachineAttribute(Generic[_T]):
    """An attribute of the subscription that lives on its machine (read and written there)."""

    def __set_name__(self, owner: type, name: str) -> None:
        self._name = name

    @overload
    def __get__(self, obj: None, objtype: type | None = None) -> _MachineAttribute[_T]: ...

    @overload
    def __get__(self, obj: DevToolsSubscription, objtype: type | None = None) -> _T: ...

    def __get__(self, obj: DevToolsSubscription | None, objtype: type | None = None) -> _T | _MachineAttribute[_T]:
        if obj is None:
            return self
        value: _T = getattr(obj.machine, self._name)
        return value

    def __set__(self, obj: DevToolsSubscription, value: _T) -> None:
        setattr(obj.machine, self._name, value)


def _clock() -> tuple[float, float]:
    """Now, for the machine: monotonic seconds (deadlines) and epoch seconds (stamps)."""
    return time.monotonic(), time.time()


def _split(outputs: list[Output]) -> tuple[list[SubscriptionItem], _Ending | None]:
    """A batch without socket work (no session): the items to yield and how it ends."""
    items: list[SubscriptionItem] = []
    ending: _Ending | None = None
    for out in outputs:
        if isinstance(out, Resubscribe | Stop):
            ending = out
        elif isinstance(out, StatusChanged | TreeUpdated | Resynced | TimeTravelled | RunEvent | Heartbeat | Settled):
            items.append(out)
    return items, ending


class DevToolsSubscription:
    """A resilient ``streamDevTools`` subscription to one run. Iterate it (once)."""

    tree: _MachineAttribute[DevToolsTree] = _MachineAttribute()
    backoff: _MachineAttribute[Backoff] = _MachineAttribute()
    state: _MachineAttribute[ConnectionState] = _MachineAttribute()
    stats: _MachineAttribute[SubscriptionStats] = _MachineAttribute()
    run_status: _MachineAttribute[str | None] = _MachineAttribute()
    settled: _MachineAttribute[bool] = _MachineAttribute()
    stop_when_settled: _MachineAttribute[bool] = _MachineAttribute()
    stall_timeout: _MachineAttribute[float | None] = _MachineAttribute()
    unauthorized_retry: _MachineAttribute[float] = _MachineAttribute()
    #: After the run completes, how long the stream must be quiet before settling.
    settle_quiet: _MachineAttribute[float] = _MachineAttribute()
    #: How long the stream may wait, once per connection, for the event history's times.
    history_timeout: _MachineAttribute[float] = _MachineAttribute()
    #: How long the durable event history may take to load (in the background).
    durable_history_timeout: _MachineAttribute[float] = _MachineAttribute()

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
        #: The policy; this object only does its I/O.
        self.machine = SubscriptionMachine(
            run_id,
            tree=tree,
            backoff=backoff,
            stop_when_settled=stop_when_settled,
            stall_timeout=stall_timeout,
            unauthorized_retry=unauthorized_retry,
            settle_quiet=settle_quiet,
        )
        self._stop = asyncio.Event()
        self._started = False
        self._conn: GatewayConnection | None = None
        self._durable_task: asyncio.Future[list[dict[str, Any]]] | None = None
        self._ending: _Ending | None = None  # how the last connection ended
        #: The last connection's hello: the Gateway's protocol, features, heartbeat policy.
        self.hello = Hello()

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

    async def _pause(self, delay: float) -> bool:
        """Wait ``delay`` seconds unless stopped first; True when we should go on."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), timeout=delay)
        return not self._stop.is_set()

    # ------------------------------------------------------------------ connections

    async def _run(self) -> AsyncIterator[SubscriptionItem]:
        machine = self.machine
        try:
            while not self._stop.is_set():
                machine.connecting(*_clock())
                for item in _split(machine.next_actions())[0]:
                    yield item
                failure: GatewayRpcError | GatewayUnavailable | ProtocolUnsupported | None = None
                try:
                    conn = await self.client.open(subscribe=[self.run_id])
                except (GatewayRpcError, GatewayUnavailable) as exc:
                    failure = protocol_refusal(exc) or exc
                else:
                    try:
                        self.hello = read_hello(conn.hello)
                    except ProtocolUnsupported as exc:
                        await conn.close()
                        failure = exc
                if failure is not None:
                    machine.connect_failed(failure, *_clock())
                    items, self._ending = _split(machine.next_actions())
                    for item in items:
                        yield item
                else:
                    self._ending = None
                    async for item in self._connection(conn):
                        yield item
                ending = self._ending
                if not isinstance(ending, Resubscribe):
                    return  # settled (Stop), or stopped by the caller
                if ending.delay and not await self._pause(ending.delay):
                    return
        finally:
            machine.finish(*_clock())

    async def _connection(self, conn: GatewayConnection) -> AsyncIterator[SubscriptionItem]:
        """One socket's life: the session, then how it ended (``self._ending``)."""
        machine = self.machine
        machine.connected(*_clock(), heartbeat_ms=conn.heartbeat_ms)
        self._conn = conn
        stalled = False
        try:
            async for item in self._session(conn):
                yield item
        except (GatewayRpcError, GatewayUnavailable) as exc:
            stalled = isinstance(exc, GatewayStalled)
            if stalled:
                await conn.close(abort=True)  # now: a silent peer would stall a polite close
            machine.connection_lost(exc, *_clock())
            items, self._ending = _split(machine.next_actions())
            for item in items:
                yield item
            if self._ending is None:  # the machine had already given this stream up
                self._ending = Resubscribe(str(exc), True, None, self.backoff.delay())
        finally:
            self._conn = None
            if self._durable_task is not None:
                self._durable_task.cancel()
                self._durable_task = None
            await conn.close(abort=stalled)

    # ------------------------------------------------------------------ one socket

    async def _session(self, conn: GatewayConnection) -> AsyncIterator[SubscriptionItem]:
        """Pump the machine on one socket until it gives the stream up, settles, or we stop."""
        machine = self.machine
        pending: dict[asyncio.Future[Any], RequestKind | None] = {}  # None: the durable history
        while not self._stop.is_set():
            # Run what the machine asked for; a blocking command's answer may ask for more.
            while batch := machine.next_actions():
                for out in batch:
                    if isinstance(out, SendRequest):
                        pending[await conn.send_request(out.method, out.params)] = out.kind
                    elif isinstance(out, Reconcile):
                        machine.receive_snapshot(await conn.request(out.method, out.params), *_clock())
                    elif isinstance(out, LoadHistoryTimes):
                        machine.receive_history_times(await self._history_rows(out), *_clock())
                    elif isinstance(out, LoadDurableHistory):
                        loading = self.client.list_run_events(self.run_id)
                        task = asyncio.ensure_future(asyncio.wait_for(loading, out.timeout))
                        self._durable_task = task
                        pending[task] = None
                    elif isinstance(out, Resubscribe | Stop):
                        self._ending = out
                        return
                    else:
                        yield out
            timeout, idle_ok = machine.read_timeout(time.monotonic())
            if not pending:
                frame = await conn.next_event(timeout, idle_ok=idle_ok)
            else:
                getter = asyncio.ensure_future(conn.next_event(timeout, idle_ok=idle_ok))
                try:
                    await asyncio.wait([getter, *pending], return_when=asyncio.FIRST_COMPLETED)
                finally:
                    woke = getter.done()
                    if not woke:
                        getter.cancel()
                        with contextlib.suppress(BaseException):
                            await getter
                self._feed_answers(pending)
                if not woke:
                    continue
                frame = getter.result()
            if frame is None:
                machine.tick(*_clock())
            else:
                machine.receive_frame(frame, *_clock())

    def _feed_answers(self, pending: dict[asyncio.Future[Any], RequestKind | None]) -> None:
        """Give the machine every answer that arrived (in the order they were asked for)."""
        for future in [f for f in pending if f.done()]:
            kind = pending.pop(future)
            if kind is None:
                self._durable_task = None
                self.machine.receive_durable_history(self._durable_rows(future), *_clock())
            else:
                answer: ResponseFrame = future.result()
                self.machine.receive_response(kind, answer, *_clock())

    # ------------------------------------------------------------------ the durable history

    async def _history_rows(self, command: LoadHistoryTimes) -> list[dict[str, Any]] | None:
        """The durable history for replayed events' times (best effort, and bounded: the
        tree must not wait on a slow or hung HTTP API)."""
        try:
            return await asyncio.wait_for(self.client.list_run_events(self.run_id), command.timeout)
        except TimeoutError:
            log.info("event history for %s took over %.1f s; using receipt times", self.run_id, command.timeout)
        except (GatewayRpcError, GatewayUnavailable) as exc:
            log.info("no event history for %s: %s", self.run_id, exc)
        return None

    def _durable_rows(self, loaded: asyncio.Future[list[dict[str, Any]]]) -> list[dict[str, Any]] | None:
        """The background load's rows; ``None`` (and a log line) if it failed."""
        try:
            return loaded.result()
        except TimeoutError:
            log.info("durable event history for %s took over %.0f s", self.run_id, self.durable_history_timeout)
        except (GatewayRpcError, GatewayUnavailable) as exc:
            log.info("no durable event history for %s: %s", self.run_id, exc)
        return None

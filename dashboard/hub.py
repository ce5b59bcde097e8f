"""One Gateway connection per run per process, however many browsers watch it.

Every browser tab of ``panel serve`` gets its own session and its own
:class:`~dashboard.store.RunStore`; if each opened its own DevTools subscription, twelve
people watching one run would cost the Gateway twelve sockets and twelve streams. The
:class:`GatewayHub` owns the process's single :class:`~inspector.client.GatewayClient`
and, per run, ONE :class:`~inspector.stream.DevToolsSubscription` whose items it fans
out to every attached listener:

- ``handle = hub.attach(run_id, listener)`` adds a listener (a plain callable taking a
  subscription item); the first listener of a run starts its subscription. A late
  joiner is immediately given the current state (connection status, the tree as a
  rebuilt snapshot change, recent run events, the last heartbeat, ``Settled``), so it
  never waits for the next delta to draw.
- ``handle.release()`` removes it; when the last listener of a run leaves, the
  subscription is stopped after a grace period (a page reload re-attaches before it
  ends, so it does not cost a resubscribe).
- :meth:`GatewayHub.read` shares identical RPC reads that are in flight or a moment old,
  so a node finishing does not make twelve sessions ask ``getRun`` twelve times.
- :meth:`GatewayHub.shared_view` is the run's :class:`~dashboard.shared.SharedRunView`: the
  batching clock its stores tick on together, and the per-tick products (tree patch, event
  records, header and event-list HTML) computed once for all of them.

Limits, so that one visitor cannot make the server hold unbounded upstream work: at most
``max_upstreams`` runs are subscribed at once per process, and one ``owner`` (a visitor:
:func:`dashboard.roles.session_visitor`) waits on at most ``max_runs_per_owner`` runs the
Gateway has not confirmed (no tree received, ``getRun`` not answered). Run ids are free text,
so only unconfirmed runs are unbounded: runs that exist are as many as the Gateway holds, and
a person with a tab per real run is not refused. Joining a run someone already watches costs
the Gateway nothing and is never refused. A refused attach gets an offline status that says
why, and nothing is subscribed. A run the Gateway does not know (``?runId=`` of a
typo) is asked about once with ``getRun`` after its first failure: ``RunNotFound`` stops its
subscription (no resync loop) with "run X not found on the Gateway".

Everything runs on the asyncio loop that is current when the hub is first used: the
tornado loop of ``panel serve`` or the Jupyter kernel's loop. There is no thread. No
Panel import here: the hub is plain asyncio and is tested without a browser.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import time
from collections import deque
from collections.abc import AsyncIterable, Callable, Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from inspector.client import GatewayClient
from inspector.errors import ErrorCode, GatewayError, GatewayRpcError
from inspector.history import TaskStateHistory
from inspector.protocol import compact_event_frame
from inspector.status import ConnectionState, ConnectionStatus
from inspector.stream import (
    DevToolsSubscription,
    Heartbeat,
    RunEvent,
    Settled,
    StatusChanged,
    SubscriptionItem,
    TreeUpdated,
)
from inspector.tree import DevToolsTree, TreeChange
from inspector.vocabulary import RUN_EVENT_PREFIX, RunEventName

from . import metrics
from .config import read_token_file
from .shared import SharedRunView

__all__ = [
    "DEFAULT_MAX_RUNS_PER_OWNER",
    "DEFAULT_MAX_UPSTREAMS",
    "TOKEN_FILE_RETRY_SECONDS",
    "GatewayHub",
    "HubStats",
    "Listener",
    "ReceivedRunEvent",
    "SourceFactory",
    "Subscription",
]

log = logging.getLogger(__name__)

#: Runs subscribed at once by one process (each costs the Gateway a socket and a stream).
DEFAULT_MAX_UPSTREAMS = 200
#: Runs not (yet) confirmed by the Gateway that one owner (a visitor) may wait on at once.
DEFAULT_MAX_RUNS_PER_OWNER = 4
#: Seconds between retries after the Gateway rejected the token, when a token file can be
#: rewritten to fix it (without one, a human must restart the server: 30 s).
TOKEN_FILE_RETRY_SECONDS = 10.0
#: Error codes that mean the run does not exist.
_NOT_FOUND = frozenset({ErrorCode.RUN_NOT_FOUND, ErrorCode.NOT_FOUND})

Listener = Callable[[SubscriptionItem], None]
#: Builds the item source of one run: ``(run_id, tree) -> async iterable of items``. The
#: default is ``DevToolsSubscription(client, run_id, tree=tree)``; tests pass scripted fakes.
SourceFactory = Callable[[str, DevToolsTree], AsyncIterable[SubscriptionItem]]


@dataclass(frozen=True, slots=True)
class ReceivedRunEvent(RunEvent):
    """A :class:`~inspector.stream.RunEvent` with the time the hub received it.

    Gateway node events carry no timestamp; a late joiner replaying the hub's history
    must still see when each happened, so every run event is stamped once, here.
    """

    received_at: float = 0.0


@dataclass(slots=True)
class HubStats:
    """Counters for tests and ``/admin``-style reporting."""

    subscriptions_started: int = 0
    subscriptions_stopped: int = 0
    attaches: int = 0
    releases: int = 0
    source_crashes: int = 0
    refusals: int = 0
    runs_not_found: int = 0
    reads: int = 0
    reads_shared: int = 0


@dataclass(eq=False)
class _Feed:
    """One run's subscription and what a late joiner needs to catch up."""

    run_id: str
    tree: DevToolsTree
    listeners: dict[int, Listener] = field(default_factory=dict)
    task: asyncio.Task[None] | None = None
    source: AsyncIterable[SubscriptionItem] | None = None
    state: ConnectionState = field(default_factory=ConnectionState)
    last_heartbeat: float | None = None
    settled: Settled | None = None
    events: deque[RunEvent] = field(default_factory=lambda: deque(maxlen=2000))
    #: The last ``task.heartbeat`` of each task: a late joiner needs only those, and a busy
    #: agentic run beats several times a second (kept out of ``events``, whose history it would push out).
    task_beats: dict[tuple[object, object], RunEvent] = field(default_factory=dict)
    stop_timer: asyncio.TimerHandle | None = None
    history: TaskStateHistory = field(default_factory=TaskStateHistory)
    view: SharedRunView | None = None
    owners: dict[int, Hashable] = field(default_factory=dict)
    #: ``None``: not asked yet; False: not known to be missing; True: the Gateway does not know it.
    missing: bool | None = None
    #: ``getRun`` answered with the run (an error other than not-found proves nothing: a
    #: malformed run id is refused as ``InvalidRunId``).
    exists: bool = False

    @property
    def confirmed(self) -> bool:
        """Does the Gateway know this run (a tree arrived, or ``getRun`` answered it)?"""
        return self.exists or not self.tree.empty

    def observe(self, item: SubscriptionItem) -> None:
        if isinstance(item, StatusChanged):
            self.state = item.state
        elif isinstance(item, Heartbeat):
            self.last_heartbeat = item.at
        elif isinstance(item, Settled):
            self.settled = item
        elif isinstance(item, RunEvent):
            name = item.frame.event
            if name == RunEventName.RUN_HEARTBEAT:  # liveness, not history: late joiners need only the last
                self.last_heartbeat = time.time()
                return
            if name == RunEventName.TASK_HEARTBEAT and isinstance(item.frame.payload, dict):
                self.task_beats[(item.frame.payload.get("nodeId"), item.frame.payload.get("iteration"))] = item
                return
            self.events.append(item)
            if name.startswith(RUN_EVENT_PREFIX) and name != RunEventName.RUN_COMPLETED and not item.replayed:
                self.settled = None
        elif isinstance(item, TreeUpdated):
            # Recorded here, in step with the tree: listeners run later, on a moved tree.
            self.history.observe(item.tree, item.change)
            if item.change.rewound:
                self.settled = None

    def catch_up(self) -> list[SubscriptionItem]:
        """What a listener that joins now must be told to be where the others are."""
        items: list[SubscriptionItem] = []
        if self.state.status is not ConnectionStatus.IDLE:
            items.append(StatusChanged(self.state))
        if not self.tree.empty:
            seq = self.tree.seq if self.tree.seq is not None else 0
            frame = self.tree.frame_no if self.tree.frame_no is not None else seq
            change = TreeChange("snapshot", seq, frame, None, rebuilt=True)
            items.append(TreeUpdated(change, self.tree))
        items.extend(self.events)
        items.extend(self.task_beats.values())
        if self.last_heartbeat is not None:
            items.append(Heartbeat(self.last_heartbeat))
        if self.settled is not None:
            items.append(self.settled)
        return items


class Subscription:
    """A listener's hold on a run; :meth:`release` it when the view goes away."""

    def __init__(self, hub: GatewayHub, run_id: str, key: int) -> None:
        self.hub = hub
        self.run_id = run_id
        self._key = key
        self.released = False

    def release(self) -> None:
        """Stop receiving items. Idempotent."""
        if not self.released:
            self.released = True
            self.hub._release(self.run_id, self._key)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __repr__(self) -> str:
        state = "released" if self.released else "attached"
        return f"Subscription({self.run_id!r}, {state})"


@dataclass(slots=True)
class _Cached:
    at: float
    future: asyncio.Future[Any]


class GatewayHub:
    """The process-wide fan-out of Gateway subscriptions (see the module docstring).

    ``grace`` is how long a run's subscription outlives its last listener. ``source``
    replaces the DevTools subscription (tests). ``event_history`` bounds the run events
    kept for late joiners.
    """

    _registry: ClassVar[dict[tuple[str, str | None, asyncio.AbstractEventLoop | None], GatewayHub]] = {}

    def __init__(
        self,
        client: GatewayClient,
        *,
        grace: float = 5.0,
        source: SourceFactory | None = None,
        event_history: int = 2000,
        crash_retry: float = 5.0,
        unauthorized_retry: float = 30.0,
        max_upstreams: int = DEFAULT_MAX_UPSTREAMS,
        max_runs_per_owner: int = DEFAULT_MAX_RUNS_PER_OWNER,
    ) -> None:
        self.client = client
        self.grace = grace
        self.event_history = event_history
        self.crash_retry = crash_retry
        self.unauthorized_retry = unauthorized_retry
        self.max_upstreams = max_upstreams
        self.max_runs_per_owner = max_runs_per_owner
        #: Bound on shared read answers kept (done ones are evicted oldest first).
        self.max_cached_reads = 256
        self._source = source or (lambda run_id, tree: DevToolsSubscription(
            client, run_id, tree=tree, unauthorized_retry=self.unauthorized_retry))
        self._feeds: dict[str, _Feed] = {}
        self._keys = 0
        self._reads: dict[str, _Cached] = {}
        self._closed = False
        self.stats = HubStats()
        metrics.track_hub(self)

    def __repr__(self) -> str:
        return f"GatewayHub({self.client.display_url!r}, runs={sorted(self._feeds)})"

    # ------------------------------------------------------------------ registry

    @classmethod
    def shared(cls, url: str, token: str | None = None, *, token_file: str | None = None, **kwargs: Any) -> GatewayHub:
        """The hub of this process (and event loop) for ``url`` with ``token``.

        With ``token_file`` the client reads that file again when the Gateway rejects the
        token (a rotation), and the hub is keyed by the file, not by the token it held
        when it started: sessions opened after a rotation share the same hub.

        Keyed by loop as well, because an ``httpx`` pool and socket tasks belong to one
        loop: under ``panel serve`` and in a notebook there is exactly one; a test suite
        that makes a loop per test gets a fresh hub per test.
        """
        try:
            loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        for key in [k for k in cls._registry if k[2] is not None and k[2].is_closed()]:
            del cls._registry[key]
        key = (url.rstrip("/"), f"file:{token_file}" if token_file else token, loop)
        hub = cls._registry.get(key)
        if hub is None or hub._closed:
            provider = functools.partial(read_token_file, token_file) if token_file else None
            if token_file:
                # A rotation is fixed by rewriting the file: look at it again soon.
                kwargs.setdefault("unauthorized_retry", TOKEN_FILE_RETRY_SECONDS)
            hub = cls(GatewayClient(url, token, token_provider=provider), **kwargs)
            cls._registry[key] = hub
        return hub

    # ------------------------------------------------------------------ attach / release

    @property
    def runs(self) -> list[str]:
        """Runs with a live (or lingering) subscription."""
        return list(self._feeds)

    def listener_count(self, run_id: str) -> int:
        feed = self._feeds.get(run_id)
        return len(feed.listeners) if feed else 0

    def tree(self, run_id: str) -> DevToolsTree | None:
        """The shared tree of a watched run (read it, never change it)."""
        feed = self._feeds.get(run_id)
        return feed.tree if feed else None

    def shared_view(self, run_id: str) -> SharedRunView | None:
        """The run's per-tick work shared by its sessions (see :mod:`dashboard.shared`), while
        anyone is attached (``None`` otherwise)."""
        feed = self._feeds.get(run_id)
        return feed.view if feed else None

    def frame_states(self, run_id: str, frame: int) -> dict[int, str] | None:
        """Task states (DevTools id -> state) at ``frame`` as this process saw them stream,
        or ``None`` if it did not watch that frame (see :mod:`inspector.history`)."""
        feed = self._feeds.get(run_id)
        return feed.history.states_at(frame) if feed else None

    def runs_of(self, owner: Hashable, *, unconfirmed: bool = False) -> list[str]:
        """The runs ``owner`` holds a subscription to (with ``unconfirmed``, only those the
        Gateway has neither confirmed nor denied: a run found missing holds no upstream
        stream, so a visitor who mistyped four run ids can still open a fifth page).
        Owners are equal values (a user or address key)."""
        return [f.run_id for f in self._feeds.values()
                if owner in f.owners.values() and not (unconfirmed and (f.confirmed or f.missing))]

    def _refusal(self, run_id: str, owner: Hashable | None) -> str | None:
        if run_id in self._feeds and self._feeds[run_id].listeners:
            return None  # already watched: joining costs the Gateway nothing
        if owner is not None and len(set(self.runs_of(owner, unconfirmed=True)) - {run_id}) >= self.max_runs_per_owner:
            return (f"refused: you already wait on {self.max_runs_per_owner} runs the Gateway has not confirmed "
                    "(mistyped run ids?); close one first")
        watched = sum(1 for f in self._feeds.values() if f.listeners and f.run_id != run_id)
        if run_id not in self._feeds and watched >= self.max_upstreams:
            return f"refused: the server already watches {self.max_upstreams} runs; try again later"
        return None

    def attach(self, run_id: str, listener: Listener, *, owner: Hashable | None = None) -> Subscription:
        """Start receiving ``run_id``'s subscription items.

        The listener is called on the loop, once per item; it is called for the catch-up
        items before this method returns. It must not block (hand the work to the loop).
        ``owner`` (the visitor, a hashable key compared by value: every tab of one visitor
        counts together) is counted against ``max_runs_per_owner``; ``None`` is not capped.
        Past a limit the listener gets one offline status saying why, and the handle holds
        nothing.
        """
        if self._closed:
            raise RuntimeError("the hub is closed")
        refusal = self._refusal(run_id, owner)
        if refusal is not None:
            self.stats.refusals += 1
            log.warning("run %s: %s", run_id, refusal)
            now = time.time()
            self._deliver(listener, StatusChanged(ConnectionState().moved(
                ConnectionStatus.OFFLINE, now, error=refusal, retry_in=None, outage_since=now)))
            handle = Subscription(self, run_id, 0)
            handle.released = True
            return handle
        feed = self._feeds.get(run_id)
        if feed is None:
            # The view's memos must outlast the event history a late joiner's catch-up replays.
            view = SharedRunView(run_id, max_records=max(4096, 2 * self.event_history))
            feed = _Feed(run_id, DevToolsTree(), events=deque(maxlen=self.event_history), view=view)
            self._feeds[run_id] = feed
        if feed.stop_timer is not None:
            feed.stop_timer.cancel()
            feed.stop_timer = None
        self._keys += 1
        key = self._keys
        feed.listeners[key] = listener
        if owner is not None:
            feed.owners[key] = owner
        self.stats.attaches += 1
        if feed.task is None or feed.task.done():
            self._start(feed)
        for item in feed.catch_up():
            self._deliver(listener, item)
        return Subscription(self, run_id, key)

    def _release(self, run_id: str, key: int) -> None:
        feed = self._feeds.get(run_id)
        if feed is None or feed.listeners.pop(key, None) is None:
            return
        feed.owners.pop(key, None)
        self.stats.releases += 1
        if feed.listeners:
            return
        if self.grace <= 0:
            self._stop(feed)
            return
        loop: asyncio.AbstractEventLoop | None
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = feed.task.get_loop() if feed.task is not None else None
        if loop is None or loop.is_closed():
            self._stop(feed)
            return
        feed.stop_timer = loop.call_later(self.grace, self._stop_if_unused, feed)

    def _stop_if_unused(self, feed: _Feed) -> None:
        feed.stop_timer = None
        if not feed.listeners and self._feeds.get(feed.run_id) is feed:
            self._stop(feed)

    # ------------------------------------------------------------------ the feed task

    def _start(self, feed: _Feed) -> None:
        self.stats.subscriptions_started += 1
        feed.missing = None  # a run reported missing may have been created since: ask again
        feed.task = asyncio.get_running_loop().create_task(self._pump(feed), name=f"hub-feed-{feed.run_id}")

    def _stop(self, feed: _Feed) -> None:
        if self._feeds.get(feed.run_id) is feed:
            del self._feeds[feed.run_id]
        if feed.stop_timer is not None:
            feed.stop_timer.cancel()
            feed.stop_timer = None
        stop = getattr(feed.source, "stop", None)
        if callable(stop):
            stop()
        if feed.task is not None and not feed.task.done():
            feed.task.cancel()
        # Let go of the task and the source: the cancelled task keeps its CancelledError,
        # whose traceback holds the pump's frame and so this feed; with the feed holding the
        # task back, the run's whole state (its tree, event history, agents, shared view) was
        # cyclic garbage waiting for a full collection instead of being freed when the task ends.
        feed.task = None
        feed.source = None
        self.stats.subscriptions_stopped += 1

    def _deliver(self, listener: Listener, item: SubscriptionItem) -> None:
        try:
            listener(item)
        except Exception:  # one broken view must not starve the others
            metrics.error("listener")
            log.exception("a hub listener failed on %s", type(item).__name__)

    def _broadcast(self, feed: _Feed, item: SubscriptionItem) -> None:
        if isinstance(item, RunEvent) and not isinstance(item, ReceivedRunEvent):
            # Kept by the thousand (history, event logs): its repeated strings are shared.
            item = ReceivedRunEvent(compact_event_frame(item.frame), item.seq, item.replayed, item.at,
                                    item.at or time.time())
        started, previous = time.perf_counter(), feed.state
        feed.observe(item)
        for listener in list(feed.listeners.values()):
            self._deliver(listener, item)
        metrics.hub_item(previous, item, time.perf_counter() - started)

    async def _pump(self, feed: _Feed) -> None:
        """Run the subscription, fanning items out; restart it if it ever crashes."""
        while True:
            source = self._source(feed.run_id, feed.tree)
            feed.source = source
            try:
                async for item in source:
                    self._broadcast(feed, item)
                    if (feed.missing is None and isinstance(item, StatusChanged)
                            and item.state.status is ConnectionStatus.OFFLINE and feed.tree.empty):
                        if await self._run_missing(feed):
                            return
                return  # the source ends only when stopped
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a bug below us: say so, then start over
                self.stats.source_crashes += 1
                metrics.error("subscription_crash")
                log.exception("the subscription to run %s crashed", feed.run_id)
                state = feed.state.moved(
                    ConnectionStatus.OFFLINE,
                    time.time(),
                    error=f"subscription failed: {exc}",
                    retry_in=self.crash_retry,
                    outage_since=feed.state.outage_since or time.time(),
                )
                self._broadcast(feed, StatusChanged(state))
            await asyncio.sleep(self.crash_retry)

    async def _run_missing(self, feed: _Feed) -> bool:
        """After a first failure with no tree yet: does the Gateway know the run? If not,
        stop its subscription and say so (True). Asked once per subscription start."""
        try:
            await self.client.rpc("getRun", {"runId": feed.run_id}, retries=0)
        except GatewayRpcError as exc:
            feed.missing = exc.code in _NOT_FOUND
        except GatewayError:
            return False  # unreachable: the subscription's own retries handle that
        else:
            feed.missing, feed.exists = False, True
        if not feed.missing:
            return False
        self.stats.runs_not_found += 1
        stop = getattr(feed.source, "stop", None)
        if callable(stop):
            stop()
        now = time.time()
        state = feed.state.moved(ConnectionStatus.OFFLINE, now, error=f"run {feed.run_id} not found on the Gateway",
                                 retry_in=None, outage_since=feed.state.outage_since or now)
        self._broadcast(feed, StatusChanged(state))
        log.info("run %s not found on the gateway: not retrying", feed.run_id)
        return True

    # ------------------------------------------------------------------ shared reads

    async def read(self, method: str, params: Mapping[str, Any], *, max_age: float = 1.0) -> Any:
        """``client.rpc(method, params)``, shared with identical calls in flight or younger
        than ``max_age`` seconds. Errors are shared too, but never cached."""
        key = method + json.dumps(params, sort_keys=True, default=str)
        now = time.monotonic()
        self.stats.reads += 1
        shared = self._shared_read(key, now, max_age)
        if shared is not None:
            self.stats.reads_shared += 1
            return await asyncio.shield(shared)
        if len(self._reads) >= self.max_cached_reads:
            self._prune_reads(now)
        fut = asyncio.ensure_future(self._read_once(method, params))
        self._reads[key] = _Cached(now, fut)
        fut.add_done_callback(functools.partial(self._forget_failed_read, key))
        return await asyncio.shield(fut)

    def _shared_read(self, key: str, now: float, max_age: float) -> asyncio.Future[Any] | None:
        """The read of ``key`` in flight or younger than ``max_age`` (not failed), if any.

        A method of its own so that :meth:`read`'s frame never holds the stale entry it
        replaces: an error raised through that frame keeps it in its traceback, and a read that
        kept failing (a run the Gateway no longer has, a scope it refuses) then chained every
        earlier failure, future and traceback behind the latest, for the life of the process.
        """
        cached = self._reads.get(key)
        if cached is None:
            return None
        fut = cached.future
        if not fut.done() or (now - cached.at <= max_age and not fut.cancelled() and fut.exception() is None):
            return fut
        return None

    def _forget_failed_read(self, key: str, fut: asyncio.Future[Any]) -> None:
        """Drop a failed read from the cache (its error, traceback and frames with it): the
        callers waiting on it have it; the next caller reads again."""
        if fut.cancelled() or fut.exception() is not None:
            cached = self._reads.get(key)
            if cached is not None and cached.future is fut:
                del self._reads[key]

    async def _read_once(self, method: str, params: Mapping[str, Any]) -> Any:
        result = await self.client.rpc(method, params)
        return result

    def _prune_reads(self, now: float) -> None:
        """Drop answers older than 30 s; if that is not enough, the oldest answers (a burst
        of distinct reads, e.g. frames scrubbed on a 10,000-node run, holds a snapshot
        each). Reads in flight stay: their callers are waiting on them."""
        for key in [k for k, c in self._reads.items() if c.future.done() and now - c.at > 30]:
            del self._reads[key]
        excess = len(self._reads) - self.max_cached_reads // 2
        for key in [k for k, c in self._reads.items() if c.future.done()][: max(0, excess)]:
            del self._reads[key]

    def forget_reads(self, run_id: str | None = None) -> None:
        """Drop cached answers (all, or those about ``run_id``): after a rewind they lie."""
        if run_id is None:
            self._reads.clear()
            return
        needle = json.dumps(run_id)
        for key in [k for k in self._reads if needle in k]:
            del self._reads[key]

    # ------------------------------------------------------------------ shutdown

    async def aclose(self) -> None:
        """Stop every subscription and close the client."""
        self._closed = True
        tasks = [f.task for f in self._feeds.values() if f.task is not None]
        for feed in list(self._feeds.values()):
            self._stop(feed)
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task
        await self.client.aclose()
        for key in [k for k, v in self._registry.items() if v is self]:
            del self._registry[key]

"""The state of one dashboard session: which run, its tree, the selected node, and what the
Gateway said about them. Views only read it; nothing here imports Panel.

:class:`RunStore` is a ``param.Parameterized``: every view binds to its parameters and is
told when they change, nobody polls. It gets the run's subscription items from the
process's :class:`~dashboard.hub.GatewayHub` and turns them into parameter values:

- **Batching.** A burst of DevTools deltas (a wide run sends dozens per second) is
  coalesced: items are buffered and applied at most once per :attr:`RunStore.batch_interval`
  (and never later than the next loop turn after a quiet spell) in ONE
  ``param.update``, so every view redraws once per batch. ``tree_version`` ticks per batch;
  ``last_changes`` lists the :class:`~inspector.tree.TreeChange` s applied since the
  previous tick so the tree view can patch rows instead of redrawing.
- **Stale-data free.** Changing ``run_id`` or ``selected_node`` clears everything derived
  from the old value at once, and every fetch carries a generation number: an answer
  that arrives after the user moved on is dropped, never shown against the wrong run
  (the bug class of smithersai/smithers PR #176).
- **Time travel.** On ``run.time_travel_jumped`` outputs, diffs and scores fetched at
  frames after the jump target are dropped (they describe a future that no longer
  exists), cached reads are forgotten, ``last_jump`` and ``notice`` say what happened,
  and fresh values are fetched.
- **Agents.** ``agents`` is the run's :class:`~inspector.agents.RunAgents` (shared by the
  run's sessions through :class:`~dashboard.agent_feed.AgentFeed`), fed from the run events
  and ``listRunTokenUsage``; ``agents_version`` ticks once per batch that changed it and
  ``changed_attempts`` says which attempts. A rewind rebuilds it from the Gateway
  (:meth:`~dashboard.agent_feed.AgentFeed.rewind`), so discarded attempts do not linger.
- **Freshness.** Scores and the selected node's output are re-read (debounced) when a
  node finishes or fails; the run record is re-read (throttled) on run and node events.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import param
from param.parameterized import batch_call_watchers
from param.parameters import NoNone

from inspector.agents import RunAgents
from inspector.errors import GatewayError, GatewayRpcError, GatewayUnavailable
from inspector.pricing import PriceTable
from inspector.state_hints import HINT_EVENTS
from inspector.status import ConnectionStatus
from inspector.stream import (
    Heartbeat,
    Resynced,
    RunEvent,
    Settled,
    StatusChanged,
    SubscriptionItem,
    TimeTravelled,
    TreeUpdated,
)
from inspector.tree import DevToolsTree, TreeChange, TreeNode
from inspector.vocabulary import (
    APPROVAL_EVENT_PREFIX,
    DONE_NODE_EVENTS,
    NODE_EVENT_PREFIX,
    RUN_EVENT_PREFIX,
    LogEventName,
    OutputStatus,
    RunEventName,
)

from .agent_feed import AgentFeed, price_table
from .background import BackgroundWork, describe_read_error
from .event_records import EventRecord, event_record
from .events_dedup import RunEventTriage
from .treerows import NO_HINTS

if TYPE_CHECKING:
    from collections.abc import Hashable

    from inspector.protocol import TimeTravelJump

    from .hub import GatewayHub, Subscription
    from .shared import SharedRunView

__all__ = ["EventRecord", "RunStore"]

log = logging.getLogger(__name__)

#: In a store's pending update: "take the run's shared map of task heartbeats" at the flush.
_RUN_BEATS = object()
#: In a store's pending update: "take the run's task-state hints" at the flush.
_RUN_HINTS = object()

CONNECTION_STATUSES = [s.value for s in ConnectionStatus]


class RunStore(BackgroundWork, param.Parameterized):
    """One session's view of one run (see the module docstring).

    ``hub`` is the process's :class:`~dashboard.hub.GatewayHub`; RPC reads go through it
    (``hub.read`` shares them between sessions). ``owner`` is the visitor the hub counts this
    session's subscription against. Call :meth:`close` when the session ends.
    """

    run_id = param.String(default=None, allow_None=True, doc="""
        The Smithers run being watched (``None``: no run; the app shows the run list).
        Changing it clears every run-derived value at once and resubscribes.""")

    connection_status: param.Selector[str] = param.Selector(default="idle", objects=CONNECTION_STATUSES, doc="""
        Where the run's Gateway subscription stands: ``idle`` (no run), ``connecting``,
        ``online``, ``offline`` (waiting to retry) or ``unauthorized`` (token rejected).""")

    outage_since = param.Number(default=None, allow_None=True, doc="""
        Wall-clock time (``time.time()``) the current outage began; ``None`` when online.
        Kept across retries so a view can say "offline for 3 min".""")

    connection_error = param.String(default=None, allow_None=True, doc="""
        Why the last connection attempt failed, as the Gateway or the network said it.""")

    required_scope = param.String(default=None, allow_None=True, doc="""
        The scope the token lacks, when the Gateway answered FORBIDDEN with one.""")

    retry_in = param.Number(default=None, allow_None=True, doc="""
        Seconds until the next reconnect attempt (when offline or unauthorized).""")

    last_heartbeat = param.Number(default=None, allow_None=True, doc="""
        Wall-clock time of the Gateway's last heartbeat (a socket ``tick`` or a
        ``run.heartbeat`` event).""")

    task_heartbeats = param.ClassSelector(
        class_=Mapping,  # type: ignore[type-abstract]
        default=MappingProxyType({}), instantiate=False, doc="""
        When each task last sent ``task.heartbeat``: ``{(nodeId, iteration): time.time()}``.
        A running agent beats every few seconds; the beats are kept here, never logged.
        A read-only mapping, a new one per change: param compares a plain dict entry by entry
        for every watcher, which on a run with thousands of tasks was a fifth of a process
        serving 40 wall screens; a ``MappingProxyType`` it takes as changed at once.""")

    state_hints = param.ClassSelector(
        class_=Mapping,  # type: ignore[type-abstract]
        default=MappingProxyType({}), instantiate=False, doc="""
        Task states the run's live ``node.*`` events announced that ``tree`` does not show yet:
        ``{DevTools id: state}`` (:mod:`inspector.state_hints`). The tree view shows them on
        their rows until the DevTools frame confirms them; everything else reads ``tree``.
        One read-only map per change, shared by the run's sessions.""")

    stream_error = param.String(default=None, allow_None=True, doc="""
        The Gateway's last ``run.error`` about this run's event stream (a slow consumer
        disconnected, a replay failed), as plain text; ``None`` once run events flow again.""")

    run = param.Dict(default={}, doc="""
        The ``getRun`` record (workflowName, status, startedAtMs, finishedAtMs, errorJson,
        summary...). Re-read, throttled, when run or node events arrive.""")

    run_error = param.String(default=None, allow_None=True, doc="""
        Why the run record could not be read (``RunNotFound``, missing scope...).""")

    tree = param.ClassSelector(class_=DevToolsTree, default=None, allow_None=True, doc="""
        The run's DevTools tree, SHARED with every other session watching the run: read
        it, never change it. The object changes only when ``run_id`` does; watch
        ``tree_version`` for its content.""")

    tree_version = param.Integer(default=0, doc="""
        Ticks once per applied batch of tree changes (and on every run switch).""")

    last_changes = param.ClassSelector(class_=tuple, default=(), doc="""
        The :class:`inspector.tree.TreeChange` s applied since the previous
        ``tree_version`` tick, oldest first. A change with ``rebuilt=True`` means redraw
        everything. Ids named here may already be gone from the tree.""")

    settled = param.Boolean(default=False, doc="""
        True once the run is terminal and the tree equals the Gateway's final snapshot.""")

    selected_node = param.Integer(default=None, allow_None=True, doc="""
        The DevTools node id selected in the tree (``None``: nothing selected). Changing it
        clears ``node_*`` at once and fetches them for the new node.""")

    node_output = param.Dict(default=None, allow_None=True, doc="""
        ``getNodeOutput`` of the selected task: ``{status: produced|pending|failed, row,
        schema: {fields}, error?}``. ``None`` while loading, or for a non-task node.""")

    node_diff = param.Dict(default=None, allow_None=True, doc="""
        ``getNodeDiff`` of the selected task (``{seq, baseRef, patches[{path, operation,
        diff}]}``); ``None`` when there is none (see ``node_diff_error``).""")

    node_scores = param.List(default=[], doc="""
        ``listScores`` rows of the selected task (every iteration and attempt).""")

    node_error = param.String(default=None, allow_None=True, doc="""
        Why the selected node's output could not be read (e.g. ``NodeHasNoOutput``).""")

    node_diff_error = param.String(default=None, allow_None=True, doc="""
        Why the selected node has no diff (``AttemptNotFinished``, ``VcsError``: runs
        outside a jj workspace have none). Informational, not a failure of the dashboard.""")

    node_loading = param.Boolean(default=False, doc="""
        True while the selected node's output, diff and scores are being fetched.""")

    scores = param.List(default=[], doc="""
        The run's ``listScores`` rows; re-read (debounced) when nodes finish.""")

    events = param.ClassSelector(class_=tuple, default=(), doc="""
        The event log: :class:`EventRecord` s, oldest first, at most ``max_events``.""")

    new_events = param.ClassSelector(class_=tuple, default=(), doc="""
        The records appended by the last batch (views that stream rows use these).""")

    last_jump = param.Dict(default=None, allow_None=True, doc="""
        The last time travel: ``{"from": frame, "to": frame, "at": time.time(),
        "caller": who}``.""")

    notice = param.String(default="", doc="""
        A one-line human message about something the operator should know happened
        ("Rewound from frame 18 to 3", "Resynced: ..."). Plain text.""")

    agents = param.ClassSelector(class_=RunAgents, allow_None=NoNone, doc="""
        The run's agents: per (nodeId, iteration, attempt) output, actions, answer, token
        usage. With a hub it is SHARED with every session on the run (read it, never feed
        it); a new object when ``run_id`` changes. Watch ``agents_version`` for its content.""")

    agents_version = param.Integer(default=0, doc="""
        Ticks once per applied batch that changed ``agents`` (and on every run switch).""")

    changed_attempts = param.ClassSelector(class_=tuple, default=(), doc="""
        The :data:`~inspector.agents.AttemptKey` s (nodeId, iteration, attempt) changed by the
        batch of the last ``agents_version`` tick (empty on a run switch: read everything).""")

    prices = param.ClassSelector(class_=PriceTable, allow_None=NoNone, doc="""
        Smithers' price table with the user's ``SMITHERS_DASHBOARD_PRICES`` file laid over
        it (loaded once per process), for cost estimates.""")

    max_events = param.Integer(default=2000, bounds=(10, None), doc="""
        Size of the event ring buffer; older records fall off.""")

    batch_interval = param.Number(default=0.05, bounds=(0, None), doc="""
        Minimum seconds between two applied batches of subscription items.""")

    refresh_delay = param.Number(default=0.3, bounds=(0, None), doc="""
        Debounce, in seconds, before scores and the selected output are re-read after nodes
        finish.""")

    run_refresh_interval = param.Number(default=1.0, bounds=(0, None), doc="""
        Minimum seconds between two ``getRun`` reads triggered by events.""")

    def __init__(self, hub: GatewayHub | None = None, *, owner: Hashable | None = None, **params: Any) -> None:
        run_id = params.pop("run_id", None)
        selected = params.pop("selected_node", None)
        super().__init__(**params)  # type: ignore[no-untyped-call]
        if self.tree is None:
            self.tree = DevToolsTree()
        if self.prices is None:
            self.prices = price_table()
        self.hub = hub
        #: The visitor this session belongs to (:func:`dashboard.roles.session_visitor`): the hub
        #: caps the unconfirmed runs one visitor makes it subscribe to (``None``: uncapped).
        self.owner = owner
        self._agent_feed = AgentFeed(None)
        self.agents = self._agent_feed.agents
        self._pending_attempts: set[tuple[str, int, int]] = set()
        #: The agents model was rebuilt after a rewind: the next flush says "read everything".
        self._agents_rebuilt = False
        self._handle: Subscription | None = None
        self._run_gen = 0
        self._node_gen = 0
        self._events: deque[EventRecord] = deque(maxlen=self.max_events)
        self._pending: dict[str, Any] = {}
        self._pending_changes: list[TreeChange] = []
        self._pending_events: list[EventRecord] = []
        self._logged_outage: tuple[float | None, str] | None = None
        #: Heartbeats, re-emitted transitions and stream errors: run events that are no log line.
        self._triage = RunEventTriage()
        self._pending_refresh: set[str] = set()
        self._flush_handle: asyncio.Handle | Any | None = None
        #: The run's per-tick work shared with the other sessions on it (``hub.shared_view``);
        #: ``None`` without a hub: then this store batches on its own timer.
        self.shared: SharedRunView | None = None
        self._last_flush = 0.0
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._last_run_read = 0.0
        self._node_seq: int | None = None
        self._scores_seq: int | None = None
        self._want_task: tuple[str, int | None] | None = None
        self._selected_key: tuple[str, int | None] | None = None
        self._closed = False
        if run_id is not None:
            self.run_id = run_id
        if selected is not None:
            self.selected_node = selected

    # ------------------------------------------------------------------ public helpers

    @property
    def client(self) -> Any:
        """The Gateway client for the views' own reads (``hub.client``)."""
        return self.hub.client if self.hub is not None else None

    def selected(self) -> TreeNode | None:
        """The selected node, if it is (still) in the tree."""
        if self.tree is None or self.selected_node is None:
            return None
        return self.tree.get(self.selected_node)

    def select_task(self, node_id: str, iteration: int | None = None) -> None:
        """Select a task by its Smithers ``nodeId`` (``?nodeId=`` deep links).

        If the tree has not arrived yet the wish is kept and honoured by the first batch
        that contains the task.
        """
        self._want_task = (node_id, iteration)
        self._resolve_wanted_task()

    def close(self) -> None:
        """Detach from the hub and cancel every timer and fetch (session destroyed)."""
        self._closed = True
        self._detach()
        for task in list(self._tasks):
            task.cancel()
        self._tasks.clear()

    # ------------------------------------------------------------------ run switching

    @param.depends("run_id", watch=True)
    def _on_run_id(self) -> None:
        self._detach()
        self._run_gen += 1
        self._node_gen += 1
        self._events = deque(maxlen=self.max_events)
        self._triage.reset()
        self._node_seq = self._scores_seq = None
        self._want_task = None
        self._selected_key = None
        gen = self._run_gen
        tree: DevToolsTree | None = None
        self._agent_feed = AgentFeed(self.run_id)  # this store's, unless the run has a shared one
        if self.run_id and self.hub is not None and not self._closed:
            # Attach first: the catch-up items land in the (just emptied) buffer and are
            # applied by the next flush, after the reset below.
            self._handle = self.hub.attach(self.run_id, lambda item: self._on_item(gen, item), owner=self.owner)
            tree = self.hub.tree(self.run_id)
        self._agent_feed = self._feed_of_run()
        self.param.update(
            connection_status="idle",
            outage_since=None,
            connection_error=None,
            required_scope=None,
            retry_in=None,
            last_heartbeat=None,
            task_heartbeats=MappingProxyType({}),
            state_hints=NO_HINTS,
            stream_error=None,
            run={},
            run_error=None,
            tree=tree if tree is not None else DevToolsTree(),
            tree_version=self.tree_version + 1,
            last_changes=(TreeChange("snapshot", 0, 0, None, rebuilt=True),),
            settled=False,
            selected_node=None,
            node_output=None,
            node_diff=None,
            node_scores=[],
            node_error=None,
            node_diff_error=None,
            node_loading=False,
            scores=[],
            events=(),
            new_events=(),
            last_jump=None,
            notice="",
            agents=self._agent_feed.agents,
            agents_version=self.agents_version + 1,
            changed_attempts=(),
        )
        if self._handle is None:
            return
        self._spawn(self._read_run(gen))
        self._spawn(self._read_scores(gen))
        self._spawn(self._read_token_usage(gen, "open"))

    def _detach(self) -> None:
        self.shared = None
        if self._handle is not None:
            self._handle.release()
            self._handle = None
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        for task in list(self._tasks):
            task.cancel()
        self._pending.clear()
        self._pending_changes.clear()
        self._pending_events.clear()
        self._pending_refresh.clear()
        self._pending_attempts.clear()
        self._agents_rebuilt = False

    def _feed_of_run(self) -> AgentFeed:
        """The run's shared agents feed (with a hub), else this store's own."""
        if self.shared is None and self._handle is not None and self.run_id:
            shared_view = getattr(self.hub, "shared_view", None)
            self.shared = shared_view(self.run_id) if callable(shared_view) else None
        return self.shared.agents if self.shared is not None else self._agent_feed

    def _feed_agents(self, item: RunEvent) -> bool:
        """Fold ``item`` into the agents model (every event, logged or not); always False."""
        feed = self.shared.agents if self.shared is not None else self._agent_feed
        attempt = feed.feed(item)
        if attempt is not None:
            self._pending_attempts.add(attempt)
        jump = feed.replayed_jump(item)
        if jump is not None and self.hub is not None and self.run_id:
            feed.begin_rewind(self.hub.client, self.run_id, jump)
            self._spawn(self._rewind_agents(self._run_gen, jump))
        return False

    # ------------------------------------------------------------------ subscription items

    def _on_item(self, gen: int, item: SubscriptionItem) -> None:
        """Buffer one item from the hub; :meth:`_flush` applies the buffer in one update."""
        if gen != self._run_gen or self._closed:
            return
        if self.shared is None and self.hub is not None and self.run_id:
            # Looked up here, not after attach(): the catch-up items arrive inside it.
            shared_view = getattr(self.hub, "shared_view", None)
            self.shared = shared_view(self.run_id) if callable(shared_view) else None
        pending = self._pending
        if (self.shared is not None and isinstance(item, RunEvent)
                and item.frame.event == RunEventName.TASK_HEARTBEAT):
            # The run's beats are folded once for every session (dashboard/shared.py); this
            # store only takes the run's map at its next flush.
            attempt = self.shared.beat(item)
            if attempt is not None:
                self._pending_attempts.add(attempt)
            pending["task_heartbeats"] = _RUN_BEATS
            self._schedule_flush()
            return
        if (self.shared is not None and isinstance(item, RunEvent) and item.frame.event in HINT_EVENTS
                and self.shared.hint(item, self.tree)):
            pending["state_hints"] = _RUN_HINTS  # and on to the log, below
        if isinstance(item, TreeUpdated):
            self._pending_changes.append(item.change)
        elif isinstance(item, StatusChanged):
            state = item.state
            was = pending.get("connection_status", self.connection_status)
            pending.update(
                connection_status=state.status.value,
                outage_since=state.outage_since,
                connection_error=state.error,
                required_scope=state.required_scope,
                retry_in=state.retry_in,
            )
            if state.status is ConnectionStatus.ONLINE and was not in ("online", "idle"):
                self._pending_refresh.update(("run", "scores", "node"))
            # Log each outage once (and a change of kind within it), not every retry: between
            # retries the status passes through "connecting" while outage_since stays put.
            outage = (state.outage_since, state.status.value)
            if state.status.value in ("offline", "unauthorized", "unsupported") and outage != self._logged_outage:
                self._logged_outage = outage
                self._pending_events.append(
                    EventRecord(time.time(), f"{LogEventName.CONNECTION_PREFIX}{state.status.value}", message=state.error or "")
                )
            elif state.status is ConnectionStatus.ONLINE:
                self._logged_outage = None
        elif isinstance(item, Heartbeat):
            pending["last_heartbeat"] = item.at
        elif isinstance(item, RunEvent) and item.frame.event == RunEventName.RUN_HEARTBEAT:
            # The Gateway's per-run liveness event, kept as ``last_heartbeat``. Once a second, for as long as anyone watches, even a finished run: logged, it
            # would push the run's history out of the ring buffer within the hour.
            pending["last_heartbeat"] = getattr(item, "received_at", None) or time.time()
        elif isinstance(item, RunEvent) and (self._feed_agents(item) or self._triage.unlogged(item, pending, self)):
            pass  # heartbeats and re-emitted transitions: for the agents model, not the log
        elif isinstance(item, RunEvent):
            record = self.shared.record(item, event_record) if self.shared is not None else event_record(item)
            self._pending_events.append(record)
            name = item.frame.event
            if name.startswith((RUN_EVENT_PREFIX, NODE_EVENT_PREFIX, APPROVAL_EVENT_PREFIX)):
                self._pending_refresh.add("run")
            if name in DONE_NODE_EVENTS:  # its output, diff and scores may have changed
                self._pending_refresh.add("scores")
                if self._selected_key is not None and record.node_id == self._selected_key[0]:
                    self._pending_refresh.add("node")
            if name.startswith(RUN_EVENT_PREFIX) and name != RunEventName.RUN_COMPLETED and not item.replayed:
                pending["settled"] = False  # the run moved again (history says nothing new)
        elif isinstance(item, Settled):
            pending["settled"] = True
            if self.hub is not None:
                self._spawn(self._read_token_usage(self._run_gen, "settled"))
            self._pending_refresh.update(("run", "scores", "node"))
            self._pending_events.append(
                EventRecord(time.time(), LogEventName.STREAM_SETTLED.value, state=item.run_status, message=f"final frame {item.seq}")
            )
        elif isinstance(item, TimeTravelled):
            self._triage.reset()
            if self.shared is not None:
                self.shared.rewound(item)
            jump = item.jump
            if self.hub is not None and self.run_id:
                self._feed_of_run().begin_rewind(self.hub.client, self.run_id, jump)
                self._spawn(self._rewind_agents(self._run_gen, jump))
            now = time.time()
            pending["last_jump"] = {"from": jump.from_frame_no, "to": jump.to_frame_no, "at": now, "caller": jump.caller}
            pending["notice"] = f"Rewound from frame {jump.from_frame_no} to {jump.to_frame_no}"
            pending["settled"] = False
            pending["_jump_to"] = jump.to_frame_no
            self._pending_events.append(
                EventRecord(now, RunEventName.RUN_TIME_TRAVEL_JUMPED.value, message=pending["notice"], seq=jump.to_frame_no)
            )
        elif isinstance(item, Resynced):
            if not (pending.get("notice") or "").startswith("Rewound"):
                pending["notice"] = f"Resynced: {item.reason}"
            self._pending_events.append(EventRecord(time.time(), LogEventName.STREAM_RESYNCED.value, message=item.reason))
        self._schedule_flush()

    def _schedule_flush(self) -> None:
        if self._flush_handle is not None:
            return
        loop = asyncio.get_running_loop()
        if self.shared is not None:
            # On the run's clock: every store of the run flushes in the same pass, on the same
            # tree state, so the tick's patch and HTML are computed once (dashboard/shared.py).
            interval = self.shared.ticker.interval(self.batch_interval)
            self._flush_handle = self.shared.ticker.request(self._flush_on_tick, self._last_flush + interval, interval / 2)
            return
        wait = self.batch_interval - (loop.time() - self._last_flush)
        if wait <= 0:
            self._flush_handle = loop.call_soon(self._flush)
        else:
            self._flush_handle = loop.call_later(wait, self._flush)

    def flush(self) -> None:
        """Apply buffered items now (tests; the loop does it by itself)."""
        if self._flush_handle is not None:
            self._flush_handle.cancel()
        self._flush()

    def _flush_on_tick(self) -> None:
        shared = self.shared
        self._flush(shared.ticker.now if shared is not None else None)

    def _flush(self, now: float | None = None) -> None:
        self._flush_handle = None
        if self._closed:
            return
        self._last_flush = asyncio.get_running_loop().time() if now is None else now
        updates = self._pending
        self._pending = {}
        jump_to = updates.pop("_jump_to", None)
        beats = updates.get("task_heartbeats")
        if beats is _RUN_BEATS:
            beats = self.shared.heartbeats() if self.shared is not None else MappingProxyType({})
            if beats is self.task_heartbeats:
                del updates["task_heartbeats"]  # an old beat: the run's map did not change
            else:
                updates["task_heartbeats"] = beats
        elif isinstance(beats, dict):
            updates["task_heartbeats"] = MappingProxyType(beats)
        changes = self._pending_changes
        self._pending_changes = []
        hinted = updates.pop("state_hints", None) is _RUN_HINTS
        if self.shared is not None and (changes or hinted):
            hints = self.shared.state_hints(self.tree)  # also drops what the tree now shows
            if hints is not self.state_hints:
                updates["state_hints"] = hints
        if changes:
            updates["tree_version"] = self.tree_version + 1
            updates["last_changes"] = tuple(changes)
        if self._pending_events:
            records = tuple(self._pending_events)
            self._pending_events = []
            self._events.extend(records)
            updates["events"] = tuple(self._events)
            updates["new_events"] = records[-self.max_events :]
        if self._agents_rebuilt:  # every attempt may have changed: views read everything
            self._agents_rebuilt = False
            self._pending_attempts = set()
            updates["agents_version"] = self.agents_version + 1
            updates["changed_attempts"] = ()
        elif self._pending_attempts:
            updates["agents_version"] = self.agents_version + 1
            updates["changed_attempts"] = tuple(sorted(self._pending_attempts))
            self._pending_attempts = set()
        if jump_to is not None or "last_jump" in updates:
            updates.update(self._forget_future(jump_to))
        if updates:
            # As param.update, minus its first step: reading every parameter's value to restore
            # them on an error (7% of a process serving 40 screens). The values are our own.
            with batch_call_watchers(self):
                for name, value in updates.items():
                    setattr(self, name, value)
        if changes:
            self._after_tree_changes(changes)
        refresh = self._pending_refresh
        self._pending_refresh = set()
        if "run" in refresh:
            self._refresh_run()
        if "scores" in refresh or "node" in refresh:
            if "node" in refresh:
                self._debounce("node", self.refresh_delay, self._refresh_node)
            if "scores" in refresh:
                self._debounce("scores", self.refresh_delay, self._refresh_scores)

    def _forget_future(self, to_frame: int | None) -> dict[str, Any]:
        """After a rewind to ``to_frame``: drop what was read at later frames."""
        if self.hub is not None and self.run_id:
            self.hub.forget_reads(self.run_id)
        out: dict[str, Any] = {}
        limit = to_frame if to_frame is not None else -1
        if self._node_seq is None or self._node_seq > limit:
            self._node_gen += 1
            self._node_seq = None
            out.update(node_output=None, node_diff=None, node_scores=[], node_error=None, node_diff_error=None)
            self._pending_refresh.add("node")
        if self._scores_seq is None or self._scores_seq > limit:
            self._scores_seq = None
            out["scores"] = []
            self._pending_refresh.add("scores")
        self._pending_refresh.add("run")
        return out

    def _after_tree_changes(self, changes: list[TreeChange]) -> None:
        """Keep the selection meaningful across rebuilds, and honour a pending deep link."""
        tree = self.tree
        if tree is None:
            return
        self._resolve_wanted_task()
        if self.selected_node is None:
            return
        node = tree.get(self.selected_node)
        if node is None:
            # Rebuilt without our node: follow the same task if it still exists.
            key = self._selected_key
            again = tree.find_task(key[0], key[1]) if key else None
            self.selected_node = again.id if again is not None else None
            return
        if any(self.selected_node in c.updated for c in changes) and node.task is not None:
            key = (node.node_id or "", node.iteration)
            if key != self._selected_key:
                self._selected_key = key
                self._refresh_node()
            elif self.node_output is None or self.node_output.get("status") != "produced":
                self._debounce("node", self.refresh_delay, self._refresh_node)

    def _resolve_wanted_task(self) -> None:
        if self._want_task is None or self.tree is None or self.tree.empty:
            return
        node_id, iteration = self._want_task
        nodes = self.tree.find_tasks(node_id, iteration)
        if not nodes:
            return
        self._want_task = None
        # The latest iteration is what a deep link without one means.
        node = max(nodes, key=lambda n: n.iteration or 0)
        self.selected_node = node.id

    # ------------------------------------------------------------------ selection

    @param.depends("selected_node", watch=True)
    def _on_selected(self) -> None:
        self._node_gen += 1
        self._node_seq = None
        timer = self._timers.pop("node", None)
        if timer is not None:
            timer.cancel()
        node = self.selected()
        self._selected_key = (node.node_id or "", node.iteration) if node is not None and node.task else None
        self.param.update(
            node_output=None,
            node_diff=None,
            node_scores=[],
            node_error=None,
            node_diff_error=None,
            node_loading=self._selected_key is not None and self.hub is not None,
        )
        self._refresh_node()

    def _refresh_node(self) -> None:
        if self._selected_key is None or self.hub is None or not self.run_id or self._closed:
            if self.node_loading:
                self.node_loading = False
            return
        self._spawn(self._read_node(self._run_gen, self._node_gen, self.run_id, *self._selected_key))

    async def _read_node(self, run_gen: int, node_gen: int, run_id: str, node_id: str, iteration: int | None) -> None:
        assert self.hub is not None
        seq = self.tree.seq if self.tree is not None else None
        it = iteration or 0
        params = {"runId": run_id, "nodeId": node_id, "iteration": it}
        results: tuple[Any, ...] = await asyncio.gather(
            self.hub.read("getNodeOutput", params, max_age=0.3),
            self.hub.read("getNodeDiff", params, max_age=0.3),
            self.hub.read("listScores", {"runId": run_id, "nodeId": node_id}, max_age=0.3),
            return_exceptions=True,
        )
        output, diff, scores = results
        if run_gen != self._run_gen or node_gen != self._node_gen or self._closed:
            return  # the user moved on: this answer is about something no longer shown
        updates: dict[str, Any] = {"node_loading": False}
        if isinstance(output, BaseException):
            updates.update(node_output=None, node_error=describe_read_error(output, "output"))
        else:
            updates.update(node_output=output if isinstance(output, dict) else {"status": OutputStatus.UNKNOWN.value, "row": output}, node_error=None)
        if isinstance(diff, BaseException):
            updates.update(node_diff=None, node_diff_error=describe_read_error(diff, "diff"))
        else:
            updates.update(node_diff=diff if isinstance(diff, dict) else None, node_diff_error=None)
        if not isinstance(scores, BaseException):
            updates["node_scores"] = [r for r in scores if isinstance(r, dict)] if isinstance(scores, list) else []
        self._node_seq = seq
        self.param.update(**updates)

    # ------------------------------------------------------------------ run record and scores

    def _refresh_run(self) -> None:
        if self.hub is None or not self.run_id or self._closed:
            return
        loop = asyncio.get_running_loop()
        wait = self.run_refresh_interval - (loop.time() - self._last_run_read)
        if wait <= 0:
            self._last_run_read = loop.time()
            self._spawn(self._read_run(self._run_gen))
        elif "run" not in self._timers:
            self._debounce("run", wait, self._refresh_run, replace=False)

    def _refresh_scores(self) -> None:
        if self.hub is not None and self.run_id and not self._closed:
            self._spawn(self._read_scores(self._run_gen))

    async def _read_run(self, gen: int) -> None:
        assert self.hub is not None and self.run_id
        self._last_run_read = asyncio.get_running_loop().time()
        try:
            record = await self.hub.read("getRun", {"runId": self.run_id}, max_age=0.5)
        except GatewayRpcError as exc:
            if gen == self._run_gen:
                self.param.update(run_error=describe_read_error(exc, "run"), required_scope=exc.required_scope or self.required_scope)
            return
        except GatewayUnavailable:
            return  # the connection status says so; keep showing the last record
        if gen == self._run_gen and isinstance(record, dict):
            self.param.update(run=record, run_error=None)

    async def _read_token_usage(self, gen: int, when: str) -> None:
        """``listRunTokenUsage`` into the agents (once per run and ``when`` for all sessions)."""
        assert self.hub is not None and self.run_id
        feed = self._agent_feed
        changed = await feed.read_token_usage(self.hub.client, self.run_id, when)
        if gen == self._run_gen and changed and not self._closed:
            self._pending_attempts.update(changed)
            self._schedule_flush()

    async def _rewind_agents(self, gen: int, jump: TimeTravelJump) -> None:
        """Rebuild the agents after a rewind (once per jump for all sessions, see
        :meth:`AgentFeed.rewind`), then tell the views to read everything again."""
        assert self.hub is not None and self.run_id
        rebuilt = await self._feed_of_run().rewind(self.hub.client, self.run_id, jump)
        if rebuilt and gen == self._run_gen and not self._closed:
            self._agents_rebuilt = True
            self._schedule_flush()

    async def _read_scores(self, gen: int) -> None:
        assert self.hub is not None and self.run_id
        seq = self.tree.seq if self.tree is not None else None
        try:
            rows = await self.hub.read("listScores", {"runId": self.run_id}, max_age=0.5)
        except GatewayError:
            return
        if gen == self._run_gen:
            self._scores_seq = seq
            self.scores = [r for r in rows if isinstance(r, dict)] if isinstance(rows, list) else []

    # ------------------------------------------------------------------ plumbing

    async def wait_idle(self, timeout: float = 10.0) -> None:
        """Wait until no fetch, debounce or batch is pending (tests and notebooks)."""
        async with asyncio.timeout(timeout):
            while self._tasks or self._timers or self._flush_handle is not None:
                if self._tasks:
                    await asyncio.wait(list(self._tasks))
                else:
                    await asyncio.sleep(0.02)

"""Per-run work done once per tick for every session watching the run.

Every browser tab has its own :class:`~dashboard.store.RunStore` and its own views, but on a
wall of screens they all show the same run: the same tree patch, the same counts and header,
the same list of recent events. Computed per session, that work grows with the number of
screens on ONE Python event loop, and the page being watched waits behind the others' copies
(``docs/performance.md``, "Sessions per process"). :class:`SharedRunView` is the per-run half
that the hub keeps beside the run's tree (``GatewayHub.shared_view``):

- :class:`RunTicker` is the run's batching clock. A store does not set its own timer per
  batch: it asks the ticker, which flushes every store whose batch is due (or nearly due) in
  one pass. The stores of a run then tick together, on the same tree state with the same
  changes, which is what lets the products below be computed once per tick, and it keeps one
  timer per run instead of one per session. It also **stretches the batches when the loop
  cannot keep up** (:attr:`RunTicker.stretch`): a session's cost is mostly per tick, not per
  change (its store's update, its Bokeh document's patch and websocket write), so when a
  hundred screens would saturate the one event loop at 20 ticks a second, fewer, larger ticks
  keep every screen current instead of letting a backlog grow without bound.
- :meth:`SharedRunView.tree_patch` computes :func:`~dashboard.treerows.patch_for` and its JSON
  text once per (tree, changes) and hands every session the same text; only the message's
  ``seq`` (each tree component numbers its own messages) is set per session.
- :meth:`SharedRunView.record` makes one :class:`~dashboard.store.EventRecord` per run event,
  shared by every store's event ring (the wall's event list then renders the same rows).
- :meth:`SharedRunView.repeated` tells a re-emitted transition from news (the run's one
  :class:`~inspector.transitions.TransitionLog`, see :mod:`dashboard.events_dedup`) once per
  run event: kept per session, that log was ~0.85 MB per screen at the end of a 7,500-node run.
- :attr:`SharedRunView.agents` is the run's :class:`~dashboard.agent_feed.AgentFeed`: the
  agents model (output, actions, tokens per attempt), fed once per run event whatever the
  number of sessions.
- :meth:`SharedRunView.beat` folds a ``task.heartbeat`` (into the agents model and the run's
  map of last beats) once for every session: a 7,500-node run beats hundreds of times a second,
  and a per-session fold of each beat was the largest per-session cost on such a run; each
  store takes the map's copy of the tick (:meth:`SharedRunView.heartbeats`, one copy per tick
  for all sessions) instead.
- :meth:`SharedRunView.hint` takes a live ``node.*`` event as a task-state hint once for the
  run (:mod:`inspector.state_hints`: the event comes before the DevTools frame that carries
  the state); :meth:`SharedRunView.state_hints` is the map the stores hand their tree views.
- :meth:`SharedRunView.memo` keeps the last few results of a pure renderer (the header's HTML,
  the wall's event list) keyed by their inputs.

What stays per session is what differs between them: the selection, filters, scroll position,
each tree component's message numbering and its catch-up reset.

Nothing here imports Panel: it is plain Python on the hub's loop, tested without a browser.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, TypeVar

from inspector.state_hints import StateHints
from inspector.transitions import TransitionLog

from .agent_feed import AgentFeed
from .events_dedup import heartbeat_of
from .item_memo import ItemMemo
from .treerows import NO_HINTS, Message, encode, is_empty, patch_for, rows_for, with_hints

if TYPE_CHECKING:
    from collections.abc import Callable, Hashable, Sequence

    from inspector.items import TimeTravelled
    from inspector.stream import RunEvent
    from inspector.tree import DevToolsTree, TreeChange

    from .store import EventRecord

__all__ = ["RunTicker", "SharedRunView", "SharedStats"]

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(slots=True)
class SharedStats:
    """What was computed and what was reused (tests, benchmarks)."""

    ticks: int = 0
    flushes: int = 0
    beats_folded: int = 0
    beats_shared: int = 0
    patches_computed: int = 0
    patches_shared: int = 0
    records_computed: int = 0
    records_shared: int = 0
    renders_computed: int = 0
    renders_shared: int = 0
    #: The largest batch stretch the run's ticker reached (1.0: never stretched).
    max_stretch: float = 1.0


class _Request:
    """A store's place in the ticker's next pass; :meth:`cancel` takes it out."""

    __slots__ = ("cancelled", "due", "flush", "slack")


    def __init__(self, flush: Callable[[], None], due: float, slack: float) -> None:
        self.flush = flush
        self.due = due
        self.slack = slack
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class RunTicker:
    """One batching clock per run, shared by the run's stores (see the module docstring).

    :meth:`request` asks for a flush at loop time ``due`` (a store's last flush plus its batch
    interval). A pass runs at the earliest due time and flushes every waiting store whose due
    time is within its ``slack`` (half its batch interval) of now: a store that joined a moment
    after the others is pulled into their pass once, and from then on ticks with them. A store
    whose batch interval is far longer (a test that holds its flushes) is left waiting.

    **Stretch.** After each pass the ticker compares what the batch period cost — how late the
    loop ran the pass (every other piece of work on the loop, other runs and Bokeh's own
    serialisation included, shows up as lateness) plus the pass itself — with the period.
    Lateness counts only as far as this process spent CPU meanwhile (``time.process_time``):
    a pass that was late because the machine's cores were busy with other processes is not
    a loop that cannot keep up, and stretching then would only add latency.
    Above :attr:`HIGH` of it, :attr:`stretch` grows by :attr:`GROW` (up to :attr:`MAX_STRETCH`);
    below :attr:`LOW`, it decays back towards 1. Stores multiply their batch interval by it
    (:meth:`interval`). Multiplicative steps both ways settle within a few passes and cannot
    oscillate faster than the passes themselves; the bounds keep a quiet run at its own
    interval and a saturated one at most ``MAX_STRETCH`` times behind it.
    """

    #: The largest factor a batch interval is stretched by (50 ms batches: at most 500 ms).
    MAX_STRETCH = 10.0
    #: Share of the batch period spent late or in the pass above which batches stretch ...
    HIGH = 0.5
    #: ... and below which they shrink back.
    LOW = 0.2
    GROW = 1.5
    SHRINK = 0.8

    def __init__(self, stats: SharedStats | None = None) -> None:
        self.stats = stats or SharedStats()
        #: Loop time of the pass running now (or the last one): the stores' "last flush".
        self.now = 0.0
        #: The factor the run's stores stretch their batch interval by (1.0 when the loop keeps up).
        self.stretch = 1.0
        self._waiting: list[_Request] = []
        self._handle: asyncio.Handle | None = None
        self._handle_due: float | None = None
        self._cpu_mark = time.process_time()  # the process's CPU time at the end of the last pass

    def request(self, flush: Callable[[], None], due: float, slack: float = 0.0) -> _Request:
        """Flush ``flush`` in the first pass at or after ``due`` (minus ``slack``)."""
        request = _Request(flush, due, slack)
        self._waiting.append(request)
        self._arm(asyncio.get_running_loop())
        return request

    def interval(self, base: float) -> float:
        """A store's batch interval ``base``, stretched by the run's load (see the class docstring)."""
        return base * self.stretch

    @property
    def waiting(self) -> int:
        return sum(1 for r in self._waiting if not r.cancelled)

    def _arm(self, loop: asyncio.AbstractEventLoop) -> None:
        live = [r for r in self._waiting if not r.cancelled]
        self._waiting = live
        if not live:
            if self._handle is not None:
                self._handle.cancel()
                self._handle = self._handle_due = None
            return
        due = min(r.due for r in live)
        if self._handle is not None and self._handle_due is not None and self._handle_due <= due:
            return
        if self._handle is not None:
            self._handle.cancel()
        wait = due - loop.time()
        self._handle_due = due
        self._handle = loop.call_soon(self._pass) if wait <= 0 else loop.call_later(wait, self._pass)

    def _pass(self) -> None:
        due = self._handle_due
        self._handle = self._handle_due = None
        loop = asyncio.get_running_loop()
        self.now = now = loop.time()
        started = time.perf_counter()
        ready = [r for r in self._waiting if not r.cancelled and r.due - r.slack <= now]
        self._waiting = [r for r in self._waiting if not r.cancelled and r.due - r.slack > now]
        if ready:
            self.stats.ticks += 1
        for request in ready:
            request.cancelled = True  # done: a store asks again for its next batch
            self.stats.flushes += 1
            try:
                request.flush()
            except Exception:  # one broken session must not starve the others
                log.exception("a store's flush failed")
        cpu = time.process_time()
        if ready and due is not None:
            # A request's slack is half its store's (stretched) batch interval.
            period = 2 * min(r.slack for r in ready)
            late = max(0.0, now - due) + time.perf_counter() - started
            self._adapt(min(late, cpu - self._cpu_mark), period)
        self._cpu_mark = cpu
        self._arm(loop)

    def _adapt(self, cost: float, period: float) -> None:
        if period <= 0:
            return
        load = cost / period
        if load > self.HIGH:
            self.stretch = min(self.MAX_STRETCH, self.stretch * self.GROW)
            self.stats.max_stretch = max(self.stats.max_stretch, self.stretch)
        elif load < self.LOW and self.stretch > 1.0:
            self.stretch = max(1.0, self.stretch * self.SHRINK)


class SharedRunView:
    """The per-run products every session of a run shares (see the module docstring)."""

    def __init__(self, run_id: str, *, max_records: int = 4096, max_renders: int = 8) -> None:
        self.run_id = run_id
        self.stats = SharedStats()
        self.ticker = RunTicker(self.stats)
        self._patch_key: tuple[Any, ...] | None = None
        self._patch: tuple[Message | None, str | None] | None = None
        self._patch_refs: tuple[Any, ...] = ()
        self._records: ItemMemo[EventRecord] = ItemMemo(max_records)
        #: The run's transitions, for telling a re-emitted one from news (:meth:`repeated`).
        self.transitions = TransitionLog()
        self._repeats: ItemMemo[bool] = self._records.another()
        self._last_rewind: TimeTravelled | None = None
        self._renders: OrderedDict[Hashable, tuple[Any, Any]] = OrderedDict()
        self._max_renders = max_renders
        #: The run's agents (``RunStore.agents`` of every session points at its model).
        self.agents = AgentFeed(run_id, answers=self._records)
        self._beats: dict[tuple[str, int], float] = {}
        self._beats_version = 0
        self._beats_copy: tuple[int, Mapping[tuple[str, int], float]] = (-1, MappingProxyType({}))
        self._last_beat: tuple[RunEvent | None, Any] = (None, None)
        #: States the run's ``node.*`` events announced ahead of the DevTools tree.
        self.hints = StateHints()
        self._last_hint: tuple[RunEvent | None, bool] = (None, False)

    def __repr__(self) -> str:
        return f"SharedRunView({self.run_id!r}, {self.stats})"

    def tree_patch(self, tree: DevToolsTree, changes: Sequence[TreeChange],
                   sent: Mapping[int, str] = NO_HINTS,
                   hints: Mapping[int, str] = NO_HINTS) -> tuple[Message | None, str | None]:
        """:func:`~dashboard.treerows.patch_for` of ``changes`` on ``tree`` (with the task-state
        ``hints`` of :meth:`state_hints`, for a page last sent ``sent``), computed once per
        tick for every session that asks with the same changes on the same tree state.

        The key is the tree object, its current seq, the identity of the changes (every
        store of the run is handed the same :class:`~inspector.tree.TreeChange` objects by the
        hub) and of the two hint maps (one object per version for the whole run): a store that
        missed a change asks with a different list and gets its own patch.
        Returns the message without a ``seq`` (never change it) and its JSON text, or
        ``(None, None)`` when the tick changed nothing visible.
        """
        key = (id(tree), tree.seq, tree.run_id, len(tree), tuple(id(c) for c in changes), id(sent), id(hints))
        if key == self._patch_key and self._patch is not None:
            self.stats.patches_shared += 1
            return self._patch
        message = with_hints(patch_for(tree, changes), tree, sent, hints)
        shared: tuple[Message | None, str | None] = (None, None) if is_empty(message) else (message, encode(message))
        self._patch_key, self._patch = key, shared
        self._patch_refs = (tree, tuple(changes), sent, hints)  # the ids in the key stay theirs while cached
        self.stats.patches_computed += 1
        return shared

    def tree_reset(self, tree: DevToolsTree, hints: Mapping[int, str] = NO_HINTS) -> tuple[Message, str]:
        """A reset (every row, ``hints`` on its task rows) of ``tree`` as it is now and its
        JSON text, computed once for every session that (re)joins at the same tree state: on a
        6,000-node run a reset is ~6,000 rows to build and encode, and a wall of screens
        reconnecting asks for one each."""
        key = ("reset", id(tree), tree.seq, tree.run_id, len(tree), id(hints))
        hit = self._renders.get(key)
        if hit is not None:
            self._renders.move_to_end(key)
            self.stats.renders_shared += 1
            return hit[1]  # type: ignore[no-any-return]
        message = with_hints({"type": "reset", "run": tree.run_id, "rows": rows_for(tree)}, tree, NO_HINTS, hints)
        value = (message, encode(message))
        self._renders[key] = ((tree, hints), value)
        if len(self._renders) > self._max_renders:
            self._renders.popitem(last=False)
        self.stats.renders_computed += 1
        return value

    def hint(self, item: RunEvent, tree: DevToolsTree | None) -> bool:
        """Take a live ``node.*`` event as a task-state hint (:mod:`inspector.state_hints`),
        once for every session (the hub hands the same item to each store in turn); whether
        the run's hints changed, the same answer for every session."""
        last, changed = self._last_hint
        if last is item:
            return changed
        changed = tree is not None and not item.replayed and self.hints.note(tree, item.frame.event, item.frame.payload)
        self._last_hint = (item, changed)
        return changed

    def state_hints(self, tree: DevToolsTree | None) -> Mapping[int, str]:
        """The run's task-state hints that ``tree`` has not caught up with, ``{DevTools id:
        state}``: one read-only object per version for every store of the run."""
        return self.hints.settle(tree) if tree is not None else NO_HINTS

    def beat(self, item: RunEvent) -> Any:
        """Fold the ``task.heartbeat`` ``item`` into the agents model and the run's last beats,
        once for every session (the hub hands the same item to each store in turn); the
        attempt it changed (:meth:`AgentFeed.feed`), the same answer for every session."""
        last, attempt = self._last_beat
        if last is item:
            self.stats.beats_shared += 1
            return attempt
        attempt = self.agents.feed(item)
        found = heartbeat_of(item)
        if found is not None:
            key, at = found
            if at >= self._beats.get(key, 0.0):  # a catch-up replays older beats
                self._beats[key] = at
                self._beats_version += 1
        self._last_beat = (item, attempt)
        self.stats.beats_folded += 1
        return attempt

    def heartbeats(self) -> Mapping[tuple[str, int], float]:
        """The run's last beat per ``(nodeId, iteration)``, a read-only copy made once per
        change for every store of the run (the same object until the next change)."""
        version, copy = self._beats_copy
        if version != self._beats_version:
            copy = MappingProxyType(dict(self._beats))
            self._beats_copy = (self._beats_version, copy)
        return copy

    def record(self, item: RunEvent, make: Callable[[RunEvent], EventRecord]) -> EventRecord:
        """The event log's record of ``item``, made once for every store that receives it."""
        record, remembered = self._records.answer(item, lambda: make(item))
        if remembered:
            self.stats.records_shared += 1
        else:
            self.stats.records_computed += 1
        return record

    def repeated(self, item: RunEvent) -> bool:
        """Whether ``item`` re-emits a transition the run already had
        (:meth:`TransitionLog.is_repeat <inspector.transitions.TransitionLog.is_repeat>`),
        worked out once for every session: the same answer for every store, a late joiner's
        catch-up included (its items were answered when they were news)."""
        frame = item.frame
        payload = frame.payload if isinstance(frame.payload, Mapping) else {}
        repeat, _ = self._repeats.answer(item, lambda: self.transitions.is_repeat(frame.event, payload))
        return repeat

    def rewound(self, item: TimeTravelled) -> None:
        """A rewind (``item``, handed to every store): nothing after it repeats what came
        before. Forgotten once per rewind, however many stores pass it on."""
        if self._last_rewind is not item:
            self._last_rewind = item
            self.transitions.reset()

    def memo(self, name: str, key: Hashable, refs: Any, render: Callable[[], T]) -> T:
        """``render()``, reused while ``(name, key)`` is the same as a recent call's.

        ``refs`` are kept alive with the entry (objects whose ``id`` is part of ``key`` must
        not be freed and their id reused while it is cached).
        """
        full = (name, key)
        hit = self._renders.get(full)
        if hit is not None:
            self._renders.move_to_end(full)
            self.stats.renders_shared += 1
            return hit[1]  # type: ignore[no-any-return]
        value = render()
        self._renders[full] = (refs, value)
        if len(self._renders) > self._max_renders:
            self._renders.popitem(last=False)
        self.stats.renders_computed += 1
        return value


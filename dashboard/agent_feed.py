"""One run's agents model, fed once per item for every session watching the run.

:class:`~inspector.agents.RunAgents` folds a run's events into per-attempt output, actions,
answers and token usage. With a hub, every session of a run receives the same
:class:`~inspector.stream.RunEvent` objects; :class:`AgentFeed` (kept in the run's
:class:`~dashboard.shared.SharedRunView`) applies each to the one model the first time a
session hands it in and gives the others the attempt it changed, so a wall of screens costs
one fold per event, not one per screen. Without a hub a store owns its feed.

Sources: live run events and the durable history that stands in for an empty replay
(:func:`inspector.run_history.event_source` tells them apart, with their numbers), and
``listRunTokenUsage`` rows (:meth:`AgentFeed.read_token_usage`, read once when a run is
opened and once when it settles, shared by the sessions). The model's two-layer
deduplication keeps the same event from two sources from counting twice.

**Rewinds.** After ``run.time_travel_jumped`` the model still holds the attempts the rewind
discarded, and the Gateway's history and ``listRunTokenUsage`` still list them (Smithers keeps
event rows; a re-executed task even reuses their attempt numbers). :meth:`AgentFeed.rewind`
re-reads both once per jump for every session, folds them with the rewound stretches cut out
(:func:`~inspector.agent_history.rebuilt_agents`) plus the live events that came meanwhile, and
the model becomes that in place. The live stream goes on under a source name of its own
(``live#1``, ...) lined up with the history after the jump; live events from before it (a
late joiner's catch-up) and replayed durable rows are old news and are dropped. A finished run
opened later is fed its durable history instead of live events: a ``TimeTravelJumped`` among
those rows (:meth:`AgentFeed.replayed_jump`) calls for the same rebuild.

Nothing here imports Panel.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
from collections import OrderedDict
from collections.abc import Coroutine, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from inspector.agent_history import discard_rewound, rebuilt_agents
from inspector.agents import RunAgents
from inspector.errors import GatewayError
from inspector.pricing import PRICES_ENV, PriceTable, load_price_table
from inspector.protocol import TimeTravelJump
from inspector.run_history import DURABLE_SOURCE, LIVE_SOURCE, event_source

from .item_memo import ItemMemo

if TYPE_CHECKING:
    from inspector.agents import AttemptKey
    from inspector.stream import RunEvent

__all__ = ["AgentFeed", "price_table"]

log = logging.getLogger(__name__)

_T = TypeVar("_T")


@functools.lru_cache(maxsize=4)
def _price_table(user_file: str | None) -> PriceTable:
    return load_price_table(user_file, use_env=False)


def price_table() -> PriceTable:
    """Smithers' price table (``inspector/prices.json``), with the user's file named by
    ``SMITHERS_DASHBOARD_PRICES`` laid over it: loaded once per process (per value of the
    variable)."""
    return _price_table(os.environ.get(PRICES_ENV) or None)


def _start(coro: Coroutine[Any, Any, _T]) -> asyncio.Future[_T]:
    """Run ``coro`` as the one read the run's sessions share. Its outcome is retrieved even
    when every session awaiting it has gone (closed while the read was under way), so a
    Gateway that went away meanwhile is a line in the log, not asyncio's "exception was
    never retrieved"."""
    future = asyncio.ensure_future(coro)
    future.add_done_callback(_retrieve)
    return future


def _retrieve(future: asyncio.Future[Any]) -> None:
    if future.cancelled():
        return
    exc = future.exception()
    if isinstance(exc, GatewayError):
        log.debug("a shared agents read failed: %s", exc)
    elif exc is not None:
        log.error("a shared agents read failed", exc_info=exc)


async def _shared(futures: dict[Any, asyncio.Future[_T]], key: object, future: asyncio.Future[_T]) -> _T:
    """Await ``future``, the one read every session of the run shares (a caller that goes away
    does not cancel it for the others); a failed one is forgotten, so the next caller tries again."""
    try:
        return await asyncio.shield(future)
    except GatewayError:
        if futures.get(key) is future:
            del futures[key]
        raise


class AgentFeed:
    """The agents of one run and the bookkeeping that feeds them once (see the module docstring)."""

    def __init__(self, run_id: str | None, *, max_items: int = 4096, answers: ItemMemo[Any] | None = None) -> None:
        self.agents = RunAgents(run_id)
        #: Items applied, by identity, with the attempt each changed: a question of its own in
        #: ``answers`` (the run's other answers about the same items) when given.
        self._applied: ItemMemo[AttemptKey | None] = answers.another() if answers is not None else ItemMemo(max_items)
        self._max_items = max_items
        self._usage_reads: dict[str, asyncio.Future[frozenset[AttemptKey]]] = {}
        self._rewinds: dict[tuple[object, ...], asyncio.Future[bool]] = {}
        self._rebuilding = asyncio.Lock()
        #: Rebuilds after a rewind (each gives the live stream a new source name).
        self.generation = 0
        #: Items fed before a rewind (by identity, kept so ids are not reused): a late joiner's
        #: catch-up hands the hub's same objects in again, and they are old news. Not by seq:
        #: the run's live numbering starts again at 1 when the rewound run resumes.
        self._stale: OrderedDict[int, object] = OrderedDict()
        #: The durable history's rewound stretches as of the last rebuild (their token usage is
        #: no longer the run's), and the items fed while a rebuild reads the Gateway.
        self._cut_windows = discard_rewound(())
        self._meanwhile: list[list[RunEvent]] = []
        #: Items folded into the model (once each) and items answered from the memo.
        self.applied = 0
        self.shared = 0

    def feed(self, item: RunEvent) -> AttemptKey | None:
        """Fold ``item`` into the model (the first time any session hands it in); the attempt
        it changed, the same answer for every session."""
        key, remembered = self._applied.answer(item, lambda: self._first_feed(item))
        if remembered:
            self.shared += 1
        return key

    def _first_feed(self, item: RunEvent) -> AttemptKey | None:
        if self._stale.get(id(item)) is item:
            return None  # from before the last rewind: the rebuild has what is left of it
        for kept in self._meanwhile:
            kept.append(item)
        self.applied += 1
        return self._fold(self.agents, item)

    @property
    def live_source(self) -> str:
        """The model's name for the live stream (a new one after each rewind)."""
        return LIVE_SOURCE if self.generation == 0 else f"{LIVE_SOURCE}#{self.generation}"

    def _fold(self, agents: RunAgents, item: RunEvent) -> AttemptKey | None:
        frame = item.frame
        source, seq = event_source(item)
        if source == LIVE_SOURCE:
            source = self.live_source
        elif source == DURABLE_SOURCE and self.generation > 0:
            return None  # the rebuild read the whole history
        at = getattr(item, "at", None)
        return agents.apply(
            frame.event,
            frame.payload if isinstance(frame.payload, dict) else {},
            seq=seq,
            source=source,
            t_ms=at * 1000.0 if isinstance(at, int | float) else None,
        )

    def replayed_jump(self, item: RunEvent) -> TimeTravelJump | None:
        """The rewind a durable history row fed before any rebuild records, else ``None``.

        :func:`inspector.run_history.durable_run_events` passes ``TimeTravelJumped`` on under a
        name of its own making, so the row is known by its payload (``fromFrameNo``,
        ``toFrameNo``), which no other event carries."""
        payload = item.frame.payload
        if self.generation or event_source(item)[0] != DURABLE_SOURCE or not isinstance(payload, Mapping):
            return None
        frames = payload.get("fromFrameNo"), payload.get("toFrameNo")
        if not all(isinstance(n, int) and not isinstance(n, bool) for n in frames):
            return None
        stamp = payload.get("timestampMs")
        return TimeTravelJump(str(payload.get("runId") or ""), frames[0], frames[1],
                              stamp if isinstance(stamp, int) else None, payload.get("caller"))

    def begin_rewind(self, client: Any, run_id: str, jump: TimeTravelJump) -> asyncio.Future[bool]:
        """Start the rebuild after ``jump`` unless it is under way (one per jump for every
        session of the run); from now on every item fed is kept for the rebuilt model too.
        Called when the jump is seen, before the next item is fed."""
        key = (jump.from_frame_no, jump.to_frame_no, jump.timestamp_ms, jump.caller)
        future = self._rewinds.get(key)
        if future is None:
            kept: list[RunEvent] = []
            self._meanwhile.append(kept)
            future = _start(self._rebuild(client, run_id, kept))
            self._rewinds[key] = future
        return future

    async def rewind(self, client: Any, run_id: str, jump: TimeTravelJump) -> bool:
        """Rebuild the model after ``jump`` (see :meth:`begin_rewind` and the module
        docstring). True when the model was rebuilt; a failed read leaves it as it was, and is
        forgotten so the next caller tries again."""
        key = (jump.from_frame_no, jump.to_frame_no, jump.timestamp_ms, jump.caller)
        try:
            return await _shared(self._rewinds, key, self.begin_rewind(client, run_id, jump))
        except GatewayError as exc:
            log.info("agents of %s not rebuilt after a rewind: %s", run_id, exc)
            return False

    async def _rebuild(self, client: Any, run_id: str, kept: list[RunEvent]) -> bool:
        # One rebuild at a time (two rewinds in a row). What was folded before the jump is in
        # the history the reads return; what came after it is kept to fold into the rebuilt
        # model too (lined up with the history, so applied once).
        try:
            async with self._rebuilding:
                history = await client.list_run_events(run_id)
                usage = await client.list_run_token_usage(run_id)
                self._adopt(history, usage, list(kept))
        finally:
            self._meanwhile = [other for other in self._meanwhile if other is not kept]
        return True

    def _adopt(self, history: list[dict[str, Any]], usage: list[dict[str, Any]], meanwhile: list[RunEvent]) -> None:
        after = {id(item) for item in meanwhile}
        for item in self._applied.items():
            if id(item) not in after:
                self._stale[id(item)] = item
        while len(self._stale) > self._max_items:
            self._stale.popitem(last=False)
        self.generation += 1
        self._cut_windows = discard_rewound(history)
        model = rebuilt_agents(history, usage, run_id=self.agents.run_id,
                                  output_cap_bytes=self.agents.output_cap_bytes, live_source=self.live_source)
        for item in meanwhile:
            self._fold(model, item)
        self.agents.adopt(model)
        self._applied.clear()

    def apply_token_usage(self, rows: list[dict[str, Any]]) -> frozenset[AttemptKey]:
        """Fold ``listRunTokenUsage`` rows; the attempts whose usage they filled in."""
        return frozenset(self.agents.apply_token_usage_rows(rows))

    async def read_token_usage(self, client: Any, run_id: str, when: str) -> frozenset[AttemptKey]:
        """Read ``listRunTokenUsage`` once per ``when`` (``"open"``, ``"settled"``) for every
        session of the run, fold it, and return the attempts it changed (each caller gets the
        same answer, so each store can tell its views). A failed read is forgotten, so the
        next caller tries again; it changes nothing."""
        future = self._usage_reads.get(when)
        if future is None:
            future = _start(self._read_usage(client, run_id))
            self._usage_reads[when] = future
        try:
            return await _shared(self._usage_reads, when, future)
        except GatewayError as exc:
            log.info("no token usage for %s: %s", run_id, exc)
            return frozenset()

    async def _read_usage(self, client: Any, run_id: str) -> frozenset[AttemptKey]:
        rows = await client.list_run_token_usage(run_id)
        return self.apply_token_usage([row for row in rows if not self._cut_windows.discards(row)])

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

Nothing here imports Panel.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from inspector.agents import RunAgents
from inspector.errors import GatewayError
from inspector.pricing import PRICES_ENV, PriceTable, load_price_table
from inspector.run_history import event_source

if TYPE_CHECKING:
    from inspector.agents import AttemptKey
    from inspector.stream import RunEvent

__all__ = ["AgentFeed", "price_table"]

log = logging.getLogger(__name__)


@functools.lru_cache(maxsize=4)
def _price_table(user_file: str | None) -> PriceTable:
    return load_price_table(user_file, use_env=False)


def price_table() -> PriceTable:
    """Smithers' price table (``inspector/prices.json``), with the user's file named by
    ``SMITHERS_DASHBOARD_PRICES`` laid over it: loaded once per process (per value of the
    variable)."""
    return _price_table(os.environ.get(PRICES_ENV) or None)


class AgentFeed:
    """The agents of one run and the bookkeeping that feeds them once (see the module docstring)."""

    def __init__(self, run_id: str | None, *, max_items: int = 4096) -> None:
        self.agents = RunAgents(run_id)
        #: Items applied: ``id(item) -> (item, attempt changed)``; the item is kept so its id
        #: is not reused while it is remembered.
        self._applied: OrderedDict[int, tuple[RunEvent, AttemptKey | None]] = OrderedDict()
        self._max_items = max_items
        self._usage_reads: dict[str, asyncio.Future[frozenset[AttemptKey]]] = {}
        #: Items folded into the model (once each) and items answered from the memo.
        self.applied = 0
        self.shared = 0

    def feed(self, item: RunEvent) -> AttemptKey | None:
        """Fold ``item`` into the model (the first time any session hands it in); the attempt
        it changed, the same answer for every session."""
        hit = self._applied.get(id(item))
        if hit is not None and hit[0] is item:
            self.shared += 1
            return hit[1]
        frame = item.frame
        source, seq = event_source(item)
        at = getattr(item, "at", None)
        key = self.agents.apply(
            frame.event,
            frame.payload if isinstance(frame.payload, dict) else {},
            seq=seq,
            source=source,
            t_ms=at * 1000.0 if isinstance(at, int | float) else None,
        )
        self.applied += 1
        self._applied[id(item)] = (item, key)
        if len(self._applied) > self._max_items:
            self._applied.popitem(last=False)
        return key

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
            future = asyncio.ensure_future(self._read_usage(client, run_id))
            self._usage_reads[when] = future
        try:
            return await asyncio.shield(future)
        except GatewayError as exc:
            if self._usage_reads.get(when) is future:
                del self._usage_reads[when]
            log.info("no token usage for %s: %s", run_id, exc)
            return frozenset()

    async def _read_usage(self, client: Any, run_id: str) -> frozenset[AttemptKey]:
        rows = await client.list_run_token_usage(run_id)
        return self.apply_token_usage(rows)

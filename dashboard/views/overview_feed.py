"""RunsFeed: the process's copy of the Gateway's run list, polled while someone watches it.

``listRuns`` is a read the Gateway does not push (the hub's socket carries one run's
DevTools stream, and the hello snapshot is not renewed), so the feed polls it every
``poll_seconds`` (2 s) and merges the answer with a diff
(:class:`~inspector.runlist.RunHistory`): the newest page plus a ``getRun`` for every run
it last saw active that has left that page; the whole list is re-read page by page
(``listRuns`` paging, :func:`~inspector.runlist.read_runs`) at the start and every
``full_seconds``. One feed per hub, so many browsers cost one poll.

The feed also keeps what every session would otherwise recompute from the same runs: the
run table (:meth:`RunsFeed.frame`, once per history version, with only the running runs'
durations brought up to date) and a small memo of aggregates keyed by their filters
(:meth:`RunsFeed.memo`), so N sessions on the default filters cost one aggregation per poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
import weakref
from collections import OrderedDict
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from inspector.agents import RunAgents
from inspector.errors import GatewayError
from inspector.pricing import load_price_table
from inspector.runlist import DEFAULT_PAGE_SIZE, RunHistory, read_runs

from ..analytics import runs_table

if TYPE_CHECKING:
    from collections.abc import Callable, Hashable, Mapping

    import pandas as pd

    from ..hub import GatewayHub

__all__ = ["ACTIVE_STATUSES", "RunsFeed"]

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Run statuses re-read until they end.
ACTIVE_STATUSES = ("running", "continued", "waiting-approval", "waiting-event", "waiting-timer", "waiting-quota",
                   "paused", "pending", "queued")


def _now_ms() -> float:
    return time.time() * 1000.0


class RunsFeed:
    """The process's copy of the Gateway's run list, polled while someone watches it.

    ``subscribe(listener)`` starts the poll (the first listener) and returns the function
    that unsubscribes; the poll stops when the last listener leaves. Listeners are called on
    the loop after every poll, with ``True`` when it changed something (a view that was
    hidden while runs changed catches up on the next poll).
    """

    #: Aggregates kept per frame generation (distinct filter combinations in use).
    MEMO_SIZE: ClassVar[int] = 32

    _shared: ClassVar[weakref.WeakKeyDictionary[GatewayHub, RunsFeed]] = weakref.WeakKeyDictionary()

    def __init__(
        self,
        hub: GatewayHub,
        *,
        poll_seconds: float = 2.0,
        full_seconds: float = 300.0,
        max_runs: int = 50_000,
        page_size: int = DEFAULT_PAGE_SIZE,
        newest_page: int = 100,
        usage_runs: int = 500,
        usage_concurrency: int = 4,
    ) -> None:
        self.hub = hub
        self.poll_seconds = poll_seconds
        self.full_seconds = full_seconds
        self.max_runs = max_runs
        self.page_size = page_size
        self.newest_page = newest_page
        self.history = RunHistory()
        self.loaded = False
        self.error: str | None = None
        self._listeners: dict[int, Callable[[bool], None]] = {}
        self._keys = 0
        self._task: asyncio.Task[None] | None = None
        self._base: tuple[tuple[int, int], pd.DataFrame] | None = None
        self._frame: tuple[tuple[tuple[int, int], int | None], pd.DataFrame] | None = None
        self._memo: OrderedDict[Hashable, Any] = OrderedDict()
        self.memo_hits = 0
        self._scores: dict[str, list[dict[str, Any]]] = {}
        #: Tokens and cost per run (``listRunTokenUsage``), for the newest :attr:`usage_runs`.
        self.usage: dict[str, dict[str, float]] = {}
        self.usage_runs = usage_runs
        self._usage_version = 0
        self._usage_dirty = False
        self._usage_task: asyncio.Task[None] | None = None
        self._usage_limit = asyncio.Semaphore(usage_concurrency)
        self._prices: Any = None

    @classmethod
    def shared(cls, hub: GatewayHub) -> RunsFeed:
        """The hub's feed (one per hub, so sessions share the poll)."""
        feed = cls._shared.get(hub)
        if feed is None:
            feed = cls._shared[hub] = cls(hub)
        return feed

    async def _rpc(self, method: str, params: Mapping[str, Any]) -> Any:
        return await self.hub.read(method, params, max_age=min(1.0, self.poll_seconds / 2))

    def subscribe(self, listener: Callable[[bool], None]) -> Callable[[], None]:
        self._keys += 1
        key = self._keys
        self._listeners[key] = listener
        if self._task is None or self._task.done():
            with contextlib.suppress(RuntimeError):
                self._task = asyncio.get_running_loop().create_task(self._poll())
        return lambda: self._unsubscribe(key)

    def _unsubscribe(self, key: int) -> None:
        self._listeners.pop(key, None)
        if not self._listeners and self._task is not None:
            self._task.cancel()
            self._task = None

    async def _poll(self) -> None:
        last_full = -math.inf
        while self._listeners:
            try:
                if time.monotonic() - last_full >= self.full_seconds:
                    rows = await read_runs(self._rpc, max_runs=self.max_runs, page_size=self.page_size)
                    last_full = time.monotonic()
                else:
                    rows = await self._recent()
                changed = bool(self.history.merge(rows)) or self._usage_dirty
                self._usage_dirty = False
                first = not self.loaded
                self._collect_usage()
                self.loaded, self.error = True, None
            except GatewayError as exc:
                changed, first = self.error != str(exc), False
                self.error = str(exc)
                log.info("overview: cannot list runs (%s)", exc)
            for listener in list(self._listeners.values()):
                try:
                    listener(changed or first)
                except Exception:  # one broken session must not stop the others' updates
                    log.exception("overview listener failed")
            await asyncio.sleep(self.poll_seconds)

    def _collect_usage(self) -> None:
        if self._usage_task is None or self._usage_task.done():
            with contextlib.suppress(RuntimeError):
                self._usage_task = asyncio.get_running_loop().create_task(self._read_usage())

    async def _read_usage(self) -> None:
        """``listRunTokenUsage`` of the newest :attr:`usage_runs` runs, four at a time: once
        for an ended run (its usage never changes again), every poll for a running one."""
        wanted = [r["runId"] for r in self.history.rows()[: self.usage_runs]
                  if r["runId"] not in self.usage or r.get("status") in ACTIVE_STATUSES]
        answers = await asyncio.gather(*(self.run_usage(run_id) for run_id in wanted))
        changed = False
        for run_id, spent in zip(wanted, answers, strict=True):
            if spent is not None and self.usage.get(run_id) != spent:
                self.usage[run_id] = spent
                changed = True
        if changed:
            self._usage_version += 1
            self._usage_dirty = True

    async def run_usage(self, run_id: str) -> dict[str, float] | None:
        """A run's ``{"tokens", "cost_usd"}`` (NaN: unknown; ``{}``: the Gateway has no usage
        for it), or ``None`` when the read failed (try again later)."""
        async with self._usage_limit:
            try:
                answer = await self._rpc("listRunTokenUsage", {"runId": run_id})
            except GatewayError:
                return None
        events = answer.get("events") if isinstance(answer, dict) else None
        if not isinstance(events, list):
            return {}
        agents = RunAgents()
        agents.apply_token_usage_rows(e for e in events if isinstance(e, dict))
        if self._prices is None:
            self._prices = load_price_table()
        cost = agents.cost(self._prices).cost_usd if events else None
        return {"tokens": float(agents.totals().total), "cost_usd": math.nan if cost is None else float(cost)}

    async def _recent(self) -> list[dict[str, Any]]:
        """The newest page, plus ``getRun`` for runs last seen active that left it."""
        page = await self._rpc("listRuns", {"filter": {"limit": self.newest_page}})
        rows = [r for r in page if isinstance(r, dict)] if isinstance(page, list) else []
        in_page = {r.get("runId") for r in rows}
        for run_id in self.history.active_ids(ACTIVE_STATUSES)[:50]:
            if run_id not in in_page:
                with contextlib.suppress(GatewayError):
                    run = await self._rpc("getRun", {"runId": run_id})
                    if isinstance(run, dict):
                        rows.append({k: v for k, v in run.items() if k not in ("summary", "runState")})
        return rows

    def frame(self) -> pd.DataFrame:
        """:func:`~dashboard.analytics.runs_table` of every run.

        Built once per history version; within a version only the durations of the runs
        still going grow, so while any is going a later second copies the table and
        updates those rows (a vectorised assignment, not a rebuild). Each new table starts
        a new generation of :meth:`memo`.
        """
        version = (self.history.version, self._usage_version)
        if self._base is None or self._base[0] != version:
            self._base = (version, runs_table(self.history.runs.values(), _now_ms(), usage=self.usage))
        base = self._base[1]
        going = ~base["ended"] & base["end_ms"].isna()
        key = (version, int(time.time()) if going.any() else None)
        if self._frame is None or self._frame[0] != key:
            if key[1] is not None:
                base = base.copy()
                base.loc[going, "duration_ms"] = (_now_ms() - base.loc[going, "start_ms"]).clip(lower=0.0)
            self._frame = (key, base)
            self._memo.clear()
        return self._frame[1]

    def memo(self, key: Hashable, compute: Callable[[], T]) -> T:
        """``compute()`` once per :meth:`frame` generation and ``key`` (the filters that
        produced it), shared by every session: the last :attr:`MEMO_SIZE` results."""
        self.frame()
        if key in self._memo:
            self._memo.move_to_end(key)
            self.memo_hits += 1
            return self._memo[key]  # type: ignore[no-any-return]
        value = compute()
        self._memo[key] = value
        while len(self._memo) > self.MEMO_SIZE:
            self._memo.popitem(last=False)
        return value

    async def scores(self, run_ids: list[str]) -> dict[str, list[dict[str, Any]]]:
        """``listScores`` of these runs; ended runs' answers are kept (their scores are final)."""
        out: dict[str, list[dict[str, Any]]] = {}
        for run_id in run_ids:
            cached = self._scores.get(run_id)
            if cached is None:
                try:
                    answer = await self._rpc("listScores", {"runId": run_id})
                except GatewayError:
                    continue
                cached = [r for r in answer if isinstance(r, dict)] if isinstance(answer, list) else []
                if self.history.runs.get(run_id, {}).get("status") not in ACTIVE_STATUSES:
                    self._scores[run_id] = cached
            out[run_id] = cached
        return out



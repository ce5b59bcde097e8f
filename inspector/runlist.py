"""Read the Gateway's run list page by page, and keep a merged copy of it current.

``listRuns`` answers newest first (by ``createdAtMs``) with ``filter: {limit, offset,
status, workflow}``. Smithers 0.32.0 does not cap ``limit`` (``asOptionalPositiveInt``
only checks it is a positive integer, ``gateway.js`` ``listRuns``), but every page costs
the Gateway ``offset + limit`` rows per workflow database (``listRunsAcrossWorkflows``
over-fetches by the offset, then slices), so one 10,000-row answer or twenty 500-row pages
cost about the same on its side while a page keeps every answer (and our memory per
answer) bounded. :data:`DEFAULT_PAGE_SIZE` is that compromise.

- :func:`read_runs` pages until a short page, ``max_runs``, or (``since_ms``) the first
  run older than the window: the list is sorted newest first, so nothing older follows.
  Runs that start while it pages shift later pages by one; rows are deduplicated by
  ``runId`` so a shifted row is not counted twice.
- :class:`RunHistory` is the merged copy a poller keeps: :meth:`RunHistory.merge` takes a
  page (or a whole read) and returns what was added and what changed, so a view can patch
  its charts with the difference instead of redrawing from scratch.

The RPC is injected (``rpc(method, params) -> payload``): :meth:`GatewayClient.rpc
<inspector.client.GatewayClient.rpc>`, or the dashboard hub's shared ``read``. No I/O here.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["DEFAULT_PAGE_SIZE", "RpcCall", "RunHistory", "RunsDiff", "read_runs", "run_start_ms"]

#: Rows per ``listRuns`` page (see the module docstring).
DEFAULT_PAGE_SIZE = 500

#: ``rpc(method, params)`` returning the answer's payload.
RpcCall = Callable[[str, Mapping[str, Any]], Awaitable[Any]]

#: Fields of a run row that, when they change, make it a changed run.
_TRACKED = ("status", "startedAtMs", "finishedAtMs", "workflowKey", "workflowName", "errorJson")


def run_start_ms(row: Mapping[str, Any]) -> float | None:
    """When the run started (``startedAtMs``, else ``createdAtMs``), in epoch ms."""
    for key in ("startedAtMs", "createdAtMs"):
        value = row.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    return None


def _created_ms(row: Mapping[str, Any]) -> float | None:
    value = row.get("createdAtMs")
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return run_start_ms(row)


async def read_runs(
    rpc: RpcCall,
    *,
    status: str | None = None,
    workflow: str | None = None,
    since_ms: float | None = None,
    max_runs: int | None = None,
    page_size: int = DEFAULT_PAGE_SIZE,
) -> list[dict[str, Any]]:
    """Every run (newest first) matching the filter, read ``page_size`` rows at a time.

    ``since_ms`` stops at the first run created before it (that run is not returned);
    ``max_runs`` bounds the answer. Rows without a string ``runId`` are dropped.
    """
    if page_size < 1:
        raise ValueError("page_size must be positive")
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    offset = 0
    while max_runs is None or len(out) < max_runs:
        flt: dict[str, Any] = {"limit": page_size, "offset": offset}
        if status:
            flt["status"] = status
        if workflow:
            flt["workflow"] = workflow
        page = await rpc("listRuns", {"filter": flt})
        rows = [r for r in page if isinstance(r, dict)] if isinstance(page, list) else []
        for row in rows:
            run_id = row.get("runId")
            if not isinstance(run_id, str) or run_id in seen:
                continue
            created = _created_ms(row)
            if since_ms is not None and created is not None and created < since_ms:
                return out
            seen.add(run_id)
            out.append(row)
            if max_runs is not None and len(out) >= max_runs:
                return out
        if len(rows) < page_size:
            break
        offset += len(rows)
    return out


@dataclass(frozen=True, slots=True)
class RunsDiff:
    """What one :meth:`RunHistory.merge` changed: run ids added and run ids whose row moved."""

    added: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.added or self.changed)


@dataclass(slots=True)
class RunHistory:
    """The runs seen so far by run id, merged from successive reads (see the module docstring).

    ``version`` grows by one on every merge that changed something, so a reader can tell
    whether its derived data (aggregates, chart data) is stale without comparing rows.
    """

    runs: dict[str, dict[str, Any]] = field(default_factory=dict)
    version: int = 0

    def merge(self, rows: Iterable[Mapping[str, Any]]) -> RunsDiff:
        """Add new runs and replace rows whose tracked fields changed; return the difference."""
        added: list[str] = []
        changed: list[str] = []
        for row in rows:
            run_id = row.get("runId")
            if not isinstance(run_id, str):
                continue
            old = self.runs.get(run_id)
            if old is None:
                added.append(run_id)
            elif any(old.get(k) != row.get(k) for k in _TRACKED):
                changed.append(run_id)
            else:
                continue
            self.runs[run_id] = dict(row)
        diff = RunsDiff(tuple(added), tuple(changed))
        if diff:
            self.version += 1
        return diff

    def rows(self) -> list[dict[str, Any]]:
        """Every run, newest first."""
        return sorted(self.runs.values(), key=lambda r: -(_created_ms(r) or 0.0))

    def active_ids(self, active_statuses: Iterable[str]) -> list[str]:
        """Runs whose last known status is one of ``active_statuses`` (to re-read until they end)."""
        wanted = set(active_statuses)
        return [run_id for run_id, row in self.runs.items() if row.get("status") in wanted]

# mypy: allow-untyped-calls
"""CompareWithPrevious: the run page's "Compare with the previous run" link.

Beside the run header, a link to ``?compare=<previous run of the same workflow>,<this run>``
(:func:`~dashboard.analytics.compare_query`), the comparison the landing page opens. The
previous run is the same workflow's run that started last before this one
(:func:`~dashboard.analytics.previous_run`), found with ``listRuns`` filtered by workflow,
read page by page until a page holds a run older than this one: the list is newest first, so nothing older can be closer. It is looked up once per
run (the answer never changes: a run that starts later is never "previous"), through the
hub's shared reads. No previous run: the link says so and is not a link.

Hook: ``data-testid="compare-previous"`` (with ``data-previous`` when one was found).
"""

from __future__ import annotations

import asyncio
import contextlib
import html
from typing import Any

import panel as pn
import param

from inspector.errors import GatewayError
from inspector.runlist import run_start_ms

from ..analytics import compare_query, previous_run
from .base import StoreView

__all__ = ["CompareWithPrevious", "link_html"]

#: How many of the workflow's runs to read at most, looking for the previous one.
MAX_SCAN = 2000
#: ``listRuns`` page size while looking.
PAGE = 100


def link_html(run_id: str | None, previous: str | None) -> str:
    """The link (escaped), or a muted note when there is no previous run."""
    if not run_id:
        return ""
    if previous is None:
        return '<span data-testid="compare-previous" class="sd-muted">No previous run of this workflow</span>'
    href = html.escape(compare_query([previous, run_id]), quote=True)
    return (f'<a data-testid="compare-previous" data-previous="{html.escape(previous, quote=True)}" href="{href}">'
            "Compare with the previous run</a>")


class CompareWithPrevious(StoreView):
    """The link (see the module docstring)."""

    previous = param.String(default=None, allow_None=True, doc="The previous run of this run's workflow, once found.")

    _redraw_on = ("run",)

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self._pane = pn.pane.HTML("", margin=(18, 10), styles={"white-space": "nowrap"})
        self._resolved: str | None = None
        self._task: asyncio.Task[None] | None = None

    def _update(self) -> None:
        run = self.store.run or {}
        run_id = run.get("runId")
        if run_id != self.store.run_id:
            return  # the previous run's row, or none yet
        if not isinstance(run_id, str) or run_id == self._resolved or run_start_ms(run) is None:
            return
        self._resolved = run_id
        self.previous = None
        self._pane.object = ""
        if self._task is not None:
            self._task.cancel()
        with contextlib.suppress(RuntimeError):
            self._task = asyncio.get_running_loop().create_task(self._find(dict(run)))

    async def _find(self, run: dict[str, Any]) -> None:
        workflow = run.get("workflowKey") or run.get("workflowName")
        if not isinstance(workflow, str) or not workflow or self.store.hub is None:
            return
        start = run_start_ms(run)
        rows: list[dict[str, Any]] = []
        try:
            while len(rows) < MAX_SCAN:
                page = await self.store.hub.read(
                    "listRuns", {"filter": {"workflow": workflow, "limit": PAGE, "offset": len(rows)}}, max_age=5.0)
                got = [r for r in page if isinstance(r, dict)] if isinstance(page, list) else []
                rows += got
                older = any((s := run_start_ms(r)) is not None and start is not None and s < start for r in got)
                if older or len(got) < PAGE:
                    break
        except GatewayError:
            return
        if self.store.run_id != run.get("runId"):
            return
        self.previous = previous_run(rows, run)
        self._pane.object = link_html(run["runId"], self.previous)

    def __panel__(self) -> pn.viewable.Viewable:
        return self._pane

# mypy: allow-untyped-calls
"""RunList: the Gateway's runs, filterable by status and workflow, searchable; click to open.

``listRuns`` is a read the Gateway does not push, so this is the one view that re-reads
on a timer: every ``refresh_seconds`` while it is shown, plus on filter changes and the
Refresh button. Reads go through the hub, so many sessions showing the list share them.
Clicking a row calls ``on_select(run_id)`` (the app sets ``store.run_id`` and so
``?runId=``).
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from typing import TYPE_CHECKING, Any

import pandas as pd
import panel as pn
import param
from param.parameters import NoNone

from inspector.errors import GatewayError
from inspector.vocabulary import RunStatus

from ..format import format_duration, run_elapsed
from ..hub import GatewayHub
from .widgets import TextPane, plaintext

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

__all__ = ["STATUSES", "RunList", "runs_frame"]

STATUSES = ["any", *(status.value for status in (
    RunStatus.RUNNING, RunStatus.WAITING_APPROVAL, RunStatus.FINISHED, RunStatus.FAILED, RunStatus.CANCELLED,
))]
_COLUMNS = ["status", "workflow", "runId", "started", "elapsed"]


def runs_frame(runs: Sequence[Mapping[str, Any]], search: str = "", now: float | None = None) -> pd.DataFrame:
    needle = search.strip().lower()
    rows = []
    for r in runs:
        run_id = str(r.get("runId", ""))
        workflow = str(r.get("workflowName") or r.get("workflowKey") or "")
        if needle and needle not in f"{run_id} {workflow} {r.get('status', '')}".lower():
            continue
        started = r.get("startedAtMs") or r.get("createdAtMs")
        rows.append(
            {
                "status": str(r.get("status", "")),
                "workflow": workflow,
                "runId": run_id,
                "started": datetime.fromtimestamp(started / 1000).strftime("%Y-%m-%d %H:%M:%S")
                if isinstance(started, int | float)
                else "",
                "elapsed": format_duration(run_elapsed(r, now)),
            }
        )
    return pd.DataFrame.from_records(rows, columns=_COLUMNS)


class RunList(pn.viewable.Viewer):
    """The runs table (see the module docstring)."""

    hub = param.ClassSelector(class_=GatewayHub, allow_None=NoNone, doc="The process's Gateway hub.")

    on_select = param.Callable(default=None, doc="Called with the run id of a clicked row.")

    refresh_seconds = param.Number(default=10.0, bounds=(2, None), doc="Re-read interval while shown.")

    limit = param.Integer(default=100, bounds=(1, 500), doc="How many runs to read.")

    error = param.String(default=None, allow_None=True, doc="Why the last read failed.")

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self._runs: list[dict[str, Any]] = []
        self._status = pn.widgets.Select(label="Status", options=STATUSES, value="any", width=170)
        self._workflow = pn.widgets.TextInput(label="Workflow", placeholder="any", width=170)
        self._search = pn.widgets.TextInput(label="Search", placeholder="run id, workflow…", width=240)
        self._refresh = pn.widgets.Button(label="Refresh", width=100, margin=(24, 10))
        self._message = TextPane("Loading runs…", margin=(5, 10))
        self._table = pn.widgets.Tabulator(
            runs_frame([]),
            css_classes=["sd-run-list"],  # the landing page has the overview's run table too
            show_index=False,
            disabled=True,
            selectable=False,
            formatters=plaintext(*_COLUMNS),
            layout="fit_data_stretch",
            sizing_mode="stretch_width",
            height=520,
            pagination=None,
        )
        self._table.on_click(self._clicked)
        self._status.param.watch(lambda e: self.refresh(), "value")
        self._workflow.param.watch(lambda e: self.refresh(), "value")
        self._search.param.watch(lambda e: self._render(), "value_input")
        self._refresh.on_click(lambda e: self.refresh())
        self._task: asyncio.Task[None] | None = None
        self._callback: Any = None
        self.refresh()
        try:
            self._callback = pn.state.add_periodic_callback(self.refresh, period=int(self.refresh_seconds * 1000))
        except Exception:
            self._callback = None

    def refresh(self) -> None:
        """Re-read ``listRuns`` in the background (on the loop)."""
        if self._task is not None and not self._task.done():
            return
        try:
            self._task = asyncio.get_running_loop().create_task(self._read())
        except RuntimeError:
            self._task = None

    async def _read(self) -> None:
        flt: dict[str, Any] = {"limit": self.limit}
        if self._status.value != "any":
            flt["status"] = self._status.value
        workflow = (self._workflow.value or "").strip()
        if workflow:
            flt["workflow"] = workflow
        try:
            result = await self.hub.read("listRuns", {"filter": flt}, max_age=2.0)
        except GatewayError as exc:
            self.error = str(exc)
            self._message.object = f"Cannot list runs: {exc}"
            return
        self.error = None
        self._runs = [r for r in result if isinstance(r, dict)] if isinstance(result, list) else []
        self._render()

    def _render(self) -> None:
        frame = runs_frame(self._runs, self._search.value_input or "", time.time())
        with pn.io.hold():
            self._table.value = frame
            if self.error is None:
                self._message.object = f"{len(frame)} of {len(self._runs)} runs · click a run to open it"

    def _clicked(self, event: Any) -> None:
        row = event.row
        frame = self._table.value
        if row is None or row >= len(frame):
            return
        run_id = str(frame.iloc[row]["runId"])
        if self.on_select is not None and run_id:
            callback: Callable[[str], None] = self.on_select
            callback(run_id)

    def stop(self) -> None:
        if self._callback is not None:
            self._callback.stop()
            self._callback = None

    def __panel__(self) -> pn.viewable.Viewable:
        return pn.Column(
            pn.Row(self._status, self._workflow, self._search, self._refresh),
            self._message,
            self._table,
            sizing_mode="stretch_width",
        )

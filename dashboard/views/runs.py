# mypy: allow-untyped-calls
"""RunList: the landing page's one run table, paginated on the server; click a run to open it.

The table shows the runs the overview's filters select (time window, workflow, status, the
brushed range, the picked workflow) plus a search over run id, workflow and status; the
rows come from the process's shared run feed (:class:`~dashboard.views.overview_feed.RunsFeed`,
``listRuns`` paged), so a session reads nothing of its own. It is a Tabulator with
``pagination="remote"``: the server keeps the whole (sorted, newest first) frame and sends
the browser only the page shown, so 10,000 runs cost one page of rows on the wire.

Clicking a cell of a run calls ``on_select(run_id)`` (the app sets ``?runId=``); ticking two
or more runs enables "Compare ticked runs", which calls ``on_compare(run_ids)``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import panel as pn
import param

from ..format import format_duration
from .widgets import TextPane, plaintext

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["COLUMNS", "RunList", "table_frame"]

#: The table's columns, in order.
COLUMNS = ["status", "workflow", "runId", "started", "duration"]


def _durations(values: np.ndarray[Any, Any]) -> list[str]:
    """``format_duration`` per run, computed once per distinct value at the precision it shows
    (tenths below 10 s, whole seconds above: 10,000 runs have far fewer distinct values)."""
    seconds = np.nan_to_num(values, nan=-1000.0) / 1000.0
    shown = np.where(seconds < 10, np.round(seconds, 1), np.floor(seconds))
    unique, inverse = np.unique(shown, return_inverse=True)
    texts = np.array([format_duration(s) if s >= 0 else "–" for s in unique], dtype=object)
    return list(texts[inverse])


def table_frame(frame: pd.DataFrame, search: str = "") -> pd.DataFrame:
    """The table's rows (:data:`COLUMNS`, text) for a :func:`~dashboard.analytics.runs_table`
    frame, newest first, keeping the runs whose id, workflow or status contains ``search``
    (case-insensitive)."""
    if search.strip() and len(frame):
        needle = search.strip().lower()
        hay = frame["runId"].astype(str) + " " + frame["name"].astype(str) + " " + frame["status"].astype(str)
        frame = frame[hay.str.lower().str.contains(needle, regex=False)]
    ordered = frame.sort_values("start_ms", ascending=False, kind="stable", na_position="first")
    if not len(ordered):
        return pd.DataFrame({c: pd.Series(dtype=str) for c in COLUMNS})
    started = pd.to_datetime(ordered["start_ms"].to_numpy(), unit="ms", utc=True).tz_convert(None)
    return pd.DataFrame({
        "status": ordered["status"].astype(str).to_numpy(),
        "workflow": ordered["name"].astype(str).to_numpy(),
        "runId": ordered["runId"].astype(str).to_numpy(),
        "started": started.strftime("%Y-%m-%d %H:%M:%S").fillna(""),
        "duration": _durations(ordered["duration_ms"].to_numpy(dtype=float)),
    })


class RunList(pn.viewable.Viewer):
    """The run table (see the module docstring). :meth:`set_runs` gives it the runs to list."""

    on_select = param.Callable(default=None, doc="Called with the run id of a clicked row.")

    on_compare = param.Callable(default=None, doc="Called with the run ids ticked (two or more).")

    page_size = param.Integer(default=15, bounds=(5, 200), doc="Rows per page (the page is all the browser gets).")

    shown = param.Integer(default=0, doc="Runs in the table (after the search).")

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self._frame = pd.DataFrame(columns=["runId", "workflow", "name", "status", "start_ms", "duration_ms"])
        self._search = pn.widgets.TextInput(label="Search", placeholder="run id, workflow, status…", width=260)
        self._compare = pn.widgets.Button(label="Compare ticked runs", width=170, disabled=True, margin=(24, 10))
        self._message = TextPane("", margin=(0, 10))
        self._table = pn.widgets.Tabulator(
            table_frame(self._frame),
            css_classes=["sd-run-list"],
            show_index=False,
            disabled=True,
            selectable="checkbox",
            pagination="remote",
            page_size=self.page_size,
            formatters=plaintext(*COLUMNS),
            layout="fit_data_stretch",
            sizing_mode="stretch_width",
        )
        self._search.param.watch(lambda e: self._render(), "value_input")
        self._compare.on_click(self._compare_ticked)
        self._table.param.watch(self._ticked, "selection")
        self._table.on_click(self._clicked)

    @property
    def table(self) -> pn.widgets.Tabulator:
        return self._table

    def set_runs(self, frame: pd.DataFrame, rows: pd.DataFrame | None = None) -> None:
        """List the runs of ``frame`` (a :func:`~dashboard.analytics.runs_table` frame);
        ``rows`` is its :func:`table_frame` when the caller has it already (shared by sessions)."""
        self._frame = frame
        self._render(rows)

    def _render(self, rows: pd.DataFrame | None = None) -> None:
        search = self._search.value_input or ""
        if rows is None or search.strip():
            rows = table_frame(self._frame, search)
        self.shown = len(rows)
        old = self._table.value
        if old is rows or (old is not None and len(old) == len(rows) and old.equals(rows)):
            return
        with pn.io.hold():
            self._table.value = rows
            self._message.object = f"{len(rows)} runs · click a run to open it, tick two or more to compare them"

    def _ticked(self, event: Any) -> None:
        self._compare.disabled = len(event.new or []) < 2

    def _compare_ticked(self, *_: Any) -> None:
        frame = self._table.value
        ids = [str(frame.iloc[i]["runId"]) for i in self._table.selection if i < len(frame)]
        if len(ids) >= 2 and self.on_compare is not None:
            self.on_compare(ids)

    def _clicked(self, event: Any) -> None:
        frame = self._table.value
        if event.row is None or event.row >= len(frame) or event.column not in COLUMNS:
            return  # the tick box column selects, it does not open
        run_id = str(frame.iloc[event.row]["runId"])
        if self.on_select is not None and run_id:
            callback: Callable[[str], None] = self.on_select
            callback(run_id)

    def __panel__(self) -> pn.viewable.Viewable:
        return pn.Column(
            pn.Row(pn.pane.HTML("<h3>Runs</h3>", margin=(10, 10)), self._search, self._compare),
            self._message,
            self._table,
            sizing_mode="stretch_width",
        )

# mypy: allow-untyped-calls
"""AuditView: the audit log (``--audit-log``), newest first, for operators.

A Tabulator of the log's last lines (:meth:`dashboard.audit.AuditLog.read`). Every column is
shown as plain text: user names, node ids and the Gateway's words are not ours to render as
HTML. It reads the file when shown and when asked (Refresh), not on a timer: the log changes
when someone acts, and a table nobody looks at should cost nothing. "This run only" narrows
it to the open run.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import panel as pn
import param

from ..audit import AuditLog
from .widgets import plaintext

__all__ = ["COLUMNS", "AuditView", "audit_frame"]

#: The audit line's fields, in the table's order.
COLUMNS = ("time", "user", "action", "runId", "nodeId", "iteration", "frame", "force", "outcome", "code", "detail")


def audit_frame(entries: list[dict[str, Any]], run_id: str | None = None) -> pd.DataFrame:
    """The table's rows (every value as text; ``run_id`` keeps that run's lines only)."""
    rows = [
        {column: "" if entry.get(column) is None else str(entry.get(column)) for column in COLUMNS}
        for entry in entries
        if run_id is None or entry.get("runId") == run_id
    ]
    return pd.DataFrame(rows, columns=list(COLUMNS))


class AuditView(pn.viewable.Viewer):
    """The audit log as a table (see the module docstring)."""

    log = param.ClassSelector(class_=AuditLog, doc="The process's audit log.")
    run_id = param.String(default=None, allow_None=True, doc="The open run (for 'This run only').")
    limit = param.Integer(default=1000, bounds=(1, None), doc="How many of the newest lines to show.")

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self._only_run = pn.widgets.Checkbox(label="This run only", value=False, margin=(12, 10))
        self._refresh = pn.widgets.Button(label="Refresh", width=90, margin=(6, 10))
        self._count = pn.pane.Str("", margin=(12, 10))
        self._table = pn.widgets.Tabulator(
            audit_frame([]),
            show_index=False,
            disabled=True,
            formatters=plaintext(*COLUMNS),
            layout="fit_data_stretch",
            pagination="local",
            page_size=50,
            sizing_mode="stretch_width",
            height=480,
        )
        self._refresh.on_click(lambda e: self.refresh())
        self._only_run.param.watch(lambda e: self.refresh(), "value")
        self.param.watch(self._on_run, "run_id")
        self.refresh()

    def _on_run(self, event: Any) -> None:
        if self._only_run.value:
            self.refresh()

    def refresh(self) -> None:
        """Read the log's newest lines again."""
        entries = self.log.read(self.limit) if self.log is not None else []
        frame = audit_frame(entries, self.run_id if self._only_run.value else None)
        with pn.io.hold():
            self._table.value = frame
            self._count.object = f"{len(frame)} action(s), newest first"

    def __panel__(self) -> pn.viewable.Viewable:
        return pn.Column(
            pn.Row(self._refresh, self._only_run, self._count, sizing_mode="stretch_width"),
            self._table,
            sizing_mode="stretch_width",
        )

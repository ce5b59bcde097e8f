# mypy: allow-untyped-calls
"""RunComparison: two or more runs side by side, node by node (``?compare=A,B``).

"What changed between the good run and the bad one": for every task (the union over the
runs, in the workflow's order) each run's state, attempts, duration, mean score per scorer,
and the usage columns (tokens, cost: empty until the agents work fills the
:func:`~dashboard.analytics.node_metrics` ``usage`` hook), with the cells that differ
highlighted; one ``data-testid="compare-row"`` row per task. Below, a task's output diffed
between the first run and each other one (``getNodeOutput`` + ``difflib``), shown as
escaped text.

Sources, per run, all reads through the hub: ``getRun`` (header), ``getDevToolsSnapshot``
(state and attempt per task), the durable event history ``/v1/api/events`` (durations:
live socket events carry no timestamps) and ``listScores``.

:func:`previous_run_query` gives a run page its "compare with the previous run of this
workflow" link (``?compare=PREVIOUS,THIS``).
"""

from __future__ import annotations

import asyncio
import html
import logging
from typing import Any

import panel as pn
import param

from inspector.errors import GatewayError

from ..analytics import (
    CompareRow,
    compare_nodes,
    compare_query,
    node_metrics,
    output_diff,
    parse_compare,
    previous_run,
)
from ..format import format_duration, run_status_colour
from ..hub import GatewayHub
from .widgets import TextPane, stylesheet

__all__ = ["RunComparison", "compare_table_html", "previous_run_query"]

log = logging.getLogger(__name__)

_CSS = """
table.sd-compare { border-collapse: collapse; width: 100%; font-size: .9em; color: var(--sd-fg); }
table.sd-compare th, table.sd-compare td { padding: .2em .5em; border-bottom: 1px solid var(--sd-border); text-align: left;
  vertical-align: top; }
table.sd-compare th.sd-run { border-left: 2px solid var(--sd-border); }
table.sd-compare td.sd-first { border-left: 2px solid var(--sd-border); }
table.sd-compare td.sd-diff { background: color-mix(in srgb, #f29900 22%, transparent); font-weight: 600; }
table.sd-compare tr.sd-absent td.sd-node { font-style: italic; }
table.sd-compare .sd-mono { font-family: ui-monospace, monospace; font-size: .9em; }
"""


def _cell(field: str, value: Any) -> str:
    if value is None:
        return "–"
    if field == "duration_ms":
        return format_duration(float(value) / 1000)
    if field == "cost_usd":
        return f"${float(value):,.4f}"
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def compare_table_html(runs: list[dict[str, Any]], rows: list[CompareRow]) -> str:
    """The comparison table: per run a group of columns; differing cells get ``sd-diff``."""
    fields = list(rows[0].values) if rows else ["state", "attempts", "duration_ms", "tokens", "cost_usd"]
    labels = {"duration_ms": "duration", "cost_usd": "cost"}
    head1 = ['<th rowspan="2">task</th>']
    for run in runs:
        run_id = html.escape(str(run.get("runId", "")))
        status = str(run.get("status") or "")
        head1.append(
            f'<th class="sd-run" colspan="{len(fields)}"><a href="?runId={run_id}" target="_top" class="sd-mono">'
            f"{run_id[:13]}</a> <span class=\"sd-pill\" style=\"background:{run_status_colour(status)}\">"
            f"{html.escape(status)}</span></th>"
        )
    run_start = ' class="sd-run"'
    head2 = "".join(
        f"<th{run_start if i == 0 else ''}>{html.escape(labels.get(f, f))}</th>"
        for _ in runs for i, f in enumerate(fields)
    )
    body = []
    for row in rows:
        cells = []
        for r in range(len(runs)):
            for i, field in enumerate(fields):
                classes = [c for c in ("sd-first" if i == 0 else "", "sd-diff" if field in row.differs else "") if c]
                attr = f' class="{" ".join(classes)}"' if classes else ""
                cells.append(f"<td{attr}>{html.escape(_cell(field, row.values[field][r]))}</td>")
        absent = "" if all(row.present) else ' class="sd-absent"'
        body.append(
            f'<tr data-testid="compare-row" data-node-id="{html.escape(row.key, quote=True)}" '
            f'data-differs="{html.escape(",".join(sorted(row.differs)), quote=True)}"{absent}>'
            f'<td class="sd-node sd-mono">{html.escape(row.key)}</td>{"".join(cells)}</tr>'
        )
    if not body:
        body.append(f'<tr><td colspan="{1 + len(fields) * max(1, len(runs))}">No tasks in these runs.</td></tr>')
    return f'<table class="sd-compare"><tr>{"".join(head1)}</tr><tr>{head2}</tr>{"".join(body)}</table>'


async def previous_run_query(hub: GatewayHub, run_id: str, search: int = 200) -> str | None:
    """``?compare=PREVIOUS,RUN`` for ``run_id`` and its workflow's run before it (``None``: none)."""
    run = await hub.read("getRun", {"runId": run_id}, max_age=5.0)
    if not isinstance(run, dict):
        return None
    workflow = run.get("workflowKey") or run.get("workflowName")
    flt: dict[str, Any] = {"limit": search}
    if isinstance(workflow, str) and workflow:
        flt["workflow"] = workflow
    rows = await hub.read("listRuns", {"filter": flt}, max_age=5.0)
    previous = previous_run([r for r in rows if isinstance(r, dict)] if isinstance(rows, list) else [], run)
    return compare_query([previous, run_id]) if previous else None


class RunComparison(pn.viewable.Viewer):
    """The comparison page (see the module docstring)."""

    hub: GatewayHub = param.ClassSelector(class_=GatewayHub, doc="The process's Gateway hub.")  # type: ignore[assignment]

    compare = param.String(default="", doc="The compared run ids, comma-separated (``?compare=A,B``).")

    node = param.String(default="", doc="The task whose output is diffed (a compare-row key).")

    loading = param.Boolean(default=False, doc="Reading the runs.")

    on_back = param.Callable(default=None, doc="Called by the back button (back to the overview).")

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self._runs: list[dict[str, Any]] = []
        self._rows: list[CompareRow] = []
        self._table = pn.pane.HTML(compare_table_html([], []), stylesheets=[stylesheet(), _CSS],
                                   sizing_mode="stretch_width", margin=(5, 10))
        self._message = TextPane("", margin=(0, 10))
        self._nodes = pn.widgets.Select(label="Output of task", options=[], width=260)
        self._diff = TextPane("", sizing_mode="stretch_width", margin=(5, 10),
                              styles={"max-height": "420px", "overflow": "auto"})
        self._back = pn.widgets.Button(label="← All runs", width=110, margin=(10, 10))
        self._back.on_click(lambda e: self.on_back() if self.on_back is not None else None)
        self._nodes.param.watch(lambda e: setattr(self, "node", e.new or ""), "value")
        self.param.watch(self._load_later, "compare")
        self.param.watch(self._diff_later, "node")
        self._task: asyncio.Task[None] | None = None
        self._diff_task: asyncio.Task[None] | None = None
        if self.compare:
            self._load_later()

    @property
    def run_ids(self) -> list[str]:
        return parse_compare(self.compare)

    # ------------------------------------------------------------------ loading

    def _spawn(self, coro: Any, previous: asyncio.Task[None] | None) -> asyncio.Task[None] | None:
        if previous is not None and not previous.done():
            previous.cancel()
        try:
            return asyncio.get_running_loop().create_task(coro)
        except RuntimeError:
            coro.close()
            return None

    def _load_later(self, *_: Any) -> None:
        self._task = self._spawn(self.load(), self._task)

    def _diff_later(self, *_: Any) -> None:
        self._diff_task = self._spawn(self.load_diff(), self._diff_task)

    async def _one(self, run_id: str) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
        run = await self.hub.read("getRun", {"runId": run_id}, max_age=2.0)
        snapshot = await self.hub.read("getDevToolsSnapshot", {"runId": run_id}, max_age=2.0)
        scores = await self.hub.read("listScores", {"runId": run_id}, max_age=2.0)
        try:
            events = await self.hub.client.list_run_events(run_id)
        except GatewayError as exc:
            log.info("compare: no event history for %s (%s)", run_id, exc)
            events = []
        run = run if isinstance(run, dict) else {"runId": run_id}
        metrics = node_metrics(snapshot if isinstance(snapshot, dict) else None, events,
                               [s for s in scores if isinstance(s, dict)] if isinstance(scores, list) else [])
        return run, metrics

    async def load(self) -> None:
        """Read every compared run and redraw the table."""
        ids = self.run_ids
        if len(ids) < 2:
            self._message.object = "Pick two or more runs to compare (tick them in the overview's run table)."
            self._table.object = compare_table_html([], [])
            return
        self.loading = True
        self._message.object = f"Reading {len(ids)} runs…"
        try:
            answers = await asyncio.gather(*(self._one(run_id) for run_id in ids))
        except GatewayError as exc:
            self._message.object = f"Cannot read the runs: {exc}"
            return
        finally:
            self.loading = False
        self._runs = [run for run, _ in answers]
        self._rows = compare_nodes([metrics for _, metrics in answers])
        differing = sum(1 for r in self._rows if r.differs)
        workflows = sorted({str(r.get("workflowKey") or r.get("workflowName") or "") for r in self._runs})
        with pn.io.hold():
            self._table.object = compare_table_html(self._runs, self._rows)
            self._message.object = (f"{len(self._rows)} tasks · {differing} differ · workflow "
                                    f"{', '.join(workflows)} · highlighted cells differ between the runs")
            keys = [r.key for r in self._rows]
            self._nodes.options = keys
            pick = self.node if self.node in keys else next((r.key for r in self._rows if r.differs), keys[0] if keys else "")
            self._nodes.value = pick
        if pick == self.node:
            await self.load_diff()

    async def load_diff(self) -> None:
        """Diff the picked task's output between the first run and each other one."""
        row = next((r for r in self._rows if r.key == self.node), None)
        ids = [str(r.get("runId")) for r in self._runs]
        if row is None or len(ids) < 2:
            self._diff.object = ""
            return
        outputs: list[dict[str, Any] | None] = []
        for run_id in ids:
            try:
                answer = await self.hub.read("getNodeOutput", {"runId": run_id, "nodeId": row.node_id,
                                                               "iteration": row.iteration}, max_age=2.0)
                outputs.append(answer if isinstance(answer, dict) else None)
            except GatewayError as exc:
                outputs.append({"row": {"(no output)": str(exc)}})
        parts = []
        for run_id, output in zip(ids[1:], outputs[1:], strict=True):
            diff = output_diff(outputs[0], output, f"{ids[0]} {row.key}", f"{run_id} {row.key}")
            parts.append(diff or f"{row.key}: same output in {ids[0]} and {run_id}")
        self._diff.object = "\n\n".join(parts)

    # ------------------------------------------------------------------ page

    def bind_location(self) -> None:
        """Sync ``?compare=`` with the page URL (served sessions only)."""
        if pn.state.location is not None:
            pn.state.location.sync(self, {"compare": "compare"})

    def close(self) -> None:
        for task in (self._task, self._diff_task):
            if task is not None:
                task.cancel()

    def __panel__(self) -> pn.viewable.Viewable:
        return pn.Column(
            pn.Row(self._back, pn.pane.HTML("<h2>Run comparison</h2>", margin=(0, 10))),
            self._message,
            self._table,
            pn.pane.HTML("<h3>Output diff</h3>", margin=(0, 10)),
            self._nodes,
            self._diff,
            sizing_mode="stretch_width",
            css_classes=["sd-compare-page"],
        )

# mypy: allow-untyped-calls
"""NodeDetail: everything about the selected node: props, task, output, diff and scores.

Outputs, diffs and reasons are whatever an agent or a tool wrote: the fixtures contain
``<script>`` in an output on purpose. All of it is shown as text: the output row in a
Tabulator with ``plaintext`` formatters, props as pretty JSON in a ``Str`` pane, the diff
as HTML built line by line with :func:`html.escape`. Pending and failed outputs are
shown as such (not as an empty table), and a missing diff says why (runs outside a jj
workspace have none). The diff is drawn by :mod:`dashboard.views.diff` (every shape the
Gateway answers). A running task's last ``task.heartbeat`` shows under its facts, on its own
pane: heartbeats arrive every few seconds and must not redraw the tabs.
"""

from __future__ import annotations

import html
import json
import time
from collections.abc import Mapping
from typing import Any

import pandas as pd
import panel as pn
import param

from inspector.vocabulary import OutputStatus

from ..format import format_ago, format_value, node_icon, state_colour, state_label
from .agent import AgentView
from .base import StoreView
from .diff import diff_html
from .widgets import TextPane, plaintext, stylesheet

__all__ = ["NodeDetail", "diff_html", "heartbeat_html", "output_frame", "task_html", "title_html"]

_TASK_KEYS = ("nodeId", "kind", "label", "iteration", "state", "attempt", "maxAttempts", "outputTableName")


def title_html(node: Any) -> str:
    if node is None:
        return '<div class="sd-node-title sd-muted">Select a node in the tree.</div>'
    state = node.state
    pill = (
        f'<span class="sd-state" style="background:{state_colour(state)}">{html.escape(state_label(state))}</span>'
        if state is not None
        else ""
    )
    return (
        f'<div class="sd-node-title" data-node-id="{node.id}">{node_icon(node.type)} '
        f"<span>{html.escape(node.label)}</span>"
        f'<span class="sd-muted">{html.escape(node.type)}</span>{pill}</div>'
    )


def _agent_text(task: Mapping[str, Any]) -> str | None:
    ran = task.get("agentRan")
    summary = task.get("agentSummary")
    for source in (ran, summary):
        if isinstance(source, Mapping):
            bits = [str(source[k]) for k in ("label", "agentId", "engine", "model") if isinstance(source.get(k), str)]
            if bits:
                return " · ".join(dict.fromkeys(bits))
    agent = task.get("agent")
    return agent if isinstance(agent, str) else None


def task_html(task: Mapping[str, Any] | None) -> str:
    """Key facts of a task as an escaped definition list."""
    if not task:
        return '<div class="sd-muted">Not a task: a structural node (no output, diff or scores).</div>'
    rows: list[tuple[str, str]] = []
    for key in _TASK_KEYS:
        if key in task and task[key] is not None:
            rows.append((key, format_value(task[key])))
    if "attempt" in task or "maxAttempts" in task:
        most = task.get("maxAttempts")
        rows.append(("attempts", f"{task.get('attempt', '–')}" + (f" of {most}" if most is not None else "")))
    agent = _agent_text(task)
    if agent:
        rows.append(("agent", agent))
    prompt = task.get("prompt")
    if isinstance(prompt, str) and prompt:
        rows.append(("prompt", prompt[:4000]))
    body = "".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(v)}</dd>" for k, v in rows)
    return f'<dl class="sd-kv">{body}</dl>'


def heartbeat_html(node: Any, beats: Mapping[tuple[str, int], float], now: float | None = None) -> str:
    """The selected task's last ``task.heartbeat`` (``data-testid="task-heartbeat"``), or ""."""
    if node is None or node.task is None:
        return ""
    at = beats.get((node.node_id or "", node.iteration or 0))
    if at is None:
        return ""
    clock = time.strftime("%H:%M:%S", time.localtime(at))
    return (f'<div class="sd-muted" data-testid="task-heartbeat" data-at="{at:.3f}">'
            f"last heartbeat {html.escape(format_ago(at, now))} ({clock})</div>")


def output_frame(output: Mapping[str, Any] | None) -> pd.DataFrame:
    """The output row as (field, type, value) rows, schema order first, values as text."""
    columns = ["field", "type", "value"]
    if not output or not isinstance(output.get("row"), Mapping):
        return pd.DataFrame(columns=columns)
    row: Mapping[str, Any] = output["row"]
    schema = output.get("schema") if isinstance(output.get("schema"), Mapping) else {}
    fields = [f for f in (schema or {}).get("fields", []) if isinstance(f, Mapping) and isinstance(f.get("name"), str)]
    records = []
    seen = set()
    for f in fields:
        name = f["name"]
        seen.add(name)
        kind = str(f.get("type", ""))
        if f.get("optional") or f.get("nullable"):
            kind += "?"
        records.append({"field": name, "type": kind, "value": format_value(row.get(name), 20_000) if name in row else "—"})
    for name, value in row.items():
        if name not in seen:
            records.append({"field": str(name), "type": "", "value": format_value(value, 20_000)})
    return pd.DataFrame.from_records(records, columns=columns)


def output_message(output: Mapping[str, Any] | None, error: str | None, loading: bool, is_task: bool) -> tuple[str, str]:
    """(css class, text) to show above the output table."""
    if not is_task:
        return "sd-muted", "Only tasks have outputs."
    if error:
        return "sd-failed", error
    if output is None:
        return "sd-muted", "Loading…" if loading else "No output."
    status = output.get("status")
    if status == OutputStatus.PENDING:
        return "sd-muted", "Pending: the task has not produced its output yet."
    if status == OutputStatus.FAILED:
        err = output.get("error")
        message = err.get("message") if isinstance(err, Mapping) else None
        attempt = err.get("attempt") if isinstance(err, Mapping) else None
        text = "Failed" + (f" (attempt {attempt})" if attempt is not None else "")
        return "sd-failed", f"{text}: {message}" if message else text
    if output.get("partial"):
        return "sd-muted", "Partial output (the task is still writing)."
    return "", f"Output {status or ''}".strip()


def node_scores_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    columns = ["scorer", "iteration", "attempt", "score", "reason", "source"]
    records = [
        {
            "scorer": str(r.get("scorerName") or r.get("scorerId") or ""),
            "iteration": r.get("iteration"),
            "attempt": r.get("attempt"),
            "score": r.get("score"),
            "reason": format_value(r.get("reason"), 2000) if r.get("reason") is not None else "",
            "source": str(r.get("source") or ""),
        }
        for r in rows
    ]
    return pd.DataFrame.from_records(records, columns=columns)


def _text_table(frame: pd.DataFrame, text_columns: tuple[str, ...], max_height: int) -> pn.widgets.Tabulator:
    """A read-only table whose ``text_columns`` (Gateway text) are shown as plain text."""
    return pn.widgets.Tabulator(frame, show_index=False, disabled=True, formatters=plaintext(*text_columns),
                                layout="fit_data_stretch", sizing_mode="stretch_width", max_height=max_height)


#: The tabs of :class:`NodeDetail`, in order, by the name ``?tab=`` gives them.
DETAIL_TABS = ("task", "output", "diff", "scores", "agent")
#: The tabs whose tables :meth:`NodeDetail._build_tables` builds when one is first opened.
_TABLE_TABS = ("output", "scores")


class NodeDetail(StoreView):
    """Details of ``store.selected_node`` (see the module docstring); the Agent tab is
    :class:`~dashboard.views.agent.AgentView`."""

    tab: param.Selector[str] = param.Selector(default="task", objects=list(DETAIL_TABS), doc="""
        The tab shown (``?tab=``).""")

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        css = [stylesheet()]
        self._title = pn.pane.HTML(title_html(None), stylesheets=css, sizing_mode="stretch_width", margin=(5, 10))
        self._task = pn.pane.HTML("", stylesheets=css, sizing_mode="stretch_width")
        self._beat = pn.pane.HTML("", stylesheets=css, sizing_mode="stretch_width", margin=(0, 10))
        self._props = TextPane("", sizing_mode="stretch_width", styles={"font-size": "0.85em"})
        self._out_msg = pn.pane.HTML("", stylesheets=css, sizing_mode="stretch_width")
        self._diff = pn.pane.HTML("", stylesheets=css, sizing_mode="stretch_width")
        self.agent = AgentView(store=self.store)
        #: The Output and Scores tables, built when either tab is first opened
        #: (:meth:`_build_tables`): two Tabulators were a sixth of a run page's session build,
        #: for tabs most pages never open.
        self._out_table: pn.widgets.Tabulator | None = None
        self._scores: pn.widgets.Tabulator | None = None
        self._output_tab = pn.Column(self._out_msg, sizing_mode="stretch_width")
        self._scores_tab = pn.Column(sizing_mode="stretch_width")
        self._tabs = pn.Tabs(
            ("Task", pn.Column(self._task, self._beat, pn.pane.HTML("<b>Props</b>"), self._props,
                               sizing_mode="stretch_width")),
            ("Output", self._output_tab),
            ("Diff", self._diff),
            ("Scores", self._scores_tab),
            ("Agent", self.agent),
            # Only the open tab is in the page: the other four (two tables, the agent view)
            # were over half of a run page's first document, for a pane that shows nothing
            # until a task is selected.
            dynamic=True,
            sizing_mode="stretch_width",
            active=DETAIL_TABS.index(self.tab),
        )
        self._tabs.param.watch(lambda e: setattr(self, "tab", DETAIL_TABS[e.new]), "active")
        self.param.watch(self._on_tab, "tab")
        self._layout = pn.Column(self._title, self._tabs, sizing_mode="stretch_width")
        self.store.param.watch(
            self._update,
            ["selected_node", "node_output", "node_diff", "node_scores", "node_error", "node_diff_error", "node_loading"],
        )
        self.store.param.watch(self._on_tree, "tree_version")
        self.store.param.watch(self._on_heartbeat, ["task_heartbeats", "selected_node"])
        self._last_task: Any = None
        self._update()
        if self.tab in _TABLE_TABS:
            self._build_tables()

    def _on_tab(self, event: param.parameterized.Event) -> None:
        if event.new in _TABLE_TABS:
            self._build_tables()
        self._tabs.active = DETAIL_TABS.index(event.new)

    def _build_tables(self) -> None:
        if self._out_table is not None:
            return
        self._out_table = _text_table(output_frame(self.store.node_output), ("field", "type", "value"), 420)
        self._scores = _text_table(node_scores_frame(self.store.node_scores), ("scorer", "reason", "source"), 300)
        with pn.io.hold():
            self._output_tab.append(self._out_table)
            self._scores_tab.append(self._scores)

    def _on_heartbeat(self, *events: Any) -> None:
        text = heartbeat_html(self.store.selected(), self.store.task_heartbeats)
        if text != self._beat.object:
            self._beat.object = text

    def _on_tree(self, event: Any) -> None:
        node = self.store.selected()
        if node is not None and node.task != self._last_task:
            self._update()

    def _update(self, *events: Any) -> None:
        s = self.store
        node = s.selected()
        self._last_task = node.task if node is not None else None
        is_task = node is not None and node.task is not None
        with pn.io.hold():
            self._title.object = title_html(node)
            self._task.object = task_html(node.task) if node is not None else ""
            self._props.object = json.dumps(dict(node.props), indent=2, ensure_ascii=False, default=str) if node else ""
            cls, text = output_message(s.node_output, s.node_error, s.node_loading, is_task)
            self._out_msg.object = f'<div class="sd-message {cls}">{html.escape(text)}</div>' if node else ""
            self._diff.object = diff_html(s.node_diff, s.node_diff_error) if is_task else ""
            if self._out_table is not None and self._scores is not None:
                self._out_table.value = output_frame(s.node_output)
                self._scores.value = node_scores_frame(s.node_scores)

    def __panel__(self) -> pn.viewable.Viewable:
        return self._layout

# mypy: allow-untyped-calls
"""RunHeader: what run this is, how far along, and, if it failed, why, in one glance.

Workflow name, run id, a status pill, elapsed time, a progress bar split by task state,
counts, the store's notice ("Rewound from frame 18 to 3") and a failure banner with the
run's error text. An element ``data-testid="task-summary"`` carries ``data-total``,
``data-finished``, ``data-running`` (``in-progress``) and ``data-failed`` from
``tree.state_counts()``, and ``data-retries``: the retries the tree's task ``attempt``
numbers count (attempt 3 of a task is 2 retries). Attempt numbers, not counted
``node.started`` events: Smithers' live stream re-emits those for tasks that ran once.
A ``run.error`` (the Gateway stopped the run's event stream) shows as a banner
(``data-testid="stream-error"``) as soon as it arrives. Elapsed time ticks once a second
only while the run is active.
"""

from __future__ import annotations

import html
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from inspector.vocabulary import ACTIVE_RUN_STATUSES, RunEventName, RunStatus, TaskState

from ..format import (
    STATE_COLOURS,
    TaskSummary,
    format_duration,
    run_elapsed,
    run_error_text,
    run_status_colour,
    task_summary,
)
from .base import TickingHtml

if TYPE_CHECKING:
    from inspector.tree import DevToolsTree

    from ..store import RunStore

__all__ = ["RunHeader", "header_html", "task_retries"]


def task_retries(tree: DevToolsTree | None) -> int:
    """Retries of the run's tasks from their attempt numbers (:attr:`DevToolsTree.retries`)."""
    return 0 if tree is None else tree.retries


def run_status(run: Mapping[str, Any], settled: bool) -> str:
    status = run.get("status")
    if isinstance(status, str) and status:
        return status
    state = run.get("runState")
    if isinstance(state, Mapping) and isinstance(state.get("state"), str):
        return str(state["state"])
    return RunStatus.FINISHED.value if settled else RunStatus.UNKNOWN.value


def _bar(summary: TaskSummary) -> str:
    if not summary.total:
        return '<div class="sd-progress" title="no tasks yet"></div>'
    parts = [
        ("finished", summary.finished + summary.skipped, STATE_COLOURS[TaskState.FINISHED]),
        ("failed", summary.failed, STATE_COLOURS[TaskState.FAILED]),
        ("running", summary.running + summary.retrying, STATE_COLOURS[TaskState.IN_PROGRESS]),
        ("waiting", summary.waiting, STATE_COLOURS[TaskState.WAITING_APPROVAL]),
        ("cancelled", summary.cancelled, STATE_COLOURS[TaskState.CANCELLED]),
    ]
    spans = "".join(
        f'<span style="width:{100 * n / summary.total:.3f}%;background:{colour}" title="{n} {name}"></span>'
        for name, n, colour in parts
        if n
    )
    return f'<div class="sd-progress" role="progressbar" aria-valuemin="0" aria-valuemax="{summary.total}" aria-valuenow="{summary.done}">{spans}</div>'


def header_html(
    run: Mapping[str, Any],
    run_id: str | None,
    counts: Mapping[str, int],
    *,
    settled: bool = False,
    notice: str = "",
    run_error: str | None = None,
    failure: str | None = None,
    now: float | None = None,
    retries: int = 0,
    stream_error: str | None = None,
) -> str:
    """The header as HTML; every Gateway-supplied string is escaped."""
    esc = html.escape
    summary = task_summary(counts)
    workflow = run.get("workflowName") or run.get("workflowKey") or "…"
    status = run_status(run, settled)
    elapsed = run_elapsed(run, now)
    out = ['<div class="sd-header">', '<div class="sd-title">']
    out.append(f'<span class="sd-workflow">{esc(str(workflow))}</span>')
    out.append(
        f'<span class="sd-pill" data-run-status="{esc(status, quote=True)}" '
        f'style="background:{run_status_colour(status)}">{esc(status)}</span>'
    )
    out.append(f'<span class="sd-elapsed">elapsed {esc(format_duration(elapsed))}</span>')
    out.append(f'<span class="sd-runid" title="run id">{esc(run_id or "")}</span>')
    out.append("</div>")
    out.append(_bar(summary))
    out.append(
        f'<div class="sd-counts" data-testid="task-summary" data-total="{summary.total}" '
        f'data-finished="{summary.finished}" data-running="{summary.running}" '
        f'data-failed="{summary.failed}" data-retries="{retries}">'
        f"<span><b>{summary.done}</b> / {summary.total} done</span>"
        f"<span><b>{summary.running}</b> running</span>"
        f"<span><b>{summary.failed}</b> failed</span>"
        + (f"<span><b>{summary.waiting}</b> waiting</span>" if summary.waiting else "")
        + (f"<span><b>{summary.pending}</b> queued</span>" if summary.pending else "")
        + (f"<span><b>{summary.retrying}</b> retrying</span>" if summary.retrying else "")
        + (f"<span><b>{summary.skipped}</b> skipped</span>" if summary.skipped else "")
        + (f"<span><b>{summary.cancelled}</b> cancelled</span>" if summary.cancelled else "")
        + (f"<span><b>{retries}</b> {'retry' if retries == 1 else 'retries'}</span>" if retries else "")
        + "</div>"
    )
    if notice:
        out.append(f'<div class="sd-notice" role="status">{esc(notice)}</div>')
    if run_error:
        out.append(f'<div class="sd-banner" role="alert">{esc(run_error)}</div>')
    if stream_error:
        out.append(f'<div class="sd-banner" role="alert" data-testid="stream-error">{esc(stream_error)}</div>')
    if failure:
        out.append(f'<div class="sd-banner" role="alert" data-testid="failure-banner">{esc(failure)}</div>')
    out.append("</div>")
    return "".join(out)


def failure_text(store: RunStore) -> str | None:
    """Why the run failed: the run record's error, else the last failure event's message."""
    run = store.run
    status = run_status(run, store.settled)
    if status not in (RunStatus.FAILED, RunStatus.CANCELLED):
        return None
    text = run_error_text(run)
    if text:
        return text
    for record in reversed(store.events):
        if record.event in (RunEventName.RUN_COMPLETED, RunEventName.RUN_FAILED) and record.message:
            return str(record.message)
    for record in reversed(store.events):
        if record.event == RunEventName.NODE_FAILED and record.message:
            return f"{record.node_id}: {record.message}"
    return f"The run {status}."


class RunHeader(TickingHtml):
    """The run's title, status, progress and failure (see the module docstring)."""

    _redraw_on = ("run", "run_id", "tree_version", "notice", "run_error", "settled", "stream_error")

    def _render(self) -> str:
        s = self.store
        if not s.run_id:
            return '<div class="sd-header"><span class="sd-muted">No run selected.</span></div>'
        counts = s.tree.state_counts() if s.tree is not None else {}
        failure = failure_text(s)
        now = time.time()
        shared = s.shared
        retries = task_retries(s.tree)
        if shared is None:
            return header_html(s.run, s.run_id, counts, settled=s.settled, notice=s.notice,
                               run_error=s.run_error, failure=failure, now=now, retries=retries,
                               stream_error=s.stream_error)
        # Every session of the run renders the same header in the same tick: once for all.
        # The key holds everything the HTML depends on, the elapsed time as it is shown.
        run = s.run
        key = (id(run), s.run_id, tuple(sorted(counts.items())), s.settled, s.notice, s.run_error, failure,
               format_duration(run_elapsed(run, now)), retries, s.stream_error)
        return shared.memo(
            "header", key, run,
            lambda: header_html(run, s.run_id, counts, settled=s.settled, notice=s.notice,
                                run_error=s.run_error, failure=failure, now=now, retries=retries,
                                stream_error=s.stream_error),
        )

    def _wants_tick(self) -> bool:
        """Elapsed time moves by itself while the run is active."""
        s = self.store
        return bool(s.run_id) and run_status(s.run, s.settled) in ACTIVE_RUN_STATUSES and not s.run.get("finishedAtMs")

# mypy: allow-untyped-calls
"""ApprovalsInbox: every pending approval of every run, and every run waiting for a signal.

An operator should not have to open run after run to find the one a gate holds. The Gateway
answers ``listApprovals`` with the pending approvals of all its runs (run, workflow, node,
title, when it was requested); this view lists them, oldest first, with how long each has
waited, and for an **operator** an Approve and a Deny per row, each armed first and confirmed
with a button labelled Confirm whose question names the run and the node. Runs parked at a
``<Signal>`` (status ``waiting-event``) are listed below with a :class:`SignalForm`.

A **viewer** sees the same lists without any control (issue 12: viewers still see pending
approvals). Whatever the page shows, the decision goes through
:func:`dashboard.operate.perform`, which checks the session's role again on the server.

Like the run list, this is a read the Gateway does not push: it is re-read every
``refresh_seconds`` while shown (:meth:`ApprovalsInbox.start` / ``stop``: ``listApprovals``
walks every run of the Gateway, so a hidden inbox does not ask) and right after a decision,
through the hub's shared reads (``hub.read``), so many sessions showing the inbox cost the Gateway one read per interval.
Rows are kept by (run, node, iteration): a poll that finds the same approvals only updates
their "waited" text.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import panel as pn
import param
from param.parameters import NoNone

from inspector.errors import GatewayError
from inspector.vocabulary import RunStatus

from ..config import DashboardConfig
from ..format import format_duration
from ..hub import GatewayHub
from ..operate import perform
from ..roles import may_call
from .confirm import ConfirmAction
from .signal_form import SignalForm
from .widgets import TextPane

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping

__all__ = ["ApprovalsInbox", "PendingApproval", "WaitingSignal", "pending_approvals", "waiting_signal"]

log = logging.getLogger(__name__)

#: How many rows of each list are shown at most (the oldest first).
MAX_ROWS = 100


@dataclass(frozen=True, slots=True)
class PendingApproval:
    """One row of ``listApprovals``."""

    run_id: str
    workflow: str
    node_id: str
    iteration: int
    title: str
    summary: str
    requested_at_ms: float | None

    @property
    def key(self) -> tuple[str, str, int]:
        return (self.run_id, self.node_id, self.iteration)

    def waited(self, now: float) -> str:
        """How long it has waited, e.g. ``3 min 05 s`` (``–`` when the Gateway did not say)."""
        if self.requested_at_ms is None:
            return "–"
        return format_duration(now - self.requested_at_ms / 1000)


def pending_approvals(rows: Iterable[Any]) -> list[PendingApproval]:
    """``listApprovals``' answer as rows, oldest request first (rows without a run or node dropped)."""
    out: list[PendingApproval] = []
    for row in rows:
        if not isinstance(row, dict):
            continue
        run_id, node_id = row.get("runId"), row.get("nodeId")
        if not isinstance(run_id, str) or not isinstance(node_id, str):
            continue
        iteration = row.get("iteration")
        requested = row.get("requestedAtMs")
        out.append(PendingApproval(
            run_id=run_id,
            workflow=str(row.get("workflowKey") or row.get("workflowName") or ""),
            node_id=node_id,
            iteration=iteration if isinstance(iteration, int) else 0,
            title=str(row.get("requestTitle") or node_id),
            summary=str(row.get("requestSummary") or ""),
            requested_at_ms=float(requested) if isinstance(requested, int | float) else None,
        ))
    out.sort(key=lambda a: (a.requested_at_ms is None, a.requested_at_ms or 0.0))
    return out


@dataclass(frozen=True, slots=True)
class WaitingSignal:
    """A run parked at a wait-for-event node (``getRun``'s ``runState.blocked``)."""

    run_id: str
    workflow: str
    node_id: str | None
    signal_name: str


def waiting_signal(run: Mapping[str, Any]) -> WaitingSignal | None:
    """What a ``waiting-event`` run waits for, from its ``getRun`` record (``None``: not waiting)."""
    state = run.get("runState")
    blocked = state.get("blocked") if isinstance(state, dict) else None
    run_id = run.get("runId")
    if not isinstance(blocked, dict) or blocked.get("kind") != "event" or not isinstance(run_id, str):
        return None
    node = blocked.get("nodeId")
    name = blocked.get("correlationKey") or node
    return WaitingSignal(
        run_id=run_id,
        workflow=str(run.get("workflowKey") or run.get("workflowName") or ""),
        node_id=node if isinstance(node, str) else None,
        signal_name=str(name or ""),
    )


class _Row:
    """The widgets of one listed approval."""

    def __init__(self, inbox: ApprovalsInbox, approval: PendingApproval) -> None:
        self.approval = approval
        head = f"{approval.title} · node {approval.node_id}"
        if approval.iteration:
            head += f" (iteration {approval.iteration})"
        self.text = TextPane(f"{head}\nrun {approval.run_id} · workflow {approval.workflow or '?'}",
                             margin=(4, 8), sizing_mode="stretch_width")
        self.waited = TextPane("", margin=(4, 8), width=150)
        open_button = pn.widgets.Button(label="Open run", width=100, margin=(4, 4))
        open_button.on_click(lambda e: inbox.open(approval.run_id))
        self.decisions: tuple[ConfirmAction, ConfirmAction] | None = None
        controls: list[Any] = [open_button]
        # An operator's control, unless the token is known to lack its scope (a FORBIDDEN seen).
        if inbox.can_act and may_call(inbox.hub, "submitApproval"):
            where = f"node {approval.node_id} ({approval.title}) of run {approval.run_id}"
            self.decisions = (
                ConfirmAction(functools.partial(inbox.decide, approval, True), label="Approve",
                              ask=lambda: f"Approve {where}?"),
                ConfirmAction(functools.partial(inbox.decide, approval, False), label="Deny",
                              ask=lambda: f"Deny {where}?"),
            )
            controls.extend(self.decisions)
        self.view = pn.Column(
            pn.Row(self.text, self.waited, margin=0, sizing_mode="stretch_width"),
            pn.Row(*controls, margin=0, sizing_mode="stretch_width"),
            css_classes=["sd-inbox-row"],
            styles={"border-bottom": "1px solid #ddd"},
            margin=(2, 0),
            sizing_mode="stretch_width",
        )

    def tick(self, now: float) -> None:
        text = f"waiting {self.approval.waited(now)}"
        if self.waited.object != text:
            self.waited.object = text


class _SignalRow:
    """The widgets of one run waiting for a signal."""

    def __init__(self, inbox: ApprovalsInbox, wait: WaitingSignal) -> None:
        self.wait = wait
        node = f"node {wait.node_id} " if wait.node_id else ""
        text = TextPane(f"{node}waits for signal {wait.signal_name!r}\nrun {wait.run_id} · workflow {wait.workflow or '?'}",
                        margin=(4, 8), sizing_mode="stretch_width")
        open_button = pn.widgets.Button(label="Open run", width=100, margin=(4, 4))
        open_button.on_click(lambda e: inbox.open(wait.run_id))
        self.form: SignalForm | None = None
        parts: list[Any] = [pn.Row(text, open_button, margin=0, sizing_mode="stretch_width")]
        if inbox.can_act and may_call(inbox.hub, "submitSignal"):
            self.form = SignalForm(functools.partial(inbox.signal, wait), signal_name=wait.signal_name,
                                   run_id=wait.run_id, node_id=wait.node_id)
            parts.append(self.form)
        self.view = pn.Column(*parts, css_classes=["sd-inbox-signal"], styles={"border-bottom": "1px solid #ddd"},
                              margin=(2, 0), sizing_mode="stretch_width")


class ApprovalsInbox(pn.viewable.Viewer):
    """Pending approvals and signal waits across runs (see the module docstring)."""

    hub = param.ClassSelector(class_=GatewayHub, allow_None=NoNone, doc="The process's Gateway hub.")
    config = param.ClassSelector(class_=DashboardConfig, allow_None=NoNone, doc="The server's configuration.")
    can_act = param.Boolean(default=False, doc="""
        Show Approve / Deny / Send signal (the session is an operator). The server checks again
        on every action.""")
    on_open = param.Callable(default=None, doc="Called with a run id to open that run.")
    refresh_seconds = param.Number(default=3.0, bounds=(1, None), doc="Re-read interval.")
    approvals = param.List(default=[], item_type=PendingApproval, doc="The pending approvals, oldest first.")
    signals = param.List(default=[], item_type=WaitingSignal, doc="The runs waiting for a signal.")
    message = param.String(default="", doc="The outcome of the last decision (plain text).")
    error = param.String(default=None, allow_None=True, doc="Why the last read failed.")

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self._rows: dict[tuple[str, str, int], _Row] = {}
        self._signal_rows: dict[tuple[str, str], _SignalRow] = {}
        self._approvals_box = pn.Column(margin=0, sizing_mode="stretch_width")
        self._signals_box = pn.Column(margin=0, sizing_mode="stretch_width")
        self._summary = TextPane("Reading pending approvals…", margin=(4, 8))
        self._signals_summary = TextPane("", margin=(4, 8))
        self._message = TextPane("", margin=(4, 8), sizing_mode="stretch_width")
        self.param.watch(lambda e: setattr(self._message, "object", e.new), "message")
        self._task: asyncio.Task[None] | None = None
        self._callback: Any = None

    def start(self) -> None:
        """Read now and every ``refresh_seconds`` until :meth:`stop` (while the inbox is shown)."""
        self.refresh()
        if self._callback is not None:
            return
        try:
            self._callback = pn.state.add_periodic_callback(self.refresh, period=int(self.refresh_seconds * 1000))
        except Exception:
            self._callback = None

    # -- reading ------------------------------------------------------------------

    def refresh(self) -> None:
        """Re-read in the background (on the loop); a read under way is not doubled."""
        if self._task is not None and not self._task.done():
            return
        try:
            self._task = asyncio.get_running_loop().create_task(self.read())
        except RuntimeError:
            self._task = None

    async def read(self, max_age: float = 2.0) -> None:
        """Read the pending approvals and the runs waiting for a signal."""
        try:
            approvals = await self.hub.read("listApprovals", {}, max_age=max_age)
            waiting = await self.hub.read(
                "listRuns", {"filter": {"status": RunStatus.WAITING_EVENT.value, "limit": MAX_ROWS}}, max_age=max_age
            )
            records = await asyncio.gather(*(
                self.hub.read("getRun", {"runId": r["runId"]}, max_age=max_age)
                for r in waiting if isinstance(r, dict) and isinstance(r.get("runId"), str)
            )) if isinstance(waiting, list) else []
        except GatewayError as exc:
            self.error = str(exc)
            self._render()
            return
        signals = [w for w in (waiting_signal(r) for r in records if isinstance(r, dict)) if w is not None]
        self.param.update(
            error=None,
            approvals=pending_approvals(approvals if isinstance(approvals, list) else []),
            signals=signals,
        )
        # Drawn after every read, changed or not: the first empty answer replaces
        # "Reading…", and the "waited" times move on.
        self._render()

    # -- acting -------------------------------------------------------------------

    def open(self, run_id: str) -> None:
        if self.on_open is not None:
            callback: Callable[[str], None] = self.on_open
            callback(run_id)

    async def decide(self, approval: PendingApproval, approved: bool) -> bool:
        """Approve or deny ``approval`` through :func:`perform`; re-read the inbox after."""
        verdict = "Approved" if approved else "Denied"
        outcome = await perform(
            self.hub, self.config,
            action="approve" if approved else "deny",
            method="submitApproval",
            params={"runId": approval.run_id, "nodeId": approval.node_id, "iteration": approval.iteration,
                    "decision": {"approved": approved}},
            run_id=approval.run_id, node_id=approval.node_id, iteration=approval.iteration,
            success=f"{verdict}: node {approval.node_id} of run {approval.run_id}.",
        )
        self.message = outcome.message
        await self.read(max_age=0.0)
        return outcome.ok

    async def signal(self, wait: WaitingSignal, name: str, payload: dict[str, Any]) -> bool:
        """Send ``name`` with ``payload`` to ``wait``'s run through :func:`perform`."""
        outcome = await perform(
            self.hub, self.config,
            action="signal", method="submitSignal",
            params={"runId": wait.run_id, "signalName": name, "data": payload},
            run_id=wait.run_id, node_id=wait.node_id,
            success=f"Signal {name!r} sent to run {wait.run_id}.",
        )
        self.message = outcome.message
        await self.read(max_age=0.0)
        return outcome.ok

    # -- drawing ------------------------------------------------------------------

    def rows(self) -> list[_Row]:
        """The approval rows on the page, in order."""
        return [self._rows[a.key] for a in self.approvals[:MAX_ROWS] if a.key in self._rows]

    def signal_rows(self) -> list[_SignalRow]:
        return [self._signal_rows[(w.run_id, w.signal_name)] for w in self.signals[:MAX_ROWS]
                if (w.run_id, w.signal_name) in self._signal_rows]

    def _render(self, *events: Any) -> None:
        now = time.time()
        shown = self.approvals[:MAX_ROWS]
        keys = [a.key for a in shown]
        for key in set(self._rows) - set(keys):
            del self._rows[key]
        for approval in shown:
            if approval.key not in self._rows:
                self._rows[approval.key] = _Row(self, approval)
        waits = self.signals[:MAX_ROWS]
        wait_keys = [(w.run_id, w.signal_name) for w in waits]
        for gone in set(self._signal_rows) - set(wait_keys):
            del self._signal_rows[gone]
        for wait in waits:
            if (wait.run_id, wait.signal_name) not in self._signal_rows:
                self._signal_rows[(wait.run_id, wait.signal_name)] = _SignalRow(self, wait)
        with pn.io.hold():
            for row in self._rows.values():
                row.tick(now)
            views = [self._rows[k].view for k in keys]
            if list(self._approvals_box.objects) != views:
                self._approvals_box.objects = views
            signal_views = [self._signal_rows[k].view for k in wait_keys]
            if list(self._signals_box.objects) != signal_views:
                self._signals_box.objects = signal_views
            if self.error is not None:
                self._summary.object = f"Cannot read pending approvals: {self.error}"
            else:
                count = len(self.approvals)
                more = f" (the oldest {MAX_ROWS} shown)" if count > MAX_ROWS else ""
                self._summary.object = (f"{count} pending approval{'s' if count != 1 else ''}{more}"
                                        if count else "No approval is pending.")
                self._signals_summary.object = (f"{len(self.signals)} run{'s' if len(self.signals) != 1 else ''} "
                                                "waiting for a signal" if self.signals else "No run waits for a signal.")

    def stop(self) -> None:
        if self._callback is not None:
            self._callback.stop()
            self._callback = None

    def __panel__(self) -> pn.viewable.Viewable:
        return pn.Column(
            pn.pane.HTML("<h3>Approvals inbox</h3>", margin=(0, 8)),
            self._summary,
            self._message,
            self._approvals_box,
            pn.pane.HTML("<h3>Waiting for a signal</h3>", margin=(0, 8)),
            self._signals_summary,
            self._signals_box,
            css_classes=["sd-inbox"],
            sizing_mode="stretch_width",
        )

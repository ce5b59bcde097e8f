# mypy: allow-untyped-calls
"""RunActions: cancel, rewind and approve/deny, for operators, each armed then confirmed.

What is on the page depends on three things, and the server checks the first again when an
action fires (:func:`dashboard.operate.perform`), so a control that reached a page it should
not have could still do nothing:

- the server's ``--actions`` (off: a read-only dashboard, nothing that changes a run exists);
- the session's role (:mod:`dashboard.roles`): a viewer sees the run's pending approvals,
  read-only, and no control;
- the Gateway token's scopes (its ``hello``): no Approve without ``approval:submit``, no
  Rewind without ``run:admin``, no Cancel without ``run:write``.

Every action is armed first and needs a second, explicit confirmation that says what will
happen: which run, which frame, whether the run is live. A rewind goes to the frame picked in
the frame scrubber (or typed); ``force`` (interrupting a live run's owner process) is sent only
when the operator ticks it, and the tick does not outlive the rewind it was for. Refusals come
back in plain words, and who rewound the run (the ``caller`` of ``run.time_travel_jumped``) is
shown to everyone.
"""

from __future__ import annotations

import asyncio
import functools
import html
from typing import TYPE_CHECKING, Any

import panel as pn
import param

from inspector.errors import GatewayError
from inspector.vocabulary import APPROVAL_EVENT_PREFIX, is_terminal_run_status

from ..config import DashboardConfig
from ..operate import Outcome, perform, refusal_text
from ..roles import Role, may_call, session_role, token_scopes
from ..store import RunStore
from .base import StoreView
from .widgets import TextPane, stylesheet

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

__all__ = ["Action", "RunActions", "jump_notice"]


def jump_notice(jump: dict[str, Any] | None) -> str:
    """"Rewound from frame 18 to 3 by user:op" for the store's ``last_jump`` ("" without one)."""
    if not jump:
        return ""
    caller = jump.get("caller")
    who = f" by {caller}" if isinstance(caller, str) and caller else " (the Gateway did not say by whom)"
    return f"Rewound from frame {jump.get('from')} to {jump.get('to')}{who}."


class Action(pn.viewable.Viewer):
    """One button that arms, then a confirm/keep pair that fires or disarms.

    ``describe``, when given, writes the question at the moment of arming, so it names what
    the confirmation will really do (the frame, whether the run is live)."""

    label = param.String(doc="What the button says, e.g. 'Cancel run'.")
    confirm_text = param.String(doc="The question shown once armed.")
    armed = param.Boolean(default=False, doc="Waiting for the confirmation.")
    busy = param.Boolean(default=False, doc="The request is on its way.")

    def __init__(self, run: Callable[[], Awaitable[Any]], describe: Callable[[], str] | None = None,
                 **params: Any) -> None:
        super().__init__(**params)
        self._run = run
        self._describe = describe
        self._arm = pn.widgets.Button(label=self.label, color="warning", width=170, margin=(4, 4))
        self._yes = pn.widgets.Button(label="Confirm", color="danger", width=90, margin=(4, 4), visible=False)
        self._no = pn.widgets.Button(label="Keep", width=70, margin=(4, 4), visible=False)
        self._question = TextPane("", margin=(8, 4), visible=False)
        self._arm.on_click(self._set_armed)
        self._no.on_click(self._disarm)
        self._yes.on_click(self._fire)
        self.param.watch(self._show, ["armed", "busy", "confirm_text"])

    def _set_armed(self, event: Any) -> None:
        if self._describe is not None:
            self.confirm_text = self._describe()
        self.armed = True

    def _disarm(self, event: Any = None) -> None:
        self.armed = False

    def _show(self, *events: Any) -> None:
        with pn.io.hold():
            self._arm.visible = not self.armed
            self._arm.disabled = self.busy
            for widget in (self._yes, self._no, self._question):
                widget.visible = self.armed
            self._question.object = self.confirm_text

    def _fire(self, event: Any) -> None:
        if not self.armed:
            return
        self.armed = False
        self.busy = True
        asyncio.ensure_future(self._call())

    async def _call(self) -> None:
        try:
            await self._run()
        finally:
            self.busy = False

    def __panel__(self) -> pn.viewable.Viewable:
        return pn.Row(self._arm, self._question, self._yes, self._no, margin=0)


class RunActions(StoreView):
    """Write controls for the open run (see the module docstring)."""

    enabled = param.Boolean(default=False, doc="Only True when the server was started with actions on.")
    role: param.Selector[Role | None] = param.Selector(default=None, objects=[None, *Role], allow_None=True, doc="""
        The session's role; ``None``: decided from the session (``roles.session_role``).
        Only what is shown depends on it: every action is checked again when it fires.""")
    config = param.ClassSelector(class_=DashboardConfig, default=None, allow_None=True, doc="""
        The server's configuration (operators, audit log); ``None``: ``DashboardConfig(actions_enabled=enabled)``.""")
    message = param.String(default="", doc="The outcome of the last action, as plain text.")
    approvals = param.List(default=[], doc="Pending approvals of the run (listApprovals).")
    rewind_frame = param.Integer(default=0, bounds=(0, None), doc="The frame a rewind goes back to (the scrubber's pick).")
    force = param.Boolean(default=False, doc="The operator ticked 'interrupt the live run' for the next rewind.")
    scopes = param.Parameter(default=None, doc="The token's scopes from the Gateway's hello (``None``: not known).")

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        if self.config is None:
            self.config = DashboardConfig(actions_enabled=self.enabled)
        if self.role is None:
            self.role = session_role(self.config) if self.enabled else Role.VIEWER
        self.last_outcome: Outcome | None = None
        #: What the armed rewind will send (fixed when it was armed, so the question is the truth).
        self._armed_rewind: dict[str, Any] | None = None
        self._cancel = Action(self._cancel_run, self._cancel_question, label="Cancel run", confirm_text="Cancel this run?")
        self._rewind = Action(self._rewind_run, self._rewind_question, label="Rewind…", confirm_text="Rewind the run?")
        self._frame = pn.widgets.IntInput(value=self.rewind_frame, start=0, width=90, margin=(4, 4))
        self._frame.param.watch(lambda e: setattr(self, "rewind_frame", max(0, int(e.new or 0))), "value")
        self._force = pn.widgets.Checkbox(label="interrupt the live run (force)", value=False, margin=(10, 8))
        self._force.param.watch(lambda e: setattr(self, "force", bool(e.new)), "value")
        self.param.watch(self._on_rewind_choice, ["rewind_frame", "force"])
        self._cancel_box = pn.Row(self._cancel, margin=0)
        self._rewind_box = pn.Row(pn.pane.Str("to frame", margin=(8, 4)), self._frame, self._rewind, self._force, margin=0)
        self._controls = pn.Row(margin=0)
        self._approvals = pn.Column(margin=0)
        #: The (approve, deny) controls per pending approval, in ``approvals`` order (operators only).
        self.approval_actions: list[tuple[Action, Action]] = []
        self._message = TextPane("", margin=(4, 8), sizing_mode="stretch_width")
        self._jump = TextPane("", margin=(4, 8), sizing_mode="stretch_width", visible=False)
        self.param.watch(lambda e: setattr(self._message, "object", e.new), "message")
        self.param.watch(self._render_approvals, "approvals")
        self.param.watch(self._show_controls, "scopes")
        self._show_controls()
        if self.store is not None:
            self.store.param.watch(self._on_run, "run_id")
            self.store.param.watch(self._on_event, "new_events")
            self.store.param.watch(self._on_jump, "last_jump")
            if self.operates:
                self._start(self.refresh_scopes())

    @property
    def operates(self) -> bool:
        """This session shows controls that change runs."""
        return self.enabled and self.role is Role.OPERATOR

    @property
    def run_store(self) -> RunStore:
        store = self.store
        assert isinstance(store, RunStore), "RunActions needs a store"
        return store

    def _hub(self) -> Any:
        hub = self.run_store.hub
        assert hub is not None and getattr(hub, "client", None) is not None, "RunActions needs a store attached to a hub"
        return hub

    @staticmethod
    def _start(coro: Awaitable[Any]) -> None:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            if asyncio.iscoroutine(coro):
                coro.close()
            return
        asyncio.ensure_future(coro)

    # -- what the page shows -------------------------------------------------------

    def may(self, method: str) -> bool:
        """Does this session get the control for ``method``? (role, then the token's scopes)"""
        if not self.operates:
            return False
        hub = self.run_store.hub if self.store is not None else None
        return may_call(hub, method, self.scopes)

    def _show_controls(self, *events: Any) -> None:
        # Left out rather than hidden: a control the token cannot use is not on the page at all.
        with pn.io.hold():
            allowed = [(self.may("cancelRun"), self._cancel_box), (self.may("rewindRun"), self._rewind_box)]
            self._controls.objects = [box for ok, box in allowed if ok]
        if events:
            self._render_approvals()

    async def refresh_scopes(self) -> None:
        if self.store is None or self.run_store.hub is None:
            return
        self.scopes = await token_scopes(self.run_store.hub)

    def set_rewind_frame(self, frame: int | None) -> None:
        """Rewind to ``frame`` (the scrubber's selected frame; ``None``: it follows live, keep the last pick)."""
        if frame is not None and frame >= 0:
            self.rewind_frame = int(frame)
            self._frame.value = int(frame)

    # -- questions -------------------------------------------------------------------

    def _run_label(self) -> tuple[str, bool, str]:
        run = self.run_store.run if isinstance(self.run_store.run, dict) else {}
        status = run.get("status")
        live = not is_terminal_run_status(status) if status else False
        return str(self.run_store.run_id or "?"), live, str(status or "unknown")

    def _cancel_question(self) -> str:
        run_id, live, status = self._run_label()
        return f"Cancel run {run_id}? It is {status}." + (" Its running tasks will be stopped." if live else "")

    def _rewind_question(self) -> str:
        run_id, live, status = self._run_label()
        frame, force = self.rewind_frame, bool(self.force)
        self._armed_rewind = {"frame": frame, "force": force, "live": live}
        head = f"Rewind run {run_id} to frame {frame}"
        if live and force:
            return f"{head} — the run is live: its owner process will be interrupted. Frames after {frame} are discarded."
        if live:
            return (f"{head}? The run is live ({status}): without “interrupt the live run” the Gateway refuses "
                    "while its owner process runs.")
        return f"{head}? The run is {status}; frames after {frame} are discarded."

    def _on_rewind_choice(self, *events: Any) -> None:
        # The armed question named another frame or force: ask again rather than send something else.
        if self._rewind.armed:
            self._rewind.armed = False
        if self._force.value != self.force:
            self._force.value = self.force

    # -- gateway calls (every one through perform: role check, audit, plain words) ----------

    async def _perform(self, **kwargs: Any) -> Outcome:
        assert self.config is not None
        outcome = await perform(self._hub(), self.config, run_id=self.run_store.run_id, **kwargs)
        self.last_outcome = outcome
        self.message = outcome.message
        if outcome.code == "FORBIDDEN":
            self._show_controls(outcome)  # the token lacks that scope: its controls go
        return outcome

    async def _cancel_run(self) -> str:
        run_id = self.run_store.run_id
        outcome = await self._perform(action="cancel", method="cancelRun", params={"runId": run_id},
                                      success=f"Cancel requested for run {run_id}.")
        return outcome.message

    async def _rewind_run(self) -> str:
        armed = self._armed_rewind or {"frame": self.rewind_frame, "force": bool(self.force)}
        self._armed_rewind = None
        frame, force = int(armed["frame"]), bool(armed["force"])
        self.force = False  # one tick, one rewind
        params = {"runId": self.run_store.run_id, "frameNo": frame, "confirm": True, "force": force}
        outcome = await self._perform(action="rewind", method="rewindRun", params=params, frame=frame, force=force,
                                      success=f"Rewound to frame {frame}.")
        return outcome.message

    async def _decide(self, approval: dict[str, Any], approved: bool) -> str:
        node_id = approval.get("nodeId")
        iteration = approval["iteration"] if isinstance(approval.get("iteration"), int) else None
        params: dict[str, Any] = {"runId": self.run_store.run_id, "nodeId": node_id, "decision": {"approved": approved}}
        if iteration is not None:
            params["iteration"] = iteration
        verdict = "Approved" if approved else "Denied"
        outcome = await self._perform(action="approve" if approved else "deny", method="submitApproval", params=params,
                                      node_id=str(node_id) if node_id is not None else None, iteration=iteration,
                                      success=f"{verdict}: {node_id}.")
        await self.refresh_approvals()
        return outcome.message

    async def refresh_approvals(self) -> None:
        run_id = self.run_store.run_id
        if not run_id:
            self.approvals = []
            return
        try:
            rows = await self._hub().client.list_approvals(run_id)
        except GatewayError as exc:
            self.message = refusal_text(exc)
            return
        if run_id == self.run_store.run_id:
            self.approvals = [r for r in rows if r.get("runId") in (None, run_id)]

    # -- reactions ----------------------------------------------------------------

    def _on_run(self, event: Any) -> None:
        self.message = ""
        self.approvals = []
        self._jump.visible = False
        self._rewind.armed = self._cancel.armed = False
        self.force = False
        self._start(self.refresh_approvals())

    def _on_event(self, event: Any) -> None:
        if any(getattr(r, "event", "").startswith(APPROVAL_EVENT_PREFIX) for r in event.new or ()):
            self._start(self.refresh_approvals())

    def _on_jump(self, event: Any) -> None:
        text = jump_notice(event.new)
        with pn.io.hold():
            self._jump.object = text
            self._jump.visible = bool(text)

    def _render_approvals(self, *events: Any) -> None:
        rows: list[Any] = []
        self.approval_actions = []
        decides = self.may("submitApproval")
        for approval in self.approvals:
            title = str(approval.get("requestTitle") or approval.get("nodeId") or "approval")
            # The title (Gateway text, any length) has a line of its own above the buttons.
            line = TextPane(f"Waiting for approval: {title}", margin=(8, 4), sizing_mode="stretch_width")
            if not decides:
                rows.append(line)
                continue
            node = str(approval.get("nodeId") or "?")
            question = functools.partial(self._decision_question, node)
            pair = (Action(functools.partial(self._decide, approval, True), functools.partial(question, "Approve"),
                           label="Approve", confirm_text="Approve this request?"),
                    Action(functools.partial(self._decide, approval, False), functools.partial(question, "Deny"),
                           label="Deny", confirm_text="Deny this request?"))
            self.approval_actions.append(pair)
            rows.append(pn.Column(line, pn.Row(*pair, margin=0), margin=0, sizing_mode="stretch_width"))
        self._approvals.objects = rows

    def _decision_question(self, node: str, verb: str) -> str:
        return f"{verb} this request? (node {node} of run {self.run_store.run_id})"

    def __panel__(self) -> pn.viewable.Viewable:
        if not self.enabled:
            state, text = "disabled", "Read-only dashboard"
        elif not self.operates:
            state, text = "viewer", "Read-only: you are signed in as a viewer"
        else:
            state, text = "", ""
        parts: list[Any] = []
        if state:
            # Nothing that could change a run is on the page, only what is waiting.
            parts.append(pn.pane.HTML(f'<div class="sd-muted" data-actions="{state}">{html.escape(text)}</div>',
                                      stylesheets=[stylesheet()], margin=(4, 8)))
        else:
            parts.append(self._controls)
        parts += [self._approvals, self._jump, self._message]
        return pn.Column(*parts, margin=0, sizing_mode="stretch_width")

# mypy: allow-untyped-calls
"""RunActions: cancel, rewind and approve/deny — only when the operator turned actions on.

The dashboard is read-only unless the server was started with ``--actions``
(``SMITHERS_DASHBOARD_ACTIONS=1``): a wall screen or a shared link must not be able to
change a run. Even then every action is armed first and needs a second, explicit
confirmation (the arm-then-confirm pattern of Smithers' own approval inbox), and a refusal
says why: a ``FORBIDDEN`` answer names the scope the token lacks instead of failing silently.
"""

from __future__ import annotations

import asyncio
import functools
import html
from typing import TYPE_CHECKING, Any

import panel as pn
import param

from inspector.client import GatewayClient
from inspector.errors import ErrorCode, GatewayError, GatewayRpcError
from inspector.vocabulary import APPROVAL_EVENT_PREFIX, is_terminal_run_status

from ..store import RunStore
from .base import StoreView
from .widgets import TextPane, stylesheet

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

__all__ = ["Action", "RunActions", "action_error_text"]


def action_error_text(exc: BaseException) -> str:
    """What to tell the operator about a refused action (plain text)."""
    if isinstance(exc, GatewayRpcError):
        if exc.code is ErrorCode.FORBIDDEN:
            scope = exc.required_scope or "a scope it does not have"
            return f"Refused: the dashboard's token lacks the scope {scope}."
        if exc.code is ErrorCode.RUN_OWNER_ALIVE:
            return "Refused: the run is still executing (RunOwnerAlive)."
        return f"Refused: {exc.raw_code}: {exc.message}"
    return f"Failed: {exc}"


class Action(pn.viewable.Viewer):
    """One button that arms, then a confirm/cancel pair that fires or disarms."""

    label = param.String(doc="What the button says, e.g. 'Cancel run'.")
    confirm_text = param.String(doc="The question shown once armed.")
    armed = param.Boolean(default=False, doc="Waiting for the confirmation.")
    busy = param.Boolean(default=False, doc="The request is on its way.")

    def __init__(self, run: Callable[[], Awaitable[str]], **params: Any) -> None:
        super().__init__(**params)
        self._run = run
        self._arm = pn.widgets.Button(label=self.label, color="warning", width=170, margin=(4, 4))
        self._yes = pn.widgets.Button(label="Confirm", color="danger", width=90, margin=(4, 4), visible=False)
        self._no = pn.widgets.Button(label="Keep", width=70, margin=(4, 4), visible=False)
        self._question = TextPane("", margin=(8, 4), visible=False)
        self._arm.on_click(self._set_armed)
        self._no.on_click(self._disarm)
        self._yes.on_click(self._fire)
        self.param.watch(self._show, ["armed", "busy"])

    def _set_armed(self, event: Any) -> None:
        self.armed = True

    def _disarm(self, event: Any) -> None:
        self.armed = False

    def _show(self, *events: Any) -> None:
        with pn.io.hold():
            self._arm.visible = not self.armed
            self._arm.disabled = self.busy
            for widget in (self._yes, self._no, self._question):
                widget.visible = self.armed
            self._question.object = self.confirm_text

    def _fire(self, event: Any) -> None:
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
    message = param.String(default="", doc="The outcome of the last action, as plain text.")
    approvals = param.List(default=[], doc="Pending approvals of the run (listApprovals).")
    rewind_frame = param.Integer(default=0, bounds=(0, None), doc="The frame a rewind goes back to.")

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self._cancel = Action(self._cancel_run, label="Cancel run", confirm_text="Cancel this run?")
        self._rewind = Action(self._rewind_run, label="Rewind…", confirm_text="Rewind the run?")
        self._frame = pn.widgets.IntInput(value=0, start=0, width=90, margin=(4, 4))
        self._frame.param.watch(lambda e: setattr(self, "rewind_frame", max(0, int(e.new or 0))), "value")
        self._approvals = pn.Column(margin=0)
        #: The (approve, deny) controls per pending approval, in ``approvals`` order.
        self.approval_actions: list[tuple[Action, Action]] = []
        self._message = TextPane("", margin=(4, 8), sizing_mode="stretch_width")
        self.param.watch(lambda e: setattr(self._message, "object", e.new), "message")
        self.param.watch(self._render_approvals, "approvals")
        if self.store is not None:
            self.store.param.watch(self._on_run, "run_id")
            self.store.param.watch(self._on_event, "new_events")

    @property
    def run_store(self) -> RunStore:
        store = self.store
        assert isinstance(store, RunStore), "RunActions needs a store"
        return store

    def _client(self) -> GatewayClient:
        client = self.run_store.client
        assert isinstance(client, GatewayClient), "RunActions needs a store attached to a hub"
        return client

    # -- gateway calls -----------------------------------------------------------

    async def _call(self, method: str, params: dict[str, Any], done: str) -> str:
        try:
            await self._client().rpc(method, params)
        except GatewayError as exc:
            self.message = action_error_text(exc)
        else:
            self.message = done
        return str(self.message)

    async def _cancel_run(self) -> str:
        return await self._call("cancelRun", {"runId": self.run_store.run_id}, "Cancel requested.")

    async def _rewind_run(self) -> str:
        run = self.run_store.run if isinstance(self.run_store.run, dict) else {}
        running = not is_terminal_run_status(run.get("status"))
        frame = self.rewind_frame
        return await self._call(
            "rewindRun",
            {"runId": self.run_store.run_id, "frameNo": frame, "confirm": True, "force": running},
            f"Rewound to frame {frame}.",
        )

    async def _decide(self, approval: dict[str, Any], approved: bool) -> str:
        params = {"runId": self.run_store.run_id, "nodeId": approval.get("nodeId"), "decision": {"approved": approved}}
        if isinstance(approval.get("iteration"), int):
            params["iteration"] = approval["iteration"]
        verdict = "Approved" if approved else "Denied"
        result = await self._call("submitApproval", params, f"{verdict}: {approval.get('nodeId')}.")
        await self.refresh_approvals()
        return result

    async def refresh_approvals(self) -> None:
        run_id = self.run_store.run_id
        if not run_id:
            self.approvals = []
            return
        try:
            rows = await self._client().list_approvals(run_id)
        except GatewayError as exc:
            self.message = action_error_text(exc)
            return
        if run_id == self.run_store.run_id:
            self.approvals = [r for r in rows if r.get("runId") in (None, run_id)]

    # -- reactions ----------------------------------------------------------------

    def _on_run(self, event: Any) -> None:
        self.message = ""
        self.approvals = []
        if self.enabled:
            asyncio.ensure_future(self.refresh_approvals())

    def _on_event(self, event: Any) -> None:
        if self.enabled and any(getattr(r, "event", "").startswith(APPROVAL_EVENT_PREFIX) for r in event.new or ()):
            asyncio.ensure_future(self.refresh_approvals())

    def _render_approvals(self, event: Any) -> None:
        rows: list[Any] = []
        self.approval_actions = []
        for approval in self.approvals:
            title = str(approval.get("requestTitle") or approval.get("nodeId") or "approval")
            approve = functools.partial(self._decide, approval, True)
            deny = functools.partial(self._decide, approval, False)
            # The question beside the buttons names no Gateway text: the title (any length)
            # has a line of its own above them.
            pair = (Action(approve, label="Approve", confirm_text="Approve this request?"),
                    Action(deny, label="Deny", confirm_text="Deny this request?"))
            self.approval_actions.append(pair)
            rows.append(pn.Column(TextPane(f"Waiting for approval: {title}", margin=(8, 4), sizing_mode="stretch_width"),
                                  pn.Row(*pair, margin=0), margin=0, sizing_mode="stretch_width"))
        self._approvals.objects = rows

    def __panel__(self) -> pn.viewable.Viewable:
        if not self.enabled:
            # Read-only: nothing that could change a run is even on the page.
            return pn.pane.HTML(
                f'<div class="sd-muted" data-actions="disabled">{html.escape("Read-only dashboard")}</div>',
                stylesheets=[stylesheet()], margin=(4, 8),
            )
        return pn.Column(
            pn.Row(self._cancel, pn.pane.Str("to frame", margin=(8, 4)), self._frame, self._rewind, margin=0),
            self._approvals,
            self._message,
            margin=0,
            sizing_mode="stretch_width",
        )

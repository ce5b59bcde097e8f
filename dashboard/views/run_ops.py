# mypy: allow-untyped-calls
"""RunOperations: resume, re-run and signal the open run (operators only).

Placed beside the run controls (:class:`~dashboard.views.actions.RunActions`) in the run
header. What each control does on the Smithers Gateway (0.32):

- **Resume** a *failed* or *cancelled* run: ``resumeRun`` refuses a run that is over
  (``already_terminal``), so this is ``retryTask`` on the earliest node that failed or was
  cancelled (or, for a run cancelled between two steps, the first node not finished): the Gateway resets that node and every node after it to pending, flips the run
  back to running and resumes it in process (what ``smithers retry-task`` does). A *paused*
  (or stale) run is resumed with ``resumeRun``. The question names the node that restarts.
- **Re-run**: the Gateway's ``runs.rerun`` reads the run's stored input (``getRun`` does not
  return it) and launches a new run of the same workflow with it; the new run opens.
- **Send signal**: while the run is ``waiting-event``, a :class:`SignalForm` for the node it
  waits on (``runState.blocked``).

Every request goes through :func:`dashboard.operate.perform` (role check, audit, plain
refusals). A viewer gets nothing from this view: not a disabled button, nothing.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any, ClassVar

import panel as pn
import param
from param.parameters import NoNone

from inspector.errors import GatewayError
from inspector.vocabulary import RunStatus, TaskState

from ..config import DashboardConfig
from ..operate import perform
from ..roles import may_call
from .base import StoreView
from .confirm import ConfirmAction
from .inbox import waiting_signal
from .signal_form import SignalForm
from .widgets import TextPane

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping, Sequence

__all__ = ["RESUMABLE_BY_RETRY", "RESUMABLE_IN_PLACE", "RunOperations", "restart_node"]

log = logging.getLogger(__name__)

#: Runs that are over but can go on from the node that stopped them (``retryTask``).
RESUMABLE_BY_RETRY = frozenset({RunStatus.FAILED, RunStatus.CANCELLED, RunStatus.CANCELED})
#: Runs that stopped without ending (``resumeRun``).
RESUMABLE_IN_PLACE = frozenset({RunStatus.PAUSED, RunStatus.STALE, RunStatus.ORPHANED})
_STOPPED_STATES = frozenset({TaskState.FAILED, TaskState.CANCELLED})
_DONE_STATES = frozenset({TaskState.FINISHED, TaskState.SKIPPED})


def restart_node(states: Iterable[Any], order: Sequence[str] = ()) -> tuple[str, int] | None:
    """The (node, iteration) a resume restarts, from ``listNodeStates``.

    Of the nodes that failed or were cancelled, the one that started first (resetting it
    resets everything after it). A run cancelled between two steps has none: then the first
    node, in the workflow's order (``order``: node ids as the DevTools tree lists them), that
    has not finished.
    """
    rows = [s for s in states if isinstance(s, dict) and isinstance(s.get("nodeId"), str)]
    stopped = [s for s in rows if s.get("state") in _STOPPED_STATES]

    def started(s: Mapping[str, Any]) -> tuple[float, float]:
        at, updated = s.get("startedAtMs"), s.get("updatedAtMs")
        return (at if isinstance(at, int | float) else float("inf"),
                updated if isinstance(updated, int | float) else float("inf"))

    if stopped:
        first = min(stopped, key=started)
    else:
        open_rows = [s for s in rows if s.get("state") not in _DONE_STATES]
        if not open_rows:
            return None
        rank = {node: i for i, node in enumerate(order)}
        first = min(open_rows, key=lambda s: (rank.get(s["nodeId"], len(rank)), *started(s), s["nodeId"]))
    iteration = first.get("iteration")
    return str(first["nodeId"]), iteration if isinstance(iteration, int) else 0


class RunOperations(StoreView):
    """Resume / Re-run / Send signal for the open run (see the module docstring)."""

    config = param.ClassSelector(class_=DashboardConfig, allow_None=NoNone, doc="The server's configuration.")
    can_act = param.Boolean(default=False, doc="The session is an operator (the server checks again).")
    on_open = param.Callable(default=None, doc="Called with the id of a run to open (the re-run).")
    message = param.String(default="", doc="The outcome of the last request (plain text).")
    restart = param.Tuple(default=None, allow_None=True, length=2, doc="""
        The (node, iteration) a resume of a failed or cancelled run restarts, once read.""")

    _redraw_on: ClassVar[tuple[str, ...]] = ("run",)

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self.resume = ConfirmAction(self._resume, label="Resume run", ask=self._resume_question, check=self._resume_check)
        self.rerun = ConfirmAction(self._rerun, label="Re-run", ask=self._rerun_question)
        # The controls' own buttons show and hide as they arm; whether a control is offered
        # at all (by the run's status) is its box's visibility.
        self._resume_box = pn.Column(self.resume, margin=0, visible=False)
        self._rerun_box = pn.Column(self.rerun, margin=0, visible=False)
        self.signal_form: SignalForm | None = None
        self._signal_box = pn.Column(margin=0, sizing_mode="stretch_width")
        self._message = TextPane("", margin=(4, 8), sizing_mode="stretch_width")
        self.param.watch(lambda e: setattr(self._message, "object", e.new), "message")
        self._status: str | None = None
        self._signal_key: tuple[str, str] | None = None
        self._reading: asyncio.Task[None] | None = None
        self.store.param.watch(self._on_run_id, "run_id")
        self._update()

    # -- state --------------------------------------------------------------------

    @property
    def run_id(self) -> str | None:
        run_id = self.store.run_id
        return run_id if isinstance(run_id, str) and run_id else None

    @property
    def status(self) -> str | None:
        run = self.store.run if isinstance(self.store.run, dict) else {}
        status = run.get("status")
        return status if isinstance(status, str) else None

    def _on_run_id(self, event: Any) -> None:
        self.param.update(message="", restart=None)
        self._status = None
        self._update()

    def _update(self, *events: Any) -> None:
        status = self.status
        with pn.io.hold():
            self._resume_box.visible = status in RESUMABLE_BY_RETRY or status in RESUMABLE_IN_PLACE
            self._rerun_box.visible = self.run_id is not None and status is not None and may_call(self.store.hub, "runs.rerun")
            self._show_signal()
        if status != self._status:
            self._status = status
            self.restart = None
            if status in RESUMABLE_BY_RETRY:
                self._read_restart()

    def _show_signal(self) -> None:
        run = self.store.run if isinstance(self.store.run, dict) else {}
        wait = waiting_signal(run) if self.status == RunStatus.WAITING_EVENT else None
        key = (wait.run_id, wait.signal_name) if wait is not None else None
        if key == self._signal_key:
            return
        self._signal_key = key
        if wait is None or not self.can_act or not may_call(self.store.hub, "submitSignal"):
            self.signal_form = None
            self._signal_box.objects = []
            return
        self.signal_form = SignalForm(self._send_signal, signal_name=wait.signal_name, run_id=wait.run_id,
                                      node_id=wait.node_id)
        self._signal_box.objects = [self.signal_form]

    def _read_restart(self) -> None:
        try:
            self._reading = asyncio.get_running_loop().create_task(self.read_restart())
        except RuntimeError:
            self._reading = None

    async def read_restart(self) -> None:
        """Find the node a resume restarts (``listNodeStates``)."""
        run_id = self.run_id
        client = self.store.client
        if run_id is None or client is None:
            return
        try:
            states = await client.list_node_states(run_id)
        except GatewayError as exc:
            self.message = f"Cannot read the run's nodes: {exc}"
            return
        tree = self.store.tree
        order = [n.node_id for n in tree.walk() if n.node_id] if tree is not None else []
        if run_id == self.run_id:
            self.restart = restart_node(states, order)

    # -- requests -----------------------------------------------------------------

    def _resume_check(self) -> str | None:
        if self.status in RESUMABLE_BY_RETRY and self.restart is None:
            return "Nothing to resume from yet: no failed or cancelled node was found (try again in a moment)."
        return None

    def _resume_question(self) -> str:
        if self.status in RESUMABLE_BY_RETRY and self.restart is not None:
            node, iteration = self.restart
            at = f" (iteration {iteration})" if iteration else ""
            return (f"Resume {self.status} run {self.run_id} from node {node}{at}? "
                    "That node and every node after it run again.")
        return f"Resume run {self.run_id} ({self.status})?"

    async def _resume(self) -> bool:
        run_id = self.run_id
        if run_id is None:
            return False
        if self.status in RESUMABLE_BY_RETRY and self.restart is not None:
            node, iteration = self.restart
            outcome = await perform(
                self.store.hub, self.config, action="resume", method="retryTask",
                params={"runId": run_id, "nodeId": node, "iteration": iteration},
                run_id=run_id, node_id=node, iteration=iteration,
                success=f"Resuming run {run_id} from node {node}.",
            )
        else:
            outcome = await perform(
                self.store.hub, self.config, action="resume", method="resumeRun", params={"runId": run_id},
                run_id=run_id, success=f"Resume requested for run {run_id}.",
            )
            result = outcome.result if isinstance(outcome.result, dict) else {}
            if outcome.ok and result.get("status") == "already_terminal":
                self.message = f"Not resumed: run {run_id} is over (the Gateway answered already_terminal)."
                return False
        self.message = outcome.message
        return outcome.ok

    def _rerun_question(self) -> str:
        run = self.store.run if isinstance(self.store.run, dict) else {}
        workflow = run.get("workflowKey") or run.get("workflowName") or "?"
        return f"Start a new run of workflow {workflow} with the same input as run {self.run_id}?"

    async def _rerun(self) -> str | None:
        run_id = self.run_id
        if run_id is None:
            return None
        outcome = await perform(
            self.store.hub, self.config, action="rerun", method="runs.rerun", params={"runId": run_id},
            run_id=run_id, success=f"Re-run of {run_id} started.",
        )
        result = outcome.result if isinstance(outcome.result, dict) else {}
        new_run = result.get("runId")
        if outcome.ok and isinstance(new_run, str):
            self.message = f"Re-run of {run_id} started as run {new_run}."
            if self.on_open is not None:
                callback: Callable[[str], None] = self.on_open
                callback(new_run)
            return new_run
        self.message = outcome.message
        return None

    async def _send_signal(self, name: str, payload: dict[str, Any]) -> bool:
        run_id = self.run_id
        if run_id is None:
            return False
        node = self.signal_form.node_id if self.signal_form is not None else None
        outcome = await perform(
            self.store.hub, self.config, action="signal", method="submitSignal",
            params={"runId": run_id, "signalName": name, "data": payload},
            run_id=run_id, node_id=node, success=f"Signal {name!r} sent.",
        )
        self.message = outcome.message
        return outcome.ok

    def __panel__(self) -> pn.viewable.Viewable:
        if not self.can_act:
            return pn.Column(visible=False, margin=0)
        return pn.Column(
            pn.Row(self._resume_box, self._rerun_box, margin=0, sizing_mode="stretch_width"),
            self._signal_box,
            self._message,
            css_classes=["sd-run-ops"],
            margin=0,
            sizing_mode="stretch_width",
        )

# mypy: allow-untyped-calls
"""LaunchForm: start a run of a registered workflow, its input typed in a form (operators only).

The workflows are the Gateway's ``listWorkflows`` (system workflows left out, as the Gateway
does by default). The input form comes from the workflow's JSON Schema when the operator gave
the dashboard one (:func:`dashboard.schema_form.workflow_schemas`: the Gateway does not
publish input schemas), a JSON text area otherwise. **Launch** first checks the input against
the schema (:meth:`SchemaForm.collect`): a problem is shown and nothing is sent, which matters
because the Gateway accepts any input and a mismatched run fails before it is even recorded.
A sound input arms the launch; the question names the workflow and the input; **Confirm**
sends ``launchRun`` through :func:`dashboard.operate.perform` and the new run opens.
"""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Any

import panel as pn
import param
from param.parameters import NoNone

from inspector.errors import GatewayError

from ..config import DashboardConfig
from ..hub import GatewayHub
from ..operate import perform
from ..schema_form import InputProblem, SchemaForm
from .confirm import ConfirmAction
from .widgets import TextPane

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["LaunchForm", "workflow_keys"]


def workflow_keys(rows: Any) -> list[str]:
    """``listWorkflows``' answer as the keys an operator may launch (system workflows left out)."""
    if isinstance(rows, dict):
        rows = rows.get("workflows", [])
    if not isinstance(rows, list):
        return []
    keys = [str(r["key"]) for r in rows if isinstance(r, dict) and isinstance(r.get("key"), str) and not r.get("system")]
    return sorted(keys)


class LaunchForm(pn.viewable.Viewer):
    """Workflow picker, input form, confirmed Launch (see the module docstring)."""

    hub = param.ClassSelector(class_=GatewayHub, allow_None=NoNone, doc="The process's Gateway hub.")
    config = param.ClassSelector(class_=DashboardConfig, allow_None=NoNone, doc="The server's configuration.")
    can_act = param.Boolean(default=False, doc="The session is an operator (the server checks again).")
    schemas = param.Dict(default={}, doc="Input JSON Schemas by workflow key (from the operator).")
    on_open = param.Callable(default=None, doc="Called with the new run's id.")
    workflows = param.List(default=[], item_type=str, doc="The launchable workflow keys.")
    message = param.String(default="", doc="The outcome of the last launch (plain text).")

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self.picker = pn.widgets.Select(label="Workflow", options=[], width=260)
        self.form = SchemaForm(schema=None)
        self._form_box = pn.Column(self.form, margin=0, sizing_mode="stretch_width")
        self._about = TextPane("", margin=(4, 8), sizing_mode="stretch_width")
        self._input: dict[str, Any] = {}
        self.launch = ConfirmAction(self._launch, label="Launch", ask=self._question, check=self._check)
        self._message = TextPane("", margin=(4, 8), sizing_mode="stretch_width")
        self.param.watch(lambda e: setattr(self._message, "object", e.new), "message")
        self.picker.param.watch(self._on_pick, "value")
        self.param.watch(self._on_workflows, "workflows")
        self._task: asyncio.Task[None] | None = None
        if self.can_act:
            try:
                self._task = asyncio.get_running_loop().create_task(self.read())
            except RuntimeError:
                self._task = None

    async def read(self) -> None:
        """Read the registered workflows."""
        try:
            rows = await self.hub.read("listWorkflows", {}, max_age=10.0)
        except GatewayError as exc:
            self.message = f"Cannot list workflows: {exc}"
            return
        self.workflows = workflow_keys(rows)

    def _on_workflows(self, event: Any) -> None:
        current = self.picker.value
        self.picker.options = list(self.workflows)
        if current not in self.workflows:
            self.picker.value = self.workflows[0] if self.workflows else None
        self._on_pick()

    def _on_pick(self, *events: Any) -> None:
        key = self.picker.value
        schema = self.schemas.get(key) if isinstance(key, str) else None
        with pn.io.hold():
            self.form = SchemaForm(schema=schema if isinstance(schema, dict) else None)
            self._form_box.objects = [self.form]
            if key is None:
                self._about.object = "No workflow is registered."
            elif self.form.fields:
                self._about.object = f"Input of {key} (fields marked * are required):"
            else:
                self._about.object = (f"No input schema is known for {key}: write its input as a JSON object "
                                      "(the dashboard checks that it is one).")
            self.launch.disarm()

    def _check(self) -> str | None:
        if not isinstance(self.picker.value, str):
            return "Pick a workflow to launch."
        try:
            self._input = self.form.collect()
        except InputProblem as exc:
            return "Nothing sent: " + "; ".join(exc.problems) + "."
        return None

    def _question(self) -> str:
        text = json.dumps(self._input)
        if len(text) > 300:
            text = text[:300] + "…"
        return f"Launch workflow {self.picker.value} with input {text}?"

    async def _launch(self) -> str | None:
        workflow = self.picker.value
        outcome = await perform(
            self.hub, self.config, action="launch", method="launchRun",
            params={"workflow": workflow, "input": self._input}, run_id=None,
            success=f"Launched {workflow}.",
        )
        result = outcome.result if isinstance(outcome.result, dict) else {}
        run_id = result.get("runId")
        if outcome.ok and isinstance(run_id, str):
            self.message = f"Launched {workflow} as run {run_id}."
            if self.on_open is not None:
                callback: Callable[[str], None] = self.on_open
                callback(run_id)
            return run_id
        self.message = outcome.message
        return None

    def __panel__(self) -> pn.viewable.Viewable:
        if not self.can_act:
            return TextPane("Only operators can launch runs.", margin=(4, 8))
        return pn.Column(
            pn.pane.HTML("<h3>Launch a workflow</h3>", margin=(0, 8)),
            self.picker,
            self._about,
            self._form_box,
            self.launch,
            self._message,
            css_classes=["sd-launch"],
            max_width=720,
            sizing_mode="stretch_width",
        )

# mypy: allow-untyped-calls
"""SignalForm: send ``submitSignal`` to a run whose node waits for an event.

A Smithers ``<Signal id=...>`` (a ``wait-for-event`` node) parks its run in ``waiting-event``
until a signal of its event name arrives; the Gateway's ``submitSignal {runId, signalName,
data}`` delivers one and resumes the run. The name comes from the node (the run's
``runState.blocked.correlationKey``, or the node's ``event`` prop) and may be edited; the
payload is JSON written by the operator. The payload is parsed here before anything is armed:
text that is not JSON, or JSON that is not an object, gets a message naming where it breaks
and sends nothing. (The Gateway accepts any payload; one that does not match the signal's
schema fails the waiting node, and with it the run, so a form cannot be too careful.)
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import panel as pn
import param

from ..schema_form import InputProblem, parse_json_text
from .confirm import ConfirmAction

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

__all__ = ["SignalForm", "signal_payload"]


def signal_payload(text: str) -> dict[str, Any]:
    """The payload text as a JSON object, or :class:`InputProblem` saying what is wrong."""
    value = parse_json_text(text, what="the payload")
    if not isinstance(value, dict):
        raise InputProblem([f"the payload must be a JSON object, e.g. {{\"note\": \"go\"}}, not {type(value).__name__}"])
    return value


class SignalForm(pn.viewable.Viewer):
    """Signal name, JSON payload, and a confirmed Send (see the module docstring)."""

    run_id = param.String(default="", doc="The waiting run.")
    node_id = param.String(default=None, allow_None=True, doc="The waiting node, when known (for the question and the audit).")

    def __init__(self, send: Callable[[str, dict[str, Any]], Awaitable[Any]], *, signal_name: str = "", **params: Any) -> None:
        super().__init__(**params)
        self._send_signal = send
        self._payload: dict[str, Any] = {}
        self.name_input = pn.widgets.TextInput(label="Signal", value=signal_name, width=200)
        self.payload_input = pn.widgets.TextAreaInput(label="Payload (JSON object)", value="{}", height=70,
                                                      sizing_mode="stretch_width")
        self.send = ConfirmAction(self._deliver, label="Send signal", ask=self._question, check=self._check)

    def _check(self) -> str | None:
        if not (self.name_input.value or "").strip():
            return "Name the signal to send."
        try:
            self._payload = signal_payload(self.payload_input.value or "")
        except InputProblem as exc:
            return f"Nothing sent: {exc}."
        return None

    def _question(self) -> str:
        node = f" (node {self.node_id})" if self.node_id else ""
        payload = json.dumps(self._payload)
        if len(payload) > 200:
            payload = payload[:200] + "…"
        name = (self.name_input.value or "").strip()
        return f"Send signal {name!r}{node} to run {self.run_id} with {payload}?"

    async def _deliver(self) -> Any:
        return await self._send_signal((self.name_input.value or "").strip(), self._payload)

    def __panel__(self) -> pn.viewable.Viewable:
        return pn.Column(pn.Row(self.name_input, self.payload_input, margin=0, sizing_mode="stretch_width"),
                         self.send, margin=0, sizing_mode="stretch_width")

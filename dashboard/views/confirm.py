# mypy: allow-untyped-calls
"""ConfirmAction: a button that arms, a question that names what will change, then Confirm.

Every operator control of the inbox, the run operations and the launch form is one of these:
the first click checks the request (``check``: a form's input, a signal's JSON) and, only if
it is sound, arms and asks the question (``question``: built at that moment, so it names the
run, the node and the values that will be sent); **Confirm** sends it; **Keep** disarms. A
request that does not pass ``check`` never arms, so nothing is sent and the reason is shown
instead. The question and the reason are plain text (they quote Gateway names).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import panel as pn
import param

from .widgets import TextPane

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

__all__ = ["ConfirmAction"]


class ConfirmAction(pn.viewable.Viewer):
    """Arm, ask, confirm (see the module docstring)."""

    label = param.String(doc="What the button says, e.g. 'Approve'.")
    armed = param.Boolean(default=False, doc="The question is shown and Confirm waits for a click.")
    busy = param.Boolean(default=False, doc="The confirmed request is on its way.")
    question = param.String(default="", doc="The confirmation question (plain text), set when armed.")
    problem = param.String(default="", doc="Why the last click did not arm (plain text).")

    def __init__(
        self,
        run: Callable[[], Awaitable[Any]],
        *,
        ask: Callable[[], str],
        check: Callable[[], str | None] | None = None,
        **params: Any,
    ) -> None:
        super().__init__(**params)
        self._run = run
        self._ask = ask
        self._check = check
        self.task: asyncio.Future[Any] | None = None
        self.arm_button = pn.widgets.Button(label=self.label, color="primary", margin=(4, 4))
        self.confirm_button = pn.widgets.Button(label="Confirm", color="danger", width=90, margin=(4, 4),
                                                visible=False)
        self.keep_button = pn.widgets.Button(label="Keep", width=70, margin=(4, 4), visible=False)
        self._question = TextPane("", margin=(8, 4), visible=False, max_width=560)
        self._problem = TextPane("", margin=(8, 4), visible=False, styles={"color": "#b00020"}, max_width=560)
        self.arm_button.on_click(lambda e: None if self.arm() else None)
        self.keep_button.on_click(lambda e: self.disarm())
        self.confirm_button.on_click(lambda e: None if self.confirm() else None)
        self.param.watch(self._show, ["armed", "busy", "question", "problem"])

    def arm(self) -> bool:
        """Check the request; arm and ask if it is sound, else show why (nothing is sent)."""
        problem = self._check() if self._check is not None else None
        if problem:
            self.param.update(problem=problem, armed=False)
            return False
        self.param.update(problem="", question=self._ask(), armed=True)
        return True

    def disarm(self) -> None:
        self.armed = False

    def confirm(self) -> asyncio.Future[Any] | None:
        """Send the armed request (once); returns the task doing it."""
        if not self.armed or self.busy:
            return None
        self.param.update(armed=False, busy=True)
        self.task = asyncio.ensure_future(self._call())
        return self.task

    async def _call(self) -> Any:
        try:
            return await self._run()
        finally:
            self.busy = False

    def _show(self, *events: Any) -> None:
        with pn.io.hold():
            self.arm_button.visible = not self.armed
            self.arm_button.disabled = self.busy
            for widget in (self.confirm_button, self.keep_button, self._question):
                widget.visible = self.armed
            self._question.object = self.question
            self._problem.object = self.problem
            self._problem.visible = bool(self.problem) and not self.armed

    def __panel__(self) -> pn.viewable.Viewable:
        return pn.Column(
            # The question on a line of its own (it quotes inputs of any length), the answer under it.
            self.arm_button,
            self._question,
            pn.Row(self.confirm_button, self.keep_button, margin=0),
            self._problem,
            margin=0,
        )

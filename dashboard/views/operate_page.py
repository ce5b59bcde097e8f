# mypy: allow-untyped-calls
"""OperatePage: the landing page's "Operate" tab, the approvals inbox beside the launch form.

The session's role is read once, when the page is built (:func:`dashboard.roles.session_role`):
an operator gets the decisions and the launch form, a viewer the inbox alone. That only decides
what is drawn; every action is checked again on the server when it is asked for.
"""

from __future__ import annotations

from typing import Any

import panel as pn
import param
from param.parameters import NoNone

from ..config import DashboardConfig
from ..hub import GatewayHub
from ..roles import Role, session_role
from ..schema_form import workflow_schemas
from .inbox import ApprovalsInbox
from .launch import LaunchForm

__all__ = ["OperatePage"]


class OperatePage(pn.viewable.Viewer):
    """Inbox + launch form (see the module docstring)."""

    hub = param.ClassSelector(class_=GatewayHub, allow_None=NoNone, doc="The process's Gateway hub.")
    config = param.ClassSelector(class_=DashboardConfig, allow_None=NoNone, doc="The server's configuration.")
    on_open = param.Callable(default=None, doc="Called with a run id to open that run.")
    role: param.Selector[Role] = param.Selector(default=Role.VIEWER, objects=list(Role), doc="The session's role when the page was built.")

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        if "role" not in params:
            self.role = session_role(self.config)
        can_act = self.role is Role.OPERATOR
        self.inbox = ApprovalsInbox(hub=self.hub, config=self.config, can_act=can_act, on_open=self.on_open)
        self.launch = LaunchForm(hub=self.hub, config=self.config, can_act=can_act, on_open=self.on_open,
                                 schemas=workflow_schemas(path=self.config.workflow_schemas))

    def set_shown(self, shown: bool) -> None:
        """The page came into view (the inbox reads and polls) or left it (it stops)."""
        if shown:
            self.inbox.start()
        else:
            self.inbox.stop()

    def close(self) -> None:
        self.inbox.stop()

    def __panel__(self) -> pn.viewable.Viewable:
        parts: list[Any] = [pn.Column(self.inbox, sizing_mode="stretch_width", styles={"flex": "1 1 60%", "min-width": "0"})]
        if self.role is Role.OPERATOR:
            parts.append(pn.Column(self.launch, sizing_mode="stretch_width", styles={"flex": "1 1 40%", "min-width": "0"}))
        return pn.Row(*parts, sizing_mode="stretch_width")

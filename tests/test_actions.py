"""Write controls: absent unless enabled; armed then confirmed; refusals name the missing scope."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import httpx
import panel as pn
import pytest
from bokeh.document import Document
from bokeh.models import Button

from dashboard import Dashboard
from dashboard.config import DashboardConfig
from dashboard.hub import GatewayHub
from dashboard.store import RunStore
from dashboard.views import RunActions
from inspector.client import GatewayClient

from .test_hub import until


def html_of(viewable: Any) -> str:
    """The text of every HTML pane under ``viewable`` (as the browser gets it, unescaped)."""
    import html

    root = pn.panel(viewable).get_root(Document())
    return "\n".join(html.unescape(m.text) for m in root.references() if isinstance(getattr(m, "text", None), str))


def buttons(viewable: Any) -> list[str]:
    root = pn.panel(viewable).get_root(Document())
    return [b.label for b in root.select({"type": Button})]


async def test_read_only_by_default_has_no_write_controls(gateway: Any) -> None:
    hub = GatewayHub(GatewayClient(gateway.url, "op-token"), grace=0.1)
    dash = Dashboard(run_id=gateway.launch_run("demo"), hub=hub, config=DashboardConfig(gateway_url=gateway.url))
    try:
        labels = buttons(dash)
        assert not {"Cancel run", "Rewind…", "Approve", "Deny", "Confirm"} & set(labels)
        assert 'data-actions="disabled"' in html_of(dash.actions)
    finally:
        dash.close()
        await hub.aclose()


async def test_approval_needs_arming_and_confirmation(gateway: Any) -> None:
    run_id = gateway.launch_run("gated")
    hub = GatewayHub(GatewayClient(gateway.url, "op-token"), grace=0.1)
    store = RunStore(hub=hub, run_id=run_id)
    actions = RunActions(store=store, enabled=True)
    try:
        await until(lambda: gateway.get_run(run_id)["status"] == "waiting-approval", timeout=30, what="approval gate")
        await actions.refresh_approvals()
        assert [a["nodeId"] for a in actions.approvals] == ["deploy"]
        approve = actions.approval_actions[0][0]
        assert approve.label == "Approve" and not approve.armed
        approve._arm.clicks += 1  # arm: nothing is sent yet
        assert approve.armed and gateway.get_run(run_id)["status"] == "waiting-approval"
        approve._yes.clicks += 1  # confirm
        await until(lambda: actions.message.startswith("Approved"), timeout=10, what="approval sent")
        await until(lambda: gateway.get_run(run_id)["status"] == "finished", timeout=30, what="run finished")
    finally:
        store.close()
        await hub.aclose()


async def test_forbidden_action_names_the_missing_scope(gateway: Any) -> None:
    run_id = gateway.launch_run("demo")
    gateway.wait_for_run(run_id)
    hub = GatewayHub(GatewayClient(gateway.url, "read-token"), grace=0.1)
    store = RunStore(hub=hub, run_id=run_id)
    actions = RunActions(store=store, enabled=True)
    try:
        actions._frame.value = 1
        actions._rewind._arm.clicks += 1
        actions._rewind._yes.clicks += 1
        await until(lambda: bool(actions.message), timeout=10, what="an answer")
        assert actions.message == "Refused: the dashboard's token lacks the scope run:admin."
        assert "Rewind…" not in buttons(actions), "the scope it lacks takes its control away"
        assert gateway.get_run(run_id)["status"] == "finished"
    finally:
        store.close()
        await hub.aclose()


@pytest.mark.parametrize(
    "status, live",
    [("running", True), ("waiting-approval", True), ("paused", True), ("finished", False), ("failed", False),
     ("cancelled", False), ("continued", False), ("succeeded", False), ("completed", False)],
)
async def test_rewind_forces_only_when_ticked_and_says_whether_the_run_is_live(status: str, live: bool) -> None:
    """``force: true`` is the operator's explicit choice (the tick), never inferred from the
    run's status; the question says whether the run is live, under any of the Gateway's names
    for a run that is over, and the tick is good for one rewind only."""
    sent: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(json.loads(request.content))
        return httpx.Response(200, json={"type": "res", "id": "http", "ok": True, "payload": {}})

    client = GatewayClient("http://gateway.test:7331", "op-token", transport=httpx.MockTransport(handler))
    store = RunStore(hub=SimpleNamespace(client=client))
    store.run = {"runId": "r1", "status": status}
    actions = RunActions(store=store, enabled=True, rewind_frame=3)
    try:
        actions._rewind._arm.clicks += 1
        question = actions._rewind.confirm_text
        assert question.startswith("Rewind run ") and "to frame 3" in question
        assert ("the run is live" in question.lower()) is live
        assert await actions._rewind_run() == "Rewound to frame 3."
        actions._force.value = True
        actions._rewind._arm.clicks += 1
        if live:
            assert "the run is live: its owner process will be interrupted" in actions._rewind.confirm_text
        assert await actions._rewind_run() == "Rewound to frame 3."
        assert not actions.force and not actions._force.value, "the tick was for that rewind only"
        assert await actions._rewind_run() == "Rewound to frame 3."
        assert [m["force"] for m in sent] == [False, True, False]
        assert all(m["frameNo"] == 3 and m["confirm"] is True for m in sent)
    finally:
        store.close()
        await client.aclose()

"""Safe actions: the server checks the role on every action, audits it, and says refusals in plain words.

- A viewer's page has no control, and a crafted action from a viewer session (the handler
  called directly, as a forged page event would) never reaches the Gateway: refused, audited.
- An operator approves, cancels and rewinds on the real Gateway; each action is one audit line
  naming the user, the action and the run, and never the token; who rewound is shown.
- The token's scopes decide which controls exist (the Gateway's read-only token: none, while
  the pending approval is still listed).
- The Gateway's refusals (scripted answers of the Gateway's own codes) in one plain sentence.
"""

from __future__ import annotations

import contextlib
import json
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from dashboard import roles
from dashboard.config import DashboardConfig
from dashboard.hub import GatewayHub
from dashboard.operate import perform
from dashboard.roles import Role
from dashboard.store import RunStore
from dashboard.views import RunActions
from dashboard.views.actions import jump_notice
from inspector.client import GatewayClient
from tests.gateway.server import GatewayRpcError as GatewayServerRpcError

from .test_actions import buttons, html_of
from .test_hub import until

if TYPE_CHECKING:
    from pathlib import Path

CONTROLS = {"Cancel run", "Rewind…", "Approve", "Deny", "Confirm"}
OP_TOKEN = "op-token"


def audit_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def signed_in(monkeypatch: pytest.MonkeyPatch, user: str | None) -> None:
    """The session's verified login (what roles.session_user decodes from the signed cookie)."""
    monkeypatch.setattr(roles, "session_user", lambda: user)


def team(tmp_path: Path, **kwargs: Any) -> DashboardConfig:
    return DashboardConfig(actions_enabled=True, login_required=True, operators=frozenset({"alice"}),
                           audit_log=str(tmp_path / "audit.jsonl"), token=OP_TOKEN, **kwargs)


class Recorder:
    """A scripted Gateway over httpx.MockTransport: answers ``answer(method)``, records calls."""

    def __init__(self, answer: Any = None) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self._answer = answer

    def __call__(self, request: httpx.Request) -> httpx.Response:
        method = request.url.path.rsplit("/", 1)[-1]
        self.calls.append((method, json.loads(request.content)))
        if self._answer is not None:
            result: httpx.Response = self._answer(method)
            return result
        return httpx.Response(200, json={"type": "res", "id": "http", "ok": True, "payload": {}})

    def client(self) -> GatewayClient:
        return GatewayClient("http://gateway.test:7331", OP_TOKEN, transport=httpx.MockTransport(self))


def refusal(code: str, message: str, status: int, **extra: Any) -> Any:
    headers = extra.pop("headers", {})
    error = {"code": code, "message": message, **extra}
    return lambda method: httpx.Response(status, headers=headers,
                                         json={"type": "res", "id": "http", "ok": False, "error": error})


async def test_a_viewer_gets_no_control_and_a_forged_action_is_refused_server_side(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    gateway = Recorder()
    client = gateway.client()
    store = RunStore(hub=SimpleNamespace(client=client))
    store.run = {"runId": "r1", "status": "running"}
    config = team(tmp_path)
    signed_in(monkeypatch, "bob")
    try:
        page = RunActions(store=store, enabled=True, config=config)
        assert page.role is Role.VIEWER
        page.approvals = [{"runId": None, "nodeId": "deploy", "requestTitle": "Ship it?"}]
        assert not CONTROLS & set(buttons(page))
        assert 'data-actions="viewer"' in html_of(page) and "Ship it?" in html_of(page), "approvals stay visible"
        # A page that somehow had the controls (a forged event, a stale page): the handler decides.
        forged = RunActions(store=store, enabled=True, config=config, role=Role.OPERATOR, rewind_frame=2)
        await forged._cancel_run()
        await forged._rewind_run()
        await forged._decide({"nodeId": "deploy", "iteration": 0}, True)
        assert forged.message == "Refused: only an operator may change a run, and this session is a viewer."
        assert [m for m, _ in gateway.calls if m != "listApprovals"] == [], "nothing reached the Gateway"
        lines = audit_lines(tmp_path / "audit.jsonl")
        assert [(e["user"], e["action"], e["outcome"], e["code"]) for e in lines] == [
            ("bob", "cancel", "refused", "NotAllowed"), ("bob", "rewind", "refused", "NotAllowed"),
            ("bob", "approve", "refused", "NotAllowed")]
        # No login at all while the server names its operators: nobody to trust either.
        signed_in(monkeypatch, None)
        outcome = await perform(SimpleNamespace(client=client), config, action="cancel", method="cancelRun",
                                params={"runId": "r1"}, run_id="r1")
        assert not outcome.ok and outcome.code == "NotAllowed" and gateway.calls == []
    finally:
        store.close()
        await client.aclose()


@pytest.mark.parametrize(
    ("answer", "frame", "expected"),
    [
        (refusal("RunOwnerAlive", "Run r1 is still running (live owner or fresh heartbeat).", 409), 4,
         "Refused: the run is still executing in its owner process. Tick “interrupt the live run” to rewind it anyway."),
        (refusal("FrameOutOfRange", "frameNo must be between 0 and 7.", 400), 12,
         "Refused: the run has no frame 12 to go back to (it may have been rewound meanwhile)."),
        (refusal("InvalidFrameNo", "frameNo is required", 400), 12,
         "Refused: the run has no frame 12 to go back to (it may have been rewound meanwhile)."),
        (refusal("Busy", "Another jumpToFrame is already running for r1.", 409), 4,
         "Refused: another change to this run is under way; try again in a moment."),
        (refusal("RateLimited", "Rewind quota exceeded for r1; max 10 per 1m.", 429, headers={"retry-after": "30"}), 4,
         "Refused: too many changes to this run for now; try again in 30 s."),
        (refusal("Unauthorized", "Only the run owner or an admin may rewind this run.", 401), 4,
         "Refused: only the run's owner or a Gateway admin may do this, and the dashboard's token is neither."),
        (refusal("FORBIDDEN", "Missing required scope run:admin for rewindRun", 403, requiredScope="run:admin"), 4,
         "Refused: the dashboard's token lacks the scope run:admin."),
    ],
)
async def test_gateway_refusals_in_plain_words(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               answer: Any, frame: int, expected: str) -> None:
    gateway = Recorder(answer)
    client = gateway.client()
    store = RunStore(hub=SimpleNamespace(client=client))
    store.run = {"runId": "r1", "status": "running"}
    signed_in(monkeypatch, "alice")
    actions = RunActions(store=store, enabled=True, config=team(tmp_path), rewind_frame=frame)
    try:
        assert actions.role is Role.OPERATOR
        assert await actions._rewind_run() == expected
        assert actions.last_outcome is not None and not actions.last_outcome.ok
        assert [m for m, _ in gateway.calls] == ["rewindRun"], "a refused change is not retried"
        (entry,) = audit_lines(tmp_path / "audit.jsonl")
        assert entry["user"] == "alice" and entry["action"] == "rewind" and entry["frame"] == frame
        assert entry["outcome"] == "refused" and entry["detail"] == expected and entry["force"] is False
    finally:
        store.close()
        await client.aclose()


async def test_operator_approves_cancels_and_rewinds_on_the_gateway_and_each_is_audited(
        gateway: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = team(tmp_path, gateway_url=gateway.url)
    signed_in(monkeypatch, "alice")
    hub = GatewayHub(GatewayClient(gateway.url, OP_TOKEN), grace=0.1)
    gated, slow, done = gateway.launch_run("gated"), gateway.launch_run("slow"), gateway.launch_run("demo")
    stores = [RunStore(hub=hub, run_id=run_id) for run_id in (gated, slow, done)]
    approving, cancelling, rewinding = (RunActions(store=s, enabled=True, config=config) for s in stores)
    try:
        assert approving.role is Role.OPERATOR
        # Approve: armed, the question names the node and the run, confirmed.
        await until(lambda: gateway.get_run(gated)["status"] == "waiting-approval", timeout=30, what="approval gate")
        await approving.refresh_approvals()
        approve = approving.approval_actions[0][0]
        approve._arm.clicks += 1
        assert approve.confirm_text == f"Approve this request? (node deploy of run {gated})"
        approve._yes.clicks += 1
        await until(lambda: approving.message.startswith("Approved"), timeout=15, what="approval sent")
        await until(lambda: gateway.get_run(gated)["status"] == "finished", timeout=30, what="approved run finished")

        # Cancel a running run.
        await until(lambda: gateway.get_run(slow)["status"] == "running", timeout=30, what="slow run running")
        await until(lambda: cancelling.run_store.run is not None, timeout=15, what="the run read")
        cancelling._cancel._arm.clicks += 1
        assert cancelling._cancel.confirm_text.startswith(f"Cancel run {slow}?")
        cancelling._cancel._yes.clicks += 1
        await until(lambda: cancelling.message.startswith("Cancel requested"), timeout=15, what="cancel sent")
        gateway.wait_for_run(slow, timeout=30)

        # Rewind a finished run to the frame picked in the scrubber; the notice names who did it.
        gateway.wait_for_run(done)
        await until(lambda: rewinding.run_store.tree is not None and (rewinding.run_store.tree.seq or 0) > 1,
                    timeout=30, what="the finished run's frames")
        await until(lambda: (rewinding.run_store.run or {}).get("status") == "finished", timeout=15, what="run read")
        rewinding.set_rewind_frame(1)
        rewinding._rewind._arm.clicks += 1
        assert rewinding._rewind.confirm_text == f"Rewind run {done} to frame 1? The run is finished; frames after 1 are discarded."
        rewinding._rewind._yes.clicks += 1
        await until(lambda: bool(rewinding.message), timeout=30, what="the rewind's answer")
        assert rewinding.message == "Rewound to frame 1.", rewinding.message
        await until(lambda: "by user:op" in str(rewinding._jump.object), timeout=30, what="who rewound, shown")
        assert rewinding._jump.object.startswith("Rewound from frame ") and " to 1 by user:op" in rewinding._jump.object

        lines = audit_lines(tmp_path / "audit.jsonl")
        assert [(e["user"], e["action"], e["runId"], e["outcome"]) for e in lines] == [
            ("alice", "approve", gated, "ok"), ("alice", "cancel", slow, "ok"), ("alice", "rewind", done, "ok")]
        assert lines[0]["nodeId"] == "deploy" and lines[2]["frame"] == 1 and lines[2]["force"] is False
        assert OP_TOKEN not in (tmp_path / "audit.jsonl").read_text()
    finally:
        for store in stores:
            store.close()
        await hub.aclose()


async def test_the_tokens_scopes_decide_which_controls_exist(gateway: Any, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    run_id = gateway.launch_run("gated")
    signed_in(monkeypatch, "alice")
    config = team(tmp_path, gateway_url=gateway.url)
    read_hub = GatewayHub(GatewayClient(gateway.url, "read-token"), grace=0.1)
    op_hub = GatewayHub(GatewayClient(gateway.url, OP_TOKEN), grace=0.1)
    read_store, op_store = RunStore(hub=read_hub, run_id=run_id), RunStore(hub=op_hub, run_id=run_id)
    reader = RunActions(store=read_store, enabled=True, config=config)
    operator = RunActions(store=op_store, enabled=True, config=config)
    try:
        await until(lambda: gateway.get_run(run_id)["status"] == "waiting-approval", timeout=30, what="approval gate")
        await reader.refresh_scopes()
        await operator.refresh_scopes()
        await reader.refresh_approvals()
        await operator.refresh_approvals()
        assert reader.scopes == {"run:read", "observability:read"} and operator.scopes == {"*"}
        assert not CONTROLS & set(buttons(reader)), "the read-only token gets no control, even for an operator"
        assert "Waiting for approval" in html_of(reader) or reader.approvals, "the approval is still listed"
        assert {"Cancel run", "Rewind…", "Approve", "Deny"} <= set(buttons(operator))
    finally:
        read_store.close()
        op_store.close()
        await read_hub.aclose()
        await op_hub.aclose()
        gateway.rpc("submitApproval", {"runId": run_id, "nodeId": "deploy", "decision": {"approved": False}})


def test_jump_notice_names_the_caller() -> None:
    assert jump_notice({"from": 18, "to": 3, "caller": "user:op"}) == "Rewound from frame 18 to 3 by user:op."
    assert jump_notice({"from": 18, "to": 3, "caller": None}) == \
        "Rewound from frame 18 to 3 (the Gateway did not say by whom)."
    assert jump_notice(None) == ""


async def test_an_unreachable_gateway_is_a_failed_action_in_the_audit(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    def unreachable(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    client = GatewayClient("http://gateway.test:7331", OP_TOKEN, transport=httpx.MockTransport(unreachable))
    signed_in(monkeypatch, "alice")
    try:
        outcome = await perform(SimpleNamespace(client=client), team(tmp_path), action="cancel", method="cancelRun",
                                params={"runId": "r1"}, run_id="r1")
        assert not outcome.ok and outcome.message.startswith("Failed: the Gateway could not be reached")
        (entry,) = audit_lines(tmp_path / "audit.jsonl")
        assert entry["outcome"] == "failed" and entry["code"] == "GatewayUnavailable" and entry["user"] == "alice"
    finally:
        await client.aclose()


def test_shows_control_needs_the_role_and_the_scope(monkeypatch: pytest.MonkeyPatch) -> None:
    config = DashboardConfig(actions_enabled=True, login_required=True, operators=frozenset({"alice"}))
    hub = SimpleNamespace(client=SimpleNamespace())
    signed_in(monkeypatch, "alice")
    assert roles.shows_control(config, hub, "submitApproval", frozenset({"approval:submit"}))
    assert not roles.shows_control(config, hub, "submitApproval", frozenset({"run:admin"}))
    signed_in(monkeypatch, "bob")
    assert not roles.shows_control(config, hub, "submitApproval", frozenset({"*"}))


async def test_live_rewind_is_refused_without_the_tick_and_done_with_it_on_the_gateway(
        gateway: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The real Gateway's own refusals: a live run without force (RunOwnerAlive), a frame
    that does not exist (FrameOutOfRange); then the operator's tick interrupts the live run."""
    signed_in(monkeypatch, "alice")
    config = team(tmp_path, gateway_url=gateway.url)
    hub = GatewayHub(GatewayClient(gateway.url, OP_TOKEN), grace=0.1)
    run_id = gateway.launch_run("slow")
    store = RunStore(hub=hub, run_id=run_id)
    actions = RunActions(store=store, enabled=True, config=config)
    try:
        await until(lambda: store.tree is not None and (store.tree.seq or 0) >= 3, timeout=30, what="a few frames")
        await until(lambda: (store.run or {}).get("status") == "running", timeout=15, what="the run read as running")
        actions.set_rewind_frame(1)
        actions._rewind._arm.clicks += 1
        assert "The run is live (running)" in actions._rewind.confirm_text
        actions._rewind._yes.clicks += 1
        await until(lambda: actions.last_outcome is not None and actions.last_outcome.code == "RunOwnerAlive",
                    timeout=30, what="the RunOwnerAlive refusal")
        assert actions.message.startswith("Refused: the run is still executing in its owner process.")
        actions.set_rewind_frame(9999)
        actions.force = True
        assert await actions._rewind_run() == \
            "Refused: the run has no frame 9999 to go back to (it may have been rewound meanwhile)."
        actions.set_rewind_frame(1)
        actions._force.value = True
        actions._rewind._arm.clicks += 1
        assert actions._rewind.confirm_text == (f"Rewind run {run_id} to frame 1 — the run is live: its owner process "
                                                "will be interrupted. Frames after 1 are discarded.")
        actions._rewind._yes.clicks += 1
        await until(lambda: actions.message == "Rewound to frame 1.", timeout=60, what="the forced rewind")
        lines = audit_lines(tmp_path / "audit.jsonl")
        assert [(e["frame"], e["force"], e["outcome"], e["code"]) for e in lines] == [
            (1, False, "refused", "RunOwnerAlive"), (9999, True, "refused", "FrameOutOfRange"), (1, True, "ok", None)]
    finally:
        store.close()
        await hub.aclose()
        with contextlib.suppress(GatewayServerRpcError):  # it may have finished meanwhile
            gateway.rpc("cancelRun", {"runId": run_id})

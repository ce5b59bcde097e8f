"""Operator workflows against the real Gateway: the inbox, signals, resume, re-run, launch."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
from bokeh.document import Document
from bokeh.models import Button

from dashboard.config import DashboardConfig
from dashboard.hub import GatewayHub
from dashboard.store import RunStore
from dashboard.views.inbox import ApprovalsInbox, pending_approvals, waiting_signal
from dashboard.views.launch import LaunchForm
from dashboard.views.run_ops import RunOperations, restart_node
from inspector.client import GatewayClient

from .test_hub import until
from .test_launch_form import TYPED

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

TYPED_INPUT = {"target": "api", "replicas": 2, "ratio": 1.5, "dryRun": False, "tier": "dev", "tags": ["x"]}


def labels(viewable: Any) -> list[str]:
    import panel as pn

    root = pn.panel(viewable).get_root(Document())
    return [b.label for b in root.select({"type": Button})]


def config_for(gateway: Any, **overrides: Any) -> DashboardConfig:
    return DashboardConfig(gateway_url=gateway.url, actions_enabled=True, **overrides)


@pytest.fixture
async def hub(gateway: Any) -> AsyncIterator[GatewayHub]:
    hub = GatewayHub(GatewayClient(gateway.url, "op-token"), grace=0.1)
    try:
        yield hub
    finally:
        await hub.aclose()


def status(gateway: Any, run_id: str) -> str:
    return str(gateway.get_run(run_id)["status"])


# ------------------------------------------------------------------ pure parts


def test_pending_approvals_oldest_first_and_waited() -> None:
    rows = [
        {"runId": "b", "nodeId": "n", "workflowKey": "w", "requestedAtMs": 2000, "requestTitle": "B"},
        {"runId": "a", "nodeId": "n", "iteration": 1, "requestedAtMs": 1000},
        {"runId": "c", "nodeId": "n", "requestedAtMs": None},
        {"runId": 5, "nodeId": "n"},
    ]
    found = pending_approvals(rows)
    assert [a.run_id for a in found] == ["a", "b", "c"]
    assert found[0].title == "n" and found[0].iteration == 1 and found[1].title == "B"
    assert found[1].waited(now=2 + 185) == "3 min 05 s" and found[2].waited(now=0) == "–"


def test_waiting_signal_from_run_state() -> None:
    run = {"runId": "r", "workflowKey": "signal",
           "runState": {"state": "waiting-event", "blocked": {"kind": "event", "nodeId": "release", "correlationKey": "release"}}}
    wait = waiting_signal(run)
    assert wait is not None and (wait.node_id, wait.signal_name, wait.workflow) == ("release", "release", "signal")
    assert waiting_signal({"runId": "r", "runState": {"blocked": {"kind": "approval"}}}) is None


def test_restart_node_is_the_first_that_stopped() -> None:
    states = [
        {"nodeId": "a", "state": "finished", "startedAtMs": 1},
        {"nodeId": "c", "state": "cancelled", "startedAtMs": 9},
        {"nodeId": "b", "state": "failed", "startedAtMs": 5, "iteration": 2},
        {"nodeId": "d", "state": "pending"},
    ]
    assert restart_node(states) == ("b", 2)
    assert restart_node([{"nodeId": "a", "state": "finished"}]) is None
    between_steps = [{"nodeId": "s2", "state": "pending"}, {"nodeId": "s1", "state": "pending"},
                     {"nodeId": "s0", "state": "finished"}]
    assert restart_node(between_steps, order=["s0", "s1", "s2"]) == ("s1", 0)


# ------------------------------------------------------------------ the inbox


async def test_inbox_lists_approvals_of_two_runs_and_approving_moves_the_run_on(gateway: Any, hub: GatewayHub) -> None:
    gated = gateway.launch_run("gated")
    typed = gateway.launch_run("typed-gated", input=TYPED_INPUT)
    inbox = ApprovalsInbox(hub=hub, config=config_for(gateway), can_act=True)
    try:
        async def both_listed() -> bool:
            await inbox.read(max_age=0.0)
            return {gated, typed} <= {a.run_id for a in inbox.approvals}

        for _ in range(300):
            if await both_listed():
                break
        else:
            raise AssertionError(f"both approvals not listed: {inbox.approvals}")
        mine = {a.run_id: a for a in inbox.approvals if a.run_id in (gated, typed)}
        assert (mine[gated].workflow, mine[gated].node_id, mine[gated].title) == ("gated", "deploy", "Deploy to prod")
        assert (mine[typed].workflow, mine[typed].node_id, mine[typed].title) == ("typed-gated", "apply", "Apply the plan")
        row = next(r for r in inbox.rows() if r.approval.run_id == gated)
        assert row.waited.object.startswith("waiting ")
        assert row.decisions is not None
        approve, _deny = row.decisions
        assert approve.arm() and approve.armed and gated in approve.question and "deploy" in approve.question
        assert status(gateway, gated) == "waiting-approval"  # armed: nothing sent yet
        task = approve.confirm()
        assert task is not None and await task is True
        assert inbox.message == f"Approved: node deploy of run {gated}."
        await until(lambda: status(gateway, gated) == "finished", timeout=30, what="the approved run finished")
        assert gated not in {a.run_id for a in inbox.approvals}
        assert status(gateway, typed) == "waiting-approval"
        deny = next(r for r in inbox.rows() if r.approval.run_id == typed).decisions[1]  # type: ignore[index]
        assert deny.arm()
        assert await deny.confirm() is True  # type: ignore[misc]
        await until(lambda: status(gateway, typed) in ("failed", "finished", "cancelled"), timeout=30, what="denied run ended")
    finally:
        inbox.stop()


async def test_a_viewer_sees_the_inbox_without_buttons_and_cannot_decide(gateway: Any, hub: GatewayHub) -> None:
    gated = gateway.launch_run("gated")
    # Operators are named and this session (no login) is none of them: a viewer.
    viewer = config_for(gateway, operators=frozenset({"alice"}))
    inbox = ApprovalsInbox(hub=hub, config=viewer, can_act=False)
    try:
        for _ in range(300):
            await inbox.read(max_age=0.0)
            if gated in {a.run_id for a in inbox.approvals}:
                break
        else:
            raise AssertionError("the approval was not listed")
        assert all(r.decisions is None for r in inbox.rows())
        assert set(labels(inbox)) == {"Open run"}
        # The page cannot be trusted: a viewer's decision is refused on the server.
        approval = next(a for a in inbox.approvals if a.run_id == gated)
        assert await inbox.decide(approval, True) is False
        assert inbox.message.startswith("Refused: only an operator")
        assert status(gateway, gated) == "waiting-approval"
        gateway.rpc("submitApproval", {"runId": gated, "nodeId": "deploy", "decision": {"approved": True}})
    finally:
        inbox.stop()


async def test_a_signal_resumes_a_waiting_node_and_bad_json_sends_nothing(gateway: Any, hub: GatewayHub) -> None:
    run_id = gateway.launch_run("signal")
    await until(lambda: status(gateway, run_id) == "waiting-event", timeout=30, what="the run waits for its signal")
    inbox = ApprovalsInbox(hub=hub, config=config_for(gateway), can_act=True)
    try:
        await inbox.read(max_age=0.0)
        row = next(r for r in inbox.signal_rows() if r.wait.run_id == run_id)
        assert (row.wait.node_id, row.wait.signal_name) == ("release", "release")
        form = row.form
        assert form is not None and form.name_input.value == "release"
        form.payload_input.value = '{"note": "go",}'
        assert form.send.arm() is False and not form.send.armed
        assert form.send.problem.startswith("Nothing sent: the payload is not valid JSON")
        form.payload_input.value = '["go"]'
        assert form.send.arm() is False and "must be a JSON object" in form.send.problem
        assert status(gateway, run_id) == "waiting-event"
        form.payload_input.value = '{"note": "go"}'
        assert form.send.arm() and "release" in form.send.question and run_id in form.send.question
        assert await form.send.confirm() is True  # type: ignore[misc]
        assert inbox.message == f"Signal 'release' sent to run {run_id}."
        await until(lambda: status(gateway, run_id) == "finished", timeout=30, what="the signalled run finished")
    finally:
        inbox.stop()


# ------------------------------------------------------------------ run operations


async def test_resume_a_cancelled_run_from_the_node_that_stopped(gateway: Any, hub: GatewayHub) -> None:
    run_id = gateway.launch_run("slow")
    await until(lambda: any(n["state"] == "finished" for n in gateway.rpc("listNodeStates", {"runId": run_id})),
                timeout=30, what="a first step finished")
    gateway.rpc("cancelRun", {"runId": run_id})
    await until(lambda: status(gateway, run_id) == "cancelled", timeout=30, what="cancelled")
    store = RunStore(hub=hub, run_id=run_id)
    ops = RunOperations(store=store, config=config_for(gateway), can_act=True)
    try:
        await until(lambda: ops.status == "cancelled", timeout=15, what="the store read the run")
        await until(lambda: ops.restart is not None, timeout=15, what="the restart node")
        node, _ = ops.restart  # type: ignore[misc]
        stopped = {n["nodeId"]: n["state"] for n in gateway.rpc("listNodeStates", {"runId": run_id})}
        assert stopped[node] in ("cancelled", "pending")  # cancelled mid-step, or between two steps
        assert ops._resume_box.visible and ops._rerun_box.visible
        assert ops.resume.arm() and f"from node {node}" in ops.resume.question
        assert await ops.resume.confirm() is True  # type: ignore[misc]
        assert ops.message == f"Resuming run {run_id} from node {node}."
        await until(lambda: status(gateway, run_id) == "finished", timeout=60, what="the resumed run finished")
    finally:
        store.close()


async def test_resume_a_failed_run_retries_its_failed_node(gateway: Any, hub: GatewayHub) -> None:
    run_id = gateway.launch_run("doomed")
    await until(lambda: status(gateway, run_id) == "failed", timeout=30, what="doomed failed")
    store = RunStore(hub=hub, run_id=run_id)
    ops = RunOperations(store=store, config=config_for(gateway), can_act=True)
    try:
        await until(lambda: ops.restart == ("explode", 0), timeout=15, what="the failed node found")
        assert ops.resume.arm()
        assert await ops.resume.confirm() is True  # type: ignore[misc]

        def explode_attempt() -> int:
            nodes = {n["nodeId"]: n for n in gateway.rpc("listNodeStates", {"runId": run_id})}
            return int(nodes["explode"]["lastAttempt"] or 0)

        # The node ran again (and, being doomed, failed again).
        await until(lambda: explode_attempt() >= 2 and status(gateway, run_id) == "failed", timeout=30,
                    what="the failed node retried")
    finally:
        store.close()


async def test_rerun_starts_a_new_run_with_the_same_input(gateway: Any, hub: GatewayHub) -> None:
    run_id = gateway.launch_run("typed", input=TYPED_INPUT)
    await until(lambda: status(gateway, run_id) == "finished", timeout=30, what="typed finished")
    opened: list[str] = []
    store = RunStore(hub=hub, run_id=run_id)
    ops = RunOperations(store=store, config=config_for(gateway), can_act=True, on_open=opened.append)
    try:
        await until(lambda: ops.status == "finished", timeout=15, what="the store read the run")
        assert not ops._resume_box.visible and ops._rerun_box.visible
        assert ops.rerun.arm() and "typed" in ops.rerun.question and run_id in ops.rerun.question
        new_run = await ops.rerun.confirm()  # type: ignore[misc]
        assert isinstance(new_run, str) and new_run != run_id and opened == [new_run]
        await until(lambda: status(gateway, new_run) == "finished", timeout=30, what="the re-run finished")
        assert gateway.get_run(new_run)["workflowKey"] == "typed"
        out = [gateway.rpc("getNodeOutput", {"runId": r, "nodeId": "echo", "iteration": 0}) for r in (run_id, new_run)]
        assert out[0]["row"]["note"] == out[1]["row"]["note"] == "api on dev"
        assert out[0]["row"]["value"] == out[1]["row"]["value"] == 2
    finally:
        store.close()


async def test_a_viewer_gets_no_run_operations(gateway: Any, hub: GatewayHub) -> None:
    store = RunStore(hub=hub)
    ops = RunOperations(store=store, config=config_for(gateway), can_act=False)
    try:
        assert labels(ops) == []
    finally:
        store.close()


# ------------------------------------------------------------------ launch


async def test_launch_from_the_form_starts_a_run_that_opens(gateway: Any, hub: GatewayHub) -> None:
    opened: list[str] = []
    form = LaunchForm(hub=hub, config=config_for(gateway), can_act=True, schemas={"typed": TYPED},
                      on_open=opened.append)
    await form.read()
    assert {"typed", "signal", "gated"} <= set(form.workflows)
    form.picker.value = "typed"
    assert set(form.form.widgets) == set(TYPED["properties"])  # type: ignore[arg-type]
    runs_before = len(gateway.rpc("listRuns", {"filter": {"limit": 500}}))
    form.form.widgets["target"].value = "web"
    form.form.widgets["replicas"].value = 3
    form.form.widgets["ratio"].value = 0.25
    form.form.widgets["tier"].value = "prod"
    form.form.widgets["tags"].value = "not json"
    assert form.launch.arm() is False and "tags is not valid JSON" in form.launch.problem
    form.form.widgets["tags"].value = '["blue"]'
    assert form.launch.arm() and '"target": "web"' in form.launch.question
    assert len(gateway.rpc("listRuns", {"filter": {"limit": 500}})) == runs_before  # nothing sent before Confirm
    run_id = await form.launch.confirm()  # type: ignore[misc]
    assert isinstance(run_id, str) and opened == [run_id]
    await until(lambda: status(gateway, run_id) == "finished", timeout=30, what="the launched run finished")
    out = gateway.rpc("getNodeOutput", {"runId": run_id, "nodeId": "echo", "iteration": 0})
    assert out["row"]["note"] == "web on prod" and out["row"]["value"] == 3


async def test_the_suite_prints_the_schema_the_tests_use(make_gateway: Any, tmp_path: Any) -> None:
    """The schema file an operator would hand the dashboard is zod's own output for ``typed``."""
    import json

    out = tmp_path / "schemas.json"
    make_gateway(SCHEMAS_OUT=str(out))
    assert json.loads(out.read_text())["typed"] == TYPED


async def test_a_token_without_the_scope_is_refused_in_plain_words(gateway: Any) -> None:
    gated = gateway.launch_run("gated")
    await until(lambda: status(gateway, gated) == "waiting-approval", timeout=30, what="approval gate")
    reader = GatewayHub(GatewayClient(gateway.url, "read-token"), grace=0.1)
    inbox = ApprovalsInbox(hub=reader, config=config_for(gateway), can_act=True)
    try:
        await inbox.read(max_age=0.0)
        approval = next(a for a in inbox.approvals if a.run_id == gated)
        assert await inbox.decide(approval, True) is False
        assert inbox.message == "Refused: the dashboard's token lacks the scope approval:submit."
        assert status(gateway, gated) == "waiting-approval"
        # Known now: a new inbox on this token offers no decision it cannot make.
        again = ApprovalsInbox(hub=reader, config=config_for(gateway), can_act=True)
        await again.read(max_age=0.0)
        assert all(r.decisions is None for r in again.rows())
        again.stop()
    finally:
        inbox.stop()
        await reader.aclose()
        gateway.rpc("submitApproval", {"runId": gated, "nodeId": "deploy", "decision": {"approved": True}})

"""The Gateway fixtures drive a real Smithers Gateway, and the Gateway behaves as we rely on.

These are the ground truths the rest of the suite builds on: runs launched over HTTP RPC reach a
terminal status, the DevTools snapshot of a finished run has every task finished (and our own
:class:`~inspector.tree.DevToolsTree` reads it), a crash and restart keeps the runs in the
database, and scopes are enforced. If one of these fails, the end-to-end tests that follow are
testing the fixture, not the dashboard.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from inspector.tree import DevToolsTree
from tests.gateway.server import READ_TOKEN, GatewayRpcError

if TYPE_CHECKING:
    from tests.gateway.plugin import GatewayFactory
    from tests.gateway.server import GatewayServer


def _tasks(node: dict[str, Any]) -> list[dict[str, Any]]:
    """Every task node of a wire tree, in document order."""
    found: list[dict[str, Any]] = []
    stack = [node]
    while stack:
        current = stack.pop()
        if current.get("type") == "task":
            found.append(current)
        stack.extend(reversed(current.get("children", [])))
    return found


def test_demo_run_finishes_with_every_task_finished(gateway: GatewayServer) -> None:
    assert gateway.health()["ok"] is True
    run_id = gateway.launch_run("demo")

    run = gateway.wait_for_run(run_id, timeout=60)

    assert run["status"] == "finished"
    assert run["workflowName"] == "demo"
    assert run["summary"] == {"finished": 4}
    snapshot = gateway.rpc("getDevToolsSnapshot", {"runId": run_id})
    assert snapshot["runId"] == run_id
    root = snapshot["root"]
    assert root["type"] == "workflow" and root["name"] == "demo"
    tasks = _tasks(root)
    assert [t["task"]["nodeId"] for t in tasks] == ["fetch", "left", "right", "ship"]
    assert {t["task"]["state"] for t in tasks} == {"finished"}
    # Our tree model takes the real snapshot as it comes and gives it back unchanged.
    tree = DevToolsTree({"version": 1, "kind": "snapshot", "snapshot": snapshot})
    assert tree.state_counts() == {"finished": 4}
    assert tree.snapshot()["root"] == root


def test_failing_workflow_ends_failed(gateway: GatewayServer) -> None:
    run_id = gateway.launch_run("doomed")

    run = gateway.wait_for_run(run_id, timeout=60)

    assert run["status"] == "failed"
    assert "boom: disk full" in (run.get("errorJson") or "")


def test_killed_gateway_restarts_on_same_port_with_same_runs(fresh_gateway: GatewayServer) -> None:
    gw = fresh_gateway
    run_id = gw.launch_run("demo")
    gw.wait_for_run(run_id, statuses=("finished",), timeout=60)
    port, first_pid = gw.port, gw.pid

    gw.kill()

    assert not gw.is_running()
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)

    gw.start()

    assert gw.port == port and gw.pid != first_pid
    assert gw.health()["identity"]["pid"] == gw.pid
    run = gw.get_run(run_id)
    assert run["runId"] == run_id and run["status"] == "finished"
    assert [r["runId"] for r in gw.rpc("listRuns", {})] == [run_id]


def test_run_interrupted_by_a_crash_is_orphaned_until_its_heartbeat_is_stale(
    make_gateway: GatewayFactory,
) -> None:
    """What the dashboard must show after a Gateway crash mid-run (Smithers 0.32.0).

    The run keeps status ``running`` with the dead process as its owner: nothing marks it
    interrupted and nothing resumes it. ``resumeRun`` answers ``resume_requested`` at once, but
    while the run's heartbeat is fresh (the engine's RUN_HEARTBEAT_STALE_MS, 30 s) the resume
    fails in the background with RUN_STILL_RUNNING, ``options.force`` notwithstanding (the
    Gateway does not pass it on). Once the heartbeat is stale a resume takes and the run ends.
    """
    gw = make_gateway(SLOW=6)
    run_id = gw.launch_run("slow")
    # Crash it once a task finished and the run is still going: mid-run.
    before = gw.wait_for_run_where(
        run_id,
        lambda run: run["status"] == "running" and run["summary"].get("finished", 0) >= 1,
        timeout=30,
        description="running with a finished task",
    )
    owner = before["runtimeOwnerId"]
    assert isinstance(owner, str) and owner.startswith(f"pid:{gw.pid}:")

    gw.kill()
    gw.start()

    orphan = gw.get_run(run_id)
    assert orphan["status"] == "running"
    assert orphan["runtimeOwnerId"] == owner
    assert orphan["finishedAtMs"] is None
    heartbeat_ms = orphan["heartbeatAtMs"]
    assert isinstance(heartbeat_ms, int)

    forced = gw.rpc("resumeRun", {"runId": run_id, "options": {"force": True}})
    assert forced == {"runId": run_id, "status": "resume_requested"}
    assert gw.get_run(run_id)["runtimeOwnerId"] == owner  # acknowledged, yet not resumed

    deadline = time.monotonic() + 90
    while True:
        assert gw.rpc("resumeRun", {"runId": run_id})["status"] == "resume_requested"
        claimed = gw.get_run(run_id)
        if claimed["runtimeOwnerId"] != owner:
            break
        assert time.monotonic() < deadline, f"run {run_id} was never resumed: {claimed}"
        time.sleep(1.0)  # poll interval between resume attempts
    assert time.time() * 1000 - heartbeat_ms > 30_000

    run = gw.wait_for_run(run_id, timeout=60)
    assert run["status"] == "finished"
    assert run["summary"] == {"finished": 6}


def test_read_token_cannot_launch_but_can_read(gateway: GatewayServer) -> None:
    response = gateway.rpc_response("launchRun", {"workflow": "demo", "input": {}}, token=READ_TOKEN)

    assert response.status_code == 403
    frame = response.json()
    assert frame["type"] == "res" and frame["ok"] is False
    assert frame["error"]["code"] == "FORBIDDEN"
    assert frame["error"]["requiredScope"] == "run:write"
    with pytest.raises(GatewayRpcError) as raised:
        gateway.launch_run("demo", token=READ_TOKEN)
    assert raised.value.code == "FORBIDDEN" and raised.value.status_code == 403

    run_id = gateway.launch_run("demo")
    assert gateway.get_run(run_id, token=READ_TOKEN)["runId"] == run_id


def test_missing_token_is_unauthorized(gateway: GatewayServer) -> None:
    response = gateway.rpc_response("listRuns", {}, token=None)

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "UNAUTHORIZED"

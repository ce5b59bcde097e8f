"""RunStore: batching, stale-data freedom, time travel, debounced refreshes; and a real run."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest

from dashboard.hub import GatewayHub
from dashboard.store import EventRecord, RunStore
from inspector.client import GatewayClient
from inspector.protocol import TimeTravelJump
from inspector.stream import Resynced, TimeTravelled

from .test_hub import (
    FakeFeeds,
    FakeRpc,
    RpcFailure,
    delta_event,
    make_hub,
    online,
    run_event,
    set_state,
    snapshot_event,
    task_node,
    until,
)


def answers() -> dict[str, Any]:
    return {
        "getRun": lambda p: {"runId": p["runId"], "workflowName": f"wf-{p['runId']}", "status": "running"},
        "listScores": lambda p: [
            {"runId": p["runId"], "nodeId": p.get("nodeId", "a"), "iteration": 0, "scorerId": "s", "score": 0.5}
        ],
        "getNodeOutput": lambda p: {"status": "produced", "row": {"who": f"{p['runId']}/{p['nodeId']}"}, "schema": None},
        "getNodeDiff": lambda p: (_ for _ in ()).throw(RpcFailure("AttemptNotFinished", "no jj pointer", 409)),
    }


async def started(feeds: FakeFeeds, run_id: str) -> None:
    await until(lambda: run_id in feeds.queues, what=f"subscription to {run_id}")


async def test_a_burst_of_deltas_reaches_views_in_few_batches() -> None:
    feeds, rpc = FakeFeeds(), FakeRpc(answers())
    hub = make_hub(feeds, rpc)
    store = RunStore(hub=hub, run_id="r1")
    ticks: list[tuple[int | None, int]] = []
    store.param.watch(lambda e: ticks.append((store.tree.seq, len(store.last_changes))), "tree_version")
    await started(feeds, "r1")
    feeds.push("r1", online(), snapshot_event("r1", 0, [task_node(10, "a")]))
    for i in range(200):
        feeds.push("r1", delta_event(i, [set_state(10, "a", "in-progress", attempt=i)]))
    await until(lambda: store.tree.seq == 200 and bool(ticks) and ticks[-1][0] == 200)
    assert sum(n for _, n in ticks) == 201  # every change reported exactly once
    assert len(ticks) <= 10, f"{len(ticks)} notifications for one burst"
    assert store.connection_status == "online"
    store.close()
    await hub.aclose()


async def test_changing_run_clears_everything_at_once_and_drops_the_late_answer() -> None:
    feeds, rpc = FakeFeeds(), FakeRpc(answers())
    slow_a = rpc.gate("getRun", runId="A")
    hub = make_hub(feeds, rpc)
    store = RunStore(hub=hub, run_id="A")
    await started(feeds, "A")
    feeds.push("A", online(), snapshot_event("A", 0, [task_node(10, "a")]), run_event("A", "node.started", nodeId="a"))
    await until(lambda: len(store.events) == 1 and len(store.tree) == 2)
    await until(lambda: rpc.count("getRun", runId="A") == 1)
    store.run_id = "B"
    # Cleared synchronously, before any answer about B.
    assert store.events == () and store.run == {} and store.scores == [] and len(store.tree) == 0
    assert store.connection_status == "idle"
    await until(lambda: store.run.get("runId") == "B", what="B's run record")
    slow_a.set()  # A's answer arrives after the switch ...
    await until(lambda: rpc.count("getRun", runId="A") == 1)
    await store.wait_idle()
    assert store.run.get("runId") == "B"  # ... and is dropped
    # A's stream no longer reaches this store.
    feeds.push("A", run_event("A", "node.finished", nodeId="a"))
    await asyncio.sleep(0)
    store.flush()
    assert all(e.node_id != "a" for e in store.events)
    store.close()
    await hub.aclose()


async def test_selecting_another_node_drops_the_slow_output_of_the_first() -> None:
    feeds, rpc = FakeFeeds(), FakeRpc(answers())
    slow = rpc.gate("getNodeOutput", nodeId="a")
    hub = make_hub(feeds, rpc)
    store = RunStore(hub=hub, run_id="r1")
    await started(feeds, "r1")
    feeds.push("r1", online(), snapshot_event("r1", 3, [task_node(10, "a", "finished"), task_node(11, "b", "finished")]))
    await until(lambda: len(store.tree) == 3)
    store.selected_node = 10
    assert store.node_loading
    await until(lambda: rpc.count("getNodeOutput", nodeId="a") == 1)
    store.selected_node = 11
    assert store.node_output is None and store.node_scores == []
    await until(lambda: store.node_output is not None, what="b's output")
    assert store.node_output["row"] == {"who": "r1/b"}  # type: ignore[index]
    slow.set()
    await store.wait_idle()
    assert store.node_output["row"] == {"who": "r1/b"}  # type: ignore[index]
    assert store.node_scores and store.node_scores[0]["nodeId"] == "b"
    assert store.node_diff is None and "no jj pointer" in (store.node_diff_error or "")
    assert not store.node_loading
    store.close()
    await hub.aclose()


async def test_deep_link_by_smithers_node_id_waits_for_the_tree() -> None:
    feeds, rpc = FakeFeeds(), FakeRpc(answers())
    hub = make_hub(feeds, rpc)
    store = RunStore(hub=hub, run_id="r1")
    store.select_task("b")
    assert store.selected_node is None
    await started(feeds, "r1")
    feeds.push("r1", snapshot_event("r1", 1, [task_node(10, "a"), task_node(11, "b")]))
    await until(lambda: store.selected_node == 11)
    await until(lambda: store.node_output is not None)
    store.close()
    await hub.aclose()


async def test_finished_nodes_refresh_scores_and_selected_output_once_per_burst() -> None:
    feeds, rpc = FakeFeeds(), FakeRpc(answers())
    hub = make_hub(feeds, rpc)
    store = RunStore(hub=hub, run_id="r1", refresh_delay=0.1)
    await started(feeds, "r1")
    feeds.push("r1", online(), snapshot_event("r1", 0, [task_node(10, "a", "in-progress"), task_node(11, "b")]))
    await until(lambda: len(store.tree) == 3)
    store.selected_node = 10
    await store.wait_idle()
    scores_before = rpc.count("listScores", runId="r1") - rpc.count("listScores", nodeId="a")
    outputs_before = rpc.count("getNodeOutput", nodeId="a")
    # Distinct transitions (b's loop iterations): a re-emitted one would not be logged.
    feeds.push("r1", *[run_event("r1", "node.finished", nodeId=n, iteration=i)
                       for n, i in (("a", 0), ("b", 0), ("b", 1), ("b", 2))])
    await until(lambda: len(store.events) == 4)
    await store.wait_idle()
    scores_after = rpc.count("listScores", runId="r1") - rpc.count("listScores", nodeId="a")
    assert scores_after - scores_before == 1
    assert rpc.count("getNodeOutput", nodeId="a") - outputs_before == 1
    # A node that is not selected finishing does not re-read the selected output.
    feeds.push("r1", run_event("r1", "node.finished", nodeId="b", iteration=3))
    await until(lambda: len(store.events) == 5)
    await store.wait_idle()
    assert rpc.count("getNodeOutput", nodeId="a") - outputs_before == 1
    store.close()
    await hub.aclose()


async def test_time_travel_drops_future_outputs_and_says_so() -> None:
    feeds, rpc = FakeFeeds(), FakeRpc(answers())
    hub = make_hub(feeds, rpc)
    store = RunStore(hub=hub, run_id="r1")
    await started(feeds, "r1")
    feeds.push("r1", online(), snapshot_event("r1", 18, [task_node(10, "a", "finished")]))
    await until(lambda: store.tree.seq == 18)
    store.selected_node = 10
    await until(lambda: store.node_output is not None and bool(store.scores))
    await store.wait_idle()
    gate = rpc.gate("getNodeOutput", nodeId="a")  # hold the re-read so we can see the drop
    jump = TimeTravelJump("r1", 18, 3, int(time.time() * 1000), "user:op")
    feeds.push("r1", TimeTravelled(jump), Resynced("run rewound from frame 18 to frame 3"),
               snapshot_event("r1", 3, [task_node(10, "a", "pending")]))
    await until(lambda: store.last_jump is not None)
    assert store.last_jump["from"] == 18 and store.last_jump["to"] == 3  # type: ignore[index]
    assert store.notice == "Rewound from frame 18 to 3"
    assert store.node_output is None
    assert any(e.event == "run.time_travel_jumped" for e in store.events)
    await until(lambda: store.tree.seq == 3)
    assert store.selected_node == 10  # the selection survives the rebuild
    gate.set()
    await until(lambda: store.node_output is not None, what="output re-read after the rewind")
    store.close()
    await hub.aclose()


async def test_status_errors_and_heartbeats_are_exposed() -> None:
    from inspector.status import ConnectionState, ConnectionStatus
    from inspector.stream import Heartbeat, StatusChanged

    feeds, rpc = FakeFeeds(), FakeRpc(answers())
    rpc.answers["getRun"] = lambda p: (_ for _ in ()).throw(RpcFailure("RunNotFound", "Run not found: nope"))
    hub = make_hub(feeds, rpc)
    store = RunStore(hub=hub, run_id="nope")
    await started(feeds, "nope")
    since = time.time() - 30
    feeds.push("nope", Heartbeat(42.0), StatusChanged(ConnectionState(
        ConnectionStatus.OFFLINE, since, outage_since=since, retry_in=2.5, error="cannot reach the gateway")))
    await until(lambda: store.connection_status == "offline" and store.last_heartbeat == 42.0)
    assert store.outage_since == since
    # The Gateway does not know the run: the hub asked once (getRun) and stopped retrying.
    await until(lambda: store.connection_error == "run nope not found on the Gateway")
    assert store.retry_in is None and store.outage_since == since
    await until(lambda: store.run_error is not None)
    assert "Run not found" in store.run_error  # type: ignore[operator]
    assert any(isinstance(e, EventRecord) and e.event == "connection.offline" for e in store.events)
    store.close()
    await hub.aclose()


async def test_event_log_is_bounded() -> None:
    feeds, rpc = FakeFeeds(), FakeRpc(answers())
    hub = make_hub(feeds, rpc)
    store = RunStore(hub=hub, max_events=50)
    store.run_id = "r1"
    await started(feeds, "r1")
    feeds.push("r1", *[run_event("r1", "node.pending", nodeId=f"n{i}") for i in range(500)])
    await until(lambda: bool(store.events) and store.events[-1].node_id == "n499")
    assert len(store.events) == 50 and store.events[0].node_id == "n450"
    store.close()
    await hub.aclose()


# ---------------------------------------------------------------------------- real Gateway


@pytest.fixture
async def real_hub(gateway: Any) -> Any:
    hub = GatewayHub(GatewayClient(gateway.url, "op-token"), grace=0.2)
    yield hub
    await hub.aclose()


async def test_store_follows_a_real_rich_run(gateway: Any, real_hub: GatewayHub) -> None:
    run_id = gateway.launch_run("rich")
    store = RunStore(hub=real_hub, run_id=run_id)
    try:
        await until(lambda: store.connection_status == "online", timeout=20)
        store.select_task("plan")
        await until(lambda: store.settled, timeout=60, what="run settled")
        await store.wait_idle()
        snapshot = await real_hub.client.get_devtools_snapshot(run_id)
        assert store.tree.snapshot()["root"] == snapshot["root"]
        await until(lambda: bool(store.scores), timeout=10, what="scores")
        assert {s["nodeId"] for s in store.scores} >= {"plan", "refine"}
        assert store.run.get("status") == "finished"
        plan = store.selected()
        assert plan is not None and plan.node_id == "plan"
        await until(lambda: store.node_output is not None, timeout=10)
        assert store.node_output["status"] == "produced"  # type: ignore[index]
        assert "<script>" in store.node_output["row"]["note"]  # type: ignore[index]  # raw: views escape
        assert store.node_diff is None and store.node_diff_error  # no jj workspace
        names = {e.event for e in store.events}
        assert {"node.started", "node.finished", "node.failed", "node.retrying", "run.completed"} <= names
    finally:
        store.close()


async def test_store_reports_a_real_rewind(gateway: Any, real_hub: GatewayHub) -> None:
    run_id = gateway.launch_run("rich")
    gateway.wait_for_run(run_id)
    store = RunStore(hub=real_hub, run_id=run_id)
    try:
        await until(lambda: store.settled, timeout=30)
        last = store.tree.seq
        assert last is not None and last > 3
        httpx.post(f"{gateway.url}/v1/rpc/rewindRun", json={"runId": run_id, "frameNo": 3, "confirm": True},
                   headers={"Authorization": "Bearer op-token"}, timeout=30).raise_for_status()
        await until(lambda: store.last_jump is not None, timeout=20, what="time travel seen")
        assert store.notice.startswith("Rewound from frame")
        assert store.last_jump["to"] == 3  # type: ignore[index]
        await until(lambda: store.settled, timeout=60, what="settled again after the rewind")
        await store.wait_idle()
        snapshot = await real_hub.client.get_devtools_snapshot(run_id)
        assert store.tree.snapshot()["root"] == snapshot["root"]
    finally:
        store.close()


def test_store_without_hub_is_inert() -> None:
    store = RunStore(run_id="x")
    assert store.tree is not None and store.connection_status == "idle"
    store.selected_node = 3
    assert store.node_output is None and not store.node_loading


_ = httpx  # used by the rewind test


async def test_run_heartbeats_keep_time_but_never_fill_the_log() -> None:
    """``run.heartbeat`` comes every second, even for a finished run: logged, 2,000 of them
    would push the run's whole history out of the ring buffer in about half an hour."""
    feeds, rpc = FakeFeeds(), FakeRpc(answers())
    hub = make_hub(feeds, rpc)
    store = RunStore(hub=hub, run_id="r1", max_events=10)
    await started(feeds, "r1")
    feeds.push("r1", run_event("r1", "node.finished", nodeId="a"), *[run_event("r1", "run.heartbeat") for _ in range(20)])
    await until(lambda: store.last_heartbeat is not None and len(store.events) == 1)
    assert [e.event for e in store.events] == ["node.finished"]
    late = RunStore(hub=hub, run_id="r1")  # a late joiner's catch-up has no heartbeats either
    await until(lambda: len(late.events) == 1)
    assert late.last_heartbeat is not None
    late.close()
    store.close()
    await hub.aclose()

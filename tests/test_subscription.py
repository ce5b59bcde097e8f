"""The resilient DevTools subscription against a scripted hostile Gateway."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

import pytest

from inspector.client import GatewayClient
from inspector.status import Backoff, ConnectionStatus
from inspector.stream import (
    DevToolsSubscription,
    Resynced,
    RunEvent,
    Settled,
    StatusChanged,
    SubscriptionItem,
    TimeTravelled,
    TreeUpdated,
)

from .scripted_gateway import Plan, ScriptedGateway

if TYPE_CHECKING:
    from collections.abc import Callable


class Watch:
    """Consume a subscription in a task; poll its items and tree with deadlines."""

    def __init__(self, sub: DevToolsSubscription) -> None:
        self.sub = sub
        self.items: list[SubscriptionItem] = []
        self.task = asyncio.create_task(self._consume())

    async def _consume(self) -> None:
        async for item in self.sub:
            self.items.append(item)

    async def until(self, condition: Callable[[], bool], timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if self.task.done():
                self.task.result()
                if condition():
                    return
                raise AssertionError("the subscription ended before the condition held")
            if time.monotonic() > deadline:
                raise AssertionError(f"condition not met within {timeout} s; items: {self.items[-8:]}")
            await asyncio.sleep(0.01)

    def of(self, kind: type) -> list[Any]:
        return [i for i in self.items if isinstance(i, kind)]

    def statuses(self) -> list[str]:
        return [i.state.status.value for i in self.of(StatusChanged)]

    async def stop(self) -> None:
        self.sub.stop()
        await asyncio.wait_for(self.task, 5)


def fast_backoff() -> Backoff:
    return Backoff(base=0.01, cap=0.05, healthy_after=0.5)


async def watch(gw: ScriptedGateway, token: str = "tok", **kw: Any) -> tuple[GatewayClient, Watch]:
    client = GatewayClient(gw.url, token)
    sub = DevToolsSubscription(client, gw.run_id, backoff=fast_backoff(), **kw)
    return client, Watch(sub)


def equal_to_truth(gw: ScriptedGateway, w: Watch) -> Callable[[], bool]:
    return lambda: not w.sub.tree.empty and w.sub.tree.snapshot()["root"] == gw.truth.snapshot()["root"] and w.sub.tree.seq == gw.truth.seq


async def test_honest_stream_follows_the_truth_and_goes_online() -> None:
    async with ScriptedGateway() as gw:
        client, w = await watch(gw)
        await w.until(lambda: w.sub.state.status is ConnectionStatus.ONLINE)
        for node_id in (100, 101, 102):
            await gw.advance([gw.set_state(node_id, "in-progress")])
            await gw.advance([gw.set_state(node_id, "finished")])
        await w.until(equal_to_truth(gw, w))
        assert w.statuses()[:2] == ["connecting", "online"]
        assert w.sub.tree.state_counts() == {"finished": 3, "pending": 3}
        assert gw.connections == 1 and w.sub.stats.resyncs == 0
        await w.stop()
        await client.aclose()


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        ("gap", "does not follow"),
        ("unknown-op", "unknown op"),
        ("unknown-id", "unknown node id"),
        ("malformed-json", "undecodable"),
        ("bad-payload", "malformed DevTools event"),
        ("backpressure", "BackpressureDisconnect"),
        ("duplicate-ids", "appears twice"),
    ],
)
async def test_faults_rebaseline_and_end_on_the_truth(fault: str, reason: str) -> None:
    async with ScriptedGateway() as gw:
        frames: dict[str, list[Any]] = {
            "gap": [{"version": 1, "kind": "delta", "delta": {"version": 1, "baseSeq": 5, "seq": 6, "ops": []}}],
            "unknown-op": [gw.delta([{"op": "teleport", "id": 100}])],
            "unknown-id": [gw.delta([{"op": "updateTask", "id": 999, "task": {}}])],
            "malformed-json": ['{"type": "event", "event": "devtools.ev'],
            "bad-payload": [{"type": "event", "event": "devtools.event", "payload": {"streamId": "$STREAM", "runId": "run-1", "event": 42}}],
            "backpressure": [{"type": "event", "event": "devtools.error", "payload": {
                "streamId": "$STREAM", "runId": "run-1", "error": {"code": "BackpressureDisconnect", "message": "too slow"}}}],
            "duplicate-ids": [gw.delta([{"op": "addNode", "parentId": 2, "index": 0, "node": {"id": 100, "children": []}}])],
        }
        gw.plans = [Plan(frames=frames[fault])]
        client, w = await watch(gw)
        await w.until(lambda: bool(w.of(Resynced)))
        await gw.advance([gw.set_state(100, "finished")])
        await w.until(equal_to_truth(gw, w))
        resynced = w.of(Resynced)
        assert reason in resynced[0].reason, resynced[0].reason
        assert gw.connections == 2
        assert "afterSeq" not in gw.stream_requests[1], "a rebaseline asks for a fresh snapshot"
        await w.stop()
        await client.aclose()


@pytest.mark.parametrize("then", ["abort", "cut", "close"])
async def test_connection_loss_goes_offline_and_resumes_after_last_seq(then: str) -> None:
    async with ScriptedGateway() as gw:
        await gw.advance([gw.set_state(100, "in-progress")])
        gw.plans = [Plan(then=then)]
        client, w = await watch(gw)
        await w.until(lambda: gw.connections >= 2 and w.sub.state.status is ConnectionStatus.ONLINE)
        await gw.advance([gw.set_state(100, "finished")])
        await w.until(equal_to_truth(gw, w))
        assert "offline" in w.statuses()
        offline = next(i.state for i in w.of(StatusChanged) if i.state.status is ConnectionStatus.OFFLINE)
        assert offline.outage_since is not None and offline.error
        assert gw.stream_requests[1].get("afterSeq") == 1
        await w.stop()
        await client.aclose()


async def test_devtools_frames_before_the_subscribe_response_are_accepted() -> None:
    async with ScriptedGateway() as gw:
        gw.plans = [Plan(before_response=True)]
        client, w = await watch(gw)
        await w.until(equal_to_truth(gw, w))
        assert w.sub.stats.resyncs == 0
        await w.stop()
        await client.aclose()


async def test_frames_of_another_stream_or_run_are_ignored() -> None:
    async with ScriptedGateway() as gw:
        foreign = {"type": "event", "event": "devtools.event", "payload": {
            "streamId": "someone-else", "runId": "run-1", "event": {"version": 1, "kind": "delta",
                                                                    "delta": {"version": 1, "baseSeq": 9, "seq": 10, "ops": []}}}}
        other_run = {"type": "event", "event": "devtools.event", "payload": {
            "streamId": "$STREAM", "runId": "run-2", "event": 42}}
        gw.plans = [Plan(frames=[foreign, other_run])]
        client, w = await watch(gw)
        await gw.advance([gw.set_state(101, "finished")])
        await w.until(equal_to_truth(gw, w))
        assert w.sub.stats.resyncs == 0 and gw.connections == 1
        await w.stop()
        await client.aclose()


async def test_rejected_token_is_unauthorized_and_does_not_hot_loop() -> None:
    async with ScriptedGateway() as gw:
        client = GatewayClient(gw.url, "wrong")
        sub = DevToolsSubscription(client, gw.run_id, backoff=fast_backoff(), unauthorized_retry=0.3)
        w = Watch(sub)
        times: list[float] = []
        gw.on_connect = lambda _: times.append(time.monotonic())
        await w.until(lambda: sub.state.status is ConnectionStatus.UNAUTHORIZED)
        await w.until(lambda: len(times) >= 3, timeout=5)
        gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
        assert min(gaps) >= 0.25, gaps
        assert sub.state.error and "Invalid token" in sub.state.error
        await w.stop()
        await client.aclose()


async def test_time_travel_wrapped_in_run_event_rebaselines_to_lower_seq() -> None:
    async with ScriptedGateway() as gw:
        for node_id in (100, 101, 102):
            await gw.advance([gw.set_state(node_id, "finished")])
        jump = {"type": "event", "event": "run.event", "payload": {
            "streamId": "x", "event": "run.time_travel_jumped",
            "payload": {"runId": "run-1", "fromFrameNo": 3, "toFrameNo": 1, "timestampMs": 1, "caller": "user:op"}}}
        gw.plans = [Plan(frames=[jump])]

        def rewind_truth(index: int) -> None:
            # By the time the client reconnects, the Gateway's history really went back.
            if index == 1:
                gw.truth.apply({"version": 1, "kind": "snapshot", "snapshot": {**gw.truth.snapshot(), "seq": 1, "frameNo": 1}})
                gw.history.clear()

        gw.on_connect = rewind_truth
        client, w = await watch(gw)
        await w.until(lambda: bool(w.of(TimeTravelled)))
        assert w.of(TimeTravelled)[0].jump.to_frame_no == 1
        await w.until(lambda: w.sub.tree.seq == 1)
        await gw.advance([gw.set_state(103, "in-progress")])
        await w.until(equal_to_truth(gw, w))
        assert any("rewound" in r.reason for r in w.of(Resynced))
        await w.stop()
        await client.aclose()


async def test_completion_reconciles_with_the_snapshot_and_settles() -> None:
    """The stream may never send the last task-state change; the final snapshot is the truth."""
    async with ScriptedGateway() as gw:
        client, w = await watch(gw, stop_when_settled=True)
        await gw.advance([gw.set_state(100, "in-progress")])
        await w.until(lambda: w.sub.tree.seq == 1)
        # The truth moves on without the stream telling us (as after a forced rewind).
        gw.truth.apply(gw.delta([gw.set_state(100, "finished")]))
        await gw.finish()
        await asyncio.wait_for(w.task, 10)
        assert isinstance(w.items[-1], Settled) and w.items[-1].run_status == "finished"
        assert equal_to_truth(gw, w)()
        assert any(isinstance(i, RunEvent) and i.frame.event == "run.completed" for i in w.items)
        await client.aclose()


async def test_already_finished_run_settles_without_run_completed() -> None:
    async with ScriptedGateway() as gw:
        await gw.advance([gw.set_state(100, "finished")])
        await gw.finish(announce=False)
        client, w = await watch(gw, stop_when_settled=True)
        await asyncio.wait_for(w.task, 10)
        assert isinstance(w.items[-1], Settled)
        assert equal_to_truth(gw, w)()
        await client.aclose()


async def test_flapping_gateway_escalates_backoff_instead_of_hot_looping() -> None:
    async with ScriptedGateway() as gw:
        gw.plans = [Plan(then="abort") for _ in range(6)]
        client = GatewayClient(gw.url, "tok")
        sub = DevToolsSubscription(client, gw.run_id, backoff=Backoff(base=0.02, cap=0.4, healthy_after=30))
        w = Watch(sub)
        await w.until(lambda: gw.connections >= 7, timeout=15)
        await w.until(lambda: sub.state.status is ConnectionStatus.ONLINE)
        ceilings = [i.state.attempt for i in w.of(StatusChanged) if i.state.status is ConnectionStatus.OFFLINE]
        assert ceilings == sorted(ceilings) and ceilings[-1] >= 4, ceilings
        await w.stop()
        await client.aclose()


async def test_gateway_down_at_start_then_up() -> None:
    async with ScriptedGateway() as gw:
        port = gw.port
    client = GatewayClient(f"http://127.0.0.1:{port}", "tok")
    sub = DevToolsSubscription(client, "run-1", backoff=fast_backoff())
    w = Watch(sub)
    await w.until(lambda: sub.state.status is ConnectionStatus.OFFLINE)
    assert sub.state.outage_since is not None
    from websockets.asyncio.server import serve

    gw2 = ScriptedGateway()
    gw2._server = await serve(gw2._handle, "127.0.0.1", port)
    gw2.port = port
    try:
        await w.until(equal_to_truth(gw2, w))
        assert sub.state.status is ConnectionStatus.ONLINE and sub.state.outage_since is None
    finally:
        await w.stop()
        await gw2.__aexit__()
        await client.aclose()


async def test_cancelling_the_consumer_closes_the_socket() -> None:
    async with ScriptedGateway() as gw:
        client, w = await watch(gw)
        await w.until(lambda: w.sub.state.status is ConnectionStatus.ONLINE)
        w.task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await w.task
        deadline = time.monotonic() + 5
        while gw._live and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        assert not gw._live
        assert w.sub.state.status is ConnectionStatus.IDLE
        await client.aclose()


async def test_tree_updates_carry_the_change() -> None:
    async with ScriptedGateway() as gw:
        client, w = await watch(gw)
        await w.until(lambda: bool(w.of(TreeUpdated)))
        await gw.advance([gw.set_state(104, "failed")])
        await w.until(lambda: len(w.of(TreeUpdated)) >= 2)
        change = w.of(TreeUpdated)[1].change
        assert change.kind == "delta" and change.updated == (104,) and not change.rebuilt
        await w.stop()
        await client.aclose()


def test_durable_history_rows_become_the_live_events() -> None:
    """/v1/api/events rows -> the RunEvents streamRunEvents would have replayed."""
    from inspector.stream import durable_run_events

    rows = [
        {"seq": 0, "event": "RunStarted", "payload": {"type": "RunStarted", "runId": "r", "timestampMs": 1000}, "timestampMs": 1000},
        {"seq": 1, "event": "FrameCommitted", "payload": {"frameNo": 1}, "timestampMs": 1001},
        {"seq": 2, "event": "NodeStarted", "payload": {"type": "NodeStarted", "nodeId": "a", "iteration": 0, "attempt": 1,
                                                       "correlation": {"runId": "r"}}, "timestampMs": 1500},
        {"seq": 3, "event": "NodeFailed", "payload": {"nodeId": "a", "error": {"message": "boom"}}, "timestampMs": 2000},
        {"seq": 4, "event": "NodeWaitingApproval", "payload": {"nodeId": "gate"}, "timestampMs": 2500},
        {"seq": 5, "event": "RunFailed", "payload": {}, "timestampMs": 3000},
        {"seq": 6, "payload": {}},  # no event name: skipped
    ]
    events = durable_run_events(rows, "r")
    assert [(e.frame.event, e.at) for e in events] == [
        ("run.started", 1.0), ("node.started", 1.5), ("node.failed", 2.0), ("node.waiting_approval", 2.5),
        ("run.completed", 3.0)]
    assert all(e.replayed and e.seq is None and e.frame.payload["runId"] == "r" for e in events)
    started, failed = events[1].frame.payload, events[2].frame.payload
    assert started == {"runId": "r", "nodeId": "a", "iteration": 0, "attempt": 1, "state": "in-progress"}
    assert failed["state"] == "failed" and failed["error"] == {"message": "boom"}
    assert events[-1].frame.payload["status"] == "failed"

"""The subscription's policy, frame by frame: no socket, no task, a clock we move by hand."""

from __future__ import annotations

import json
import random
from typing import Any

from hypothesis import given, settings, strategies as st

from inspector.errors import FrameDecodeError, GatewayRpcError, GatewayStalled, GatewayUnavailable
from inspector.protocol import EventFrame, ResponseFrame, decode_frame
from inspector.status import Backoff, ConnectionStatus
from inspector.stream import (
    Heartbeat,
    Resynced,
    RunEvent,
    Settled,
    StatusChanged,
    TimeTravelled,
    TreeUpdated,
)
from inspector.subscription import (
    LoadDurableHistory,
    LoadHistoryTimes,
    Output,
    Reconcile,
    Resubscribe,
    SendRequest,
    Stop,
    SubscriptionMachine,
)
from tests.recordings import recording

RUN = "run-1"
STREAM = "s1"
RICH = recording("rich-run.jsonl")


def task(node_id: int, name: str, state: str = "pending") -> dict[str, Any]:
    return {"id": node_id, "type": "task", "name": "task", "props": {"id": name}, "depth": 1, "children": [],
            "task": {"nodeId": name, "kind": "compute", "iteration": 0, "state": state, "attempt": 0}}


def snapshot(seq: int = 0, *states: str) -> dict[str, Any]:
    children = [task(100 + i, f"t{i}", s) for i, s in enumerate(states or ("pending", "pending"))]
    root = {"id": 1, "type": "workflow", "name": "w", "props": {}, "depth": 0, "children": children}
    return {"version": 1, "kind": "snapshot", "snapshot": {"version": 1, "runId": RUN, "frameNo": seq, "seq": seq, "root": root}}


def set_state(base: int, node_id: int, name: str, state: str) -> dict[str, Any]:
    op = {"op": "updateTask", "id": node_id, "task": {"nodeId": name, "kind": "compute", "iteration": 0, "state": state,
                                                      "attempt": 0}}
    return {"version": 1, "kind": "delta", "delta": {"version": 1, "baseSeq": base, "seq": base + 1, "ops": [op]}}


def devtools(event: Any, stream: str = STREAM, run: str = RUN) -> EventFrame:
    return EventFrame("devtools.event", {"streamId": stream, "runId": run, "event": event})


def run_event(seq: int, name: str, **payload: Any) -> EventFrame:
    return EventFrame("run.event", {"streamId": "e1", "seq": seq, "event": name, "payload": {"runId": RUN, **payload}})


def bare(name: str, **payload: Any) -> EventFrame:
    return EventFrame(name, {"runId": RUN, **payload})


def ok(payload: Any) -> ResponseFrame:
    return ResponseFrame("r", True, payload)


def refused(code: str, message: str = "no") -> ResponseFrame:
    frame = decode_frame({"type": "res", "id": "r", "ok": False, "error": {"code": code, "message": message}})
    assert isinstance(frame, ResponseFrame)
    return frame


class Harness:
    """A machine, a hand-moved clock, and the outputs so far."""

    def __init__(self, **kw: Any) -> None:
        kw.setdefault("backoff", Backoff(base=1.0, cap=8.0, healthy_after=5.0, rng=random.Random(7)))
        self.m = SubscriptionMachine(RUN, **kw)
        self.now = 1000.0

    def take(self) -> list[Output]:
        return self.m.next_actions()

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def connect(self, heartbeat_ms: int = 15_000) -> list[Output]:
        self.m.connecting(self.now)
        self.m.connected(self.now, heartbeat_ms=heartbeat_ms)
        return self.take()

    def frame(self, frame: EventFrame | FrameDecodeError) -> list[Output]:
        self.m.receive_frame(frame, self.now)
        return self.take()

    def answer(self, kind: Any, frame: ResponseFrame) -> list[Output]:
        self.m.receive_response(kind, frame, self.now)
        return self.take()

    def online(self, *, status: str = "running", current_seq: int = 0, events: ResponseFrame | None = None) -> list[Output]:
        """Connect and have the Gateway answer the three requests."""
        self.connect()
        out = self.answer("stream", ok({"streamId": STREAM, "runId": RUN}))
        out += self.answer("run", ok({"runId": RUN, "status": status}))
        out += self.answer("events", events or ok({"streamId": "e1", "currentSeq": current_seq}))
        return out

    def tick(self) -> list[Output]:
        self.m.tick(self.now)
        return self.take()


def of(outputs: list[Output], kind: type) -> list[Any]:
    return [o for o in outputs if isinstance(o, kind)]


def statuses(outputs: list[Output]) -> list[str]:
    return [o.state.status.value for o in of(outputs, StatusChanged)]


def ending(outputs: list[Output]) -> Resubscribe | Stop:
    last = outputs[-1]
    assert isinstance(last, Resubscribe | Stop), outputs
    return last


# --------------------------------------------------------------------------- the tree


def test_connect_asks_for_the_tree_the_run_and_its_events() -> None:
    h = Harness()
    out = h.connect()
    assert statuses(out) == ["connecting"]
    assert [(o.kind, o.method, o.params) for o in of(out, SendRequest)] == [
        ("stream", "streamDevTools", {"runId": RUN}),
        ("run", "getRun", {"runId": RUN}),
        ("events", "streamRunEvents", {"runId": RUN, "afterSeq": 0}),
    ]


def test_snapshot_then_deltas_follow_the_run() -> None:
    h = Harness()
    assert statuses(h.online()) == ["online"]
    first = h.frame(devtools(snapshot(0)))
    assert [o.change.kind for o in of(first, TreeUpdated)] == ["snapshot"]
    second = h.frame(devtools(set_state(0, 100, "t0", "in-progress")))
    third = h.frame(devtools(set_state(1, 100, "t0", "finished")))
    assert [o.change.updated for o in of(second + third, TreeUpdated)] == [(100,), (100,)]
    assert h.m.tree.seq == 2 and h.m.tree.state_counts() == {"finished": 1, "pending": 1}
    assert h.m.stats.snapshots_applied == 1 and h.m.stats.deltas_applied == 2 and h.m.stats.resyncs == 0


def test_the_tree_before_the_subscribe_answer_brings_the_subscription_online() -> None:
    h = Harness()
    h.connect()
    out = h.frame(devtools(snapshot(0)))
    assert statuses(out) == ["online"] and of(out, TreeUpdated)
    assert statuses(h.answer("stream", ok({"streamId": STREAM}))) == []


def test_a_seq_gap_resubscribes_fresh() -> None:
    h = Harness()
    h.online()
    h.frame(devtools(snapshot(0)))
    out = h.frame(devtools(set_state(4, 100, "t0", "finished")))
    resynced, resubscribe = of(out, Resynced), ending(out)
    assert "does not follow" in resynced[0].reason
    assert isinstance(resubscribe, Resubscribe) and resubscribe.fresh and resubscribe.after_seq is None
    assert resubscribe.delay > 0, "a stream that never proved healthy backs off"
    assert h.m.stats.resyncs == 1 and h.m.stats.reasons["SeqGap"] == 1
    assert "afterSeq" not in of(h.connect(), SendRequest)[0].params


def test_stale_and_duplicate_deltas_are_skipped() -> None:
    h = Harness()
    h.online()
    h.frame(devtools(snapshot(0)))
    delta = set_state(0, 100, "t0", "finished")
    assert of(h.frame(devtools(delta)), TreeUpdated)
    assert h.frame(devtools(delta)) == []
    assert h.m.stats.stale_deltas_skipped == 1 and h.m.tree.seq == 1


def test_frames_of_another_stream_or_run_are_ignored() -> None:
    h = Harness()
    h.online()
    h.frame(devtools(snapshot(0)))
    assert h.frame(devtools(set_state(7, 100, "t0", "finished"), stream="old")) == []
    assert h.frame(devtools(42, run="run-2")) == []
    assert h.m.stats.resyncs == 0


def test_a_malformed_devtools_event_resubscribes() -> None:
    h = Harness()
    h.online()
    out = h.frame(devtools(42))
    assert "malformed DevTools event" in of(out, Resynced)[0].reason
    assert isinstance(ending(out), Resubscribe)


def test_an_undecodable_frame_resubscribes() -> None:
    h = Harness()
    h.online()
    out = h.frame(FrameDecodeError("truncated JSON"))
    assert "undecodable" in of(out, Resynced)[0].reason and isinstance(ending(out), Resubscribe)
    assert h.frame(devtools(snapshot(0))) == [], "the abandoned session takes no more frames"


def devtools_error(code: str, message: str = "") -> EventFrame:
    return EventFrame("devtools.error", {"streamId": STREAM, "runId": RUN, "error": {"code": code, "message": message}})


def test_backpressure_disconnect_resubscribes() -> None:
    h = Harness()
    h.online()
    out = h.frame(devtools_error("BackpressureDisconnect", "too slow"))
    assert "BackpressureDisconnect: too slow" in of(out, Resynced)[0].reason
    assert isinstance(ending(out), Resubscribe) and h.m.stats.reasons["BackpressureDisconnect"] == 1


def test_an_unauthorized_devtools_error_is_unauthorized_and_retries_slowly() -> None:
    h = Harness(unauthorized_retry=30.0)
    h.online()
    out = h.frame(devtools_error("Unauthorized", "token revoked"))
    assert statuses(out) == ["unauthorized"] and not of(out, Resynced)
    resubscribe = ending(out)
    assert isinstance(resubscribe, Resubscribe) and resubscribe.delay == 30.0 and resubscribe.fresh
    assert h.m.state.error == "token revoked" and h.m.state.retry_in == 30.0


# --------------------------------------------------------------------------- time travel


def jump(wrapped: bool) -> EventFrame:
    payload = {"runId": RUN, "fromFrameNo": 3, "toFrameNo": 1, "timestampMs": 5, "caller": "user:op"}
    if wrapped:
        return EventFrame("run.event", {"streamId": "e1", "event": "run.time_travel_jumped", "payload": payload})
    return EventFrame("run.time_travel_jumped", payload)


def test_time_travel_rebaselines_bare_or_wrapped() -> None:
    for wrapped in (False, True):
        h = Harness()
        h.online()
        h.frame(devtools(snapshot(0)))
        h.frame(bare("run.completed", status="finished"))
        out = h.frame(jump(wrapped))
        assert [type(o) for o in out] == [TimeTravelled, Resynced, Resubscribe]
        assert out[0].jump.to_frame_no == 1 and "rewound from frame 3 to frame 1" in out[1].reason
        assert h.m.run_status is None and not h.m.settled and h.m.stats.reasons["time travel"] == 1


def test_a_replayed_time_travel_is_history_not_a_rewind() -> None:
    h = Harness()
    h.online(current_seq=5)
    replayed = EventFrame("run.event", {"streamId": "e1", "seq": 4, "event": "run.time_travel_jumped",
                                        "payload": {"runId": RUN, "fromFrameNo": 3, "toFrameNo": 1}})
    out = h.frame(replayed)
    assert of(out, LoadHistoryTimes) and not of(out, TimeTravelled)


# --------------------------------------------------------------------------- run events


def test_bare_run_events_are_held_until_the_event_stream_answers_then_dropped() -> None:
    h = Harness()
    h.connect()
    h.answer("stream", ok({"streamId": STREAM}))
    assert h.frame(bare("node.started", nodeId="a")) == [], "held: the replay will repeat it, numbered"
    assert h.answer("events", ok({"currentSeq": 0})) == []
    out = h.frame(run_event(1, "node.started", nodeId="a"))
    assert [(e.frame.event, e.seq, e.replayed) for e in of(out, RunEvent)] == [("node.started", 1, False)]
    assert [e.seq for e in of(h.frame(bare("node.finished", nodeId="a")), RunEvent)] == [None], "not held once answered"


def test_held_run_events_are_delivered_when_the_event_stream_is_refused() -> None:
    h = Harness()
    h.connect()
    h.frame(bare("node.started", nodeId="a"))
    h.frame(bare("node.finished", nodeId="a"))
    out = h.answer("events", refused("METHOD_NOT_FOUND"))
    assert [e.frame.event for e in of(out, RunEvent)] == ["node.started", "node.finished"]


def test_replayed_events_carry_their_history_times_and_duplicates_are_dropped() -> None:
    h = Harness()
    h.online(current_seq=2)
    out = h.frame(run_event(1, "node.started", nodeId="a"))
    assert out == [LoadHistoryTimes(RUN, h.m.history_timeout)], "the event waits for the history's times"
    assert h.frame(run_event(2, "node.finished", nodeId="a")) == [], "later frames wait behind it"
    rows = [{"seq": 0, "event": "NodeStarted", "payload": {"nodeId": "a"}, "timestampMs": 1500},
            {"seq": 1, "event": "NodeFinished", "payload": {"nodeId": "a"}, "timestampMs": 2500}]
    h.m.receive_history_times(rows, h.now)
    events = of(h.take(), RunEvent)
    assert [(e.frame.event, e.seq, e.replayed, e.at) for e in events] == [
        ("node.started", 1, True, 1.5), ("node.finished", 2, True, 2.5)]
    assert h.frame(run_event(2, "node.finished", nodeId="a")) == [], "seq 2 was seen"
    live = of(h.frame(run_event(3, "node.started", nodeId="b")), RunEvent)
    assert [(e.seq, e.replayed, e.at) for e in live] == [(3, False, None)]


def test_a_reconnect_asks_for_run_events_after_the_last_seen() -> None:
    h = Harness()
    h.online()
    h.frame(run_event(4, "node.started", nodeId="a"))
    h.m.connection_lost(GatewayUnavailable("connection lost"), h.now)
    h.take()
    assert of(h.connect(), SendRequest)[2].params == {"runId": RUN, "afterSeq": 4}


def test_run_event_seq_out_of_range_takes_the_history_afresh() -> None:
    h = Harness()
    h.online()
    h.frame(run_event(9, "node.started", nodeId="a"))
    h.m.connection_lost(GatewayUnavailable("connection lost"), h.now)
    h.take()
    h.connect()
    out = h.answer("events", refused("SeqOutOfRange"))
    assert out == [SendRequest("events", "streamRunEvents", {"runId": RUN, "afterSeq": 0})]
    h.answer("events", ok({"currentSeq": 0}))
    assert [e.seq for e in of(h.frame(run_event(1, "node.started", nodeId="a")), RunEvent)] == [1]


def test_devtools_seq_out_of_range_resubscribes_fresh() -> None:
    h = Harness()
    h.online()
    h.frame(devtools(snapshot(3)))
    h.m.connection_lost(GatewayUnavailable("connection lost"), h.now)
    resume = ending(h.take())
    assert isinstance(resume, Resubscribe) and not resume.fresh and resume.after_seq == 3
    assert of(h.connect(), SendRequest)[0].params == {"runId": RUN, "afterSeq": 3}
    out = h.answer("stream", refused("SeqOutOfRange", "afterSeq 3 > 0"))
    assert "SeqOutOfRange" in of(out, Resynced)[0].reason
    fresh = ending(out)
    assert isinstance(fresh, Resubscribe) and fresh.fresh
    assert "afterSeq" not in of(h.connect(), SendRequest)[0].params


def test_a_refused_subscription_goes_offline_with_the_missing_scope() -> None:
    h = Harness()
    h.connect()
    frame = decode_frame({"type": "res", "id": "r", "ok": False, "error": {
        "code": "FORBIDDEN", "message": "missing scope", "requiredScope": "run:read"}})
    assert isinstance(frame, ResponseFrame)
    out = h.answer("stream", frame)
    assert statuses(out) == ["offline"] and h.m.state.required_scope == "run:read"
    assert isinstance(ending(out), Resubscribe)


# --------------------------------------------------------------------------- settling


def test_completion_settles_after_a_quiet_period_and_a_reconcile() -> None:
    h = Harness(stop_when_settled=True, settle_quiet=0.5)
    h.online()
    h.frame(devtools(snapshot(0)))
    h.frame(bare("run.completed", status="failed"))
    assert h.m.next_deadline() == h.now + 0.5
    assert h.m.read_timeout(h.now) == (0.5, True), "silence is expected now, not a stall"
    h.advance(0.4)
    h.frame(devtools(set_state(0, 100, "t0", "failed")))
    assert h.m.next_deadline() == h.now + 0.5, "still moving: the quiet period starts again"
    h.advance(0.4)
    assert h.tick() == []
    h.advance(0.2)
    assert h.tick() == [Reconcile("getDevToolsSnapshot", {"runId": RUN})]
    assert h.frame(devtools(set_state(1, 101, "t1", "finished"))) == [], "frames wait for the snapshot"
    truth = snapshot(2, "failed", "finished")["snapshot"]
    h.m.receive_snapshot(truth, h.now)
    out = h.take()
    assert [type(o) for o in out] == [TreeUpdated, Settled, Stop]
    assert out[1] == Settled("failed", 2) and h.m.settled
    assert h.m.tree.snapshot()["root"] == truth["root"]


def test_a_reconcile_that_agrees_changes_nothing_and_the_subscription_goes_on() -> None:
    h = Harness()
    h.online(status="finished")
    h.frame(devtools(snapshot(0)))
    h.advance(1)
    assert of(h.tick(), Reconcile)
    h.m.receive_snapshot(h.m.tree.snapshot(), h.now)
    assert h.take() == [Settled("finished", 0)]
    assert h.m.next_deadline() is None and of(h.frame(EventFrame("tick", {})), Heartbeat)


def test_no_settle_before_the_tree_arrived() -> None:
    h = Harness()
    h.online(status="finished")
    h.advance(5)
    assert h.m.next_deadline() is None and not of(h.tick(), Reconcile)
    assert of(h.frame(devtools(snapshot(0))), TreeUpdated)
    assert h.m.next_deadline() == h.now + h.m.settle_quiet, "the tree's arrival starts the quiet period"
    h.advance(h.m.settle_quiet)
    assert of(h.tick(), Reconcile)


def test_a_finished_run_with_an_empty_replay_reads_the_durable_history() -> None:
    h = Harness()
    out = h.online(status="finished", current_seq=0)
    assert of(out, LoadDurableHistory) == [LoadDurableHistory(RUN, h.m.durable_history_timeout)]
    rows = [{"seq": 0, "event": "NodeStarted", "payload": {"nodeId": "a"}, "timestampMs": 1000},
            {"seq": 1, "event": "RunFinished", "payload": {}, "timestampMs": 2000}]
    h.m.receive_durable_history(rows, h.now)
    events = of(h.take(), RunEvent)
    assert [(e.frame.event, e.replayed, e.at) for e in events] == [("node.started", True, 1.0), ("run.completed", True, 2.0)]
    h.m.connection_lost(GatewayUnavailable("connection lost"), h.now)
    h.take()
    assert not of(h.online(status="finished"), LoadDurableHistory), "read once"


def test_a_live_replay_needs_no_durable_history() -> None:
    h = Harness()
    assert not of(h.online(status="finished", current_seq=3), LoadDurableHistory)


# --------------------------------------------------------------------------- health and backoff


def test_the_backoff_resets_only_once_the_tree_arrived() -> None:
    h = Harness()
    h.m.backoff.attempt = 3
    h.online()
    h.frame(EventFrame("tick", {}))
    h.advance(6)
    h.tick()
    assert h.m.backoff.attempt == 3, "ticks without a tree prove nothing"
    h.m.connection_lost(GatewayUnavailable("connection lost"), h.now)
    out = h.take()
    lost = ending(out)
    assert isinstance(lost, Resubscribe) and lost.delay > 0 and h.m.backoff.attempt == 4
    assert statuses(out) == ["offline"] and of(out, Resynced)[0].reason == "connection lost"
    h.online()
    h.frame(devtools(snapshot(0)))
    assert h.m.backoff.attempt == 4
    assert of(h.frame(EventFrame("tick", {})), Heartbeat)
    assert h.m.backoff.attempt == 0
    h.m.connection_lost(GatewayUnavailable("close 1011"), h.now)
    again = h.take()
    assert ending(again) == Resubscribe("close 1011", False, 0, 0.0)
    assert of(again, Resynced)[0].reason == "connection lost: close 1011"


def test_a_healthy_session_resubscribes_at_once() -> None:
    h = Harness()
    h.online()
    h.frame(devtools(snapshot(0)))
    h.frame(devtools(set_state(0, 100, "t0", "finished")))
    out = h.frame(devtools(set_state(5, 100, "t0", "finished")))
    resubscribe = ending(out)
    assert isinstance(resubscribe, Resubscribe) and resubscribe.delay == 0.0


def test_a_stall_is_aborted_and_resumes_after_the_tree_seq() -> None:
    h = Harness()
    h.connect(heartbeat_ms=30_000)
    assert h.m.read_timeout(h.now) == (90.0, False)
    h.frame(devtools(snapshot(2)))
    h.m.connection_lost(GatewayStalled("no frame from the gateway for 90 s"), h.now)
    resubscribe = ending(h.take())
    assert isinstance(resubscribe, Resubscribe) and resubscribe.abort and resubscribe.after_seq == 2


def test_connect_failures_go_offline_or_unauthorized_and_keep_the_outage_start() -> None:
    h = Harness(unauthorized_retry=12.0)
    h.m.connecting(h.now)
    h.m.connect_failed(GatewayUnavailable("refused"), h.now)
    out = h.take()
    assert statuses(out) == ["connecting", "offline"] and h.m.state.outage_since == h.now
    first = ending(out)
    assert isinstance(first, Resubscribe) and 0 <= first.delay <= 1.0 and h.m.stats.connect_failures == 1
    start = h.now
    h.advance(3)
    h.m.connecting(h.now)
    h.m.connect_failed(GatewayRpcError("UNAUTHORIZED", "Invalid token"), h.now)
    out = h.take()
    refused_token = ending(out)
    assert statuses(out) == ["connecting", "unauthorized"]
    assert isinstance(refused_token, Resubscribe) and refused_token.delay == 12.0
    assert h.m.state.outage_since == start and h.m.state.error == "Invalid token"
    h.online()
    assert h.m.state.status is ConnectionStatus.ONLINE and h.m.state.outage_since is None
    h.m.finish(h.now)
    assert h.m.state.status is ConnectionStatus.IDLE


# --------------------------------------------------------------------------- a property on a recorded run


def _recorded() -> tuple[list[EventFrame], dict[str, Any]]:
    """The rich run's frames as the Gateway sent them, and its final snapshot."""
    frames: list[EventFrame] = []
    final: dict[str, Any] = {}
    for line in RICH.read_text().splitlines():
        record = json.loads(line)
        frame = decode_frame(record["frame"]) if record["dir"] == "recv" else None
        if isinstance(frame, EventFrame) and frame.event != "connect.challenge":
            frames.append(frame)
        elif isinstance(frame, ResponseFrame) and isinstance(frame.payload, dict) and "root" in frame.payload:
            final = frame.payload
    return frames, final


FRAMES, FINAL = _recorded()
RICH_RUN = FINAL["runId"]
DELTAS = [i for i, f in enumerate(FRAMES) if f.event == "devtools.event" and f.payload["event"]["kind"] == "delta"]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, len(FRAMES) - 1), st.integers(0, len(DELTAS) - 1)), max_size=40))
def test_duplicated_deltas_anywhere_after_their_first_copy_end_on_the_same_tree(repeats: list[tuple[int, int]]) -> None:
    """However a recorded run's deltas are repeated, the tree ends as the Gateway's final snapshot."""
    extra: dict[int, list[EventFrame]] = {}
    for position, which in repeats:
        first = DELTAS[which]
        extra.setdefault(max(position, first), []).append(FRAMES[first])
    m = SubscriptionMachine(RICH_RUN, backoff=Backoff(rng=random.Random(0)))
    m.connecting(0.0)
    m.connected(0.0)
    m.receive_response("events", ok({"currentSeq": 0}), 0.0)
    m.next_actions()
    outputs: list[Output] = []
    for index, frame in enumerate(FRAMES):
        for copy in [frame, *extra.get(index, [])]:
            m.receive_frame(copy, 0.0)
            outputs += m.next_actions()
    assert not of(outputs, Resynced) and m.stats.deltas_applied == len(DELTAS)
    assert m.stats.stale_deltas_skipped == len(repeats)
    assert m.tree.snapshot()["root"] == FINAL["root"]
    events = [o.frame.event for o in of(outputs, RunEvent)]
    assert events == [f.event for f in FRAMES if f.event.startswith(("node.", "run."))]


def test_a_gap_resync_is_yielded_once_and_the_window_after_it_without_duplicates() -> None:
    """Resubscribing after seq 2 to a window that starts at 6: the Gateway says events 3-5
    are gone, then replays 6-7. A reconnect that hears about the same gap again, and
    the same window frames again, yields nothing twice."""
    h = Harness()
    h.online(current_seq=0)
    h.frame(devtools(snapshot(0)))
    h.frame(run_event(1, "node.started", nodeId="t0"))
    h.frame(run_event(2, "node.finished", nodeId="t0"))
    h.m.connection_lost(GatewayUnavailable("cut"), h.now)
    h.take()
    requests = h.connect()
    assert {"runId": RUN, "afterSeq": 2} in [o.params for o in of(requests, SendRequest) if o.kind == "events"]
    h.answer("stream", ok({"streamId": STREAM, "runId": RUN}))
    h.answer("events", ok({"streamId": "e2", "currentSeq": 7}))
    gap = bare("run.gap_resync", type="GapResync", streamId="e2", fromSeq=3, toSeq=5, snapshot={"status": "running"})
    out = h.frame(gap)
    h.m.receive_history_times([], h.now)
    out += h.take()
    for seq, name in ((6, "node.started"), (7, "node.finished")):
        out += h.frame(run_event(seq, name, nodeId="t1"))
        h.m.receive_history_times([], h.now)
        out += h.take()
    h.m.connection_lost(GatewayUnavailable("cut again"), h.now)
    h.take()
    h.online(current_seq=7)
    again = h.frame(gap) + h.frame(run_event(6, "node.started", nodeId="t1")) + h.frame(run_event(7, "node.finished", nodeId="t1"))
    events = [(e.frame.event, e.seq) for e in of(out, RunEvent)]
    assert events == [("run.gap_resync", None), ("node.started", 6), ("node.finished", 7)]
    assert of(again, RunEvent) == []


def test_run_error_is_yielded_and_the_run_events_asked_for_again_not_in_a_loop() -> None:
    """``BackpressureDisconnect``: the Gateway stopped the run-event stream. The error is an
    item (the header's banner), the events after the last seq are asked for again once,
    a second error within the retry interval asks nothing, and the replay adds no duplicate."""
    h = Harness()
    h.online(current_seq=0, events=ok({"streamId": "e1", "currentSeq": 0}))
    h.frame(devtools(snapshot(0)))
    h.frame(run_event(1, "node.started", nodeId="t0"))
    error = bare("run.error", streamId="e1", error={"code": "BackpressureDisconnect", "message": "slow"})
    out = h.frame(error)
    assert [e.frame.event for e in of(out, RunEvent)] == ["run.error"]
    again = [o for o in of(out, SendRequest) if o.kind == "events"]
    assert [o.params for o in again] == [{"runId": RUN, "afterSeq": 1}]
    assert not of(out, Resubscribe)
    assert of(h.frame(error), SendRequest) == []  # within the interval: no loop
    assert of(h.frame(bare("run.error", streamId="other", error={"code": "X"})), SendRequest) == []
    out = h.answer("events", ok({"streamId": "e2", "currentSeq": 3}))
    out += h.frame(run_event(1, "node.started", nodeId="t0"))
    for seq in (2, 3):
        out += h.frame(run_event(seq, "node.finished", nodeId=f"t{seq}"))
        h.m.receive_history_times([], h.now)
        out += h.take()
    assert [e.seq for e in of(out, RunEvent)] == [2, 3]
    h.advance(6)
    assert len(of(h.frame(bare("run.error", streamId="e2", error={"code": "BackpressureDisconnect"})), SendRequest)) == 1

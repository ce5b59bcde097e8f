"""The replay Gateway, driven over a raw WebSocket and raw HTTP like any Gateway client would.

Every test runs an in-process :class:`ReplayGateway` on a free loopback port, at a high
``speed`` so recorded runs play in a fraction of a second. Waiting is done with deadlines
(``asyncio.wait_for`` around a receive or a poll), never with a sleep standing in for
"long enough".
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from inspector.replay import AutoRewind, ReplayGateway, demo_runs, http_status_for, serve_demo
from inspector.transcript import load_runs, load_sessions
from inspector.tree import DevToolsTree
from tests.recordings import recording
from tests.replay_support import (
    DEADLINE,
    READ_TOKEN,
    RICH,
    TOKEN,
    code_of,
    devtools_event,
    event_of,
    eventually,
    finished,
    follow_stream,
    held_rich_gateway,
    http_rpc,
    make_gateway,
    open_session,
    recv,
    recv_until,
    request,
    runs_of,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from tests.faulty_replay import FaultyReplayGateway


@pytest.fixture
async def rich() -> AsyncIterator[FaultyReplayGateway]:
    """The rich run, held at its very start until the test resumes it."""
    async with held_rich_gateway() as gateway:
        yield gateway


# --------------------------------------------------------------------------- handshake


async def test_health_answers_ok(rich: FaultyReplayGateway) -> None:
    async with httpx.AsyncClient(base_url=rich.url) as client:
        response = await client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"ok": True}


async def test_handshake_gives_a_hello_like_the_recorded_one(rich: FaultyReplayGateway) -> None:
    ws, hello = await open_session(rich)
    async with ws:
        assert hello["ok"] is True
        payload = hello["payload"]
        recorded = RICH.hello
        assert recorded is not None
        assert set(payload) == set(recorded)
        assert payload["protocol"] == 1
        assert payload["features"] == ["streaming", "runs"]
        assert payload["policy"] == {"heartbeatMs": 200}
        assert payload["auth"]["role"] == "admin" and payload["auth"]["scopes"] == ["*"]
        assert [r["runId"] for r in payload["snapshot"]["runs"]] == [RICH.run_id]
        assert payload["snapshot"]["runs"][0]["status"] == "running"
        tick = await recv_until(ws, lambda f: f.get("event") == "tick")
        assert isinstance(tick["payload"]["ts"], int)
        assert tick["seq"] >= 2 and "stateVersion" in tick


async def test_methods_before_connect_are_unauthorized(rich: FaultyReplayGateway) -> None:
    async with connect(rich.ws_url) as ws:
        await recv(ws)
        response = await request(ws, "getRun", {"runId": RICH.run_id})
        assert code_of(response) == "UNAUTHORIZED"
        assert response["error"]["message"] == "Connect first"


async def test_a_bad_token_is_refused_and_the_socket_closed_1008(rich: FaultyReplayGateway) -> None:
    ws, hello = await open_session(rich, token="wrong-token")
    assert code_of(hello) == "UNAUTHORIZED"
    assert hello["error"]["message"] == "Invalid token"
    with pytest.raises(ConnectionClosed) as closed:
        await recv(ws)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008


async def test_a_silent_socket_is_dropped_after_the_auth_deadline() -> None:
    gateway = make_gateway([RICH], auth_deadline_ms=100)
    await gateway.start()
    try:
        async with connect(gateway.ws_url) as ws:
            await recv(ws)
            with pytest.raises(ConnectionClosed):
                await recv_until(ws, lambda f: False)
        assert gateway.active_connections == 0
    finally:
        await gateway.stop()


def test_runs_must_be_replayable_and_distinct() -> None:
    with pytest.raises(ValueError, match="distinct"):
        ReplayGateway([RICH, RICH])
    with pytest.raises(ValueError, match="no DevTools events"):
        ReplayGateway(load_runs(recording("errors.jsonl"), replayable_only=False))
    with pytest.raises(ValueError, match="speed"):
        ReplayGateway([RICH], speed=0)


async def test_a_read_token_is_a_viewer(rich: FaultyReplayGateway) -> None:
    ws, hello = await open_session(rich, token=READ_TOKEN)
    async with ws:
        assert hello["payload"]["auth"]["role"] == "viewer"
        assert hello["payload"]["auth"]["scopes"] == ["run:read", "observability:read"]
        rewind = await request(ws, "rewindRun", {"runId": RICH.run_id, "frameNo": 1, "confirm": True})
        assert code_of(rewind) == "FORBIDDEN" and rewind["error"]["requiredScope"] == "run:admin"


# --------------------------------------------------------------------------- streaming


async def test_streaming_a_live_run_rebuilds_the_recorded_tree(rich: FaultyReplayGateway) -> None:
    ws, _ = await open_session(rich)
    async with ws:
        reply = await request(ws, "streamDevTools", {"runId": RICH.run_id, "afterSeq": 0})
        assert reply["ok"] and reply["payload"]["runId"] == RICH.run_id
        assert reply["payload"]["fromSeq"] == 0 and reply["payload"]["afterSeq"] == 0
        stream_id = reply["payload"]["streamId"]
        rich.resume()
        tree = DevToolsTree()
        frames: list[dict[str, Any]] = []
        await follow_stream(ws, tree, lambda t: t.seq == 18, frames)
        events = [devtools_event(f) for f in frames if devtools_event(f)]
        assert events[0] is not None and events[0]["kind"] == "snapshot"
        assert sum(1 for e in events if e and e["kind"] == "delta") >= 17
        assert {f["payload"]["streamId"] for f in frames if devtools_event(f)} == {stream_id}
        seqs = [f["seq"] for f in frames if "seq" in f]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
        node_events = [f for f in frames if str(f.get("event", "")).startswith("node.")]
        assert node_events and all(f["payload"]["runId"] == RICH.run_id for f in node_events)

        await finished(rich, RICH.run_id)
        snapshot = (await http_rpc(rich, "getDevToolsSnapshot", {"runId": RICH.run_id})).json()["payload"]
        assert tree.root is not None
        assert tree.root.to_wire() == snapshot["root"]
        assert RICH.final_snapshot is not None
        assert tree.root.to_wire() == RICH.final_snapshot["root"]


async def test_run_events_reach_connections_per_their_subscribe_filter(rich: FaultyReplayGateway) -> None:
    everyone, _ = await open_session(rich)
    mine, _ = await open_session(rich, subscribe=[RICH.run_id])
    other, _ = await open_session(rich, subscribe=["some-other-run"])
    async with everyone, mine, other:
        rich.resume()
        for ws in (everyone, mine):
            event = await recv_until(ws, lambda f: str(f.get("event", "")).startswith("node."))
            assert event["payload"]["runId"] == RICH.run_id
        await finished(rich, RICH.run_id)
        stray = await recv_until(other, lambda f: f.get("event") == "tick" or "node." in str(f.get("event")))
        assert stray["event"] == "tick"
        # A subscribe filter also gates DevTools.
        denied = await request(other, "streamDevTools", {"runId": RICH.run_id})
        assert code_of(denied) == "Unauthorized"


async def test_resuming_after_a_seq_mid_run_continues_cleanly(rich: FaultyReplayGateway) -> None:
    rich.resume()
    await eventually(lambda: rich.run_seq(RICH.run_id) >= 5, "frame 5")
    rich.pause()
    seq = rich.run_seq(RICH.run_id)
    ws, _ = await open_session(rich)
    async with ws:
        reply = await request(ws, "streamDevTools", {"runId": RICH.run_id, "afterSeq": seq})
        assert reply["payload"]["afterSeq"] == seq
        tree = DevToolsTree()
        first = await recv_until(ws, lambda f: devtools_event(f) is not None)
        change = tree.apply(event_of(first))
        assert change.kind == "snapshot" and tree.seq == seq
        rich.resume()
        await follow_stream(ws, tree, lambda t: t.seq == 18)
        assert RICH.final_snapshot is not None and tree.root is not None
        assert tree.root.to_wire() == RICH.final_snapshot["root"]


async def test_resuming_a_finished_run_starts_from_its_last_frame(rich: FaultyReplayGateway) -> None:
    rich.resume()
    await finished(rich, RICH.run_id)
    ws, _ = await open_session(rich)
    async with ws:
        reply = await request(ws, "streamDevTools", {"runId": RICH.run_id, "afterSeq": 7})
        assert reply["payload"]["fromSeq"] == 7 and reply["payload"]["afterSeq"] == 7
        first = devtools_event(await recv_until(ws, lambda f: devtools_event(f) is not None))
        assert first is not None and first["kind"] == "snapshot"
        assert first["snapshot"]["seq"] == 18 and first["snapshot"]["runState"]["state"] == "succeeded"


async def test_a_seq_from_the_future_is_out_of_range(rich: FaultyReplayGateway) -> None:
    ws, _ = await open_session(rich)
    async with ws:
        response = await request(ws, "streamDevTools", {"runId": RICH.run_id, "afterSeq": 99999})
        assert code_of(response) == "SeqOutOfRange"
        current = rich.run_seq(RICH.run_id)
        assert response["error"]["message"] == f"fromSeq 99999 is newer than current seq {current}"


async def test_stream_request_validation(rich: FaultyReplayGateway) -> None:
    ws, _ = await open_session(rich)
    async with ws:
        assert code_of(await request(ws, "streamDevTools", {"runId": "../etc/passwd"})) == "InvalidRunId"
        assert code_of(await request(ws, "streamDevTools", {"runId": "no-such-run"})) == "RunNotFound"
        assert code_of(await request(ws, "streamDevTools", {"runId": RICH.run_id, "afterSeq": -1})) == "SeqOutOfRange"
        mismatch = {"runId": RICH.run_id, "afterSeq": 1, "fromSeq": 2}
        assert code_of(await request(ws, "streamDevTools", mismatch)) == "SeqOutOfRange"
    response = await http_rpc(rich, "streamDevTools", {"runId": RICH.run_id})
    assert response.status_code == 400 and response.json()["error"]["code"] == "INVALID_REQUEST"


async def test_legacy_rpc_route_and_key_header(rich: FaultyReplayGateway) -> None:
    frame = {"id": "legacy-1", "method": "runs.get", "params": {"runId": RICH.run_id}}
    async with httpx.AsyncClient(base_url=rich.url) as client:
        response = await client.post("/rpc", json=frame, headers={"x-smithers-key": TOKEN})
    assert response.status_code == 200
    body = response.json()
    assert body["id"] == "legacy-1" and body["payload"]["runId"] == RICH.run_id


# --------------------------------------------------------------------------- recorded errors


async def test_the_recorded_error_requests_get_the_recorded_answers() -> None:
    """Replay every request of errors.jsonl against a replay of the same run and compare."""
    gateway = make_gateway(runs_of("resume-after-seq.jsonl", "errors.jsonl"))
    await gateway.start()
    try:
        run_id = gateway.run_ids()[0]
        await finished(gateway, run_id)
        for session in load_sessions(recording("errors.jsonl")):
            sent = [line.frame for line in session.lines if line.dir == "send"]
            answers = {line.frame["id"]: line.frame for line in session.lines
                       if line.dir == "recv" and line.frame.get("type") == "res"}
            connect_params = sent[0]["params"]
            ws, hello = await open_session(gateway, token=connect_params["auth"]["token"])
            async with ws:
                assert hello["ok"] == answers[sent[0]["id"]]["ok"]
                if not hello["ok"]:
                    assert hello["error"] == answers[sent[0]["id"]]["error"]
                    continue
                for frame in sent[1:]:
                    got = await request(ws, frame["method"], frame["params"])
                    want = answers[frame["id"]]
                    assert got["ok"] == want["ok"], frame
                    if want["ok"]:
                        assert got["payload"][0]["runId"] == want["payload"][0]["runId"]
                    else:
                        assert got["error"] == want["error"], frame
    finally:
        await gateway.stop()


# --------------------------------------------------------------------------- HTTP


@pytest.mark.parametrize(
    ("method", "params", "token", "status", "code"),
    [
        ("getRun", {"runId": "no-such-run"}, TOKEN, 404, "NOT_FOUND"),
        ("getRun", {}, TOKEN, 400, "INVALID_REQUEST"),
        ("getNodeOutput", {"runId": RICH.run_id, "nodeId": "no-such-node", "iteration": 0}, TOKEN, 404,
         "NodeNotFound"),
        ("getNodeOutput", {"runId": RICH.run_id, "nodeId": "plan"}, TOKEN, 400, "InvalidIteration"),
        ("getNodeDiff", {"runId": RICH.run_id, "nodeId": "plan", "iteration": 0}, TOKEN, 409, "AttemptNotFinished"),
        ("getDevToolsSnapshot", {"runId": RICH.run_id, "frameNo": 99999}, TOKEN, 400, "FrameOutOfRange"),
        ("getDevToolsSnapshot", {"runId": "../x"}, TOKEN, 400, "InvalidRunId"),
        ("listScores", {"runId": "no-such-run"}, TOKEN, 404, "RunNotFound"),
        ("noSuchMethod", {}, TOKEN, 404, "METHOD_NOT_FOUND"),
        ("getRun", {"runId": RICH.run_id}, "wrong", 401, "UNAUTHORIZED"),
        ("getRun", {"runId": RICH.run_id}, None, 401, "UNAUTHORIZED"),
        ("rewindRun", {"runId": RICH.run_id, "frameNo": 1, "confirm": True}, READ_TOKEN, 403, "FORBIDDEN"),
        ("launchRun", {"workflow": "rich"}, READ_TOKEN, 403, "FORBIDDEN"),
        ("listScores", {"runId": RICH.run_id}, READ_TOKEN, 403, "FORBIDDEN"),
        ("rewindRun", {"runId": RICH.run_id, "frameNo": 1}, TOKEN, 400, "ConfirmationRequired"),
    ],
)
async def test_http_errors_map_to_the_gateways_statuses(
    rich: FaultyReplayGateway, method: str, params: dict[str, Any], token: str | None, status: int, code: str
) -> None:
    rich.resume()
    await finished(rich, RICH.run_id)
    response = await http_rpc(rich, method, params, token)
    assert response.status_code == status
    body = response.json()
    assert body["type"] == "res" and body["ok"] is False and body["error"]["code"] == code
    assert http_status_for(code) == status
    if code == "FORBIDDEN":
        assert body["error"]["requiredScope"] in ("run:admin", "run:write", "score:read")


async def test_http_answers_follow_the_replay(rich: FaultyReplayGateway) -> None:
    row = (await http_rpc(rich, "getRun", {"runId": RICH.run_id})).json()["payload"]
    assert row["status"] == "running" and row["finishedAtMs"] is None
    assert abs(row["createdAtMs"] - time.time() * 1000) < 60_000
    assert (await http_rpc(rich, "listScores", {"runId": RICH.run_id})).json()["payload"] == []
    rich.resume()
    await eventually(lambda: rich.run_seq(RICH.run_id) >= 2, "frame 2")
    rich.pause()
    ship = {"runId": RICH.run_id, "nodeId": "ship", "iteration": 0}
    pending = (await http_rpc(rich, "getNodeOutput", ship)).json()["payload"]
    assert pending["status"] == "pending" and pending["row"] is None
    mid = (await http_rpc(rich, "getRun", {"runId": RICH.run_id})).json()["payload"]
    assert mid["status"] == "running" and "finished" in mid["summary"] and "pending" in mid["summary"]
    rich.resume()
    await finished(rich, RICH.run_id)
    done = (await http_rpc(rich, "getRun", {"runId": RICH.run_id})).json()["payload"]
    assert RICH.row is not None
    assert done["status"] == "finished" and done["summary"] == RICH.row["summary"]
    assert done["runState"]["state"] == "succeeded"
    assert done["createdAtMs"] <= done["finishedAtMs"] <= time.time() * 1000 + 1
    produced = (await http_rpc(rich, "getNodeOutput", ship)).json()["payload"]
    assert produced["status"] == "produced" and produced["row"]["note"] == "shipped"
    scores = (await http_rpc(rich, "listScores", {"runId": RICH.run_id})).json()["payload"]
    assert len(scores) == 4
    assert all(done["createdAtMs"] <= s["scoredAtMs"] <= done["finishedAtMs"] for s in scores)
    refine = (await http_rpc(rich, "listScores", {"runId": RICH.run_id, "nodeId": "refine"})).json()["payload"]
    assert [s["iteration"] for s in refine] == [0, 1, 2]


async def test_final_summaries_match_the_recorded_get_run() -> None:
    runs = runs_of("demo-run.jsonl", "doomed-run.jsonl", "gated-run.jsonl")
    gateway = make_gateway(runs, speed=50)
    await gateway.start()
    try:
        for run in runs:
            await finished(gateway, run.run_id)
            row = (await http_rpc(gateway, "getRun", {"runId": run.run_id})).json()["payload"]
            assert run.row is not None
            assert row["status"] == run.row["status"]
            assert row["summary"] == run.row["summary"]
            assert row["workflowName"] == run.row["workflowName"]
    finally:
        await gateway.stop()


async def test_list_runs_filters_and_pages() -> None:
    runs = runs_of("demo-run.jsonl", "doomed-run.jsonl", "rich-run.jsonl")
    gateway = make_gateway(runs, speed=50)
    await gateway.start()
    try:
        for run in runs:
            await finished(gateway, run.run_id)
        everything = (await http_rpc(gateway, "listRuns", {"filter": {}})).json()["payload"]
        assert sorted(r["runId"] for r in everything) == sorted(r.run_id for r in runs)
        assert all("summary" not in r for r in everything)
        failed = (await http_rpc(gateway, "listRuns", {"filter": {"status": "failed"}})).json()["payload"]
        assert [r["workflowName"] for r in failed] == ["doomed"]
        demo = (await http_rpc(gateway, "listRuns", {"filter": {"workflow": "demo"}})).json()["payload"]
        assert [r["workflowName"] for r in demo] == ["demo"]
        page = (await http_rpc(gateway, "listRuns", {"filter": {"limit": 1, "offset": 1}})).json()["payload"]
        assert page == everything[1:2]
        bad = await http_rpc(gateway, "listRuns", {"filter": {"offset": -1}})
        assert bad.status_code == 400
        workflows = (await http_rpc(gateway, "listWorkflows")).json()["payload"]
        assert [w["key"] for w in workflows] == ["demo", "doomed", "rich"]
    finally:
        await gateway.stop()


async def test_approvals_are_pending_only_while_the_run_waits() -> None:
    run = runs_of("gated-run.jsonl")[0]
    gateway = make_gateway([run], speed=5)
    await gateway.start()
    try:
        await eventually(lambda: gateway.run_status(run.run_id) == "waiting-approval", "the approval gate")
        gateway.pause()
        rows = (await http_rpc(gateway, "listApprovals", {"filter": {"runId": run.run_id}})).json()["payload"]
        assert [(r["nodeId"], r["requestTitle"]) for r in rows] == [("deploy", "Deploy to prod")]
        assert abs(rows[0]["requestedAtMs"] - time.time() * 1000) < 60_000
        hello = (await open_session(gateway))
        async with hello[0]:
            assert [a["nodeId"] for a in hello[1]["payload"]["snapshot"]["approvals"]] == ["deploy"]
        gateway.resume()
        await finished(gateway, run.run_id)
        assert (await http_rpc(gateway, "listApprovals", {})).json()["payload"] == []
    finally:
        await gateway.stop()


# --------------------------------------------------------------------------- rewind


async def test_rewind_run_jumps_back_rebaselines_and_reexecutes(rich: FaultyReplayGateway) -> None:
    rich.resume()
    await finished(rich, RICH.run_id)
    ws, _ = await open_session(rich, subscribe=[RICH.run_id])
    async with ws:
        await request(ws, "streamDevTools", {"runId": RICH.run_id, "afterSeq": 0})
        tree = DevToolsTree()
        await follow_stream(ws, tree, lambda t: t.seq == 18)
        assert code_of(await request(ws, "rewindRun", {"runId": RICH.run_id, "frameNo": 99, "confirm": True})) \
            == "FrameOutOfRange"

        seen: list[dict[str, Any]] = []
        rich.pause()  # hold the re-execution so the run is observably running again
        reply = await request(ws, "rewindRun", {"runId": RICH.run_id, "frameNo": 3, "confirm": True}, seen)
        assert reply["ok"] and reply["payload"]["newFrameNo"] == 3 and reply["payload"]["deletedFrames"] == 15
        jump = [f for f in seen if f.get("event") == "run.time_travel_jumped"]
        assert len(jump) == 1
        assert {k: jump[0]["payload"][k] for k in ("runId", "fromFrameNo", "toFrameNo", "caller")} == {
            "runId": RICH.run_id, "fromFrameNo": 18, "toFrameNo": 3, "caller": "user:op"}
        rebase = await recv_until(ws, lambda f: devtools_event(f) is not None)
        change = tree.apply(event_of(rebase))
        assert change.rewound and tree.seq == 3
        assert (await http_rpc(rich, "getRun", {"runId": RICH.run_id})).json()["payload"]["status"] == "running"
        frame3 = (await http_rpc(rich, "getDevToolsSnapshot", {"runId": RICH.run_id, "frameNo": 3})).json()
        assert tree.root is not None and frame3["payload"]["root"] == tree.root.to_wire()

        running = await request(ws, "rewindRun", {"runId": RICH.run_id, "frameNo": 1, "confirm": True})
        assert code_of(running) == "RunOwnerAlive"
        rich.resume()
        await follow_stream(ws, tree, lambda t: t.seq == 18)
        await finished(rich, RICH.run_id)
        assert RICH.final_snapshot is not None
        assert tree.root.to_wire() == RICH.final_snapshot["root"]


async def test_forced_rewind_of_a_running_run_over_http(rich: FaultyReplayGateway) -> None:
    rich.resume()
    await eventually(lambda: rich.run_seq(RICH.run_id) >= 8, "frame 8")
    rich.pause()
    response = await http_rpc(rich, "rewindRun", {"runId": RICH.run_id, "frameNo": 2, "confirm": True,
                                                  "force": True})
    assert response.status_code == 200 and response.json()["payload"]["newFrameNo"] == 2
    assert rich.run_seq(RICH.run_id) == 2 and rich.run_status(RICH.run_id) == "running"
    rich.resume()
    await finished(rich, RICH.run_id)
    assert rich.run_seq(RICH.run_id) == 18


async def test_the_recorded_rewind_replays_as_a_rewind() -> None:
    run = runs_of("rewind-run.jsonl")[0]
    gateway = make_gateway([run], speed=40)
    gateway.pause()
    await gateway.start()
    try:
        ws, _ = await open_session(gateway)
        async with ws:
            await request(ws, "streamDevTools", {"runId": run.run_id})
            gateway.resume()
            tree = DevToolsTree()
            seen: list[dict[str, Any]] = []
            rewinds = 0

            async def pump() -> None:
                nonlocal rewinds
                while not (tree.seq == 21 and rewinds):
                    frame = await recv(ws)
                    event = devtools_event(frame)
                    if event is None:
                        seen.append(frame)
                    elif tree.apply(event).rewound:
                        rewinds += 1

            await asyncio.wait_for(pump(), DEADLINE)
            assert rewinds == 1
            jumps = [f for f in seen if f.get("event") == "run.time_travel_jumped"]
            assert [(j["payload"]["fromFrameNo"], j["payload"]["toFrameNo"]) for j in jumps] == [(18, 3)]
            assert run.final_snapshot is not None and tree.root is not None
            assert tree.root.to_wire() == run.final_snapshot["root"]
    finally:
        await gateway.stop()


async def test_auto_rewind_rewinds_every_replay_once() -> None:
    gateway = make_gateway([RICH], auto_rewinds={RICH.run_id: AutoRewind(0.6, 3)})
    gateway.pause()
    await gateway.start()
    try:
        ws, _ = await open_session(gateway)
        async with ws:
            await request(ws, "streamDevTools", {"runId": RICH.run_id})
            gateway.resume()
            jump = await recv_until(ws, lambda f: f.get("event") == "run.time_travel_jumped")
            assert jump["payload"]["toFrameNo"] == 3 and jump["payload"]["caller"] == "user:replay"
            await finished(gateway, RICH.run_id)
            assert gateway.run_seq(RICH.run_id) == 18
    finally:
        await gateway.stop()


# --------------------------------------------------------------------------- loop mode


async def test_loop_mode_starts_the_run_again_under_a_new_id() -> None:
    gateway = make_gateway([RICH], speed=50, loop=True, loop_delay_s=0.05)
    await gateway.start()
    try:
        await eventually(lambda: len(gateway.run_ids()) >= 2, "a second run")
        gateway.pause()
        new_id = gateway.run_ids()[1]
        assert new_id != RICH.run_id and gateway.recorded_id(new_id) == RICH.run_id
        ws, _ = await open_session(gateway)
        async with ws:
            await request(ws, "streamDevTools", {"runId": new_id})
            snap = devtools_event(await recv_until(ws, lambda f: devtools_event(f) is not None))
            assert snap is not None and snap["snapshot"]["runId"] == new_id
        gateway.resume()
        await finished(gateway, new_id)
        gateway.pause()
        row = (await http_rpc(gateway, "getRun", {"runId": new_id})).json()["payload"]
        assert row["runId"] == new_id and row["workflowName"] == "rich" and row["status"] == "finished"
        assert abs(row["finishedAtMs"] - time.time() * 1000) < 60_000
        assert RICH.row is not None and row["createdAtMs"] != RICH.row["createdAtMs"]
        scores = (await http_rpc(gateway, "listScores", {"runId": new_id})).json()["payload"]
        assert len(scores) == 4 and {s["runId"] for s in scores} == {new_id}
        assert all(row["createdAtMs"] <= s["scoredAtMs"] <= row["finishedAtMs"] for s in scores)
        output = await http_rpc(gateway, "getNodeOutput", {"runId": new_id, "nodeId": "plan", "iteration": 0})
        assert output.json()["payload"]["status"] == "produced"
    finally:
        await gateway.stop()


async def test_loop_mode_keeps_a_bounded_list_of_finished_runs() -> None:
    gateway = make_gateway([RICH], speed=50, loop=True, loop_delay_s=0.01, keep_finished=2)
    await gateway.start()
    try:
        await eventually(lambda: RICH.run_id not in gateway.run_ids(), "the first run to be evicted")
        listed = (await http_rpc(gateway, "listRuns")).json()["payload"]
        assert 1 <= len(listed) <= 3
        assert len([r for r in listed if r["status"] == "finished"]) <= 2
        gone = await http_rpc(gateway, "getRun", {"runId": RICH.run_id})
        assert gone.status_code == 404
    finally:
        await gateway.stop()


async def test_launch_run_starts_a_replay_of_the_workflow(rich: FaultyReplayGateway) -> None:
    response = await http_rpc(rich, "launchRun", {"workflow": "rich", "input": {}})
    assert response.status_code == 200
    run_id = response.json()["payload"]["runId"]
    assert run_id in rich.run_ids()
    missing = await http_rpc(rich, "launchRun", {"workflow": "nope"})
    assert missing.status_code == 404


# --------------------------------------------------------------------------- demo


def test_demo_runs_are_bundled() -> None:
    runs = demo_runs()
    # agents-run.jsonl holds two runs (an ``agents`` run and an ``agent-retry`` run).
    assert sorted(r.source or "" for r in runs) == sorted(
        ["demo-run.jsonl", "rich-run.jsonl", "rewind-run.jsonl", "doomed-run.jsonl", "wide-run.jsonl",
         "gated-run.jsonl", "agents-run.jsonl", "agents-run.jsonl"])
    assert all(r.replayable for r in runs)


async def test_serve_demo_loops_and_rewinds_the_rich_run() -> None:
    gateway = await serve_demo(speed=50)
    try:
        rich_ids = [r for r in gateway.run_ids() if gateway.recorded_id(r) == RICH.run_id]
        assert len(rich_ids) == 1
        assert gateway.auto_rewinds == {RICH.run_id: AutoRewind(0.6)}
        ws, hello = await open_session(gateway, token=None)
        async with ws:
            assert len(hello["payload"]["snapshot"]["runs"]) >= 1
            # The recorded rewind fixture's jump says "user:op"; the scheduled one "user:replay".
            jump = await recv_until(
                ws, lambda f: f.get("event") == "run.time_travel_jumped" and f["payload"]["caller"] == "user:replay")
            assert jump["payload"]["toFrameNo"] < jump["payload"]["fromFrameNo"]
        assert gateway.loop
    finally:
        await gateway.stop()


async def test_stream_run_events_replays_history_then_streams_live_wrapped() -> None:
    """``streamRunEvents`` (as the Gateway): numbered history first, then news as ``run.event``."""
    from inspector.replay import ReplayGateway
    from inspector.transcript import load_runs

    runs = load_runs(recording("demo-run.jsonl"))
    async with ReplayGateway(runs, speed=2.0) as gw:
        run_id = gw.run_ids()[0]
        async with connect(gw.ws_url) as ws:
            json.loads(await ws.recv())  # challenge
            await ws.send(json.dumps({"type": "req", "id": "c", "method": "connect", "params": {"minProtocol": 1, "maxProtocol": 1, "client": {"id": "t", "version": "0", "platform": "py"}}}))
            assert json.loads(await ws.recv())["ok"]
            await ws.send(json.dumps({"type": "req", "id": "e", "method": "streamRunEvents", "params": {"runId": run_id, "afterSeq": 0}}))
            seqs: list[int] = []
            answer: dict[str, Any] | None = None
            async with asyncio.timeout(20):
                while not gw.run_done(run_id) or answer is None or (seqs and seqs[-1] < gw._live(run_id).event_seq):
                    frame = json.loads(await ws.recv())
                    if frame.get("id") == "e":
                        answer = frame
                    elif frame.get("event") == "run.event":
                        assert answer is not None, "history comes after the answer"
                        seqs.append(frame["payload"]["seq"])
                        assert frame["payload"]["runId"] == run_id and isinstance(frame["payload"]["event"], str)
                    elif answer is not None:
                        assert frame.get("event") in ("tick", "devtools.event"), "no bare run event on a streaming socket"
            assert answer["ok"] and answer["payload"]["currentSeq"] >= 0
            assert seqs == list(range(1, len(seqs) + 1)) and len(seqs) >= 10


async def test_event_history_over_http_has_timestamps_and_gateway_names() -> None:
    from inspector.client import GatewayClient
    from inspector.replay import ReplayGateway
    from inspector.transcript import load_runs

    runs = load_runs(recording("demo-run.jsonl"))
    async with ReplayGateway(runs, speed=4.0) as gw:
        run_id = gw.run_ids()[0]
        deadline = time.monotonic() + 20
        while not gw.run_done(run_id):
            assert time.monotonic() < deadline, "the replay did not finish"
            await asyncio.sleep(0.05)
        async with GatewayClient(gw.url) as client:
            rows = await client.list_run_events(run_id, limit=3)  # pages of 3
    names = [r["event"] for r in rows]
    assert names.count("NodeStarted") == 4 and names.count("NodeFinished") == 4
    stamps = [r["timestampMs"] for r in rows]
    assert stamps == sorted(stamps) and [r["seq"] for r in rows] == list(range(len(rows)))

"""The inspector against a real Smithers Gateway (npm smithers-orchestrator 0.32.0 under Bun)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from typing import TYPE_CHECKING, Any

import pytest

from inspector.client import GatewayClient
from inspector.errors import ErrorCode, GatewayRpcError
from inspector.status import Backoff, ConnectionStatus
from inspector.stream import DevToolsSubscription, Settled, TimeTravelled
from inspector.transitions import TransitionLog

from .test_subscription import Watch

if TYPE_CHECKING:
    from .gateway.plugin import GatewayFactory
    from .gateway.server import GatewayServer

pytestmark = pytest.mark.gateway


async def gateway_root(client: GatewayClient, run_id: str) -> Any:
    return (await client.get_devtools_snapshot(run_id))["root"]


async def until_equal(client: GatewayClient, w: Watch, run_id: str, timeout: float = 30.0) -> None:
    """Poll until the subscription's tree equals the Gateway's own snapshot."""
    deadline = time.monotonic() + timeout
    while True:
        truth = await gateway_root(client, run_id)
        if not w.sub.tree.empty and w.sub.tree.snapshot()["root"] == truth:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"tree never matched the gateway; status {w.sub.state}, stats {w.sub.stats}")
        await asyncio.sleep(0.1)


@pytest.mark.parametrize("workflow", ["demo", "rich", "doomed", "wide"])
async def test_run_watched_to_completion_equals_the_gateway_snapshot(
    gateway: GatewayServer, make_gateway: GatewayFactory, workflow: str
) -> None:
    if workflow == "wide":  # 80 parallel sequences: ~240 nodes, many ops per delta, rebaselines
        gateway = make_gateway(wide=80, pace=0.2)
    run_id = await asyncio.to_thread(gateway.launch_run, workflow)
    async with GatewayClient(gateway.url, "op-token") as client:
        sub = DevToolsSubscription(client, run_id, stop_when_settled=True)
        w = Watch(sub)
        await asyncio.wait_for(w.task, 120)
        settled = w.items[-1]
        assert isinstance(settled, Settled)
        run = await client.get_run(run_id)
        assert settled.run_status == run["status"] == ("failed" if workflow == "doomed" else "finished")
        assert sub.tree.snapshot()["root"] == await gateway_root(client, run_id)
        assert "online" in w.statuses()
        if workflow == "doomed":
            assert sub.tree.state_counts().get("failed") == 1


async def test_two_rewinds_mid_run_follow_the_gateway(make_gateway: GatewayFactory) -> None:
    gw = make_gateway(pace=3)
    run_id = await asyncio.to_thread(gw.launch_run, "rich")
    async with GatewayClient(gw.url, "op-token") as client:
        w = Watch(DevToolsSubscription(client, run_id, backoff=Backoff(base=0.05, cap=0.5)))
        for target in (4, 2):
            await w.until(lambda t=target: (w.sub.tree.seq or 0) >= t + 2, timeout=40)
            jumps = len(w.of(TimeTravelled))
            await client.rpc("rewindRun", {"runId": run_id, "frameNo": target, "confirm": True, "force": True})
            await w.until(lambda n=jumps: len(w.of(TimeTravelled)) > n, timeout=20)
            assert w.of(TimeTravelled)[-1].jump.to_frame_no == target
        await asyncio.to_thread(gw.wait_for_run, run_id, timeout=60)
        await w.until(lambda: w.sub.settled, timeout=30)
        await until_equal(client, w, run_id)
        await w.stop()


async def test_gateway_killed_and_restarted_mid_run(make_gateway: GatewayFactory) -> None:
    gw = make_gateway(pace=3)
    run_id = await asyncio.to_thread(gw.launch_run, "rich")
    async with GatewayClient(gw.url, "op-token") as client:
        w = Watch(DevToolsSubscription(client, run_id, backoff=Backoff(base=0.05, cap=0.5)))
        await w.until(lambda: (w.sub.tree.seq or 0) >= 3, timeout=40)
        await asyncio.to_thread(gw.kill)
        await w.until(lambda: w.sub.state.status is ConnectionStatus.OFFLINE, timeout=20)
        outage = w.sub.state.outage_since
        assert outage is not None
        await asyncio.to_thread(gw.start)
        await w.until(lambda: w.sub.state.status is ConnectionStatus.ONLINE, timeout=30)
        assert w.statuses().count("offline") >= 1 and w.statuses()[-1] == "online"
        await until_equal(client, w, run_id)
        await w.stop()


async def test_bad_token_is_unauthorized(gateway: GatewayServer) -> None:
    run_id = await asyncio.to_thread(gateway.launch_run, "demo")
    async with GatewayClient(gateway.url, "not-a-token") as client:
        sub = DevToolsSubscription(client, run_id)
        w = Watch(sub)
        await w.until(lambda: sub.state.status is ConnectionStatus.UNAUTHORIZED, timeout=15)
        assert sub.tree.empty and sub.stats.connects == 0
        await w.stop()
        with pytest.raises(GatewayRpcError) as info:
            await client.get_run(run_id)
        assert info.value.code is ErrorCode.UNAUTHORIZED


async def test_read_only_token_watches_but_cannot_rewind(gateway: GatewayServer) -> None:
    run_id = await asyncio.to_thread(gateway.launch_run, "demo")
    async with GatewayClient(gateway.url, "read-token") as client:
        sub = DevToolsSubscription(client, run_id, stop_when_settled=True)
        w = Watch(sub)
        await asyncio.wait_for(w.task, 60)
        assert isinstance(w.items[-1], Settled)
        with pytest.raises(GatewayRpcError) as info:
            await client.rpc("rewindRun", {"runId": run_id, "frameNo": 1, "confirm": True})
        assert info.value.code is ErrorCode.FORBIDDEN and info.value.required_scope == "run:admin"
        with pytest.raises(GatewayRpcError) as missing:
            await client.get_run("no-such-run")
        assert missing.value.code in (ErrorCode.RUN_NOT_FOUND, ErrorCode.NOT_FOUND)


async def test_typed_reads_on_a_real_run(gateway: GatewayServer) -> None:
    run_id = await asyncio.to_thread(gateway.launch_run, "rich")
    await asyncio.to_thread(gateway.wait_for_run, run_id)
    async with GatewayClient(gateway.url, "op-token") as client:
        runs = await client.list_runs(limit=100)
        assert run_id in [r["runId"] for r in runs]
        scores = await client.list_scores(run_id)
        assert {s["scorerId"] for s in scores} == {"note-length"}
        output = await client.get_node_output(run_id, "plan")
        assert output["status"] == "produced" and "<script>" in output["row"]["note"]
        with pytest.raises(GatewayRpcError) as info:
            await client.get_node_diff(run_id, "plan")
        assert info.value.code in (ErrorCode.ATTEMPT_NOT_FINISHED, ErrorCode.VCS_ERROR)
        with pytest.raises(GatewayRpcError) as frame:
            await client.get_devtools_snapshot(run_id, frame_no=99999)
        assert frame.value.code is ErrorCode.FRAME_OUT_OF_RANGE


def test_cli_watch_json_exits_zero_with_the_final_tree(gateway: GatewayServer) -> None:
    run_id = gateway.launch_run("rich")
    env = {**os.environ, "SMITHERS_TOKEN": "op-token", "SMITHERS_GATEWAY_URL": gateway.url}
    proc = subprocess.run(
        [sys.executable, "-m", "inspector.cli", "watch", run_id, "--json", "--timeout", "60"],
        env=env, capture_output=True, text=True, timeout=90,
    )
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert lines[0] == {"event": "connection", "status": "connecting", "error": None, "outageSince": None, "retryIn": None}
    assert any(line["event"] == "connection" and line["status"] == "online" for line in lines)
    assert any(line["event"] == "tree" for line in lines)
    final = lines[-1]
    assert final["event"] == "final" and final["settled"]
    truth = gateway.rpc("getDevToolsSnapshot", {"runId": run_id})
    assert final["snapshot"]["root"] == truth["root"]
    assert "op-token" not in proc.stdout + proc.stderr


def test_cli_record_writes_a_replayable_transcript_without_the_token(gateway: GatewayServer, tmp_path: Any) -> None:
    from inspector.transcript import load_runs

    run_id = gateway.launch_run("demo")
    out = tmp_path / "run.jsonl"
    env = {**os.environ, "SMITHERS_TOKEN": "op-token"}
    proc = subprocess.run(
        [sys.executable, "-m", "inspector.cli", "record", run_id, "-o", str(out), "--gateway", gateway.url, "--timeout", "60"],
        env=env, capture_output=True, text=True, timeout=90,
    )
    assert proc.returncode == 0, proc.stderr
    text = out.read_text()
    assert "op-token" not in text and "<redacted>" in text
    runs = load_runs(out)
    assert [r.run_id for r in runs] == [run_id]
    truth = gateway.rpc("getDevToolsSnapshot", {"runId": run_id})
    recorded = runs[0].final_snapshot
    assert recorded is not None and recorded["root"] == truth["root"]


def test_cli_watch_times_out_with_124(gateway: GatewayServer) -> None:
    env = {**os.environ, "SMITHERS_TOKEN": "op-token"}
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "inspector.cli", "watch", "no-such-run", "--json", "--timeout", "2", "--gateway", gateway.url],
        env=env, capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 124 and time.monotonic() - started < 30
    assert json.loads(proc.stdout.splitlines()[-1])["settled"] is False


async def test_run_event_history_is_replayed_once_and_marked(gateway: GatewayServer) -> None:
    """A viewer that arrives after the run still gets its events (timeline, log), marked as history."""
    from inspector.stream import RunEvent

    run_id = await asyncio.to_thread(gateway.launch_run, "demo")
    await asyncio.to_thread(gateway.wait_for_run, run_id)
    async with GatewayClient(gateway.url, "op-token") as client:
        subscription = DevToolsSubscription(client, run_id, stop_when_settled=True)
        # The history's times are best effort (2 s by default, then receipt times): this test is
        # about what they carry, so it waits for them, as a loaded CI machine's Gateway may need.
        subscription.history_timeout = 60.0
        w = Watch(subscription)
        await asyncio.wait_for(w.task, 90)
    events = w.of(RunEvent)
    started = {e.frame.payload["nodeId"] for e in events if e.frame.event == "node.started"}
    assert started == {"fetch", "left", "right", "ship"}
    # Live items after the replay are only the Gateway's echo: its out-of-process event bridge
    # (polling the database every second) re-sends the history of a run that ended between two
    # polls, with new seqs. None of them is news. The one exception: the Gateway broadcasts a bare
    # ``run.completed`` (no stream seq) to every connection when its in-process run settles, a
    # moment after the database says the run ended (what wait_for_run reads). A viewer connecting
    # in between gets it before the history; the history's own run.completed is then the repeat.
    transitions = TransitionLog()
    news = [(e.frame.event, e.seq) for e in events
            if not transitions.is_repeat(e.frame.event, e.frame.payload) and not e.replayed]
    assert news in ([], [("run.completed", None)])
    seqs = [e.seq for e in events if e.seq is not None]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs) and len(seqs) >= 12
    # History carries the Gateway's own timestamps (GET /v1/api/events), not our receipt time.
    # Per (event, node), its first replayed occurrence: a second one is the Gateway's echo (above),
    # which finds every history time of its kind taken (a repeat: the dashboard drops it).
    when: dict[tuple[str, Any], float | None] = {}
    for e in events:
        if e.replayed and e.frame.event.startswith("node."):
            when.setdefault((e.frame.event, e.frame.payload.get("nodeId")), e.at)
    untimed = [key for key, at in when.items() if at is None]
    assert untimed == [], f"replayed without the history's time: {untimed}; all events: {[(e.frame.event, e.seq, e.replayed, e.at) for e in events]}"
    run = await asyncio.to_thread(gateway.get_run, run_id)
    assert run["startedAtMs"] / 1000 - 1 <= when[("node.started", "fetch")] <= when[("node.finished", "fetch")]
    assert when[("node.finished", "fetch")] <= when[("node.started", "left")] <= when[("node.finished", "ship")]
    assert when[("node.finished", "ship")] <= run["finishedAtMs"] / 1000 + 1


async def replay_window(client: GatewayClient, run_id: str) -> int:
    """``currentSeq`` of the Gateway's in-memory replay window for a run (0: none)."""
    conn = await client.open()
    try:
        answer = await (await conn.send_request("streamRunEvents", {"runId": run_id, "afterSeq": 0}))
        assert answer.ok, answer
        return int(answer.payload["currentSeq"])
    finally:
        await conn.close()


async def test_a_run_opened_after_the_gateway_dropped_its_replay_still_has_its_history(gateway: GatewayServer) -> None:
    """The Gateway keeps a run's replay window for one second after the run ends; a viewer
    opening the run later gets an empty replay. The durable history (/v1/api/events) stands
    in: every node event, replayed, with the Gateway's own times and the live names/states."""
    from collections import Counter

    from inspector.stream import RunEvent

    run_id = await asyncio.to_thread(gateway.launch_run, "rich")
    await asyncio.to_thread(gateway.wait_for_run, run_id)
    async with GatewayClient(gateway.url, "op-token") as client:
        deadline = time.monotonic() + 30
        while await replay_window(client, run_id) != 0:
            assert time.monotonic() < deadline, "the Gateway kept the replay window: the test cannot tell the paths apart"
            await asyncio.sleep(0.2)
        w = Watch(DevToolsSubscription(client, run_id, stop_when_settled=True))
        await asyncio.wait_for(w.task, 60)
        history = await client.list_run_events(run_id)
    names = {"NodeStarted": "node.started", "NodeFinished": "node.finished", "NodeFailed": "node.failed",
             "NodeRetrying": "node.retrying", "NodePending": "node.pending"}
    expected = Counter((names[r["event"]], r["payload"]["nodeId"]) for r in history if r["event"] in names)
    events = [e for e in w.of(RunEvent) if e.frame.event.startswith("node.")]
    assert Counter((e.frame.event, e.frame.payload["nodeId"]) for e in events) == expected
    assert all(e.replayed and e.at is not None for e in events)
    states = {e.frame.event: e.frame.payload.get("state") for e in events}
    assert states == {"node.pending": "pending", "node.started": "in-progress", "node.retrying": "in-progress",
                      "node.finished": "finished", "node.failed": "failed"}
    times = [e.at for e in events]
    assert times == sorted(times)
    completed = [e for e in w.of(RunEvent) if e.frame.event == "run.completed"]
    assert completed and completed[0].frame.payload["status"] == "finished"
    assert w.sub.settled


async def test_joining_mid_run_sees_every_node_event_exactly_once(make_gateway: GatewayFactory) -> None:
    """History (replayed) and news (live) meet without a gap or a duplicate."""
    from collections import Counter

    from inspector.stream import RunEvent

    gw = make_gateway(pace=2)
    run_id = await asyncio.to_thread(gw.launch_run, "rich")
    await asyncio.to_thread(gw.wait_for_run_where, run_id, lambda r: (r.get("summary") or {}).get("finished", 0) >= 3)
    async with GatewayClient(gw.url, "op-token") as client:
        w = Watch(DevToolsSubscription(client, run_id, stop_when_settled=True))
        await asyncio.wait_for(w.task, 90)
        history = await client.list_run_events(run_id)
    names = {"NodeStarted": "node.started", "NodeFinished": "node.finished", "NodeFailed": "node.failed"}
    # (Live node events may omit the loop iteration that the history records: count per node.)
    expected = Counter((names[r["event"]], r["payload"]["nodeId"]) for r in history if r["event"] in names)
    seen = Counter((e.frame.event, e.frame.payload["nodeId"]) for e in w.of(RunEvent) if e.frame.event in names.values())
    assert any(e.replayed for e in w.of(RunEvent)) and any(not e.replayed for e in w.of(RunEvent))
    assert seen == expected

"""No hostile Gateway loses the run: protocol-level faults that ``test_subscription.py`` does not cover.

Two hostile peers, both in-process and on loopback:

- :class:`tests.scripted_gateway.ScriptedGateway`: one run whose *truth* the test drives, with
  per-connection plans of rude frames (unknown frame types, duplicate, late and reordered
  deltas, unknown node types and states, 10 MB frames, absurdly nested JSON);
- :class:`inspector.replay.ReplayGateway`: a recorded Smithers run replayed live with its fault
  hooks (``rpc_failures`` for HTTP 429/502/504/409, ``set_token`` to revoke the token
  mid-session, ``drop_connections``, ``send_raw``, ``inject_devtools_event``,
  ``devtools_error``, ``pause``).

The last test runs the dashboard's own ``RunStore`` (through the hub) against the replay
behind a chaos proxy, to check what a view would show during each outage.

Every case ends on the Gateway's tree (``data_lost == 0`` against its ``getDevToolsSnapshot``),
and checks that the status said what was wrong while it was wrong, and that retries are
bounded and visible. Waiting is polling with deadlines; the only sleeps are the pacing of an
injected storm and an injected pause (they are the faults, not synchronisation).
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import re
import time
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from dashboard.format import state_colour, state_label
from inspector.client import GatewayClient, GatewayConnection
from inspector.errors import ErrorCode, GatewayRpcError, GatewayUnavailable
from inspector.render import node_text
from inspector.status import Backoff, ConnectionStatus
from inspector.stream import DevToolsSubscription, Heartbeat, Resynced, RunEvent, TreeUpdated
from inspector.transcript import load_runs
from inspector.tree import DevToolsTree
from tests.faulty_replay import FaultyReplayGateway

from .chaos_proxy import Timeline, data_lost
from .recordings import recording
from .scripted_gateway import Plan, ScriptedGateway, task_node
from .test_subscription import Watch, equal_to_truth, fast_backoff, watch

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

TOKEN = "op-token"
MiB = 1 << 20


def escalating_backoff() -> Backoff:
    """Quick, but never "healthy" by mere time: every failed attempt must count up."""
    return Backoff(base=0.05, cap=0.4, healthy_after=30.0)


def ahead(gw: ScriptedGateway, *ops: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The deltas ``gw.advance(ops[0]); gw.advance(ops[1]); ...`` would stream, without applying them."""
    shadow = DevToolsTree({"version": 1, "kind": "snapshot", "snapshot": gw.truth.snapshot()})
    out = []
    for step in ops:
        seq = shadow.seq or 0
        event = {"version": 1, "kind": "delta", "delta": {"version": 1, "baseSeq": seq, "seq": seq + 1, "ops": step}}
        shadow.apply(event)
        out.append(event)
    return out


def set_state(gw: ScriptedGateway, node_id: int, state: str) -> list[dict[str, Any]]:
    return [gw.set_state(node_id, state)]


# --------------------------------------------------------------------------- scripted peer


async def test_unknown_frame_types_and_events_are_skipped_without_a_resync() -> None:
    """A newer Gateway may send frame types and events we do not know: skip them, keep the tree."""
    async with ScriptedGateway() as gw:
        rude: list[Any] = [
            {"type": "presence", "who": "someone", "payload": {"runId": "run-1"}},
            {"type": "res", "id": "nobody-asked", "ok": True, "payload": {"surprise": 1}},
            {"type": "res", "id": "nobody-asked-either", "ok": False, "error": {"code": "Weird", "message": "?"}},
            {"type": "event", "event": "gateway.maintenance", "payload": {"runId": "run-1", "inMinutes": 5}},
            {"type": "event", "event": "devtools.hint", "payload": {"streamId": "$STREAM", "runId": "run-1"}},
            {"type": "event", "event": "run.event", "payload": {"event": "run.mystery", "payload": {"runId": "run-1"}}},
        ]
        gw.plans = [Plan(frames=rude)]
        client, w = await watch(gw)
        await gw.advance(set_state(gw, 100, "in-progress"))
        await gw.advance(set_state(gw, 100, "finished"))
        await w.until(equal_to_truth(gw, w))
        names = {i.frame.event for i in w.of(RunEvent)}
        assert {"gateway.maintenance", "run.mystery"} <= names, names
        assert w.sub.stats.resyncs == 0 and not w.of(Resynced) and gw.connections == 1
        await w.stop()
        await client.aclose()


@pytest.mark.parametrize(
    ("order", "resyncs", "skipped"),
    [
        ("duplicate", 0, 1),  # d1 d1 d2: the second d1 is already covered
        ("late", 0, 1),  # d1 d2 d1: a late copy of an old delta
        ("reordered", 1, 0),  # d2 d1: d2 does not follow the snapshot; rebaseline
    ],
)
async def test_duplicate_late_and_reordered_deltas(order: str, resyncs: int, skipped: int) -> None:
    async with ScriptedGateway() as gw:
        ops1, ops2, ops3 = set_state(gw, 100, "in-progress"), set_state(gw, 101, "in-progress"), set_state(gw, 102, "failed")
        d1, d2 = ahead(gw, ops1, ops2)
        gw.plans = [Plan(frames={"duplicate": [d1, d1, d2], "late": [d1, d2, d1], "reordered": [d2, d1]}[order])]
        client, w = await watch(gw)
        if resyncs:
            await w.until(lambda: bool(w.of(Resynced)))
        else:
            await w.until(lambda: w.sub.tree.seq == 2)
        # The Gateway's own history now catches up with what it sent (and resends it).
        for step in (ops1, ops2, ops3):
            await gw.advance(step)
        await w.until(equal_to_truth(gw, w))
        assert len(w.of(Resynced)) == resyncs, [r.reason for r in w.of(Resynced)]
        if resyncs:
            assert "does not follow" in w.of(Resynced)[0].reason
        assert w.sub.stats.stale_deltas_skipped >= skipped
        # The tree never went backwards between snapshots.
        seqs = [u.change.seq for u in w.of(TreeUpdated) if u.change.kind == "delta"]
        assert seqs == sorted(seqs) and len(seqs) == len(set(seqs)), seqs
        await w.stop()
        await client.aclose()


async def test_unknown_node_types_and_task_states_are_kept_and_shown_by_name() -> None:
    async with ScriptedGateway() as gw:
        client, w = await watch(gw)
        node = task_node(500, "warp", state="waiting-for-godot")
        node.update(type="quantum-gate", hologram={"phase": 3})
        await gw.advance([{"op": "addNode", "parentId": 2, "index": 0, "node": node}])
        await gw.advance(set_state(gw, 100, "teleporting"))
        await w.until(equal_to_truth(gw, w))
        tree = w.sub.tree
        assert tree[500].type == "quantum-gate" and tree[500].state == "waiting-for-godot"
        assert tree[100].state == "teleporting"
        assert tree.state_counts() == {"waiting-for-godot": 1, "teleporting": 1, "pending": 5}
        assert tree.snapshot()["root"]["children"][0]["children"][0]["hologram"] == {"phase": 3}
        # Shown by name: the terminal line and the dashboard's label, in a neutral colour.
        line = node_text(tree[500]).plain
        assert "[quantum-gate]" in line and "waiting-for-godot" in line
        assert state_label("teleporting") == "teleporting"
        assert state_colour("teleporting") == state_colour("some-other-unknown-state")
        assert w.sub.stats.resyncs == 0
        await w.stop()
        await client.aclose()


async def test_a_10_mb_frame_over_the_limit_backs_off_says_why_and_recovers() -> None:
    """max_frame_bytes (1 MiB) < a 10 MB delta: the socket dies each time; nothing half-applied."""
    async with ScriptedGateway() as gw:
        client = GatewayClient(gw.url, "tok", max_frame_bytes=MiB)
        tl = Timeline(DevToolsSubscription(client, gw.run_id, backoff=escalating_backoff())).start()
        await tl.until(lambda: tl.sub.tree.seq == 0 and tl.sub.state.status is ConnectionStatus.ONLINE)
        before = tl.sub.tree.snapshot()
        await gw.advance([{"op": "updateProps", "id": 100, "props": {"blob": "x" * (10 * MiB)}}])
        await tl.until(lambda: len(tl.offline_states()) >= 4, timeout=15, what="four failed attempts")
        # The big delta and every big snapshot after it were refused whole.
        assert tl.sub.tree.snapshot() == before
        attempts = [s.attempt for s in tl.offline_states()]
        assert attempts == sorted(attempts) and attempts[-1] >= 4, attempts
        assert all(s.retry_in is not None and s.retry_in <= 0.4 for s in tl.offline_states())
        # The Gateway's run shrinks again: the next snapshot fits and we are back.
        await gw.advance([{"op": "updateProps", "id": 100, "props": {"blob": "small"}}])
        await tl.until(lambda: data_lost(tl.sub.tree, gw.truth.snapshot()) == 0, timeout=10, what="recovery")
        assert tl.sub.state.status is ConnectionStatus.ONLINE and tl.went_offline_then_online()
        # ...and while it was wrong, the status said why (not just "connection lost").
        errors = {s.error for s in tl.offline_states()}
        assert all(e and ("1009" in e or "larger" in e) for e in errors), errors
        await tl.stop()
        await client.aclose()


async def test_a_10_mb_frame_under_the_limit_is_accepted() -> None:
    async with ScriptedGateway() as gw:
        client, w = await watch(gw)  # the default limit is 32 MiB
        await w.until(lambda: w.sub.tree.seq == 0)
        blob = "y" * (10 * MiB)
        await gw.advance([{"op": "updateProps", "id": 101, "props": {"blob": blob}}])
        await w.until(equal_to_truth(gw, w), timeout=20)
        assert w.sub.tree[101].props["blob"] == blob
        assert w.sub.stats.resyncs == 0 and gw.connections == 1
        await w.stop()
        await client.aclose()


def _nested(depth: int) -> Any:
    value: Any = []
    for _ in range(depth):
        value = [value]
    return value


TICK = {"type": "event", "event": "tick", "payload": {}}


@pytest.mark.parametrize("poison", ["deep-field", "huge-index"])
async def test_a_poisonous_but_valid_frame_does_not_crash_the_subscription(poison: str) -> None:
    """Valid JSON that breaks the model's arithmetic or recursion must be refused or kept, not fatal.

    ``deep-field``: a snapshot with 600 levels of ``[[...]]`` in an unknown node field
    (``json.loads`` takes it; the tree's copy recurses into ``RecursionError``).
    ``huge-index``: an ``addNode`` index of 10**400 (a JSON integer; ``math.isfinite``
    raises ``OverflowError``). Neither is a ``DevToolsError``, so today the subscription's
    iteration dies with it. A tick after the poison tells when it has been dealt with.
    """
    async with ScriptedGateway() as gw:
        frame: Any
        if poison == "deep-field":
            frame = gw.snapshot_event()
            frame["snapshot"]["root"]["children"][0]["children"][0]["deep"] = _nested(600)
        else:  # raw text: the integer does not survive a trip through float
            frame = ('{"type":"event","event":"devtools.event","payload":{"runId":"run-1","event":'
                     '{"version":1,"kind":"delta","delta":{"version":1,"baseSeq":0,"seq":1,"ops":[{"op":"addNode",'
                     '"parentId":2,"index":1' + "0" * 400 + ',"node":{"id":900}}]}}}}')
        gw.plans = [Plan(frames=[frame, TICK])]
        client, w = await watch(gw)
        await w.until(lambda: w.task.done() or bool(w.of(Resynced)) or bool(w.of(Heartbeat)))
        assert not w.task.done(), w.task.exception()
        kept = not w.of(Resynced)
        if poison == "deep-field" and kept:  # kept whole: exactly the snapshot the Gateway sent
            assert w.sub.tree[100].fields["deep"] == _nested(600)
        else:
            if poison == "huge-index":  # the Gateway's own tree got the node too (splice clamps to the end)
                await gw.advance([{"op": "addNode", "parentId": 2, "index": 10**6, "node": {"id": 900}}])
            await gw.advance(set_state(gw, 103, "finished"))
            await w.until(equal_to_truth(gw, w))
            if poison == "huge-index":
                assert [c.id for c in w.sub.tree[2].children][-1] == 900
        await w.stop()
        await client.aclose()


@pytest.mark.parametrize("text", ["null", "[1, 2]"])
async def test_json_that_is_not_an_object_is_an_undecodable_frame(text: str) -> None:
    """A frame must be an object; anything else is reported as undecodable (and rebaselined),
    not as a lost connection ("connection failed: the JSON object must be str...")."""
    async with ScriptedGateway() as gw:
        gw.plans = [Plan(frames=[text])]
        client, w = await watch(gw)
        await w.until(lambda: bool(w.of(Resynced)))
        await gw.advance(set_state(gw, 100, "finished"))
        await w.until(equal_to_truth(gw, w))
        assert "undecodable" in w.of(Resynced)[0].reason, w.of(Resynced)[0].reason
        await w.stop()
        await client.aclose()


async def test_a_flood_of_frames_stays_bounded_and_the_tree_follows() -> None:
    """20,000 frames of noise between two deltas: processed, bounded, no resync."""
    async with ScriptedGateway() as gw:
        noise: list[Any] = []
        for i in range(10_000):
            noise.append({"type": "event", "event": "tick", "payload": {"ts": i}})
            noise.append({"type": "flood", "n": i})
        gw.plans = [Plan(frames=noise)]
        client, w = await watch(gw)
        await w.until(lambda: len(w.of(Heartbeat)) == 10_000, timeout=30)
        await gw.advance(set_state(gw, 104, "finished"))
        await w.until(equal_to_truth(gw, w))
        assert w.sub.stats.resyncs == 0 and gw.connections == 1
        await w.stop()
        await client.aclose()


class _Firehose:
    """A websocket that completes the handshake and then never stops sending ticks."""

    def __init__(self) -> None:
        self.recvs = 0
        self.challenged = False
        self.connect_id: str | None = None

    async def send(self, message: str) -> None:
        self.connect_id = json.loads(message)["id"]

    async def recv(self) -> str:
        await asyncio.sleep(0)  # a real socket yields to the loop on every frame
        if not self.challenged:
            self.challenged = True
            return json.dumps({"type": "event", "event": "connect.challenge", "payload": {"nonce": "n"}})
        if self.connect_id is not None:
            rid, self.connect_id = self.connect_id, None
            return json.dumps({"type": "res", "id": rid, "ok": True, "payload": {"protocol": 1}})
        self.recvs += 1
        return '{"type":"event","event":"tick","payload":{}}'

    async def close(self, code: int = 1000, reason: str = "") -> None:
        return None


async def test_the_event_queue_is_a_bounded_buffer_that_pushes_back() -> None:
    """A consumer that falls behind stops the reader (TCP backpressure) instead of growing memory."""
    hose = _Firehose()
    conn = GatewayConnection(hose, queue_size=100)
    await conn.handshake({"minProtocol": 1, "maxProtocol": 1, "client": {"id": "t"}}, timeout=5)
    try:
        for _ in range(2_000):  # cooperative turns for the reader, not a clock
            await asyncio.sleep(0)
        assert 100 <= hose.recvs <= 102, hose.recvs
        for _ in range(50):
            assert (await conn.next_event(timeout=5)) is not None
        for _ in range(2_000):
            await asyncio.sleep(0)
        assert 150 <= hose.recvs <= 152, hose.recvs
    finally:
        await conn.close()


# --------------------------------------------------------------------------- replay gateway


class CountingTransport(httpx.AsyncBaseTransport):
    """Real HTTP, with every request's path noted (how many times did we really ask?)."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.paths: list[str] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.paths.append(request.url.path)
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


@pytest.fixture
async def rich() -> AsyncIterator[FaultyReplayGateway]:
    """The recorded ``rich`` run, held at its start until a test resumes it."""
    gateway = FaultyReplayGateway(load_runs(recording("rich-run.jsonl")), token=TOKEN, speed=1.0, heartbeat_ms=300)
    gateway.pause()
    await gateway.start()
    yield gateway
    await gateway.stop()


def retry_delays(caplog: pytest.LogCaptureFixture) -> list[float]:
    return [float(m) for r in caplog.records for m in re.findall(r"retrying in ([0-9.]+) s", r.getMessage())]


async def test_rpc_429_502_504_are_retried_with_backoff_and_retry_after(
    rich: FaultyReplayGateway, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="inspector.client")
    run_id = rich.run_ids()[0]
    transport = CountingTransport()
    async with GatewayClient(rich.url, TOKEN, transport=transport, rpc_retries=4) as client:
        rich.rpc_failures["getRun"] = [429, 502, 504]
        started = time.monotonic()
        run = await client.get_run(run_id)
        elapsed = time.monotonic() - started
    assert run["runId"] == run_id
    assert transport.paths.count("/v1/rpc/getRun") == 4
    delays = retry_delays(caplog)
    assert len(delays) == 3 and delays[0] == 1.0, delays  # 429 carried Retry-After: 1
    assert 0 <= delays[1] <= 0.4 and 0 <= delays[2] <= 0.8, delays  # full jitter under the ceilings
    assert 1.0 <= elapsed < 1.0 + 0.4 + 0.8 + 2.0, elapsed


async def test_rpc_retries_are_jittered_and_give_up_boundedly(
    rich: FaultyReplayGateway, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="inspector.client")
    run_id = rich.run_ids()[0]
    transport = CountingTransport()
    async with GatewayClient(rich.url, TOKEN, transport=transport, rpc_retries=3) as client:
        rich.rpc_failures["getRun"] = [502] * 40
        for _ in range(3):
            started = time.monotonic()
            with pytest.raises(GatewayUnavailable) as info:
                await client.get_run(run_id)
            assert info.value.status == 502 and "HTTP 502" in str(info.value)
            assert time.monotonic() - started < 0.2 + 0.4 + 0.8 + 2.0
    assert transport.paths.count("/v1/rpc/getRun") == 12  # 3 calls x (1 + 3 retries), then it gave up
    assert len(rich.rpc_failures["getRun"]) == 40 - 12
    delays = retry_delays(caplog)
    assert len(delays) == 9 and len(set(delays)) > 3, delays  # jitter: not one fixed delay
    for i, delay in enumerate(delays):
        assert 0 <= delay <= 0.2 * 2 ** (i % 3), (i, delay)


async def test_busy_and_rate_limited_are_transient_run_not_found_is_final(rich: FaultyReplayGateway) -> None:
    run_id = rich.run_ids()[0]
    transport = CountingTransport()
    async with GatewayClient(rich.url, TOKEN, transport=transport, rpc_retries=5) as client:
        rich.rpc_failures["getDevToolsSnapshot"] = [409, 409]  # Busy
        snapshot = await client.get_devtools_snapshot(run_id)
        assert snapshot["runId"] == run_id
        assert transport.paths.count("/v1/rpc/getDevToolsSnapshot") == 3

        with pytest.raises(GatewayRpcError) as missing:
            await client.get_devtools_snapshot("no-such-run")
        assert missing.value.code is ErrorCode.RUN_NOT_FOUND and not missing.value.transient
        assert missing.value.status == 404
        assert transport.paths.count("/v1/rpc/getDevToolsSnapshot") == 4  # asked once, not retried

        rich.rpc_failures["launchRun"] = [429]  # RateLimited, but a write: never retried
        with pytest.raises(GatewayRpcError) as limited:
            await client.rpc("launchRun", {"workflow": "rich"})
        assert limited.value.code is ErrorCode.RATE_LIMITED and limited.value.transient
        assert transport.paths.count("/v1/rpc/launchRun") == 1


async def test_token_revoked_mid_session_is_unauthorized_then_recovers(rich: FaultyReplayGateway) -> None:
    run_id = rich.run_ids()[0]
    transport = CountingTransport()
    async with GatewayClient(rich.url, TOKEN, transport=transport) as client:
        sub = DevToolsSubscription(client, run_id, backoff=fast_backoff(), unauthorized_retry=0.4, stop_when_settled=True)
        tl = Timeline(sub).start()
        await tl.until(lambda: sub.state.status is ConnectionStatus.ONLINE and not sub.tree.empty)
        rich.resume()
        await tl.until(lambda: (sub.tree.seq or 0) >= 3, what="the run under way")

        assert rich.set_token("rotated-token") == 1
        revoked_at = time.monotonic()
        await tl.until(lambda: sub.state.error == "Invalid token", what="the reconnect refused")
        assert sub.state.status is ConnectionStatus.UNAUTHORIZED and sub.state.retry_in == 0.4
        # HTTP says the same, once: a rejected token is not something to retry.
        calls = transport.paths.count("/v1/rpc/getRun")
        with pytest.raises(GatewayRpcError) as info:
            await client.get_run(run_id)
        assert info.value.unauthorized and transport.paths.count("/v1/rpc/getRun") == calls + 1
        # No hot loop: attempts while unauthorized are unauthorized_retry apart.
        await tl.until(lambda: sum(s.status is ConnectionStatus.CONNECTING for t, s in tl.states() if t > revoked_at) >= 3,
                       what="three slow retries")
        tries = [t for t, s in tl.states() if t > revoked_at and s.status is ConnectionStatus.CONNECTING]
        gaps = [b - a for a, b in zip(tries, tries[1:], strict=False)]
        assert min(gaps) >= 0.35, gaps

        rich.set_token(TOKEN)
        restored_at = time.monotonic()
        await tl.until(lambda: sub.state.status is ConnectionStatus.ONLINE, what="back online")
        recovered = tl.recoveries([restored_at])[0]
        assert recovered is not None and recovered < 0.4 + 1.5, recovered
        assert sub.state.error is None and sub.state.outage_since is None
        await tl.wait(30)
        truth = await client.get_devtools_snapshot(run_id)
        assert data_lost(sub.tree, truth) == 0
        assert tl.settled() is not None and tl.settled().run_status == rich.run_status(run_id)  # type: ignore[union-attr]
        statuses = tl.statuses()
        assert statuses.index("unauthorized") < len(statuses) - 1 - statuses[::-1].index("online")
        # The revocation itself (close 1008 "token revoked" on a live socket) must read as
        # "unauthorized" at once, not as a lost connection retried at full speed.
        first = next(s for t, s in tl.states() if t >= revoked_at)
        assert (first.status, first.error) == (ConnectionStatus.UNAUTHORIZED, "token revoked"), first


async def test_a_seeded_storm_of_hostile_faults_on_a_replayed_run() -> None:
    """Drops, garbage, gaps, stale copies, unknown ids, backpressure and pauses, all during one run."""
    rng = random.Random(20260522)
    gateway = FaultyReplayGateway(load_runs(recording("wide-run.jsonl")), token=TOKEN, speed=4.0, heartbeat_ms=300)
    await gateway.start()
    run_id = gateway.run_ids()[0]
    injected: dict[str, int] = {}
    try:
        async with GatewayClient(gateway.url, TOKEN) as client:
            sub = DevToolsSubscription(client, run_id, backoff=fast_backoff(), stop_when_settled=True)
            tl = Timeline(sub).start()
            await tl.until(lambda: not sub.tree.empty, what="the first snapshot")
            while not gateway.run_done(run_id):
                kind = rng.choice(["drop", "garbage", "unknown-frame", "gap", "stale", "unknown-id",
                                   "backpressure", "pause"])
                seq = gateway.run_seq(run_id)
                if kind == "drop":
                    gateway.drop_connections()
                elif kind == "garbage":
                    gateway.send_raw('{"type":"event","event":"devtools.ev')
                elif kind == "unknown-frame":
                    gateway.send_raw('{"type":"hologram","payload":{}}')
                elif kind == "gap":
                    gateway.inject_devtools_event(run_id, _delta(seq + 3, seq + 4, []))
                elif kind == "stale":
                    gateway.inject_devtools_event(run_id, _delta(max(0, seq - 1), seq, []))
                elif kind == "unknown-id":
                    gateway.inject_devtools_event(run_id, _delta(seq, seq + 1, [{"op": "updateTask", "id": 987_654, "task": {}}]))
                elif kind == "backpressure":
                    gateway.devtools_error(run_id)
                else:
                    gateway.pause()
                    await asyncio.sleep(rng.uniform(0.2, 0.6))  # the fault: a Gateway that goes quiet
                    gateway.resume()
                injected[kind] = injected.get(kind, 0) + 1
                tl.note_fault(kind)
                await asyncio.sleep(rng.uniform(0.15, 0.5))  # pacing of the storm, not synchronisation
            await tl.wait(60)
            truth = await client.get_devtools_snapshot(run_id)
    finally:
        await gateway.stop()
    assert sum(injected.values()) >= 8, injected
    assert data_lost(sub.tree, truth) == 0
    settled = tl.settled()
    assert settled is not None and settled.run_status == "finished"
    assert len(tl.resyncs()) >= injected.get("drop", 0), (injected, sub.stats)
    assert tl.went_offline_then_online() or not injected.get("drop")


def _delta(base: int, seq: int, ops: list[dict[str, Any]]) -> dict[str, Any]:
    return {"version": 1, "kind": "delta", "delta": {"version": 1, "baseSeq": base, "seq": seq, "ops": ops}}


async def test_the_store_says_what_is_wrong_while_it_is_wrong(rich: FaultyReplayGateway) -> None:
    """End to end through the dashboard's RunStore: what a view binds to during each outage.

    The Gateway unreachable for a while (a chaos proxy cuts the socket and refuses new ones)
    shows ``offline`` with the reason and the retry delay; a revoked token shows
    ``unauthorized`` with the Gateway's message; each outage is logged once; once the
    Gateway is well again the store is ``online`` with no error, and holds the run's tree.
    """
    from dashboard.hub import GatewayHub
    from dashboard.store import RunStore

    from .chaos_proxy import ChaosProxy
    from .gateway.server import free_port

    run_id = rich.run_ids()[0]
    proxy = await ChaosProxy(rich.port).start()
    client = GatewayClient(proxy.url, TOKEN)
    hub = GatewayHub(client, grace=0.2, source=lambda run, tree: DevToolsSubscription(client,
        run, tree=tree, backoff=fast_backoff(), unauthorized_retry=0.4))
    store = RunStore(hub=hub, run_id=run_id, batch_interval=0.01)
    seen: list[tuple[str, str | None, float | None]] = []
    store.param.watch(lambda _: seen.append((store.connection_status, store.connection_error, store.retry_in)),
                      ["connection_status", "connection_error", "retry_in"])

    async def until(condition: Any, what: str, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            assert time.monotonic() < deadline, f"{what}; store saw {seen[-6:]}"
            await asyncio.sleep(0.02)  # poll interval

    try:
        await until(lambda: store.connection_status == "online" and not store.tree.empty, "online with a tree")
        rich.resume()
        await until(lambda: (store.tree.seq or 0) >= 2, "the run under way")
        proxy.set_upstream(free_port())  # nothing listens there: every reconnect is refused
        proxy.cut_all()
        await until(lambda: sum(s == "offline" for s, _, _ in seen) >= 3, "offline, retrying")
        offline = [(e, r) for s, e, r in seen if s == "offline"]
        assert all(e and r is not None for e, r in offline), offline  # the reason and the retry delay
        proxy.set_upstream(rich.port)
        await until(lambda: store.connection_status == "online" and store.connection_error is None, "back online")

        rich.set_token("rotated-token")
        await until(lambda: store.connection_status == "unauthorized", "unauthorized")
        await until(lambda: store.connection_error == "Invalid token", "the Gateway's message")
        assert store.retry_in == 0.4
        rich.set_token(TOKEN)
        await until(lambda: store.connection_status == "online" and store.connection_error is None, "recovered")
        await until(lambda: rich.run_done(run_id) and store.settled, "the run settled", timeout=30)
        truth = await client.get_devtools_snapshot(run_id)
        assert data_lost(store.tree, truth) == 0
        logged = [e.event for e in store.events if e.event.startswith("connection.")]
        assert "connection.unauthorized" in logged and "connection.offline" in logged, logged
    finally:
        store.close()
        await hub.aclose()
        await proxy.stop()


async def test_the_store_logs_one_outage_once_however_many_retries(rich: FaultyReplayGateway) -> None:
    """An outage with five failed reconnects is one ``connection.offline`` record, not five.

    ``RunStore`` means to log transitions only ("not every retry of one outage"), but every
    retry passes through ``connecting``, so each ``offline`` that follows looks like a new
    transition. ``outage_since`` is the same for the whole outage: that is what tells.
    """
    from dashboard.hub import GatewayHub
    from dashboard.store import RunStore

    from .chaos_proxy import ChaosProxy
    from .gateway.server import free_port

    run_id = rich.run_ids()[0]
    proxy = await ChaosProxy(rich.port).start()
    client = GatewayClient(proxy.url, TOKEN)
    hub = GatewayHub(client, grace=0.2, source=lambda run, tree: DevToolsSubscription(client, run, tree=tree, backoff=fast_backoff()))
    store = RunStore(hub=hub, run_id=run_id, batch_interval=0.01)
    try:
        deadline = time.monotonic() + 15
        while not (store.connection_status == "online" and not store.tree.empty):
            assert time.monotonic() < deadline, "never online"
            await asyncio.sleep(0.02)  # poll interval
        proxy.set_upstream(free_port())
        proxy.cut_all()
        retries_before = proxy.upstream_failures
        while proxy.upstream_failures < retries_before + 5:
            assert time.monotonic() < deadline + 15, "the reconnects stopped"
            await asyncio.sleep(0.02)  # poll interval
        proxy.set_upstream(rich.port)
        while store.connection_status != "online":
            assert time.monotonic() < deadline + 30, "never back online"
            await asyncio.sleep(0.02)  # poll interval
        store.flush()
        logged = [(e.event, e.message) for e in store.events if e.event.startswith("connection.")]
        assert [name for name, _ in logged] == ["connection.offline"], logged
    finally:
        store.close()
        await hub.aclose()
        await proxy.stop()


async def test_a_gateway_that_lost_history_answers_seq_out_of_range_and_we_rebaseline(rich: FaultyReplayGateway) -> None:
    """We come back asking for frames after seq N; the Gateway's history now ends before N.

    What a restart onto an older database (or a rewind we never heard of) looks like: while
    we cannot reach it, the run is rewound, so the ``run.time_travel_jumped`` reaches nobody
    and our ``afterSeq`` is from a future that no longer exists. ``SeqOutOfRange`` must lead
    to a fresh snapshot (the lower seq is the truth), not to a retry of the same resume.
    """
    from .chaos_proxy import ChaosProxy
    from .gateway.server import free_port

    run_id = rich.run_ids()[0]
    async with ChaosProxy(rich.port) as proxy, GatewayClient(proxy.url, TOKEN) as client:
        sub = DevToolsSubscription(client, run_id, backoff=fast_backoff(), stop_when_settled=True)
        tl = Timeline(sub).start()
        rich.resume()
        await tl.until(lambda: (sub.tree.seq or 0) >= 6, what="the run under way")
        rich.pause()
        proxy.set_upstream(free_port())
        proxy.cut_all()
        await tl.until(lambda: len(tl.offline_states()) >= 2, what="unreachable")
        ours = sub.tree.seq or 0
        rich.rewind(run_id, 2)  # announced to no one
        assert rich.run_seq(run_id) < ours
        proxy.set_upstream(rich.port)
        await tl.until(lambda: any("SeqOutOfRange" in r.reason for r in tl.resyncs()), what="the refused resume")
        await tl.until(lambda: sub.tree.seq == 2, what="the rebaseline to the lower seq")
        rich.resume()
        await tl.wait(30)
        truth = await client.get_devtools_snapshot(run_id)
        assert data_lost(sub.tree, truth) == 0
        assert tl.settled() is not None and sub.tree.seq == truth["seq"]


async def test_a_gateway_that_ticks_but_never_sends_the_tree_is_backed_off() -> None:
    """A session counts as healthy (and resets the backoff) only once it delivered the tree:
    a peer that takes the socket, answers and ticks past ``healthy_after`` but never sends a
    snapshot must see the retry delays grow, not a hot loop at the base delay."""
    async with ScriptedGateway() as gw:
        broken = Plan(no_snapshot=True, linger=0.15, then="close")
        gw.plans = [broken] * 6
        client = GatewayClient(gw.url, "tok")
        backoff = Backoff(base=0.05, cap=5.0, healthy_after=0.05)
        w = Watch(DevToolsSubscription(client, gw.run_id, backoff=backoff))
        await w.until(lambda: gw.connections >= 7, timeout=30)
        assert backoff.attempt >= 6, "every broken session must count as a failed attempt"
        await w.until(equal_to_truth(gw, w), timeout=30)  # the seventh connection is honest
        await gw.advance(set_state(gw, 100, "in-progress"))  # ... and streams: healthy, reset
        await w.until(lambda: backoff.attempt == 0, timeout=10)
        await w.stop()
        await client.aclose()

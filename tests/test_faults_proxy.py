"""No network fault loses the run: the DevTools subscription through a chaos proxy to a REAL Gateway.

Each test puts :class:`tests.chaos_proxy.ChaosProxy` between the inspector and a fresh Smithers
Gateway (npm smithers-orchestrator 0.32.0 under Bun), breaks the wire in one way while a run
executes, and then checks the end state the issue asks for:

- the tree equals the Gateway's own ``getDevToolsSnapshot`` (``data_lost == 0``) and, for a
  run that completed, the settled status equals ``getRun``'s;
- the status history said what was wrong while it was wrong: ``offline`` with an error and a
  ``retry_in`` (the backoff), then ``online`` again; retries while the Gateway is down
  escalate instead of hot-looping;
- the proxy's own log proves the fault happened as claimed (a cut really was mid-frame,
  really was inside the first big snapshot, the upstream really refused).

Waiting is always a poll with a deadline (``Timeline.until``); nothing sleeps for "long
enough". The ``wide`` workflow with ``wide=100`` gives a ~56 KB first snapshot (300 nodes);
the random-cut run uses ``wide=60`` (~35 KB) to stay within its time budget on two cores.
The proxy also carries the client's HTTP calls (the run-event history), so WebSocket cuts
and connections are told apart by their request line.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING, Any

import pytest
import trustme

from inspector.client import GatewayClient
from inspector.protocol import is_terminal_run_status
from inspector.status import Backoff, ConnectionState, ConnectionStatus
from inspector.stream import DevToolsSubscription, Settled, TreeUpdated

from .chaos_proxy import ChaosProxy, Timeline, data_lost, tls_server_context
from .forward_proxy import ForwardProxy

if TYPE_CHECKING:
    from pathlib import Path

    from .gateway.plugin import GatewayFactory
    from .gateway.server import GatewayServer

pytestmark = pytest.mark.gateway

TOKEN = "op-token"
#: A snapshot frame of the 100-wide run is ~56 KB; deltas stay under ~4 KB.
LARGE_FRAME = 20_000


def quick_backoff() -> Backoff:
    """Real full-jitter backoff, scaled down so a test sees several retries in seconds."""
    return Backoff(base=0.05, cap=0.8, healthy_after=2.0)


async def truth(gw: GatewayServer, run_id: str) -> dict[str, Any]:
    snapshot: dict[str, Any] = await asyncio.to_thread(gw.rpc, "getDevToolsSnapshot", {"runId": run_id})
    return snapshot


async def until_seq(gw: GatewayServer, run_id: str, seq: int, timeout: float = 30.0) -> None:
    """Poll the Gateway (directly, not through the proxy) until the run reached ``seq``."""
    deadline = time.monotonic() + timeout
    while (await truth(gw, run_id))["seq"] < seq:
        if time.monotonic() > deadline:
            raise AssertionError(f"run {run_id} did not reach seq {seq} within {timeout} s")
        await asyncio.sleep(0.1)  # poll interval


async def until_tree_matches(gw: GatewayServer, sub: DevToolsSubscription, run_id: str, whose: str,
                             timeout: float = 30.0) -> None:
    """Poll until the subscription's tree equals ``gw``'s snapshot (after a restart it takes
    a reconnect and a resync); fail with how far off it still is."""
    deadline = time.monotonic() + timeout
    while lost := data_lost(sub.tree, await truth(gw, run_id)):
        assert time.monotonic() < deadline, f"the tree never matched {whose} ({lost} ops off; {sub})"
        await asyncio.sleep(0.1)  # poll interval


async def assert_nothing_lost(gw: GatewayServer, tl: Timeline, run_id: str) -> dict[str, Any]:
    """The tree is the Gateway's, and a completed run settled on the Gateway's final status."""
    snapshot = await truth(gw, run_id)
    assert data_lost(tl.sub.tree, snapshot) == 0, (tl.sub.tree.seq, snapshot["seq"])
    assert tl.sub.tree.snapshot()["root"] == snapshot["root"]
    run: dict[str, Any] = await asyncio.to_thread(gw.get_run, run_id)
    settled = tl.settled()
    if is_terminal_run_status(run["status"]):
        assert settled is not None and settled.run_status == run["status"], (settled, run["status"])
    else:
        assert settled is None and not tl.sub.settled, (settled, run["status"])
    return run


def assert_said_what_was_wrong(tl: Timeline) -> None:
    """Offline came with a reason and a retry delay, and online followed it."""
    offline = tl.offline_states()
    assert offline, tl.statuses()
    for state in offline:
        assert state.error, state
        assert state.retry_in is not None and state.retry_in >= 0, state
        assert state.outage_since is not None, state
    assert tl.went_offline_then_online(), tl.statuses()


def assert_backoff_escalates(tl: Timeline, backoff_cap: float) -> None:
    """Consecutive failed attempts count up and each delay stays under its ceiling."""
    attempts = [s.attempt for s in tl.offline_states()]
    assert max(attempts) >= 3, (attempts, [s.error for s in tl.offline_states()])
    for state in tl.offline_states():
        assert state.retry_in is not None and state.retry_in <= backoff_cap + 1e-9, state


async def test_random_cuts_over_a_whole_run_lose_nothing(make_gateway: GatewayFactory) -> None:
    """Seeded cuts at random byte offsets (FIN or RST, mid-frame, one in the HTTP upgrade)."""
    gw = make_gateway(pace=0.1, wide=60)
    run_id = await asyncio.to_thread(gw.launch_run, "wide")
    async with ChaosProxy(gw.port, seed=20240501) as proxy, GatewayClient(proxy.url, TOKEN) as client:
        proxy.cut_next(60)  # inside the "101 Switching Protocols" answer
        proxy.random_cuts(1.0, 0, 60_000, limit=5)
        proxy.latency, proxy.jitter = 0.002, 0.004
        tl = Timeline(DevToolsSubscription(client, run_id, stop_when_settled=True, backoff=quick_backoff())).start()
        await tl.wait(120)

        cuts = [c for c in proxy.cuts if c.websocket]
        assert len(cuts) >= 4, proxy.cuts
        assert cuts[0].handshake and not cuts[0].mid_frame
        assert any(c.mid_frame for c in cuts), cuts
        assert {c.reset for c in cuts} == {True, False}, "both FIN and RST cuts"
        # Every cut before the run settled was followed by "online" again (later ones hit a
        # socket the subscription was already closing).
        settled_at = next(t for t, item in tl.items if isinstance(item, Settled))
        recoveries = tl.recoveries([c.at for c in cuts if c.at < settled_at])
        assert len(recoveries) >= 4 and all(r is not None and r < 10 for r in recoveries), recoveries
        attempts = tl.sub.stats.connects + tl.sub.stats.connect_failures
        assert attempts == proxy.websocket_connections(), (attempts, proxy.requests)
        assert_said_what_was_wrong(tl)
        run = await assert_nothing_lost(gw, tl, run_id)
        assert run["status"] == "finished"
        assert tl.sub.tree.state_counts() == run["summary"] == {"finished": 121}


async def test_cut_mid_frame_in_the_first_large_snapshot_never_half_applies(make_gateway: GatewayFactory) -> None:
    """The first two connections die half way through the ~56 KB snapshot; the third one lands."""
    gw = make_gateway(pace=0.1, wide=100)
    run_id = await asyncio.to_thread(gw.launch_run, "wide")
    await until_seq(gw, run_id, 5)  # the run's tree is wide now: the stream starts with a big snapshot
    async with ChaosProxy(gw.port, seed=7) as proxy, GatewayClient(proxy.url, TOKEN) as client:
        proxy.cut_first_large_frame(LARGE_FRAME, count=2)
        tl = Timeline(DevToolsSubscription(client, run_id, stop_when_settled=True, backoff=quick_backoff())).start()
        await tl.wait(120)

        assert [c.kind for c in proxy.cuts] == ["large-frame", "large-frame"], proxy.cuts
        for cut in proxy.cuts:
            assert cut.websocket and not cut.handshake, cut
            assert cut.mid_frame and cut.frame_size is not None and cut.frame_size >= LARGE_FRAME, cut
        # Half a snapshot is never applied: nothing reached the tree before the third socket.
        first_update = next(t for t, item in tl.items if isinstance(item, TreeUpdated))
        assert first_update > proxy.cuts[1].at
        assert proxy.websocket_connections() == 3 and tl.sub.stats.connects == 3
        assert_said_what_was_wrong(tl)
        run = await assert_nothing_lost(gw, tl, run_id)
        assert tl.sub.tree.state_counts() == run["summary"]


async def test_latency_and_jitter_change_nothing(make_gateway: GatewayFactory) -> None:
    """80-120 ms on every chunk both ways: slower, but one connection and no resync."""
    gw = make_gateway(pace=0.5)
    run_id = await asyncio.to_thread(gw.launch_run, "rich")
    async with ChaosProxy(gw.port, seed=3) as proxy, GatewayClient(proxy.url, TOKEN) as client:
        proxy.latency, proxy.jitter = 0.08, 0.04
        tl = Timeline(DevToolsSubscription(client, run_id, stop_when_settled=True, backoff=quick_backoff())).start()
        await tl.wait(120)

        states = tl.states()
        connecting = next(t for t, s in states if s.status is ConnectionStatus.CONNECTING)
        online = next(t for t, s in states if s.status is ConnectionStatus.ONLINE)
        # Upgrade, challenge, connect and streamDevTools are 3+ round trips of >= 160 ms.
        assert online - connecting >= 0.45, online - connecting
        assert tl.statuses() == ["connecting", "online"]
        assert proxy.websocket_connections() == 1 and tl.sub.stats.resyncs == 0 and not tl.resyncs()
        run = await assert_nothing_lost(gw, tl, run_id)
        assert run["status"] == "finished"


async def test_read_stall_longer_than_stall_timeout_is_detected(make_gateway: GatewayFactory) -> None:
    """A hung middlebox (socket up, nothing moves) is declared dead after ``stall_timeout``."""
    gw = make_gateway(pace=0.5, SLOW=30)
    run_id = await asyncio.to_thread(gw.launch_run, "slow")
    async with ChaosProxy(gw.port, seed=11) as proxy, GatewayClient(proxy.url, TOKEN) as client:
        sub = DevToolsSubscription(client, run_id, stop_when_settled=True, backoff=quick_backoff(), stall_timeout=2.0)
        tl = Timeline(sub).start()
        await tl.until(lambda: (sub.tree.seq or 0) >= 4, what="the run under way")
        stalled_at = time.monotonic()
        assert proxy.stall(6.0, websocket_only=True) == 1
        # Read from the recorded statuses, not the live one: the outage lasts milliseconds
        # once the stalled socket is aborted (the next connection does not cross the stall).
        def offline() -> list[tuple[float, ConnectionState]]:
            return [(t, s) for t, s in tl.states() if t >= stalled_at and s.status is ConnectionStatus.OFFLINE]

        await tl.until(lambda: bool(offline()), timeout=8, what="the stall noticed")
        noticed_at, noticed = offline()[0]
        detected = noticed_at - stalled_at
        assert 1.5 <= detected <= 3.5, detected
        assert noticed.error is not None and "no frame from the gateway for 2 s" in noticed.error
        await tl.until(lambda: sub.state.status is ConnectionStatus.ONLINE, timeout=10, what="back online")
        recovered = tl.recoveries([stalled_at])[0]
        assert recovered is not None and recovered < 8, recovered
        # The stalled socket is aborted, not closed politely: a silent peer would hold a
        # closing handshake for its close_timeout before the reconnect could start.
        assert recovered - detected < 1.5, (detected, recovered)
        await tl.wait(120)

        assert proxy.websocket_connections() == 2
        assert_said_what_was_wrong(tl)
        run = await assert_nothing_lost(gw, tl, run_id)
        assert run["status"] == "finished"


async def test_a_hung_http_api_does_not_freeze_the_stream(make_gateway: GatewayFactory) -> None:
    """The socket flows but ``GET /v1/api/events`` hangs: the tree must keep moving.

    Joining mid-run replays the run's event history, and the subscription looks up those
    events' timestamps over HTTP. That lookup must not hold up the DevTools frames behind
    it: the dashboard would say "online" while showing a tree frozen in the past.
    """
    gw = make_gateway(pace=0.5, SLOW=60)
    run_id = await asyncio.to_thread(gw.launch_run, "slow")
    await until_seq(gw, run_id, 6)  # some history to replay
    async with ChaosProxy(gw.port, seed=17) as proxy, GatewayClient(proxy.url, TOKEN) as client:
        proxy.hang_http(15.0)
        sub = DevToolsSubscription(client, run_id, stop_when_settled=True, backoff=quick_backoff())
        tl = Timeline(sub).start()
        await tl.until(lambda: sub.state.status is ConnectionStatus.ONLINE and not sub.tree.empty, what="online")
        # The Gateway moves on by five frames (a second); the tree must follow within seconds.
        target = (sub.tree.seq or 0) + 5
        await until_seq(gw, run_id, target)
        await tl.until(lambda: (sub.tree.seq or 0) >= target, timeout=4,
                       what=f"the tree at the Gateway's seq {target} while HTTP hangs (http hangs: {proxy.http_hangs})")
        await tl.wait(120)
        run = await assert_nothing_lost(gw, tl, run_id)
        assert run["status"] == "finished"


async def test_gateway_killed_and_restarted_behind_the_proxy(make_gateway: GatewayFactory) -> None:
    """SIGKILL mid-run: offline with escalating retries while it is down, then its tree again."""
    gw = make_gateway(pace=0.5, SLOW=40)
    run_id = await asyncio.to_thread(gw.launch_run, "slow")
    async with ChaosProxy(gw.port, seed=5) as proxy, GatewayClient(proxy.url, TOKEN) as client:
        sub = DevToolsSubscription(client, run_id, backoff=quick_backoff())
        tl = Timeline(sub).start()
        await tl.until(lambda: (sub.tree.seq or 0) >= 4, what="the run under way")
        await asyncio.to_thread(gw.kill)
        tl.note_fault("gateway killed")
        await tl.until(lambda: len(tl.offline_states()) >= 4, timeout=15, what="four failed reconnects")
        # Refused by the proxy's dead upstream (the very first retry may still reach the dying
        # process group and get no HTTP answer: also a failed attempt, said as such).
        errors = [s.error or "" for s in tl.offline_states()]
        assert proxy.upstream_failures >= 2 and sum("cannot reach" in e for e in errors) >= 3, (proxy.summary(), errors)
        assert_backoff_escalates(tl, 0.8)
        outages = {s.outage_since for s in tl.offline_states()}
        assert len(outages) == 1, ("one outage, kept across retries", tl.offline_states())
        await asyncio.to_thread(gw.start)
        await tl.until(lambda: sub.state.status is ConnectionStatus.ONLINE, timeout=30, what="back online")
        assert sub.state.outage_since is None and sub.state.error is None, sub.state

        # The restarted Gateway serves the run again; converge on its tree.
        await until_tree_matches(gw, sub, run_id, "the restarted Gateway")
        assert_said_what_was_wrong(tl)
        # A SIGKILLed run stays "running" on the restarted Gateway (its owner is dead); should
        # the Gateway ever finish it, the subscription must follow: give it the time to.
        deadline = time.monotonic() + 10
        while is_terminal_run_status((await asyncio.to_thread(gw.get_run, run_id))["status"]) != sub.settled:
            assert time.monotonic() < deadline, ("the Gateway's run status and ours disagree", sub, sub.run_status)
            await asyncio.sleep(0.2)  # poll interval
        await tl.stop()
        await assert_nothing_lost(gw, tl, run_id)


async def test_gateway_down_when_the_dashboard_starts(make_gateway: GatewayFactory) -> None:
    """Nothing listens at first: retries back off and say so; the run appears once it is up."""
    gw = make_gateway(pace=0.5)
    run_id = await asyncio.to_thread(gw.launch_run, "demo")
    await asyncio.to_thread(gw.wait_for_run, run_id)
    await asyncio.to_thread(gw.stop)
    async with ChaosProxy(gw.port, seed=13) as proxy, GatewayClient(proxy.url, TOKEN) as client:
        sub = DevToolsSubscription(client, run_id, stop_when_settled=True, backoff=quick_backoff())
        tl = Timeline(sub).start()
        await tl.until(lambda: len(tl.offline_states()) >= 4, timeout=15, what="four failed attempts")
        assert sub.tree.empty and sub.stats.connects == 0
        assert proxy.upstream_failures >= 4
        assert_backoff_escalates(tl, 0.8)
        assert len({s.outage_since for s in tl.offline_states()}) == 1
        starting = time.monotonic()
        await asyncio.to_thread(gw.start)
        healthy = time.monotonic()  # /health answers (we may already be online: Bun listens first)
        await tl.wait(120)

        online = tl.recoveries([starting])[0]
        assert online is not None and online + starting - healthy < 0.8 + 2.0, (online, healthy - starting)
        assert tl.statuses()[-1] == "online"
        assert_said_what_was_wrong(tl)
        run = await assert_nothing_lost(gw, tl, run_id)
        assert run["status"] == "finished"


async def test_gateway_restored_from_an_older_backup_answers_seq_out_of_range(
        make_gateway: GatewayFactory, tmp_path: Path) -> None:
    """The real Gateway restarted onto an older copy of its database: its history for the run
    now ends before the seq we resume after, and it answers ``SeqOutOfRange`` ("fromSeq N is
    newer than current seq M"). The subscription must take that as "history changed under
    us": a fresh snapshot at the LOWER seq, not a retry of the same resume, and say so."""
    gw = make_gateway(pace=0.5, SLOW=40)
    run_id = await asyncio.to_thread(gw.launch_run, "slow")
    backup = tmp_path / "backup.db"
    async with ChaosProxy(gw.port, seed=31) as proxy, GatewayClient(proxy.url, TOKEN) as client:
        sub = DevToolsSubscription(client, run_id, backoff=quick_backoff())
        tl = Timeline(sub).start()
        await tl.until(lambda: (sub.tree.seq or 0) >= 3, timeout=60, what="the run under way")
        await asyncio.to_thread(gw.backup_database, backup)
        backed_up = (await truth(gw, run_id))["seq"]
        await tl.until(lambda: (sub.tree.seq or 0) >= backed_up + 3, timeout=60, what="the run past the backup")
        await asyncio.to_thread(gw.kill)
        tl.note_fault("gateway killed, restored from an older backup")
        ours = sub.tree.seq or 0
        await asyncio.to_thread(gw.restore_database, backup)
        await asyncio.to_thread(gw.start)
        restored = (await truth(gw, run_id))["seq"]
        assert restored < ours, (restored, ours)
        await tl.until(lambda: any("SeqOutOfRange" in r.reason for r in tl.resyncs()), timeout=30,
                       what="the refused resume")
        await until_tree_matches(gw, sub, run_id, "the restored Gateway")
        assert sub.tree.seq == (await truth(gw, run_id))["seq"] < ours
        assert sub.state.status is ConnectionStatus.ONLINE
        await tl.stop()
        assert_said_what_was_wrong(tl)


# ---------------------------------------------------------------------------- TLS


@pytest.fixture(scope="module")
def private_ca() -> trustme.CA:
    """A certificate authority of the operator's own (as behind a company's TLS proxy)."""
    return trustme.CA()


async def test_tls_gateway_behind_a_terminating_proxy(make_gateway: GatewayFactory, private_ca: trustme.CA,
                                                      tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``https://`` and ``wss://`` to a Gateway behind a TLS-terminating proxy whose certificate
    a private CA signed, trusted the standard way (``SSL_CERT_FILE``, read by httpx and by
    Python's ssl for websockets); a connection cut mid-stream inside TLS recovers as without it."""
    ca_file = tmp_path / "ca.pem"
    private_ca.cert_pem.write_to_path(str(ca_file))
    monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))
    gw = make_gateway(pace=0.5)
    run_id = await asyncio.to_thread(gw.launch_run, "rich")
    async with ChaosProxy(gw.port, seed=23, tls=tls_server_context(private_ca)) as proxy, \
            GatewayClient(proxy.url, TOKEN) as client:
        assert proxy.url.startswith("https://")
        proxy.cut_next(3_000)  # the first socket ends 3,000 plaintext bytes in (the first snapshot)
        tl = Timeline(DevToolsSubscription(client, run_id, stop_when_settled=True, backoff=quick_backoff())).start()
        await tl.wait(120)
        assert [c.offset for c in proxy.cuts] == [3_000]
        assert proxy.websocket_connections() >= 2, "resumed over a new wss:// connection"
        assert_said_what_was_wrong(tl)
        run = await assert_nothing_lost(gw, tl, run_id)
        assert run["status"] == "finished"
        # HTTP goes through the same TLS proxy (the proxy logs each connection's first request;
        # the RPC may reuse the kept-alive connection of the event-history fetch).
        assert (await client.get_run(run_id))["status"] == "finished"
        assert any(r.startswith(("POST /v1/rpc/", "GET /v1/api/")) for r in proxy.requests), proxy.requests


async def test_tls_certificate_not_trusted_says_so_and_backs_off(make_gateway: GatewayFactory,
                                                                 private_ca: trustme.CA,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """A certificate the client does not trust is never accepted: every attempt fails the
    handshake, the status says it is the certificate, and retries back off."""
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    gw = make_gateway(pace=0.5)
    run_id = await asyncio.to_thread(gw.launch_run, "demo")
    async with ChaosProxy(gw.port, seed=29, tls=tls_server_context(private_ca)) as proxy, \
            GatewayClient(proxy.url, TOKEN) as client:
        sub = DevToolsSubscription(client, run_id, backoff=quick_backoff())
        tl = Timeline(sub).start()
        await tl.until(lambda: len(tl.offline_states()) >= 3, timeout=15, what="three refused handshakes")
        await tl.stop()
        errors = [s.error or "" for s in tl.offline_states()]
        assert all("certificate verify failed" in e and "SSL_CERT_FILE" in e for e in errors), errors
        assert_backoff_escalates(tl, 0.8)
        assert sub.tree.empty and sub.stats.connects == 0
        assert "online" not in tl.statuses()


# ---------------------------------------------------------------------------- a forward proxy


def use_forward_proxy(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    """The environment a company network gives the dashboard's server: every connection
    through ``url`` (both spellings; nothing bypassed)."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.setenv(name, url)
    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize("scheme", ["http", "https"])
async def test_gateway_through_a_forward_proxy(scheme: str, make_gateway: GatewayFactory, private_ca: trustme.CA,
                                               tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``HTTP_PROXY`` / ``HTTPS_PROXY`` are honoured for the HTTP RPC and the WebSocket alike:
    a run watched through a forward proxy (to a plain Gateway, or to one behind TLS) ends on
    the Gateway's tree, and the proxy saw all of it."""
    gw = make_gateway(pace=0.5)
    run_id = await asyncio.to_thread(gw.launch_run, "rich")
    ca_file = tmp_path / "ca.pem"
    private_ca.cert_pem.write_to_path(str(ca_file))
    monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))
    async with contextlib.AsyncExitStack() as stack:
        target = gw.url
        if scheme == "https":
            target = (await stack.enter_async_context(ChaosProxy(gw.port, tls=tls_server_context(private_ca)))).url
        forward = await stack.enter_async_context(ForwardProxy())
        use_forward_proxy(monkeypatch, forward.url)
        client = await stack.enter_async_context(GatewayClient(target, TOKEN))
        tl = Timeline(DevToolsSubscription(client, run_id, stop_when_settled=True, backoff=quick_backoff())).start()
        await tl.wait(120)
        run = await assert_nothing_lost(gw, tl, run_id)
        assert run["status"] == "finished" and (await client.get_run(run_id))["status"] == "finished"
        host_port = target.split("://", 1)[1]
        assert host_port in forward.tunnels, ("the WebSocket was tunnelled", forward.requests)
        if scheme == "http":
            assert any(line.startswith(("POST http://", "GET http://")) for line in forward.forwarded), forward.requests
        else:
            assert forward.forwarded == [] and len(forward.tunnels) >= 2, ("HTTPS calls tunnel too", forward.requests)

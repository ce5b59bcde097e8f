"""Inject a seeded series of faults and print the reliability table (not collected by pytest).

Usage (from the repository root; the real Gateway is installed on first use)::

    .venv/bin/python tests/benchmarks/fault_suite.py [--seed 7] [--json results.json]

Three kinds of scenario, each ending with the dashboard's tree compared to the Gateway's own
``getDevToolsSnapshot``:

- **network**, through :class:`tests.chaos_proxy.ChaosProxy` to a real Smithers Gateway 0.32
  under Bun: random cuts (seeded byte offsets, FIN and RST, mid-frame), cuts inside the first
  large snapshot, latency with jitter, a read stall, a hung HTTP API, cuts inside TLS
  (``https://`` / ``wss://``, a private CA) and through a forward proxy (``HTTPS_PROXY``), the
  Gateway restored from an older backup of its database, the Gateway killed and restarted
  mid-run, the Gateway down when the dashboard starts;
- **hostile peer**, :class:`tests.scripted_gateway.ScriptedGateway`: malformed JSON, unknown
  frame types, duplicate / late / reordered deltas, unknown node ids, unknown node types and
  states, oversized frames, poisonous-but-valid JSON;
- **replay hooks**, :class:`inspector.replay.ReplayGateway`: a storm of drops, garbage, gaps,
  stale copies, unknown ids, ``BackpressureDisconnect`` and pauses during a recorded run; a
  token revoked and restored; HTTP 429/502/504/409 sequences and ``RunNotFound``.

For each: faults injected, recoveries (back ``online`` and on the Gateway's tree), time to
recover (fault to the next ``online``), data lost (ops between our tree and the Gateway's
snapshot, plus one for a different seq; must be 0), and what the status said. The
subscription uses the production backoff (250 ms base, 10 s cap, full jitter) except where a
row says otherwise. A scenario in which the subscription *crashes* is reported as such, with
the exception, instead of stopping the suite.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import random
import re
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trustme

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from inspector.client import GatewayClient  # noqa: E402
from inspector.errors import ErrorCode, GatewayRpcError, GatewayUnavailable  # noqa: E402
from inspector.status import Backoff, ConnectionStatus  # noqa: E402
from inspector.stream import DevToolsSubscription, Heartbeat, RunEvent, TreeUpdated  # noqa: E402
from inspector.transcript import load_runs  # noqa: E402
from tests.benchmarks.fault_rows import (  # noqa: E402
    Row,
    back_after,
    converge,
    finish,
    gateway_seq,
    print_table,
    recovered_cuts,
    said,
    truth_of,
    until,
)
from tests.chaos_proxy import ChaosProxy, Timeline, data_lost, tls_server_context  # noqa: E402
from tests.faulty_replay import FaultyReplayGateway  # noqa: E402
from tests.forward_proxy import ForwardProxy  # noqa: E402
from tests.gateway.install import install  # noqa: E402
from tests.gateway.server import GatewayServer  # noqa: E402
from tests.recordings import recording  # noqa: E402
from tests.scripted_gateway import Plan, ScriptedGateway, task_node  # noqa: E402

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterator

    from inspector.tree import DevToolsTree

TOKEN = "op-token"
MiB = 1 << 20


# --------------------------------------------------------------------------- network (real Gateway)


async def random_cuts(gw: GatewayServer, seed: int) -> Row:
    row = Row("random cuts over a whole run", "proxy: seeded offsets 0-60 KB on 8 sockets, FIN/RST, +1 cut in the HTTP upgrade; 2-6 ms latency",
              "resume after each cut, settle on the Gateway's tree")
    run_id = await asyncio.to_thread(gw.launch_run, "wide")
    async with ChaosProxy(gw.port, seed=seed) as proxy, GatewayClient(proxy.url, TOKEN) as client:
        proxy.cut_next(60)
        proxy.random_cuts(1.0, 0, 60_000, limit=8)
        proxy.latency, proxy.jitter = 0.002, 0.004
        tl = Timeline(DevToolsSubscription(client, run_id, stop_when_settled=True)).start()
        crash = await finish(tl, 180)
        settled = tl.settled()
        end = next((t for t, i in tl.items if i is settled), time.monotonic())
        cuts = [c for c in proxy.cuts if c.websocket and c.at < end]
        row.injected = len(cuts)
        row.recovered, row.ttr = recovered_cuts(tl, [c.at for c in cuts])
        row.lost = data_lost(tl.sub.tree, await truth_of(gw, run_id))
        mid = sum(c.mid_frame for c in cuts)
        row.observed = crash or (f"{mid} cuts mid-frame, {sum(c.handshake for c in cuts)} in the handshake, "
                                 f"{sum(c.reset for c in cuts)} RST; settled {settled.run_status if settled else '-'}")
        row.said = said(tl)
        row.ok = not crash and row.recovered == row.injected and row.lost == 0
    return row


async def first_snapshot_cut(gw: GatewayServer) -> Row:
    row = Row("cut mid-frame in the first large snapshot", "proxy: cut half way through the first frame >= 20 KB, twice",
              "partial snapshot never applied; third socket lands")
    run_id = await asyncio.to_thread(gw.launch_run, "wide")
    await gateway_seq(gw, run_id, 5)
    async with ChaosProxy(gw.port) as proxy, GatewayClient(proxy.url, TOKEN) as client:
        proxy.cut_first_large_frame(20_000, count=2)
        tl = Timeline(DevToolsSubscription(client, run_id, stop_when_settled=True)).start()
        crash = await finish(tl, 180)
        row.injected = len(proxy.cuts)
        row.recovered, row.ttr = recovered_cuts(tl, [c.at for c in proxy.cuts])
        row.lost = data_lost(tl.sub.tree, await truth_of(gw, run_id))
        first = next((t for t, i in tl.items if isinstance(i, TreeUpdated)), None)
        half_applied = first is not None and proxy.cuts and first < proxy.cuts[-1].at
        sizes = ", ".join(f"{c.frame_size // 1000} KB" for c in proxy.cuts if c.frame_size)
        row.observed = crash or (f"frames cut: {sizes}; tree empty until the third socket: {not half_applied}")
        row.said = said(tl)
        row.ok = not crash and not half_applied and row.recovered == row.injected and row.lost == 0
    return row


async def latency(gw: GatewayServer) -> Row:
    row = Row("latency and jitter", "proxy: 80 ms + up to 40 ms on every chunk, both ways", "slower, no resync, no reconnect")
    run_id = await asyncio.to_thread(gw.launch_run, "rich")
    async with ChaosProxy(gw.port, seed=3) as proxy, GatewayClient(proxy.url, TOKEN) as client:
        proxy.latency, proxy.jitter = 0.08, 0.04
        tl = Timeline(DevToolsSubscription(client, run_id, stop_when_settled=True)).start()
        crash = await finish(tl, 120)
        row.injected = 1
        row.lost = data_lost(tl.sub.tree, await truth_of(gw, run_id))
        states = tl.states()
        up = next((t for t, s in states if s.status is ConnectionStatus.ONLINE), None)
        row.observed = crash or (f"{proxy.websocket_connections()} socket(s), {tl.sub.stats.resyncs} resyncs, "
                                 f"online after {up - states[0][0]:.2f} s" if up else "never online")
        row.recovered = int(tl.sub.stats.resyncs == 0 and up is not None)
        row.ok = not crash and row.recovered == 1 and row.lost == 0
    return row


async def read_stall(gw: GatewayServer) -> Row:
    row = Row("read stall > stall_timeout", "proxy: the socket freezes for 6 s (no bytes either way); stall_timeout=2 s",
              "declared dead after ~2 s, offline, new socket, resume")
    run_id = await asyncio.to_thread(gw.launch_run, "slow")
    async with ChaosProxy(gw.port) as proxy, GatewayClient(proxy.url, TOKEN) as client:
        sub = DevToolsSubscription(client, run_id, stop_when_settled=True, stall_timeout=2.0)
        tl = Timeline(sub).start()
        await until(lambda: (sub.tree.seq or 0) >= 4, 60)
        at = time.monotonic()
        proxy.stall(6.0, websocket_only=True)
        await until(lambda: sub.state.status is ConnectionStatus.OFFLINE, 15)
        detected = next((t for t, s in tl.states() if t >= at and s.status is ConnectionStatus.OFFLINE), None)
        crash = await finish(tl, 120)
        row.injected = 1
        row.recovered, row.ttr = recovered_cuts(tl, [at])
        row.lost = data_lost(sub.tree, await truth_of(gw, run_id))
        row.observed = crash or f"noticed after {detected - at:.2f} s" if detected else "never noticed"
        row.said = said(tl)
        row.ok = not crash and row.recovered == 1 and row.lost == 0
    return row


async def hung_http(gw: GatewayServer) -> Row:
    row = Row("hung HTTP API while the socket flows", "proxy: every HTTP call (GET /v1/api/events) frozen 15 s; join mid-run",
              "the tree keeps following the socket")
    run_id = await asyncio.to_thread(gw.launch_run, "slow")
    await gateway_seq(gw, run_id, 6)
    async with ChaosProxy(gw.port) as proxy, GatewayClient(proxy.url, TOKEN) as client:
        proxy.hang_http(15.0)
        sub = DevToolsSubscription(client, run_id, stop_when_settled=True)
        tl = Timeline(sub).start()
        crash = await finish(tl, 120)
        row.injected = 1
        updates = [t for t, i in tl.items if isinstance(i, TreeUpdated)]
        gap = max((b - a for a, b in zip(updates, updates[1:], strict=False)), default=0.0)
        row.lost = data_lost(sub.tree, await truth_of(gw, run_id))
        row.observed = crash or f"longest pause between tree updates {gap:.1f} s (the run moves every ~0.1 s)"
        row.recovered = int(gap < 3.0)
        row.ttr = [gap]
        row.ok = not crash and gap < 3.0 and row.lost == 0
    return row


async def replay_forgotten(gw: GatewayServer) -> Row:
    row = Row("replay window gone (run opened after it ended)",
              "real Gateway: open a finished run once it dropped its in-memory replay (1 s after the end)",
              "every node event still arrives, replayed, with the Gateway's own times")
    run_id = await asyncio.to_thread(gw.launch_run, "rich")
    await asyncio.to_thread(gw.wait_for_run, run_id)
    async with GatewayClient(gw.url, TOKEN) as client:
        history = await client.list_run_events(run_id)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            conn = await client.open()
            try:
                answer = await (await conn.send_request("streamRunEvents", {"runId": run_id, "afterSeq": 0}))
            finally:
                await conn.close()
            if answer.ok and answer.payload.get("currentSeq") == 0:
                break
            await asyncio.sleep(0.2)  # poll interval
        sub = DevToolsSubscription(client, run_id, stop_when_settled=True)
        tl = Timeline(sub).start()
        crash = await finish(tl, 60)
    nodes = [r for r in history if str(r.get("event", "")).startswith("Node")]
    got = [i for _, i in tl.items if isinstance(i, RunEvent) and i.frame.event.startswith("node.")]
    timed = [e for e in got if e.replayed and e.at is not None]
    row.injected = 1
    row.recovered = int(len(timed) == len(nodes))
    row.lost = len(nodes) - len(timed) if len(timed) <= len(nodes) else 0
    row.observed = crash or f"{len(timed)} of {len(nodes)} node events from the durable history, each with its time"
    row.ok = not crash and row.recovered == 1
    return row


@contextlib.contextmanager
def environ(**values: str | None) -> Iterator[None]:
    """Set (or, for None, remove) environment variables for the block, then put them back."""
    saved = {name: os.environ.get(name) for name in values}
    try:
        for name, value in values.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


async def tls_and_forward_proxy(gw: GatewayServer, seed: int, *, forward: bool) -> Row:
    """Cuts inside TLS: a TLS-terminating chaos proxy (private CA, trusted via ``SSL_CERT_FILE``)
    in front of the Gateway; with ``forward``, reached through a forward proxy too."""
    via = " through a forward proxy (HTTPS_PROXY)" if forward else ""
    row = Row(f"cuts inside TLS{via}", f"https:// + wss:// to a TLS-terminating proxy (private CA){via}; a seeded cut "
              "0-20 KB into the plaintext of each socket, up to 3", "resume after each cut, settle on the Gateway's tree")
    run_id = await asyncio.to_thread(gw.launch_run, "rich")
    ca = trustme.CA()
    with tempfile.TemporaryDirectory() as tmp:
        ca_file = Path(tmp) / "ca.pem"
        ca.cert_pem.write_to_path(str(ca_file))
        async with contextlib.AsyncExitStack() as stack:
            proxy = await stack.enter_async_context(ChaosProxy(gw.port, seed=seed, tls=tls_server_context(ca)))
            proxies: dict[str, str | None] = {"NO_PROXY": None, "no_proxy": None}
            if forward:
                fwd = await stack.enter_async_context(ForwardProxy())
                proxies.update(HTTPS_PROXY=fwd.url, https_proxy=fwd.url)
            stack.enter_context(environ(SSL_CERT_FILE=str(ca_file), **proxies))
            client = await stack.enter_async_context(GatewayClient(proxy.url, TOKEN))
            proxy.random_cuts(1.0, 0, 20_000, limit=3)
            tl = Timeline(DevToolsSubscription(client, run_id, stop_when_settled=True)).start()
            crash = await finish(tl, 180)
            settled = tl.settled()
            end = next((t for t, i in tl.items if i is settled), time.monotonic())
            cuts = [c for c in proxy.cuts if c.websocket and c.at < end]
            row.injected = len(cuts)
            row.recovered, row.ttr = recovered_cuts(tl, [c.at for c in cuts])
            row.lost = data_lost(tl.sub.tree, await truth_of(gw, run_id))
            tunnels = f"; {len(fwd.tunnels)} CONNECT tunnels" if forward else ""
            row.observed = crash or (f"{sum(c.mid_frame for c in cuts)} cuts mid-frame, {proxy.websocket_connections()} "
                                     f"wss:// sockets{tunnels}; settled {settled.run_status if settled else '-'}")
            row.said = said(tl)
            row.ok = not crash and row.recovered == row.injected and row.lost == 0 and (not forward or bool(fwd.tunnels))
    return row


async def older_backup(gw: GatewayServer) -> Row:
    row = Row("Gateway restored from an older backup", "DB copied (SQLite backup API) mid-run; 3 frames later "
              "SIGKILL, DB replaced by the copy, restarted",
              "resume refused (SeqOutOfRange): fresh snapshot at the LOWER seq, the restored Gateway's tree")
    run_id = await asyncio.to_thread(gw.launch_run, "slow")
    with tempfile.TemporaryDirectory() as tmp:
        backup = Path(tmp) / "backup.db"
        async with ChaosProxy(gw.port) as proxy, GatewayClient(proxy.url, TOKEN) as client:
            sub = DevToolsSubscription(client, run_id)
            tl = Timeline(sub).start()
            await until(lambda: (sub.tree.seq or 0) >= 3, 60)
            await asyncio.to_thread(gw.backup_database, backup)
            backed_up = (await truth_of(gw, run_id))["seq"]
            await until(lambda: (sub.tree.seq or 0) >= backed_up + 3, 60)
            ours = sub.tree.seq or 0
            await asyncio.to_thread(gw.kill)
            await asyncio.to_thread(gw.restore_database, backup)
            starting = time.monotonic()
            await asyncio.to_thread(gw.start)
            healthy = time.monotonic()
            restored = (await truth_of(gw, run_id))["seq"]
            refused = await until(lambda: any("SeqOutOfRange" in r.reason for r in tl.resyncs()), 30)
            lost, crash = await converge(tl, gw, run_id)
            row.injected = 1
            row.ttr = back_after(tl, starting, healthy)
            row.recovered = len(row.ttr)
            row.lost = lost
            row.observed = crash or (f"we were at seq {ours}, the restored Gateway at {restored}; SeqOutOfRange "
                                     f"answered: {refused}; our tree at seq {sub.tree.seq}")
            row.said = said(tl)
            row.ok = not crash and refused and row.lost == 0 and sub.tree.seq == restored < ours
    return row


async def kill_restart(gw: GatewayServer) -> Row:
    row = Row("Gateway killed and restarted mid-run", "SIGKILL behind the proxy; restarted on the same port and DB "
              "after 3 failed reconnects",
              "offline with growing retries while down, then the restarted Gateway's tree")
    run_id = await asyncio.to_thread(gw.launch_run, "slow")
    async with ChaosProxy(gw.port) as proxy, GatewayClient(proxy.url, TOKEN) as client:
        sub = DevToolsSubscription(client, run_id)
        tl = Timeline(sub).start()
        await until(lambda: (sub.tree.seq or 0) >= 4, 60)
        killed = time.monotonic()
        await asyncio.to_thread(gw.kill)
        await until(lambda: len(tl.offline_states()) >= 3, 20)
        starting = time.monotonic()
        await asyncio.to_thread(gw.start)
        healthy = time.monotonic()
        back = await until(lambda: sub.state.status is ConnectionStatus.ONLINE, 30)
        lost, crash = await converge(tl, gw, run_id)
        run = await asyncio.to_thread(gw.get_run, run_id)
        attempts = [s.attempt for s in tl.offline_states()]
        row.injected = 1
        row.ttr = back_after(tl, starting, healthy)
        row.recovered = len(row.ttr)
        row.lost = lost
        row.observed = crash or (f"down {healthy - killed:.1f} s; {proxy.upstream_failures} refused attempts (attempt "
                                 f"{min(attempts)}..{max(attempts)}); run stays {run['status']!r} after a crash "
                                 "(Gateway behaviour)")
        row.said = said(tl)
        row.ok = not crash and back and row.lost == 0
    return row


async def down_at_start(gw: GatewayServer) -> Row:
    row = Row("Gateway down when the dashboard starts", "Gateway stopped; dashboard starts; Gateway started after 4 "
              "failed attempts",
              "offline with backoff, then the run, settled")
    run_id = await asyncio.to_thread(gw.launch_run, "demo")
    await asyncio.to_thread(gw.wait_for_run, run_id)
    await asyncio.to_thread(gw.stop)
    async with ChaosProxy(gw.port) as proxy, GatewayClient(proxy.url, TOKEN) as client:
        sub = DevToolsSubscription(client, run_id, stop_when_settled=True)
        tl = Timeline(sub).start()
        await until(lambda: len(tl.offline_states()) >= 4, 30)
        starting = time.monotonic()
        await asyncio.to_thread(gw.start)
        healthy = time.monotonic()
        crash = await finish(tl, 60)
        row.injected = 1
        row.ttr = back_after(tl, starting, healthy)
        row.recovered = len(row.ttr)
        row.lost = data_lost(sub.tree, await truth_of(gw, run_id))
        retry = [round(s.retry_in or 0, 2) for s in tl.offline_states()]
        row.observed = crash or f"{proxy.upstream_failures} refused attempts, retry_in {retry}; settled {tl.settled() is not None}"
        row.said = said(tl)
        row.ok = not crash and row.recovered == 1 and row.lost == 0
    return row


# --------------------------------------------------------------------------- hostile peer (scripted)


def _nested(depth: int) -> Any:
    value: Any = []
    for _ in range(depth):
        value = [value]
    return value


def _delta(base: int, seq: int, ops: list[dict[str, Any]]) -> dict[str, Any]:
    return {"version": 1, "kind": "delta", "delta": {"version": 1, "baseSeq": base, "seq": seq, "ops": ops}}


TICK = {"type": "event", "event": "tick", "payload": {}}


async def scripted(fault: str, how: str, expected: str, frames: Callable[[ScriptedGateway], list[Any]],
                   *, rebaseline: bool, after: Callable[[ScriptedGateway], Awaitable[None]] | None = None,
                   check: Callable[[DevToolsTree], str] | None = None, reason: str = "") -> Row:
    """One rude connection (its frames, then a tick), then honesty; end on the scripted truth.

    ``frames(gw)`` may move the truth first (what the snapshot will carry); ``after(gw)``
    runs once the rude frames were dealt with (a heartbeat seen, a resync, or a crash);
    ``check(tree)`` describes what the tree kept.
    """
    row = Row(fault, how, expected)
    async with ScriptedGateway() as gw:
        gw.plans = [Plan(frames=[*frames(gw), TICK])]
        client = GatewayClient(gw.url, "tok")
        tl = Timeline(DevToolsSubscription(client, gw.run_id)).start()
        injected_at = time.monotonic()
        await until(lambda: tl.task is not None and (tl.task.done() or bool(tl.resyncs()) or any(
            isinstance(i, Heartbeat) for _, i in tl.items)), 20)
        if after is not None and tl.task is not None and not tl.task.done():
            await after(gw)
        await gw.advance([gw.set_state(100, "finished")])
        converged = await until(lambda: tl.task is not None and (tl.task.done() or (
            not tl.sub.tree.empty and data_lost(tl.sub.tree, gw.truth.snapshot()) == 0)), 20)
        crash = None
        if tl.task is not None and tl.task.done():
            exc = tl.task.exception()
            crash = f"CRASH {type(exc).__name__}" if exc else "ended"
        else:
            await tl.stop()
        await client.aclose()
        row.injected = 1
        reasons = [r.reason for r in tl.resyncs()]
        row.recovered = int(converged and crash is None)
        row.ttr = [t for t in tl.recoveries([injected_at]) if t is not None] if reasons else []
        row.lost = data_lost(tl.sub.tree, gw.truth.snapshot())
        row.observed = crash or (f"resync: {reasons[0][:70]}" if reasons else
                                 f"no resync ({tl.sub.stats.stale_deltas_skipped} stale skipped)")
        if check is not None and crash is None:
            row.observed += "; " + check(tl.sub.tree)
        row.said = said(tl)
        row.ok = (crash is None and converged and row.lost == 0 and bool(reasons) == rebaseline
                  and all(reason in r for r in reasons[:1]))
    return row


async def oversized(limit: bool) -> Row:
    if limit:
        row = Row("10 MB frame over max_frame_bytes", "scripted: 10 MB delta, client limit 1 MiB; the run shrinks after ~3 s",
                  "nothing applied, offline saying why, retries back off, recovers when it fits")
    else:
        row = Row("10 MB frame under the limit", "scripted: 10 MB delta, default 32 MiB limit", "accepted, no resync")
    async with ScriptedGateway() as gw:
        client = GatewayClient(gw.url, "tok", max_frame_bytes=MiB if limit else 32 * MiB)
        tl = Timeline(DevToolsSubscription(client, gw.run_id)).start()
        await until(lambda: tl.sub.tree.seq == 0, 10)
        before = tl.sub.tree.snapshot()
        at = time.monotonic()
        await gw.advance([{"op": "updateProps", "id": 100, "props": {"blob": "x" * (10 * MiB)}}])
        if limit:
            await until(lambda: len(tl.offline_states()) >= 4, 20)
            untouched = tl.sub.tree.snapshot() == before
            await gw.advance([{"op": "updateProps", "id": 100, "props": {"blob": "small"}}])
        ok = await until(lambda: data_lost(tl.sub.tree, gw.truth.snapshot()) == 0, 30)
        await tl.stop()
        await client.aclose()
        row.injected = 1
        row.recovered = int(ok)
        row.lost = data_lost(tl.sub.tree, gw.truth.snapshot())
        if limit:
            attempts = [s.attempt for s in tl.offline_states()]
            row.ttr = [t for t in tl.recoveries([at]) if t is not None][-1:]
            row.observed = f"tree untouched: {untouched}; attempts {attempts[:6]}"
            row.said = said(tl)
            row.ok = ok and untouched and all("1009" in (s.error or "") or "larger" in (s.error or "")
                                              for s in tl.offline_states())
        else:
            row.observed = f"{tl.sub.stats.resyncs} resyncs, blob kept: {len(str(tl.sub.tree[100].props.get('blob', '')))} chars"
            row.ok = ok and tl.sub.stats.resyncs == 0
    return row


async def hostile_rows() -> list[Row]:
    gap = [_delta(5, 6, [])]
    rows = [
        await scripted("malformed JSON", "scripted: a frame cut off mid-string", "rebaseline",
                       lambda gw: ['{"type":"event","event":"devtools.ev'], rebaseline=True, reason="undecodable"),
        await scripted("JSON that is not an object", "scripted: the frame `null`", "rebaseline (undecodable frame)",
                       lambda gw: ["null"], rebaseline=True, reason="undecodable"),
        await scripted("unknown frame types and events", "scripted: type `presence`, stray `res`, event `gateway.maintenance`",
                       "ignored, no resync",
                       lambda gw: [{"type": "presence", "who": "x"}, {"type": "res", "id": "stray", "ok": True},
                                   {"type": "event", "event": "gateway.maintenance", "payload": {"runId": "run-1"}}],
                       rebaseline=False),
        await scripted("delta with a gap", "scripted: baseSeq 5 on a tree at 0", "rebaseline", lambda gw: gap, rebaseline=True),
        await scripted("duplicate and late deltas", "scripted: d1 d1 d2 d1 after a snapshot at seq 2",
                       "stale copies skipped, no resync", _duplicates, rebaseline=False),
        await scripted("out-of-order deltas", "scripted: d2 before d1", "rebaseline", _reordered, rebaseline=True),
        await scripted("delta for an unknown node id", "scripted: updateTask id 999", "rebaseline",
                       lambda gw: [gw.delta([{"op": "updateTask", "id": 999, "task": {}}])], rebaseline=True),
        await scripted("unknown node type and task states", "scripted: type `quantum-gate`, states `waiting-for-godot`, "
                       "`teleporting`", "kept by name, no resync", _unknown_kinds, rebaseline=False, check=_kinds_kept),
        await scripted("devtools.error BackpressureDisconnect", "scripted: the stream ends with devtools.error",
                       "rebaseline on a fresh socket",
                       lambda gw: [{"type": "event", "event": "devtools.error", "payload": {
                           "streamId": "$STREAM", "runId": "run-1",
                           "error": {"code": "BackpressureDisconnect", "message": "too slow"}}}], rebaseline=True),
        await scripted("deeply nested JSON", "scripted: 600 levels of [[...]] in a node field", "refused or kept; no crash",
                       _deep, rebaseline=True),
        await scripted("integer too large for a float", "scripted: addNode index 10**400", "clamped (like splice) or "
                       "refused; no crash", _huge_index, rebaseline=False, after=_huge_index_truth),
        await oversized(limit=True),
        await oversized(limit=False),
    ]
    return rows


def _moved(gw: ScriptedGateway, ops: list[dict[str, Any]]) -> dict[str, Any]:
    """Move the truth by ``ops`` before anyone connects (the snapshot will carry it); the delta."""
    event = gw.delta(ops)
    gw.truth.apply(event)
    gw.history.append(event)
    return event


def _duplicates(gw: ScriptedGateway) -> list[Any]:
    d1 = _moved(gw, [gw.set_state(101, "in-progress")])
    d2 = _moved(gw, [gw.set_state(102, "in-progress")])
    return [d1, d1, d2, d1]  # all already in the snapshot: copies and late copies


def _reordered(gw: ScriptedGateway) -> list[Any]:
    return [_delta(1, 2, []), _delta(0, 1, [])]


def _unknown_kinds(gw: ScriptedGateway) -> list[Any]:
    node = task_node(500, "warp", state="waiting-for-godot")
    node["type"] = "quantum-gate"
    _moved(gw, [{"op": "addNode", "parentId": 2, "index": 0, "node": node}])
    _moved(gw, [gw.set_state(101, "teleporting")])
    return []


def _kinds_kept(tree: DevToolsTree) -> str:
    node = tree.get(500)
    return f"node 500 is {node.type!r} in state {node.state!r}; counts {tree.state_counts()}" if node else "node 500 lost"


def _deep(gw: ScriptedGateway) -> list[Any]:
    snapshot = gw.snapshot_event()
    snapshot["snapshot"]["root"]["children"][0]["children"][0]["deep"] = _nested(600)
    return [snapshot]


def _huge_index(gw: ScriptedGateway) -> list[Any]:
    return ['{"type":"event","event":"devtools.event","payload":{"runId":"run-1","event":{"version":1,"kind":"delta",'
            '"delta":{"version":1,"baseSeq":0,"seq":1,"ops":[{"op":"addNode","parentId":2,"index":1' + "0" * 400
            + ',"node":{"id":900}}]}}}}']


async def _huge_index_truth(gw: ScriptedGateway) -> None:
    await gw.advance([{"op": "addNode", "parentId": 2, "index": 10**6, "node": {"id": 900}}])


# --------------------------------------------------------------------------- replay hooks


async def storm(seed: int) -> Row:
    row = Row("storm on a replayed run", "replay hooks every 0.15-0.5 s: drop_connections, send_raw garbage / unknown type, "
              "gap, stale copy, unknown id, devtools_error, pause", "every fault survived; settled on the Gateway's tree")
    rng = random.Random(seed)
    gateway = FaultyReplayGateway(load_runs(recording("wide-run.jsonl")), token=TOKEN, speed=4.0, heartbeat_ms=300)
    await gateway.start()
    run_id = gateway.run_ids()[0]
    kinds: dict[str, int] = {}
    try:
        async with GatewayClient(gateway.url, TOKEN) as client:
            tl = Timeline(DevToolsSubscription(client, run_id, stop_when_settled=True)).start()
            await until(lambda: not tl.sub.tree.empty, 10)
            while not gateway.run_done(run_id) and not (tl.task and tl.task.done()):
                kind = rng.choice(["drop", "garbage", "unknown-frame", "gap", "stale", "unknown-id", "backpressure", "pause"])
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
                    await asyncio.sleep(rng.uniform(0.2, 0.6))  # the fault: the Gateway goes quiet
                    gateway.resume()
                kinds[kind] = kinds.get(kind, 0) + 1
                tl.note_fault(kind)
                await asyncio.sleep(rng.uniform(0.15, 0.5))  # pacing of the storm
            crash = await finish(tl, 90)
            truth = await client.get_devtools_snapshot(run_id)
    finally:
        await gateway.stop()
    row.injected = sum(kinds.values())
    disruptive = [t for t, k in tl.faults if k in ("drop", "garbage", "gap", "unknown-id", "backpressure")]
    row.recovered = sum(r is not None for r in tl.recoveries(disruptive)) + (row.injected - len(disruptive))
    row.ttr = [t for t in tl.recoveries(disruptive) if t is not None]
    row.lost = data_lost(tl.sub.tree, truth)
    row.observed = crash or (f"{len(tl.resyncs())} resyncs, {tl.sub.stats.stale_deltas_skipped} stale skipped; "
                             + ", ".join(f"{k} {v}" for k, v in sorted(kinds.items())))
    row.said = said(tl)
    row.ok = crash is None and row.lost == 0 and tl.settled() is not None
    return row


async def tree_never_sent() -> Row:
    row = Row("a Gateway that ticks but never sends the tree",
              "scripted: 6 sockets answer streamDevTools and tick past healthy_after, no snapshot, then close",
              "each counts as a failed attempt (delays grow), the seventh (honest) lands and resets")
    async with ScriptedGateway() as gw:
        gw.plans = [Plan(no_snapshot=True, linger=0.15, then="close")] * 6
        client = GatewayClient(gw.url, "tok")
        sub = DevToolsSubscription(client, gw.run_id, backoff=Backoff(base=0.05, cap=5.0, healthy_after=0.05))
        tl = Timeline(sub).start()
        landed = await until(lambda: not sub.tree.empty, 60)
        retries = [s.retry_in for _, s in tl.states() if s.status is ConnectionStatus.OFFLINE and s.retry_in is not None]
        ceilings = [s.attempt for _, s in tl.states() if s.status is ConnectionStatus.OFFLINE]
        await tl.stop()
        await client.aclose()
    row.injected = 6
    row.recovered = 6 if landed else 0
    row.lost = 0 if landed else None
    row.observed = f"attempts {ceilings}, waits {[round(r, 2) for r in retries]}; tree after socket {gw.connections}"
    row.said = said(tl)
    row.ok = landed and ceilings == sorted(ceilings) and len(set(ceilings)) >= 6
    return row


async def token_revoked() -> Row:
    row = Row("token invalid mid-session", "replay set_token('rotated') for ~1.5 s, then back", "unauthorized with the "
              "message, slow retries, back online after restore")
    gateway = FaultyReplayGateway(load_runs(recording("rich-run.jsonl")), token=TOKEN, speed=0.5, heartbeat_ms=300)
    gateway.pause()
    await gateway.start()
    run_id = gateway.run_ids()[0]
    try:
        async with GatewayClient(gateway.url, TOKEN) as client:
            sub = DevToolsSubscription(client, run_id, stop_when_settled=True, unauthorized_retry=0.5)
            tl = Timeline(sub).start()
            await until(lambda: not sub.tree.empty, 10)
            gateway.resume()
            await until(lambda: (sub.tree.seq or 0) >= 3, 20)
            gateway.set_token("rotated")
            revoked = time.monotonic()
            await until(lambda: sub.state.error == "Invalid token", 10)
            await until(lambda: time.monotonic() - revoked >= 1.5, 5)  # the outage lasts 1.5 s
            tries = sum(s.status is ConnectionStatus.CONNECTING for t, s in tl.states() if t > revoked)
            gateway.set_token(TOKEN)
            restored = time.monotonic()
            crash = await finish(tl, 60)
            truth = await client.get_devtools_snapshot(run_id)
    finally:
        await gateway.stop()
    first = next((s for t, s in tl.states() if t >= revoked), None)
    row.injected = 1
    row.recovered, row.ttr = recovered_cuts(tl, [restored])
    row.lost = data_lost(sub.tree, truth)
    row.observed = crash or (f"first status after revocation: {first.status.value if first else '-'}; "
                             f"{tries} attempts in 1.5 s; settled {tl.settled() is not None}")
    row.said = said(tl)
    row.ok = (crash is None and row.recovered == 1 and row.lost == 0 and first is not None
              and first.status is ConnectionStatus.UNAUTHORIZED)
    return row


class _Counting(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.delays: list[float] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.delays += [float(m) for m in re.findall(r"retrying in ([0-9.]+) s", record.getMessage())]


async def rpc_sequences(seed: int) -> Row:
    row = Row("HTTP 429/502/503/504/409 on RPC", "replay rpc_failures: 30 getRun calls, each behind 0-5 random "
              "failures; rpc_retries=4", "answered if <= 4 failures (full jitter, Retry-After honoured), gives up "
              "after 5 tries; RunNotFound tried once")
    rng = random.Random(seed)
    handler = _Counting()
    logger = logging.getLogger("inspector.client")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False  # counted, not printed
    gateway = FaultyReplayGateway(load_runs(recording("rich-run.jsonl")), token=TOKEN)
    gateway.pause()
    await gateway.start()
    run_id = gateway.run_ids()[0]
    ok = gave_up = injected = faulty = faulty_answered = 0
    right = True
    worst = 0.0
    try:
        async with GatewayClient(gateway.url, TOKEN, rpc_retries=4) as client:
            for _ in range(30):
                failures = [rng.choice([429, 502, 504, 409, 503]) for _ in range(rng.randint(0, 5))]
                injected += len(failures)
                gateway.rpc_failures["getRun"] = list(failures)
                started = time.monotonic()
                faulty += bool(failures)
                try:
                    await client.get_run(run_id)
                    ok += 1
                    faulty_answered += bool(failures)
                    right &= len(failures) <= 4
                except (GatewayUnavailable, GatewayRpcError):
                    gave_up += 1
                    right &= len(failures) == 5
                worst = max(worst, time.monotonic() - started)
                row.ttr.append(time.monotonic() - started)
            try:
                await client.get_devtools_snapshot("no-such-run")
                final = "RunNotFound: answered?"
            except GatewayRpcError as exc:
                final = f"{exc.raw_code} not retried" if exc.code is ErrorCode.RUN_NOT_FOUND else exc.raw_code
    finally:
        await gateway.stop()
        logger.removeHandler(handler)
        logger.propagate = True
    row.injected = faulty
    row.recovered = faulty_answered
    row.lost = 0
    row.observed = (f"{injected} failing answers over {faulty} calls; {ok}/30 answered, {gave_up} gave up (exactly the "
                    f"ones with 5 failures: {right}), max {worst:.1f} s per call; "
                    f"{len(handler.delays)} waits, {len(set(handler.delays))} distinct; {final}")
    row.ok = right and final.endswith("not retried")
    return row


# --------------------------------------------------------------------------- main


async def main(seed: int, json_out: Path | None) -> int:
    # The faults make the client warn and the scripted server log its rude handlers: quiet.
    logging.basicConfig(level=logging.ERROR)
    logging.getLogger("websockets").setLevel(logging.CRITICAL)
    logging.getLogger("asyncio").setLevel(logging.CRITICAL)  # the scripted server's streamer dies with its socket
    started = time.monotonic()
    rows: list[Row] = []
    rows += await hostile_rows()
    rows.append(await storm(seed))
    rows.append(await token_revoked())
    rows.append(await tree_never_sent())
    rows.append(await rpc_sequences(seed))
    install_dir = await asyncio.to_thread(install)
    with tempfile.TemporaryDirectory() as work:
        gw = GatewayServer(install_dir, Path(work), pace=0.3, wide=100, env={"SLOW": "60"})
        await asyncio.to_thread(gw.start)
        try:
            scenarios: list[Awaitable[Row]] = [
                random_cuts(gw, seed), first_snapshot_cut(gw), latency(gw), read_stall(gw), hung_http(gw),
                replay_forgotten(gw), tls_and_forward_proxy(gw, seed, forward=False),
                tls_and_forward_proxy(gw, seed + 1, forward=True),
                # these stop the Gateway: last
                older_backup(gw), kill_restart(gw), down_at_start(gw),
            ]
            for scenario in scenarios:
                name = getattr(scenario, "__name__", "scenario")
                try:
                    rows.append(await scenario)
                except Exception as exc:  # a broken scenario is a row, not the end of the suite
                    rows.append(Row(name, "-", "-", observed=f"scenario failed: {exc!r}"[:160]))
                print(f"  {rows[-1].fault}: {'ok' if rows[-1].ok else 'NOT OK'}", file=sys.stderr, flush=True)
        finally:
            await asyncio.to_thread(gw.stop)
    print_table(rows)
    print(f"\nseed {seed}, {time.monotonic() - started:.0f} s on this machine")
    if json_out is not None:
        json_out.write_text(json.dumps([asdict(r) for r in rows], indent=2))
    return 0 if all(r.ok for r in rows) else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", type=Path, default=None, help="also write the rows as JSON")
    args = parser.parse_args()
    sys.exit(asyncio.run(main(args.seed, args.json)))

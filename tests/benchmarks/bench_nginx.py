#!/usr/bin/env python3
"""Several instances behind nginx: 2 instances x 50 wall sessions, lag, spread, Gateway streams per run.

Setup (issue 14, item 4): a :class:`~inspector.replay.ReplayGateway` (a thread of this process)
plays the synthetic ``wide`` run as ``bench_knee.py`` does (``--wide`` sequences, ``--rate``
task-state changes per second: ~37 deltas/s sent at the default 40). For each total in
``--sessions``, a fresh setup from ``tests/nginx_support.serve_behind_nginx``: ``--instances``
``smithers-dashboard serve`` processes on loopback ports behind Debian's nginx rendered from
``docs/nginx.conf.template`` (TLS with a test certificate, websockets upgraded, sticky sessions by
the ``sd_route`` cookie), and a fresh run held after its snapshot while

- N wall sessions open **through nginx** (``bench_fanout.Sessions``: ``bokeh.client.pull_session``
  on ``https://localhost:PORT/apps?runId=RUN&view=monitor``, non-rendering, as in sections 4, 5
  and 7 of docs/performance.md). A client's websocket carries no route cookie, so nginx gives it
  the random route of a first visit: the sessions spread over the instances as new visitors do.
  The process trusts the test certificate (``SSL_CERT_FILE``), as a client trusts a real one;
- ``--pages`` headless Chromium pages open the same URL through nginx, each a fresh visitor
  whose route (got with a ``/healthz`` request, read back from nginx's access log) lands it on
  instance ``i mod instances``: one measured page per instance by default.

Then the run streams and, over ``--seconds`` after ``--warmup``:

- **lag** per (nodeId, state) and page, as in ``bench_knee.py``: from the replay gateway's send
  (``bench_knee.SendStamps``) to tree.js applying the row in the page; p50 / p95 per page and
  over all pages; pairs sent in the window and not shown ``--settle`` s after it are *missing*;
- **spread**: each instance's ``smithers_dashboard_sessions`` (its own ``/metrics``, reached
  directly) before and after the clients open, and the connections nginx holds open to each
  instance in the window (its workers' sockets: the proxied websockets);
- **upstream streams per run**: counted server-side in the replay gateway (connections,
  ``streamDevTools`` and ``streamRunEvents`` streams open on the run in the window, and
  ``streamDevTools`` opened since the point started), and each instance's
  ``smithers_dashboard_upstream_streams``; one per instance is the goal;
- per instance: CPU share (user+system seconds of its process per wall second, 1.0 = one core),
  RSS before the sessions and at the window's end, deltas applied (``smithers_dashboard_deltas_total``);
  nginx's CPU share (master and worker), the replay gateway thread's CPU share, this process's
  (the replay gateway, the client sessions, Playwright), the machine's busy cores (``/proc/stat``)
  and the load average.

Run time: about 4 minutes for the default ``--sessions 0 100`` or for ``--sessions 0 80 100`` (each
point starts its instances and nginx; opening 100 sessions took 16–76 s on the shared machine;
30 s window): 155 s for ``0 100`` and 222–236 s for ``0 80 100`` measured on the shared machine.

    .venv/bin/python tests/benchmarks/bench_nginx.py [--sessions 0 100] [--instances 2] [--pages 2] [--json PATH]

**What the Gateway pays per stream** (``--gateway-streams K ...``, a second mode, no nginx): the
real Gateway (Bun, ``tests/gateway``'s suite, ``wide`` run of ``--gateway-wide`` sequences) and K
DevTools subscriptions on one run, each on its own connection as each dashboard instance's hub
holds (``inspector.stream.DevToolsSubscription``, as the hub runs it). The Gateway serves each
``streamDevTools`` subscriber on its own: it polls the database every 25 ms and captures a
snapshot of the run per frame *per subscriber* (``streamDevToolsRoute`` in
``@smithers-orchestrator/server``). Per K, over ``--seconds``: the Gateway process's CPU share
and RSS, and the DevTools events each subscriber received per second. About 2 minutes.

    .venv/bin/python tests/benchmarks/bench_nginx.py --gateway-streams 0 1 2 4 8 16 [--seconds 15]
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import re
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent.parent))

from tests.benchmarks.bench_fanout import Sessions  # noqa: E402
from tests.benchmarks.bench_knee import SendStamps, busy_cores, fresh_run  # noqa: E402
from tests.benchmarks.bench_vs_monitor import OURS_RECORDER, first_times, latencies  # noqa: E402
from tests.benchmarks.harness import (  # noqa: E402
    LONGTASKS,
    REPO,
    chromium,
    cpu_seconds,
    load_average,
    long_tasks,
    percentile,
    rss_mb,
    tree_stats,
    wait_until,
)
from tests.benchmarks.synthetic_wide import wide_run  # noqa: E402
from tests.nginx_support import fetch_metrics, make_certificate, serve_behind_nginx  # noqa: E402
from tests.replay_thread import ReplayThread  # noqa: E402

if TYPE_CHECKING:
    from tests.deploy_support import Served
    from tests.nginx_support import NginxProxy

#: A line of the nginx access log of ``tests/nginx_support.main_conf``: "URI STATUS UPSTREAM ROUTE".
_LOG_LINE = re.compile(r"^(\S+) (\d{3}) (\S+) (\S+)$")


def routed(proxy: NginxProxy) -> list[tuple[str, int, str, str]]:
    """nginx's access log as (uri, status, upstream address, route)."""
    out = []
    for line in proxy.access_log().splitlines():
        match = _LOG_LINE.match(line.strip())
        if match:
            out.append((match.group(1), int(match.group(2)), match.group(3), match.group(4)))
    return out


def process_tree(pid: int) -> list[int]:
    import psutil

    root = psutil.Process(pid)
    return [root.pid, *(p.pid for p in root.children(recursive=True))]


def tree_cpu(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        with contextlib.suppress(OSError):
            total += cpu_seconds(pid)
    return total


def thread_cpu(native_id: int | None) -> float:
    """User + system CPU seconds of one thread of this process (the replay gateway's)."""
    import psutil

    for thread in psutil.Process().threads():
        if thread.id == native_id:
            return float(thread.user_time + thread.system_time)
    return 0.0


def instance_env() -> dict[str, str]:
    """The instances' environment: this checkout first on the path, no Gateway token."""
    env = {k: v for k, v in os.environ.items() if k not in ("SMITHERS_TOKEN", "SMITHERS_TOKEN_FILE", "SSL_CERT_FILE")}
    env["PYTHONPATH"] = str(REPO)
    return env


def gateway_streams(replay: ReplayThread, run_id: str) -> dict[str, int]:
    """What the replay gateway serves on ``run_id`` right now, counted on its loop."""

    def count() -> dict[str, int]:
        conns = list(replay.gateway._connections)
        devtools = [sum(1 for r in c.streams.values() if r == run_id) for c in conns]
        events = [sum(1 for r in c.run_event_streams.values() if r == run_id) for c in conns]
        return {"connections": sum(1 for d, e in zip(devtools, events, strict=True) if d or e),
                "devtools_streams": sum(devtools), "run_event_streams": sum(events),
                "connections_total": len(conns)}

    result: dict[str, int] = replay.call(count)
    return result


def placed_context(browser: Any, proxy: NginxProxy, instance: str) -> Any:
    """A fresh visitor (browser context) whose nginx route lands on ``instance``."""
    address = instance.removeprefix("http://")
    for _ in range(32):  # each try is a fair coin per instance: 2^-32 to miss with two
        context = browser.new_context(ignore_https_errors=True, viewport={"width": 1400, "height": 1000})
        assert context.request.get(f"{proxy.base}/healthz").ok
        route = next(c["value"] for c in context.cookies() if c["name"] == "sd_route")
        upstream = wait_until(functools.partial(upstream_of, proxy, route), 10, "the visit in nginx's access log")
        if upstream == address:
            return context
        context.close()
    raise RuntimeError(f"no route to {instance} in 32 visits")


def upstream_of(proxy: NginxProxy, route: str) -> str | None:
    """The upstream address nginx's access log shows for ``route`` (None before it is logged)."""
    return next((u for _, _, u, r in routed(proxy) if r == route), None)


def page_ready(page: Any) -> float:
    """When the page's tree had its first reset (``window.__ready``), once it has; its first reset is waited for."""
    wait_until(lambda: page.evaluate("window.__ready"), 180, "a page's tree")
    wait_until(lambda: (tree_stats(page) or {}).get("rows", 0) > 1, 180, "a page's first reset")
    page.wait_for_load_state("load", timeout=180_000)
    return float(page.evaluate("window.__ready"))


def open_sessions(url: str, query: dict[str, str], n: int, threads: int) -> list[Sessions]:
    """``n`` client sessions opened by ``threads`` threads (Bokeh's client runs a loop per session)."""
    if n == 0:
        return []
    shares = [n // threads + (1 if i < n % threads else 0) for i in range(threads)]
    with ThreadPoolExecutor(max_workers=threads) as pool:
        return list(pool.map(lambda k: Sessions(url, query, k), [k for k in shares if k]))


def close_sessions(groups: list[Sessions]) -> None:
    if groups:
        with ThreadPoolExecutor(max_workers=len(groups)) as pool:
            list(pool.map(lambda g: g.close(), groups))


def metric(base: str, name: str) -> float:
    return fetch_metrics(base).get(name, float("nan"))


def measure(n: int, replay: ReplayThread, stamps: SendStamps, browser: Any, args: argparse.Namespace,
            scratch: Path, certificate: tuple[Path, Path]) -> dict[str, Any]:
    row: dict[str, Any] = {"sessions": n, "load_before": load_average()}
    directory = scratch / f"point-{n}"
    directory.mkdir()
    with serve_behind_nginx(directory, replay.gateway.url, instances=args.instances, env=instance_env(),
                            worker_connections=max(256, 4 * (n + args.pages) + 64),
                            certificate=certificate) as proxy:
        servers: list[Served] = proxy.servers
        pids = [s.process.pid for s in servers]  # `serve` execs `panel serve`: the same process
        nginx_pids = process_tree(proxy.nginx.process.pid)
        run_id = fresh_run(replay, 30)
        streams_opened0 = replay.gateway.streams_total
        sessions0 = [metric(b, "smithers_dashboard_sessions") for b in proxy.instances]
        rss0 = [rss_mb(pid) for pid in pids]
        query = {"runId": run_id, "view": "monitor"}
        opened = time.time()
        groups = open_sessions(f"{proxy.base}/apps", query, n, args.open_threads)
        row["seconds_to_open"] = round(time.time() - opened, 1)
        row["opened"] = sum(len(g.sessions) for g in groups)
        row["errors"] = [e for g in groups for e in g.errors][:3]
        walls = [metric(b, "smithers_dashboard_sessions") - s0 for b, s0 in zip(proxy.instances, sessions0, strict=True)]
        contexts: list[tuple[int, Any, Any]] = []
        try:
            for index in range(args.pages):
                target = index % len(proxy.instances)
                context = placed_context(browser, proxy, proxy.instances[target])
                page = context.new_page()
                page.add_init_script(LONGTASKS + OURS_RECORDER)
                contexts.append((target, context, page))
            for _, _, page in contexts:
                page.goto(f"{proxy.base}/apps?runId={run_id}&view=monitor", wait_until="commit", timeout=180_000)
            readies = [page_ready(page) for _, _, page in contexts]
            clock = contexts[0][2] if contexts else None
            resumed = time.time() * 1000
            replay.call(replay.gateway.resume)
            wait_seconds(clock, args.warmup)  # warm-up: the stream reaches its steady state
            since = [float(p.evaluate("performance.now()")) for _, _, p in contexts]
            seq0 = replay.call(lambda: replay.gateway.run_seq(run_id))
            deltas0 = [metric(b, "smithers_dashboard_deltas_total") for b in proxy.instances]
            cpu0, nginx0, replay0 = [cpu_seconds(p) for p in pids], tree_cpu(nginx_pids), thread_cpu(replay.thread.native_id)
            own0 = cpu_seconds(os.getpid())
            busy0, t0 = busy_cores(), time.time()
            while time.time() < t0 + args.seconds and not replay.call(lambda: replay.gateway.run_done(run_id)):
                wait_seconds(clock, 0.5)  # measurement window, polled
            cpu1, nginx1, replay1 = [cpu_seconds(p) for p in pids], tree_cpu(nginx_pids), thread_cpu(replay.thread.native_id)
            own1 = cpu_seconds(os.getpid())
            busy1, t1 = busy_cores(), time.time()
            seq1 = replay.call(lambda: replay.gateway.run_seq(run_id))
            deltas1 = [metric(b, "smithers_dashboard_deltas_total") for b in proxy.instances]
            on_run = gateway_streams(replay, run_id)
            streams_opened = replay.gateway.streams_total - streams_opened0
            upstreams = [metric(b, "smithers_dashboard_upstream_streams") for b in proxy.instances]
            held = [metric(b, "smithers_dashboard_sessions") for b in proxy.instances]
            proxied = proxied_by_instance(proxy, nginx_pids)
            rss1 = [rss_mb(pid) for pid in pids]
            wait_seconds(clock, args.settle)  # the window's last deltas reach the pages
            replay.call(replay.gateway.pause)
            sent = stamps.between(run_id, t0 * 1000, t1 * 1000)
            wanted = [k for k in sent if k[1] in ("in-progress", "finished")]
            pages: list[dict[str, Any]] = []
            all_lat: list[float] = []
            for (target, _, page), ready, since_ms in zip(contexts, readies, since, strict=True):
                shown = first_times([s for s in page.evaluate("window.__seen") if s[0] >= resumed])
                lat = latencies(sent, shown, ready)
                all_lat += lat
                tasks = long_tasks(page, since_ms)
                pages.append({"instance": target, "pairs": len(lat), "pairs_sent": len(wanted),
                              "missing": sum(1 for k in wanted if k not in shown),
                              "p50_ms": percentile(lat, 0.5), "p95_ms": percentile(lat, 0.95),
                              "max_ms": max(lat) if lat else None, "longest_task_ms": max(tasks or [0.0])})
        finally:
            for _, context, _ in contexts:
                with contextlib.suppress(Exception):
                    context.close()
            close_sessions(groups)
    window = max(1e-9, t1 - t0)
    cores = (busy1[0] - busy0[0]) / max(1.0, busy1[1] - busy0[1]) * (os.cpu_count() or 1)
    row.update(
        run_id=run_id, window_s=round(window, 1), deltas_per_s=round((seq1 - seq0) / window, 1),
        pages=pages, p50_ms=percentile(all_lat, 0.5), p95_ms=percentile(all_lat, 0.95),
        missing=sum(p["missing"] for p in pages), pairs=sum(p["pairs"] for p in pages),
        pairs_sent=sum(p["pairs_sent"] for p in pages),
        gateway=on_run | {"devtools_streams_opened": streams_opened},
        replay_cpu_share=round((replay1 - replay0) / window, 3), bench_cpu_share=round((own1 - own0) / window, 2),
        nginx_cpu_share=round((nginx1 - nginx0) / window, 3), machine_busy_cores=round(cores, 2),
        instances=[
            {"instance": i, "wall_sessions": walls[i], "sessions_held": held[i], "nginx_connections": proxied[i],
             "pages": sum(1 for p in pages if p["instance"] == i), "upstream_streams": upstreams[i],
             "deltas_per_s": round((deltas1[i] - deltas0[i]) / window, 1),
             "cpu_share": round((cpu1[i] - cpu0[i]) / window, 2),
             "rss_before_mb": round(rss0[i], 1), "rss_end_mb": round(rss1[i], 1)}
            for i in range(len(pids))
        ],
        load_after=load_average(),
    )
    return row


def wait_seconds(page: Any, seconds: float) -> None:
    """Let ``seconds`` pass while Playwright keeps serving the pages' events (a window, not a sync)."""
    if page is not None:
        page.wait_for_timeout(seconds * 1000)
    else:
        time.sleep(seconds)  # no page: nothing to serve meanwhile


def proxied_by_instance(proxy: NginxProxy, nginx_pids: list[int]) -> list[int]:
    """The connections nginx holds open to each instance right now (the proxied websockets).

    The template keeps no idle upstream connections, so what is open in a streaming window
    is the websockets. (nginx logs a websocket only when it closes.)"""
    import psutil

    ports = [int(b.rsplit(":", 1)[1]) for b in proxy.instances]
    remote: list[int] = []
    for pid in nginx_pids:
        with contextlib.suppress(psutil.Error):
            remote += [c.raddr.port for c in psutil.Process(pid).net_connections(kind="tcp")
                       if c.raddr and c.status == psutil.CONN_ESTABLISHED]
    return [remote.count(port) for port in ports]


def fmt(value: float | None) -> str:
    return "—" if value is None or value != value else f"{value:,.0f}"


def tables(results: list[dict[str, Any]]) -> str:
    lines = ["| wall sessions + pages | opened (s to open) | deltas/s sent | pairs shown / sent (all pages) | missing "
             "| p50 (ms) | p95 (ms) | Gateway: connections / DevTools streams / run-event streams on the run "
             "| DevTools streams opened | nginx CPU share | replay gateway CPU share | bench process CPU share "
             "| machine busy cores | load (1 min) |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        g = r["gateway"]
        lines.append(
            f"| {r['sessions']} + {len(r['pages'])} | {r['opened']} ({r['seconds_to_open']}) | {r['deltas_per_s']:.1f} "
            f"| {r['pairs']:,} / {r['pairs_sent']:,} | {r['missing']} | {fmt(r['p50_ms'])} | {fmt(r['p95_ms'])} "
            f"| {g['connections']} / {g['devtools_streams']} / {g['run_event_streams']} | {g['devtools_streams_opened']} "
            f"| {r['nginx_cpu_share']:.3f} | {r['replay_cpu_share']:.3f} | {r['bench_cpu_share']:.2f} "
            f"| {r['machine_busy_cores']:.2f} "
            f"| {r['load_before'].split()[0]} → {r['load_after'].split()[0]} |")
    lines += ["", "| wall sessions (total) | instance | wall sessions on it | nginx connections to it (websockets) | measured pages "
              "| page p50 / p95 (ms) | pairs shown / sent | upstream_streams metric | deltas applied /s | CPU share "
              "| RSS before sessions → window end (MB) |",
              "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        for inst in r["instances"]:
            mine = [p for p in r["pages"] if p["instance"] == inst["instance"]]
            lag = ", ".join(f"{fmt(p['p50_ms'])} / {fmt(p['p95_ms'])}" for p in mine) or "—"
            shown = ", ".join(f"{p['pairs']:,} / {p['pairs_sent']:,}" for p in mine) or "—"
            lines.append(
                f"| {r['sessions']} | {inst['instance']} | {inst['wall_sessions']:.0f} | {inst['nginx_connections']} "
                f"| {inst['pages']} | {lag} | {shown} | {inst['upstream_streams']:.0f} | {inst['deltas_per_s']:.1f} "
                f"| {inst['cpu_share']:.2f} | {inst['rss_before_mb']:.0f} → {inst['rss_end_mb']:.0f} |")
    return "\n".join(lines)


async def _gateway_streams(gateway: Any, run_id: str, counts: list[int], seconds: float) -> list[dict[str, Any]]:
    """K subscriptions on ``run_id`` for each K in ``counts`` (ascending: subscribers are added)."""
    import asyncio

    from inspector.client import GatewayClient
    from inspector.stream import DevToolsSubscription, TreeUpdated
    from tests.gateway.server import ADMIN_TOKEN

    received: list[int] = []
    running: list[tuple[GatewayClient, DevToolsSubscription, asyncio.Task[None]]] = []
    pids = process_tree(gateway.pid)

    async def consume(index: int, subscription: DevToolsSubscription) -> None:
        async for item in subscription:
            if isinstance(item, TreeUpdated):
                received[index] += 1

    rows: list[dict[str, Any]] = []
    try:
        for k in counts:
            while len(running) < k:
                client = GatewayClient(gateway.url, ADMIN_TOKEN)
                subscription = DevToolsSubscription(client, run_id)
                received.append(0)
                running.append((client, subscription, asyncio.create_task(consume(len(received) - 1, subscription))))
            deadline = time.monotonic() + 60
            while not all(received[: len(running)]) and time.monotonic() < deadline:
                await asyncio.sleep(0.1)  # poll: every subscriber has its snapshot
            before = list(received)
            cpu0, t0 = tree_cpu(pids), time.monotonic()
            await asyncio.sleep(seconds)  # the measurement window
            cpu1, t1 = tree_cpu(pids), time.monotonic()
            per_stream = [(received[i] - before[i]) / (t1 - t0) for i in range(len(running))]
            rows.append({"streams": k, "cpu_share": round((cpu1 - cpu0) / (t1 - t0), 3),
                         "rss_mb": round(sum(rss_mb(p) for p in pids), 1),
                         "events_per_s_per_stream": round(sum(per_stream) / len(per_stream), 2) if per_stream else None,
                         "load": load_average()})
            print(rows[-1], file=sys.stderr, flush=True)
    finally:
        for client, subscription, task in running:
            subscription.stop()
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(task, 10)
            await client.aclose()
    return rows


def gateway_streams_mode(args: argparse.Namespace) -> int:
    """``--gateway-streams``: the real Gateway's CPU per DevTools subscriber on one busy run."""
    import asyncio

    from tests.benchmarks.harness import gateway_install
    from tests.gateway.server import GatewayServer

    started = time.time()
    with tempfile.TemporaryDirectory(prefix="bench-gateway-streams-") as tmp, \
            GatewayServer(gateway_install(), Path(tmp), wide=args.gateway_wide) as gateway:
        run_id = gateway.launch_run("wide")
        rows = asyncio.run(_gateway_streams(gateway, run_id, sorted(args.gateway_streams), args.seconds))
        status = gateway.get_run(run_id).get("status")
    base = rows[0]["cpu_share"] if rows and rows[0]["streams"] == 0 else None
    lines = ["| DevTools subscribers on the run | Gateway CPU share | per extra subscriber | Gateway RSS (MB) "
             "| events/s per subscriber | load (1 min) |", "|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        extra = f"{(r['cpu_share'] - base) / r['streams']:.3f}" if base is not None and r["streams"] else "—"
        events = "—" if r["events_per_s_per_stream"] is None else f"{r['events_per_s_per_stream']:.2f}"
        lines.append(f"| {r['streams']} | {r['cpu_share']:.3f} | {extra} | {r['rss_mb']:.0f} | {events} "
                     f"| {r['load'].split()[0]} |")
    print("\n".join(lines))
    print(f"\nwide run of {args.gateway_wide} sequences, {status} at the end; run time {round(time.time() - started)} s")
    if args.json:
        args.json.write_text(json.dumps({"wide": args.gateway_wide, "seconds": args.seconds, "rows": rows}, indent=1))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--sessions", type=int, nargs="+", default=[0, 100],
                        help="wall sessions through nginx per point, over all instances (0: the pages alone)")
    parser.add_argument("--instances", type=int, default=2)
    parser.add_argument("--pages", type=int, default=2, help="measured Chromium pages (page i on instance i mod N)")
    parser.add_argument("--open-threads", type=int, default=2, help="threads opening the client sessions")
    parser.add_argument("--seconds", type=float, default=30, help="measurement window per point")
    parser.add_argument("--warmup", type=float, default=3, help="seconds of streaming before the window")
    parser.add_argument("--settle", type=float, default=3, help="seconds after the window for the last deltas")
    parser.add_argument("--wide", type=int, default=2000)
    parser.add_argument("--rate", type=float, default=40, help="task-state changes per second of the recording")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--gateway-streams", type=int, nargs="+",
                        help="instead: the real Gateway with this many DevTools subscribers on one run, in turn")
    parser.add_argument("--gateway-wide", type=int, default=300, help="with --gateway-streams: the wide run's width")
    args = parser.parse_args(argv)
    if args.gateway_streams:
        return gateway_streams_mode(args)
    started = time.time()
    out: dict[str, Any] = {"wide": args.wide, "rate": args.rate, "seconds": args.seconds,
                           "instances": args.instances, "load_before": load_average()}
    replay = ReplayThread([wide_run(args.wide, rate=args.rate)], speed=1.0, loop=False)
    stamps = SendStamps(replay)
    results: list[dict[str, Any]] = []
    try:
        with tempfile.TemporaryDirectory(prefix="bench-nginx-") as tmp, chromium() as browser:
            certificate = make_certificate(Path(tmp))
            # Bokeh's client (tornado) verifies nginx's certificate against the default trust
            # store, read when its first TLS context is made: trust the test certificate.
            os.environ["SSL_CERT_FILE"] = str(certificate[0])
            for n in args.sessions:
                row = measure(n, replay, stamps, browser, args, Path(tmp), certificate)
                print({k: v for k, v in row.items() if k != "errors" or v}, file=sys.stderr, flush=True)
                results.append(row)
    finally:
        replay.stop()
    out["load_after"] = load_average()
    out["run_time_s"] = round(time.time() - started)
    out["results"] = results
    print(tables(results))
    print(f"\nload average {out['load_before']} before, {out['load_after']} after; run time {out['run_time_s']} s")
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))
    ok = all(inst["upstream_streams"] <= 1 for r in results for inst in r["instances"])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

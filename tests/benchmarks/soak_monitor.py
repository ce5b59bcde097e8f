#!/usr/bin/env python3
"""Days on a wall: push ``--deltas`` DevTools deltas through a served monitor view; watch memory.

A :class:`~inspector.replay.ReplayGateway` loops the synthetic ``wide`` run (``synthetic_wide.py``:
``--wide`` sequences, ``--rate`` task-state changes per second of recorded time, replayed
``--speed`` times faster; every loop is a new run, which the monitor rotates to as the wall
would). ``smithers-dashboard serve`` serves ``/apps?view=monitor``; one Chromium page watches it.
Samples every ``--every`` seconds: Gateway deltas released so far, the panel server's RSS
(``/proc``), the page's JS heap (CDP ``Runtime.getHeapUsage`` after a ``HeapProfiler.collectGarbage``)
and the page's DOM node count. Growth is reported after a warm-up of ``--warmup`` deltas.
Goals: server RSS growth < 20 MB, JS heap growth < 20 MB.

With ``--sessions N``, N more wall sessions watch the same URL: by default
``harness.ReadingSessions`` (each reads every frame the server pushes, as a browser does).

    .venv/bin/python tests/benchmarks/soak_monitor.py [--deltas 100000] [--speed 20] [--seconds S] \
        [--sessions 20 [--clients read|pull]]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent.parent))

from tests.benchmarks.bench_browser_wide import ReplayThread  # noqa: E402
from tests.benchmarks.bench_fanout import Sessions  # noqa: E402
from tests.benchmarks.bench_knee import off_loop  # noqa: E402
from tests.benchmarks.harness import (  # noqa: E402
    LONGTASKS,
    PanelServer,
    ReadingSessions,
    chromium,
    load_average,
    long_tasks,
    rss_mb,
)
from tests.benchmarks.synthetic_wide import wide_run  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--deltas", type=int, default=100_000)
    parser.add_argument("--warmup", type=int, default=10_000)
    parser.add_argument("--wide", type=int, default=500)
    parser.add_argument("--rate", type=float, default=40)
    parser.add_argument("--speed", type=float, default=20)
    parser.add_argument("--every", type=float, default=15)
    parser.add_argument("--sessions", type=int, default=0,
                        help="extra wall sessions on the same URL (see --clients)")
    parser.add_argument("--clients", choices=["read", "pull"], default="read",
                        help="the extra sessions: harness.ReadingSessions (read every frame, as browsers do) or "
                             "bench_fanout.Sessions (pull_session clients that never read their sockets)")
    parser.add_argument("--seconds", type=float, default=None,
                        help="also stop after this long (a soak of hours: a large --deltas and a time limit)")
    args = parser.parse_args(argv)
    run = wide_run(args.wide, rate=args.rate)
    per_run = len(run.devtools) - 1
    replay = ReplayThread([run], speed=args.speed, loop=True, loop_delay_s=0.2, keep_finished=3)
    samples: list[dict[str, Any]] = []
    try:
        with tempfile.TemporaryDirectory(prefix="soak-") as tmp, \
                PanelServer(replay.gateway.url, None, log=Path(tmp) / "panel.log",
                            env={"SMITHERS_MONITOR_ROTATE": "3"}) as panel, chromium() as browser:
            (pid,) = panel.server_pids()
            extra: Any = None
            if args.sessions and args.clients == "pull":
                extra = off_loop(lambda: Sessions(panel.url, {"view": "monitor"}, args.sessions))
            elif args.sessions:
                extra = ReadingSessions(panel.url, {"view": "monitor"}, args.sessions)
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            page.add_init_script(LONGTASKS)
            cdp = page.context.new_cdp_session(page)
            page.goto(f"{panel.url}?view=monitor", wait_until="commit", timeout=120_000)
            started = time.time()
            seen_runs: set[str] = set()
            deltas = 0
            while deltas < args.deltas and (args.seconds is None or time.time() - started < args.seconds):
                page.wait_for_timeout(args.every * 1000)  # sampling interval (the page keeps running)
                ids = replay.call(replay.gateway.run_ids)
                for r in ids:
                    if replay.call(lambda r=r: replay.gateway.run_done(r)) and r not in seen_runs:
                        seen_runs.add(r)
                deltas = len(seen_runs) * per_run + sum(
                    replay.call(lambda r=r: replay.gateway.run_seq(r)) for r in ids if r not in seen_runs)
                cdp.send("HeapProfiler.collectGarbage")
                heap = cdp.send("Runtime.getHeapUsage")
                nodes = page.evaluate("document.getElementsByTagName('*').length")
                sample = {"t": round(time.time() - started), "deltas": deltas, "rss_mb": round(rss_mb(pid), 1),
                          "sessions_open": len(extra.sessions) if extra is not None else 0,
                          "heap_mb": round(heap["usedSize"] / 2**20, 1), "dom_nodes": nodes,
                          "longest_task_ms": max(long_tasks(page, 0) or [0.0])}
                samples.append(sample)
                print(sample, file=sys.stderr, flush=True)
            if extra is not None and args.clients == "pull":
                off_loop(extra.close)
            elif extra is not None:
                extra.close()
    finally:
        replay.stop()
    warm = next((s for s in samples if s["deltas"] >= args.warmup), samples[0])
    last = samples[-1]
    peak_rss = max(s["rss_mb"] for s in samples if s["deltas"] >= warm["deltas"])
    peak_heap = max(s["heap_mb"] for s in samples if s["deltas"] >= warm["deltas"])
    report = {"load": load_average(), "sessions": args.sessions, "clients": args.clients, "samples": samples, "warm": warm, "last": last,
              "rss_growth_mb": round(last["rss_mb"] - warm["rss_mb"], 1),
              "rss_peak_growth_mb": round(peak_rss - warm["rss_mb"], 1),
              "heap_growth_mb": round(last["heap_mb"] - warm["heap_mb"], 1),
              "heap_peak_growth_mb": round(peak_heap - warm["heap_mb"], 1)}
    print(json.dumps(report, indent=1))
    print(f"\n{last['deltas']} deltas in {last['t']} s: server RSS {warm['rss_mb']} -> {last['rss_mb']} MB "
          f"(peak growth {report['rss_peak_growth_mb']} MB; goal < 20), JS heap {warm['heap_mb']} -> "
          f"{last['heap_mb']} MB (peak growth {report['heap_peak_growth_mb']} MB; goal < 20), "
          f"DOM nodes {warm['dom_nodes']} -> {last['dom_nodes']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

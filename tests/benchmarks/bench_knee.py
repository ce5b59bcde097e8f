#!/usr/bin/env python3
"""The knee: Bokeh sessions one serving process holds before the per-delta latency doubles.

Setup: a :class:`~inspector.replay.ReplayGateway` (on its own thread) plays the synthetic ``wide``
run (``synthetic_wide.py``, ``--wide`` sequences, ``--rate`` task-state changes per second: one
``updateTask`` per delta, ~37 deltas/s actually sent at the default 40, as in ``bench_fanout.py``).
For each N in ``--sessions``: a fresh ``smithers-dashboard serve`` process (one process, no
``--num-procs``) and a fresh run (``launchRun``); the replay is held while N Bokeh client sessions
(``harness.ReadingSessions`` on ``/apps?runId=RUN&view=monitor``: the whole app per session,
clients that read every frame but do not render; ``--clients pull`` for ``bench_fanout.Sessions``,
``bokeh.client.pull_session`` clients that never read their sockets) and ONE headless Chromium page on the same URL
are opened; then the run streams and, over a ``--seconds`` window after ``--warmup`` seconds:

- **latency** per (nodeId, state): from the moment the replay gateway handed the delta to its
  socket (a wrapper around its ``_release`` stamps ``time.time()`` right after the send, only
  while a DevTools stream is open on the run) to the moment tree.js applied the row in the page
  (``bench_vs_monitor.OURS_RECORDER``: ``performance.timeOrigin + performance.now()`` when a
  patch carrying the row is applied; the rows in the scrolled window are written to the DOM
  (``data-state``) in that same task). One machine, one wall clock. Reported: p50, p95, and
  p50 / p50 at N = 0 (the page alone); the **knee** is the first N whose p50 is at least
  twice that baseline. Pairs sent in the window but not shown ``--settle`` seconds after it are
  counted apart (pairs shown / sent); the percentiles cover the shown ones, so with pairs
  missing they are lower bounds;
- **server CPU share**: the serving process's user+system CPU seconds (``/proc/PID/stat``) per
  wall second of the window (1.0 = one core);
- the machine's busy cores over the window (``/proc/stat``), the deltas per second actually
  sent, and the load average.

    .venv/bin/python tests/benchmarks/bench_knee.py [--sessions 0 5 10 20 30 40 50] [--seconds 30] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent.parent))

from tests.benchmarks.bench_fanout import Sessions  # noqa: E402
from tests.benchmarks.bench_vs_monitor import OURS_RECORDER, first_times, latencies  # noqa: E402
from tests.benchmarks.harness import (  # noqa: E402
    LONGTASKS,
    PanelServer,
    ReadingSessions,
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
from tests.replay_thread import ReplayThread  # noqa: E402

if TYPE_CHECKING:
    from collections.abc import Callable

T = TypeVar("T")


class SendStamps:
    """Stamps ``(wall ms, run id, nodeId, state)`` as the replay gateway sends each task-state delta.

    Wraps the gateway player's ``_release`` (the step that writes a released delta to every
    DevTools stream on the run); the stamp is taken after the writes, and only when at least one
    stream is open on the run (otherwise nothing was sent).
    """

    def __init__(self, replay: ReplayThread) -> None:
        self.seen: list[tuple[float, str, str, str]] = []
        gateway = replay.gateway
        player = gateway.player
        original = player._release

        def release(live: Any, index: int) -> None:
            original(live, index)
            event = live.script.steps[index].devtools
            if not event or event.get("kind") != "delta" or not gateway._streams_on(live.run_id):
                return
            now = time.time() * 1000
            for op in event["delta"].get("ops", []):
                task = op.get("task") if op.get("op") == "updateTask" else None
                if task and task.get("nodeId") and task.get("state"):
                    self.seen.append((now, live.run_id, str(task["nodeId"]), str(task["state"])))

        replay.call(lambda: setattr(player, "_release", release))

    def between(self, run_id: str, start_ms: float, end_ms: float) -> dict[tuple[str, str], float]:
        """First send of each (nodeId, state) of ``run_id`` within the window."""
        return {key: t for key, t in first_times([(t, n, s) for t, r, n, s in list(self.seen) if r == run_id]).items()
                if start_ms <= t <= end_ms}


def off_loop(fn: Callable[[], T]) -> T:
    """Call ``fn`` on a thread of its own and return its result.

    Bokeh's client runs its own IOLoop to completion (``run_sync``), which asyncio refuses on
    the main thread while Playwright's sync API has its loop there.
    """
    box: list[T] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            box.append(fn())
        except BaseException as exc:  # re-raised on the caller's thread
            errors.append(exc)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join()
    if errors:
        raise errors[0]
    return box[0]


def busy_cores() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine from /proc/stat (all cores)."""
    fields = [float(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


def fresh_run(replay: ReplayThread, seconds: float) -> str:
    """Launch a new replay of the run, let its snapshot out, then hold the replay (all runs)."""
    replay.call(replay.gateway.resume)
    reply = httpx.post(f"{replay.gateway.url}/v1/rpc/launchRun", json={"workflow": "wide"}, timeout=30).json()
    run_id = str(reply["payload"]["runId"])
    wait_until(lambda: replay.call(lambda: replay.gateway.run_seq(run_id)) >= 1, seconds, "the run's first delta")
    replay.call(replay.gateway.pause)
    return run_id


def measure(n: int, replay: ReplayThread, stamps: SendStamps, browser: Any, args: argparse.Namespace,
            scratch: Path) -> dict[str, Any]:
    row: dict[str, Any] = {"sessions": n, "load_before": load_average()}
    with PanelServer(replay.gateway.url, None, log=scratch / f"panel-{n}.log") as panel:
        (pid,) = panel.server_pids()
        run_id = fresh_run(replay, 30)
        query = {"runId": run_id, "view": "monitor"}
        opened = time.time()
        url = f"http://127.0.0.1:{panel.port}/apps"
        sessions: Any = (off_loop(lambda: Sessions(url, query, n)) if args.clients == "pull"
                         else ReadingSessions(url, query, n))
        row["seconds_to_open"] = round(time.time() - opened, 1)
        row["opened"] = len(sessions.sessions)
        row["errors"] = sessions.errors[:3]
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        try:
            page = context.new_page()
            page.add_init_script(LONGTASKS + OURS_RECORDER)
            page.goto(f"{panel.url}?runId={run_id}&view=monitor", wait_until="commit", timeout=180_000)
            wait_until(lambda: page.evaluate("window.__ready"), 180, "the page's tree")
            wait_until(lambda: (tree_stats(page) or {}).get("rows", 0) > 1, 180, "the page's first reset")
            page.wait_for_load_state("load", timeout=180_000)
            ready = float(page.evaluate("window.__ready"))
            resumed = time.time() * 1000
            replay.call(replay.gateway.resume)
            page.wait_for_timeout(args.warmup * 1000)  # warm-up: the stream reaches its steady state
            since_ms = float(page.evaluate("performance.now()"))
            seq0 = replay.call(lambda: replay.gateway.run_seq(run_id))
            cpu0, own0, busy0, t0 = cpu_seconds(pid), cpu_seconds(os.getpid()), busy_cores(), time.time()
            while time.time() < t0 + args.seconds and not replay.call(lambda: replay.gateway.run_done(run_id)):
                page.wait_for_timeout(500)  # measurement window, polled
            cpu1, own1, busy1, t1 = cpu_seconds(pid), cpu_seconds(os.getpid()), busy_cores(), time.time()
            seq1 = replay.call(lambda: replay.gateway.run_seq(run_id))
            rss = rss_mb(pid)
            page.wait_for_timeout(args.settle * 1000)  # the window's last deltas reach the page
            replay.call(replay.gateway.pause)
            sent = stamps.between(run_id, t0 * 1000, t1 * 1000)
            # Only what the page applied after the replay resumed: while it was held nothing was
            # sent, and the first reset carries synthetic_wide's snapshot, whose task dicts are
            # the same objects the recording later mutates (every task already "finished").
            shown = first_times([s for s in page.evaluate("window.__seen") if s[0] >= resumed])
            lat = latencies(sent, shown, ready)
            tasks = long_tasks(page, since_ms)
        finally:
            context.close()
            if args.clients == "pull":
                off_loop(sessions.close)
            else:
                sessions.close()
    cores = (busy1[0] - busy0[0]) / max(1.0, busy1[1] - busy0[1]) * (os.cpu_count() or 1)
    row.update(
        run_id=run_id, window_s=round(t1 - t0, 1), deltas_per_s=round((seq1 - seq0) / max(1e-9, t1 - t0), 1),
        pairs_sent=sum(1 for k in sent if k[1] in ("in-progress", "finished")), pairs=len(lat),
        missing=sum(1 for k in sent if k[1] in ("in-progress", "finished") and k not in shown),
        p50_ms=percentile(lat, 0.5), p95_ms=percentile(lat, 0.95), max_ms=max(lat) if lat else None,
        negative=sum(1 for x in lat if x < 0),
        server_cpu_share=round((cpu1 - cpu0) / (t1 - t0), 2), machine_busy_cores=round(cores, 2),
        bench_cpu_share=round((own1 - own0) / (t1 - t0), 2),
        server_rss_mb=round(rss, 1), page_longest_task_ms=max(tasks or [0.0]), page_longtasks=len(tasks),
        load_after=load_average(),
    )
    return row


def table(results: list[dict[str, Any]]) -> str:
    base = results[0]["p50_ms"] if results and results[0]["sessions"] == 0 else 0.0
    lines = ["| sessions + 1 page | opened | deltas/s sent | pairs shown / sent | p50 (ms) | p95 (ms) | p50 / N=0 p50 "
             "| server CPU share | bench process CPU share | machine busy cores | load (1 min) |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        ratio = r["p50_ms"] / base if base > 0 else float("nan")
        r["p50_ratio"] = round(ratio, 2)
        lines.append(f"| {r['sessions']} | {r['opened']} | {r['deltas_per_s']:.1f} | {r['pairs']} / {r['pairs_sent']} "
                     f"| {r['p50_ms']:.0f} | {r['p95_ms']:.0f} | {ratio:.2f} | {r['server_cpu_share']:.2f} "
                     f"| {r['bench_cpu_share']:.2f} | {r['machine_busy_cores']:.2f} "
                     f"| {r['load_before'].split()[0]} → {r['load_after'].split()[0]} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--sessions", type=int, nargs="+", default=[0, 5, 10, 20, 30, 40, 50],
                        help="extra Bokeh client sessions per point (0 first: the baseline)")
    parser.add_argument("--seconds", type=float, default=30, help="measurement window per point")
    parser.add_argument("--warmup", type=float, default=3, help="seconds of streaming before the window")
    parser.add_argument("--settle", type=float, default=3, help="seconds after the window for the last deltas")
    parser.add_argument("--wide", type=int, default=2000)
    parser.add_argument("--rate", type=float, default=40, help="task-state changes per second of the recording")
    parser.add_argument("--clients", choices=["read", "pull"], default="read",
                        help="the N sessions: harness.ReadingSessions (read every frame, as browsers do) or "
                             "bench_fanout.Sessions (pull_session clients that never read; the figures before issue 14)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    out: dict[str, Any] = {"clients": args.clients, "wide": args.wide, "rate": args.rate, "seconds": args.seconds, "load_before": load_average()}
    replay = ReplayThread([wide_run(args.wide, rate=args.rate)], speed=1.0, loop=False)
    stamps = SendStamps(replay)
    results: list[dict[str, Any]] = []
    try:
        with tempfile.TemporaryDirectory(prefix="bench-knee-") as tmp, chromium() as browser:
            for n in args.sessions:
                row = measure(n, replay, stamps, browser, args, Path(tmp))
                print({k: v for k, v in row.items() if k != "errors" or v}, file=sys.stderr, flush=True)
                results.append(row)
    finally:
        replay.stop()
    out["load_after"] = load_average()
    print(table(results))
    base = results[0]["p50_ms"] if results and results[0]["sessions"] == 0 else None
    knee = next((r["sessions"] for r in results if base and r["p50_ms"] >= 2 * base), None)
    out["baseline_p50_ms"] = base
    out["knee_sessions"] = knee
    out["results"] = results
    print(f"\nknee (first N with p50 >= 2x the page alone): {knee if knee is not None else 'not reached'}; "
          f"load average {out['load_before']} before, {out['load_after']} after")
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

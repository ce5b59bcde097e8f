#!/usr/bin/env python3
"""A big live run in Chromium through the dashboard: final state, long tasks, wire cost, first paint.

Part 1 (live): a real Gateway (``tests/gateway/suite.tsx`` under Bun) runs the ``wide`` workflow
with ``--wide`` parallel sequences (default 2,000: 6,004 nodes, 4,001 tasks); ``smithers-dashboard
serve`` serves the dashboard pointed at it; headless Chromium opens ``/apps?runId=RUN`` right
after the launch and watches it live until the run finishes. Measured:

- **final state**: time from the Gateway's ``finishedAtMs`` to the moment the page's
  ``data-testid="task-summary"`` ``data-*`` counts equal the Gateway's ``getRun`` summary
  (goal <= 2 s), polled every 50 ms;
- **long tasks** while streaming: the longest ``PerformanceObserver`` ``longtask`` after the
  first tree reset was applied (goal <= 200 ms); page-load tasks are reported apart;
- **wire**: WebSocket frames and bytes the page received while streaming, per Gateway delta
  (the tree's final ``seq``), the largest frame, and the size of a full reset for comparison:
  the server must send what changed, batched, never the tree per delta.

Part 2 (first paint): a :class:`~inspector.replay.ReplayGateway` serving a 10,000-node tree
(``make_workload.py``) to the dashboard; a fresh page opens the run; measured: the reset's arrival
to rows on screen (tree.js: message received -> first frame with rows), and navigation start to
rows on screen (which includes loading Bokeh/Panel itself). Goal: the tree's first paint within
1.5 s.

    .venv/bin/python tests/benchmarks/bench_browser_wide.py [--wide 2000] [--pace 1] [--skip-live]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent.parent))

from tests.benchmarks.harness import (  # noqa: E402
    FIND_TREE,
    HERE,
    LONGTASKS,
    PanelServer,
    WireCounter,
    chromium,
    gateway_install,
    load_average,
    long_tasks,
    summary_counts,
    tree_stats,
    wait_until,
)
from tests.replay_thread import ReplayThread  # noqa: E402

TERMINAL = ("finished", "failed", "cancelled")


def gateway_counts(run: dict[str, Any]) -> dict[str, int]:
    summary = run.get("summary") or {}
    return {
        "total": sum(int(v) for v in summary.values()),
        "finished": int(summary.get("finished", 0)),
        "running": int(summary.get("in-progress", 0)),
        "failed": int(summary.get("failed", 0)),
    }


def reset_bytes(run_id: str, snapshot: dict[str, Any]) -> int:
    """Bytes of a reset message carrying the whole final tree (what a per-delta resend would cost)."""
    from dashboard.treerows import TreeFeed, message_bytes
    from inspector.tree import DevToolsTree

    tree = DevToolsTree({"version": 1, "kind": "snapshot", "snapshot": {**snapshot, "runId": run_id}})
    return message_bytes(TreeFeed().reset(tree))


def live_part(args: argparse.Namespace, scratch: Path) -> dict[str, Any]:
    from tests.gateway.server import ADMIN_TOKEN, GatewayServer

    install = gateway_install()
    gw = GatewayServer(install, scratch / "gw", wide=args.wide, pace=args.pace).start()
    out: dict[str, Any] = {"wide": args.wide, "pace": args.pace}
    try:
        with PanelServer(gw.url, ADMIN_TOKEN, log=scratch / "panel.log") as panel, chromium() as browser:
            context = browser.new_context(viewport={"width": 1400, "height": 1000})
            page = context.new_page()
            page.add_init_script(LONGTASKS)
            wire = WireCounter(page)
            # Warm the server (first session imports the views) on an empty page.
            page.goto(panel.url, wait_until="networkidle")
            run_id = gw.launch_run("wide")
            launched = time.time()
            page.goto(f"{panel.url}?runId={run_id}", wait_until="load")
            wait_until(lambda: (tree_stats(page) or {}).get("resets", 0) >= 1 and (tree_stats(page) or {}).get("rows", 0) > 1,
                       60, "the first tree reset")
            stream_start_ms = float(page.evaluate("performance.now()"))
            stream_start = time.time()
            first = tree_stats(page) or {}
            out["load_longest_ms"] = max(long_tasks(page, 0) or [0.0])
            out["first_reset_rows"] = first.get("rows")
            samples = 0
            status = "?"
            last_print = 0.0
            while True:
                run = gw.get_run(run_id)
                status = str(run.get("status"))
                if status in TERMINAL:
                    break
                if time.time() - launched > args.timeout:
                    raise TimeoutError(f"the run did not finish in {args.timeout} s")
                samples += 1
                if time.time() - last_print > 30:
                    last_print = time.time()
                    print(f"  t={time.time() - launched:.0f}s {run.get('summary')} longest so far "
                          f"{max(long_tasks(page, stream_start_ms) or [0.0]):.0f} ms", file=sys.stderr, flush=True)
                page.wait_for_timeout(500)  # poll interval (keeps the page's event loop running)
            observed_end = time.time()
            final = gw.get_run(run_id)
            want = gateway_counts(final)
            finished_at = (final.get("finishedAtMs") or observed_end * 1000) / 1000

            def matches() -> dict[str, int] | None:
                got = summary_counts(page)
                return got if got == want else None

            try:
                wait_until(matches, 30, "the page's counts to equal the Gateway's", interval=0.05)
                matched = time.time()
            except TimeoutError:
                matched = float("nan")
            out["status"] = status
            out["gateway_counts"] = want
            out["page_counts"] = summary_counts(page)
            out["final_after_finish_s"] = matched - finished_at
            out["final_after_observed_end_s"] = matched - observed_end
            out["run_seconds"] = observed_end - launched
            tasks = long_tasks(page, stream_start_ms)
            out["stream_longest_ms"] = max(tasks or [0.0])
            out["stream_longtasks"] = len(tasks)
            out["stream_longtasks_over_100ms"] = sum(1 for t in tasks if t > 100)
            stats = tree_stats(page) or {}
            out["tree_js"] = {k: stats.get(k) for k in ("resets", "patches", "maxSliceMs", "maxFrameMs", "seq", "rows")}
            frames, nbytes, largest = wire.since(stream_start)
            snapshot = gw.rpc("getDevToolsSnapshot", {"runId": run_id})
            deltas = int(snapshot.get("seq") or 0)
            out["full_reset_bytes"] = reset_bytes(run_id, snapshot)
            out["gateway_deltas"] = deltas
            out["ws_frames"] = frames
            out["ws_bytes"] = nbytes
            out["ws_largest_frame"] = largest
            out["ws_bytes_per_delta"] = nbytes / max(1, deltas)
            out["ws_frames_per_second"] = frames / max(1e-9, observed_end - stream_start)
            context.close()
    finally:
        gw.stop()
    return out


# ---------------------------------------------------------------------------- first paint


def recorded_workload(nodes: int, deltas: int, scratch: Path) -> Any:
    from inspector.transcript import RecordedRun, TimedDevToolsEvent

    path = scratch / f"w{nodes}.jsonl"
    subprocess.run([sys.executable, str(HERE / "make_workload.py"), "--nodes", str(nodes), "--deltas", str(deltas),
                    "--seed", "7", str(path)], check=True)
    events = [json.loads(line)["payload"]["event"] for line in path.read_text().splitlines()]
    timed = tuple(TimedDevToolsEvent(float(i * 20), e) for i, e in enumerate(events))
    return RecordedRun(run_id="bench-run", workflow="bench", devtools=timed)


FIRST_PAINT = FIND_TREE + """
  const d = find(document);
  if (!d || d.rows.size < 10000) return null;
  const rows = [];
  const walk = (root) => {
    for (const el of root.querySelectorAll(".st-row:not([hidden])")) rows.push(el);
    for (const el of root.querySelectorAll("*")) if (el.shadowRoot) walk(el.shadowRoot);
  };
  walk(document);
  return rows.length > 10 ? {rows: d.rows.size, shown: rows.length, now: performance.now()} : null;
})()"""

#: Stamps when tree.js receives its first reset (wraps TreeData.receive once the data exists).
STAMP_RECEIVE = """
window.__resetAt = null;
const __poll = setInterval(() => {
  const find = (root) => {
    for (const el of root.querySelectorAll("*")) {
      if (el.__smithersTree) return el.__smithersTree
      if (el.shadowRoot) { const hit = find(el.shadowRoot); if (hit) return hit }
    }
    return null
  };
  const d = find(document);
  if (!d || d.__stamped) return;
  d.__stamped = true;
  clearInterval(__poll);
  const receive = d.receive.bind(d);
  d.receive = (raw, model) => {
    if (window.__resetAt === null && typeof raw === "string" && raw.startsWith('{"type":"reset"') && raw.length > 100000) {
      window.__resetAt = performance.now();
    }
    return receive(raw, model);
  };
}, 1);
"""


def first_paint_part(args: argparse.Namespace, scratch: Path) -> dict[str, Any]:
    run = recorded_workload(args.paint_nodes, 50, scratch)
    replay = ReplayThread([run], speed=0.05, loop=False)  # slow: the tree stays ~10k nodes, live
    out: dict[str, Any] = {"nodes": args.paint_nodes}
    try:
        run_id = wait_until(lambda: replay.call(lambda: replay.gateway.run_ids()), 10, "the replay run")[0]
        with PanelServer(replay.gateway.url, None, log=scratch / "panel-paint.log") as panel, chromium() as browser:
            context = browser.new_context(viewport={"width": 1400, "height": 1000})
            page = context.new_page()
            page.add_init_script(LONGTASKS + STAMP_RECEIVE)
            page.goto(panel.url, wait_until="networkidle")  # warm the server process
            reset_to_rows: list[float] = []
            nav_to_rows: list[float] = []
            longest: list[float] = []
            nav_to_reset: list[float] = []
            for _ in range(args.paint_repeat):
                page.goto(f"{panel.url}?runId={run_id}", wait_until="commit")
                got = wait_until(lambda: page.evaluate(FIRST_PAINT), 60, "10k rows on screen", interval=0.01)
                reset_at = page.evaluate("window.__resetAt")
                nav_to_rows.append(got["now"])
                if reset_at is not None:
                    reset_to_rows.append(got["now"] - reset_at)
                    nav_to_reset.append(reset_at)
                longest.append(max(long_tasks(page, reset_at or 0.0) or [0.0]))
            out.update(reset_to_rows_ms=reset_to_rows, navigation_to_rows_ms=nav_to_rows,
                       navigation_to_reset_arrival_ms=nav_to_reset,
                       longest_task_after_reset_ms=longest)
            context.close()
    finally:
        replay.stop()
    return out


def synthetic_part(args: argparse.Namespace, scratch: Path, view: str = "full") -> dict[str, Any]:
    """The same measurements on a replayed synthetic ``wide`` run (fast; see synthetic_wide.py)."""
    from tests.benchmarks.synthetic_wide import wide_run

    recorded = wide_run(args.wide, rate=args.rate)
    replay = ReplayThread([recorded], speed=1.0, loop=False)
    replay.call(replay.gateway.pause)  # held until the page shows the tree
    out: dict[str, Any] = {"view": view, "wide": args.wide, "rate": args.rate}
    try:
        run_id = wait_until(lambda: replay.call(lambda: replay.gateway.run_ids()), 10, "the replay run")[0]
        with PanelServer(replay.gateway.url, None, log=scratch / "panel-synth.log") as panel, chromium() as browser:
            context = browser.new_context(viewport={"width": 1400, "height": 1000})
            page = context.new_page()
            page.add_init_script(LONGTASKS)
            wire = WireCounter(page)
            extra = "&view=monitor" if view == "monitor" else ""
            page.goto(f"{panel.url}?runId={run_id}{extra}", wait_until="commit", timeout=120_000)
            wait_until(lambda: (tree_stats(page) or {}).get("rows", 0) > 1, 120, "the first tree reset")
            page.wait_for_load_state("networkidle")
            start_ms = float(page.evaluate("performance.now()"))
            start = time.time()
            out["load_longest_ms"] = max(long_tasks(page, 0) or [0.0])
            replay.call(replay.gateway.resume)
            while not replay.call(lambda: replay.gateway.run_done(run_id)):
                page.wait_for_timeout(500)  # poll interval (keeps the page's event loop running)
            done = time.time()
            want = replay.call(lambda: replay.gateway._live(run_id).summary())
            want = {"total": sum(want.values()), "finished": want.get("finished", 0),
                    "running": want.get("in-progress", 0), "failed": want.get("failed", 0)}
            try:
                wait_until(lambda: summary_counts(page) == want, 30, "final counts", interval=0.05)
                out["final_after_finish_s"] = time.time() - done
            except TimeoutError:
                out["final_after_finish_s"] = None
                out["page_counts"] = summary_counts(page)
            tasks = long_tasks(page, start_ms)
            out["stream_longest_ms"] = max(tasks or [0.0])
            out["stream_longtasks"] = len(tasks)
            out["stream_seconds"] = done - start
            frames, nbytes, largest = wire.since(start)
            deltas = replay.call(lambda: replay.gateway.run_seq(run_id))
            out.update(gateway_deltas=deltas, ws_frames=frames, ws_bytes=nbytes, ws_largest_frame=largest,
                       ws_bytes_per_delta=nbytes / max(1, deltas))
            stats = tree_stats(page) or {}
            out["tree_js"] = {k: stats.get(k) for k in ("resets", "patches", "maxSliceMs", "maxFrameMs", "seq", "rows")}
            context.close()
    finally:
        replay.stop()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--wide", type=int, default=2000)
    parser.add_argument("--pace", type=float, default=1.0)
    parser.add_argument("--timeout", type=float, default=3600)
    parser.add_argument("--paint-nodes", type=int, default=10_000)
    parser.add_argument("--paint-repeat", type=int, default=5)
    parser.add_argument("--skip-live", action="store_true")
    parser.add_argument("--synthetic", action="store_true", help="also run the synthetic replayed wide run")
    parser.add_argument("--rate", type=float, default=40.0, help="synthetic: task-state changes per second")
    parser.add_argument("--views", nargs="+", default=["full", "monitor"], help="synthetic: views to watch")
    parser.add_argument("--skip-paint", action="store_true")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    results: dict[str, Any] = {"load_before": load_average()}
    with tempfile.TemporaryDirectory(prefix="bench-wide-") as tmp:
        scratch = Path(tmp)
        if not args.skip_paint:
            results["first_paint"] = first_paint_part(args, scratch)
        if args.synthetic:
            results["synthetic"] = [synthetic_part(args, scratch, view) for view in args.views]
        if not args.skip_live:
            results["live"] = live_part(args, scratch)
    results["load_after"] = load_average()
    print(json.dumps(results, indent=1))
    fp = results.get("first_paint")
    if fp:
        from statistics import median

        print(f"\nfirst paint of {fp['nodes']} nodes: reset->rows median {median(fp['reset_to_rows_ms']):.0f} ms "
              f"(all {[round(x) for x in fp['reset_to_rows_ms']]}), navigation->rows median "
              f"{median(fp['navigation_to_rows_ms']):.0f} ms; goal 1500 ms")
    live = results.get("live")
    if live:
        print(f"live wide={live['wide']}: final counts on the page {live['final_after_finish_s']:.2f} s after "
              f"finishedAtMs (goal <= 2 s); longest task while streaming {live['stream_longest_ms']:.0f} ms "
              f"(goal <= 200); {live['ws_bytes_per_delta']:.0f} B/delta over {live['gateway_deltas']} deltas, "
              f"largest frame {live['ws_largest_frame']} B")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

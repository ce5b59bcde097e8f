#!/usr/bin/env python3
"""Sessions per process, a run played to its end: is every final state shown, and how soon?

``bench_knee.py`` measures a window in the middle of a long run; a wall is judged at the run's
end too: a process that falls behind shows the end late (a backlog), or never (a loss). Here,
for each N in ``--sessions``: a fresh ``smithers-dashboard serve`` process (one process) and a
fresh run of the chosen workload, held while N wall sessions and ONE headless Chromium page open
on ``/apps?runId=RUN&view=monitor``; then the whole run plays and, for the page:

- **final states**: every task's last recorded state is in the page's tree (tree.js's rows)
  within ``--settle`` seconds after the run's last DevTools frame (else counted missing);
- **end lag**: from the replay gateway sending the run's last DevTools frame to the page having
  shown every task's final state (goal at N = 100: ≤ 1 s, "no backlog");
- **lag p50 / p95** per (nodeId, state) sent during the run (after ``--warmup`` s), send →
  tree.js applying the row (``bench_knee``'s stamps and page recorder);
- **coalesced / missing pairs**: a state a node held for less than a batch is not sent to the
  page when a newer state of the same node superseded it before the tick (the server sends the
  tree as it is at each tick, not every intermediate state). Such a pair is *coalesced*, not
  missing, when the page showed a newer state of the node; its lag is then the time until the
  page showed that newer state (when the page caught up past it). A pair is *missing* when the
  page never showed it nor anything newer of that node: a loss;
- server CPU share over the run, server RSS at the end (per extra session: versus N = 0).

The N wall sessions are ``harness.ReadingSessions`` by default (browser-like clients that read
every frame; ``--clients pull`` for ``bench_fanout.Sessions``, Bokeh ``pull_session`` clients
that never read, as the figures before this script were taken with).

Workloads (``--workload``): ``heavy`` (issue 14's: 7,498 nodes at ~8 frames/s, ~90 task
changes/s, ~390 run events/s; 111 s per run) or ``wide`` (``bench_knee``'s: ``--wide`` sequences
at ``--rate`` changes/s, one change per frame; 2,000 sequences = 200 s per run).

    .venv/bin/python tests/benchmarks/bench_sessions.py [--workload heavy] [--sessions 0 40 100] \\
        [--json after.json] [--before before.json]

Run time: about (run length + 40 s) per N: ~8 minutes for ``heavy`` at 0 40 100. ``--before``
prints a previous run's figures beside this one's.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent.parent))

from tests.benchmarks.bench_fanout import Sessions  # noqa: E402
from tests.benchmarks.bench_knee import SendStamps, busy_cores, fresh_run, off_loop  # noqa: E402
from tests.benchmarks.bench_vs_monitor import OURS_RECORDER, first_times  # noqa: E402
from tests.benchmarks.harness import (  # noqa: E402
    FIND_TREE,
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
from tests.benchmarks.synthetic_wide import heavy_run, wide_run  # noqa: E402
from tests.replay_thread import ReplayThread  # noqa: E402

if TYPE_CHECKING:
    from inspector.transcript import RecordedRun

#: tree.js's rows as ``[nodeId, state]`` (tasks only).
PAGE_ROWS = FIND_TREE + """const d = find(document); if (!d) return null;
  const out = []; for (const r of d.rows.values()) if (r.nodeId != null && r.state != null) out.push([r.nodeId, r.state]);
  return out })()"""

MEASURED_STATES = ("in-progress", "finished")


def final_states(run: RecordedRun) -> dict[str, str]:
    """Every task's last recorded state (snapshot, then the deltas' ``updateTask`` ops)."""
    out: dict[str, str] = {}

    def walk(node: dict[str, Any]) -> None:
        task = node.get("task")
        if task and task.get("nodeId"):
            out[str(task["nodeId"])] = str(task["state"])
        for child in node.get("children", []):
            walk(child)

    walk(run.devtools[0].event["snapshot"]["root"])
    for timed in run.devtools[1:]:
        for op in timed.event["delta"].get("ops", []):
            task = op.get("task") if op.get("op") == "updateTask" else None
            if task and task.get("nodeId") and task.get("state"):
                out[str(task["nodeId"])] = str(task["state"])
    return out


def classify(sends: list[tuple[float, str, str]], shown: dict[tuple[str, str], float],
             since_ms: float, missed: list[tuple[str, str, float]] | None = None) -> tuple[list[float], int, int]:
    """Lags of the pairs sent after ``since_ms``; (lags, coalesced, missing). See the module doc.
    ``missed`` collects the missing pairs (nodeId, state, send time) for the JSON report."""
    by_node: dict[str, list[tuple[float, str]]] = {}
    for t, node, state in sends:
        by_node.setdefault(node, []).append((t, state))
    lags: list[float] = []
    coalesced = missing = 0
    for node, history in by_node.items():
        # By time only, keeping the send order of one delta: the run's last delta sets two tasks
        # in-progress and finished at once, and sorted by state as well "finished" came first,
        # which made their "in-progress" look missing instead of coalesced.
        history.sort(key=lambda sent: sent[0])
        for i, (t, state) in enumerate(history):
            if t < since_ms or state not in MEASURED_STATES:
                continue
            at = shown.get((node, state))
            if at is not None:
                lags.append(at - t)
                continue
            newer = [shown[(node, s)] for (_, s) in history[i + 1:] if (node, s) in shown]
            if newer:
                coalesced += 1
                lags.append(min(newer) - t)
            else:
                missing += 1
                if missed is not None:
                    missed.append((node, state, t))
    return lags, coalesced, missing


def open_sessions(kind: str, url: str, query: dict[str, str], n: int) -> Any:
    if kind == "pull":
        return off_loop(lambda: Sessions(url, query, n))
    return ReadingSessions(url, query, n)


def close_sessions(kind: str, sessions: Any) -> None:
    if kind == "pull":
        off_loop(sessions.close)
    else:
        sessions.close()


def measure(n: int, replay: ReplayThread, stamps: SendStamps, finals: dict[str, str], browser: Any,
            args: argparse.Namespace, scratch: Path) -> dict[str, Any]:
    row: dict[str, Any] = {"sessions": n, "clients": args.clients, "load_before": load_average()}
    with PanelServer(replay.gateway.url, None, log=scratch / f"panel-{n}.log") as panel:
        (pid,) = panel.server_pids()
        run_id = fresh_run(replay, 60)
        query = {"runId": run_id, "view": "monitor"}
        row["server_rss_start_mb"] = round(rss_mb(pid), 1)
        opened = time.time()
        sessions = open_sessions(args.clients, panel.url, query, n) if n else None
        row["seconds_to_open"] = round(time.time() - opened, 1)
        row["opened"] = len(sessions.sessions) if sessions else 0
        row["errors"] = sessions.errors[:3] if sessions else []
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        try:
            page = context.new_page()
            page.add_init_script(LONGTASKS + OURS_RECORDER)
            page.goto(f"{panel.url}?runId={run_id}&view=monitor", wait_until="commit", timeout=180_000)
            wait_until(lambda: page.evaluate("window.__ready"), 180, "the page's tree")
            wait_until(lambda: (tree_stats(page) or {}).get("rows", 0) > 1, 180, "the page's first reset")
            page.wait_for_load_state("load", timeout=180_000)
            row["server_rss_open_mb"] = round(rss_mb(pid), 1)
            resumed = time.time() * 1000
            since_ms = float(page.evaluate("performance.now()"))
            cpu0, busy0, t0 = cpu_seconds(pid), busy_cores(), time.time()
            seq0 = replay.call(lambda: replay.gateway.run_seq(run_id))
            replay.call(replay.gateway.resume)
            while not replay.call(lambda: replay.gateway.run_done(run_id)):
                page.wait_for_timeout(250)  # the run plays (polled)
            t_done = time.time()
            cpu1, busy1 = cpu_seconds(pid), busy_cores()
            seq1 = replay.call(lambda: replay.gateway.run_seq(run_id))
            sends = [(t, node, state) for t, r, node, state in list(stamps.seen) if r == run_id]
            last_send = max((t for t, _, _ in sends), default=t_done * 1000)

            def all_final() -> bool:
                rows = dict(page.evaluate(PAGE_ROWS) or [])
                return all(rows.get(node) == state for node, state in finals.items())

            try:
                wait_until(all_final, args.settle, "every final state on the page", interval=0.1)
                settled = True
            except TimeoutError:
                settled = False
            rows = dict(page.evaluate(PAGE_ROWS) or [])
            rss = rss_mb(pid)
            seen = [s for s in page.evaluate("window.__seen") if s[0] >= resumed]
            shown = first_times(seen)
            final_shown = [shown.get((node, state)) for node, state in finals.items()]
            missed: list[tuple[str, str, float]] = []
            lags, coalesced, missing = classify(sends, shown, resumed + args.warmup * 1000, missed)
            row["missing_pairs"] = [(node, state, round(t - last_send), rows.get(node)) for node, state, t in missed[:10]]
            tasks = long_tasks(page, since_ms)
        finally:
            context.close()
            if sessions is not None:
                row["session_bytes"] = sessions.total_bytes() if hasattr(sessions, "total_bytes") else None
                close_sessions(args.clients, sessions)
    cores = (busy1[0] - busy0[0]) / max(1.0, busy1[1] - busy0[1]) * (os.cpu_count() or 1)
    wrong = sum(1 for node, state in finals.items() if rows.get(node) != state)
    end_shown = max((t for t in final_shown if t is not None), default=None) if settled else None
    row.update(
        run_id=run_id, run_s=round(t_done - t0, 1), deltas_per_s=round((seq1 - seq0) / max(1e-9, t_done - t0), 1),
        final_states=len(finals), final_wrong=wrong, settled=settled,
        end_lag_ms=round(end_shown - last_send) if end_shown is not None else None,
        pairs_sent=len([1 for t, _, s in sends if t >= resumed + args.warmup * 1000 and s in MEASURED_STATES]),
        pairs_lagged=len(lags), coalesced=coalesced, missing=missing,
        p50_ms=percentile(lags, 0.5), p95_ms=percentile(lags, 0.95), max_ms=max(lags) if lags else None,
        server_cpu_share=round((cpu1 - cpu0) / max(1e-9, t_done - t0), 2), machine_busy_cores=round(cores, 2),
        server_rss_end_mb=round(rss, 1), page_longest_task_ms=max(tasks or [0.0]), load_after=load_average(),
    )
    return row


def table(results: list[dict[str, Any]], before: list[dict[str, Any]] | None) -> str:
    old = {r["sessions"]: r for r in before or []}
    base = next((r for r in results if r["sessions"] == 0), None)

    def cell(r: dict[str, Any] | None, key: str, fmt: str = "{:.0f}") -> str:
        if r is None or r.get(key) is None:
            return "–"
        value = r[key]
        return fmt.format(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else str(value)

    def per_session(r: dict[str, Any] | None, base_row: dict[str, Any] | None) -> str:
        if r is None or base_row is None or not r["sessions"]:
            return "–"
        return f"{(r['server_rss_end_mb'] - base_row['server_rss_end_mb']) / r['sessions']:.2f}"

    old_base = old.get(0)
    cols = [("final states wrong", "final_wrong", "{}"), ("end lag ms", "end_lag_ms", "{}"),
            ("p50 ms", "p50_ms", "{:.0f}"), ("p95 ms", "p95_ms", "{:.0f}"),
            ("coalesced", "coalesced", "{}"), ("missing", "missing", "{}"),
            ("server CPU", "server_cpu_share", "{:.2f}"), ("RSS end MB", "server_rss_end_mb", "{:.0f}")]
    head = "| N + 1 page | deltas/s |"
    for name, _, _ in cols:
        head += f" {name}{' (before / after)' if before else ''} |"
    head += f" RSS / session MB{' (before / after)' if before else ''} | load (1 min) |"
    lines = [head, "|" + "---:|" * (len(cols) + 4)]
    for r in results:
        line = f"| {r['sessions']} | {r['deltas_per_s']:.1f} |"
        for _, key, fmt in cols:
            now = cell(r, key, fmt)
            line += f" {cell(old.get(r['sessions']), key, fmt)} / {now} |" if before else f" {now} |"
        rss = per_session(r, base)
        line += f" {per_session(old.get(r['sessions']), old_base)} / {rss} |" if before else f" {rss} |"
        line += f" {r['load_before'].split()[0]} → {r['load_after'].split()[0]} |"
        lines.append(line)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--sessions", type=int, nargs="+", default=[0, 40, 100],
                        help="extra wall sessions per point (0 first: the page alone)")
    parser.add_argument("--workload", choices=["heavy", "wide"], default="heavy")
    parser.add_argument("--wide", type=int, default=2000, help="sequences of the 'wide' workload")
    parser.add_argument("--rate", type=float, default=40, help="task changes per second of the 'wide' workload")
    parser.add_argument("--clients", choices=["read", "pull"], default="read",
                        help="the extra sessions: reading websocket clients, or pull_session clients that never read")
    parser.add_argument("--warmup", type=float, default=3, help="seconds of streaming before lags count")
    parser.add_argument("--settle", type=float, default=20, help="seconds after the run's end for the final states")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--before", type=Path, help="a previous --json: printed beside this run's figures")
    args = parser.parse_args(argv)
    run = heavy_run() if args.workload == "heavy" else wide_run(args.wide, rate=args.rate)
    finals = final_states(run)
    out: dict[str, Any] = {"workload": args.workload, "wide": args.wide, "rate": args.rate, "clients": args.clients,
                           "load_before": load_average()}
    replay = ReplayThread([run], speed=1.0, loop=False)
    stamps = SendStamps(replay)
    results: list[dict[str, Any]] = []
    try:
        with tempfile.TemporaryDirectory(prefix="bench-sessions-") as tmp, chromium() as browser:
            for n in args.sessions:
                row = measure(n, replay, stamps, finals, browser, args, Path(tmp))
                print({k: v for k, v in row.items() if k != "errors" or v}, file=sys.stderr, flush=True)
                results.append(row)
    finally:
        replay.stop()
    out["load_after"] = load_average()
    out["results"] = results
    before = json.loads(args.before.read_text())["results"] if args.before else None
    print(table(results, before))
    print(f"\nworkload {args.workload}, clients {args.clients}; load average {out['load_before']} before, "
          f"{out['load_after']} after")
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""50 agent tasks printing 200 lines a second each, into a served dashboard in Chromium.

Issue 11's load case. A synthetic recording (:func:`agents_run`: a workflow > parallel of N
agent tasks, each streaming ``task.output`` chunks for ``--seconds``, then its ``token.usage``
and ``node.finished``) is played live by the replay gateway (on a thread, real protocol) to
``panel serve apps/`` (a subprocess), and Chromium shows one task's Agent tab
(``?runId=&nodeId=&tab=agent``) while the run streams. Measured:

- **longest main-thread task** of the page while it streams (PerformanceObserver ``longtask``);
- **live output lag**: every chunk carries a marker; the page records (MutationObserver on the
  open shadow roots) when each marker of the shown task became visible, and the lag is that
  moment minus the chunk's Gateway timestamp (the replay gateway stamps each event when it
  emits it: the durable row's ``timestampMs``), same machine clock; p50 / p95 / max;
- **memory**: the server's RSS and the page's JS heap (``performance.memory``, precise) at each
  quarter of the run: bounded means flat once every attempt reached its byte cap
  (``inspector.agents.DEFAULT_OUTPUT_CAP_BYTES``), not growing with the output;
- **server CPU** seconds while the run streams, and the WebSocket frames and bytes the page got;
- **the tokens**: the page's ``token-summary`` equals the usage the run reported;

    PYTHONPATH=$PWD .venv/bin/python tests/benchmarks/bench_agents.py [--tasks 50] [--lines 200] [--seconds 40]

Timings on a shared machine are inflated: report them as taken under load.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent))

from inspector.agents import DEFAULT_OUTPUT_CAP_BYTES  # noqa: E402
from inspector.transcript import RecordedRun, TimedDevToolsEvent, TimedRunEvent  # noqa: E402
from tests.benchmarks.harness import (  # noqa: E402
    LONGTASKS,
    PanelServer,
    WireCounter,
    chromium,
    cpu_seconds,
    long_tasks,
    percentile,
    rss_mb,
    wait_until,
)
from tests.replay_thread import ReplayThread  # noqa: E402

#: Records, per marker of the shown output, when it was first visible (``Date.now()``).
MARK_RECORDER = r"""
(() => {
  if (window.__marks) { return }
  const seen = window.__marks = {}
  const scan = (text) => {
    if (!text || text.indexOf("MARK-") < 0) { return }
    const now = Date.now()
    for (const m of text.matchAll(/MARK-(\d+)-(\d+)/g)) { seen[m[0]] ??= now }
  }
  const observe = (root) => new MutationObserver((records) => {
    for (const r of records) {
      if (r.type === "characterData") { scan(r.target.data) }
      for (const n of r.addedNodes) { scan(n.textContent) }
    }
  }).observe(root, {subtree: true, childList: true, characterData: true})
  const attach = Element.prototype.attachShadow
  Element.prototype.attachShadow = function (init) { const root = attach.call(this, init); observe(root); return root }
  observe(document)
})();
"""

#: The page's token-summary attributes (searching open shadow roots).
TOKEN_SUMMARY = """(() => {
  const find = (root) => {
    const hit = root.querySelector('[data-testid="token-summary"]');
    if (hit) return hit
    for (const el of root.querySelectorAll("*")) { if (el.shadowRoot) { const h = find(el.shadowRoot); if (h) return h } }
    return null
  };
  const el = find(document);
  return el ? {input: +el.dataset.inputTokens, output: +el.dataset.outputTokens, reports: +el.dataset.reports} : null;
})()"""


def agents_run(tasks: int = 50, lines_per_s: int = 200, chunks_per_s: int = 10, seconds: float = 40.0,
               run_id: str = "synthetic-agents") -> RecordedRun:
    """The recording (see the module docstring): ``tasks`` agents, each printing
    ``lines_per_s`` lines a second in ``chunks_per_s`` chunks, for ``seconds``; the first line
    of each chunk is ``MARK-<task>-<chunk>``."""
    ids = iter(range(1, 10_000_000))
    nodes = [{"id": next(ids), "type": "task", "name": "task", "depth": 2, "children": [],
              "props": {"id": f"agent-{i}", "output": "out"},
              "task": {"nodeId": f"agent-{i}", "kind": "agent", "outputTableName": "out", "iteration": 0,
                       "state": "pending", "attempt": 0}} for i in range(tasks)]
    parallel = {"id": next(ids), "type": "parallel", "name": "parallel", "props": {}, "depth": 1, "children": nodes}
    root = {"id": next(ids), "type": "workflow", "name": "agents-load", "props": {"name": "agents-load"}, "depth": 0,
            "children": [parallel]}
    devtools = [TimedDevToolsEvent(0.0, {"version": 1, "kind": "snapshot", "snapshot": {
        "version": 1, "runId": run_id, "frameNo": 0, "seq": 0, "root": json.loads(json.dumps(root))}})]
    events = [TimedRunEvent(0.0, "run.started", {"runId": run_id})]
    seq = 0

    def set_state(t: float, node: dict[str, Any], state: str) -> None:
        nonlocal seq
        node["task"] = {**node["task"], "state": state, "attempt": 1}
        devtools.append(TimedDevToolsEvent(t, {"version": 1, "kind": "delta", "delta": {
            "version": 1, "baseSeq": seq, "seq": seq + 1,
            "ops": [{"op": "updateTask", "id": node["id"], "task": dict(node["task"])}]}}))
        seq += 1

    for i, node in enumerate(nodes):
        t = 50.0 + i
        set_state(t, node, "in-progress")
        events.append(TimedRunEvent(t, "node.pending", {"runId": run_id, "nodeId": f"agent-{i}", "iteration": 0}))
        events.append(TimedRunEvent(t, "node.started", {"runId": run_id, "nodeId": f"agent-{i}", "state": "in-progress"}))
    per_chunk = max(1, lines_per_s // chunks_per_s)
    step = 1000.0 / chunks_per_s
    chunks = int(seconds * chunks_per_s)
    for k in range(chunks):
        for i in range(tasks):
            t = 200.0 + k * step + i * (step / tasks)  # spread over the interval, not bursts
            lines = [f"MARK-{i}-{k} agent-{i} line {k * per_chunk + j}: \x1b[32mok\x1b[0m working on step {j}"
                     for j in range(per_chunk)]
            events.append(TimedRunEvent(t, "task.output", {"runId": run_id, "nodeId": f"agent-{i}",
                                                           "output": "\n".join(lines) + "\n", "stream": "stdout"}))
    end = 200.0 + chunks * step + 100
    for i, node in enumerate(nodes):
        t = end + i
        events.append(TimedRunEvent(t, "token.usage", {
            "runId": run_id, "nodeId": f"agent-{i}", "iteration": 0, "attempt": 1, "agent": f"agent-{i}",
            "model": "claude-sonnet-4-6" if i % 5 else "local-llama-3-8b", "inputTokens": 1000 + i,
            "outputTokens": 200, "cacheReadTokens": 50, "cacheWriteTokens": 10}))
        events.append(TimedRunEvent(t + 0.5, "node.finished", {"runId": run_id, "nodeId": f"agent-{i}", "state": "finished"}))
        set_state(t + 0.5, node, "finished")
    events.append(TimedRunEvent(end + tasks + 10, "run.completed", {"runId": run_id, "status": "finished"}))
    events.sort(key=lambda e: e.t_ms)
    row = {"runId": run_id, "workflowName": "agents-load", "workflowKey": "agents-load", "status": "running"}
    return RecordedRun(run_id=run_id, workflow="agents-load", devtools=tuple(devtools), run_events=tuple(events), row=row)


def heap_mb(page: Any) -> float:
    return float(page.evaluate("performance.memory ? performance.memory.usedJSHeapSize / 1048576 : NaN"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=50)
    parser.add_argument("--lines", type=int, default=200, help="lines per second per task")
    parser.add_argument("--chunks", type=int, default=10, help="task.output chunks per second per task")
    parser.add_argument("--seconds", type=float, default=40.0)
    parser.add_argument("--show", default="agent-7", help="the task whose Agent tab is open")
    parser.add_argument("--scratch", type=Path, default=Path("/tmp/bench-agents"))
    args = parser.parse_args(argv)
    args.scratch.mkdir(parents=True, exist_ok=True)

    recorded = agents_run(args.tasks, args.lines, args.chunks, args.seconds)
    replay = ReplayThread([recorded], speed=1.0, loop=False, max_gap_ms=None)
    replay.call(replay.gateway.pause)  # held until the page is open
    out: dict[str, Any] = {"tasks": args.tasks, "lines_per_s": args.lines, "chunks_per_s": args.chunks,
                           "seconds": args.seconds, "run_events": len(recorded.run_events)}
    try:
        run_id = wait_until(lambda: replay.call(lambda: replay.gateway.run_ids()), 10, "the replay run")[0]
        with PanelServer(replay.gateway.url, None, log=args.scratch / "panel.log") as panel, chromium() as browser:
            server_pid = panel.server_pids()[0]
            page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
            page.add_init_script(LONGTASKS)
            page.add_init_script(MARK_RECORDER)
            wire = WireCounter(page)
            page.goto(f"{panel.url}?runId={run_id}&nodeId={args.show}&tab=agent", wait_until="commit", timeout=120_000)
            page.locator('[data-testid="agent-output"]').first.wait_for(state="attached", timeout=120_000)
            page.wait_for_load_state("networkidle")
            start_ms = float(page.evaluate("performance.now()"))
            out["load_longest_ms"] = max(long_tasks(page, 0) or [0.0])
            out["rss_mb_start"], out["heap_mb_start"] = rss_mb(server_pid), heap_mb(page)
            cpu_start = cpu_seconds(server_pid)
            replay.call(replay.gateway.resume)
            started = time.monotonic()
            wall_start = time.time()
            samples: list[dict[str, float]] = []
            quarter = args.seconds / 4
            while not replay.call(lambda: replay.gateway.run_done(run_id)):
                page.wait_for_timeout(500)  # poll interval (keeps the page's event loop running)
                elapsed = time.monotonic() - started
                if elapsed >= quarter * (len(samples) + 1) and len(samples) < 4:
                    samples.append({"t_s": round(elapsed, 1), "rss_mb": round(rss_mb(server_pid), 1),
                                    "heap_mb": round(heap_mb(page), 1)})
            out["stream_seconds"] = round(time.monotonic() - started, 1)
            out["server_cpu_s"] = round(cpu_seconds(server_pid) - cpu_start, 1)
            frames, nbytes, largest = wire.since(wall_start)
            out.update(ws_frames=frames, ws_mb=round(nbytes / 1e6, 2), ws_largest_frame=largest)
            out["memory"] = samples
            tasks = long_tasks(page, start_ms)
            out["stream_longest_ms"] = max(tasks or [0.0])
            out["stream_longtasks"] = len(tasks)

            # lag: marker first visible (page clock) - the chunk's Gateway timestamp
            rows = replay.call(lambda: list(replay.gateway._live(run_id).history_rows))
            stamps: dict[str, float] = {}
            for row in rows:
                if row["event"] == "NodeOutput":
                    match = re.match(r"MARK-\d+-\d+", row["payload"].get("text", ""))
                    if match:
                        stamps[match.group(0)] = float(row["timestampMs"])
            shown = int(args.show.rsplit("-", 1)[1])
            want = sum(1 for key in stamps if key.startswith(f"MARK-{shown}-"))
            wait_until(lambda: len([k for k in page.evaluate("Object.keys(window.__marks)") if k.startswith(f"MARK-{shown}-")]) >= want,
                       30, "every chunk of the shown task visible")
            marks: dict[str, float] = page.evaluate("window.__marks")
            lags = [seen - stamps[key] for key, seen in marks.items() if key in stamps]
            # The chunk at which the shown attempt's output passed the per-attempt byte cap.
            sizes = sorted((int(row["payload"]["text"].split(" ", 1)[0].rsplit("-", 1)[1]),
                            len(row["payload"]["text"].encode()))
                           for row in rows if row["event"] == "NodeOutput"
                           and row["payload"].get("text", "").startswith(f"MARK-{shown}-"))
            total, cap_chunk = 0, None
            for k, size in sizes:
                total += size
                if total > DEFAULT_OUTPUT_CAP_BYTES and cap_chunk is None:
                    cap_chunk = k
            before = [seen - stamps[key] for key, seen in marks.items()
                      if key in stamps and (cap_chunk is None or int(key.rsplit("-", 1)[1]) < cap_chunk)]
            out["cap_reached_at_chunk"] = cap_chunk
            out["lag_ms_before_cap"] = {"n": len(before), "p50": round(percentile(before, 0.5), 1),
                                        "p95": round(percentile(before, 0.95), 1), "max": round(max(before), 1)} if before else None
            late = sorted((int(key.rsplit("-", 1)[1]), seen - stamps[key]) for key, seen in marks.items()
                          if key in stamps and seen - stamps[key] > 1000)
            out["late_chunks"] = {"count": len(late), "chunk_range": [late[0][0], late[-1][0]] if late else None,
                                  "first_seen_after_run_end": sum(1 for key, seen in marks.items() if key in stamps
                                                                  and seen > max(stamps.values()))}
            out["lag_ms"] = {"n": len(lags), "p50": round(percentile(lags, 0.5), 1), "p95": round(percentile(lags, 0.95), 1),
                             "max": round(max(lags), 1)} if lags else None
            total_in = sum(1000 + i for i in range(args.tasks))
            wait_until(lambda: (page.evaluate(TOKEN_SUMMARY) or {}).get("input") == total_in, 30, "the token totals")
            out["token_summary"] = page.evaluate(TOKEN_SUMMARY)
            out["rss_mb_end"], out["heap_mb_end"] = round(rss_mb(server_pid), 1), round(heap_mb(page), 1)
    finally:
        replay.stop()
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

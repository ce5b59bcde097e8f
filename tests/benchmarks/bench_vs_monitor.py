#!/usr/bin/env python3
"""Side by side with Smithers' own Monitor: Gateway frame -> state visible in the page.

Setup (one machine, so every clock is the same wall clock): Smithers' CLI gateway
(``smithers gateway``, no auth on loopback) on a workspace inside the Gateway install with one
workflow, ``wide`` (``--wide`` parallel sequences of two tasks, as in ``tests/gateway/suite.tsx``);
our dashboard (``smithers-dashboard serve``) pointed at the SAME gateway; headless Chromium with
two pages: ours (``/apps?runId=RUN``, ``--our-view full|monitor``) and the Monitor
(``/monitor?runId=RUN``); and a Python client subscribed to ``streamDevTools`` on the run that
stamps every task-state change it receives (``time.time()`` at decode).

In each page an init script records ``(performance.timeOrigin + performance.now(), nodeId,
state)`` when a task's state becomes visible:

- ours: when tree.js applies a patch or reset carrying the row (the visible rows' DOM is updated
  in the same task; rows scrolled out of the virtual window would show it when scrolled to);
- Monitor: a ``MutationObserver`` on its DOM (``.mon-tree-row`` name and ``.mon-pill``
  ``data-status``), which sees only rows it has expanded (it expands ancestors of running
  tasks); its labels are mapped back (``running`` <- ``in-progress``, ``ok`` <- ``finished``).

Pairs (nodeId, state) seen both in the Gateway's frames and in a page (after that page was
ready) give latencies; reported: p50, p95, max, pairs matched, and each page's longest
``longtask`` while the run streamed. Ratios are Monitor / ours (> 1: ours is ahead).

    .venv/bin/python tests/benchmarks/bench_vs_monitor.py [--wide 300] [--pace 1] [--our-view full]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent.parent))

from tests.benchmarks.harness import (  # noqa: E402
    LONGTASKS,
    PanelServer,
    bun,
    chromium,
    free_port,
    gateway_install,
    load_average,
    long_task_entries,
    long_tasks,
    percentile,
    summary_counts,
    wait_until,
)
from tests.benchmarks.trace_tasks import CATEGORIES, long_task_report  # noqa: E402

WORKFLOW = """/** @jsxImportSource smithers-orchestrator */
import { z } from "zod";
import { createSmithers } from "smithers-orchestrator";

const wide = Number(process.env.WIDE ?? 300);
const pace = Number(process.env.PACE ?? 1);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms * pace));
const { smithers, Workflow, Task, Sequence, Parallel } = createSmithers({ out: z.object({ value: z.number(), note: z.string() }) });

export default smithers(() => (
  <Workflow name="wide">
    <Sequence>
      <Parallel>
        {Array.from({ length: wide }, (_, i) => (
          <Sequence key={`s${i}`}>
            <Task id={`a-${i}`} output="out">{async () => { await sleep(50 + ((i * 31) % 500)); return { value: i, note: `a ${i}` }; }}</Task>
            <Task id={`b-${i}`} output="out">{async () => { await sleep(50 + ((i * 17) % 300)); return { value: i, note: `b ${i}` }; }}</Task>
          </Sequence>
        ))}
      </Parallel>
      <Task id="join" output="out">{async () => ({ value: wide, note: "joined" })}</Task>
    </Sequence>
  </Workflow>
));
"""

#: Ours: stamp rows as tree.js applies them.
OURS_RECORDER = """
window.__seen = [];
const __stamp = () => performance.timeOrigin + performance.now();
const __hook = setInterval(() => {
  const find = (root) => {
    for (const el of root.querySelectorAll("*")) {
      if (el.__smithersTree) return el.__smithersTree
      if (el.shadowRoot) { const hit = find(el.shadowRoot); if (hit) return hit }
    }
    return null
  };
  const d = find(document);
  if (!d || d.__hooked) return;
  d.__hooked = true;
  clearInterval(__hook);
  const patch = d.patch.bind(d);
  d.patch = (msg) => {
    const result = patch(msg);
    const t = __stamp();
    for (const a of msg.upsert) if (a[6] != null && a[5] != null) window.__seen.push([t, a[6], a[5]]);
    for (const a of msg.add) if (a[6] != null && a[5] != null) window.__seen.push([t, a[6], a[5]]);
    __progress();
    return result;
  };
  const notify = d.notify.bind(d);
  d.notify = (result) => {
    const out = notify(result);
    if (result && result.reset) {
      const t = __stamp();
      for (const row of d.rows.values()) if (row.nodeId != null && row.state != null) window.__seen.push([t, row.nodeId, row.state]);
    }
    __progress();
    return out;
  };
  // First view: the first moment tree.js holds (and has drawn) a task row with a state. Rows
  // that came in the first document were applied before this hook: stamped here, <= 5 ms late.
  const __progress = () => {
    if (window.__first !== undefined) return;
    for (const row of d.rows.values()) if (row.nodeId != null && row.state != null) { window.__first = __stamp(); return; }
  };
  __progress();
  window.__ready = __stamp();
}, 5);
"""

#: The Monitor: rows it renders, through a MutationObserver (cost O(mutations)).
MONITOR_RECORDER = """
window.__seen = [];
window.__last = new Map();
const __stamp = () => performance.timeOrigin + performance.now();
const __row = (row) => {
  const name = row.querySelector(".mon-tree-name")?.textContent;
  const pill = row.querySelector(".mon-pill");
  const status = pill ? pill.getAttribute("data-status") : null;
  if (!name || !status) return;
  if (window.__last.get(name) === status) return;
  window.__last.set(name, status);
  window.__seen.push([__stamp(), name, status]);
  if (window.__first === undefined) window.__first = __stamp();  // first view: first row with a status
};
const __observer = new MutationObserver((records) => {
  for (const r of records) {
    const target = r.target.nodeType === 1 ? r.target : r.target.parentElement;
    const row = target && target.closest ? target.closest(".mon-tree-row") : null;
    if (row) __row(row);
    if (r.type === "childList") {
      for (const n of r.addedNodes) {
        if (n.nodeType !== 1) continue;
        if (n.matches(".mon-tree-row")) __row(n);
        for (const inner of n.querySelectorAll(".mon-tree-row")) __row(inner);
      }
    }
  }
  if (window.__ready === undefined && document.querySelector(".mon-tree-row")) window.__ready = __stamp();
});
const __start = () => __observer.observe(document.documentElement, {subtree: true, childList: true, attributes: true,
  attributeFilter: ["data-status"], characterData: true});
if (document.documentElement) __start(); else document.addEventListener("DOMContentLoaded", __start);
"""

#: Each page's clock marks (epoch ms, the Gateway's clock): its navigation start (timeOrigin),
#: the end of its load event (ms after navigation) and its first progress shown.
PAGE_MARKS = """(() => { const nav = performance.getEntriesByType("navigation")[0] || {};
  return {origin: performance.timeOrigin, first: window.__first, load_end: nav.loadEventEnd || 0,
          response_start: nav.responseStart || 0, dom_content_loaded: nav.domContentLoadedEventEnd || 0} })()"""

#: Monitor label -> Gateway task state.
MONITOR_STATES = {"running": "in-progress", "ok": "finished", "failed": "failed", "queued": "pending"}


class CliGateway:
    """``smithers gateway`` on a fresh workspace inside the install (it must resolve its modules)."""

    def __init__(self, install: Path, wide: int, pace: float, log: Path) -> None:
        self.workspace = install / f"bench-ws-{os.getpid()}"
        shutil.rmtree(self.workspace, ignore_errors=True)
        (self.workspace / ".smithers" / "workflows").mkdir(parents=True)
        (self.workspace / ".smithers" / "workflows" / "wide.tsx").write_text(WORKFLOW)
        self.port = free_port()
        env = {**os.environ, "WIDE": str(wide), "PACE": repr(pace)}
        self._log = open(log, "ab")  # noqa: SIM115 - lives as long as the process
        self.proc = subprocess.Popen(
            [str(bun(install)), str(install / "node_modules/smithers-orchestrator/src/bin/smithers.js"),
             "gateway", "--port", str(self.port)],
            cwd=self.workspace, env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        wait_until(self._up, 120, "the CLI gateway")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _up(self) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError(f"smithers gateway exited with {self.proc.returncode}")
        try:
            body = httpx.get(f"{self.url}/health", timeout=5).json()
        except (httpx.HTTPError, ValueError):
            return False
        return bool(body.get("ok")) and body.get("workflowsLoaded") == body.get("workflowsTotal")

    def rpc(self, method: str, params: dict[str, Any]) -> Any:
        frame = httpx.post(f"{self.url}/v1/rpc/{method}", json=params, timeout=120).json()
        if not frame.get("ok"):
            raise RuntimeError(f"{method}: {frame.get('error')}")
        return frame.get("payload")

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        self._log.close()
        shutil.rmtree(self.workspace, ignore_errors=True)


#: The live ``node.*`` events the dashboard takes as state hints (inspector/state_hints.py).
NODE_EVENT_STATES = {"node.started": "in-progress", "node.finished": "finished"}


class FrameRecorder:
    """A streamDevTools subscription on its own thread, stamping task-state changes as received."""

    def __init__(self, url: str, run_id: str) -> None:
        from inspector.client import GatewayClient
        from inspector.stream import DevToolsSubscription, RunEvent, TreeUpdated

        self.seen: list[tuple[float, str, str]] = []
        #: (nodeId, state) -> when its live ``node.*`` event was received (the hints' source).
        self.events: dict[tuple[str, str], float] = {}
        #: (nodeId, state) -> the frame number that first carried it.
        self.frames: dict[tuple[str, str], int] = {}
        self.deltas = 0
        self.loop = asyncio.new_event_loop()
        self._stop = asyncio.Event()

        async def main() -> None:
            client = GatewayClient(url, None)
            sub = DevToolsSubscription(client, run_id)
            try:
                async for item in sub:
                    if isinstance(item, RunEvent) and not item.replayed and item.frame.event in NODE_EVENT_STATES:
                        payload = item.frame.payload if isinstance(item.frame.payload, dict) else {}
                        key = (str(payload.get("nodeId")), NODE_EVENT_STATES[item.frame.event])
                        self.events.setdefault(key, time.time() * 1000)
                    if isinstance(item, TreeUpdated):
                        now = time.time() * 1000
                        tree = item.tree
                        change = item.change
                        ids = [n.id for n in tree.walk()] if change.rebuilt else [*change.updated, *change.added]
                        if not change.rebuilt:
                            self.deltas += 1
                        for node_id in ids:
                            node = tree.get(node_id)
                            if node is not None and node.node_id and node.state:
                                self.seen.append((now, node.node_id, node.state))
                                self.frames.setdefault((node.node_id, node.state), change.frame_no)
                    if self._stop.is_set():
                        break
            finally:
                sub.stop()
                await client.aclose()

        def run() -> None:
            asyncio.set_event_loop(self.loop)
            with contextlib.suppress(asyncio.CancelledError):
                self.task = self.loop.create_task(main())
                self.loop.run_until_complete(self.task)

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self._stop.set)
        self.loop.call_soon_threadsafe(lambda: self.task.cancel())
        self.thread.join(10)


def gauge(port: int, name: str, default: float) -> float:
    """One of the server's ``/metrics`` gauges (``default`` if it cannot be read)."""
    try:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    except httpx.HTTPError:
        return default
    for line in text.splitlines():
        if line.startswith(f"{name} "):
            return float(line.split()[1])
    return default


def batch_stretch(port: int) -> float:
    """The server's ``smithers_dashboard_batch_stretch`` gauge (1.0 if it cannot be read)."""
    return gauge(port, "smithers_dashboard_batch_stretch", 1.0)


def frame_times(workspace: Path, run_id: str) -> dict[int, float]:
    """``frameNo -> createdAtMs`` of the run's frames, read from the CLI gateway's database.

    The engine stamps ``createdAtMs`` when it persists the frame (after the node states the
    frame carries were written), on this machine's clock: the moment the frame exists at the
    Gateway, before any subscriber's poll (each ``streamDevTools`` stream polls the database
    every 25 ms on its own phase) could see it.
    """
    out: dict[int, float] = {}
    for db in workspace.rglob("smithers.db"):
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)) as conn:
            rows = conn.execute("SELECT frame_no, created_at_ms FROM _smithers_frames WHERE run_id = ?", (run_id,))
            out.update({int(no): float(ms) for no, ms in rows})
    return out


def first_times(seen: list[Any], mapping: dict[str, str] | None = None) -> dict[tuple[str, str], float]:
    out: dict[tuple[str, str], float] = {}
    for t, node, state in seen:
        key = (node, mapping.get(state, state) if mapping else state)
        if key not in out:
            out[key] = float(t)
    return out


def latencies(gateway: dict[tuple[str, str], float], page: dict[tuple[str, str], float], ready: float,
              states: tuple[str, ...] = ("in-progress", "finished")) -> list[float]:
    """Page time minus Gateway time of each (nodeId, running|finished) pair whose Gateway time
    is at or after ``ready`` and which the page showed."""
    out = []
    for key, t_gw in gateway.items():
        if key[1] not in states or t_gw < ready:
            continue
        t_page = page.get(key)
        if t_page is not None:
            out.append(t_page - t_gw)
    return out


def earliest_signal(frames: dict[tuple[str, str], float], events: dict[tuple[str, str], float]) -> dict[tuple[str, str], float]:
    """When a subscriber first heard of each (nodeId, state) pair, by frame or by ``node.*`` event:
    the earliest any client of the Gateway could show it (the dashboard takes both paths)."""
    return {key: min(t, events.get(key, t)) for key, t in frames.items()}


def lag_figures(lat: list[float]) -> dict[str, Any]:
    return {"pairs": len(lat), "p50_ms": percentile(lat, 0.5), "p95_ms": percentile(lat, 0.95),
            "max_ms": max(lat) if lat else None, "negative": sum(1 for x in lat if x < 0)}


#: Seconds after both pages have loaded and shown their first progress before the steady state.
STEADY_AFTER_S = 2.0


def _ms(value: Any) -> str:
    return "n/a" if value is None or value != value else f"{value:,.0f} ms"


def _s(value: Any) -> str:
    return "n/a" if value is None or value != value else f"{value:+.1f} s"


def side_by_side(result: dict[str, Any]) -> str:
    ours, mon = result["ours"], result["monitor"]
    rows = [
        ("first view (navigation -> first progress)", _ms(ours["first_view_ms"]), _ms(mon["first_view_ms"])),
        ("(the Gateway's first running task, after navigation)", _ms(ours["gateway_first_progress_ms"]),
         _ms(mon["gateway_first_progress_ms"])),
        ("steady state: frame -> visible, p50", _ms(ours["steady"]["p50_ms"]), _ms(mon["steady"]["p50_ms"])),
        ("steady state: frame -> visible, p95", _ms(ours["steady"]["p95_ms"]), _ms(mon["steady"]["p95_ms"])),
        *((f"steady state, {state} only: p50 / p95",
           f"{_ms(ours['steady_by_state'][state]['p50_ms'])} / {_ms(ours['steady_by_state'][state]['p95_ms'])}",
           f"{_ms(mon['steady_by_state'][state]['p50_ms'])} / {_ms(mon['steady_by_state'][state]['p95_ms'])}")
          for state in ("in-progress", "finished")),
        *((f"(both) frame created -> its {state} node event received, p50 / p95",
           f"{_ms(result['gateway_node_event'][state]['p50_ms'])} / {_ms(result['gateway_node_event'][state]['p95_ms'])}", "")
          for state in ("in-progress", "finished")),
        *((f"(both) floor, {state}: frame created -> its earliest signal received (frame or event), p50 / p95",
           f"{_ms(result['gateway_floor'][state]['p50_ms'])} / {_ms(result['gateway_floor'][state]['p95_ms'])}", "")
          for state in ("all", "in-progress", "finished")),
        ("steady state over the floor: p50 / p95 (negative)",
         f"{_ms(ours['over_floor']['p50_ms'])} / {_ms(ours['over_floor']['p95_ms'])} ({ours['over_floor']['negative']})",
         f"{_ms(mon['over_floor']['p50_ms'])} / {_ms(mon['over_floor']['p95_ms'])} ({mon['over_floor']['negative']})"),
        ("steady state: max", _ms(ours["steady"]["max_ms"]), _ms(mon["steady"]["max_ms"])),
        ("steady state: pairs", f"{ours['steady']['pairs']}", f"{mon['steady']['pairs']}"),
        ("all pairs: p50 / p95", f"{_ms(ours['p50_ms'])} / {_ms(ours['p95_ms'])}",
         f"{_ms(mon['p50_ms'])} / {_ms(mon['p95_ms'])}"),
        ("all pairs: count (negative)", f"{ours['pairs']} ({ours['negative']})", f"{mon['pairs']} ({mon['negative']})"),
        ("recorder-stamped p95 (negative)", f"{_ms(ours['recorder_stamped']['p95_ms'])} "
         f"({ours['recorder_stamped']['negative']})",
         f"{_ms(mon['recorder_stamped']['p95_ms'])} ({mon['recorder_stamped']['negative']})"),
        ("(both) frame created -> a subscriber received it, p50 / p95",
         f"{_ms(result['gateway_emit']['p50_ms'])} / {_ms(result['gateway_emit']['p95_ms'])}", ""),
        ("longest task while streaming", _ms(ours["longest_task_ms"]), _ms(mon["longest_task_ms"])),
        ("(its time from the run's end)", _s(ours.get("longest_task_from_end_s")), _s(mon.get("longest_task_from_end_s"))),
        ("long tasks while streaming", f"{ours['longtasks']}", f"{mon['longtasks']}"),
        ("longest task during page load", _ms(ours["load_longest_task_ms"]), _ms(mon["load_longest_task_ms"])),
    ]
    lines = [f"our server's batch stretch: max {result['batch_stretch']['max']:.2f}, "
             f"mean {result['batch_stretch']['mean']:.2f}",
             f"load average {result['load_before']} -> {result['load_after']}; steady state from "
             f"{result['steady_from_s']:.1f} s after launch; {result['frames_timed']} / "
             f"{result['gateway_task_states']} Gateway pairs timed by their frame's createdAtMs",
             "| figure | ours | Monitor |", "|---|---:|---:|"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    return "\n".join(lines)


def goals_table(result: dict[str, Any]) -> str:
    """Issue 14 item 2's goals against this run."""
    ours, mon = result["ours"], result["monitor"]
    nan = float("nan")
    p95, mon_p95 = ours["steady"]["p95_ms"], mon["steady"]["p95_ms"]
    ratio = mon_p95 / p95 if p95 and mon_p95 else nan
    goals = [
        ("steady-state p95 <= 100 ms", f"{_ms(p95)} (the Gateway's floor alone: "
         f"{_ms(result['gateway_floor']['all']['p95_ms'])})", p95 <= 100),
        ("steady-state p95 >= 10x better than the Monitor", f"{ratio:.1f}x", ratio >= 10),
        ("longest task while streaming <= 100 ms", _ms(ours["longest_task_ms"]), ours["longest_task_ms"] <= 100),
        ("first view <= 1.0 s", _ms(ours["first_view_ms"]), ours["first_view_ms"] <= 1000),
        ("first view ahead of the Monitor's", f"{_ms(ours['first_view_ms'])} vs {_ms(mon['first_view_ms'])}",
         ours["first_view_ms"] < (mon["first_view_ms"] or nan)),
    ]
    lines = ["| goal | this run | |", "|---|---|---|"]
    lines += [f"| {goal} | {figure} | {'met' if ok else 'NOT met'} |" for goal, figure, ok in goals]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--wide", type=int, default=300)
    parser.add_argument("--pace", type=float, default=1.0)
    parser.add_argument("--our-view", choices=["full", "monitor"], default="full")
    parser.add_argument("--open-running", action="store_true",
                        help="navigate both pages once the run has a running task (the pages' own first view), "
                             "not right after launching it (their first view then includes the run's start)")
    parser.add_argument("--follow-active", type=int, default=0, metavar="N",
                        help="serve with --follow-active N (the server follows active runs before a page opens them)")
    parser.add_argument("--timeout", type=float, default=3600)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--trace", type=Path, help="write a Chromium trace of our page while the run streams "
                        "here, and print what its longest tasks were made of (trace_tasks.py)")
    args = parser.parse_args(argv)
    install = gateway_install()
    result: dict[str, Any] = {"wide": args.wide, "pace": args.pace, "our_view": args.our_view,
                              "follow_active": args.follow_active,
                              "load_before": load_average()}
    with tempfile.TemporaryDirectory(prefix="bench-vs-monitor-") as tmp:
        scratch = Path(tmp)
        gw = CliGateway(install, args.wide, args.pace, scratch / "cli-gateway.log")
        try:
            env = {"SMITHERS_DASHBOARD_FOLLOW_ACTIVE": str(args.follow_active)} if args.follow_active else None
            with PanelServer(gw.url, None, log=scratch / "panel.log", env=env) as panel, chromium() as browser:
                pages = {}
                for name, script in (("ours", OURS_RECORDER), ("monitor", MONITOR_RECORDER)):
                    context = browser.new_context(viewport={"width": 1400, "height": 1000})
                    page = context.new_page()
                    page.add_init_script(LONGTASKS + script)
                    pages[name] = page
                if args.trace:
                    # Started on a blank page: V8's sampler, started on a page that has
                    # compiled Bokeh, stops that page's main thread for seconds.
                    browser.start_tracing(page=pages["ours"], categories=CATEGORIES)
                # Warm both servers' first page load before the run exists.
                pages["ours"].goto(panel.url, wait_until="networkidle", timeout=120_000)
                # "load", not "networkidle": the Monitor holds an event stream (/v1/api/stream) open.
                pages["monitor"].goto(f"{gw.url}/monitor", wait_until="load", timeout=120_000)
                run_id = gw.rpc("launchRun", {"workflow": "wide", "input": {}})["runId"]
                launched = time.time()
                recorder = FrameRecorder(gw.url, run_id)
                extra = "&view=monitor" if args.our_view == "monitor" else ""
                if args.open_running:
                    wait_until(lambda: any(state == "in-progress" for _, _, state in list(recorder.seen)), 120,
                               "the run's first running task")
                if args.follow_active:
                    # A run the server already follows (it polls the run list every 2 s).
                    wait_until(lambda: gauge(panel.port, "smithers_dashboard_upstream_streams", 0) >= 1, 30,
                               "the server following the run")
                pages["ours"].goto(f"{panel.url}?runId={run_id}{extra}", wait_until="commit", timeout=120_000)
                pages["monitor"].goto(f"{gw.url}/monitor?runId={run_id}", wait_until="commit", timeout=120_000)
                for name, page in pages.items():
                    wait_until(lambda page=page: page.evaluate("window.__ready"), 180, f"{name} page ready")
                    wait_until(lambda page=page: page.evaluate("window.__first"), 180, f"{name} first progress")
                ready = {name: float(page.evaluate("window.__ready")) for name, page in pages.items()}
                # Long tasks count from the end of each page's load (page build is reported apart).
                for page in pages.values():
                    page.wait_for_load_state("load", timeout=120_000)
                ready_ms = {name: page.evaluate("performance.now()") for name, page in pages.items()}
                load_longest = {name: max(long_tasks(page, 0.0) or [0.0]) for name, page in pages.items()}
                marks = {name: page.evaluate(PAGE_MARKS) for name, page in pages.items()}
                # Steady state: Gateway frames from STEADY_AFTER_S after the later of the two pages
                # had both finished loading and shown its first progress; the same frames for both.
                steady_from = max(max(m["first"], m["origin"] + m["load_end"]) for m in marks.values()) \
                    + STEADY_AFTER_S * 1000
                status = "?"
                stretches: list[float] = []
                while True:
                    run = gw.rpc("getRun", {"runId": run_id})
                    status = str(run.get("status"))
                    stretches.append(batch_stretch(panel.port))
                    if status in ("finished", "failed", "cancelled"):
                        break
                    if time.time() - launched > args.timeout:
                        raise TimeoutError("the run did not finish")
                    pages["ours"].wait_for_timeout(1000)  # poll interval
                finished = (run.get("finishedAtMs") or time.time() * 1000) / 1000
                # Let both pages settle (the last changes arrive after the run ends).
                pages["ours"].wait_for_timeout(3000)  # settle window (measured figures stop at the run's end)
                recorder.stop()
                if args.trace:
                    args.trace.write_bytes(browser.stop_tracing())
                created = frame_times(gw.workspace, run_id)
                recorder_first = first_times(recorder.seen)
                # The Gateway's time of a pair: createdAtMs of the first frame that carried it
                # (the recorder's own stamp only for a frame the database did not give back).
                gw_first = {key: created.get(recorder.frames.get(key, -1), t) for key, t in recorder_first.items()}
                result["status"] = status
                result["run_seconds"] = finished - launched
                result["gateway_deltas"] = recorder.deltas
                result["gateway_task_states"] = len(gw_first)
                result["frames_timed"] = sum(1 for key in recorder_first if recorder.frames.get(key, -1) in created)
                # The Gateway's own part, paid by both pages: frame created -> on a subscriber's
                # socket (the recorder's decode; it shares a process with Playwright, so late).
                gateway_part = [recorder_first[key] - gw_first[key] for key in recorder_first
                                if key[1] in ("in-progress", "finished")]
                result["gateway_emit"] = lag_figures(gateway_part)
                # The run-event path the tree's hints take: node event on a subscriber's socket
                # minus the frame's creation (negative: the event came first).
                result["gateway_node_event"] = {
                    state: lag_figures([t - gw_first[key] for key, t in recorder.events.items()
                                        if key[1] == state and key in gw_first])
                    for state in NODE_EVENT_STATES.values()}
                # The floor: frame created -> the earliest signal of it on a subscriber's socket,
                # over the steady state's pairs. No page can beat it; "over the floor" below is
                # what a page adds to it (negative: the page showed it before the recorder,
                # which shares a process with Playwright, heard of it).
                heard = earliest_signal(recorder_first, recorder.events)
                result["gateway_floor"] = {
                    state: lag_figures(latencies(gw_first, heard, steady_from, states))
                    for state, states in (("all", ("in-progress", "finished")), ("in-progress", ("in-progress",)),
                                          ("finished", ("finished",)))}
                result["steady_from_s"] = steady_from / 1000 - launched
                # How far the server stretched its batches (dashboard/shared.py RunTicker), sampled once a second.
                result["batch_stretch"] = {"max": max(stretches, default=1.0),
                                           "mean": sum(stretches) / len(stretches) if stretches else 1.0}
                first_progress = min((t for (_, state), t in gw_first.items() if state == "in-progress"), default=float("nan"))
                for name, page in pages.items():
                    seen = page.evaluate("window.__seen")
                    mapped = first_times(seen, MONITOR_STATES if name == "monitor" else None)
                    entries = long_task_entries(page, float(ready_ms[name]))
                    tasks = [t["ms"] for t in entries]
                    m = marks[name]
                    # When the longest one was, from the run's end (negative: while it ran).
                    longest = max(entries, key=lambda t: t["ms"], default=None)
                    result[name] = {
                        **lag_figures(latencies(gw_first, mapped, ready[name])),
                        "steady": lag_figures(latencies(gw_first, mapped, steady_from)),
                        "steady_by_state": {state: lag_figures(latencies(gw_first, mapped, steady_from, (state,)))
                                            for state in ("in-progress", "finished")},
                        "recorder_stamped": lag_figures(latencies(recorder_first, mapped, ready[name])),
                        "over_floor": lag_figures([mapped[key] - heard[key] for key, t in gw_first.items()
                                                   if key[1] in ("in-progress", "finished") and t >= steady_from
                                                   and key in mapped and key in heard]),
                        "first_view_ms": m["first"] - m["origin"],
                        # The earliest moment any page could show progress: the Gateway's first
                        # frame with a running task, after this page's navigation started.
                        "gateway_first_progress_ms": first_progress - m["origin"],
                        # Where the first view went: the server's answer (for ours, the session
                        # built), the document parsed (scripts run), the load event.
                        "first_view_parts_ms": {"response_start": m["response_start"],
                                                "dom_content_loaded": m["dom_content_loaded"],
                                                "load_end": m["load_end"]},
                        "longest_task_ms": max(tasks or [0.0]), "longtasks": len(tasks),
                        "longest_task_from_end_s": (m["origin"] + longest["start"]) / 1000 - finished
                        if longest is not None else None,
                        # Every long task while streaming: [s from the run's end, ms]; the window's start.
                        "long_tasks_from_end": [[round((m["origin"] + t["start"]) / 1000 - finished, 2), round(t["ms"])]
                                                for t in entries],
                        "streaming_from_end_s": (m["origin"] + ready_ms[name]) / 1000 - finished,
                        "load_longest_task_ms": load_longest[name],
                    }
                result["ours"]["page_counts"] = summary_counts(pages["ours"])
                result["gateway_summary"] = run.get("summary")
        finally:
            gw.stop()
    result["load_after"] = load_average()
    ours, mon = result["ours"], result["monitor"]
    for key in ("p50_ms", "p95_ms", "longest_task_ms", "first_view_ms"):
        a, b = ours.get(key), mon.get(key)
        result[f"ratio_{key}"] = (b / a) if a and b else None
    result["ratio_steady_p95_ms"] = (mon["steady"]["p95_ms"] / ours["steady"]["p95_ms"]
                                     if ours["steady"]["p95_ms"] and mon["steady"]["p95_ms"] else None)
    print(json.dumps(result, indent=1))
    print()
    print(side_by_side(result))
    print()
    print(goals_table(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    if args.trace:
        for task in long_task_report(args.trace, f":{panel.port}/", top=3):
            print(json.dumps(task))
    return 0


if __name__ == "__main__":
    sys.exit(main())

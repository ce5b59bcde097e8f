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
    return result;
  };
  const notify = d.notify.bind(d);
  d.notify = (result) => {
    if (result && result.reset) {
      const t = __stamp();
      for (const row of d.rows.values()) if (row.nodeId != null && row.state != null) window.__seen.push([t, row.nodeId, row.state]);
    }
    return notify(result);
  };
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


class FrameRecorder:
    """A streamDevTools subscription on its own thread, stamping task-state changes as received."""

    def __init__(self, url: str, run_id: str) -> None:
        from inspector.client import GatewayClient
        from inspector.stream import DevToolsSubscription, TreeUpdated

        self.seen: list[tuple[float, str, str]] = []
        self.deltas = 0
        self.loop = asyncio.new_event_loop()
        self._stop = asyncio.Event()

        async def main() -> None:
            client = GatewayClient(url, None)
            sub = DevToolsSubscription(client, run_id)
            try:
                async for item in sub:
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


def first_times(seen: list[Any], mapping: dict[str, str] | None = None) -> dict[tuple[str, str], float]:
    out: dict[tuple[str, str], float] = {}
    for t, node, state in seen:
        key = (node, mapping.get(state, state) if mapping else state)
        if key not in out:
            out[key] = float(t)
    return out


def latencies(gateway: dict[tuple[str, str], float], page: dict[tuple[str, str], float], ready: float) -> list[float]:
    out = []
    for key, t_gw in gateway.items():
        if key[1] not in ("in-progress", "finished") or t_gw < ready:
            continue
        t_page = page.get(key)
        if t_page is not None:
            out.append(t_page - t_gw)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--wide", type=int, default=300)
    parser.add_argument("--pace", type=float, default=1.0)
    parser.add_argument("--our-view", choices=["full", "monitor"], default="full")
    parser.add_argument("--timeout", type=float, default=3600)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--trace", type=Path, help="write a Chromium trace of our page while the run streams "
                        "here, and print what its longest tasks were made of (trace_tasks.py)")
    args = parser.parse_args(argv)
    install = gateway_install()
    result: dict[str, Any] = {"wide": args.wide, "pace": args.pace, "our_view": args.our_view,
                              "load_before": load_average()}
    with tempfile.TemporaryDirectory(prefix="bench-vs-monitor-") as tmp:
        scratch = Path(tmp)
        gw = CliGateway(install, args.wide, args.pace, scratch / "cli-gateway.log")
        try:
            with PanelServer(gw.url, None, log=scratch / "panel.log") as panel, chromium() as browser:
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
                pages["ours"].goto(f"{panel.url}?runId={run_id}{extra}", wait_until="commit", timeout=120_000)
                pages["monitor"].goto(f"{gw.url}/monitor?runId={run_id}", wait_until="commit", timeout=120_000)
                for name, page in pages.items():
                    wait_until(lambda page=page: page.evaluate("window.__ready"), 180, f"{name} page ready")
                ready = {name: float(page.evaluate("window.__ready")) for name, page in pages.items()}
                # Long tasks count from the end of each page's load (page build is reported apart).
                for page in pages.values():
                    page.wait_for_load_state("load", timeout=120_000)
                ready_ms = {name: page.evaluate("performance.now()") for name, page in pages.items()}
                load_longest = {name: max(long_tasks(page, 0.0) or [0.0]) for name, page in pages.items()}
                status = "?"
                while True:
                    run = gw.rpc("getRun", {"runId": run_id})
                    status = str(run.get("status"))
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
                gw_first = first_times(recorder.seen)
                result["status"] = status
                result["run_seconds"] = finished - launched
                result["gateway_deltas"] = recorder.deltas
                result["gateway_task_states"] = len(gw_first)
                for name, page in pages.items():
                    seen = page.evaluate("window.__seen")
                    mapped = first_times(seen, MONITOR_STATES if name == "monitor" else None)
                    lat = latencies(gw_first, mapped, ready[name])
                    tasks = long_tasks(page, float(ready_ms[name]))
                    result[name] = {
                        "pairs": len(lat),
                        "p50_ms": percentile(lat, 0.5), "p95_ms": percentile(lat, 0.95),
                        "max_ms": max(lat) if lat else None,
                        "negative": sum(1 for x in lat if x < 0),
                        "longest_task_ms": max(tasks or [0.0]), "longtasks": len(tasks),
                        "load_longest_task_ms": load_longest[name],
                    }
                result["ours"]["page_counts"] = summary_counts(pages["ours"])
                result["gateway_summary"] = run.get("summary")
        finally:
            gw.stop()
    result["load_after"] = load_average()
    ours, mon = result["ours"], result["monitor"]
    for key in ("p50_ms", "p95_ms", "longest_task_ms"):
        a, b = ours.get(key), mon.get(key)
        result[f"ratio_{key}"] = (b / a) if a and b else None
    print(json.dumps(result, indent=1))
    print(f"\nframe -> visible: ours p50 {ours['p50_ms']:.0f} ms p95 {ours['p95_ms']:.0f} ms ({ours['pairs']} pairs); "
          f"Monitor p50 {mon['p50_ms']:.0f} ms p95 {mon['p95_ms']:.0f} ms ({mon['pairs']} pairs)")
    print(f"longest task: ours {ours['longest_task_ms']:.0f} ms, Monitor {mon['longest_task_ms']:.0f} ms")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    if args.trace:
        for task in long_task_report(args.trace, f":{panel.port}/", top=3):
            print(json.dumps(task))
    return 0


if __name__ == "__main__":
    sys.exit(main())

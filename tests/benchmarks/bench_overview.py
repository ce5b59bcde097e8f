"""The runs overview over 10,000 runs: first view, longest main-thread task, bytes to the browser.

    PYTHONPATH=$PWD .venv/bin/python tests/benchmarks/bench_overview.py [--runs 10000]

The Gateway is an in-process fake speaking the real HTTP RPC (``POST /v1/rpc/<method>``,
``{"type": "res", "ok": true, "payload": ...}``) for what the landing page reads:
``listRuns`` (newest first, ``filter: {limit, offset, status, workflow}`` as 0.32.0 pages
it), ``getRun``, ``listScores`` (a score per run for one workflow). It serves a generated
history: 10,000 runs of 8 workflows over 30 days, ~7 % failed. ``panel serve apps/`` runs
against it in a subprocess; Debian's Chromium opens ``/apps`` (once to warm the process's
shared run feed, which pages the 10,000 runs once per process, then measured) and reports:

- navigation -> every ``data-testid="workflow-stats"`` row attached (goal <= 1.5 s);
- the longest main-thread task (``PerformanceObserver`` ``longtask``; goal <= 200 ms);
- bytes the page received: the HTML document and every WebSocket frame (aggregates, not
  10,000 rows: the scatter is binned past 2,000 points, the run table is remote-paginated).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import tornado.web

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from inspector.cli import panel_command  # noqa: E402
from tests.gateway.server import free_port  # noqa: E402

WORKFLOWS = ["ingest", "triage", "summarise", "deploy", "review", "backfill", "nightly", "eval"]
LONGTASKS = """
window.__long = []
new PerformanceObserver(l => { for (const e of l.getEntries()) window.__long.push(e.duration) })
  .observe({type: 'longtask', buffered: true})
"""


def history(n: int, seed: int = 13) -> list[dict[str, object]]:
    rng = random.Random(seed)
    now = time.time() * 1000
    rows = []
    for i in range(n):
        start = now - rng.uniform(0, 30 * 86_400_000)
        workflow = rng.choice(WORKFLOWS)
        status = "failed" if rng.random() < 0.07 else "finished"
        duration = rng.lognormvariate(10, 1.0)
        rows.append({"runId": f"run-{i:05d}", "workflowName": workflow, "workflowKey": workflow, "status": status,
                     "createdAtMs": int(start), "startedAtMs": int(start), "finishedAtMs": int(start + duration),
                     "system": False, "errorJson": None})
    rows.sort(key=lambda r: -int(r["createdAtMs"]))  # type: ignore[call-overload]
    return rows


class Rpc(tornado.web.RequestHandler):
    def initialize(self, rows: list[dict[str, object]]) -> None:
        self.rows = rows

    def post(self, method: str) -> None:
        params = json.loads(self.request.body or b"{}")
        payload: object
        if method == "listRuns":
            flt = params.get("filter") or {}
            rows = [r for r in self.rows if flt.get("status") in (None, r["status"])
                    and flt.get("workflow") in (None, r["workflowKey"])]
            offset, limit = int(flt.get("offset") or 0), int(flt.get("limit") or 50)
            payload = rows[offset:offset + limit]
        elif method == "getRun":
            payload = next((r for r in self.rows if r["runId"] == params.get("runId")), None)
        elif method == "listScores":
            run = next((r for r in self.rows if r["runId"] == params.get("runId")), {})
            payload = [{"runId": run.get("runId"), "nodeId": "judge", "iteration": 0, "scorerName": "quality",
                        "score": (hash(run.get("runId")) % 100) / 100}] if run.get("workflowKey") == "eval" else []
        elif method == "listRunTokenUsage":
            run = next((r for r in self.rows if r["runId"] == params.get("runId")), {})
            events = [{"nodeId": "judge", "iteration": 0, "attempt": 1, "model": "claude-sonnet-4-5", "agent": "judge",
                       "inputTokens": 1200 + hash(run.get("runId")) % 800, "outputTokens": 300,
                       "timestampMs": run.get("finishedAtMs")}] if run.get("workflowKey") == "eval" else []
            payload = {"runId": params.get("runId"), "events": events}
        else:
            payload = []
        self.set_header("content-type", "application/json")
        self.write(json.dumps({"type": "res", "id": "bench", "ok": True, "payload": payload}))


def serve_gateway(rows: list[dict[str, object]], port: int) -> threading.Thread:
    def run() -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        app = tornado.web.Application([(r"/v1/rpc/(\w+)", Rpc, {"rows": rows})])
        app.listen(port, "127.0.0.1")
        loop.run_forever()
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


#: The figures of the overview as it was first merged (two run tables, WebGL charts sent in
#: the first document, aggregates per session), same machine, same history: the "before".
BEFORE = {"first_view_s": 3.503, "longest_task_ms": 856.0, "ws_bytes": 131_959}


def measure(url: str, trace: Path | None = None, screenshot: Path | None = None) -> dict[str, dict[str, float]]:
    from playwright.sync_api import sync_playwright

    from tests.benchmarks.trace_tasks import CATEGORIES

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox", "--disable-gpu"])
        try:
            results = {}
            for label in ("warm-up", "measured"):
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                page.add_init_script(LONGTASKS)
                received = [0]

                def count(frame: str | bytes, received: list[int] = received) -> None:
                    received[0] += len(frame if isinstance(frame, bytes) else frame.encode())
                page.on("websocket", lambda ws, count=count: ws.on("framereceived", count))
                if trace is not None and label == "measured":
                    browser.start_tracing(page=page, path=str(trace), categories=CATEGORIES)
                t0 = time.perf_counter()
                response = page.goto(url, wait_until="commit")
                committed = time.perf_counter() - t0
                page.locator('[data-testid="workflow-stats"]').nth(len(WORKFLOWS) - 1).wait_for(
                    state="attached", timeout=120_000)
                first_view = time.perf_counter() - t0
                page.wait_for_timeout(3000)  # let the charts and score trends settle, then read the tasks
                longest = max(page.evaluate("window.__long"), default=0.0)
                if trace is not None and label == "measured":
                    browser.stop_tracing()
                if screenshot is not None and label == "measured":
                    page.screenshot(path=str(screenshot), full_page=True)
                html_bytes = len(response.body()) if response is not None else 0
                results[label] = {"first_view_s": round(first_view, 3), "html_s": round(committed, 3), "longest_task_ms": round(longest, 1),
                                  "ws_bytes": received[0], "html_bytes": html_bytes}
                page.close()
            return results
        finally:
            browser.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--screenshot", type=Path, help="save the measured page (docs/screenshots/overview.png)")
    parser.add_argument("--trace", type=Path, help="write a Chromium trace of the measured page here "
                        "(read it with tests/benchmarks/trace_tasks.py)")
    args = parser.parse_args()
    rows = history(args.runs)
    gw_port, panel_port = free_port(), free_port()
    serve_gateway(rows, gw_port)
    env = dict(os.environ, SMITHERS_GATEWAY_URL=f"http://127.0.0.1:{gw_port}", PYTHONPATH=str(ROOT))
    env.pop("SMITHERS_TOKEN", None)
    proc = subprocess.Popen(panel_command(panel_port), cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{panel_port}/static/js/bokeh.min.js").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("panel serve did not start")
            time.sleep(0.2)  # poll interval
        result = measure(f"http://127.0.0.1:{panel_port}/apps", args.trace, args.screenshot)
        print(json.dumps({"runs": args.runs, **result}, indent=2))  # noqa: T201
        after = result["measured"]
        print(f"{'':18} {'before':>10} {'after':>10}   goal")  # noqa: T201
        for key, goal in (("first_view_s", "<= 1.5"), ("longest_task_ms", "<= 200"), ("ws_bytes", "")):
            print(f"{key:18} {BEFORE[key]:>10} {after[key]:>10}   {goal}")  # noqa: T201
    finally:
        proc.terminate()
        proc.wait(timeout=15)


if __name__ == "__main__":
    main()

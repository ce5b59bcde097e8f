#!/usr/bin/env python3
"""The timeline and scores charts, HoloViews vs hand-built Bokeh, measured side by side.

The dashboard draws both charts as hand-built Bokeh figures changed in place
(``dashboard/views/timeline.py`` and ``scores.py``); their HoloViews versions
(``hv.DynamicMap`` over a ``Pipe``: ``timeline_hv.py``, ``scores_hv.py``, ``livechart_hv.py``
here) measured clearly worse on this workload and are kept for this comparison
(docs/performance.md, "Charts: HoloViews vs Bokeh"). The
workload is the big synthetic run (``synthetic_wide.py``: ``--wide`` sequences of two tasks,
so 2 x wide + 1 tasks and twice as many node events), streamed into a
:class:`~dashboard.store.RunStore` the way the hub does (the event log capped at the store's
``max_events``); the scores are two scorers per finished task.

1. **Server, in process** (``--updates`` updates through the whole run): each view rendered
   into a Bokeh ``Document``; per update, the wall time of the store change (the view's
   redraw, HoloViews' or Bokeh's model changes included) and the bytes of the PATCH-DOC
   message those model changes make (what Bokeh's server sends down the websocket;
   header, metadata, content and binary buffers).
2. **Browser, served** (``--seconds`` each): ``pn.serve`` of each view on a store fed by a
   session callback every 0.5 s (so the views' own throttles pace their redraws, as on the
   run page); one Chromium page per view with a ``longtask`` PerformanceObserver; recorded:
   the longest main-thread task and the number of long tasks while the run streams, and the
   websocket bytes the page received per chart update.

    .venv/bin/python tests/benchmarks/bench_charts.py [--wide 2000 --updates 40 --seconds 20]

Timings depend on the machine's load: the load average is printed with the table.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
import zlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent.parent))

import panel as pn  # noqa: E402
from bokeh.document import Document  # noqa: E402
from bokeh.protocol import Protocol  # noqa: E402

from dashboard.store import EventRecord, RunStore  # noqa: E402
from dashboard.views.scores import ScoresView  # noqa: E402
from dashboard.views.timeline import Timeline  # noqa: E402
from tests.benchmarks.harness import LONGTASKS, chromium, load_average, long_tasks, wait_until  # noqa: E402
from tests.benchmarks.scores_hv import HoloViewsScoresView  # noqa: E402
from tests.benchmarks.synthetic_wide import wide_run  # noqa: E402
from tests.benchmarks.timeline_hv import HoloViewsTimeline  # noqa: E402
from tests.gateway.server import free_port  # noqa: E402

if TYPE_CHECKING:
    from collections.abc import Callable

#: (chart, version) -> the view class.
VERSIONS: dict[tuple[str, str], type[Any]] = {
    ("timeline", "bokeh"): Timeline,
    ("timeline", "holoviews"): HoloViewsTimeline,
    ("scores", "bokeh"): ScoresView,
    ("scores", "holoviews"): HoloViewsScoresView,
}

_PROTOCOL = Protocol()


class Workload:
    """The synthetic run as the store would hold it after ``k`` of ``n`` steps."""

    def __init__(self, wide: int) -> None:
        run = wide_run(wide, rate=40.0, concurrency=16)
        base = time.time() - (run.run_events[-1].t_ms / 1000.0 if run.run_events else 0.0) - 60
        self.events = [EventRecord(base + e.t_ms / 1000.0, e.event, node_id=e.payload.get("nodeId"),
                                   iteration=e.payload.get("iteration"), attempt=e.payload.get("attempt"),
                                   state=e.payload.get("state"))
                       for e in run.run_events]
        self.scores: list[dict[str, Any]] = []
        for e in self.events:
            if e.event == "node.finished" and e.node_id:
                for scorer, value in (("length", 0.4), ("relevance", 0.8)):
                    self.scores.append({"nodeId": e.node_id, "iteration": 0, "attempt": 1, "scorerName": scorer,
                                        "score": value + (zlib.crc32(e.node_id.encode()) % 20) / 100, "reason": "synthetic",
                                        "scoredAtMs": int(e.time * 1000)})

    def apply(self, store: RunStore, chart: str, k: int, n: int) -> None:
        if chart == "timeline":
            upto = max(1, len(self.events) * k // n)
            store.events = tuple(self.events[:upto][-store.max_events:])
        else:
            store.scores = self.scores[: max(1, len(self.scores) * k // n)]


def message_bytes(events: list[Any]) -> int:
    """Bytes of the PATCH-DOC message Bokeh's server would send for these document events."""
    if not events:
        return 0
    msg = _PROTOCOL.create("PATCH-DOC", events)
    size = len(msg.header_json) + len(msg.metadata_json) + len(msg.content_json)
    return size + sum(len(buffer.to_bytes()) for buffer in msg.buffers)


def serve_in_process(workload: Workload, chart: str, version: str, updates: int) -> dict[str, float]:
    store = RunStore()
    store.run = {"runId": "synthetic-wide", "status": "running"}
    view = VERSIONS[(chart, version)](store=store)
    doc = Document()
    doc.add_root(pn.panel(view).get_root(doc))
    events: list[Any] = []
    doc.on_change(lambda event: events.append(event))
    ms: list[float] = []
    sizes: list[int] = []
    for k in range(1, updates + 1):
        events.clear()
        started = time.perf_counter()
        workload.apply(store, chart, k, updates)
        ms.append((time.perf_counter() - started) * 1000)
        sizes.append(message_bytes(events))
    return {"server_ms_median": statistics.median(ms), "server_ms_max": max(ms),
            "bytes_median": statistics.median(sizes), "bytes_max": max(sizes)}


class Served:
    """One Panel server with a route per (chart, version); each session streams the run into
    its own store from a session callback and counts its chart's data updates."""

    def __init__(self, workload: Workload, steps: int) -> None:
        self.workload = workload
        self.steps = steps
        self.updates: dict[str, int] = {}
        self.views: dict[str, Any] = {}
        self.port = free_port()
        routes = {f"{chart}-{version}": self._factory(chart, version) for chart, version in VERSIONS}
        self.server = pn.serve(routes, port=self.port, threaded=True, show=False, start=True)

    def _factory(self, chart: str, version: str) -> Callable[[], Any]:
        name = f"{chart}-{version}"

        def make() -> Any:
            store = RunStore()
            store.run = {"runId": "synthetic-wide", "status": "running"}
            view = VERSIONS[(chart, version)](store=store)
            self.views[name] = view
            self.updates[name] = 0
            step = [1]
            self.workload.apply(store, chart, 1, self.steps)

            def feed() -> None:
                if step[0] < self.steps:
                    step[0] += 1
                    self.workload.apply(store, chart, step[0], self.steps)

            def counted(*_: Any, **__: Any) -> None:
                self.updates[name] += 1

            if version == "holoviews":  # a send the session carries out (SessionPipe collapses bursts)
                view._pipe.pipe.add_subscriber(counted)
            else:  # a change InPlaceChart carries out
                draw = view._draw
                view._draw = lambda *a: (counted(), draw(*a))

            def start() -> None:
                pn.state.add_periodic_callback(feed, period=500)
            pn.state.onload(start)
            return pn.Column(view, sizing_mode="stretch_width")
        return make

    def stop(self) -> None:
        self.server.stop()


def browse(served: Served, browser: Any, name: str, seconds: float) -> dict[str, float]:
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.add_init_script(LONGTASKS)
    received = [0]
    lock = threading.Lock()

    def on_socket(ws: Any) -> None:
        def count(payload: Any) -> None:
            with lock:
                received[0] += len(payload)
        ws.on("framereceived", count)
    page.on("websocket", on_socket)
    try:
        page.goto(f"http://127.0.0.1:{served.port}/{name}", wait_until="load", timeout=120_000)
        wait_until(lambda: page.locator(".bk-Figure, .bk-Plot").count() > 0, 120, f"{name}'s plot")
        wait_until(lambda: served.updates.get(name, 0) > 0, 60, f"{name}'s first streamed update")
        since = float(page.evaluate("performance.now()"))
        with lock:
            received[0] = 0
        first = served.updates[name]
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            page.wait_for_timeout(250)  # the measurement window: the run streams meanwhile
        tasks = long_tasks(page, since)
        updates = served.updates[name] - first
        with lock:
            got = received[0]
        return {"longest_task_ms": max(tasks or [0.0]), "long_tasks": len(tasks), "updates": updates,
                "ws_bytes_per_update": got / updates if updates else float("nan")}
    finally:
        page.close()


def table(rows: list[dict[str, Any]]) -> str:
    head = ("| chart | version | server ms / update (median, max) | PATCH-DOC bytes / update (median, max) "
            "| browser longest task ms | long tasks | ws bytes / update (served) |")
    lines = [head, "|" + "---|" * 7]
    for r in rows:
        lines.append(
            f"| {r['chart']} | {r['version']} | {r['server_ms_median']:.1f}, {r['server_ms_max']:.1f} "
            f"| {r['bytes_median']:,.0f}, {r['bytes_max']:,.0f} | {r.get('longest_task_ms', float('nan')):.0f} "
            f"| {r.get('long_tasks', '–')} | {r.get('ws_bytes_per_update', float('nan')):,.0f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--wide", type=int, default=2000, help="sequences of the synthetic run")
    parser.add_argument("--updates", type=int, default=40, help="in-process updates through the run")
    parser.add_argument("--seconds", type=float, default=20.0, help="browser measurement window per view")
    parser.add_argument("--no-browser", action="store_true")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON too")
    args = parser.parse_args(argv)
    workload = Workload(args.wide)
    load_before = load_average()
    rows: list[dict[str, Any]] = []
    for chart, version in VERSIONS:
        serve_in_process(workload, chart, version, 3)  # warm imports and HoloViews' option trees
        rows.append({"chart": chart, "version": version,
                     **serve_in_process(workload, chart, version, args.updates)})
    if not args.no_browser:
        # Over the window, the whole run streams: ``seconds`` x 2 session callbacks.
        served = Served(workload, steps=int(args.seconds * 2))
        try:
            with chromium() as browser:
                for row in rows:
                    row.update(browse(served, browser, f"{row['chart']}-{row['version']}", args.seconds))
        finally:
            served.stop()
    print(f"synthetic wide run: {args.wide} sequences, {len(workload.events)} node events, "
          f"{len(workload.scores)} scores; load average {load_before} -> {load_average()}")
    print(table(rows))
    if args.json:
        print(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

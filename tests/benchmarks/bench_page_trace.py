#!/usr/bin/env python3
"""What the full page's long tasks are made of, while a run streams: a Chromium trace, sorted.

A :class:`~inspector.replay.ReplayGateway` replays the synthetic ``wide`` run
(``synthetic_wide.py``: ``--wide`` sequences, ``--concurrency`` tasks in flight, ``--rate``
task-state changes a second); ``smithers-dashboard serve`` serves the full page
(``/apps?runId=RUN``, Timeline tab open); one Chromium page watches it for ``--seconds`` under a
trace (``trace_tasks.CATEGORIES``). Printed: the page's ``longtask`` entries after the tree's
first reset, and the traced tasks over 50 ms after it, by kind (``trace_tasks.kind``: the chart's
repaint, a model change that made BokehJS lay out the page, GC, tree.js, ...).

    .venv/bin/python tests/benchmarks/bench_page_trace.py [--concurrency 2 --rate 1]   # tasks start one by one
    .venv/bin/python tests/benchmarks/bench_page_trace.py --concurrency 100 --rate 20  # a burst: 100 in flight
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent.parent))

from tests.benchmarks.harness import (  # noqa: E402
    LONGTASKS,
    PanelServer,
    chromium,
    load_average,
    long_tasks,
    tree_stats,
    wait_until,
)
from tests.benchmarks.synthetic_wide import wide_run  # noqa: E402
from tests.benchmarks.trace_tasks import CATEGORIES, kinds, long_task_report  # noqa: E402
from tests.replay_thread import ReplayThread  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--wide", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--rate", type=float, default=1.0)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--trace", type=Path, help="keep the trace here")
    args = parser.parse_args(argv)
    result: dict[str, object] = {"wide": args.wide, "concurrency": args.concurrency, "rate": args.rate,
                                 "load_before": load_average()}
    replay = ReplayThread([wide_run(args.wide, rate=args.rate, concurrency=args.concurrency)], speed=1.0, loop=False)
    try:
        run_id = wait_until(lambda: replay.call(replay.gateway.run_ids), 10, "the replay run")[0]
        with tempfile.TemporaryDirectory(prefix="bench-trace-") as tmp, \
                PanelServer(replay.gateway.url, None, log=Path(tmp) / "panel.log") as panel, chromium() as browser:
            trace = args.trace or Path(tmp) / "trace.json"
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.add_init_script(LONGTASKS)
            page.goto(panel.url, wait_until="networkidle")  # warm the server process
            # Started before the run's page loads: V8's sampler, started on a page that has
            # compiled Bokeh, stops that page's main thread for seconds.
            browser.start_tracing(page=page, categories=CATEGORIES)
            page.goto(f"{panel.url}?runId={run_id}", wait_until="load", timeout=120_000)
            wait_until(lambda: (tree_stats(page) or {}).get("rows", 0) > 1, 120, "the tree's first reset")
            page.wait_for_load_state("networkidle", timeout=120_000)
            since_ms = float(page.evaluate("performance.mark('bench-window').startTime"))
            page.wait_for_timeout(args.seconds * 1000)  # the measurement window (the run streams meanwhile)
            observed = long_tasks(page, since_ms)
            trace.write_bytes(browser.stop_tracing())
            window = long_task_report(trace, f":{panel.port}/", top=10_000, after_mark="bench-window")
    finally:
        replay.stop()
    result.update({
        "load_after": load_average(),
        "longtasks": len(observed), "longest_task_ms": max(observed or [0.0]),
        "by_kind": kinds(window),
    })
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

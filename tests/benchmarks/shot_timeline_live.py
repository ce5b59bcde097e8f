#!/usr/bin/env python3
"""Screenshot of the full run page, Timeline tab open, WHILE a big synthetic run streams.

The synthetic ``wide`` run (``synthetic_wide.py``) replayed by ``ReplayGateway`` at ``--rate``
task-state changes per second; the dashboard serves the full page; after ``--after`` seconds of
streaming (polled on the page's own clock) it writes the whole page and the timeline chart
alone, and prints what the page's one plot view shows (rows, bars, height) and the longest
main-thread task so far. For looking at the chart under load: bars, axis, row labels.

    .venv/bin/python tests/benchmarks/shot_timeline_live.py --out /tmp/shots [--wide 2000 --rate 80 --after 25]
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
from tests.benchmarks.harness import LONGTASKS, PanelServer, chromium, long_tasks, tree_stats, wait_until  # noqa: E402

#: The page's Gantt plot view(s), found through Bokeh's view index.
GANTT = """() => {
  const views = [...Bokeh.index.query((v) => v.model != null && v.model.type === "Figure" && v.model.y_range.type === "FactorRange")];
  return views.map((v) => ({id: v.model.id, rows: v.model.y_range.factors.length, height: v.model.height,
                            bars: v.model.renderers[0].data_source.data.row.length}));
}"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--wide", type=int, default=2000)
    parser.add_argument("--rate", type=float, default=80.0)
    parser.add_argument("--after", type=float, default=25.0, help="seconds of streaming before the screenshot")
    args = parser.parse_args(argv)
    from tests.benchmarks.synthetic_wide import wide_run

    args.out.mkdir(parents=True, exist_ok=True)
    replay = ReplayThread([wide_run(args.wide, rate=args.rate)], speed=1.0, loop=False)
    replay.call(replay.gateway.pause)
    out: dict[str, Any] = {}
    try:
        run_id = wait_until(lambda: replay.call(lambda: replay.gateway.run_ids()), 10, "the replay run")[0]
        with tempfile.TemporaryDirectory(prefix="shot-") as tmp, \
                PanelServer(replay.gateway.url, None, log=Path(tmp) / "panel.log") as panel, chromium() as browser:
            page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
            page.add_init_script(LONGTASKS)
            page.goto(f"{panel.url}?runId={run_id}", wait_until="commit", timeout=120_000)
            wait_until(lambda: (tree_stats(page) or {}).get("rows", 0) > 1, 120, "the first tree reset")
            start_ms = float(page.evaluate("performance.now()"))
            replay.call(replay.gateway.resume)
            started = time.monotonic()
            while time.monotonic() - started < args.after:
                page.wait_for_timeout(250)  # keep the page's event loop running while the run streams
            wait_until(lambda: page.evaluate(GANTT), 30, "the Gantt plot view")
            page.wait_for_timeout(300)  # let the last update paint (a wait, not a sync: it is a picture)
            out["gantt"] = page.evaluate(GANTT)
            out["note"] = page.get_by_text("attempts on").first.inner_text()
            out["longest_task_ms"] = max(long_tasks(page, start_ms) or [0.0])
            page.screenshot(path=str(args.out / "full-live.png"), full_page=True)
            chart = page.locator(".bk-Figure").first
            chart.screenshot(path=str(args.out / "timeline-live.png"))
            out["seconds_streamed"] = time.monotonic() - started
    finally:
        replay.stop()
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

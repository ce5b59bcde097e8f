#!/usr/bin/env python3
"""A run page's first view on its own: what the page costs when it has the machine to itself.

``bench_vs_monitor.py`` measures the first view beside the Monitor's page, the Gateway's engine
and the run, all on the same cores; this takes the page alone. A replay gateway plays a
synthetic ``wide`` run (``--wide`` sequences, looping) into one dashboard server; a first page
follows the run (so the process holds its tree, as for any page after the first), then
``--loads`` pages of ``?runId=`` each open in a fresh browser context (nothing cached), and
for each the benchmark prints what follows. With ``--first-page`` the gateway plays one run per
load and each page opens a run the process does not follow yet: the first page of a process
on a run, which waits for the hub's subscription.

- **first view**: navigation start to the first task row with a state in the tree (the same
  hook as ``bench_vs_monitor.py``), and the page's ``load`` event;
- **chart**: when the Timeline's plot was first seen drawn (a canvas in the page);
- the page's **long tasks** (``longtask`` entries, >= 50 ms) up to ``--settle`` seconds after
  the chart showed: those before the first view (loading and building the page) and after it;
- the tree's **resets** by then: how many times the page drew every row (1 is the least: the
  first rows; a second is a full redraw in the page's first seconds).

    .venv/bin/python tests/benchmarks/run_page_alone.py [--wide 300] [--loads 8] [--first-page] [--json F]

Before/after: run it from a ``git worktree`` of the older commit with this venv's Python.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(ROOT))

from tests.benchmarks.bench_vs_monitor import OURS_RECORDER, PAGE_MARKS  # noqa: E402
from tests.benchmarks.harness import LONGTASKS, PanelServer, chromium, load_average, wait_until  # noqa: E402
from tests.benchmarks.synthetic_wide import wide_run  # noqa: E402
from tests.replay_thread import ReplayThread  # noqa: E402

#: Whether the page holds a drawn canvas (the Timeline's plot), through shadow roots.
CHART_DRAWN = """(() => { const find = (root) => { for (const el of root.querySelectorAll('*')) {
  if (el.tagName === 'CANVAS' && el.width > 0) return true; if (el.shadowRoot && find(el.shadowRoot)) return true }
  return false }; return find(document) })()"""

#: The tree's client counters (``tree_data.js``), found as ``OURS_RECORDER`` finds it.
TREE_STATS = """(() => { const find = (root) => { for (const el of root.querySelectorAll('*')) {
  if (el.__smithersTree) return el.__smithersTree
  if (el.shadowRoot) { const hit = find(el.shadowRoot); if (hit) return hit } } return null }
  const d = find(document); return d ? {resets: d.stats.resets, patches: d.stats.patches} : null })()"""


def one_load(browser: Any, url: str, settle: float) -> dict[str, Any]:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    try:
        page = context.new_page()
        page.add_init_script(LONGTASKS + OURS_RECORDER)
        page.goto(url, wait_until="load")
        wait_until(lambda: page.evaluate("window.__first") is not None, 30, "the tree's first task row")
        wait_until(lambda: page.evaluate(CHART_DRAWN), 30, "the Timeline's plot", interval=0.005)
        chart = page.evaluate("performance.now()")
        page.wait_for_timeout(settle * 1000)  # long tasks after the chart showed: a window, not a sync
        marks = page.evaluate(PAGE_MARKS)
        stats = page.evaluate(TREE_STATS) or {}
        first = marks["first"] - marks["origin"]
        tasks = [(round(t["start"]), round(t["ms"])) for t in page.evaluate("window.__longtasks")]
        return {"first_view_ms": round(first), "load_ms": round(marks["load_end"]), "chart_ms": round(chart),
                "tree_resets": stats.get("resets"),
                "long_tasks_before_first_view": [t for t in tasks if t[0] < first],
                "long_tasks_after_first_view": [t for t in tasks if t[0] >= first]}
    finally:
        context.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--wide", type=int, default=300)
    parser.add_argument("--loads", type=int, default=8)
    parser.add_argument("--settle", type=float, default=3.0, help="seconds of long tasks kept after the chart showed")
    parser.add_argument("--first-page", action="store_true", help="each load opens a run the process does not follow yet")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    runs = [f"alone-{i}" for i in range(args.loads)] if args.first_page else []
    replay = ReplayThread([wide_run(args.wide, rate=4.0, concurrency=16, run_id=run_id) for run_id in ["alone", *runs]],
                          speed=1.0, loop=True)
    loads: list[dict[str, Any]] = []
    try:
        with PanelServer(replay.gateway.url) as panel, chromium() as browser:
            url = f"{panel.url}?runId=alone"
            follower = browser.new_page()
            follower.add_init_script(OURS_RECORDER)
            follower.goto(url)
            wait_until(lambda: follower.evaluate("window.__first") is not None, 30, "the following page's rows")
            print(f"load average {load_average()}")
            for i in range(args.loads):
                loads.append(one_load(browser, f"{panel.url}?runId={runs[i]}" if runs else url, args.settle))
                print(json.dumps(loads[-1]))
    finally:
        replay.stop()
    firsts = [load["first_view_ms"] for load in loads]
    charts = [load["chart_ms"] for load in loads]
    after = [max((ms for _, ms in load["long_tasks_after_first_view"]), default=0) for load in loads]
    print(f"\n{len(loads)} loads, load average {load_average()}")
    print(f"first view: {min(firsts)}-{max(firsts)} ms, median {statistics.median(firsts):.0f} ms")
    print(f"chart drawn: {min(charts)}-{max(charts)} ms, median {statistics.median(charts):.0f} ms")
    print(f"longest task after the first view: {min(after)}-{max(after)} ms")
    resets = [load["tree_resets"] for load in loads]
    print(f"tree resets (full draws) per load: {min(resets)}-{max(resets)}")
    if args.json:
        args.json.write_text(json.dumps({"wide": args.wide, "first_page": args.first_page, "loads": loads}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

#!/usr/bin/env python3
"""How often the run page's Timeline plot is laid out again while a real run streams, and why.

BokehJS measures a plot's axes before each repaint; when one changed size (a wider task label,
a second date line under the time axis, axes that lost their bounds) it lays the whole plot out
again (``compute_layout``): on a full page beside a streaming tree those were the longest
main-thread tasks (docs/performance.md, section 3, issue 14, round 6). This opens a run page on
the CLI gateway's ``wide`` run (bench_vs_monitor.py's workflow, a real Gateway), hooks the
plot's view in Chromium and prints, for the whole run, each layout (its cost and which axis
changed size, ``w``/``h`` old -> new px) and the repaints' cost.

    .venv/bin/python tests/benchmarks/chart_layouts.py [--wide 300] [--json F]

Before/after: run it from a ``git worktree`` of the older commit with this venv's Python.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent.parent))

from tests.benchmarks.bench_vs_monitor import CliGateway  # noqa: E402
from tests.benchmarks.harness import PanelServer, chromium, gateway_install, percentile, wait_until  # noqa: E402

#: Wraps the Timeline plot view's layout check: every repaint's check (ms), and for each layout
#: its cost and the axes whose size changed (BokehJS's own test, read before it runs).
HOOK = """() => {
  if (!window.Bokeh || !Bokeh.index) return false;
  if (!window.Bokeh || !Bokeh.index) return false;
  const view = Bokeh.index.query_one((v) => v.model != null && v.model.type === "Figure");
  if (view == null) return false;
  if (window.__layouts !== undefined) return true;
  window.__layouts = [];
  window.__checks = [];
  const check = view._invalidate_layout_if_needed.bind(view);
  view._invalidate_layout_if_needed = () => {
    const why = [];
    if (view._needs_layout) why.push("requested");
    for (const panel of view.model.side_panels) {
      const v = view.renderer_views.get(panel);
      if (v == null || v.layout == null) continue;
      const {width, height} = v.layout._content_size();
      const box = v.layout.bbox;
      if (v.layout.panel.is_horizontal ? box.height !== height : box.width !== width) {
        why.push(v.layout.panel.is_horizontal ? `${panel.type} h ${box.height}->${height}` : `${panel.type} w ${box.width}->${width}`);
      }
    }
    const t0 = performance.now();
    const out = check();
    const ms = performance.now() - t0;
    window.__checks.push(ms);
    if (why.length) window.__layouts.push({at_ms: Math.round(t0), ms: Math.round(ms * 10) / 10, why: why.join(", ")});
    return out;
  };
  return true;
}"""

TERMINAL = ("finished", "failed", "cancelled")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--wide", type=int, default=300, help="sequences of the wide workflow")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="chart-layouts-") as tmp:
        gateway = CliGateway(gateway_install(), args.wide, 1.0, Path(tmp) / "cli-gateway.log")
        try:
            with PanelServer(gateway.url, None, log=Path(tmp) / "panel.log") as panel, chromium() as browser:
                page = browser.new_page(viewport={"width": 1600, "height": 1000})
                run_id = gateway.rpc("launchRun", {"workflow": "wide", "input": {}})["runId"]
                page.goto(f"{panel.url}?runId={run_id}", wait_until="commit", timeout=120_000)
                wait_until(lambda: page.evaluate(HOOK), 120, "the Timeline's plot view")
                wait_until(lambda: gateway.rpc("getRun", {"runId": run_id}).get("status") in TERMINAL, 900,
                           "the run's end", interval=1)
                page.locator('.sd-pill[data-run-status="finished"]').wait_for(timeout=60_000)
                page.wait_for_timeout(3000)  # not synchronisation: the run's last redraw is in the figures
                layouts: list[dict[str, Any]] = page.evaluate("window.__layouts")
                checks: list[float] = page.evaluate("window.__checks")
        finally:
            gateway.stop()
    result = {"layouts": len(layouts), "layout_ms_total": round(sum(layout["ms"] for layout in layouts), 1),
              "layout_ms_max": max((layout["ms"] for layout in layouts), default=0.0),
              "repaints": len(checks), "repaint_check_ms_p50": round(percentile(checks, 0.5), 1),
              "repaint_check_ms_max": round(max(checks, default=0.0), 1), "each": layouts}
    print(json.dumps(result, indent=1))
    print(f"\n{result['layouts']} layouts of the Timeline plot ({result['layout_ms_total']} ms in all, longest "
          f"{result['layout_ms_max']} ms) over {result['repaints']} repaints while the run streamed")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

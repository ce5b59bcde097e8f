#!/usr/bin/env python3
"""Screenshots of the timeline and scores charts (docs/screenshots/timeline.png, scores.png).

A store filled with a small live run (tasks that finished, one that failed and retried, some
still running, a loop's iterations) and scores from two scorers, served by ``pn.serve`` and
photographed in Chromium, each chart alone.

    .venv/bin/python tests/benchmarks/shot_charts.py [--out docs/screenshots]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent.parent))

import panel as pn  # noqa: E402

from dashboard.store import EventRecord, RunStore  # noqa: E402
from dashboard.views import ScoresView, Timeline  # noqa: E402
from tests.benchmarks.harness import chromium, wait_until  # noqa: E402
from tests.gateway.server import free_port  # noqa: E402


def sample_store() -> RunStore:
    now = time.time()
    t0 = now - 95
    events: list[EventRecord] = []

    def run(node: str, start: float, end: float | None, outcome: str = "node.finished", **kw: Any) -> None:
        events.append(EventRecord(t0 + start, "node.started", node_id=node, **kw))
        if end is not None:
            events.append(EventRecord(t0 + end, outcome, node_id=node, **kw))

    run("fetch-sources", 0, 6)
    run("parse", 6, 14)
    for i, (a, b) in enumerate([(14, 31), (14, 40), (15, 27), (15, 52)]):
        run(f"summarise-{i}", a, b)
    run("classify", 16, 22, "node.failed")
    events.append(EventRecord(t0 + 23, "node.retrying", node_id="classify", attempt=2))
    run("classify", 24, 38, attempt=2)
    for it in range(3):
        run("refine", 52 + it * 12, 63 + it * 12 if it < 2 else None, iteration=it)
    run("review", 60, None)
    run("index-embeddings", 41, 58)
    store = RunStore()
    store.run = {"runId": "demo", "status": "running"}
    store.events = tuple(sorted(events, key=lambda e: e.time))
    scores = []
    for node, it, (a, b) in [("summarise-0", 0, (0.82, 0.74)), ("summarise-1", 0, (0.61, 0.9)),
                             ("summarise-2", 0, (0.93, 0.88)), ("summarise-3", 0, (0.47, 0.66)),
                             ("refine", 0, (0.55, 0.6)), ("refine", 1, (0.72, 0.79)), ("classify", 0, (0.98, 0.7))]:
        scores += [{"nodeId": node, "iteration": it, "scorerName": "relevance", "score": a, "reason": "ok"},
                   {"nodeId": node, "iteration": it, "scorerName": "faithfulness", "score": b, "reason": "ok"}]
    store.scores = scores
    return store


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=Path("docs/screenshots"))
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    views: dict[str, Any] = {}

    def make(kind: str) -> Any:
        def page() -> Any:
            store = sample_store()
            views[kind] = Timeline(store=store) if kind == "timeline" else ScoresView(store=store)
            return pn.Column(views[kind], sizing_mode="stretch_width")
        return page

    port = free_port()
    server = pn.serve({"timeline": make("timeline"), "scores": make("scores")}, port=port, threaded=True,
                      show=False, start=True)
    try:
        with chromium() as browser:
            for kind in ("timeline", "scores"):
                page = browser.new_page(viewport={"width": 1100, "height": 900})
                page.goto(f"http://127.0.0.1:{port}/{kind}", wait_until="load", timeout=60_000)
                wait_until(lambda p=page: p.locator(".bk-Figure").count() > 0, 60, f"the {kind} figure")
                page.wait_for_timeout(800)  # let the canvas paint (a picture, not a sync)
                target = page.locator(".bk-Figure").first if kind == "timeline" else page.locator(".bk-panel-models-layout-Column").first
                (target if target.count() else page).screenshot(path=str(args.out / f"{kind}.png"))
                page.close()
    finally:
        server.stop()
    print(f"wrote {args.out / 'timeline.png'} and {args.out / 'scores.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

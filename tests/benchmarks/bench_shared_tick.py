#!/usr/bin/env python3
"""Server work per Gateway delta with N wall sessions on one run, in one process, no sockets.

A work counter rather than a latency: the machine this runs on is shared, so wall-clock lags
swing several-fold with other people's load, while the CPU time this process spends per delta
(``time.process_time``) and the number of per-run computations (``patch_for`` calls, header and
event-list renders) move little. What it drives is the real served path minus Bokeh's
websocket: a :class:`~dashboard.hub.GatewayHub` fed by a scripted subscription (the synthetic
``wide`` run's snapshot and deltas, plus its ``node.started`` / ``node.finished`` run events),
N :class:`~dashboard.app.Dashboard` s in ``view="monitor"``, each rendered into its own Bokeh
``Document`` (so every pane, the tree component and the event list have models to update),
deltas released at ``--rate`` per second of the loop's clock.

    .venv/bin/python tests/benchmarks/bench_shared_tick.py [--sessions 1 10 40 100] [--seconds 10] \
        [--workload wide|heavy] [--profile PATH]

Printed per N: CPU ms per delta (whole process: hub, stores, views, Panel/Bokeh model updates),
per delta per session, the ``patch_for`` calls per store tick, and header / event-list renders.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent.parent))

from bokeh.document import Document  # noqa: E402

import dashboard.treerows as treerows  # noqa: E402
import dashboard.views.events as events_view  # noqa: E402
import dashboard.views.header as header_view  # noqa: E402
from dashboard.app import Dashboard  # noqa: E402
from dashboard.config import load_config  # noqa: E402
from inspector.protocol import EventFrame  # noqa: E402

try:
    from inspector.items import RunEvent
except ImportError:  # before the sans-I/O split (for before/after figures)
    from inspector.stream import RunEvent  # type: ignore[no-redef,attr-defined]
from tests.benchmarks.harness import load_average, rss_mb  # noqa: E402
from tests.benchmarks.synthetic_wide import heavy_run, wide_run  # noqa: E402
from tests.test_hub import FakeFeeds, FakeRpc, make_hub, online  # noqa: E402

try:
    import dashboard.shared as shared_module
except ImportError:  # the code before per-run sharing (for the before/after figures)
    shared_module = None  # type: ignore[assignment]


class Counter:
    """Wraps a module-level function and counts its calls."""

    def __init__(self, module: Any, name: str) -> None:
        self.module, self.name = module, name
        self.original = getattr(module, name)
        self.calls = 0

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            return original(*args, **kwargs)

        original = self.original
        self.raw = inspect.getattr_static(module, name)
        setattr(module, name, staticmethod(counted) if isinstance(self.raw, staticmethod) else counted)

    def restore(self) -> None:
        setattr(self.module, self.name, self.raw)


async def measure(n: int, args: argparse.Namespace) -> dict[str, Any]:
    recording = heavy_run() if args.workload == "heavy" else wide_run(args.wide, rate=args.rate)
    run_id = recording.run_id
    feeds = FakeFeeds()
    rpc = FakeRpc({"getRun": {"runId": run_id, "workflowName": "wide", "status": "running",
                              "startedAtMs": int(time.time() * 1000)}, "listScores": []})
    hub = make_hub(feeds, rpc)
    config = load_config({})
    apps = []
    rss0 = rss_mb(os.getpid())
    for _ in range(n):
        app = Dashboard(run_id=run_id, view="monitor", hub=hub, config=config)
        if args.batch is not None:
            app.store.batch_interval = args.batch
        app.__panel__().get_root(Document())
        apps.append(app)
    loop = asyncio.get_running_loop()
    deadline = time.monotonic() + 30
    while run_id not in feeds.queues:
        assert time.monotonic() < deadline, "no subscription"
        await asyncio.sleep(0.01)  # poll interval
    feeds.push(run_id, online(), recording.devtools[0].event)
    await asyncio.sleep(0.5)  # the snapshot's ticks and resets: outside the measured window
    rss1 = rss_mb(os.getpid())
    # Where the work is done: patch_for is called by the feeds or, shared, by dashboard.shared;
    # the wall's event list is rendered by _render or, shared, by its _html.
    counters = [Counter(treerows, "patch_for"), Counter(header_view, "header_html"),
                Counter(events_view.RecentEvents, "_html" if hasattr(events_view.RecentEvents, "_html") else "_render")]
    if shared_module is not None:
        counters.append(Counter(shared_module, "patch_for"))
    ticks = 0

    def tick(_event: Any) -> None:
        nonlocal ticks
        ticks += 1

    watchers = [app.store.param.watch(tick, "tree_version") for app in apps]
    # Interleave deltas and run events in recorded order, released on the loop's clock.
    steps: list[tuple[float, Any]] = [(d.t_ms, d.event) for d in recording.devtools[1:]]
    steps += [(e.t_ms, RunEvent(EventFrame(e.event, e.payload))) for e in recording.run_events[1:]]
    steps.sort(key=lambda s: s[0])
    window = args.seconds * 1000
    steps = [s for s in steps if s[0] <= window]
    deltas = sum(1 for _, item in steps if isinstance(item, dict))
    profile = None
    if args.profile is not None:
        import cProfile

        profile = cProfile.Profile()
        profile.enable()
    cpu0, t0 = time.process_time(), loop.time()
    for at_ms, item in steps:
        wait = t0 + at_ms / 1000 - loop.time()
        if wait > 0:
            await asyncio.sleep(wait)  # the recording's pace
        feeds.push(run_id, item)
    await asyncio.sleep(0.3)  # the last batch's flush
    cpu1, t1 = time.process_time(), loop.time()
    if profile is not None:
        profile.disable()
        profile.dump_stats(f"{args.profile}.{n}")
    for c in counters:
        c.restore()
    out = {
        "sessions": n, "deltas": deltas, "wall_s": round(t1 - t0, 2), "cpu_s": round(cpu1 - cpu0, 2),
        "cpu_ms_per_delta": round((cpu1 - cpu0) * 1000 / deltas, 2),
        "cpu_ms_per_delta_per_session": round((cpu1 - cpu0) * 1000 / deltas / max(1, n), 3),
        "store_ticks": ticks, "patch_for_calls": counters[0].calls + (counters[3].calls if len(counters) > 3 else 0), "header_renders": counters[1].calls,
        "event_list_renders": counters[2].calls,
        "rss_per_session_mb": round((rss1 - rss0) / max(1, n), 2), "load": load_average(),
    }
    shared_view = getattr(hub, "shared_view", None)
    stats = shared_view(run_id).stats if callable(shared_view) else None
    out["max_stretch"] = round(getattr(stats, "max_stretch", 1.0), 2)
    for app, watcher in zip(apps, watchers, strict=True):
        app.store.param.unwatch(watcher)
        app.close()
    await hub.aclose()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--sessions", type=int, nargs="+", default=[1, 10, 40, 100])
    parser.add_argument("--seconds", type=float, default=10, help="recorded seconds of the run to play")
    parser.add_argument("--wide", type=int, default=2000)
    parser.add_argument("--rate", type=float, default=40)
    parser.add_argument("--workload", choices=["wide", "heavy"], default="wide",
                        help="heavy: issue 14's 7,498-node run, ~8 frames/s, ~90 task changes/s, ~390 run events/s")
    parser.add_argument("--profile", type=Path, help="cProfile the measured window into PATH.N (N sessions)")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--batch", type=float, default=None, help="store batch interval (s); default the store's")
    args = parser.parse_args(argv)
    results = []
    for n in args.sessions:
        row = asyncio.run(measure(n, args))
        print(row, file=sys.stderr, flush=True)
        results.append(row)
    print("| sessions | deltas | wall s | CPU ms / delta | per session | store ticks | patch_for calls "
          "| header renders | event-list renders | RSS / session (MB) | load |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for r in results:
        print(f"| {r['sessions']} | {r['deltas']} | {r['wall_s']} | {r['cpu_ms_per_delta']} "
              f"| {r['cpu_ms_per_delta_per_session']} | {r['store_ticks']} | {r['patch_for_calls']} "
              f"| {r['header_renders']} | {r['event_list_renders']} | {r['rss_per_session_mb']} | {r['load']} |")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""``smithers-dashboard serve --num-procs N``: N processes, one upstream subscription per run each.

A :class:`~inspector.replay.ReplayGateway` loops the synthetic ``wide`` run; the dashboard is served
with ``--num-procs``; ``--sessions`` Bokeh client sessions (``bokeh.client.pull_session``) open the
run's wall view. Printed: the serving processes, how many DevTools streams the Gateway opened for
the run (at most one per process), and each process's CPU seconds over ``--seconds``.
Sessions per process before the per-delta latency doubles: ``bench_knee.py`` (docs/performance.md, section 5).

    .venv/bin/python tests/benchmarks/bench_numprocs.py [--num-procs 2] [--sessions 8]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent.parent))

from tests.benchmarks.bench_browser_wide import ReplayThread  # noqa: E402
from tests.benchmarks.bench_fanout import Sessions  # noqa: E402
from tests.benchmarks.harness import PanelServer, cpu_seconds, load_average, wait_until  # noqa: E402
from tests.benchmarks.synthetic_wide import wide_run  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--num-procs", type=int, default=2)
    parser.add_argument("--sessions", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10)
    args = parser.parse_args(argv)
    replay = ReplayThread([wide_run(500, rate=40)], speed=1.0, loop=True)
    try:
        run_id = wait_until(lambda: replay.call(replay.gateway.run_ids), 10, "the replay run")[0]
        with PanelServer(replay.gateway.url, None, num_procs=args.num_procs) as panel:
            pids = panel.server_pids()
            streams0 = replay.gateway.streams_total
            cpu0 = {pid: cpu_seconds(pid) for pid in pids}
            sessions = Sessions(f"http://127.0.0.1:{panel.port}/apps", {"runId": run_id, "view": "monitor"}, args.sessions)
            deadline = time.time() + args.seconds
            while time.time() < deadline:
                time.sleep(0.5)  # measurement window, polled
            streams = replay.gateway.streams_total - streams0
            cpu = {pid: round(cpu_seconds(pid) - cpu0[pid], 2) for pid in pids}
            sessions.close()
    finally:
        replay.stop()
    print(f"load {load_average()}; {len(pids)} serving processes {pids}; {len(sessions.sessions)} sessions opened "
          f"({len(sessions.errors)} errors); Gateway DevTools streams for the run: {streams} "
          f"(at most one per process); CPU s per process over {args.seconds:g} s: {cpu}")
    return 0 if streams <= len(pids) else 1


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Fan-out: N browser sessions on one run cost one upstream subscription; server CPU per delta.

A :class:`~inspector.replay.ReplayGateway` plays the synthetic ``wide`` run (``synthetic_wide.py``,
``--rate`` task-state changes per second, looped); ``smithers-dashboard serve`` serves the
dashboard; N sessions are opened on ``/apps?runId=RUN&view=monitor`` with
``bokeh.client.pull_session`` (a real Bokeh server session each, with the whole app and its
websocket; lighter than N Chromium pages, which this 2-core machine cannot hold at N=50).
Measured per N: the Gateway's DevTools streams and connections opened for the run (must stay 1),
and the panel server process's CPU seconds (``/proc/PID/stat``) per 1,000 Gateway deltas over a
``--seconds`` window.

    .venv/bin/python tests/benchmarks/bench_fanout.py [--sessions 1 10 50] [--seconds 30]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent.parent))

from tests.benchmarks.harness import PanelServer, cpu_seconds, load_average, rss_mb, wait_until  # noqa: E402
from tests.benchmarks.synthetic_wide import wide_run  # noqa: E402
from tests.replay_thread import ReplayThread  # noqa: E402


class Sessions:
    """N bokeh client sessions, each with its own connection, on one thread each."""

    def __init__(self, url: str, args: dict[str, str], n: int) -> None:
        import panel.models  # noqa: F401
        import panel.models.tabulator  # noqa: F401
        from bokeh.client import pull_session

        # The client deserialises the server's document: it needs the model classes (Panel's,
        # and the data models Panel makes for the dashboard's own components).
        import dashboard.app  # noqa: F401

        self.sessions: list[Any] = []
        self.errors: list[str] = []
        lock = threading.Lock()

        def open_one() -> None:
            try:
                session = pull_session(url=url, arguments=args)
                with lock:
                    self.sessions.append(session)
            except Exception as exc:  # report, do not hide
                with lock:
                    self.errors.append(repr(exc))

        for _ in range(n):
            open_one()

    def close(self) -> None:
        for session in self.sessions:
            try:
                session.close()
            except Exception:
                pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--sessions", type=int, nargs="+", default=[1, 10, 50])
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--wide", type=int, default=2000)
    parser.add_argument("--rate", type=float, default=40)
    args = parser.parse_args(argv)
    run = wide_run(args.wide, rate=args.rate)
    replay = ReplayThread([run], speed=1.0, loop=True, loop_delay_s=0.5)
    results: list[dict[str, Any]] = []
    try:
        with tempfile.TemporaryDirectory(prefix="bench-fanout-") as tmp:
            for n in args.sessions:
                with PanelServer(replay.gateway.url, None, log=Path(tmp) / f"panel-{n}.log") as panel:
                    (pid,) = panel.server_pids()
                    # A run that has just started: it must outlast opening N sessions and the window.
                    def fresh() -> list[str]:
                        gw = replay.gateway
                        return [r for r in gw.run_ids() if not gw.run_done(r) and gw.run_seq(r) < 100]

                    run_id = wait_until(lambda: replay.call(fresh), 600, "a fresh run", interval=0.2)[0]
                    streams0 = replay.gateway.streams_total
                    conns0 = replay.gateway.connections_total
                    opened = time.time()
                    sessions = Sessions(f"http://127.0.0.1:{panel.port}/apps", {"runId": run_id, "view": "monitor"}, n)
                    open_s = time.time() - opened
                    wait_until(lambda s0=streams0: replay.gateway.streams_total > s0, 30, "the upstream stream")
                    seq0 = replay.call(lambda r=run_id: replay.gateway.run_seq(r))
                    cpu0, t0 = cpu_seconds(pid), time.time()
                    deadline = t0 + args.seconds
                    while time.time() < deadline and not replay.call(lambda r=run_id: replay.gateway.run_done(r)):
                        time.sleep(0.5)  # measurement window, polled
                    cpu1, t1 = cpu_seconds(pid), time.time()
                    seq1 = replay.call(lambda r=run_id: replay.gateway.run_seq(r))
                    deltas = max(1, seq1 - seq0)
                    row = {
                        "sessions": n, "opened": len(sessions.sessions), "errors": sessions.errors[:3],
                        "seconds_to_open": round(open_s, 1),
                        "upstream_streams": replay.gateway.streams_total - streams0,
                        "upstream_connections": replay.gateway.connections_total - conns0,
                        "deltas": deltas, "window_s": round(t1 - t0, 1),
                        "cpu_s": round(cpu1 - cpu0, 2),
                        "cpu_s_per_1000_deltas": round((cpu1 - cpu0) * 1000 / deltas, 2),
                        "cpu_share": round((cpu1 - cpu0) / (t1 - t0), 2),
                        "server_rss_mb": round(rss_mb(pid), 1),
                    }
                    print(row, file=sys.stderr, flush=True)
                    results.append(row)
                    sessions.close()
    finally:
        replay.stop()
    print(json.dumps({"load": load_average(), "results": results}, indent=1))
    base = results[0]["cpu_s_per_1000_deltas"] / max(1, results[0]["sessions"])
    for r in results:
        per_session = r["cpu_s_per_1000_deltas"] / r["sessions"]
        print(f"{r['sessions']:>3} sessions: {r['cpu_s_per_1000_deltas']:.2f} CPU s / 1000 deltas "
              f"({per_session:.3f} per session; x{per_session / base:.2f} of 1 session's), "
              f"{r['upstream_streams']} upstream stream(s), {r['upstream_connections']} connection(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""What the Agent tab sends per output update: bytes of an append vs a full resend.

Pure (no server, no browser): an agent prints ``--lines`` lines of ~``--width`` characters with
ANSI colour, in bursts of ``--burst`` lines (one store tick each); :class:`OutputFeed` turns each
tick into the message :class:`~dashboard.views.agent.AgentOutput` sends. Reported: bytes per
append (min / median / max), what resending the whole retained output each tick would have cost,
and the time to build the messages (taken on a shared machine: indicative only).

    .venv/bin/python tests/benchmarks/bench_agent_output.py [--lines 3000] [--burst 10] [--width 80]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from dashboard.views.agent import OutputFeed
from inspector.agents import RunAgents


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=3000)
    parser.add_argument("--burst", type=int, default=10)
    parser.add_argument("--width", type=int, default=80)
    args = parser.parse_args()
    agents = RunAgents("bench")
    agents.apply("node.pending", {"nodeId": "a", "iteration": 0})
    feed = OutputFeed()
    appends: list[int] = []
    full: list[int] = []
    building = 0.0
    for start in range(0, args.lines, args.burst):
        for i in range(start, min(args.lines, start + args.burst)):
            colour = 31 + i % 6
            text = f"\x1b[{colour}m{i:06}\x1b[0m " + "y" * (args.width - 8) + "\n"
            agents.apply("task.output", {"nodeId": "a", "output": text, "stream": "stderr" if i % 50 == 0 else "stdout"})
        attempt = agents.attempt("a")
        tick = time.perf_counter()
        message = feed.update(attempt)
        building += time.perf_counter() - tick
        if message is not None and message["type"] == "append":
            appends.append(feed.last_bytes)
            full.append(len(json.dumps(OutputFeed().reset(attempt), separators=(",", ":")).encode()))
    attempt = agents.attempt("a")
    assert attempt is not None
    print(f"{args.lines} lines in bursts of {args.burst}: {len(appends)} appends")
    print(f"append bytes: min {min(appends)}  median {statistics.median(appends):.0f}  max {max(appends)}")
    print(f"resending the retained output instead: median {statistics.median(full):.0f} bytes, max {max(full)}")
    print(f"retained {attempt.retained_bytes} of {attempt.total_bytes} bytes; {attempt.dropped_lines} earlier lines dropped")
    print(f"build time: {building * 1000 / max(1, len(appends)):.2f} ms per update (shared machine: indicative)")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""What one run costs the server's memory while a screen shows it, by the module that holds it.

A wall rotating through runs holds several at once (the run being played, the ones screens
have not left yet, those in the hub's grace): the soak's growth (``soak_monitor.py``) is the
high-water mark of that, so the bytes per run are what to shrink. This feeds one synthetic
``wide`` run (the soak's: ``--wide`` 500 sequences, 1,504 nodes, ``--rate`` 40) from a
:class:`~inspector.replay.ReplayGateway` on its own thread, over the real protocol, through a
:class:`~dashboard.hub.GatewayHub` into ``--stores`` :class:`~dashboard.store.RunStore` s, as a
served session's store is fed; once the run has ended and every store holds its final state,
``tracemalloc`` compares what is alive with what was before, and attributes each block to the
innermost frame of this project that allocated it (the replay gateway's own blocks apart).

    .venv/bin/python tests/benchmarks/run_footprint.py [--wide 500] [--stores 1] [--json F]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import sys
import time
import tracemalloc
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(ROOT))

from dashboard.hub import GatewayHub  # noqa: E402
from dashboard.store import RunStore  # noqa: E402
from tests.benchmarks.synthetic_wide import wide_run  # noqa: E402
from tests.replay_thread import ReplayThread  # noqa: E402

#: Blocks allocated through this package are the replay gateway's, not the dashboard's.
GATEWAY_SIDE = "inspector/replay/"
OURS = (str(ROOT / "dashboard"), str(ROOT / "inspector"))


def our_frames(trace: tracemalloc.StatisticDiff) -> list[str]:
    """``module.py:line`` of this project's frames that allocated the block, innermost first."""
    root = len(str(ROOT)) + 1
    return [f"{frame.filename[root:]}:{frame.lineno}" for frame in reversed(trace.traceback)
            if frame.filename.startswith(OURS)]  # the traceback lists the oldest call first


def holder(frames: list[str]) -> str:
    """The innermost of ``frames`` (``<other>``: none), or ``<replay gateway>`` for a block
    the gateway's thread allocated (through the tree and agents code it shares with us)."""
    if not frames:
        return "<other>"
    return "<replay gateway>" if any(f.startswith(GATEWAY_SIDE) for f in frames) else frames[0]


async def feed(url: str, run_id: str, stores: int, timeout: float) -> tuple[GatewayHub, list[RunStore]]:
    hub = GatewayHub.shared(url)
    fed = [RunStore(hub=hub, run_id=run_id) for _ in range(stores)]
    deadline = time.monotonic() + timeout
    while not all(s.settled for s in fed):
        if time.monotonic() > deadline:
            raise TimeoutError(f"the run did not end in every store within {timeout:.0f} s")
        await asyncio.sleep(0.2)  # a poll of the stores' state, not a stand-in for an event
    await asyncio.sleep(1.0)  # let the stores' last batches and reads land
    return hub, fed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--wide", type=int, default=500)
    parser.add_argument("--rate", type=float, default=40)
    parser.add_argument("--speed", type=float, default=20)
    parser.add_argument("--stores", type=int, default=1)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--depth", type=int, default=4, help="frames of a call chain to print")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    run = wide_run(args.wide, rate=args.rate, run_id="footprint")
    replay = ReplayThread([run], speed=args.speed)
    try:
        tracemalloc.start(25)
        gc.collect()
        before = tracemalloc.take_snapshot()
        hub, stores = asyncio.run(feed(replay.gateway.url, "footprint", args.stores, 120))
        gc.collect()
        after = tracemalloc.take_snapshot()
        tracemalloc.stop()
        nodes = len(stores[0].tree) if stores[0].tree is not None else 0
        events = len(stores[0].events)
    finally:
        replay.stop()
    diffs = after.compare_to(before, "traceback")
    by_holder: Counter[str] = Counter()
    by_module: Counter[str] = Counter()
    by_chain: Counter[tuple[str, ...]] = Counter()
    for diff in diffs:
        frames = our_frames(diff)
        where = holder(frames)
        by_holder[where] += diff.size_diff
        by_module[where.split(":")[0]] += diff.size_diff
        if where[0] != "<":
            by_chain[tuple(frames[:args.depth])] += diff.size_diff
    ours = sum(v for k, v in by_module.items() if k not in ("<replay gateway>", "<other>"))
    print(f"one run: {nodes} nodes, {events} events in the store, {args.stores} store(s)")
    print(f"alive after the run, ours: {ours / 1e6:.2f} MB "
          f"(replay gateway {by_module['<replay gateway>'] / 1e6:.2f} MB, other {by_module['<other>'] / 1e6:.2f} MB)")
    print("\nby module")
    for name, size in by_module.most_common():
        if abs(size) >= 10_000:
            print(f"  {size / 1e6:7.3f} MB  {name}")
    print(f"\nby line (top {args.top})")
    for name, size in by_holder.most_common(args.top):
        print(f"  {size / 1e6:7.3f} MB  {name}")
    print(f"\nby call chain, innermost first (top {args.top})")
    for chain, size in by_chain.most_common(args.top):
        print(f"  {size / 1e6:7.3f} MB  " + " < ".join(chain))
    if args.json:
        args.json.write_text(json.dumps({"nodes": nodes, "events": events, "stores": args.stores,
                                         "ours_mb": ours / 1e6,
                                         "by_module_mb": {k: v / 1e6 for k, v in by_module.items()}}, indent=1))
    del hub, stores
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

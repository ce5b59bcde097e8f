#!/usr/bin/env python3
"""Per-delta cost of the whole server path, frame text to the browser's message, at 100 and 10,000 nodes.

The path measured, per delta, exactly as a served session runs it: the frame's JSON text ->
``decode_frame`` + ``decode_devtools_payload`` (as the subscription does) ->
``DevToolsTree.apply`` on the hub's shared tree -> :class:`~dashboard.hub.GatewayHub` fan-out
-> :class:`~dashboard.store.RunStore` buffer and flush (one ``param.update``) ->
:class:`~dashboard.views.tree.NodeTree` tick -> :class:`~dashboard.treerows.TreeFeed` patch ->
JSON string handed to the component's ``_send_msg`` (captured, not sent). The header
(:class:`~dashboard.views.header.RunHeader`) is attached too, since it re-renders per tick.

Two modes: ``tick-per-delta`` (the store flushes after every delta: the worst case, a slow
stream) and ``batched`` (the store's own batching: deltas pushed as a burst, flushed on its
``batch_interval``). The reference is Smithers' ``applyDelta`` under Bun on the same workload
(``apply_delta_bench.mjs``, as in ``bench_tree.py``), from the same run of this script.

    .venv/bin/python tests/benchmarks/bench_store_path.py [--sizes 100 10000] [--deltas 2000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent.parent))

from bokeh.document import Document  # noqa: E402

from dashboard.hub import GatewayHub  # noqa: E402
from dashboard.store import RunStore  # noqa: E402
from dashboard.views.header import RunHeader  # noqa: E402
from dashboard.views.tree import NodeTree  # noqa: E402
from inspector.client import GatewayClient  # noqa: E402
from inspector.protocol import decode_devtools_payload, decode_frame  # noqa: E402
from inspector.status import ConnectionState, ConnectionStatus  # noqa: E402
from inspector.stream import StatusChanged, SubscriptionItem, TreeUpdated  # noqa: E402
from tests.benchmarks.bench_tree import APPLY_DELTA, BUN, gateway_dir, make_workload, time_reference  # noqa: E402

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from inspector.tree import DevToolsTree


class Frames:
    """A subscription source that decodes wire frames as the real subscription does."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[str | None] = asyncio.Queue()

    def __call__(self, run_id: str, tree: DevToolsTree) -> AsyncIterator[SubscriptionItem]:
        return self._stream(tree)

    async def _stream(self, tree: DevToolsTree) -> AsyncIterator[SubscriptionItem]:
        yield StatusChanged(ConnectionState(ConnectionStatus.ONLINE, since=time.time()))
        while True:
            text = await self.queue.get()
            if text is None:
                return
            frame = decode_frame(text)
            payload = decode_devtools_payload(frame.payload)  # type: ignore[union-attr]
            yield TreeUpdated(tree.apply(payload.event), tree)


async def one_pass(lines: list[str], batched: bool) -> dict[str, float]:
    frames = Frames()
    client = GatewayClient("http://bench.invalid:1", None)
    hub = GatewayHub(client, grace=0, source=frames)
    store = RunStore(hub=hub, run_id="bench-run", batch_interval=0.05 if batched else 0.0)
    view = NodeTree(store=store)
    header = RunHeader(store=store)
    sent: list[Any] = []
    view.tree._send_msg = sent.append  # type: ignore[method-assign]
    view.__panel__().get_root(Document())
    header.__panel__().get_root(Document())
    frames.queue.put_nowait(lines[0])
    deadline = time.monotonic() + 60
    while len(store.tree) < 2 or store.tree_version < 2:
        await asyncio.sleep(0.001)
        if time.monotonic() > deadline:
            raise TimeoutError("snapshot")
    view.tree._handle_msg({"type": "ready", "seq": 0, "run": None})
    sent.clear()
    seqs = [json.loads(line)["payload"]["event"]["delta"]["seq"] for line in lines[1:]]
    target = seqs[-1]
    gc.collect()
    started = time.perf_counter()
    if batched:
        for line in lines[1:]:
            frames.queue.put_nowait(line)
    else:
        for line, seq in zip(lines[1:], seqs, strict=True):
            frames.queue.put_nowait(line)
            while not (store.last_changes and store.last_changes[-1].seq == seq):  # this delta's own tick
                await asyncio.sleep(0)
    while not (store.last_changes and store.last_changes[-1].seq == target):
        await asyncio.sleep(0)
    elapsed = time.perf_counter() - started
    deltas = len(lines) - 1
    message_bytes = sum(len(m.encode("utf-8")) for m in sent if isinstance(m, str))
    out = {"us_per_delta": elapsed * 1e6 / deltas, "messages": len(sent), "bytes_per_delta": message_bytes / deltas,
           "ticks": float(view.tree.feed.stats.patches)}
    store.close()
    await hub.aclose()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 10_000])
    parser.add_argument("--deltas", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--gateway-dir")
    args = parser.parse_args(argv)
    install = gateway_dir(args.gateway_dir)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-store-") as tmp:
        for size in args.sizes:
            workload = Path(tmp) / f"w{size}.jsonl"
            make_workload(size, args.deltas, args.seed, workload)
            lines = [line for line in workload.read_text().splitlines() if line.strip()]
            result: dict[str, Any] = {"nodes": size}
            for mode in ("tick-per-delta", "batched"):
                passes = [asyncio.run(one_pass(lines, mode == "batched")) for _ in range(args.repeat)]
                result[mode] = {
                    "us_per_delta": [round(p["us_per_delta"], 1) for p in passes],
                    "messages": passes[-1]["messages"],
                    "bytes_per_delta": round(passes[-1]["bytes_per_delta"], 1),
                }
                print(f"[{size}] {mode}: {result[mode]}", file=sys.stderr, flush=True)
            ref = time_reference(install / BUN, install / APPLY_DELTA, workload, Path(f"{workload}.final.json"), 1)
            result["reference_us_per_delta"] = round(float(ref["us_per_delta"]), 1)
            result["reference_ok"] = bool(ref["ok"])
            print(f"[{size}] reference applyDelta: {result['reference_us_per_delta']} us/delta", file=sys.stderr, flush=True)
            rows.append(result)
    print(json.dumps(rows, indent=1))
    print()
    print(f"{'nodes':>7} {'path us/delta (tick per delta)':>32} {'path us/delta (batched)':>25} {'applyDelta us/delta':>20} {'ratio':>7}")
    for r in rows:
        tick = min(r["tick-per-delta"]["us_per_delta"])
        batch = min(r["batched"]["us_per_delta"])
        print(f"{r['nodes']:>7} {tick:>32.0f} {batch:>25.0f} {r['reference_us_per_delta']:>20.0f} "
              f"{r['reference_us_per_delta'] / tick:>6.0f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())

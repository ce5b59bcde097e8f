#!/usr/bin/env python3
"""Per-delta cost of our DevToolsTree against the Gateway's own applyDelta, side by side.

Why: the inspector must keep up with a big run's DevTools stream. The reference
``applyDelta`` (``@smithers-orchestrator/devtools``) clones the whole tree for every delta, so
its cost grows with the tree; :class:`inspector.tree.DevToolsTree` is meant to cost
O(change). The goals, at 10,000 nodes: ours at least 100x faster than the reference, and ours
at 10,000 nodes within 3x of ours at 100 nodes (flat in tree size).

For each size the same deterministic workload (``make_workload.py``, a verbatim copy of the
shared generator: one snapshot frame, then delta frames, and the expected final tree) is fed
to both implementations. JSON parsing happens before timing in both. Ours: apply the snapshot,
then time applying every delta (best of ``--repeat`` passes, each on a fresh tree). The
reference: ``apply_delta_bench.mjs`` under the Gateway install's Bun, importing ``applyDelta``
from that install by absolute path. Both check their final tree against the expected one; the
exit code is 1 if either is wrong (2 with ``--check-goals`` if a goal is missed).

    .venv/bin/python tests/benchmarks/bench_tree.py [--sizes 100 10000] [--deltas 2000]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inspector.tree import DevToolsTree

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
APPLY_DELTA = Path("node_modules/@smithers-orchestrator/devtools/src/applyDelta.js")
BUN = Path("node_modules/@oven/bun-linux-x64/bin/bun")

#: The goals this benchmark checks (see the module docstring).
MIN_SPEEDUP_AT_LARGEST = 100.0
MAX_FLATNESS = 3.0


@dataclass
class Row:
    nodes: int
    final_nodes: int
    deltas: int
    ours_us: float
    ours_ok: bool
    ref_us: float
    ref_ok: bool
    ref_runtime: str

    @property
    def ratio(self) -> float:
        """How many times faster ours is than the reference."""
        return self.ref_us / self.ours_us if self.ours_us else float("inf")


def gateway_dir(given: str | None) -> Path:
    """The Gateway install: ``--gateway-dir``, ``$SMITHERS_GATEWAY_DIR``, else the installer's."""
    chosen = given or os.environ.get("SMITHERS_GATEWAY_DIR")
    if chosen:
        return Path(chosen)
    result = subprocess.run(
        [sys.executable, str(REPO / "tests" / "gateway" / "install.py")],
        check=True,
        stdout=subprocess.PIPE,
        text=True,
    )
    return Path(result.stdout.strip().splitlines()[-1])


def make_workload(nodes: int, deltas: int, seed: int, out: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            str(HERE / "make_workload.py"),
            "--nodes",
            str(nodes),
            "--deltas",
            str(deltas),
            "--seed",
            str(seed),
            str(out),
        ],
        check=True,
    )


def load_events(path: Path) -> list[dict[str, Any]]:
    """The ``event`` of every ``devtools.event`` frame (what ``DevToolsTree.apply`` takes)."""
    events = []
    with open(path) as lines:
        for line in lines:
            if line.strip():
                events.append(json.loads(line)["payload"]["event"])
    return events


def count_nodes(root: dict[str, Any]) -> int:
    count, stack = 0, [root]
    while stack:
        node = stack.pop()
        count += 1
        stack.extend(node.get("children", []))
    return count


def time_ours(events: list[dict[str, Any]], expected: dict[str, Any], repeat: int) -> tuple[float, bool]:
    """Best per-delta microseconds over ``repeat`` passes, and whether every pass ended right."""
    snapshot, deltas = events[0], events[1:]
    best = float("inf")
    ok = True
    for _ in range(repeat):
        tree = DevToolsTree()
        tree.apply(snapshot)
        gc.collect()  # start each pass from the same heap state; GC stays enabled while timing
        started = time.perf_counter()
        for delta in deltas:
            tree.apply(delta)
        elapsed = time.perf_counter() - started
        best = min(best, elapsed * 1e6 / len(deltas))
        final = tree.snapshot()
        ok = ok and final["seq"] == expected["seq"] and final["root"] == expected["root"]
    return best, ok


def time_reference(bun: Path, apply_delta: Path, workload: Path, final: Path, repeat: int) -> dict[str, Any]:
    result = subprocess.run(
        [
            str(bun),
            str(HERE / "apply_delta_bench.mjs"),
            str(apply_delta),
            str(workload),
            str(final),
            str(repeat),
        ],
        stdout=subprocess.PIPE,
        text=True,
        check=False,
    )
    if not result.stdout.strip():
        raise SystemExit(f"apply_delta_bench.mjs printed nothing (exit {result.returncode})")
    report: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    report["ok"] = bool(report.get("ok")) and result.returncode == 0
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 10_000], help="tree sizes in nodes")
    parser.add_argument("--deltas", type=int, default=2_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--repeat", type=int, default=5, help="passes of ours (best is kept)")
    parser.add_argument(
        "--ref-repeat", type=int, default=1, help="passes of the reference (it is slow at 10k nodes)"
    )
    parser.add_argument(
        "--gateway-dir", help="Gateway install (default: $SMITHERS_GATEWAY_DIR or install.py)"
    )
    parser.add_argument("--keep", type=Path, help="write the workloads here instead of a temporary folder")
    parser.add_argument("--check-goals", action="store_true", help="exit 2 if a goal is missed")
    args = parser.parse_args(argv)

    install = gateway_dir(args.gateway_dir)
    bun, apply_delta = install / BUN, install / APPLY_DELTA
    for path in (bun, apply_delta):
        if not path.exists():
            raise SystemExit(f"{path} is missing: is {install} a complete Gateway install?")

    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="bench-tree-") as scratch:
        folder = args.keep or Path(scratch)
        folder.mkdir(parents=True, exist_ok=True)
        for size in args.sizes:
            workload = folder / f"workload-{size}-{args.deltas}-{args.seed}.jsonl"
            final_path = Path(f"{workload}.final.json")
            make_workload(size, args.deltas, args.seed, workload)
            events = load_events(workload)
            expected = json.loads(final_path.read_text())
            ours_us, ours_ok = time_ours(events, expected, args.repeat)
            print(
                f"[{size} nodes] ours: {ours_us:.1f} us/delta, correct={ours_ok}", file=sys.stderr, flush=True
            )
            ref = time_reference(bun, apply_delta, workload, final_path, args.ref_repeat)
            print(
                f"[{size} nodes] reference: {ref['us_per_delta']:.1f} us/delta, correct={ref['ok']}",
                file=sys.stderr,
                flush=True,
            )
            rows.append(
                Row(
                    nodes=count_nodes(events[0]["snapshot"]["root"]),
                    final_nodes=count_nodes(expected["root"]),
                    deltas=len(events) - 1,
                    ours_us=ours_us,
                    ours_ok=ours_ok,
                    ref_us=float(ref["us_per_delta"]),
                    ref_ok=bool(ref["ok"]),
                    ref_runtime=str(ref.get("runtime", "?")),
                )
            )

    print()
    print(f"DevToolsTree.apply (Python {sys.version.split()[0]}) vs applyDelta ({rows[0].ref_runtime})")
    header = f"{'nodes':>8} {'final':>8} {'deltas':>7} {'ours us/delta':>14} {'ref us/delta':>14} {'ratio':>9}  correct"
    print(header)
    print("-" * len(header))
    for row in rows:
        correct = "yes" if row.ours_ok and row.ref_ok else f"ours={row.ours_ok} ref={row.ref_ok}"
        print(
            f"{row.nodes:>8} {row.final_nodes:>8} {row.deltas:>7} {row.ours_us:>14.2f} {row.ref_us:>14.1f}"
            f" {row.ratio:>8.0f}x  {correct}"
        )
    smallest, largest = min(rows, key=lambda r: r.nodes), max(rows, key=lambda r: r.nodes)
    flatness = largest.ours_us / smallest.ours_us
    print()
    print(f"flatness (ours at {largest.nodes} / ours at {smallest.nodes} nodes): {flatness:.2f}")
    speed_met = largest.ratio >= MIN_SPEEDUP_AT_LARGEST
    flat_met = flatness <= MAX_FLATNESS
    print(
        f"goal: >= {MIN_SPEEDUP_AT_LARGEST:.0f}x faster at {largest.nodes} nodes:"
        f" {'MET' if speed_met else 'MISSED'} ({largest.ratio:.0f}x)"
    )
    print(f"goal: flatness <= {MAX_FLATNESS:.0f}: {'MET' if flat_met else 'MISSED'} ({flatness:.2f})")

    if not all(row.ours_ok and row.ref_ok for row in rows):
        print("CORRECTNESS CHECK FAILED", file=sys.stderr)
        return 1
    if args.check_goals and not (speed_met and flat_met):
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

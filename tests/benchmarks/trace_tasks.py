#!/usr/bin/env python3
"""What a page's long main-thread tasks were made of, from a Chromium trace.

A ``longtask`` entry (PerformanceObserver) says only how long a task took. This reads a trace
written by Playwright's ``browser.start_tracing`` (categories :data:`CATEGORIES`) and, for the
longest top-level tasks on a renderer's main thread, prints the events inside them by total
time (``FunctionCall`` with the function's script and line, ``Layout``, ``Paint``, ``Commit``,
...) and, from the V8 sampling profiler, the functions that held the CPU (self time) and
the ones they were called from (samples with the function anywhere on the stack).

    .venv/bin/python tests/benchmarks/trace_tasks.py TRACE.json [--url-part :5006] [--top 3]

``bench_vs_monitor.py --trace DIR`` writes such a trace of our page while the run streams.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

#: Trace categories: the DevTools timeline (tasks, script, layout, paint) and V8's sampler.
CATEGORIES = [
    "toplevel",
    "devtools.timeline",
    "disabled-by-default-devtools.timeline",
    "disabled-by-default-devtools.timeline.frame",
    "v8.execute",
    "disabled-by-default-v8.cpu_profiler",
    "blink.user_timing",
]


_TASKS = ("RunTask", "ThreadControllerImpl::RunTask")


def _events(path: Path) -> list[dict[str, Any]]:
    data = json.loads(path.read_text())
    return data["traceEvents"] if isinstance(data, dict) else data


def main_threads(events: list[dict[str, Any]]) -> dict[tuple[int, int], str]:
    """(pid, tid) of every renderer main thread -> a URL seen in its script calls."""
    mains = {(e["pid"], e["tid"]) for e in events
             if e.get("ph") == "M" and e.get("name") == "thread_name" and e["args"].get("name") == "CrRendererMain"}
    urls: dict[tuple[int, int], Counter[str]] = defaultdict(Counter)
    for e in events:
        key = (e.get("pid"), e.get("tid"))
        if key in mains:
            url = ((e.get("args") or {}).get("data") or {}).get("url") or ""
            if url:
                urls[key][url] += 1
    return {key: (urls[key].most_common(1)[0][0] if urls[key] else "") for key in mains}


def _profile_samples(events: list[dict[str, Any]], pid: int) -> list[tuple[float, list[str]]]:
    """(timestamp µs, call stack innermost first as "function script:line") of every V8 CPU
    sample in process ``pid``."""
    frames: dict[tuple[str, int], str] = {}
    parents: dict[tuple[str, int], tuple[str, int]] = {}
    clock: dict[str, float] = {}
    raw: list[tuple[float, tuple[str, int]]] = []
    for e in events:
        if e.get("pid") != pid:
            continue
        data = (e.get("args") or {}).get("data") or {}
        if e.get("name") == "Profile":
            clock[e["id"]] = float(data.get("startTime", e["ts"]))
        elif e.get("name") == "ProfileChunk":
            profile = data.get("cpuProfile") or {}
            for node in profile.get("nodes") or []:
                cf = node.get("callFrame") or {}
                url = (cf.get("url") or "").rsplit("/", 1)[-1].split("?", 1)[0]
                where = f" {url}:{cf.get('lineNumber', 0) + 1}" if url else ""
                frames[(e["id"], node["id"])] = f"{cf.get('functionName') or '(anonymous)'}{where}"
                if "parent" in node:
                    parents[(e["id"], node["id"])] = (e["id"], node["parent"])
            t = clock.get(e["id"], 0.0)
            for sample, delta in zip(profile.get("samples") or [], data.get("timeDeltas") or [], strict=False):
                t += delta
                raw.append((t, (e["id"], sample)))
            clock[e["id"]] = t
    out: list[tuple[float, list[str]]] = []
    for t, key in raw:
        stack: list[str] = []
        node: tuple[str, int] | None = key
        while node is not None and node in frames:
            stack.append(frames[node])
            node = parents.get(node)
        out.append((t, stack))
    return out


def long_task_report(path: Path, url_part: str = "", top: int = 3, min_ms: float = 50.0,
                     after_mark: str | None = None) -> list[dict[str, Any]]:
    """The ``top`` longest top-level tasks (≥ ``min_ms``) of the renderer whose scripts' URL
    contains ``url_part``, each with what it contained; with ``after_mark``, only the tasks
    that began after the page's ``performance.mark(after_mark)``."""
    events = _events(path)
    threads = [k for k, url in main_threads(events).items() if url_part in url]
    if not threads:
        raise SystemExit(f"no renderer main thread with a script URL containing {url_part!r}")
    pid, tid = threads[0]
    mine = [e for e in events if e.get("pid") == pid and e.get("tid") == tid and e.get("ph") == "X"]
    # The outermost task events only (Chromium nests a RunTask in ThreadControllerImpl::RunTask).
    outer: list[dict[str, Any]] = []
    for e in sorted((e for e in mine if e.get("name") in _TASKS), key=lambda e: (e["ts"], -e.get("dur", 0))):
        if not outer or e["ts"] >= outer[-1]["ts"] + outer[-1].get("dur", 0):
            outer.append(e)
    tasks = sorted((e for e in outer if e.get("dur", 0) >= min_ms * 1000), key=lambda e: -e["dur"])
    if after_mark is not None:
        marks = [e["ts"] for e in events if e.get("pid") == pid and e.get("name") == after_mark]
        if not marks:
            raise SystemExit(f"no performance.mark({after_mark!r}) in the trace")
        tasks = [e for e in tasks if e["ts"] >= marks[0]]
    samples = _profile_samples(events, pid)
    tasks = tasks[:top]
    origin = min((e["ts"] for e in mine), default=0)
    report = []
    for task in tasks:
        start, end = task["ts"], task["ts"] + task["dur"]
        inside: Counter[str] = Counter()
        for e in mine:
            if not (start <= e["ts"] < end) or e.get("name") in _TASKS:
                continue
            data = (e.get("args") or {}).get("data") or {}
            name = e["name"]
            if name == "FunctionCall":
                script = (data.get("url") or "").rsplit("/", 1)[-1].split("?", 1)[0]
                name += f" {data.get('functionName') or '?'} {script}:{data.get('lineNumber', '')}"
            inside[name] += e.get("dur", 0)
        stacks = [stack for t, stack in samples if start <= t < end]
        cpu = Counter(stack[0] for stack in stacks if stack)
        within: Counter[str] = Counter()
        for stack in stacks:
            within.update({fn for fn in stack if not fn.startswith("(")})
        report.append({
            "ms": round(task["dur"] / 1000, 1),
            "at_s": round((start - origin) / 1e6, 2),
            "events_ms": [(n, round(d / 1000, 1)) for n, d in inside.most_common(30)],
            "cpu_samples": cpu.most_common(30),
            "cpu_samples_within": within.most_common(30),
        })
    return report


def kind(task: dict[str, Any]) -> str:
    """What a task of :func:`long_task_report` was, in the terms docs/performance.md uses."""
    events = [name for name, _ in task["events_ms"]]
    within = [fn for fn, _ in task["cpu_samples_within"]]
    # BokehJS repaints a plot from an animation frame (its throttled ``PlotView.repaint``).
    if any(fn.startswith("repaint bokeh") for fn in within) or (
            "FireAnimationFrame" in events and any(n.startswith("FunctionCall") and "bokeh" in n for n in events)):
        return "chart repaint (BokehJS, animation frame)"
    if any(fn.startswith("invalidate_layout bokeh") for fn in within):
        return "model change -> BokehJS page layout"
    if any(fn.startswith("apply_json_patch bokeh") for fn in within):
        return "model change, no layout"
    if events[:1] in (["MajorGC"], ["MinorGC"]):
        return "garbage collection"
    if any("tree.js" in fn for fn in within):
        return "tree.js"
    return "other: " + ", ".join(events[:2])


def kinds(report: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Tasks of a report by :func:`kind`: how many, the longest and the total ms, longest first."""
    out: dict[str, dict[str, float]] = {}
    for task in report:
        row = out.setdefault(kind(task), {"n": 0, "max_ms": 0.0, "total_ms": 0.0})
        row["n"] += 1
        row["max_ms"] = max(row["max_ms"], task["ms"])
        row["total_ms"] = round(row["total_ms"] + task["ms"], 1)
    return dict(sorted(out.items(), key=lambda kv: -kv[1]["max_ms"]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("trace", type=Path)
    parser.add_argument("--url-part", default="")
    parser.add_argument("--top", type=int, default=3)
    args = parser.parse_args(argv)
    for task in long_task_report(args.trace, args.url_part, args.top):
        print(f"\ntask of {task['ms']} ms at {task['at_s']} s into the trace")
        for name, ms in task["events_ms"]:
            print(f"  {ms:8.1f} ms  {name}")
        if task["cpu_samples"]:
            print("  V8 samples (self):")
            for fn, n in task["cpu_samples"]:
                print(f"  {n:8d}     {fn}")
            print("  V8 samples (on the stack):")
            for fn, n in task["cpu_samples_within"]:
                print(f"  {n:8d}     {fn}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

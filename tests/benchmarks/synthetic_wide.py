"""A synthetic recording of the ``wide`` workflow, for replays at any speed.

The real Gateway takes over an hour to run ``wide`` with 2,000 sequences on this machine (its
engine's per-step cost grows with the run), which is too slow to iterate on or to soak with.
This builds a :class:`~inspector.transcript.RecordedRun` of the same shape (workflow > sequence >
parallel of N sequences of two tasks ``a-i``, ``b-i``, then ``join``: 3N+4 nodes) whose DevTools
deltas and run events (``node.started`` / ``node.finished``, ``run.completed``) are what the
real Gateway sends for it: one ``updateTask`` per delta, ``concurrency`` tasks in flight,
``rate`` task-state changes per second of recorded time. A
:class:`~inspector.replay.ReplayGateway` plays it over the real protocol (``speed``, ``loop``).

``changes_per_delta`` groups that many consecutive task changes into one DevTools delta (the real
Gateway sends one frame per engine step, often with several ``updateTask`` ops), and
``events_per_change`` adds ``task.heartbeat`` run events for the tasks in flight, spread over the
run, so that there are that many run events per task change in all. :func:`heavy_run` is issue
14's workload: a ~7,500-node run at ~4x the real Gateway's cadence (~8 frames/s, ~90 task
changes/s, ~390 run events/s).
"""

from __future__ import annotations

import copy
from typing import Any

from inspector.transcript import RecordedRun, TimedDevToolsEvent, TimedRunEvent

__all__ = ["heavy_run", "wide_run"]


def heavy_run(*, run_id: str = "synthetic-heavy") -> RecordedRun:
    """Issue 14's workload: 7,498 nodes, ~8.2 frames/s, 90 task changes/s, 390 run events/s."""
    return wide_run(2498, rate=90.0, changes_per_delta=11, events_per_change=390 / 90, concurrency=32,
                    run_id=run_id)


def wide_run(sequences: int = 2000, *, rate: float = 40.0, concurrency: int = 16,
             run_id: str = "synthetic-wide", changes_per_delta: int = 1,
             events_per_change: float = 1.0) -> RecordedRun:
    next_id = 0
    tasks: list[dict[str, Any]] = []

    def new_id() -> int:
        nonlocal next_id
        next_id += 1
        return next_id

    def task(name: str, depth: int) -> dict[str, Any]:
        node = {"id": new_id(), "type": "task", "name": "task", "depth": depth, "children": [],
                "props": {"id": name, "output": "out"},
                "task": {"nodeId": name, "kind": "compute", "outputTableName": "out", "iteration": 0,
                         "state": "pending", "attempt": 0}}
        tasks.append(node)
        return node

    def group(kind: str, depth: int, children: list[dict[str, Any]]) -> dict[str, Any]:
        return {"id": new_id(), "type": kind, "name": kind, "props": {}, "depth": depth, "children": children}

    root = {"id": new_id(), "type": "workflow", "name": "wide", "props": {"name": "wide"}, "depth": 0, "children": []}
    body = group("sequence", 1, [])
    parallel = group("parallel", 2, [])
    lanes = []
    for i in range(sequences):
        lane = group("sequence", 3, [])
        lane["children"] = [task(f"a-{i}", 4), task(f"b-{i}", 4)]
        lanes.append(lane)
    parallel["children"] = lanes
    body["children"] = [parallel, task("join", 2)]
    root["children"] = [body]

    # A copy: the changes below rewrite the nodes' tasks, and the first snapshot must stay
    # the run's start (all pending), not its end.
    snapshot = {"version": 1, "kind": "snapshot",
                "snapshot": {"version": 1, "runId": run_id, "frameNo": 0, "seq": 0, "root": copy.deepcopy(root)}}
    devtools = [TimedDevToolsEvent(0.0, snapshot)]
    events: list[TimedRunEvent] = [TimedRunEvent(0.0, "run.started", {"runId": run_id})]
    seq = 0
    step_ms = 1000.0 / rate
    t = 0.0

    ops: list[dict[str, Any]] = []
    heartbeat_debt = 0.0
    in_flight: list[dict[str, Any]] = []

    def emit() -> None:
        nonlocal seq, ops
        if not ops:
            return
        delta = {"version": 1, "kind": "delta", "delta": {"version": 1, "baseSeq": seq, "seq": seq + 1, "ops": ops}}
        seq += 1
        ops = []
        devtools.append(TimedDevToolsEvent(t, delta))

    def change(node: dict[str, Any], state: str, event: str) -> None:
        nonlocal t, heartbeat_debt
        t += step_ms
        node["task"] = {**node["task"], "state": state, "attempt": 1}
        ops.append({"op": "updateTask", "id": node["id"], "task": dict(node["task"])})
        if len(ops) >= changes_per_delta:
            emit()
        node_id = node["task"]["nodeId"]
        events.append(TimedRunEvent(t, event, {"runId": run_id, "nodeId": node_id, "iteration": 0,
                                              "attempt": 1, **({"state": state} if event == "node.started" else {})}))
        if state == "in-progress":
            in_flight.append(node)
        elif node in in_flight:
            in_flight.remove(node)
        heartbeat_debt += events_per_change - 1.0
        beats = int(heartbeat_debt)
        heartbeat_debt -= beats
        for k in range(beats if in_flight else 0):
            beating = in_flight[(seq + k) % len(in_flight)]["task"]["nodeId"]
            events.append(TimedRunEvent(t + step_ms * (k + 1) / (beats + 1), "task.heartbeat",
                                        {"runId": run_id, "nodeId": beating, "iteration": 0, "attempt": 1}))

    # Lanes start in order, ``concurrency`` at a time; a lane runs a, then b.
    order = [(lane["children"][0], lane["children"][1]) for lane in lanes]
    running: list[tuple[dict[str, Any], dict[str, Any] | None]] = []
    cursor = 0
    while cursor < len(order) or running:
        while len(running) < concurrency and cursor < len(order):
            a, b = order[cursor]
            cursor += 1
            change(a, "in-progress", "node.started")
            running.append((a, b))
        current, after = running.pop(0)
        change(current, "finished", "node.finished")
        if after is not None:
            change(after, "in-progress", "node.started")
            running.append((after, None))
    join = tasks[-1]
    change(join, "in-progress", "node.started")
    change(join, "finished", "node.finished")
    emit()
    events.append(TimedRunEvent(t + step_ms, "run.completed", {"runId": run_id, "status": "finished"}))
    row = {"runId": run_id, "workflowName": "wide", "workflowKey": "wide", "status": "running"}
    return RecordedRun(run_id=run_id, workflow="wide", devtools=tuple(devtools), run_events=tuple(events), row=row)

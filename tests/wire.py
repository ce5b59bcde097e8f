"""Builders for DevTools wire objects in tests: nodes, tasks, snapshot and delta events."""

from __future__ import annotations

from typing import Any


def node(node_id: int, children: list[dict[str, Any]] | None = None, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"id": node_id, "type": "sequence", "name": "seq", "props": {}, "children": children or [], "depth": 0}
    out.update(extra)
    return out


def task(node_id: int, name: str, state: str = "pending", **fields: Any) -> dict[str, Any]:
    """A task node; ``fields`` go into (and override) its ``task`` object."""
    t = {"nodeId": name, "kind": "compute", "iteration": 0, "state": state, "attempt": 0, **fields}
    return node(node_id, type="task", name="task", props={"id": name}, task=t)


def snap(root: dict[str, Any], seq: int = 0, run: str = "r") -> dict[str, Any]:
    return {"version": 1, "kind": "snapshot", "snapshot": {"version": 1, "runId": run, "frameNo": seq, "seq": seq, "root": root}}


def delta(base: int, *ops: dict[str, Any], seq: int | None = None) -> dict[str, Any]:
    return {"version": 1, "kind": "delta",
            "delta": {"version": 1, "baseSeq": base, "seq": base + 1 if seq is None else seq, "ops": list(ops)}}

"""Compute the DevTools delta ops that turn one tree into another.

The inverse of :meth:`inspector.tree.DevToolsTree.apply`: applying
``diff_trees(a, b)`` to a tree holding ``a`` gives ``b``. Used by the replay gateway to
re-emit deltas between recorded frames, by the frame scrubber to highlight what changed
between two frames, and by the property tests.

A node is *kept* when it sits under the same kept parent in both trees, in the same
relative order (a longest common subsequence of its siblings), and differs at most in
``props`` and ``task`` (the only fields an op can change in place). Everything else is
removed and re-added. All removals come before all additions, so an id that moves
between parents never exists twice.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["diff_trees", "subtree_ids"]

_MUTABLE = ("props", "task", "children")


def subtree_ids(node: Mapping[str, Any]) -> list[int]:
    """Every id in a wire subtree, in document order."""
    out: list[int] = []
    stack = [node]
    while stack:
        n = stack.pop()
        out.append(n["id"])
        stack.extend(reversed(n.get("children", [])))
    return out


def _fixed_fields(node: Mapping[str, Any]) -> dict[str, Any]:
    fixed = {k: v for k, v in node.items() if k not in _MUTABLE}
    fixed[" has props"] = "props" in node  # updateProps cannot take props away
    return fixed


def _lcs(a: list[int], b: list[int]) -> set[int]:
    """Ids of a longest common subsequence of two id lists (ids are unique in each)."""
    if a == b:
        return set(a)
    n, m = len(a), len(b)
    table = [[0] * (m + 1) for _ in range(n + 1)]
    for i in range(n - 1, -1, -1):
        for j in range(m - 1, -1, -1):
            table[i][j] = table[i + 1][j + 1] + 1 if a[i] == b[j] else max(table[i + 1][j], table[i][j + 1])
    out: set[int] = set()
    i = j = 0
    while i < n and j < m:
        if a[i] == b[j]:
            out.add(a[i])
            i += 1
            j += 1
        elif table[i + 1][j] >= table[i][j + 1]:
            i += 1
        else:
            j += 1
    return out


def diff_trees(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The wire ops (``{"op": ...}`` dicts) that turn root ``old`` into root ``new``."""
    if old["id"] != new["id"] or _fixed_fields(old) != _fixed_fields(new):
        return [{"op": "replaceRoot", "node": new}]

    removals: list[dict[str, Any]] = []
    additions: list[dict[str, Any]] = []
    pairs: list[tuple[Mapping[str, Any], Mapping[str, Any]]] = [(old, new)]
    while pairs:
        a, b = pairs.pop()
        if a.get("props") != b.get("props"):
            additions.append({"op": "updateProps", "id": b["id"], "props": b.get("props", {})})
        if a.get("task") != b.get("task"):
            op: dict[str, Any] = {"op": "updateTask", "id": b["id"]}
            if "task" in b:
                op["task"] = b["task"]
            additions.append(op)
        a_children = {c["id"]: c for c in a.get("children", [])}
        b_children = b.get("children", [])
        same = [
            c["id"]
            for c in b_children
            if c["id"] in a_children and _fixed_fields(a_children[c["id"]]) == _fixed_fields(c)
        ]
        order_a = [i for i in a_children if i in set(same)]
        kept = _lcs(order_a, same)
        for child_id in a_children:
            if child_id not in kept:
                removals.append({"op": "removeNode", "id": child_id})
        for position, child in enumerate(b_children):
            if child["id"] in kept:
                pairs.append((a_children[child["id"]], child))
            else:
                additions.append({"op": "addNode", "parentId": b["id"], "index": position, "node": child})
    return removals + additions

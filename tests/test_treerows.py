"""Row records and row patches: a client applying reset + patches always holds rows_for(tree).

The browser (tree.js) and :class:`dashboard.treerows.RowMirror` apply messages the same
way; every test here replays changes through the mirror and compares it with a fresh
:func:`rows_for` after each step, so a patch that forgets a row, misplaces a subtree or
leaks a removed node fails at the step that caused it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from dashboard.treerows import RowMirror, TreeFeed, decode, encode, message_bytes, patch_for, rows_for
from inspector import DevToolsTree

from .recordings import recording, recordings
from .wire import delta, node, snap, task

HERE = Path(__file__).parent
MAKE_WORKLOAD = HERE / "benchmarks" / "make_workload.py"


def sample() -> DevToolsTree:
    loop = node(6, [node(7, [task(8, "refine", iteration=2)])], type="loop", name="ralph", props={"id": "refine-loop"})
    root = node(1, [task(2, "plan"), node(3, [task(4, "b"), task(5, "c")], type="parallel"), loop], type="workflow", name="w")
    return DevToolsTree(snap(root))


class Replay:
    """A tree, a feed and a mirror driven together; ``check`` compares mirror and tree."""

    def __init__(self, tree: DevToolsTree) -> None:
        self.tree = tree
        self.feed = TreeFeed()
        self.mirror = RowMirror()
        self.messages: list[dict[str, Any]] = []
        self.send(self.feed.reset(tree))

    def send(self, message: dict[str, Any] | None) -> None:
        if message is not None:
            # Through the wire encoding, as the browser sees it.
            message = decode(self.feed.encode(message))
            self.messages.append(message)
            self.mirror.apply(message)

    def apply(self, *events: dict[str, Any]) -> dict[str, Any] | None:
        changes = [self.tree.apply(e) for e in events]
        message = self.feed.update(self.tree, changes)
        self.send(message)
        self.check()
        return message

    def check(self) -> None:
        assert self.mirror.ordered() == rows_for(self.tree)


# ---------------------------------------------------------------------------- rows


def test_rows_are_in_document_order_with_computed_depth_and_no_null_keys() -> None:
    rows = rows_for(sample())
    assert [r["id"] for r in rows] == [1, 2, 3, 4, 5, 6, 7, 8]
    assert [r["depth"] for r in rows] == [0, 1, 1, 2, 2, 1, 2, 3]
    assert rows[0] == {"id": 1, "parent": None, "depth": 0, "type": "workflow", "label": "w", "hasChildren": True}
    assert rows[1] == {
        "id": 2, "parent": 1, "depth": 1, "type": "task", "label": "plan", "hasChildren": False,
        "state": "pending", "nodeId": "plan", "attempt": 0, "iteration": 0,
    }
    assert all(None not in r.values() or r["parent"] is None for r in rows)


def test_loop_row_shows_the_iteration_of_its_body() -> None:
    rows = {r["id"]: r for r in rows_for(sample())}
    assert rows[6]["iteration"] == 2
    assert rows[6]["label"] == "refine-loop"


def test_unknown_states_and_types_are_kept_by_name() -> None:
    root = node(1, [task(2, "q", state="waiting-quota"), node(3, type="brand-new")], type="workflow")
    rows = rows_for(DevToolsTree(snap(root)))
    assert rows[1]["state"] == "waiting-quota"
    assert rows[2]["type"] == "brand-new"


def test_empty_tree_has_no_rows() -> None:
    assert rows_for(DevToolsTree()) == []


# ---------------------------------------------------------------------------- patches


def test_update_task_sends_one_row() -> None:
    r = Replay(sample())
    message = r.apply(delta(0, {"op": "updateTask", "id": 4, "task": {"nodeId": "b", "kind": "compute", "state": "failed", "attempt": 2, "maxAttempts": 3}}))
    assert message is not None
    assert message["type"] == "patch"
    assert [row["id"] for row in message["upsert"]] == [4]
    assert message["upsert"][0]["state"] == "failed"
    assert message["add"] == message["remove"] == message["at"] == []


def test_task_in_a_loop_also_resends_the_loop_row() -> None:
    r = Replay(sample())
    message = r.apply(delta(0, {"op": "updateTask", "id": 8, "task": {"nodeId": "refine", "kind": "compute", "iteration": 3, "state": "in-progress"}}))
    assert message is not None
    assert sorted(row["id"] for row in message["upsert"]) == [6, 8]
    assert {r["id"]: r for r in message["upsert"]}[6]["iteration"] == 3


def test_add_node_sends_the_subtree_and_its_position() -> None:
    r = Replay(sample())
    sub = node(20, [task(21, "x"), task(22, "y")], type="parallel")
    message = r.apply(delta(0, {"op": "addNode", "parentId": 3, "index": 1, "node": sub}))
    assert message is not None
    assert [row["id"] for row in message["add"]] == [20, 21, 22]
    assert message["at"] == [[20, 1]]
    assert message["upsert"] == []
    assert [row["id"] for row in r.mirror.ordered()] == [1, 2, 3, 4, 20, 21, 22, 5, 6, 7, 8]


def test_remove_node_sends_ids_and_parent_loses_has_children() -> None:
    r = Replay(sample())
    message = r.apply(delta(0, {"op": "removeNode", "id": 4}), delta(1, {"op": "removeNode", "id": 5}))
    assert message is not None
    assert message["remove"] == [4, 5]
    assert message["upsert"] == message["add"] == []
    assert {row["id"]: row for row in r.mirror.ordered()}[3]["hasChildren"] is False


def test_batch_with_adds_removes_and_readds_in_any_order() -> None:
    r = Replay(sample())
    r.apply(
        delta(0, {"op": "addNode", "parentId": 3, "index": 0, "node": node(30)}),
        delta(1, {"op": "addNode", "parentId": 30, "index": 0, "node": task(31, "inner")}),  # nested in a fresh add
        delta(2, {"op": "addNode", "parentId": 3, "index": 99, "node": task(32, "last")}),  # clamped index
        delta(3, {"op": "addNode", "parentId": 1, "index": 0, "node": task(33, "gone")}),
        delta(4, {"op": "removeNode", "id": 33}),  # added and removed in one batch
        delta(5, {"op": "removeNode", "id": 2}),
        delta(6, {"op": "addNode", "parentId": 7, "index": 0, "node": task(2, "plan-again")}),  # id comes back elsewhere
        delta(7, {"op": "updateTask", "id": 31, "task": {"nodeId": "inner", "kind": "compute", "state": "finished"}}),
    )
    assert [row["id"] for row in r.mirror.ordered()] == [1, 3, 30, 31, 4, 5, 32, 6, 7, 2, 8]


def test_rebuilt_change_gives_a_reset_and_a_new_run_clears_rows() -> None:
    r = Replay(sample())
    message = r.apply(delta(0, {"op": "replaceRoot", "node": node(100, [task(101, "z")], type="workflow")}))
    assert message is not None and message["type"] == "reset"
    message = r.apply(snap(node(1, type="workflow"), run="other"))
    assert message is not None and message["type"] == "reset" and message["run"] == "other"


def test_empty_delta_sends_nothing_and_seq_only_moves_forward() -> None:
    r = Replay(sample())
    assert r.apply(delta(0)) is None
    before = r.mirror.ordered()
    r.mirror.apply({**r.messages[0], "rows": []})  # a stale duplicate of the first reset
    assert r.mirror.ordered() == before


def test_wire_encoding_round_trips_and_packs_rows() -> None:
    tree = sample()
    message = TreeFeed().reset(tree)
    text = encode(message)
    assert decode(text)["rows"] == [{k: v for k, v in row.items() if k != "hasChildren" and v is not None} for row in message["rows"]]
    assert json.loads(text)["rows"][1] == [2, 1, 1, "task", "plan", "pending", "plan", 0, None, 0]
    assert len(text) < len(json.dumps(message)) * 0.7


def test_missed_tick_or_swapped_tree_gives_a_reset() -> None:
    tree = sample()
    feed = TreeFeed()
    feed.reset(tree)
    tree.apply(delta(0, {"op": "removeNode", "id": 4}))  # a change the feed never saw
    change = tree.apply(delta(1, {"op": "removeNode", "id": 5}))
    message = feed.update(tree, [change])
    assert message is not None and message["type"] == "reset"
    message = feed.update(sample(), [])
    assert message is not None and message["type"] == "reset"


def test_patch_for_without_rebuild_never_walks_the_tree(monkeypatch: pytest.MonkeyPatch) -> None:
    tree = sample()
    change = tree.apply(delta(0, {"op": "updateTask", "id": 2, "task": {"nodeId": "plan", "kind": "compute", "state": "finished"}}))
    monkeypatch.setattr(DevToolsTree, "walk", lambda *a, **k: pytest.fail("walked the tree"))
    assert [row["id"] for row in patch_for(tree, [change])["upsert"]] == [2]


# ---------------------------------------------------------------------------- transcripts


def devtools_events(path: Path) -> list[dict[str, Any]]:
    events = []
    for line in path.read_text().splitlines():
        frame = json.loads(line)["frame"]
        if frame.get("type") == "event" and frame.get("event") == "devtools.event":
            events.append(frame["payload"]["event"])
    return events


#: Every transcript with a DevTools stream (errors.jsonl records only error answers).
TRANSCRIPTS = sorted(p for p in recordings() if '"devtools.event"' in p.read_text())


@pytest.mark.parametrize("path", TRANSCRIPTS, ids=[p.stem for p in TRANSCRIPTS])
def test_transcripts_one_message_per_event(path: Path) -> None:
    events = devtools_events(path)
    assert events
    r = Replay(DevToolsTree())
    for event in events:
        r.apply(event)
    assert r.mirror.ordered() == rows_for(r.tree)


@pytest.mark.parametrize("batch", [3, 17])
def test_wide_transcript_in_batches(batch: int) -> None:
    events = devtools_events(recording("wide-run.jsonl"))
    r = Replay(DevToolsTree())
    for i in range(0, len(events), batch):
        r.apply(*events[i:i + batch])
    assert len(r.tree) > 500


# ---------------------------------------------------------------------------- workloads


def workload(tmp_path: Path, nodes: int, deltas: int) -> list[dict[str, Any]]:
    out = tmp_path / f"w{nodes}.jsonl"
    subprocess.run(
        [sys.executable, str(MAKE_WORKLOAD), "--nodes", str(nodes), "--deltas", str(deltas), "--seed", "7", str(out)],
        check=True,
    )
    return [json.loads(line)["payload"]["event"] for line in out.read_text().splitlines()]


def test_workload_replay_matches_in_batches(tmp_path: Path) -> None:
    events = workload(tmp_path, 2000, 400)
    r = Replay(DevToolsTree(events[0]))
    for i in range(1, len(events), 5):
        r.apply(*events[i:i + 5])


def _one_update_bytes(tree: DevToolsTree) -> int:
    """JSON size of the patch for one updateTask on a deep-ish task of ``tree``."""
    target = max((n for n in tree.walk() if n.task is not None), key=lambda n: (len(tree.path(n.id)), n.id))
    feed = TreeFeed()
    feed.reset(tree)
    task = {**target.task, "state": "in-progress", "attempt": 1}  # type: ignore[dict-item]
    change = tree.apply(delta(tree.seq or 0, {"op": "updateTask", "id": target.id, "task": task}))
    message = feed.update(tree, [change])
    assert message is not None
    assert len(message["upsert"]) <= 3  # the task, plus at most the loops summarising it
    return message_bytes({**message, "upsert": message["upsert"][:1]})


def test_bytes_per_update_do_not_grow_with_tree_size(tmp_path: Path) -> None:
    small = DevToolsTree(workload(tmp_path, 100, 0)[0])
    big = DevToolsTree(workload(tmp_path, 10_000, 0)[0])
    small_bytes, big_bytes = _one_update_bytes(small), _one_update_bytes(big)
    print(f"bytes for one updateTask patch: {small_bytes} (100 nodes) vs {big_bytes} (10,000 nodes)")
    assert big_bytes < 400
    # Only the digits of larger ids/labels may differ.
    assert abs(big_bytes - small_bytes) <= 24


def test_feed_counts_what_it_sends(tmp_path: Path) -> None:
    events = workload(tmp_path, 10_000, 60)
    tree = DevToolsTree(events[0])
    feed = TreeFeed()
    reset = feed.encode(feed.reset(tree))
    assert feed.stats.resets == 1 and feed.stats.rows_sent == len(tree)
    print(f"10,000-node reset: {len(reset)} bytes")
    for event in events[1:]:
        message = feed.update(tree, [tree.apply(event)])
        if message is not None:
            assert message["type"] == "patch"
            feed.encode(message)
    stats = feed.stats
    assert stats.patches > 0
    per_patch = (stats.bytes_sent - len(reset)) / stats.patches
    print(f"mean patch {per_patch:.0f} bytes over {stats.patches} patches")
    # Deltas carry 1-4 ops, an added subtree is one task: a few rows at most.
    assert per_patch < 2_000

"""DevToolsTree against the Gateway's applyDelta semantics, real transcripts and random trees."""

from __future__ import annotations

import copy
import gc
import json
import weakref
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from inspector import DevToolsTree, InvalidDelta, InvalidSnapshot, SeqGap
from inspector.treediff import diff_trees

from .recordings import recording, recordings
from .wire import delta as _delta, node, snap, task


def delta(base: int, ops: list[dict[str, Any]]) -> dict[str, Any]:
    return _delta(base, *ops)


def sample() -> DevToolsTree:
    root = node(1, [task(2, "a"), node(3, [task(4, "b"), task(5, "c")])], type="workflow")
    return DevToolsTree(snap(root))


def test_snapshot_roundtrip_keeps_unknown_fields_types_and_states() -> None:
    root = node(1, [task(2, "a", state="waiting-quota", extra={"x": [1, 2]})], type="brand-new-type", surprise=True)
    tree = DevToolsTree(snap(root, seq=7))
    out = tree.snapshot()
    assert out["root"] == root
    assert (out["seq"], out["frameNo"], out["runId"]) == (7, 7, "r")
    assert tree[1].type == "brand-new-type"
    assert tree[2].state == "waiting-quota"
    assert tree.state_counts() == {"waiting-quota": 1}


def test_update_task_replaces_whole_object_and_missing_task_removes_it() -> None:
    tree = sample()
    tree.apply(delta(0, [{"op": "updateTask", "id": 2, "task": {"nodeId": "a", "kind": "compute", "state": "finished"}}]))
    assert tree[2].task == {"nodeId": "a", "kind": "compute", "state": "finished"}
    assert tree.state_counts() == {"finished": 1, "pending": 2}
    tree.apply(delta(1, [{"op": "updateTask", "id": 2}]))
    assert tree[2].task is None
    assert tree.find_task("a") is None
    assert tree.state_counts() == {"pending": 2}


def test_update_props_replaces_whole_object() -> None:
    tree = sample()
    tree.apply(delta(0, [{"op": "updateProps", "id": 4, "props": {"only": 1}}]))
    assert tree[4].props == {"only": 1}


@pytest.mark.parametrize(("index", "expected"), [(-5, [6, 4, 5]), (0, [6, 4, 5]), (1, [4, 6, 5]), (1.7, [4, 6, 5]), (99, [4, 5, 6])])
def test_add_node_clamps_index_like_splice(index: float, expected: list[int]) -> None:
    tree = sample()
    tree.apply(delta(0, [{"op": "addNode", "parentId": 3, "index": index, "node": task(6, "d")}]))
    assert [c.id for c in tree[3].children] == expected
    assert tree.parent(6) is tree[3]
    assert tree.find_task("d") is tree[6]


def test_remove_node_takes_its_subtree_and_root_cannot_go() -> None:
    tree = sample()
    change = tree.apply(delta(0, [{"op": "removeNode", "id": 3}]))
    assert set(change.removed) == {3, 4, 5}
    assert len(tree) == 2 and 4 not in tree
    assert tree.state_counts() == {"pending": 1}
    with pytest.raises(InvalidDelta, match="root"):
        tree.apply(delta(1, [{"op": "removeNode", "id": 1}]))


def test_replace_root_swaps_the_tree() -> None:
    tree = sample()
    change = tree.apply(delta(0, [{"op": "replaceRoot", "node": node(9, [task(10, "z")])}, {"op": "updateTask", "id": 10, "task": {"nodeId": "z", "state": "failed"}}]))
    assert change.rebuilt
    assert [n.id for n in tree.walk()] == [9, 10]
    assert tree.state_counts() == {"failed": 1}
    assert 2 not in tree


def test_what_the_tree_drops_is_freed_by_reference_counting() -> None:
    """No parent/child reference cycles: a removed subtree, a replaced root, a tree replaced by
    a snapshot and a dropped tree go at once, not at the cyclic collector's next full pass."""
    gc.disable()
    try:
        tree = sample()
        removed = weakref.ref(tree[4])
        tree.apply(delta(0, [{"op": "removeNode", "id": 3}]))
        assert removed() is None
        replaced = weakref.ref(tree[2])
        tree.apply(delta(1, [{"op": "replaceRoot", "node": node(9, [task(10, "z")])}]))
        assert replaced() is None
        before_snapshot = weakref.ref(tree[10])
        tree.apply(snap(node(1, [task(2, "a")]), seq=5))
        assert before_snapshot() is None
        last = weakref.ref(tree[2])
        assert tree.parent(2) is tree[1]
        del tree
        assert last() is None
    finally:
        gc.enable()


def test_what_the_tree_keeps_from_separate_frames_shares_its_keys_and_short_strings() -> None:
    """Every delta is decoded from its own text; the tree keeps one copy of each key and short
    value (a run's tree and events held ~1 MB of copies: docs/performance.md, section 6)."""
    tree = sample()
    long_text = "x" * 200
    for seq, (node_id, name) in enumerate([(2, "a"), (4, "b")]):
        text = json.dumps(delta(seq, [{"op": "updateTask", "id": node_id,
                                        "task": {"nodeId": name, "state": "in-progress", "note": long_text}}]))
        tree.apply(json.loads(text))
    first, second = tree[2].fields["task"], tree[4].fields["task"]
    assert first == {"nodeId": "a", "state": "in-progress", "note": long_text}
    key_of = {id(k): k for k in first}
    assert all(id(k) in key_of for k in second)  # the same key objects
    assert first["state"] is second["state"]
    assert first["note"] == second["note"] and first["note"] is not second["note"]  # text is not interned
    assert tree.snapshot()["root"]["children"][0]["task"] == first


def test_the_shared_strings_table_stays_bounded_whatever_the_gateway_sends(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ids and junk from a hostile Gateway cannot grow it: past its limit it starts afresh."""
    from inspector import protocol

    monkeypatch.setattr(protocol, "_shared_strings", {})
    monkeypatch.setattr(protocol, "SHARED_STRINGS_LIMIT", 8)
    for n in range(1000):
        text = json.loads(json.dumps(f"junk-{n}"))
        assert protocol.shared_value(text) == f"junk-{n}"
        assert len(protocol._shared_strings) <= 8
    first, again = json.loads('"in-progress"'), json.loads('"in-progress"')
    assert protocol.shared_value(first) is protocol.shared_value(again) is first
    long_text = json.loads(json.dumps("z" * 65))
    assert protocol.shared_value(long_text) is long_text and long_text not in protocol._shared_strings


def test_any_snapshot_replaces_even_with_lower_seq() -> None:
    tree = sample()
    for i in range(5):
        tree.apply(delta(i, []))
    change = tree.apply(snap(node(1, [task(2, "a")]), seq=3))
    assert tree.seq == 3 and change.rewound and len(tree) == 2


def test_gap_raises_seq_gap_and_changes_nothing() -> None:
    tree = sample()
    before = tree.snapshot()
    with pytest.raises(SeqGap) as info:
        tree.apply(delta(5, [{"op": "removeNode", "id": 3}]))
    assert (info.value.expected, info.value.base_seq) == (0, 5)
    assert tree.snapshot() == before
    with pytest.raises(SeqGap):
        DevToolsTree().apply(delta(0, []))


@pytest.mark.parametrize(
    "bad_op",
    [
        {"op": "teleport", "id": 2},
        {"op": "updateTask", "id": 404, "task": {}},
        {"op": "updateTask", "id": 2, "task": None},
        {"op": "updateProps", "id": 2, "props": "x"},
        {"op": "addNode", "parentId": 404, "index": 0, "node": task(6, "d")},
        {"op": "addNode", "parentId": 3, "index": "first", "node": task(6, "d")},
        {"op": "addNode", "parentId": 3, "index": 0, "node": task(2, "dup")},
        {"op": "addNode", "parentId": 3, "index": 0, "node": {"id": "6"}},
        {"op": "removeNode", "id": 404},
        {"op": "removeNode", "id": True},
        "not an op",
    ],
)
def test_a_failing_delta_is_atomic(bad_op: Any) -> None:
    """Ops before the bad one are undone: the tree is exactly as before."""
    tree = sample()
    before = tree.snapshot()
    counts = tree.state_counts()
    good = [
        {"op": "updateTask", "id": 4, "task": {"nodeId": "b", "state": "finished"}},
        {"op": "addNode", "parentId": 1, "index": 0, "node": task(7, "e")},
        {"op": "removeNode", "id": 5},
        {"op": "replaceRoot", "node": node(1, [node(3, [task(4, "b"), task(5, "c")]), task(2, "a")], type="workflow")},
        {"op": "updateProps", "id": 3, "props": {"k": 1}},
    ]
    with pytest.raises(InvalidDelta) as info:
        tree.apply(delta(0, [*good, bad_op]))
    assert info.value.op_index == len(good) or "ops[" in str(info.value)
    assert tree.snapshot() == before
    assert tree.state_counts() == counts and tree.retries == 0
    assert [n.id for n in tree.walk()] == [1, 2, 3, 4, 5]
    assert tree.find_task("b") is tree[4] and tree.find_task("e") is None


def test_invalid_snapshot_is_rejected_and_keeps_old_tree() -> None:
    tree = sample()
    before = tree.snapshot()
    with pytest.raises(InvalidSnapshot):
        tree.apply(snap(node(1, [task(2, "a"), task(2, "b")])))
    with pytest.raises(InvalidSnapshot):
        tree.apply({"version": 1, "kind": "snapshot", "snapshot": {"version": 1, "frameNo": 0, "seq": "0", "root": node(1)}})
    with pytest.raises(InvalidDelta):
        tree.apply({"version": 1, "kind": "sideways"})
    assert tree.snapshot() == before


def test_lookups_path_parent_index_and_document_order() -> None:
    tree = sample()
    assert [n.id for n in tree.path(5)] == [1, 3, 5]
    assert tree.parent(4) is tree[3] and tree.parent(1) is None
    assert tree.index_of(5) == 1
    assert [n.id for n in tree] == [1, 2, 3, 4, 5]
    assert tree.find_tasks("c", iteration=0) == [tree[5]] and tree.find_tasks("c", iteration=1) == []


def test_inputs_are_not_mutated_and_outputs_are_copies() -> None:
    root = node(1, [task(2, "a")])
    event = snap(root)
    pristine = copy.deepcopy(event)
    tree = DevToolsTree(event)
    assert event == pristine
    out = tree.snapshot()
    out["root"]["children"][0]["task"]["state"] = "mutated"
    assert tree[2].state == "pending"


def test_deep_tree_does_not_exhaust_the_stack() -> None:
    leaf: dict[str, Any] = node(5000)
    for i in range(4999, 0, -1):
        leaf = node(i, [leaf])
    tree = DevToolsTree(snap(leaf))
    assert len(tree) == 5000 and len(tree.path(5000)) == 5000


# ---------------------------------------------------------------- transcripts


def transcript(name: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in recording(name).read_text().splitlines() if line.strip()]


@pytest.mark.parametrize("name", sorted(p.name for p in recordings("*-run.jsonl")) + ["resume-after-seq.jsonl"])
def test_transcripts_end_equal_to_the_gateway_snapshot(name: str) -> None:
    """Every recorded devtools.event applied in order; the tree equals each later getDevToolsSnapshot."""
    tree = DevToolsTree()
    compared = 0
    for record in transcript(name):
        frame = record["frame"]
        if record["dir"] != "recv":
            continue
        if frame.get("event") == "devtools.event":
            tree.apply(frame["payload"]["event"])
        payload = frame.get("payload")
        if frame.get("type") == "res" and isinstance(payload, dict) and "root" in payload and not tree.empty:
            assert tree.snapshot()["root"] == payload["root"]
            compared += 1
    assert not tree.empty
    if name != "resume-after-seq.jsonl":
        assert compared >= 1


def test_rewind_transcript_rebaselines_on_lower_seq() -> None:
    tree = DevToolsTree()
    rewound = []
    for record in transcript("rewind-run.jsonl"):
        frame = record["frame"]
        if record["dir"] == "recv" and frame.get("event") == "devtools.event":
            change = tree.apply(frame["payload"]["event"])
            rewound.append(change.rewound)
    assert any(rewound)


def test_bench_workload_reaches_the_expected_tree(tmp_path: Path) -> None:
    import subprocess
    import sys

    out = tmp_path / "w.jsonl"
    script = Path(__file__).parent / "benchmarks" / "make_workload.py"
    subprocess.run([sys.executable, str(script), "--nodes", "2000", "--deltas", "400", "--seed", "3", str(out)], check=True)
    tree = DevToolsTree()
    for line in out.read_text().splitlines():
        tree.apply(json.loads(line)["payload"]["event"])
    expected = json.loads((tmp_path / "w.jsonl.final.json").read_text())
    assert tree.snapshot()["root"] == expected["root"]
    assert tree.seq == expected["seq"]


# ---------------------------------------------------------------- properties

STATES = st.sampled_from(["pending", "in-progress", "finished", "failed", "waiting-quota"])


SMALL_IDS = st.integers(1, 40)


@st.composite
def trees(draw: st.DrawFn, ids: st.SearchStrategy[int] = SMALL_IDS) -> dict[str, Any]:
    """Random wire trees with unique ids drawn from a small pool, so two draws overlap."""
    pool = draw(st.lists(ids, min_size=1, max_size=25, unique=True))
    nodes: list[dict[str, Any]] = []
    for i, nid in enumerate(pool):
        n = node(nid, type=draw(st.sampled_from(["workflow", "task", "sequence", "loop"])) if i else "workflow")
        if draw(st.booleans()):
            n["props"] = {"k": draw(st.integers(0, 3))}
        if draw(st.booleans()):
            n["task"] = {"nodeId": f"t{nid}", "state": draw(STATES), "attempt": draw(st.integers(0, 3))}
        if i:
            parent = nodes[draw(st.integers(0, i - 1))]
            parent["children"].insert(draw(st.integers(0, len(parent["children"]))), n)
        nodes.append(n)
    return nodes[0]


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(trees(), trees())
def test_applying_the_diff_of_two_trees_gives_the_second(a: dict[str, Any], b: dict[str, Any]) -> None:
    tree = DevToolsTree(snap(a))
    ops = diff_trees(a, b)
    tree.apply(delta(0, ops))
    assert tree.snapshot()["root"] == b
    assert sum(tree.state_counts().values()) == sum(1 for n in tree if n.task is not None)
    assert tree.retries == sum(max(0, n.task["attempt"] - 1) for n in tree if n.task is not None)


OP_NAMES = st.sampled_from(["updateTask", "updateProps", "addNode", "removeNode", "replaceRoot", "bogus"])
SMALL = st.one_of(st.integers(-2, 45), st.floats(allow_nan=True), st.text(max_size=2), st.none(), st.booleans())


@st.composite
def ops(draw: st.DrawFn) -> dict[str, Any]:
    """Ops that are often valid and sometimes subtly not (unknown ids, wrong types, duplicates)."""
    op: dict[str, Any] = {"op": draw(OP_NAMES)}
    for key in draw(st.sets(st.sampled_from(["id", "parentId", "index", "node", "task", "props"]))):
        if key in ("node",):
            op[key] = draw(st.one_of(trees(st.integers(1, 60)), SMALL))
        elif key in ("task", "props"):
            op[key] = draw(st.one_of(st.just({"state": "finished"}), SMALL))
        else:
            op[key] = draw(SMALL)
    return op


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(trees(), st.lists(ops(), max_size=4))
def test_random_ops_apply_completely_or_not_at_all(a: dict[str, Any], ops: list[dict[str, Any]]) -> None:
    tree = DevToolsTree(snap(a))
    before = tree.snapshot()
    try:
        tree.apply(delta(0, ops))
    except InvalidDelta:
        assert tree.snapshot() == before
        assert tree.seq == 0
    else:
        assert tree.seq == 1
        assert len(tree) == sum(1 for _ in tree.walk())


@settings(max_examples=100)
@given(trees())
def test_snapshot_round_trip(a: dict[str, Any]) -> None:
    tree = DevToolsTree(snap(a, seq=4))
    again = DevToolsTree({"version": 1, "kind": "snapshot", "snapshot": tree.snapshot()})
    assert again.snapshot() == tree.snapshot()
    assert [n.id for n in again] == [n.id for n in tree]

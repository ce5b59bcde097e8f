"""TaskStateHistory: the task states of every frame the stream showed, and honesty about
the frames it did not (inspector/history.py)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings, strategies as st

from inspector.history import TaskStateHistory
from inspector.tree import DevToolsTree
from tests.recordings import recording
from tests.wire import delta, node, snap, task


def devtools_events(name: str) -> list[dict[str, Any]]:
    events = []
    for line in recording(f"{name}.jsonl").read_text().splitlines():
        frame = json.loads(line)["frame"]
        if frame.get("type") == "event" and frame.get("event") == "devtools.event":
            events.append(frame["payload"]["event"])
    return events


def states(tree: DevToolsTree) -> dict[int, str]:
    return {n.id: n.state for n in tree.walk() if n.state is not None}


@pytest.mark.parametrize("fixture", ["rich-run", "doomed-run", "wide-run", "rewind-run", "gated-run"])
def test_every_frame_streamed_reads_back_as_it_was(fixture: str) -> None:
    """Replay a real Gateway recording; whatever frame we ask afterwards, the history gives the
    task states the tree had right after that frame was applied (after a rewind, the frames of
    the new history)."""
    tree = DevToolsTree()
    history = TaskStateHistory()
    truth: dict[int, dict[int, str]] = {}
    for event in devtools_events(fixture):
        change = tree.apply(event)
        history.observe(tree, change)
        if change.rewound:
            truth = {seq: s for seq, s in truth.items() if seq <= change.seq}
        truth[change.seq] = states(tree)
    assert len(truth) > 3
    for seq, want in truth.items():
        assert history.states_at(seq) == want, f"frame {seq}"
    assert history.states_at(max(truth) + 1) is None  # not seen yet


def test_frames_before_watching_and_missed_stretches_are_not_guessed() -> None:
    tree = DevToolsTree()
    history = TaskStateHistory()
    history.observe(tree, tree.apply(snap(node(1, [task(10, "a", "in-progress")]), seq=5)))
    assert history.states_at(4) is None  # before we looked
    assert history.states_at(5) == {10: "in-progress"}
    history.observe(tree, tree.apply(delta(5, {"op": "updateTask", "id": 10, "task": task(10, "a", "finished")["task"]})))
    # a reconnect rebaselines at frame 9: frames 7 and 8 were never seen
    history.observe(tree, tree.apply(snap(node(1, [task(10, "a", "failed")]), seq=9)))
    assert history.states_at(6) == {10: "finished"}
    assert history.states_at(7) is None and history.states_at(8) is None
    assert history.states_at(9) == {10: "failed"}


def test_removed_and_added_tasks_exist_only_in_their_frames() -> None:
    tree = DevToolsTree()
    history = TaskStateHistory()
    history.observe(tree, tree.apply(snap(node(1, [task(10, "a")]), seq=1)))
    history.observe(tree, tree.apply(delta(1, {"op": "addNode", "parentId": 1, "index": 1,
                                               "node": node(2, [task(11, "b", "in-progress")])})))
    history.observe(tree, tree.apply(delta(2, {"op": "removeNode", "id": 10})))
    assert history.states_at(1) == {10: "pending"}
    assert history.states_at(2) == {10: "pending", 11: "in-progress"}
    assert history.states_at(3) == {11: "in-progress"}


def test_memory_is_bounded_and_the_present_stays_known() -> None:
    tree = DevToolsTree()
    history = TaskStateHistory(max_entries=50)
    history.observe(tree, tree.apply(snap(node(1, [task(10, "a")]), seq=0)))
    for seq in range(200):
        state = ("in-progress", "finished")[seq % 2]
        history.observe(tree, tree.apply(delta(seq, {"op": "updateTask", "id": 10, "task": task(10, "a", state)["task"]})))
        assert len(history) <= 51
    assert history.states_at(200) == {10: "finished"}
    assert history.covered_from is not None and history.covered_from > 100
    assert history.states_at(1) is None


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.sampled_from(["pending", "in-progress", "finished", "failed", "x-new"])),
                max_size=40),
       st.integers(0, 40))
def test_random_updates_and_a_rewind_read_back_exactly(updates: list[tuple[int, str]], rewind_to: int) -> None:
    tree = DevToolsTree()
    history = TaskStateHistory()
    tasks = [task(10 + i, f"t{i}") for i in range(4)]
    history.observe(tree, tree.apply(snap(node(1, tasks), seq=0)))
    truth = {0: states(tree)}
    for i, s in updates:
        seq = tree.seq or 0
        history.observe(tree, tree.apply(delta(seq, {"op": "updateTask", "id": 10 + i, "task": task(10 + i, f"t{i}", s)["task"]})))
        truth[seq + 1] = states(tree)
    to = min(rewind_to, tree.seq or 0)
    back = {k: v for k, v in truth[to].items()}
    root = node(1, [task(10 + i, f"t{i}", back[10 + i]) for i in range(4)])
    history.observe(tree, tree.apply(snap(root, seq=to)))
    for seq in range(len(updates) + 2):
        expected = truth[seq] if seq <= to else None
        assert history.states_at(seq) == expected

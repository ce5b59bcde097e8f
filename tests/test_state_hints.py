"""Task states announced by ``node.*`` run events ahead of the DevTools frame (``inspector/state_hints.py``).

A hint shows on its row until the tree has the state; it never moves a row backwards, a stale
or repeated event gives none, and a rewind, a new tree or a frame that never comes ends it.
The property test drives random interleavings of events and frames through the row feed and
a :class:`~dashboard.treerows.RowMirror`, as the browser applies them.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings, strategies as st

from dashboard.treerows import RowMirror, TreeFeed, decode, rows_for, with_hints
from inspector import DevToolsTree
from inspector.state_hints import StateHints

from .wire import delta, node, snap, task

NAMES = ("a", "b", "c")


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def tree_of(*states: str, seq: int = 0) -> DevToolsTree:
    tasks = [task(10 + i, name, state=state, attempt=1) for i, (name, state) in enumerate(zip(NAMES, states, strict=False))]
    return DevToolsTree(snap(node(1, tasks, type="workflow", name="w"), seq=seq))


def frame(tree: DevToolsTree, name: str, state: str, attempt: int = 1) -> None:
    target = tree.find_task(name)
    assert target is not None and tree.seq is not None
    tree.apply(delta(tree.seq, {"op": "updateTask", "id": target.id,
                                "task": {**target.task, "state": state, "attempt": attempt}}))  # type: ignore[dict-item]


def test_an_event_ahead_of_its_frame_is_shown_until_the_frame_confirms_it() -> None:
    tree = tree_of("pending", "pending")
    hints = StateHints()
    assert hints.note(tree, "node.started", {"runId": "r", "nodeId": "a", "state": "in-progress"})
    assert dict(hints.settle(tree)) == {10: "in-progress"}
    assert hints.note(tree, "node.finished", {"nodeId": "a", "state": "finished"})
    frame(tree, "a", "in-progress")  # the older frame: behind the hint, which stays
    assert dict(hints.settle(tree)) == {10: "finished"}
    frame(tree, "a", "finished")
    assert dict(hints.settle(tree)) == {}


def test_a_hint_never_moves_a_row_backwards() -> None:
    tree = tree_of("finished", "in-progress")
    hints = StateHints()
    # A late or repeated event (an out-of-process run's events come a second late).
    assert not hints.note(tree, "node.started", {"nodeId": "a"})
    assert not hints.note(tree, "node.started", {"nodeId": "b"})  # what the tree already says
    assert hints.settle(tree) == {}


def test_the_tree_wins_when_it_reaches_another_state_at_the_hints_stage() -> None:
    tree = tree_of("in-progress")
    hints = StateHints()
    hints.note(tree, "node.finished", {"nodeId": "a"})
    frame(tree, "a", "failed")
    assert dict(hints.settle(tree)) == {}
    hints.note(tree, "node.started", {"nodeId": "b"})  # not in this tree: no hint
    assert len(hints) == 0


def test_a_retry_is_ahead_of_the_failed_attempt_until_the_tree_has_the_new_one() -> None:
    tree = tree_of("in-progress")
    hints = StateHints()
    frame(tree, "a", "failed", attempt=1)
    assert hints.note(tree, "node.retrying", {"nodeId": "a", "attempt": 2})
    assert dict(hints.settle(tree)) == {10: "in-progress"}
    hints.note(tree, "node.finished", {"nodeId": "a"})  # keeps the attempt it is about
    assert dict(hints.settle(tree)) == {10: "finished"}  # the tree's "failed" is attempt 1
    frame(tree, "a", "failed", attempt=2)
    assert dict(hints.settle(tree)) == {}  # the new attempt failed: the tree wins


def test_waiting_and_pending_events_and_replays_give_no_hint() -> None:
    tree = tree_of("in-progress", "pending")
    hints = StateHints()
    assert not hints.note(tree, "node.waiting_approval", {"nodeId": "a", "state": "waiting"})
    assert not hints.note(tree, "node.pending", {"nodeId": "b", "iteration": 0})
    assert not hints.note(tree, "task.output", {"nodeId": "a"})
    assert not hints.note(tree, "node.started", {"nodeId": 3})
    assert not hints.note(tree, "node.started", None)


def test_the_loops_current_iteration_gets_the_hint_unless_the_event_names_one() -> None:
    body = [task(20, "refine", iteration=0, state="finished"), task(21, "refine", iteration=1)]
    tree = DevToolsTree(snap(node(1, [node(2, body, type="loop")], type="workflow")))
    hints = StateHints()
    hints.note(tree, "node.started", {"nodeId": "refine"})
    assert dict(hints.settle(tree)) == {21: "in-progress"}
    hints.note(tree, "node.cancelled", {"nodeId": "refine", "iteration": 1})
    assert dict(hints.settle(tree)) == {21: "cancelled"}


def test_a_rewind_a_new_tree_or_a_frame_that_never_comes_ends_the_hints() -> None:
    clock = Clock()
    tree = tree_of("pending", seq=5)
    hints = StateHints(ttl=10.0, clock=clock)
    hints.note(tree, "node.started", {"nodeId": "a"})
    tree.apply(snap(node(1, [task(10, "a", state="pending", attempt=1)], type="workflow"), seq=3))  # rewound
    assert dict(hints.settle(tree)) == {}
    hints.note(tree, "node.started", {"nodeId": "a"})
    assert dict(hints.settle(tree_of("pending"))) == {}  # another tree object
    hints.note(tree, "node.started", {"nodeId": "a"})
    clock.now += 9.9
    assert dict(hints.settle(tree)) == {10: "in-progress"}
    clock.now += 0.2
    assert dict(hints.settle(tree)) == {}
    hints.note(tree, "node.started", {"nodeId": "a"})
    tree.apply(delta(tree.seq or 0, {"op": "removeNode", "id": 10}))  # its task left the tree
    assert dict(hints.settle(tree)) == {}


def test_settle_returns_one_object_per_version() -> None:
    tree = tree_of("pending")
    hints = StateHints()
    empty = hints.settle(tree)
    assert hints.settle(tree) is empty
    hints.note(tree, "node.started", {"nodeId": "a"})
    first = hints.settle(tree)
    assert first is not empty and hints.settle(tree) is first


def test_with_hints_leaves_a_message_without_hints_alone_and_never_changes_it() -> None:
    tree = tree_of("pending", "pending")
    reset = {"type": "reset", "run": "r", "rows": rows_for(tree)}
    assert with_hints(reset, tree, {}, {}) is reset
    hinted = with_hints(reset, tree, {}, {11: "failed"})
    assert [r.get("state") for r in hinted["rows"]] == [None, "pending", "failed"]
    assert reset["rows"][2]["state"] == "pending"
    patch = {"type": "patch", "remove": [], "add": [], "at": [], "upsert": []}
    # The hint of row 10 went, row 11's came: both rows are resent; row 1 (no state) never is.
    out = with_hints(patch, tree, {10: "in-progress", 1: "x"}, {11: "finished", 1: "x"})
    assert sorted((r["id"], r["state"]) for r in out["upsert"]) == [(10, "pending"), (11, "finished")]
    assert patch["upsert"] == []


# ---------------------------------------------------------------------------- property

STATES = ("pending", "in-progress", "finished", "failed")
EVENTS = {"in-progress": "node.started", "finished": "node.finished", "failed": "node.failed"}
STAGE = {"pending": 0, "in-progress": 1, "finished": 2, "failed": 2}

step = st.one_of(
    st.tuples(st.just("event"), st.sampled_from(NAMES), st.sampled_from(tuple(EVENTS))),
    st.tuples(st.just("frame"), st.sampled_from(NAMES), st.sampled_from(STATES)),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(step, max_size=40))
def test_the_rows_are_the_tree_with_the_live_hints_and_never_behind_it(steps: list[tuple[str, str, str]]) -> None:
    tree = tree_of("pending", "pending", "pending")
    hints = StateHints()
    feed = TreeFeed()
    mirror = RowMirror()
    mirror.apply(decode(feed.encode(feed.reset(tree, hints=hints.settle(tree)))))
    for kind, name, state in steps:
        changes: list[Any] = []
        if kind == "event":
            hints.note(tree, EVENTS[state], {"nodeId": name})
        else:
            target = tree.find_task(name)
            assert target is not None and tree.seq is not None
            changes.append(tree.apply(delta(tree.seq, {"op": "updateTask", "id": target.id,
                                                       "task": {**target.task, "state": state}})))  # type: ignore[dict-item]
        now = hints.settle(tree)
        message = feed.update(tree, changes, hints=now)
        if message is not None:
            mirror.apply(decode(feed.encode(message)))
        expected = rows_for(tree)
        for row in expected:
            if row["id"] in now:
                row["state"] = now[row["id"]]
        assert mirror.ordered() == expected
        for row in mirror.ordered():
            truth = tree.get(row["id"])
            assert truth is not None
            if truth.task is not None:
                assert STAGE[row["state"]] >= STAGE[truth.state or "pending"]  # never behind the tree

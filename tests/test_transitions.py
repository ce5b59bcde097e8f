"""TransitionLog: re-emitted transitions are repeats, retries and iterations are news."""

from __future__ import annotations

from inspector.transcript import extract_runs, load_sessions
from inspector.transitions import TransitionLog

from .recordings import recording


def _news(name: str) -> list[tuple[str, str | None]]:
    """The (event, nodeId) of every recorded run event the log calls news, in order."""
    run = extract_runs(load_sessions(recording(name)))[0]
    log = TransitionLog()
    return [(e.event, e.payload.get("nodeId")) for e in run.run_events if not log.is_repeat(e.event, e.payload)]


def test_gated_run_logs_each_transition_once() -> None:
    news = _news("gated-run.jsonl")
    assert news.count(("node.started", "build")) == 1
    assert news.count(("node.pending", "build")) == 1
    assert news.count(("node.finished", "build")) == 1
    assert news.count(("node.started", "deploy")) == 1
    assert news.count(("node.finished", "deploy")) == 1
    assert news.count(("approval.requested", "deploy")) == 1
    assert news.count(("node.waiting_approval", "deploy")) == 1
    assert news.count(("approval.decided", "deploy")) == 1
    assert news.count(("run.completed", None)) == 1
    assert news == [
        ("node.pending", "build"), ("node.started", "build"), ("node.finished", "build"),
        ("approval.requested", "deploy"), ("node.waiting_approval", "deploy"),
        ("node.started", "deploy"), ("node.finished", "deploy"), ("run.completed", None),
        ("approval.decided", "deploy"),
    ]


def test_rich_run_keeps_its_retry_and_loop_iterations() -> None:
    """``flaky`` fails, retries (attempt 2) and starts again; ``refine`` loops 3 times."""
    news = _news("rich-run.jsonl")
    assert news.count(("node.started", "flaky")) == 2
    assert news.count(("node.retrying", "flaky")) == 1
    assert news.count(("node.started", "refine")) == 3
    assert news.count(("node.finished", "refine")) == 3
    assert news.count(("run.completed", None)) == 1


def test_durable_history_row_repeats_the_live_event() -> None:
    log = TransitionLog()
    assert not log.is_repeat("node.started", {"nodeId": "a", "state": "in-progress"})
    assert log.is_repeat("node.started", {"nodeId": "a", "state": "in-progress", "iteration": 0, "attempt": 1})
    assert log.where({"nodeId": "a"}) == (0, 1)


def test_run_completed_after_the_run_moved_again_is_news() -> None:
    log = TransitionLog()
    assert not log.is_repeat("run.completed", {"status": "finished"})
    assert log.is_repeat("run.completed", {"status": "finished"})
    assert not log.is_repeat("run.completed", {"status": "failed"})
    assert not log.is_repeat("node.started", {"nodeId": "x", "state": "in-progress"})
    assert not log.is_repeat("run.completed", {"status": "failed"})
    assert not log.is_repeat("run.resumed", {})
    assert not log.is_repeat("run.completed", {"status": "failed"})


def test_reset_forgets_after_a_rewind() -> None:
    log = TransitionLog()
    payload = {"nodeId": "a", "state": "finished"}
    assert not log.is_repeat("node.finished", payload)
    log.reset()
    assert not log.is_repeat("node.finished", payload)


def test_other_events_are_never_repeats() -> None:
    log = TransitionLog()
    beat = {"nodeId": "a", "iteration": 0, "attempt": 1}
    assert not log.is_repeat("task.heartbeat", beat)
    assert not log.is_repeat("task.heartbeat", beat)
    assert not log.is_repeat("node.started", {"state": "in-progress"})  # no node: nothing to compare
    assert not log.is_repeat("node.started", {"state": "in-progress"})


def test_a_state_that_cannot_be_hashed_is_compared_as_it_is() -> None:
    """A malformed event's state (a list) is neither refused nor taken for a new transition twice."""
    log = TransitionLog()
    assert not log.is_repeat("node.started", {"nodeId": "x", "state": ["odd"]})
    assert log.is_repeat("node.started", {"nodeId": "x", "state": ["odd"]})
    assert not log.is_repeat("node.started", {"nodeId": "x", "state": "in-progress"})
    assert not log.is_repeat("node.started", {"nodeId": "y", "state": "in-progress"})
    assert log.is_repeat("node.started", {"nodeId": "y", "state": "in-progress"})


def test_the_shared_values_stay_bounded_whatever_the_states() -> None:
    """A Gateway sending a new state on every event fills the log's table of shared values only
    up to its bound, and every transition is still compared as it is."""
    from inspector.transitions import SHARED_TRANSITION_VALUES

    log = TransitionLog()
    for i in range(3 * SHARED_TRANSITION_VALUES):
        assert not log.is_repeat("node.started", {"nodeId": "x", "state": f"junk-{i}"})
        assert log.is_repeat("node.started", {"nodeId": "x", "state": f"junk-{i}"})
    assert len(log._values) == SHARED_TRANSITION_VALUES

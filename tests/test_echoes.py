"""The Gateway's echo of agent events (its out-of-process bridge re-sending a run's rows)."""

from __future__ import annotations

from typing import Any

from hypothesis import given, strategies as st

from inspector.agents import RunAgents
from inspector.echoes import EchoFilter

Event = tuple[str, dict[str, Any]]


def task_run(node: str, lines: list[str], attempt: int | None = None) -> list[Event]:
    """A node's events as the Gateway maps them (no timestamps, no attempt on transitions)."""
    agent = {"nodeId": node, "iteration": 0, "attempt": attempt or 1}
    events: list[Event] = [("node.pending", {"nodeId": node, "iteration": 0, "state": "pending"}),
                           ("node.started", {"nodeId": node, "state": "in-progress"})]
    events += [("task.output", {"nodeId": node, "output": line, "stream": "stdout"}) for line in lines]
    events += [("agent.session", {**agent, "transcript": {"role": "assistant", "text": line}}) for line in lines]
    events.append(("node.finished", {"nodeId": node, "state": "finished"}))
    return events


def fold(events: list[Event]) -> RunAgents:
    agents = RunAgents("r")
    for seq, (name, payload) in enumerate(events, 1):
        agents.apply(name, payload, seq=seq)
    return agents


def shown(agents: RunAgents, node: str) -> tuple[str, list[Any]]:
    attempt = agents.attempt(node)
    assert attempt is not None
    return attempt.text(), attempt.transcript


def test_a_run_echoed_after_its_end_shows_each_line_and_row_once() -> None:
    first = task_run("a", ["x\n", "x\n", "y\n"])  # a repeated line is the task's, not an echo
    agents = fold(first + first)
    assert shown(agents, "a") == shown(fold(first), "a")
    text, transcript = shown(agents, "a")
    assert text == "x\nx\ny\n" and len(transcript) == 3


def test_a_retry_after_an_echo_is_news() -> None:
    first = task_run("a", ["x\n"])
    retry = [("node.retrying", {"nodeId": "a", "attempt": 2}), *task_run("a", ["x\n"], attempt=2)[1:]]
    agents = fold(first + first + retry)
    attempt = agents.attempt("a", 0, 2)
    assert attempt is not None and len(attempt.transcript) == 1


def test_without_a_repeated_transition_nothing_is_compared() -> None:
    echoes = EchoFilter()
    assert not echoes.is_echo("node.started", {"nodeId": "a"})
    line = {"nodeId": "a", "output": ".", "stream": "stdout"}
    assert [echoes.is_echo("task.output", line) for _ in range(3)] == [False, False, False]
    assert not echoes.is_echo("node.started", {"nodeId": "a"})  # a repeated transition: an echo begins
    assert echoes.is_echo("task.output", line) and echoes.dropped == 1


@given(st.lists(st.tuples(st.sampled_from("ab"), st.lists(st.sampled_from(["x\n", "y\n"]), max_size=4)),
                min_size=1, max_size=4, unique_by=lambda t: t[0]),
       st.integers(min_value=0))
def test_an_echo_at_any_point_changes_nothing(tasks: list[tuple[str, list[str]]], cut: int) -> None:
    """The bridge can echo what the database holds at any moment: a prefix of the run."""
    events = [event for node, lines in tasks for event in task_run(node, lines)]
    cut %= len(events) + 1
    echoed = fold(events[:cut] + events[:cut] + events[cut:])
    alone = fold(events)
    for node, _ in tasks:
        assert shown(echoed, node) == shown(alone, node)

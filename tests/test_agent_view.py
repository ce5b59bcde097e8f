"""The agents in the store (live, durable, token usage, shared by sessions) and the Agent view's
pure parts (HTML building, escaping, ANSI).

The store tests replay the recorded agentic run (``agents-run.jsonl``: an ``agents`` run and an
``agent-retry`` run from the real Gateway) through the replay gateway, which serves what the
Gateway serves: live run events while the run plays, and once it has ended (and its replay
window is let go) the durable history under the engine's names plus ``listRunTokenUsage``.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

import pytest

from dashboard.hub import GatewayHub
from dashboard.store import RunStore
from inspector.agents import RunAgents
from inspector.client import GatewayClient
from inspector.items import RunEvent
from inspector.protocol import EventFrame
from inspector.run_history import DURABLE_SOURCE, LIVE_SOURCE, durable_run_events, event_source
from tests.replay_support import TOKEN, make_gateway, runs_of

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from tests.faulty_replay import FaultyReplayGateway

AGENTS_RUNS = runs_of("agents-run.jsonl")


async def until(condition: Callable[[], bool], timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met within {timeout} s")
        await asyncio.sleep(0.02)


@pytest.fixture
async def agents_gateway() -> AsyncIterator[FaultyReplayGateway]:
    gateway = make_gateway(AGENTS_RUNS, speed=5.0)
    await gateway.start()
    try:
        yield gateway
    finally:
        await gateway.stop()


def _run_of(gateway: FaultyReplayGateway, workflow: str) -> str:
    return next(r for r in gateway.run_ids() if gateway.player.runs[r].recorded.workflow == workflow)


def _records(agents: RunAgents) -> list[tuple[Any, ...]]:
    return [
        (a.key, a.status, a.text(), sorted((x.id, x.status) for x in a.actions.values()), a.answer, a.usage, a.model)
        for a in agents
    ]


# ---------------------------------------------------------------------------- durable names


def test_durable_rows_become_the_live_agent_events() -> None:
    rows = [
        {"seq": 7, "event": "NodeOutput", "timestampMs": 1000,
         "payload": {"nodeId": "a", "iteration": 0, "attempt": 2, "text": "hi\n", "stream": "stderr"}},
        {"seq": 8, "event": "TokenUsageReported", "timestampMs": 1001,
         "payload": {"nodeId": "a", "iteration": 0, "attempt": 2, "model": "m", "inputTokens": 3}},
        {"seq": 9, "event": "AgentEvent", "timestampMs": 1002,
         "payload": {"nodeId": "a", "iteration": 0, "attempt": 2, "event": {"type": "completed", "answer": "x"}}},
    ]
    events = durable_run_events(rows, "r")
    assert [e.frame.event for e in events] == ["task.output", "token.usage", "agent.event"]
    assert events[0].frame.payload["output"] == "hi\n" and events[0].frame.payload["attempt"] == 2
    assert [event_source(e) for e in events] == [(DURABLE_SOURCE, 7), (DURABLE_SOURCE, 8), (DURABLE_SOURCE, 9)]
    live = RunEvent(EventFrame("task.output", {"nodeId": "a", "output": "x"}, seq=3), 41, True)
    assert event_source(live) == (LIVE_SOURCE, 41)


# ---------------------------------------------------------------------------- the store


async def test_store_folds_a_live_agentic_run_and_its_token_usage(agents_gateway: FaultyReplayGateway) -> None:
    run_id = _run_of(agents_gateway, "agents")
    hub = GatewayHub(GatewayClient(agents_gateway.url, TOKEN))
    store = RunStore(hub=hub, run_id=run_id)
    other = RunStore(hub=hub, run_id=run_id)
    versions: list[tuple[int, tuple[Any, ...]]] = []
    store.param.watch(lambda e: versions.append((e.new, store.changed_attempts)), "agents_version")
    try:
        first = store.agents
        await until(lambda: any(a.text() for a in store.agents), what="output while the run plays")
        assert not store.settled  # the output is there before the run ends
        await until(lambda: store.settled, timeout=60, what="run settled")
        await store.wait_idle()
        agents = store.agents
        assert agents is first and other.agents is agents  # one model per run, shared
        assert {a.node_id for a in agents} == {"research", "write", "review", "local"}
        assert all(a.status == "finished" and a.answer and a.actions and a.usage for a in agents)
        # One tick per flush that changed the agents (how many flushes the run took depends on
        # the machine's pace), each naming the attempts it changed, together all of them.
        assert versions and all(changed for _, changed in versions)
        assert {key for _, changed in versions for key in changed} == set(agents.attempts)
        rows = await hub.client.list_run_token_usage(run_id)
        assert len(rows) == 4 and agents.totals().input == sum(r["inputTokens"] for r in rows)
        shared = hub.shared_view(run_id)
        assert shared is not None and shared.agents.shared > 0  # the second session reused the fold
        assert store.prices is not None and agents.cost(store.prices).cost_usd is not None
        live_records = _records(agents)
        store.run_id = None
        assert store.agents is not agents and len(store.agents) == 0
    finally:
        store.close()
        other.close()
        await hub.aclose()

    # Opened again after the run ended: the replay window is gone, the durable history stands in.
    await until(lambda: agents_gateway.player.runs[run_id].event_window_released, what="window released")
    hub = GatewayHub(GatewayClient(agents_gateway.url, TOKEN))
    later = RunStore(hub=hub, run_id=run_id)
    try:
        await until(lambda: len(later.agents) == 4 and all(a.usage and a.status == "finished" for a in later.agents),
                    what="durable agents")
        await later.wait_idle()
        assert _records(later.agents) == live_records  # same records, nothing counted twice
    finally:
        later.close()
        await hub.aclose()


async def test_store_follows_a_retried_agent(agents_gateway: FaultyReplayGateway) -> None:
    run_id = _run_of(agents_gateway, "agent-retry")
    hub = GatewayHub(GatewayClient(agents_gateway.url, TOKEN))
    store = RunStore(hub=hub, run_id=run_id)
    try:
        await until(lambda: store.settled, timeout=60, what="run settled")
        await store.wait_idle()
        attempts = store.agents.attempts_of("flaky-agent")
        assert [(a.attempt, a.status) for a in attempts] == [(1, "failed"), (2, "finished")]
        assert store.agents.attempt_counts() == (2, 1)
    finally:
        store.close()
        await hub.aclose()


def test_store_without_hub_owns_its_agents() -> None:
    store = RunStore(run_id="r")
    assert isinstance(store.agents, RunAgents) and store.agents.run_id == "r"
    before = store.agents
    store.run_id = "s"
    assert store.agents is not before and store.agents.run_id == "s"


# ---------------------------------------------------------------------------- the view's pure parts


def _attempt_with(*chunks: tuple[str, str], cap: int = 1 << 20) -> tuple[RunAgents, Any]:
    agents = RunAgents("r", output_cap_bytes=cap)
    agents.apply("node.pending", {"nodeId": "a", "iteration": 0})
    for stream, text in chunks:
        agents.apply("task.output", {"nodeId": "a", "output": text, "stream": stream})
    return agents, agents.attempt("a")


def _text_of(html_text: str) -> str:
    """What a browser's textContent gives for the HTML (tags out, entities decoded)."""
    import html as html_lib
    import re

    return html_lib.unescape(re.sub(r"<[^>]*>", "", html_text))


def test_output_html_escapes_agent_markup_and_renders_ansi() -> None:
    from dashboard.views.agent import OutputFeed

    hostile = "<script>alert(1)</script> <img src=x onerror=alert(2)> \x1b[32mgreen\x1b[0m \x1b]0;t\x07end\n"
    _, attempt = _attempt_with(("stdout", hostile), ("stderr", "\x1b[31mbad\x1b[0m\n\xff\ufffd bytes\n"))
    message = OutputFeed().reset(attempt)
    html_text = message["html"]
    assert "<script" not in html_text and "<img" not in html_text and "\x1b" not in html_text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html_text
    assert '<span style="color:#00cd00">green</span>' in html_text
    assert 'class="sd-o-stderr" data-c="1" title="stderr"' in html_text
    assert _text_of(html_text) == (
        "<script>alert(1)</script> <img src=x onerror=alert(2)> green end\n" "bad\n\xff\ufffd bytes\n"
    )
    assert "[32m" not in _text_of(html_text) and "0;t" not in _text_of(html_text)


def test_output_feed_appends_only_new_chunks_and_resets_on_another_attempt() -> None:
    from dashboard.views.agent import OutputFeed

    agents, attempt = _attempt_with(("stdout", "\x1b[32mone "), ("stdout", "two\x1b[0m\n"))
    feed = OutputFeed()
    first = feed.update(attempt)
    assert first is not None and first["type"] == "reset" and first["seq"] == 1
    assert feed.update(attempt) is None  # nothing new, nothing sent
    agents.apply("task.output", {"nodeId": "a", "output": "three\x1b[", "stream": "stdout"})
    agents.apply("task.output", {"nodeId": "a", "output": "1mbold\x1b[0m\n", "stream": "stdout"})
    second = feed.update(attempt)
    assert second is not None and second["type"] == "append" and second["seq"] == 2
    assert "one" not in second["html"] and _text_of(second["html"]) == "three" + "bold\n"
    assert '<span style="font-weight:bold">bold</span>' in second["html"]  # escape cut across chunks
    assert 'data-c="2"' in second["html"] and 'data-c="3"' in second["html"] and second["first"] == 0
    assert feed.last_bytes < len(str(first)) + 200
    agents.apply("node.retrying", {"nodeId": "a", "attempt": 2})
    agents.apply("task.output", {"nodeId": "a", "output": "again\n", "stream": "stdout"})
    third = feed.update(agents.attempt("a", 0, 2))
    assert third is not None and third["type"] == "reset" and _text_of(third["html"]) == "again\n"
    assert third["key"] == "a/0/2"


def test_output_feed_follows_the_byte_cap() -> None:
    from dashboard.views.agent import OutputFeed

    agents, attempt = _attempt_with(*[("stdout", f"line {i:03}\n") for i in range(10)], cap=40)
    feed = OutputFeed()
    reset = feed.reset(attempt)
    assert reset["dropped"] == attempt.dropped_lines > 0 and reset["first"] == 10 - len(attempt.chunks)
    agents.apply("task.output", {"nodeId": "a", "output": "line 010\n", "stream": "stdout"})
    append = feed.update(attempt)
    assert append is not None and append["type"] == "append" and append["first"] == 11 - len(attempt.chunks)
    assert append["dropped"] == attempt.dropped_lines
    for i in range(11, 20):  # more chunks than the cap keeps, between two updates: a reset
        agents.apply("task.output", {"nodeId": "a", "output": f"line {i:03}\n", "stream": "stdout"})
    assert feed.update(attempt)["type"] == "reset"  # type: ignore[index]


def test_actions_answer_and_summary_are_escaped() -> None:
    from dashboard.views.agent import actions_html, answer_html, download_name, summary_html
    from inspector.pricing import load_price_table

    agents = RunAgents("r")
    base = {"nodeId": "a", "iteration": 0, "attempt": 1, "engine": "<em>e</em>"}
    for phase, ok in (("started", None), ("completed", False)):
        agents.apply("agent.event", {**base, "event": {"type": "action", "phase": phase, "ok": ok, "message": "<i>boom</i>",
                                                        "action": {"id": "t1", "kind": "<tool>", "title": "<script>x</script>"}}},
                     t_ms=1000.0 if phase == "started" else 2500.0)
    agents.apply("agent.event", {**base, "event": {"type": "action", "phase": "started",
                                                    "action": {"id": "t2", "kind": "tool", "title": "still going"}}}, t_ms=3000.0)
    agents.apply("agent.event", {**base, "event": {"type": "completed", "ok": True, "answer": "<img src=x onerror=1>"}})
    agents.apply("token.usage", {**base, "model": "claude-sonnet-4-6", "agent": "<u>me</u>", "inputTokens": 1000, "outputTokens": 10})
    attempt = agents.attempt("a")
    actions = actions_html(attempt)
    assert actions.count('data-testid="agent-action"') == 2
    assert 'data-status="failed"' in actions and 'data-status="running"' in actions
    assert "<script>" not in actions and "&lt;script&gt;x&lt;/script&gt;" in actions and "&lt;i&gt;boom" in actions
    assert "1.5 s" in actions or "1.50 s" in actions
    assert "<img" not in answer_html(attempt) and "&lt;img src=x" in answer_html(attempt)
    summary = summary_html(attempt, load_price_table(use_env=False))
    assert "<em>" not in summary and "&lt;em&gt;e&lt;/em&gt;" in summary and "&lt;u&gt;me&lt;/u&gt;" in summary
    assert "$0.0032" in summary  # 1,000 x $3/M + 10 x $15/M (Smithers' price of claude-sonnet-4-6)
    agents.apply("token.usage", {"nodeId": "b", "iteration": 0, "attempt": 1, "model": "local-llama-3-8b", "inputTokens": 5})
    unpriced = summary_html(agents.attempt("b"), load_price_table(use_env=False))
    assert "unpriced model" in unpriced and "$" not in unpriced
    assert download_name(("a/../b c", 1, 2)) == "a_.._b_c-iteration1-attempt2.txt"


def test_output_feed_resets_for_the_same_attempt_of_another_run() -> None:
    from dashboard.views.agent import OutputFeed

    _, first = _attempt_with(("stdout", "run one\n"))
    _, second = _attempt_with(("stdout", "run two\n"), ("stdout", "more\n"))
    feed = OutputFeed()
    feed.update(first)
    message = feed.update(second)
    assert message is not None and message["type"] == "reset" and _text_of(message["html"]) == "run two\nmore\n"

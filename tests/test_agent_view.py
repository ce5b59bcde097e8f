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
        assert len(versions) >= 3 and all(changed for _, changed in versions)
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

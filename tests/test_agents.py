"""inspector.agents: run events folded into per-attempt agent records (no network)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings, strategies as st

from inspector.agent_history import output_from_history
from inspector.agents import RunAgents
from inspector.pricing import TokenCounts, load_price_table

RUN = "run-1"
DEMO = Path(__file__).resolve().parents[1] / "inspector" / "demo_data" / "agents-run.jsonl"


class History:
    """Durable history rows and the live events the Gateway maps them to, built side by side."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []
        self.live: list[tuple[str, dict[str, Any], int]] = []
        self.t = 1_000_000.0

    def add(self, durable: str, live: str | None, payload: dict[str, Any], live_payload: dict[str, Any] | None = None) -> None:
        self.t += 10
        seq = len(self.rows)
        self.rows.append({"runId": RUN, "seq": seq, "event": durable,
                          "payload": {"type": durable, "runId": RUN, **payload, "timestampMs": self.t},
                          "timestampMs": self.t})
        if live is not None:
            self.live.append((live, {"runId": RUN, **(payload if live_payload is None else live_payload)}, 100 + seq))

    def pending(self, node: str, iteration: int) -> None:
        self.add("NodePending", "node.pending", {"nodeId": node, "iteration": iteration})

    def started(self, node: str, iteration: int, attempt: int) -> None:
        self.add("NodeStarted", "node.started", {"nodeId": node, "iteration": iteration, "attempt": attempt},
                 {"nodeId": node, "state": "in-progress"})

    def retrying(self, node: str, iteration: int, attempt: int) -> None:
        self.add("NodeRetrying", "node.retrying", {"nodeId": node, "iteration": iteration, "attempt": attempt},
                 {"nodeId": node, "state": "in-progress", "attempt": attempt})

    def output(self, node: str, iteration: int, attempt: int, text: str, stream: str = "stdout") -> None:
        self.add("NodeOutput", "task.output",
                 {"nodeId": node, "iteration": iteration, "attempt": attempt, "text": text, "stream": stream},
                 {"nodeId": node, "output": text, "stream": stream})

    def agent(self, node: str, iteration: int, attempt: int, event: dict[str, Any]) -> None:
        payload = {"nodeId": node, "iteration": iteration, "attempt": attempt, "engine": "scripted",
                   "event": {"engine": "scripted", **event}}
        self.add("AgentEvent", "agent.event", payload)

    def action(self, node: str, iteration: int, attempt: int, action_id: str, phase: str, **extra: Any) -> None:
        self.agent(node, iteration, attempt, {"type": "action", "phase": phase,
                                              "action": {"id": action_id, "kind": "tool", "title": f"call {action_id}"},
                                              **extra})

    def usage(self, node: str, iteration: int, attempt: int, model: str, agent: str, inp: int, out: int, **more: int) -> None:
        self.add("TokenUsageReported", "token.usage",
                 {"nodeId": node, "iteration": iteration, "attempt": attempt, "model": model, "agent": agent,
                  "inputTokens": inp, "outputTokens": out, **more})

    def heartbeat(self, node: str, iteration: int, attempt: int) -> None:
        self.add("TaskHeartbeat", "task.heartbeat", {"nodeId": node, "iteration": iteration, "attempt": attempt})

    def finished(self, node: str, iteration: int, attempt: int) -> None:
        self.add("NodeFinished", "node.finished", {"nodeId": node, "iteration": iteration, "attempt": attempt},
                 {"nodeId": node, "state": "finished"})

    def failed(self, node: str, iteration: int, attempt: int, message: str) -> None:
        self.add("NodeFailed", "node.failed",
                 {"nodeId": node, "iteration": iteration, "attempt": attempt, "error": {"message": message}},
                 {"nodeId": node, "state": "failed", "error": {"message": message}})

    def feed_live(self, model: RunAgents, events: list[tuple[str, dict[str, Any], int]] | None = None) -> None:
        for name, payload, seq in self.live if events is None else events:
            model.apply(name, payload, seq=seq, source="live")


def retry_run() -> History:
    h = History()
    h.pending("flaky", 0)
    h.started("flaky", 0, 1)
    h.agent("flaky", 0, 1, {"type": "started", "title": "flaky on claude-opus-4-7"})
    h.output("flaky", 0, 1, "\x1b[1mflaky\x1b[0m starting\n")
    h.action("flaky", 0, 1, "a1", "started")
    h.heartbeat("flaky", 0, 1)
    h.action("flaky", 0, 1, "a1", "completed", ok=False, message="exit code 1")
    h.output("flaky", 0, 1, "fatal\n", "stderr")
    h.usage("flaky", 0, 1, "claude-opus-4-7-20260201", "flaky", 300, 20)
    h.agent("flaky", 0, 1, {"type": "completed", "ok": False, "error": "scripted failure"})
    h.failed("flaky", 0, 1, "scripted failure")
    h.retrying("flaky", 0, 2)
    h.started("flaky", 0, 2)
    h.output("flaky", 0, 2, "second try\n")
    h.action("flaky", 0, 2, "a1", "started")
    h.action("flaky", 0, 2, "a1", "completed", ok=True, message="done")
    h.agent("flaky", 0, 2, {"type": "completed", "ok": True, "answer": "it worked"})
    h.usage("flaky", 0, 2, "claude-opus-4-7-20260201", "flaky", 1200, 340, cacheReadTokens=800, cacheWriteTokens=100,
            reasoningTokens=40)
    h.finished("flaky", 0, 2)
    return h


def records(model: RunAgents) -> dict[Any, Any]:
    """What a view shows of each attempt, without times (the live stream has none)."""
    return {
        a.key: (a.status, tuple((c.stream, c.text) for c in a.chunks), a.dropped_lines, a.dropped_bytes, a.total_bytes,
                {k: (x.status, x.kind, x.title, x.message) for k, x in a.actions.items()},
                a.usage, a.model, a.agent, a.answer, a.ok, a.engine)
        for a in model
    }


def test_durable_history_of_a_retry() -> None:
    model = RunAgents(RUN)
    model.apply_history(retry_run().rows)
    first, second = model.attempts_of("flaky")
    assert (first.key, second.key) == (("flaky", 0, 1), ("flaky", 0, 2))
    assert first.status == "failed" and first.ok is False and first.error == "scripted failure"
    assert second.status == "finished" and second.ok is True and second.answer == "it worked"
    assert first.text("stdout") == "\x1b[1mflaky\x1b[0m starting\n" and first.text("stderr") == "fatal\n"
    assert first.actions["a1"].status == "failed" and first.actions["a1"].message == "exit code 1"
    assert first.actions["a1"].duration_ms == 20.0
    assert second.actions["a1"].status == "ok"
    assert first.usage == TokenCounts(300, 20) and first.model == "claude-opus-4-7-20260201"
    assert second.usage == TokenCounts(1200, 340, 800, 100, 40)
    assert first.engine == "scripted" and first.heartbeats == 1 and first.last_heartbeat_ms is not None
    assert model.totals() == TokenCounts(1500, 360, 800, 100, 40)
    assert model.latest("flaky") is second


def test_live_events_without_attempt_numbers_land_on_the_current_attempt() -> None:
    history = retry_run()
    live = RunAgents(RUN)
    history.feed_live(live)
    from_history = RunAgents(RUN)
    from_history.apply_history(history.rows)
    assert records(live) == records(from_history)


def test_live_re_emitted_transitions_make_no_new_attempt() -> None:
    model = RunAgents(RUN)
    for name, payload in [
        ("node.pending", {"nodeId": "build", "iteration": 0}),
        ("node.started", {"nodeId": "build", "state": "in-progress"}),
        ("node.finished", {"nodeId": "build", "state": "finished"}),
        ("node.started", {"nodeId": "build", "state": "in-progress"}),
        ("node.finished", {"nodeId": "build", "state": "finished"}),
    ]:
        model.apply(name, payload)
    assert [a.key for a in model] == [("build", 0, 1)]
    assert model.latest("build") is not None and model.latest("build").status == "finished"  # type: ignore[union-attr]


def test_attempts_and_retries_come_from_attempt_numbers() -> None:
    model = RunAgents(RUN)
    retry_run().feed_live(model)
    for name, payload in [
        ("node.pending", {"nodeId": "build", "iteration": 0}),
        ("node.started", {"nodeId": "build", "state": "in-progress"}),
        ("node.finished", {"nodeId": "build", "state": "finished"}),
        ("node.started", {"nodeId": "build", "state": "in-progress"}),  # re-emitted, new seq
        ("node.finished", {"nodeId": "build", "state": "finished"}),
    ]:
        model.apply(name, payload)
    assert model.attempt_counts() == (3, 1)


def test_loop_iterations_from_live_pending() -> None:
    model = RunAgents(RUN)
    for iteration in range(3):
        model.apply("node.pending", {"nodeId": "iterate", "iteration": iteration})
        model.apply("node.started", {"nodeId": "iterate", "state": "in-progress"})
        model.apply("task.output", {"nodeId": "iterate", "output": f"pass {iteration}\n", "stream": "stdout"})
        model.apply("node.finished", {"nodeId": "iterate", "state": "finished"})
    assert [(a.key, a.text(), a.status) for a in model] == [
        (("iterate", i, 1), f"pass {i}\n", "finished") for i in range(3)
    ]


def test_action_phases_out_of_order() -> None:
    """The engine logs agent events asynchronously: a completed phase can precede its start."""
    model = RunAgents(RUN)
    key = {"nodeId": "n", "iteration": 0, "attempt": 1, "engine": "e"}
    action = {"id": "x", "kind": "command", "title": "run tests"}
    model.apply("agent.event", {**key, "event": {"type": "action", "phase": "completed", "action": action, "ok": False,
                                                 "message": "exit 1"}}, t_ms=500)
    model.apply("agent.event", {**key, "event": {"type": "action", "phase": "updated", "action": action}}, t_ms=400)
    model.apply("agent.event", {**key, "event": {"type": "action", "phase": "started", "action": action}}, t_ms=100)
    got = model.attempt("n", 0, 1).actions["x"]  # type: ignore[union-attr]
    assert (got.status, got.started_ms, got.finished_ms, got.duration_ms, got.message, got.updates) == (
        "failed", 100, 500, 400, "exit 1", 1)


def test_byte_cap_keeps_the_newest_output_and_counts_earlier_lines() -> None:
    model = RunAgents(RUN, output_cap_bytes=100)
    lines = [f"line {i:03d}\n" for i in range(50)]  # 9 bytes each
    for line in lines:
        model.apply("task.output", {"nodeId": "n", "iteration": 0, "attempt": 1, "output": line, "stream": "stdout"})
    attempt = model.attempt("n", 0, 1)
    assert attempt is not None
    assert attempt.retained_bytes <= 100 and attempt.retained_bytes == len(attempt.text().encode())
    assert attempt.text() == "".join(lines[-11:])
    assert attempt.dropped_lines == 39 and attempt.dropped_bytes == 39 * 9
    assert attempt.total_bytes == 50 * 9 and attempt.total_chunks == 50 and attempt.truncated


def test_an_attempt_that_never_prints_holds_no_output_containers() -> None:
    """Every task of a run gets an attempt, and most never print: those keep no deque or set
    (a 1,500-task run's worth was ~1 MB per run held by the hub); one that prints gets them."""
    model = RunAgents(RUN)
    model.apply("node.started", {"nodeId": "quiet", "state": "in-progress"}, seq=1, source="live")
    model.apply("node.finished", {"nodeId": "quiet", "state": "finished"}, seq=2, source="live")
    quiet = model.attempt("quiet", 0, 1)
    assert quiet is not None and quiet.status == "finished"
    assert quiet.chunks == () and quiet.text() == "" and not quiet.transcript_sequences
    assert type(quiet.transcript_sequences) is frozenset
    model.apply("task.output", {"nodeId": "loud", "iteration": 0, "attempt": 1, "output": "hi\n", "stream": "stdout"})
    loud = model.attempt("loud", 0, 1)
    assert loud is not None and loud.text() == "hi\n" and len(loud.chunks) == 1


def test_one_chunk_over_the_cap_keeps_its_end_from_a_line_start() -> None:
    model = RunAgents(RUN, output_cap_bytes=64)
    text = "".join(f"{i:02d} é line\n" for i in range(20))
    model.apply("task.output", {"nodeId": "n", "iteration": 0, "attempt": 1, "output": text, "stream": "stderr"})
    attempt = model.attempt("n", 0, 1)
    assert attempt is not None
    kept = attempt.text("stderr")
    assert len(kept.encode()) <= 64 and text.endswith(kept) and kept.startswith(("1", "0"))
    assert attempt.dropped_lines + kept.count("\n") == 20
    assert attempt.dropped_bytes + len(kept.encode()) == len(text.encode())


def test_full_text_comes_from_the_history() -> None:
    history = History()
    for i in range(30):
        history.output("n", 0, 1, f"line {i}\n")
    history.output("other", 0, 1, "not this node\n")
    model = RunAgents(RUN, output_cap_bytes=20)
    model.apply_history(history.rows + history.rows[:5])
    full = output_from_history(list(reversed(history.rows)) + history.rows[:3], "n", 0, 1)
    assert "".join(c.text for c in full) == "".join(f"line {i}\n" for i in range(30))
    assert model.attempt("n", 0, 1).dropped_lines == 30 - model.attempt("n", 0, 1).text().count("\n")  # type: ignore[union-attr]


def test_usage_breakdowns_burn_and_cost() -> None:
    history = History()
    history.add("RunStarted", "run.started", {})
    history.usage("a", 0, 1, "claude-sonnet-4-6-20260115", "researcher", 1000, 100)
    history.usage("b", 0, 1, "local-llama-3-8b", "local", 500, 50)
    history.usage("a", 1, 1, "claude-sonnet-4-6-20260115", "researcher", 1000, 100, cacheReadTokens=10)
    history.usage("a", 1, 1, "claude-sonnet-4-6-20260115", "researcher", 9999, 9999)  # a second report: ignored
    history.add("RunFinished", None, {})
    model = RunAgents(RUN)
    model.apply_history(history.rows)
    assert model.totals() == TokenCounts(2500, 250, 10)
    assert model.by_node() == {"a": TokenCounts(2000, 200, 10), "b": TokenCounts(500, 50)}
    assert model.by_agent() == {"researcher": TokenCounts(2000, 200, 10), "local": TokenCounts(500, 50)}
    assert set(model.by_model()) == {"claude-sonnet-4-6-20260115", "local-llama-3-8b"}
    assert [total for _, total in model.burn_series()] == [1100, 1650, 2760]
    assert model.run_status == "finished"
    minutes = (model.run_finished_ms - model.run_started_ms) / 60_000  # type: ignore[operator]
    assert model.burn_rate() == pytest.approx(2760 / minutes)
    cost = model.cost(load_price_table(use_env=False))
    assert cost.cost_usd == pytest.approx((2000 * 3 + 200 * 15 + 10 * 0.3) / 1e6)
    assert cost.unpriced_tokens == 550 and cost.unpriced_models == ("local-llama-3-8b",)


def test_token_usage_rows_and_history_agree() -> None:
    history = retry_run()
    rows = [{k: v for k, v in r["payload"].items() if k != "type"} for r in history.rows if r["event"] == "TokenUsageReported"]
    model = RunAgents(RUN)
    model.apply_token_usage_rows(rows)
    model.apply_history(history.rows)
    assert model.totals() == TokenCounts(1500, 360, 800, 100, 40)


def test_an_agent_event_seen_bare_and_wrapped_counts_once() -> None:
    """A subscribed socket can get one agent.event bare (no stream seq) and again inside run.event."""
    model = RunAgents(RUN)
    payload = {"runId": RUN, "nodeId": "n", "iteration": 0, "attempt": 1, "engine": "e",
               "event": {"type": "action", "phase": "updated", "action": {"id": "a", "kind": "tool", "title": "t"}}}
    assert model.apply("agent.event", payload, source="bare") == ("n", 0, 1)
    assert model.apply("agent.event", payload, seq=7, source="live") is None
    assert model.apply("agent.event", payload, seq=9, source="live") == ("n", 0, 1)  # a second, real update
    assert model.attempt("n", 0, 1).actions["a"].updates == 2  # type: ignore[union-attr]


def test_session_transcript_and_trace_summary() -> None:
    model = RunAgents(RUN)
    key = {"runId": RUN, "nodeId": "n", "iteration": 1, "attempt": 2}
    model.apply("agent.session", {**key, "transcript": [{"role": "user", "content": "hi"}]})
    model.apply("agent.trace", {**key, "trace": {"event": {"sequence": 0}}}, seq=1)
    model.apply("agent.trace", {**key, "trace": {"event": {"sequence": 0}}}, seq=1)
    model.apply("agent.trace_summary", {**key, "summary": {"agentId": "writer", "model": "gpt-5.6-luna"}})
    attempt = model.attempt("n", 1, 2)
    assert attempt is not None
    assert attempt.transcript == [{"role": "user", "content": "hi"}]
    assert (attempt.trace_events, attempt.agent, attempt.model) == (1, "writer", "gpt-5.6-luna")


def test_events_of_another_run_are_ignored() -> None:
    model = RunAgents(RUN)
    assert model.apply("task.output", {"runId": "other", "nodeId": "n", "output": "x"}) is None
    assert len(model) == 0 and model.version == 0


def recorded_runs() -> dict[str, RunAgents]:
    """The demo recording (real Gateway: an ``agents`` run, then an ``agent-retry`` run), folded
    from its live run events only, one model per run."""
    models: dict[str, RunAgents] = {}
    for line in DEMO.read_text().splitlines():
        frame = json.loads(line)["frame"]
        if frame.get("type") == "event" and frame.get("event") == "run.event":
            inner = frame["payload"]
            run_id = inner["payload"]["runId"]
            model = models.setdefault(run_id, RunAgents(run_id))
            model.apply(inner["event"], inner["payload"], seq=inner.get("seq"), source=f"live:{inner['streamId']}")
    return models


def test_recorded_agentic_run_replays_into_its_token_usage() -> None:
    agents, retry = recorded_runs().values()
    assert {a.node_id for a in agents} == {"research", "write", "review", "local"}
    assert agents.totals() == TokenCounts(4800, 1080, 2300, 400, 160)
    research = agents.latest("research")
    assert research is not None and research.status == "finished" and research.engine == "scripted"
    assert research.model == "claude-sonnet-4-6-20260115" and research.answer == "researcher answer (i0-a1)"
    assert sorted(a.status for a in research.actions.values()) == ["failed", "ok", "ok"]
    assert "<img src=x onerror=alert(1)>" in research.text("stdout") and "stderr: note" in research.text("stderr")
    cost = agents.cost(load_price_table(use_env=False))
    assert cost.cost_usd is not None and cost.unpriced_models == ("local-llama-3-8b",) and cost.unpriced_tokens == 790

    first, second = retry.attempts_of("flaky-agent")
    assert (first.status, first.error, first.usage) == ("failed", "scripted failure on attempt 1", TokenCounts(300, 20))
    assert (second.status, second.answer) == ("finished", "flaky answer (i0-a2)")
    assert retry.totals() == TokenCounts(1500, 360, 800, 100, 40)


# ---------------------------------------------------------------------- properties


@st.composite
def runs(draw: st.DrawFn) -> History:
    """A random agentic run: nodes, loop iterations, retries, output, actions, usage."""
    h = History()
    for node in draw(st.lists(st.sampled_from(["a", "b", "c"]), min_size=1, max_size=3, unique=True)):
        for iteration in range(draw(st.integers(1, 2))):
            h.pending(node, iteration)
            attempts = draw(st.integers(1, 3))
            for attempt in range(1, attempts + 1):
                if attempt > 1:
                    h.retrying(node, iteration, attempt)
                h.started(node, iteration, attempt)
                for i, (text, stream) in enumerate(draw(st.lists(
                        st.tuples(st.sampled_from(["same\n", "x" * 40 + "\n", "é\n", "no newline", "\x1b[31mred\n"]),
                                  st.sampled_from(["stdout", "stderr"])), max_size=8))):
                    h.output(node, iteration, attempt, text, stream)
                    if i % 3 == 0:
                        h.heartbeat(node, iteration, attempt)
                for action in range(draw(st.integers(0, 2))):
                    h.action(node, iteration, attempt, f"t{action}", "started")
                    h.action(node, iteration, attempt, f"t{action}", "updated", message="halfway")
                    h.action(node, iteration, attempt, f"t{action}", "completed", ok=draw(st.booleans()))
                h.usage(node, iteration, attempt, draw(st.sampled_from(["claude-haiku-4-5", "local"])), node,
                        draw(st.integers(0, 5000)), draw(st.integers(0, 500)))
                if attempt < attempts:
                    h.failed(node, iteration, attempt, "boom")
                else:
                    h.finished(node, iteration, attempt)
    return h


@settings(max_examples=60, deadline=None)
@given(runs(), st.data(), st.integers(0, 200))
def test_replays_with_duplicates_give_the_same_records(history: History, data: st.DataObject, cap: int) -> None:
    clean = RunAgents(RUN, output_cap_bytes=cap)
    clean.apply_history(history.rows)
    noisy = RunAgents(RUN, output_cap_bytes=cap)
    rows = list(history.rows)
    for _ in range(data.draw(st.integers(0, 10))):
        # the source re-delivers an earlier row (same seq) later on
        index = data.draw(st.integers(0, len(rows) - 1))
        rows.insert(data.draw(st.integers(index, len(rows))), rows[index])
    for row in rows:
        noisy.apply_history_row(row)
    assert records(noisy) == records(clean)
    for attempt in noisy:
        assert attempt.retained_bytes <= cap
        assert attempt.retained_bytes == sum(len(c.text.encode()) for c in attempt.chunks)
        assert attempt.retained_bytes + attempt.dropped_bytes == attempt.total_bytes


@settings(max_examples=60, deadline=None)
@given(runs(), st.booleans())
def test_live_and_history_together_give_the_records_of_either(history: History, history_first: bool) -> None:
    alone = RunAgents(RUN)
    alone.apply_history(history.rows)
    both = RunAgents(RUN)
    if history_first:
        both.apply_history(history.rows)
        history.feed_live(both)
    else:
        history.feed_live(both)
        both.apply_history(history.rows)
    live_only = RunAgents(RUN)
    history.feed_live(live_only)
    assert records(both) == records(alone) == records(live_only)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.text(max_size=300), max_size=40), st.integers(0, 300))
def test_byte_cap_is_never_exceeded(texts: list[str], cap: int) -> None:
    model = RunAgents(RUN, output_cap_bytes=cap)
    for text in texts:
        model.apply("task.output", {"nodeId": "n", "iteration": 0, "attempt": 1, "output": text, "stream": "stdout"})
    attempt = model.attempt("n", 0, 1)
    if attempt is None:
        assert not texts
        return
    full = "".join(texts)
    kept = attempt.text()
    assert len(kept.encode("utf-8", "replace")) <= cap
    assert full.endswith(kept)
    assert attempt.dropped_lines == full.count("\n") - kept.count("\n")

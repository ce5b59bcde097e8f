"""``watch`` shows what agents do: output lines, actions, tokens and cost (rendered text compared)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from rich.console import Console

from inspector.agents import RunAgents
from inspector.pricing import estimate_cost, load_price_table
from inspector.render import agents_section, render_watch
from inspector.status import ConnectionState, ConnectionStatus
from inspector.transcript import RecordedRun, load_runs
from tests.recordings import recording
from tests.test_cli_replay import start_replay

AGENTS = recording("agents-run.jsonl")


def _run(workflow: str) -> RecordedRun:
    return next(r for r in load_runs(AGENTS) if r.workflow == workflow)


def _fed(run: RecordedRun, upto: float | None = None) -> RunAgents:
    agents = RunAgents(run.run_id)
    for event in run.run_events:
        if upto is None or event.t_ms <= upto:
            agents.apply(event.event, event.payload, t_ms=event.t_ms)
    return agents


def _text(*renderables: object) -> str:
    console = Console(width=200, record=True, color_system="truecolor", file=open("/dev/null", "w"))  # noqa: SIM115
    for renderable in renderables:
        console.print(renderable)
    text = console.export_text()
    console.file.close()
    return text


def test_watch_shows_each_attempt_its_actions_output_and_the_runs_cost() -> None:
    run = _run("agent-retry")
    agents = _fed(run)
    prices = load_price_table(use_env=False)
    text = _text(*agents_section(agents, prices))
    assert "agents  0 running of 2 attempts" in text
    assert "▸ flaky-agent attempt 1  failed  flaky · claude-opus-4-7-20260201" in text
    assert "▸ flaky-agent attempt 2  finished" in text
    assert "✓ tool: read_file src/0.ts" in text and "✗ command: run tests #1" in text
    assert "│ done: flaky answer (i0-a2)" in text and "answer: flaky answer (i0-a2)" in text
    assert "error: scripted failure on attempt 1" in text
    total = agents.totals()
    cost = estimate_cost(((r.model, r.tokens) for r in agents.usage_rows()), prices)
    assert cost.cost_usd is not None
    assert (f"tokens in {total.input:,}  out {total.output:,}  cache read {total.cache_read:,}  "
            f"cache write {total.cache_write:,}  reasoning {total.reasoning:,}   cost ${cost.cost_usd:.4f}") in text


def test_agent_output_is_stripped_of_escapes_and_unpriced_models_are_said() -> None:
    run = _run("agents")
    agents = _fed(run)
    assert any("\x1b[" in a.text() for a in agents), "the recording prints ANSI colour"
    text = _text(*agents_section(agents, load_price_table(use_env=False), max_attempts=10, output_lines=100))
    assert "\x1b" not in text and "[1m" not in text and "[0m" not in text
    assert "starting (iteration 0, attempt 1)" in text
    cost = estimate_cost(((r.model, r.tokens) for r in agents.usage_rows()), load_price_table(use_env=False))
    if cost.unpriced_tokens:
        assert f"+{cost.unpriced_tokens:,} tokens of" in text and "unpriced" in text


def test_while_the_run_goes_the_running_attempts_are_shown() -> None:
    run = _run("agents")
    starts = [e.t_ms for e in run.run_events if e.event == "node.started"]
    agents = _fed(run, upto=starts[1] + 1)
    running = [a for a in agents if a.status == "running"]
    assert running
    text = _text(render_watch(run.final_tree(), ConnectionState(ConnectionStatus.ONLINE), run.run_id, "running",
                              agents=agents, prices=load_price_table(use_env=False)))
    assert f"agents  {len(running)} running of {len(agents)} attempts" in text
    for attempt in running:
        assert f"▸ {attempt.node_id} attempt {attempt.attempt}  running" in text


def test_watch_json_reports_the_agents_tokens_and_cost_of_a_replayed_run() -> None:
    run = _run("agent-retry")
    expected = _fed(run)
    proc, url = start_replay(str(AGENTS), "--speed", "8")
    try:
        out = subprocess.run(
            [sys.executable, "-m", "inspector.cli", "watch", run.run_id, "--json", "--timeout", "60", "--gateway", url],
            capture_output=True, text=True, timeout=90,
            env={k: v for k, v in os.environ.items() if k not in ("SMITHERS_DASHBOARD_PRICES", "SMITHERS_TOKEN")},
        )
        assert out.returncode == 0, out.stderr
        final = json.loads(out.stdout.splitlines()[-1])["agents"]
        total = expected.totals()
        assert final["attempts"] == 2
        assert final["tokens"] == {"input": total.input, "output": total.output, "cacheRead": total.cache_read,
                                   "cacheWrite": total.cache_write, "reasoning": total.reasoning}
        cost = estimate_cost(((r.model, r.tokens) for r in expected.usage_rows()), load_price_table(use_env=False))
        assert final["costUsd"] == cost.cost_usd and final["unpricedTokens"] == cost.unpriced_tokens
    finally:
        proc.terminate()
        proc.wait(10)

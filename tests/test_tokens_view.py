"""Tokens and cost of a run (dashboard.views.tokens, treerows.task_tokens): the numbers the
summary, the breakdown tables, the burn chart and the tree rows show, against the agents model
fed from the recorded agentic run and against Smithers' own ``estimateCostUsd`` under Bun."""

from __future__ import annotations

import json
import math
import subprocess
from html.parser import HTMLParser
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import pandas as pd
import panel as pn
import pytest
from bokeh.document import Document
from bokeh.models import ColumnDataSource, Plot

from dashboard.store import RunStore
from dashboard.treerows import task_tokens
from dashboard.views.tokens import (
    TokenBreakdown,
    TokenSummary,
    breakdown_frame,
    burn_frame,
    format_tokens,
    format_usd,
    token_figures,
    token_summary_html,
)
from inspector.agents import RunAgents
from inspector.pricing import TokenCounts, load_price_table
from tests.gateway.install import bun_path
from tests.test_agents import recorded_runs

if TYPE_CHECKING:
    from pathlib import Path

PRICES = load_price_table(use_env=False)
XSS = "<img src=x onerror=alert(1)>"


def recorded_agents() -> RunAgents:
    """The ``agents`` run of the demo recording (4 parallel agents, one unpriced model)."""
    agents, _retry = recorded_runs().values()
    return agents


class Attributes(HTMLParser):
    """The attributes of the element carrying ``data-testid=<testid>`` and the page's text."""

    def __init__(self, testid: str) -> None:
        super().__init__()
        self.testid = testid
        self.found: dict[str, str] | None = None
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        if values.get("data-testid") == self.testid:
            assert self.found is None, "the hook must be one element"
            self.found = values

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def summary_of(markup: str) -> tuple[dict[str, str], str]:
    parser = Attributes("token-summary")
    parser.feed(markup)
    assert parser.found is not None
    return parser.found, "".join(parser.text)


def smithers_costs(bun: Path, scorers: Path, usages: list[dict[str, Any]]) -> list[float]:
    """Smithers' own ``estimateCostUsd`` on each usage, run by Bun."""
    script = (
        f"import {{ estimateCostUsd }} from {json.dumps(str(scorers / 'src' / 'estimateCostUsd.js'))};\n"
        f"const usages = {json.dumps(usages)};\n"
        "console.log(JSON.stringify(usages.map((u) => estimateCostUsd(u))));\n"
    )
    result = subprocess.run([str(bun), "-e", script], capture_output=True, text=True, timeout=60, check=True)
    costs: list[float] = json.loads(result.stdout.strip().splitlines()[-1])
    return costs


def agents_store(agents: RunAgents | None = None) -> RunStore:
    """A store without a hub whose agents model is ``agents`` (set the way the store's flush sets it)."""
    store = RunStore(hub=None)
    store.param.update(run_id=agents.run_id if agents is not None else None)
    if agents is not None:
        store.param.update(agents=agents, agents_version=store.agents_version + 1)
    return store


# ---------------------------------------------------------------------- numbers


def test_summary_of_the_recorded_run_equals_smithers_formula(gateway_install: Path) -> None:
    agents = recorded_agents()
    rows = agents.usage_rows()
    usages = [{"model": r.model, "inputTokens": r.tokens.input, "outputTokens": r.tokens.output,
               "cacheReadTokens": r.tokens.cache_read, "cacheWriteTokens": r.tokens.cache_write} for r in rows]
    scorers = gateway_install / "node_modules" / "@smithers-orchestrator" / "scorers"
    reference = smithers_costs(bun_path(gateway_install), scorers, usages)
    priced = [cost for row, cost in zip(rows, reference, strict=True) if PRICES.price_of(row.model) is not None]
    assert len(priced) == 3 and all(cost > 0 for cost in priced)

    attrs, text = summary_of(token_summary_html(token_figures(agents, PRICES)))
    assert (int(attrs["data-input-tokens"]), int(attrs["data-output-tokens"]), int(attrs["data-cache-read-tokens"]),
            int(attrs["data-cache-write-tokens"]), int(attrs["data-reasoning-tokens"])) == (4800, 1080, 2300, 400, 160)
    assert float(attrs["data-cost-usd"]) == pytest.approx(sum(priced), rel=1e-9)
    assert "e" not in attrs["data-cost-usd"].lower()  # a plain decimal number
    # the local model: Smithers meters it at $0, we count its tokens as unpriced
    local = next(r for r in rows if r.model == "local-llama-3-8b")
    assert int(attrs["data-unpriced-tokens"]) == local.tokens.total == 790
    assert "790 tokens unpriced" in text and format_usd(sum(priced)) in text


def test_nothing_priced_reads_unpriced_not_zero_dollars() -> None:
    agents = RunAgents("r")
    agents.apply("token.usage", {"nodeId": "n", "iteration": 0, "attempt": 1, "model": "local-llama-3-8b",
                                 "agent": "local", "inputTokens": 10, "outputTokens": 5})
    attrs, text = summary_of(token_summary_html(token_figures(agents, PRICES)))
    assert attrs["data-cost-usd"] == "0" and attrs["data-unpriced-tokens"] == "15"
    assert "$" not in text and "unpriced" in text


def test_no_usage_yet() -> None:
    attrs, text = summary_of(token_summary_html(token_figures(None, PRICES)))
    assert attrs["data-input-tokens"] == attrs["data-unpriced-tokens"] == attrs["data-cost-usd"] == "0"
    assert "no token usage" in text


def test_model_names_are_escaped() -> None:
    agents = RunAgents("r")
    agents.apply("token.usage", {"nodeId": "n", "iteration": 0, "attempt": 1, "model": XSS, "agent": XSS,
                                 "inputTokens": 10, "outputTokens": 5})
    markup = token_summary_html(token_figures(agents, PRICES))
    assert XSS not in markup and "&lt;img" in markup


def test_breakdowns_add_up_to_the_totals_and_mark_unpriced() -> None:
    agents = recorded_agents()
    cost = agents.cost(PRICES)
    for by, expected in (("node", agents.by_node()), ("agent", agents.by_agent()), ("model", agents.by_model())):
        frame = breakdown_frame(agents, PRICES, by)
        assert dict(zip(frame["name"], frame["total"], strict=True)) == {k: v.total for k, v in expected.items()}
        assert frame["total"].is_monotonic_decreasing
        assert int(frame["input"].sum()) == 4800 and int(frame["reasoning"].sum()) == 160
        assert frame["cost (USD)"].sum() == pytest.approx(cost.cost_usd, rel=1e-12)  # NaN skipped
        assert int(frame["unpriced tokens"].sum()) == 790
    by_model = breakdown_frame(agents, PRICES, "model").set_index("name")
    local = by_model.loc["local-llama-3-8b"]
    assert math.isnan(local["cost (USD)"]) and local["cost"] == "unpriced" and local["unpriced tokens"] == 790
    sonnet = by_model.loc["claude-sonnet-4-6-20260115"]
    assert sonnet["cost"] == format_usd(cost.by_model["claude-sonnet-4-6-20260115"] or 0) and sonnet["unpriced tokens"] == 0
    by_node = breakdown_frame(agents, PRICES, "node").set_index("name")
    assert by_node.loc["local", "cost"] == "unpriced" and by_node.loc["research", "attempts"] == 1


def test_breakdown_of_a_retry_counts_both_attempts() -> None:
    _agents, retry = recorded_runs().values()
    frame = breakdown_frame(retry, PRICES, "node").set_index("name")
    assert frame.loc["flaky-agent", "attempts"] == 2
    assert frame.loc["flaky-agent", "total"] == retry.totals().total == 1500 + 360 + 800 + 100


def test_burn_frame_is_cumulative_and_its_rate_is_tokens_per_minute() -> None:
    agents = recorded_agents()
    burn = burn_frame(agents)
    assert len(burn) == 4
    assert burn["cumulative"].is_monotonic_increasing and burn["cumulative"].iloc[-1] == agents.totals().total
    assert list(burn["cumulative"]) == [total for _t, total in agents.burn_series()]
    last = burn.iloc[-1]
    assert last["rate"] == pytest.approx(last["cumulative"] / last["minutes"])
    assert burn_frame(None).empty and burn_frame(RunAgents("r")).empty


def test_task_tokens_for_tree_rows() -> None:
    agents = recorded_agents()
    tokens = json.loads(task_tokens(agents))
    assert {node: tuple(v) for node, v in tokens.items()} == {
        node: (counts.total, agents.latest(node).agent) for node, counts in agents.by_node().items()  # type: ignore[union-attr]
    }
    assert tokens["local"] == [790, "local-llm"]
    assert task_tokens(None) == "{}" and task_tokens(RunAgents("r")) == "{}"


def test_compact_formats() -> None:
    assert [format_tokens(n) for n in (0, 950, 1000, 12_345, 123_456, 4_560_000)] == ["0", "950", "1.0k", "12.3k", "123k", "4.56M"]
    assert [format_usd(x) for x in (0.0, 0.012345, 1.5, 1234.5)] == ["$0.00", "$0.0123", "$1.50", "$1,234.50"]


# ---------------------------------------------------------------------- views


def test_summary_view_follows_the_store() -> None:
    store = agents_store()
    view = TokenSummary(store=store)
    assert summary_of(view._pane.object)[0]["data-input-tokens"] == "0"
    agents = recorded_agents()
    store.param.update(run_id=agents.run_id)
    store.param.update(agents=agents, agents_version=store.agents_version + 1)
    attrs, _ = summary_of(view._pane.object)
    assert attrs["data-input-tokens"] == "4800" and attrs["data-unpriced-tokens"] == "790"
    # a new usage report, same model object: the version bump redraws
    agents.apply("token.usage", {"nodeId": "extra", "iteration": 0, "attempt": 1, "model": "claude-haiku-4-5",
                                 "agent": "x", "inputTokens": 1000, "outputTokens": 0})
    store.agents_version += 1
    assert summary_of(view._pane.object)[0]["data-input-tokens"] == "5800"
    wall = TokenSummary(store=store, large=True)
    assert "cost so far" in summary_of(wall._pane.object)[1]


def test_breakdown_view_tables_chart_and_node_click() -> None:
    agents = recorded_agents()
    store = agents_store(agents)
    view = TokenBreakdown(store=store)
    doc = Document()
    root = pn.panel(view).get_root(doc)
    figures = [m for m in root.references() if isinstance(m, Plot)]
    assert len(figures) == 1  # the burn chart
    node_table = view._tables["node"]
    assert set(node_table.value["node"]) == {"research", "write", "review", "local"}
    # names are Gateway text: plain text in every table
    formatters = {c.get("field"): c.get("formatter") for m in root.references() if type(m).__name__ == "DataTabulator"
                  for c in m.configuration.get("columns", [])}
    assert all(formatters[name] == "plaintext" for name in ("node", "agent", "model", "cost"))
    assert "unpriced" in view._summary.object and "tokens/min" in view._summary.object
    # the Pipe carries the burn points; an update sends new data through the same stream
    assert len(view._burn.data) == 4
    agents.apply("token.usage", {"nodeId": "late", "iteration": 0, "attempt": 1, "model": "claude-haiku-4-5",
                                 "agent": "late", "inputTokens": 10, "outputTokens": 0, "timestampMs": 4_000_000_000_000})
    store.agents_version += 1
    assert len(view._burn.data) == 5 and "late" in set(node_table.value["node"])
    # the same figure, its points' source patched in place
    assert [m for m in root.references() if isinstance(m, Plot)] == figures
    sources = [m for m in root.references() if isinstance(m, ColumnDataSource) and "node" in m.data]
    assert sources and all("late" in list(source.data["node"]) for source in sources)

    picked: list[str] = []
    store.select_task = lambda node_id, iteration=None: picked.append(node_id)  # type: ignore[method-assign]
    row = list(node_table.value["node"]).index("write")
    view._clicked(SimpleNamespace(row=row, column="total"))
    view._clicked(SimpleNamespace(row=99, column="total"))
    assert picked == ["write"]


def test_breakdown_of_an_empty_store() -> None:
    view = TokenBreakdown(store=agents_store())
    assert view._tables["node"].value.empty and "No token usage" in view._summary.object
    assert isinstance(view._burn.data, pd.DataFrame) and view._burn.data.empty


def test_summary_html_is_shared_per_run_tick() -> None:
    """With the run's shared view, every session's summary of the same model version is one render."""
    from dashboard.shared import SharedRunView

    agents = recorded_agents()
    shared = SharedRunView(agents.run_id or "r")
    stores = [agents_store(agents) for _ in range(3)]
    for store in stores:
        store.shared = shared  # type: ignore[misc]
    views = [TokenSummary(store=store) for store in stores]
    assert len({v._pane.object for v in views}) == 1
    assert shared.stats.renders_computed == 1 and shared.stats.renders_shared == 2
    assert TokenCounts(4800, 1080, 2300, 400, 160) == agents.totals()

"""Tokens and cost of an agentic run, in Chromium, against the REAL Smithers Gateway.

The suite Gateway's ``agents`` workflow runs four scripted agents in parallel (three priced
models and ``local-llama-3-8b``, which has no price). The served dashboard's
``data-testid="token-summary"`` must equal ``listRunTokenUsage`` (summed here, row by row),
its cost must equal Smithers' own ``estimateCostUsd`` (run under Bun) over the priced rows,
and the local model's tokens must be counted as unpriced. The Tokens tab must show its three
tables and the burn chart, and a click on a node row must select that node everywhere.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import pytest
from playwright.sync_api import expect

from inspector.pricing import TokenCounts, load_price_table
from tests.browser import wait_until
from tests.gateway.install import bun_path
from tests.gateway.server import ADMIN_TOKEN
from tests.test_tokens_view import smithers_costs

if TYPE_CHECKING:
    from pathlib import Path

    from playwright.sync_api import Page

    from tests.browser import DashboardServer
    from tests.gateway.server import GatewayServer

pytestmark = [pytest.mark.browser, pytest.mark.gateway]

NODES = {"research", "write", "review", "local"}


def token_usage(gw: GatewayServer, run_id: str) -> list[dict[str, Any]]:
    """``listRunTokenUsage`` (``GET /v1/api/runs/<runId>/token-usage``): one row per attempt."""
    answer = gw.client.get(f"/v1/api/runs/{run_id}/token-usage", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}).json()
    assert answer["ok"] is True and answer["data"]["runId"] == run_id
    rows: list[dict[str, Any]] = answer["data"]["events"]
    return rows


def summary_attributes(page: Page) -> dict[str, str]:
    hook = page.locator('[data-testid="token-summary"]')
    if hook.count() != 1:
        return {}
    attrs: dict[str, str] = hook.evaluate("e => Object.fromEntries([...e.attributes].map(a => [a.name, a.value]))")
    return attrs


def tree_tokens(page: Page) -> dict[str, int]:
    """Task rows on screen that show tokens: label -> ``data-tokens``."""
    pairs = page.locator(".st-row[data-tokens]").evaluate_all(
        "els => els.filter(e => e.isConnected && !e.hidden)"
        ".map(e => [e.querySelector('.st-label').textContent, e.getAttribute('data-tokens'), e.querySelector('.st-meta').textContent])")
    return {str(label): int(tokens) for label, tokens, _meta in pairs}


def click_tab(page: Page, name: str) -> None:
    page.locator(".bk-tab", has_text=re.compile(rf"^{re.escape(name)}$")).last.click()


def test_token_summary_equals_list_run_token_usage_and_smithers_cost(
    page: Page, dashboard: DashboardServer, gateway: GatewayServer, gateway_install: Path
) -> None:
    run_id = gateway.launch_run("agents")
    page.goto(dashboard.url(f"runId={run_id}"), wait_until="domcontentloaded")  # live, from the start
    expect(page.locator('[data-testid="token-summary"]')).to_be_attached(timeout=30_000)
    gateway.wait_for_run(run_id, timeout=90)
    rows = wait_until(lambda: (r := token_usage(gateway, run_id)) and len(r) == 4 and r, 30, "four usage rows")
    total = TokenCounts()
    for row in rows:
        total = total + TokenCounts.from_payload(row)
    want = {"data-input-tokens": str(total.input), "data-output-tokens": str(total.output),
            "data-cache-read-tokens": str(total.cache_read), "data-cache-write-tokens": str(total.cache_write),
            "data-reasoning-tokens": str(total.reasoning)}
    wait_until(lambda: all(summary_attributes(page).get(k) == v for k, v in want.items()), 30,
               f"token-summary to equal listRunTokenUsage {want} (page: {summary_attributes(page)})", page)

    attrs = summary_attributes(page)
    prices = load_price_table(use_env=False)
    scorers = gateway_install / "node_modules" / "@smithers-orchestrator" / "scorers"
    reference = smithers_costs(bun_path(gateway_install), scorers, rows)
    priced = [cost for row, cost in zip(rows, reference, strict=True) if prices.price_of(row["model"]) is not None]
    assert len(priced) == 3
    assert float(attrs["data-cost-usd"]) == pytest.approx(sum(priced), rel=1e-9)
    local = [TokenCounts.from_payload(r).total for r in rows if r["model"] == "local-llama-3-8b"]
    assert int(attrs["data-unpriced-tokens"]) == sum(local) > 0
    text = page.locator('[data-testid="token-summary"]').inner_text()
    assert "unpriced" in text and "$0.00" not in text

    # tokens per task on the tree rows, beside the agent's name
    by_node: dict[str, int] = {}
    for row in rows:
        by_node[row["nodeId"]] = by_node.get(row["nodeId"], 0) + TokenCounts.from_payload(row).total
    wait_until(lambda: tree_tokens(page) == by_node, 20, f"tree rows' tokens {by_node} (page: {tree_tokens(page)})", page)
    expect(page.locator(".st-row[data-tokens] .st-meta", has_text="local-llm").first).to_be_visible()

    # the wall monitor: the cost so far
    page.goto(dashboard.url(f"view=monitor&runId={run_id}"), wait_until="domcontentloaded")
    wait_until(lambda: summary_attributes(page).get("data-cost-usd") == attrs["data-cost-usd"], 30, "the wall's cost", page)
    expect(page.locator('[data-testid="token-summary"]')).to_contain_text("cost so far")


def test_tokens_tab_tables_chart_and_node_selection(
    page: Page, dashboard: DashboardServer, gateway: GatewayServer, tmp_path: Path
) -> None:
    run_id = gateway.launch_run("agents")
    gateway.wait_for_run(run_id, timeout=90)
    page.set_viewport_size({"width": 1400, "height": 1500})
    page.goto(dashboard.url(f"runId={run_id}"), wait_until="domcontentloaded")
    wait_until(lambda: summary_attributes(page).get("data-reports") == "4", 30, "the four usage reports", page)
    click_tab(page, "Tokens")

    for by, names in (("node", NODES), ("agent", {"researcher", "writer", "reviewer", "local-llm"}),
                      ("model", {"claude-sonnet-4-6-20260115", "gpt-5.6-terra-2026-03-01", "claude-haiku-4-5-20251001",
                                 "local-llama-3-8b"})):
        cells = page.locator(f'.sd-tokens-by-{by} .tabulator-cell[tabulator-field="{by}"]')
        wait_until(lambda cells=cells, names=names: set(cells.all_inner_texts()) == names, 20, f"the by-{by} table", page)
    local_cost = page.locator(".sd-tokens-by-model .tabulator-row", has_text="local-llama-3-8b") \
        .locator('.tabulator-cell[tabulator-field="cost"]')
    expect(local_cost).to_have_text("unpriced")
    # the burn chart: a Bokeh plot drawn on its canvas
    expect(page.locator(".sd-token-breakdown canvas").first).to_be_visible(timeout=20_000)

    # a node row selects the node everywhere: the tree's row and the URL
    page.locator('.sd-tokens-by-node .tabulator-cell[tabulator-field="node"]', has_text=re.compile("^write$")).click()
    wait_until(lambda: "nodeId=write" in page.url, 20, "the URL to carry nodeId=write", page)
    selected = page.locator('.st-row[aria-selected="true"] .st-label')
    expect(selected).to_have_text("write", timeout=20_000)

    # a run opened after it ended: the tree rows get their tokens too
    wait_until(lambda: set(tree_tokens(page)) == NODES, 20, f"tokens on the tree rows (page: {tree_tokens(page)})", page)

    # docs/screenshots/tokens.png is this picture (copied by hand: a test does not write the repo)
    page.screenshot(path=str(tmp_path / "tokens.png"), full_page=True)

"""inspector.pricing: Smithers' table and formula, checked against Smithers' own code under Bun."""

from __future__ import annotations

import json
import subprocess
from typing import TYPE_CHECKING

import pytest

from inspector.pricing import (
    PRICES_ENV,
    PriceTableError,
    TokenCounts,
    estimate_cost,
    load_price_table,
    usage_cost,
)
from tests.gateway.install import bun_path

if TYPE_CHECKING:
    from pathlib import Path

#: Usage rows covering every table entry's matching forms, the long-context threshold, odd
#: counts and unknown models.
USAGES = [
    {"model": "claude-sonnet-4-6-20260115", "inputTokens": 1200, "outputTokens": 340, "cacheReadTokens": 800, "cacheWriteTokens": 100,
     "reasoningTokens": 40},
    {"model": "gpt-5.6-terra-2026-03-01", "inputTokens": 2000, "outputTokens": 500, "cacheReadTokens": 1500, "cacheWriteTokens": 0},
    {"model": "claude-haiku-4-5-20251001", "inputTokens": 900, "outputTokens": 150, "cacheReadTokens": 0, "cacheWriteTokens": 300},
    {"model": "claude-opus-4-7-20260201", "inputTokens": 300, "outputTokens": 20},
    {"model": "claude-opus-4-8[1m]", "inputTokens": 5000, "outputTokens": 7000, "cacheReadTokens": 123456},
    {"model": "CLAUDE-SONNET-4-6", "inputTokens": 1, "outputTokens": 1},
    {"model": "claude-fable-5_preview", "inputTokens": 10, "outputTokens": 10, "cacheWriteTokens": 10},
    {"model": "gpt-5.6-sol", "inputTokens": 200000, "outputTokens": 10000, "cacheReadTokens": 72000},
    {"model": "gpt-5.6-sol", "inputTokens": 200000, "outputTokens": 10000, "cacheReadTokens": 72001},
    {"model": "gpt-5.6-luna-2026", "inputTokens": 300000, "outputTokens": 1, "cacheWriteTokens": 5},
    {"model": "claude-sonnet-5", "inputTokens": 0, "outputTokens": 0},
    {"model": "claude-opus-5", "inputTokens": 3, "outputTokens": 4, "cacheReadTokens": 5, "cacheWriteTokens": 6},
    {"model": "claude-sonnet-4-60", "inputTokens": 1000, "outputTokens": 1000},
    {"model": "local-llama-3-8b", "inputTokens": 700, "outputTokens": 90},
]


def smithers_costs(bun: Path, scorers: Path, usages: list[dict[str, object]]) -> list[float]:
    """Smithers' own ``estimateCostUsd`` on each usage, run by Bun."""
    script = (
        f"import {{ estimateCostUsd }} from {json.dumps(str(scorers / 'src' / 'estimateCostUsd.js'))};\n"
        f"const usages = {json.dumps(usages)};\n"
        "console.log(JSON.stringify(usages.map((u) => estimateCostUsd(u))));\n"
    )
    result = subprocess.run([str(bun), "-e", script], capture_output=True, text=True, timeout=60, check=True)
    costs: list[float] = json.loads(result.stdout.strip().splitlines()[-1])
    return costs


def test_costs_equal_smithers_estimate_cost_usd(gateway_install: Path) -> None:
    scorers = gateway_install / "node_modules" / "@smithers-orchestrator" / "scorers"
    reference = smithers_costs(bun_path(gateway_install), scorers, USAGES)
    table = load_price_table(use_env=False)
    for usage, expected in zip(USAGES, reference, strict=True):
        ours = usage_cost(str(usage["model"]), TokenCounts.from_payload(usage), table)
        if ours is None:
            # Smithers meters an unknown model at $0; we call it unpriced instead.
            assert expected == 0, usage
            assert table.price_of(str(usage["model"])) is None
        else:
            assert ours == pytest.approx(expected, rel=1e-12, abs=1e-15), usage
    assert sum(1 for e in reference if e > 0) >= 10


def test_table_is_smithers_table(gateway_install: Path) -> None:
    """Every key of Smithers' PRICES, with its four rates, is in prices.json (read from the JS)."""
    source = gateway_install / "node_modules" / "@smithers-orchestrator" / "scorers" / "src" / "modelTokenPrices.js"
    script = (
        f"const src = await Bun.file({json.dumps(str(source))}).text();\n"
        "const body = src.slice(src.indexOf('const PRICES = {') + 15, src.indexOf('};', src.indexOf('const PRICES')) + 1);\n"
        "console.log(JSON.stringify(eval('(' + body + ')')));\n"
    )
    out = subprocess.run([str(bun_path(gateway_install)), "-e", script], capture_output=True, text=True, timeout=60,
                         check=True).stdout
    theirs = json.loads(out.strip().splitlines()[-1])
    table = load_price_table(use_env=False)
    assert [key for key, _ in table.models] == list(theirs)
    for key, price in table.models:
        assert (price.input, price.output, price.cache_write, price.cache_read) == (
            theirs[key]["input"], theirs[key]["output"], theirs[key]["cacheWrite"], theirs[key]["cacheRead"])


def test_unpriced_tokens_are_never_zero_dollars() -> None:
    table = load_price_table(use_env=False)
    only_unknown = estimate_cost([("local-llama-3-8b", TokenCounts(700, 90))], table)
    assert only_unknown.cost_usd is None
    assert only_unknown.unpriced_tokens == 790 and only_unknown.priced_tokens == 0
    assert only_unknown.unpriced_models == ("local-llama-3-8b",) and not only_unknown.complete
    mixed = estimate_cost([("local-llama-3-8b", TokenCounts(700, 90)),
                           ("claude-haiku-4-5-20251001", TokenCounts(1_000_000, 0))], table)
    assert mixed.cost_usd == pytest.approx(1.0)
    assert mixed.unpriced_tokens == 790 and mixed.priced_tokens == 1_000_000
    assert mixed.by_model == {"local-llama-3-8b": None, "claude-haiku-4-5-20251001": pytest.approx(1.0)}
    assert estimate_cost([], table).cost_usd is None


def test_user_file_overrides_and_adds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    user = tmp_path / "prices.json"
    user.write_text(json.dumps({"models": {"local-llama": {"input": 0.1, "output": 0.2},
                                           "claude-haiku-4-5": {"input": 2, "output": 10}}}))
    monkeypatch.setenv(PRICES_ENV, str(user))
    table = load_price_table()
    assert usage_cost("local-llama-3-8b", TokenCounts(1_000_000, 1_000_000), table) == pytest.approx(0.3)
    assert usage_cost("claude-haiku-4-5-20251001", TokenCounts(1_000_000, 0), table) == pytest.approx(2.0)
    # an argument layers over the environment's file
    argument = load_price_table({"models": {"local-llama-3": {"input": 1, "output": 1}}})
    assert usage_cost("local-llama-3-8b", TokenCounts(1_000_000, 0), argument) == pytest.approx(1.0)
    assert str(user) in argument.sources


def test_bad_price_files_say_what_is_wrong(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(PriceTableError, match="not JSON"):
        load_price_table(bad, use_env=False)
    with pytest.raises(PriceTableError, match="non-negative"):
        load_price_table({"models": {"m": {"input": -1}}}, use_env=False)
    with pytest.raises(PriceTableError, match="cannot read"):
        load_price_table(tmp_path / "missing.json", use_env=False)

"""What an agent's tokens cost, by Smithers' own price table and formula.

The numbers are Smithers', carried as data in ``inspector/prices.json``:

- the table is ``PRICES`` of ``@smithers-orchestrator/scorers/src/modelTokenPrices.js``
  (smithers-orchestrator 0.32.0), USD per **million** tokens for input, output, cache write
  and cache read;
- the formula is ``estimateCostUsd`` of ``@smithers-orchestrator/scorers/src/estimateCostUsd.js``:
  each count (negative or missing taken as 0) over a million times its rate, summed; a GPT-5.6
  request whose input, cache read and cache write tokens together exceed 272,000 pays 2x on the
  input-side rates and 1.5x on output (carried per model as ``longContext``). Its coarse form
  (a bare ``tokens`` total, for forecasts) is not needed for reported usage and not carried.

A model id matches a table key when it equals the key or starts with ``key-``, ``key_`` or
``key[`` (a date suffix such as ``claude-haiku-4-5-20251001``, a context alias such as
``claude-opus-4-8[1m]``), case-insensitively, first key in table order winning, exactly as
``modelTokenPrices`` matches. ``tests/test_pricing.py`` runs Smithers' ``estimateCostUsd``
under Bun on the same usages and compares.

One deliberate difference: Smithers prices a model it does not know at $0. Here such a
model is **unpriced**: :func:`usage_cost` answers ``None``, and :class:`CostEstimate` counts its
tokens in ``unpriced_tokens`` and leaves ``cost_usd`` ``None`` when nothing at all was priced,
so "free" and "unknown" can never look alike.

Users add or override prices with a JSON file of the same shape (``{"models": {...}}``), given
as ``overrides=`` or named by ``SMITHERS_DASHBOARD_PRICES``; its keys are matched before the
built-in ones, so a user's ``claude-sonnet-4-6-2026`` wins over the built-in
``claude-sonnet-4-6``.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Final

from .errors import ConfigurationError

__all__ = [
    "PRICES_ENV",
    "CostEstimate",
    "ModelPrice",
    "PriceTable",
    "PriceTableError",
    "TokenCounts",
    "estimate_cost",
    "load_price_table",
    "usage_cost",
]

#: The environment variable naming a user price file.
PRICES_ENV: Final = "SMITHERS_DASHBOARD_PRICES"
_PER: Final = 1_000_000


class PriceTableError(ConfigurationError):
    """A price file that cannot be read or does not have the table's shape."""


@dataclass(frozen=True, slots=True)
class ModelPrice:
    """USD per million tokens of one model, and its long-context surcharge if it has one."""

    input: float
    output: float
    cache_write: float
    cache_read: float
    long_context_above: int | None = None
    long_context_input_multiplier: float = 1.0
    long_context_output_multiplier: float = 1.0

    @classmethod
    def from_json(cls, key: str, raw: object) -> ModelPrice:
        if not isinstance(raw, Mapping):
            raise PriceTableError(f"price of {key!r} must be an object, not {type(raw).__name__}")

        def rate(name: str) -> float:
            value = raw.get(name, 0)
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
                raise PriceTableError(f"price of {key!r}: {name} must be a non-negative number, not {value!r}")
            return float(value)

        long_context = raw.get("longContext")
        above: int | None = None
        input_x = output_x = 1.0
        if long_context is not None:
            if not isinstance(long_context, Mapping) or not isinstance(long_context.get("aboveInputTokens"), int):
                raise PriceTableError(f"price of {key!r}: longContext needs an integer aboveInputTokens")
            above = int(long_context["aboveInputTokens"])
            input_x = float(long_context.get("inputMultiplier", 1))
            output_x = float(long_context.get("outputMultiplier", 1))
        return cls(rate("input"), rate("output"), rate("cacheWrite"), rate("cacheRead"), above, input_x, output_x)


def _matches(model: str, key: str) -> bool:
    return model == key or model.startswith((f"{key}-", f"{key}_", f"{key}["))


@dataclass(frozen=True)
class PriceTable:
    """Model prices in match order (user entries first, then Smithers')."""

    models: tuple[tuple[str, ModelPrice], ...]
    sources: tuple[str, ...] = ()

    def price_of(self, model: str | None) -> ModelPrice | None:
        """The price of ``model`` (``modelTokenPrices``' matching), ``None`` when it has none."""
        normalized = str(model or "").lower()
        for key, price in self.models:
            if _matches(normalized, key):
                return price
        return None

    def with_overrides(self, raw: Mapping[str, Any], source: str = "overrides") -> PriceTable:
        """This table with ``raw``'s models matched first (``{"models": {...}}`` or a bare mapping)."""
        models = raw.get("models", raw) if isinstance(raw, Mapping) else raw
        if not isinstance(models, Mapping):
            raise PriceTableError(f"{source}: 'models' must be an object of model id -> price")
        added = tuple((str(key).lower(), ModelPrice.from_json(str(key), value)) for key, value in models.items())
        keys = {key for key, _ in added}
        return PriceTable(added + tuple(m for m in self.models if m[0] not in keys), (source, *self.sources))


def _read_json(path: Path) -> Mapping[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise PriceTableError(f"cannot read the price file {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise PriceTableError(f"the price file {path} is not JSON: {exc}") from None
    if not isinstance(data, Mapping):
        raise PriceTableError(f"the price file {path} must hold a JSON object")
    return data


def load_price_table(overrides: str | Path | Mapping[str, Any] | None = None, *, use_env: bool = True) -> PriceTable:
    """Smithers' table, then the user's file (``SMITHERS_DASHBOARD_PRICES``), then ``overrides``.

    Later layers are matched first. ``overrides`` is a path or an already-parsed mapping.
    """
    builtin = json.loads(resources.files("inspector").joinpath("prices.json").read_text(encoding="utf-8"))
    table = PriceTable((), ()).with_overrides(builtin, str(builtin.get("source", "prices.json")))
    env_path = os.environ.get(PRICES_ENV) if use_env else None
    if env_path:
        table = table.with_overrides(_read_json(Path(env_path)), env_path)
    if isinstance(overrides, str | Path):
        table = table.with_overrides(_read_json(Path(overrides)), str(overrides))
    elif overrides is not None:
        table = table.with_overrides(overrides)
    return table


@dataclass(frozen=True, slots=True)
class TokenCounts:
    """Token counts of one usage report (``token.usage`` / ``TokenUsageReported``)."""

    input: int = 0
    output: int = 0
    cache_read: int = 0
    cache_write: int = 0
    reasoning: int = 0

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> TokenCounts:
        def count(key: str) -> int:
            value = payload.get(key)
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                return 0
            return max(0, int(value))

        return cls(count("inputTokens"), count("outputTokens"), count("cacheReadTokens"),
                   count("cacheWriteTokens"), count("reasoningTokens"))

    def __add__(self, other: TokenCounts) -> TokenCounts:
        return TokenCounts(self.input + other.input, self.output + other.output, self.cache_read + other.cache_read,
                           self.cache_write + other.cache_write, self.reasoning + other.reasoning)

    @property
    def billable(self) -> int:
        """The tokens a price applies to: input, output, cache read and cache write.

        Reasoning tokens are a part of output that some engines report apart; Smithers' formula
        does not price them separately, so they are not added again.
        """
        return self.input + self.output + self.cache_read + self.cache_write

    @property
    def total(self) -> int:
        """Input + output + cache read + cache write (what a "tokens" column shows)."""
        return self.billable


def usage_cost(model: str | None, tokens: TokenCounts, table: PriceTable) -> float | None:
    """USD of one usage by ``estimateCostUsd``'s formula, ``None`` when ``model`` has no price."""
    price = table.price_of(model)
    if price is None:
        return None
    input_side = tokens.input + tokens.cache_read + tokens.cache_write
    long_context = price.long_context_above is not None and input_side > price.long_context_above
    input_x = price.long_context_input_multiplier if long_context else 1.0
    output_x = price.long_context_output_multiplier if long_context else 1.0
    return (
        tokens.input / _PER * (price.input * input_x)
        + tokens.output / _PER * (price.output * output_x)
        + tokens.cache_read / _PER * (price.cache_read * input_x)
        + tokens.cache_write / _PER * (price.cache_write * input_x)
    )


@dataclass(frozen=True)
class CostEstimate:
    """The cost of a set of usages, with what could not be priced kept apart.

    ``cost_usd`` is the sum over priced usages, ``None`` when no usage was priced (so an
    all-unknown run never reads "$0.00"); ``unpriced_tokens`` and ``unpriced_models`` say what
    the figure leaves out, and ``complete`` is true only when nothing was left out.
    """

    cost_usd: float | None
    priced_tokens: int
    unpriced_tokens: int
    unpriced_models: tuple[str, ...]
    by_model: Mapping[str, float | None] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        return self.unpriced_tokens == 0


def estimate_cost(usages: Iterable[tuple[str | None, TokenCounts]], table: PriceTable) -> CostEstimate:
    """Price ``(model, tokens)`` pairs: a :class:`CostEstimate` with priced and unpriced apart."""
    total: float | None = None
    priced = unpriced = 0
    unpriced_models: list[str] = []
    by_model: dict[str, float | None] = {}
    for model, tokens in usages:
        name = str(model or "unknown")
        cost = usage_cost(model, tokens, table)
        if cost is None:
            unpriced += tokens.billable
            if name not in unpriced_models:
                unpriced_models.append(name)
            by_model.setdefault(name, None)
            continue
        priced += tokens.billable
        total = (total or 0.0) + cost
        by_model[name] = (by_model.get(name) or 0.0) + cost
    return CostEstimate(total, priced, unpriced, tuple(unpriced_models), by_model)

# mypy: allow-untyped-calls
"""Tokens and cost of a run: the header's summary, the wall's cost so far, and the Tokens tab.

What an operator of an AI workflow asks first is "how many tokens, and what did it cost".
The numbers come from the run's agents model (:class:`inspector.agents.RunAgents`, the
store's ``agents``: one usage per attempt, from live ``token.usage`` events, the durable
history and ``listRunTokenUsage``) and the price table (the store's ``prices``: Smithers' own
``modelTokenPrices.js`` and ``estimateCostUsd.js`` formula, see :mod:`inspector.pricing`).

- :class:`TokenSummary`: one line for the run header, live. Its element
  ``data-testid="token-summary"`` carries ``data-input-tokens``, ``data-output-tokens``,
  ``data-cache-read-tokens``, ``data-cache-write-tokens``, ``data-reasoning-tokens``,
  ``data-cost-usd`` (the priced models' cost, a plain decimal number) and
  ``data-unpriced-tokens`` (tokens of models with no price: counted and shown as
  "unpriced", never as $0). On the wall monitor (``large``) it is the cost so far in big type.
- :class:`TokenBreakdown`: the "Tokens" tab: tables by node, by agent and by model (tokens,
  cost, unpriced marked) and the burn chart, cumulative tokens over the run, with the burn
  rate (tokens per minute). The chart is an ``hv.DynamicMap`` on a ``Pipe``: a live update
  sends the chart its new points, not a new plot. Clicking a node row selects that node in
  every view (``store.select_task``).

Both redraw on ``agents_version`` (bumped once per store flush that changed the agents),
throttled. Model, agent and node names are Gateway text: escaped in HTML, ``plaintext`` in
tables, plain ``@field`` references (which Bokeh escapes) in the chart's hover.
"""

from __future__ import annotations

import html
import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import holoviews as hv
import pandas as pd
import panel as pn
import param

from inspector.agents import RunAgents
from inspector.pricing import (
    CostEstimate,
    PriceTable,
    TokenCounts,
    estimate_cost,
    load_price_table,
    usage_cost,
)

from ..htmlpane import TextHTML
from .base import StoreView
from .widgets import TextPane, in_document, plaintext, stylesheet

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from inspector.agents import UsageRow

__all__ = [
    "BREAKDOWN_COLUMNS",
    "TokenBreakdown",
    "TokenFigures",
    "TokenSummary",
    "breakdown_frame",
    "burn_frame",
    "format_tokens",
    "format_usd",
    "token_figures",
    "token_summary_html",
]

hv.renderer("bokeh")  # registers the Bokeh backend (options below are Bokeh's) without notebook output

#: Columns of the by-node / by-agent / by-model tables (the first is renamed per table).
BREAKDOWN_COLUMNS = ["name", "attempts", "input", "output", "cache read", "cache write", "reasoning", "total",
                     "cost (USD)", "unpriced tokens", "cost"]
_BURN_COLUMNS = ["t", "minutes", "tokens", "cumulative", "rate", "node", "agent", "model"]

_CSS = """
.sd-tokens { display: flex; gap: 1.1em; flex-wrap: wrap; align-items: baseline; font-size: .92em; color: var(--sd-muted); }
.sd-tokens b { color: var(--sd-fg); }
.sd-tokens .sd-cost b { font-size: 1.1em; }
.sd-tokens .sd-unpriced { color: #b06000; }
:host(.sd-monitor) .sd-tokens { font-size: 1.6em; }
:host(.sd-monitor) .sd-tokens .sd-cost b { font-size: 1.3em; }
"""

_PRICES: PriceTable | None = None


def _default_prices() -> PriceTable:
    """The price table when the store has none (loaded once per process)."""
    global _PRICES
    if _PRICES is None:
        _PRICES = load_price_table()
    return _PRICES


def format_tokens(count: int) -> str:
    """A compact token count: ``950``, ``12.3k``, ``4.56M``."""
    if count < 1000:
        return str(count)
    if count < 1_000_000:
        return f"{count / 1000:.1f}k" if count < 100_000 else f"{count / 1000:.0f}k"
    return f"{count / 1_000_000:.2f}M"


def format_usd(amount: float) -> str:
    """Dollars as an operator reads them: cents when over a dollar, four decimals under."""
    if amount >= 1:
        return f"${amount:,.2f}"
    if amount == 0:
        return "$0.00"
    return f"${amount:.4f}"


def _decimal(amount: float) -> str:
    """A plain decimal number (never exponent notation) for a ``data-`` attribute."""
    text = f"{amount:.12f}".rstrip("0").rstrip(".")
    return text or "0"


@dataclass(frozen=True)
class TokenFigures:
    """What the summary shows: the run's token totals and their estimated cost."""

    totals: TokenCounts
    cost: CostEstimate
    reports: int

    @property
    def cost_usd(self) -> float:
        """Cost of the priced models (0 when none was priced: the unpriced tokens say the rest)."""
        return self.cost.cost_usd or 0.0


def token_figures(agents: RunAgents | None, prices: PriceTable) -> TokenFigures:
    """Totals and cost of ``agents`` (one usage per attempt) by Smithers' formula."""
    rows = agents.usage_rows() if agents is not None else []
    totals = TokenCounts()
    for row in rows:
        totals = totals + row.tokens
    return TokenFigures(totals, estimate_cost(((row.model, row.tokens) for row in rows), prices), len(rows))


def token_summary_html(figures: TokenFigures, *, large: bool = False) -> str:
    """The summary line: the element tests read (see the module docstring), every figure in it."""
    t = figures.totals
    cost = figures.cost
    attrs = (
        f'data-testid="token-summary" data-input-tokens="{t.input}" data-output-tokens="{t.output}" '
        f'data-cache-read-tokens="{t.cache_read}" data-cache-write-tokens="{t.cache_write}" '
        f'data-reasoning-tokens="{t.reasoning}" data-cost-usd="{_decimal(figures.cost_usd)}" '
        f'data-unpriced-tokens="{cost.unpriced_tokens}" data-reports="{figures.reports}"'
    )
    if not figures.reports:
        return f'<div class="sd-tokens" {attrs}><span>no token usage reported yet</span></div>'
    unpriced = ""
    if cost.unpriced_tokens:
        models = html.escape(", ".join(cost.unpriced_models))
        unpriced = (f'<span class="sd-unpriced" title="no price for: {models}">'
                    f"+ <b>{format_tokens(cost.unpriced_tokens)}</b> tokens unpriced</span>")
    if cost.cost_usd is None:
        money = '<span class="sd-cost">cost <b>unpriced</b></span>'
    else:
        label = "cost so far" if large else "est. cost"
        money = f'<span class="sd-cost" title="Smithers price table and formula">{label} <b>{format_usd(cost.cost_usd)}</b></span>'
    if large:
        return (f'<div class="sd-tokens" {attrs}>{money}{unpriced}'
                f"<span><b>{format_tokens(t.total)}</b> tokens</span></div>")
    parts = [
        f"<span><b>{format_tokens(t.total)}</b> tokens</span>",
        f'<span title="{t.input} input tokens">in <b>{format_tokens(t.input)}</b></span>',
        f'<span title="{t.output} output tokens">out <b>{format_tokens(t.output)}</b></span>',
        f'<span title="{t.cache_read} cache-read tokens">cache read <b>{format_tokens(t.cache_read)}</b></span>',
        f'<span title="{t.cache_write} cache-write tokens">cache write <b>{format_tokens(t.cache_write)}</b></span>',
    ]
    if t.reasoning:
        parts.append(f'<span title="{t.reasoning} reasoning tokens (part of output)">reasoning <b>{format_tokens(t.reasoning)}</b></span>')
    return f'<div class="sd-tokens" {attrs}>{"".join(parts)}{money}{unpriced}</div>'


def _store_agents(store: Any) -> RunAgents | None:
    agents = getattr(store, "agents", None)
    return agents if isinstance(agents, RunAgents) else None


def _store_prices(store: Any) -> PriceTable:
    prices = getattr(store, "prices", None)
    return prices if isinstance(prices, PriceTable) else _default_prices()


class TokenSummary(StoreView):
    """The run's tokens and estimated cost, one line (see the module docstring)."""

    large = param.Boolean(default=False, doc="Wall-monitor size: the cost so far in big type.")

    _redraw_on = ("agents_version", "agents", "run_id")
    _redraw_interval = 0.25

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self._pane = TextHTML(self._render(), stylesheets=[stylesheet(), _CSS],
                              css_classes=["sd-monitor"] if self.large else [],
                              sizing_mode="stretch_width", margin=(0, 10))

    def _render(self) -> str:
        store = self.store
        agents = _store_agents(store)
        prices = _store_prices(store)
        shared = getattr(store, "shared", None)
        if shared is None or agents is None:
            return token_summary_html(token_figures(agents, prices), large=self.large)
        # Every session of a run renders the same line in the same tick: once for all of them
        # when they share the agents model (the key is the model and its version).
        key = (id(agents), agents.version, id(prices), self.large)
        return shared.memo("token-summary", key, (agents, prices),  # type: ignore[no-any-return]
                           lambda: token_summary_html(token_figures(agents, prices), large=self.large))

    def _update(self) -> None:
        text = self._render()
        if text != self._pane.object:
            self._pane.object = text

    def __panel__(self) -> pn.viewable.Viewable:
        return self._pane


# ---------------------------------------------------------------------- the Tokens tab


def _row_cost(rows: Iterable[UsageRow], prices: PriceTable) -> tuple[float | None, int]:
    """Cost of the priced rows (``None``: none priced) and the tokens of the unpriced ones."""
    cost: float | None = None
    unpriced = 0
    for row in rows:
        amount = usage_cost(row.model, row.tokens, prices)
        if amount is None:
            unpriced += row.tokens.total
        else:
            cost = (cost or 0.0) + amount
    return cost, unpriced


def _cost_text(cost: float | None, unpriced: int) -> str:
    if cost is None:
        return "unpriced" if unpriced else ""
    return format_usd(cost) + (f" + {format_tokens(unpriced)} unpriced" if unpriced else "")


def breakdown_frame(agents: RunAgents | None, prices: PriceTable, by: str) -> pd.DataFrame:
    """Tokens and cost grouped ``by`` ``"node"``, ``"agent"`` or ``"model"``, most tokens first.

    ``cost (USD)`` is the priced part (NaN when nothing in the group has a price),
    ``unpriced tokens`` the rest, ``cost`` the text a reader sees ("$0.0123", "unpriced",
    "$0.01 + 790 unpriced").
    """
    groups: dict[str, list[UsageRow]] = {}
    for row in agents.usage_rows() if agents is not None else []:
        name = {"node": row.node_id, "agent": row.agent, "model": row.model}[by] or "unknown"
        groups.setdefault(name, []).append(row)
    records = []
    for name, rows in groups.items():
        tokens = TokenCounts()
        for row in rows:
            tokens = tokens + row.tokens
        cost, unpriced = _row_cost(rows, prices)
        records.append([name, len(rows), tokens.input, tokens.output, tokens.cache_read, tokens.cache_write,
                        tokens.reasoning, tokens.total, math.nan if cost is None else cost, unpriced,
                        _cost_text(cost, unpriced)])
    frame = pd.DataFrame.from_records(records, columns=BREAKDOWN_COLUMNS)
    return frame.sort_values(["total", "name"], ascending=[False, True], kind="stable").reset_index(drop=True)


def burn_frame(agents: RunAgents | None) -> pd.DataFrame:
    """One point per usage report with a time: when (``t``, and ``minutes`` since the run's
    first event), its tokens, the run's cumulative tokens then, and the burn rate up to it
    (cumulative tokens per minute since the run started)."""
    records: list[list[Any]] = []
    if agents is not None:
        start = agents.run_started_ms
        total = 0
        for row in agents.usage_rows():
            if row.t_ms is None:
                continue
            total += row.tokens.total
            origin = start if start is not None and start <= row.t_ms else row.t_ms
            minutes = (row.t_ms - origin) / 60_000
            rate = total / minutes if minutes > 0 else math.nan
            records.append([pd.Timestamp(row.t_ms, unit="ms"), minutes, row.tokens.total, total, rate,
                            row.node_id, row.agent or "unknown", row.model or "unknown"])
    return pd.DataFrame.from_records(records, columns=_BURN_COLUMNS)


def _burn_curve(data: pd.DataFrame) -> hv.Curve:
    return hv.Curve(data, kdims=["t"], vdims=["cumulative"]).opts(
        interpolation="steps-post", responsive=True, height=240, line_width=2, color="#1a73e8", padding=0.05,
        xlabel="time", ylabel="tokens (cumulative)", title="Token burn", framewise=True,
    )


def _burn_points(data: pd.DataFrame) -> hv.Scatter:
    return hv.Scatter(data, kdims=["t"], vdims=["cumulative", "tokens", "rate", "node", "agent", "model"]).opts(
        size=8, color="#1a73e8", tools=["hover"], responsive=True, height=240, framewise=True, padding=0.05,
        hover_tooltips=[("node", "@node"), ("agent", "@agent"), ("model", "@model"), ("tokens", "@tokens"),
                        ("run total", "@cumulative"), ("tokens/min so far", "@rate{0}")],
    )


class TokenBreakdown(StoreView):
    """The Tokens tab: breakdown tables and the burn chart (see the module docstring)."""

    _redraw_on = ("agents_version", "agents", "run_id")
    _redraw_interval = 1.0

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        agents = _store_agents(self.store)
        prices = _store_prices(self.store)
        self._doc = pn.state.curdoc
        self._summary = TextPane("", margin=(5, 10))
        self._burn = hv.streams.Pipe(data=burn_frame(agents))
        chart = hv.DynamicMap(_burn_curve, streams=[self._burn]) * hv.DynamicMap(_burn_points, streams=[self._burn])
        self._chart = pn.pane.HoloViews(chart, sizing_mode="stretch_width", height=260, linked_axes=False)
        self._tables = {by: self._table(breakdown_frame(agents, prices, by), by) for by in ("node", "agent", "model")}
        self._tables["node"].on_click(self._clicked)
        self._usage = self._signature(agents)
        self._update_text(agents)

    @staticmethod
    def _table(frame: pd.DataFrame, by: str) -> pn.widgets.Tabulator:
        return pn.widgets.Tabulator(
            frame.rename(columns={"name": by}), show_index=False, disabled=True, selectable=False,
            formatters=plaintext(by, "cost"), hidden_columns=["cost (USD)"],  # "cost" says it as text
            layout="fit_data_stretch", sizing_mode="stretch_width", max_height=260,
            css_classes=[f"sd-tokens-by-{by}"],
        )

    def _update_text(self, agents: RunAgents | None) -> None:
        text = self._text(agents)
        if text != self._summary.object:
            self._summary.object = text

    def _text(self, agents: RunAgents | None) -> str:
        if agents is None or not agents.usage_rows():
            return "No token usage reported for this run yet."
        figures = token_figures(agents, _store_prices(self.store))
        rate = agents.burn_rate(None if agents.run_finished_ms is not None else time.time() * 1000)
        burn = f"{rate:,.0f} tokens/min over the run" if rate is not None else "burn rate: not enough time yet"
        money = "cost unpriced" if figures.cost.cost_usd is None else f"est. cost {format_usd(figures.cost.cost_usd)}"
        unpriced = f" + {figures.cost.unpriced_tokens:,} tokens unpriced ({', '.join(figures.cost.unpriced_models)})" \
            if figures.cost.unpriced_tokens else ""
        return (f"{figures.totals.total:,} tokens in {figures.reports} attempt(s) · {money}{unpriced} · "
                f"{burn}. Prices: Smithers' modelTokenPrices.js and estimateCostUsd.js.")

    def _signature(self, agents: RunAgents | None) -> tuple[Any, ...]:
        rows = agents.usage_rows() if agents is not None else []
        return (id(agents), id(_store_prices(self.store)),
                tuple((r.node_id, r.iteration, r.attempt, r.agent, r.model, r.tokens, r.t_ms) for r in rows))

    def _update(self) -> None:
        agents = _store_agents(self.store)
        usage = self._signature(agents)
        if usage == self._usage:
            # Output and actions bump ``agents_version`` many times a second on a busy run;
            # only the burn rate's "so far" moves then, the tables and the chart do not.
            self._in_session(lambda: self._update_text(agents))
            return
        self._usage = usage
        prices = _store_prices(self.store)
        frames = {by: breakdown_frame(agents, prices, by).rename(columns={"name": by}) for by in self._tables}
        burn = burn_frame(agents)

        def apply() -> None:
            with pn.io.hold():
                self._update_text(agents)
                for by, frame in frames.items():
                    table = self._tables[by]
                    if not table.value.equals(frame):
                        table.value = frame
                self._burn.send(burn)  # new points for the same plot

        self._in_session(apply)

    def _in_session(self, fn: Callable[[], None]) -> None:
        """Store ticks come from the hub's loop: apply them in this session's document."""
        in_document(self._doc, fn)

    def _clicked(self, event: Any) -> None:
        frame = self._tables["node"].value
        if event.row is None or not 0 <= event.row < len(frame):
            return
        self.store.select_task(str(frame.iloc[event.row]["node"]))

    def __panel__(self) -> pn.viewable.Viewable:
        def titled(title: str, table: pn.widgets.Tabulator) -> pn.Column:
            return pn.Column(pn.pane.HTML(f"<h3>{html.escape(title)}</h3>", margin=(0, 10)), table,
                             sizing_mode="stretch_width")

        return pn.Column(
            self._summary,
            self._chart,
            titled("By node (click a row to select it)", self._tables["node"]),
            titled("By agent", self._tables["agent"]),
            titled("By model", self._tables["model"]),
            sizing_mode="stretch_width",
            css_classes=["sd-token-breakdown"],
        )

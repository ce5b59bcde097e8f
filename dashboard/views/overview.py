# mypy: allow-untyped-calls
"""RunsOverview: how the runs are going, across runs (the landing page, above the run list).

Three HoloViews charts and two tables, all computed on the server from one shared copy of
the run list (:class:`RunsFeed`), so the browser gets aggregates, not 10,000 rows:

- **runs over time**: start x duration, coloured by status. ``hv.DynamicMap`` over an
  ``hv.streams.Pipe``: a poll that found new or changed runs ``send`` s the new points, and
  HoloViews patches the plot's data source in place (same figure, same axes, new columns).
  Past :data:`MAX_POINTS` runs the points are binned by time and status on the server
  (:func:`~dashboard.analytics.runs_over_time`). ``BoundsX`` (the x-box-select tool, active
  by default) brushes a time range; ``Tap`` opens the run under the pointer (``?runId=``).
- **per-workflow bars** (ok / failed / active runs, stacked): a ``DynamicMap`` on its own
  ``Pipe``; ``Selection1D`` on a tap picks a workflow.
- **score trends**: mean score per scorer per run over time, a ``Path`` (one line per
  scorer) and ``Scatter`` overlaid, both ``DynamicMap`` s on one ``Pipe``.
- the **per-workflow table** (one ``data-testid="workflow-stats"`` row per workflow with
  ``data-workflow``, ``data-runs``, ``data-failed``, ``data-p50-ms``; escaped HTML), and the
  **run table** (a remote-paginated Tabulator: only the page shown travels).

Linked selection is done with selection streams rather than ``link_selections``: the
charts show different aggregations of the runs (points, binned points, per-workflow bars,
per-scorer means), which ``link_selections`` cannot re-aggregate from a brushed subset,
while the server can. The brushed time range filters the bars, the workflow table, the
score trends and the run table; the picked workflow filters the scatter, the score trends
and the run table. The time window, workflow and status filters are params synced with the
page URL (``?window=&workflow=&status=``).

Live updates: ``listRuns`` is a read the Gateway does not push (the hub's socket carries one
run's DevTools stream, and the hello snapshot is not renewed), so :class:`RunsFeed` polls
it every ``poll_seconds`` (2 s) and merges the answer with a diff
(:class:`~inspector.runlist.RunHistory`): the newest page plus a ``getRun`` for every run
it last saw active that has left that page; the whole list is re-read page by page at the
start and every ``full_seconds``. One feed per hub, so many browsers cost one poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import logging
import math
import time
import weakref
from typing import TYPE_CHECKING, Any, ClassVar

import holoviews as hv
import numpy as np
import pandas as pd
import panel as pn
import param
from panel.io.state import set_curdoc

from inspector.errors import GatewayError
from inspector.runlist import DEFAULT_PAGE_SIZE, RunHistory, read_runs

from ..analytics import (
    WINDOWS,
    filter_runs,
    runs_over_time,
    runs_table,
    score_trends,
    window_start_ms,
    workflow_stats,
)
from ..format import format_duration, run_status_colour
from ..hub import GatewayHub
from .compare import RunComparison
from .widgets import TextPane, plaintext, stylesheet

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

__all__ = ["MAX_POINTS", "LandingPage", "RunsFeed", "RunsOverview", "nearest_run", "stats_html"]

log = logging.getLogger(__name__)

hv.renderer("bokeh")  # registers the Bokeh backend (options below are Bokeh's) without notebook output

#: Most points the scatter draws one per run; beyond, it shows time bins.
MAX_POINTS = 2000
#: Run statuses re-read until they end.
ACTIVE_STATUSES = ("running", "continued", "waiting-approval", "waiting-event", "waiting-timer", "waiting-quota",
                   "paused", "pending", "queued")
#: How many of the newest ended runs in view the score trends read ``listScores`` for.
SCORED_RUNS = 40

_CSS = """
table.sd-stats { border-collapse: collapse; width: 100%; font-size: .9em; color: var(--sd-fg); }
table.sd-stats th, table.sd-stats td { padding: .25em .6em; border-bottom: 1px solid var(--sd-border); text-align: right; }
table.sd-stats th:first-child, table.sd-stats td:first-child { text-align: left; }
table.sd-stats tr.sd-picked td { background: color-mix(in srgb, #1a73e8 12%, transparent); }
.sd-fail { color: #d93025; font-weight: 600; }
"""

_OUTCOME_COLOURS = {"ok": "#188038", "failed": "#d93025", "active": "#1a73e8", "other": "#80868b"}


def _now_ms() -> float:
    return time.time() * 1000.0


# --------------------------------------------------------------------------- the shared feed


class RunsFeed:
    """The process's copy of the Gateway's run list, polled while someone watches it.

    ``subscribe(listener)`` starts the poll (the first listener) and returns the function
    that unsubscribes; the poll stops when the last listener leaves. Listeners are called on
    the loop after every poll, with ``True`` when it changed something (a view that was
    hidden while runs changed catches up on the next poll).
    """

    _shared: ClassVar[weakref.WeakKeyDictionary[GatewayHub, RunsFeed]] = weakref.WeakKeyDictionary()

    def __init__(
        self,
        hub: GatewayHub,
        *,
        poll_seconds: float = 2.0,
        full_seconds: float = 300.0,
        max_runs: int = 50_000,
        page_size: int = DEFAULT_PAGE_SIZE,
        newest_page: int = 100,
    ) -> None:
        self.hub = hub
        self.poll_seconds = poll_seconds
        self.full_seconds = full_seconds
        self.max_runs = max_runs
        self.page_size = page_size
        self.newest_page = newest_page
        self.history = RunHistory()
        self.loaded = False
        self.error: str | None = None
        self._listeners: dict[int, Callable[[bool], None]] = {}
        self._keys = 0
        self._task: asyncio.Task[None] | None = None
        self._frame: tuple[tuple[int, int], pd.DataFrame] | None = None
        self._scores: dict[str, list[dict[str, Any]]] = {}

    @classmethod
    def shared(cls, hub: GatewayHub) -> RunsFeed:
        """The hub's feed (one per hub, so sessions share the poll)."""
        feed = cls._shared.get(hub)
        if feed is None:
            feed = cls._shared[hub] = cls(hub)
        return feed

    async def _rpc(self, method: str, params: Mapping[str, Any]) -> Any:
        return await self.hub.read(method, params, max_age=min(1.0, self.poll_seconds / 2))

    def subscribe(self, listener: Callable[[bool], None]) -> Callable[[], None]:
        self._keys += 1
        key = self._keys
        self._listeners[key] = listener
        if self._task is None or self._task.done():
            with contextlib.suppress(RuntimeError):
                self._task = asyncio.get_running_loop().create_task(self._poll())
        return lambda: self._unsubscribe(key)

    def _unsubscribe(self, key: int) -> None:
        self._listeners.pop(key, None)
        if not self._listeners and self._task is not None:
            self._task.cancel()
            self._task = None

    async def _poll(self) -> None:
        last_full = -math.inf
        while self._listeners:
            try:
                if time.monotonic() - last_full >= self.full_seconds:
                    rows = await read_runs(self._rpc, max_runs=self.max_runs, page_size=self.page_size)
                    last_full = time.monotonic()
                else:
                    rows = await self._recent()
                changed = bool(self.history.merge(rows))
                first = not self.loaded
                self.loaded, self.error = True, None
            except GatewayError as exc:
                changed, first = self.error != str(exc), False
                self.error = str(exc)
                log.info("overview: cannot list runs (%s)", exc)
            for listener in list(self._listeners.values()):
                try:
                    listener(changed or first)
                except Exception:  # one broken session must not stop the others' updates
                    log.exception("overview listener failed")
            await asyncio.sleep(self.poll_seconds)

    async def _recent(self) -> list[dict[str, Any]]:
        """The newest page, plus ``getRun`` for runs last seen active that left it."""
        page = await self._rpc("listRuns", {"filter": {"limit": self.newest_page}})
        rows = [r for r in page if isinstance(r, dict)] if isinstance(page, list) else []
        in_page = {r.get("runId") for r in rows}
        for run_id in self.history.active_ids(ACTIVE_STATUSES)[:50]:
            if run_id not in in_page:
                with contextlib.suppress(GatewayError):
                    run = await self._rpc("getRun", {"runId": run_id})
                    if isinstance(run, dict):
                        rows.append({k: v for k, v in run.items() if k not in ("summary", "runState")})
        return rows

    def frame(self) -> pd.DataFrame:
        """:func:`~dashboard.analytics.runs_table` of every run, cached per history version and
        second (running runs' durations grow)."""
        key = (self.history.version, int(time.time()))
        if self._frame is None or self._frame[0] != key:
            self._frame = (key, runs_table(self.history.runs.values(), _now_ms()))
        return self._frame[1]

    async def scores(self, run_ids: list[str]) -> dict[str, list[dict[str, Any]]]:
        """``listScores`` of these runs; ended runs' answers are kept (their scores are final)."""
        out: dict[str, list[dict[str, Any]]] = {}
        for run_id in run_ids:
            cached = self._scores.get(run_id)
            if cached is None:
                try:
                    answer = await self._rpc("listScores", {"runId": run_id})
                except GatewayError:
                    continue
                cached = [r for r in answer if isinstance(r, dict)] if isinstance(answer, list) else []
                if self.history.runs.get(run_id, {}).get("status") not in ACTIVE_STATUSES:
                    self._scores[run_id] = cached
            out[run_id] = cached
        return out


# --------------------------------------------------------------------------- pure renderers


def _attr(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _ms_attr(value: Any) -> str:
    return "" if value is None or pd.isna(value) else f"{float(value):.0f}"


def stats_html(stats: pd.DataFrame, picked: str = "") -> str:
    """The per-workflow table: one ``data-testid="workflow-stats"`` row per workflow, escaped."""
    head = ("<tr><th>workflow</th><th>runs</th><th>failed</th><th>failure rate</th><th>p50</th><th>p95</th>"
            "<th>last run</th><th>tokens</th><th>cost</th></tr>")
    rows = []
    for s in stats.itertuples(index=False):
        rate = "–" if pd.isna(s.failure_rate) else f"{s.failure_rate:.0%}"
        last = time.strftime("%Y-%m-%d %H:%M", time.localtime(s.last_ms / 1000)) if not pd.isna(s.last_ms) else "–"
        tokens = "–" if pd.isna(s.tokens) else f"{s.tokens:,.0f}"
        cost = "–" if pd.isna(s.cost_usd) else f"${s.cost_usd:,.2f}"
        cls = ' class="sd-picked"' if picked and s.workflow == picked else ""
        failed = f'<span class="sd-fail">{s.failed}</span>' if s.failed else "0"
        rows.append(
            f'<tr data-testid="workflow-stats"{cls} data-workflow="{_attr(s.workflow)}" data-runs="{int(s.runs)}" '
            f'data-failed="{int(s.failed)}" data-p50-ms="{_ms_attr(s.p50_ms)}" data-p95-ms="{_ms_attr(s.p95_ms)}">'
            f"<td>{html.escape(str(s.workflow) or '(none)')}</td><td>{int(s.runs)}</td><td>{failed}</td><td>{rate}</td>"
            f"<td>{format_duration(s.p50_ms / 1000 if not pd.isna(s.p50_ms) else None)}</td>"
            f"<td>{format_duration(s.p95_ms / 1000 if not pd.isna(s.p95_ms) else None)}</td>"
            f"<td>{last}</td><td>{tokens}</td><td>{cost}</td></tr>"
        )
    if not rows:
        rows.append('<tr><td colspan="9" class="sd-muted">No runs in this window.</td></tr>')
    return f'<table class="sd-stats">{head}{"".join(rows)}</table>'


def _points_frame(frame: pd.DataFrame) -> pd.DataFrame:
    points = runs_over_time(frame, max_points=MAX_POINTS)
    points["start"] = pd.to_datetime(points["start_ms"], unit="ms")
    points["duration_s"] = np.maximum(points["duration_ms"] / 1000.0, 0.01)  # log axis: no zero
    points["size"] = np.where(points["count"] > 1, 5 + 3 * np.log2(points["count"].clip(lower=1)), 7)
    # Literal colours, not a colour mapper: HoloViews builds no mapper for a first frame
    # without rows, and later frames would then have none.
    points["colour"] = [run_status_colour(s) for s in points["status"]]
    return points[["start", "duration_s", "status", "workflow", "runId", "count", "size", "colour"]]


def _bars_frame(stats: pd.DataFrame, frame: pd.DataFrame) -> pd.DataFrame:
    """Stacked bars in long form: ``workflow, outcome, runs``."""
    if frame.empty:
        # Zero bars: HoloViews cannot stack an empty frame.
        return pd.DataFrame({"workflow": [""] * len(_OUTCOME_COLOURS), "outcome": list(_OUTCOME_COLOURS),
                             "runs": [0] * len(_OUTCOME_COLOURS)})
    outcome = np.where(frame["status"] == "failed", "failed",
                       np.where(frame["status"].isin(ACTIVE_STATUSES), "active",
                                np.where(frame["status"] == "finished", "ok", "other")))
    counts = frame.assign(outcome=outcome).groupby(["workflow", "outcome"]).size().unstack(fill_value=0)
    # Every outcome in every frame: the stacked bars' colour factors stay the same.
    counts = counts.reindex(columns=list(_OUTCOME_COLOURS), fill_value=0)
    return counts.stack().rename("runs").reset_index()


_PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
            "#17becf")


def _trends_frame(trends: pd.DataFrame) -> pd.DataFrame:
    """Score points with a literal colour per scorer (by name order)."""
    out = trends.copy()
    out["start"] = pd.to_datetime(out["start_ms"], unit="ms")
    names = sorted(set(out["scorer"]))
    colours = {name: _PALETTE[i % len(_PALETTE)] for i, name in enumerate(names)}
    out["colour"] = [colours[s] for s in out["scorer"]]
    return out[["start", "score", "scorer", "runId", "workflow", "colour"]]


def _trend_segments(points: pd.DataFrame) -> pd.DataFrame:
    """Consecutive points of each scorer joined: ``x0, y0, x1, y1, scorer, colour``."""
    parts = []
    for _, group in points.groupby("scorer", sort=True):
        if len(group) > 1:
            parts.append(pd.DataFrame({
                "x0": group["start"].to_numpy()[:-1], "y0": group["score"].to_numpy()[:-1],
                "x1": group["start"].to_numpy()[1:], "y1": group["score"].to_numpy()[1:],
                "scorer": group["scorer"].to_numpy()[1:], "colour": group["colour"].to_numpy()[1:],
            }))
    if not parts:
        return pd.DataFrame({"x0": pd.Series(dtype="datetime64[ns]"), "y0": pd.Series(dtype=float),
                             "x1": pd.Series(dtype="datetime64[ns]"), "y1": pd.Series(dtype=float),
                             "scorer": pd.Series(dtype=str), "colour": pd.Series(dtype=str)})
    return pd.concat(parts, ignore_index=True)


def legend_html(pairs: list[tuple[str, str]]) -> str:
    """Colour swatches with their (escaped) names."""
    return "".join(
        f'<span style="display:inline-flex;align-items:center;gap:.3em;margin-right:1em">'
        f'<span style="width:.8em;height:.8em;border-radius:50%;background:{colour}"></span>{html.escape(name)}</span>'
        for name, colour in pairs
    )


# --------------------------------------------------------------------------- the view


class RunsOverview(pn.viewable.Viewer):
    """The runs overview (see the module docstring)."""

    hub: GatewayHub = param.ClassSelector(class_=GatewayHub, doc="The process's Gateway hub.")  # type: ignore[assignment]

    on_open = param.Callable(default=None, doc="Called with a run id to open it (tap on a run).")

    on_compare = param.Callable(default=None, doc="Called with the run ids ticked in the run table.")

    window: param.Selector[str] = param.Selector(default="30d", objects=list(WINDOWS), doc="""
        Time window of the runs shown (``?window=``).""")

    workflow = param.String(default="", doc="Only this workflow (``?workflow=``; empty: all).")

    status = param.String(default="", doc="Only runs with this status (``?status=``; empty: all).")

    brushed = param.Tuple(default=None, allow_None=True, length=2, doc="""
        The brushed time range (epoch ms, start and end), from the scatter's x-box-select.""")

    runs_in_view = param.Integer(default=0, doc="Runs matching the window, workflow, status and brush.")

    def __init__(self, feed: RunsFeed | None = None, **params: Any) -> None:
        super().__init__(**params)
        self.feed = feed or RunsFeed.shared(self.hub)
        self._frame = runs_table([], _now_ms())
        self._points = hv.streams.Pipe(data=_points_frame(self._frame))
        self._bars = hv.streams.Pipe(data=_bars_frame(workflow_stats(self._frame), self._frame))
        self._trends = hv.streams.Pipe(data=_trends_frame(score_trends({}, self._frame)))
        scatter = hv.DynamicMap(self._scatter_element, streams=[self._points])
        bars = hv.DynamicMap(self._bars_element, streams=[self._bars])
        lines = hv.DynamicMap(self._trend_lines, streams=[self._trends])
        dots = hv.DynamicMap(self._trend_dots, streams=[self._trends])
        self._brush = hv.streams.BoundsX(source=scatter)
        self._tap = hv.streams.Tap(source=scatter)
        self._pick = hv.streams.Selection1D(source=bars)
        self._brush.add_subscriber(self._on_brush)
        self._tap.add_subscriber(self._on_tap)
        self._pick.add_subscriber(self._on_pick)
        self._scatter_pane = pn.pane.HoloViews(scatter, sizing_mode="stretch_width", height=300, linked_axes=False)
        self._bars_pane = pn.pane.HoloViews(bars, sizing_mode="stretch_width", height=300, linked_axes=False)
        self._trends_pane = pn.pane.HoloViews(lines * dots, sizing_mode="stretch_width", height=260, linked_axes=False)
        self._stats = pn.pane.HTML(stats_html(workflow_stats(self._frame)), stylesheets=[stylesheet(), _CSS],
                                   sizing_mode="stretch_width", margin=(5, 10))
        self._message = TextPane("Loading runs…", margin=(0, 10))
        self._status_legend = pn.pane.HTML("", margin=(0, 10), styles={"font-size": ".85em"})
        self._score_legend = pn.pane.HTML("", margin=(0, 10), styles={"font-size": ".85em"})
        self._window = pn.widgets.Select.from_param(self.param.window, name="Window", width=110)
        self._workflow = pn.widgets.Select(name="Workflow", options=[""], value=self.workflow, width=170)
        self._status = pn.widgets.Select(name="Status", options=["", "running", "waiting-approval", "finished",
                                                                 "failed", "cancelled"], value=self.status, width=150)
        self._clear = pn.widgets.Button(name="Clear selection", width=130, margin=(24, 10))
        self._compare = pn.widgets.Button(name="Compare ticked runs", width=170, disabled=True, margin=(5, 10))
        self._table = pn.widgets.Tabulator(
            self._table_frame(self._frame), show_index=False, disabled=True, selectable="checkbox",
            pagination="remote", page_size=15, formatters=plaintext("status", "workflow", "runId", "started", "duration"),
            layout="fit_data_stretch", sizing_mode="stretch_width",
        )
        self._workflow.param.watch(lambda e: setattr(self, "workflow", e.new or ""), "value")
        self._status.param.watch(lambda e: setattr(self, "status", e.new or ""), "value")
        self._clear.on_click(self._clear_selection)
        self._compare.on_click(self._compare_ticked)
        self._table.param.watch(self._ticked, "selection")
        self._table.on_click(self._clicked)
        self.param.watch(self._filters_changed, ["window", "workflow", "status", "brushed"])
        self._scoring: asyncio.Task[None] | None = None
        self._stale = True
        self._doc = pn.state.curdoc
        self._unsubscribe = self.feed.subscribe(self._on_feed)
        if self.feed.loaded:
            self._refresh()

    # ------------------------------------------------------------------ HoloViews elements

    def _scatter_element(self, data: pd.DataFrame) -> hv.Points:
        return hv.Points(data, kdims=["start", "duration_s"], vdims=["status", "workflow", "runId", "count", "size", "colour"]).opts(
            color="colour", size="size", alpha=0.75, logy=True, responsive=True, height=300,
            tools=["hover", "tap", "xbox_select"], active_tools=["xbox_select", "tap"],
            xlabel="start", ylabel="duration (s)", title="Runs over time", show_legend=False,
            hover_tooltips=[("run", "@runId"), ("workflow", "@workflow"), ("status", "@status"),
                            ("duration", "@duration_s{0.0} s"), ("runs", "@count")],
            framewise=True,
        )

    def _bars_element(self, data: pd.DataFrame) -> hv.Bars:
        return hv.Bars(data, kdims=["workflow", "outcome"], vdims=["runs"]).opts(
            stacked=True, cmap=_OUTCOME_COLOURS, responsive=True, height=300, tools=["tap", "hover"],
            title="Runs per workflow", xlabel="", ylabel="runs", show_legend=True, legend_position="right",
            framewise=True, xrotation=20,
        )

    def _trend_lines(self, data: pd.DataFrame) -> hv.Segments:
        return hv.Segments(_trend_segments(data), kdims=["x0", "y0", "x1", "y1"], vdims=["scorer", "colour"]).opts(
            color="colour", responsive=True, height=260, line_width=2, framewise=True,
        )

    def _trend_dots(self, data: pd.DataFrame) -> hv.Scatter:
        return hv.Scatter(data, kdims=["start"], vdims=["score", "scorer", "runId", "workflow", "colour"]).opts(
            color="colour", size=7, tools=["hover"], responsive=True, height=260,
            title="Mean score per scorer per run", xlabel="run start", ylabel="score", framewise=True,
            hover_tooltips=[("scorer", "@scorer"), ("score", "@score{0.000}"), ("run", "@runId")],
        )

    # ------------------------------------------------------------------ data flow

    def _on_feed(self, changed: bool) -> None:
        # A session not showing the overview (a run page is open) keeps its data stale
        # until it is shown again: no chart work for nobody.
        self._stale = self._stale or changed
        if self._stale and self._stats._models:
            self._in_session(self._refresh)

    def _in_session(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` as a callback of this session's document: the feed's poll is shared by
        every session and runs outside theirs, and HoloViews pushes a ``Pipe`` update to the
        browser only from inside the document's own callbacks."""
        doc = self._doc
        if doc is None or doc.session_context is None:
            fn()
            return

        def in_doc() -> None:
            # Panel's current document is process state: without this it is whichever
            # session ran last, and ``hold()`` / HoloViews would push to that one.
            with set_curdoc(doc):
                fn()
        doc.add_next_tick_callback(in_doc)

    def _filters_changed(self, *events: Any) -> None:
        self._refresh()

    def _refresh(self) -> None:
        """Recompute every aggregate from the feed and send each chart its new data."""
        now = _now_ms()
        everything = self.feed.frame()
        windowed = filter_runs(everything, start_ms=window_start_ms(self.window, now), status=self.status or None)
        by_workflow = filter_runs(windowed, workflow=self.workflow or None)
        lo, hi = self.brushed if self.brushed else (None, None)
        by_brush = filter_runs(windowed, start_ms=lo, end_ms=hi)
        chosen = filter_runs(by_workflow, start_ms=lo, end_ms=hi)
        self._frame = chosen
        self._stale = False
        stats = workflow_stats(by_brush)
        self.runs_in_view = len(chosen)
        workflows = sorted(set(everything["workflow"])) if len(everything) else []
        with pn.io.hold():
            self._points.send(_points_frame(by_workflow))
            self._bars.send(_bars_frame(stats, by_brush))
            html_now = stats_html(stats, self.workflow)
            if html_now != self._stats.object:
                self._stats.object = html_now
            options = ["", *workflows] if self.workflow in ("", *workflows) else ["", self.workflow, *workflows]
            if options != self._workflow.options:
                self._workflow.options = options
            self._workflow.value = self.workflow
            self._status.value = self.status if self.status in self._status.options else ""
            self._table.value = self._table_frame(chosen)
            legend = legend_html([(st, run_status_colour(st)) for st in sorted(set(by_workflow["status"]))])
            if legend != self._status_legend.object:
                self._status_legend.object = legend
            self._message.object = self._summary(len(everything), len(chosen))
        self._score_later(chosen)

    def _summary(self, total: int, shown: int) -> str:
        if self.feed.error:
            return f"Cannot list runs: {self.feed.error}"
        if not self.feed.loaded:
            return "Loading runs…"
        parts = [f"{shown} of {total} runs"]
        if self.brushed:
            lo, hi = (time.strftime("%m-%d %H:%M:%S", time.localtime(v / 1000)) for v in self.brushed)
            parts.append(f"started {lo} – {hi}")
        if self.workflow:
            parts.append(f"workflow {self.workflow}")
        return " · ".join(parts) + " · drag on the chart to pick a time range, click a run to open it"

    @staticmethod
    def _table_frame(frame: pd.DataFrame) -> pd.DataFrame:
        ordered = frame.sort_values("start_ms", ascending=False)
        return pd.DataFrame({
            "status": ordered["status"].astype(str),
            "workflow": ordered["workflow"].astype(str),
            "runId": ordered["runId"].astype(str),
            "started": pd.to_datetime(ordered["start_ms"], unit="ms", utc=True).dt.tz_convert(None).dt.strftime(
                "%Y-%m-%d %H:%M:%S") if len(ordered) else pd.Series(dtype=str),
            "duration": [format_duration(d / 1000) for d in ordered["duration_ms"]],
        })

    def _score_later(self, chosen: pd.DataFrame) -> None:
        ended = chosen[chosen["ended"]].nlargest(SCORED_RUNS, "start_ms")
        run_ids = list(ended["runId"])
        if self._scoring is not None and not self._scoring.done():
            self._scoring.cancel()
        try:
            self._scoring = asyncio.get_running_loop().create_task(self._send_scores(run_ids, chosen))
        except RuntimeError:
            self._scoring = None

    async def _send_scores(self, run_ids: list[str], chosen: pd.DataFrame) -> None:
        scores = await self.feed.scores(run_ids)
        points = _trends_frame(score_trends(scores, chosen))
        pairs = sorted(set(zip(points["scorer"], points["colour"], strict=True)))

        def send() -> None:
            with pn.io.hold():
                self._trends.send(points)
                self._score_legend.object = legend_html(pairs) if pairs else "No scores in these runs."
        self._in_session(send)

    # ------------------------------------------------------------------ selection streams

    def _on_brush(self, boundsx: Any = None, **_: Any) -> None:
        if not boundsx:
            return
        lo, hi = (_to_ms(v) for v in boundsx)
        if lo is not None and hi is not None:
            self.brushed = (min(lo, hi), max(lo, hi))

    def _on_tap(self, x: Any = None, y: Any = None, **_: Any) -> None:
        run_id = nearest_run(self._points.data, _to_ms(x), y)
        if run_id and self.on_open is not None:
            self.on_open(run_id)

    def _on_pick(self, index: list[int] | None = None, **_: Any) -> None:
        data = self._bars.data
        if not index or data is None or index[0] >= len(data):
            return
        picked = str(data.iloc[index[0]]["workflow"])
        if not picked:
            return
        self.workflow = "" if picked == self.workflow else picked

    def _clear_selection(self, *_: Any) -> None:
        self.param.update(brushed=None, workflow="")

    def _ticked(self, event: Any) -> None:
        self._compare.disabled = len(event.new or []) < 2

    def _compare_ticked(self, *_: Any) -> None:
        frame = self._table.value
        ids = [str(frame.iloc[i]["runId"]) for i in self._table.selection if i < len(frame)]
        if len(ids) >= 2 and self.on_compare is not None:
            self.on_compare(ids)

    def _clicked(self, event: Any) -> None:
        frame = self._table.value
        if event.column != "runId" or event.row is None or event.row >= len(frame):
            return
        if self.on_open is not None:
            self.on_open(str(frame.iloc[event.row]["runId"]))

    # ------------------------------------------------------------------ page

    def bind_location(self) -> None:
        """Sync the filters with the page URL (served sessions only)."""
        if pn.state.location is not None:
            pn.state.location.sync(self, {"window": "window", "workflow": "workflow", "status": "status"})

    def close(self) -> None:
        self._unsubscribe()
        if self._scoring is not None:
            self._scoring.cancel()

    def __panel__(self) -> pn.viewable.Viewable:
        filters = pn.Row(self._window, self._workflow, self._status, self._clear, sizing_mode="stretch_width")
        charts = pn.Row(
            pn.Column(self._scatter_pane, self._status_legend, styles={"flex": "1 1 60%", "min-width": "0"}, sizing_mode="stretch_width"),
            pn.Column(self._bars_pane, styles={"flex": "1 1 40%", "min-width": "0"}, sizing_mode="stretch_width"),
            sizing_mode="stretch_width",
        )
        lower = pn.Row(
            pn.Column(pn.pane.HTML("<h3>Per workflow</h3>", margin=(0, 10)), self._stats,
                      styles={"flex": "1 1 50%", "min-width": "0"}, sizing_mode="stretch_width"),
            pn.Column(self._trends_pane, self._score_legend, styles={"flex": "1 1 50%", "min-width": "0"}, sizing_mode="stretch_width"),
            sizing_mode="stretch_width",
        )
        return pn.Column(
            pn.pane.HTML("<h2>Runs overview</h2>", margin=(0, 10)),
            filters, self._message, charts, lower,
            pn.Row(pn.pane.HTML("<h3>Runs in view</h3>", margin=(0, 10)), self._compare),
            self._table,
            sizing_mode="stretch_width",
            css_classes=["sd-overview"],
        )


def _to_ms(value: Any) -> float | None:
    """A chart coordinate on the time axis as epoch ms (HoloViews gives datetimes or numbers)."""
    if value is None:
        return None
    if isinstance(value, int | float):
        return float(value)
    with contextlib.suppress(Exception):
        stamp = pd.Timestamp(value)
        if stamp.tzinfo is not None:
            stamp = stamp.tz_convert(None)
        return float(stamp.value / 1e6)
    return None


def nearest_run(points: pd.DataFrame | None, x_ms: float | None, y: Any, reach: float = 0.03) -> str | None:
    """The run id of the point nearest a tap at ``(x_ms, y)`` within ``reach`` of the axes' spans
    (the y axis is logarithmic); ``None`` when no single run is that close (or the point is a bin)."""
    if points is None or points.empty or x_ms is None or not isinstance(y, int | float) or y <= 0:
        return None
    # The resolution of datetime64 varies (pandas 3 infers µs): divide by a unit, not a constant.
    xs = ((points["start"] - pd.Timestamp(0)) / pd.Timedelta(milliseconds=1)).to_numpy(dtype=float)
    ys = np.log10(points["duration_s"].to_numpy())
    span_x = max(float(xs.max() - xs.min()), 1.0)
    span_y = max(float(ys.max() - ys.min()), 0.5)
    distance = np.hypot((xs - x_ms) / span_x, (ys - math.log10(y)) / span_y)
    best = int(np.argmin(distance))
    run_id = str(points.iloc[best]["runId"])
    return run_id if distance[best] <= reach and run_id else None



class LandingPage(pn.viewable.Viewer):
    """``/apps`` without a run: the overview above the run list, or ``?compare=A,B``'s comparison."""

    hub: GatewayHub = param.ClassSelector(class_=GatewayHub, doc="The process's Gateway hub.")  # type: ignore[assignment]

    runs = param.Parameter(default=None, doc="The run list shown below the overview (a RunList).")

    on_open = param.Callable(default=None, doc="Called with a run id to open it.")

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self.overview = RunsOverview(hub=self.hub, on_open=self._open, on_compare=self.show_compare)
        self.comparison = RunComparison(hub=self.hub, on_back=lambda: self.show_compare([]))
        self._body = pn.Column(sizing_mode="stretch_width")
        self.comparison.param.watch(self._route, "compare")
        self._route()

    def _open(self, run_id: str) -> None:
        if self.on_open is not None:
            self.on_open(run_id)

    def show_compare(self, run_ids: list[str]) -> None:
        """Show the comparison of ``run_ids`` (none: back to the overview)."""
        self.comparison.compare = ",".join(run_ids)

    def _route(self, *_: Any) -> None:
        page: list[Any] = [self.comparison] if self.comparison.compare else [self.overview]
        if not self.comparison.compare and self.runs is not None:
            page.append(self.runs)
        if [id(o) for o in self._body.objects] != [id(o) for o in page]:
            self._body.objects = page

    def bind_location(self) -> None:
        """Sync the overview's filters and ``?compare=`` with the page URL."""
        self.overview.bind_location()
        self.comparison.bind_location()

    def close(self) -> None:
        self.overview.close()
        self.comparison.close()

    def __panel__(self) -> pn.viewable.Viewable:
        return self._body

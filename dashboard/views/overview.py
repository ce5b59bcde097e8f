# mypy: allow-untyped-calls
"""RunsOverview: how the runs are going, across runs (the landing page, with its one run table).

Three HoloViews charts, a per-workflow table and the run table, all computed on the server
from one shared copy of the run list (:class:`~dashboard.views.overview_feed.RunsFeed`,
``listRuns`` paged), so the browser gets aggregates, not 10,000 rows:

- **runs over time**: start x duration, coloured by status. ``hv.DynamicMap`` over an
  ``hv.streams.Pipe``: a poll that found new or changed runs ``send`` s the new points, and
  HoloViews patches the plot's data source in place (same figure, same axes, new columns).
  Past :data:`MAX_POINTS` runs the points are binned by time and status on the server
  (:func:`~dashboard.analytics.runs_over_time`), except the runs of a brushed range, shown
  one by one when they are few enough. ``BoundsX`` (the x-box-select tool, active by
  default) brushes a time range; ``Tap`` opens the run under the pointer (``?runId=``).
- **per-workflow bars** (ok / failed / active runs, stacked): a ``DynamicMap`` on its own
  ``Pipe``; a ``Tap`` on a bar picks its workflow (the tap's x is the bar's factor:
  ``Selection1D``'s indices count the stacked glyph's rows, which are not the frame's).
- **score trends**: mean score per scorer per run over time, a ``Segments`` (one line per
  scorer) and ``Scatter`` overlaid, both ``DynamicMap`` s on one ``Pipe``.
- the **per-workflow table** (one ``data-testid="workflow-stats"`` row per workflow with
  ``data-workflow``, ``data-runs``, ``data-failed``, ``data-p50-ms``; escaped HTML), and the
  **run table** (:class:`~dashboard.views.runs.RunList`, remote-paginated: only the page
  shown travels).

Linked selection is done with selection streams rather than ``link_selections``: the
charts show different aggregations of the runs (points, binned points, per-workflow bars,
per-scorer means), which ``link_selections`` cannot re-aggregate from a brushed subset,
while the server can. The brushed time range filters the bars, the workflow table, the
score trends and the run table; the picked workflow filters the scatter, the score trends
and the run table. The time window, workflow and status filters are params synced with the
page URL (``?window=&workflow=&status=``).

First view: the page's first document carries the filters and the per-workflow table; the
run table and the charts join it after the page has loaded, one per message, so the browser
builds and paints them in separate tasks rather than one long one. They draw on a canvas
(``output_backend="canvas"``): a few hundred binned glyphs do not need WebGL, whose set-up
(software-rendered where there is no GPU) was the largest part of the first paint. The
aggregates of a filter combination are computed once per poll for every session
(:meth:`RunsFeed.memo <dashboard.views.overview_feed.RunsFeed.memo>`).
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

import holoviews as hv
import panel as pn
import param

from ..analytics import WINDOWS, filter_runs, runs_table, score_trends, window_start_ms, workflow_stats
from ..format import run_status_colour
from ..hub import GatewayHub
from .compare import RunComparison
from .overview_feed import ACTIVE_STATUSES, RunsFeed
from .overview_frames import (
    MAX_POINTS,
    OUTCOME_COLOURS,
    bars_frame,
    legend_html,
    nearest_run,
    points_frame,
    stats_html,
    to_ms,
    trend_segments,
    trends_frame,
)
from .runs import RunList, table_frame
from .widgets import TextPane, in_document, stylesheet

if TYPE_CHECKING:
    from collections.abc import Callable

    import pandas as pd

__all__ = ["ACTIVE_STATUSES", "MAX_POINTS", "LandingPage", "RunsFeed", "RunsOverview", "nearest_run", "stats_html"]

hv.renderer("bokeh")  # registers the Bokeh backend (options below are Bokeh's) without notebook output

#: How many of the newest ended runs in view the score trends read ``listScores`` for.
SCORED_RUNS = 40

#: Every chart draws on a canvas (see the module docstring).
_CANVAS = {"plot.output_backend": "canvas"}

_CSS = """
table.sd-stats { border-collapse: collapse; width: 100%; font-size: .9em; color: var(--sd-fg); }
table.sd-stats th, table.sd-stats td { padding: .25em .6em; border-bottom: 1px solid var(--sd-border); text-align: right; }
table.sd-stats th:first-child, table.sd-stats td:first-child { text-align: left; }
table.sd-stats tr.sd-picked td { background: color-mix(in srgb, #1a73e8 12%, transparent); }
.sd-fail { color: #d93025; font-weight: 600; }
"""


def _now_ms() -> float:
    return time.time() * 1000.0


class _Aggregates:
    """What one filter combination shows: computed once per feed generation, shared."""

    __slots__ = ("by_workflow", "chosen", "points", "bars", "stats_html", "legend", "workflows", "total", "rows")

    def __init__(self, everything: pd.DataFrame, window_start: float | None, status: str, workflow: str,
                 brushed: tuple[float, float] | None) -> None:
        windowed = filter_runs(everything, start_ms=window_start, status=status or None)
        self.by_workflow = filter_runs(windowed, workflow=workflow or None)
        lo, hi = brushed if brushed else (None, None)
        by_brush = filter_runs(windowed, start_ms=lo, end_ms=hi)
        self.chosen = filter_runs(self.by_workflow, start_ms=lo, end_ms=hi)
        self.points = points_frame(self.by_workflow, detail=brushed)
        self.bars = bars_frame(by_brush)
        self.stats_html = stats_html(workflow_stats(by_brush), workflow)
        self.legend = legend_html([(st, run_status_colour(st)) for st in sorted(set(self.by_workflow["status"]))])
        self.workflows = sorted(set(everything["workflow"])) if len(everything) else []
        self.total = len(everything)
        self.rows = table_frame(self.chosen)


class RunsOverview(pn.viewable.Viewer):
    """The runs overview (see the module docstring)."""

    hub: GatewayHub = param.ClassSelector(class_=GatewayHub, doc="The process's Gateway hub.")  # type: ignore[assignment]

    on_open = param.Callable(default=None, doc="Called with a run id to open it (tap on a run, click in the table).")

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
        self._points = hv.streams.Pipe(data=points_frame(self._frame))
        self._bars = hv.streams.Pipe(data=bars_frame(self._frame))
        self._trends = hv.streams.Pipe(data=trends_frame(score_trends({}, self._frame)))
        scatter = hv.DynamicMap(self._scatter_element, streams=[self._points])
        bars = hv.DynamicMap(self._bars_element, streams=[self._bars])
        lines = hv.DynamicMap(self._trend_lines, streams=[self._trends])
        dots = hv.DynamicMap(self._trend_dots, streams=[self._trends])
        self._brush = hv.streams.BoundsX(source=scatter)
        self._tap = hv.streams.Tap(source=scatter)
        self._pick = hv.streams.Tap(source=bars)
        self._brush.add_subscriber(self._on_brush)
        self._tap.add_subscriber(self._on_tap)
        self._pick.add_subscriber(self._on_pick)
        self._charts = [
            (pn.Column(height=300, sizing_mode="stretch_width"),
             pn.pane.HoloViews(scatter, sizing_mode="stretch_width", height=300, linked_axes=False)),
            (pn.Column(height=300, sizing_mode="stretch_width"),
             pn.pane.HoloViews(bars, sizing_mode="stretch_width", height=300, linked_axes=False)),
            (pn.Column(height=260, sizing_mode="stretch_width"),
             pn.pane.HoloViews(lines * dots, sizing_mode="stretch_width", height=260, linked_axes=False)),
        ]
        self._stats = pn.pane.HTML(stats_html(workflow_stats(self._frame)), stylesheets=[stylesheet(), _CSS],
                                   sizing_mode="stretch_width", margin=(5, 10))
        self._message = TextPane("Loading runs…", margin=(0, 10))
        self._status_legend = pn.pane.HTML("", margin=(0, 10), styles={"font-size": ".85em"})
        self._score_legend = pn.pane.HTML("", margin=(0, 10), styles={"font-size": ".85em"})
        self._window = pn.widgets.Select.from_param(self.param.window, label="Window", width=110)
        self._workflow = pn.widgets.Select(label="Workflow", options=[""], value=self.workflow, width=170)
        self._status = pn.widgets.Select(label="Status", options=["", "running", "waiting-approval", "finished",
                                                                 "failed", "cancelled"], value=self.status, width=150)
        self._clear = pn.widgets.Button(label="Clear selection", width=130, margin=(24, 10))
        self.runs = RunList(on_select=self._open, on_compare=self._compare_runs)
        self._runs_slot = pn.Column(sizing_mode="stretch_width", min_height=200)
        self._workflow.param.watch(lambda e: setattr(self, "workflow", e.new or ""), "value")
        self._status.param.watch(lambda e: setattr(self, "status", e.new or ""), "value")
        self._clear.on_click(self._clear_selection)
        self.param.watch(self._filters_changed, ["window", "workflow", "status", "brushed"])
        self._scoring: asyncio.Task[None] | None = None
        self._stale = True
        self._doc = pn.state.curdoc
        self._unsubscribe = self.feed.subscribe(self._on_feed)
        if self.feed.loaded:
            self._refresh()
        # The charts join the page once it has loaded (see the module docstring); outside a
        # served session (a notebook) ``onload`` runs this at once.
        pn.state.onload(self._add_charts)

    # ------------------------------------------------------------------ HoloViews elements

    def _scatter_element(self, data: pd.DataFrame) -> hv.Points:
        return hv.Points(data, kdims=["start", "duration_s"], vdims=["status", "workflow", "runId", "count", "size", "colour"]).opts(
            color="colour", size="size", alpha=0.75, logy=True, responsive=True, height=300,
            tools=["hover", "tap", "xbox_select"], active_tools=["xbox_select", "tap"],
            xlabel="start", ylabel="duration (s)", title="Runs over time", show_legend=False,
            hover_tooltips=[("run", "@runId"), ("workflow", "@workflow"), ("status", "@status"),
                            ("duration", "@duration_s{0.0} s"), ("runs", "@count")],
            framewise=True, backend_opts=_CANVAS,
        )

    def _bars_element(self, data: pd.DataFrame) -> hv.Bars:
        return hv.Bars(data, kdims=["workflow", "outcome"], vdims=["runs"]).opts(
            stacked=True, cmap=OUTCOME_COLOURS, responsive=True, height=300, tools=["tap", "hover"],
            title="Runs per workflow", xlabel="", ylabel="runs", show_legend=True, legend_position="right",
            framewise=True, xrotation=20, backend_opts=_CANVAS,
        )

    def _trend_lines(self, data: pd.DataFrame) -> hv.Segments:
        return hv.Segments(trend_segments(data), kdims=["x0", "y0", "x1", "y1"], vdims=["scorer", "colour"]).opts(
            color="colour", responsive=True, height=260, line_width=2, framewise=True, backend_opts=_CANVAS,
        )

    def _trend_dots(self, data: pd.DataFrame) -> hv.Scatter:
        return hv.Scatter(data, kdims=["start"], vdims=["score", "scorer", "runId", "workflow", "colour"]).opts(
            color="colour", size=7, tools=["hover"], responsive=True, height=260,
            title="Mean score per scorer per run", xlabel="run start", ylabel="score", framewise=True,
            hover_tooltips=[("scorer", "@scorer"), ("score", "@score{0.000}"), ("run", "@runId")],
            backend_opts=_CANVAS,
        )

    def _add_charts(self, index: int = 0) -> None:
        """Put the run table (index 0) or chart ``index - 1`` into its slot, then the next one
        in a later callback of the document (its own message, its own browser task)."""
        parts: list[tuple[pn.Column, Any]] = [(self._runs_slot, self.runs), *self._charts]
        if index >= len(parts):
            return
        slot, pane = parts[index]
        if not slot.objects:
            slot.objects = [pane]
        doc = self._doc
        if doc is not None and doc.session_context is not None:
            self._in_session(lambda: self._add_charts(index + 1))
        else:
            self._add_charts(index + 1)

    # ------------------------------------------------------------------ data flow

    def _on_feed(self, changed: bool) -> None:
        # A session not showing the overview (a run page is open) keeps its data stale
        # until it is shown again: no chart work for nobody.
        self._stale = self._stale or changed
        if self._stale and self._stats._models:
            self._in_session(self._refresh)

    def _in_session(self, fn: Callable[[], None]) -> None:
        """The feed's poll is shared by every session: apply it in this session's document."""
        in_document(self._doc, fn)

    def _filters_changed(self, *events: Any) -> None:
        self._refresh()

    def _aggregates(self) -> _Aggregates:
        brushed = tuple(self.brushed) if self.brushed else None
        start = window_start_ms(self.window, _now_ms())
        if start is not None:
            # The window's first ms to a thousandth of its length (3.6 s of an hour, 43 min
            # of 30 days): sessions opened a moment apart share one computation.
            step = (WINDOWS[self.window] or 1.0) / 1000
            start = start // step * step
        key = ("overview", start, self.status, self.workflow, brushed)
        return self.feed.memo(key, lambda: _Aggregates(self.feed.frame(), start, self.status, self.workflow,
                                                       brushed))

    def _refresh(self) -> None:
        """Send each chart and table the aggregates of the current filters."""
        agg = self._aggregates()
        self._frame = agg.chosen
        self._stale = False
        self.runs_in_view = len(agg.chosen)
        with pn.io.hold():
            if self._points.data is not agg.points:
                self._points.send(agg.points)
            if self._bars.data is not agg.bars:
                self._bars.send(agg.bars)
            if agg.stats_html != self._stats.object:
                self._stats.object = agg.stats_html
            workflows = agg.workflows
            options = ["", *workflows] if self.workflow in ("", *workflows) else ["", self.workflow, *workflows]
            if options != self._workflow.options:
                self._workflow.options = options
            self._workflow.value = self.workflow
            self._status.value = self.status if self.status in self._status.options else ""
            self.runs.set_runs(agg.chosen, rows=agg.rows)
            if agg.legend != self._status_legend.object:
                self._status_legend.object = agg.legend
            self._message.object = self._summary(agg.total, len(agg.chosen))
        self._score_later(agg.chosen)

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
        points = trends_frame(score_trends(scores, chosen))
        pairs = sorted(set(zip(points["scorer"], points["colour"], strict=True)))
        old = self._trends.data
        if old is not None and old.equals(points):
            return

        def send() -> None:
            with pn.io.hold():
                self._trends.send(points)
                self._score_legend.object = legend_html(pairs) if pairs else "No scores in these runs."
        self._in_session(send)

    # ------------------------------------------------------------------ selection streams

    def _on_brush(self, boundsx: Any = None, **_: Any) -> None:
        if not boundsx:
            return
        lo, hi = (to_ms(v) for v in boundsx)
        if lo is not None and hi is not None:
            self.brushed = (min(lo, hi), max(lo, hi))

    def _on_tap(self, x: Any = None, y: Any = None, **_: Any) -> None:
        run_id = nearest_run(self._points.data, to_ms(x), y)
        if run_id:
            self._open(run_id)

    def _on_pick(self, x: Any = None, **_: Any) -> None:
        data = self._bars.data
        if x is None or data is None:
            return
        picked = str(x)
        if picked not in set(data["workflow"].astype(str)):
            return
        self.workflow = "" if picked == self.workflow else picked

    def _clear_selection(self, *_: Any) -> None:
        self.param.update(brushed=None, workflow="")

    def _open(self, run_id: str) -> None:
        if self.on_open is not None:
            self.on_open(run_id)

    def _compare_runs(self, run_ids: list[str]) -> None:
        if self.on_compare is not None:
            self.on_compare(run_ids)

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
        (scatter, _), (bars, _), (trends, _) = self._charts
        filters = pn.Row(self._window, self._workflow, self._status, self._clear, sizing_mode="stretch_width")
        charts = pn.Row(
            pn.Column(scatter, self._status_legend, styles={"flex": "1 1 60%", "min-width": "0"}, sizing_mode="stretch_width"),
            pn.Column(bars, styles={"flex": "1 1 40%", "min-width": "0"}, sizing_mode="stretch_width"),
            sizing_mode="stretch_width",
        )
        lower = pn.Row(
            pn.Column(pn.pane.HTML("<h3>Per workflow</h3>", margin=(0, 10)), self._stats,
                      styles={"flex": "1 1 50%", "min-width": "0"}, sizing_mode="stretch_width"),
            pn.Column(trends, self._score_legend, styles={"flex": "1 1 50%", "min-width": "0"}, sizing_mode="stretch_width"),
            sizing_mode="stretch_width",
        )
        return pn.Column(
            pn.pane.HTML("<h2>Runs overview</h2>", margin=(0, 10)),
            filters, self._message, charts, lower, self._runs_slot,
            sizing_mode="stretch_width",
            css_classes=["sd-overview"],
        )


class LandingPage(pn.viewable.Viewer):
    """``/apps`` without a run: the overview (with the run table), or ``?compare=A,B``'s comparison."""

    hub: GatewayHub = param.ClassSelector(class_=GatewayHub, doc="The process's Gateway hub.")  # type: ignore[assignment]

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

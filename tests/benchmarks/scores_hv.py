# mypy: allow-untyped-calls
"""The scores chart as a HoloViews chart, kept for ``bench_charts.py``: the dashboard keeps the
hand-built Bokeh figure (``dashboard/views/scores.py``), which measured better
(docs/performance.md, "Charts: HoloViews vs Bokeh").

A HoloViews scatter of score against ``node[iteration]``, one colour per scorer (a legend of
escaped names below it), and a Tabulator of every row. Reasons are scorer-written text: the
table shows them with the ``plaintext`` formatter and the hover uses plain ``@field``
references, which Bokeh escapes (never the ``{safe}`` format).

Like the timeline, the chart is an ``hv.DynamicMap`` over a
:class:`~tests.benchmarks.livechart_hv.SessionPipe`: new scores send new data and HoloViews
changes the plot's data source, ranges and tick labels in place, never the plot. The x axis
is a position per target labelled by ticks (see ``livechart``). Tapping a point selects its
node on the whole page (``hv.streams.Selection1D`` -> ``RunStore.select_task``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import holoviews as hv
import pandas as pd
import panel as pn

from dashboard.format import short_labels, shorten
from dashboard.views.base import StoreView
from dashboard.views.scores import run_scores_frame
from dashboard.views.widgets import plaintext
from tests.benchmarks.livechart_hv import SessionPipe, legend_html

__all__ = ["ScoresFrame", "HoloViewsScoresView", "scores_frame"]

_CHART_COLUMNS = ["x", "score", "target", "node", "iteration", "scorer", "reason", "scorer_label", "color"]
#: One colour per scorer, in the order scorers first appear (Category10).
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf")


@dataclass(frozen=True, slots=True)
class ScoresFrame:
    """What the chart shows: one point per numeric score, the x ticks, the y range, the legend."""

    points: pd.DataFrame = field(default_factory=lambda: pd.DataFrame({c: [] for c in _CHART_COLUMNS}))
    #: (x position, shortened ``node[iteration]``) of each target, in the frame's order.
    ticks: tuple[tuple[int, str], ...] = ()
    ylim: tuple[float, float] = (0.0, 1.05)
    #: (scorer, colour) in first-seen order.
    scorers: tuple[tuple[str, str], ...] = ()


def scores_frame(frame: pd.DataFrame) -> ScoresFrame:
    """The chart's data from :func:`run_scores_frame`'s rows with a numeric score: x positions
    per target (in the frame's order), one colour per scorer, and a y range of 0 to 1.05 at
    least, stretched to the scores."""
    data = frame.dropna(subset=["score"])
    targets = list(dict.fromkeys(data["target"]))
    labels = short_labels(targets)  # the axis' text; the hover shows node whole
    position = {t: i for i, t in enumerate(targets)}
    scorers = list(dict.fromkeys(data["scorer"].astype(str)))
    colours = {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(scorers)}
    points = pd.DataFrame({
        "x": [position[t] for t in data["target"]],
        "score": data["score"].astype(float).tolist(),
        "target": [labels[t] for t in data["target"]],
        "node": data["node"].tolist(),
        "iteration": data["iteration"].tolist(),
        "scorer": data["scorer"].tolist(),
        "reason": data["reason"].tolist(),
        "scorer_label": [shorten(str(s), 24) for s in data["scorer"]],
        "color": [colours[str(s)] for s in data["scorer"]],
    }, columns=_CHART_COLUMNS)
    scores = points["score"]
    low = min(0.0, float(scores.min())) if len(scores) else 0.0
    high = max(1.05, float(scores.max()) * 1.05) if len(scores) else 1.05
    ticks = tuple((position[t], labels[t]) for t in targets)
    return ScoresFrame(points, ticks, (low, high), tuple(colours.items()))


class HoloViewsScoresView(StoreView):
    """The run's scores as a chart and a table (see the module docstring)."""

    _redraw_on = ("scores",)
    _redraw_interval = 1.0

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        frame = run_scores_frame(self.store.scores)
        self._summary = pn.pane.Str("", margin=(5, 10))
        self._legend = pn.pane.HTML("", margin=(0, 10), styles={"font-size": ".85em"})
        self._pipe = SessionPipe(ScoresFrame())
        points = hv.DynamicMap(self._points, streams=[self._pipe.pipe])
        self._pick = hv.streams.Selection1D(source=points)
        self._pick.add_subscriber(self._on_pick)
        self._chart = pn.pane.HoloViews(points, sizing_mode="stretch_width", min_height=200, linked_axes=False)
        self._pipe.pane = self._chart
        self._table = pn.widgets.Tabulator(
            frame.drop(columns=["target"]),
            show_index=False,
            disabled=True,
            formatters=plaintext("node", "scorer", "reason", "source"),
            layout="fit_data_stretch",
            sizing_mode="stretch_width",
            pagination="remote",  # the kept view's table, so that the charts are what differs
            page_size=25,
        )
        self._update()

    @staticmethod
    def _points(data: ScoresFrame) -> hv.Scatter:
        count = max(len(data.ticks), 1)
        return hv.Scatter(data.points, kdims=["x"],
                          vdims=["score", "target", "node", "iteration", "scorer", "reason", "scorer_label", "color"]).opts(
            color="color", size=11, nonselection_alpha=0.45,
            tools=["hover", "tap"], default_tools=["pan", "wheel_zoom", "box_zoom", "reset", "save"],
            active_tools=["pan", "tap"], toolbar="above",
            hover_tooltips=[("node", "@{node}"), ("iteration", "@{iteration}"), ("scorer", "@{scorer}"),
                            ("score", "@{score}{0.000}"), ("reason", "@{reason}")],
            responsive=True, height=260, xlim=(-0.5, count - 0.5), ylim=data.ylim,
            xticks=list(data.ticks) or [(0, "")], xrotation=30, xlabel="node [iteration]", ylabel="score",
            framewise=True, backend_opts={"plot.outline_line_color": None, "xaxis.minor_tick_line_color": None},
        )

    def _update(self) -> None:
        frame = run_scores_frame(self.store.scores)
        chart = scores_frame(frame)
        with pn.io.hold():
            if len(frame):
                mean = frame["score"].mean()
                self._summary.object = f"{len(frame)} scores from {frame['scorer'].nunique()} scorer(s), mean {mean:.3f}"
            else:
                self._summary.object = "No scores for this run yet."
            legend = legend_html([(shorten(name, 24), colour) for name, colour in chart.scorers])
            if legend != self._legend.object:
                self._legend.object = legend
            self._table.value = frame.drop(columns=["target"])
        self._pipe.send(chart)

    def _on_pick(self, index: list[int] | None = None, **_: Any) -> None:
        """A tapped point selects its node everywhere on the page."""
        points = self._pipe.data.points
        if not index or index[0] >= len(points):
            return
        row = points.iloc[index[0]]
        self.store.select_task(str(row["node"]), int(row["iteration"]))

    def __panel__(self) -> pn.viewable.Viewable:
        return pn.Column(self._summary, self._chart, self._legend, self._table, sizing_mode="stretch_width")

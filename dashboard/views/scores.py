# mypy: allow-untyped-calls
"""ScoresView: how well each node did, by scorer, across iterations.

A Bokeh scatter of score against node/iteration, one colour per scorer, and a Tabulator
of every row. Reasons are scorer-written text: the table shows them with the
``plaintext`` formatter and the hover tool uses plain ``@field`` references, which Bokeh
escapes (never the ``{safe}`` format).

Like the timeline, the chart is one figure for the life of the view, changed in place
(:class:`~dashboard.views.timeline.InPlaceChart`): new scores replace its data and factors,
never the figure (a new plot per update costs the browser a whole plot build; a HoloViews
``DynamicMap`` over a ``Pipe`` measured 2.5x the server time per update, docs/performance.md,
"Charts: HoloViews vs Bokeh"). Tapping a point selects its node on the whole page.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import pandas as pd
import panel as pn
from bokeh.models import CategoricalColorMapper, ColumnDataSource, FactorRange, HoverTool, Range1d, TapTool
from bokeh.palettes import Category10_10
from bokeh.plotting import figure

from ..format import format_value, short_labels, shorten
from .base import StoreView
from .timeline import InPlaceChart
from .widgets import plaintext

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["ScoresView", "scores_chart", "scores_data", "run_scores_frame"]

_COLUMNS = ["target", "node", "iteration", "attempt", "scorer", "score", "reason", "source", "scored"]
_CHART_COLUMNS = ["target", "score", "node", "iteration", "scorer", "reason"]
#: The legend's text per point: the scorer's name, shortened (the hover shows it whole).
_LEGEND = "scorer_label"


def run_scores_frame(rows: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """Score rows as a frame; ``target`` is ``node[iteration]`` (the chart's x axis)."""
    records = []
    for r in rows:
        node = str(r.get("nodeId") or "?")
        iteration = r.get("iteration") if isinstance(r.get("iteration"), int) else 0
        score = r.get("score")
        records.append(
            {
                "target": f"{node}[{iteration}]",
                "node": node,
                "iteration": iteration,
                "attempt": r.get("attempt"),
                "scorer": str(r.get("scorerName") or r.get("scorerId") or "?"),
                "score": float(score) if isinstance(score, int | float) and not isinstance(score, bool) else None,
                "reason": format_value(r.get("reason"), 2000) if r.get("reason") is not None else "",
                "source": str(r.get("source") or ""),
                "scored": r["scoredAtMs"] if isinstance(r.get("scoredAtMs"), int | float) else None,
            }
        )
    frame = pd.DataFrame.from_records(records, columns=_COLUMNS)
    # One conversion for the column: per row, pandas' to_datetime was three quarters of a
    # redraw on a run with 8,000 scores.
    frame["scored"] = pd.to_datetime(pd.to_numeric(frame["scored"], errors="coerce"), unit="ms")
    return frame.sort_values(["node", "iteration", "scorer"], kind="stable").reset_index(drop=True)


def scores_chart() -> tuple[Any, ColumnDataSource, CategoricalColorMapper]:
    """An empty scores figure, its data source and its colour mapper: score (y) by
    ``node[iteration]`` (a categorical x axis), one colour per scorer with a legend on the
    right. Fill it with :func:`scores_data` (``source.data``, ``x_range.factors``, the
    mapper's factors and palette, ``y_range`` start/end)."""
    source = ColumnDataSource({c: [] for c in (*_CHART_COLUMNS, _LEGEND)})
    hover = HoverTool(
        tooltips=[("node", "@node"), ("iteration", "@iteration"), ("scorer", "@scorer"), ("score", "@score{0.000}"),
                  ("reason", "@reason")]
    )
    colours = CategoricalColorMapper(factors=[], palette=list(Category10_10))
    fig = figure(
        x_range=FactorRange(factors=[]),
        y_range=Range1d(start=0.0, end=1.05),
        height=260,
        sizing_mode="stretch_width",
        tools=[hover, TapTool(), "pan", "wheel_zoom", "box_zoom", "reset", "save"],
        toolbar_location="above",
        x_axis_label="node [iteration]",
        y_axis_label="score",
    )
    fig.scatter(x="target", y="score", size=11, source=source, color={"field": "scorer", "transform": colours},
                legend_field=_LEGEND, nonselection_alpha=0.45)
    legend = fig.legend[0]
    fig.center.remove(legend)
    fig.add_layout(legend, "right")
    fig.xaxis.major_label_orientation = math.radians(30)
    fig.outline_line_color = None
    return fig, source, colours


def scores_data(frame: pd.DataFrame) -> tuple[dict[str, list[Any]], list[str], list[str], tuple[float, float]]:
    """The chart's columns (rows with a numeric score), its x factors (targets in the frame's
    order), its scorers, and its y range (0 to 1.05 at least, stretched to the scores)."""
    data = frame.dropna(subset=["score"])
    columns = {c: data[c].tolist() for c in _CHART_COLUMNS}
    columns[_LEGEND] = [shorten(str(s), 24) for s in columns["scorer"]]
    labels = short_labels(columns["target"])  # the axis' text; the hover shows node whole
    columns["target"] = [labels[t] for t in columns["target"]]
    targets = list(labels.values())
    scorers = list(dict.fromkeys(columns["scorer"]))
    scores = columns["score"]
    low = min(0.0, float(min(scores))) if scores else 0.0
    high = max(1.05, float(max(scores)) * 1.05) if scores else 1.05
    return columns, targets, scorers, (low, high)


class ScoresView(StoreView):
    """The run's scores as a chart and a table (see the module docstring)."""

    _redraw_on = ("scores",)
    _redraw_interval = 1.0

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        frame = run_scores_frame(self.store.scores)
        self._summary = pn.pane.Str("", margin=(5, 10))
        self._figure, self._source, self._colours = scores_chart()
        self._source.selected.on_change("indices", self._on_tap)
        self._plot = InPlaceChart(self._figure, sizing_mode="stretch_width", min_height=200)
        self._chart = self._plot.pane
        self._table = pn.widgets.Tabulator(
            frame.drop(columns=["target"]),
            show_index=False,
            disabled=True,
            formatters=plaintext("node", "scorer", "reason", "source"),
            layout="fit_data_stretch",
            sizing_mode="stretch_width",
            # Remote pages: a redraw sends the browser the shown page, not every score of the
            # run (8,000 scores were ~540 kB per update, docs/performance.md).
            pagination="remote",
            page_size=25,
        )
        self._update()

    def _update(self) -> None:
        frame = run_scores_frame(self.store.scores)
        with pn.io.hold():
            if len(frame):
                mean = frame["score"].mean()
                self._summary.object = f"{len(frame)} scores from {frame['scorer'].nunique()} scorer(s), mean {mean:.3f}"
            else:
                self._summary.object = "No scores for this run yet."
            self._table.value = frame.drop(columns=["target"])
        columns, targets, scorers, ylim = scores_data(frame)
        self._plot.apply(lambda: self._draw(columns, targets, scorers, ylim))

    def _draw(self, columns: dict[str, list[Any]], targets: list[str], scorers: list[str],
              ylim: tuple[float, float]) -> None:
        """Change the figure's models, never the figure: factors and colours before the points
        that use them."""
        if list(self._figure.x_range.factors) != targets:
            self._figure.x_range.factors = targets
        if list(self._colours.factors) != scorers:
            palette = list(Category10_10)
            self._colours.palette = [palette[i % len(palette)] for i in range(max(1, len(scorers)))]
            self._colours.factors = scorers
        if self._source.selected.indices:  # they would point at other points
            self._source.selected.indices = []
        self._source.data = columns
        y_range = self._figure.y_range
        if (y_range.start, y_range.end) != ylim:
            y_range.update(start=ylim[0], end=ylim[1])

    def _on_tap(self, attr: str, old: Any, new: list[int]) -> None:
        """A tapped point selects its node everywhere on the page."""
        if not new or new[0] >= len(self._source.data["node"]):
            return
        i = new[0]
        self.store.select_task(str(self._source.data["node"][i]), int(self._source.data["iteration"][i]))

    def __panel__(self) -> pn.viewable.Viewable:
        return pn.Column(self._summary, self._chart, self._table, sizing_mode="stretch_width")

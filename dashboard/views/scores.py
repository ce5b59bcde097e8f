# mypy: allow-untyped-calls
"""ScoresView: how well each node did, by scorer, across iterations.

A HoloViews scatter (bokeh backend) of score against node/iteration, one colour per
scorer, and a Tabulator of every row. Reasons are scorer-written text: the table shows
them with the ``plaintext`` formatter and the hover tool uses plain ``@field``
references, which Bokeh escapes (never the ``{safe}`` format).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import holoviews as hv
import pandas as pd
import panel as pn
import param
from bokeh.models import HoverTool

from ..format import format_value
from ..store import RunStore
from . import Throttle, plaintext

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["ScoresView", "scores_chart", "scores_frame"]

if "bokeh" not in hv.Store.renderers:
    import holoviews.plotting.bokeh  # noqa: F401  (registers the backend without notebook output)

_COLUMNS = ["target", "node", "iteration", "attempt", "scorer", "score", "reason", "source", "scored"]


def scores_frame(rows: Sequence[dict[str, Any]]) -> pd.DataFrame:
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
                "scored": pd.to_datetime(r["scoredAtMs"], unit="ms") if isinstance(r.get("scoredAtMs"), int | float) else pd.NaT,
            }
        )
    frame = pd.DataFrame.from_records(records, columns=_COLUMNS)
    return frame.sort_values(["node", "iteration", "scorer"], kind="stable").reset_index(drop=True)


def scores_chart(frame: pd.DataFrame, *, height: int = 260) -> hv.Overlay | hv.Scatter:
    """Score by node/iteration, coloured by scorer; an empty frame gives an empty chart."""
    hover = HoverTool(
        tooltips=[("node", "@node"), ("iteration", "@iteration"), ("scorer", "@scorer"), ("score", "@score{0.000}"),
                  ("reason", "@reason")]
    )
    data = frame.dropna(subset=["score"])
    opts = {
        "height": height,
        "responsive": True,
        "size": 11,
        "tools": [hover],
        "xrotation": 30,
        "ylim": (min(0.0, float(data["score"].min())) if len(data) else 0.0, max(1.05, float(data["score"].max()) * 1.05) if len(data) else 1.05),
        "show_grid": True,
        "xlabel": "node [iteration]",
        "ylabel": "score",
        "legend_position": "right",
        "toolbar": "above",
    }
    vdims = ["score", "node", "iteration", "scorer", "reason"]
    if not len(data):
        return hv.Scatter([], "target", vdims).opts(**opts)
    return hv.Scatter(data, "target", vdims).opts(color="scorer", cmap="Category10", **opts)


class ScoresView(pn.viewable.Viewer):
    """The run's scores as a chart and a table (see the module docstring)."""

    store: RunStore = param.ClassSelector(class_=RunStore, doc="The session's store.")  # type: ignore[assignment]

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        frame = scores_frame(self.store.scores)
        self._summary = pn.pane.Str("", margin=(5, 10))
        self._chart = pn.pane.HoloViews(scores_chart(frame), sizing_mode="stretch_width", min_height=200)
        self._table = pn.widgets.Tabulator(
            frame.drop(columns=["target"]),
            show_index=False,
            disabled=True,
            formatters=plaintext("node", "scorer", "reason", "source"),
            layout="fit_data_stretch",
            sizing_mode="stretch_width",
            max_height=320,
        )
        self._throttle = Throttle(self._update, 1.0)
        self.store.param.watch(self._throttle, "scores")
        self._update()

    def _update(self) -> None:
        frame = scores_frame(self.store.scores)
        with pn.io.hold():
            if len(frame):
                mean = frame["score"].mean()
                self._summary.object = f"{len(frame)} scores from {frame['scorer'].nunique()} scorer(s), mean {mean:.3f}"
            else:
                self._summary.object = "No scores for this run yet."
            self._chart.object = scores_chart(frame)
            self._table.value = frame.drop(columns=["target"])

    def __panel__(self) -> pn.viewable.Viewable:
        return pn.Column(self._summary, self._chart, self._table, sizing_mode="stretch_width")

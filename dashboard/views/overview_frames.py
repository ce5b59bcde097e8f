# mypy: allow-untyped-calls
"""The overview's pure renderers: aggregates (:mod:`dashboard.analytics`) to chart frames and
escaped HTML. No Panel, no I/O: :class:`~dashboard.views.overview.RunsOverview` sends what
these return through its HoloViews ``Pipe`` s and HTML panes.
"""

from __future__ import annotations

import contextlib
import html
import math
import time
from typing import Any

import numpy as np
import pandas as pd

from ..analytics import runs_over_time
from ..format import format_duration, run_status_colour
from .overview_feed import ACTIVE_STATUSES

__all__ = ["MAX_POINTS", "OUTCOME_COLOURS", "bars_frame", "legend_html", "nearest_run", "points_frame", "stats_html",
           "to_ms", "trend_segments", "trends_frame"]

#: Most points the scatter draws one per run; beyond, it shows time bins (and the runs of a
#: brushed range one by one when they are at most this many).
MAX_POINTS = 2000

OUTCOME_COLOURS = {"ok": "#188038", "failed": "#d93025", "active": "#1a73e8", "other": "#80868b"}

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
        # A sum over some of the workflow's runs would read as the whole: shown only when
        # every run in view has its usage read (the feed reads the newest runs' usage).
        whole = int(s.usage_runs) == int(s.runs)
        tokens = "–" if pd.isna(s.tokens) or not whole else f"{s.tokens:,.0f}"
        cost = "–" if pd.isna(s.cost_usd) or not whole else f"${s.cost_usd:,.2f}"
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


def points_frame(frame: pd.DataFrame, detail: tuple[float, float] | None = None) -> pd.DataFrame:
    """The scatter's columns (see :func:`~dashboard.analytics.runs_over_time`)."""
    points = runs_over_time(frame, max_points=MAX_POINTS, detail=detail)
    points["start"] = pd.to_datetime(points["start_ms"], unit="ms")
    points["duration_s"] = np.maximum(points["duration_ms"] / 1000.0, 0.01)  # log axis: no zero
    points["size"] = np.where(points["count"] > 1, 5 + 3 * np.log2(points["count"].clip(lower=1)), 7)
    # Literal colours, not a colour mapper: HoloViews builds no mapper for a first frame
    # without rows, and later frames would then have none.
    points["colour"] = [run_status_colour(s) for s in points["status"]]
    return points[["start", "duration_s", "status", "workflow", "runId", "count", "size", "colour"]]


def bars_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Stacked bars in long form: ``workflow, outcome, runs``."""
    if frame.empty:
        # Zero bars: HoloViews cannot stack an empty frame.
        return pd.DataFrame({"workflow": [""] * len(OUTCOME_COLOURS), "outcome": list(OUTCOME_COLOURS),
                             "runs": [0] * len(OUTCOME_COLOURS)})
    outcome = np.where(frame["status"] == "failed", "failed",
                       np.where(frame["status"].isin(ACTIVE_STATUSES), "active",
                                np.where(frame["status"] == "finished", "ok", "other")))
    counts = frame.assign(outcome=outcome).groupby(["workflow", "outcome"]).size().unstack(fill_value=0)
    # Every outcome in every frame: the stacked bars' colour factors stay the same.
    counts = counts.reindex(columns=list(OUTCOME_COLOURS), fill_value=0)
    return counts.stack().rename("runs").reset_index()


_PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
            "#17becf")


def trends_frame(trends: pd.DataFrame) -> pd.DataFrame:
    """Score points with a literal colour per scorer (by name order)."""
    out = trends.copy()
    out["start"] = pd.to_datetime(out["start_ms"], unit="ms")
    names = sorted(set(out["scorer"]))
    colours = {name: _PALETTE[i % len(_PALETTE)] for i, name in enumerate(names)}
    out["colour"] = [colours[s] for s in out["scorer"]]
    return out[["start", "score", "scorer", "runId", "workflow", "colour"]]


def trend_segments(points: pd.DataFrame) -> pd.DataFrame:
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



def to_ms(value: Any) -> float | None:
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


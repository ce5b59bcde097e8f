"""Aggregates across runs, computed on the server: pure functions over Gateway rows.

The overview answers operators' questions across runs (which workflow fails most, is it
getting slower, how are the scores trending) without shipping every run to the browser:
everything here reduces ``listRuns`` rows (and ``listScores`` / ``getDevToolsSnapshot`` /
event-history answers for the comparison) to small frames that the views chart. No Panel
import, no I/O: the views fetch, this computes, the tests check the properties
(``tests/test_analytics.py``).

- :func:`runs_table`: one row per run (workflow, status, start, duration, and the optional
  usage columns :data:`USAGE_COLUMNS`, NaN until the agents work supplies them through the
  ``usage`` hook: numbers are never invented here).
- :func:`workflow_stats`: per workflow: runs, failed, failure rate, p50/p95 duration,
  first/last run, summed usage.
- :func:`runs_over_time`: the scatter's points, binned by time and status once there are
  more than ``max_points`` runs (the browser draws at most a few thousand glyphs).
- :func:`score_trends`: mean score per scorer per run, in start order.
- :func:`filter_runs`, :data:`WINDOWS`: the overview's filters.
- :func:`node_metrics`, :func:`compare_nodes`, :func:`output_diff`, :func:`previous_run`,
  :func:`compare_query`: the run comparison.
"""

from __future__ import annotations

import difflib
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from inspector.protocol import TERMINAL_RUN_STATUSES
from inspector.vocabulary import TaskState

__all__ = [
    "RUN_COLUMNS",
    "STAT_COLUMNS",
    "USAGE_COLUMNS",
    "WINDOWS",
    "CompareRow",
    "compare_nodes",
    "compare_query",
    "filter_runs",
    "node_metrics",
    "output_diff",
    "parse_compare",
    "previous_run",
    "runs_over_time",
    "runs_table",
    "score_trends",
    "window_start_ms",
    "workflow_stats",
]

#: Usage per run, filled by the agents work through ``runs_table(..., usage=)``; NaN when unknown.
USAGE_COLUMNS = ("tokens", "cost_usd")

RUN_COLUMNS = ("runId", "workflow", "name", "status", "start_ms", "end_ms", "duration_ms", "ended", *USAGE_COLUMNS)

STAT_COLUMNS = (
    "workflow", "runs", "failed", "ended", "failure_rate", "p50_ms", "p95_ms", "first_ms", "last_ms", *USAGE_COLUMNS,
    "usage_runs",
)

#: The overview's time windows (URL ``?window=``): name -> length in ms (``None``: everything).
WINDOWS: dict[str, float | None] = {
    "1h": 3_600_000.0,
    "24h": 86_400_000.0,
    "7d": 7 * 86_400_000.0,
    "30d": 30 * 86_400_000.0,
    "all": None,
}

#: Run statuses counted as failures.
FAILED_STATUSES = frozenset({"failed"})


def _number(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def _workflow(row: Mapping[str, Any]) -> str:
    return str(row.get("workflowKey") or row.get("workflowName") or "")


def runs_table(
    rows: Iterable[Mapping[str, Any]],
    now_ms: float,
    usage: Mapping[str, Mapping[str, float]] | None = None,
) -> pd.DataFrame:
    """One row per run: :data:`RUN_COLUMNS`.

    ``start_ms`` is ``startedAtMs`` (else ``createdAtMs``); a run still going has
    ``end_ms`` NaN and its duration so far (``now_ms - start``), with ``ended`` False.
    ``usage`` maps run id -> ``{"tokens": ..., "cost_usd": ...}`` (the agents hook).
    ``workflow`` is the key the figures group by, ``name`` the workflow's display name
    (``workflowName``, else the key). Rows without a run id are left out; a row without a
    start has ``start_ms`` and ``duration_ms`` NaN (listed, never charted).
    """
    usage = usage or {}
    records = []
    for row in rows:
        run_id = row.get("runId")
        start = _number(row.get("startedAtMs")) or _number(row.get("createdAtMs"))
        if not isinstance(run_id, str):
            continue
        status = str(row.get("status") or "")
        end = _number(row.get("finishedAtMs"))
        ended = status in TERMINAL_RUN_STATUSES
        if ended and end is None:
            end = _number(row.get("heartbeatAtMs"))
        duration = np.nan if start is None else max(0.0, (end if end is not None else now_ms) - start)
        spent = usage.get(run_id, {})
        name = str(row.get("workflowName") or _workflow(row))
        records.append(
            (run_id, _workflow(row), name, status, np.nan if start is None else start, np.nan if end is None else end,
             duration, ended,
             *(float(spent[c]) if _number(spent.get(c)) is not None else np.nan for c in USAGE_COLUMNS))
        )
    frame = pd.DataFrame.from_records(records, columns=list(RUN_COLUMNS))
    return frame.astype({"start_ms": float, "end_ms": float, "duration_ms": float, "ended": bool,
                         "tokens": float, "cost_usd": float})


def window_start_ms(window: str, now_ms: float) -> float | None:
    """The first ms of a named window (:data:`WINDOWS`); ``None`` for "all" or an unknown name."""
    length = WINDOWS.get(window)
    return None if length is None else now_ms - length


def filter_runs(
    frame: pd.DataFrame,
    *,
    start_ms: float | None = None,
    end_ms: float | None = None,
    workflow: str | None = None,
    status: str | None = None,
) -> pd.DataFrame:
    """The runs that started in ``[start_ms, end_ms]`` of ``workflow`` with ``status`` (each optional).

    A run with no known start passes the window's lower bound (``start_ms``: it is listed
    whatever the window) but not a brushed range's upper bound (it has no place on the chart).
    """
    mask = pd.Series(True, index=frame.index)
    if start_ms is not None:
        mask &= (frame["start_ms"] >= start_ms) | frame["start_ms"].isna()
    if end_ms is not None:
        mask &= frame["start_ms"] <= end_ms
    if workflow:
        mask &= frame["workflow"] == workflow
    if status:
        mask &= frame["status"] == status
    return frame[mask]


def workflow_stats(frame: pd.DataFrame) -> pd.DataFrame:
    """Per workflow (:data:`STAT_COLUMNS`), sorted by name.

    ``failure_rate`` is failed / ended runs (NaN while none has ended: a workflow whose only
    run is still going has no rate yet). p50/p95 are over the durations of ended runs, with
    linear interpolation (``p50`` is the median). Usage sums are NaN when no run has any;
    ``usage_runs`` says how many runs they cover (a sum over fewer than ``runs`` is partial).
    """
    if frame.empty:
        return pd.DataFrame(columns=list(STAT_COLUMNS))
    work = frame.assign(is_failed=frame["status"].isin(FAILED_STATUSES))
    grouped = work.groupby("workflow", sort=True)
    ended = work[work["ended"]].groupby("workflow")["duration_ms"]
    out = pd.DataFrame({
        "runs": grouped.size(),
        "failed": grouped["is_failed"].sum().astype(int),
        "ended": grouped["ended"].sum().astype(int),
        "first_ms": grouped["start_ms"].min(),
        "last_ms": grouped["start_ms"].max(),
    })
    out["p50_ms"] = ended.quantile(0.5)
    out["p95_ms"] = ended.quantile(0.95)
    out["failure_rate"] = (out["failed"] / out["ended"]).where(out["ended"] > 0)
    for column in USAGE_COLUMNS:
        out[column] = grouped[column].sum(min_count=1)
    out["usage_runs"] = grouped["tokens"].count()
    out = out.reset_index()
    return out[list(STAT_COLUMNS)]


def runs_over_time(
    frame: pd.DataFrame,
    max_points: int = 2000,
    bins: int = 200,
    detail: tuple[float, float] | None = None,
) -> pd.DataFrame:
    """The scatter's points: ``start_ms, duration_ms, status, workflow, runId, count``.

    Up to ``max_points`` runs, one point per run (``count`` 1). Beyond, runs are binned
    into ``bins`` equal time bins per status: the point sits at the bin's middle with the
    median duration of its runs, ``count`` says how many it stands for and ``runId`` is
    empty (a binned point opens nothing). ``detail`` (a start range in ms, the brushed
    range) keeps the runs inside it as single points when they are at most ``max_points``,
    and bins only the rest. Either way the counts sum to ``len(frame)``.
    """
    columns = ["start_ms", "duration_ms", "status", "workflow", "runId", "count"]
    frame = frame[frame["start_ms"].notna()]
    if len(frame) <= max_points:
        out = frame[["start_ms", "duration_ms", "status", "workflow", "runId"]].copy()
        out["count"] = 1
        return out[columns].reset_index(drop=True)
    if detail is not None:
        inside = frame["start_ms"].between(*detail)
        if 0 < int(inside.sum()) <= max_points:
            single = runs_over_time(frame[inside], max_points=max_points)
            rest = runs_over_time(frame[~inside], max_points=0, bins=bins) if (~inside).any() else single.iloc[:0]
            return pd.concat([rest, single], ignore_index=True)[columns]
    lo, hi = float(frame["start_ms"].min()), float(frame["start_ms"].max())
    width = max((hi - lo) / bins, 1.0)
    index = np.minimum(((frame["start_ms"] - lo) // width).astype(int), bins - 1)
    work = frame.assign(bin=index)
    grouped = work.groupby(["bin", "status"], sort=True)
    out = grouped.agg(duration_ms=("duration_ms", "median"), count=("runId", "size"),
                      workflows=("workflow", "nunique"), first=("workflow", "first")).reset_index()
    out["start_ms"] = np.clip(lo + (out["bin"] + 0.5) * width, lo, hi)
    out["workflow"] = out["first"].where(out["workflows"] == 1, "(several)")
    out["runId"] = ""
    return out[columns]


def score_trends(scores: Mapping[str, Sequence[Mapping[str, Any]]], frame: pd.DataFrame) -> pd.DataFrame:
    """Mean score per scorer per run: ``scorer, runId, workflow, start_ms, score, n``, by start.

    ``scores`` maps run id -> its ``listScores`` rows; runs missing from ``frame`` (no
    start known) are left out.
    """
    starts = frame.set_index("runId")[["start_ms", "workflow"]] if not frame.empty else None
    records = []
    for run_id, rows in scores.items():
        if starts is None or run_id not in starts.index:
            continue
        start, workflow = starts.at[run_id, "start_ms"], starts.at[run_id, "workflow"]
        by_scorer: dict[str, list[float]] = {}
        for row in rows:
            value = _number(row.get("score"))
            if value is None:
                continue
            scorer = str(row.get("scorerName") or row.get("scorerId") or "")
            by_scorer.setdefault(scorer, []).append(value)
        for scorer, values in by_scorer.items():
            records.append((scorer, run_id, workflow, float(start), sum(values) / len(values), len(values)))
    out = pd.DataFrame.from_records(records, columns=["scorer", "runId", "workflow", "start_ms", "score", "n"])
    return out.sort_values(["scorer", "start_ms"], kind="stable").reset_index(drop=True)


# --------------------------------------------------------------------------- comparison


#: Durable node events that end an attempt, and the state they leave the task in.
_CLOSING_EVENTS = {"NodeFinished": "finished", "NodeFailed": "failed", "NodeCancelled": "cancelled",
                   "NodeSkipped": "skipped"}


def _walk(node: Mapping[str, Any]) -> Iterable[Mapping[str, Any]]:
    stack = [node]
    while stack:
        current = stack.pop()
        yield current
        children = current.get("children")
        if isinstance(children, list):
            stack.extend(c for c in reversed(children) if isinstance(c, Mapping))


def _iteration(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _node_key(node_id: str, iteration: int) -> str:
    return f"{node_id} [{iteration}]" if iteration else node_id


def node_metrics(
    snapshot: Mapping[str, Any] | None,
    events: Iterable[Mapping[str, Any]] = (),
    scores: Iterable[Mapping[str, Any]] = (),
    usage: Mapping[str, Mapping[str, float]] | None = None,
) -> dict[str, dict[str, Any]]:
    """Per task of one run, keyed ``"nodeId"`` (``"nodeId [i]"`` for iteration i > 0):
    ``node_id, iteration, state, attempts, duration_ms, scores`` (scorer -> mean) and the
    usage columns.

    State and attempt come from the DevTools snapshot; durations from the durable event
    history (``NodeStarted`` to ``NodeFinished`` / ``NodeFailed`` / ``NodeCancelled``,
    summed over attempts, so a retried task shows the time all its attempts took);
    ``usage`` maps the same keys to ``{"tokens", "cost_usd"}`` (the agents hook).
    """
    out: dict[str, dict[str, Any]] = {}

    def entry(node_id: str, iteration: int) -> dict[str, Any]:
        key = _node_key(node_id, iteration)
        found = out.get(key)
        if found is None:
            found = out[key] = {"node_id": node_id, "iteration": iteration, "state": "", "attempts": 0,
                                "duration_ms": None, "scores": {}, "tokens": None, "cost_usd": None}
        return found

    root = snapshot.get("root") if snapshot else None
    if isinstance(root, Mapping):
        for node in _walk(root):
            task = node.get("task")
            if not isinstance(task, Mapping) or not isinstance(task.get("nodeId"), str):
                continue
            item = entry(task["nodeId"], _iteration(task.get("iteration")))
            item["state"] = str(task.get("state") or "")
            attempt = task.get("attempt")
            item["attempts"] = max(item["attempts"], attempt if isinstance(attempt, int) else 0)
    started: dict[tuple[str, int], float] = {}
    event_states: dict[tuple[str, int], str] = {}
    for event in events:
        payload = event.get("payload") if isinstance(event.get("payload"), Mapping) else event
        assert isinstance(payload, Mapping)
        name = event.get("event") or payload.get("type")
        node_id = payload.get("nodeId")
        if not isinstance(node_id, str) or not isinstance(name, str):
            continue
        iteration = _iteration(payload.get("iteration"))
        at = _number(event.get("timestampMs")) or _number(payload.get("timestampMs"))
        if at is None:
            continue
        span = (node_id, iteration)
        if name == "NodeStarted":
            started[span] = at
            event_states[span] = TaskState.IN_PROGRESS
            item = entry(node_id, iteration)
            attempt = payload.get("attempt")
            if isinstance(attempt, int):
                item["attempts"] = max(item["attempts"], attempt)
        elif name in _CLOSING_EVENTS:
            item = entry(node_id, iteration)
            event_states[span] = _CLOSING_EVENTS[name]
            if span in started:
                item["duration_ms"] = (item["duration_ms"] or 0.0) + max(0.0, at - started.pop(span))
    sums: dict[str, dict[str, list[float]]] = {}
    for row in scores:
        node_id, value = row.get("nodeId"), _number(row.get("score"))
        if not isinstance(node_id, str) or value is None:
            continue
        iteration = _iteration(row.get("iteration"))
        key = _node_key(node_id, iteration)
        entry(node_id, iteration)
        scorer = str(row.get("scorerName") or row.get("scorerId") or "score")
        sums.setdefault(key, {}).setdefault(scorer, []).append(value)
    for key, by_scorer in sums.items():
        out[key]["scores"] = {s: sum(v) / len(v) for s, v in by_scorer.items()}
    for (node_id, iteration), state in event_states.items():
        # The snapshot shows a loop's task at its current iteration only: earlier
        # iterations get their state from the events that closed them.
        item = out[_node_key(node_id, iteration)]
        item["state"] = item["state"] or state
    for key, spent in (usage or {}).items():
        if key in out:
            for column in USAGE_COLUMNS:
                out[key][column] = _number(spent.get(column))
    # Iterations of a task together, in order, where the task first appeared.
    first: dict[str, int] = {}
    for position, item in enumerate(out.values()):
        first.setdefault(item["node_id"], position)
    return dict(sorted(out.items(), key=lambda kv: (first[kv[1]["node_id"]], kv[1]["iteration"])))


#: The comparison's per-run fields, in column order (scores are added per scorer).
COMPARED_FIELDS = ("state", "attempts", "duration_ms", *USAGE_COLUMNS)


@dataclass(frozen=True, slots=True)
class CompareRow:
    """One task across the compared runs: ``values[field][i]`` is run i's value (``None``:
    the run has no such task or no such figure); ``differs`` names the fields whose values
    are not all equal."""

    key: str
    node_id: str
    iteration: int
    values: dict[str, list[Any]] = field(default_factory=dict)
    differs: frozenset[str] = frozenset()
    present: tuple[bool, ...] = ()


def _same(values: Sequence[Any], field_name: str) -> bool:
    if field_name == "duration_ms":
        # Durations always differ a little; a difference worth a highlight is a factor of 1.5
        # and at least a quarter of a second.
        known = [v for v in values if v is not None]
        if len(known) != len(values):
            return len(known) == 0
        lo, hi = min(known), max(known)
        return bool(hi - lo < max(250.0, hi / 3))
    return all(v == values[0] for v in values)


def compare_nodes(per_run: Sequence[Mapping[str, Mapping[str, Any]]]) -> list[CompareRow]:
    """Rows for the comparison of runs given as :func:`node_metrics` answers, in order.

    Tasks are the union over the runs, ordered by their first appearance (the runs'
    snapshot order, which follows the workflow's structure).
    """
    keys: list[str] = []
    seen: set[str] = set()
    for metrics in per_run:
        for key in metrics:
            if key not in seen:
                seen.add(key)
                keys.append(key)
    scorers = sorted({s for metrics in per_run for m in metrics.values() for s in m.get("scores", {})})
    rows = []
    for key in keys:
        items = [metrics.get(key) for metrics in per_run]
        first = next(i for i in items if i is not None)
        values: dict[str, list[Any]] = {}
        for name in COMPARED_FIELDS:
            values[name] = [i.get(name) if i is not None else None for i in items]
        for scorer in scorers:
            values[f"score: {scorer}"] = [i.get("scores", {}).get(scorer) if i is not None else None for i in items]
        differs = frozenset(name for name, vals in values.items() if not _same(vals, name))
        rows.append(CompareRow(key, str(first["node_id"]), int(first["iteration"]), values, differs,
                               tuple(i is not None for i in items)))
    return rows


def output_text(output: Mapping[str, Any] | None) -> str:
    """A node output (``getNodeOutput``'s answer) as stable, diffable text."""
    if not output:
        return ""
    row = output.get("row") if "row" in output else output
    return json.dumps(row, indent=2, sort_keys=True, ensure_ascii=False, default=str)


def output_diff(a: Mapping[str, Any] | None, b: Mapping[str, Any] | None, label_a: str, label_b: str) -> str:
    """A unified diff of two node outputs (empty when equal). Plain text: escape it to show it."""
    lines = difflib.unified_diff(output_text(a).splitlines(), output_text(b).splitlines(),
                                 fromfile=label_a, tofile=label_b, lineterm="")
    return "\n".join(lines)


def previous_run(rows: Iterable[Mapping[str, Any]], run: Mapping[str, Any]) -> str | None:
    """The run id of the same workflow's run that started last before ``run`` (``None``: none)."""
    workflow, start = _workflow(run), _number(run.get("startedAtMs")) or _number(run.get("createdAtMs"))
    if start is None:
        return None
    best: tuple[float, str] | None = None
    for row in rows:
        other = _number(row.get("startedAtMs")) or _number(row.get("createdAtMs"))
        run_id = row.get("runId")
        if (not isinstance(run_id, str) or run_id == run.get("runId") or other is None or other > start
                or _workflow(row) != workflow):
            continue
        if best is None or other > best[0]:
            best = (other, run_id)
    return best[1] if best else None


def compare_query(run_ids: Sequence[str]) -> str:
    """The page query that opens the comparison of ``run_ids``: ``?compare=A,B``."""
    return "?compare=" + ",".join(run_ids)


def parse_compare(value: str | None) -> list[str]:
    """``"A,B"`` -> ``["A", "B"]``: stripped, empty parts and repeats dropped, order kept."""
    out: list[str] = []
    for part in (value or "").split(","):
        part = part.strip()
        if part and part not in out:
            out.append(part)
    return out

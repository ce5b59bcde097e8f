"""The cross-run aggregates (``dashboard/analytics.py``) and the paged run list
(``inspector/runlist.py``): pure, so properties over generated histories."""

from __future__ import annotations

import statistics
from typing import Any

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from dashboard.analytics import (
    compare_nodes,
    compare_query,
    filter_runs,
    node_metrics,
    output_diff,
    parse_compare,
    previous_run,
    runs_over_time,
    runs_table,
    score_trends,
    workflow_stats,
)
from inspector.runlist import RunHistory, read_runs

NOW = 1_800_000_000_000.0
STATUSES = ["finished", "failed", "cancelled", "running", "waiting-approval"]


@st.composite
def run_rows(draw: st.DrawFn, max_size: int = 60) -> list[dict[str, Any]]:
    n = draw(st.integers(0, max_size))
    rows = []
    for i in range(n):
        status = draw(st.sampled_from(STATUSES))
        start = NOW - draw(st.integers(1_000, 10_000_000))
        ended = status in ("finished", "failed", "cancelled")
        rows.append({
            "runId": f"run-{i}",
            "workflowKey": draw(st.sampled_from(["demo", "rich", "doomed", "<b>x</b>"])),
            "status": status,
            "createdAtMs": start,
            "startedAtMs": start,
            "finishedAtMs": start + draw(st.integers(0, 500_000)) if ended else None,
        })
    return rows


@given(run_rows())
def test_workflow_stats_properties(rows: list[dict[str, Any]]) -> None:
    frame = runs_table(rows, NOW)
    stats = workflow_stats(frame)
    assert int(stats["runs"].sum()) == len(rows)
    assert set(stats["workflow"]) == {r["workflowKey"] for r in rows}
    for _, s in stats.iterrows():
        assert 0 <= s["failed"] <= s["ended"] <= s["runs"]
        if s["ended"]:
            assert 0.0 <= s["failure_rate"] <= 1.0
            assert s["p50_ms"] <= s["p95_ms"]
            durations = [r["finishedAtMs"] - r["startedAtMs"] for r in rows
                         if r["workflowKey"] == s["workflow"] and r["finishedAtMs"] is not None]
            assert s["p50_ms"] == pytest.approx(statistics.median(durations))
            assert min(durations) <= s["p50_ms"] <= s["p95_ms"] <= max(durations)
        else:
            assert pd.isna(s["failure_rate"]) and pd.isna(s["p50_ms"])
        assert s["first_ms"] <= s["last_ms"]
        # No usage was given: the hook columns stay unknown, never zero.
        assert pd.isna(s["tokens"]) and pd.isna(s["cost_usd"])


@given(run_rows(max_size=120), st.integers(1, 50), st.integers(1, 30))
def test_runs_over_time_counts_every_run(rows: list[dict[str, Any]], max_points: int, bins: int) -> None:
    frame = runs_table(rows, NOW)
    points = runs_over_time(frame, max_points=max_points, bins=bins)
    assert int(points["count"].sum()) == len(frame)
    if len(frame) > max_points:
        assert len(points) <= bins * len(STATUSES)
        assert (points["runId"] == "").all()
        assert points["start_ms"].between(frame["start_ms"].min(), frame["start_ms"].max()).all()
    else:
        assert sorted(points["runId"]) == sorted(frame["runId"])
    for status, group in points.groupby("status"):
        assert int(group["count"].sum()) == int((frame["status"] == status).sum())


@given(run_rows(), st.sampled_from([None, "demo", "rich"]), st.sampled_from([None, "failed", "finished"]))
def test_filter_runs_is_a_subset_matching_the_filter(rows: list[dict[str, Any]], workflow: str | None,
                                                     status: str | None) -> None:
    frame = runs_table(rows, NOW)
    lo = NOW - 5_000_000
    out = filter_runs(frame, start_ms=lo, workflow=workflow, status=status)
    assert set(out["runId"]) <= set(frame["runId"])
    assert (out["start_ms"] >= lo).all()
    expected = [r for r in rows if r["startedAtMs"] >= lo and (not workflow or r["workflowKey"] == workflow)
                and (not status or r["status"] == status)]
    assert len(out) == len(expected)


def test_runs_table_active_run_duration_and_usage_hook() -> None:
    rows = [
        {"runId": "a", "workflowName": "demo", "status": "running", "startedAtMs": NOW - 3000},
        {"runId": "b", "workflowKey": "demo", "status": "finished", "startedAtMs": NOW - 9000, "finishedAtMs": NOW - 4000},
        {"runId": None, "status": "finished"},
    ]
    frame = runs_table(rows, NOW, usage={"b": {"tokens": 1200, "cost_usd": 0.25}})
    assert list(frame["runId"]) == ["a", "b"]
    assert frame.loc[0, "duration_ms"] == 3000 and not frame.loc[0, "ended"]
    assert frame.loc[1, "duration_ms"] == 5000 and frame.loc[1, "ended"]
    stats = workflow_stats(frame).set_index("workflow")
    assert stats.loc["demo", "tokens"] == 1200 and stats.loc["demo", "cost_usd"] == 0.25
    assert stats.loc["demo", "runs"] == 2 and stats.loc["demo", "ended"] == 1


def test_score_trends_means_per_scorer_in_start_order() -> None:
    rows = [
        {"runId": "r1", "workflowKey": "rich", "status": "finished", "startedAtMs": 1000, "finishedAtMs": 2000},
        {"runId": "r2", "workflowKey": "rich", "status": "finished", "startedAtMs": 500, "finishedAtMs": 900},
    ]
    scores = {
        "r1": [{"scorerName": "len", "score": 1}, {"scorerName": "len", "score": 0.5}, {"scorerName": "q", "score": 0.2}],
        "r2": [{"scorerName": "len", "score": 0.1}, {"scorerName": "len", "score": "bad"}],
        "unknown": [{"scorerName": "len", "score": 1}],
    }
    trends = score_trends(scores, runs_table(rows, NOW))
    assert trends[trends["scorer"] == "len"][["runId", "score"]].values.tolist() == [["r2", 0.1], ["r1", 0.75]]
    assert trends[trends["scorer"] == "q"]["n"].tolist() == [1]


def _snapshot(tasks: list[tuple[str, int, str, int]]) -> dict[str, Any]:
    children = [{"id": i + 2, "type": "task", "task": {"nodeId": n, "iteration": it, "state": s, "attempt": a},
                 "children": []} for i, (n, it, s, a) in enumerate(tasks)]
    return {"root": {"id": 1, "type": "workflow", "children": children}}


def _events(spans: list[tuple[str, int, int, float, float, str]]) -> list[dict[str, Any]]:
    out = []
    for node, iteration, attempt, start, end, closing in spans:
        out.append({"event": "NodeStarted", "timestampMs": start,
                    "payload": {"nodeId": node, "iteration": iteration, "attempt": attempt}})
        out.append({"event": closing, "timestampMs": end, "payload": {"nodeId": node, "iteration": iteration}})
    return out


def test_node_metrics_and_comparison_highlight_differences() -> None:
    a = node_metrics(
        _snapshot([("plan", 0, "finished", 1), ("flaky", 0, "finished", 2), ("refine", 1, "finished", 1)]),
        _events([("plan", 0, 1, 0, 100, "NodeFinished"), ("flaky", 0, 1, 100, 150, "NodeFailed"),
                 ("flaky", 0, 2, 160, 260, "NodeFinished")]),
        [{"nodeId": "plan", "iteration": 0, "scorerName": "len", "score": 1.0}],
    )
    assert a["flaky"]["attempts"] == 2 and a["flaky"]["duration_ms"] == 150
    assert "refine [1]" in a and a["refine [1]"]["duration_ms"] is None
    b = node_metrics(
        _snapshot([("plan", 0, "finished", 1), ("flaky", 0, "failed", 3)]),
        _events([("plan", 0, 1, 0, 105, "NodeFinished")]),
        [{"nodeId": "plan", "iteration": 0, "scorerName": "len", "score": 0.5}],
    )
    rows = {r.key: r for r in compare_nodes([a, b])}
    assert list(rows) == ["plan", "flaky", "refine [1]"]
    assert rows["plan"].differs == {"score: len"}  # 100 ms vs 105 ms is not a difference worth a highlight
    assert {"state", "attempts"} <= rows["flaky"].differs
    assert rows["refine [1]"].present == (True, False) and "state" in rows["refine [1]"].differs


def test_output_diff_and_urls() -> None:
    diff = output_diff({"row": {"note": "<script>x</script>", "v": 1}}, {"row": {"note": "ok", "v": 1}}, "A", "B")
    assert "-  \"note\": \"<script>x</script>\"," in diff and "+  \"note\": \"ok\"," in diff
    assert output_diff({"row": {"v": 1}}, {"row": {"v": 1}}, "A", "B") == ""
    assert compare_query(["a", "b"]) == "?compare=a,b"
    assert parse_compare(" a, b,,a ,c") == ["a", "b", "c"]
    rows = [
        {"runId": "old", "workflowKey": "rich", "startedAtMs": 1},
        {"runId": "prev", "workflowKey": "rich", "startedAtMs": 5},
        {"runId": "other", "workflowKey": "demo", "startedAtMs": 8},
        {"runId": "later", "workflowKey": "rich", "startedAtMs": 20},
    ]
    assert previous_run(rows, {"runId": "me", "workflowKey": "rich", "startedAtMs": 10}) == "prev"
    assert previous_run(rows, {"runId": "old", "workflowKey": "rich", "startedAtMs": 1}) is None


# --------------------------------------------------------------------------- paging


class FakeListRuns:
    """``listRuns`` over a list, newest first, as the Gateway pages it (offset, limit, filters)."""

    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self.rows = sorted(rows, key=lambda r: -r["createdAtMs"])
        self.calls: list[dict[str, Any]] = []

    async def __call__(self, method: str, params: Any) -> Any:
        assert method == "listRuns"
        flt = params["filter"]
        self.calls.append(dict(flt))
        rows = [r for r in self.rows if flt.get("status") in (None, r["status"])
                and flt.get("workflow") in (None, r["workflowKey"])]
        return rows[flt["offset"]:flt["offset"] + flt["limit"]]


@settings(max_examples=40)
@given(run_rows(max_size=80), st.integers(1, 25))
async def test_read_runs_reads_every_page_once(rows: list[dict[str, Any]], page_size: int) -> None:
    for i, r in enumerate(rows):
        r["createdAtMs"] = NOW - i  # distinct, so the order is total
    fake = FakeListRuns(rows)
    got = await read_runs(fake, page_size=page_size)
    assert [r["runId"] for r in got] == [r["runId"] for r in fake.rows]
    assert len(fake.calls) == len(rows) // page_size + 1
    assert all(c["limit"] == page_size for c in fake.calls)


async def test_read_runs_window_filters_and_dedup() -> None:
    rows = [{"runId": f"r{i}", "workflowKey": "demo" if i % 2 else "rich", "status": "finished",
             "createdAtMs": NOW - i * 1000} for i in range(30)]
    fake = FakeListRuns(rows)
    got = await read_runs(fake, since_ms=NOW - 9_500, page_size=4)
    assert [r["runId"] for r in got] == [f"r{i}" for i in range(10)]
    assert len(fake.calls) == 3  # stops at the first run older than the window
    got = await read_runs(fake, workflow="demo", max_runs=3, page_size=2)
    assert [r["runId"] for r in got] == ["r1", "r3", "r5"]
    assert fake.calls[-1]["workflow"] == "demo"

    async def shifting(method: str, params: Any) -> Any:
        # A run started between two pages: the second page repeats the first page's last row.
        offset = params["filter"]["offset"]
        return [rows[0], rows[1]] if offset == 0 else [rows[1], rows[2]] if offset == 2 else []
    got = await read_runs(shifting, page_size=2)
    assert [r["runId"] for r in got] == ["r0", "r1", "r2"]
    with pytest.raises(ValueError):
        await read_runs(fake, page_size=0)


def test_run_history_merge_reports_the_difference() -> None:
    history = RunHistory()
    first = history.merge([{"runId": "a", "status": "running", "createdAtMs": 1},
                           {"runId": "b", "status": "finished", "createdAtMs": 2}, {"runId": 3}])
    assert first.added == ("a", "b") and not first.changed and history.version == 1
    again = history.merge([{"runId": "a", "status": "running", "createdAtMs": 1}])
    assert not again and history.version == 1
    moved = history.merge([{"runId": "a", "status": "finished", "createdAtMs": 1, "finishedAtMs": 5},
                           {"runId": "c", "status": "running", "createdAtMs": 3}])
    assert moved.added == ("c",) and moved.changed == ("a",) and history.version == 2
    assert [r["runId"] for r in history.rows()] == ["c", "b", "a"]
    assert history.active_ids(["running"]) == ["c"]


def test_node_metrics_orders_iterations_and_takes_their_state_from_events() -> None:
    metrics = node_metrics(
        _snapshot([("plan", 0, "finished", 1), ("refine", 2, "in-progress", 1), ("ship", 0, "pending", 0)]),
        _events([("refine", 0, 1, 0, 10, "NodeFinished"), ("refine", 1, 1, 10, 20, "NodeFailed")]),
    )
    assert list(metrics) == ["plan", "refine", "refine [1]", "refine [2]", "ship"]
    assert [metrics[k]["state"] for k in metrics] == ["finished", "finished", "failed", "in-progress", "pending"]


@settings(suppress_health_check=[HealthCheck.too_slow], deadline=None)  # a shared, loaded machine
@given(run_rows(max_size=60), st.integers(1, 30), st.integers(0, 9_000_000), st.integers(0, 5_000_000))
def test_runs_over_time_shows_the_brushed_range_run_by_run(rows: list[dict[str, Any]], max_points: int,
                                                            back: int, width: int) -> None:
    frame = runs_table(rows, NOW)
    detail = (NOW - back - width, NOW - back)
    points = runs_over_time(frame, max_points=max_points, bins=20, detail=detail)
    assert int(points["count"].sum()) == len(frame)
    inside = frame[frame["start_ms"].between(*detail)]
    if len(frame) > max_points and 0 < len(inside) <= max_points:
        singles = points[points["runId"] != ""]
        assert sorted(singles["runId"]) == sorted(inside["runId"])
        assert (singles["count"] == 1).all()


def test_workflow_stats_say_how_many_runs_their_usage_covers() -> None:
    from dashboard.views.overview_frames import stats_html

    rows = [{"runId": f"r{i}", "workflowKey": "agents", "status": "finished", "startedAtMs": NOW - 10_000 * (i + 1),
             "finishedAtMs": NOW - 10_000 * i} for i in range(3)]
    full = {f"r{i}": {"tokens": 100.0, "cost_usd": 0.5} for i in range(3)}
    stats = workflow_stats(runs_table(rows, NOW, usage=full))
    assert stats.loc[0, "tokens"] == 300 and stats.loc[0, "cost_usd"] == pytest.approx(1.5)
    assert stats.loc[0, "usage_runs"] == 3
    assert "$1.50" in stats_html(stats) and "300" in stats_html(stats)
    partial = workflow_stats(runs_table(rows, NOW, usage={"r0": full["r0"]}))
    assert partial.loc[0, "usage_runs"] == 1
    assert "$0.50" not in stats_html(partial)  # a sum over 1 of 3 runs is not shown as the whole

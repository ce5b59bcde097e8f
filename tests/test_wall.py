"""The wall's pure parts: tile order, escaping, the patch between two states, and one
computation per tick shared by every session (a stub Gateway read, no browser)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from dashboard.views.overview_feed import RunsFeed
from dashboard.views.wall import Tile, WallFeed, order_tiles, tile_html, wall_patch


def test_failing_runs_first_then_active_then_recent() -> None:
    tiles = [
        Tile("ok-old", "w", "finished", changed_ms=1),
        Tile("running", "w", "running", changed_ms=5),
        Tile("failed-run", "w", "failed", changed_ms=2),
        Tile("running-with-failure", "w", "running", failed=1, changed_ms=3),
        Tile("ok-new", "w", "finished", changed_ms=9),
    ]
    assert [t.run_id for t in order_tiles(tiles)] == ["running-with-failure", "failed-run", "running", "ok-new", "ok-old"]


def test_tile_html_escapes_gateway_text_and_carries_the_hooks() -> None:
    text = tile_html(Tile('r"1<', "<script>x</script>", "running", done=1, total=4, tokens=12_345, cost_usd=0.5))
    assert "<script>" not in text and "&lt;script&gt;" in text
    assert 'data-testid="run-tile"' in text and 'data-run-id="r&quot;1&lt;"' in text and 'data-status="running"' in text
    assert "1/4 tasks" in text and "12.3k tokens" in text and "$0.50" in text


def test_patch_carries_only_changed_tiles() -> None:
    patch = wall_patch({"a": "A", "b": "B"}, {"a": "A", "b": "B2", "c": "C"}, ["c", "b", "a"])
    assert patch == {"set": {"b": "B2", "c": "C"}, "order": ["c", "b", "a"]}


class _Hub:
    """Answers ``getRun`` / ``listRunTokenUsage`` from a dict and counts the reads."""

    def __init__(self, runs: dict[str, dict[str, Any]]) -> None:
        self.runs = runs
        self.reads: list[tuple[str, str]] = []

    async def read(self, method: str, params: dict[str, Any], *, max_age: float = 1.0) -> Any:
        self.reads.append((method, params.get("runId", "")))
        if method == "getRun":
            return self.runs[params["runId"]]
        if method == "listRunTokenUsage":
            return {"runId": params["runId"], "events": []}
        if method == "listRuns":
            return list(self.runs.values())
        raise AssertionError(method)


async def test_one_computation_per_tick_for_every_session_and_ended_runs_read_once() -> None:
    now = time.time() * 1000
    runs = {
        "live": {"runId": "live", "workflowKey": "w", "status": "running", "startedAtMs": now - 5000,
                 "summary": {"finished": 1, "pending": 2}},
        "done": {"runId": "done", "workflowKey": "w", "status": "failed", "startedAtMs": now - 9000,
                 "finishedAtMs": now - 1000, "summary": {"finished": 1, "failed": 1}},
    }
    hub = _Hub(runs)
    feed = RunsFeed(hub)  # type: ignore[arg-type]
    feed.history.merge(list(runs.values()))
    wall = WallFeed(feed)
    seen: list[list[int]] = [[], [], []]
    for i in range(3):
        wall._listeners[i] = lambda state, i=i: seen[i].append(state.version)
    await wall.refresh()
    assert seen == [[1], [1], [1]]
    assert [t.run_id for t in wall.state.tiles] == ["done", "live"]
    assert wall.state.patch["order"] == ["done", "live"] and set(wall.state.patch["set"]) == {"done", "live"}
    # The live run finishes: its tile alone changes; the ended run is not read again.
    runs["live"] = {**runs["live"], "status": "finished", "summary": {"finished": 3}}
    hub.reads.clear()
    await wall.refresh()
    assert [r for r in hub.reads if r[1] == "done"] == []
    assert set(wall.state.patch["set"]) == {"live"}
    assert seen == [[1, 2], [1, 2], [1, 2]]
    assert 'data-status="finished"' in wall.state.patch["set"]["live"]
    # Nothing changed: nothing is published.
    await wall.refresh()
    assert seen[0] == [1, 2]


async def test_rotate_alternates_the_grid_with_each_active_run() -> None:
    import panel as pn

    from dashboard import Dashboard
    from dashboard.hub import GatewayHub

    hub = GatewayHub.shared("http://127.0.0.1:9", None)  # nothing listens: the run page's store just retries
    now = time.time() * 1000
    runs = {"active-run": {"runId": "active-run", "workflowKey": "w", "status": "running", "startedAtMs": now,
                           "summary": {"pending": 1}},
            "ended-run": {"runId": "ended-run", "workflowKey": "w", "status": "finished", "startedAtMs": now - 5000,
                          "finishedAtMs": now - 1000, "summary": {"finished": 1}}}
    WallFeed._shared[hub] = WallFeed(RunsFeed(_Hub(runs)))  # type: ignore[arg-type]
    app = Dashboard(hub=hub, view="monitor", wall="rotate", rotate_seconds=3)
    try:
        assert app._body.objects == [app.wall_grid]
        seen: list[str | None] = []
        deadline = asyncio.get_running_loop().time() + 15
        while app.store.run_id != "active-run" and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)  # poll interval
        seen.append(app.store.run_id)
        assert seen == ["active-run"], "the rotation never showed the active run"
        assert app._body.objects == [app._run_page]
        while app._body.objects != [app.wall_grid] and asyncio.get_running_loop().time() < deadline + 5:
            await asyncio.sleep(0.05)  # poll interval
        assert app._body.objects == [app.wall_grid], "the rotation did not come back to the grid"
        assert isinstance(app.wall_grid, pn.reactive.ReactiveHTML)
    finally:
        app.close()

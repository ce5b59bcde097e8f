"""``serve --follow-active N``: the hub follows the newest active runs before anyone opens them
(``dashboard/follow_active.py``), through the real run-list poll (``RunsFeed``) and hub, with a
scripted Gateway (``FakeRpc`` for ``listRuns``, ``FakeFeeds`` for the DevTools streams)."""

from __future__ import annotations

from typing import Any

import pytest

from dashboard.config import load_config
from dashboard.follow_active import ActiveRunFollower
from dashboard.store import RunStore
from dashboard.views.overview_feed import RunsFeed
from inspector.cli import ServeRefused, build_parser, serve_plan

from .test_hub import FakeFeeds, FakeRpc, make_hub, online, until
from .test_wire_budget import snapshot, wide_root


def runs_rpc(runs: list[dict[str, Any]]) -> FakeRpc:
    return FakeRpc({"listRuns": lambda params: runs[params.get("offset", 0): params.get("offset", 0) + params.get("limit", 100)],
                    "getRun": lambda params: next(r for r in runs if r["runId"] == params["runId"]),
                    "listScores": [], "listRunTokenUsage": []})


def run(run_id: str, status: str, created: int) -> dict[str, Any]:
    return {"runId": run_id, "workflowName": "w", "status": status, "createdAtMs": created, "startedAtMs": created}


async def test_the_newest_active_runs_are_followed_and_a_page_opening_one_has_its_tree_at_once() -> None:
    runs = [run("new", "running", 3_000), run("mid", "waiting-approval", 2_000), run("old", "running", 1_000),
            run("done", "finished", 4_000)]
    feeds = FakeFeeds()
    hub = make_hub(feeds, runs_rpc(runs), grace=0.05)
    feed = RunsFeed(hub, poll_seconds=0.05)
    follower = ActiveRunFollower(hub, 2, feed)
    follower.start()
    await until(lambda: set(follower.held) == {"new", "mid"}, what="the two newest active runs followed")
    assert set(hub.runs) == {"new", "mid"}  # one stream each, none for the finished or the older run
    await until(lambda: "new" in feeds.queues, what="the followed run's stream")
    feeds.push("new", online(), snapshot(wide_root(5)))
    await until(lambda: len(hub.tree("new") or ()) > 1, what="the followed run's tree")
    # A page opening the run now: its store has the whole tree in its first tick.
    store = RunStore(hub=hub, run_id="new")
    await until(lambda: store.tree_version > 0 and len(store.tree) > 1, what="the page's tree")
    assert len(store.tree) == len(hub.tree("new") or ())
    # "new" ends: the next poll lets it go and follows "old" instead; the page keeps its stream.
    runs[0] = run("new", "finished", 3_000)
    await until(lambda: set(follower.held) == {"mid", "old"}, what="the followed set moving on")
    assert "new" in hub.runs and hub.listener_count("new") == 1
    follower.close()
    assert follower.held == {} and not follower.running
    store.close()
    await until(lambda: not hub.runs, what="every stream stopped after the grace period")
    await hub.aclose()


async def test_nothing_is_followed_by_default() -> None:
    hub = make_hub(FakeFeeds(), runs_rpc([run("a", "running", 1)]))
    follower = ActiveRunFollower.shared(hub, load_config({}).follow_active)
    assert not follower.running and follower.wanted() == []
    await hub.aclose()


def test_serve_passes_follow_active_in_the_environment_and_refuses_a_negative_count() -> None:
    env: dict[str, str] = {"SMITHERS_DASHBOARD_FOLLOW_ACTIVE": "9"}
    serve_plan(build_parser().parse_args(["serve"]), env)
    assert load_config(env).follow_active == 9  # the environment's, without the option
    serve_plan(build_parser().parse_args(["serve", "--follow-active", "3"]), env)
    assert env["SMITHERS_DASHBOARD_FOLLOW_ACTIVE"] == "3" and load_config(env).follow_active == 3
    with pytest.raises(ServeRefused, match="follow-active"):
        serve_plan(build_parser().parse_args(["serve", "--follow-active", "-1"]), {})

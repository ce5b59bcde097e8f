"""The store logs each transition once and keeps task heartbeats out of the log.

The ``gated`` recording replayed by the in-process replay Gateway through the real hub and
store: its live stream re-emits ``build``'s pending/started/finished and sends
``run.completed`` three times. The wall's list, the event log, the timeline's attempts and
the header's retries must each see one run with no retry.
"""

from __future__ import annotations

import re
import time
from typing import Any

from dashboard.hub import GatewayHub
from dashboard.store import RunStore
from dashboard.views.events import EventLog, RecentEvents
from dashboard.views.header import RunHeader, header_html, task_retries
from dashboard.views.timeline import build_attempts
from inspector.client import GatewayClient
from inspector.items import RunEvent, TimeTravelled
from inspector.protocol import EventFrame, TimeTravelJump

from .replay_support import TOKEN, make_gateway, runs_of
from .test_hub import FakeFeeds, make_hub, online, run_event, snapshot_event, task_node, until
from .test_views import render


async def test_gated_replay_shows_one_run_completed_and_no_retries() -> None:
    run = runs_of("gated-run.jsonl")[0]
    gateway = make_gateway([run], speed=10.0)
    await gateway.start()
    hub = GatewayHub(GatewayClient(gateway.url, TOKEN, rpc_retries=0), grace=0.1)
    store = RunStore(hub=hub, run_id=run.run_id)
    wall = RecentEvents(store=store)
    log = EventLog(store=store)
    header = RunHeader(store=store)
    render(log)
    try:
        await until(lambda: store.settled and any(e.event == "run.completed" for e in store.events), 30,
                    "the replayed gated run settles")
        await until(lambda: any(e.event == "approval.decided" for e in store.events), 10, "the approval")
        names = [(e.event, e.node_id) for e in store.events]
        assert names.count(("run.completed", None)) == 1, names
        assert names.count(("node.started", "build")) == 1, names
        assert names.count(("node.started", "deploy")) == 1, names
        assert names.count(("approval.requested", "deploy")) == 1, names

        listed = re.findall(r'data-event="([^"]+)"', wall._render())
        assert listed.count("run.completed") == 1, listed
        log._update(full=True)
        assert list(log._table.value["event"]).count("run.completed") == 1

        attempts = build_attempts(store.events)
        assert [(a.node_id, a.attempt) for a in attempts] == [("build", 1), ("deploy", 1)]
        assert sum(1 for a in attempts if a.attempt > 1) == 0
        assert task_retries(store.tree) == 0
        assert 'data-retries="0"' in header._render()
    finally:
        store.close()
        await hub.aclose()
        await gateway.stop()


async def test_the_run_tells_repeats_once_for_every_session_late_joiners_and_rewinds_included() -> None:
    feeds = FakeFeeds()
    hub = make_hub(feeds)
    stores = [RunStore(hub=hub, run_id="r1"), RunStore(hub=hub, run_id="r1")]
    await until(lambda: "r1" in feeds.queues)
    started = run_event("r1", "node.started", nodeId="a")
    feeds.push("r1", online(), snapshot_event("r1", 0, [task_node(10, "a", "in-progress")]),
               started, run_event("r1", "node.started", nodeId="a"), run_event("r1", "node.finished", nodeId="a"))
    await until(lambda: all(any(e.event == "node.finished" for e in s.events) for s in stores))
    late = RunStore(hub=hub, run_id="r1")  # its catch-up hands in the same items, the repeat included
    stores.append(late)
    await until(lambda: any(e.event == "node.finished" for e in late.events))
    for store in stores:
        assert [e.event for e in store.events] == ["node.started", "node.finished"]
        assert not store._triage.transitions._last  # no per-session copy of the run's transitions
    shared = hub.shared_view("r1")
    assert shared is not None and shared.transitions._last

    # A rewind: the run does it again, which is news for every session (the log forgotten once).
    jump = TimeTravelled(TimeTravelJump("r1", 5, 1, 1000))
    feeds.push("r1", jump, run_event("r1", "node.started", nodeId="a"), run_event("r1", "node.started", nodeId="a"))
    await until(lambda: all(len(s.events) == 4 for s in stores), what="the rewind and the run again in every log")
    for store in stores:
        assert [e.event for e in store.events] == ["node.started", "node.finished", "run.time_travel_jumped", "node.started"]
    for store in stores:
        store.close()
    await hub.aclose()


async def test_task_heartbeats_are_kept_per_task_and_never_logged() -> None:
    feeds = FakeFeeds()
    hub = make_hub(feeds)
    store = RunStore(hub=hub, run_id="r1")
    await until(lambda: "r1" in feeds.queues)
    feeds.push("r1", online(), snapshot_event("r1", 0, [task_node(10, "a", "in-progress")]))
    beats = [run_event("r1", "task.heartbeat", nodeId=n, iteration=0, attempt=1) for _ in range(15) for n in "abcd"]
    feeds.push("r1", run_event("r1", "node.started", nodeId="a"), *beats, run_event("r1", "node.finished", nodeId="a"))
    await until(lambda: any(e.event == "node.finished" for e in store.events))
    assert [e.event for e in store.events] == ["node.started", "node.finished"]
    assert set(store.task_heartbeats) == {(n, 0) for n in "abcd"}
    assert all(isinstance(t, float) for t in store.task_heartbeats.values())
    store.close()
    await hub.aclose()


async def test_run_error_reaches_the_header_banner_until_events_flow_again() -> None:
    feeds = FakeFeeds()
    hub = make_hub(feeds)
    store = RunStore(hub=hub, run_id="r1")
    header = RunHeader(store=store)
    await until(lambda: "r1" in feeds.queues)
    error = {"code": "BackpressureDisconnect", "message": "queue exceeded <256> frames"}
    feeds.push("r1", online(), snapshot_event("r1", 0, [task_node(10, "a")]), run_event("r1", "run.error", error=error))
    await until(lambda: store.stream_error is not None)
    assert store.stream_error == "BackpressureDisconnect: queue exceeded <256> frames"
    text = header._render()
    assert 'data-testid="stream-error"' in text and "queue exceeded &lt;256&gt; frames" in text
    assert [e.event for e in store.events] == ["run.error"]
    feeds.push("r1", run_event("r1", "node.started", nodeId="a"))
    await until(lambda: store.stream_error is None)
    assert 'data-testid="stream-error"' not in header._render()
    store.close()
    await hub.aclose()


def test_gap_resync_and_waiting_records_say_what_happened() -> None:
    from dashboard.store import event_record

    gap = RunEvent(EventFrame("run.gap_resync", {"runId": "r", "fromSeq": 3, "toSeq": 9, "snapshot": {}}), None)
    assert "events 3–9" in event_record(gap).message
    waiting = RunEvent(EventFrame("node.waiting_approval", {"runId": "r", "nodeId": "d", "state": "waiting"}), 4)
    assert event_record(waiting).state == "waiting-approval"


def test_header_counts_skipped_cancelled_and_retries_from_attempts() -> None:
    html = header_html({"status": "running"}, "r1", {"finished": 2, "skipped": 1, "cancelled": 1}, retries=2,
                       now=time.time())
    assert "<b>1</b> skipped" in html and "<b>1</b> cancelled" in html and "<b>2</b> retries" in html
    assert 'data-retries="2"' in html



def test_node_detail_shows_the_selected_tasks_last_heartbeat() -> None:
    from dashboard.views.detail import NodeDetail, heartbeat_html
    from inspector.tree import DevToolsTree

    tree = DevToolsTree(snapshot_event("r1", 5, [task_node(10, "a", "in-progress"), task_node(11, "b")]))
    store = RunStore(tree=tree)
    detail = NodeDetail(store=store)
    store.selected_node = 10
    assert detail._beat.object == ""
    now = time.time()
    store.task_heartbeats = {("a", 0): now - 3}
    assert 'data-testid="task-heartbeat"' in detail._beat.object and "last heartbeat 3" in detail._beat.object
    store.selected_node = 11
    assert detail._beat.object == ""
    assert "last heartbeat 1 min 05 s ago" in heartbeat_html(tree.get(10), {("a", 0): now - 65}, now)


async def test_a_real_agentic_run_logs_no_heartbeat_and_each_transition_once(gateway: Any) -> None:
    """The real Gateway's ``agents`` workflow: four agents in parallel beat every few
    seconds; the beats land in ``task_heartbeats``, never in the event log, and no node
    transition is logged twice (no task of it retries)."""
    hub = GatewayHub(GatewayClient(gateway.url, "op-token"), grace=0.2)
    beats: list[str] = []
    try:
        run_id = gateway.launch_run("agents")
        tap = hub.attach(run_id, lambda item: beats.append(item.frame.payload.get("nodeId"))
                         if isinstance(item, RunEvent) and item.frame.event == "task.heartbeat" else None)
        store = RunStore(hub=hub, run_id=run_id)
        try:
            await until(lambda: store.settled, timeout=90, what="the agents run settles")
            await until(lambda: sum(e.event == "run.completed" for e in store.events) == 1, 10, "run.completed")
            assert beats, "the Gateway sent task heartbeats"
            assert {node for node, _ in store.task_heartbeats} == set(beats)
            logged = [e for e in store.events if e.event.startswith(("node.", "run.completed", "task."))]
            assert not [e for e in logged if e.event == "task.heartbeat"]
            keys = [(e.event, e.node_id, e.iteration, e.attempt) for e in logged if e.event.startswith("node.")]
            assert len(keys) == len(set(keys)), keys
            assert [e.event for e in store.events].count("run.completed") == 1
        finally:
            store.close()
            tap.release()
    finally:
        await hub.aclose()


async def test_a_late_joiner_gets_each_tasks_last_heartbeat_not_the_flood() -> None:
    """The hub keeps for late joiners the run's history and only the last beat per task."""
    feeds = FakeFeeds()
    hub = make_hub(feeds)
    first = hub.attach("r1", lambda item: None)
    await until(lambda: "r1" in feeds.queues)
    beats = [run_event("r1", "task.heartbeat", nodeId=n, iteration=0, attempt=1) for _ in range(50) for n in "ab"]
    feeds.push("r1", online(), run_event("r1", "node.started", nodeId="a"), *beats)
    await until(lambda: len(hub._feeds["r1"].task_beats) == 2)
    late: list[Any] = []
    second = hub.attach("r1", late.append)
    events = [i.frame.event for i in late if isinstance(i, RunEvent)]
    assert events == ["node.started", "task.heartbeat", "task.heartbeat"]
    store = RunStore(hub=hub, run_id="r1")
    await until(lambda: len(store.task_heartbeats) == 2 and len(store.events) == 1)
    store.close()
    first.release()
    second.release()
    await hub.aclose()

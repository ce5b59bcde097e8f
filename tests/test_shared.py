"""Per-run work is done once per tick for every session on the run (``dashboard/shared.py``).

Through the real path: one :class:`~dashboard.hub.GatewayHub` fed by a scripted subscription,
N real :class:`~dashboard.store.RunStore` s with their :class:`~dashboard.views.tree.NodeTree`,
:class:`~dashboard.views.header.RunHeader` and the wall's
:class:`~dashboard.views.events.RecentEvents`, each rendered into its own Bokeh document. The
tree patch must be computed once per tick (``patch_for`` calls counted) while every session
still ends on the right tree (a :class:`~dashboard.treerows.RowMirror` per session, fed what
its component sent, equals the tree's rows), and the header and event list HTML must be the
same as rendering them per session.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from bokeh.document import Document

import dashboard.shared as shared_module
from dashboard.store import RunStore
from dashboard.treerows import RowMirror, decode, rows_for
from dashboard.views.events import RecentEvents
from dashboard.views.header import RunHeader, failure_text, header_html
from dashboard.views.tree import NodeTree
from inspector.items import RunEvent
from inspector.protocol import EventFrame

from .test_hub import FakeFeeds, FakeRpc, delta_event, make_hub, online, run_event, until
from .test_wire_budget import find_task, snapshot, wide_root

RUN = "shared-run"
SESSIONS = 6


class Wall:
    """N sessions of one run, each with the tree, the header and the wall's event list."""

    def __init__(self, n: int, sequences: int = 20) -> None:
        self.root = wide_root(sequences)
        self.feeds = FakeFeeds()
        self.hub = make_hub(self.feeds, FakeRpc({"getRun": {"runId": RUN, "status": "running"}, "listScores": []}))
        self.stores: list[RunStore] = []
        self.trees: list[NodeTree] = []
        self.headers: list[RunHeader] = []
        self.lists: list[RecentEvents] = []
        self.mirrors: list[RowMirror] = []
        for _ in range(n):
            store = RunStore(hub=self.hub, run_id=RUN)
            view = NodeTree(store=store, toolbar=False)
            mirror = RowMirror()
            view.tree._send_msg = lambda m, mirror=mirror: mirror.apply(decode(m)) if isinstance(m, str) else None  # type: ignore[method-assign]
            view.__panel__().get_root(Document())
            self.stores.append(store)
            self.trees.append(view)
            self.headers.append(RunHeader(store=store))
            self.lists.append(RecentEvents(store=store))
            self.mirrors.append(mirror)
        self.seq = 0

    async def start(self) -> None:
        await until(lambda: RUN in self.feeds.queues, what="the subscription")
        self.feeds.push(RUN, online(), snapshot(self.root))
        await until(lambda: all(len(s.tree) > 1 and s.last_changes and s.last_changes[-1].seq == 0 for s in self.stores),
                    what="every store's snapshot")
        for view in self.trees:
            view.tree._handle_msg({"type": "ready", "seq": 0, "run": None})

    def update_task(self, name: str, state: str) -> dict[str, Any]:
        node = find_task(self.root, name)
        return {"op": "updateTask", "id": node["id"], "task": {**node["task"], "state": state, "attempt": 1}}

    async def push(self, *ops_per_delta: list[dict[str, Any]]) -> None:
        for ops in ops_per_delta:
            self.feeds.push(RUN, delta_event(self.seq, ops))
            self.seq += 1
        target = self.seq
        await until(lambda: all(s.last_changes and s.last_changes[-1].seq == target for s in self.stores),
                    what=f"every store's tick of seq {target}")

    async def close(self) -> None:
        for store in self.stores:
            store.close()
        await self.hub.aclose()


async def test_the_tree_patch_is_computed_once_per_tick_and_every_session_ends_on_the_tree(monkeypatch: Any) -> None:
    calls = 0
    original = shared_module.patch_for

    def counted(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        return original(*args, **kwargs)

    monkeypatch.setattr(shared_module, "patch_for", counted)
    wall = Wall(SESSIONS)
    await wall.start()
    view = wall.hub.shared_view(RUN)
    assert view is not None and all(s.shared is view for s in wall.stores)
    ticks_before = view.stats.ticks
    calls = 0
    for i in range(12):
        await wall.push([wall.update_task(f"a-{i}", "in-progress")], [wall.update_task(f"b-{i}", "in-progress")])
    ticks = view.stats.ticks - ticks_before
    assert ticks >= 1
    # One patch per pass of the run's clock, not one per session per tick.
    assert calls <= ticks, f"{calls} patch_for calls for {ticks} ticks of {SESSIONS} sessions"
    assert view.stats.patches_shared >= (SESSIONS - 1) * calls
    expected = rows_for(wall.stores[0].tree)
    for mirror in wall.mirrors:
        assert mirror.ordered() == expected
    await wall.close()


async def test_sessions_tick_together_and_share_event_records_and_html() -> None:
    wall = Wall(SESSIONS)
    await wall.start()
    wall.feeds.push(RUN, run_event(RUN, "node.started", nodeId="a-0", iteration=0, attempt=1, state="in-progress"))
    wall.feeds.push(RUN, run_event(RUN, "node.failed", nodeId="a-1", iteration=0, attempt=1, error={"message": "<b>boom</b>"}))
    await wall.push([wall.update_task("a-0", "in-progress")], [wall.update_task("a-1", "failed")])
    await until(lambda: all(len(s.events) >= 2 for s in wall.stores), what="the events in every store")
    first = wall.stores[0]
    for store in wall.stores[1:]:
        # The same record objects (made once), so the same list.
        assert all(a is b for a, b in zip(store.events, first.events, strict=True))
        assert store.tree_version == first.tree_version
    for header in wall.headers:
        header._update()
    for events in wall.lists:
        events._update()
    store = wall.stores[0]
    alone = header_html(store.run, store.run_id, store.tree.state_counts(), settled=store.settled,
                        notice=store.notice, run_error=store.run_error, failure=failure_text(store))
    assert {h._pane.object for h in wall.headers} == {alone}
    assert {e._pane.object for e in wall.lists} == {RecentEvents._html(
        list(reversed(store.events))[:40], len(store.events))}
    assert "&lt;b&gt;boom&lt;/b&gt;" in wall.lists[0]._pane.object  # still escaped
    view = wall.hub.shared_view(RUN)
    assert view is not None and view.stats.records_shared >= (SESSIONS - 1) * 2
    await wall.close()


async def test_task_heartbeats_are_folded_once_per_beat_for_every_session() -> None:
    wall = Wall(SESSIONS)
    await wall.start()
    beats = [run_event(RUN, "task.heartbeat", nodeId=f"a-{i % 3}", iteration=0, attempt=1) for i in range(9)]
    for beat in beats:
        wall.feeds.push(RUN, beat)
    await until(lambda: all(len(s.task_heartbeats) == 3 for s in wall.stores), what="every store's beats")
    view = wall.hub.shared_view(RUN)
    assert view is not None
    assert view.stats.beats_folded == len(beats)
    assert view.stats.beats_shared == (SESSIONS - 1) * len(beats)
    # Each task's latest beat, the same map in every store, and no beat in the event log.
    first = wall.stores[0]
    assert set(first.task_heartbeats) == {("a-0", 0), ("a-1", 0), ("a-2", 0)}
    assert all(s.task_heartbeats is first.task_heartbeats for s in wall.stores)  # one copy per tick
    assert not any(r.event == "task.heartbeat" for s in wall.stores for r in s.events)
    # A store that missed the beats (it joins later) takes the run's map at its next flush.
    late = RunStore(hub=wall.hub, run_id=RUN)
    wall.feeds.push(RUN, run_event(RUN, "task.heartbeat", nodeId="b-0", iteration=0, attempt=1))
    await until(lambda: len(late.task_heartbeats) == 4, what="the late store's beats")
    late.close()
    await wall.close()


async def test_a_store_holding_its_batch_is_not_flushed_by_the_others() -> None:
    wall = Wall(2)
    await wall.start()
    held, other = wall.stores
    await until(lambda: held._flush_handle is None and other._flush_handle is None, what="both stores idle")
    held.batch_interval = 3600.0
    held._last_flush = asyncio.get_running_loop().time()
    wall.feeds.push(RUN, delta_event(wall.seq, [wall.update_task("a-0", "finished")]))
    wall.seq += 1
    await until(lambda: other.last_changes and other.last_changes[-1].seq == wall.seq, what="the other store's tick")
    assert held.last_changes[-1].seq == 0 and len(held._pending_changes) == 1
    held.flush()
    assert held.last_changes[-1].seq == wall.seq
    assert wall.mirrors[0].ordered() == rows_for(held.tree)
    await wall.close()


def test_the_ticker_stretches_batches_under_load_and_shrinks_back_when_it_eases() -> None:
    ticker = shared_module.RunTicker()
    assert ticker.interval(0.05) == 0.05
    # The loop ran each pass most of a period late: batches stretch, up to the bound.
    for _ in range(20):
        ticker._adapt(cost=0.9 * ticker.interval(0.05), period=ticker.interval(0.05))
    assert ticker.stretch == ticker.MAX_STRETCH
    assert ticker.interval(0.05) == 0.05 * ticker.MAX_STRETCH
    assert ticker.stats.max_stretch == ticker.MAX_STRETCH
    # Between the thresholds nothing moves (no oscillation around one load).
    ticker._adapt(cost=0.3 * ticker.interval(0.05), period=ticker.interval(0.05))
    assert ticker.stretch == ticker.MAX_STRETCH
    # Quiet again: back to the store's own interval, never below it.
    for _ in range(40):
        ticker._adapt(cost=0.0, period=ticker.interval(0.05))
    assert ticker.stretch == 1.0


async def test_stores_ask_the_ticker_for_their_stretched_interval() -> None:
    wall = Wall(2)
    await wall.start()
    view = wall.hub.shared_view(RUN)
    assert view is not None
    await until(lambda: all(s._flush_handle is None for s in wall.stores), what="both stores idle")
    view.ticker.stretch = 4.0
    for store in wall.stores:  # just flushed: the next batch is due a whole interval later
        store._last_flush = asyncio.get_running_loop().time()
    wall.feeds.push(RUN, delta_event(wall.seq, [wall.update_task("a-0", "finished")]))
    wall.seq += 1
    await until(lambda: all(s._flush_handle is not None for s in wall.stores), what="both stores' flush requests")
    for store in wall.stores:
        request = store._flush_handle
        assert request.due == store._last_flush + 4.0 * store.batch_interval
        assert request.slack == 2.0 * store.batch_interval
    await wall.push()  # and every store still reaches the delta
    await wall.close()


async def test_the_views_throttles_stretch_with_the_runs_batches() -> None:
    """Under load every session's header, event list and heartbeats slow down with its store's
    batches: their throttle's next redraw is the interval times the run's stretch."""
    wall = Wall(1)
    await wall.start()
    view = wall.hub.shared_view(RUN)
    assert view is not None
    header = wall.headers[0]
    loop = asyncio.get_running_loop()
    for stretch in (1.0, 4.0):
        view.ticker.stretch = stretch
        throttle = header._throttle
        throttle.cancel()
        throttle._last = time.monotonic()  # just redrawn: the next call waits a whole interval
        throttle()
        assert throttle._handle is not None
        waits = throttle._handle.when() - loop.time()
        assert stretch * header._redraw_interval - 0.05 <= waits <= stretch * header._redraw_interval
        throttle.cancel()
    await wall.close()


async def test_the_ticker_stretches_for_its_own_loop_not_for_a_busy_machine() -> None:
    """A pass made late while this process had no CPU (another process held the core: here a
    blocking wait) leaves the batches alone; the same lateness spent computing stretches them."""
    import time

    async def late_pass(hold: Any) -> float:
        ticker = shared_module.RunTicker()
        done = asyncio.Event()
        loop = asyncio.get_running_loop()
        ticker.request(done.set, due=loop.time() + 0.01, slack=0.025)
        hold(0.2)  # the loop cannot run the pass meanwhile: 0.2 s late on a 0.05 s period
        await asyncio.wait_for(done.wait(), 5)
        return ticker.stretch

    def spin(seconds: float) -> None:
        end = time.process_time() + seconds
        while time.process_time() < end:
            pass

    assert await late_pass(time.sleep) == 1.0
    assert await late_pass(spin) > 1.0


async def test_a_node_event_shows_on_every_sessions_row_before_its_frame_and_the_frame_confirms_it() -> None:
    wall = Wall(SESSIONS)
    await wall.start()
    first = wall.stores[0]
    target = first.tree.find_task("a-3")
    assert target is not None

    def shown(mirror: RowMirror) -> Any:
        return {r["id"]: r for r in mirror.ordered()}[target.id]["state"]

    wall.feeds.push(RUN, run_event(RUN, "node.started", nodeId="a-3", state="in-progress"))
    await until(lambda: all(shown(m) == "in-progress" for m in wall.mirrors), what="the hint on every row")
    assert target.state == "pending"  # the tree is exact: only the rows show the hint
    assert first.tree.state_counts().get("in-progress", 0) == 0
    assert all(s.state_hints is first.state_hints for s in wall.stores)  # one map for the run
    assert any(r.event == "node.started" for r in first.events)  # and the event is logged as before
    wall.feeds.push(RUN, run_event(RUN, "node.finished", nodeId="a-3", state="finished"))
    await until(lambda: all(shown(m) == "finished" for m in wall.mirrors), what="the newer hint")
    await wall.push([wall.update_task("a-3", "in-progress")])  # the older frame does not undo it
    assert {shown(m) for m in wall.mirrors} == {"finished"} and first.state_hints
    await wall.push([wall.update_task("a-3", "finished")])
    await until(lambda: not first.state_hints, what="the frame confirming the hint")
    expected = rows_for(first.tree)
    assert all(m.ordered() == expected for m in wall.mirrors)
    # History replayed on subscribing is not news: a late store gets no hint from it.
    wall.feeds.push(RUN, RunEvent(EventFrame("node.started", {"runId": RUN, "nodeId": "a-4"}), replayed=True))
    wall.feeds.push(RUN, run_event(RUN, "node.started", nodeId="a-3"))  # stale: the tree has it finished
    await until(lambda: sum(r.event == "node.started" for r in first.events) == 3, what="the two events logged")
    assert not first.state_hints and all(m.ordered() == expected for m in wall.mirrors)
    await wall.close()

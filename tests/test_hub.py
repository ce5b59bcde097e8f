"""GatewayHub: one subscription per run however many listeners, late joiners catch up,
shared reads, and the Gateway-side cost of twelve sessions on one run.

The fakes at the top (:class:`FakeFeeds`, :class:`FakeRpc`) are reused by
``test_store.py`` and ``test_views.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import re
import time
import weakref
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from dashboard.hub import GatewayHub, ReceivedRunEvent
from dashboard.store import RunStore
from inspector.client import GatewayClient
from inspector.errors import GatewayRpcError
from inspector.protocol import EventFrame
from inspector.status import ConnectionState, ConnectionStatus
from inspector.stream import Heartbeat, RunEvent, StatusChanged, SubscriptionItem, TreeUpdated

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from inspector.tree import DevToolsTree

# ---------------------------------------------------------------------------- fakes


def task_node(node_id: int, name: str, state: str = "pending", iteration: int = 0, **task: Any) -> dict[str, Any]:
    return {
        "id": node_id,
        "type": "task",
        "name": "task",
        "props": {"id": name},
        "task": {"nodeId": name, "kind": "compute", "iteration": iteration, "state": state, **task},
        "children": [],
        "depth": 1,
    }


def snapshot_event(run_id: str, seq: int, tasks: list[dict[str, Any]], name: str = "wf") -> dict[str, Any]:
    root = {"id": 1, "type": "workflow", "name": name, "props": {"name": name}, "children": tasks, "depth": 0}
    return {
        "version": 1,
        "kind": "snapshot",
        "snapshot": {"version": 1, "runId": run_id, "frameNo": seq, "seq": seq, "root": root},
    }


def delta_event(base: int, ops: list[dict[str, Any]]) -> dict[str, Any]:
    return {"version": 1, "kind": "delta", "delta": {"version": 1, "baseSeq": base, "seq": base + 1, "ops": ops}}


def set_state(node_id: int, name: str, state: str, **task: Any) -> dict[str, Any]:
    return {"op": "updateTask", "id": node_id, "task": {"nodeId": name, "kind": "compute", "iteration": 0, "state": state, **task}}


def run_event(run_id: str, event: str, **payload: Any) -> RunEvent:
    return RunEvent(EventFrame(event, {"runId": run_id, **payload}))


def online() -> StatusChanged:
    return StatusChanged(ConnectionState(ConnectionStatus.ONLINE, since=time.time()))


class FakeFeeds:
    """A scripted subscription source: ``push(run_id, ...)`` feeds the newest stream of a run.

    DevTools events (dicts) are applied to the hub's tree and yielded as ``TreeUpdated``;
    anything else is yielded as is.
    """

    def __init__(self) -> None:
        self.started: list[str] = []
        self.closed: list[str] = []
        self.queues: dict[str, asyncio.Queue[Any]] = {}

    def __call__(self, run_id: str, tree: DevToolsTree) -> AsyncIterator[SubscriptionItem]:
        queue: asyncio.Queue[Any] = asyncio.Queue()
        self.queues[run_id] = queue
        self.started.append(run_id)
        return self._stream(run_id, tree, queue)

    async def _stream(self, run_id: str, tree: DevToolsTree, queue: asyncio.Queue[Any]) -> AsyncIterator[SubscriptionItem]:
        try:
            yield StatusChanged(ConnectionState(ConnectionStatus.CONNECTING, since=time.time()))
            while True:
                item = await queue.get()
                if isinstance(item, Exception):
                    raise item
                if isinstance(item, dict):
                    yield TreeUpdated(tree.apply(item), tree)
                else:
                    yield item
        finally:
            self.closed.append(run_id)

    def push(self, run_id: str, *items: Any) -> None:
        for item in items:
            self.queues[run_id].put_nowait(item)


class FakeRpc:
    """An ``httpx.MockTransport`` handler answering Gateway RPCs from ``answers``.

    ``answers[method]`` is a payload, or a callable ``params -> payload``; raising
    :class:`RpcFailure` answers with an error frame. ``gate(method, **match)`` returns an
    ``asyncio.Event`` the matching request waits on, to make an answer arrive late.
    """

    def __init__(self, answers: dict[str, Any] | None = None) -> None:
        self.answers: dict[str, Any] = dict(answers or {})
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.gates: list[tuple[str, dict[str, Any], asyncio.Event]] = []

    def gate(self, method: str, **match: Any) -> asyncio.Event:
        event = asyncio.Event()
        self.gates.append((method, match, event))
        return event

    def count(self, method: str, **match: Any) -> int:
        return sum(1 for m, p in self.calls if m == method and all(p.get(k) == v for k, v in match.items()))

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        method = request.url.path.rsplit("/", 1)[1]
        params = json.loads(request.content or b"{}")
        self.calls.append((method, params))
        for m, match, event in self.gates:
            if m == method and all(params.get(k) == v for k, v in match.items()):
                await event.wait()
        answer = self.answers.get(method)
        try:
            payload = answer(params) if callable(answer) else answer
        except RpcFailure as exc:
            return httpx.Response(exc.status, json={"type": "res", "id": "h", "ok": False,
                                                    "error": {"version": "v1", "code": exc.code, "message": exc.message}})
        if payload is None and method not in self.answers:
            return httpx.Response(404, json={"type": "res", "id": "h", "ok": False,
                                             "error": {"version": "v1", "code": "METHOD_NOT_FOUND", "message": method}})
        return httpx.Response(200, json={"type": "res", "id": "h", "ok": True, "apiVersion": "v1", "payload": payload})


class RpcFailure(Exception):
    def __init__(self, code: str, message: str, status: int = 404) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


def make_hub(feeds: FakeFeeds, rpc: FakeRpc | None = None, *, grace: float = 0.2) -> GatewayHub:
    rpc = rpc or FakeRpc()
    client = GatewayClient("http://gateway.test:7331", "secret", transport=httpx.MockTransport(rpc), rpc_retries=0)
    return GatewayHub(client, grace=grace, source=feeds, crash_retry=0.05)


async def until(condition: Callable[[], bool], timeout: float = 5.0, what: str = "condition") -> None:
    """Poll ``condition`` until it holds or ``timeout`` passes (no sleep-as-synchronisation)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met within {timeout} s")
        await asyncio.sleep(0.01)


# ---------------------------------------------------------------------------- unit tests


async def test_twelve_listeners_share_one_subscription_and_all_see_every_item() -> None:
    feeds = FakeFeeds()
    hub = make_hub(feeds)
    seen: list[list[SubscriptionItem]] = [[] for _ in range(12)]
    handles = [hub.attach("r1", seen[i].append) for i in range(12)]
    await until(lambda: "r1" in feeds.queues)
    feeds.push("r1", online(), snapshot_event("r1", 0, [task_node(10, "a")]), Heartbeat(123.0))
    await until(lambda: all(any(isinstance(i, Heartbeat) for i in s) for s in seen))
    assert feeds.started == ["r1"]
    assert hub.stats.subscriptions_started == 1
    assert hub.listener_count("r1") == 12
    for items in seen:
        assert [type(i).__name__ for i in items[-3:]] == ["StatusChanged", "TreeUpdated", "Heartbeat"]
    for h in handles:
        h.release()
    await hub.aclose()


async def test_late_joiner_gets_current_state_at_once() -> None:
    feeds = FakeFeeds()
    hub = make_hub(feeds)
    first = hub.attach("r1", lambda item: None)
    await until(lambda: "r1" in feeds.queues)
    feeds.push("r1", online(), snapshot_event("r1", 0, [task_node(10, "a")]),
               delta_event(0, [set_state(10, "a", "in-progress")]), run_event("r1", "node.started", nodeId="a"))
    await until(lambda: hub.tree("r1") is not None and hub.tree("r1").seq == 1)  # type: ignore[union-attr]
    await until(lambda: len(hub._feeds["r1"].events) == 1)
    late: list[SubscriptionItem] = []
    second = hub.attach("r1", late.append)
    # Delivered before attach returned: no waiting for the next delta.
    kinds = [type(i).__name__ for i in late]
    assert kinds[:3] == ["StatusChanged", "TreeUpdated", "ReceivedRunEvent"]
    assert late[0].state.status is ConnectionStatus.ONLINE  # type: ignore[union-attr]
    change = late[1].change  # type: ignore[union-attr]
    assert change.rebuilt and change.seq == 1
    assert isinstance(late[2], ReceivedRunEvent) and late[2].received_at > 0
    assert feeds.started == ["r1"]
    first.release()
    second.release()
    await hub.aclose()


async def test_the_events_the_hub_keeps_share_their_repeated_strings() -> None:
    """Each event is decoded from its own text; what the hub keeps (its history, what every
    listener gets) holds one copy of each name, key and short value (section 6 of
    docs/performance.md: ~1 MB per 2,000 events)."""
    feeds = FakeFeeds()
    hub = make_hub(feeds)
    got: list[SubscriptionItem] = []
    sub = hub.attach("r1", got.append)
    await until(lambda: "r1" in feeds.queues)
    output = {"text": "y" * 300}
    for node in ("a", "b"):
        text = json.dumps({"event": "node.started", "payload": {"runId": "r1", "nodeId": node, "state": "in-progress"}})
        frame = json.loads(text)
        feeds.push("r1", RunEvent(EventFrame(frame["event"], {**frame["payload"], "output": output})))
    await until(lambda: len(hub._feeds["r1"].events) == 2)
    first, second = hub._feeds["r1"].events
    assert [e for e in got if isinstance(e, RunEvent)] == [first, second]
    assert first.frame.payload == {"runId": "r1", "nodeId": "a", "state": "in-progress", "output": output}
    assert first.frame.event is second.frame.event
    assert first.frame.payload["state"] is second.frame.payload["state"]
    assert first.frame.payload["runId"] is second.frame.payload["runId"]
    assert {id(k) for k in first.frame.payload} == {id(k) for k in second.frame.payload}
    assert first.frame.payload["output"] is output  # nested values are the event's own, untouched
    sub.release()
    await hub.aclose()


async def test_last_release_stops_after_grace_and_a_quick_reattach_keeps_the_stream() -> None:
    feeds = FakeFeeds()
    hub = make_hub(feeds, grace=0.3)
    h = hub.attach("r1", lambda item: None)
    await until(lambda: "r1" in feeds.queues)
    h.release()
    h.release()  # idempotent
    h2 = hub.attach("r1", lambda item: None)  # a page reload within the grace period
    await asyncio.sleep(0)
    assert feeds.started == ["r1"] and feeds.closed == []
    h2.release()
    await until(lambda: feeds.closed == ["r1"], what="subscription stopped after the grace period")
    assert hub.runs == []
    assert hub.stats.subscriptions_stopped == 1
    h3 = hub.attach("r1", lambda item: None)
    await until(lambda: feeds.started == ["r1", "r1"], what="a new subscription after a real stop")
    h3.release()
    await hub.aclose()


async def test_a_failing_listener_does_not_starve_the_others() -> None:
    feeds = FakeFeeds()
    hub = make_hub(feeds)

    def broken(item: SubscriptionItem) -> None:
        raise RuntimeError("view bug")

    good: list[SubscriptionItem] = []
    hub.attach("r1", broken)
    hub.attach("r1", good.append)
    await until(lambda: "r1" in feeds.queues)
    feeds.push("r1", Heartbeat(1.0))
    await until(lambda: any(isinstance(i, Heartbeat) for i in good))
    await hub.aclose()


async def test_a_crashing_source_is_reported_offline_and_restarted() -> None:
    feeds = FakeFeeds()
    hub = make_hub(feeds)
    seen: list[SubscriptionItem] = []
    hub.attach("r1", seen.append)
    await until(lambda: "r1" in feeds.queues)
    feeds.push("r1", ValueError("bug in the stream"))
    await until(lambda: len(feeds.started) == 2, what="restart")
    offline = [i for i in seen if isinstance(i, StatusChanged) and i.state.status is ConnectionStatus.OFFLINE]
    assert offline and "bug in the stream" in (offline[0].state.error or "")
    assert hub.stats.source_crashes == 1
    await hub.aclose()


async def test_identical_reads_in_flight_are_shared() -> None:
    rpc = FakeRpc({"getRun": lambda p: {"runId": p["runId"], "status": "running"}})
    gate = rpc.gate("getRun")
    hub = make_hub(FakeFeeds(), rpc)
    calls = [asyncio.ensure_future(hub.read("getRun", {"runId": "r1"})) for _ in range(12)]
    await until(lambda: rpc.count("getRun") >= 1)
    gate.set()
    results = await asyncio.gather(*calls)
    assert all(r["runId"] == "r1" for r in results)
    assert rpc.count("getRun") == 1
    # A different run is a different read; an old answer expires.
    await hub.read("getRun", {"runId": "r2"})
    assert rpc.count("getRun") == 2
    await hub.read("getRun", {"runId": "r1"}, max_age=0.0)
    assert rpc.count("getRun") == 3
    hub.forget_reads("r1")
    await hub.aclose()


async def test_a_read_that_keeps_failing_does_not_keep_its_earlier_failures() -> None:
    """A wall re-reads every few seconds; when the Gateway keeps refusing one read (a run it
    no longer has), each failure must not keep the one before it alive (through the stale
    cache entry in the reading frame of its traceback): that grew a served process for ever."""

    def refuse(params: dict[str, Any]) -> Any:
        raise RpcFailure("RunNotFound", f"Run not found: {params['runId']}")

    hub = make_hub(FakeFeeds(), FakeRpc({"listScores": refuse}))
    failures: list[weakref.ref[GatewayRpcError]] = []
    for _ in range(20):
        with pytest.raises(GatewayRpcError) as info:
            await hub.read("listScores", {"runId": "gone"}, max_age=0.0)
        failures.append(weakref.ref(info.value))
        del info
    gc.collect()
    alive = [ref for ref in failures if ref() is not None]
    assert len(alive) <= 1, f"{len(alive)} of 20 failures still alive"
    assert hub._reads == {}  # errors are shared with the callers waiting, never cached
    await hub.aclose()


async def test_a_stopped_feed_is_freed_without_the_cyclic_collector() -> None:
    """A wall rotating through runs drops a run's whole state (its tree, events, shared view)
    every few seconds: it must go when its subscription ends, not wait for a full collection."""
    feeds = FakeFeeds()
    hub = make_hub(feeds, grace=0.0)
    handle = hub.attach("r1", lambda item: None)
    await until(lambda: "r1" in feeds.queues)
    feeds.push("r1", snapshot_event("r1", 0, [task_node(i, f"t{i}") for i in range(2, 50)]),
               run_event("r1", "NodeStarted", nodeId="t2"))
    await until(lambda: len(hub._feeds["r1"].tree) == 49 and len(hub._feeds["r1"].events) == 1)
    feed = hub._feeds["r1"]
    leaf, root, view = weakref.ref(feed.tree[7]), weakref.ref(feed.tree[1]), weakref.ref(feed.view)
    task = feed.task
    assert task is not None
    del feed
    gc.disable()
    try:
        handle.release()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        del task
        await asyncio.sleep(0)  # the loop lets go of the finished task's callbacks
        assert (leaf(), root(), view()) == (None, None, None)
    finally:
        gc.enable()
    await hub.aclose()


async def test_shared_hub_is_one_per_url_token_and_loop() -> None:
    a = GatewayHub.shared("http://127.0.0.1:1", "t")
    b = GatewayHub.shared("http://127.0.0.1:1/", "t")
    c = GatewayHub.shared("http://127.0.0.1:1", "other")
    assert a is b and a is not c
    await a.aclose()
    await c.aclose()
    assert GatewayHub.shared("http://127.0.0.1:1", "t") is not a


# ---------------------------------------------------------------------------- real Gateway


def ws_connections_total(url: str) -> int:
    """``smithers_gateway_connections_total{transport="ws"}`` from the Gateway's /metrics.

    (``smithers_gateway_connections_active`` is not usable in 0.32.0: it goes negative.)
    """
    text = httpx.get(f"{url}/metrics", headers={"Authorization": "Bearer op-token"}, timeout=10).text
    match = re.search(r'^smithers_gateway_connections_total\{transport="ws"\}\s+(\d+)', text, re.M)
    return int(match.group(1)) if match else 0


async def test_twelve_stores_on_one_run_cost_one_gateway_connection(gateway: Any) -> None:
    run_id = gateway.launch_run("rich")
    before = ws_connections_total(gateway.url)
    hub = GatewayHub(GatewayClient(gateway.url, "op-token"), grace=0.5)
    stores = [RunStore(hub=hub, run_id=run_id) for _ in range(12)]
    try:
        await until(lambda: all(s.settled for s in stores), timeout=60, what="every store settled")
        snapshot = await hub.client.get_devtools_snapshot(run_id)
        for store in stores:
            assert store.tree.snapshot()["root"] == snapshot["root"]
            assert store.connection_status == "online"
        opened = ws_connections_total(gateway.url) - before
        assert hub.stats.subscriptions_started == 1
        assert 1 <= opened <= 2, f"{opened} Gateway websocket connections for 12 stores"
    finally:
        for store in stores:
            store.close()
        await hub.aclose()


@pytest.fixture(autouse=True)
def _no_shared_hubs_leak() -> Any:
    yield
    GatewayHub._registry.clear()


async def test_shared_read_cache_is_bounded_hard() -> None:
    """Hundreds of distinct reads within seconds (frames scrubbed on a big run) must not
    pile up: the cache evicts the oldest answers, never one still in flight."""
    feeds, rpc = FakeFeeds(), FakeRpc({"getDevToolsSnapshot": lambda p: {"frame": p["frameNo"]}})
    hub = make_hub(feeds, rpc)
    hub.max_cached_reads = 20
    for frame in range(200):
        assert await hub.read("getDevToolsSnapshot", {"runId": "r", "frameNo": frame}) == {"frame": frame}
        assert len(hub._reads) <= 20
    await hub.aclose()

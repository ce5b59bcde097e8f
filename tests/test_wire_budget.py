"""What the server sends the browser per delta must not grow with the tree (not timing-based).

Through the real path: a :class:`~dashboard.hub.GatewayHub` fed by a scripted subscription,
the real :class:`~dashboard.store.RunStore` (with its batching), and a real
:class:`~dashboard.views.tree.NodeTree` rendered into a Bokeh document, whose component's
outgoing messages are captured. The same deltas (one task-state change; a node added; a node
removed) are pushed on a 100-node and a 10,000-node tree: the messages they cause must be
patches of the same size (within a few bytes for longer ids), never a reset; one store tick
must produce exactly one message however many deltas it batched; the header's HTML (which is
re-rendered per tick) must not grow with the tree either.

The performance figures themselves are in ``docs/performance.md`` (``tests/benchmarks/``).
"""

from __future__ import annotations

import asyncio
from typing import Any

from bokeh.document import Document

from dashboard.store import RunStore
from dashboard.treerows import decode
from dashboard.views.header import RunHeader
from dashboard.views.tree import NodeTree

from .test_hub import FakeFeeds, FakeRpc, delta_event, make_hub, online, until

RUN = "budget-run"


def wide_root(sequences: int) -> dict[str, Any]:
    """The ``wide`` workflow's shape: workflow > sequence > parallel > N x (sequence > a, b), join."""
    next_id = 10

    def task(name: str) -> dict[str, Any]:
        nonlocal next_id
        next_id += 1
        return {"id": next_id, "type": "task", "name": "task", "props": {"id": name}, "depth": 0, "children": [],
                "task": {"nodeId": name, "kind": "compute", "iteration": 0, "state": "pending", "attempt": 0}}

    def group(kind: str, children: list[dict[str, Any]]) -> dict[str, Any]:
        nonlocal next_id
        next_id += 1
        return {"id": next_id, "type": kind, "name": kind, "props": {}, "depth": 0, "children": children}

    lanes = [group("sequence", [task(f"a-{i}"), task(f"b-{i}")]) for i in range(sequences)]
    body = group("sequence", [group("parallel", lanes), task("join")])
    return {"id": 1, "type": "workflow", "name": "wide", "props": {"name": "wide"}, "depth": 0, "children": [body]}


def snapshot(root: dict[str, Any]) -> dict[str, Any]:
    return {"version": 1, "kind": "snapshot",
            "snapshot": {"version": 1, "runId": RUN, "frameNo": 0, "seq": 0, "root": root}}


def find_task(root: dict[str, Any], name: str) -> dict[str, Any]:
    stack = [root]
    while stack:
        n = stack.pop()
        if (n.get("task") or {}).get("nodeId") == name:
            return n
        stack.extend(n["children"])
    raise KeyError(name)


def find_parallel(root: dict[str, Any]) -> dict[str, Any]:
    stack = [root]
    while stack:
        n = stack.pop()
        if n["type"] == "parallel":
            return n
        stack.extend(n["children"])
    raise KeyError("parallel")


class Session:
    """One served session's worth of the real path, with what the tree component sent."""

    def __init__(self, sequences: int) -> None:
        self.root = wide_root(sequences)
        self.feeds = FakeFeeds()
        self.hub = make_hub(self.feeds, FakeRpc({"getRun": {"runId": RUN, "status": "running"}, "listScores": []}))
        self.store = RunStore(hub=self.hub, run_id=RUN, batch_interval=0.0)
        self.view = NodeTree(store=self.store)
        self.header = RunHeader(store=self.store)
        self.sent: list[Any] = []
        self.view.tree._send_msg = self.sent.append  # type: ignore[method-assign]
        self.doc = Document()
        self.view.__panel__().get_root(self.doc)
        self.ticks = 0
        self.store.param.watch(self._tick, "tree_version")
        self.seq = 0

    def applied(self, seq: int) -> bool:
        """Whether the store has ticked with the change that took the tree to ``seq``."""
        changes = self.store.last_changes
        return bool(changes) and changes[-1].seq == seq and changes[-1].kind in ("snapshot", "delta")

    def _tick(self, _event: Any) -> None:
        self.ticks += 1

    async def start(self) -> None:
        await until(lambda: RUN in self.feeds.queues, what="the subscription")
        self.feeds.push(RUN, online(), snapshot(self.root))
        # The hub's tree (shared) moves first; wait for the store's own tick of the snapshot.
        await until(lambda: self.ticks >= 1 and self.applied(0) and len(self.store.tree) > 1, what="the snapshot")
        self.view.tree._handle_msg({"type": "ready", "seq": 0, "run": None})
        assert [decode(m)["type"] for m in self.sent if isinstance(m, str)][-1] == "reset"
        self.sent.clear()
        self.ticks = 0
        self.resets_at_start = self.view.tree.feed.stats.resets

    async def push(self, *ops_per_delta: list[dict[str, Any]]) -> list[str]:
        """Push deltas as one burst; wait until the store applied them; return what was sent."""
        for ops in ops_per_delta:
            self.feeds.push(RUN, delta_event(self.seq, ops))
            self.seq += 1
        target = self.seq
        await until(lambda: self.applied(target), what=f"the store's tick of seq {target}")
        out = [m for m in self.sent if isinstance(m, str)]
        self.sent.clear()
        return out

    def update_task(self, name: str, state: str) -> dict[str, Any]:
        node = find_task(self.root, name)
        return {"op": "updateTask", "id": node["id"],
                "task": {**node["task"], "state": state, "attempt": 1}}

    async def close(self) -> None:
        self.store.close()
        await self.hub.aclose()


async def per_delta_costs(sequences: int) -> dict[str, Any]:
    session = Session(sequences)
    await session.start()
    out: dict[str, Any] = {"nodes": len(session.store.tree)}
    # One task-state change per delta, one delta per tick.
    sizes = []
    for state in ("in-progress", "finished"):
        for name in ("a-0", "b-0", f"a-{sequences - 1}", f"b-{sequences - 1}"):
            before = session.ticks
            messages = await session.push([session.update_task(name, state)])
            assert session.ticks == before + 1
            assert len(messages) == 1, f"{len(messages)} messages for one tick"
            message = decode(messages[0])
            assert message["type"] == "patch"
            assert len(message["upsert"]) == 1 and not message["add"] and not message["remove"]
            sizes.append(len(messages[0].encode("utf-8")))
    out["update_bytes"] = max(sizes)
    # A node added at the end of the parallel, then removed.
    parallel = find_parallel(session.root)
    new = {"id": 10_000_000, "type": "task", "name": "task", "props": {"id": "late"}, "depth": 0, "children": [],
           "task": {"nodeId": "late", "kind": "compute", "iteration": 0, "state": "pending", "attempt": 0}}
    (added,) = await session.push([{"op": "addNode", "parentId": parallel["id"], "index": len(parallel["children"]), "node": new}])
    (removed,) = await session.push([{"op": "removeNode", "id": new["id"]}])
    assert decode(added)["type"] == decode(removed)["type"] == "patch"
    out["add_bytes"] = len(added.encode("utf-8"))
    out["remove_bytes"] = len(removed.encode("utf-8"))
    # A burst of 50 deltas: however the store batches them, one message per tick.
    before = session.ticks
    burst = await session.push(*[[session.update_task(f"a-{i % sequences}", "finished")] for i in range(50)])
    out["burst_ticks"] = session.ticks - before
    out["burst_messages"] = len(burst)
    out["burst_bytes"] = sum(len(m.encode("utf-8")) for m in burst)
    out["resets"] = session.view.tree.feed.stats.resets - session.resets_at_start
    session.header._update()  # its redraws are throttled: render the current state now
    out["header_bytes"] = len(session.header._pane.object.encode("utf-8"))
    await session.close()
    return out


async def test_per_delta_messages_do_not_grow_with_the_tree() -> None:
    small = await per_delta_costs(33)  # 103 nodes
    large = await per_delta_costs(3333)  # 10,003 nodes
    assert small["nodes"] == 103 and large["nodes"] == 10_003
    assert small["resets"] == large["resets"] == 0, "a delta caused a reset"
    for key in ("update_bytes", "add_bytes", "remove_bytes", "header_bytes"):
        # Longer ids and counts cost a few digits; anything proportional to the tree is 100x.
        assert large[key] <= small[key] + 24, f"{key}: {small[key]} B at 103 nodes, {large[key]} B at 10,003"
    assert large["update_bytes"] < 300
    for costs in (small, large):
        assert costs["burst_messages"] == costs["burst_ticks"], costs
        assert 1 <= costs["burst_ticks"] <= 50
        # A batched tick sends the changed rows, not the tree: 50 one-row deltas cost at most
        # 50 rows (they touch fewer distinct rows here), far below a reset.
        assert costs["burst_bytes"] <= 50 * 120, costs


async def test_one_store_tick_is_one_message_for_a_batched_burst() -> None:
    session = Session(100)
    await session.start()
    session.store.batch_interval = 3600.0  # nothing flushes by itself: the test decides when
    session.store._last_flush = asyncio.get_running_loop().time()  # the last flush was just now
    for i in range(40):
        session.feeds.push(RUN, delta_event(i, [session.update_task(f"a-{i}", "in-progress")]))
    await until(lambda: len(session.store._pending_changes) == 40, what="40 buffered deltas")
    assert session.sent == [] and session.ticks == 0
    session.store.flush()
    assert session.ticks == 1
    (message,) = (decode(m) for m in session.sent if isinstance(m, str))
    assert message["type"] == "patch" and len(message["upsert"]) == 40
    await session.close()

"""A scripted, in-process Gateway for fault injection (a hostile peer on demand).

It speaks the real protocol (challenge, ``connect``, ``streamDevTools``, ``getRun``,
``getDevToolsSnapshot``) over a real websockets server on a free loopback port, and holds
a *truth*: a DevToolsTree the run really has. Each connection follows a :class:`Plan`:
honest by default, or with faults injected after the snapshot (extra frames, raw text, a
cut in the middle of a frame, a close code). Tests then check the client ends on the
truth, however rough the way there.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import struct
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from websockets.asyncio.server import ServerConnection, serve

from inspector.tree import DevToolsTree

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["Plan", "ScriptedGateway", "task_node", "wire_tree"]


def task_node(node_id: int, name: str, state: str = "pending") -> dict[str, Any]:
    return {
        "id": node_id, "type": "task", "name": "task", "props": {"id": name}, "depth": 2, "children": [],
        "task": {"nodeId": name, "kind": "compute", "iteration": 0, "state": state, "attempt": 0},
    }


def wire_tree(n_tasks: int) -> dict[str, Any]:
    return {
        "id": 1, "type": "workflow", "name": "scripted", "props": {}, "depth": 0,
        "children": [{"id": 2, "type": "parallel", "name": "parallel", "props": {}, "depth": 1,
                      "children": [task_node(100 + i, f"t{i}") for i in range(n_tasks)]}],
    }


@dataclass
class Plan:
    """What one connection does after sending the snapshot.

    ``before_response`` sends the snapshot before answering ``streamDevTools`` (the real
    Gateway does that sometimes). ``frames`` are sent after the snapshot: dicts are sent
    as JSON, strings raw. ``then`` is ``"stay"`` (keep streaming the truth), ``"close"``
    (close with ``close_code``), ``"abort"`` (drop TCP) or ``"cut"`` (half a frame, then
    drop). ``reject`` answers ``connect`` with UNAUTHORIZED and closes 1008.
    """

    frames: list[Any] = field(default_factory=list)
    then: str = "stay"
    close_code: int = 1011
    reject: bool = False
    before_response: bool = False
    hello_heartbeat_ms: int = 15_000
    #: Answer ``streamDevTools`` but never send the snapshot (a broken Gateway).
    no_snapshot: bool = False
    #: Seconds the peer keeps the socket up (sending ``tick`` s) before ``then``.
    linger: float = 0.0
    #: The ``protocol`` its hello names (a Gateway of another protocol version).
    hello_protocol: int = 1


class ScriptedGateway:
    """Serve one run whose truth the test drives with :meth:`advance`."""

    def __init__(self, run_id: str = "run-1", token: str = "tok", n_tasks: int = 6) -> None:
        self.run_id = run_id
        self.token = token
        self.truth = DevToolsTree({"version": 1, "kind": "snapshot", "snapshot": {
            "version": 1, "runId": run_id, "frameNo": 0, "seq": 0, "root": wire_tree(n_tasks)}})
        self.history: list[dict[str, Any]] = []
        self.status = "running"
        self.plans: list[Plan] = []
        self.connections = 0
        self.stream_requests: list[dict[str, Any]] = []
        self.port = 0
        self._server: Any = None
        self._live: set[ServerConnection] = set()
        self._changed = asyncio.Condition()
        self._stream_ids = itertools.count(1)
        self.on_connect: Callable[[int], None] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def __aenter__(self) -> ScriptedGateway:
        self._server = await serve(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._server.close()
        await self._server.wait_closed()

    # ------------------------------------------------------------------ truth

    def delta(self, ops: list[dict[str, Any]]) -> dict[str, Any]:
        """A delta event on top of the truth (not applied)."""
        seq = self.truth.seq or 0
        return {"version": 1, "kind": "delta", "delta": {"version": 1, "baseSeq": seq, "seq": seq + 1, "ops": ops}}

    async def advance(self, ops: list[dict[str, Any]]) -> None:
        """Apply ops to the truth and stream them to every honest subscriber."""
        event = self.delta(ops)
        self.truth.apply(event)
        self.history.append(event)
        async with self._changed:
            self._changed.notify_all()

    def set_state(self, node_id: int, state: str) -> dict[str, Any]:
        task = dict(self.truth[node_id].task or {})
        task["state"] = state
        return {"op": "updateTask", "id": node_id, "task": task}

    async def finish(self, *, announce: bool = True) -> None:
        self.status = "finished"
        if announce:
            await self.broadcast({"type": "event", "event": "run.completed", "payload": {"runId": self.run_id, "status": "finished"}})

    async def broadcast(self, frame: dict[str, Any]) -> None:
        for ws in list(self._live):
            with contextlib.suppress(Exception):
                await ws.send(json.dumps(frame))

    def snapshot_event(self) -> dict[str, Any]:
        return {"version": 1, "kind": "snapshot", "snapshot": self.truth.snapshot()}

    # ------------------------------------------------------------------ protocol

    async def _handle(self, ws: ServerConnection) -> None:
        index = self.connections
        self.connections += 1
        if self.on_connect:
            self.on_connect(index)
        plan = self.plans[index] if index < len(self.plans) else Plan()
        self._live.add(ws)
        try:
            await ws.send(json.dumps({"type": "event", "event": "connect.challenge", "payload": {"nonce": "n", "ts": 0}, "seq": 1}))
            req = json.loads(await ws.recv())
            token = (req.get("params", {}).get("auth") or {}).get("token")
            if plan.reject or token != self.token:
                await ws.send(json.dumps({"type": "res", "id": req["id"], "ok": False,
                                          "error": {"version": "v1", "code": "UNAUTHORIZED", "message": "Invalid token"}}))
                await ws.close(1008, "authentication failed")
                return
            await ws.send(json.dumps({"type": "res", "id": req["id"], "ok": True, "payload": {
                "protocol": plan.hello_protocol, "features": ["streaming", "runs"],
                "policy": {"heartbeatMs": plan.hello_heartbeat_ms}, "auth": {"scopes": ["*"]}}}))
            streamer: asyncio.Task[None] | None = None
            async for text in ws:
                req = json.loads(text)
                method, rid, params = req["method"], req["id"], req.get("params", {})
                if method == "streamDevTools":
                    self.stream_requests.append(params)
                    streamer = asyncio.create_task(self._stream(ws, rid, plan))
                elif method == "getRun":
                    await self._answer(ws, rid, {"runId": self.run_id, "status": self.status, "workflowName": "scripted"})
                elif method == "getDevToolsSnapshot":
                    await self._answer(ws, rid, self.truth.snapshot())
                else:
                    await ws.send(json.dumps({"type": "res", "id": rid, "ok": False,
                                              "error": {"code": "METHOD_NOT_FOUND", "message": method}}))
            if streamer:
                streamer.cancel()
        except Exception:
            pass
        finally:
            self._live.discard(ws)

    async def _answer(self, ws: ServerConnection, rid: str, payload: Any) -> None:
        await ws.send(json.dumps({"type": "res", "id": rid, "ok": True, "payload": payload}))

    def _devtools(self, stream_id: str, event: dict[str, Any]) -> str:
        return json.dumps({"type": "event", "event": "devtools.event",
                           "payload": {"streamId": stream_id, "runId": self.run_id, "event": event}})

    async def _stream(self, ws: ServerConnection, rid: str, plan: Plan) -> None:
        stream_id = f"s{next(self._stream_ids)}"
        response = json.dumps({"type": "res", "id": rid, "ok": True,
                               "payload": {"streamId": stream_id, "runId": self.run_id}})
        if not plan.before_response:
            await ws.send(response)
        sent_seq = self.truth.seq or 0
        if not plan.no_snapshot:
            await ws.send(self._devtools(stream_id, self.snapshot_event()))
        if plan.before_response:
            await ws.send(response)
        for frame in plan.frames:
            if isinstance(frame, dict) and frame.get("kind") in ("delta", "snapshot"):
                await ws.send(self._devtools(stream_id, frame))
            elif isinstance(frame, dict):
                await ws.send(json.dumps(frame).replace("$STREAM", stream_id))
            else:
                await ws.send(frame)
        loop = asyncio.get_running_loop()
        until = loop.time() + plan.linger
        while loop.time() < until:  # the peer's behaviour, paced: not a test's synchronisation
            await ws.send(json.dumps({"type": "event", "event": "tick", "payload": {"ts": 0}}))
            await asyncio.sleep(0.02)
        if plan.then == "close":
            await ws.close(plan.close_code, "scripted close")
            return
        if plan.then == "abort":
            ws.transport.abort()
            return
        if plan.then == "cut":
            body = self._devtools(stream_id, self.snapshot_event()).encode()
            header = b"\x81\x7e" + struct.pack("!H", len(body)) if len(body) < 65536 else b"\x81\x7f" + struct.pack("!Q", len(body))
            ws.transport.write(header + body[: len(body) // 2])
            ws.transport.abort()
            return
        while True:
            async with self._changed:
                await self._changed.wait_for(lambda since=sent_seq: (self.truth.seq or 0) > since)
            for event in self.history:
                if event["delta"]["baseSeq"] >= sent_seq:
                    await ws.send(self._devtools(stream_id, event))
            sent_seq = self.truth.seq or 0

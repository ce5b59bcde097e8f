"""Shared client helpers for the replay Gateway tests: a raw WebSocket and raw HTTP client.

Waiting is done with deadlines (``asyncio.wait_for`` around a receive or a poll), never with a
sleep standing in for "long enough". ``held_rich_gateway`` backs the ``rich`` fixture of both
replay test modules.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect

from inspector.transcript import RecordedRun, load_runs
from tests.faulty_replay import FaultyReplayGateway
from tests.recordings import recording

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable

    from inspector.replay import ReplayGateway
    from inspector.tree import DevToolsTree

TOKEN = "op-token"
READ_TOKEN = "read-token"
SPEED = 20.0
DEADLINE = 10.0

_ids = itertools.count(1)


def runs_of(*names: str) -> list[RecordedRun]:
    return load_runs(*(recording(name) for name in names))


RICH = runs_of("rich-run.jsonl")[0]


def make_gateway(runs: list[RecordedRun], **kwargs: Any) -> FaultyReplayGateway:
    options: dict[str, Any] = {"token": TOKEN, "read_token": READ_TOKEN, "speed": SPEED, "heartbeat_ms": 200}
    options.update(kwargs)
    return FaultyReplayGateway(runs, **options)


@contextlib.asynccontextmanager
async def held_rich_gateway() -> AsyncIterator[FaultyReplayGateway]:
    """The rich run, held at its very start until the test resumes it (the ``rich`` fixtures)."""
    gateway = make_gateway([RICH])
    gateway.pause()
    await gateway.start()
    try:
        yield gateway
    finally:
        await gateway.stop()


# --------------------------------------------------------------------------- client helpers


async def recv(ws: ClientConnection, timeout: float = DEADLINE) -> dict[str, Any]:
    message = await asyncio.wait_for(ws.recv(), timeout)
    frame = json.loads(message)
    assert isinstance(frame, dict)
    return frame


async def recv_until(
    ws: ClientConnection, match: Callable[[dict[str, Any]], bool], seen: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """Frames until one matches (the others go to ``seen``), within the deadline."""

    async def loop() -> dict[str, Any]:
        while True:
            frame = await recv(ws)
            if match(frame):
                return frame
            if seen is not None:
                seen.append(frame)

    return await asyncio.wait_for(loop(), DEADLINE)


async def request(ws: ClientConnection, method: str, params: dict[str, Any] | None = None,
                  seen: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    rid = f"req-{next(_ids)}"
    await ws.send(json.dumps({"type": "req", "id": rid, "method": method, "params": params or {}}))
    return await recv_until(ws, lambda f: f.get("type") == "res" and f.get("id") == rid, seen)


async def open_session(
    gateway: ReplayGateway, token: str | None = TOKEN, **connect_params: Any
) -> tuple[ClientConnection, dict[str, Any]]:
    # max_queue=None: a test that ignores frames must still see the close frame promptly.
    ws = await connect(gateway.ws_url, max_size=None, max_queue=None)
    challenge = await recv(ws)
    assert challenge["event"] == "connect.challenge"
    params: dict[str, Any] = {"minProtocol": 1, "maxProtocol": 1, "client": {"id": "test", "version": "0"}}
    if token is not None:
        params["auth"] = {"token": token}
    params.update(connect_params)
    hello = await request(ws, "connect", params)
    return ws, hello


async def http_rpc(gateway: ReplayGateway, method: str, params: dict[str, Any] | None = None,
                   token: str | None = TOKEN) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    # Plain HTTP on loopback: skip loading CA certificates (0.2 s per client).
    async with httpx.AsyncClient(base_url=gateway.url, timeout=DEADLINE, verify=False, trust_env=False) as client:
        return await client.post(f"/v1/rpc/{method}", json=params or {}, headers=headers)


async def eventually(check: Callable[[], Awaitable[bool]] | Callable[[], bool], what: str) -> None:
    """Poll ``check`` until true; fail after the deadline."""

    async def loop() -> None:
        while True:
            result = check()
            if not isinstance(result, bool):
                result = await result
            if result:
                return
            await asyncio.sleep(0.01)

    try:
        await asyncio.wait_for(loop(), DEADLINE)
    except TimeoutError:
        pytest.fail(f"timed out waiting for {what}")


def event_of(frame: dict[str, Any]) -> dict[str, Any]:
    """The DevTools event of a frame that must be a ``devtools.event``."""
    event = devtools_event(frame)
    assert event is not None, frame
    return event


def devtools_event(frame: dict[str, Any]) -> dict[str, Any] | None:
    if frame.get("type") == "event" and frame.get("event") == "devtools.event":
        event = frame["payload"]["event"]
        assert isinstance(event, dict)
        return event
    return None


async def follow_stream(ws: ClientConnection, tree: DevToolsTree, until: Callable[[DevToolsTree], bool],
                        seen: list[dict[str, Any]] | None = None) -> None:
    """Apply every devtools.event to ``tree`` until ``until(tree)``; every frame goes to ``seen``."""

    async def loop() -> None:
        while not until(tree):
            frame = await recv(ws)
            if seen is not None:
                seen.append(frame)
            event = devtools_event(frame)
            if event is not None:
                tree.apply(event)

    await asyncio.wait_for(loop(), DEADLINE)


async def finished(gateway: ReplayGateway, run_id: str) -> None:
    await eventually(lambda: gateway.run_done(run_id), f"{run_id} to finish")


def code_of(frame: dict[str, Any]) -> str:
    assert frame["ok"] is False, frame
    return str(frame["error"]["code"])

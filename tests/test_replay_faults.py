"""The replay Gateway's fault-injection hooks, seen from a raw WebSocket and raw HTTP client.

Each hook (dropped sockets, raw frames, injected DevTools events and errors, pause/resume, token
rotation, failing RPCs) is checked from the client side, against an in-process
:class:`FaultyReplayGateway` held at the start of the rich run (the ``rich`` fixture).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import pytest
from websockets.exceptions import ConnectionClosed

from inspector.errors import InvalidDelta, SeqGap
from inspector.tree import DevToolsTree
from tests.replay_support import (
    DEADLINE,
    READ_TOKEN,
    RICH,
    TOKEN,
    code_of,
    devtools_event,
    event_of,
    eventually,
    held_rich_gateway,
    http_rpc,
    open_session,
    recv_until,
    request,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from websockets.asyncio.client import ClientConnection

    from inspector.replay import ReplayGateway
    from tests.faulty_replay import FaultyReplayGateway


@pytest.fixture
async def rich() -> AsyncIterator[FaultyReplayGateway]:
    """The rich run, held at its very start until the test resumes it."""
    async with held_rich_gateway() as gateway:
        yield gateway


# --------------------------------------------------------------------------- fault injection


async def stream_session(gateway: ReplayGateway) -> tuple[ClientConnection, str, DevToolsTree]:
    ws, _ = await open_session(gateway)
    reply = await request(ws, "streamDevTools", {"runId": RICH.run_id})
    tree = DevToolsTree()
    first = devtools_event(await recv_until(ws, lambda f: devtools_event(f) is not None))
    assert first is not None
    tree.apply(first)
    return ws, str(reply["payload"]["streamId"]), tree


async def test_drop_connections_cuts_sockets_without_a_close_frame(rich: FaultyReplayGateway) -> None:
    ws1, _ = await open_session(rich)
    ws2, _ = await open_session(rich)
    assert rich.active_connections == 2 and rich.connections_total == 2
    assert rich.drop_connections() == 2
    for ws in (ws1, ws2):
        with pytest.raises(ConnectionClosed) as closed:
            await recv_until(ws, lambda f: False)
        assert closed.value.rcvd is None
    assert rich.active_connections == 0
    ws3, hello = await open_session(rich)
    async with ws3:
        assert hello["ok"] and rich.connections_total == 3


async def test_send_raw_reaches_devtools_subscribers_verbatim(rich: FaultyReplayGateway) -> None:
    bystander, _ = await open_session(rich)
    ws, _, _ = await stream_session(rich)
    async with ws, bystander:
        assert rich.send_raw("{not json") == 1
        message = await asyncio.wait_for(ws.recv(), DEADLINE)
        assert message == "{not json"


async def test_injected_devtools_events_reach_the_stream_only(rich: FaultyReplayGateway) -> None:
    ws, stream_id, tree = await stream_session(rich)
    async with ws:
        base = tree.seq or 0
        gap = {"version": 1, "kind": "delta", "delta": {"version": 1, "baseSeq": base + 5, "seq": base + 6, "ops": []}}
        bogus = {"version": 1, "kind": "delta",
                 "delta": {"version": 1, "baseSeq": base, "seq": base + 1, "ops": [{"op": "explode", "id": 1}]}}
        assert rich.inject_devtools_event(RICH.run_id, gap) == 1
        assert rich.inject_devtools_event(RICH.run_id, bogus) == 1
        got = [await recv_until(ws, lambda f: devtools_event(f) is not None) for _ in range(2)]
        assert all(f["payload"]["streamId"] == stream_id for f in got)
        with pytest.raises(SeqGap):
            tree.apply(event_of(got[0]))
        with pytest.raises(InvalidDelta):
            tree.apply(event_of(got[1]))
        assert rich.run_seq(RICH.run_id) == base  # the replay's own tree is untouched


async def test_devtools_error_ends_the_stream_but_not_the_socket(rich: FaultyReplayGateway) -> None:
    ws, stream_id, _ = await stream_session(rich)
    async with ws:
        assert rich.devtools_error(RICH.run_id) == 1
        error = await recv_until(ws, lambda f: f.get("event") == "devtools.error")
        assert error["payload"]["streamId"] == stream_id and error["payload"]["runId"] == RICH.run_id
        assert error["payload"]["error"]["code"] == "BackpressureDisconnect"
        rich.resume()
        seen: list[dict[str, Any]] = []
        await recv_until(ws, lambda f: f.get("event") == "run.completed", seen)
        assert not [f for f in seen if devtools_event(f) is not None]
        still = await request(ws, "getRun", {"runId": RICH.run_id})
        assert still["ok"]
        assert rich.streams_total == 1
        again = await request(ws, "streamDevTools", {"runId": RICH.run_id})
        assert again["ok"] and rich.streams_total == 2


async def test_pause_holds_the_run_and_resume_releases_it(rich: FaultyReplayGateway) -> None:
    rich.resume()
    await eventually(lambda: rich.run_seq(RICH.run_id) >= 2, "frame 2")
    rich.pause()
    held = rich.run_seq(RICH.run_id)
    # The assertion is about time passing with nothing released: 0.3 s is 6 s of recording.
    await asyncio.sleep(0.3)
    assert rich.run_seq(RICH.run_id) == held and rich.run_status(RICH.run_id) == "running"
    rich.resume()
    await eventually(lambda: rich.run_seq(RICH.run_id) > held, "the run to move on")


async def test_set_token_revokes_sessions_and_old_credentials(rich: FaultyReplayGateway) -> None:
    ws, _ = await open_session(rich)
    viewer, _ = await open_session(rich, token=READ_TOKEN)
    async with viewer:
        assert rich.set_token("new-token") == 1
        with pytest.raises(ConnectionClosed) as closed:
            await recv_until(ws, lambda f: False)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
        old, hello = await open_session(rich, token=TOKEN)
        assert code_of(hello) == "UNAUTHORIZED"
        await old.close()
        fresh, hello = await open_session(rich, token="new-token")
        async with fresh:
            assert hello["ok"]
        assert (await http_rpc(rich, "getRun", {"runId": RICH.run_id}, TOKEN)).status_code == 401
        assert (await http_rpc(rich, "getRun", {"runId": RICH.run_id}, "new-token")).status_code == 200
        assert (await request(viewer, "getRun", {"runId": RICH.run_id}))["ok"]


async def test_rpc_failures_answer_the_injected_statuses_first(rich: FaultyReplayGateway) -> None:
    rich.rpc_failures["getRun"] = [429, 502, 503]
    limited = await http_rpc(rich, "getRun", {"runId": RICH.run_id})
    assert limited.status_code == 429 and limited.headers["Retry-After"] == "1"
    assert limited.json()["error"]["code"] == "RateLimited"
    proxy = await http_rpc(rich, "getRun", {"runId": RICH.run_id})
    assert proxy.status_code == 502 and proxy.headers["Content-Type"].startswith("text/plain")
    assert (await http_rpc(rich, "getRun", {"runId": RICH.run_id})).status_code == 503
    assert (await http_rpc(rich, "getRun", {"runId": RICH.run_id})).status_code == 200
    assert (await http_rpc(rich, "listRuns")).status_code == 200

"""Hardening found in review (issue 12, item 9), one test at least for each:

- the replay gateway: loopback by default, no entry without a token unless ``no_auth``, the
  browser ``Origin`` checked, tokens compared in constant time, a rotated token refused with
  the Gateway's ``refresh`` hint;
- a Gateway URL's credentials never in a ``repr``, an error message or a log line;
- HTTP answers size-capped (:class:`~inspector.errors.ResponseTooLarge`, nothing decoded);
- a token provider read again after ``UNAUTHORIZED`` (one more try with the new token);
- a run the Gateway does not know stops its subscription ("run X not found on the Gateway");
- the hub's caps on upstream subscriptions (per process, per owner);
- untrusted text escaped by ``html.escape`` through Panel's public ``sanitize_hook``.
"""

from __future__ import annotations

import html
import inspect
import json
import logging
import subprocess
import sys
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from dashboard.hub import GatewayHub
from inspector.client import GatewayClient, redact_url
from inspector.errors import GatewayRpcError, GatewayUnavailable, ResponseTooLarge
from inspector.replay import server as replay_server
from inspector.status import ConnectionStatus
from inspector.stream import StatusChanged
from tests.faulty_replay import FaultyReplayGateway
from tests.replay_support import RICH, TOKEN, make_gateway, open_session
from tests.test_hub import FakeFeeds, make_hub, until

if TYPE_CHECKING:
    from pathlib import Path

    from inspector.stream import SubscriptionItem
    from tests.gateway.server import GatewayServer

# ------------------------------------------------------------------ the replay gateway


async def test_replay_gateway_without_a_token_lets_nobody_in_unless_no_auth() -> None:
    closed = FaultyReplayGateway([RICH], no_auth=False)
    assert closed.host == "127.0.0.1", "loopback by default"
    async with closed:
        ws, hello = await open_session(closed, token=None)
        async with ws:
            assert not hello["ok"] and hello["error"]["code"] == "UNAUTHORIZED"
        ws, hello = await open_session(closed, token="a guess")
        async with ws:
            assert not hello["ok"] and hello["error"]["code"] == "UNAUTHORIZED"
        async with httpx.AsyncClient() as http:
            answer = await http.post(f"{closed.url}/v1/rpc/listRuns", json={}, timeout=5)
        assert answer.status_code == 401
    async with FaultyReplayGateway([RICH], no_auth=True) as open_gw:
        ws, hello = await open_session(open_gw, token=None)
        async with ws:
            assert hello["ok"] and hello["payload"]["auth"]["role"] == "admin"


async def test_replay_gateway_tokens_are_compared_whole_and_in_constant_time() -> None:
    source = inspect.getsource(replay_server.ReplayGateway._authenticate)
    assert "_same(" in source and "==" not in source.split("no_auth")[1].split("rotate")[0]
    assert "hmac.compare_digest" in inspect.getsource(replay_server._same)
    gateway = make_gateway([RICH])
    async with gateway:
        for guess in (TOKEN[:-1], TOKEN + "x", TOKEN.upper(), "", TOKEN[:-1] + "\u00e9"):
            grant = gateway._authenticate(guess)
            assert isinstance(grant, GatewayRpcError) and grant.unauthorized, guess
        assert not isinstance(gateway._authenticate(TOKEN), GatewayRpcError)


async def test_replay_gateway_checks_the_browser_origin() -> None:
    gateway = make_gateway([RICH], allowed_origins=["http://dash.example:5006"])
    async with gateway:
        with pytest.raises(InvalidStatus) as refused:
            await connect(gateway.ws_url, origin="http://evil.example")  # type: ignore[arg-type]
        assert refused.value.response.status_code == 403
        for origin in (f"http://127.0.0.1:{gateway.port}", "http://dash.example:5006"):
            async with connect(gateway.ws_url, origin=origin) as ws:  # type: ignore[arg-type]
                assert json.loads(await ws.recv())["event"] == "connect.challenge"
        async with connect(gateway.ws_url) as ws:  # no Origin: not a browser
            assert json.loads(await ws.recv())["event"] == "connect.challenge"


def test_replay_command_refuses_to_start_without_a_token() -> None:
    import os

    from tests.recordings import recording

    env = {k: v for k, v in os.environ.items() if k not in ("SMITHERS_TOKEN", "SMITHERS_TOKEN_FILE")}
    out = subprocess.run([sys.executable, "-m", "inspector.cli", "replay", str(recording("rich-run.jsonl")),
                          "--port", "0"], capture_output=True, text=True, timeout=60, env=env)
    assert out.returncode == 2 and "--no-auth" in out.stderr


async def test_a_rotated_token_is_refused_with_the_refresh_hint_and_the_client_reloads(tmp_path: Path) -> None:
    gateway = make_gateway([RICH])
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    async with gateway:
        client = GatewayClient(gateway.url, TOKEN, token_provider=lambda: token_file.read_text().strip())
        conn = await client.open()
        await conn.close()
        assert gateway.rotate_token("new-token") == 0  # that socket is already closed
        with pytest.raises(GatewayRpcError) as rejected:
            await client.open()
        assert rejected.value.unauthorized and "to refresh the token: smithers token issue" in rejected.value.message
        with pytest.raises(GatewayRpcError, match="smithers token issue"):
            await client.rpc("listRuns", {})
        token_file.write_text("new-token\n")
        conn = await client.open()  # the file is read again: one more try, accepted
        await conn.close()
        assert client.token_reloads == 1
        gateway.rotate_token("newer-token")
        token_file.write_text("newer-token")
        assert isinstance(await client.rpc("listRuns", {}), list)
        assert client.token_reloads == 2
        await client.aclose()


# ------------------------------------------------------------------ credentials in URLs


async def test_url_credentials_are_never_shown_or_logged(caplog: pytest.LogCaptureFixture) -> None:
    url = "http://alice:hunter2secret@127.0.0.1:9"  # port 9: nothing listens
    assert redact_url(url) == "http://<redacted>@127.0.0.1:9"
    assert redact_url("http://h:1/x") == "http://h:1/x"
    client = GatewayClient(url, rpc_retries=1)
    caplog.set_level(logging.DEBUG)
    with pytest.raises(GatewayUnavailable) as http_error:
        await client.rpc("listRuns", {})
    with pytest.raises(GatewayUnavailable) as ws_error:
        await client.open(timeout=2)
    hub = GatewayHub(client)
    for text in (repr(client), repr(hub), str(http_error.value), str(ws_error.value), caplog.text):
        assert "hunter2secret" not in text and "alice" not in text, text
    await hub.aclose()


# ------------------------------------------------------------------ size cap


def _big(request: httpx.Request) -> httpx.Response:
    body = json.dumps({"type": "res", "id": "1", "ok": True, "payload": "x" * 5000}).encode()
    if request.url.path.endswith("streamed"):
        async def chunks() -> Any:
            for i in range(0, len(body), 100):
                yield body[i:i + 100]
        return httpx.Response(200, content=chunks())
    return httpx.Response(200, content=body)


async def test_http_answers_are_size_capped() -> None:
    client = GatewayClient("http://gw.test", "t", transport=httpx.MockTransport(_big), max_response_bytes=1000)
    with pytest.raises(ResponseTooLarge, match="larger than 1,000 bytes"):
        await client.rpc("getRun", {"runId": "r"})
    with pytest.raises(ResponseTooLarge):  # no Content-Length: counted while read
        await client.rpc("streamed", {})
    with pytest.raises(ResponseTooLarge):
        await client.list_run_events("r")
    roomy = GatewayClient("http://gw.test", "t", transport=httpx.MockTransport(_big))
    assert await roomy.rpc("getRun", {"runId": "r"}) == "x" * 5000
    await client.aclose()
    await roomy.aclose()


# ------------------------------------------------------------------ a run that does not exist


async def test_a_run_the_gateway_does_not_know_stops_with_a_message() -> None:
    gateway = make_gateway([RICH])
    async with gateway:
        hub = GatewayHub(GatewayClient(gateway.url, TOKEN), grace=0)
        seen: list[SubscriptionItem] = []
        handle = hub.attach("no-such-run", seen.append)

        def said_not_found() -> bool:
            return any(isinstance(i, StatusChanged) and "run no-such-run not found on the Gateway" in (i.state.error or "")
                       for i in seen)

        await until(said_not_found, 20, "the not-found message")
        feed = hub._feeds["no-such-run"]
        await until(lambda: feed.task is not None and feed.task.done(), 5, "the subscription to stop")
        last = [i for i in seen if isinstance(i, StatusChanged)][-1]
        assert last.state.status is ConnectionStatus.OFFLINE and last.state.retry_in is None
        assert hub.stats.runs_not_found == 1
        streams = gateway.streams_total
        late: list[SubscriptionItem] = []
        hub.attach("no-such-run", late.append).release()  # a late joiner is told at once
        assert any(isinstance(i, StatusChanged) and "not found" in (i.state.error or "") for i in late)
        handle.release()
        assert gateway.streams_total <= streams + 1
        await hub.aclose()


# ------------------------------------------------------------------ caps on upstreams


async def test_upstream_subscriptions_are_capped_per_process_and_per_owner() -> None:
    feeds = FakeFeeds()
    hub = make_hub(feeds, grace=0)
    hub.max_upstreams, hub.max_runs_per_owner = 3, 2
    visitor, other = object(), object()
    statuses: dict[str, list[SubscriptionItem]] = {}

    def listener(run: str) -> Any:
        return statuses.setdefault(run, []).append

    a = hub.attach("a", listener("a"), owner=visitor)
    b = hub.attach("b", listener("b"), owner=visitor)
    refused = hub.attach("c", listener("c"), owner=visitor)
    assert refused.released and "c" not in hub.runs
    assert "this session already watches 2 runs" in (statuses["c"][0].state.error or "")  # type: ignore[union-attr]
    shared = hub.attach("a", listener("a2"), owner=visitor)  # a run it already watches: fine
    c = hub.attach("c", listener("c2"), owner=other)
    full = hub.attach("d", listener("d"), owner=object())
    assert full.released and "the server already watches 3 runs" in (statuses["d"][0].state.error or "")  # type: ignore[union-attr]
    assert hub.stats.refusals == 2
    await until(lambda: set(feeds.started) == {"a", "b", "c"}, what="three upstreams")
    for handle in (a, b, shared, c):
        handle.release()
    await until(lambda: not hub.runs, what="idle upstreams released")
    again = hub.attach("d", listener("d2"), owner=visitor)
    assert not again.released
    again.release()
    await hub.aclose()


# ------------------------------------------------------------------ escaping without private Panel methods


def test_text_pane_escapes_through_public_panel_api() -> None:
    import re

    from dashboard.views.widgets import TextPane

    private = [name for name, value in vars(TextPane).items()
               if name.startswith("_") and not name.startswith(("__", "_param__")) and callable(value)]
    assert private == [], f"TextPane overrides Panel internals: {private}"
    pane = TextPane('<img src=x onerror="alert(1)"> & <b>bold</b>')
    # Panel's HTML model carries its HTML escaped once more; the browser sets the unescaped
    # string as innerHTML: that string must hold the text as entities, no tag.
    inner = html.unescape(pane.get_root().text)  # type: ignore[attr-defined]
    assert inner.startswith("<pre>") and "<img" not in inner and "&lt;img" in inner and "<b>" not in inner
    pane.object = "<script>alert(2)</script>"
    assert "<script>" not in html.unescape(pane.get_root().text)  # type: ignore[attr-defined]
    assert pane.object == "<script>alert(2)</script>", "the object stays the plain text"
    for path in ("dashboard/format.py", "dashboard/views/widgets.py", "dashboard/htmlpane.py"):
        source = open(path, encoding="utf-8").read()
        assert not re.search(r"\bpn\.[\w.]*\._\w+\(", source), f"{path} calls a private Panel function"



def test_served_dashboard_never_shows_or_logs_url_credentials(tmp_path: Path) -> None:
    """``serve`` with a credentialed Gateway URL: its banner, its page and its log (after a
    session failed to reach that Gateway) never carry the password."""
    from tests.deploy_support import Served, cli, free_port, poll

    port = free_port()
    served = Served(cli("serve", "--gateway", "http://alice:hunter2secret@127.0.0.1:9", "--port", str(port)),
                    tmp_path / "serve.log")
    try:
        base = f"http://127.0.0.1:{port}"
        served.wait_status(f"{base}/healthz")
        page = httpx.get(f"{base}/apps", params={"runId": "r1"}, timeout=30)
        assert page.status_code == 200 and "hunter2secret" not in page.text
        ready = httpx.get(f"{base}/readyz", timeout=30)
        assert "hunter2secret" not in ready.text
        poll(lambda: "<redacted>@127.0.0.1:9" in served.log(), 30, "the redacted URL in the banner")
    finally:
        served.stop()
    assert "hunter2secret" not in served.log(), served.log()[-3000:]


@pytest.mark.gateway
async def test_a_run_the_real_gateway_does_not_know_stops_with_a_message(gateway: GatewayServer) -> None:
    """The same against Smithers' Gateway: its refusal of the stream, then ``getRun``'s
    ``NOT_FOUND``, end the subscription."""
    from tests.gateway.server import ADMIN_TOKEN

    hub = GatewayHub(GatewayClient(gateway.url, ADMIN_TOKEN), grace=0)
    seen: list[SubscriptionItem] = []
    handle = hub.attach("no-such-run-4d1c", seen.append)
    await until(lambda: any(isinstance(i, StatusChanged) and "not found on the Gateway" in (i.state.error or "")
                            for i in seen), 30, "the not-found message")
    feed = hub._feeds["no-such-run-4d1c"]
    await until(lambda: feed.task is not None and feed.task.done(), 5, "the subscription to stop")
    handle.release()
    await hub.aclose()

"""Hardening found in review (issue 12, item 9), one test at least for each:

- the replay gateway: loopback by default, no entry without a token unless ``no_auth``, the
  browser ``Origin`` checked, tokens compared in constant time, a rotated token refused with
  the Gateway's ``refresh`` hint;
- a Gateway URL's credentials never in a ``repr``, an error message or a log line;
- HTTP answers size-capped (:class:`~inspector.errors.ResponseTooLarge`, nothing decoded);
- a token provider read again after ``UNAUTHORIZED`` (one more try with the new token);
- a run the Gateway does not know stops its subscription ("run X not found on the Gateway");
- the hub's caps on upstream subscriptions (per process, per visitor: unconfirmed runs);
- the replay's and the controls' scope tables equal the real Gateway's (read from its JavaScript);
- untrusted text escaped by ``html.escape`` through Panel's public ``sanitize_hook``.
"""

from __future__ import annotations

import html
import inspect
import json
import logging
import re
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

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
from tests.test_hub import FakeFeeds, make_hub, snapshot_event, task_node, until

if TYPE_CHECKING:
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
        hub.max_runs_per_owner = 1
        seen: list[SubscriptionItem] = []
        handle = hub.attach("no-such-run", seen.append, owner="address:203.0.113.7")

        def said_not_found() -> bool:
            return any(isinstance(i, StatusChanged) and "run no-such-run not found on the Gateway" in (i.state.error or "")
                       for i in seen)

        await until(said_not_found, 20, "the not-found message")
        feed = hub._feeds["no-such-run"]
        await until(lambda: feed.task is not None and feed.task.done(), 5, "the subscription to stop")
        last = [i for i in seen if isinstance(i, StatusChanged)][-1]
        assert last.state.status is ConnectionStatus.OFFLINE and last.state.retry_in is None
        assert hub.stats.runs_not_found == 1
        # Found missing, it holds no upstream: the visitor who mistyped it may open another page.
        assert hub.runs_of("address:203.0.113.7", unconfirmed=True) == []
        other = hub.attach("also-missing", [].append, owner="address:203.0.113.7")
        assert not other.released
        other.release()
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
    hub.max_upstreams, hub.max_runs_per_owner = 4, 2
    # Owners are compared by value: each tab of a visitor builds its own key string.
    visitor, other = "address:" + "203.0.113.7", "address:198.51.100.9"
    statuses: dict[str, list[SubscriptionItem]] = {}

    def listener(run: str) -> Any:
        return statuses.setdefault(run, []).append

    def error_of(run: str) -> str:
        return statuses[run][0].state.error or ""  # type: ignore[union-attr]

    a = hub.attach("a", listener("a"), owner=visitor)
    b = hub.attach("b", listener("b"), owner="address:203.0.113.7")
    assert hub.runs_of(visitor, unconfirmed=True) == ["a", "b"]
    refused = hub.attach("c", listener("c"), owner="address:203.0.113.7")
    assert refused.released and "c" not in hub.runs
    assert "you already wait on 2 runs the Gateway has not confirmed" in error_of("c")
    shared = hub.attach("a", listener("a2"), owner=visitor)  # a run it already watches: fine
    c = hub.attach("c", listener("c2"), owner=other)  # another visitor is not affected

    # A run whose tree arrived exists: it no longer counts against the visitor.
    await until(lambda: "a" in feeds.queues, what="a's stream")
    feeds.push("a", snapshot_event("a", 1, [task_node(2, "t")]))
    await until(lambda: hub.runs_of(visitor, unconfirmed=True) == ["b"], what="run a confirmed")
    d = hub.attach("d", listener("d"), owner=visitor)
    assert not d.released
    full = hub.attach("e", listener("e"), owner="address:192.0.2.1")
    assert full.released and "the server already watches 4 runs" in error_of("e")
    assert hub.stats.refusals == 2
    await until(lambda: set(feeds.started) == {"a", "b", "c", "d"}, what="four upstreams")
    for handle in (a, b, shared, c, d):
        handle.release()
    await until(lambda: not hub.runs, what="idle upstreams released")
    again = hub.attach("e", listener("e2"), owner=visitor)
    assert not again.released
    again.release()
    await hub.aclose()


def test_a_visitor_is_the_logged_in_user_else_the_address_tornado_reports(monkeypatch: pytest.MonkeyPatch) -> None:
    """The user from the signed cookie; without one, ``remote_ip`` of the session's request
    (which only ``--use-xheaders`` lets a proxy's headers set); headers themselves never count."""
    import panel as pn
    from tornado.web import create_signed_value

    from dashboard.roles import session_visitor

    secret = "cookie-secret-for-the-visitor-test-0123456789"
    cookies: dict[str, str] = {}

    class Request:
        remote_ip = "203.0.113.7"
        headers: ClassVar[dict[str, str]] = {"X-Forwarded-For": "10.9.9.9", "X-Real-Ip": "10.8.8.8"}

    class SessionContext:
        request = Request()

    class Document:  # weakly referenced by Panel's per-document state, as a real one is
        session_context = SessionContext()

    monkeypatch.setattr(pn.config, "cookie_secret", secret)
    monkeypatch.setattr(type(pn.state), "cookies", property(lambda self: cookies))
    document = Document()
    monkeypatch.setattr(type(pn.state), "curdoc", property(lambda self: document))
    assert session_visitor() == "address:203.0.113.7"
    cookies["user"] = create_signed_value(secret, "user", "alice").decode()
    assert session_visitor() == "user:alice"
    cookies["user"] = "alice"  # unsigned: nobody, so the address
    assert session_visitor() == "address:203.0.113.7"
    monkeypatch.setattr(type(pn.state), "curdoc", property(lambda self: None))
    assert session_visitor() is None, "outside a served session nobody is capped"


def test_serve_trusts_proxy_headers_only_when_told() -> None:
    from inspector.cli import build_parser, serve_plan

    def command(*argv: str) -> list[str]:
        return serve_plan(build_parser().parse_args(["serve", *argv]), {})

    assert "--use-xheaders" not in command()
    assert "--use-xheaders" in command("--trusted-proxy")


# ------------------------------------------------------------------ the scope table against the Gateway's


class GatewayScopes:
    """The real Gateway's ``requiredScopeForMethod``, read from its JavaScript: the RPC
    catalogue's ``requiredScope`` s, ``HTTP_ROUTE_SCOPES`` for the HTTP-only routes, the legacy
    aliases, and ``run:read`` for a method named nowhere."""

    def __init__(self, install: Path) -> None:
        packages = install / "node_modules" / "@smithers-orchestrator"
        self.catalogue = (packages / "gateway" / "src" / "rpc" / "index.js").read_text(encoding="utf-8")
        server = (packages / "server" / "src" / "gateway.js").read_text(encoding="utf-8")
        assert 'return getRequiredScopeForGatewayMethod(method) ?? "run:read";' in server, "the default changed"
        self.routes = self._block("HTTP_ROUTE_SCOPES")
        self.aliases = self._block("GATEWAY_RPC_LEGACY_METHOD_ALIASES")
        self.definitions: dict[str, str] = {}
        for chunk in self.catalogue.split("export const GATEWAY_RPC_DEFINITIONS", 1)[1].split('\n    method: "')[1:]:
            scope = re.search(r'\n    requiredScope: "([\w:]+)"', chunk)
            assert scope, f"no requiredScope for {chunk[:40]!r}"
            self.definitions[chunk[: chunk.index('"')]] = scope.group(1)
        assert {"launchRun", "cancelRun", "rewindRun", "getRun"} <= set(self.definitions)
        assert "retryTask" in self.routes
        self.known = {*self.routes, *self.aliases, *self.definitions}

    def _block(self, name: str) -> dict[str, str]:
        match = re.search(rf"const {name} = \{{(.*?)\n\}};", self.catalogue, re.S)
        assert match, f"{name} not found in rpc/index.js"
        return dict(re.findall(r'^\s*"?([\w.]+)"?:\s*"([\w:.]+)",', match.group(1), re.M))

    def required(self, method: str) -> str:
        if method in self.routes:
            return self.routes[method]
        canonical = method if method in self.definitions else self.aliases.get(method, "")
        return self.definitions.get(canonical, "run:read")


def test_replay_and_dashboard_scope_tables_equal_the_gateways(gateway_install: Path) -> None:
    from dashboard.roles import METHOD_SCOPES as CONTROL_SCOPES
    from inspector.client import MUTATING_METHODS
    from inspector.replay.methods import RpcMethods
    from inspector.replay.rpc import METHOD_ALIASES, METHOD_SCOPES

    gateway = GatewayScopes(gateway_install)
    wrong = {m: (s, gateway.required(m)) for m, s in METHOD_SCOPES.items() if s != gateway.required(m)}
    assert wrong == {}, f"replay scopes that differ from the Gateway's (ours, theirs): {wrong}"
    for alias, target in METHOD_ALIASES.items():
        assert gateway.required(alias) == METHOD_SCOPES[target], alias
    # Every method the dashboard and the client name, as they spell it, is in the table: any
    # string literal that is a Gateway method name, but "approve" (the audit's action word;
    # the Gateway's HTTP route of that name is never called). And every call site names a
    # method the Gateway has ("connect" is the socket's handshake frame, not a method).
    named: set[str] = set(MUTATING_METHODS)
    call_sites: set[str] = set()
    call = re.compile(r'(?:method=|\brpc\(|\bread\(|may_call\([^,()]+,\s*|\bmay\()\s*"([A-Za-z][\w.]*)"')
    for folder in ("dashboard", "inspector"):
        for path in sorted(Path(folder).rglob("*.py")):
            text = path.read_text(encoding="utf-8")
            named |= set(re.findall(r'"([A-Za-z][\w.]+)"', text)) & gateway.known
            call_sites |= set(call.findall(text))
    assert {"cancelRun", "retryTask", "runs.rerun", "submitSignal", "listRuns"} <= call_sites
    assert call_sites - {"connect"} <= gateway.known, call_sites - {"connect"} - gateway.known
    missing = sorted(m for m in (named | call_sites) - {"approve", "connect"} if METHOD_ALIASES.get(m, m) not in METHOD_SCOPES)
    assert missing == [], f"methods called but missing from the replay's scope table: {missing}"
    served = set(RpcMethods._methods(RpcMethods.__new__(RpcMethods)))
    assert served <= set(METHOD_SCOPES), served - set(METHOD_SCOPES)
    # The controls' table: every run-changing method, retryTask included, as the Gateway says.
    assert set(CONTROL_SCOPES) == set(MUTATING_METHODS) and CONTROL_SCOPES["retryTask"] == "run:write"
    assert {m: s for m, s in CONTROL_SCOPES.items() if s != gateway.required(m)} == {}


# ------------------------------------------------------------------ escaping without private Panel methods


def test_text_pane_escapes_through_public_panel_api() -> None:
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

"""HTTP RPC through httpx.MockTransport: auth header, typed errors, retries, and frame decoding."""

from __future__ import annotations

import json
import ssl
from typing import Any

import httpx
import pytest

from inspector.client import GatewayClient, websocket_url
from inspector.errors import (
    ErrorCode,
    FrameDecodeError,
    GatewayRpcError,
    GatewayUnavailable,
    normalize_error_code,
)
from inspector.protocol import (
    EventFrame,
    ResponseFrame,
    UnknownFrame,
    decode_frame,
    encode_frame,
    time_travel_jump,
)


def ok(payload: Any) -> httpx.Response:
    return httpx.Response(200, json={"type": "res", "id": "http", "ok": True, "apiVersion": "v1", "payload": payload})


def err(status: int, code: str, message: str = "", **extra: Any) -> httpx.Response:
    return httpx.Response(status, json={"type": "res", "id": "http", "ok": False,
                                        "error": {"version": "v1", "code": code, "message": message, **extra}})


def client_with(handler: Any, **kw: Any) -> GatewayClient:
    return GatewayClient("http://gateway.test:7331", "secret-token", transport=httpx.MockTransport(handler), **kw)


async def test_rpc_posts_params_with_bearer_token_and_returns_payload() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return ok({"runId": "r1", "status": "running"})

    async with client_with(handler) as client:
        run = await client.get_run("r1")
    assert run["status"] == "running"
    assert seen[0].url.path == "/v1/rpc/getRun"
    assert json.loads(seen[0].content) == {"runId": "r1"}
    assert seen[0].headers["authorization"] == "Bearer secret-token"
    assert "secret-token" not in repr(client)


async def test_typed_reads_send_the_gateway_shapes() -> None:
    bodies: dict[str, Any] = {}

    def handler(request: httpx.Request) -> httpx.Response:
        method = request.url.path.rsplit("/", 1)[1]
        bodies[method] = json.loads(request.content)
        return ok([] if method.startswith("list") else {"root": {}})

    async with client_with(handler) as client:
        await client.list_runs(status="running", workflow="rich", limit=5)
        await client.list_scores("r1", node_id="plan")
        await client.get_node_output("r1", "plan", 2)
        await client.get_devtools_snapshot("r1", frame_no=3)
    assert bodies["listRuns"] == {"filter": {"limit": 5, "offset": 0, "status": "running", "workflow": "rich"}}
    assert bodies["listScores"] == {"runId": "r1", "nodeId": "plan"}
    assert bodies["getNodeOutput"] == {"runId": "r1", "nodeId": "plan", "iteration": 2}
    assert bodies["getDevToolsSnapshot"] == {"runId": "r1", "frameNo": 3}


async def test_forbidden_carries_required_scope_and_is_not_retried() -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return err(403, "FORBIDDEN", "Missing required scope run:admin for rewindRun", requiredScope="run:admin")

    async with client_with(handler) as client:
        with pytest.raises(GatewayRpcError) as info:
            await client.rpc("rewindRun", {"runId": "r", "frameNo": 1, "confirm": True})
    assert info.value.code is ErrorCode.FORBIDDEN and info.value.required_scope == "run:admin"
    assert info.value.status == 403 and calls == 1


@pytest.mark.parametrize(("status", "code"), [(429, "RateLimited"), (409, "Busy"), (502, None), (504, None)])
async def test_transient_failures_are_retried_for_reads(status: int, code: str | None) -> None:
    answers = [err(status, code) if code else httpx.Response(status, text="bad gateway"), ok({"status": "finished"})]

    def handler(request: httpx.Request) -> httpx.Response:
        return answers.pop(0)

    async with client_with(handler) as client:
        client.rpc_retries = 2
        assert (await client.get_run("r"))["status"] == "finished"
    assert answers == []


async def test_retry_after_is_honoured_and_retries_are_bounded() -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return httpx.Response(503, headers={"retry-after": "0"}, text="down")

    async with client_with(handler, rpc_retries=3) as client:
        with pytest.raises(GatewayUnavailable) as info:
            await client.get_run("r")
    assert calls == 4 and info.value.status == 503


async def test_not_found_is_final_and_both_spellings_normalise() -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return err(404, "RunNotFound", "Run not found: nope")

    async with client_with(handler) as client:
        with pytest.raises(GatewayRpcError) as info:
            await client.get_run("nope")
    assert calls == 1 and info.value.code is ErrorCode.RUN_NOT_FOUND and not info.value.transient
    assert normalize_error_code("Unauthorized") is ErrorCode.UNAUTHORIZED is normalize_error_code("UNAUTHORIZED")
    assert normalize_error_code("NOT_FOUND") is ErrorCode.NOT_FOUND
    assert normalize_error_code("BrandNewCode") == "BrandNewCode"


async def test_mutations_are_never_retried() -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return err(429, "RateLimited")

    async with client_with(handler) as client:
        with pytest.raises(GatewayRpcError):
            await client.rpc("launchRun", {"workflow": "demo"})
    assert calls == 1


async def test_unreachable_gateway_is_gateway_unavailable() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    async with client_with(handler, rpc_retries=0) as client:
        with pytest.raises(GatewayUnavailable, match="cannot reach"):
            await client.get_run("r")


async def test_an_untrusted_certificate_says_how_to_trust_it() -> None:
    """httpx wraps the ssl error in a ConnectError; the message still names the remedy."""

    def handler(request: httpx.Request) -> httpx.Response:
        try:
            raise ssl.SSLCertVerificationError(1, "certificate verify failed: self-signed certificate")
        except ssl.SSLError as exc:
            raise httpx.ConnectError(str(exc), request=request) from exc

    async with client_with(handler, rpc_retries=0) as client:
        with pytest.raises(GatewayUnavailable, match="certificate verify failed") as info:
            await client.get_run("r")
    assert "SSL_CERT_FILE" in str(info.value)
    def refused(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    async with client_with(refused, rpc_retries=0) as client:
        with pytest.raises(GatewayUnavailable) as plain:
            await client.get_run("r")
    assert "SSL_CERT_FILE" not in str(plain.value), "no certificate hint for a refused connection"


async def test_401_without_a_frame_is_unauthorized() -> None:
    async with client_with(lambda r: httpx.Response(401, text="no")) as client:
        with pytest.raises(GatewayRpcError) as info:
            await client.get_run("r")
    assert info.value.unauthorized


def test_websocket_url_keeps_origin_and_scheme() -> None:
    assert websocket_url("http://127.0.0.1:7331") == "ws://127.0.0.1:7331/"
    assert websocket_url("https://gw.example/base") == "wss://gw.example/base/"
    with pytest.raises(ValueError):
        websocket_url("ftp://x")


# ------------------------------------------------------------------ protocol


def test_decode_frames_of_every_type() -> None:
    ev = decode_frame('{"type":"event","event":"tick","payload":{"ts":1},"seq":4,"stateVersion":2}')
    assert ev == EventFrame("tick", {"ts": 1}, 4, 2)
    res = decode_frame({"type": "res", "id": "1", "ok": False, "error": {"code": "Unauthorized", "message": "x"}})
    assert isinstance(res, ResponseFrame) and res.error and res.error.code is ErrorCode.UNAUTHORIZED
    unknown = decode_frame({"type": "telemetry", "x": 1})
    assert isinstance(unknown, UnknownFrame) and unknown.raw["x"] == 1
    assert decode_frame(encode_frame(ev)) == ev


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("{not json", "$"),
        ("[1, 2]", "$"),
        ('{"type": "event"}', "$.event"),
        ('{"type": "event", "event": "tick", "seq": "4"}', "$.seq"),
        ('{"type": "res", "id": 1, "ok": true}', "$.id"),
        ('{"type": "res", "id": "1", "ok": "yes"}', "$.ok"),
        ('{"type": "res", "id": "1", "ok": false, "error": {"message": "m"}}', "$.error.code"),
        ('{"id": "1"}', "$.type"),
    ],
)
def test_decode_errors_say_where(text: str, where: str) -> None:
    with pytest.raises(FrameDecodeError) as info:
        decode_frame(text)
    assert info.value.path == where


def test_time_travel_jump_bare_and_wrapped() -> None:
    payload = {"runId": "r", "fromFrameNo": 18, "toFrameNo": 3, "timestampMs": 5, "caller": "user:op"}
    bare = time_travel_jump(EventFrame("run.time_travel_jumped", payload))
    wrapped = time_travel_jump(EventFrame("run.event", {"streamId": "s", "event": "run.time_travel_jumped", "payload": payload}))
    assert bare == wrapped and bare is not None and (bare.from_frame_no, bare.to_frame_no) == (18, 3)
    assert time_travel_jump(EventFrame("node.started", payload)) is None

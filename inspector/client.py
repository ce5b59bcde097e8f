"""The async Gateway client: HTTP RPC over httpx, the WebSocket protocol over websockets.

This is the only module of the project that talks to the network. Both transports are
injectable: pass ``transport=httpx.MockTransport(handler)`` (or any
``httpx.AsyncBaseTransport``) for HTTP, and ``connect=`` a coroutine function returning a
websocket-like object for the socket, so tests can run against in-process servers.

- :class:`GatewayClient` holds the base URL and token and answers typed reads
  (``get_run``, ``list_runs``, ...) over ``POST /v1/rpc/<method>``; failures raise
  :class:`~inspector.errors.GatewayRpcError` or :class:`~inspector.errors.GatewayUnavailable`.
  Reads are retried with backoff when the Gateway says "later" (429, 502-504, ``Busy``,
  ``RateLimited``); writes never are.
- :class:`GatewayConnection` is one authenticated socket: challenge, ``connect``, hello,
  requests correlated by id, a queue of event frames, ``tick`` heartbeats.

The resilient DevTools subscription is built on top of a client
(``inspector.stream.DevToolsSubscription(client, run_id)``) and this module does not
import it: the dependency runs one way, from the policy down to the transport.

The token is sent only in the ``Authorization`` header and the ``connect`` frame; it is
never logged, never part of a ``repr`` and replaced by ``"<redacted>"`` in recordings. A
``token_provider`` (e.g. a token file read again) is asked for a fresh token when the Gateway
says ``UNAUTHORIZED``, and the call is tried once more with it: a long-lived client (a wall
monitor) survives a token rotation. HTTP answers are read up to ``max_response_bytes``;
a bigger one is :class:`~inspector.errors.ResponseTooLarge`, never half decoded.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import platform
import ssl
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol
from urllib.parse import quote, urlsplit, urlunsplit

import httpx
import websockets
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from . import __name__ as _pkg, __version__
from .errors import (
    ErrorCode,
    FrameDecodeError,
    GatewayRpcError,
    GatewayStalled,
    GatewayUnavailable,
)
from .protocol import (
    EventFrame,
    RequestFrame,
    ResponseFrame,
    UnknownFrame,
    decode_frame,
    decode_json,
)
from .status import Backoff
from .transport_guards import read_capped, redact_url, refresh_hint, with_refresh_hint

__all__ = [
    "CLIENT_ID",
    "CLIENT_VERSION",
    "DEFAULT_GATEWAY_URL",
    "DEFAULT_MAX_RESPONSE_BYTES",
    "FrameRecorder",
    "GatewayClient",
    "GatewayConnection",
    "WebSocketLike",
    "redact_url",
    "refresh_hint",
]

log = logging.getLogger(_pkg + ".client")

DEFAULT_GATEWAY_URL = "http://127.0.0.1:7331"
CLIENT_ID = "smithers-dashboard"
CLIENT_VERSION = __version__
#: The largest frame we accept. A 10,000-node snapshot is a few MB; outputs are capped
#: by the Gateway at 100 MiB but travel over HTTP, not the socket.
DEFAULT_MAX_FRAME_BYTES = 32 * 1024 * 1024
#: The largest HTTP answer read (a node output can be big; an endless body must not be).
DEFAULT_MAX_RESPONSE_BYTES = 64 * 1024 * 1024
#: Methods that change something: never retried automatically.
MUTATING_METHODS = frozenset(
    {"launchRun", "rewindRun", "jumpToFrame", "submitApproval", "cancelRun", "resumeRun", "pauseRun",
     "submitSignal", "retryTask", "runs.rerun", "runs.create", "approvals.decide", "signals.send"}
)
REDACTED = "<redacted>"


class WebSocketLike(Protocol):
    """What we need of a websocket connection (``websockets.asyncio.client.ClientConnection``)."""

    async def send(self, message: str) -> None: ...

    async def recv(self) -> str | bytes: ...

    async def close(self, code: int = 1000, reason: str = "") -> None: ...


ConnectFactory = Callable[[str, Mapping[str, str]], Awaitable[WebSocketLike]]
#: Gives the current token (``None``: none); called again after an ``UNAUTHORIZED``.
TokenProvider = Callable[[], "str | None"]


class FrameRecorder(Protocol):
    """Receives every frame of a session, e.g. :class:`inspector.transcript.TranscriptWriter`."""

    def new_session(self) -> None: ...

    def sent(self, frame: Mapping[str, Any]) -> None: ...

    def received(self, frame: Mapping[str, Any]) -> None: ...


def websocket_url(base_url: str) -> str:
    """``http://h:p/x`` -> ``ws://h:p/x/``; ``https`` -> ``wss``. Same origin as the RPC."""
    parts = urlsplit(base_url)
    scheme = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}.get(parts.scheme)
    if scheme is None:
        raise ValueError(f"gateway URL must be http(s) or ws(s), got {parts.scheme!r}")
    path = parts.path if parts.path.endswith("/") else parts.path + "/"
    return urlunsplit((scheme, parts.netloc, path, "", ""))


def _http_base(base_url: str) -> str:
    parts = urlsplit(base_url)
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme, parts.scheme)
    if scheme not in ("http", "https"):
        raise ValueError(f"gateway URL must be http(s) or ws(s), got {parts.scheme!r}")
    return urlunsplit((scheme, parts.netloc, parts.path.rstrip("/"), "", ""))


#: Said after a certificate the client does not trust: the operator's remedy.
CERTIFICATE_HINT = "the gateway's TLS certificate is not trusted here; for a private CA, set SSL_CERT_FILE to its certificate"


def _unreachable(what: str, url: str, exc: BaseException) -> GatewayUnavailable:
    """``GatewayUnavailable`` for a failed connection to ``url``, with the remedy when the
    cause was a TLS certificate the client does not trust (it is often wrapped: httpx's
    ``ConnectError`` carries the ``ssl`` error as its cause)."""
    detail = str(exc) or type(exc).__name__
    cause: BaseException | None = exc
    for _ in range(5):
        if cause is None or isinstance(cause, ssl.SSLCertVerificationError):
            break
        cause = cause.__cause__ or cause.__context__
    hint = f"; {CERTIFICATE_HINT}" if isinstance(cause, ssl.SSLCertVerificationError) else ""
    return GatewayUnavailable(f"{what}cannot reach the gateway at {url} ({detail}){hint}")


def _redact_connect(frame: Mapping[str, Any]) -> Mapping[str, Any]:
    params = frame.get("params")
    if frame.get("method") != "connect" or not isinstance(params, Mapping) or "auth" not in params:
        return frame
    return {**frame, "params": {**params, "auth": {"token": REDACTED}}}


async def _default_connect(url: str, headers: Mapping[str, str], *, max_size: int) -> WebSocketLike:
    return await ws_connect(
        url,
        additional_headers=dict(headers),
        max_size=max_size,
        open_timeout=10,
        ping_interval=10,
        ping_timeout=20,
        close_timeout=2,
        user_agent_header=f"{CLIENT_ID}/{CLIENT_VERSION}",
    )


_CLOSED = object()
_WAKE = object()


class GatewayConnection:
    """One authenticated Gateway socket.

    Created by :meth:`GatewayClient.open`. A background reader routes response frames to
    the request that is waiting for them and event frames to :meth:`next_event`. A frame
    that cannot be decoded is handed to the event consumer as a
    :class:`~inspector.errors.FrameDecodeError`, so it can decide to rebaseline.
    """

    def __init__(self, ws: WebSocketLike, *, recorder: FrameRecorder | None = None, queue_size: int = 10_000):
        self._ws = ws
        self._recorder = recorder
        self._ids = itertools.count(1)
        self._pending: dict[str, asyncio.Future[ResponseFrame]] = {}
        self._events: asyncio.Queue[object] = asyncio.Queue(maxsize=queue_size)
        self._reader: asyncio.Task[None] | None = None
        self._closed_reason: BaseException | None = None
        self.hello: dict[str, Any] = {}
        self.last_tick: float | None = None
        self.last_frame: float = time.monotonic()
        self.close_code: int | None = None

    # -- lifecycle ---------------------------------------------------------

    @property
    def heartbeat_ms(self) -> int:
        policy = self.hello.get("policy")
        value = policy.get("heartbeatMs") if isinstance(policy, Mapping) else None
        return value if isinstance(value, int) and value > 0 else 15_000

    @property
    def scopes(self) -> list[str]:
        auth = self.hello.get("auth")
        value = auth.get("scopes") if isinstance(auth, Mapping) else None
        return [s for s in value if isinstance(s, str)] if isinstance(value, list) else []

    async def handshake(self, params: Mapping[str, Any], timeout: float) -> dict[str, Any]:
        """Wait for the challenge, send ``connect``, return the hello payload."""
        async with asyncio.timeout(timeout):
            while True:
                frame = await self._recv_frame()
                if isinstance(frame, EventFrame) and frame.event == "connect.challenge":
                    break
        req = RequestFrame(id=f"req-{next(self._ids)}", method="connect", params=dict(params))
        await self._send(req.to_wire())
        async with asyncio.timeout(timeout):
            while True:
                frame = await self._recv_frame()
                if isinstance(frame, ResponseFrame) and frame.id == req.id:
                    break
                if isinstance(frame, EventFrame):
                    self._events.put_nowait(frame)
        if not frame.ok:
            assert frame.error is not None
            raise frame.error.to_exception(method="connect")
        self.hello = frame.payload if isinstance(frame.payload, dict) else {}
        self._reader = asyncio.create_task(self._read_loop(), name="gateway-reader")
        return self.hello

    async def close(self, *, abort: bool = False) -> None:
        """Close the socket; ``abort`` drops the TCP connection at once (a stalled peer
        would keep a polite close waiting for its ``close_timeout``)."""
        if abort:
            transport = getattr(self._ws, "transport", None)
            if transport is not None:
                with contextlib.suppress(Exception):
                    transport.abort()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(BaseException):
                await self._reader
        with contextlib.suppress(Exception):
            await self._ws.close()
        self._fail_pending(GatewayUnavailable("connection closed"))

    async def __aenter__(self) -> GatewayConnection:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- frames ------------------------------------------------------------

    async def _send(self, wire: Mapping[str, Any]) -> None:
        if self._recorder is not None:
            self._recorder.sent(_redact_connect(wire))
        try:
            await self._ws.send(json.dumps(wire, separators=(",", ":")))
        except ConnectionClosed as exc:
            raise _closed_error(exc) from None

    async def _recv_frame(self) -> EventFrame | ResponseFrame | RequestFrame | UnknownFrame:
        try:
            text = await self._ws.recv()
        except ConnectionClosed as exc:
            raise _closed_error(exc) from None
        self.last_frame = time.monotonic()
        data = decode_json(text)
        if self._recorder is not None and isinstance(data, Mapping):
            self._recorder.received(data)
        return decode_frame(data)

    async def _read_loop(self) -> None:
        try:
            while True:
                try:
                    frame = await self._recv_frame()
                except FrameDecodeError as exc:
                    log.warning("undecodable frame from gateway: %s", exc)
                    await self._events.put(exc)
                    continue
                if isinstance(frame, ResponseFrame):
                    future = self._pending.pop(frame.id, None)
                    if future is not None and not future.done():
                        future.set_result(frame)
                elif isinstance(frame, EventFrame):
                    if frame.event == "tick":
                        self.last_tick = time.time()
                    await self._events.put(frame)
                else:
                    log.debug("ignoring frame of unknown type %s", getattr(frame, "type", "?"))
        except (GatewayUnavailable, GatewayRpcError) as exc:  # closed; 1008 is a rejected token
            self._closed_reason = exc
        except asyncio.CancelledError:
            self._closed_reason = GatewayUnavailable("connection closed")
            raise
        except Exception as exc:  # a bug or a transport error: the socket is unusable
            self._closed_reason = GatewayUnavailable(f"connection failed: {exc}")
        finally:
            reason = self._closed_reason or GatewayUnavailable("connection closed")
            self._fail_pending(reason)
            with contextlib.suppress(asyncio.QueueFull):
                self._events.put_nowait(_CLOSED)

    def _fail_pending(self, exc: BaseException) -> None:
        for future in self._pending.values():
            if not future.done():
                future.set_exception(exc)
        self._pending.clear()

    async def send_request(self, method: str, params: Mapping[str, Any] | None = None) -> asyncio.Future[ResponseFrame]:
        """Send a request; the returned future resolves to its response frame.

        Lets a caller go on reading events while the answer is on its way (DevTools
        frames may arrive before the ``streamDevTools`` response).
        """
        if self._closed_reason is not None:
            raise self._closed_reason
        req = RequestFrame(id=f"req-{next(self._ids)}", method=method, params=dict(params or {}))
        future: asyncio.Future[ResponseFrame] = asyncio.get_running_loop().create_future()
        # Nobody may ever read a request's failure after the socket dies; mark it retrieved.
        future.add_done_callback(lambda f: f.cancelled() or f.exception())
        self._pending[req.id] = future
        try:
            await self._send(req.to_wire())
        except BaseException:
            self._pending.pop(req.id, None)
            raise
        return future

    async def request(self, method: str, params: Mapping[str, Any] | None = None, *, timeout: float = 30.0) -> Any:
        """Send a request and return its payload; an error answer raises ``GatewayRpcError``."""
        future = await self.send_request(method, params)
        try:
            async with asyncio.timeout(timeout):
                frame = await future
        except TimeoutError:
            raise GatewayUnavailable(f"{method}: no answer within {timeout:g} s") from None
        return _payload_or_raise(frame, method, None)

    def interrupt(self) -> None:
        """Make a pending :meth:`next_event` return ``None`` now (used to stop promptly)."""
        with contextlib.suppress(asyncio.QueueFull):
            self._events.put_nowait(_WAKE)

    async def next_event(
        self, timeout: float | None = None, *, idle_ok: bool = False
    ) -> EventFrame | FrameDecodeError | None:
        """The next event frame (or an undecodable frame's error); ``None`` after :meth:`interrupt`.

        Raises :class:`GatewayUnavailable` once the socket is closed, and on ``timeout``
        (a silent socket is as good as a dead one) unless ``idle_ok``, when a quiet
        ``timeout`` just returns ``None``.
        """
        try:
            async with asyncio.timeout(timeout):
                item = await self._events.get()
        except TimeoutError:
            if idle_ok:
                return None
            raise GatewayStalled(f"no frame from the gateway for {timeout:g} s") from None
        if item is _CLOSED:
            self._events.put_nowait(_CLOSED)  # stay closed for later callers
            raise self._closed_reason or GatewayUnavailable("connection closed")
        if item is _WAKE:
            return None
        assert isinstance(item, EventFrame | FrameDecodeError)
        return item


def _closed_error(exc: ConnectionClosed) -> GatewayUnavailable | GatewayRpcError:
    # The peer's close frame, else ours (websockets closes with 1009 when a frame is too big).
    close = exc.rcvd if exc.rcvd is not None else exc.sent
    code = close.code if close is not None else None
    reason = close.reason if close is not None else ""
    if code == 1008:
        return GatewayRpcError(ErrorCode.UNAUTHORIZED, reason or "authentication failed (close 1008)")
    if code == 1013:
        return GatewayUnavailable(f"gateway asked us to back off (close 1013: {reason or 'try again later'})")
    if code == 1009:
        return GatewayUnavailable("a frame was larger than the configured maximum (close 1009)")
    text = f"close {code}" + (f": {reason}" if reason else "") if code is not None else "connection lost"
    return GatewayUnavailable(text)


def _payload_or_raise(
    frame: ResponseFrame, method: str, status: int | None, retry_after: float | None = None
) -> Any:
    if frame.ok:
        return frame.payload
    assert frame.error is not None
    raise frame.error.to_exception(method=method, status=status, retry_after=retry_after)


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


class GatewayClient:
    """A Smithers Gateway, addressed by its base URL (``http://127.0.0.1:7331``).

    ``token`` is a bearer token (``SMITHERS_TOKEN``); keep it out of command lines.
    ``token_provider`` gives the token again (a token file, re-read): after an
    ``UNAUTHORIZED`` the client asks it and, if the token changed, tries the call once more.
    ``transport`` and ``connect`` replace the network for tests. ``recorder`` receives
    every WebSocket frame (the ``record`` command writes them as a transcript).
    ``max_response_bytes`` caps an HTTP answer (:class:`~inspector.errors.ResponseTooLarge`).
    """

    def __init__(
        self,
        base_url: str = DEFAULT_GATEWAY_URL,
        token: str | None = None,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        connect: ConnectFactory | None = None,
        timeout: float = 30.0,
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
        rpc_retries: int = 4,
        recorder: FrameRecorder | None = None,
        client_id: str = CLIENT_ID,
        token_provider: TokenProvider | None = None,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
    ) -> None:
        self.base_url = _http_base(base_url)
        self.ws_url = websocket_url(self.base_url)
        self._token = token or None
        self._token_provider = token_provider
        self.max_response_bytes = max_response_bytes
        #: How many times a rejected token was replaced by a fresh one from the provider.
        self.token_reloads = 0
        self.timeout = timeout
        self.max_frame_bytes = max_frame_bytes
        self.rpc_retries = rpc_retries
        self.recorder = recorder
        self.client_id = client_id
        self._connect = connect
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            transport=transport,
            timeout=httpx.Timeout(timeout, connect=10.0),
            headers={"user-agent": f"{CLIENT_ID}/{CLIENT_VERSION}"},
            follow_redirects=False,
        )

    def __repr__(self) -> str:
        auth = "token" if self._token else "no token"
        return f"GatewayClient({self.display_url!r}, {auth})"

    @property
    def display_url(self) -> str:
        """:attr:`base_url` without credentials: the one to show or log."""
        return redact_url(self.base_url)

    @property
    def has_token(self) -> bool:
        return self._token is not None

    def _auth_headers(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self._token}"} if self._token else {}

    def reload_token(self) -> bool:
        """Ask the token provider again; True if it gave a different token (now in use).

        A provider that fails (an unreadable file mid-rotation) changes nothing: the
        caller keeps the Gateway's ``UNAUTHORIZED`` and retries later.
        """
        if self._token_provider is None:
            return False
        try:
            fresh = self._token_provider() or None
        except (OSError, ValueError) as exc:
            log.warning("cannot read the gateway token again: %s", exc)
            return False
        if fresh is None or fresh == self._token:
            return False
        self._token = fresh
        self.token_reloads += 1
        log.info("the gateway rejected the token; using the token read again from its source")
        return True

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> GatewayClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- HTTP RPC -----------------------------------------------------------

    async def rpc(self, method: str, params: Mapping[str, Any] | None = None, *, retries: int | None = None) -> Any:
        """Call ``POST /v1/rpc/<method>`` and return the payload.

        Transient failures (connection refused, 429, 502-504, ``Busy``, ``RateLimited``)
        are retried with exponential backoff and full jitter (honouring ``Retry-After``)
        for reads; methods that change something are tried once.
        """
        attempts = 1 + (0 if method in MUTATING_METHODS else (self.rpc_retries if retries is None else retries))
        backoff = Backoff(base=0.2, cap=5.0)
        reloaded = False
        attempt = 0
        while True:
            try:
                return await self._rpc_once(method, params)
            except GatewayRpcError as exc:
                # A rotated token: one more try, with the fresh token, outside the retry
                # budget (safe for a write too: the Gateway refused it before doing anything).
                if exc.unauthorized and not reloaded and self.reload_token():
                    reloaded = True
                    continue
                if not exc.transient or attempt >= attempts - 1:
                    raise with_refresh_hint(exc) from None
                delay = exc.retry_after if exc.retry_after is not None else backoff.delay()
            except GatewayUnavailable as exc:
                if attempt >= attempts - 1:
                    raise
                delay = exc.retry_after if exc.retry_after is not None else backoff.delay()
            attempt += 1
            log.info("%s failed; retrying in %.2f s", method, delay)
            await asyncio.sleep(delay)

    async def _rpc_once(self, method: str, params: Mapping[str, Any] | None) -> Any:
        try:
            request = self._http.build_request("POST", f"/v1/rpc/{method}", json=dict(params or {}),
                                               headers=self._auth_headers())
            response = await self._http.send(request, stream=True)
            try:
                body = await read_capped(response, method, self.max_response_bytes)
            finally:
                await response.aclose()
        except httpx.TimeoutException:
            raise GatewayUnavailable(f"{method}: the gateway did not answer within {self.timeout:g} s") from None
        except httpx.TransportError as exc:
            raise _unreachable(f"{method}: ", self.display_url, exc) from None
        frame: ResponseFrame | None = None
        try:
            decoded = decode_frame(body)
            if isinstance(decoded, ResponseFrame):
                frame = decoded
        except FrameDecodeError:
            frame = None
        if frame is None:
            status = response.status_code
            if status == 401:
                raise GatewayRpcError(ErrorCode.UNAUTHORIZED, "the gateway rejected the token", status=status, method=method)
            wait = _retry_after(response)
            if status in (429, 502, 503, 504) or status >= 500:
                raise GatewayUnavailable(f"{method}: HTTP {status} from the gateway", status=status, retry_after=wait)
            raise GatewayRpcError(
                f"HTTP_{status}", f"unexpected answer (HTTP {status})", status=status, method=method, retry_after=wait
            )
        return _payload_or_raise(frame, method, response.status_code, _retry_after(response))

    # -- typed reads ----------------------------------------------------------

    async def get_run(self, run_id: str) -> dict[str, Any]:
        result = await self.rpc("getRun", {"runId": run_id})
        return result if isinstance(result, dict) else {}

    async def list_runs(
        self, *, status: str | None = None, workflow: str | None = None, limit: int = 50, offset: int = 0
    ) -> list[dict[str, Any]]:
        flt: dict[str, Any] = {"limit": limit, "offset": offset}
        if status:
            flt["status"] = status
        if workflow:
            flt["workflow"] = workflow
        result = await self.rpc("listRuns", {"filter": flt})
        return [r for r in result if isinstance(r, dict)] if isinstance(result, list) else []

    async def list_workflows(self) -> list[Any]:
        result = await self.rpc("listWorkflows", {})
        if isinstance(result, dict):
            result = result.get("workflows", [])
        return list(result) if isinstance(result, list) else []

    async def get_node_output(self, run_id: str, node_id: str, iteration: int = 0) -> dict[str, Any]:
        result = await self.rpc("getNodeOutput", {"runId": run_id, "nodeId": node_id, "iteration": iteration})
        return result if isinstance(result, dict) else {}

    async def get_node_diff(self, run_id: str, node_id: str, iteration: int = 0) -> dict[str, Any]:
        result = await self.rpc("getNodeDiff", {"runId": run_id, "nodeId": node_id, "iteration": iteration})
        return result if isinstance(result, dict) else {}

    async def list_scores(self, run_id: str, node_id: str | None = None) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"runId": run_id}
        if node_id is not None:
            params["nodeId"] = node_id
        result = await self.rpc("listScores", params)
        return [r for r in result if isinstance(r, dict)] if isinstance(result, list) else []

    async def list_approvals(self, run_id: str | None = None) -> list[dict[str, Any]]:
        result = await self.rpc("listApprovals", {"filter": {"runId": run_id}} if run_id else {})
        if isinstance(result, dict):
            result = result.get("approvals", [])
        return [r for r in result if isinstance(r, dict)] if isinstance(result, list) else []

    async def _rest_get(self, path: str, method: str, params: dict[str, Any] | None = None) -> Any:
        """``data`` of a REST read (``{"ok": true, "data": ...}``), its size capped at
        :attr:`max_response_bytes`; an error answer raises :class:`GatewayRpcError`."""
        try:
            request = self._http.build_request("GET", path, params=params, headers=self._auth_headers())
            response = await self._http.send(request, stream=True)
            try:
                raw = await read_capped(response, method, self.max_response_bytes)
            finally:
                await response.aclose()
        except httpx.HTTPError as exc:
            raise _unreachable(f"{method}: ", self.display_url, exc) from None
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        if isinstance(body, dict) and body.get("ok") is True:
            return body.get("data")
        status = response.status_code
        error = body.get("error") if isinstance(body, dict) else None
        if isinstance(error, dict):
            raise GatewayRpcError(error.get("code", f"HTTP_{status}"), str(error.get("message", "")), status=status, method=method)
        raise GatewayRpcError(f"HTTP_{status}", "unexpected answer", status=status, method=method)

    async def list_run_events(
        self, run_id: str, *, after_seq: int | None = None, limit: int = 1000, max_events: int = 50_000
    ) -> list[dict[str, Any]]:
        """The run's durable event history with timestamps (``GET /v1/api/events``), oldest first.

        Rows look like ``{"seq", "event": "NodeStarted", "payload": {...}, "timestampMs"}``.
        Pages through ``afterSeq`` up to ``max_events``. Live node events over the socket carry
        no timestamps; this is where a timeline learns when things happened before we looked.
        """
        out: list[dict[str, Any]] = []
        cursor = after_seq
        while len(out) < max_events:
            query: dict[str, Any] = {"runId": run_id, "limit": min(limit, max_events - len(out))}
            if cursor is not None:
                query["afterSeq"] = cursor
            data = await self._rest_get("/v1/api/events", "events", params=query)
            rows = [r for r in data or [] if isinstance(r, dict)] if isinstance(data, list) else []
            out.extend(rows)
            seqs = [r["seq"] for r in rows if isinstance(r.get("seq"), int)]
            if len(rows) < query["limit"] or not seqs:
                break
            cursor = max(seqs)
        return out

    async def list_run_token_usage(self, run_id: str) -> list[dict[str, Any]]:
        """Every persisted token usage of a run (``GET /v1/api/runs/<runId>/token-usage``,
        the ``listRunTokenUsage`` method), in the Gateway's order (by seq).

        Rows look like ``{"nodeId", "iteration", "attempt", "model", "agent", "inputTokens",
        "outputTokens", "cacheReadTokens", "cacheWriteTokens", "reasoningTokens",
        "timestampMs"}``. Unlike the live events this is the whole durable history, never
        bounded by a replay window.
        """
        path = f"/v1/api/runs/{quote(run_id, safe='')}/token-usage"
        data = await self._rest_get(path, "listRunTokenUsage")
        events = data.get("events") if isinstance(data, dict) else None
        return [row for row in events if isinstance(row, dict)] if isinstance(events, list) else []

    async def get_devtools_snapshot(self, run_id: str, frame_no: int | None = None) -> dict[str, Any]:
        params: dict[str, Any] = {"runId": run_id}
        if frame_no is not None:
            params["frameNo"] = frame_no
        result = await self.rpc("getDevToolsSnapshot", params)
        if not isinstance(result, dict):
            raise GatewayRpcError("INVALID_RESPONSE", "getDevToolsSnapshot did not return a snapshot", method="getDevToolsSnapshot")
        return result

    # -- WebSocket ------------------------------------------------------------

    async def open(self, subscribe: list[str] | None = None, *, timeout: float = 10.0) -> GatewayConnection:
        """Open an authenticated socket (challenge, ``connect``, hello).

        A rejected token raises ``GatewayRpcError`` with code ``UNAUTHORIZED`` (whether
        the Gateway answered with an error frame or closed with 1008), after one more try
        if the token provider gives a new token; an unreachable Gateway raises
        :class:`GatewayUnavailable`.
        """
        try:
            return await self._open_once(subscribe, timeout)
        except GatewayRpcError as exc:
            if not exc.unauthorized:
                raise
            if not self.reload_token():
                raise with_refresh_hint(exc) from None
        try:
            return await self._open_once(subscribe, timeout)
        except GatewayRpcError as exc:
            raise with_refresh_hint(exc) from None

    async def _open_once(self, subscribe: list[str] | None, timeout: float) -> GatewayConnection:
        headers = self._auth_headers()
        try:
            if self._connect is not None:
                ws = await self._connect(self.ws_url, headers)
            else:
                ws = await _default_connect(self.ws_url, headers, max_size=self.max_frame_bytes)
        except InvalidStatus as exc:
            status = exc.response.status_code
            if status in (401, 403):
                raise GatewayRpcError(ErrorCode.UNAUTHORIZED, f"websocket upgrade refused (HTTP {status})", status=status) from None
            raise GatewayUnavailable(f"websocket upgrade refused (HTTP {status})", status=status) from None
        except (OSError, TimeoutError, InvalidHandshake, websockets.exceptions.WebSocketException) as exc:
            raise _unreachable("", redact_url(self.ws_url), exc) from None
        if self.recorder is not None:
            self.recorder.new_session()
        conn = GatewayConnection(ws, recorder=self.recorder)
        params: dict[str, Any] = {
            "minProtocol": 1,
            "maxProtocol": 1,
            "client": {"id": self.client_id, "version": CLIENT_VERSION, "platform": f"python-{platform.python_version()}"},
        }
        if self._token:
            params["auth"] = {"token": self._token}
        if subscribe:
            params["subscribe"] = list(subscribe)
        try:
            await conn.handshake(params, timeout)
        except TimeoutError:
            await conn.close()
            raise GatewayUnavailable(f"the gateway did not complete the handshake within {timeout:g} s") from None
        except BaseException:
            await conn.close()
            raise
        return conn

    # -- operator reads (the inbox, run operations and launch form) ---------------

    async def list_node_states(self, run_id: str) -> list[dict[str, Any]]:
        """Every node of the run with its state and latest attempt's times (``listNodeStates``)."""
        result = await self.rpc("listNodeStates", {"runId": run_id})
        return [r for r in result if isinstance(r, dict)] if isinstance(result, list) else []

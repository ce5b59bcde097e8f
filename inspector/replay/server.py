"""The replay Gateway's server: tornado HTTP and WebSocket endpoints, the handshake, the streams.

:class:`ReplayGateway` serves WebSocket (``/``) and HTTP (``POST /v1/rpc/<method>``,
``GET /v1/api/events``, ``GET /health``) on one tornado port and plays
:class:`~inspector.transcript.RecordedRun` values back as *live* runs. This module is the
I/O edge of the replay: per-connection state (grant, envelope ``seq``, streams, heartbeat,
auth deadline), the ``connect.challenge`` / ``connect`` handshake and token check, the
HTTP status of an answer, and fanning released events out to the connections that want
them. What is due when is the :class:`~inspector.replay.player.Player`'s job; what a method
answers is :class:`~inspector.replay.methods.RpcMethods`'.

What it mirrors from ``gateway.js`` (0.32): the ``connect.challenge`` / ``connect``
handshake (other methods first get ``UNAUTHORIZED``; a bad token gets the error and then
close 1008), ``tick`` heartbeats, per-connection envelope ``seq`` and a global
``stateVersion``, run events delivered to every connection whose ``subscribe`` filter
admits the run, ``devtools.event`` frames, and the HTTP status mapping of error codes.
Without a configured token every caller is an ``admin`` (the real Gateway's no-auth callers
cannot rewind, which would make the demo's rewind button useless).

Extension points, for test doubles that break the wire on purpose (the project's own live
in ``tests/faulty_replay.py``, outside the runtime package): :meth:`ReplayGateway._intercept_http`
may answer an HTTP call before it is authenticated; :attr:`ReplayGateway.player`'s
``running`` event gates the clock; ``_connections``, ``_streams_on`` and ``_closed`` reach the
open sockets, whose ``send_text``/``send_event``/``send_devtools``/``close``/``abort`` write to
or tear down one connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import struct
import uuid
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Final

import tornado.escape
import tornado.httpserver
import tornado.httputil
import tornado.netutil
import tornado.web
import tornado.websocket

from ..errors import FrameDecodeError, GatewayRpcError
from ..protocol import EventFrame, RequestFrame, ResponseFrame, decode_frame, encode_frame
from .methods import RpcMethods, approval_rows
from .playback import AutoRewind, LiveRun, now_ms
from .player import Player
from .rpc import READ_SCOPES, Grant, error_response, http_status_for, rpc_error

if TYPE_CHECKING:
    from ..transcript import RecordedRun

__all__ = ["AUTH_DEADLINE_MS", "DEFAULT_HEARTBEAT_MS", "PROTOCOL", "ReplayGateway"]

log = logging.getLogger(__name__)

PROTOCOL: Final = 1
DEFAULT_HEARTBEAT_MS: Final = 15_000
AUTH_DEADLINE_MS: Final = 10_000

#: Run statuses a hello ``snapshot.runs`` lists (``buildSnapshot``).
_ACTIVE_STATUSES: Final = frozenset({"running", "waiting-approval", "waiting-event", "waiting-timer", "paused"})


class _Connection:
    """One WebSocket client: its auth, envelope counter, streams and timers."""

    def __init__(self, gateway: ReplayGateway, handler: _SocketHandler) -> None:
        self.gateway = gateway
        self.handler = handler
        self.id = str(uuid.uuid4())
        self.grant: Grant | None = None
        self.subscribed: set[str] | None = None
        self.seq = 0
        self.streams: dict[str, str] = {}
        self.run_event_streams: dict[str, str] = {}
        self.heartbeat: asyncio.Task[None] | None = None
        self.deadline: asyncio.TimerHandle | None = None
        self.closed = False

    def admits(self, run_id: str) -> bool:
        """Does the ``subscribe`` filter of ``connect`` let this run's events through?"""
        return not self.subscribed or run_id in self.subscribed

    def send_text(self, text: str) -> None:
        if self.closed:
            return
        try:
            future = self.handler.write_message(text)
        except tornado.websocket.WebSocketClosedError:
            return
        future.add_done_callback(_consume)

    def send_event(self, event: str, payload: Any) -> None:
        self.seq += 1
        frame = EventFrame(event=event, payload=payload, seq=self.seq, state_version=self.gateway.state_version)
        self.send_text(encode_frame(frame))

    def send_devtools(self, stream_id: str, run_id: str, event_text: str) -> None:
        """A ``devtools.event`` frame around already-encoded event JSON (snapshots are big)."""
        self.seq += 1
        payload = f'{{"streamId":{json.dumps(stream_id)},"runId":{json.dumps(run_id)},"event":{event_text}}}'
        self.send_text(
            f'{{"type":"event","event":"devtools.event","payload":{payload},'
            f'"seq":{self.seq},"stateVersion":{self.gateway.state_version},"apiVersion":"v1"}}'
        )

    def send_response(self, response: ResponseFrame) -> None:
        self.send_text(encode_frame(response))

    def close(self, code: int, reason: str) -> None:
        with contextlib.suppress(Exception):
            self.handler.close(code, reason)

    def abort(self) -> None:
        """Tear the TCP connection down with no close frame (RST), like a crashed proxy."""
        ws = self.handler.ws_connection
        stream = getattr(ws, "stream", None)
        sock = getattr(stream, "socket", None)
        if isinstance(sock, socket.socket):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        if stream is not None:
            stream.close()




def _consume(future: asyncio.Future[None]) -> None:
    """Retrieve a write's exception so a socket that died mid-write does not log noise."""
    if not future.cancelled():
        future.exception()


class _SocketHandler(tornado.websocket.WebSocketHandler):
    """The WebSocket endpoint; all logic lives in :class:`ReplayGateway`."""

    def initialize(self, gateway: ReplayGateway) -> None:
        self.gateway = gateway
        self.conn: _Connection | None = None

    def check_origin(self, origin: str) -> bool:
        return True

    def open(self, *args: str, **kwargs: str) -> None:
        self.conn = self.gateway._opened(self)

    def on_message(self, message: str | bytes) -> None:
        if self.conn is not None:
            self.gateway._on_ws_message(self.conn, message)

    def on_close(self) -> None:
        if self.conn is not None:
            self.gateway._closed(self.conn)


class _RpcHandler(tornado.web.RequestHandler):
    """``POST /v1/rpc/<method>`` (body = params) and legacy ``POST /rpc`` (body = frame)."""

    def initialize(self, gateway: ReplayGateway) -> None:
        self.gateway = gateway

    def check_xsrf_cookie(self) -> None:
        return None

    def post(self, method: str | None = None) -> None:
        status, body, headers = self.gateway._http_rpc(method, self.request)
        self.set_status(status)
        for key, value in headers.items():
            self.set_header(key, value)
        self.finish(body)


class _EventsHandler(tornado.web.RequestHandler):
    """``GET /v1/api/events?runId=&afterSeq=&limit=``: a run's event history, with timestamps."""

    def initialize(self, gateway: ReplayGateway) -> None:
        self.gateway = gateway

    def get(self) -> None:
        status, body = self.gateway._http_events(
            self.get_query_argument("runId", ""),
            self.get_query_argument("afterSeq", None),
            self.get_query_argument("limit", None),
            _bearer(self.request.headers),
        )
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(body)


class _TokenUsageHandler(tornado.web.RequestHandler):
    """``GET /v1/api/runs/<runId>/token-usage``: ``listRunTokenUsage`` as REST (``{ok, data}``)."""

    def initialize(self, gateway: ReplayGateway) -> None:
        self.gateway = gateway

    def get(self, run_id: str) -> None:
        status, body = self.gateway._http_rest(
            "listRunTokenUsage", {"runId": tornado.escape.url_unescape(run_id)}, _bearer(self.request.headers)
        )
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(body)


class _HealthHandler(tornado.web.RequestHandler):
    def get(self) -> None:
        self.set_header("Content-Type", "application/json")
        self.finish('{"ok":true}')


class ReplayGateway:
    """Serves recorded runs as live ones over the real Gateway protocol (see the module doc).

    ``token``: the one accepted token (``None``: no auth, every caller is ``admin``).
    ``read_token``: a second token with only ``run:read`` + ``observability:read``.
    ``speed``: recorded time is divided by it. ``loop``: a finished run is started again
    as a new run after ``loop_delay_s``. ``heartbeat_ms``: ``tick`` interval.
    ``max_gap_ms``: longest recorded silence that is played as is (longer ones shrink).
    ``auto_rewinds``: recorded run id -> :class:`~inspector.replay.playback.AutoRewind`.
    ``keep_finished``: how many finished runs ``listRuns`` keeps.
    """

    def __init__(
        self,
        runs: Iterable[RecordedRun],
        *,
        token: str | None = None,
        read_token: str | None = None,
        speed: float = 1.0,
        loop: bool = False,
        host: str = "127.0.0.1",
        port: int = 0,
        heartbeat_ms: int = DEFAULT_HEARTBEAT_MS,
        loop_delay_s: float = 2.0,
        max_gap_ms: float | None = 5_000.0,
        auto_rewinds: Mapping[str, AutoRewind] | None = None,
        keep_finished: int = 20,
        auth_deadline_ms: int = AUTH_DEADLINE_MS,
    ) -> None:
        #: The playback clock and the replays' state.
        self.player = Player(
            runs, self, speed=speed, loop=loop, loop_delay_s=loop_delay_s, max_gap_ms=max_gap_ms,
            auto_rewinds=auto_rewinds, keep_finished=keep_finished,
        )
        self.methods = RpcMethods(self.player)
        self.token = token
        self.read_token = read_token
        self.host = host
        self.port = port
        self.heartbeat_ms = heartbeat_ms
        self.auth_deadline_ms = auth_deadline_ms
        self.connections_total = 0
        self.state_version = 0
        self.started_ms = now_ms()
        self._connections: set[_Connection] = set()
        self._server: tornado.httpserver.HTTPServer | None = None

    @property
    def speed(self) -> float:
        return self.player.speed

    @property
    def loop(self) -> bool:
        return self.player.loop

    @property
    def auto_rewinds(self) -> dict[str, AutoRewind]:
        return self.player.auto_rewinds

    # ------------------------------------------------------------ lifecycle

    @property
    def url(self) -> str:
        """``http://host:port`` (valid after :meth:`start`)."""
        return f"http://{self.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}/"

    async def start(self) -> None:
        """Listen (port 0 picks a free port, see :attr:`port`) and start every run."""
        app = tornado.web.Application(
            [
                (r"/", _SocketHandler, {"gateway": self}),
                (r"/health", _HealthHandler),
                (r"/v1/api/events", _EventsHandler, {"gateway": self}),
                (r"/v1/api/runs/([^/]+)/token-usage", _TokenUsageHandler, {"gateway": self}),
                (r"/v1/rpc/([^/]+)", _RpcHandler, {"gateway": self}),
                (r"/rpc", _RpcHandler, {"gateway": self}),
            ],
            websocket_max_message_size=16 * 1024 * 1024,
            log_function=_log_request,
        )
        sockets = tornado.netutil.bind_sockets(self.port, self.host)
        self.port = int(sockets[0].getsockname()[1])
        self._server = tornado.httpserver.HTTPServer(app)
        self._server.add_sockets(sockets)
        self.started_ms = now_ms()
        self.player.start()

    async def stop(self) -> None:
        """Stop the runs, close every socket (1001) and stop listening."""
        self.player.halt()
        for conn in list(self._connections):
            conn.close(1001, "replay gateway stopping")
            self._closed(conn)
        if self._server is not None:
            self._server.stop()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.close_all_connections(), 2.0)
            self._server = None
        await self.player.wait_halted()

    async def __aenter__(self) -> ReplayGateway:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ------------------------------------------------------------ introspection

    @property
    def active_connections(self) -> int:
        return len(self._connections)

    @property
    def streams_total(self) -> int:
        """How many ``streamDevTools`` streams were ever opened."""
        return self.methods.streams_total

    def run_ids(self) -> list[str]:
        """Every run the replay knows (running and kept finished), oldest first."""
        return list(self.player.runs)

    def run_status(self, run_id: str) -> str:
        return self._live(run_id).status

    def run_done(self, run_id: str) -> bool:
        """Has the run released its last recorded event (and not been rewound since)?"""
        return self._live(run_id).done

    def run_seq(self, run_id: str) -> int:
        """The seq of the latest released frame."""
        return self._live(run_id).seq

    def recorded_id(self, run_id: str) -> str:
        """The recorded run a replayed run plays."""
        return self._live(run_id).recorded.run_id

    def _live(self, run_id: str) -> LiveRun:
        return self.player.live(run_id)

    def _streams_on(self, run_id: str) -> list[tuple[_Connection, str]]:
        return [(c, sid) for c in list(self._connections) for sid, rid in list(c.streams.items()) if rid == run_id]

    # ------------------------------------------------------------ what the player releases

    def run_event(self, run_id: str, event: str, payload: Mapping[str, Any]) -> None:
        """A run event to every connection that admits the run (or streams it).

        A connection with a ``streamRunEvents`` stream on the run gets the event wrapped as
        ``run.event`` (numbered per run) instead of bare, as the Gateway does.
        """
        self.state_version += 1
        live = self.player.runs.get(run_id)
        frame = live.record_event(event, payload, self.state_version) if live is not None else None
        for conn in list(self._connections):
            if conn.grant is None:
                continue
            wrapped = [sid for sid, rid in conn.run_event_streams.items() if rid == run_id]
            if wrapped and frame is not None:
                for stream_id in wrapped:
                    conn.send_event("run.event", {"streamId": stream_id, **frame})
            elif conn.admits(run_id) or run_id in conn.streams.values():
                conn.send_event(event, payload)

    def devtools_text(self, run_id: str, text: str) -> None:
        """A DevTools event (encoded JSON) to every ``streamDevTools`` stream on the run."""
        for conn, stream_id in self._streams_on(run_id):
            conn.send_devtools(stream_id, run_id, text)

    # ------------------------------------------------------------ connections

    def _opened(self, handler: _SocketHandler) -> _Connection:
        conn = _Connection(self, handler)
        self._connections.add(conn)
        self.connections_total += 1
        conn.send_event("connect.challenge", {"nonce": str(uuid.uuid4()), "ts": now_ms()})
        conn.deadline = asyncio.get_running_loop().call_later(self.auth_deadline_ms / 1000, self._deadline, conn)
        return conn

    def _deadline(self, conn: _Connection) -> None:
        if conn.grant is None and not conn.closed:
            conn.abort()
            self._closed(conn)

    def _closed(self, conn: _Connection) -> None:
        if conn.closed:
            return
        conn.closed = True
        self._connections.discard(conn)
        conn.streams.clear()
        if conn.heartbeat is not None:
            conn.heartbeat.cancel()
        if conn.deadline is not None:
            conn.deadline.cancel()

    async def _heartbeat(self, conn: _Connection) -> None:
        while not conn.closed:
            await asyncio.sleep(self.heartbeat_ms / 1000)
            conn.send_event("tick", {"ts": now_ms()})

    def _on_ws_message(self, conn: _Connection, message: str | bytes) -> None:
        try:
            frame = decode_frame(message)
        except FrameDecodeError as exc:
            conn.send_response(error_response("invalid", rpc_error("INVALID_FRAME", str(exc))))
            return
        if not isinstance(frame, RequestFrame):
            conn.send_response(error_response("invalid", rpc_error("INVALID_FRAME", "expected a req frame")))
            return
        if frame.method == "connect":
            self._connect(conn, frame)
            return
        if conn.grant is None:
            conn.send_response(error_response(frame.id, rpc_error("UNAUTHORIZED", "Connect first")))
            return
        response, after = self.methods.call(frame, conn.grant, conn)
        conn.send_response(response)
        if after is not None:
            after()

    def _connect(self, conn: _Connection, frame: RequestFrame) -> None:
        params = frame.params
        if not isinstance(params.get("minProtocol"), int | float) or not isinstance(
            params.get("maxProtocol"), int | float
        ) or not params.get("client"):
            error = rpc_error("INVALID_REQUEST", "Connect request is missing protocol negotiation fields")
            conn.send_response(error_response(frame.id, error))
            return
        if params["minProtocol"] > PROTOCOL or params["maxProtocol"] < PROTOCOL:
            error = rpc_error("PROTOCOL_UNSUPPORTED", f"Gateway protocol {PROTOCOL} is not supported by the client")
            conn.send_response(error_response(frame.id, error))
            return
        auth = params.get("auth")
        token = auth.get("token") if isinstance(auth, Mapping) else None
        if not isinstance(token, str):
            token = _bearer(conn.handler.request.headers)
        grant = self._authenticate(token)
        if isinstance(grant, GatewayRpcError):
            conn.send_response(error_response(frame.id, grant))
            if conn.grant is None:
                conn.close(1008, "authentication failed")
            return
        conn.grant = grant
        subscribe = params.get("subscribe")
        conn.subscribed = {s for s in subscribe if isinstance(s, str)} if isinstance(subscribe, list) else None
        if conn.deadline is not None:
            conn.deadline.cancel()
        if conn.heartbeat is None:
            conn.heartbeat = asyncio.get_running_loop().create_task(self._heartbeat(conn))
        conn.send_response(ResponseFrame(id=frame.id, ok=True, payload=self._hello(grant)))

    def _authenticate(self, token: str | None) -> Grant | GatewayRpcError:
        if self.token is None and self.read_token is None:
            return Grant("admin", ("*",), None, None, None)
        if not token:
            return rpc_error("UNAUTHORIZED", "A bearer token is required")
        if token == self.token:
            return Grant("admin", ("*",), "user:op", "replay-op", token)
        if token == self.read_token:
            return Grant("viewer", READ_SCOPES, "user:viewer", "replay-viewer", token)
        return rpc_error("UNAUTHORIZED", "Invalid token")

    def _hello(self, grant: Grant) -> dict[str, Any]:
        active = [live.row(detailed=False) for live in self.player.runs.values() if live.status in _ACTIVE_STATUSES]
        return {
            "protocol": PROTOCOL,
            "features": ["streaming", "runs"],
            "identity": {"workspaceRoot": None, "backend": "replay", "version": None, "pid": os.getpid(),
                         "startedAtMs": self.started_ms},
            "policy": {"heartbeatMs": self.heartbeat_ms},
            "auth": {"sessionToken": str(uuid.uuid4()), "role": grant.role, "scopes": list(grant.scopes),
                     "userId": grant.user_id, "tokenId": grant.token_id},
            "snapshot": {"runs": active, "approvals": approval_rows(self.player.runs, None), "stateVersion": self.state_version},
        }

    # ------------------------------------------------------------ HTTP

    def _http_rpc(
        self, method: str | None, request: tornado.httputil.HTTPServerRequest
    ) -> tuple[int, str, dict[str, str]]:
        request_id = request.headers.get("x-request-id") or str(uuid.uuid4())
        json_headers = {"Content-Type": "application/json"}
        try:
            body = json.loads(request.body or b"{}")
        except ValueError:
            body = None
        if method is None and isinstance(body, Mapping):
            method = body.get("method") if isinstance(body.get("method"), str) else None
            request_id = str(body.get("id") or request_id)
            body = body.get("params") if isinstance(body.get("params"), Mapping) else {}
        injected = self._intercept_http(method, request_id)
        if injected is not None:
            return injected
        grant = self._authenticate(_bearer(request.headers))
        if isinstance(grant, GatewayRpcError):
            return http_status_for(grant.raw_code), encode_frame(error_response(request_id, grant)), json_headers
        if not isinstance(body, Mapping) or not method:
            error = rpc_error("INVALID_REQUEST", "RPC body must be a JSON object")
            return 400, encode_frame(error_response(request_id, error)), json_headers
        response, after = self.methods.call(RequestFrame(request_id, method, dict(body)), grant, None)
        if after is not None:
            after()
        status = 200 if response.ok else http_status_for(response.error.raw_code if response.error else "")
        return status, encode_frame(response), json_headers

    def _http_rest(self, method: str, params: Mapping[str, Any], token: str | None) -> tuple[int, str]:
        """A REST twin of an RPC method: the Gateway's ``{ok: true, data}`` or ``{ok: false, error}``."""
        grant = self._authenticate(token)
        if isinstance(grant, GatewayRpcError):
            code, message = grant.raw_code, grant.message
        else:
            response, _ = self.methods.call(RequestFrame(str(uuid.uuid4()), method, dict(params)), grant, None)
            if response.ok or response.error is None:
                return 200, json.dumps({"ok": True, "data": response.payload})
            code, message = response.error.raw_code, response.error.message
        return http_status_for(code), json.dumps({"ok": False, "error": {"code": code, "message": message}})

    def _http_events(self, run_id: str, after: str | None, limit: str | None, token: str | None) -> tuple[int, str]:
        def error(status: int, code: str, message: str) -> tuple[int, str]:
            return status, json.dumps({"ok": False, "error": {"code": code, "message": message}})

        grant = self._authenticate(token)
        if isinstance(grant, GatewayRpcError):
            return error(http_status_for(grant.raw_code), grant.raw_code, grant.message)
        live = self.player.runs.get(run_id)
        if live is None:
            return error(404, "NOT_FOUND", f"Run not found: {run_id}")
        try:
            after_seq = int(after) if after is not None else -1
            count = int(limit) if limit is not None else 100
        except ValueError:
            return error(400, "INVALID_INPUT", "afterSeq and limit must be integers")
        rows = [r for r in live.history_rows if r["seq"] > after_seq][: max(1, count)]
        return 200, json.dumps({"ok": True, "data": rows})

    def _intercept_http(self, method: str | None, request_id: str) -> tuple[int, str, dict[str, str]] | None:
        """An answer ``(status, body, headers)`` to an HTTP call before it is authenticated.

        ``None`` (here, always): the call goes on. The extension point for test doubles that
        play a rate limiter or a failing proxy in front of the Gateway.
        """
        return None


def _log_request(handler: tornado.web.RequestHandler) -> None:
    """Access log at debug level: a test that provokes 4xx on purpose should not spam warnings."""
    request = handler.request
    log.debug("%d %s %s", handler.get_status(), request.method, request.uri)


def _bearer(headers: tornado.httputil.HTTPHeaders) -> str | None:
    value = headers.get("Authorization", "")
    if value.lower().startswith("bearer "):
        return value[7:].strip() or None
    return headers.get("x-smithers-key") or None


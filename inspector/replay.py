"""A replay Gateway: the Smithers Gateway protocol on loopback, driven by recorded runs.

:class:`ReplayGateway` serves WebSocket (``/``) and HTTP (``POST /v1/rpc/<method>``,
``GET /health``) on one tornado port, and plays :class:`~inspector.transcript.RecordedRun`
values back as *live* runs: their DevTools events and run events are released over time
(recorded timing divided by ``speed``), so a dashboard connected to it sees exactly what
it would see from a real Gateway while the run executes. Uses:

- inspect a recorded run offline (``smithers-dashboard`` pointed at a replay);
- the dashboard's built-in demo (:func:`serve_demo`: looping runs, one rewound mid-run);
- tests: every fault a real deployment can produce is one method call away (see
  *Fault injection* below), without a Node toolchain or timing luck.

What it mirrors from ``gateway.js`` (0.32): the ``connect.challenge`` / ``connect``
handshake (other methods first get ``UNAUTHORIZED``; a bad token gets the error and then
close 1008), ``tick`` heartbeats, per-connection envelope ``seq`` and a global
``stateVersion``, run events delivered to every connection whose ``subscribe`` filter
admits the run, ``streamDevTools`` replies and ``devtools.event``/``devtools.error``
frames, the HTTP status mapping of error codes, scope checks (``FORBIDDEN`` with
``requiredScope``), the error codes and messages of the fixtures, and ``rewindRun``
(``run.time_travel_jumped``, then a snapshot with a *lower* seq, then re-execution).

A run's ``getRun`` says ``running`` (or ``waiting-approval`` while a recorded approval
gate is open) until its last recorded event is out, then the recorded final status; its
``summary`` counts node states per (nodeId, iteration) from the node events released so
far, as ``countNodesByState`` does; scores and node outputs appear as the replay reaches
them; every recorded timestamp is moved onto the replay's wall clock and every recorded
run id onto the replay's. ``launchRun {workflow}`` starts another replay of a recorded
run of that workflow.

Deliberate differences: a subscription always starts with a snapshot of the latest
released frame (the real Gateway may start from an older rebaseline frame and replay
deltas; both are valid streams); without a configured token every caller is an
``admin`` (the real Gateway's no-auth callers cannot rewind, which would make the demo's
rewind button useless); ``getDevToolsSnapshot {frameNo}`` returns the tree as it really
was at that frame (the real one pastes *current* task states onto old frames);
``submitApproval`` is not served (a recorded gate opens when the recording says so).

Fault injection (public, for tests): :meth:`ReplayGateway.drop_connections`,
:meth:`~ReplayGateway.send_raw`, :meth:`~ReplayGateway.inject_devtools_event`,
:meth:`~ReplayGateway.devtools_error`, :meth:`~ReplayGateway.pause` /
:meth:`~ReplayGateway.resume`, :meth:`~ReplayGateway.set_token`,
:attr:`~ReplayGateway.rpc_failures`, and the counters ``connections_total``,
``active_connections``, ``streams_total``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import json
import logging
import math
import os
import re
import socket
import struct
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from typing import Any, Final, TypeAlias

import tornado.httpserver
import tornado.httputil
import tornado.netutil
import tornado.web
import tornado.websocket

from .errors import DevToolsError, FrameDecodeError, GatewayRpcError
from .protocol import (
    ErrorInfo,
    EventFrame,
    RequestFrame,
    ResponseFrame,
    decode_frame,
    encode_frame,
)
from .transcript import RecordedRun, extract_runs, merge_runs, parse_transcript, split_sessions
from .tree import DevToolsTree, copy_json

__all__ = [
    "DEMO_TRANSCRIPTS",
    "AutoRewind",
    "ReplayGateway",
    "demo_runs",
    "http_status_for",
    "serve_demo",
]

log = logging.getLogger(__name__)

PROTOCOL: Final = 1
DEFAULT_HEARTBEAT_MS: Final = 15_000
AUTH_DEADLINE_MS: Final = 10_000
READ_SCOPES: Final = ("run:read", "observability:read")

#: Transcripts bundled in ``inspector/demo_data`` that :func:`demo_runs` serves.
DEMO_TRANSCRIPTS: Final = (
    "demo-run.jsonl",
    "rich-run.jsonl",
    "rewind-run.jsonl",
    "doomed-run.jsonl",
    "wide-run.jsonl",
    "gated-run.jsonl",
)

_RUN_ID_PATTERN: Final = re.compile(r"^[a-z0-9_-][a-z0-9_.-]{0,63}$")
_NODE_ID_PATTERN: Final = re.compile(r"^[a-zA-Z0-9:_-]{1,128}$")
_MAX_INT32: Final = 2**31 - 1

#: Legacy method names the real Gateway still answers (``gateway/src/rpc/index.js``).
METHOD_ALIASES: Final[Mapping[str, str]] = {
    "runs.create": "launchRun",
    "runs.get": "getRun",
    "runs.list": "listRuns",
    "jumpToFrame": "rewindRun",
    "devtools.jumpToFrame": "rewindRun",
    "devtools.getNodeOutput": "getNodeOutput",
    "devtools.getNodeDiff": "getNodeDiff",
    "workflows.list": "listWorkflows",
    "approvals.list": "listApprovals",
}

#: The scope each method needs (``requiredScope`` in the real RPC catalogue).
METHOD_SCOPES: Final[Mapping[str, str]] = {
    "launchRun": "run:write",
    "rewindRun": "run:admin",
    "submitApproval": "approval:submit",
    "listScores": "score:read",
    "streamDevTools": "observability:read",
    "getDevToolsSnapshot": "observability:read",
}
_RUN_SCOPE_ORDER: Final = ("run:read", "run:write", "run:admin")

#: ``statusForRpcError`` of ``gateway.js``: the HTTP status of an error code.
_HTTP_STATUS: Final[Mapping[str, int]] = {
    **dict.fromkeys(("UNAUTHORIZED", "Unauthorized"), 401),
    **dict.fromkeys(("FORBIDDEN", "Forbidden"), 403),
    **dict.fromkeys(("NOT_FOUND", "METHOD_NOT_FOUND"), 404),
    **dict.fromkeys(
        (
            "INVALID_REQUEST", "InvalidRequest", "INVALID_FRAME", "INVALID_INPUT", "InvalidInput",
            "PROTOCOL_UNSUPPORTED", "InvalidRunId", "InvalidNodeId", "InvalidIteration", "InvalidDelta",
            "InvalidFrameNo", "ConfirmationRequired", "FrameOutOfRange", "SeqOutOfRange",
        ),
        400,
    ),
    **dict.fromkeys(
        ("RunNotFound", "ScoreNotFound", "NodeNotFound", "AttemptNotFound", "IterationNotFound", "NodeHasNoOutput"),
        404,
    ),
    **dict.fromkeys(
        ("AttemptNotFinished", "Busy", "AlreadyDecided", "RUN_NOT_ACTIVE", "RUN_ACTIVE", "CONFLICT"), 409
    ),
    **dict.fromkeys(("DiffTooLarge", "PayloadTooLarge", "PAYLOAD_TOO_LARGE"), 413),
    **dict.fromkeys(("RateLimited", "BackpressureDisconnect", "QUOTA_EXCEEDED"), 429),
}

#: The error a :attr:`ReplayGateway.rpc_failures` status answers with (5xx proxies send text).
_FAILURE_CODES: Final[Mapping[int, tuple[str, str]]] = {
    400: ("INVALID_REQUEST", "Injected bad request"),
    401: ("UNAUTHORIZED", "Invalid token"),
    403: ("FORBIDDEN", "Missing required scope"),
    404: ("NOT_FOUND", "Not found"),
    409: ("Busy", "The Gateway is busy; try again"),
    413: ("PayloadTooLarge", "Payload too large"),
    429: ("RateLimited", "Rate limit exceeded; retry later"),
    500: ("SERVER_ERROR", "Injected server error"),
}

#: The node state a ``node.*`` event leaves in the Gateway's node table.
_NODE_EVENT_STATES: Final[Mapping[str, str]] = {
    "pending": "pending",
    "started": "in-progress",
    "retrying": "in-progress",
    "finished": "finished",
    "failed": "failed",
    "skipped": "skipped",
    "cancelled": "cancelled",
    "waiting_approval": "waiting-approval",
    "waiting_event": "waiting-event",
    "waiting_timer": "waiting-timer",
}

#: Run statuses a hello ``snapshot.runs`` lists (``buildSnapshot``).
_ACTIVE_STATUSES: Final = frozenset({"running", "waiting-approval", "waiting-event", "waiting-timer", "paused"})


#: How many recent events per run ``streamRunEvents`` can replay (the Gateway keeps a window too).
RUN_EVENT_WINDOW = 2000


def http_status_for(code: str) -> int:
    """The HTTP status the real Gateway gives an error code (``statusForRpcError``)."""
    return _HTTP_STATUS.get(code, 500)


def _now_ms() -> int:
    return int(time.time() * 1000)


def _iso(ms: float) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{int(ms) % 1000:03d}Z"


def _run_state_name(status: str) -> str:
    return "succeeded" if status == "finished" else status


def _swap_run_id(value: Any, old: str, new: str) -> Any:
    """A copy of a JSON value with the recorded run id replaced by the replay's."""
    if old == new:
        return copy_json(value)
    if isinstance(value, str):
        return value.replace(old, new) if old in value else value
    if isinstance(value, Mapping):
        return {k: _swap_run_id(v, old, new) for k, v in value.items()}
    if isinstance(value, list):
        return [_swap_run_id(v, old, new) for v in value]
    return value


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _as_int(value: object, default: int) -> int:
    """``value`` if it is a real integer (not a bool), else ``default``."""
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _rpc_error(code: str, message: str, **details: Any) -> GatewayRpcError:
    scope = details.pop("requiredScope", None)
    return GatewayRpcError(code, message, required_scope=scope, details=details or None)


def _error_response(request_id: str, error: GatewayRpcError) -> ResponseFrame:
    info = ErrorInfo(
        code=error.code,
        raw_code=error.raw_code,
        message=error.message,
        required_scope=error.required_scope,
        details=dict(error.details) if isinstance(error.details, Mapping) else {},
    )
    return ResponseFrame(id=request_id, ok=False, error=info)


def _recorded_error(error: Mapping[str, Any] | None, old: str, new: str) -> GatewayRpcError:
    body = _swap_run_id(dict(error or {}), old, new)
    code = str(body.pop("code", "SERVER_ERROR"))
    message = str(body.pop("message", ""))
    body.pop("version", None)
    return _rpc_error(code, message, **body)


# --------------------------------------------------------------------------- scripts


@dataclass(frozen=True, slots=True)
class AutoRewind:
    """Rewind every replay of a run once, the way an operator would mid-run.

    When ``at_fraction`` of the recording's duration has played, the replay rewinds to
    ``to_frame_no`` (default: a third of the frames released so far, at least 1) and
    re-executes from there. :func:`serve_demo` uses it so the demo always shows a rewind.
    """

    at_fraction: float = 0.6
    to_frame_no: int | None = None


@dataclass(frozen=True, slots=True)
class _Step:
    """One thing a run does at ``t_ms``: a DevTools event or a run event."""

    t_ms: float
    devtools: Mapping[str, Any] | None = None
    name: str = ""
    payload: Mapping[str, Any] | None = None


class _Script:
    """A recorded run as one timeline, shared by every replay of it."""

    def __init__(self, recorded: RecordedRun) -> None:
        if not recorded.replayable:
            raise ValueError(f"run {recorded.run_id} has no DevTools events to replay")
        self.recorded = recorded
        steps = [_Step(e.t_ms, devtools=e.event) for e in recorded.devtools]
        steps += [_Step(e.t_ms, name=e.event, payload=e.payload) for e in recorded.run_events]
        steps.sort(key=lambda s: s.t_ms)
        self.steps: tuple[_Step, ...] = tuple(steps)
        self.duration_ms = recorded.duration_ms
        self._delta_text: dict[int, str] = {}

    def delta_text(self, index: int) -> str:
        """The JSON of a delta step (deltas carry no run id, so every replay shares it)."""
        text = self._delta_text.get(index)
        if text is None:
            event = self.steps[index].devtools
            text = self._delta_text[index] = json.dumps(event, separators=(",", ":"))
        return text


# --------------------------------------------------------------------------- live runs


class _LiveRun:
    """One replay of a recorded run: where it is, and everything derived from that."""

    def __init__(self, script: _Script, run_id: str, speed: float, auto_rewind: AutoRewind | None) -> None:
        self.script = script
        self.recorded = script.recorded
        self.run_id = run_id
        self.speed = speed
        self.auto_rewind = auto_rewind
        self.auto_rewound = False
        self.created_ms = _now_ms()
        self.finished_ms: int | None = None
        self.done = False
        self.cursor = 0
        self.clock_ms = 0.0
        self.tree = DevToolsTree()
        self.frames: dict[int, Mapping[str, Any]] = {}
        self.frame_step: dict[int, int] = {}
        self.checkpoints: dict[int, Mapping[str, Any]] = {}
        self.nodes: dict[tuple[str, int], str] = {}
        self.iterations: dict[str, int] = {}
        self.approvals: dict[tuple[str, int], int] = {}
        self.task: asyncio.Task[None] | None = None
        self.loop_spawned = False
        #: The run-event window ``streamRunEvents`` replays, numbered per run like the Gateway's.
        self.event_window: collections.deque[dict[str, Any]] = collections.deque(maxlen=RUN_EVENT_WINDOW)
        self.event_seq = 0
        #: The durable history ``GET /v1/api/events`` serves (timestamps, Gateway-style names).
        self.history_rows: collections.deque[dict[str, Any]] = collections.deque(maxlen=50_000)

    def record_event(self, event: str, payload: Mapping[str, Any], state_version: int) -> dict[str, Any]:
        """Number a run event and keep it in the window (what ``streamRunEvents`` replays)."""
        self.event_seq += 1
        frame = {"apiVersion": "v1", "type": "RunEvent", "runId": self.run_id, "event": event,
                 "payload": dict(payload), "seq": self.event_seq, "stateVersion": state_version}
        self.event_window.append(frame)
        name = "".join(part.capitalize() for part in re.split(r"[._]", event))
        self.history_rows.append({"runId": self.run_id, "seq": self.event_seq - 1, "event": name,
                                  "payload": {"type": name, **payload}, "timestampMs": _now_ms()})
        return frame

    # ------------------------------------------------------------ state

    @property
    def seq(self) -> int:
        return self.tree.seq or 0

    @property
    def status(self) -> str:
        """``running`` until the last recorded event is out, then the recorded final status."""
        if self.done:
            return self.recorded.final_status
        return "waiting-approval" if self.approvals else "running"

    def wall_for(self, recorded_epoch_ms: float) -> int:
        """A recorded wall-clock time moved onto this replay's clock."""
        origin = self.recorded.origin_epoch_ms
        if origin is None:
            return self.finished_ms or self.created_ms
        return int(self.created_ms + (recorded_epoch_ms - origin) / self.speed)

    def reached(self, recorded_epoch_ms: float) -> bool:
        """Has the replay played past a recorded wall-clock moment?"""
        origin = self.recorded.origin_epoch_ms
        if self.done:
            return True
        return origin is not None and recorded_epoch_ms - origin <= self.clock_ms

    def summary(self) -> dict[str, int]:
        """Node counts by state, like ``countNodesByState``: one per (nodeId, iteration)."""
        if self.nodes:
            return dict(Counter(self.nodes.values()))
        return self.tree.state_counts()

    def run_state(self) -> dict[str, Any]:
        return {"runId": self.run_id, "computedAt": _iso(_now_ms()), "state": _run_state_name(self.status)}

    # ------------------------------------------------------------ applying steps

    def apply_devtools(self, index: int, event: Mapping[str, Any]) -> bool:
        """Move the tree on by one recorded event and keep the frame history straight."""
        previous = self.tree.seq
        try:
            self.tree.apply(event)
        except DevToolsError as exc:
            log.warning("replay %s: recorded event %d does not apply: %s", self.run_id, index, exc)
            return False
        seq = self.seq
        if previous is not None and seq <= previous:
            self.truncate_history(seq)
        self.frames[seq] = event
        self.frame_step[seq] = index
        if event.get("kind") == "snapshot":
            body = event.get("snapshot")
            if isinstance(body, Mapping):
                self.checkpoints[seq] = body
        elif seq - max(self.checkpoints, default=-1_000) >= 100:
            self.checkpoints[seq] = self.tree.snapshot()
        return True

    def truncate_history(self, seq: int) -> None:
        """Forget frames after ``seq``: a rewind deletes them, as the Gateway's DB does."""
        for store in (self.frames, self.frame_step, self.checkpoints):
            for key in [k for k in store if k > seq]:
                del store[key]

    def track(self, name: str, payload: Mapping[str, Any]) -> None:
        """Follow node states, approvals and rewinds from one run event."""
        node_id = payload.get("nodeId")
        if name.startswith("node.") and isinstance(node_id, str):
            it = _as_int(payload.get("iteration"), self.iterations.get(node_id, 0))
            self.iterations[node_id] = it
            state = _NODE_EVENT_STATES.get(name[5:]) or payload.get("state")
            if isinstance(state, str):
                self.nodes[(node_id, it)] = state
            if state != "waiting-approval":
                # A gate whose node moves on was decided, even if approval.decided comes later.
                self.approvals.pop((node_id, it), None)
        elif name == "approval.requested" and isinstance(node_id, str):
            self.approvals.setdefault((node_id, _as_int(payload.get("iteration"), 0)), _now_ms())
        elif name == "approval.decided" and isinstance(node_id, str):
            self.approvals.pop((node_id, _as_int(payload.get("iteration"), 0)), None)

    def retrack(self, upto: int) -> None:
        """Recompute node states and approvals from the steps before ``upto`` (after a rewind)."""
        self.nodes.clear()
        self.iterations.clear()
        self.approvals.clear()
        for step in self.script.steps[:upto]:
            if step.payload is not None:
                self.track(step.name, step.payload)

    # ------------------------------------------------------------ frames

    def frame_snapshot(self, frame_no: int) -> dict[str, Any]:
        """The tree as it was at ``frame_no`` in the current history."""
        if self.tree.empty:
            return self.current_snapshot()
        if frame_no == self.seq:
            snap = self.tree.snapshot()
        else:
            base = max(k for k in self.checkpoints if k <= frame_no)
            tree = DevToolsTree({"version": 1, "kind": "snapshot", "snapshot": self.checkpoints[base]})
            for seq in sorted(k for k in self.frames if base < k <= frame_no):
                tree.apply(self.frames[seq])
            snap = tree.snapshot()
        snap["runId"] = self.run_id
        snap["runState"] = self.run_state()
        return snap

    def first_frame(self) -> int:
        return min(self.checkpoints, default=0)

    def snapshot_event_text(self, snapshot: Mapping[str, Any]) -> str:
        return json.dumps({"version": 1, "kind": "snapshot", "snapshot": snapshot}, separators=(",", ":"))

    def released_snapshot_text(self, event: Mapping[str, Any]) -> str:
        """A recorded snapshot event, addressed to this replay's run id and clock."""
        body = dict(event.get("snapshot") or {})
        body["runId"] = self.run_id
        if isinstance(body.get("runState"), Mapping):
            state = dict(body["runState"])
            state.update(runId=self.run_id, computedAt=_iso(_now_ms()))
            body["runState"] = state
        return self.snapshot_event_text(body)

    def current_snapshot(self) -> dict[str, Any]:
        """What a new subscriber starts from (an empty root before the first frame)."""
        if self.tree.empty:
            root = {"id": 0, "type": "workflow", "name": "(empty)", "props": {}, "children": [], "depth": 0}
            return {"version": 1, "runId": self.run_id, "frameNo": 0, "seq": 0, "root": root,
                    "runState": self.run_state()}
        snap = self.tree.snapshot()
        snap["runId"] = self.run_id
        snap["runState"] = self.run_state()
        return snap

    # ------------------------------------------------------------ rows

    def row(self, *, detailed: bool) -> dict[str, Any]:
        """The run's row as ``listRuns`` (or, ``detailed``, ``getRun``) gives it."""
        recorded = self.recorded.row
        row: dict[str, Any] = _swap_run_id(dict(recorded), self.recorded.run_id, self.run_id) if recorded else {
            "runId": self.run_id, "parentRunId": None, "workflowName": self.recorded.workflow,
            "workflowPath": None, "workflowHash": None, "heartbeatAtMs": None, "errorJson": None,
            "configJson": None, "vcsType": None, "workflowKey": self.recorded.workflow, "system": False,
        }
        for key in ("summary", "runState", "startedBy"):
            row.pop(key, None)
        row.update(
            runId=self.run_id,
            status=self.status,
            createdAtMs=self.created_ms,
            startedAtMs=self.created_ms,
            finishedAtMs=self.finished_ms if self.done else None,
        )
        if not self.done:
            row["errorJson"] = None
        row.setdefault("workflowKey", row.get("workflowName"))
        row.setdefault("system", False)
        if detailed:
            row["summary"] = self.summary()
            row["runState"] = self.run_state()
        return row


# --------------------------------------------------------------------------- connections


@dataclass(frozen=True, slots=True)
class _Grant:
    role: str
    scopes: tuple[str, ...]
    user_id: str | None
    token_id: str | None
    token: str | None


def _has_scope(scopes: Sequence[str], required: str) -> bool:
    if "*" in scopes or required in scopes:
        return True
    if required in _RUN_SCOPE_ORDER:
        rank = _RUN_SCOPE_ORDER.index(required)
        return any(s in _RUN_SCOPE_ORDER and _RUN_SCOPE_ORDER.index(s) >= rank for s in scopes)
    return False


class _Connection:
    """One WebSocket client: its auth, envelope counter, streams and timers."""

    def __init__(self, gateway: ReplayGateway, handler: _SocketHandler) -> None:
        self.gateway = gateway
        self.handler = handler
        self.id = str(uuid.uuid4())
        self.grant: _Grant | None = None
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


def _log_crash(task: asyncio.Task[None]) -> None:
    """A run driver that dies of a bug must say so, not leave a run silently frozen."""
    if not task.cancelled() and task.exception() is not None:
        log.error("replay driver %s crashed", task.get_name(), exc_info=task.exception())


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


class _HealthHandler(tornado.web.RequestHandler):
    def get(self) -> None:
        self.set_header("Content-Type", "application/json")
        self.finish('{"ok":true}')


# --------------------------------------------------------------------------- the gateway

_After: TypeAlias = Callable[[], None] | None
_Handler: TypeAlias = Callable[[Mapping[str, Any], _Grant, _Connection | None], tuple[Any, _After]]


class ReplayGateway:
    """Serves recorded runs as live ones over the real Gateway protocol (see the module doc).

    ``token``: the one accepted token (``None``: no auth, every caller is ``admin``).
    ``read_token``: a second token with only ``run:read`` + ``observability:read``.
    ``speed``: recorded time is divided by it. ``loop``: a finished run is started again
    as a new run after ``loop_delay_s``. ``heartbeat_ms``: ``tick`` interval.
    ``max_gap_ms``: longest recorded silence that is played as is (longer ones shrink).
    ``auto_rewinds``: recorded run id -> :class:`AutoRewind`. ``keep_finished``: how many
    finished runs ``listRuns`` keeps.
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
        if not speed > 0:
            raise ValueError("speed must be positive")
        self._scripts = [_Script(run) for run in runs]
        if not self._scripts:
            raise ValueError("a replay needs at least one recorded run")
        ids = [script.recorded.run_id for script in self._scripts]
        if len(set(ids)) != len(ids):
            raise ValueError("recorded runs must have distinct run ids (see transcript.merge_runs)")
        self.token = token
        self.read_token = read_token
        self.speed = speed
        self.loop = loop
        self.host = host
        self.port = port
        self.heartbeat_ms = heartbeat_ms
        self.loop_delay_s = loop_delay_s
        self.max_gap_ms = max_gap_ms
        self.auto_rewinds = dict(auto_rewinds or {})
        self.keep_finished = keep_finished
        self.auth_deadline_ms = auth_deadline_ms
        #: Injected HTTP failures: ``rpc_failures["getRun"] = [429, 502]`` makes the next two
        #: HTTP ``getRun`` calls answer 429 (a RateLimited frame) and 502 (proxy text).
        self.rpc_failures: dict[str, list[int]] = {}
        self.connections_total = 0
        self.streams_total = 0
        self.state_version = 0
        self.started_ms = _now_ms()
        self._runs: dict[str, _LiveRun] = {}
        self._finished: deque[str] = deque()
        self._connections: set[_Connection] = set()
        self._running = asyncio.Event()
        self._running.set()
        self._server: tornado.httpserver.HTTPServer | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping = False

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
        self.started_ms = _now_ms()
        for script in self._scripts:
            self._launch(script, script.recorded.run_id)

    async def stop(self) -> None:
        """Stop the runs, close every socket (1001) and stop listening."""
        self._stopping = True
        for live in self._runs.values():
            if live.task is not None:
                live.task.cancel()
        for task in list(self._tasks):
            task.cancel()
        for conn in list(self._connections):
            conn.close(1001, "replay gateway stopping")
            self._closed(conn)
        if self._server is not None:
            self._server.stop()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.close_all_connections(), 2.0)
            self._server = None
        pending = [t for t in [*self._tasks, *(r.task for r in self._runs.values())] if t is not None]
        await asyncio.gather(*pending, return_exceptions=True)

    async def __aenter__(self) -> ReplayGateway:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ------------------------------------------------------------ introspection

    @property
    def active_connections(self) -> int:
        return len(self._connections)

    def run_ids(self) -> list[str]:
        """Every run the replay knows (running and kept finished), oldest first."""
        return list(self._runs)

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

    def _live(self, run_id: str) -> _LiveRun:
        live = self._runs.get(run_id)
        if live is None:
            raise KeyError(run_id)
        return live

    # ------------------------------------------------------------ fault injection

    def pause(self) -> None:
        """Hold every run where it is (nothing is released until :meth:`resume`)."""
        self._running.clear()

    def resume(self) -> None:
        self._running.set()

    def drop_connections(self) -> int:
        """Cut every WebSocket abruptly (TCP reset, no close frame); returns how many."""
        dropped = list(self._connections)
        for conn in dropped:
            conn.abort()
            self._closed(conn)
        return len(dropped)

    def send_raw(self, text: str) -> int:
        """Send ``text`` verbatim (malformed JSON, a wrong frame...) to every DevTools subscriber."""
        targets = [c for c in self._connections if c.streams]
        for conn in targets:
            conn.send_text(text)
        return len(targets)

    def inject_devtools_event(self, run_id: str, event: Mapping[str, Any]) -> int:
        """Send a ``devtools.event`` with ``event`` to every stream on the run, without
        applying it to the replay's own tree (a delta with a gap, an unknown op...)."""
        text = json.dumps(event, separators=(",", ":"))
        count = 0
        for conn, stream_id in self._streams_on(run_id):
            conn.send_devtools(stream_id, run_id, text)
            count += 1
        return count

    def devtools_error(self, run_id: str, code: str = "BackpressureDisconnect", message: str | None = None) -> int:
        """End every stream on the run with ``devtools.error``; the sockets stay open."""
        text = message or {
            "BackpressureDisconnect": "Subscriber event queue exceeded 1000 buffered events.",
        }.get(code, f"DevTools stream failed: {code}")
        count = 0
        for conn, stream_id in self._streams_on(run_id):
            del conn.streams[stream_id]
            conn.send_event("devtools.error", {"streamId": stream_id, "runId": run_id,
                                               "error": {"code": code, "message": text}})
            count += 1
        return count

    def set_token(self, token: str | None) -> int:
        """Make ``token`` the only valid one; sockets authenticated otherwise get close 1008."""
        self.token = token
        revoked = [
            c for c in self._connections
            if c.grant is not None and c.grant.token is not None and c.grant.token not in (token, self.read_token)
        ]
        for conn in revoked:
            conn.close(1008, "token revoked")
        return len(revoked)

    def rewind(self, run_id: str, frame_no: int, *, caller: str = "user:replay") -> int:
        """Rewind a run as ``rewindRun`` would (no auth checks); returns the new frame number."""
        live = self._live(run_id)
        frame_no = self._check_frame(live, frame_no)
        self._rewind(live, frame_no, caller)()
        return frame_no

    def _streams_on(self, run_id: str) -> list[tuple[_Connection, str]]:
        return [(c, sid) for c in list(self._connections) for sid, rid in list(c.streams.items()) if rid == run_id]

    # ------------------------------------------------------------ running runs

    def _launch(self, script: _Script, run_id: str) -> _LiveRun:
        live = _LiveRun(script, run_id, self.speed, self.auto_rewinds.get(script.recorded.run_id))
        self._runs[run_id] = live
        self._start_driver(live)
        return live

    def _start_driver(self, live: _LiveRun) -> None:
        live.task = asyncio.get_running_loop().create_task(self._drive(live), name=f"replay {live.run_id}")
        live.task.add_done_callback(_log_crash)

    def _restart(self, live: _LiveRun) -> None:
        """Drive the run again from its (reset) cursor; a driver rewinding itself just goes on."""
        if live.task is not None and live.task is asyncio.current_task():
            return
        if live.task is not None:
            live.task.cancel()
        self._start_driver(live)

    async def _drive(self, live: _LiveRun) -> None:
        """Release a run's steps on time, then finish it (and maybe loop it)."""
        steps = live.script.steps
        while live.cursor < len(steps):
            index = live.cursor
            await self._advance(live, steps[index].t_ms)
            if live.cursor != index:
                continue
            live.cursor = index + 1
            self._release(live, index)
            self._maybe_auto_rewind(live)
        self._finish(live)

    async def _advance(self, live: _LiveRun, t_ms: float) -> None:
        """Sleep until the run's clock reaches ``t_ms`` (scaled by speed, held while paused)."""
        loop = asyncio.get_running_loop()
        if self.max_gap_ms is not None and t_ms - live.clock_ms > self.max_gap_ms:
            live.clock_ms = t_ms - self.max_gap_ms
        await asyncio.sleep(0)
        while True:
            await self._running.wait()
            remaining = (t_ms - live.clock_ms) / self.speed / 1000.0
            if remaining <= 0 or math.isinf(self.speed):
                live.clock_ms = max(live.clock_ms, t_ms)
                return
            before = loop.time()
            await asyncio.sleep(min(remaining, 0.05))
            if self._running.is_set():
                live.clock_ms += (loop.time() - before) * 1000.0 * self.speed

    def _release(self, live: _LiveRun, index: int) -> None:
        step = live.script.steps[index]
        if step.devtools is not None:
            if not live.apply_devtools(index, step.devtools):
                return
            if step.devtools.get("kind") == "snapshot":
                text = live.released_snapshot_text(step.devtools)
            else:
                text = live.script.delta_text(index)
            for conn, stream_id in self._streams_on(live.run_id):
                conn.send_devtools(stream_id, live.run_id, text)
        elif step.payload is not None:
            live.track(step.name, step.payload)
            payload = _swap_run_id(step.payload, live.recorded.run_id, live.run_id)
            if "timestampMs" in payload:
                payload["timestampMs"] = _now_ms()
            self._broadcast(live.run_id, step.name, payload)

    def _broadcast(self, run_id: str, event: str, payload: Mapping[str, Any]) -> None:
        """A run event to every connection that admits the run (or streams it).

        A connection with a ``streamRunEvents`` stream on the run gets the event wrapped as
        ``run.event`` (numbered per run) instead of bare, as the Gateway does.
        """
        self.state_version += 1
        live = self._runs.get(run_id)
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

    def _maybe_auto_rewind(self, live: _LiveRun) -> None:
        plan = live.auto_rewind
        if plan is None or live.auto_rewound or live.clock_ms < plan.at_fraction * live.script.duration_ms:
            return
        target = plan.to_frame_no if plan.to_frame_no is not None else max(1, live.seq // 3)
        if live.first_frame() <= target < live.seq:
            live.auto_rewound = True
            self._rewind(live, target, "user:replay")()

    def _finish(self, live: _LiveRun) -> None:
        live.done = True
        live.finished_ms = _now_ms()
        self._finished.append(live.run_id)
        self._evict()
        if self.loop and not live.loop_spawned and not self._stopping:
            live.loop_spawned = True
            task = asyncio.get_running_loop().create_task(self._loop_again(live.script))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _loop_again(self, script: _Script) -> None:
        await asyncio.sleep(self.loop_delay_s)
        if not self._stopping:
            self._launch(script, str(uuid.uuid4()))

    def _evict(self) -> None:
        while len(self._finished) > self.keep_finished:
            run_id = self._finished.popleft()
            live = self._runs.get(run_id)
            if live is not None and live.done:
                del self._runs[run_id]

    def _rewind(self, live: _LiveRun, frame_no: int, caller: str) -> Callable[[], None]:
        """Jump a run back to ``frame_no``: announce it, reset the history, re-execute.

        Returns the action that sends the rebaseline snapshot to the run's streams, so
        ``rewindRun`` can send its response between the two, as the real Gateway does.
        """
        lower = [k for k in live.frame_step if k <= frame_no]
        if not lower:
            raise _rpc_error("FrameOutOfRange", f"Run {live.run_id} has no frames.")
        step_index = live.frame_step[max(lower)]
        snapshot = live.frame_snapshot(frame_no)
        snapshot["frameNo"] = snapshot["seq"] = frame_no
        self._broadcast(live.run_id, "run.time_travel_jumped", {
            "runId": live.run_id, "fromFrameNo": live.seq, "toFrameNo": frame_no,
            "timestampMs": _now_ms(), "caller": caller,
        })
        event = {"version": 1, "kind": "snapshot", "snapshot": snapshot}
        live.tree = DevToolsTree(event)
        live.truncate_history(frame_no)
        live.frames[frame_no] = event
        live.frame_step[frame_no] = step_index
        live.checkpoints[frame_no] = snapshot
        live.cursor = step_index + 1
        live.clock_ms = live.script.steps[step_index].t_ms
        live.retrack(live.cursor)
        if live.done:
            live.done = False
            live.finished_ms = None
            with contextlib.suppress(ValueError):
                self._finished.remove(live.run_id)
        self._restart(live)
        text = live.snapshot_event_text(snapshot)

        def rebaseline() -> None:
            for conn, stream_id in self._streams_on(live.run_id):
                conn.send_devtools(stream_id, live.run_id, text)

        return rebaseline

    # ------------------------------------------------------------ connections

    def _opened(self, handler: _SocketHandler) -> _Connection:
        conn = _Connection(self, handler)
        self._connections.add(conn)
        self.connections_total += 1
        conn.send_event("connect.challenge", {"nonce": str(uuid.uuid4()), "ts": _now_ms()})
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
            conn.send_event("tick", {"ts": _now_ms()})

    def _on_ws_message(self, conn: _Connection, message: str | bytes) -> None:
        try:
            frame = decode_frame(message)
        except FrameDecodeError as exc:
            conn.send_response(_error_response("invalid", _rpc_error("INVALID_FRAME", str(exc))))
            return
        if not isinstance(frame, RequestFrame):
            conn.send_response(_error_response("invalid", _rpc_error("INVALID_FRAME", "expected a req frame")))
            return
        if frame.method == "connect":
            self._connect(conn, frame)
            return
        if conn.grant is None:
            conn.send_response(_error_response(frame.id, _rpc_error("UNAUTHORIZED", "Connect first")))
            return
        response, after = self._call(frame, conn.grant, conn)
        conn.send_response(response)
        if after is not None:
            after()

    def _connect(self, conn: _Connection, frame: RequestFrame) -> None:
        params = frame.params
        if not isinstance(params.get("minProtocol"), int | float) or not isinstance(
            params.get("maxProtocol"), int | float
        ) or not params.get("client"):
            error = _rpc_error("INVALID_REQUEST", "Connect request is missing protocol negotiation fields")
            conn.send_response(_error_response(frame.id, error))
            return
        if params["minProtocol"] > PROTOCOL or params["maxProtocol"] < PROTOCOL:
            error = _rpc_error("PROTOCOL_UNSUPPORTED", f"Gateway protocol {PROTOCOL} is not supported by the client")
            conn.send_response(_error_response(frame.id, error))
            return
        auth = params.get("auth")
        token = auth.get("token") if isinstance(auth, Mapping) else None
        if not isinstance(token, str):
            token = _bearer(conn.handler.request.headers)
        grant = self._authenticate(token)
        if isinstance(grant, GatewayRpcError):
            conn.send_response(_error_response(frame.id, grant))
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

    def _authenticate(self, token: str | None) -> _Grant | GatewayRpcError:
        if self.token is None and self.read_token is None:
            return _Grant("admin", ("*",), None, None, None)
        if not token:
            return _rpc_error("UNAUTHORIZED", "A bearer token is required")
        if token == self.token:
            return _Grant("admin", ("*",), "user:op", "replay-op", token)
        if token == self.read_token:
            return _Grant("viewer", READ_SCOPES, "user:viewer", "replay-viewer", token)
        return _rpc_error("UNAUTHORIZED", "Invalid token")

    def _hello(self, grant: _Grant) -> dict[str, Any]:
        active = [live.row(detailed=False) for live in self._runs.values() if live.status in _ACTIVE_STATUSES]
        return {
            "protocol": PROTOCOL,
            "features": ["streaming", "runs"],
            "identity": {"workspaceRoot": None, "backend": "replay", "version": None, "pid": os.getpid(),
                         "startedAtMs": self.started_ms},
            "policy": {"heartbeatMs": self.heartbeat_ms},
            "auth": {"sessionToken": str(uuid.uuid4()), "role": grant.role, "scopes": list(grant.scopes),
                     "userId": grant.user_id, "tokenId": grant.token_id},
            "snapshot": {"runs": active, "approvals": self._approval_rows(None), "stateVersion": self.state_version},
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
        injected = self._injected_failure(method, request_id)
        if injected is not None:
            return injected
        grant = self._authenticate(_bearer(request.headers))
        if isinstance(grant, GatewayRpcError):
            return http_status_for(grant.raw_code), encode_frame(_error_response(request_id, grant)), json_headers
        if not isinstance(body, Mapping) or not method:
            error = _rpc_error("INVALID_REQUEST", "RPC body must be a JSON object")
            return 400, encode_frame(_error_response(request_id, error)), json_headers
        response, after = self._call(RequestFrame(request_id, method, dict(body)), grant, None)
        if after is not None:
            after()
        status = 200 if response.ok else http_status_for(response.error.raw_code if response.error else "")
        return status, encode_frame(response), json_headers

    def _http_events(self, run_id: str, after: str | None, limit: str | None, token: str | None) -> tuple[int, str]:
        def error(status: int, code: str, message: str) -> tuple[int, str]:
            return status, json.dumps({"ok": False, "error": {"code": code, "message": message}})

        grant = self._authenticate(token)
        if isinstance(grant, GatewayRpcError):
            return error(http_status_for(grant.raw_code), grant.raw_code, grant.message)
        live = self._runs.get(run_id)
        if live is None:
            return error(404, "NOT_FOUND", f"Run not found: {run_id}")
        try:
            after_seq = int(after) if after is not None else -1
            count = int(limit) if limit is not None else 100
        except ValueError:
            return error(400, "INVALID_INPUT", "afterSeq and limit must be integers")
        rows = [r for r in live.history_rows if r["seq"] > after_seq][: max(1, count)]
        return 200, json.dumps({"ok": True, "data": rows})

    def _injected_failure(self, method: str | None, request_id: str) -> tuple[int, str, dict[str, str]] | None:
        queue = self.rpc_failures.get(method or "")
        if not queue:
            return None
        status = queue.pop(0)
        known = _FAILURE_CODES.get(status)
        if known is None:
            reason = {502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout"}.get(status, "Error")
            return status, f"{status} {reason}\n", {"Content-Type": "text/plain"}
        code, message = known
        extra = {"requiredScope": METHOD_SCOPES.get(method or "", "run:read")} if status == 403 else {}
        body = encode_frame(_error_response(request_id, _rpc_error(code, message, **extra)))
        headers = {"Content-Type": "application/json"}
        if status == 429:
            headers["Retry-After"] = "1"
        return status, body, headers

    # ------------------------------------------------------------ RPC routing

    def _call(self, frame: RequestFrame, grant: _Grant, conn: _Connection | None) -> tuple[ResponseFrame, _After]:
        """Scope check, then the method; every error becomes an error response."""
        method = METHOD_ALIASES.get(frame.method, frame.method)
        scope = METHOD_SCOPES.get(method, "run:read")
        if not _has_scope(grant.scopes, scope):
            error = _rpc_error("FORBIDDEN", f"Missing required scope {scope} for {frame.method}", requiredScope=scope)
            return _error_response(frame.id, error), None
        handler = self._methods().get(method)
        if handler is None:
            return _error_response(frame.id, _rpc_error("METHOD_NOT_FOUND", f"Unknown method: {frame.method}")), None
        try:
            payload, after = handler(frame.params, grant, conn)
        except GatewayRpcError as exc:
            return _error_response(frame.id, exc), None
        return ResponseFrame(id=frame.id, ok=True, payload=payload), after

    def _methods(self) -> dict[str, _Handler]:
        return {
            "streamDevTools": self._m_stream_devtools,
            "streamRunEvents": self._m_stream_run_events,
            "getRun": self._m_get_run,
            "listRuns": self._m_list_runs,
            "listWorkflows": self._m_list_workflows,
            "getNodeOutput": self._m_get_node_output,
            "getNodeDiff": self._m_get_node_diff,
            "listScores": self._m_list_scores,
            "listApprovals": self._m_list_approvals,
            "getDevToolsSnapshot": self._m_get_devtools_snapshot,
            "rewindRun": self._m_rewind_run,
            "launchRun": self._m_launch_run,
        }

    def _run_param(self, params: Mapping[str, Any], *, missing: str = "InvalidRunId", pattern: bool = True) -> str:
        run_id = params.get("runId")
        if not isinstance(run_id, str) or not run_id:
            raise _rpc_error(missing, "runId is required")
        if pattern and not _RUN_ID_PATTERN.match(run_id):
            raise _rpc_error("InvalidRunId", "runId must match /^[a-z0-9_-][a-z0-9_.-]{0,63}$/.")
        return run_id

    def _find(self, run_id: str, code: str = "RunNotFound") -> _LiveRun:
        live = self._runs.get(run_id)
        if live is None:
            raise _rpc_error(code, f"Run not found: {run_id}")
        return live

    def _m_stream_devtools(self, params: Mapping[str, Any], grant: _Grant, conn: _Connection | None) -> tuple[Any, _After]:
        if conn is None:
            raise _rpc_error("INVALID_REQUEST", "streamDevTools is only supported over websocket connections")
        run_id = self._run_param(params)
        from_seq, after_seq = params.get("fromSeq"), params.get("afterSeq")
        if _is_int(from_seq) and _is_int(after_seq) and from_seq != after_seq:
            raise _rpc_error("SeqOutOfRange", "fromSeq and afterSeq must match when both are provided")
        after = from_seq if from_seq is not None else after_seq
        if after is not None and (not _is_int(after) or after < 0):
            raise _rpc_error("SeqOutOfRange", "fromSeq must be a non-negative integer.")
        if conn.subscribed is not None and run_id not in conn.subscribed:
            raise _rpc_error("Unauthorized", "Connection is not subscribed to this runId.")
        live = self._find(run_id)
        if after is not None and after > live.seq:
            raise _rpc_error("SeqOutOfRange", f"fromSeq {after} is newer than current seq {live.seq}")
        stream_id = str(uuid.uuid4())
        conn.streams[stream_id] = run_id
        self.streams_total += 1
        text = live.snapshot_event_text(live.current_snapshot())

        def baseline() -> None:
            conn.send_devtools(stream_id, run_id, text)

        return {"streamId": stream_id, "runId": run_id, "fromSeq": after, "afterSeq": after}, baseline

    def _m_stream_run_events(self, params: Mapping[str, Any], grant: _Grant, conn: _Connection | None) -> tuple[Any, _After]:
        if conn is None:
            raise _rpc_error("INVALID_REQUEST", "streamRunEvents is only supported over websocket connections")
        run_id = self._run_param(params, pattern=False)
        after = params.get("afterSeq")
        if after is not None and (not _is_int(after) or after < 0):
            raise _rpc_error("SeqOutOfRange", "afterSeq must be a non-negative integer")
        live = self._find(run_id)
        current = live.event_seq
        if after is not None and after > current:
            raise _rpc_error("SeqOutOfRange", f"afterSeq {after} is newer than current seq {current}")
        stream_id = str(uuid.uuid4())
        history = [f for f in live.event_window if after is not None and f["seq"] > after]
        conn.run_event_streams[stream_id] = run_id

        def replay() -> None:
            for frame in history:
                conn.send_event("run.event", {"streamId": stream_id, **frame})

        return {"streamId": stream_id, "runId": run_id, "afterSeq": after, "currentSeq": current}, replay

    def _m_get_run(self, params: Mapping[str, Any], grant: _Grant, conn: _Connection | None) -> tuple[Any, _After]:
        run_id = self._run_param(params, missing="INVALID_REQUEST", pattern=False)
        return self._find(run_id, "NOT_FOUND").row(detailed=True), None

    def _m_list_runs(self, params: Mapping[str, Any], grant: _Grant, conn: _Connection | None) -> tuple[Any, _After]:
        flt = params.get("filter") if isinstance(params.get("filter"), Mapping) else {}
        assert isinstance(flt, Mapping)
        limit, offset = flt.get("limit", 50), flt.get("offset", 0)
        limit = 50 if limit is None else limit
        offset = 0 if offset is None else offset
        if not _is_int(limit) or limit < 1:
            raise _rpc_error("INVALID_REQUEST", "limit must be a positive integer")
        if not _is_int(offset) or offset < 0:
            raise _rpc_error("INVALID_REQUEST", "offset must be a non-negative integer")
        rows = [live.row(detailed=False) for live in reversed(self._runs.values())]
        rows.sort(key=lambda r: -int(r["createdAtMs"]))
        status, workflow = flt.get("status"), flt.get("workflow")
        if isinstance(status, str):
            rows = [r for r in rows if r["status"] == status]
        if isinstance(workflow, str):
            rows = [r for r in rows if workflow in (r.get("workflowName"), r.get("workflowKey"))]
        return rows[offset:offset + limit], None

    def _m_list_workflows(self, params: Mapping[str, Any], grant: _Grant, conn: _Connection | None) -> tuple[Any, _After]:
        keys = sorted({s.recorded.workflow for s in self._scripts if s.recorded.workflow})
        return [{"key": k, "hasUi": False, "uiPath": None, "system": False} for k in keys], None

    def _node_params(self, params: Mapping[str, Any]) -> tuple[_LiveRun, str, int]:
        live = self._find(self._run_param(params))
        node_id = params.get("nodeId")
        if not isinstance(node_id, str) or not _NODE_ID_PATTERN.match(node_id):
            raise _rpc_error("InvalidNodeId", "nodeId must match /^[a-zA-Z0-9:_-]{1,128}$/.")
        iteration = _as_int(params.get("iteration"), -1)
        if not 0 <= iteration <= _MAX_INT32:
            raise _rpc_error("InvalidIteration", "iteration must be a non-negative 32-bit integer.")
        return live, node_id, iteration

    @staticmethod
    def _node_state(live: _LiveRun, node_id: str, iteration: int) -> str | None:
        """The node's state in the replay so far; raises NodeNotFound/IterationNotFound."""
        state = live.nodes.get((node_id, iteration))
        if state is not None:
            return state
        task = live.tree.find_task(node_id, iteration)
        if task is not None:
            return task.state
        if any(n == node_id for n, _ in live.nodes) or live.tree.find_task(node_id) is not None:
            raise _rpc_error("IterationNotFound", f"Iteration not found: {iteration}")
        raise _rpc_error("NodeNotFound", f"Node not found: {node_id}")

    def _m_get_node_output(self, params: Mapping[str, Any], grant: _Grant, conn: _Connection | None) -> tuple[Any, _After]:
        live, node_id, iteration = self._node_params(params)
        state = self._node_state(live, node_id, iteration)
        old = live.recorded.run_id
        answer = live.recorded.answer("getNodeOutput", {"nodeId": node_id, "iteration": iteration})
        if answer is not None and not answer.ok:
            raise _recorded_error(answer.error, old, live.run_id)
        if answer is None:
            if state in ("finished", "failed") or live.done:
                raise _rpc_error("NodeHasNoOutput", f"No output was recorded for node {node_id}.")
            return {"status": "pending", "row": None, "schema": None}, None
        payload = _swap_run_id(answer.payload, old, live.run_id)
        recorded_status = payload.get("status") if isinstance(payload, Mapping) else None
        reached = live.done or (state == "finished" and recorded_status == "produced") or (
            state == "failed" and recorded_status == "failed") or recorded_status == "pending"
        if reached:
            return payload, None
        schema = payload.get("schema") if isinstance(payload, Mapping) else None
        return {"status": "pending", "row": None, "schema": schema}, None

    def _m_get_node_diff(self, params: Mapping[str, Any], grant: _Grant, conn: _Connection | None) -> tuple[Any, _After]:
        live, node_id, iteration = self._node_params(params)
        self._node_state(live, node_id, iteration)
        old = live.recorded.run_id
        answer = live.recorded.answer("getNodeDiff", {"nodeId": node_id, "iteration": iteration})
        if answer is not None and answer.ok and live.done:
            return _swap_run_id(answer.payload, old, live.run_id), None
        if answer is not None and not answer.ok:
            raise _recorded_error(answer.error, old, live.run_id)
        raise _rpc_error("AttemptNotFinished", "Attempt has no finished jj pointer.")

    def _m_list_scores(self, params: Mapping[str, Any], grant: _Grant, conn: _Connection | None) -> tuple[Any, _After]:
        live = self._find(self._run_param(params, missing="INVALID_REQUEST", pattern=False))
        node_id = params.get("nodeId")
        answer = live.recorded.answer("listScores", {})
        rows = answer.payload if answer is not None and answer.ok and isinstance(answer.payload, list) else []
        out = []
        for row in rows:
            if not isinstance(row, Mapping) or (isinstance(node_id, str) and row.get("nodeId") != node_id):
                continue
            scored = row.get("scoredAtMs")
            at = float(scored) if isinstance(scored, int | float) else math.inf
            if not live.reached(at):
                continue
            fresh = _swap_run_id(row, live.recorded.run_id, live.run_id)
            if isinstance(scored, int | float):
                fresh["scoredAtMs"] = live.wall_for(scored)
            out.append(fresh)
        return out, None

    def _approval_rows(self, run_id: str | None) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        for live in self._runs.values():
            if run_id is not None and live.run_id != run_id:
                continue
            answer = live.recorded.answer("listApprovals", {})
            recorded = answer.payload if answer is not None and answer.ok and isinstance(answer.payload, list) else []
            for (node_id, iteration), requested in live.approvals.items():
                match = next((r for r in recorded if isinstance(r, Mapping) and r.get("nodeId") == node_id
                              and r.get("iteration", 0) == iteration), None)
                row = _swap_run_id(match, live.recorded.run_id, live.run_id) if match else {
                    "runId": live.run_id, "workflowKey": live.recorded.workflow, "nodeId": node_id,
                    "iteration": iteration, "requestTitle": node_id, "requestSummary": None,
                    "approvalMode": "gate", "options": [], "allowedScopes": [], "allowedUsers": [],
                    "autoApprove": None,
                }
                row["requestedAtMs"] = requested
                rows.append(row)
        return rows

    def _m_list_approvals(self, params: Mapping[str, Any], grant: _Grant, conn: _Connection | None) -> tuple[Any, _After]:
        flt = params.get("filter") if isinstance(params.get("filter"), Mapping) else {}
        assert isinstance(flt, Mapping)
        run_id = params.get("runId") or flt.get("runId")
        return self._approval_rows(run_id if isinstance(run_id, str) else None), None

    @staticmethod
    def _check_frame(live: _LiveRun, frame_no: object) -> int:
        low, high = live.first_frame(), live.seq
        if isinstance(frame_no, bool) or not isinstance(frame_no, int) or not low <= frame_no <= high:
            raise _rpc_error("FrameOutOfRange", f"frameNo must be between {low} and {high}.")
        return frame_no

    def _m_get_devtools_snapshot(
        self, params: Mapping[str, Any], grant: _Grant, conn: _Connection | None
    ) -> tuple[Any, _After]:
        live = self._find(self._run_param(params))
        frame_no = params.get("frameNo")
        if frame_no is None:
            return live.current_snapshot(), None
        return live.frame_snapshot(self._check_frame(live, frame_no)), None

    def _m_rewind_run(self, params: Mapping[str, Any], grant: _Grant, conn: _Connection | None) -> tuple[Any, _After]:
        run_id = self._run_param(params, pattern=False)
        frame_no = params.get("frameNo")
        if not isinstance(frame_no, int | float) or isinstance(frame_no, bool):
            raise _rpc_error("InvalidFrameNo", "frameNo is required")
        live = self._find(run_id)
        if grant.role != "admin":
            raise _rpc_error("Unauthorized", "Only the run owner or an admin may rewind this run.")
        if params.get("confirm") is not True:
            raise _rpc_error("ConfirmationRequired", "jumpToFrame is destructive; pass confirm: true to proceed.")
        if not live.done and params.get("force") is not True:
            raise _rpc_error(
                "RunOwnerAlive",
                f"Run {run_id} is still running (live owner or fresh heartbeat). "
                "Stop it before rewinding, or pass force: true.",
            )
        target = self._check_frame(live, frame_no)
        started = time.monotonic()
        deleted = live.seq - target
        rebaseline = self._rewind(live, target, grant.user_id or "gateway")
        payload = {
            "ok": True, "newFrameNo": target, "revertedSandboxes": 0, "deletedFrames": deleted,
            "deletedAttempts": 0, "invalidatedDiffs": 0, "durationMs": int((time.monotonic() - started) * 1000),
            "effectBoundary": {"blocking": [], "revertible": [], "warnings": []},
        }
        return payload, rebaseline

    def _m_launch_run(self, params: Mapping[str, Any], grant: _Grant, conn: _Connection | None) -> tuple[Any, _After]:
        workflow = params.get("workflow")
        script = next((s for s in self._scripts if s.recorded.workflow == workflow), None)
        if script is None:
            raise _rpc_error("NOT_FOUND", f"Workflow not found: {workflow}")
        live = self._launch(script, str(uuid.uuid4()))
        return {"runId": live.run_id, "workflow": workflow, "system": False}, None


def _log_request(handler: tornado.web.RequestHandler) -> None:
    """Access log at debug level: a test that provokes 4xx on purpose should not spam warnings."""
    request = handler.request
    log.debug("%d %s %s", handler.get_status(), request.method, request.uri)


def _bearer(headers: tornado.httputil.HTTPHeaders) -> str | None:
    value = headers.get("Authorization", "")
    if value.lower().startswith("bearer "):
        return value[7:].strip() or None
    return headers.get("x-smithers-key") or None


# --------------------------------------------------------------------------- demo


@functools.lru_cache(maxsize=1)
def _demo_runs() -> tuple[RecordedRun, ...]:
    package = resources.files("inspector.demo_data")
    runs: list[RecordedRun] = []
    for name in DEMO_TRANSCRIPTS:
        with package.joinpath(name).open("r", encoding="utf-8") as fh:
            runs.extend(extract_runs(split_sessions(parse_transcript(fh, source=name)), source=name))
    return tuple(run for run in merge_runs(runs) if run.replayable)


def demo_runs() -> list[RecordedRun]:
    """The runs bundled in ``inspector/demo_data`` (demo, rich, rewind, doomed, wide, gated)."""
    return list(_demo_runs())


async def serve_demo(
    port: int = 0, speed: float = 1.0, *, host: str = "127.0.0.1", token: str | None = None
) -> ReplayGateway:
    """Start a looping replay of the demo runs, with the ``rich`` run rewound mid-run each loop.

    The caller owns the returned gateway and must ``await gateway.stop()``.
    """
    runs = demo_runs()
    rewinds = {run.run_id: AutoRewind(0.6) for run in runs if run.source == "rich-run.jsonl"}
    gateway = ReplayGateway(runs, token=token, speed=speed, loop=True, host=host, port=port, auto_rewinds=rewinds)
    await gateway.start()
    return gateway

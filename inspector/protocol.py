"""The Smithers Gateway wire protocol: frame and DevTools types, decoding and encoding.

Pure: no sockets, no clocks, no event loop. Everything here turns JSON text (or the
objects ``json.loads`` gives) into typed values and back, and says precisely what is
wrong, and where, when the input does not fit.

Three frame types travel on the Gateway's WebSocket (``gateway.js`` in
``@smithers-orchestrator/server``):

- ``{"type": "req", "id", "method", "params"}``: :class:`RequestFrame`
- ``{"type": "res", "id", "ok", "payload" | "error"}``: :class:`ResponseFrame`
- ``{"type": "event", "event", "payload", "seq", "stateVersion"}``: :class:`EventFrame`

A frame of any other type decodes to :class:`UnknownFrame` rather than failing: the
Gateway may grow new frame types, and a reader should skip them, not die.

``streamDevTools`` events (``devtools.event`` payload ``{streamId, runId, event}``) carry
either a :class:`DevToolsSnapshot` or a :class:`DevToolsDelta` whose ops are
:class:`AddNode`, :class:`RemoveNode`, :class:`UpdateProps`, :class:`UpdateTask` and
:class:`ReplaceRoot`. Unknown fields on nodes, tasks and snapshots are kept verbatim;
unknown node types and task states are kept as the strings the Gateway sent.

The ``connect`` answer (the *hello*) is read by :func:`read_hello`: the Gateway's
``protocol`` (``handleConnect`` in ``gateway.js``; a client outside its range is refused
with ``PROTOCOL_UNSUPPORTED``), its ``features``, the heartbeat policy and the token's
scopes. A Gateway on a protocol this package does not speak is
:class:`~inspector.errors.ProtocolUnsupported`, never something to retry.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, TypeAlias

from .errors import (
    ErrorCode,
    FrameDecodeError,
    GatewayRpcError,
    InvalidDelta,
    InvalidSnapshot,
    ProtocolUnsupported,
    normalize_error_code,
)

# Re-exported (see __all__): callers that judge a run's status beside its frames import them here.
from .vocabulary import TERMINAL_RUN_STATUSES, RunEventName, is_terminal_run_status

__all__ = [
    "TERMINAL_RUN_STATUSES",
    "AddNode",
    "DevToolsDelta",
    "DevToolsEvent",
    "DevToolsEventPayload",
    "DevToolsOp",
    "DevToolsSnapshot",
    "GATEWAY_PROTOCOLS",
    "ErrorInfo",
    "EventFrame",
    "Frame",
    "Hello",
    "RemoveNode",
    "ReplaceRoot",
    "RequestFrame",
    "ResponseFrame",
    "TimeTravelJump",
    "UnknownFrame",
    "UpdateProps",
    "UpdateTask",
    "compact_event_frame",
    "decode_devtools_event",
    "decode_devtools_payload",
    "decode_frame",
    "encode_frame",
    "is_terminal_run_status",
    "protocol_refusal",
    "read_hello",
    "shared_value",
    "time_travel_jump",
]

PROTOCOL_VERSION: Final = 1

#: The Gateway WebSocket protocol versions this package speaks, lowest and highest (what
#: ``connect`` offers as ``minProtocol`` / ``maxProtocol``; Smithers 0.32 speaks 1).
GATEWAY_PROTOCOLS: Final = (1, 1)

# --------------------------------------------------------------------------- frames


@dataclass(frozen=True, slots=True)
class RequestFrame:
    """A request we send (or a replay gateway receives)."""

    id: str
    method: str
    params: dict[str, Any] = field(default_factory=dict)

    def to_wire(self) -> dict[str, Any]:
        return {"type": "req", "id": self.id, "method": self.method, "params": self.params}


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    """The ``error`` object of a failed response, with the code normalised."""

    code: ErrorCode | str
    raw_code: str
    message: str
    required_scope: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)

    def to_exception(
        self, *, method: str | None = None, status: int | None = None, retry_after: float | None = None
    ) -> GatewayRpcError:
        return GatewayRpcError(
            self.raw_code,
            self.message,
            status=status,
            required_scope=self.required_scope,
            details=dict(self.details) or None,
            method=method,
            retry_after=retry_after,
        )


@dataclass(frozen=True, slots=True)
class ResponseFrame:
    """The answer to a request, correlated by ``id``."""

    id: str
    ok: bool
    payload: Any = None
    error: ErrorInfo | None = None

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "res", "id": self.id, "ok": self.ok, "apiVersion": "v1"}
        if self.ok:
            out["payload"] = self.payload
        elif self.error is not None:
            err: dict[str, Any] = {"version": "v1", **dict(self.error.details)}
            err.update(code=self.error.raw_code, message=self.error.message)
            if self.error.required_scope is not None:
                err["requiredScope"] = self.error.required_scope
            out["error"] = err
        return out


@dataclass(frozen=True, slots=True)
class EventFrame:
    """A server push: ``tick``, ``devtools.event``, ``run.completed``, ``node.started``, ..."""

    event: str
    payload: Any = None
    seq: int | None = None
    state_version: int | None = None

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "event", "event": self.event, "payload": self.payload}
        if self.seq is not None:
            out["seq"] = self.seq
        if self.state_version is not None:
            out["stateVersion"] = self.state_version
        out["apiVersion"] = "v1"
        return out


@dataclass(frozen=True, slots=True)
class UnknownFrame:
    """A frame whose ``type`` this version does not know; kept so it can be logged."""

    type: str
    raw: Mapping[str, Any]

    def to_wire(self) -> dict[str, Any]:
        return dict(self.raw)


Frame: TypeAlias = RequestFrame | ResponseFrame | EventFrame | UnknownFrame


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _expect_int(obj: Mapping[str, Any], key: str, path: str, *, optional: bool = False) -> int | None:
    value = obj.get(key)
    if value is None and optional:
        return None
    if not _is_int(value):
        raise FrameDecodeError(f"expected an integer, got {_describe(value)}", f"{path}.{key}")
    return int(value)  # type: ignore[arg-type]


def _describe(value: object) -> str:
    if value is None:
        return "nothing"
    try:
        text = json.dumps(value, default=repr) if not isinstance(value, str) else repr(value)
    except (RecursionError, ValueError):
        text = "(too deep to show)"
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{type(value).__name__} {text}"


def decode_json(data: str | bytes | bytearray) -> Any:
    """Parse one frame's text, turning any JSON failure into :class:`FrameDecodeError`."""
    if not isinstance(data, str | bytes | bytearray):
        raise FrameDecodeError(f"a frame must be JSON text, got {_describe(data)}")
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise FrameDecodeError(f"not valid JSON ({exc})") from None


def decode_error_info(obj: object, path: str = "$.error") -> ErrorInfo:
    """Decode a response's ``error`` object (``{version, code, message, requiredScope?}``)."""
    if not isinstance(obj, Mapping):
        raise FrameDecodeError(f"expected an object, got {_describe(obj)}", path)
    raw_code = obj.get("code")
    if not isinstance(raw_code, str) or not raw_code:
        raise FrameDecodeError(f"expected a non-empty string, got {_describe(raw_code)}", f"{path}.code")
    message = obj.get("message")
    scope = obj.get("requiredScope")
    details = {k: v for k, v in obj.items() if k not in ("code", "message", "requiredScope", "version")}
    return ErrorInfo(
        code=normalize_error_code(raw_code),
        raw_code=raw_code,
        message=message if isinstance(message, str) else "",
        required_scope=scope if isinstance(scope, str) else None,
        details=details,
    )


def decode_frame(data: str | bytes | bytearray | Mapping[str, Any]) -> Frame:
    """Decode one WebSocket message (text, bytes, or an already parsed object).

    Raises :class:`FrameDecodeError` for anything that is not a frame; unknown frame
    types come back as :class:`UnknownFrame`.
    """
    obj = data if isinstance(data, Mapping) else decode_json(data)
    if not isinstance(obj, Mapping):
        raise FrameDecodeError(f"a frame must be a JSON object, got {_describe(obj)}")
    kind = obj.get("type")
    if kind == "event":
        name = obj.get("event")
        if not isinstance(name, str) or not name:
            raise FrameDecodeError(f"expected an event name, got {_describe(name)}", "$.event")
        return EventFrame(
            event=name,
            payload=obj.get("payload"),
            seq=_expect_int(obj, "seq", "$", optional=True),
            state_version=_expect_int(obj, "stateVersion", "$", optional=True),
        )
    if kind == "res":
        rid = obj.get("id")
        if not isinstance(rid, str):
            raise FrameDecodeError(f"expected a string id, got {_describe(rid)}", "$.id")
        ok = obj.get("ok")
        if not isinstance(ok, bool):
            raise FrameDecodeError(f"expected true or false, got {_describe(ok)}", "$.ok")
        if ok:
            return ResponseFrame(id=rid, ok=True, payload=obj.get("payload"))
        return ResponseFrame(id=rid, ok=False, error=decode_error_info(obj.get("error")))
    if kind == "req":
        rid = obj.get("id")
        method = obj.get("method")
        if not isinstance(rid, str):
            raise FrameDecodeError(f"expected a string id, got {_describe(rid)}", "$.id")
        if not isinstance(method, str) or not method:
            raise FrameDecodeError(f"expected a method name, got {_describe(method)}", "$.method")
        params = obj.get("params")
        if params is None:
            params = {}
        if not isinstance(params, Mapping):
            raise FrameDecodeError(f"expected an object, got {_describe(params)}", "$.params")
        return RequestFrame(id=rid, method=method, params=dict(params))
    if isinstance(kind, str) and kind:
        return UnknownFrame(type=kind, raw=dict(obj))
    raise FrameDecodeError(f"expected a frame type, got {_describe(kind)}", "$.type")


def encode_frame(frame: Frame) -> str:
    """The JSON text for a frame, compact, as the Gateway writes it."""
    return json.dumps(frame.to_wire(), separators=(",", ":"))


# --------------------------------------------------------------------------- DevTools


@dataclass(frozen=True, slots=True)
class DevToolsSnapshot:
    """A whole tree at one frame. ``root`` is the wire node object, not yet validated."""

    run_id: str
    frame_no: int
    seq: int
    root: Mapping[str, Any]
    run_state: Mapping[str, Any] | None = None
    version: int = PROTOCOL_VERSION
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class AddNode:
    """Insert ``node`` (a whole subtree) under ``parent_id`` at ``index`` (clamped)."""

    parent_id: int
    index: float
    node: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class RemoveNode:
    """Remove a node and its subtree; the root cannot be removed."""

    id: int


@dataclass(frozen=True, slots=True)
class UpdateProps:
    """Replace a node's whole ``props`` object."""

    id: int
    props: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class UpdateTask:
    """Replace a node's whole ``task`` object; ``task=None`` (absent on the wire) removes it."""

    id: int
    task: Mapping[str, Any] | None


@dataclass(frozen=True, slots=True)
class ReplaceRoot:
    """Swap the whole tree for ``node``."""

    node: Mapping[str, Any]


DevToolsOp: TypeAlias = AddNode | RemoveNode | UpdateProps | UpdateTask | ReplaceRoot


@dataclass(frozen=True, slots=True)
class DevToolsDelta:
    """The ops that take the tree from ``base_seq`` to ``seq``."""

    base_seq: int
    seq: int
    ops: tuple[DevToolsOp, ...]
    version: int = PROTOCOL_VERSION


DevToolsEvent: TypeAlias = DevToolsSnapshot | DevToolsDelta


@dataclass(frozen=True, slots=True)
class DevToolsEventPayload:
    """The payload of a ``devtools.event`` frame: which stream, which run, which event."""

    stream_id: str | None
    run_id: str | None
    event: DevToolsEvent


def _op_id(op: Mapping[str, Any], key: str, index: int) -> int:
    value = op.get(key)
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidDelta(f"{op.get('op')} needs an integer {key}, got {_describe(value)}", op_index=index)
    return value


def _op_object(op: Mapping[str, Any], key: str, index: int) -> Mapping[str, Any]:
    value = op.get(key)
    if not isinstance(value, Mapping):
        raise InvalidDelta(f"{op.get('op')} needs a {key} object, got {_describe(value)}", op_index=index)
    return value


def decode_op(op: object, index: int = 0) -> DevToolsOp:
    """Decode one delta op with the same acceptance rules as the Gateway's ``applyDelta``."""
    if not isinstance(op, Mapping):
        raise InvalidDelta(f"an op must be an object, got {_describe(op)}", op_index=index)
    name = op.get("op")
    if name == "updateTask":
        if "task" not in op:
            return UpdateTask(id=_op_id(op, "id", index), task=None)
        return UpdateTask(id=_op_id(op, "id", index), task=_op_object(op, "task", index))
    if name == "updateProps":
        return UpdateProps(id=_op_id(op, "id", index), props=_op_object(op, "props", index))
    if name == "addNode":
        node = _op_object(op, "node", index)
        position = op.get("index")
        if isinstance(position, bool) or not isinstance(position, int | float) or (
            isinstance(position, float) and not math.isfinite(position)
        ):
            raise InvalidDelta(f"addNode needs a numeric index, got {_describe(position)}", op_index=index)
        return AddNode(parent_id=_op_id(op, "parentId", index), index=position, node=node)
    if name == "removeNode":
        return RemoveNode(id=_op_id(op, "id", index))
    if name == "replaceRoot":
        return ReplaceRoot(node=_op_object(op, "node", index))
    raise InvalidDelta(f"unknown op {_describe(name)}", op_index=index)


def _decode_snapshot(obj: object, path: str) -> DevToolsSnapshot:
    if not isinstance(obj, Mapping):
        raise InvalidSnapshot(f"{path}: expected a snapshot object, got {_describe(obj)}")
    version = obj.get("version", PROTOCOL_VERSION)
    if version != PROTOCOL_VERSION:
        raise InvalidSnapshot(f"{path}.version: unsupported snapshot version {_describe(version)}")
    for key in ("frameNo", "seq"):
        if not _is_int(obj.get(key)):
            raise InvalidSnapshot(f"{path}.{key}: expected an integer, got {_describe(obj.get(key))}")
    root = obj.get("root")
    if not isinstance(root, Mapping):
        raise InvalidSnapshot(f"{path}.root: expected a node object, got {_describe(root)}")
    run_id = obj.get("runId")
    run_state = obj.get("runState")
    extra = {k: v for k, v in obj.items() if k not in ("version", "runId", "frameNo", "seq", "root", "runState")}
    return DevToolsSnapshot(
        run_id=run_id if isinstance(run_id, str) else "",
        frame_no=obj["frameNo"],
        seq=obj["seq"],
        root=root,
        run_state=run_state if isinstance(run_state, Mapping) else None,
        extra=extra,
    )


def _decode_delta(obj: object, path: str) -> DevToolsDelta:
    if not isinstance(obj, Mapping):
        raise InvalidDelta(f"{path}: expected a delta object, got {_describe(obj)}")
    version = obj.get("version")
    if version != PROTOCOL_VERSION:
        raise InvalidDelta(f"{path}.version: unsupported delta version {_describe(version)}")
    for key in ("baseSeq", "seq"):
        if not _is_int(obj.get(key)):
            raise InvalidDelta(f"{path}.{key}: expected an integer, got {_describe(obj.get(key))}")
    ops = obj.get("ops")
    if not isinstance(ops, list):
        raise InvalidDelta(f"{path}.ops: expected a list, got {_describe(ops)}")
    return DevToolsDelta(
        base_seq=obj["baseSeq"],
        seq=obj["seq"],
        ops=tuple(decode_op(op, i) for i, op in enumerate(ops)),
    )


def decode_devtools_event(obj: object, path: str = "$") -> DevToolsEvent:
    """Decode ``{"version": 1, "kind": "snapshot"|"delta", ...}``.

    Accepts an already decoded :class:`DevToolsSnapshot`/:class:`DevToolsDelta` as is.
    Raises :class:`~inspector.errors.InvalidSnapshot` or :class:`~inspector.errors.InvalidDelta`.
    """
    if isinstance(obj, DevToolsSnapshot | DevToolsDelta):
        return obj
    if not isinstance(obj, Mapping):
        raise InvalidDelta(f"{path}: expected a DevTools event object, got {_describe(obj)}")
    kind = obj.get("kind")
    if kind == "snapshot":
        return _decode_snapshot(obj.get("snapshot"), f"{path}.snapshot")
    if kind == "delta":
        return _decode_delta(obj.get("delta"), f"{path}.delta")
    raise InvalidDelta(f"{path}.kind: unknown DevTools event kind {_describe(kind)}")


def decode_devtools_payload(payload: object) -> DevToolsEventPayload:
    """Decode a ``devtools.event`` frame's payload ``{streamId, runId, event}``."""
    if not isinstance(payload, Mapping):
        raise FrameDecodeError(f"expected an object, got {_describe(payload)}", "$.payload")
    stream_id = payload.get("streamId")
    run_id = payload.get("runId")
    return DevToolsEventPayload(
        stream_id=stream_id if isinstance(stream_id, str) else None,
        run_id=run_id if isinstance(run_id, str) else None,
        event=decode_devtools_event(payload.get("event"), "$.payload.event"),
    )


# --------------------------------------------------------------------------- run events


@dataclass(frozen=True, slots=True)
class TimeTravelJump:
    """``run.time_travel_jumped``: the run's history was rewound to ``to_frame_no``."""

    run_id: str
    from_frame_no: int | None
    to_frame_no: int | None
    timestamp_ms: int | None
    caller: Any = None


def _unwrap_run_event(frame: EventFrame) -> tuple[str, Any]:
    """The event name and payload, looking inside a ``run.event`` envelope when there is one.

    A socket that also streams run events receives ``run.event{streamId, event, payload}``
    instead of the bare event (``gateway.js``); embedders that did not unwrap it stalled
    (smithersai/smithers#1422).
    """
    if frame.event == RunEventName.RUN_EVENT and isinstance(frame.payload, Mapping):
        inner = frame.payload.get("event")
        if isinstance(inner, str):
            return inner, frame.payload.get("payload")
        if isinstance(inner, Mapping) and isinstance(inner.get("type"), str):
            return str(inner["type"]), inner
    return frame.event, frame.payload


def unwrap_run_event(frame: EventFrame) -> EventFrame:
    """The frame itself, or the event wrapped inside a ``run.event`` envelope."""
    name, payload = _unwrap_run_event(frame)
    if name == frame.event:
        return frame
    return EventFrame(event=name, payload=payload, seq=frame.seq, state_version=frame.state_version)


#: The longest string :func:`shared_value` shares (ids, states, names, keys; not text).
SHARED_VALUE_CHARS: Final = 64
#: The most strings :func:`shared_value` holds; past it, it starts afresh (what was shared stays shared).
SHARED_STRINGS_LIMIT: Final = 32_768

_shared_strings: dict[str, str] = {}


def shared_value(value: Any) -> Any:
    """``value``, or for a string of at most ``SHARED_VALUE_CHARS`` the one copy of it kept.

    A table of our own, bounded, rather than :func:`sys.intern`: what is shared comes from
    the Gateway (run and node ids, and a hostile Gateway's junk), and interned strings are
    immortal on some Pythons (3.12). Cleared when full: a string already shared stays shared
    where it is, new ones start a new table; at most ~3 MB is held for nothing.
    """
    if type(value) is not str or len(value) > SHARED_VALUE_CHARS:
        return value
    kept = _shared_strings.get(value)
    if kept is None:
        if len(_shared_strings) >= SHARED_STRINGS_LIMIT:
            _shared_strings.clear()
        kept = _shared_strings.setdefault(value, value)
    return kept


def compact_event_frame(frame: EventFrame) -> EventFrame:
    """The same event, with its name, its payload's keys and its short string values shared.

    Why: a process keeps thousands of a run's events (the hub's history for late joiners,
    the event log), and every one decoded from its own JSON text carries its own copies of
    ``"runId"``, ``"nodeId"``, ``"node.started"``, a state such as ``in-progress``, the run id, ...:
    about half of a node event's memory (docs/performance.md, section 6). Shared
    (:func:`shared_value`), they are one object each. Equal to ``frame`` in every field;
    nested values are left as they are.
    """
    payload = frame.payload
    if isinstance(payload, dict):
        payload = {shared_value(k): shared_value(v) for k, v in payload.items()}
    return EventFrame(event=shared_value(frame.event), payload=payload, seq=frame.seq, state_version=frame.state_version)


def time_travel_jump(frame: EventFrame) -> TimeTravelJump | None:
    """The jump a frame announces (bare or inside ``run.event``), or ``None``."""
    name, payload = _unwrap_run_event(frame)
    if name != RunEventName.RUN_TIME_TRAVEL_JUMPED or not isinstance(payload, Mapping):
        return None

    def opt_int(key: str) -> int | None:
        value = payload.get(key)
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    run_id = payload.get("runId")
    return TimeTravelJump(
        run_id=run_id if isinstance(run_id, str) else "",
        from_frame_no=opt_int("fromFrameNo"),
        to_frame_no=opt_int("toFrameNo"),
        timestamp_ms=opt_int("timestampMs"),
        caller=payload.get("caller"),
    )


# --------------------------------------------------------------------------- the hello


@dataclass(frozen=True, slots=True)
class Hello:
    """What the Gateway said about itself in its ``connect`` answer.

    ``protocol`` is ``None`` when the hello did not say (then nothing is assumed against
    it); ``features`` are the Gateway's feature names (0.32: ``streaming``, ``runs``);
    ``heartbeat_ms`` the ``tick`` interval it promised, ``None`` when it did not.
    """

    protocol: int | None = None
    features: frozenset[str] = frozenset()
    heartbeat_ms: int | None = None
    scopes: tuple[str, ...] = ()

    def has(self, feature: str) -> bool:
        return feature in self.features


def _positive_int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def read_hello(payload: object, supported: tuple[int, int] = GATEWAY_PROTOCOLS) -> Hello:
    """The hello as a :class:`Hello`; raises :class:`~inspector.errors.ProtocolUnsupported`
    when it names a protocol outside ``supported``. Anything else malformed is ignored
    (fields missing or of the wrong type read as unknown), as a reader of a growing
    protocol should.

    >>> read_hello({"protocol": 1, "features": ["streaming", "runs"]}).has("runs")
    True
    >>> read_hello({"protocol": 2})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    inspector.errors.ProtocolUnsupported: The Gateway speaks protocol 2; ...
    """
    hello: Mapping[str, Any] = payload if isinstance(payload, Mapping) else {}
    protocol = hello.get("protocol")
    number = protocol if isinstance(protocol, int) and not isinstance(protocol, bool) else None
    low, high = supported
    if number is not None and not low <= number <= high:
        raise ProtocolUnsupported(number, supported)
    raw_features = hello.get("features")
    features = frozenset(f for f in raw_features if isinstance(f, str)) if isinstance(raw_features, list) else frozenset()
    policy = hello.get("policy")
    auth = hello.get("auth")
    scopes = auth.get("scopes") if isinstance(auth, Mapping) else None
    return Hello(
        protocol=number,
        features=features,
        heartbeat_ms=_positive_int(policy.get("heartbeatMs")) if isinstance(policy, Mapping) else None,
        scopes=tuple(s for s in scopes if isinstance(s, str)) if isinstance(scopes, list) else (),
    )


def protocol_refusal(error: BaseException, supported: tuple[int, int] = GATEWAY_PROTOCOLS) -> ProtocolUnsupported | None:
    """The :class:`~inspector.errors.ProtocolUnsupported` that a refused ``connect`` means
    (``PROTOCOL_UNSUPPORTED``: "Gateway protocol 2 is not supported by the client"), else ``None``."""
    if not isinstance(error, GatewayRpcError) or error.code is not ErrorCode.PROTOCOL_UNSUPPORTED:
        return None
    words = error.message.split()
    number = next((int(w) for i, w in enumerate(words[1:], 1) if w.isdigit() and words[i - 1].lower() == "protocol"), None)
    return ProtocolUnsupported(number, supported, detail=error.message)

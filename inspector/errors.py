"""Typed errors for everything that can go wrong between us and a Smithers Gateway.

One root, so a caller can catch "anything this package raises" in one clause; below it the
hierarchy follows the layers::

    SmithersDashboardError
    ├── ProtocolError            a frame or payload off the wire contract (also a ValueError)
    │   └── FrameDecodeError     ... with the JSON path of the first problem
    ├── DevToolsError            a DevTools event that cannot be applied to the tree
    │   ├── SeqGap               deltas are missing (``baseSeq`` is not the tree's ``seq``)
    │   ├── InvalidDelta         a malformed or inapplicable op
    │   └── InvalidSnapshot      a snapshot that cannot be a tree
    ├── ConfigurationError       a file or setting given to us cannot be used (also a ValueError)
    │   ├── PriceTableError      a price file (:mod:`inspector.pricing`)
    │   └── UsersFileError       a login users file (:mod:`dashboard.passwords`)
    └── GatewayError             talking to the Gateway failed (``retry_after`` when it said)
        ├── GatewayRpcError      an error answer, its code normalised (:class:`ErrorCode`)
        ├── GatewayUnavailable   no answer at all: refused, cut, timed out, HTTP 5xx
        │   └── GatewayStalled   the socket went silent past the stall timeout
        ├── ResponseTooLarge     an answer over the client's size cap (nothing of it applied)
        └── ProtocolUnsupported  the Gateway speaks a protocol version we do not: no retry

Every error a caller may want to branch on is a class, never a string to parse.
"""

from __future__ import annotations

import enum
from typing import Any

__all__ = [
    "ConfigurationError",
    "DevToolsError",
    "ErrorCode",
    "FrameDecodeError",
    "GatewayError",
    "GatewayRpcError",
    "GatewayStalled",
    "GatewayUnavailable",
    "InvalidDelta",
    "InvalidSnapshot",
    "ProtocolError",
    "ProtocolUnsupported",
    "ResponseTooLarge",
    "SeqGap",
    "SmithersDashboardError",
    "normalize_error_code",
]


class SmithersDashboardError(Exception):
    """The root of every error this package raises (the hierarchy is in the module docstring)."""


class ConfigurationError(SmithersDashboardError, ValueError):
    """A file or setting handed to us (price table, users file, ...) that cannot be used.

    Raised at start-up with the file and the reason, so a misconfiguration stops the
    process with one clear line instead of a traceback later."""


class ProtocolError(SmithersDashboardError, ValueError):
    """A frame or payload does not follow the Gateway's wire contract."""


class FrameDecodeError(ProtocolError):
    """Decoding failed; ``path`` says where (``$.payload.event.delta.ops[2].id``)."""

    def __init__(self, message: str, path: str = "$") -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.reason = message


class DevToolsError(SmithersDashboardError):
    """A DevTools event could not be applied; the tree is left exactly as it was."""


class SeqGap(DevToolsError):
    """A delta's ``baseSeq`` is not the tree's current ``seq``: frames were missed."""

    def __init__(self, expected: int | None, base_seq: int, seq: int) -> None:
        super().__init__(f"delta {base_seq}->{seq} does not follow the tree's seq {expected}")
        self.expected = expected
        self.base_seq = base_seq
        self.seq = seq


class InvalidDelta(DevToolsError):
    """A delta is malformed or names a node the tree does not have."""

    def __init__(self, message: str, *, op_index: int | None = None) -> None:
        where = f"op {op_index}: " if op_index is not None else ""
        super().__init__(f"{where}{message}")
        self.op_index = op_index
        self.reason = message


class InvalidSnapshot(DevToolsError):
    """A snapshot cannot be a tree (malformed node, duplicate ids)."""


class ErrorCode(enum.StrEnum):
    """The Gateway's error codes, one member per meaning.

    The Gateway answers with two vocabularies (``UNAUTHORIZED`` at the auth gate,
    ``Unauthorized`` from DevTools; ``NOT_FOUND`` next to ``RunNotFound``).
    :func:`normalize_error_code` maps both spellings onto these members; codes we do not
    know stay as plain strings so nothing the Gateway says is lost.
    """

    UNAUTHORIZED = "UNAUTHORIZED"
    FORBIDDEN = "FORBIDDEN"
    METHOD_NOT_FOUND = "METHOD_NOT_FOUND"
    INVALID_REQUEST = "INVALID_REQUEST"
    NOT_FOUND = "NOT_FOUND"
    RUN_NOT_FOUND = "RunNotFound"
    NODE_NOT_FOUND = "NodeNotFound"
    ITERATION_NOT_FOUND = "IterationNotFound"
    NODE_HAS_NO_OUTPUT = "NodeHasNoOutput"
    INVALID_RUN_ID = "InvalidRunId"
    INVALID_NODE_ID = "InvalidNodeId"
    INVALID_ITERATION = "InvalidIteration"
    SEQ_OUT_OF_RANGE = "SeqOutOfRange"
    FRAME_OUT_OF_RANGE = "FrameOutOfRange"
    BACKPRESSURE_DISCONNECT = "BackpressureDisconnect"
    PAYLOAD_TOO_LARGE = "PayloadTooLarge"
    BUSY = "Busy"
    RATE_LIMITED = "RateLimited"
    ATTEMPT_NOT_FINISHED = "AttemptNotFinished"
    VCS_ERROR = "VcsError"
    RUN_OWNER_ALIVE = "RunOwnerAlive"
    INTERNAL = "INTERNAL"
    UNAVAILABLE = "UNAVAILABLE"
    PROTOCOL_UNSUPPORTED = "PROTOCOL_UNSUPPORTED"


def _fold(code: str) -> str:
    return code.replace("_", "").replace("-", "").lower()


_BY_FOLDED: dict[str, ErrorCode] = {_fold(c.value): c for c in ErrorCode}
_BY_FOLDED.update(
    {
        "internalerror": ErrorCode.INTERNAL,
        "servererror": ErrorCode.INTERNAL,
        "ratelimit": ErrorCode.RATE_LIMITED,
        "toomanyrequests": ErrorCode.RATE_LIMITED,
        "serviceunavailable": ErrorCode.UNAVAILABLE,
    }
)

#: Codes that say "try again later"; everything else is final for that request.
TRANSIENT_CODES = frozenset(
    {ErrorCode.BUSY, ErrorCode.RATE_LIMITED, ErrorCode.BACKPRESSURE_DISCONNECT, ErrorCode.UNAVAILABLE}
)


def normalize_error_code(code: object) -> ErrorCode | str:
    """Map either spelling of a Gateway error code to an :class:`ErrorCode`.

    >>> normalize_error_code("Unauthorized") is ErrorCode.UNAUTHORIZED
    True
    >>> normalize_error_code("SomethingNew")
    'SomethingNew'
    """
    if isinstance(code, ErrorCode):
        return code
    text = str(code)
    return _BY_FOLDED.get(_fold(text), text)


class GatewayError(SmithersDashboardError):
    """Talking to the Gateway failed.

    ``retry_after`` is the number of seconds the Gateway asked us to wait (HTTP
    ``Retry-After``), or ``None`` when it did not say.
    """

    def __init__(self, *args: object, retry_after: float | None = None) -> None:
        super().__init__(*args)
        self.retry_after = retry_after


class GatewayUnavailable(GatewayError):
    """No usable answer: connection refused or cut, timeout, or an HTTP 5xx without a frame."""

    def __init__(self, message: str, *, status: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(message, retry_after=retry_after)
        self.status = status


class ResponseTooLarge(GatewayError):
    """An HTTP answer was bigger than the client's cap (``max_response_bytes``); it was not
    decoded, so nothing of it was applied. Not retried: the same call gets the same answer."""

    def __init__(self, method: str, limit: int) -> None:
        super().__init__(f"{method}: the gateway's answer is larger than {limit:,} bytes (max_response_bytes)")
        self.method = method
        self.limit = limit


class GatewayStalled(GatewayUnavailable):
    """The socket stayed silent past the stall timeout (no frame, no heartbeat).

    A stalled peer will not answer a closing handshake either: the connection is aborted,
    not closed politely, so recovery does not wait on it."""


class GatewayRpcError(GatewayError):
    """The Gateway answered a request with an error.

    ``code`` is normalised (see :func:`normalize_error_code`); ``raw_code`` keeps the
    spelling the Gateway used. ``required_scope`` is set on ``FORBIDDEN`` answers so a
    view can say which scope the token lacks instead of failing silently.
    """

    def __init__(
        self,
        code: object,
        message: str,
        *,
        status: int | None = None,
        required_scope: str | None = None,
        details: Any = None,
        method: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.code = normalize_error_code(code)
        self.raw_code = str(code)
        self.message = message
        self.status = status
        self.required_scope = required_scope
        self.details = details
        self.method = method
        where = f"{method}: " if method else ""
        super().__init__(f"{where}{self.raw_code}: {message}", retry_after=retry_after)

    @property
    def transient(self) -> bool:
        """True when the same request may succeed later (``Busy``, ``RateLimited``, 429/502/503/504)."""
        if self.code in TRANSIENT_CODES:
            return True
        return self.status in (429, 502, 503, 504)

    @property
    def unauthorized(self) -> bool:
        """True when the token itself was rejected (not merely lacking a scope)."""
        return self.code is ErrorCode.UNAUTHORIZED


class ProtocolUnsupported(GatewayError):
    """The Gateway speaks a WebSocket protocol version this package does not: its hello
    named another ``protocol``, or it refused ``connect`` with ``PROTOCOL_UNSUPPORTED``.

    Retrying cannot help until one side is upgraded, so a subscription stops on it with
    one message instead of reconnecting in a loop. ``gateway_protocol`` is the Gateway's
    version when it said; ``supported`` the (lowest, highest) version we speak.
    """

    def __init__(self, gateway_protocol: int | None, supported: tuple[int, int], detail: str = "") -> None:
        self.gateway_protocol = gateway_protocol
        self.supported = supported
        low, high = supported
        theirs = f"protocol {gateway_protocol}" if gateway_protocol is not None else "another protocol"
        ours = f"protocol {low}" if low == high else f"protocols {low}-{high}"
        message = (f"The Gateway speaks {theirs}; this dashboard speaks {ours}. "
                   "Use a Gateway of a supported Smithers version, or upgrade smithers-dashboard.")
        super().__init__(f"{message} ({detail})" if detail else message)

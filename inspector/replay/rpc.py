"""The RPC vocabulary the replay Gateway answers in: error codes, HTTP statuses, scopes, grants.

Both halves of the replay need it: :mod:`~inspector.replay.methods` raises these errors and
checks these scopes, :mod:`~inspector.replay.server` turns errors into WebSocket response
frames and HTTP statuses and hands out grants at ``connect``. Kept apart from both so that
neither imports the other for a table, and so the mapping can be read (and checked against
``gateway.js``) in one place.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from ..errors import GatewayRpcError
from ..protocol import ErrorInfo, ResponseFrame

__all__ = [
    "METHOD_ALIASES",
    "METHOD_SCOPES",
    "READ_SCOPES",
    "Grant",
    "error_response",
    "has_scope",
    "http_status_for",
    "rpc_error",
]

READ_SCOPES: Final = ("run:read", "observability:read")

#: Legacy method names the real Gateway still answers (``GATEWAY_RPC_LEGACY_METHOD_ALIASES`` in
#: ``@smithers-orchestrator/gateway/src/rpc/index.js``), and the HTTP route names
#: ``workflows.list`` / ``approvals.list``, answered as their RPC twins.
METHOD_ALIASES: Final[Mapping[str, str]] = {
    "runs.create": "launchRun",
    "runs.get": "getRun",
    "runs.list": "listRuns",
    "runs.cancel": "cancelRun",
    "runs.pause": "pauseRun",
    "approvals.decide": "submitApproval",
    "signals.send": "submitSignal",
    "jumpToFrame": "rewindRun",
    "devtools.jumpToFrame": "rewindRun",
    "devtools.getNodeOutput": "getNodeOutput",
    "devtools.getNodeDiff": "getNodeDiff",
    "workflows.list": "listWorkflows",
    "approvals.list": "listApprovals",
}

#: The scope each method needs, as the real Gateway decides it (``requiredScope`` of its RPC
#: catalogue, ``HTTP_ROUTE_SCOPES`` for its HTTP-only routes such as ``retryTask`` and
#: ``runs.rerun``; a method named nowhere needs ``run:read``). Every method the dashboard
#: calls or the replay serves is listed, so a token's scopes gate the replay exactly as they
#: gate the Gateway (``tests/test_hardening.py`` checks the table against ``rpc/index.js``).
METHOD_SCOPES: Final[Mapping[str, str]] = {
    # run-changing
    "launchRun": "run:write",
    "resumeRun": "run:write",
    "cancelRun": "run:write",
    "pauseRun": "run:write",
    "retryTask": "run:write",
    "runs.rerun": "run:write",
    "hijackRun": "run:admin",
    "rewindRun": "run:admin",
    "submitApproval": "approval:submit",
    "submitSignal": "signal:submit",
    # reads
    "getRun": "run:read",
    "listRuns": "run:read",
    "listWorkflows": "run:read",
    "listApprovals": "run:read",
    "listNodeStates": "run:read",
    "listRunTokenUsage": "run:read",
    "getNodeOutput": "run:read",
    "getNodeDiff": "run:read",
    "streamRunEvents": "run:read",
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


def http_status_for(code: str) -> int:
    """The HTTP status the real Gateway gives an error code (``statusForRpcError``)."""
    return _HTTP_STATUS.get(code, 500)


@dataclass(frozen=True, slots=True)
class Grant:
    """Who a caller is once authenticated: role, scopes, and the token that proved it."""

    role: str
    scopes: tuple[str, ...]
    user_id: str | None
    token_id: str | None
    token: str | None


def has_scope(scopes: Sequence[str], required: str) -> bool:
    """Does a grant's scope list cover ``required`` (``*``, exact, or a higher ``run:`` scope)?"""
    if "*" in scopes or required in scopes:
        return True
    if required in _RUN_SCOPE_ORDER:
        rank = _RUN_SCOPE_ORDER.index(required)
        return any(s in _RUN_SCOPE_ORDER and _RUN_SCOPE_ORDER.index(s) >= rank for s in scopes)
    return False


def rpc_error(code: str, message: str, **details: Any) -> GatewayRpcError:
    """A Gateway error; a ``requiredScope`` detail becomes the error's required scope."""
    scope = details.pop("requiredScope", None)
    return GatewayRpcError(code, message, required_scope=scope, details=details or None)


def error_response(request_id: str, error: GatewayRpcError) -> ResponseFrame:
    """The ``res`` frame (``ok: false``) that carries ``error`` back to the caller."""
    info = ErrorInfo(
        code=error.code,
        raw_code=error.raw_code,
        message=error.message,
        required_scope=error.required_scope,
        details=dict(error.details) if isinstance(error.details, Mapping) else {},
    )
    return ResponseFrame(id=request_id, ok=False, error=info)

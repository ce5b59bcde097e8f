"""The server-side handler of every action that changes a run: role check, call, audit, plain words.

:func:`perform` is what a control's confirmation calls. It does not trust the page: the
session's role is decided here, at the moment of the action, from the session's signed login
(:func:`dashboard.roles.session_role`), and a viewer's request never reaches the Gateway.
Either way one line goes to the audit log (:mod:`dashboard.audit`), and the Gateway's
refusals come back as one plain sentence (:func:`refusal_text`) with their code, so a view
shows ``Outcome.message`` as it is (as text: it may quote the Gateway).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from inspector.errors import ErrorCode, GatewayError, GatewayRpcError, GatewayUnavailable

from . import roles
from .audit import FAILED, OK, REFUSED, audit_log

if TYPE_CHECKING:
    from .audit import AuditLog
    from .config import DashboardConfig

__all__ = ["NOT_ALLOWED", "Outcome", "perform", "refusal_text"]

log = logging.getLogger(__name__)

#: ``Outcome.code`` of a request refused because the session is not an operator.
NOT_ALLOWED = "NotAllowed"


@dataclass(frozen=True, slots=True)
class Outcome:
    """How an action went: ``ok``, a plain ``message``, the refusal's ``code`` (``None`` when
    it went through) and the Gateway's answer (``result``, e.g. a launched run's id)."""

    ok: bool
    message: str
    code: str | None = None
    result: Any = None


def _seconds(value: float | None) -> str:
    return f" in {value:g} s" if value else " in a moment"


def refusal_text(exc: BaseException, *, frame: int | None = None) -> str:
    """One plain sentence for a refused or failed action (plain text, not HTML)."""
    if isinstance(exc, GatewayRpcError):
        code, raw = exc.code, exc.raw_code
        if code is ErrorCode.FORBIDDEN:
            scope = exc.required_scope or "a scope it does not have"
            return f"Refused: the dashboard's token lacks the scope {scope}."
        if code is ErrorCode.RUN_OWNER_ALIVE:
            return ("Refused: the run is still executing in its owner process. Tick “interrupt the live run” "
                    "to rewind it anyway.")
        if code is ErrorCode.FRAME_OUT_OF_RANGE or raw == "InvalidFrameNo":
            which = f"frame {frame}" if frame is not None else "that frame"
            return f"Refused: the run has no {which} to go back to (it may have been rewound meanwhile)."
        if code is ErrorCode.BUSY:
            return "Refused: another change to this run is under way; try again" + _seconds(exc.retry_after) + "."
        if code is ErrorCode.RATE_LIMITED:
            return "Refused: too many changes to this run for now; try again" + _seconds(exc.retry_after) + "."
        if code is ErrorCode.UNAUTHORIZED and "owner" in exc.message.lower():
            return "Refused: only the run's owner or a Gateway admin may do this, and the dashboard's token is neither."
        if code is ErrorCode.UNAUTHORIZED:
            return "Refused: the Gateway rejected the dashboard's token."
        if code in (ErrorCode.RUN_NOT_FOUND, ErrorCode.NOT_FOUND):
            return "Refused: the Gateway does not know this run (or that node)."
        if raw == "ConfirmationRequired":
            return "Refused: the Gateway wants the rewind confirmed."
        return f"Refused: {raw}: {exc.message}"
    if isinstance(exc, GatewayUnavailable):
        return f"Failed: the Gateway could not be reached ({exc})."
    return f"Failed: {exc}"


def _record(journal: AuditLog | None, **line: Any) -> None:
    if journal is None:
        return
    try:
        journal.record(**line)
    except OSError as exc:  # the action happened (or not) either way: say so in the server log
        log.error("cannot write the audit log %s: %s (%r)", journal.path, exc, line)


def _code(exc: GatewayError) -> str:
    if isinstance(exc, GatewayRpcError):
        return exc.raw_code
    return type(exc).__name__


async def perform(
    hub: Any,
    config: DashboardConfig,
    *,
    action: str,
    method: str,
    params: dict[str, Any],
    run_id: str | None,
    node_id: str | None = None,
    iteration: int | None = None,
    frame: int | None = None,
    force: bool | None = None,
    success: str | None = None,
) -> Outcome:
    """Check the session's role, call ``method`` with ``params``, audit it, say how it went.

    ``action`` names it for people and the audit log ("approve", "cancel", "rewind", ...);
    ``run_id`` / ``node_id`` / ``iteration`` / ``frame`` / ``force`` are what the audit line
    records (pass what ``params`` says). ``success`` is the message when it went through.
    Never raises for a refusal: a viewer, a Gateway error and an unreachable Gateway are all
    an :class:`Outcome` with ``ok=False``.
    """
    user = roles.session_user()
    journal = audit_log(config)
    facts = {"user": user, "action": action, "method": method, "run_id": run_id, "node_id": node_id,
             "iteration": iteration, "frame": frame, "force": force}
    if roles.role_for(config, user, roles.session_claims()) is not roles.Role.OPERATOR:
        message = "Refused: only an operator may change a run, and this session is a viewer."
        log.warning("action %s on run %s refused: %r is not an operator", action, run_id, user)
        _record(journal, **facts, outcome=REFUSED, code=NOT_ALLOWED, detail=message)
        return Outcome(False, message, NOT_ALLOWED)
    try:
        result = await hub.client.rpc(method, params)
    except GatewayError as exc:
        message = refusal_text(exc, frame=frame)
        if isinstance(exc, GatewayRpcError) and exc.code is ErrorCode.FORBIDDEN:
            roles.note_forbidden(hub, exc.required_scope)
        outcome = REFUSED if isinstance(exc, GatewayRpcError) else FAILED
        _record(journal, **facts, outcome=outcome, code=_code(exc), detail=message)
        return Outcome(False, message, _code(exc))
    message = success or f"{action.capitalize()}: done."
    _record(journal, **facts, outcome=OK, detail=message)
    log.info("action %s on run %s by %r: ok", action, run_id, user)
    return Outcome(True, message, None, result)

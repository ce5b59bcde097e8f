"""Who may change a run: the session's role, and what the Gateway token may do.

Two independent gates decide whether a control that changes a run exists:

- **the person**: a session is an :attr:`Role.OPERATOR` or a :attr:`Role.VIEWER`
  (:func:`session_role`). With actions off everyone is a viewer. With a login, operators are
  the users named by ``--operators`` or carrying the ``--operator-claim NAME=VALUE`` claim
  of their OAuth identity; when neither is given every logged-in user operates. Without a
  login (``serve`` allows that on loopback only) the one local user operates, unless
  operators are named: a session that cannot say who it is is never a named operator.
- **the token**: the Gateway grants the dashboard's token scopes (the ``hello`` answer's
  ``auth.scopes``). A control whose method needs a scope the token lacks is pointless, so it
  is not shown (:func:`token_scopes`, :func:`may_call`). A ``FORBIDDEN`` answer naming the
  scope it wanted is remembered too (:func:`note_forbidden`).

:func:`session_visitor` names who is visiting (the user, else the client address) for the
hub's per-visitor limit on upstream subscriptions.

The person's role is checked again by the server-side handler of every action
(:func:`dashboard.operate.perform`), never taken from the page. The user comes from Panel's
signed ``user`` cookie, decoded here rather than through ``pn.state.user``, which believes an
unsigned ``is_guest`` cookie and would let a visitor call themselves "guest".
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time
import weakref
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from inspector.client import MUTATING_METHODS
from inspector.errors import GatewayError, SmithersDashboardError
from inspector.replay.rpc import METHOD_ALIASES, METHOD_SCOPES as GATEWAY_METHOD_SCOPES

if TYPE_CHECKING:
    from .config import DashboardConfig

__all__ = [
    "METHOD_SCOPES",
    "NotAllowed",
    "Role",
    "claim_matches",
    "may_call",
    "shows_control",
    "note_forbidden",
    "require_operator",
    "role_for",
    "scope_grants",
    "session_claims",
    "session_role",
    "session_user",
    "session_visitor",
    "token_scopes",
]

log = logging.getLogger(__name__)


class Role(enum.StrEnum):
    """What a session may do: look (``viewer``) or also change runs (``operator``)."""

    VIEWER = "viewer"
    OPERATOR = "operator"


class NotAllowed(SmithersDashboardError):
    """A session that is not an operator asked for an action that changes a run."""

    def __init__(self, user: str | None, action: str) -> None:
        who = f"{user!r}" if user else "this session"
        super().__init__(f"{who} is not an operator: {action} refused")
        self.user = user
        self.action = action


# ------------------------------------------------------------------ the person


def session_user() -> str | None:
    """The logged-in user of the current Panel session (``None``: no login, or not in a session).

    Panel's login (basic or OAuth) leaves a ``user`` cookie signed with the cookie secret;
    anything unsigned or forged decodes to ``None``.
    """
    import panel as pn
    from tornado.web import decode_signed_value

    secret = pn.config.cookie_secret
    try:
        raw = pn.state.cookies.get("user")
    except Exception:  # no session (a notebook, a test): nobody is logged in
        return None
    if not raw or not secret:
        return None
    decoded = decode_signed_value(secret, "user", raw)
    return decoded.decode("utf-8") if decoded else None


def session_visitor() -> str | None:
    """Who is visiting, as a key the hub caps upstream subscriptions by (``None``: no session).

    - With a login, the user (``user:NAME``, from the signed cookie of :func:`session_user`):
      every tab of one person counts together, and colleagues behind one NAT or proxy address
      are not lumped into one visitor.
    - Without one, the client's address (``address:IP``): ``remote_ip`` of the HTTP request
      that opened the session, as tornado reports it. That is the TCP peer, unless the server
      runs behind a reverse proxy it was told to trust (``serve --trusted-proxy``, Bokeh's
      ``--use-xheaders``): then tornado takes the address the proxy wrote in ``X-Real-Ip`` /
      ``X-Forwarded-For``. Those headers are never read here: sent by a client straight to the
      port they are whatever the client likes, and a visitor could claim a new address per tab
      and escape the cap. (Behind an untrusted proxy every visitor is the proxy's address and
      shares one cap; login or ``--trusted-proxy`` fixes that.)
    """
    user = session_user()
    if user is not None:
        return f"user:{user}"
    import panel as pn

    try:
        request = pn.state.curdoc.session_context.request  # type: ignore[union-attr]
        address = getattr(request, "remote_ip", None)
    except Exception:  # not in a served session (a notebook, a test)
        return None
    return f"address:{address}" if isinstance(address, str) and address else None


def session_claims() -> Mapping[str, Any]:
    """The OAuth identity claims of the current session (empty without OAuth)."""
    import panel as pn

    try:
        if pn.state.cookies.get("is_guest"):
            return {}
        info = pn.state.user_info
    except Exception:
        return {}
    return info if isinstance(info, Mapping) else {}


def claim_matches(claims: Mapping[str, Any], name: str, value: str) -> bool:
    """Does claim ``name`` equal ``value`` or, as a list (``groups``, ``roles``), hold it?

    A string claim is also split on commas and spaces, the way some providers flatten lists.
    """
    held = claims.get(name)
    if isinstance(held, str):
        return held == value or value in held.replace(",", " ").split()
    if isinstance(held, Iterable) and not isinstance(held, (bytes, Mapping)):
        return any(str(item) == value for item in held)
    return held is not None and str(held) == value


def role_for(config: DashboardConfig, user: str | None, claims: Mapping[str, Any] | None = None) -> Role:
    """The role of ``user`` (with OAuth ``claims``) under ``config`` (see the module docstring)."""
    if not config.actions_enabled:
        return Role.VIEWER
    if user is None:
        anonymous_operates = not (config.login_required or config.names_operators)
        return Role.OPERATOR if anonymous_operates else Role.VIEWER
    if not config.names_operators:
        return Role.OPERATOR
    if user in config.operators:
        return Role.OPERATOR
    if config.operator_claim is not None and claim_matches(claims or {}, *config.operator_claim):
        return Role.OPERATOR
    return Role.VIEWER


def session_role(config: DashboardConfig) -> Role:
    """The current Panel session's role, from its signed login cookie and OAuth claims."""
    return role_for(config, session_user(), session_claims())


def require_operator(config: DashboardConfig, action: str) -> str | None:
    """Raise :class:`NotAllowed` unless this session operates; return its user."""
    user = session_user()
    if role_for(config, user, session_claims()) is not Role.OPERATOR:
        raise NotAllowed(user, action)
    return user


# ------------------------------------------------------------------ the token

#: The scope each run-changing Gateway method needs: the Gateway's own table (0.32), kept
#: once in :data:`inspector.replay.rpc.METHOD_SCOPES` (checked against its JavaScript), for
#: every method a control may call (``MUTATING_METHODS`` of the client, aliases included).
METHOD_SCOPES: dict[str, str] = {
    method: GATEWAY_METHOD_SCOPES[METHOD_ALIASES.get(method, method)] for method in sorted(MUTATING_METHODS)
}

_RUN_LADDER = ("run:read", "run:write", "run:admin")
#: Scopes of the Gateway's older vocabulary and what each one grants.
_LEGACY: dict[str, frozenset[str]] = {
    "read": frozenset({"run:read", "observability:read", "score:read", "cron:read"}),
    "execute": frozenset({"run:read", "run:write", "signal:submit", "cron:read", "cron:write"}),
    "approve": frozenset({"approval:submit", "run:read", "run:write", "signal:submit"}),
}


def scope_grants(granted: Iterable[str], required: str, method: str | None = None) -> bool:
    """Do the ``granted`` scopes cover ``required``? (``*``, the run:read < write < admin
    ladder, the legacy ``read``/``execute``/``approve``/``admin`` scopes, and a grant of the
    method's own name.)"""
    for scope in (s.strip() for s in granted):
        if scope in ("*", "admin", required) or (method is not None and scope == method):
            return True
        if scope in _RUN_LADDER and required in _RUN_LADDER and _RUN_LADDER.index(scope) >= _RUN_LADDER.index(required):
            return True
        if required in _LEGACY.get(scope, ()):
            return True
    return False


class _TokenKnowledge:
    """What one Gateway client's token was seen to be granted or refused."""

    def __init__(self) -> None:
        self.scopes: frozenset[str] | None = None
        self.checked_at = 0.0
        self.refused: set[str] = set()
        self.lock = asyncio.Lock()


_KNOWLEDGE: weakref.WeakKeyDictionary[Any, _TokenKnowledge] = weakref.WeakKeyDictionary()
#: Seconds a ``hello``'s scopes are trusted before asking again (tokens rotate).
SCOPES_TTL = 300.0


def _knowledge(client: Any, *, create: bool = True) -> _TokenKnowledge | None:
    """What is known of ``client``'s token (``None`` for a client we cannot keep a weak key of)."""
    try:
        known = _KNOWLEDGE.get(client)
        if known is None and create:
            known = _KNOWLEDGE[client] = _TokenKnowledge()
    except TypeError:
        return None
    return known


async def token_scopes(hub: Any) -> frozenset[str] | None:
    """The scopes the Gateway granted ``hub``'s token (its ``hello``), ``None`` if unknown.

    Asked once per client every :data:`SCOPES_TTL` seconds over a socket of its own; an
    unreachable Gateway leaves it unknown (the controls stay and the Gateway decides).
    """
    client = getattr(hub, "client", None)
    if client is None or not hasattr(client, "open"):
        return None
    known = _knowledge(client)
    if known is None:
        return None
    async with known.lock:
        if known.scopes is not None and time.monotonic() - known.checked_at < SCOPES_TTL:
            return known.scopes
        try:
            conn = await client.open()
        except GatewayError as exc:
            log.info("cannot read the token's scopes: %s", exc)
            return known.scopes
        with contextlib.suppress(Exception):
            await conn.close()
        scopes = conn.scopes
        auth = conn.hello.get("auth") if isinstance(conn.hello, Mapping) else None
        # A Gateway that says nothing about auth (no-auth mode says ["*"]) is not second-guessed.
        known.scopes = frozenset(scopes) if isinstance(auth, Mapping) else None
        known.checked_at = time.monotonic()
        known.refused.clear()
        return known.scopes


def note_forbidden(hub: Any, scope: str | None) -> None:
    """Remember a ``FORBIDDEN`` answer's ``required_scope``: its controls go away."""
    client = getattr(hub, "client", None)
    known = _knowledge(client) if client is not None and scope else None
    if known is not None and scope:
        known.refused.add(scope)


def may_call(hub: Any, method: str, scopes: frozenset[str] | None = None) -> bool:
    """Can the token call ``method``, as far as we know? (Unknown: yes; the Gateway decides.)"""
    required = METHOD_SCOPES.get(method)
    if required is None:
        return True
    client = getattr(hub, "client", None)
    known = _knowledge(client, create=False) if client is not None else None
    if known is not None and required in known.refused:
        return False
    granted = scopes if scopes is not None else (known.scopes if known is not None else None)
    return granted is None or scope_grants(granted, required, method)


def shows_control(config: DashboardConfig, hub: Any, method: str, scopes: frozenset[str] | None = None) -> bool:
    """Does the current session get the control that calls ``method``? (its role, then the
    token's scopes; ``scopes`` from :func:`token_scopes`). What to *show*: the action itself
    still goes through :func:`dashboard.operate.perform`, which checks the role again."""
    return session_role(config) is Role.OPERATOR and may_call(hub, method, scopes)

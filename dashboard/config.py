"""Server-side configuration: which Gateway to watch and with which token.

The Gateway URL and token come only from the server's environment, never from the page
URL or the browser: a dashboard that accepted ``?gateway=`` would let any visitor point
our token at a host of their choosing. The token is read once here and handed to the
process-wide :class:`~dashboard.hub.GatewayHub`; no view ever sees it.

Environment:

- ``SMITHERS_GATEWAY_URL`` (default ``http://127.0.0.1:7331``)
- ``SMITHERS_TOKEN``, or ``SMITHERS_TOKEN_FILE`` naming a file that holds it (so it stays
  out of ``ps`` and shell history). A token file is read again whenever the Gateway rejects
  the token: rotate the token by rewriting the file, no restart or page reload needed
- ``SMITHERS_DASHBOARD_ACTIONS=1`` enables write controls (off: the dashboard is read-only)
- ``SMITHERS_MONITOR_ROTATE`` seconds between runs on the wall monitor (default 20)
- ``SMITHERS_DASHBOARD_OPERATORS=alice,bob``: the logged-in users who may change runs
  (naming operators, by name or claim, turns actions on)
- ``SMITHERS_DASHBOARD_OPERATOR_CLAIM=groups=smithers-operators``: or those whose OAuth
  claim ``groups`` holds (or is) ``smithers-operators``
- ``SMITHERS_DASHBOARD_LOGIN=1``: the server requires a login (``serve`` sets it), so a
  session without a user is never an operator
- ``SMITHERS_DASHBOARD_AUDIT_LOG=FILE``: every action appended to FILE as a JSON line
- ``SMITHERS_DASHBOARD_WORKFLOW_SCHEMAS=FILE``: the JSON Schema of each workflow's input
  (``{workflow key: schema}``), for the launch form (``serve --workflow-schemas FILE``); the
  Gateway does not publish them (see :mod:`dashboard.schema_form`)

Who is an operator is decided by :mod:`dashboard.roles` from these settings.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from inspector.errors import ConfigurationError

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["DEFAULT_GATEWAY_URL", "FOLLOW_ACTIVE_ENV", "SCHEMAS_ENV", "DashboardConfig", "load_config", "parse_claim", "parse_operators", "read_token_file"]

DEFAULT_GATEWAY_URL = "http://127.0.0.1:7331"
#: The environment variable naming the launch form's workflow input schemas file.
SCHEMAS_ENV = "SMITHERS_DASHBOARD_WORKFLOW_SCHEMAS"
#: The environment variable of ``serve --follow-active N``.
FOLLOW_ACTIVE_ENV = "SMITHERS_DASHBOARD_FOLLOW_ACTIVE"
_TRUE = {"1", "true", "yes", "on"}


@dataclass(frozen=True, slots=True)
class DashboardConfig:
    """What the server knows about its Gateway. ``repr`` never shows the token."""

    gateway_url: str = DEFAULT_GATEWAY_URL
    token: str | None = field(default=None, repr=False)
    #: Where the token came from, when a file: read again after the Gateway rejects it.
    token_file: str | None = None
    actions_enabled: bool = False
    monitor_rotate_seconds: float = 20.0
    event_log_size: int = 2000
    operators: frozenset[str] = frozenset()
    operator_claim: tuple[str, str] | None = None
    login_required: bool = False
    audit_log: str | None = None
    #: The ``{workflow key: JSON Schema}`` file of the launch form (re-read when it changes).
    workflow_schemas: str | None = None
    #: How many of the newest active runs the server follows before anyone opens them
    #: (:mod:`dashboard.follow_active`; 0: none).
    follow_active: int = 0

    @property
    def names_operators(self) -> bool:
        """Operators are named (by user or by claim) rather than every logged-in user."""
        return bool(self.operators) or self.operator_claim is not None

    @property
    def has_token(self) -> bool:
        return bool(self.token)


def read_token_file(path: str) -> str | None:
    """The token in ``path`` (stripped; ``None`` if empty); ``ValueError`` if unreadable."""
    try:
        text = Path(path).expanduser().read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ValueError(f"SMITHERS_TOKEN_FILE {path!r} cannot be read: {exc.strerror or exc}") from None
    return text or None


def _float(env: Mapping[str, str], key: str, default: float, minimum: float) -> float:
    raw = env.get(key)
    if raw is None or not raw.strip():
        return default
    try:
        return max(minimum, float(raw))
    except ValueError:
        raise ValueError(f"{key} must be a number, got {raw!r}") from None


def _path(raw: str | None) -> str | None:
    """A file setting as an absolute path (``None`` when unset or blank)."""
    if raw is None or not raw.strip():
        return None
    return str(Path(raw.strip()).expanduser().resolve())


def parse_operators(raw: str | None) -> frozenset[str]:
    """``"alice, bob"`` -> ``{"alice", "bob"}`` (commas or spaces between names)."""
    return frozenset(name for name in re.split(r"[,\s]+", raw or "") if name)


def parse_claim(raw: str | None) -> tuple[str, str] | None:
    """``"groups=smithers-operators"`` -> ``("groups", "smithers-operators")``."""
    if raw is None or not raw.strip():
        return None
    name, sep, value = raw.strip().partition("=")
    if not sep or not name.strip() or not value.strip():
        raise ConfigurationError(f"an operator claim is NAME=VALUE (e.g. groups=smithers-operators), got {raw!r}")
    return name.strip(), value.strip()


def load_config(env: Mapping[str, str] | None = None) -> DashboardConfig:
    """Read the configuration from ``env`` (default: the process environment).

    ``SMITHERS_TOKEN`` wins over ``SMITHERS_TOKEN_FILE`` when both are set. A token file
    that cannot be read is an error, not a silent anonymous connection.
    """
    env = os.environ if env is None else env
    url = (env.get("SMITHERS_GATEWAY_URL") or DEFAULT_GATEWAY_URL).strip().rstrip("/")
    token = (env.get("SMITHERS_TOKEN") or "").strip() or None
    token_file = None
    if token is None and env.get("SMITHERS_TOKEN_FILE"):
        token_file = str(Path(env["SMITHERS_TOKEN_FILE"]).expanduser().resolve())
        token = read_token_file(token_file)
    operators = parse_operators(env.get("SMITHERS_DASHBOARD_OPERATORS"))
    claim = parse_claim(env.get("SMITHERS_DASHBOARD_OPERATOR_CLAIM"))
    return DashboardConfig(
        gateway_url=url,
        token=token,
        token_file=token_file,
        # Naming operators turns the controls on (for them).
        actions_enabled=(env.get("SMITHERS_DASHBOARD_ACTIONS", "").strip().lower() in _TRUE)
        or bool(operators) or claim is not None,
        monitor_rotate_seconds=_float(env, "SMITHERS_MONITOR_ROTATE", 20.0, 3.0),
        event_log_size=int(_float(env, "SMITHERS_DASHBOARD_EVENTS", 2000, 100)),
        operators=operators,
        operator_claim=claim,
        login_required=(env.get("SMITHERS_DASHBOARD_LOGIN", "").strip().lower() in _TRUE),
        audit_log=(env.get("SMITHERS_DASHBOARD_AUDIT_LOG") or "").strip() or None,
        workflow_schemas=_path(env.get(SCHEMAS_ENV)),
        follow_active=int(_float(env, FOLLOW_ACTIVE_ENV, 0, 0)),
    )

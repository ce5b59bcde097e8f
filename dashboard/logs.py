"""The server's logs: a level, plain text or JSON lines, and never the Gateway token.

``smithers-dashboard serve --log-level LEVEL --log-format json`` passes its choice to the
``panel serve`` process in ``SMITHERS_DASHBOARD_LOG_LEVEL`` / ``SMITHERS_DASHBOARD_LOG_FORMAT``;
the ops plugin (:mod:`dashboard.ops`) applies it once Bokeh has set up its root handler.
Every root handler gets a :class:`SecretRedactor`, so a token that slipped into a message
(an exception quoting a URL or a header) is replaced before it is written.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

__all__ = ["LEVEL_ENV", "FORMAT_ENV", "JsonFormatter", "SecretRedactor", "configure", "configure_from_environment"]

LEVEL_ENV = "SMITHERS_DASHBOARD_LOG_LEVEL"
FORMAT_ENV = "SMITHERS_DASHBOARD_LOG_FORMAT"
_REDACTED = "[redacted]"


class SecretRedactor(logging.Filter):
    """Replace each secret in a record's message (and exception text) with ``[redacted]``."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self.secrets = [s for s in secrets if s and len(s) >= 4]

    def _clean(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, _REDACTED)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.secrets:
            return True
        message = record.getMessage()
        cleaned = self._clean(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self._clean(record.exc_text)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object a line: ``time`` (UTC, ISO 8601), ``level``, ``logger``, ``message``
    and ``exc`` when there is a traceback."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, object] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,
        }
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            out["exc"] = record.exc_text
        return json.dumps(out, ensure_ascii=False)


def configure(level: str | None, fmt: str | None, secrets: Iterable[str] = ()) -> None:
    """Apply ``level`` (``debug``..``critical``) and ``fmt`` (``json`` or ``text``) to the root
    logger's handlers (adding a stderr handler if there is none), with the redactor."""
    root = logging.getLogger()
    if not root.handlers:
        root.addHandler(logging.StreamHandler())
    if level:
        root.setLevel(level.upper())
    redactor = SecretRedactor(secrets)
    for handler in root.handlers:
        for old in [f for f in handler.filters if isinstance(f, SecretRedactor)]:
            handler.removeFilter(old)
        handler.addFilter(redactor)
        if fmt == "json":
            handler.setFormatter(JsonFormatter())


def configure_from_environment(env: Mapping[str, str] | None = None, secrets: Iterable[str] = ()) -> None:
    """:func:`configure` from ``SMITHERS_DASHBOARD_LOG_*``; ``secrets``, the Gateway token and
    the cookie and OAuth secrets of the environment are redacted."""
    env = os.environ if env is None else env
    secrets = [*secrets, *(env.get(k, "") for k in ("SMITHERS_TOKEN", "PANEL_COOKIE_SECRET", "PANEL_OAUTH_SECRET"))]
    configure(env.get(LEVEL_ENV) or None, (env.get(FORMAT_ENV) or "text").lower(), secrets)

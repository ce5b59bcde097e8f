# mypy: allow-untyped-calls
"""ConnectionBadge: is what I see live? Online, connecting, offline for how long, or
unauthorized and what to do about it.

Peer UIs were faulted for a timer that kept ticking with no warning after the socket
dropped (dagster-io/dagster#3015) and for wall panels stuck on "Connection lost"
(jxlarrea/kiosk-satellite#228). This view says the state in words, how long the outage
has lasted, when the next retry is, and why; its root carries
``data-connection-status="<status>"`` for tests and CSS. A one-second tick runs only
while offline or unauthorized, to keep "for 12 s" true; otherwise nothing polls.
"""

from __future__ import annotations

import html
import time

from ..format import format_ago, format_duration
from .base import TickingHtml

__all__ = ["ConnectionBadge", "connection_html"]

_LABELS = {
    "idle": "Not watching a run",
    "connecting": "Connecting…",
    "online": "Live",
    "offline": "Offline",
    "unauthorized": "Unauthorized",
    "unsupported": "Unsupported Gateway",
}


def connection_html(
    status: str,
    *,
    outage_since: float | None = None,
    error: str | None = None,
    required_scope: str | None = None,
    retry_in: float | None = None,
    last_heartbeat: float | None = None,
    now: float | None = None,
) -> str:
    """The status badge as HTML; every Gateway-supplied string is escaped."""
    now = time.time() if now is None else now
    label = _LABELS.get(status, status)
    detail = ""
    title = ""
    if status == "offline":
        if outage_since is not None:
            label = f"Offline for {format_duration(now - outage_since)}"
            title = "since " + time.strftime("%H:%M:%S", time.localtime(outage_since))
        parts = [title] if title else []
        if retry_in is not None:
            parts.append(f"retrying in {format_duration(retry_in)}")
        if error:
            parts.append(error)
        detail = " · ".join(parts)
    elif status == "unauthorized":
        if required_scope:
            detail = f"the token lacks the scope {required_scope}"
        else:
            # The Gateway's words first: they carry its refresh hint ("to refresh the token:
            # smithers token issue") when the token expired or was revoked.
            said = f"the Gateway rejected the token ({error})" if error else "the Gateway rejected the token"
            detail = (f"{said}: put the new token in SMITHERS_TOKEN_FILE on the dashboard server "
                      "(read again at the next retry) or set SMITHERS_TOKEN")
        if error:
            title = error
    elif status == "unsupported":
        detail = error or "the Gateway speaks a protocol version this dashboard does not"
    elif status == "online":
        if required_scope:
            detail = f"some reads need the scope {required_scope}"
        elif last_heartbeat is not None:
            title = f"last heartbeat {format_ago(last_heartbeat, now)}"
    elif status == "connecting" and outage_since is not None:
        # Between two retries of an outage: still down, and for how long (a wall screen
        # must not flip between "offline" and a bare "connecting" every few seconds).
        label = f"Reconnecting · offline for {format_duration(now - outage_since)}"
        title = "since " + time.strftime("%H:%M:%S", time.localtime(outage_since))
        detail = " · ".join(p for p in (title, error) if p)
    elif status == "connecting" and error:
        detail = error
    safe_status = html.escape(status, quote=True)
    return (
        f'<div class="sd-conn" data-connection-status="{safe_status}" title="{html.escape(title, quote=True)}"'
        f' role="status" aria-live="polite">'
        f'<span class="sd-dot"></span><b>{html.escape(label)}</b>'
        + (f'<span class="sd-detail">{html.escape(detail)}</span>' if detail else "")
        + "</div>"
    )


class ConnectionBadge(TickingHtml):
    """A badge with the store's connection status (see the module docstring).

    Named for what it is on the page; the state it shows is
    :class:`inspector.status.ConnectionStatus`.
    """

    _redraw_on = ("connection_status", "outage_since", "connection_error", "required_scope", "retry_in", "last_heartbeat")

    def _render(self) -> str:
        s = self.store
        return connection_html(
            s.connection_status,
            outage_since=s.outage_since,
            error=s.connection_error,
            required_scope=s.required_scope,
            retry_in=s.retry_in,
            last_heartbeat=s.last_heartbeat,
        )

    def _wants_tick(self) -> bool:
        """Tick only while the "for N s" text changes by itself."""
        s = self.store
        return s.connection_status in ("offline", "unauthorized") or (
            s.connection_status == "connecting" and s.outage_since is not None
        )

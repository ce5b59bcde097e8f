"""A replay Gateway that misbehaves on demand: the fault injection the tests and benchmarks use.

:class:`FaultyReplayGateway` is a :class:`~inspector.replay.ReplayGateway` with one method
per fault a real deployment can produce, so a test reaches any of them without a Node
toolchain or timing luck. It lives under ``tests/`` (as websockets keeps its test servers)
because nothing a user runs needs it; it uses only the extension points the server
documents (:meth:`~inspector.replay.server.ReplayGateway._intercept_http`, the player's
``running`` gate, the open connections).

- the clock: :meth:`~FaultyReplayGateway.pause` / :meth:`~FaultyReplayGateway.resume`;
- the sockets: :meth:`~FaultyReplayGateway.drop_connections` (TCP reset, no close frame),
  :meth:`~FaultyReplayGateway.send_raw` (malformed JSON, a wrong frame...);
- the streams: :meth:`~FaultyReplayGateway.inject_devtools_event` (a delta with a gap, an
  unknown op...), :meth:`~FaultyReplayGateway.devtools_error` (``devtools.error``);
- auth: :meth:`~FaultyReplayGateway.set_token` (revocation, close 1008);
- HTTP: :attr:`~FaultyReplayGateway.rpc_failures` (a rate limiter, a failing proxy);
- an operator's rewind with no auth checks: :meth:`~FaultyReplayGateway.rewind`.

The counters ``connections_total``, ``active_connections`` and ``streams_total`` are the
server's own.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Final

from inspector.protocol import encode_frame
from inspector.replay import ReplayGateway
from inspector.replay.rpc import METHOD_SCOPES, error_response, rpc_error

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["FaultyReplayGateway"]

#: The error a :attr:`FaultyReplayGateway.rpc_failures` status answers with (5xx proxies send text).
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


class FaultyReplayGateway(ReplayGateway):
    """A :class:`~inspector.replay.ReplayGateway` with fault injection (see the module doc)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # A double given no token is an open one (benchmarks); the runtime class refuses.
        kwargs.setdefault("no_auth", kwargs.get("token") is None and kwargs.get("read_token") is None)
        super().__init__(*args, **kwargs)
        #: Injected HTTP failures: ``rpc_failures["getRun"] = [429, 502]`` makes the next two
        #: HTTP ``getRun`` calls answer 429 (a RateLimited frame) and 502 (proxy text).
        self.rpc_failures: dict[str, list[int]] = {}

    def pause(self) -> None:
        """Hold every run where it is (nothing is released until :meth:`resume`)."""
        self.player.running.clear()

    def resume(self) -> None:
        self.player.running.set()

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
        frame_no = live.check_frame(frame_no)
        self.player.rewind(live, frame_no, caller)()
        return frame_no

    def _intercept_http(self, method: str | None, request_id: str) -> tuple[int, str, dict[str, str]] | None:
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
        body = encode_frame(error_response(request_id, rpc_error(code, message, **extra)))
        headers = {"Content-Type": "application/json"}
        if status == 429:
            headers["Retry-After"] = "1"
        return status, body, headers

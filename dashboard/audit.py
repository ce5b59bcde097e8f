"""The audit log: every action a session asked for, one JSON object per line (``--audit-log FILE``).

A line names who (``user``), what (``action``, the Gateway ``method``), on what (``runId``,
``nodeId``, ``iteration``, ``frame``, ``force``), when (``time``, UTC ISO 8601) and how it
went (``outcome``: ``ok``, ``refused`` or ``failed``, with ``code`` and a plain ``detail``).
It never holds the Gateway token: the fields are chosen here, not copied from a request,
and ``detail`` is scrubbed of any secret the caller names.

Each line goes to the file in a single ``write`` on a descriptor opened ``O_APPEND``, under a
lock: sessions of one process never interleave, and the processes of ``--num-procs`` append
whole lines too. A file the log creates is readable by its owner only (0600).
:func:`audit_log` gives one :class:`AuditLog` per process per path.
"""

from __future__ import annotations

import json
import os
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

__all__ = ["FAILED", "OK", "REFUSED", "AuditLog", "audit_log"]

#: The values of a line's ``outcome``.
OK, REFUSED, FAILED = "ok", "refused", "failed"
REDACTED = "<redacted>"
#: How much of the file's end :meth:`AuditLog.read` looks at.
READ_TAIL_BYTES = 4 * 1024 * 1024


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class AuditLog:
    """Append-only JSON lines at ``path`` (see the module docstring)."""

    def __init__(self, path: str | os.PathLike[str], *, secrets: tuple[str, ...] = ()) -> None:
        self.path = Path(path).expanduser().resolve()
        self._secrets = tuple(s for s in secrets if s)
        self._lock = threading.Lock()
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)

    def __repr__(self) -> str:
        return f"AuditLog({str(self.path)!r})"

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        return text

    def record(
        self,
        *,
        user: str | None,
        action: str,
        run_id: str | None,
        outcome: str,
        method: str | None = None,
        node_id: str | None = None,
        iteration: int | None = None,
        frame: int | None = None,
        force: bool | None = None,
        code: str | None = None,
        detail: str = "",
    ) -> dict[str, Any]:
        """Append one line and return it as a dict."""
        entry: dict[str, Any] = {
            "time": _now_iso(),
            "user": user,
            "action": action,
            "method": method,
            "runId": run_id,
            "nodeId": node_id,
            "iteration": iteration,
            "frame": frame,
            "force": force,
            "outcome": outcome,
            "code": code,
            "detail": self._scrub(detail),
        }
        line = (json.dumps(entry, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")
        with self._lock:
            os.write(self._fd, line)
        return entry

    def read(self, limit: int = 1000) -> list[dict[str, Any]]:
        """The last ``limit`` lines, newest first (lines that are not JSON objects skipped)."""
        try:
            with open(self.path, "rb") as handle:
                size = handle.seek(0, os.SEEK_END)
                start = max(0, size - READ_TAIL_BYTES)
                handle.seek(start)
                data = handle.read()
        except OSError:
            return []
        lines = data.split(b"\n")
        if start > 0:
            lines = lines[1:]  # the first one is cut
        out: list[dict[str, Any]] = []
        for raw in reversed(lines):
            if len(out) >= limit:
                break
            if not raw.strip():
                continue
            try:
                entry = json.loads(raw)
            except ValueError:
                continue
            if isinstance(entry, dict):
                out.append(entry)
        return out

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1


_LOGS: dict[Path, AuditLog] = {}
_LOGS_LOCK = threading.Lock()


def audit_log(config: Any) -> AuditLog | None:
    """The process's :class:`AuditLog` for ``config.audit_log`` (``None`` when not set)."""
    path = getattr(config, "audit_log", None)
    if not path:
        return None
    key = Path(path).expanduser().resolve()
    with _LOGS_LOCK:
        log = _LOGS.get(key)
        if log is None:
            token = getattr(config, "token", None)
            log = _LOGS[key] = AuditLog(key, secrets=(token,) if token else ())
        return log

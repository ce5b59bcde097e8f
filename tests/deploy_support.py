"""Helpers for the deployment tests: processes started from the project's CLI, polled over HTTP.

:class:`Served` runs a command in its own process group with its output in a log file and
stops the whole group (``smithers-dashboard serve`` runs ``panel serve`` under it).
:func:`start_replay_gateway` is ``smithers-dashboard replay`` on a free port. Every wait
polls a condition with a deadline.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from typing import IO, TYPE_CHECKING, Any

import httpx

from tests.gateway.server import free_port

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence
    from pathlib import Path

__all__ = ["Served", "cli", "free_port", "poll", "start_replay_gateway", "wait_status"]


def cli(*args: str) -> list[str]:
    """``smithers-dashboard ARGS`` run by this interpreter (the checkout first on the path)."""
    return [sys.executable, "-m", "inspector.cli", *args]


def poll(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.1) -> Any:
    """Return ``predicate()``'s first truthy value; AssertionError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)  # poll interval, not synchronisation


class Served:
    """A server process of ours (its whole process group is stopped by :meth:`stop`)."""

    def __init__(self, cmd: Sequence[str], log_path: Path, *, env: Mapping[str, str] | None = None,
                 cwd: Path | None = None) -> None:
        self.log_path = log_path
        self._log: IO[bytes] = open(log_path, "ab")  # noqa: SIM115 - closed by stop()
        self.process = subprocess.Popen(
            list(cmd), env=dict(env) if env is not None else None, cwd=cwd, stdin=subprocess.DEVNULL,
            stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True,
        )

    def log(self) -> str:
        return self.log_path.read_bytes().decode("utf-8", "replace")

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)  # a child left behind by the leader
        self._log.close()

    def wait_status(self, url: str, status: int = 200, timeout: float = 60.0, **kwargs: Any) -> httpx.Response:
        """Poll ``url`` until it answers ``status`` (failing early if the process died)."""
        def answered() -> httpx.Response | None:
            assert self.alive(), f"the server exited ({self.process.returncode}):\n{self.log()[-4000:]}"
            with contextlib.suppress(httpx.TransportError):
                response = httpx.get(url, timeout=5, **kwargs)
                if response.status_code == status:
                    return response
            return None

        try:
            result: httpx.Response = poll(answered, timeout, f"{url} to answer {status}")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.log()[-4000:]}") from None
        return result


def wait_status(url: str, status: int, timeout: float = 30.0, **kwargs: Any) -> httpx.Response:
    """Poll ``url`` (no process to watch) until it answers ``status``."""
    def answered() -> httpx.Response | None:
        with contextlib.suppress(httpx.TransportError):
            response = httpx.get(url, timeout=5, **kwargs)
            if response.status_code == status:
                return response
        return None

    result: httpx.Response = poll(answered, timeout, f"{url} to answer {status}")
    return result


def start_replay_gateway(files: Sequence[Path], log_path: Path, *, token_file: Path | None = None,
                         env: Mapping[str, str] | None = None, speed: float = 1.0,
                         port: int | None = None) -> tuple[Served, str]:
    """``smithers-dashboard replay FILES --loop`` on ``port`` (default: a free one); returns it and its URL."""
    port = port or free_port()
    args = ["replay", *map(str, files), "--port", str(port), "--loop", "--speed", str(speed)]
    if token_file is not None:
        args += ["--token-file", str(token_file)]
    base = {k: v for k, v in (env or os.environ).items() if k != "SMITHERS_TOKEN"}
    served = Served(cli(*args), log_path, env=base)
    poll(lambda: re.search(r"replay gateway on (http://\S+)", served.log()) or not served.alive(), 30,
         "the replay gateway to report its URL")
    match = re.search(r"replay gateway on (http://\S+)", served.log())
    assert match, f"the replay gateway did not start:\n{served.log()}"
    return served, match.group(1)

"""Start, stop, kill and restart a real Smithers Gateway for end-to-end tests.

The dashboard is only as correct as its understanding of the real Gateway, so the end-to-end
tests talk to the real thing: ``suite.tsx`` (beside this file) run by the Bun binary of an
install made by ``install.py``. :class:`GatewayServer` owns one such process:

- it picks a free loopback port itself (``suite.tsx`` does not support ``PORT=0``), gives the
  Gateway a database file in a directory of the caller's (a fresh one per server, so tests do
  not see each other's runs), and runs Bun with that directory as its working directory (the
  engine writes ``.smithers/executions/...`` there, not into the shared install);
- readiness is ``GET /health`` answering *from our process*: the health body carries the
  Gateway's pid, so a stale server on a recycled port can never be mistaken for ours;
- :meth:`kill` is a real crash (SIGKILL) and :meth:`start` brings the Gateway back on the same
  port with the same database, which is what a dashboard sees when the Gateway restarts;
- everything Bun prints goes to ``gateway.log`` in that directory (appended across restarts).

It has no pytest dependency (``plugin.py`` wraps it in fixtures), so it can also be used from a
script or a notebook::

    with GatewayServer(install_dir, Path("/tmp/gw"), pace=0.2) as gw:
        run_id = gw.launch_run("demo")
        gw.wait_for_run(run_id)
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import time
import weakref
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import httpx

from .install import bun_path

if TYPE_CHECKING:
    from types import TracebackType

__all__ = [
    "ADMIN_TOKEN",
    "READ_TOKEN",
    "TERMINAL_STATUSES",
    "GatewayError",
    "GatewayRpcError",
    "GatewayServer",
    "free_port",
]

#: The tokens ``suite.tsx`` configures: admin with every scope, and a read-only viewer.
ADMIN_TOKEN = "op-token"
READ_TOKEN = "read-token"
#: Run statuses after which a run changes no more (without a resume or rewind).
TERMINAL_STATUSES = ("finished", "failed", "cancelled")
#: Bun's message when the port is taken (``EADDRINUSE``), as it appears in the log.
_ADDR_IN_USE = ("EADDRINUSE", "address already in use", "Failed to start server")


class GatewayError(RuntimeError):
    """The Gateway process could not be started or did not behave."""


class GatewayRpcError(GatewayError):
    """An RPC answered with ``ok: false`` (or not with a response frame at all)."""

    def __init__(self, method: str, status_code: int, frame: Mapping[str, Any]) -> None:
        error = frame.get("error")
        self.method = method
        self.status_code = status_code
        self.frame = frame
        self.error: Mapping[str, Any] = error if isinstance(error, Mapping) else {}
        self.code: str | None = self.error.get("code") if isinstance(self.error.get("code"), str) else None
        super().__init__(
            f"{method} -> HTTP {status_code}: {json.dumps(error if error is not None else frame)[:500]}"
        )


#: Servers with a live process, killed at interpreter exit if nobody stopped them (a test run
#: that dies in the middle must not leave Gateways holding ports and files behind).
_LIVE: weakref.WeakSet[GatewayServer] = weakref.WeakSet()


@atexit.register
def _kill_leftovers() -> None:
    for server in list(_LIVE):
        with contextlib.suppress(Exception):
            server.kill()


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that nothing listens on right now (the kernel's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class GatewayServer:
    """One real Gateway process on ``127.0.0.1``, restartable on the same port and database.

    ``pace`` multiplies every sleep of the suite's workflows (0.5 halves run times), ``wide`` is
    the width of the ``wide`` workflow; ``env`` adds or overrides any other variable (for
    example ``SLOW``, the number of tasks of the ``slow`` workflow). ``port=None`` picks a free
    port at the first :meth:`start` and keeps it for later restarts.
    """

    def __init__(
        self,
        install_dir: Path | str,
        workdir: Path | str,
        *,
        port: int | None = None,
        pace: float | None = None,
        wide: int | None = None,
        env: Mapping[str, str] | None = None,
        db_name: str = "gateway.db",
        startup_timeout: float = 60.0,
        request_timeout: float = 30.0,
    ) -> None:
        self.install_dir = Path(install_dir)
        self.workdir = Path(workdir)
        self.db_path = self.workdir / db_name
        self.log_path = self.workdir / "gateway.log"
        self.startup_timeout = startup_timeout
        self.request_timeout = request_timeout
        self._port = port
        self._extra_env: dict[str, str] = dict(env or {})
        if pace is not None:
            self._extra_env["PACE"] = repr(float(pace))
        if wide is not None:
            self._extra_env["WIDE"] = str(int(wide))
        self._process: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None
        self._log_offset = 0
        self._client: httpx.Client | None = None
        self.starts = 0

    # ------------------------------------------------------------------ lifecycle

    @property
    def port(self) -> int:
        if self._port is None:
            raise GatewayError("the Gateway has no port yet: call start() first")
        return self._port

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``, the base of ``/health`` and ``/v1/rpc/...``."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def env(self) -> dict[str, str]:
        """The variables the suite is started with on top of the inherited environment."""
        return {**self._extra_env, "PORT": str(self.port), "DB": str(self.db_path)}

    def is_running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> GatewayServer:
        """Start the Gateway and wait until its ``/health`` answers; return ``self``.

        After :meth:`stop` or :meth:`kill` this starts it again on the same port with the same
        database. If the port is briefly busy (a socket of the previous process lingering, or a
        racing process on a freshly chosen port) the bind is retried until ``startup_timeout``;
        a port that was chosen here (not given by the caller) is replaced by another free one on
        the first start only.
        """
        if self.is_running():
            raise GatewayError(f"the Gateway is already running (pid {self.pid})")
        bun = bun_path(self.install_dir)
        suite = self.install_dir / "suite.tsx"
        for path in (bun, suite):
            if not path.exists():
                raise GatewayError(f"{path} is missing: run tests/gateway/install.py first")
        self.workdir.mkdir(parents=True, exist_ok=True)
        may_repick = self._port is None
        if self._port is None:
            self._port = free_port()
        deadline = time.monotonic() + self.startup_timeout
        while True:
            self._spawn(bun, suite)
            outcome = self._wait_healthy(deadline)
            if outcome == "up":
                break
            # The process exited before answering; find out why from its log.
            tail = self.log_tail(since_start=True)
            if outcome == "exited" and any(m in tail for m in _ADDR_IN_USE) and time.monotonic() < deadline:
                if may_repick and self.starts == 0:
                    self._port = free_port()
                time.sleep(0.2)  # back-off between bind attempts, not a synchronisation
                continue
            self._terminate(signal.SIGKILL, 5.0)
            raise GatewayError(
                f"the Gateway did not become healthy on port {self._port} ({outcome}); log {self.log_path}:\n{tail}"
            )
        self.starts += 1
        self._client = httpx.Client(base_url=self.url, timeout=self.request_timeout)
        return self

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM, then SIGKILL if it is still alive after ``timeout`` s; return the exit code."""
        return self._terminate(signal.SIGTERM, timeout)

    def kill(self) -> int | None:
        """SIGKILL at once: a crash, leaving the database as a crash leaves it."""
        return self._terminate(signal.SIGKILL, 10.0)

    def restart(self) -> GatewayServer:
        """A graceful :meth:`stop`, then :meth:`start` on the same port and database."""
        self.stop()
        return self.start()

    def backup_database(self, to: Path) -> None:
        """A consistent copy of the database, taken while the Gateway runs and writes
        (SQLite's backup API: what an operator's nightly backup does)."""
        with contextlib.closing(sqlite3.connect(self.db_path)) as live, \
                contextlib.closing(sqlite3.connect(to)) as copy:
            live.backup(copy)

    def restore_database(self, backup: Path) -> None:
        """Put ``backup`` in place of the (stopped) Gateway's database, journal files dropped."""
        if self.is_running():
            raise RuntimeError("stop or kill the Gateway before restoring its database")
        for suffix in ("-wal", "-shm", "-journal"):
            Path(f"{self.db_path}{suffix}").unlink(missing_ok=True)
        shutil.copyfile(backup, self.db_path)

    def __enter__(self) -> GatewayServer:
        if not self.is_running():
            self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"pid {self.pid}" if self.is_running() else "stopped"
        return f"<GatewayServer {self._port and self.url} {state} db={self.db_path}>"

    def log_tail(self, max_chars: int = 4000, since_start: bool = False) -> str:
        """The end of the process's log (what to show when something went wrong).

        ``since_start`` limits it to what the latest start printed (the log is appended to
        across restarts, and an old error must not be taken for a new one).
        """
        try:
            with open(self.log_path, "rb") as log:
                log.seek(self._log_offset if since_start else 0)
                data = log.read()
        except OSError:
            return ""
        return data[-max_chars:].decode("utf-8", "replace")

    def _spawn(self, bun: Path, suite: Path) -> None:
        self._close_log()
        self._log_file = open(self.log_path, "ab")  # noqa: SIM115 - lives as long as the process
        header = (
            f"\n===== start {self.starts + 1} on port {self._port} at {time.strftime('%H:%M:%S')} =====\n"
        )
        self._log_file.write(header.encode())
        self._log_file.flush()
        self._log_offset = self._log_file.tell()
        self._process = subprocess.Popen(
            [str(bun), str(suite)],
            cwd=self.workdir,
            env={**os.environ, **self.env},
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            # Its own process group, so stop()/kill() reach anything it spawns and a Ctrl-C
            # in the terminal running pytest does not kill it before the fixture's teardown.
            start_new_session=True,
        )
        _LIVE.add(self)

    def _wait_healthy(self, deadline: float) -> str:
        """Poll ``/health`` until it answers with our pid: ``up``, ``exited`` or ``timeout``."""
        assert self._process is not None
        url = f"http://127.0.0.1:{self._port}/health"
        with httpx.Client(timeout=2.0) as client:
            while time.monotonic() < deadline:
                if self._process.poll() is not None:
                    return "exited"
                try:
                    response = client.get(url)
                except httpx.TransportError:
                    response = None
                if response is not None and response.status_code == 200:
                    try:
                        identity = response.json().get("identity") or {}
                    except ValueError:
                        identity = {}
                    if identity.get("pid") in (None, self._process.pid):
                        return "up"
                time.sleep(0.05)  # poll interval
        return "timeout"

    def _terminate(self, sig: signal.Signals, timeout: float) -> int | None:
        process = self._process
        if self._client is not None:
            self._client.close()
            self._client = None
        if process is None:
            self._close_log()
            return None
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, sig)
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10.0)
        _LIVE.discard(self)
        # Anything left in its process group (nothing, normally) goes too.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        self._close_log()
        return process.returncode

    def _close_log(self) -> None:
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    # ------------------------------------------------------------------ HTTP

    @property
    def client(self) -> httpx.Client:
        """An ``httpx.Client`` on :attr:`url` (recreated at every start)."""
        if self._client is None:
            raise GatewayError("the Gateway is not running: call start() first")
        return self._client

    def health(self) -> dict[str, Any]:
        response = self.client.get("/health")
        response.raise_for_status()
        body: dict[str, Any] = response.json()
        return body

    def rpc_response(
        self, method: str, params: Mapping[str, Any] | None = None, token: str | None = ADMIN_TOKEN
    ) -> httpx.Response:
        """The raw HTTP response of ``POST /v1/rpc/<method>`` (for tests about errors)."""
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        return self.client.post(f"/v1/rpc/{method}", json=dict(params or {}), headers=headers)

    def rpc(
        self, method: str, params: Mapping[str, Any] | None = None, token: str | None = ADMIN_TOKEN
    ) -> Any:
        """Call an RPC over HTTP and return its ``payload``; raise :class:`GatewayRpcError` if not ok."""
        response = self.rpc_response(method, params, token)
        try:
            frame = response.json()
        except ValueError:
            frame = {"error": {"message": response.text[:500]}}
        if not isinstance(frame, dict) or frame.get("ok") is not True:
            raise GatewayRpcError(method, response.status_code, frame if isinstance(frame, dict) else {})
        return frame.get("payload")

    def launch_run(
        self, workflow: str, token: str = ADMIN_TOKEN, input: Mapping[str, Any] | None = None
    ) -> str:
        """Launch a workflow of the suite (``demo``, ``rich``, ``wide``, ``doomed``, ``gated``, ``slow``)."""
        payload = self.rpc("launchRun", {"workflow": workflow, "input": dict(input or {})}, token)
        run_id = payload.get("runId") if isinstance(payload, dict) else None
        if not isinstance(run_id, str):
            raise GatewayError(f"launchRun answered without a runId: {payload!r}")
        return run_id

    def get_run(self, run_id: str, token: str = ADMIN_TOKEN) -> dict[str, Any]:
        run: dict[str, Any] = self.rpc("getRun", {"runId": run_id}, token)
        return run

    def wait_for_run(
        self,
        run_id: str,
        statuses: Iterable[str] = TERMINAL_STATUSES,
        timeout: float = 60.0,
        token: str = ADMIN_TOKEN,
    ) -> dict[str, Any]:
        """Poll ``getRun`` until the run's status is one of ``statuses``; return that run.

        Raises ``TimeoutError`` (naming the last status seen) when ``timeout`` s pass first.
        """
        wanted = (statuses,) if isinstance(statuses, str) else tuple(statuses)
        return self.wait_for_run_where(
            run_id, lambda run: run.get("status") in wanted, timeout, token, f"status in {wanted}"
        )

    def wait_for_run_where(
        self,
        run_id: str,
        condition: Callable[[dict[str, Any]], bool],
        timeout: float = 60.0,
        token: str = ADMIN_TOKEN,
        description: str = "condition",
    ) -> dict[str, Any]:
        """Poll ``getRun`` until ``condition(run)`` holds; return that run (``TimeoutError`` if not)."""
        deadline = time.monotonic() + timeout
        while True:
            run = self.get_run(run_id, token)
            if condition(run):
                return run
            if time.monotonic() >= deadline:
                raise TimeoutError(
                    f"run {run_id}: {description} not met after {timeout} s"
                    f" (status {run.get('status')!r}, summary {run.get('summary')})"
                )
            time.sleep(0.1)  # poll interval

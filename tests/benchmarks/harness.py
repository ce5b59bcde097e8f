"""Shared plumbing of the benchmark scripts: servers, Chromium, page probes, statistics.

Not a test module (``tests/benchmarks`` is not collected). Every wait polls with a deadline;
nothing here sleeps to synchronise.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--enable-precise-memory-info", "--disable-renderer-backgrounding",
    "--disable-background-timer-throttling", "--disable-backgrounding-occluded-windows",
]

#: Installed before any page script: long tasks (PerformanceObserver) from page start.
LONGTASKS = """
window.__longtasks = [];
try {
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) window.__longtasks.push({start: e.startTime, ms: e.duration});
  }).observe({type: "longtask", buffered: true});
} catch (e) {}
"""

#: The tree.js data object of the page (through open shadow roots), as ``find(document)``.
FIND_TREE = """(() => {
  const find = (root) => {
    for (const el of root.querySelectorAll("*")) {
      if (el.__smithersTree) return el.__smithersTree
      if (el.shadowRoot) { const hit = find(el.shadowRoot); if (hit) return hit }
    }
    return null
  };
"""

#: The header's task-summary element's data-* counts (searching open shadow roots).
SUMMARY_COUNTS = """(() => {
  const find = (root) => {
    const hit = root.querySelector('[data-testid="task-summary"]');
    if (hit) return hit
    for (const el of root.querySelectorAll("*")) {
      if (el.shadowRoot) { const h = find(el.shadowRoot); if (h) return h }
    }
    return null
  };
  const el = find(document);
  if (!el) return null;
  return {total: +el.dataset.total, finished: +el.dataset.finished, running: +el.dataset.running,
          failed: +el.dataset.failed};
})()"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.05) -> Any:
    """Poll ``predicate`` until it returns something truthy; return it (``TimeoutError`` if not)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)  # poll interval


def gateway_install() -> Path:
    chosen = os.environ.get("SMITHERS_GATEWAY_DIR")
    if chosen:
        return Path(chosen)
    out = subprocess.run([sys.executable, str(REPO / "tests" / "gateway" / "install.py")],
                         check=True, stdout=subprocess.PIPE, text=True)
    return Path(out.stdout.strip().splitlines()[-1])


def bun(install: Path) -> Path:
    return install / "node_modules/@oven/bun-linux-x64/bin/bun"


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    data = sorted(values)
    k = (len(data) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(data) - 1)
    return data[lo] + (data[hi] - data[lo]) * (k - lo)


def spread(values: list[float]) -> str:
    if not values:
        return "n/a"
    if len(values) == 1:
        return f"{values[0]:.1f}"
    return f"{statistics.median(values):.1f} (min {min(values):.1f}, max {max(values):.1f}, n={len(values)})"


def load_average() -> str:
    with contextlib.suppress(OSError):
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    return "?"


# ---------------------------------------------------------------------------- panel server


class PanelServer:
    """``smithers-dashboard serve`` (``panel serve apps/``) as a subprocess on a free port."""

    def __init__(self, gateway_url: str, token: str | None = None, *, num_procs: int = 1,
                 port: int | None = None, env: dict[str, str] | None = None, log: Path | None = None) -> None:
        self.port = port or free_port()
        self.gateway_url = gateway_url
        self.num_procs = num_procs
        full_env = dict(os.environ)
        full_env.update(env or {})
        full_env["SMITHERS_GATEWAY_URL"] = gateway_url
        full_env.pop("SMITHERS_TOKEN_FILE", None)
        if token:
            full_env["SMITHERS_TOKEN"] = token
        else:
            full_env.pop("SMITHERS_TOKEN", None)
        full_env["PYTHONPATH"] = str(REPO)
        self._log = open(log or os.devnull, "ab")  # noqa: SIM115 - lives as long as the process
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "inspector.cli", "serve", "--port", str(self.port),
             "--num-procs", str(num_procs)],
            cwd=REPO, env=full_env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        wait_until(self._up, 60, "the panel server")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/apps"

    def _up(self) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError(f"panel serve exited with {self.proc.returncode}")
        try:
            return httpx.get(f"http://127.0.0.1:{self.port}/apps", timeout=5).status_code == 200
        except httpx.HTTPError:
            return False

    def server_pids(self) -> list[int]:
        """The Python processes serving sessions (the forked children with --num-procs)."""
        import psutil

        root = psutil.Process(self.proc.pid)
        procs = [root, *root.children(recursive=True)]
        pythons = [p for p in procs if "python" in (p.name() or "").lower()]
        if self.num_procs != 1:
            # bokeh forks after binding: the children serve; the serve-CLI wrapper only waits.
            leaves = [p for p in pythons if not p.children()]
            return [p.pid for p in leaves]
        # inspector.cli serve -> panel serve (the one that serves is the leaf)
        return [p.pid for p in pythons if not p.children()]

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        self._log.close()

    def __enter__(self) -> PanelServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of one process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


# ---------------------------------------------------------------------------- chromium


@contextlib.contextmanager
def chromium(headless: bool = True) -> Iterator[Any]:
    from playwright import sync_api

    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=headless)
        try:
            yield browser
        finally:
            browser.close()


class WireCounter:
    """Counts the WebSocket frames and bytes a page receives (Playwright's websocket events)."""

    def __init__(self, page: Any) -> None:
        self.frames = 0
        self.bytes = 0
        self.largest = 0
        self.log: list[tuple[float, int]] = []
        page.on("websocket", self._socket)

    def _socket(self, ws: Any) -> None:
        ws.on("framereceived", self._frame)

    def _frame(self, payload: Any) -> None:
        size = len(payload) if isinstance(payload, (bytes, str)) else 0
        if isinstance(payload, str):
            size = len(payload.encode("utf-8"))
        self.frames += 1
        self.bytes += size
        self.largest = max(self.largest, size)
        self.log.append((time.time(), size))

    def since(self, t: float) -> tuple[int, int, int]:
        sizes = [s for at, s in self.log if at >= t]
        return len(sizes), sum(sizes), max(sizes or [0])


def longest_task(page: Any, since_ms: float = 0.0) -> float:
    tasks = page.evaluate("window.__longtasks || []")
    return max([t["ms"] for t in tasks if t["start"] >= since_ms] or [0.0])


def long_task_entries(page: Any, since_ms: float = 0.0) -> list[dict[str, float]]:
    """The page's long tasks from ``since_ms`` on (page clock): ``{"start": ms, "ms": duration}``."""
    tasks: list[dict[str, float]] = page.evaluate("window.__longtasks || []")
    return [t for t in tasks if t["start"] >= since_ms]


def long_tasks(page: Any, since_ms: float = 0.0) -> list[float]:
    return [t["ms"] for t in long_task_entries(page, since_ms)]


def tree_stats(page: Any) -> dict[str, Any] | None:
    result: dict[str, Any] | None = page.evaluate(
        FIND_TREE + "const d = find(document); return d ? {...d.stats, seq: d.seq, rows: d.rows.size} : null })()")
    return result


def summary_counts(page: Any) -> dict[str, int] | None:
    result: dict[str, int] | None = page.evaluate(SUMMARY_COUNTS)
    return result


def dump(obj: Any) -> str:
    return json.dumps(obj, indent=1, sort_keys=True)


# ---------------------------------------------------------------------------- reading wall sessions

#: What BokehJS sends once a page has rendered: Panel runs its ``onload`` callbacks on it.
_DOCUMENT_READY = (
    json.dumps({"msgid": "ready-1", "msgtype": "PATCH-DOC"}),
    "{}",
    json.dumps({"events": [{"kind": "MessageSent", "msg_type": "bokeh_event",
                            "msg_data": {"type": "event", "name": "document_ready",
                                         "values": {"type": "map", "entries": []}}}]}),
)


async def _read_message(socket: Any) -> tuple[dict[str, Any], str]:
    """One Bokeh protocol message: its header and its content text (buffers are skipped)."""
    header = json.loads(await socket.recv())
    await socket.recv()  # metadata
    content = await socket.recv()
    for _ in range(2 * int(header.get("num_buffers") or 0)):
        await socket.recv()
    return header, content if isinstance(content, str) else content.decode()


def _tree_components(doc: Any) -> list[tuple[str, int]]:
    """``(model id, seq of its initial rows)`` of every tree component in a PULL-DOC-REPLY."""
    found: list[tuple[str, int]] = []
    stack = [doc]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            attributes = item.get("attributes")
            if isinstance(attributes, dict) and attributes.get("class_name") == "TreeComponent":
                data = attributes.get("data") or {}
                initial = (data.get("attributes") or {}).get("initial") or ""
                found.append((str(item["id"]), int(json.loads(initial)["seq"]) if initial else 0))
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return found


def _tree_ready(msgid: str, model_id: str, seq: int) -> tuple[str, str, str]:
    """What tree.js sends once rendered (``{type: "ready", seq, run}``), as Panel's data event."""
    data = {"type": "map", "entries": [["type", "ready"], ["seq", seq], ["run", None]]}
    event = {"type": "event", "name": "data_event",
             "values": {"type": "map", "entries": [["model", {"id": model_id}], ["data", data]]}}
    return (json.dumps({"msgid": msgid, "msgtype": "PATCH-DOC"}), "{}",
            json.dumps({"events": [{"kind": "MessageSent", "msg_type": "bokeh_event", "msg_data": event}]}))


class ReadingSessions:
    """N wall sessions that behave like browser tabs on the wire: they read every byte.

    Each session is what a browser does with a served page, minus the rendering: an HTTP GET of
    the page (the server runs the app and makes the session), then Bokeh's WebSocket
    (``/ws`` beside the page, subprotocols ``["bokeh", token]`` with the token embedded in the
    page), the document's pull, the ``document_ready`` event BokehJS sends once rendered and
    the tree component's ``ready`` message (with the seq of the rows its first document
    carried: the server sends the tree nothing before it), then **reading every frame** the
    server pushes until closed. All N run on one asyncio loop on a thread of their
    own (cheap: receiving is a socket read per frame; nothing is parsed).

    ``bokeh.client.pull_session`` clients (``bench_fanout.Sessions``) are lighter to write but
    their loop does not run after the pull, so they never read: once the kernel's socket
    buffers are full the server queues everything it sends them in its own memory, which is
    not what a wall of browsers costs a server.
    """

    def __init__(self, url: str, args: dict[str, str], n: int, *, timeout: float = 120.0) -> None:
        import asyncio
        import threading

        self.url = url
        self.args = args
        self.frames = [0] * n
        self.bytes = [0] * n
        self.errors: list[str] = []
        self.sessions: list[Any] = []  # open websockets (len() = sessions opened)
        self._loop = asyncio.new_event_loop()
        self._tasks: list[Any] = []
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True, name="reading-sessions")
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(self._open_all(n), self._loop)
        future.result(timeout)

    async def _open_all(self, n: int) -> None:
        import asyncio

        async with httpx.AsyncClient(timeout=60) as http:
            for index in range(n):  # one at a time, as screens come up (N concurrent GETs would
                try:                # measure the app's build under contention instead)
                    socket = await self._open(http)
                except Exception as exc:  # report, do not hide
                    self.errors.append(repr(exc))
                    continue
                self.sessions.append(socket)
                self._tasks.append(asyncio.ensure_future(self._read(index, socket)))

    async def _open(self, http: Any) -> Any:
        import re

        from websockets.asyncio.client import connect
        from websockets.typing import Subprotocol

        page = await http.get(self.url, params=self.args)
        page.raise_for_status()
        match = re.search(r'"token"\s*:\s*"([^"]+)"', page.text)
        if match is None:
            raise RuntimeError("no Bokeh session token in the page")
        ws_url = self.url.replace("http://", "ws://").replace("https://", "wss://").rstrip("/") + "/ws"
        socket = await connect(ws_url, subprotocols=[Subprotocol("bokeh"), Subprotocol(match.group(1))],
                               max_size=None, compression=None, open_timeout=60)
        await _read_message(socket)  # the server's ACK
        # As BokehJS: ask for the document, render it (here: nothing), say it is ready, and each
        # tree component says which rows it drew (the reset in its ``initial``, or none).
        for fragment in (json.dumps({"msgid": "pull-1", "msgtype": "PULL-DOC-REQ"}), "{}", "{}"):
            await socket.send(fragment)
        while True:
            header, content = await _read_message(socket)
            if header.get("msgtype") == "PULL-DOC-REPLY":
                break
        for fragment in _DOCUMENT_READY:
            await socket.send(fragment)
        for n, (model_id, seq) in enumerate(_tree_components(json.loads(content))):
            for fragment in _tree_ready(f"tree-ready-{n}", model_id, seq):
                await socket.send(fragment)
        return socket

    async def _read(self, index: int, socket: Any) -> None:
        from websockets.exceptions import ConnectionClosed

        try:
            async for frame in socket:
                self.frames[index] += 1
                self.bytes[index] += len(frame)
        except ConnectionClosed:
            pass

    def total_bytes(self) -> int:
        return sum(self.bytes)

    def close(self) -> None:
        import asyncio

        async def shut() -> None:
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*(s.close() for s in self.sessions), return_exceptions=True)

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(shut(), self._loop).result(30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

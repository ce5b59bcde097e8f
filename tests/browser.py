"""Browser-test helpers: the served dashboard, Debian's Chromium, and what the page did.

Registered as a pytest plugin from ``tests/conftest.py``. Fixtures:

- ``serve_dashboard`` (function): a factory ``serve_dashboard(gateway_url, token=...)`` that
  runs ``panel serve apps/`` (the command ``smithers-dashboard serve`` runs) in a subprocess
  on a free loopback port, with ``SMITHERS_GATEWAY_URL`` / ``SMITHERS_TOKEN`` in its
  environment, and returns a :class:`DashboardServer` once its HTTP endpoint answers. Every
  server it started is stopped when the test ends.
- ``dashboard`` (module): one such server on the session ``gateway`` with the admin token,
  for tests that only launch runs and watch them.
- ``chromium`` (module): Debian's Chromium (``/usr/bin/chromium``) through Playwright.
- ``browser_log`` and ``page`` (function): a fresh context and page. The page records every
  dialog, console error, uncaught page error, request to a non-loopback host and WebSocket
  frame; at teardown the test FAILS if a dialog opened, a script threw, the page asked a
  non-loopback host for anything, or a WebSocket frame carried one of the Gateway tokens.
  Every page also carries :data:`ROW_RECORDER`: a MutationObserver on every shadow root that
  records the tree rows (``data-node-id`` / ``data-state``) each time the DOM changes, so a
  test can ask which states a row went through, or whether a row was ever shown after a
  moment (:func:`mark_rows`, :func:`rows_since_mark`, :func:`states_seen`).

Panel and Bokeh render every component inside an open shadow root: Playwright's CSS
locators pierce them, ``document.querySelectorAll`` does not (hence the recorder hooks
``attachShadow``). Every wait polls a condition with a deadline.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx
import pytest

from tests.gateway.server import ADMIN_TOKEN, READ_TOKEN, free_port

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Mapping

    from playwright.sync_api import Browser, Page

    from tests.gateway.server import GatewayServer

__all__ = [
    "CHROMIUM",
    "CHROMIUM_ARGS",
    "ROOT",
    "ROW_RECORDER",
    "BrowserLog",
    "DashboardServer",
    "expected_summary",
    "gateway_counts",
    "mark_rows",
    "page_rows",
    "rows_diff",
    "rows_since_mark",
    "snapshot_states",
    "states_seen",
    "task_summary",
    "tree_messages",
    "tree_trace",
    "wait_until",
]

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})
#: Secrets that must never reach the browser (the suite Gateway's tokens).
SECRETS = (ADMIN_TOKEN, READ_TOKEN)

#: Init script: observe every shadow root (and the document) and record the tree rows.
#: ``window.__rows.seen[id]`` lists the distinct states a row showed, in order;
#: ``window.__rows.sinceMark`` maps every id shown (connected, not hidden) at any DOM change
#: after ``window.__rows.mark()`` to the states it showed then.
ROW_RECORDER = r"""
(() => {
  if (window.__rows) { return }
  const log = window.__rows = {seen: {}, last: {}, sinceMark: null, scans: 0, marks: 0}
  const scan = (root) => {
    log.scans++
    for (const el of root.querySelectorAll(".st-row[data-node-id]")) {
      if (!el.isConnected || el.hidden) { continue }
      const id = el.getAttribute("data-node-id")
      const state = el.getAttribute("data-state") ?? ""
      if (log.last[id] !== state) {
        log.last[id] = state
        const states = log.seen[id] ??= []
        if (states[states.length - 1] !== state) { states.push(state) }
      }
      if (log.sinceMark !== null) {
        const states = log.sinceMark[id] ??= []
        if (!states.includes(state)) { states.push(state) }
      }
    }
  }
  const roots = new Set()
  const watch = (root) => {
    if (roots.has(root)) { return }
    roots.add(root)
    new MutationObserver(() => scan(root)).observe(root, {
      subtree: true, childList: true, attributes: true,
      attributeFilter: ["data-node-id", "data-state", "hidden"],
    })
  }
  log.mark = () => {
    log.sinceMark = {}
    log.marks++
    for (const root of roots) { scan(root) }
  }
  const attach = Element.prototype.attachShadow
  Element.prototype.attachShadow = function (init) {
    const root = attach.call(this, init)
    watch(root)
    return root
  }
  watch(document)
})();
"""


# ------------------------------------------------------------------ the served dashboard


class DashboardServer:
    """``panel serve apps/`` in a subprocess of ours, on ``127.0.0.1:<port>``.

    The Gateway URL and token go in the environment only (as ``smithers-dashboard serve``
    does); the process's output goes to ``log_path``.
    """

    def __init__(
        self,
        gateway_url: str,
        token: str | None,
        workdir: Path,
        *,
        port: int | None = None,
        env: Mapping[str, str] | None = None,
        startup_timeout: float = 60.0,
    ) -> None:
        self.gateway_url = gateway_url
        self.port = port or free_port()
        self.log_path = workdir / f"panel-{self.port}.log"
        self.startup_timeout = startup_timeout
        self._token = token
        self._extra_env = dict(env or {})
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, query: str = "") -> str:
        """The app's URL, ``query`` appended (``"runId=..."`` or ``"?runId=..."``)."""
        query = query.lstrip("?")
        return f"{self.base}/apps" + (f"?{query}" if query else "")

    def start(self) -> DashboardServer:
        from inspector.cli import panel_command

        env = dict(os.environ)
        env.pop("SMITHERS_TOKEN_FILE", None)
        env["SMITHERS_GATEWAY_URL"] = self.gateway_url
        if self._token:
            env["SMITHERS_TOKEN"] = self._token
        else:
            env.pop("SMITHERS_TOKEN", None)
        env.update(self._extra_env)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - lives as long as the process
        self._process = subprocess.Popen(
            panel_command(self.port),
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        """Poll a static asset until the server answers (the app itself runs per session)."""
        assert self._process is not None
        deadline = time.monotonic() + self.startup_timeout
        with httpx.Client(timeout=2.0) as client:
            while True:
                if self._process.poll() is not None:
                    raise RuntimeError(f"panel serve exited ({self._process.returncode}):\n{self.log_tail()}")
                with contextlib.suppress(httpx.TransportError):
                    if client.get(f"{self.base}/static/js/bokeh.min.js").status_code == 200:
                        return
                if time.monotonic() > deadline:
                    self.stop()
                    raise TimeoutError(f"panel serve did not answer in {self.startup_timeout} s:\n{self.log_tail()}")
                time.sleep(0.1)  # poll interval

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_bytes()[-chars:].decode("utf-8", "replace")
        except OSError:
            return ""

    def stop(self) -> None:
        process = self._process
        if process is not None and process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
        self._process = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> DashboardServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@pytest.fixture
def serve_dashboard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., DashboardServer]]:
    """``serve_dashboard(gateway_url, token=ADMIN_TOKEN, env=None) -> DashboardServer`` (started)."""
    started: list[DashboardServer] = []

    def make(gateway_url: str, token: str | None = ADMIN_TOKEN, env: Mapping[str, str] | None = None) -> DashboardServer:
        server = DashboardServer(gateway_url, token, tmp_path_factory.mktemp("panel"), env=env)
        started.append(server)
        return server.start()

    yield make
    for server in reversed(started):
        server.stop()


@pytest.fixture(scope="module")
def dashboard(gateway: GatewayServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DashboardServer]:
    """The dashboard served on the session Gateway with the admin token (shared by a module)."""
    with DashboardServer(gateway.url, ADMIN_TOKEN, tmp_path_factory.mktemp("panel")) as server:
        yield server


# ------------------------------------------------------------------ Chromium and the page


@dataclass
class BrowserLog:
    """What a page did that a test may assert on (and the page fixture checks at teardown)."""

    dialogs: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    external_requests: list[str] = field(default_factory=list)
    websockets: list[str] = field(default_factory=list)
    ws_received: list[str] = field(default_factory=list)
    ws_sent: list[str] = field(default_factory=list)
    #: Both directions in arrival order: (time.monotonic(), "rx" | "tx", frame text).
    ws_log: list[tuple[float, str, str]] = field(default_factory=list)

    def check_url(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme in ("data", "blob", "about", "chrome-error"):
            return
        if (parts.hostname or "") not in LOOPBACK_HOSTS:
            self.external_requests.append(url)

    def frames_with(self, text: str) -> list[str]:
        """Received or sent WebSocket frames containing ``text``."""
        return [f for f in (*self.ws_received, *self.ws_sent) if text in f]

    def frames_with_secret(self, secret: str) -> list[str]:
        """Frames carrying ``secret`` as a token of its own: not inside a longer word such as
        the ``data-cache-read-tokens`` hook, which contains ``read-token``."""
        pattern = re.compile(rf"(?<![\w-]){re.escape(secret)}(?![\w-])")
        return [f for f in (*self.ws_received, *self.ws_sent) if pattern.search(f)]


def _frame_text(payload: str | bytes) -> str:
    return payload if isinstance(payload, str) else payload.decode("utf-8", "replace")


def _watch_websocket(log: BrowserLog, ws: Any) -> None:
    log.websockets.append(ws.url)
    log.check_url(ws.url)
    def received(payload: str | bytes) -> None:
        text = _frame_text(payload)
        log.ws_received.append(text)
        log.ws_log.append((time.monotonic(), "rx", text))

    def sent(payload: str | bytes) -> None:
        text = _frame_text(payload)
        log.ws_sent.append(text)
        log.ws_log.append((time.monotonic(), "tx", text))

    ws.on("framereceived", received)
    ws.on("framesent", sent)


@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    """Debian's Chromium, launched once per test module."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: scripts/test installs Debian's chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def browser_log() -> BrowserLog:
    return BrowserLog()


@pytest.fixture
def page(chromium: Browser, browser_log: BrowserLog) -> Iterator[Page]:
    """A fresh page (1400x1000) that records what it did; see the module docstring."""
    context = chromium.new_context(viewport={"width": 1400, "height": 1000}, device_scale_factor=1)
    page = context.new_page()
    log = browser_log

    def on_dialog(dialog: Any) -> None:
        log.dialogs.append(f"{dialog.type}: {dialog.message}")
        with contextlib.suppress(Exception):
            dialog.dismiss()

    page.on("dialog", on_dialog)
    page.on("console", lambda m: log.console_errors.append(m.text) if m.type == "error" else None)
    # A page error names the last message the page received: usually the patch that broke it.
    page.on("pageerror", lambda e: log.page_errors.append(
        f"{e} | last frame received: {log.ws_received[-1][:1500] if log.ws_received else '-'}"))
    page.on("request", lambda r: log.check_url(r.url))
    page.on("websocket", lambda ws: _watch_websocket(log, ws))
    page.add_init_script(ROW_RECORDER)
    page.set_default_timeout(20_000)
    try:
        yield page
    finally:
        with contextlib.suppress(Exception):
            context.close()
    assert log.dialogs == [], f"a dialog opened: {log.dialogs}"
    assert log.page_errors == [], f"uncaught errors in the page: {log.page_errors}"
    assert log.console_errors == [], f"errors on the page's console: {log.console_errors}"
    assert log.external_requests == [], (
        f"requests to non-loopback hosts: {log.external_requests}; frames naming them: "
        f"{[f[:600] for f in log.frames_with('https://')][:2]}"
    )
    for secret in SECRETS:
        assert not log.frames_with_secret(secret), f"a WebSocket frame carried the token {secret!r}"


# ------------------------------------------------------------------ reading the page and the Gateway


def _custom_messages(node: Any) -> Iterator[Any]:
    """The ``data`` of every JSComponent message (``esm_event`` / ``data_event``) in a Bokeh frame."""
    if isinstance(node, dict):
        values = node.get("values")
        if node.get("name") in ("esm_event", "data_event") and isinstance(values, dict):
            for entry in values.get("entries") or ():
                if isinstance(entry, list) and len(entry) == 2 and entry[0] == "data":
                    yield entry[1]
        for value in node.values():
            yield from _custom_messages(value)
    elif isinstance(node, list):
        for value in node:
            yield from _custom_messages(value)


def _plain(value: Any) -> Any:
    """Bokeh's serialised ``{"type": "map", "entries": [...]}`` as a dict."""
    if isinstance(value, dict) and value.get("type") == "map":
        return {k: _plain(v) for k, v in value.get("entries") or ()}
    return value


def tree_messages(log: BrowserLog) -> list[dict[str, Any]]:
    """The tree view's messages both ways, in order: ``{"t", "dir", "type", "seq", ...}``.

    Python -> browser: ``reset`` / ``patch`` (with the rows they carry); browser -> Python:
    ``ready`` / ``select``. For diagnosing a view that diverged from its store.
    """
    out: list[dict[str, Any]] = []
    start = log.ws_log[0][0] if log.ws_log else 0.0
    for at, way, text in log.ws_log:
        if "esm_event" not in text and "data_event" not in text:
            continue
        try:
            frame = json.loads(text)
        except ValueError:
            continue
        for data in _custom_messages(frame):
            message = _plain(data)
            if isinstance(message, str):
                with contextlib.suppress(ValueError):
                    message = json.loads(message)
            if not isinstance(message, dict) or "type" not in message:
                continue
            item: dict[str, Any] = {"t": round(at - start, 3), "dir": way, "type": message["type"], "seq": message.get("seq")}
            if message["type"] == "reset":
                item["rows"] = {str(r[0]): (r[5] if len(r) > 5 else None) for r in message.get("rows") or ()}
            elif message["type"] == "patch":
                item["upsert"] = {str(r[0]): (r[5] if len(r) > 5 else None) for r in message.get("upsert") or ()}
                item["add"] = [str(r[0]) for r in message.get("add") or ()]
                item["remove"] = [str(i) for i in message.get("remove") or ()]
            out.append(item)
    return out


TREE_DATA_JS = """() => {
  const find = (root) => {
    for (const el of root.querySelectorAll("*")) {
      if (el.__smithersTree) return el.__smithersTree
      if (el.shadowRoot) { const hit = find(el.shadowRoot); if (hit) return hit }
    }
    return null
  };
  const d = find(document);
  return d && {seq: d.seq, run: d.run ?? null, rows: d.rows.size, inbox: d.inbox.length, job: d.job !== null,
               lastResync: d.lastResync, now: performance.now(), stats: d.stats}
}"""


def tree_trace(page: Page, log: BrowserLog, ids: Iterable[str] = ()) -> str:
    """What the tree view's browser half holds and the messages it exchanged (for failures)."""
    wanted = set(ids)
    lines = [f"tree.js data: {page.evaluate(TREE_DATA_JS)}"]
    for m in tree_messages(log):
        head = f"  {m['t']:8.3f} {m['dir']} {m['type']} seq={m['seq']}"
        if m["type"] == "reset":
            head += f" rows={len(m['rows'])} " + str({i: m["rows"].get(i) for i in wanted if i in m["rows"]})
        elif m["type"] == "patch":
            head += f" upsert={ {i: s for i, s in m['upsert'].items() if not wanted or i in wanted} }"
            head += f" add={len(m['add'])} remove={len(m['remove'])}"
        lines.append(head)
    return "\n".join(lines)


def wait_until(
    predicate: Callable[[], Any], timeout: float, what: str, page: Page | None = None, interval: float = 0.1
) -> Any:
    """Poll ``predicate`` until it returns something truthy (returned); AssertionError at the deadline.

    With a ``page`` the interval is spent in ``page.wait_for_timeout`` so Playwright keeps
    delivering the page's events meanwhile.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        if page is not None:
            page.wait_for_timeout(interval * 1000)
        else:
            time.sleep(interval)  # poll interval


def page_rows(page: Page) -> dict[str, str]:
    """The tree rows on screen now: DevTools id -> ``data-state`` ("" for structural nodes)."""
    pairs = page.locator(".st-row[data-node-id]").evaluate_all(
        "els => els.filter(e => e.isConnected && !e.hidden)"
        ".map(e => [e.getAttribute('data-node-id'), e.getAttribute('data-state') ?? ''])"
    )
    return {str(i): str(s) for i, s in pairs}


def rows_diff(rows: Mapping[str, str], truth: Mapping[str, str]) -> str:
    """How the rows on screen differ from the Gateway's (for assertion messages)."""
    missing = sorted(set(truth) - set(rows))
    extra = sorted(set(rows) - set(truth))
    stale = {i: (rows[i], truth[i]) for i in sorted(set(rows) & set(truth)) if rows[i] != truth[i]}
    return f"missing {missing}, extra {extra}, stale (page, gateway) {stale}"


def states_seen(page: Page) -> dict[str, list[str]]:
    """Per DevTools id, the distinct ``data-state`` values its row showed, in order."""
    return dict(page.evaluate("() => window.__rows.seen"))


def mark_rows(page: Page) -> None:
    """From now on, remember every row shown (see :func:`rows_since_mark`)."""
    page.evaluate("() => window.__rows.mark()")


def rows_since_mark(page: Page) -> dict[str, list[str]]:
    """Every id whose row was on screen at any DOM change since :func:`mark_rows`, with its states."""
    return dict(page.evaluate("() => window.__rows.sinceMark || {}"))


def _walk(node: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    stack = [node]
    while stack:
        current = stack.pop()
        yield current
        stack.extend(c for c in current.get("children") or () if isinstance(c, dict))


def snapshot_states(snapshot: Mapping[str, Any]) -> dict[str, str]:
    """A ``getDevToolsSnapshot`` answer as the rows should show it: id -> task state or ""."""
    out: dict[str, str] = {}
    root = snapshot.get("root")
    if not isinstance(root, dict):
        return out
    for node in _walk(root):
        task = node.get("task")
        state = task.get("state") if isinstance(task, dict) else None
        out[str(node["id"])] = state if isinstance(state, str) else ""
    return out


def gateway_counts(snapshot: Mapping[str, Any]) -> dict[str, int]:
    """Task nodes per state in a snapshot (what ``DevToolsTree.state_counts`` computes)."""
    counts: Counter[str] = Counter()
    root = snapshot.get("root")
    if isinstance(root, dict):
        for node in _walk(root):
            task = node.get("task")
            if isinstance(task, dict) and isinstance(task.get("state"), str):
                counts[task["state"]] += 1
    return dict(counts)


def task_summary(page: Page) -> dict[str, int]:
    """The header's ``data-testid="task-summary"`` attributes as integers."""
    summary = page.locator('[data-testid="task-summary"]')
    return {
        key: int(summary.get_attribute(f"data-{key}") or -1)
        for key in ("total", "finished", "running", "failed")
    }


def expected_summary(counts: Mapping[str, int]) -> dict[str, int]:
    return {
        "total": sum(counts.values()),
        "finished": counts.get("finished", 0),
        "running": counts.get("in-progress", 0),
        "failed": counts.get("failed", 0),
    }

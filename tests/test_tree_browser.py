"""The tree view in Debian's Chromium: rows, patches, hostile labels, search, keys, 10k nodes.

A real Panel server (``pn.serve(..., threaded=True)``) serves a NodeTree bound to a stub
store; the test thread changes the store the way the real store's flush does, and Panel
delivers the messages on the document's next tick. Every wait polls with a deadline.

Screenshots: ``SMITHERS_SCREENSHOTS=docs/screenshots pytest tests/test_tree_browser.py``
writes tree.png / tree-10k.png (and dark variants) there; otherwise to a temp dir.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import panel as pn
import pytest
from playwright import sync_api

from inspector import DevToolsTree
from tests.deploy_support import poll, wait_status
from tests.test_tree_view import StubStore, delta, node, snap, task

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from playwright.sync_api import Browser, Page

from dashboard.views.tree import NodeTree

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
HERE = Path(__file__).parent
ROWS = ".st-row:not([hidden])"
LONGTASKS = """
window.__longtasks = [];
new PerformanceObserver((list) => {
  for (const e of list.getEntries()) window.__longtasks.push({start: e.startTime, ms: e.duration});
}).observe({type: "longtask", buffered: true});
"""

FIND_DATA = """(() => {
  const find = (root) => {
    for (const el of root.querySelectorAll("*")) {
      if (el.__smithersTree) return el.__smithersTree
      if (el.shadowRoot) { const hit = find(el.shadowRoot); if (hit) return hit }
    }
    return null
  };
"""

assert Path(CHROMIUM).exists(), "Debian's chromium is missing: scripts/test installs it (apt-get install chromium)"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


class App:
    """One served NodeTree on a stub store, and the page looking at it."""

    def __init__(self, browser: Browser, store: StubStore, theme: str = "default", height: int = 520) -> None:
        self.store = store
        self.views: list[NodeTree] = []
        self.port = free_port()

        def make() -> Any:
            view = NodeTree(store=store)
            self.views.append(view)
            return pn.Column(view, height=height, width=820, margin=0)

        self.server = pn.serve(make, port=self.port, threaded=True, show=False, start=True)
        self.context = browser.new_context(viewport={"width": 860, "height": height + 40}, device_scale_factor=1)
        self.page: Page = self.context.new_page()
        self.dialogs: list[str] = []
        self.errors: list[str] = []
        self.page.on("dialog", lambda d: (self.dialogs.append(d.message), d.dismiss()))
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        # Offline kiosks: everything must come from this server (no CDN).
        self.page.on("request", lambda r: None if r.url.startswith(("http://127.0.0.1", "ws://127.0.0.1", "data:", "blob:"))
                     else self.errors.append(f"external request {r.url}"))
        self.page.add_init_script(LONGTASKS)
        deadline = time.monotonic() + 20
        while True:  # the server thread needs a moment to listen
            try:
                self.page.goto(f"http://127.0.0.1:{self.port}/?theme={theme}", wait_until="load")
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        self.page.wait_for_selector(".st-tree", state="attached", timeout=20_000)

    def rows(self) -> Any:
        return self.page.locator(ROWS)

    def row(self, node_id: int) -> Any:
        return self.page.locator(f'.st-row[data-node-id="{node_id}"]')

    def wait(self, predicate: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            self.page.wait_for_timeout(20)

    def client_seq(self) -> int:
        """The last message seq tree.js applied (found through the open shadow roots)."""
        return int(self.page.evaluate(FIND_DATA + "return (find(document) || {seq: -1}).seq })()"))

    def longest_task(self, since: float = 0.0) -> float:
        tasks = self.page.evaluate("window.__longtasks")
        return max([t["ms"] for t in tasks if t["start"] >= since] or [0.0])

    def now(self) -> float:
        return float(self.page.evaluate("performance.now()"))

    def close(self) -> None:
        self.context.close()
        self.server.stop()


@pytest.fixture
def make_app(browser: Browser) -> Iterator[Callable[..., App]]:
    apps: list[App] = []

    def make(store: StubStore, **kwargs: Any) -> App:
        app = App(browser, store, **kwargs)
        apps.append(app)
        return app

    yield make
    for app in apps:
        assert app.dialogs == [], f"a dialog opened: {app.dialogs}"
        assert app.errors == [], f"page errors: {app.errors}"
        app.close()


# ---------------------------------------------------------------------------- trees

HOSTILE = '<img src=x onerror=alert(1)>'


def rich_root() -> dict[str, Any]:
    """Every node type, every state, a retry, a loop, an unknown type and state, hostile text."""
    workers = [task(100 + i, f"worker-{i}", s) for i, s in enumerate(
        ["finished", "finished", "in-progress", "retrying", "pending", "failed", "waiting-approval", "waiting-quota"])]
    workers[3]["task"].update(attempt=2, maxAttempts=3)
    loop = node(30, [node(31, [task(32, "refine", "in-progress", iteration=2)])], type="loop", name="ralph", props={"id": "refine-loop"})
    gate = node(40, [task(41, "sign-off", "waiting-approval", kind="approval")], type="approval", name="approval", props={"label": "release gate"})
    branch = node(50, [task(51, "hotfix", "skipped"), task(52, "normal-path", "cancelled")], type="branch", name="branch")
    timer = node(60, [task(61, "cool-down", "waiting-timer")], type="timer", name="timer")
    odd = node(70, [task(71, HOSTILE, "pending"), task(72, "a-very-long-task-name-" + "x" * 120, "finished")], type="merge-queue", name="merge-queue")
    return node(1, [
        task(2, "plan", "finished"),
        node(10, workers, type="parallel", name="parallel", props={"label": "fan-out"}),
        task(20, "flaky", "failed", attempt=3, maxAttempts=3),
        loop, gate, branch, timer, odd,
        node(80, [task(81, "hidden-failure", "failed")], type="sequence", name="sequence", props={"label": "collapsed group"}),
        task(90, "ship", "pending"),
    ], type="workflow", name="rich", props={"name": "rich"})


def rich_store() -> StubStore:
    store = StubStore()
    store.apply(snap(rich_root()))
    return store


def workload_events(tmp: Path, nodes: int, deltas: int) -> list[dict[str, Any]]:
    out = tmp / f"w{nodes}-{deltas}.jsonl"
    subprocess.run(
        [sys.executable, str(HERE / "benchmarks" / "make_workload.py"), "--nodes", str(nodes),
         "--deltas", str(deltas), "--seed", "7", str(out)], check=True,
    )
    return [json.loads(line)["payload"]["event"] for line in out.read_text().splitlines()]


# ---------------------------------------------------------------------------- tests


#: How the page got the tree's module: the model's ``bundle`` ("url": a compiled file) and ``esm``.
TREE_MODULE_SOURCE = """(() => {
  for (const doc of Bokeh.documents)
    for (const m of doc.all_models)
      if (m.class_name === "TreeComponent") return [m.bundle, m.esm]
})()"""


def test_rows_render_with_ids_states_and_safe_text(make_app: Callable[..., App]) -> None:
    app = make_app(rich_store())
    app.row(90).wait_for(timeout=20_000)
    # Drawn by the generated bundle, fetched from Panel's component route, not compiled here.
    assert app.page.evaluate(TREE_MODULE_SOURCE) == ["url", "./components/dashboard.views.tree/TreeComponent/_bundle_path/tree.bundle.js"]
    assert app.row(2).get_attribute("data-state") == "finished"
    assert app.row(1).get_attribute("data-state") == ""
    assert app.row(103).inner_text().count("attempt 2/3") == 1
    assert "iter 2" in app.row(32).inner_text()
    assert "iter 2" in app.row(30).inner_text()
    # Unknown state: shown by name, not mapped to another state.
    assert app.row(107).get_attribute("data-state") == "waiting-quota"
    assert "waiting-quota" in app.row(107).inner_text()
    # Unknown node type: its name is shown.
    assert "merge-queue" in app.row(70).inner_text()
    # Hostile label is text: no <img> element, the text is visible as typed.
    assert app.row(71).locator(".st-label").inner_text() == HOSTILE
    assert app.page.locator(".st-row img").count() == 0
    # A rogue onerror would have fired by the time another message round-trips.
    app.page.locator("input[placeholder^='Search']").fill("worker")
    app.wait(lambda: app.row(2).count() == 0, what="a round trip")
    assert app.dialogs == []


class BuiltSession:
    """A served NodeTree whose session is built by a plain GET before Chromium opens it.

    Between the two, the test changes the store: what a page's document holds and what
    reaches it while its browser still loads the page's scripts. Bokeh reuses a session whose
    id a request names, so the page opens the very document the GET built.
    """

    def __init__(self, browser: Browser, store: StubStore) -> None:
        self.views: list[NodeTree] = []

        def make() -> Any:
            self.views.append(NodeTree(store=store))
            return pn.Column(self.views[-1], height=520, width=820, margin=0)

        port = free_port()
        self.server = pn.serve(make, port=port, threaded=True, show=False, start=True)
        self.context = browser.new_context(viewport={"width": 860, "height": 560})
        self.url = f"http://127.0.0.1:{port}/?bokeh-session-id=built-before-the-page"
        wait_status(self.url, 200, timeout=20)  # the server thread listens a moment after pn.serve
        self.component = self.views[0].tree
        self.resent: list[int] = []
        resend = self.component.resend
        self.component.resend = lambda *a, **k: (self.resent.append(1), resend(*a, **k))  # type: ignore[method-assign]
        self.errors: list[str] = []

    def initial(self) -> str:
        return "".join(getattr(model.data, "initial", "") for model, _ in list(self.component._models.values()))

    def open(self) -> Page:
        page = self.context.new_page()
        page.on("pageerror", lambda e: self.errors.append(str(e)))
        page.goto(self.url, wait_until="load")  # the same session: its document, pulled now
        return page

    def client(self, page: Page, what: str) -> Any:
        return page.evaluate(FIND_DATA + f"const d = find(document); return d && {what} }})()")

    def wait_in_step(self, page: Page) -> None:
        """Until the browser stopped asking for rows: it was told it is current (or got a reset)."""
        page.wait_for_function(FIND_DATA + "const d = find(document); return d && d.seq > 0 && !d.syncing })()",
                               timeout=20_000)

    def close(self) -> None:
        self.context.close()
        self.server.stop()


def test_rows_that_arrive_before_the_page_connects_travel_in_its_document(browser: Browser) -> None:
    """The first page of a process on a run is built before the hub has the run's tree; the
    tree comes while the browser still loads the page. Its rows then go into the document the
    browser pulls: drawn as the tree renders, with no reset after the browser's ``ready``
    (they used to wait for that round trip)."""
    store = StubStore()
    built = BuiltSession(browser, store)  # no tree yet: the model's rows are empty
    try:
        assert built.initial() == ""
        store.apply(snap(rich_root()))  # the hub's first snapshot, before any browser connected
        poll(built.initial, 10, "the rows in the unsent document (the session's next tick fills it)", interval=0.01)
        page = built.open()
        page.locator('.st-row[data-node-id="90"]').wait_for(timeout=20_000)
        built.wait_in_step(page)
        assert built.client(page, "d.seq") == built.component.feed.seq > 0
        assert built.resent == [] and built.client(page, "d.stats.resyncs") == 1, "the rows came from the document, once"
        assert page.locator('.st-row[data-node-id="2"]').get_attribute("data-state") == "finished"
        assert built.errors == []
    finally:
        built.close()


def test_a_live_runs_ticks_before_the_page_rendered_come_as_patches_after_its_rows(browser: Browser) -> None:
    """A page opened on a run the process follows: its document holds the rows; the run moves
    on while the browser loads the page. The ticks since come as patches after its ``ready``,
    then ``current``: every row drawn once (a reset used to redraw them all, and a page that
    missed nothing got a reset anyway two seconds later, when it asked again)."""
    store = rich_store()
    built = BuiltSession(browser, store)
    try:
        assert built.initial()
        store.apply(delta(0, {"op": "updateTask", "id": 104, "task": {"nodeId": "worker-4", "kind": "compute", "state": "in-progress", "attempt": 1}}))
        store.apply(delta(1, {"op": "addNode", "parentId": 10, "index": 0, "node": task(200, "late-worker", "pending")}),
                    delta(2, {"op": "removeNode", "id": 90}))
        page = built.open()
        page.locator('.st-row[data-node-id="200"]').wait_for(timeout=20_000)
        built.wait_in_step(page)
        assert page.locator('.st-row[data-node-id="104"]').get_attribute("data-state") == "in-progress"
        assert page.locator('.st-row[data-node-id="90"]').count() == 0
        assert built.client(page, "d.seq") == built.component.feed.seq
        assert built.resent == [] and built.client(page, "d.stats.resyncs") == 1, "no reset: the held patches"
        assert built.errors == []
    finally:
        built.close()


def test_patch_changes_one_row(make_app: Callable[..., App]) -> None:
    store = rich_store()
    app = make_app(store)
    app.row(90).wait_for(timeout=20_000)
    before = {i: app.row(i).get_attribute("data-state") for i in (2, 20, 104)}
    # Tag the DOM element: an in-place patch keeps it, a redraw would not matter for this
    # assertion but the state must change on exactly this row.
    store.apply(delta(0, {"op": "updateTask", "id": 104, "task": {"nodeId": "worker-4", "kind": "compute", "state": "in-progress", "attempt": 1}}))
    app.page.wait_for_selector('.st-row[data-node-id="104"][data-state="in-progress"]', timeout=10_000)
    assert {i: app.row(i).get_attribute("data-state") for i in (2, 20)} == {2: before[2], 20: before[20]}
    # Add and remove.
    store.apply(
        delta(1, {"op": "addNode", "parentId": 10, "index": 0, "node": task(200, "late-worker", "pending")}),
        delta(2, {"op": "removeNode", "id": 90}),
    )
    app.row(200).wait_for(timeout=10_000)
    app.row(90).wait_for(state="detached", timeout=10_000)
    ids = [int(x) for x in app.rows().evaluate_all("els => els.map(e => e.getAttribute('data-node-id'))")]
    assert ids.index(200) == ids.index(10) + 1


def test_search_and_state_filter_keep_ancestors(make_app: Callable[..., App]) -> None:
    app = make_app(rich_store())
    app.row(90).wait_for(timeout=20_000)
    search = app.page.locator("input[placeholder^='Search']")
    search.fill("refine")
    app.wait(lambda: app.rows().count() == 4, what="search to filter")  # workflow > loop > sequence > refine
    assert [r.get_attribute("data-node-id") for r in app.rows().all()] == ["1", "30", "31", "32"]
    search.fill("")
    app.wait(lambda: app.rows().count() > 20, what="search to clear")
    app.page.locator("select").select_option("failed")
    app.wait(lambda: app.row(20).count() == 1 and app.row(2).count() == 0, what="state filter")
    assert app.row(81).count() == 1 and app.row(80).count() == 1


def test_keyboard_collapse_expand_and_select(make_app: Callable[..., App]) -> None:
    store = rich_store()
    app = make_app(store)
    app.row(90).wait_for(timeout=20_000)
    app.row(80).click()
    app.wait(lambda: store.selected_node == 80, what="click to select")
    assert "selected" in (app.row(80).get_attribute("class") or "")
    app.page.keyboard.press("ArrowLeft")  # collapse the group
    app.row(81).wait_for(state="detached", timeout=5000)
    # A collapsed container with a failed task inside shows the failed dot.
    assert app.row(80).locator('.st-dot[data-dot="fail"]').count() == 1
    app.page.keyboard.press("ArrowRight")
    app.row(81).wait_for(timeout=5000)
    app.page.keyboard.press("ArrowDown")
    app.page.keyboard.press("Enter")
    app.wait(lambda: store.selected_node == 81, what="Enter to select")
    # Selecting from Python (another view) highlights the row in the browser.
    store.selected_node = 2
    app.page.wait_for_selector('.st-row.selected[data-node-id="2"]', timeout=5000)


def test_collapse_survives_patches_and_resets_of_the_same_run(make_app: Callable[..., App]) -> None:
    store = rich_store()
    app = make_app(store)
    app.row(90).wait_for(timeout=20_000)
    app.row(10).locator(".st-twisty").click()
    app.row(100).wait_for(state="detached", timeout=5000)
    store.apply(delta(0, {"op": "updateTask", "id": 2, "task": {"nodeId": "plan", "kind": "compute", "state": "failed"}}))
    app.page.wait_for_selector('.st-row[data-node-id="2"][data-state="failed"]', timeout=5000)
    store.apply(snap(rich_root(), seq=3))  # a rebaseline snapshot of the same run
    app.page.wait_for_selector('.st-row[data-node-id="2"][data-state="finished"]', timeout=5000)
    assert app.row(100).count() == 0
    store.apply(snap(rich_root(), seq=0, run="run-2"))  # another run: fresh view state
    app.row(100).wait_for(timeout=5000)


def test_a_reset_redraws_a_row_it_changed_that_no_patch_had_touched(make_app: Callable[..., App]) -> None:
    """A reset of the same run (a rebaseline, the answer to a resync after a gap, the reset
    after a page's first rows) numbers its rows afresh. A drawn row that no patch had touched
    and whose state the reset changed kept showing the old state: its drawn signature (id,
    version 0) matched the new row's (the end-to-end run page caught it: finished tasks shown
    pending after a reset that said finished)."""
    store = rich_store()
    app = make_app(store)
    app.page.wait_for_selector('.st-row[data-node-id="90"][data-state="pending"]', timeout=20_000)
    root = rich_root()
    root["children"][-1]["task"]["state"] = "finished"  # task 90, "ship"
    store.apply(snap(root, seq=3))  # a rebaseline snapshot of the same run: a reset
    app.page.wait_for_selector('.st-row[data-node-id="90"][data-state="finished"]', timeout=5000)


def test_ten_thousand_nodes_render_a_window_quickly(make_app: Callable[..., App], tmp_path: Path) -> None:
    events = workload_events(tmp_path, 10_000, 300)
    store = StubStore()
    store.apply(snap(node(1, type="workflow")))
    app = make_app(store)
    app.row(1).wait_for(timeout=20_000)
    app.page.wait_for_load_state("networkidle")  # page-load work is not counted
    t0 = app.now()
    sent = time.perf_counter()
    # A run switch: a new tree object and a tick; the feed sees the new tree and resets.
    store.param.update(tree=DevToolsTree(events[0]), last_changes=(), tree_version=store.tree_version + 1)
    app.wait(lambda: "10,000 nodes" in app.page.locator(".st-footer").inner_text() and app.rows().count() > 10,
             timeout=30, what="10k reset")
    reset_wall = (time.perf_counter() - sent) * 1000
    dom_rows = app.page.locator(".st-row").count()
    longest_reset = app.longest_task(t0)
    print(f"\n10k reset: {dom_rows} DOM rows, longest task {longest_reset:.0f} ms, send-to-rows {reset_wall:.0f} ms")
    assert dom_rows < 200

    # A burst of patches (the workload's deltas, one tick each, as fast as we can).
    t1 = app.now()
    view = app.views[-1]
    reset_bytes = view.tree.feed.stats.bytes_sent
    for event in events[1:]:
        store.apply(event)
    seq = view.tree.feed.seq
    app.wait(lambda: app.client_seq() >= seq, timeout=30, what="patches applied")
    longest_burst = app.longest_task(t1)
    stats = view.tree.feed.stats
    js = app.page.evaluate(FIND_DATA + "return find(document).stats })()")
    print(f"burst of {len(events) - 1} ticks: {stats.patches} patches, {stats.bytes_sent - reset_bytes} bytes, "
          f"longest task {longest_burst:.0f} ms; tree.js: longest message slice {js['maxSliceMs']:.0f} ms, "
          f"longest frame {js['maxFrameMs']:.0f} ms")
    assert app.page.locator(".st-row").count() < 200
    # Scroll to the bottom: still a window, and the last rows are there.
    app.page.locator(".st-scroll").evaluate("el => { el.scrollTop = el.scrollHeight }")
    app.wait(lambda: app.page.locator(".st-scroll").evaluate("el => el.scrollTop") > 1000, what="scroll")
    assert app.page.locator(".st-row").count() < 200


def test_follow_scrolls_to_the_running_node_until_the_user_scrolls(make_app: Callable[..., App]) -> None:
    children = [task(1000 + i, f"step-{i:03d}", "finished") for i in range(300)]
    store = StubStore()
    store.apply(snap(node(1, children, type="workflow")))
    app = make_app(store, height=400)
    app.row(1000).wait_for(timeout=20_000)
    footer = app.page.locator(".st-footer")
    # Nothing runs: the footer does not claim to follow anything.
    app.wait(lambda: footer.inner_text().endswith(" nodes · nothing running to follow"), what="the footer")
    store.apply(delta(0, {"op": "updateTask", "id": 1250, "task": {"nodeId": "step-250", "kind": "compute", "state": "in-progress"}}))
    app.row(1250).wait_for(timeout=10_000)
    assert app.row(1250).is_visible()
    app.wait(lambda: "1 running · following the running node" in footer.inner_text(), what="the footer")
    # The user scrolls away: following stops, the toggle shows it.
    app.page.locator(".st-scroll").hover()
    app.page.mouse.wheel(0, -3000)
    app.wait(lambda: app.views[-1].tree.follow is False, what="follow to switch off")
    store.apply(delta(1, {"op": "updateTask", "id": 1280, "task": {"nodeId": "step-280", "kind": "compute", "state": "in-progress"}}))
    app.wait(lambda: app.client_seq() >= app.views[-1].tree.feed.seq, what="patch applied")
    app.wait(lambda: "not following" in app.page.locator(".st-footer").inner_text(), what="a frame")
    assert app.row(1280).count() == 0
    app.page.get_by_role("button", name="Follow").click()  # re-enable
    app.row(1280).wait_for(timeout=10_000)


def test_rows_inserted_above_do_not_move_what_the_user_reads(make_app: Callable[..., App]) -> None:
    children = [task(1000 + i, f"step-{i:03d}", "finished") for i in range(300)]
    store = StubStore()
    store.apply(snap(node(1, children, type="workflow")))
    app = make_app(store, height=400)
    app.row(1000).wait_for(timeout=20_000)
    app.page.locator(".st-scroll").hover()
    app.page.mouse.wheel(0, 150 * 22)  # the user scrolls: follow switches off
    app.wait(lambda: app.views[-1].tree.follow is False, what="follow off")
    app.wait(lambda: app.row(1150).count() == 1, what="scrolled")

    def top_id() -> str:
        return str(app.page.evaluate(
            FIND_DATA + "const d = find(document); return String(d.visible[Math.floor(d.scrollTop / 22)]) })()"))

    before = top_id()
    store.apply(delta(0, *[{"op": "addNode", "parentId": 1, "index": 0, "node": task(5000 + i, f"new-{i}")} for i in range(20)]))
    app.wait(lambda: app.client_seq() >= app.views[-1].tree.feed.seq and app.row(5000).count() == 0
             and app.page.locator(".st-footer").inner_text().startswith("321 nodes"), what="patch applied")
    app.wait(lambda: top_id() == before, timeout=2, what="the same row at the top")
    store.apply(snap(node(1, children, type="workflow"), seq=5))  # a reset of the same run
    app.wait(lambda: app.page.locator(".st-footer").inner_text().startswith("301 nodes"), what="reset applied")
    app.wait(lambda: top_id() == before, timeout=2, what="the same row at the top after a reset")


@pytest.mark.parametrize("theme", ["default", "dark"])
def test_screenshots(make_app: Callable[..., App], theme: str, tmp_path: Path) -> None:
    """The rich tree, whole, with a selection and a collapsed group hiding a failure."""
    store = rich_store()
    app = make_app(store, theme=theme, height=700)
    app.row(90).wait_for(timeout=20_000)
    app.row(80).locator(".st-twisty").click()  # show the failed-descendant dot
    app.row(81).wait_for(state="detached", timeout=5000)
    app.row(20).click()
    app.page.mouse.move(0, 0)
    app.wait(lambda: store.selected_node == 20, what="selection")
    shots = Path(os.environ.get("SMITHERS_SCREENSHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    app.page.screenshot(path=str(shots / ("tree.png" if theme == "default" else "tree-dark.png")), animations="disabled")


@pytest.mark.parametrize("theme", ["default", "dark"])
def test_screenshots_10k(make_app: Callable[..., App], theme: str, tmp_path: Path) -> None:
    """A 10,000-node run mid-flight, following its latest running node."""
    events = workload_events(tmp_path, 10_000, 400)
    store = StubStore()
    store.apply(*events)
    app = make_app(store, theme=theme, height=620)
    app.wait(lambda: "nodes" in app.page.locator(".st-footer").inner_text() and app.rows().count() > 10,
             timeout=30, what="10k tree")
    running = app.page.locator('.st-row[data-state="in-progress"]')
    running.first.wait_for(timeout=10_000)
    assert app.page.locator(".st-row").count() < 200
    app.page.mouse.move(0, 0)
    shots = Path(os.environ.get("SMITHERS_SCREENSHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    app.page.screenshot(path=str(shots / ("tree-10k.png" if theme == "default" else "tree-10k-dark.png")), animations="disabled")

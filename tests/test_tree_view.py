"""The tree component's messages, without a browser: what Python sends per store tick.

The component is rendered into a Bokeh Document (so it has a model, as in a session) and
``_send_msg`` is captured. ``StubStore``, a ``dashboard.store.RunStore`` without a hub whose
tree the test feeds directly, stands in for a live session's store;
``tests/test_tree_browser.py`` reuses it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from bokeh.document import Document

from dashboard.store import RunStore
from dashboard.treerows import RowMirror, decode, rows_for
from dashboard.views.tree import NodeTree, TreeComponent
from inspector import DevToolsTree, TreeChange

from .recordings import recording
from .wire import delta, node, snap, task

if TYPE_CHECKING:
    from collections.abc import Iterator


class StubStore(RunStore):
    """A store without a hub whose tree the test feeds: the tree view reads ``tree``,
    ``tree_version``, ``last_changes``, ``selected_node`` and ``run_id``, and writes
    ``selected_node``."""

    def _on_run_id(self) -> None:
        """Keep the fed tree: a real store swaps in the hub's tree of the new run."""

    def apply(self, *events: dict[str, Any]) -> tuple[TreeChange, ...]:
        """Apply DevTools events as one batch and tick, as the store's flush does."""
        if self.tree is None:
            self.tree = DevToolsTree()
        changes = tuple(self.tree.apply(e) for e in events)
        self.param.update(last_changes=changes, tree_version=self.tree_version + 1, run_id=self.tree.run_id)
        return changes


def sample_root() -> dict[str, Any]:
    return node(1, [task(2, "plan", "finished"), node(3, [task(4, "a", "in-progress"), task(5, "b")], type="parallel")], type="workflow", name="demo")


class Rendered:
    """A NodeTree rendered into a Document, with every message the component sent."""

    def __init__(self, store: StubStore) -> None:
        self.store = store
        self.view = NodeTree(store=store)
        self.sent: list[Any] = []
        self.view.tree._send_msg = self.sent.append  # type: ignore[method-assign]
        self.doc = Document()
        self.root = self.view.__panel__().get_root(self.doc)
        self.mirror = RowMirror()

    def ready(self, seq: int = 0) -> None:
        self.view.tree._handle_msg({"type": "ready", "seq": seq, "run": None})

    def tree_messages(self) -> Iterator[dict[str, Any]]:
        for raw in self.sent:
            if isinstance(raw, str):
                yield decode(raw)

    def sync(self) -> list[dict[str, Any]]:
        """Apply everything sent so far to the mirror; return the tree messages."""
        messages = list(self.tree_messages())
        for message in messages:
            self.mirror.apply(message)
        self.sent.clear()
        return messages


@pytest.fixture
def rendered() -> Rendered:
    store = StubStore()
    store.apply(snap(sample_root()))
    return Rendered(store)


def test_esm_and_css_come_from_the_asset_files() -> None:
    esm = TreeComponent._render_esm(compiled=True, server=False)
    assert "export function render" in esm
    assert "innerHTML" not in esm.replace("never through innerHTML", "")
    assert "import " not in "\n".join(line for line in esm.splitlines() if not line.lstrip().startswith("//"))
    assert any(".st-row" in css for css in TreeComponent._stylesheets)


def test_ready_gets_a_reset_with_every_row(rendered: Rendered) -> None:
    rendered.ready()
    (message,) = rendered.sync()
    assert message["type"] == "reset" and message["run"] == "r" and message["seq"] == rendered.view.tree.feed.seq
    assert rendered.mirror.ordered() == rows_for(rendered.store.tree)


def test_ready_from_a_current_browser_gets_only_current(rendered: Rendered) -> None:
    rendered.ready()
    rendered.sync()
    rendered.ready(seq=rendered.view.tree.feed.seq)
    assert rendered.sent == [{"type": "current", "seq": rendered.view.tree.feed.seq}]  # it stops asking


def initial_of(rendered: Rendered) -> str:
    (model,) = [model for model, _ in rendered.view.tree._models.values()]
    return str(model.data.initial)


def test_the_first_document_carries_the_rows_and_a_browser_that_drew_them_needs_nothing_more(rendered: Rendered) -> None:
    initial = decode(initial_of(rendered))
    assert initial["type"] == "reset" and initial["seq"] == rendered.view.tree.feed.seq
    rendered.mirror.apply(initial)
    assert rendered.mirror.ordered() == rows_for(rendered.store.tree)
    assert rendered.sent == []  # nothing is sent before the browser has a view to take it
    rendered.ready(seq=initial["seq"])
    assert rendered.sent == [{"type": "current", "seq": initial["seq"]}]
    assert initial_of(rendered) == ""  # read once: not kept per session


def fail_b(seq: int) -> dict[str, Any]:
    return delta(seq, {"op": "updateTask", "id": 5, "task": {"nodeId": "b", "kind": "compute", "state": "failed"}})


def test_ticks_before_the_browser_rendered_are_held_and_sent_after_its_ready(rendered: Rendered) -> None:
    """The document's rows, then the patches since: drawn once, no reset (a second full draw)."""
    initial = decode(initial_of(rendered))
    rendered.mirror.apply(initial)
    rendered.store.apply(fail_b(0))
    rendered.store.apply(delta(1, {"op": "addNode", "parentId": 3, "index": 0, "node": task(6, "c")}))
    assert rendered.sent == []  # no view listens yet: not sent
    rendered.ready(seq=initial["seq"])
    *patches, current = rendered.sent
    messages = rendered.sync()
    assert [m["type"] for m in messages] == ["patch", "patch"]
    assert [m["seq"] for m in messages] == [initial["seq"] + 1, initial["seq"] + 2]
    assert current == {"type": "current", "seq": initial["seq"] + 2}
    assert rendered.mirror.ordered() == rows_for(rendered.store.tree)


def test_held_ticks_larger_than_the_rows_give_one_reset(rendered: Rendered) -> None:
    initial_text = initial_of(rendered)
    initial = decode(initial_text)
    rendered.mirror.apply(initial)
    ticks = 60
    assert len(initial_text) < ticks * 20  # every patch is longer than 20 bytes: they outgrow the rows
    for seq in range(ticks):
        state = "failed" if seq % 2 == 0 else "in-progress"
        rendered.store.apply(delta(seq, {"op": "updateTask", "id": 5, "task": {"nodeId": "b", "kind": "compute", "state": state}}))
    rendered.ready(seq=initial["seq"])
    (message,) = rendered.sync()
    assert message["type"] == "reset" and message["seq"] == rendered.view.tree.feed.seq
    assert rendered.mirror.ordered() == rows_for(rendered.store.tree)
    assert len(rendered.view.tree._held) == 0


def test_a_browser_without_the_documents_rows_gets_a_reset_not_the_held_ticks(rendered: Rendered) -> None:
    rendered.store.apply(fail_b(0))
    rendered.ready(seq=0)  # it did not draw the document's rows (a re-render, a lost model)
    (message,) = rendered.sync()
    assert message["type"] == "reset"
    assert rendered.mirror.ordered() == rows_for(rendered.store.tree)


def test_a_snapshot_already_sent_at_ready_is_not_sent_again_by_its_tick() -> None:
    store = StubStore()
    rendered = Rendered(store)  # the page was built before the Gateway's snapshot came
    store.tree = DevToolsTree()
    change = store.tree.apply(snap(sample_root(), seq=7))  # in the hub's tree, not yet ticked
    rendered.ready()
    (reset,) = rendered.sync()
    assert reset["type"] == "reset"
    store.param.update(last_changes=(change,), tree_version=store.tree_version + 1, run_id="r")  # the store's tick
    assert rendered.sync() == []
    assert rendered.mirror.ordered() == rows_for(store.tree)
    store.apply(delta(7, {"op": "updateTask", "id": 5, "task": {"nodeId": "b", "kind": "compute", "state": "failed"}}))
    (patch,) = rendered.sync()
    assert patch["type"] == "patch" and rendered.mirror.ordered() == rows_for(store.tree)


def test_an_empty_tree_gives_no_initial_rows() -> None:
    assert initial_of(Rendered(StubStore())) == ""


def test_one_tick_one_patch_with_one_row(rendered: Rendered) -> None:
    rendered.ready()
    rendered.sync()
    rendered.store.apply(delta(0, {"op": "updateTask", "id": 5, "task": {"nodeId": "b", "kind": "compute", "state": "failed", "attempt": 2, "maxAttempts": 3}}))
    (raw,) = rendered.sent
    assert isinstance(raw, str) and len(raw) < 200
    (message,) = rendered.sync()
    assert message["type"] == "patch"
    assert [row["id"] for row in message["upsert"]] == [5]
    assert rendered.mirror.ordered() == rows_for(rendered.store.tree)


def test_batched_tick_gives_one_message(rendered: Rendered) -> None:
    rendered.ready()
    rendered.sync()
    rendered.store.apply(
        delta(0, {"op": "addNode", "parentId": 3, "index": 0, "node": task(6, "c")}),
        delta(1, {"op": "removeNode", "id": 2}),
        delta(2, {"op": "updateTask", "id": 4, "task": {"nodeId": "a", "kind": "compute", "state": "finished"}}),
    )
    messages = rendered.sync()
    assert len(messages) == 1
    assert messages[0]["remove"] == [2] and messages[0]["at"] == [[6, 0]]
    assert rendered.mirror.ordered() == rows_for(rendered.store.tree)


def test_empty_delta_sends_nothing(rendered: Rendered) -> None:
    rendered.ready()
    rendered.sync()
    rendered.store.apply(delta(0))
    assert rendered.sent == []


def test_snapshot_and_new_run_reset(rendered: Rendered) -> None:
    rendered.ready()
    rendered.sync()
    rendered.store.apply(snap(node(1, [task(9, "z")], type="workflow"), seq=5))
    (message,) = rendered.sync()
    assert message["type"] == "reset"
    # The store swaps the tree object on a run switch.
    rendered.store.tree = DevToolsTree(snap(node(50, type="workflow"), run="run-2"))
    rendered.store.apply(delta(0))
    (message,) = rendered.sync()
    assert message["type"] == "reset" and message["run"] == "run-2"


def test_nothing_is_computed_before_the_component_is_rendered() -> None:
    store = StubStore()
    store.apply(snap(sample_root()))
    view = NodeTree(store=store)
    sent: list[Any] = []
    view.tree._send_msg = sent.append  # type: ignore[method-assign]
    store.apply(delta(0, {"op": "removeNode", "id": 2}))
    assert sent == [] and view.tree.feed.seq == 0


def test_select_from_the_browser_sets_the_store_and_not_back(rendered: Rendered) -> None:
    rendered.ready()
    rendered.sync()
    rendered.view.tree._handle_msg({"type": "select", "id": 4})
    assert rendered.store.selected_node == 4
    assert rendered.sent == []  # no echo to the browser


def test_select_in_the_store_is_sent_to_the_browser(rendered: Rendered) -> None:
    rendered.store.selected_node = 5
    assert rendered.sent == [{"type": "select", "id": 5}]
    rendered.store.selected_node = None  # e.g. a run switch
    assert rendered.sent[-1] == {"type": "select", "id": None}


def test_garbage_from_the_browser_is_ignored(rendered: Rendered) -> None:
    for data in (None, "x", {"type": "select", "id": "4"}, {"type": "select", "id": True}, {"type": "nope"}):
        rendered.view.tree._handle_msg(data)
    assert rendered.store.selected_node is None


def test_toolbar_drives_component_params(rendered: Rendered) -> None:
    view = rendered.view
    view._search.value_input = "plan"
    view._state.value = "failed" if "failed" in view._state.options.values() else ""
    assert view.tree.query == "plan"
    view._follow.value = False
    assert view.tree.follow is False
    view.tree.follow = True  # the browser switching it back on shows in the toggle
    assert view._follow.value is True
    view._expand.clicks += 1
    view._collapse.clicks += 1
    assert rendered.sent[-2:] == [{"type": "expand-all"}, {"type": "collapse-all"}]


def test_state_filter_lists_unknown_states_by_name(rendered: Rendered) -> None:
    store, view = rendered.store, rendered.view
    store.apply(snap(node(1, [task(2, "q", "waiting-quota"), task(3, "r", "in-progress")], type="workflow")))
    # Held back until the component says it rendered (Bokeh's Select drops an early options patch).
    assert list(view._state.options) == ["All states"]
    rendered.ready()
    options = view._state.options
    assert options["waiting-quota"] == "waiting-quota"
    assert options["in-progress"] == "in-progress"
    assert options["All states"] == ""
    store.apply(delta(0, {"op": "updateTask", "id": 3, "task": {"nodeId": "r", "kind": "compute", "state": "brand-new"}}))
    assert view._state.options["brand-new"] == "brand-new"


def test_messages_are_json_strings_not_bokeh_maps(rendered: Rendered) -> None:
    rendered.ready()
    (raw,) = rendered.sent
    assert isinstance(raw, str)
    assert json.loads(raw)["rows"][0][:5] == [1, None, 0, "workflow", "demo"]


def test_real_store_contract() -> None:
    from dashboard import store as store_mod

    params = store_mod.RunStore.param
    for name in ("tree", "tree_version", "last_changes", "selected_node", "run_id"):
        assert name in params, name


# ---------------------------------------------------------------------------- tree.js itself

NODE_DRIVER = r"""
import {readFileSync} from "node:fs"
const {TreeData} = await import(process.argv[1])
const data = new TreeData()
const resyncs = []
const model = {send_msg: (m) => resyncs.push(m)}
for (const line of readFileSync(process.argv[2], "utf8").split("\n")) {
  if (!line) continue
  data.receive(line, model)
  while (data.inbox.length || data.job) data.drain()
  const out = []
  const stack = data.root === null ? [] : [data.root]
  while (stack.length) {
    const id = stack.pop()
    const r = data.rows.get(id)
    const kids = data.kids.get(id)
    out.push([r.id, r.parent, r.depth, r.type, r.label, r.state, r.nodeId, r.attempt, r.maxAttempts, r.iteration, kids.length > 0, r.f, r.r])
    for (let i = kids.length - 1; i >= 0; i--) stack.push(kids[i])
  }
  console.log(JSON.stringify({seq: data.seq, rows: out, resyncs: resyncs.length}))
}
"""


def served_tree_js(directory: Path) -> str:
    """The URL of a file holding tree.js exactly as the browser receives it (with the
    vocabulary prepended), for Node to import."""
    path = directory / "tree.mjs"
    path.write_text(TreeComponent._render_esm(compiled=True, server=False), encoding="utf-8")
    return path.as_uri()


def _expected(tree: DevToolsTree) -> list[list[Any]]:
    """rows_for as tree.js holds it, plus failed/running counts below each node."""
    below: dict[int, list[int]] = {}
    for n in reversed(list(tree.walk())):
        f = r = 0
        for c in n.children:
            cf, cr = below[c.id]
            f += cf + (c.state == "failed")
            r += cr + (c.state in ("in-progress", "retrying"))
        below[n.id] = [f, r]
    keys = ("id", "parent", "depth", "type", "label", "state", "nodeId", "attempt", "maxAttempts", "iteration", "hasChildren")
    return [[row.get(k) for k in keys] + below[row["id"]] for row in rows_for(tree)]


@pytest.mark.parametrize("fixture, batch", [("rich-run", 1), ("rewind-run", 1), ("wide-run", 17), ("doomed-run", 2), ("workload", 4)])
def test_tree_js_applies_messages_exactly_like_rows_for(fixture: str, batch: int, tmp_path: Any) -> None:
    """Drive tree.js's TreeData under Node with the feed's messages; after every message
    its rows, order, derived hasChildren and failed/running roll-ups match the tree."""
    import shutil
    import subprocess
    import sys

    from dashboard.treerows import TreeFeed

    node_bin = shutil.which("node")
    assert node_bin is not None, "Node.js is needed to run tree.js outside a browser (scripts/test checks for it)"
    events = []
    if fixture == "workload":  # adds and removes anywhere, on a 1,500-node tree
        out = tmp_path / "w.jsonl"
        subprocess.run([sys.executable, str(Path(__file__).parent / "benchmarks" / "make_workload.py"),
                        "--nodes", "1500", "--deltas", "400", str(out)], check=True)
        events = [json.loads(line)["payload"]["event"] for line in out.read_text().splitlines()]
    else:
        for line in recording(f"{fixture}.jsonl").read_text().splitlines():
            frame = json.loads(line)["frame"]
            if frame.get("type") == "event" and frame.get("event") == "devtools.event":
                events.append(frame["payload"]["event"])
    tree = DevToolsTree()
    feed = TreeFeed()
    lines = [feed.encode(feed.reset(tree))]
    expected = [_expected(tree)]
    for i in range(0, len(events), batch):
        message = feed.update(tree, [tree.apply(e) for e in events[i:i + batch]])
        if message is not None:
            lines.append(feed.encode(message))
            expected.append(_expected(tree))
    messages = tmp_path / "messages.jsonl"
    messages.write_text("\n".join(lines) + "\n")
    result = subprocess.run(
        [node_bin, "--input-type=module", "-e", NODE_DRIVER, served_tree_js(tmp_path), str(messages)],
        capture_output=True, text=True, check=True, timeout=120,
    )
    states = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(states) == len(expected)
    for step, (state, want) in enumerate(zip(states, expected, strict=True)):
        assert state["resyncs"] == 0
        assert state["rows"] == want, f"tree.js differs from rows_for after message {step}"


GAP_DRIVER = r"""
const timers = []
globalThis.setTimeout = (fn, ms) => { timers.push({fn, ms}); return timers.length }
globalThis.clearTimeout = (id) => { if (id) timers[id - 1].fn = null }
const {TreeData} = await import(process.argv[1])
const msgs = JSON.parse(process.argv[2])
const data = new TreeData()
const sent = []
const model = {send_msg: (m) => sent.push(m)}
const log = []
const fire = () => {  // run the due resync timers (not the drain ones) once
  for (const t of timers.splice(0)) if (t.fn && t.ms > 0) { log.push(t.ms); t.fn() }
}
const step = (m) => { data.receive(JSON.stringify(m), model); while (data.inbox.length || data.job) data.drain() }
step(msgs[0])                                   // reset seq 1
step(msgs[2])                                   // seq 3: a gap -> ask once
const afterGap = sent.length
step(msgs[3])                                   // seq 4: still waiting, no second ask
const afterMore = sent.length
fire(); const retry1 = sent.length              // the reset never came: ask again
fire(); const retry2 = sent.length
step({...msgs[0], seq: 10})                     // the reset arrives
fire(); const afterReset = sent.length           // no more asks
step({...msgs[1], seq: 11})                     // and patches apply again
console.log(JSON.stringify({afterGap, afterMore, retry1, retry2, afterReset, waits: log, seq: data.seq,
                            syncing: data.syncing, first: sent[0]}))
"""


def test_tree_js_never_drops_a_gap_for_good(tmp_path: Any) -> None:
    """A patch that does not follow on asks for a reset once; if the reset never comes the
    ask is repeated with a growing interval; once a reset is applied the asking stops.
    (Throttling the asks and dropping the gap would leave a run that goes quiet right after
    a gap with a stale row for good.)"""
    import shutil
    import subprocess

    from dashboard.treerows import TreeFeed
    from tests.wire import delta, node, snap, task

    node_bin = shutil.which("node")
    assert node_bin is not None
    tree = DevToolsTree()
    tree.apply(snap(node(1, [task(10, "a"), task(11, "b")]), seq=1))
    feed = TreeFeed()
    msgs = [feed.reset(tree)]
    for base, state in ((1, "in-progress"), (2, "finished"), (3, "failed")):
        op = {"op": "updateTask", "id": 10, "task": task(10, "a", state)["task"]}
        message = feed.update(tree, [tree.apply(delta(base, op))])
        assert message is not None
        msgs.append(message)
    assert [m["seq"] for m in msgs] == [1, 2, 3, 4]
    result = subprocess.run(
        [node_bin, "--input-type=module", "-e", GAP_DRIVER, served_tree_js(tmp_path), json.dumps(msgs)],
        capture_output=True, text=True, check=True, timeout=60,
    )
    out = json.loads(result.stdout)
    assert out["afterGap"] == 1 and out["first"] == {"type": "ready", "seq": 0, "run": "r"}
    assert out["afterMore"] == 1, "a second gap while a reset is owed must not ask again"
    assert (out["retry1"], out["retry2"]) == (2, 3), "an unanswered ask is repeated"
    assert out["waits"][:2] == [2000, 4000], "with a growing interval"
    assert out["afterReset"] == 3 and out["syncing"] is False
    assert out["seq"] == 11


def test_served_tree_js_gets_its_icons_and_states_from_the_vocabulary() -> None:
    """The module the browser receives opens with the vocabulary's icon table (emoji and
    plain glyph for every node type) and running states, then the tree's parts in order;
    no part declares a table of its own."""
    from dashboard.treerows import tree_vocabulary_js
    from dashboard.views.tree import ASSETS, TREE_MODULES, tree_module_js
    from inspector.vocabulary import NODE_ICONS, RUNNING_TASK_STATES, TaskState

    served = TreeComponent._render_esm(compiled=True, server=False)
    first, _, rest = served.partition("\n")
    assert first + "\n" == tree_vocabulary_js()
    vocabulary = json.loads(first.removeprefix("const VOCABULARY = "))
    assert vocabulary["icons"] == {str(t): list(icon) for t, icon in NODE_ICONS.items()}
    assert set(vocabulary["running"]) == RUNNING_TASK_STATES and vocabulary["failed"] == TaskState.FAILED
    assert rest.strip() == tree_module_js().strip()
    for name in TREE_MODULES:
        part = (ASSETS / name).read_text(encoding="utf-8")
        assert "const VOCABULARY" not in part and part.strip() in rest

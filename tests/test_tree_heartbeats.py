"""Each task's last heartbeat on its tree row: the ``beats`` message and the browser's ages.

Python sends ``RunStore.task_heartbeats`` as one small ``beats`` message (at most one a second
from the page's tree, again after every ``ready``); the browser half (``tree_beats.js``) counts
each row's age on its own clock, corrected by the server's time at sending, and writes the
tooltip and the marker of running tasks. The JS is run under Node exactly as served.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from typing import TYPE_CHECKING, Any

from dashboard.format import format_duration
from dashboard.treerows import heartbeats_delta, task_heartbeats_json
from dashboard.views.tree import TreeComponent
from tests.test_tree_view import Rendered, StubStore, sample_root, served_tree_js
from tests.wire import snap

if TYPE_CHECKING:
    from pathlib import Path


def test_task_heartbeats_json_groups_by_task_in_server_milliseconds() -> None:
    text = task_heartbeats_json({("a", 0): 1000.5, ("a", 2): 1001.0, ("b", 0): 2.0})
    assert json.loads(text) == {"a": {"0": 1000500.0, "2": 1001000.0}, "b": {"0": 2000.0}}
    assert task_heartbeats_json({}) == "{}"


def test_heartbeats_delta_sends_what_changed_and_the_whole_table_when_an_entry_went() -> None:
    first = {("a", 0): 1.0, ("b", 0): 2.0}
    assert heartbeats_delta({}, {}) is None and heartbeats_delta(first, first) is None
    assert heartbeats_delta({}, first) == (task_heartbeats_json(first), False)
    later = {**first, ("b", 0): 3.0, ("c", 1): 4.0}
    text, merge = heartbeats_delta(first, later) or ("", False)
    assert merge and json.loads(text) == {"b": {"0": 3000.0}, "c": {"1": 4000.0}}
    assert heartbeats_delta(first, dict(first)) is None  # equal maps: nothing to send
    rewound = {("a", 0): 1.0}  # b's beat was cut by a rewind: the page must forget it
    assert heartbeats_delta(later, rewound) == (task_heartbeats_json(rewound), False)
    assert heartbeats_delta(later, {}) == ("{}", False)


def beats(sent: list[Any]) -> list[dict[str, Any]]:
    return [m for m in sent if isinstance(m, dict) and m.get("type") == "beats"]


def test_the_tree_sends_heartbeats_when_they_change_and_after_ready() -> None:
    store = StubStore()
    rendered = Rendered(store)
    rendered.ready()
    store.apply(snap(sample_root()))
    rendered.sent.clear()
    before = time.time() * 1000
    store.task_heartbeats = {("a", 0): time.time() - 3}
    (message,) = beats(rendered.sent)
    assert json.loads(message["beats"]) == json.loads(task_heartbeats_json(store.task_heartbeats))
    assert before <= message["now"] <= time.time() * 1000 and message["merge"] is False
    rendered.sent.clear()
    store.task_heartbeats = dict(store.task_heartbeats)  # the same beats: nothing to send
    assert beats(rendered.sent) == []
    store.task_heartbeats = {**store.task_heartbeats, ("b", 1): time.time()}  # one more: only it
    (message,) = beats(rendered.sent)
    assert message["merge"] is True and list(json.loads(message["beats"])) == ["b"]
    rendered.sent.clear()
    rendered.ready(seq=rendered.view.tree.feed.seq)  # a re-rendered page gets them all again
    (message,) = beats(rendered.sent)
    assert message["merge"] is False and json.loads(message["beats"]) == json.loads(task_heartbeats_json(store.task_heartbeats))


def test_no_beats_message_before_any_heartbeat() -> None:
    store = StubStore()
    rendered = Rendered(store)
    rendered.ready()
    assert beats(rendered.sent) == []


def test_the_served_module_is_one_module_made_of_every_part() -> None:
    from dashboard.views.tree import ASSETS, TREE_MODULES, tree_module_js

    served = TreeComponent._render_esm(compiled=True, server=False)
    for name in TREE_MODULES:
        text = (ASSETS / name).read_text(encoding="utf-8")
        assert text.strip() in served and len(text.splitlines()) <= 800
        assert not re.search(r"^import ", text, re.M), f"{name}: the parts share one module scope"
        assert name == "tree.js" or not re.search(r"^export ", text, re.M), f"{name}: only the entry exports"
    assert served.count("export default") == 1 and tree_module_js() in served


BEATS_DRIVER = r"""
const {TreeData} = await import(process.argv[1])
const out = {}
const data = new TreeData()
const views = []
data.views.add({beatsChanged: () => views.push("beats"), refreshShown() {}, applied() {}, scrollTo() {}})
const model = {send_msg() {}}
const step = (m) => { data.receive(JSON.stringify(m), model); while (data.inbox.length || data.job) data.drain() }
data.receive(process.argv[2], model)   // the feed's encoded reset
while (data.inbox.length || data.job) data.drain()
const serverNow = Date.now() - 50000   // a server clock 50 s behind the browser's
step({type: "beats", now: serverNow, beats: JSON.stringify({a: {"0": serverNow - 3000}, b: {"1": serverNow - 65000}})})
const byId = (id) => data.rows.get(id)
out.ageA = data.beats.ageOf(byId(4))
out.ageB = data.beats.ageOf(byId(5))
out.none = data.beats.ageOf(byId(2))
const {rowTitle, beatMarker, fmtDuration} = globalThis.__beatParts
out.titleA = rowTitle(byId(4), out.ageA)
out.markerA = beatMarker(byId(4), out.ageA)
out.markerDone = beatMarker(byId(2), 4)
out.titlePlain = rowTitle(byId(2), null)
out.durations = JSON.parse(process.argv[3]).map(fmtDuration)
const merged = Date.now()
step({type: "beats", now: merged, merge: true, beats: JSON.stringify({b: {"1": merged - 1000}})})
out.mergedA = data.beats.ageOf(byId(4))
out.mergedB = data.beats.ageOf(byId(5))
step({type: "beats", now: Date.now(), beats: "{}"})
out.after = data.beats.size
out.views = views.length
console.log(JSON.stringify(out))
"""


def test_tree_js_counts_each_rows_heartbeat_age_on_the_servers_clock(tmp_path: Path) -> None:
    """Ages come out right whatever the two clocks say (the server's ``now`` corrects the
    browser's); the tooltip and the marker read like the server's ``format_duration``; the
    marker is only on running tasks; an empty table clears them."""
    from dashboard.treerows import TreeFeed
    from inspector.tree import DevToolsTree
    from tests.wire import node, task

    node_bin = shutil.which("node")
    assert node_bin is not None
    tree = DevToolsTree()
    tree.apply(snap(node(1, [task(2, "plan", "finished"),
                             node(3, [task(4, "a", "in-progress"), task(5, "b", "in-progress", iteration=1)], type="parallel")],
                         type="workflow")))
    feed = TreeFeed()
    reset = feed.encode(feed.reset(tree))
    module = tmp_path / "tree.mjs"
    served = TreeComponent._render_esm(compiled=True, server=False)
    module.write_text(served + "\nglobalThis.__beatParts = {rowTitle, beatMarker, fmtDuration}\n", encoding="utf-8")
    seconds = [0.4, 9.96, 12, 65, 3725, 90000]
    result = subprocess.run([node_bin, "--input-type=module", "-e", BEATS_DRIVER, module.as_uri(), reset,
                             json.dumps(seconds)], capture_output=True, text=True, check=True, timeout=60)
    out = json.loads(result.stdout)
    assert 2.9 <= out["ageA"] <= 4.0 and 64.9 <= out["ageB"] <= 66.0
    assert out["none"] is None and out["views"] == 3
    assert out["titleA"].startswith("a · heartbeat ") and out["titleA"].endswith(" s ago")
    assert out["markerA"].startswith("♥ ") and out["markerDone"] == ""
    assert out["titlePlain"] == "plan"
    assert out["durations"] == [format_duration(s) for s in seconds]
    # A merge changes only what it names: a's beat is kept, b's is the new one.
    assert out["mergedA"] is not None and out["mergedA"] >= 2.9 and 0.9 <= out["mergedB"] <= 2.0
    assert out["after"] == 0


def test_served_tree_js_still_runs_under_node(tmp_path: Path) -> None:
    node_bin = shutil.which("node")
    assert node_bin is not None
    url = served_tree_js(tmp_path)
    result = subprocess.run([node_bin, "--input-type=module", "-e",
                             "const m = await import(process.argv[1]); console.log(typeof m.render, typeof m.TreeData)", url],
                            capture_output=True, text=True, check=True, timeout=60)
    assert result.stdout.split() == ["function", "function"]

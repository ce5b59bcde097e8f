"""The vocabulary (``inspector/vocabulary.py``) against what Smithers really says.

Three sources: the recorded wire transcripts (every value they hold is named), the
Gateway's own JavaScript (the lists it declares are ours too), and this repository (no
module but the vocabulary spells a protocol word such as ``in-progress``; tree.js has no
icon table of its own).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from dashboard.format import node_icon, run_status_colour, state_colour, task_summary
from inspector.tree import DevToolsTree
from inspector.vocabulary import (
    ACTIVE_RUN_STATUSES,
    DONE_NODE_EVENTS,
    DONE_TASK_STATES,
    NODE_EVENT_STATE,
    NODE_ICONS,
    RUNNING_TASK_STATES,
    TERMINAL_RUN_STATUSES,
    NodeType,
    RunEventName,
    RunStatus,
    TaskState,
    is_terminal_run_status,
    is_waiting,
)
from tests.recordings import recordings

from .wire import snap, task

ROOT = Path(__file__).resolve().parent.parent


# ---------------------------------------------------------------------------- recorded values


def _frames() -> Iterator[Mapping[str, Any]]:
    for path in recordings("*.jsonl"):
        for line in path.read_text(encoding="utf-8").splitlines():
            frame = json.loads(line).get("frame") if line.strip() else None
            if isinstance(frame, Mapping):
                yield frame


def _nodes(node: Any) -> Iterator[Mapping[str, Any]]:
    if isinstance(node, Mapping):
        yield node
        for child in node.get("children") or ():
            yield from _nodes(child)


def _recorded() -> dict[str, set[str]]:
    """Every node type, task state, run status and event name in the recorded transcripts."""
    seen: dict[str, set[str]] = {"types": set(), "states": set(), "event_states": set(), "statuses": set(), "events": set()}

    def task_state(task_: Any) -> None:
        if isinstance(task_, Mapping) and isinstance(task_.get("state"), str):
            seen["states"].add(task_["state"])

    def nodes(root: Any) -> None:
        for n in _nodes(root):
            seen["types"].add(n["type"])
            task_state(n.get("task"))

    for frame in _frames():
        payload = frame.get("payload")
        if frame.get("type") == "event":
            seen["events"].add(frame["event"])
            if frame["event"] == "run.event" and isinstance(payload, Mapping) and isinstance(payload.get("event"), str):
                seen["events"].add(payload["event"])
            if frame["event"] == "run.completed":
                seen["statuses"].add(payload["status"])
            if frame["event"].startswith("node.") and isinstance(payload.get("state"), str):
                seen["event_states"].add(payload["state"])
            if frame["event"] == "devtools.event":
                event = payload["event"]
                if event["kind"] == "snapshot":
                    nodes(event["snapshot"]["root"])
                    run_state = event["snapshot"].get("runState")
                    if isinstance(run_state, Mapping):
                        seen["statuses"].add(run_state["state"])
                else:
                    for op in event["delta"]["ops"]:
                        if op["op"] in ("addNode", "replaceRoot"):
                            nodes(op["node"])
                        elif op["op"] == "updateTask":
                            task_state(op.get("task"))
        elif frame.get("type") == "res" and isinstance(payload, Mapping):
            rows = list(payload.get("runs") or ())
            if "runId" in payload and "status" in payload:
                rows.append(payload)
            hello = payload.get("snapshot")
            if isinstance(hello, Mapping):
                rows.extend(hello.get("runs") or ())
            seen["statuses"].update(r["status"] for r in rows if isinstance(r, Mapping) and isinstance(r.get("status"), str))
    return seen


RECORDED = _recorded()


def test_the_recordings_hold_something_to_check() -> None:
    assert {"task", "sequence", "workflow"} <= RECORDED["types"]
    assert {"pending", "in-progress", "finished"} <= RECORDED["states"]
    assert {"finished", "failed"} <= RECORDED["statuses"]
    assert {"node.started", "run.completed", "devtools.event"} <= RECORDED["events"]


def test_every_recorded_node_type_is_a_node_type() -> None:
    assert RECORDED["types"] <= set(NodeType)


def test_every_recorded_task_state_is_a_task_state() -> None:
    assert RECORDED["states"] <= set(TaskState)
    # A live node.waiting_* event says only "waiting" (see the mapEvent test below).
    assert RECORDED["event_states"] <= set(TaskState) | {"waiting"}
    assert "in-progress" in RECORDED["event_states"]


def test_every_recorded_run_status_is_a_run_status() -> None:
    assert RECORDED["statuses"] <= set(RunStatus)


def test_every_recorded_event_name_is_a_run_event_name() -> None:
    assert RECORDED["events"] <= set(RunEventName)


# ---------------------------------------------------------------------------- the tables


def test_every_node_type_has_an_emoji_and_a_distinct_plain_glyph() -> None:
    assert set(NODE_ICONS) == set(NodeType)
    assert all(icon.emoji and icon.plain for icon in NODE_ICONS.values())
    plain = [icon.plain for icon in NODE_ICONS.values()]
    assert len(set(plain)) == len(plain), "two node types would look alike without emoji"


def test_node_events_and_states_agree() -> None:
    assert all(name.startswith("node.") for name in NODE_EVENT_STATE)
    assert {NODE_EVENT_STATE[name] for name in DONE_NODE_EVENTS} == DONE_TASK_STATES
    assert NODE_EVENT_STATE[RunEventName.NODE_STARTED] in RUNNING_TASK_STATES
    assert not DONE_TASK_STATES & RUNNING_TASK_STATES


def test_a_run_is_never_both_active_and_over() -> None:
    assert not ACTIVE_RUN_STATUSES & TERMINAL_RUN_STATUSES
    for status in ("finished", "failed", "cancelled", "succeeded", "completed", "continued"):
        assert is_terminal_run_status(status), status
    for status in ("running", "paused", "waiting-approval", "waiting-quota", "brand-new", None, 3):
        assert not is_terminal_run_status(status), status


def test_values_smithers_adds_later_are_kept_by_name() -> None:
    """The enums name what we compare against; they never reject what the Gateway sends."""
    tree = DevToolsTree(snap({"id": 1, "type": "orchestra", "name": "w", "props": {}, "depth": 0, "children": [
        {**task(2, "a", "waiting-for-godot"), "depth": 1},
    ]}))
    assert tree[1].type == "orchestra" and tree[2].state == "waiting-for-godot"
    assert tree.state_counts() == {"waiting-for-godot": 1}
    assert is_waiting("waiting-for-godot") and state_colour("waiting-for-godot") == state_colour("waiting-approval")
    assert task_summary({"waiting-for-godot": 2, "mulling": 1}).waiting == 2
    assert task_summary({"mulling": 1}).other == 1
    assert node_icon("orchestra") == NODE_ICONS[NodeType.UNKNOWN].plain
    assert run_status_colour("waiting-for-godot") == run_status_colour("waiting-approval")


# ---------------------------------------------------------------------------- the Gateway's JS


def _js_strings(text: str) -> set[str]:
    return set(re.findall(r'"([^"]+)"', text))


@pytest.fixture(scope="module")
def smithers_src(gateway_install: Path) -> Path:
    src = gateway_install / "node_modules" / "@smithers-orchestrator"
    assert (src / "server" / "src" / "gateway.js").is_file(), f"no Gateway sources under {src}"
    return src


def test_node_types_are_the_gateways(smithers_src: Path) -> None:
    declared = _js_strings((smithers_src / "devtools" / "src" / "SmithersNodeType.ts").read_text(encoding="utf-8"))
    assert declared == set(NodeType)


def test_task_states_include_the_schedulers(smithers_src: Path) -> None:
    declared = _js_strings((smithers_src / "scheduler" / "src" / "TaskState.ts").read_text(encoding="utf-8"))
    assert declared <= set(TaskState)


def test_run_statuses_include_the_drivers_and_devtools(smithers_src: Path) -> None:
    driver = _js_strings((smithers_src / "driver" / "src" / "RunStatus.ts").read_text(encoding="utf-8"))
    snapshot = (smithers_src / "protocol" / "src" / "devtools" / "DevToolsSnapshot.ts").read_text(encoding="utf-8")
    run_state = snapshot[snapshot.index("state:"):snapshot.index(";", snapshot.index("state:"))]
    assert driver <= set(RunStatus)
    assert _js_strings(run_state) <= set(RunStatus)


def test_terminal_and_active_statuses_agree_with_the_gateway(smithers_src: Path) -> None:
    gateway = (smithers_src / "server" / "src" / "gateway.js").read_text(encoding="utf-8")
    terminal = re.search(r"const TERMINAL_RUN_STATUSES = new Set\(\[([^\]]*)\]\)", gateway)
    assert terminal is not None
    assert _js_strings(terminal.group(1)) <= TERMINAL_RUN_STATUSES
    snapshot = gateway[gateway.index("async buildSnapshot()"):]
    active = re.search(r"runs\.filter\(\(run\) =>\s*\[([^\]]*)\]\.includes\(run\.status\)", snapshot)
    assert active is not None
    assert _js_strings(active.group(1)) == ACTIVE_RUN_STATUSES


def test_event_names_and_node_states_agree_with_map_event(smithers_src: Path) -> None:
    """Every name ``mapEvent`` emits is a :class:`RunEventName`; the state each ``node.*``
    event carries is :data:`NODE_EVENT_STATE`'s (the waiting ones carry only ``waiting``
    live, and the node's row gets the specific ``waiting-*`` state)."""
    gateway = (smithers_src / "server" / "src" / "gateway.js").read_text(encoding="utf-8")
    body = gateway[gateway.index("  mapEvent(event) {"):gateway.index("  async routeRequest(")]
    emitted = re.findall(r'event: "([a-z_.]+)",\s*payload: \{([^}]*)', body)
    assert len(emitted) > 20
    for name, payload in emitted:
        assert name in set(RunEventName), name
        state = re.search(r'state: "([^"]+)"', payload)
        if name.startswith("node."):
            assert state is not None, name
            expected = NODE_EVENT_STATE[RunEventName(name)]
            assert state.group(1) == ("waiting" if is_waiting(expected) else expected), name
    sent = set(re.findall(r'(?:sendEvent|broadcastEvent)\([^,"]*,?\s*"([a-z_.]+)"', gateway))
    assert {"run.heartbeat", "run.error", "run.gap_resync", "tick", "devtools.event", "devtools.error"} <= sent
    assert {s for s in sent if not s.startswith(("browser.", "ext."))} <= set(RunEventName)


# ---------------------------------------------------------------------------- this repository


#: Modules other engineers were rewriting while the vocabulary was written; the integrator
#: switches them to it and removes them from this list.
PENDING_SWITCH: set[str] = set()


def _sources() -> Iterator[tuple[str, str]]:
    for package in ("inspector", "dashboard", "apps"):
        for path in sorted((ROOT / package).rglob("*")):
            # A bundle is generated, its vocabulary included (tests/test_tree_bundle.py).
            if path.suffix in (".py", ".js") and path.is_file() and not path.name.endswith(".bundle.js"):
                yield path.relative_to(ROOT).as_posix(), path.read_text(encoding="utf-8")


def test_only_the_vocabulary_spells_in_progress() -> None:
    spelled = {name for name, text in _sources() if '"in-progress"' in text or "'in-progress'" in text}
    assert spelled - PENDING_SWITCH == {"inspector/vocabulary.py"}


def test_tree_js_has_no_icon_table_of_its_own() -> None:
    from dashboard.views.tree import tree_module_js

    source = tree_module_js()  # every part of the tree's browser module
    glyphs = {g for icon in NODE_ICONS.values() for g in icon if g not in "●↻?"}
    assert not {g for g in glyphs if g in source}
    assert '"merge-queue"' not in source and '"wait-for-event"' not in source
    assert "VOCABULARY.icons" in source and "VOCABULARY.running" in source

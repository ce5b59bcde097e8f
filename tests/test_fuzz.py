"""Fuzzing the wire decoding and the tree model: arbitrary JSON in, typed error or correct state out.

The contract (``inspector.protocol``, ``inspector.tree``, ``inspector.client``): whatever a
Gateway sends,

- :func:`~inspector.protocol.decode_frame` returns a frame or raises a
  :class:`~inspector.errors.ProtocolError`; :func:`~inspector.protocol.decode_devtools_payload`
  returns a payload or raises a ``ProtocolError`` / :class:`~inspector.errors.DevToolsError`;
- :meth:`DevToolsTree.apply <inspector.tree.DevToolsTree.apply>` either gives exactly the
  tree a plain reference implementation of the Gateway's ``applyDelta`` gives, or raises a
  ``DevToolsError`` and leaves the tree as it was (never half-applied, indexes and counts
  intact);
- the socket reader hands every undecodable frame to the consumer as a typed error and
  stays alive.

Hypothesis drives the first three with realistic JSON (numbers within what a JavaScript
Gateway can produce, modest nesting), with event-shaped values, with valid events mutated at
a random spot, and with sequences of all of these against the reference. The pathological
inputs that break the contract today (nesting deeper than the interpreter's recursion limit,
integers too large for a float, trees deeper than the stack) are pinned by the targeted tests
at the end, each naming what it breaks.
"""

from __future__ import annotations

import asyncio
import copy
import json
import math
from collections import Counter
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from inspector.client import GatewayConnection
from inspector.errors import DevToolsError, FrameDecodeError, ProtocolError
from inspector.protocol import (
    DevToolsEventPayload,
    EventFrame,
    RequestFrame,
    ResponseFrame,
    UnknownFrame,
    decode_devtools_payload,
    decode_frame,
)
from inspector.status import Backoff
from inspector.tree import NO_STATE, DevToolsTree

from .test_tree import trees

# ---------------------------------------------------------------- strategies

SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(2**64), 2**64)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=6)
)
JSON = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=16,
)
IDS = st.integers(-1, 45) | JSON
NAMES = st.sampled_from(["updateTask", "updateProps", "addNode", "removeNode", "replaceRoot", "teleport", ""]) | JSON


@st.composite
def frames(draw: st.DrawFn) -> Any:
    """Frame-shaped objects: the right keys with right or wrong values, or anything at all."""
    if draw(st.integers(0, 9)) == 0:
        return draw(JSON)
    out: dict[str, Any] = {"type": draw(st.sampled_from(["event", "res", "req", "hologram", ""]) | JSON)}
    for key in draw(st.sets(st.sampled_from(["id", "ok", "event", "payload", "seq", "stateVersion",
                                              "method", "params", "error"]))):
        if key == "ok":
            out[key] = draw(st.booleans() | JSON)
        elif key in ("id", "event", "method"):
            out[key] = draw(st.text(max_size=8) | JSON)
        elif key in ("seq", "stateVersion"):
            out[key] = draw(st.integers(-5, 2**53) | JSON)
        elif key == "error":
            out[key] = draw(st.fixed_dictionaries({"code": st.text(max_size=8) | JSON, "message": JSON}) | JSON)
        else:
            out[key] = draw(JSON)
    return out


@st.composite
def op_values(draw: st.DrawFn, ids: list[int]) -> Any:
    """An op: usually plausible (existing ids, fresh subtrees), sometimes subtly or wildly wrong."""
    known = st.sampled_from(ids) if ids else st.integers(0, 45)
    roll = draw(st.integers(0, 29))  # rolls 0-7 corrupt one aspect; the rest are plausible
    if roll == 0:
        return draw(JSON)
    name = draw(st.sampled_from(["updateTask", "updateProps", "addNode", "removeNode", "replaceRoot"]))
    op: dict[str, Any] = {"op": name}
    if roll == 1:
        op["op"] = draw(NAMES)
    if name in ("updateTask", "updateProps", "removeNode"):
        op["id"] = draw(known | IDS) if roll == 2 else draw(known)
    if name == "updateTask" and draw(st.booleans()):
        op["task"] = draw(st.fixed_dictionaries({"state": st.sampled_from(["finished", "warping", "pending"])},
                                                optional={"nodeId": st.sampled_from(["a", "b"])}) | JSON)
    if name == "updateProps":
        props = st.dictionaries(st.text(max_size=3), SCALARS, max_size=2)
        op["props"] = draw(props | JSON) if roll == 6 else draw(props)
    if name == "addNode":
        op["parentId"] = draw(known | IDS) if roll == 3 else draw(known)
        op["index"] = draw(st.integers(-2, 6) | st.floats(-3, 9) | JSON) if roll == 4 else draw(st.integers(-1, 5))
        op["node"] = draw(trees(st.integers(1, 80)) | JSON) if roll == 5 else draw(trees(st.integers(46, 80)))
    if name == "replaceRoot":
        op["node"] = draw(trees(st.integers(1, 80)) | JSON) if roll == 7 else draw(trees(st.integers(1, 80)))
    return op


@st.composite
def events(draw: st.DrawFn, tree: DevToolsTree) -> Any:
    """The next thing a hostile stream sends a tree: a delta, a snapshot, a mutant or junk."""
    ids = [n.id for n in tree]
    seq = tree.seq or 0  # may be anything a mutant left behind, negative included
    around = st.integers(min(seq, 0) - 1, max(seq, 0) + 2)
    roll = draw(st.integers(0, 14))
    if roll == 0:
        return draw(JSON)
    if roll == 1:
        body = {"version": 1, "runId": "r", "frameNo": seq + 1, "seq": draw(around), "root": draw(trees())}
        event: Any = {"version": 1, "kind": "snapshot", "snapshot": body}
    else:
        base = seq if draw(st.integers(0, 5)) else draw(around)
        ops = draw(st.lists(op_values(ids), max_size=3))
        event = {"version": 1, "kind": "delta", "delta": {"version": 1, "baseSeq": base, "seq": base + 1, "ops": ops}}
    if draw(st.integers(0, 5)) == 0:
        event = draw(mutants(event))
    return event


@st.composite
def mutants(draw: st.DrawFn, value: Any) -> Any:
    """``value`` with one spot (any depth) replaced by arbitrary JSON, or deleted."""
    value = copy.deepcopy(value)
    spots: list[tuple[Any, Any]] = []
    stack = [value]
    while stack:
        here = stack.pop()
        keys = list(here) if isinstance(here, dict) else range(len(here)) if isinstance(here, list) else []
        for key in keys:
            spots.append((here, key))
            stack.append(here[key])
    if not spots:
        return draw(JSON)
    container, key = spots[draw(st.integers(0, len(spots) - 1))]
    if isinstance(container, dict) and draw(st.booleans()):
        del container[key]
    else:
        container[key] = draw(JSON)
    return value


# ---------------------------------------------------------------- reference applyDelta


class Rejected(Exception):
    """The reference refuses the event (the model must then raise a DevToolsError)."""


def _int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def ref_build(raw: Any, seen: set[int]) -> dict[str, Any]:
    """Validate and copy a wire subtree the way ``_build`` must (ids unique against ``seen``)."""
    if not isinstance(raw, dict) or not _int(raw.get("id")) or raw["id"] in seen:
        raise Rejected
    seen.add(raw["id"])
    children = raw.get("children", [])
    if not isinstance(children, list):
        raise Rejected
    for key, kind in (("type", str), ("name", str), ("props", dict), ("task", dict)):
        if raw.get(key) is not None and not isinstance(raw.get(key), kind):
            raise Rejected
    out = {k: copy.deepcopy(v) for k, v in raw.items() if k != "children"}
    out["children"] = [ref_build(child, seen) for child in children]
    return out


def _nodes(root: dict[str, Any]) -> dict[int, tuple[dict[str, Any], dict[str, Any] | None]]:
    out: dict[int, tuple[dict[str, Any], dict[str, Any] | None]] = {}
    stack: list[tuple[dict[str, Any], dict[str, Any] | None]] = [(root, None)]
    while stack:
        node, parent = stack.pop()
        out[node["id"]] = (node, parent)
        stack.extend((child, node) for child in node["children"])
    return out


def _check_op(op: Any) -> None:
    if not isinstance(op, dict):
        raise Rejected
    name = op.get("op")
    needs: dict[str, tuple[str, ...]] = {
        "updateTask": ("id",), "updateProps": ("id", "props"), "addNode": ("node", "index", "parentId"),
        "removeNode": ("id",), "replaceRoot": ("node",),
    }
    if not isinstance(name, str) or name not in needs:
        raise Rejected
    for key in needs[name]:
        value = op.get(key)
        if key in ("id", "parentId") and not _int(value):
            raise Rejected
        if key in ("props", "node") and not isinstance(value, dict):
            raise Rejected
        if key == "index" and (isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value)):
            raise Rejected
    if name == "updateTask" and "task" in op and not isinstance(op["task"], dict):
        raise Rejected


def ref_apply(state: dict[str, Any], event: Any) -> dict[str, Any]:
    """The Gateway's ``applyDelta`` semantics on plain dicts (plus our stricter seq and id rules)."""
    if not isinstance(event, dict):
        raise Rejected
    kind = event.get("kind")
    if kind == "snapshot":
        body = event.get("snapshot")
        if not isinstance(body, dict) or body.get("version", 1) != 1:
            raise Rejected
        if not _int(body.get("frameNo")) or not _int(body.get("seq")) or not isinstance(body.get("root"), dict):
            raise Rejected
        return {"root": ref_build(body["root"], set()), "seq": body["seq"], "frameNo": body["frameNo"]}
    if kind != "delta":
        raise Rejected
    body = event.get("delta")
    if not isinstance(body, dict) or body.get("version") != 1:
        raise Rejected
    if not _int(body.get("baseSeq")) or not _int(body.get("seq")) or not isinstance(body.get("ops"), list):
        raise Rejected
    for op in body["ops"]:
        _check_op(op)
    if state["root"] is None or body["baseSeq"] != state["seq"]:
        raise Rejected
    root = copy.deepcopy(state["root"])
    for op in body["ops"]:
        index = _nodes(root)
        name = op["op"]
        if name == "replaceRoot":
            root = ref_build(op["node"], set())
        elif name == "addNode":
            if op["parentId"] not in index:
                raise Rejected
            parent = index[op["parentId"]][0]
            node = ref_build(op["node"], set(index))
            parent["children"].insert(int(max(0, min(op["index"], len(parent["children"])))), node)
        elif name == "removeNode":
            if op["id"] == root["id"] or op["id"] not in index:
                raise Rejected
            node, up = index[op["id"]]
            assert up is not None
            up["children"] = [c for c in up["children"] if c is not node]
        else:
            if op["id"] not in index:
                raise Rejected
            node = index[op["id"]][0]
            if name == "updateProps":
                node["props"] = copy.deepcopy(op["props"])
            elif "task" in op:
                node["task"] = copy.deepcopy(op["task"])
            else:
                node.pop("task", None)
    return {"root": root, "seq": body["seq"], "frameNo": body["seq"]}


def assert_consistent(tree: DevToolsTree) -> None:
    """Index, parent links and state counts agree with the nodes actually in the tree."""
    walked = list(tree.walk())
    assert len(walked) == len(tree) == len({n.id for n in walked})
    for node in walked:
        assert tree.get(node.id) is node
        for child in node.children:
            assert child.parent is node
    counts = Counter((n.task.get("state") if isinstance(n.task.get("state"), str) else NO_STATE)
                     for n in walked if n.task is not None)
    assert tree.state_counts() == {k: v for k, v in counts.items() if v}


def state_of(tree: DevToolsTree) -> dict[str, Any]:
    snap = tree.snapshot()
    return {"root": snap["root"], "seq": snap["seq"], "frameNo": snap["frameNo"]}


FUZZ = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


# ---------------------------------------------------------------- decoding


@FUZZ
@given(frames())
def test_decode_frame_gives_a_frame_or_a_protocol_error(value: Any) -> None:
    for data in (value, json.dumps(value)):
        try:
            frame = decode_frame(data)
        except ProtocolError:
            continue
        assert isinstance(frame, EventFrame | ResponseFrame | RequestFrame | UnknownFrame)
        assert isinstance(value, dict)
        if isinstance(frame, EventFrame):
            assert frame.event == value["event"] and isinstance(frame.event, str)
        if isinstance(frame, UnknownFrame):
            assert frame.type == value["type"] and frame.type not in ("event", "res", "req")


@FUZZ
@given(st.text(max_size=40) | st.binary(max_size=40))
def test_decode_frame_of_any_text_or_bytes(data: str | bytes) -> None:
    try:
        decode_frame(data)
    except ProtocolError as exc:
        assert isinstance(exc, FrameDecodeError) and exc.path.startswith("$")


@FUZZ
@given(st.data())
def test_decode_devtools_payload_gives_a_payload_or_a_typed_error(data: st.DataObject) -> None:
    tree = DevToolsTree({"version": 1, "kind": "snapshot", "snapshot": {
        "version": 1, "runId": "r", "frameNo": 0, "seq": 0, "root": data.draw(trees())}})
    payload = data.draw(JSON | st.fixed_dictionaries({"streamId": JSON, "runId": JSON, "event": events(tree)}))
    try:
        decoded = decode_devtools_payload(payload)
    except (ProtocolError, DevToolsError):
        return
    assert isinstance(decoded, DevToolsEventPayload)
    assert decoded.stream_id is None or isinstance(decoded.stream_id, str)


# ---------------------------------------------------------------- the tree model


@FUZZ
@given(st.data())
def test_any_sequence_of_events_matches_the_reference_or_changes_nothing(data: st.DataObject) -> None:
    tree = DevToolsTree({"version": 1, "kind": "snapshot", "snapshot": {
        "version": 1, "runId": "r", "frameNo": 0, "seq": 0, "root": data.draw(trees())}})
    reference = state_of(tree)
    for _ in range(data.draw(st.integers(1, 6))):
        event = data.draw(events(tree))
        before = tree.snapshot()
        try:
            expected: dict[str, Any] | None = ref_apply(reference, event)
        except Rejected:
            expected = None
        try:
            change = tree.apply(event)
        except DevToolsError:
            assert expected is None, f"the model refused what the reference accepts: {event!r}"
            assert tree.snapshot() == before
        else:
            assert expected is not None, f"the model accepted what the reference refuses: {event!r}"
            assert state_of(tree) == expected
            assert change.seq == expected["seq"]
            reference = expected
        assert_consistent(tree)


@FUZZ
@given(st.data())
def test_events_from_an_empty_tree(data: st.DataObject) -> None:
    """Before any snapshot, only a valid snapshot can take; a delta is always a gap."""
    tree = DevToolsTree()
    event = data.draw(events(tree))
    try:
        tree.apply(event)
    except DevToolsError:
        assert tree.empty and tree.seq is None
    else:
        assert isinstance(event, dict) and event.get("kind") == "snapshot"
        assert_consistent(tree)


# ---------------------------------------------------------------- the socket reader


class _Script:
    """A websocket that plays a list of messages, then a closing tick, then waits forever."""

    def __init__(self, messages: list[str | bytes]) -> None:
        self.messages = [*messages, '{"type":"event","event":"tick","payload":{"last":true}}']

    async def send(self, message: str) -> None:
        return None

    async def recv(self) -> str | bytes:
        if self.messages:
            return self.messages.pop(0)
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    async def close(self, code: int = 1000, reason: str = "") -> None:
        return None


def _kind(message: str | bytes) -> str:
    try:
        frame = decode_frame(message)
    except ProtocolError:
        return "error"
    return "event" if isinstance(frame, EventFrame) else "dropped"


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(frames().map(json.dumps) | st.text(max_size=12) | st.binary(max_size=12), max_size=8))
def test_the_reader_survives_any_frames_and_reports_each_bad_one(messages: list[str | bytes]) -> None:
    async def run() -> list[str]:
        conn = GatewayConnection(_Script(messages))
        conn._reader = asyncio.create_task(conn._read_loop())
        got: list[str] = []
        try:
            while True:
                item = await conn.next_event(timeout=5)
                if isinstance(item, EventFrame) and item.payload == {"last": True}:
                    return got
                got.append("error" if isinstance(item, FrameDecodeError) else "event")
        finally:
            await conn.close()

    expected = [k for k in map(_kind, messages) if k != "dropped"]
    assert asyncio.run(run()) == expected


# ---------------------------------------------------------------- backoff


@settings(max_examples=100, deadline=None)
@given(st.floats(0.01, 1.0), st.floats(0.5, 30.0), st.integers(1, 80), st.integers(0, 2**32))
def test_backoff_is_bounded_grows_and_resets(base: float, cap: float, n: int, seed: int) -> None:
    import random

    backoff = Backoff(base=base, cap=cap, rng=random.Random(seed))
    for i in range(n):
        ceiling = backoff.ceiling()
        assert ceiling == min(cap, base * 2**i)
        assert 0 <= backoff.delay() <= ceiling
    assert backoff.attempt == n
    backoff.reset()
    assert backoff.attempt == 0 and backoff.ceiling() == min(cap, base)


# ---------------------------------------------------------------- what breaks the contract today


def _nested(depth: int) -> Any:
    value: Any = []
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize("text", ["[" * 100_000, '{"type":"event","event":"x","payload":' + '{"a":' * 50_000])
def test_json_nested_beyond_the_recursion_limit_is_a_frame_decode_error(text: str) -> None:
    """``json.loads`` raises ``RecursionError`` (not ``ValueError``); ``decode_json`` must map it."""
    with pytest.raises(FrameDecodeError):
        decode_frame(text)


def test_describing_a_deeply_nested_wrong_value_is_a_frame_decode_error() -> None:
    """The error message quotes the bad value with ``json.dumps``, which recurses too."""
    with pytest.raises(FrameDecodeError):
        decode_frame({"type": "event", "event": "x", "seq": _nested(5_000)})


@pytest.mark.parametrize("where", ["node field", "runState", "snapshot field", "task"])
def test_deep_nesting_anywhere_in_an_event_is_kept_or_refused_whole(where: str) -> None:
    """Valid JSON (600 levels parse fine) must not escape as ``RecursionError`` from a copy,
    nor leave the tree half-replaced (today a deep ``runState`` fails *after* the new root
    and seq are in: new tree, old ``runState``)."""
    tree = DevToolsTree({"version": 1, "kind": "snapshot", "snapshot": {
        "version": 1, "runId": "r", "frameNo": 0, "seq": 0, "root": {"id": 1, "children": [{"id": 2}]}}})
    before = tree.snapshot()
    body: dict[str, Any] = {"version": 1, "runId": "r", "frameNo": 1, "seq": 1, "root": {"id": 7, "name": "new"}}
    event: dict[str, Any] = {"version": 1, "kind": "snapshot", "snapshot": body}
    if where == "node field":
        body["root"]["deep"] = _nested(600)
    elif where == "runState":
        body["runState"] = {"state": "running", "deep": _nested(600)}
    elif where == "snapshot field":
        body["deep"] = _nested(600)
    else:
        event = {"version": 1, "kind": "delta", "delta": {"version": 1, "baseSeq": 0, "seq": 1, "ops": [
            {"op": "updateProps", "id": 2, "props": {"ok": True}},
            {"op": "updateTask", "id": 2, "task": {"state": "finished", "deep": _nested(600)}}]}}
    event = json.loads(json.dumps(event))
    try:
        tree.apply(event)
    except DevToolsError:
        assert tree.snapshot() == before and tree.snapshot_extra == {}
    else:
        assert tree.seq == 1
        assert_consistent(tree)


def test_an_add_node_index_too_large_for_a_float_is_clamped_or_refused() -> None:
    """JSON integers have no size limit; ``math.isfinite(10**400)`` raises ``OverflowError``."""
    tree = DevToolsTree({"version": 1, "kind": "snapshot", "snapshot": {
        "version": 1, "runId": "r", "frameNo": 0, "seq": 0, "root": {"id": 1, "children": [{"id": 2}]}}})
    before = tree.snapshot()
    event = json.loads('{"version":1,"kind":"delta","delta":{"version":1,"baseSeq":0,"seq":1,"ops":'
                       '[{"op":"addNode","parentId":1,"index":1' + "0" * 400 + ',"node":{"id":3}}]}}')
    try:
        tree.apply(event)
    except DevToolsError:
        assert tree.snapshot() == before
    else:  # Array.prototype.splice clamps Infinity to the length: appended last
        assert [c.id for c in tree[1].children] == [2, 3]


def test_a_tree_deeper_than_the_stack_can_be_snapshotted() -> None:
    """Deltas can chain nodes deeper than any one frame could; ``snapshot()`` must not recurse."""
    tree = DevToolsTree({"version": 1, "kind": "snapshot", "snapshot": {
        "version": 1, "runId": "r", "frameNo": 0, "seq": 0, "root": {"id": 0, "children": []}}})
    for i in range(1, 1_500):
        tree.apply({"version": 1, "kind": "delta", "delta": {"version": 1, "baseSeq": i - 1, "seq": i, "ops": [
            {"op": "addNode", "parentId": i - 1, "index": 0, "node": {"id": i}}]}})
    snapshot = tree.snapshot()
    again = DevToolsTree({"version": 1, "kind": "snapshot", "snapshot": snapshot})
    assert len(again) == 1_500 and len(again.path(1_499)) == 1_500

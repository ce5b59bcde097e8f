"""The DevTools tree model: a run's node tree, kept current by snapshots and deltas.

:class:`DevToolsTree` applies the events of ``streamDevTools`` with exactly the
semantics of the Gateway's own ``applyDelta`` (``@smithers-orchestrator/devtools``):
``updateProps``/``updateTask`` replace the whole object (an ``updateTask`` without a
task removes it), ``addNode`` clamps its index, the root cannot be removed and
``replaceRoot`` swaps the tree. Where the reference clones the whole tree for every
delta, this model keeps an index by id and changes only what the delta names, so a
delta costs O(ops + size of the added or removed subtrees), never O(tree).

Two deliberate differences from the reference, both about failing loudly:

- a delta whose ``baseSeq`` is not the tree's ``seq`` raises :class:`~inspector.errors.SeqGap`
  (the reference raises a generic ``InvalidDeltaError``), so a caller can tell a missed
  frame from a malformed one;
- a node id that would appear twice raises :class:`~inspector.errors.InvalidDelta` /
  :class:`~inspector.errors.InvalidSnapshot`: ids address nodes, and a tree with two
  nodes of one id cannot be patched unambiguously.

Every failing event leaves the tree exactly as it was (the ops already applied are
undone in reverse order).

Any snapshot replaces the tree, whatever its ``seq``: after a rewind the Gateway sends a
snapshot with a *lower* seq than the client's, and that is the truth.
"""

from __future__ import annotations

import weakref
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

from .errors import InvalidDelta, InvalidSnapshot, SeqGap
from .protocol import (
    AddNode,
    DevToolsDelta,
    DevToolsSnapshot,
    RemoveNode,
    ReplaceRoot,
    UpdateProps,
    UpdateTask,
    decode_devtools_event,
    shared_value,
)
from .vocabulary import NodeType, TaskState

__all__ = ["NO_STATE", "DevToolsTree", "TreeChange", "TreeNode", "copy_json"]

#: The key under which :meth:`DevToolsTree.state_counts` counts tasks that carry no state.
NO_STATE: Final = TaskState.UNKNOWN.value
#: The type of a node whose ``type`` is missing or not a string.
_UNKNOWN_TYPE: Final = NodeType.UNKNOWN.value


def copy_json(value: Any) -> Any:
    """A deep copy of a JSON value (dicts, lists, scalars): what ``structuredClone`` gives.

    Several times faster than :func:`copy.deepcopy` for the plain data frames carry.
    Raises :class:`RecursionError` for a value nested deeper than the interpreter's stack;
    callers turn that into a typed error (a frame that deep is refused whole).
    """
    if isinstance(value, dict):
        return {k: copy_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [copy_json(v) for v in value]
    if isinstance(value, Mapping):
        return {k: copy_json(v) for k, v in value.items()}
    return value


def _kept_json(value: Any) -> Any:
    """:func:`copy_json` for what the tree keeps: keys and short strings shared (:func:`shared_value`).

    Every delta is decoded from its own JSON text, so a node's ``task`` keeps its own copies
    of ``"nodeId"``, ``"state"``, a state such as ``in-progress``, ... from the last delta that set it;
    shared, a 1,504-node run's tree and events hold ~1 MB less (docs/performance.md, section 6).
    """
    if isinstance(value, str):
        return shared_value(value)
    if isinstance(value, dict):
        return {shared_value(k): _kept_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_kept_json(v) for v in value]
    if isinstance(value, Mapping):
        return _kept_json(dict(value))
    return value


def _copy_or_refuse(value: Any, error: type[InvalidDelta] | type[InvalidSnapshot], where: str) -> Any:
    try:
        return _kept_json(value)
    except RecursionError:
        raise error(f"{where}: a value is nested too deeply") from None


class TreeNode:
    """One node of the tree. Read it; never change it (the tree owns it).

    ``fields`` holds everything the Gateway sent for the node except its children,
    unknown fields included, so :meth:`to_wire` gives back exactly what was sent.

    A node holds its children, and its parent only weakly: a tree then has no reference
    cycles, so one that is dropped (a run's feed stopped, a snapshot or ``replaceRoot``
    replacing it, a removed subtree) is freed at once by reference counting. With parent
    links a 7,500-node tree was cyclic garbage that waited for the collector's rare full
    collection, and a wall rotating through runs grew the process by tens of MB meanwhile
    (docs/performance.md, section 6).
    """

    __slots__ = ("__weakref__", "_parent", "children", "fields", "id")

    def __init__(self, node_id: int, fields: dict[str, Any], parent: TreeNode | None) -> None:
        self.id = node_id
        self.fields = fields
        self._parent = None if parent is None else weakref.ref(parent)
        self.children: list[TreeNode] = []

    @property
    def parent(self) -> TreeNode | None:
        """The node above this one (``None`` for the root, and once a removed subtree's parent is gone)."""
        ref = self._parent
        return None if ref is None else ref()

    # The fields every view wants, typed.
    @property
    def type(self) -> str:
        value = self.fields.get("type")
        return value if isinstance(value, str) else _UNKNOWN_TYPE

    @property
    def name(self) -> str:
        value = self.fields.get("name")
        return value if isinstance(value, str) else ""

    @property
    def props(self) -> Mapping[str, Any]:
        value = self.fields.get("props")
        return value if isinstance(value, dict) else {}

    @property
    def task(self) -> Mapping[str, Any] | None:
        value = self.fields.get("task")
        return value if isinstance(value, dict) else None

    @property
    def depth(self) -> int:
        value = self.fields.get("depth")
        return value if isinstance(value, int) else 0

    @property
    def state(self) -> str | None:
        """The task's state as the Gateway named it; ``None`` for a node that is not a task."""
        task = self.task
        if task is None:
            return None
        state = task.get("state")
        return state if isinstance(state, str) else NO_STATE

    @property
    def node_id(self) -> str | None:
        """The task's Smithers ``nodeId`` (what ``getNodeOutput`` takes), if it is a task."""
        task = self.task
        value = task.get("nodeId") if task else None
        return value if isinstance(value, str) else None

    @property
    def iteration(self) -> int | None:
        task = self.task
        value = task.get("iteration") if task else None
        return value if isinstance(value, int) else None

    @property
    def label(self) -> str:
        """What to call the node in a list: the task label or id, else the node's name."""
        task = self.task
        if task:
            for key in ("label", "nodeId"):
                value = task.get(key)
                if isinstance(value, str) and value:
                    return value
        props = self.props
        for key in ("label", "id", "name"):
            value = props.get(key)
            if isinstance(value, str) and value:
                return value
        return self.name or self.type

    def to_wire(self) -> dict[str, Any]:
        """The subtree as the Gateway's JSON (a fresh copy). Iterative: depth is no limit."""
        out: dict[str, Any] = copy_json(self.fields)
        out["children"] = []
        stack: list[tuple[TreeNode, list[Any]]] = [(c, out["children"]) for c in reversed(self.children)]
        while stack:
            node, siblings = stack.pop()
            wire: dict[str, Any] = copy_json(node.fields)
            wire["children"] = []
            siblings.append(wire)
            stack.extend((c, wire["children"]) for c in reversed(node.children))
        return out

    def __repr__(self) -> str:
        return f"TreeNode(id={self.id}, type={self.type!r}, label={self.label!r}, state={self.state!r})"


@dataclass(frozen=True, slots=True)
class TreeChange:
    """What one applied event changed, so views can patch instead of redraw.

    ``rebuilt`` is true for a snapshot or a ``replaceRoot``: treat the whole tree as new.
    Otherwise ``added`` names the roots of inserted subtrees, ``removed`` every id that
    left the tree (descendants included) and ``updated`` the nodes whose props or task
    were replaced. ``parents`` are the nodes whose child lists changed.
    """

    kind: Literal["snapshot", "delta"]
    seq: int
    frame_no: int
    previous_seq: int | None
    rebuilt: bool
    added: tuple[int, ...] = ()
    removed: tuple[int, ...] = ()
    updated: tuple[int, ...] = ()
    parents: tuple[int, ...] = ()

    @property
    def rewound(self) -> bool:
        """A snapshot that took the tree back to an earlier seq (what a rewind looks like)."""
        return self.kind == "snapshot" and self.previous_seq is not None and self.seq < self.previous_seq


_Undo = Callable[[], None]


class DevToolsTree:
    """A run's DevTools node tree, indexed for O(change) updates.

    >>> tree = DevToolsTree()
    >>> _ = tree.apply({"version": 1, "kind": "snapshot", "snapshot": {
    ...     "version": 1, "runId": "r", "frameNo": 0, "seq": 0,
    ...     "root": {"id": 1, "type": "workflow", "name": "w", "props": {}, "children": [], "depth": 0}}})
    >>> tree.seq, len(tree)
    (0, 1)
    """

    def __init__(self, event: Mapping[str, Any] | DevToolsSnapshot | None = None) -> None:
        self._reset()
        if event is not None:
            self.apply(event)

    def _reset(self) -> None:
        """Every attribute of an empty tree (shared by ``__init__`` and :meth:`reset`)."""
        self.run_id: str | None = None
        self.seq: int | None = None
        self.frame_no: int | None = None
        self.run_state: Mapping[str, Any] | None = None
        self.snapshot_extra: Mapping[str, Any] = {}
        self.root: TreeNode | None = None
        self._index: dict[int, TreeNode] = {}
        self._tasks: dict[str, dict[int, None]] = {}
        self._states: Counter[str] = Counter()
        self._retries = 0

    # ------------------------------------------------------------------ reading

    def __len__(self) -> int:
        return len(self._index)

    def __contains__(self, node_id: object) -> bool:
        return node_id in self._index

    def __iter__(self) -> Iterator[TreeNode]:
        return self.walk()

    @property
    def empty(self) -> bool:
        """No snapshot applied yet."""
        return self.root is None

    def get(self, node_id: int) -> TreeNode | None:
        """The node with this DevTools id, or ``None``."""
        return self._index.get(node_id)

    def __getitem__(self, node_id: int) -> TreeNode:
        return self._index[node_id]

    def parent(self, node_id: int) -> TreeNode | None:
        node = self._index.get(node_id)
        return node.parent if node else None

    def path(self, node_id: int) -> list[TreeNode]:
        """The nodes from the root down to ``node_id`` (empty if unknown)."""
        node = self._index.get(node_id)
        out: list[TreeNode] = []
        while node is not None:
            out.append(node)
            node = node.parent
        out.reverse()
        return out

    def index_of(self, node_id: int) -> int:
        """Position of a node among its siblings (0 for the root)."""
        node = self._index[node_id]
        if node.parent is None:
            return 0
        return _position(node.parent.children, node)

    def find_tasks(self, node_id: str, iteration: int | None = None) -> list[TreeNode]:
        """Task nodes whose Smithers ``nodeId`` is ``node_id`` (and ``iteration``, if given)."""
        ids = self._tasks.get(node_id, {})
        nodes = [self._index[i] for i in ids]
        if iteration is not None:
            nodes = [n for n in nodes if n.iteration == iteration]
        return nodes

    def find_task(self, node_id: str, iteration: int | None = None) -> TreeNode | None:
        nodes = self.find_tasks(node_id, iteration)
        return nodes[0] if nodes else None

    def state_counts(self) -> dict[str, int]:
        """How many task nodes are in each state (tasks without a state count as ``unknown``)."""
        return {state: n for state, n in self._states.items() if n}

    @property
    def task_count(self) -> int:
        return sum(self._states.values())

    @property
    def retries(self) -> int:
        """Retries of the run's tasks from their attempt numbers: a task on attempt ``n`` was
        retried ``n - 1`` times (0.32 numbers a task that ran once 0 or 1). Kept with the state
        counters, so a header redrawn on every tick of a 7,500-node run does not walk the tree."""
        return self._retries

    def walk(self, start: TreeNode | None = None) -> Iterator[TreeNode]:
        """Every node in document order (pre-order, children left to right)."""
        first = start or self.root
        if first is None:
            return
        stack = [first]
        while stack:
            node = stack.pop()
            yield node
            stack.extend(reversed(node.children))

    def snapshot(self) -> dict[str, Any]:
        """The tree as the Gateway's snapshot JSON (``version, runId, frameNo, seq, root``)."""
        out: dict[str, Any] = {
            "version": 1,
            "runId": self.run_id,
            "frameNo": self.frame_no,
            "seq": self.seq,
            "root": self.root.to_wire() if self.root else None,
        }
        if self.run_state is not None:
            out["runState"] = copy_json(self.run_state)
        return out

    # ------------------------------------------------------------------ writing

    def apply(self, event: Mapping[str, Any] | DevToolsSnapshot | DevToolsDelta) -> TreeChange:
        """Apply one DevTools event (the ``event`` of a ``devtools.event`` payload).

        Raises :class:`~inspector.errors.SeqGap`, :class:`~inspector.errors.InvalidDelta`
        or :class:`~inspector.errors.InvalidSnapshot`; on any of them the tree is unchanged.
        """
        decoded = decode_devtools_event(event)
        if isinstance(decoded, DevToolsSnapshot):
            return self._apply_snapshot(decoded)
        return self._apply_delta(decoded)

    def reset(self) -> None:
        """Forget everything (back to an empty tree)."""
        self._reset()

    def _apply_snapshot(self, snap: DevToolsSnapshot) -> TreeChange:
        index: dict[int, TreeNode] = {}
        root = _build(snap.root, None, index, {}, "$.snapshot.root", InvalidSnapshot)
        run_state = _copy_or_refuse(snap.run_state, InvalidSnapshot, "$.snapshot.runState")
        extra = _copy_or_refuse(snap.extra, InvalidSnapshot, "$.snapshot")
        previous = self.seq
        self.root = root
        self._index = index
        self._tasks = {}
        self._states = Counter()
        self._retries = 0
        for node in index.values():
            self._count(node, +1)
        self.run_id = snap.run_id or self.run_id
        self.seq = snap.seq
        self.frame_no = snap.frame_no
        self.run_state = run_state
        self.snapshot_extra = extra
        return TreeChange("snapshot", snap.seq, snap.frame_no, previous, rebuilt=True)

    def _apply_delta(self, delta: DevToolsDelta) -> TreeChange:
        if self.root is None or delta.base_seq != self.seq:
            raise SeqGap(self.seq, delta.base_seq, delta.seq)
        undo: list[_Undo] = []
        added: list[int] = []
        removed: list[int] = []
        updated: list[int] = []
        parents: list[int] = []
        rebuilt = False
        try:
            for i, op in enumerate(delta.ops):
                if isinstance(op, UpdateTask):
                    self._update_task(op, i, undo)
                    updated.append(op.id)
                elif isinstance(op, UpdateProps):
                    self._update_props(op, i, undo)
                    updated.append(op.id)
                elif isinstance(op, AddNode):
                    added.append(self._add_node(op, i, undo))
                    parents.append(op.parent_id)
                elif isinstance(op, RemoveNode):
                    parent_id = self._remove_node(op, i, undo, removed)
                    parents.append(parent_id)
                elif isinstance(op, ReplaceRoot):
                    self._replace_root(op, i, undo)
                    rebuilt = True
        except BaseException:
            for step in reversed(undo):
                step()
            raise
        previous = self.seq
        self.seq = delta.seq
        self.frame_no = delta.seq
        return TreeChange(
            "delta",
            delta.seq,
            delta.seq,
            previous,
            rebuilt=rebuilt,
            added=tuple(added),
            removed=tuple(removed),
            updated=tuple(dict.fromkeys(updated)),
            parents=tuple(dict.fromkeys(parents)),
        )

    # ------------------------------------------------------------------ ops

    def _target(self, node_id: int, op_index: int) -> TreeNode:
        node = self._index.get(node_id)
        if node is None:
            raise InvalidDelta(f"unknown node id {node_id}", op_index=op_index)
        return node

    def _count(self, node: TreeNode, sign: int) -> None:
        """Add (+1) or take away (-1) a node's contribution to the task indexes."""
        task = node.task
        if task is None:
            return
        self._states[node.state or NO_STATE] += sign
        attempt = task.get("attempt")
        if isinstance(attempt, int) and not isinstance(attempt, bool) and attempt > 1:
            self._retries += sign * (attempt - 1)
        key = task.get("nodeId")
        if isinstance(key, str):
            ids = self._tasks.setdefault(key, {})
            if sign > 0:
                ids[node.id] = None
            else:
                ids.pop(node.id, None)
                if not ids:
                    del self._tasks[key]

    def _set_field(self, node: TreeNode, key: str, value: Any, undo: list[_Undo]) -> None:
        missing = object()
        old = node.fields.get(key, missing)
        counted = key == "task"
        if counted:
            self._count(node, -1)
        if value is None:
            node.fields.pop(key, None)
        else:
            node.fields[key] = value
        if counted:
            self._count(node, +1)

        def restore() -> None:
            if counted:
                self._count(node, -1)
            if old is missing:
                node.fields.pop(key, None)
            else:
                node.fields[key] = old
            if counted:
                self._count(node, +1)

        undo.append(restore)

    def _update_task(self, op: UpdateTask, i: int, undo: list[_Undo]) -> None:
        node = self._target(op.id, i)
        task = None if op.task is None else _copy_or_refuse(op.task, InvalidDelta, f"ops[{i}].task")
        self._set_field(node, "task", task, undo)

    def _update_props(self, op: UpdateProps, i: int, undo: list[_Undo]) -> None:
        node = self._target(op.id, i)
        self._set_field(node, "props", _copy_or_refuse(op.props, InvalidDelta, f"ops[{i}].props"), undo)

    def _add_node(self, op: AddNode, i: int, undo: list[_Undo]) -> int:
        parent = self._index.get(op.parent_id)
        if parent is None:
            raise InvalidDelta(f"unknown parent id {op.parent_id}", op_index=i)
        fresh: dict[int, TreeNode] = {}
        node = _build(op.node, parent, fresh, self._index, f"ops[{i}].node", InvalidDelta)
        # Like Array.prototype.splice after Math.max(0, Math.min(index, length)).
        count = len(parent.children)
        position = count if op.index >= count else max(0, int(op.index))
        parent.children.insert(position, node)
        self._index.update(fresh)
        for n in fresh.values():
            self._count(n, +1)

        def restore() -> None:
            del parent.children[_position(parent.children, node)]
            for n in fresh.values():
                self._count(n, -1)
                del self._index[n.id]

        undo.append(restore)
        return node.id

    def _remove_node(self, op: RemoveNode, i: int, undo: list[_Undo], removed: list[int]) -> int:
        assert self.root is not None
        if op.id == self.root.id:
            raise InvalidDelta("cannot remove the root node", op_index=i)
        node = self._target(op.id, i)
        parent = node.parent
        assert parent is not None
        position = _position(parent.children, node)
        del parent.children[position]
        gone = list(self.walk(node))
        for n in gone:
            self._count(n, -1)
            del self._index[n.id]
            removed.append(n.id)

        def restore() -> None:
            parent.children.insert(position, node)
            for n in gone:
                self._index[n.id] = n
                self._count(n, +1)

        undo.append(restore)
        return parent.id

    def _replace_root(self, op: ReplaceRoot, i: int, undo: list[_Undo]) -> None:
        index: dict[int, TreeNode] = {}
        root = _build(op.node, None, index, {}, f"ops[{i}].node", InvalidDelta)
        saved = (self.root, self._index, self._tasks, self._states, self._retries)
        self.root, self._index, self._tasks, self._states, self._retries = root, index, {}, Counter(), 0
        for node in index.values():
            self._count(node, +1)

        def restore() -> None:
            self.root, self._index, self._tasks, self._states, self._retries = saved

        undo.append(restore)


def _position(children: list[TreeNode], node: TreeNode) -> int:
    """Index of ``node`` in ``children`` by identity (C-speed scan, no __eq__)."""
    for i, child in enumerate(children):
        if child is node:
            return i
    raise ValueError(f"node {node.id} is not among its parent's children")


def _build(
    wire: Mapping[str, Any],
    parent: TreeNode | None,
    index: dict[int, TreeNode],
    existing: Mapping[int, TreeNode],
    path: str,
    error: type[InvalidDelta] | type[InvalidSnapshot],
) -> TreeNode:
    """Validate a wire subtree and build its nodes into ``index``, copying every value.

    Iterative, so a pathological deep tree cannot exhaust the interpreter's stack.
    """

    def fail(message: str, where: str) -> Exception:
        return error(f"{where}: {message}")

    root: TreeNode | None = None
    stack: list[tuple[Any, TreeNode | None, str]] = [(wire, parent, path)]
    while stack:
        raw, up, where = stack.pop()
        if not isinstance(raw, Mapping):
            raise fail(f"a node must be an object, got {type(raw).__name__}", where)
        node_id = raw.get("id")
        if not isinstance(node_id, int) or isinstance(node_id, bool):
            raise fail(f"a node needs an integer id, got {node_id!r}"[:120], where)
        if node_id in index or node_id in existing:
            raise fail(f"node id {node_id} appears twice in the tree", where)
        children = raw.get("children", [])
        if not isinstance(children, list):
            raise fail("children must be a list", where)
        for key, kind in (("type", str), ("name", str), ("props", Mapping), ("task", Mapping)):
            value = raw.get(key)
            if value is not None and not isinstance(value, kind):
                raise fail(f"{key} must be {'a string' if kind is str else 'an object'}", where)
        fields = {shared_value(k): _copy_or_refuse(v, error, f"{where}.{k}") for k, v in raw.items() if k != "children"}
        node = TreeNode(node_id, fields, up)
        index[node_id] = node
        if up is None or root is None:
            root = node
        else:
            up.children.append(node)
        # Push in reverse so children are appended left to right.
        for pos in range(len(children) - 1, -1, -1):
            stack.append((children[pos], node, f"{where}.children[{pos}]"))
    assert root is not None
    # The subtree's own root was not attached to ``parent`` (the caller does that);
    # its children were attached as they were built.
    return root

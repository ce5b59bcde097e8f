"""Rows and row patches for the node-tree view: the wire format between Python and tree.js.

Pure (no Panel, no clocks). The browser keeps one small record per node (a *row*) and
the server keeps it current with *operations*, never by resending the tree:

- ``{"type": "reset", "rows": [...]}`` carries every row in document order. It is sent
  on first render and whenever a change says ``rebuilt`` (a snapshot or ``replaceRoot``).
- ``{"type": "patch", "remove": [ids], "add": [rows], "at": [[id, index], ...],
  "upsert": [rows]}`` carries only what a batch of :class:`~inspector.tree.TreeChange`
  touched. An ``updateTask`` costs one row; an ``addNode`` costs the rows of the new
  subtree plus its position among its siblings; a ``removeNode`` costs the removed ids.

Why this shape: on a 10,000-node run the Monitor-style "refetch the tree on change"
costs megabytes per state flip. Here the cost of a patch depends only on what changed,
which ``tests/test_treerows.py`` pins by comparing patch sizes on 100- and
10,000-node trees.

How a client applies a patch (tree.js does exactly this; :class:`RowMirror` is the
reference implementation the tests check against):

1. ``remove``: drop each id and whatever is left of its subtree; ids it does not know
   are ignored (a node added and removed within one batch).
2. ``add``: rows of new subtrees, each subtree in document order, subtrees sorted by
   (parent, index). A row named in ``at`` is spliced into its parent's children at that
   index; any other added row is appended to its (new) parent's children. Applying
   the subtrees in that order yields the final sibling order, because removals went
   first and the surviving siblings keep their relative order (DevTools has no move).
3. ``upsert``: rows of nodes the client already has; replace their fields.

``hasChildren`` is derived by the client from its own child lists after applying a
patch, so a parent whose only child left is not resent.

Rows omit keys whose value would be ``None`` (non-task nodes have no ``state``), which
keeps a 10,000-row reset near 1.3 MB of JSON.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from inspector.vocabulary import NODE_ICONS, RUNNING_TASK_STATES, NodeType, TaskState

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

    from inspector.agents import RunAgents
    from inspector.tree import DevToolsTree, TreeChange, TreeNode

__all__ = [
    "NO_HINTS",
    "WIRE_KEYS",
    "FeedStats",
    "RowMirror",
    "SharedMessage",
    "TreeFeed",
    "decode",
    "encode",
    "loop_iteration",
    "message_bytes",
    "patch_for",
    "row_for",
    "rows_for",
    "task_heartbeats_json",
    "task_tokens",
    "tree_vocabulary_js",
    "with_hints",
]

Row = dict[str, Any]
Message = dict[str, Any]
#: ``SharedRunView.tree_patch``: (tree, changes, hints sent, hints now) -> (message, its text).
SharedPatch = Callable[[Any, Sequence[Any], Any, Any], tuple[Message | None, str | None]]
NO_HINTS: Mapping[int, str] = MappingProxyType({})


class SharedMessage(dict[str, Any]):
    """A patch shared by every feed of a run: this feed's copy (its own ``seq``) of a message
    whose rows are the shared ones, and ``body``, the shared encoded text without ``seq``.
    :meth:`TreeFeed.encode` splices the ``seq`` into ``body`` instead of encoding again."""

    __slots__ = ("body",)

    def __init__(self, message: Message, body: str) -> None:
        super().__init__(message)
        self.body = body


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def loop_iteration(node: TreeNode) -> int | None:
    """The iteration a loop node is on: the highest task ``iteration`` among its children
    and grandchildren.

    Smithers puts ``iteration`` on the tasks, not on the loop, yet the loop row is what a
    user sees when it is collapsed. Looking two levels down covers the usual shapes
    (``loop > task`` and ``loop > sequence > task``) while keeping the cost bounded by
    the loop's body, not by the run; :func:`patch_for` resends a loop row when a task
    within those two levels changes.
    """
    best: int | None = None
    for child in node.children:
        for n in (child, *child.children):
            task = n.task
            if task is None:
                continue
            value = _int_or_none(task.get("iteration"))
            if value is not None and (best is None or value > best):
                best = value
    return best


def row_for(node: TreeNode, depth: int) -> Row:
    """The row record of one node (``depth`` counted from the root, which is 0).

    Depth is computed from the tree rather than read from the node's ``depth`` field so
    the indentation is right even if a Gateway sends inconsistent depths.
    """
    row: Row = {
        "id": node.id,
        "parent": node.parent.id if node.parent is not None else None,
        "depth": depth,
        "type": node.type,
        "label": node.label,
        "hasChildren": bool(node.children),
    }
    task = node.task
    if task is not None:
        row["state"] = node.state
        node_id = node.node_id
        if node_id is not None:
            row["nodeId"] = node_id
        for key in ("attempt", "maxAttempts", "iteration"):
            value = _int_or_none(task.get(key))
            if value is not None:
                row[key] = value
    elif node.type == NodeType.LOOP:
        iteration = loop_iteration(node)
        if iteration is not None:
            row["iteration"] = iteration
    return row


def _depth_of(node: TreeNode) -> int:
    depth = 0
    up = node.parent
    while up is not None:
        depth += 1
        up = up.parent
    return depth


def _subtree_rows(node: TreeNode, depth: int) -> Iterator[Row]:
    """Rows of ``node`` and its descendants in document order (iterative: deep trees exist)."""
    stack: list[tuple[TreeNode, int]] = [(node, depth)]
    while stack:
        n, d = stack.pop()
        yield row_for(n, d)
        for child in reversed(n.children):
            stack.append((child, d + 1))


def rows_for(tree: DevToolsTree) -> list[Row]:
    """Every row of the tree in document order (pre-order, children left to right)."""
    if tree.root is None:
        return []
    return list(_subtree_rows(tree.root, 0))


def _loop_dependents(node: TreeNode) -> Iterator[TreeNode]:
    """The loop rows whose ``iteration`` may depend on ``node`` (see :func:`loop_iteration`)."""
    up = node.parent
    for _ in range(2):
        if up is None:
            return
        if up.type == NodeType.LOOP:
            yield up
        up = up.parent


def _inside(node: TreeNode, ids: set[int]) -> bool:
    """Whether a strict ancestor of ``node`` is in ``ids`` (O(depth))."""
    up = node.parent
    while up is not None:
        if up.id in ids:
            return True
        up = up.parent
    return False


def patch_for(tree: DevToolsTree, changes: Iterable[TreeChange]) -> Message:
    """The message that brings a client from before ``changes`` to ``tree`` as it is now.

    ``changes`` are every change applied since the last message, oldest first. Any
    ``rebuilt`` change gives a reset. Otherwise the cost is O(rows sent x depth), never
    O(tree): positions come from :meth:`DevToolsTree.index_of` (a scan of one sibling
    list) and nothing walks the whole tree.
    """
    changes = list(changes)
    if any(c.rebuilt for c in changes):
        return {"type": "reset", "run": tree.run_id, "rows": rows_for(tree)}
    removed: dict[int, None] = {}
    added: dict[int, None] = {}
    updated: dict[int, None] = {}
    parents: dict[int, None] = {}
    for change in changes:
        removed.update(dict.fromkeys(change.removed))
        added.update(dict.fromkeys(change.added))
        updated.update(dict.fromkeys(change.updated))
        parents.update(dict.fromkeys(change.parents))

    # New subtrees: keep only the outermost root of nested additions, and only what is
    # still in the tree (a node can be added and removed within one batch).
    added_set = set(added)
    roots: list[tuple[int, int, TreeNode]] = []
    for node_id in added:
        node = tree.get(node_id)
        if node is None or node.parent is None or _inside(node, added_set):
            continue
        roots.append((node.parent.id, tree.index_of(node_id), node))
    roots.sort(key=lambda item: (item[0], item[1]))
    add: list[Row] = []
    at: list[list[int]] = []
    fresh: set[int] = set()
    for _parent_id, index, node in roots:
        at.append([node.id, index])
        for row in _subtree_rows(node, _depth_of(node)):
            add.append(row)
            fresh.add(row["id"])

    # Existing nodes whose row changed: updated nodes, and loops that summarise them.
    touched: dict[int, TreeNode] = {}
    for node_id in updated:
        node = tree.get(node_id)
        if node is not None:
            touched[node_id] = node
            for loop in _loop_dependents(node):
                touched.setdefault(loop.id, loop)
    for node_id in parents:  # a child list changed: the parent and its parent may be loops
        node = tree.get(node_id)
        if node is None:
            continue
        for n in (node, node.parent):
            if n is not None and n.type == NodeType.LOOP:
                touched.setdefault(n.id, n)
    upsert = [
        row_for(node, _depth_of(node))
        for node_id, node in touched.items()
        if node_id not in fresh
    ]

    return {"type": "patch", "remove": list(removed), "add": add, "at": at, "upsert": upsert}


def with_hints(message: Message, tree: DevToolsTree, sent: Mapping[int, str], hints: Mapping[int, str]) -> Message:
    """``message`` (a reset or patch of ``tree``) for a page that shows the state ``hints``
    (:meth:`inspector.state_hints.StateHints.settle`: ``{DevTools id: state}``) on task rows
    and was last sent ``sent``: hinted rows carry the hint's state, and a patch also upserts
    every row whose hint came, changed or went since ``sent``, so the page's rows are
    :func:`rows_for` with the hints applied. ``message`` is not changed (it may be shared).

    Hints are not part of the row builder (benchmarked per delta): with none, this returns
    ``message`` itself at the cost of two emptiness checks.
    """
    if not hints and not sent:
        return message

    def hinted(row: Row) -> Row:
        state = hints.get(row["id"])
        return row if state is None or "state" not in row else {**row, "state": state}

    if message["type"] == "reset":
        return {**message, "rows": [hinted(row) for row in message["rows"]]}
    listed = {row["id"] for row in message["add"]} | {row["id"] for row in message["upsert"]}
    upsert = [hinted(row) for row in message["upsert"]]
    for key in sent.keys() | hints.keys():
        if key in listed or sent.get(key) == hints.get(key):
            continue
        node = tree.get(key)
        if node is not None:
            upsert.append(hinted(row_for(node, _depth_of(node))))
    return {**message, "add": [hinted(row) for row in message["add"]], "upsert": upsert}


def is_empty(message: Message) -> bool:
    """A patch that changes nothing (a delta with ``ops: []`` gives one)."""
    return message.get("type") == "patch" and not (
        message["remove"] or message["add"] or message["upsert"]
    )


#: Positional keys of a packed row on the wire (tree.js ``WIRE`` must match). ``hasChildren``
#: is not sent: the client derives it from its child lists.
WIRE_KEYS = ("id", "parent", "depth", "type", "label", "state", "nodeId", "attempt", "maxAttempts", "iteration")


def tree_vocabulary_js() -> str:
    """The JavaScript line that gives ``tree.js`` its words: ``VOCABULARY.icons`` (node type
    -> ``[emoji, plain]``), ``VOCABULARY.running`` and ``VOCABULARY.failed`` (the task
    states its roll-ups count as running and as failed), from :mod:`inspector.vocabulary`.

    Prepended to the module when it is served (``TreeComponent._esm``), so the browser and
    the server-rendered views cannot drift apart: tree.js has no table of its own.
    """
    vocabulary = {
        "icons": {str(node_type): list(icon) for node_type, icon in NODE_ICONS.items()},
        "running": sorted(str(state) for state in RUNNING_TASK_STATES),
        "failed": str(TaskState.FAILED),
    }
    return f"const VOCABULARY = {json.dumps(vocabulary, ensure_ascii=False, separators=(',', ':'))}\n"


def task_tokens(agents: RunAgents | None) -> str:
    """Tokens per task for the tree rows, as the JSON text of ``tree.js``' ``tokens``
    message: ``{nodeId: [tokens, agent]}`` over every iteration and
    attempt of the task, ``agent`` the newest attempt's agent id (``""`` when unknown).

    Kept apart from the rows on purpose: usage arrives as run events, not as tree changes,
    so the row builder (benchmarked per delta) stays as it is and a usage report costs one
    small message instead of row upserts. Only tasks with usage are listed.
    """
    if agents is None:
        return "{}"
    out: dict[str, list[Any]] = {}
    for row in agents.usage_rows():
        entry = out.setdefault(row.node_id, [0, ""])
        entry[0] += row.tokens.total
        entry[1] = row.agent or entry[1]
    return json.dumps(out, separators=(",", ":"), ensure_ascii=False, sort_keys=True)


def task_heartbeats_json(beats: Mapping[tuple[str, int], float]) -> str:
    """Each task's last heartbeat for the tree rows, as the JSON text of ``tree.js``'
    ``beats`` message: ``{nodeId: {iteration: ms}}`` from ``RunStore.task_heartbeats``
    (``{(nodeId, iteration): time.time()}``), in milliseconds on the server's clock.

    Apart from the rows for the reason :func:`task_tokens` is: a heartbeat is a run event,
    several a second on an agentic run, and must cost one small message, not row upserts.
    """
    out: dict[str, dict[str, float]] = {}
    for (node_id, iteration), at in beats.items():
        out.setdefault(node_id, {})[str(iteration)] = round(at * 1000.0, 1)
    return json.dumps(out, separators=(",", ":"), ensure_ascii=False, sort_keys=True)


def heartbeats_delta(previous: Mapping[tuple[str, int], float],
                     current: Mapping[tuple[str, int], float]) -> tuple[str, bool] | None:
    """What a page that has ``previous`` needs to have ``current``: the JSON text of a
    ``beats`` message and whether it is a merge (only the changed entries) or the whole table
    (an entry went away, e.g. after a rewind, or the page had none); ``None`` if nothing changed.

    A 7,500-node run ends with thousands of tasks that beat once; the whole table every second
    to every screen was the largest message a wall session received.
    """
    if previous is current:
        return None
    if not previous or any(key not in current for key in previous):
        return (task_heartbeats_json(current), False) if current or previous else None
    changed = {key: at for key, at in current.items() if previous.get(key) != at}
    return (task_heartbeats_json(changed), True) if changed else None


def _pack(row: Row) -> list[Any]:
    values = [row.get(key) for key in WIRE_KEYS]
    while values and values[-1] is None:
        values.pop()
    return values


def _unpack(values: list[Any]) -> Row:
    return {key: value for key, value in zip(WIRE_KEYS, values, strict=False) if value is not None}


def encode(message: Message) -> str:
    """The message as the JSON text sent to the browser, rows packed as arrays.

    Sent as one string rather than as a dict because Bokeh encodes every dict as a
    ``{"type": "map", "entries": [...]}`` structure that BokehJS then walks value by
    value; a string crosses untouched and the browser's native ``JSON.parse`` is several
    times faster. Packing rows positionally halves a 10,000-row reset again.
    """
    out = dict(message)
    for key in ("rows", "add", "upsert"):
        if key in out:
            out[key] = [_pack(row) for row in out[key]]
    return json.dumps(out, separators=(",", ":"), ensure_ascii=False)


def decode(text: str) -> Message:
    """The inverse of :func:`encode` (rows come back without ``hasChildren``)."""
    message: Message = json.loads(text)
    for key in ("rows", "add", "upsert"):
        if key in message:
            message[key] = [_unpack(values) for values in message[key]]
    return message


def message_bytes(message: Message) -> int:
    """Size of a message on the wire (UTF-8 of :func:`encode`): what its cost is judged by."""
    return len(encode(message).encode("utf-8"))


@dataclass(slots=True)
class FeedStats:
    """What a :class:`TreeFeed` has sent: for tests, benchmarks and the debug overlay."""

    resets: int = 0
    patches: int = 0
    rows_sent: int = 0
    bytes_sent: int = 0
    last_bytes: int = 0
    last_rows: int = 0

    def count(self, message: Message, size: int) -> None:
        if message["type"] == "reset":
            self.resets += 1
            rows = len(message["rows"])
        else:
            self.patches += 1
            rows = len(message["add"]) + len(message["upsert"])
        self.rows_sent += rows
        self.bytes_sent += size
        self.last_bytes = size
        self.last_rows = rows


@dataclass(slots=True)
class TreeFeed:
    """Turns a tree and its changes into numbered messages for one tree component.

    ``seq`` numbers every message so the browser can ignore a message delivered twice
    (two handlers after a re-render) and notice one it missed; when it (re)connects it
    reports the last ``seq`` it applied and gets a reset unless that is ours.

    The feed also checks that it saw every change: each :class:`TreeChange` names the
    tree seq it started from, so a batch that does not start where the last one ended
    (a missed tick, a store that swapped its tree object) gives a reset, not a wrong patch.
    """

    seq: int = 0
    run_id: str | None = None
    stats: FeedStats = field(default_factory=FeedStats)
    tree_seq: int | None = None
    tree: DevToolsTree | None = field(default=None, repr=False, compare=False)
    #: The task-state hints the client was last sent (:func:`with_hints`).
    hints: Mapping[int, str] = field(default_factory=dict, repr=False, compare=False)

    def reset(self, tree: DevToolsTree,
              shared: Callable[[DevToolsTree, Mapping[int, str]], tuple[Message, str]] | None = None,
              hints: Mapping[int, str] = NO_HINTS) -> Message:
        """A reset message with every row, ``hints`` on its task rows (``shared``: the run's
        ``SharedRunView.tree_reset``, built once for every feed that resets on the same tree
        state)."""
        self.hints = hints
        if shared is not None:
            common, body = shared(tree, hints)
            return self._number(tree, SharedMessage(common, body))
        return self._number(tree, with_hints({"type": "reset", "run": tree.run_id, "rows": rows_for(tree)},
                                             tree, NO_HINTS, hints))

    def update(self, tree: DevToolsTree, changes: Iterable[TreeChange],
               shared: SharedPatch | None = None,
               shared_reset: Callable[[DevToolsTree, Mapping[int, str]], tuple[Message, str]] | None = None,
               hints: Mapping[int, str] = NO_HINTS) -> Message | None:
        """The message for one store tick, or ``None`` when nothing visible changed.

        ``hints``: the run's task-state hints now (:func:`with_hints`); the message also
        carries the rows whose hint changed since this feed's last message.
        ``shared`` (the run's ``SharedRunView.tree_patch``) computes the patch once for every
        feed of the run that ticks with the same changes; this feed only numbers it, and a
        reset (this feed fell out of step) comes from ``shared_reset`` the same way.
        """
        changes = list(changes)
        same_tree = tree is self.tree and tree.run_id == self.run_id
        if (same_tree and changes and tree.seq is not None and self.tree_seq == tree.seq
                and all(c.seq <= tree.seq for c in changes)):
            # The client already has this state: a reset sent since (at its ``ready``) was
            # built after these changes, so a batch that rebuilt the tree needs no second one.
            changes = []
        continuous = same_tree and (changes[0].previous_seq if changes else tree.seq) == self.tree_seq
        if not continuous:
            return self.reset(tree, shared_reset, hints)
        sent, self.hints = self.hints, hints
        if shared is not None:
            common, body = shared(tree, changes, sent, hints)
            self.tree_seq = tree.seq
            if common is None or body is None:
                return None
            return self._number(tree, SharedMessage(common, body))
        message = with_hints(patch_for(tree, changes), tree, sent, hints)
        self.tree_seq = tree.seq
        if is_empty(message):
            return None
        return self._number(tree, message)

    def encode(self, message: Message) -> str:
        """:func:`encode`, counted in :attr:`stats` (a :class:`SharedMessage` is not encoded
        again: its shared text gets this feed's ``seq``)."""
        if isinstance(message, SharedMessage):
            body = message.body
            text = f'{{"seq":{message["seq"]},{body[1:]}' if len(body) > 2 else f'{{"seq":{message["seq"]}}}'
            self.stats.count(message, len(text.encode("utf-8")))
            return text
        text = encode(message)
        self.stats.count(message, len(text.encode("utf-8")))
        return text

    def _number(self, tree: DevToolsTree, message: Message) -> Message:
        self.seq += 1
        message["seq"] = self.seq
        if message["type"] == "reset":
            self.run_id = message["run"]
            self.tree = tree
        self.tree_seq = tree.seq
        return message


class RowMirror:
    """The browser's row model in Python: what tree.js keeps, applied the way tree.js does.

    Used by the tests to prove that ``reset`` + patches reproduce :func:`rows_for` after
    every step; keep it and ``applyMessage`` in tree.js in step.
    """

    def __init__(self) -> None:
        self.rows: dict[int, Row] = {}
        self.children: dict[int | None, list[int]] = {}
        self.root: int | None = None
        self.seq = 0
        self.run: str | None = None

    def apply(self, message: Message) -> None:
        seq = message.get("seq", self.seq + 1)
        if seq <= self.seq:
            return
        self.seq = seq
        if message["type"] == "reset":
            self.rows, self.children, self.root = {}, {}, None
            self.run = message.get("run")
            for row in message["rows"]:
                self._create(row, append=True)
            return
        for node_id in message["remove"]:
            self._remove(node_id)
        at = {node_id: index for node_id, index in message["at"]}
        for row in message["add"]:
            if row.get("parent") not in self.children:
                continue  # parent unknown: cannot be placed (tree.js skips it too)
            self._create(row, append=row["id"] not in at)
            if row["id"] in at:
                self.children[row["parent"]].insert(at[row["id"]], row["id"])
        for row in message["upsert"]:
            if row["id"] in self.rows:
                self.rows[row["id"]] = {**row, "parent": row.get("parent")}

    def _create(self, row: Row, *, append: bool) -> None:
        node_id = row["id"]
        self.rows[node_id] = {**row, "parent": row.get("parent")}
        self.children[node_id] = []
        parent = row.get("parent")
        if parent is None:
            self.root = node_id
        elif append:
            self.children.setdefault(parent, []).append(node_id)

    def _remove(self, node_id: int) -> None:
        row = self.rows.get(node_id)
        if row is None:
            return
        siblings = self.children.get(row.get("parent"))
        if siblings is not None and node_id in siblings:
            siblings.remove(node_id)
        stack = [node_id]
        while stack:
            n = stack.pop()
            self.rows.pop(n, None)
            stack.extend(self.children.pop(n, []))

    def ordered(self) -> list[Row]:
        """Rows in document order, ``hasChildren`` derived from the child lists."""
        if self.root is None:
            return []
        out: list[Row] = []
        stack = [self.root]
        while stack:
            n = stack.pop()
            kids = self.children.get(n, [])
            out.append({**self.rows[n], "hasChildren": bool(kids)})
            stack.extend(reversed(kids))
        return out

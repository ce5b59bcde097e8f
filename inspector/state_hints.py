"""Task states the run-event stream announced before the DevTools tree has them.

Why: the Gateway tells a subscriber about a task's new state twice. Its engine emits
``NodeStarted`` / ``NodeFinished`` / ... as it happens, and ``handleSmithersEvent`` broadcasts
the ``node.*`` run event at once; the DevTools stream only sees the change once the engine has
persisted the frame and the stream's own 25 ms poll has diffed it against the last one
(``streamDevToolsRoute`` in ``server/src/gatewayRoutes/streamDevTools.js``). On the recorded
``wide`` run the event came 45 ms (p50) / 92 ms (p95) before the delta; on a busy Gateway the
frame's own delay reached a p95 of ~300 ms (docs/performance.md, issue 14). A task row that
waits for the frame is that much behind the run.

So a task's row may show the state the newest ``node.*`` event gave it (a *hint*) until the
DevTools tree has it too. The tree itself stays exact (it only ever applies DevTools deltas);
a hint is an overlay, kept only while it is ahead of the tree, and dropped when:

- the tree reaches the hint's state (confirmed: the usual end of a hint);
- the tree reaches another state at or past the hint's stage (pending, then running or
  waiting, then done): the frames know better, e.g. a ``finished`` hint and a ``failed`` task;
  unless the tree is still on an earlier attempt than the hint (a retry);
- its task leaves the tree, the tree is rebuilt or rewound (a lower seq), or it is older than
  :attr:`StateHints.ttl` (a frame that never comes must not leave a row wrong for long).

A hint the tree has already overtaken when its event arrives is never kept: events can be
late (an out-of-process run's events are bridged once a second) or repeated, and a hint must
never move a row backwards. History replayed on subscribing is not news and gives no hint.

``node.started`` and its siblings name the task by ``nodeId`` only (no iteration, see
``mapEvent`` in ``server/src/gateway.js``): a hint goes to the task node with that ``nodeId``
and the highest iteration in the tree (the loop's current one), or to the exact iteration
when the event names one. The waiting events are left out: their live payload says only
"waiting", not which kind.

Pure: no I/O, the clock is injected.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final

from .vocabulary import NODE_EVENT_STATE, RunEventName, TaskState

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from .tree import DevToolsTree, TreeNode

__all__ = ["HINT_EVENTS", "StateHints"]

#: The ``node.*`` events whose state is exactly the one the DevTools tree will show.
HINT_EVENTS: Final = frozenset({
    RunEventName.NODE_STARTED, RunEventName.NODE_RETRYING, RunEventName.NODE_FINISHED,
    RunEventName.NODE_FAILED, RunEventName.NODE_SKIPPED, RunEventName.NODE_CANCELLED,
})

#: A task's stage: a state never goes back to a lower one except by a retry or a rewind.
_PENDING, _ACTIVE, _DONE = 0, 1, 2
_STAGE: Final[Mapping[str, int]] = MappingProxyType({
    TaskState.PENDING: _PENDING,
    TaskState.FINISHED: _DONE, TaskState.FAILED: _DONE, TaskState.CANCELLED: _DONE, TaskState.SKIPPED: _DONE,
})


def _stage(state: str | None) -> int:
    """Pending, done, or in between (running, retrying, waiting, and any state this
    version does not know: the tree's word on those always wins, see :meth:`StateHints._overtaken`)."""
    return _STAGE.get(state or "", _ACTIVE)


def _attempt(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


@dataclass(frozen=True, slots=True)
class _Hint:
    state: str
    #: The attempt the hint is about, when an event said (``node.retrying``) or an earlier
    #: hint of the same task did: the tree on an older attempt is behind, not ahead.
    attempt: int | None
    at: float


class StateHints:
    """The hints of one run, keyed by the DevTools id of the task they are for (see the module
    docstring). :meth:`note` takes a live ``node.*`` event, :meth:`settle` drops what the tree
    has caught up with and returns ``{DevTools id: state}`` for the rows."""

    def __init__(self, *, ttl: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        #: Seconds a hint may wait for its frame before the row shows the tree's state again.
        self.ttl = ttl
        self._clock = clock
        self._hints: dict[int, _Hint] = {}
        self._tree: tuple[int, str | None] | None = None  # (id(tree), run id) the hints are for
        self._tree_seq = -1
        self._version = 0
        self._copy: tuple[int, Mapping[int, str]] = (0, MappingProxyType({}))

    def __len__(self) -> int:
        return len(self._hints)

    def note(self, tree: DevToolsTree, event: str, payload: Any) -> bool:
        """Take a live ``node.*`` event (name and payload); whether the hints changed."""
        state = NODE_EVENT_STATE.get(event) if event in HINT_EVENTS else None  # type: ignore[call-overload]
        node_id = payload.get("nodeId") if isinstance(payload, dict) else None
        if state is None or not isinstance(node_id, str):
            return False
        self._follow(tree)
        iteration = payload.get("iteration")
        nodes = tree.find_tasks(node_id, iteration if isinstance(iteration, int) else None)
        if not nodes:
            return False  # not in the tree yet: its addNode will bring its state
        node = max(nodes, key=lambda n: n.iteration if n.iteration is not None else -1)
        previous = self._hints.get(node.id)
        attempts = [a for a in (_attempt(payload.get("attempt")), previous.attempt if previous else None) if a is not None]
        hint = _Hint(str(state), max(attempts) if attempts else None, self._clock())
        if self._overtaken(hint, node):
            return self._drop(node.id)
        self._hints[node.id] = hint
        self._version += 1
        return True

    def settle(self, tree: DevToolsTree) -> Mapping[int, str]:
        """Drop the hints ``tree`` has caught up with (or that are stale); the rest as a
        read-only ``{DevTools id: state}``, the same object until the hints change (a run's
        sessions all hold that one map)."""
        self._follow(tree)
        if self._hints:
            now = self._clock()
            for key, hint in list(self._hints.items()):
                node = tree.get(key)
                if node is None or node.task is None or now - hint.at > self.ttl or self._overtaken(hint, node):
                    self._drop(key)
        version, copy = self._copy
        if version != self._version:
            copy = MappingProxyType({key: hint.state for key, hint in self._hints.items()})
            self._copy = (self._version, copy)
        return copy

    def clear(self) -> None:
        """Forget every hint (a rewind: the events before it describe another future)."""
        if self._hints:
            self._hints.clear()
            self._version += 1

    def _follow(self, tree: DevToolsTree) -> None:
        """Clear the hints when ``tree`` is another tree or went back (rebuilt, rewound)."""
        key = (id(tree), tree.run_id)
        seq = tree.seq if tree.seq is not None else -1
        if key != self._tree or seq < self._tree_seq:
            self.clear()
            self._tree = key
        self._tree_seq = seq

    def _drop(self, key: int) -> bool:
        if self._hints.pop(key, None) is None:
            return False
        self._version += 1
        return True

    @staticmethod
    def _overtaken(hint: _Hint, node: TreeNode) -> bool:
        """Whether the tree shows ``hint``'s state, or has moved to another at or past its stage
        (and is not on an earlier attempt than the hint's)."""
        state = node.state
        if state == hint.state:
            return True
        task = node.task or {}
        attempt = _attempt(task.get("attempt"))
        if hint.attempt is not None and attempt is not None and attempt < hint.attempt:
            return False
        return _stage(state) >= _stage(hint.state)

"""Task states by frame, as this process saw them, for showing a past frame truthfully.

Smithers 0.32 stores a run's frames as *structure*: ``getDevToolsSnapshot(frameNo=N)``
rebuilds frame N's tree and then attaches every task's **current** state from the run's
node table (``attachNodeStatesToDevToolsRoot`` in the server's getDevToolsSnapshot.js). A
finished run's frame 2 therefore comes back with every task ``finished``. What the tasks
were at frame N is only known to someone who watched the stream: each delta's ``seq`` is
its frame number, and ``updateTask`` ops carry the state changes.

:class:`TaskStateHistory` records exactly that, next to the tree it watches: after every
applied event, ``observe(tree, change)`` appends ``(seq, state)`` for the task nodes the
event touched (all of them for a snapshot). :meth:`states_at` then answers "the state of
every task at frame N" for frames it saw, and says ``None`` for frames it did not (before
it started watching, or a stretch it missed while disconnected), so a caller can fall back
to the Gateway's states and say so instead of guessing.

Pure: no I/O. Memory is bounded by ``max_entries``; past it the oldest history is let go
(the covered range starts later).
"""

from __future__ import annotations

import bisect
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterable

    from .tree import DevToolsTree, TreeChange, TreeNode

__all__ = ["TaskStateHistory"]


class TaskStateHistory:
    """Per task node (DevTools id), its states over frames (see the module docstring)."""

    def __init__(self, max_entries: int = 200_000, max_holes: int = 1_000) -> None:
        self.max_entries = max_entries
        self.max_holes = max_holes
        self._seqs: dict[int, list[int]] = {}
        self._states: dict[int, list[str | None]] = {}
        self._entries = 0
        self.covered_from: int | None = None
        """First frame from which every task's state is known (``None``: nothing yet)."""
        self.last_seq: int | None = None
        self._holes: list[tuple[int, int]] = []  # (after, until): frames after..until-1 unknown

    def __len__(self) -> int:
        return self._entries

    # ------------------------------------------------------------------ recording

    def observe(self, tree: DevToolsTree, change: TreeChange) -> None:
        """Record what ``change`` (just applied to ``tree``) did to task states."""
        seq = change.seq
        if change.rebuilt or self.covered_from is None:
            if self.last_seq is not None and seq <= self.last_seq:
                self._truncate(seq)  # a rewind: the frames after it are gone
            elif self.last_seq is not None and change.previous_seq != self.last_seq:
                self._holes.append((self.last_seq, seq))  # frames we never saw
            elif self.last_seq is not None and seq > self.last_seq + 1 and change.kind == "snapshot":
                self._holes.append((self.last_seq, seq))  # a rebaseline skipped frames
            if self.covered_from is None:
                self.covered_from = seq
            present = {node.id for node in tree.walk() if node.task is not None}
            for node_id in list(self._seqs):
                if node_id not in present:
                    self._record(node_id, seq, None)
            for node in tree.walk():
                if node.task is not None:
                    self._record(node.id, seq, node.state)
        else:
            if self.last_seq is not None and change.previous_seq != self.last_seq:
                self._holes.append((self.last_seq, seq))
            for node_id in change.removed:
                if node_id in self._seqs:
                    self._record(node_id, seq, None)
            for node in self._touched(tree, change.added, change.updated):
                self._record(node.id, seq, node.state)
        self.last_seq = seq
        if self._entries > self.max_entries or len(self._holes) > self.max_holes:
            self._restart(tree, seq)

    @staticmethod
    def _touched(tree: DevToolsTree, added: Iterable[int], updated: Iterable[int]) -> Iterable[TreeNode]:
        for node_id in added:
            start = tree.get(node_id)
            if start is not None:
                yield from (n for n in tree.walk(start) if n.task is not None)
        for node_id in updated:
            node = tree.get(node_id)
            if node is not None and node.task is not None:
                yield node

    def _record(self, node_id: int, seq: int, state: str | None) -> None:
        seqs = self._seqs.get(node_id)
        if seqs is None:
            if state is None:
                return
            self._seqs[node_id] = [seq]
            self._states[node_id] = [state]
            self._entries += 1
            return
        states = self._states[node_id]
        if states[-1] == state:
            return
        if seqs[-1] == seq:
            states[-1] = state
            return
        seqs.append(seq)
        states.append(state)
        self._entries += 1

    def _truncate(self, seq: int) -> None:
        """Forget everything recorded after frame ``seq``."""
        for node_id in list(self._seqs):
            seqs = self._seqs[node_id]
            keep = bisect.bisect_right(seqs, seq)
            if keep < len(seqs):
                self._entries -= len(seqs) - keep
                del seqs[keep:]
                del self._states[node_id][keep:]
            if not seqs:
                del self._seqs[node_id]
                del self._states[node_id]
        self._holes = [(a, min(b, seq)) for a, b in self._holes if a < seq]
        if self.covered_from is not None and self.covered_from > seq:
            self.covered_from = None

    def _restart(self, tree: DevToolsTree, seq: int) -> None:
        """Over the budget: keep only the present (history starts again at ``seq``)."""
        self._seqs.clear()
        self._states.clear()
        self._entries = 0
        self._holes.clear()
        self.covered_from = seq
        for node in tree.walk():
            if node.task is not None:
                self._record(node.id, seq, node.state)

    # ------------------------------------------------------------------ reading

    def covers(self, frame: int) -> bool:
        """Whether every task's state at ``frame`` is known."""
        if self.covered_from is None or self.last_seq is None:
            return False
        if not self.covered_from <= frame <= self.last_seq:
            return False
        return not any(after < frame < until for after, until in self._holes)

    def states_at(self, frame: int) -> dict[int, str] | None:
        """DevTools id -> task state at ``frame`` for every task that existed then, or
        ``None`` if this history does not cover that frame."""
        if not self.covers(frame):
            return None
        out: dict[int, str] = {}
        for node_id, seqs in self._seqs.items():
            i = bisect.bisect_right(seqs, frame) - 1
            if i >= 0:
                state = self._states[node_id][i]
                if state is not None:
                    out[node_id] = state
        return out

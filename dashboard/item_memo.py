"""Answers about a run's items, worked out once for every session the hub hands them to.

The hub hands every store of a run the same item objects, in the same order, and a late
joiner's catch-up hands it the same objects again. So what one store works out about an item
(its event-log record, whether it re-emits a transition, the agent attempt it changed) holds
for every session: :class:`ItemMemo` keeps the answers for the most recent items, by
identity. The questions asked about one run's items share one table (:meth:`ItemMemo.another`):
one entry per item instead of one per question and item, which was ~1 MB per run held
(docs/performance.md, section 6). Nothing here imports Panel.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING, Any, Generic, TypeVar

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

__all__ = ["ItemMemo"]

V = TypeVar("V")

#: A question not answered yet for an item (answers may be ``None`` or ``False``).
_UNSET: Any = object()


class _Table:
    """The items remembered, oldest first: ``id(item) -> [item, first question's answer,
    second's, ...]`` (``_UNSET`` where not asked yet). The item is kept with its answers, so
    its id is not reused while remembered."""

    __slots__ = ("entries", "questions", "size")

    def __init__(self, size: int) -> None:
        self.entries: OrderedDict[int, list[Any]] = OrderedDict()
        self.questions = 0
        self.size = size


class ItemMemo(Generic[V]):
    """The answers to one question about the most recent ``size`` items, by identity.
    ``size`` must cover the hub's event history: that is what a late joiner's catch-up hands
    in again."""

    __slots__ = ("_slot", "_table")

    def __init__(self, size: int, *, _table: _Table | None = None) -> None:
        self._table = _table if _table is not None else _Table(size)
        self._table.questions += 1
        self._slot = self._table.questions  # this question's answers' index in an entry

    def another(self) -> ItemMemo[Any]:
        """A memo of another question about the same items, in the same table."""
        return ItemMemo(self._table.size, _table=self._table)

    def answer(self, item: object, work_out: Callable[[], V]) -> tuple[V, bool]:
        """``item``'s answer and whether it was remembered (else ``work_out()``, now kept)."""
        table, slot = self._table, self._slot
        entry = table.entries.get(id(item))
        if entry is not None and entry[0] is item:
            if slot < len(entry) and entry[slot] is not _UNSET:
                return entry[slot], True
        else:
            entry = None
        value = work_out()
        if entry is None:
            # Looked up again: work_out may have remembered this item for another question.
            entry = table.entries.get(id(item))
            if entry is None or entry[0] is not item:
                entry = table.entries[id(item)] = [item]
                if len(table.entries) > table.size:
                    table.entries.popitem(last=False)
        if slot >= len(entry):
            entry.extend([_UNSET] * (slot + 1 - len(entry)))
        entry[slot] = value
        return value, False

    def items(self) -> Iterator[object]:
        """The items this question was answered for, oldest first."""
        slot = self._slot
        return (entry[0] for entry in self._table.entries.values() if slot < len(entry) and entry[slot] is not _UNSET)

    def clear(self) -> None:
        """Forget this question's answers (the other questions' stay)."""
        slot = self._slot
        for entry in self._table.entries.values():
            if slot < len(entry):
                entry[slot] = _UNSET

"""Answers about a run's items, worked out once for every session the hub hands them to.

The hub hands every store of a run the same item objects, in the same order, and a late
joiner's catch-up hands it the same objects again. So what one store works out about an item
(its event-log record, whether it re-emits a transition, the agent attempt it changed) holds
for every session: :class:`ItemMemo` keeps the answers for the most recent items, by
identity. Nothing here imports Panel.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING, Generic, TypeVar

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

__all__ = ["ItemMemo"]

V = TypeVar("V")


class ItemMemo(Generic[V]):
    """The answers about the most recent ``size`` items, by identity. The item is kept with
    its answer, so its id is not reused while remembered. ``size`` must cover the hub's event
    history: that is what a late joiner's catch-up hands in again."""

    __slots__ = ("_answers", "_size")

    def __init__(self, size: int) -> None:
        self._answers: OrderedDict[int, tuple[object, V]] = OrderedDict()
        self._size = size

    def answer(self, item: object, work_out: Callable[[], V]) -> tuple[V, bool]:
        """``item``'s answer and whether it was remembered (else ``work_out()``, now kept)."""
        hit = self._answers.get(id(item))
        if hit is not None and hit[0] is item:
            return hit[1], True
        value = work_out()
        self._answers[id(item)] = (item, value)
        if len(self._answers) > self._size:
            self._answers.popitem(last=False)
        return value, False

    def items(self) -> Iterator[object]:
        """The items remembered, oldest first."""
        return (item for item, _ in self._answers.values())

    def clear(self) -> None:
        self._answers.clear()

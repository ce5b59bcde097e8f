"""ItemMemo: answers by identity, several questions about a run's items in one table."""

from __future__ import annotations

from hypothesis import given, strategies as st

from dashboard.item_memo import ItemMemo


class Item:
    """An item compared by identity, as the hub's items are."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __eq__(self, other: object) -> bool:  # equal items are still different items
        return isinstance(other, Item) and other.n == self.n

    __hash__ = object.__hash__


def test_an_answer_is_worked_out_once_per_item_and_question() -> None:
    records = ItemMemo[str](8)
    repeats = records.another()
    item, twin = Item(1), Item(1)
    calls: list[str] = []
    assert records.answer(item, lambda: calls.append("r") or "record") == ("record", False)
    assert records.answer(item, lambda: calls.append("r") or "again") == ("record", True)
    # Falsy answers are answers too.
    assert repeats.answer(item, lambda: calls.append("q") or False) == (False, False)
    assert repeats.answer(item, lambda: calls.append("q") or True) == (False, True)
    assert records.answer(twin, lambda: "twin's") == ("twin's", False)
    assert calls == ["r", "q"]


def test_questions_share_the_size_bound_and_forget_apart() -> None:
    first = ItemMemo[int](2)
    second = first.another()
    a, b, c = Item(1), Item(2), Item(3)
    first.answer(a, lambda: 1)
    second.answer(a, lambda: 10)
    second.answer(b, lambda: 20)
    assert list(first.items()) == [a] and list(second.items()) == [a, b]
    first.clear()
    assert list(first.items()) == [] and second.answer(a, lambda: -1) == (10, True)
    first.answer(c, lambda: 3)  # a third item: the oldest (a) leaves the table, for every question
    assert second.answer(a, lambda: 11) == (11, False)


def test_a_question_asked_while_working_out_another_keeps_both_answers() -> None:
    first = ItemMemo[str](4)
    second = first.another()
    item = Item(1)
    assert first.answer(item, lambda: second.answer(item, lambda: "inner")[0] + "+outer") == ("inner+outer", False)
    assert second.answer(item, lambda: "no") == ("inner", True)
    assert first.answer(item, lambda: "no") == ("inner+outer", True)


@given(st.integers(1, 6), st.lists(st.tuples(st.integers(0, 2), st.integers(0, 9)), max_size=60))
def test_answers_match_a_model_of_the_most_recent_items(size: int, asks: list[tuple[int, int]]) -> None:
    """Every answer is the one worked out for that item and question; one is remembered only
    while its item is among the ``size`` items most recently new to the table."""
    items = [Item(n) for n in range(10)]
    memos = [ItemMemo[tuple[int, int, int]](size)]
    memos += [memos[0].another() for _ in range(2)]
    order: list[int] = []  # the model: items in the table, oldest first
    answered: set[tuple[int, int]] = set()
    for count, (question, n) in enumerate(asks):
        value, remembered = memos[question].answer(items[n], lambda q=question, n=n, c=count: (q, n, c))
        assert remembered == ((question, n) in answered and n in order)
        if not remembered:
            answered.add((question, n))
            if n not in order:
                order.append(n)
                if len(order) > size:
                    gone = order.pop(0)
                    answered -= {(q, gone) for q in range(3)}
        assert value[:2] == (question, n)

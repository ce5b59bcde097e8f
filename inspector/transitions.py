"""Which run events are news: re-emitted transitions told apart from new ones.

Pure (no I/O). Smithers 0.32's live stream re-emits transitions it already sent, with new
``seq`` numbers: its out-of-process event bridge re-sends the database rows of a run that was
not executing in the Gateway's process at its last poll (waiting for an approval, or ended
between two polls; see :mod:`inspector.echoes`, which drops the agent events of that echo),
so a finished node's ``node.pending`` / ``node.started`` / ``node.finished`` come again, as do
``approval.requested``, ``node.waiting_approval`` and ``run.completed`` (two or
three times in all: the ``gated`` recording has ``build`` started at seq 4 and again at seq 11,
``run.completed`` at seqs 20, 21 and 26). The durable history (``/v1/api/events``) has each
once, with its ``attempt``. Logged as they come, a run with no retry shows "4 attempts on 2
tasks · 2 retries" and the wall lists ``run.completed`` twice.

The rule (:class:`TransitionLog`): an event about a node is a *repeat* when the last event
of the same name logged for the same node, iteration and attempt carried the same state
(and, for approvals, the same decision). Live node events carry neither iteration nor
attempt (``mapEvent`` in the Gateway's ``server/src/gateway.js``), so both are inferred as
the engine numbers them: a node's iteration is the last one its events named
(``node.pending`` carries it), its attempt the last one named (``node.retrying`` carries
the next attempt; durable history rows carry theirs), 1 before any. A retry or a new loop
iteration therefore never looks like a repeat, and a durable history row is a repeat of the
live event it records. ``run.completed`` is a repeat while nothing new happened since the
last one logged with the same status: a new node transition (the run moved again),
``run.started`` or ``run.resumed`` makes the next one news. A rewind starts afresh
(:meth:`TransitionLog.reset`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeAlias

from .vocabulary import APPROVAL_EVENT_PREFIX, NODE_EVENT_PREFIX, RunEventName

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["SHARED_TRANSITION_VALUES", "TransitionLog"]

#: What is compared between two events of the same name on the same node and attempt.
_Value: TypeAlias = tuple[Any, ...]
#: (node id, iteration, attempt, event name)
_Key: TypeAlias = tuple[str, int, int, str]

#: Run events after which the run is moving again: a later ``run.completed`` is news.
_RUN_MOVING = frozenset({RunEventName.RUN_STARTED, RunEventName.RUN_RESUMED})


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


#: The most distinct (state, decision) values a log shares; past it, new ones are kept per entry.
SHARED_TRANSITION_VALUES = 256


class TransitionLog:
    """Remembers the transitions logged for a run and tells repeats apart (see the module doc).

    Feed every run event in arrival order to :meth:`is_repeat`; an event it calls a repeat
    is not a new line in a log, a new attempt on a timeline, or a reason to re-read anything.
    Memory is one small entry per (node, iteration, attempt, event name).

    >>> log = TransitionLog()
    >>> log.is_repeat("node.started", {"nodeId": "build"})
    False
    >>> log.is_repeat("node.started", {"nodeId": "build"})
    True
    >>> log.is_repeat("node.retrying", {"nodeId": "build", "attempt": 2})
    False
    >>> log.is_repeat("node.started", {"nodeId": "build"})
    False
    """

    def __init__(self) -> None:
        self._last: dict[_Key, _Value] = {}
        self._iteration: dict[str, int] = {}
        self._attempt: dict[tuple[str, int], int] = {}
        self._values: dict[_Value, _Value] = {}
        self._run_completed: _Value | None = None

    def reset(self) -> None:
        """Forget everything (a rewind: the run re-executes what it did before)."""
        self._last.clear()
        self._iteration.clear()
        self._attempt.clear()
        self._values.clear()
        self._run_completed = None

    def where(self, payload: Mapping[str, Any]) -> tuple[int, int] | None:
        """The (iteration, attempt) the node of ``payload`` is at, as inferred so far."""
        node = payload.get("nodeId")
        if not isinstance(node, str):
            return None
        iteration = self._iteration.get(node, 0)
        return iteration, self._attempt.get((node, iteration), 1)

    def is_repeat(self, name: str, payload: Mapping[str, Any]) -> bool:
        """True if the event ``name`` with ``payload`` re-emits a transition already logged."""
        if name == RunEventName.RUN_COMPLETED:
            status: _Value = (payload.get("status"),)
            if status == self._run_completed:
                return True
            self._run_completed = status
            return False
        if name in _RUN_MOVING:
            self._run_completed = None
            return False
        node = payload.get("nodeId")
        if not isinstance(node, str) or not name.startswith((NODE_EVENT_PREFIX, APPROVAL_EVENT_PREFIX)):
            return False
        iteration = _int(payload.get("iteration"))
        if iteration is None:
            iteration = self._iteration.get(node, 0)
        else:
            self._iteration[node] = iteration
        attempt = _int(payload.get("attempt"))
        if attempt is None:
            attempt = self._attempt.get((node, iteration), 1)
        else:
            self._attempt[(node, iteration)] = attempt
        key = (node, iteration, attempt, name)
        value = (payload.get("state"), payload.get("approved"))
        if self._last.get(key) == value:
            return True
        try:  # one tuple per distinct value, not per entry; a bounded table (a Gateway's junk states)
            value = (self._values.setdefault(value, value) if len(self._values) < SHARED_TRANSITION_VALUES
                     else self._values.get(value, value))
        except TypeError:  # an unhashable state or decision (a malformed event): kept as it is
            pass
        self._last[key] = value
        if name.startswith(NODE_EVENT_PREFIX):
            self._run_completed = None  # the run moved: a later run.completed is news
        return False

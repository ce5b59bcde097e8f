"""The Gateway's echo of a run's agent events, told apart from news.

Pure (no I/O). Smithers 0.32's Gateway has an *out-of-process event bridge*
(``pollOutOfProcessRunEvents`` in ``server/src/gateway.js``): every second it lists the runs
in the database and, for each run that is not executing in its own process at that moment
(it ended between two polls, waits for an approval or a timer, or runs in another process),
feeds the run's event rows it has not fed yet through the same ``handleSmithersEvent`` as the
engine's own events. A run the engine already streamed is therefore streamed a second time,
with new seqs: the ``gated`` recording's re-emitted transitions, a short run's whole history
again within a second of its end, and with it every ``task.output`` chunk, ``agent.event``
and ``agent.session`` row. The payloads carry no timestamp or row number, so a repeated chunk
is byte-identical to the original and the model's positional deduplication counts it as the
next one (output printed twice). Transcript rows are numbered (``event.sequence``) and the
model keeps one row per number whatever this filter lets through.

The rule (:class:`EchoFilter`): the bridge sends a node's rows in database order, its
transitions first, so an echo of a node's agent events always follows a *repeated*
transition of that node (:class:`inspector.transitions.TransitionLog`). From a node's repeated
transition on, each agent event of that node is compared with the one the same position of
its stream (kind, node, iteration, attempt) held the first time, among the items the stream
had when the echo began (an echo repeats what was sent before it); equal, it is an echo and
dropped. A new transition of the node (a retry, a new iteration, the run going on) ends the
echo. Outside an echo nothing is compared, so a task that prints the same line twice keeps
both. At most :data:`MAX_REMEMBERED` items per stream are remembered (4 bytes each); an echo
longer than that passes its excess through.
"""

from __future__ import annotations

import json
from array import array
from typing import TYPE_CHECKING, Any, Final, TypeAlias

from .transitions import TransitionLog
from .vocabulary import NODE_EVENT_PREFIX, RunEventName

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["MAX_REMEMBERED", "EchoFilter"]

#: Items remembered per (kind, node, iteration, attempt) stream.
MAX_REMEMBERED: Final = 200_000

#: The agent events an echo can repeat (token usage is already first-report-wins).
_AGENT_EVENTS: Final = frozenset({
    RunEventName.TASK_OUTPUT, RunEventName.AGENT_EVENT, RunEventName.AGENT_SESSION,
    RunEventName.AGENT_TRACE, RunEventName.AGENT_TRACE_SUMMARY,
})

_Stream: TypeAlias = tuple[str, str, Any, Any]


def _fingerprint(name: str, payload: Mapping[str, Any]) -> int:
    if name == RunEventName.TASK_OUTPUT:
        key: object = (payload.get("output"), payload.get("stream"))
    else:
        key = json.dumps(payload, sort_keys=True, default=str)
    return hash(key) & 0xFFFFFFFF


class EchoFilter:
    """Feed every live run event in arrival order to :meth:`is_echo` (see the module doc)."""

    def __init__(self) -> None:
        self.transitions = TransitionLog()
        self._first: dict[_Stream, array[int]] = {}
        self._streams: dict[str, list[_Stream]] = {}
        #: Nodes in an echo: each stream's [position in it, items it had when the echo began].
        self._echoing: dict[str, dict[_Stream, list[int]]] = {}
        #: Echoed items dropped so far.
        self.dropped = 0

    def is_echo(self, name: str, payload: Mapping[str, Any]) -> bool:
        """True if ``name`` / ``payload`` repeats an agent event the stream already brought."""
        node = payload.get("nodeId")
        if not isinstance(node, str):
            return False
        if name.startswith(NODE_EVENT_PREFIX):
            if not self.transitions.is_repeat(name, payload):
                self._echoing.pop(node, None)
            elif node not in self._echoing:
                self._echoing[node] = {stream: [0, len(self._first[stream])] for stream in self._streams.get(node, ())}
            return False
        if name not in _AGENT_EVENTS:
            return False
        stream: _Stream = (name, node, payload.get("iteration"), payload.get("attempt"))
        first = self._first.get(stream)
        fingerprint = _fingerprint(name, payload)
        position = self._echoing.get(node, {}).get(stream)
        if position is not None and first is not None:
            at, end = position
            if at < end and first[at] == fingerprint:
                position[0] = at + 1
                self.dropped += 1
                return True
        if first is None:
            first = self._first[stream] = array("I")
            self._streams.setdefault(node, []).append(stream)
        if len(first) < MAX_REMEMBERED:
            first.append(fingerprint)
        return False

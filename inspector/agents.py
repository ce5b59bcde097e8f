"""What every agent of a run did: output, actions, answer, tokens, per attempt and iteration.

Pure (no I/O). :class:`RunAgents` folds a run's events into one :class:`AgentAttempt` per
``(nodeId, iteration, attempt)``, from either source the Gateway offers:

- **live** run events (``streamRunEvents``): ``task.output``, ``agent.event``,
  ``agent.session``, ``agent.trace``, ``agent.trace_summary``, ``token.usage``,
  ``task.heartbeat``, ``node.pending`` / ``node.started`` / ``node.retrying`` /
  ``node.finished`` / ``node.failed`` / ``node.skipped`` / ``node.cancelled``,
  ``run.completed``: feed them with :meth:`RunAgents.apply`;
- **durable** history rows (``GET /v1/api/events``: ``NodeOutput``, ``AgentEvent``,
  ``TokenUsageReported``, ``TaskHeartbeat``, ``NodeStarted``, ...): feed them with
  :meth:`RunAgents.apply_history_row`; and ``listRunTokenUsage`` rows with
  :meth:`RunAgents.apply_token_usage_rows`.

Numbering is Smithers': iterations count from 0, attempts from 1 (``NodeStarted`` of a
retry carries attempt 2, and ``node.retrying`` announces it).

What the live stream leaves out, and how it is filled in (Gateway 0.32 ``mapEvent``):
``task.output``, ``node.started``, ``node.finished`` and ``node.failed`` carry neither
iteration nor attempt. Output and those transitions go to the node's **current attempt**: the
newest one the model knows (``node.pending`` tells the iteration, ``node.retrying`` and the
attempt-carrying events tell the attempt). A live ``node.started`` never creates an attempt
number beyond 1: the live stream re-emits a node's transitions with new seqs (the ``gated``
recording shows ``build`` started at seq 4 and again at 11), so only ``node.retrying`` and the
events that carry an attempt number make a new attempt.

**Deduplication.** Two layers, both documented in :meth:`RunAgents.apply`:

1. *replay*: an event whose ``(source, seq)`` was applied before is dropped. ``seq`` is the
   number the source gives it (the run-event stream's ``seq``, the durable row's ``seq``);
   the numbering of a live stream and of the durable history differ for the same event, hence
   the ``source`` (a restarted Gateway restarts its live numbering: use a new source name).
2. *across sources*: an item is the k-th occurrence of its identity in its source, and the
   k-th occurrence of an identity is applied once, whichever source brings it first. The
   identity of an ``agent.event`` is ``(nodeId, iteration, attempt, the AgentCliEvent's
   canonical JSON)``; of a ``task.output`` it is its **position** among the node's output
   chunks (the node, since live output carries no attempt; the chunk's text is not kept as a
   key, so the memory per node stays constant however much an agent prints); of an
   ``agent.trace`` its position among the attempt's traces. So the live stream and the
   durable history of one run give the same records, and either alone gives them too,
   provided each source brings a node's output from its start (the durable history does; a
   live ``streamRunEvents`` from ``afterSeq`` 0 does while the Gateway's window holds the
   run's start). A token usage is one per attempt (the engine reports it once, on success or
   on failure): the first report of an attempt wins. Heartbeats and node transitions are
   idempotent and need no key.

**Byte cap.** Each attempt keeps at most ``output_cap_bytes`` (UTF-8) of output, the
**newest** ones: when a chunk would exceed the cap, the oldest chunks are dropped whole, and a
single chunk larger than the cap keeps its end, cut after a newline when one is near (so the
kept text starts at a line). :attr:`AgentAttempt.dropped_lines` counts the newlines dropped
("N earlier lines") and :attr:`AgentAttempt.dropped_bytes` their bytes. The model does not
keep the full text of a long attempt: :func:`inspector.agent_history.output_from_history`
rebuilds it, uncapped, from
the durable history (``/v1/api/events``), which is where a download of it comes from.

**Transcript.** ``agent.session`` brings one row of the provider's session transcript per event
(Smithers' ``AgentTraceCollector`` emits an ``AgentSessionEvent`` per structured stdout line of a
``stream-json`` agent, at the end of the attempt). The rows are kept in arrival order, an
event's list of rows extends them, and a row is applied once whichever source brings it and
however often (a stream replayed from its start): the collector numbers an attempt's rows
(``event.sequence``), so a number the attempt holds is not added again; a row without one
is lined up by position, the k-th row of the attempt from any source. At most
:data:`TRANSCRIPT_MAX_ROWS` per attempt (the newest).

**Rewinds.** Smithers' ``jumpToFrame`` deletes the attempts started after the target frame but
keeps every event row (it appends a ``TimeTravelJumped``), so the durable history and
``listRunTokenUsage`` still hold the discarded attempts' output, actions and usage, and a
re-executed task reuses their attempt numbers: :mod:`inspector.agent_history` cuts the
rewound stretches out and folds the rest into a fresh model (:meth:`RunAgents.adopt` puts it in
place), which a live source can continue (:meth:`RunAgents.start_source`).

**Order.** Chunks are kept in arrival order. Smithers 0.32 emits an agent's output chunks
after an asynchronous heartbeat-ownership check per chunk, so a burst of ``onStdout`` calls
can reach the event log out of print order (seen on the real engine: lines 6 and 7 of a
scripted agent logged before lines 0-5); neither source can restore the print order.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal, TypeAlias

from .echoes import EchoFilter
from .pricing import CostEstimate, PriceTable, TokenCounts, estimate_cost

__all__ = [
    "DEFAULT_OUTPUT_CAP_BYTES",
    "DURABLE_EVENT_NAMES",
    "HISTORY_SOURCE",
    "TRANSCRIPT_MAX_ROWS",
    "AgentAction",
    "AgentAttempt",
    "AttemptKey",
    "OutputChunk",
    "RunAgents",
    "UsageRow",
]

#: Output kept per attempt (bytes of UTF-8): 256 KiB, about 3,000 lines of 80 characters.
DEFAULT_OUTPUT_CAP_BYTES: Final = 256 * 1024

#: The ``source`` of durable history rows (:meth:`RunAgents.apply_history_row`).
HISTORY_SOURCE: Final = "history"
#: The source name of ``listRunTokenUsage`` rows.
TOKEN_USAGE_SOURCE: Final = "token-usage"

#: Transcript rows kept per attempt (``agent.session``), the newest.
TRANSCRIPT_MAX_ROWS: Final = 2000

#: ``(nodeId, iteration, attempt)``.
AttemptKey: TypeAlias = tuple[str, int, int]
Stream: TypeAlias = Literal["stdout", "stderr"]
ActionStatus: TypeAlias = Literal["running", "ok", "failed"]
AttemptStatus: TypeAlias = Literal["pending", "running", "finished", "failed", "skipped", "cancelled"]

#: Durable history event names and the live names they correspond to.
DURABLE_EVENT_NAMES: Final[Mapping[str, str]] = {
    "NodeOutput": "task.output",
    "AgentEvent": "agent.event",
    "AgentSessionEvent": "agent.session",
    "AgentTraceEvent": "agent.trace",
    "AgentTraceSummary": "agent.trace_summary",
    "TokenUsageReported": "token.usage",
    "TaskHeartbeat": "task.heartbeat",
    "NodePending": "node.pending",
    "NodeStarted": "node.started",
    "NodeRetrying": "node.retrying",
    "NodeFinished": "node.finished",
    "NodeFailed": "node.failed",
    "NodeSkipped": "node.skipped",
    "NodeCancelled": "node.cancelled",
    "RunStarted": "run.started",
    "RunFinished": "run.completed",
    "RunFailed": "run.completed",
    "RunCancelled": "run.completed",
}

_FINAL_STATES: Final = frozenset({"finished", "failed", "skipped", "cancelled"})
#: When one chunk exceeds the cap, how far into its kept end a newline is looked for (the
#: kept text then starts at a line instead of in the middle of one, or of an escape sequence).
_LINE_SEARCH_BYTES: Final = 4096


@dataclass(frozen=True, slots=True)
class OutputChunk:
    """One ``task.output`` / ``NodeOutput`` piece, as the agent printed it (escapes included)."""

    stream: Stream
    text: str
    t_ms: float | None = None

    @property
    def size(self) -> int:
        return len(self.text.encode("utf-8", errors="replace"))


@dataclass(slots=True)
class AgentAction:
    """A tool call or other action an agent reported (AgentCliEvent ``action``), by its id.

    Phases may arrive out of order (the engine logs them asynchronously): a ``completed``
    phase decides the status for good; ``started`` only fills in the start time.
    """

    id: str
    kind: str = "unknown"
    title: str = ""
    status: ActionStatus = "running"
    started_ms: float | None = None
    finished_ms: float | None = None
    message: str | None = None
    level: str | None = None
    detail: Mapping[str, Any] | None = None
    updates: int = 0

    @property
    def duration_ms(self) -> float | None:
        if self.started_ms is None or self.finished_ms is None:
            return None
        return max(0.0, self.finished_ms - self.started_ms)


@dataclass(slots=True)
class AgentAttempt:
    """Everything known about one attempt of one iteration of one agent task."""

    node_id: str
    iteration: int
    attempt: int
    status: AttemptStatus = "pending"
    engine: str | None = None
    agent: str | None = None
    model: str | None = None
    title: str | None = None
    started_ms: float | None = None
    finished_ms: float | None = None
    #: The retained output, oldest first: ``()`` while there is none (every task of a run has an
    #: attempt, most never print; an empty deque is ~0.6 KB, ~1 MB for a 1,500-task run).
    chunks: deque[OutputChunk] | tuple[()] = ()
    retained_bytes: int = 0
    total_bytes: int = 0
    total_chunks: int = 0
    dropped_bytes: int = 0
    dropped_lines: int = 0
    actions: dict[str, AgentAction] = field(default_factory=dict)
    answer: str | None = None
    error: str | None = None
    ok: bool | None = None
    usage: TokenCounts | None = None
    usage_ms: float | None = None
    transcript: list[Any] = field(default_factory=list)
    transcript_dropped: int = 0
    #: The collector's numbers (``event.sequence``) of the rows applied, dropped ones included.
    transcript_sequences: set[int] | frozenset[int] = field(default=frozenset(), repr=False, compare=False)
    trace_events: int = 0
    trace_summary: Mapping[str, Any] | None = None
    last_heartbeat_ms: float | None = None
    heartbeats: int = 0
    agent_events: int = 0

    @property
    def key(self) -> AttemptKey:
        return (self.node_id, self.iteration, self.attempt)

    def text(self, stream: Stream | None = None) -> str:
        """The retained output (both streams interleaved, or one), escapes included."""
        return "".join(c.text for c in self.chunks if stream is None or c.stream == stream)

    def actions_in_order(self) -> list[AgentAction]:
        """Actions by start time (those without one last, in arrival order)."""
        order = {action_id: i for i, action_id in enumerate(self.actions)}
        return sorted(self.actions.values(), key=lambda a: (
            a.started_ms if a.started_ms is not None else (a.finished_ms if a.finished_ms is not None else float("inf")),
            order[a.id]))

    @property
    def truncated(self) -> bool:
        return self.dropped_bytes > 0

    def _append(self, chunk: OutputChunk, cap: int) -> None:
        size = chunk.size
        self.total_bytes += size
        self.total_chunks += 1
        cut = size > cap
        if cut:
            chunk = self._tail_of(chunk, cap)
            size = chunk.size
        # A chunk cut at its start leaves nothing older to keep: the kept text stays contiguous.
        chunks = self.chunks
        while chunks and (cut or self.retained_bytes + size > cap):
            old = chunks.popleft()
            self.retained_bytes -= old.size
            self._drop(old.text)
        if chunk.text:
            if not chunks:
                chunks = self.chunks = deque()
            chunks.append(chunk)
            self.retained_bytes += size
        elif not chunks:
            self.chunks = ()  # empty is always (): attempts compare equal however they got there

    def _drop(self, text: str) -> None:
        self.dropped_bytes += len(text.encode("utf-8", errors="replace"))
        self.dropped_lines += text.count("\n")

    def _tail_of(self, chunk: OutputChunk, cap: int) -> OutputChunk:
        """The end of an over-cap chunk (at most ``cap`` bytes), starting at a line if it can."""
        data = chunk.text.encode("utf-8", errors="replace")
        tail = data[-cap:] if cap > 0 else b""
        newline = tail.find(b"\n", 0, _LINE_SEARCH_BYTES)
        if 0 <= newline < len(tail) - 1:
            tail = tail[newline + 1 :]
        kept = tail.decode("utf-8", errors="ignore")  # a character cut in two is dropped whole
        self._drop(chunk.text[: len(chunk.text) - len(kept)])
        return OutputChunk(chunk.stream, kept, chunk.t_ms)


@dataclass(frozen=True, slots=True)
class UsageRow:
    """One attempt's token usage, as ``listRunTokenUsage`` lists it."""

    node_id: str
    iteration: int
    attempt: int
    agent: str | None
    model: str | None
    tokens: TokenCounts
    t_ms: float | None


class _SeqSet:
    """The seqs seen from one source, in memory proportional to the gaps, not to the count:
    everything up to ``floor`` was seen, and ``above`` holds the seen seqs past it."""

    __slots__ = ("above", "floor")

    def __init__(self) -> None:
        self.floor = -1
        self.above: set[int] = set()

    def add(self, seq: int) -> bool:
        """Note ``seq``; false if it was seen before."""
        if seq <= self.floor or seq in self.above:
            return False
        if seq == self.floor + 1:
            self.floor = seq
            while self.floor + 1 in self.above:
                self.floor += 1
                self.above.discard(self.floor)
        else:
            self.above.add(seq)
        return True


def _int(value: object, default: int | None = None) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _transcript_sequence(row: object) -> int | None:
    """The collector's number of a transcript row (``event.sequence``), if it has one."""
    event = row.get("event") if isinstance(row, Mapping) else None
    return _int(event.get("sequence")) if isinstance(event, Mapping) else None


def _num(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _str(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _error_text(error: object) -> str | None:
    if isinstance(error, str):
        return error
    if isinstance(error, Mapping):
        message = error.get("message")
        return str(message) if message is not None else json.dumps(error, default=str)[:2000]
    return None


class RunAgents:
    """The agents of one run, folded from its events (see the module docstring for the rules).

    ``version`` goes up by one for every event that changed something, so a view can tell
    whether to redraw.
    """

    def __init__(self, run_id: str | None = None, *, output_cap_bytes: int = DEFAULT_OUTPUT_CAP_BYTES) -> None:
        if output_cap_bytes < 0:
            raise ValueError("output_cap_bytes must be >= 0")
        self.run_id = run_id
        self.output_cap_bytes = output_cap_bytes
        self.attempts: dict[AttemptKey, AgentAttempt] = {}
        self.version = 0
        self.run_started_ms: float | None = None
        self.run_finished_ms: float | None = None
        self.run_status: str | None = None
        self._seen: dict[str, _SeqSet] = {}
        self._echoes: dict[str, EchoFilter] = {}  # per live source: the Gateway's echo (inspector.echoes)
        self._positions: dict[tuple[str, object], int] = {}  # (source, scope) -> items seen
        self._applied: dict[object, int] = {}  # scope -> items applied
        self._cursor: dict[tuple[str, str], tuple[int, int | None]] = {}  # (source, node) -> (iteration, attempt)
        self._latest: dict[str, AttemptKey] = {}

    # ------------------------------------------------------------------ feeding

    def apply(
        self,
        event: str,
        payload: Mapping[str, Any],
        *,
        seq: int | None = None,
        source: str = "live",
        t_ms: float | None = None,
    ) -> AttemptKey | None:
        """Fold one run event; return the attempt it changed (``None``: nothing, or not an attempt).

        ``seq`` is the event's number in ``source`` (dropped if already applied: layer 1 of
        the dedup; the Gateway's echo of a live source is dropped too, see
        :mod:`inspector.echoes`); ``t_ms`` its time on the Gateway's clock when the payload has none
        (``timestampMs`` in the payload wins). Events of another run are ignored.
        """
        if not isinstance(payload, Mapping):
            return None
        run_id = payload.get("runId")
        if self.run_id is not None and isinstance(run_id, str) and run_id != self.run_id:
            return None
        if seq is not None and not self._seen.setdefault(source, _SeqSet()).add(seq):
            return None
        if source not in _UNECHOED and self._echoes.setdefault(source, EchoFilter()).is_echo(event, payload):
            return None
        at = _num(payload.get("timestampMs"))
        at = at if at is not None else t_ms
        if at is not None and (self.run_started_ms is None or at < self.run_started_ms):
            self.run_started_ms = at
        handler = _HANDLERS.get(event)
        if handler is None:
            return None
        changed = handler(self, payload, source, at)
        if changed is None:
            return None
        self.version += 1
        return changed.key

    def apply_history_row(self, row: Mapping[str, Any]) -> AttemptKey | None:
        """Fold one durable history row (``{"seq", "event", "payload", "timestampMs"}``)."""
        name = DURABLE_EVENT_NAMES.get(str(row.get("event")))
        payload = row.get("payload")
        if name is None or not isinstance(payload, Mapping):
            return None
        if name == "task.output" and "output" not in payload:
            payload = {**payload, "output": payload.get("text")}
        if name == "run.completed" and "status" not in payload:
            status = {"RunFinished": "finished", "RunFailed": "failed", "RunCancelled": "cancelled"}
            payload = {**payload, "status": status[str(row.get("event"))]}
        return self.apply(name, payload, seq=_int(row.get("seq")), source=HISTORY_SOURCE, t_ms=_num(row.get("timestampMs")))

    def apply_history(self, rows: Iterable[Mapping[str, Any]]) -> set[AttemptKey]:
        """Fold durable history rows (in ``seq`` order); the attempts they changed."""
        def seq_of(row: Mapping[str, Any]) -> int:
            seq = _int(row.get("seq"))
            return seq if seq is not None else -1

        ordered = sorted(rows, key=seq_of)
        return {key for row in ordered if (key := self.apply_history_row(row)) is not None}

    def apply_token_usage_rows(self, rows: Iterable[Mapping[str, Any]]) -> set[AttemptKey]:
        """Fold ``listRunTokenUsage``'s ``events`` (one per attempt; first report wins)."""
        changed = set()
        for row in rows:
            key = self.apply("token.usage", row, source=TOKEN_USAGE_SOURCE)
            if key is not None:
                changed.add(key)
        return changed

    def start_source(self, source: str, like: str) -> None:
        """Count ``source`` as having brought, so far, what ``like`` brought: its next item
        of an output, action or transcript row lines up with ``like``'s next one. For a live
        stream that starts where the history stands (after a rewind, see
        :func:`inspector.agent_history.rebuilt_agents`)."""
        for (name, scope), count in list(self._positions.items()):
            if name == like:
                self._positions[(source, scope)] = count

    def adopt(self, other: RunAgents) -> None:
        """Become ``other`` (a rebuilt model) in place, so every holder of this object
        sees the run as ``other`` has it; ``version`` still only goes up."""
        version = self.version
        state = vars(self)
        state.clear()
        state.update(vars(other))
        self.version = version + other.version + 1

    # ------------------------------------------------------------------ reading

    def attempt(self, node_id: str, iteration: int = 0, attempt: int = 1) -> AgentAttempt | None:
        return self.attempts.get((node_id, iteration, attempt))

    def attempts_of(self, node_id: str, iteration: int | None = None) -> list[AgentAttempt]:
        """A node's attempts (of one iteration, or all), by iteration then attempt."""
        found = [a for a in self.attempts.values() if a.node_id == node_id and (iteration is None or a.iteration == iteration)]
        return sorted(found, key=lambda a: (a.iteration, a.attempt))

    def latest(self, node_id: str) -> AgentAttempt | None:
        """The node's current attempt (newest iteration, newest attempt)."""
        key = self._latest.get(node_id)
        return self.attempts.get(key) if key is not None else None

    def __iter__(self) -> Iterator[AgentAttempt]:
        return iter(sorted(self.attempts.values(), key=lambda a: a.key))

    def __len__(self) -> int:
        return len(self.attempts)

    def attempt_counts(self) -> tuple[int, int]:
        """``(attempts, retries)`` from attempt numbers: per node and iteration, its highest
        attempt number counts that many attempts, of which all but one are retries (re-emitted
        live transitions never add any)."""
        highest: dict[tuple[str, int], int] = {}
        for node_id, iteration, number in self.attempts:
            highest[(node_id, iteration)] = max(number, highest.get((node_id, iteration), 0))
        attempts = sum(highest.values())
        return attempts, attempts - len(highest)

    def usage_rows(self) -> list[UsageRow]:
        """Every attempt's usage, in time order (ties by node, iteration, attempt)."""
        rows = [
            UsageRow(a.node_id, a.iteration, a.attempt, a.agent, a.model, a.usage, a.usage_ms)
            for a in self.attempts.values()
            if a.usage is not None
        ]
        return sorted(rows, key=lambda r: (r.t_ms if r.t_ms is not None else float("inf"), r.node_id, r.iteration, r.attempt))

    def totals(self) -> TokenCounts:
        total = TokenCounts()
        for row in self.usage_rows():
            total = total + row.tokens
        return total

    def _by(self, key: str) -> dict[str, TokenCounts]:
        out: dict[str, TokenCounts] = {}
        for row in self.usage_rows():
            name = {"node": row.node_id, "agent": row.agent, "model": row.model}[key] or "unknown"
            out[name] = out.get(name, TokenCounts()) + row.tokens
        return out

    def by_node(self) -> dict[str, TokenCounts]:
        """Tokens per node id (all iterations and attempts)."""
        return self._by("node")

    def by_agent(self) -> dict[str, TokenCounts]:
        """Tokens per agent id (``token.usage``'s ``agent``)."""
        return self._by("agent")

    def by_model(self) -> dict[str, TokenCounts]:
        """Tokens per model id as reported (date suffixes kept)."""
        return self._by("model")

    def burn_series(self) -> list[tuple[float, int]]:
        """``(t_ms, cumulative tokens)`` at each usage report with a time (for a burn chart)."""
        series: list[tuple[float, int]] = []
        total = 0
        for row in self.usage_rows():
            if row.t_ms is None:
                continue
            total += row.tokens.total
            series.append((row.t_ms, total))
        return series

    def burn_rate(self, now_ms: float | None = None) -> float | None:
        """Tokens per minute over the run: all tokens over the time from the run's first event
        to ``now_ms`` (a live run), else to the run's end or its last usage report."""
        series = self.burn_series()
        if not series or self.run_started_ms is None:
            return None
        end = now_ms if now_ms is not None else (self.run_finished_ms or series[-1][0])
        minutes = (end - self.run_started_ms) / 60_000
        if minutes <= 0:
            return None
        return self.totals().total / minutes

    def cost(self, table: PriceTable) -> CostEstimate:
        """The run's estimated cost by Smithers' formula, with unpriced tokens kept apart."""
        return estimate_cost(((row.model, row.tokens) for row in self.usage_rows()), table)

    # ------------------------------------------------------------------ internals

    def _get(self, node_id: str, iteration: int, attempt: int) -> AgentAttempt:
        key = (node_id, iteration, attempt)
        found = self.attempts.get(key)
        if found is None:
            found = self.attempts[key] = AgentAttempt(node_id, iteration, attempt)
            latest = self._latest.get(node_id)
            if latest is None or (iteration, attempt) > latest[1:]:
                self._latest[node_id] = key
        return found

    def _target(self, payload: Mapping[str, Any], source: str, *, create: bool = True) -> AgentAttempt | None:
        """The attempt an event is about: its own numbers, else the node's current attempt in
        ``source`` (what that source said last about the node), else the node's newest."""
        node_id = _str(payload.get("nodeId"))
        if node_id is None:
            return None
        iteration = _int(payload.get("iteration"))
        number = _int(payload.get("attempt"))
        if iteration is not None and number is not None:
            self._cursor[(source, node_id)] = (iteration, number)
            return self._get(node_id, iteration, number)
        cursor = self._cursor.get((source, node_id))
        if cursor is not None and (iteration is None or cursor[0] == iteration):
            key = (node_id, cursor[0], cursor[1] or 1)
            if cursor[1] is None:
                self._cursor[(source, node_id)] = (cursor[0], 1)
            return self._get(*key) if create or key in self.attempts else None
        latest = self.latest(node_id)
        if latest is not None and (iteration is None or latest.iteration == iteration):
            return latest
        if not create:
            return None
        return self._get(node_id, iteration if iteration is not None else 0, 1)

    def _next_position(self, source: str, scope: object) -> bool:
        """Count one item of ``scope`` in ``source``; true if it was not applied from any source."""
        position = self._positions.get((source, scope), 0) + 1
        self._positions[(source, scope)] = position
        if position <= self._applied.get(scope, 0):
            return False
        self._applied[scope] = position
        return True

    def _on_output(self, payload: Mapping[str, Any], source: str, at: float | None) -> AgentAttempt | None:
        text = payload.get("output")
        node_id = _str(payload.get("nodeId"))
        if not isinstance(text, str) or node_id is None:
            return None
        if not self._next_position(source, ("output", node_id)):
            return None
        attempt = self._target(payload, source)
        if attempt is None:
            return None
        stream: Stream = "stderr" if payload.get("stream") == "stderr" else "stdout"
        attempt._append(OutputChunk(stream, text, at), self.output_cap_bytes)
        if attempt.status == "pending":
            attempt.status = "running"
        return attempt

    def _on_agent_event(self, payload: Mapping[str, Any], source: str, at: float | None) -> AgentAttempt | None:
        attempt = self._target(payload, source)
        event = payload.get("event")
        if attempt is None or not isinstance(event, Mapping):
            return None
        identity = hash(json.dumps(event, sort_keys=True, separators=(",", ":"), default=str))
        if not self._next_position(source, ("agent", attempt.key, identity)):
            return None
        attempt.agent_events += 1
        attempt.engine = _str(payload.get("engine")) or _str(event.get("engine")) or attempt.engine
        kind = event.get("type")
        if kind == "started":
            attempt.title = _str(event.get("title")) or attempt.title
            if attempt.status == "pending":
                attempt.status = "running"
        elif kind == "action":
            self._on_action(attempt, event, at)
        elif kind == "completed":
            ok = event.get("ok")
            attempt.ok = ok if isinstance(ok, bool) else attempt.ok
            attempt.answer = _str(event.get("answer")) or attempt.answer
            attempt.error = _str(event.get("error")) or attempt.error
        return attempt

    @staticmethod
    def _on_action(attempt: AgentAttempt, event: Mapping[str, Any], at: float | None) -> None:
        raw = event.get("action")
        if not isinstance(raw, Mapping) or not isinstance(raw.get("id"), str):
            return
        action = attempt.actions.get(raw["id"])
        if action is None:
            action = attempt.actions[raw["id"]] = AgentAction(raw["id"])
        action.kind = _str(raw.get("kind")) or action.kind
        action.title = _str(raw.get("title")) or action.title
        if isinstance(raw.get("detail"), Mapping):
            action.detail = raw["detail"]
        action.message = _str(event.get("message")) or action.message
        action.level = _str(event.get("level")) or action.level
        phase = event.get("phase")
        if phase == "started":
            if at is not None and (action.started_ms is None or at < action.started_ms):
                action.started_ms = at
        elif phase == "updated":
            action.updates += 1
            if action.started_ms is None and at is not None and action.status == "running":
                action.started_ms = at
        elif phase == "completed":
            action.status = "failed" if event.get("ok") is False else "ok"
            if at is not None:
                action.finished_ms = at

    def _on_usage(self, payload: Mapping[str, Any], source: str, at: float | None) -> AgentAttempt | None:
        attempt = self._target(payload, source)
        if attempt is None or attempt.usage is not None:
            return None
        attempt.usage = TokenCounts.from_payload(payload)
        attempt.usage_ms = at
        attempt.model = _str(payload.get("model")) or attempt.model
        attempt.agent = _str(payload.get("agent")) or attempt.agent
        return attempt

    def _on_session(self, payload: Mapping[str, Any], source: str, at: float | None) -> AgentAttempt | None:
        attempt = self._target(payload, source)
        if attempt is None or "transcript" not in payload:
            return None
        rows = payload["transcript"]
        fresh = []
        for row in rows if isinstance(rows, list) else [rows]:
            new_position = self._next_position(source, ("session", attempt.key))
            sequence = _transcript_sequence(row)
            if sequence is None:
                if new_position:
                    fresh.append(row)
            elif sequence not in attempt.transcript_sequences:
                seen = attempt.transcript_sequences
                if not isinstance(seen, set):
                    seen = attempt.transcript_sequences = set()
                seen.add(sequence)
                fresh.append(row)
        if not fresh:
            return None
        attempt.transcript.extend(fresh)
        over = len(attempt.transcript) - TRANSCRIPT_MAX_ROWS
        if over > 0:
            del attempt.transcript[:over]
            attempt.transcript_dropped += over
        return attempt

    def _on_trace(self, payload: Mapping[str, Any], source: str, at: float | None) -> AgentAttempt | None:
        attempt = self._target(payload, source)
        if attempt is None or not self._next_position(source, ("trace", attempt.key)):
            return None
        attempt.trace_events += 1
        return attempt

    def _on_trace_summary(self, payload: Mapping[str, Any], source: str, at: float | None) -> AgentAttempt | None:
        attempt = self._target(payload, source)
        summary = payload.get("summary")
        if attempt is None or not isinstance(summary, Mapping):
            return None
        attempt.trace_summary = summary
        attempt.model = attempt.model or _str(summary.get("model"))
        attempt.agent = attempt.agent or _str(summary.get("agentId"))
        return attempt

    def _on_heartbeat(self, payload: Mapping[str, Any], source: str, at: float | None) -> AgentAttempt | None:
        attempt = self._target(payload, source)
        if attempt is None:
            return None
        attempt.heartbeats += 1
        if at is not None and (attempt.last_heartbeat_ms is None or at > attempt.last_heartbeat_ms):
            attempt.last_heartbeat_ms = at
        return attempt

    def _on_pending(self, payload: Mapping[str, Any], source: str, at: float | None) -> AgentAttempt | None:
        node_id = _str(payload.get("nodeId"))
        iteration = _int(payload.get("iteration"))
        if node_id is not None and iteration is not None:
            self._cursor[(source, node_id)] = (iteration, None)
        return None

    def _on_started(self, payload: Mapping[str, Any], source: str, at: float | None) -> AgentAttempt | None:
        # Live (no numbers): attempt 1 of the iteration last pending, or the source's current
        # attempt; a re-emission finds an existing attempt and changes nothing but its time.
        attempt = self._target(payload, source)
        if attempt is None:
            return None
        changed = attempt.status == "pending" or (at is not None and attempt.started_ms is None)
        if attempt.status == "pending":
            attempt.status = "running"
        if at is not None and attempt.started_ms is None:
            attempt.started_ms = at
        return attempt if changed else None

    def _on_retrying(self, payload: Mapping[str, Any], source: str, at: float | None) -> AgentAttempt | None:
        node_id = _str(payload.get("nodeId"))
        number = _int(payload.get("attempt"))
        if node_id is None or number is None:
            return None
        iteration = _int(payload.get("iteration"))
        if iteration is None:
            cursor = self._cursor.get((source, node_id))
            latest = self.latest(node_id)
            iteration = cursor[0] if cursor is not None else (latest.iteration if latest is not None else 0)
        self._cursor[(source, node_id)] = (iteration, number)
        for earlier in self.attempts_of(node_id, iteration):
            if earlier.attempt < number and earlier.status not in _FINAL_STATES:
                earlier.status = "failed"
        return self._get(node_id, iteration, number)

    def _end(self, payload: Mapping[str, Any], source: str, at: float | None, state: AttemptStatus) -> AgentAttempt | None:
        attempt = self._target(payload, source, create=state != "skipped")
        if attempt is None:
            return None
        if _int(payload.get("attempt")) is None and attempt.status in _FINAL_STATES:
            return None  # a live re-emission of a transition already applied
        attempt.status = state
        if at is not None:
            attempt.finished_ms = at
        if state == "failed":
            attempt.error = attempt.error or _error_text(payload.get("error"))
            attempt.ok = False if attempt.ok is None else attempt.ok
        return attempt

    def _on_finished(self, payload: Mapping[str, Any], source: str, at: float | None) -> AgentAttempt | None:
        return self._end(payload, source, at, "finished")

    def _on_failed(self, payload: Mapping[str, Any], source: str, at: float | None) -> AgentAttempt | None:
        return self._end(payload, source, at, "failed")

    def _on_skipped(self, payload: Mapping[str, Any], source: str, at: float | None) -> AgentAttempt | None:
        return self._end(payload, source, at, "skipped")

    def _on_cancelled(self, payload: Mapping[str, Any], source: str, at: float | None) -> AgentAttempt | None:
        return self._end(payload, source, at, "cancelled")

    def _on_run_started(self, payload: Mapping[str, Any], source: str, at: float | None) -> AgentAttempt | None:
        return None

    def _on_run_completed(self, payload: Mapping[str, Any], source: str, at: float | None) -> AgentAttempt | None:
        self.run_status = _str(payload.get("status")) or self.run_status
        if at is not None:
            self.run_finished_ms = max(at, self.run_finished_ms or at)
        return None


_Handler: TypeAlias = Callable[[RunAgents, Mapping[str, Any], str, "float | None"], "AgentAttempt | None"]

#: Live event name -> the method folding it.
#: Sources the Gateway's bridge does not echo: each of their rows comes once.
_UNECHOED: Final = frozenset({HISTORY_SOURCE, TOKEN_USAGE_SOURCE})

_HANDLERS: Final[Mapping[str, _Handler]] = {
    "task.output": RunAgents._on_output,
    "agent.event": RunAgents._on_agent_event,
    "agent.session": RunAgents._on_session,
    "agent.trace": RunAgents._on_trace,
    "agent.trace_summary": RunAgents._on_trace_summary,
    "token.usage": RunAgents._on_usage,
    "task.heartbeat": RunAgents._on_heartbeat,
    "node.pending": RunAgents._on_pending,
    "node.started": RunAgents._on_started,
    "node.retrying": RunAgents._on_retrying,
    "node.finished": RunAgents._on_finished,
    "node.failed": RunAgents._on_failed,
    "node.skipped": RunAgents._on_skipped,
    "node.cancelled": RunAgents._on_cancelled,
    "run.started": RunAgents._on_run_started,
    "run.completed": RunAgents._on_run_completed,
}

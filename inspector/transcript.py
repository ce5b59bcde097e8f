"""Wire transcripts: read, write and make sense of recorded Gateway sessions.

A transcript is JSON Lines, one WebSocket message per line, in arrival order::

    {"t": <ms since this session's socket opened>, "dir": "send" | "recv", "frame": {...}}

Several sessions may follow each other in one file; each starts again at a
``connect.challenge`` (whose payload carries the Gateway's wall clock, ``ts``).

This module is pure apart from file I/O. It does three things:

- :func:`read_transcript` / :func:`split_sessions` / :func:`write_transcript` move lines
  between files and :class:`TranscriptLine` values;
- :func:`extract_runs` turns sessions into one :class:`RecordedRun` per ``runId``: the
  DevTools events in order with their timing, the run/node events with theirs, and the
  recorded RPC answers, so :mod:`inspector.replay` can play the run back as if it were live;
- :class:`TranscriptWriter` appends lines while a client talks to a Gateway (the
  ``record`` command), so today's session becomes tomorrow's offline fixture.

Why per run and not per session: a run's history may be spread over sessions (the
rewind fixture runs ``rich`` in one session and rewinds it from another), and a replay
serves runs, not sockets. Extraction therefore stitches the sessions together on the
Gateway's clock and drops what a second subscription merely repeats (the baseline
snapshot a re-subscribe gets, run events two sockets both saw).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any, Final, Literal, TypeAlias

from .errors import DevToolsError, ProtocolError
from .protocol import EventFrame, decode_frame, unwrap_run_event
from .tree import DevToolsTree
from .vocabulary import RunEventName, RunStatus

__all__ = [
    "RecordedAnswer",
    "RecordedRun",
    "RpcKey",
    "Session",
    "TimedDevToolsEvent",
    "TimedRunEvent",
    "TranscriptLine",
    "TranscriptWriter",
    "extract_runs",
    "load_runs",
    "load_sessions",
    "merge_runs",
    "parse_transcript",
    "read_transcript",
    "rpc_key",
    "split_sessions",
    "write_transcript",
]

Direction: TypeAlias = Literal["send", "recv"]

#: ``(method, ((param path, JSON value), ...))``: how a recorded answer is looked up.
RpcKey: TypeAlias = tuple[str, tuple[tuple[str, str], ...]]

#: Events that are about the connection, not about a run.
_CONNECTION_EVENTS: Final = frozenset(
    {RunEventName.CONNECT_CHALLENGE, RunEventName.TICK, RunEventName.DEVTOOLS_EVENT, RunEventName.DEVTOOLS_ERROR}
)

#: Two sockets that both saw one run event saw it within this many ms of each other.
_DUPLICATE_WINDOW_MS: Final = 250.0


# --------------------------------------------------------------------------- lines and sessions


@dataclass(frozen=True, slots=True)
class TranscriptLine:
    """One recorded WebSocket message."""

    t: float
    dir: Direction
    frame: Mapping[str, Any]

    def to_json(self) -> str:
        t: float | int = int(self.t) if float(self.t).is_integer() else self.t
        return json.dumps({"t": t, "dir": self.dir, "frame": self.frame}, separators=(",", ":"))


@dataclass(frozen=True, slots=True)
class Session:
    """One socket's lines, from its ``connect.challenge`` on.

    ``started_at_ms`` is the Gateway's wall clock when the socket opened (the
    challenge's ``ts``), or ``None`` when the transcript does not say.
    """

    index: int
    lines: tuple[TranscriptLine, ...]
    started_at_ms: float | None = None

    @property
    def duration_ms(self) -> float:
        return self.lines[-1].t if self.lines else 0.0


def parse_transcript(lines: Iterable[str], *, source: str = "<transcript>") -> list[TranscriptLine]:
    """Parse JSONL text lines; blank lines are skipped, anything else malformed raises.

    Raises :class:`~inspector.errors.ProtocolError` naming the line, because a fixture
    that silently loses a frame makes every test built on it lie.
    """
    out: list[TranscriptLine] = []
    for number, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        try:
            obj = json.loads(text)
        except ValueError as exc:
            raise ProtocolError(f"{source}:{number}: not valid JSON ({exc})") from None
        out.append(_line_from_object(obj, f"{source}:{number}"))
    return out


def _line_from_object(obj: object, where: str) -> TranscriptLine:
    if not isinstance(obj, Mapping):
        raise ProtocolError(f"{where}: a line must be a JSON object")
    t = obj.get("t")
    direction = obj.get("dir")
    frame = obj.get("frame")
    if isinstance(t, bool) or not isinstance(t, int | float):
        raise ProtocolError(f"{where}: 't' must be a number of milliseconds")
    if direction not in ("send", "recv"):
        raise ProtocolError(f"{where}: 'dir' must be 'send' or 'recv'")
    if not isinstance(frame, Mapping):
        raise ProtocolError(f"{where}: 'frame' must be a JSON object")
    return TranscriptLine(t=float(t), dir=direction, frame=frame)


def read_transcript(path: str | Path) -> list[TranscriptLine]:
    """Every line of a ``.jsonl`` transcript file."""
    p = Path(path)
    with p.open(encoding="utf-8") as fh:
        return parse_transcript(fh, source=p.name)


def write_transcript(path: str | Path, lines: Iterable[TranscriptLine]) -> None:
    """Write lines as a transcript file (replacing it)."""
    with Path(path).open("w", encoding="utf-8") as fh:
        for line in lines:
            fh.write(line.to_json() + "\n")


def _is_challenge(line: TranscriptLine) -> bool:
    frame = line.frame
    return line.dir == "recv" and frame.get("type") == "event" and frame.get("event") == RunEventName.CONNECT_CHALLENGE


def _challenge_ts(line: TranscriptLine) -> float | None:
    payload = line.frame.get("payload")
    ts = payload.get("ts") if isinstance(payload, Mapping) else None
    return float(ts) if isinstance(ts, int | float) and not isinstance(ts, bool) else None


def split_sessions(lines: Sequence[TranscriptLine]) -> list[Session]:
    """Cut lines into sessions, each starting at a ``connect.challenge``.

    Lines before the first challenge (a transcript recorded without it) form a
    session of their own.
    """
    groups: list[list[TranscriptLine]] = []
    for line in lines:
        if not groups or (_is_challenge(line) and groups[-1]):
            groups.append([])
        groups[-1].append(line)
    return [
        Session(i, tuple(group), _challenge_ts(group[0]) if _is_challenge(group[0]) else None)
        for i, group in enumerate(groups)
    ]


def load_sessions(path: str | Path) -> list[Session]:
    """The sessions of a transcript file."""
    return split_sessions(read_transcript(path))


# --------------------------------------------------------------------------- recorded runs


@dataclass(frozen=True, slots=True)
class TimedDevToolsEvent:
    """A DevTools event (``{"version":1,"kind":"snapshot"|"delta",...}``) at ``t_ms`` into the run."""

    t_ms: float
    event: Mapping[str, Any]

    @property
    def kind(self) -> str:
        return str(self.event.get("kind"))

    @property
    def seq(self) -> int:
        """The seq the tree has after this event."""
        body = self.event.get("snapshot") if self.kind == "snapshot" else self.event.get("delta")
        assert isinstance(body, Mapping)
        return int(body["seq"])


@dataclass(frozen=True, slots=True)
class TimedRunEvent:
    """A run-scoped event (``node.started``, ``run.completed``, ...) at ``t_ms`` into the run."""

    t_ms: float
    event: str
    payload: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class RecordedAnswer:
    """What the Gateway answered to one request: a payload, or an ``error`` object."""

    ok: bool
    payload: Any = None
    error: Mapping[str, Any] | None = None

    @property
    def code(self) -> str | None:
        return str(self.error.get("code")) if self.error else None


def _key_items(value: Mapping[str, Any], prefix: str, out: list[tuple[str, str]]) -> None:
    for key, item in value.items():
        if key == "runId":
            continue
        path = f"{prefix}{key}"
        if isinstance(item, Mapping):
            _key_items(item, path + ".", out)
        elif item is not None:
            out.append((path, json.dumps(item, sort_keys=True)))


def rpc_key(method: str, params: Mapping[str, Any] | None) -> RpcKey:
    """The lookup key of a request: its method and every param except ``runId``.

    ``runId`` is left out because the answers belong to one run already (and a replay
    serves them under a new id). Nested objects (``filter``) are flattened to dotted
    paths; ``None`` values count as absent.

    >>> rpc_key("getNodeOutput", {"runId": "r", "nodeId": "a", "iteration": 0})
    ('getNodeOutput', (('iteration', '0'), ('nodeId', '"a"')))
    """
    items: list[tuple[str, str]] = []
    _key_items(params or {}, "", items)
    return method, tuple(sorted(items))


@dataclass(frozen=True)
class RecordedRun:
    """Everything a transcript says about one run, on the run's own clock.

    ``t_ms`` values count from the first thing seen of the run (its first DevTools or
    run event); ``origin_epoch_ms`` is that moment on the Gateway's wall clock when the
    transcript carries one, so recorded timestamps (``scoredAtMs``) can be placed on the
    same timeline. ``devtools`` always starts with a snapshot when it is not empty.
    """

    run_id: str
    workflow: str | None = None
    origin_epoch_ms: float | None = None
    devtools: tuple[TimedDevToolsEvent, ...] = ()
    run_events: tuple[TimedRunEvent, ...] = ()
    answers: Mapping[RpcKey, RecordedAnswer] = field(default_factory=dict)
    row: Mapping[str, Any] | None = None
    hello: Mapping[str, Any] | None = None
    source: str | None = None

    @property
    def replayable(self) -> bool:
        """True when there is a tree to replay (at least one DevTools event)."""
        return bool(self.devtools)

    @property
    def duration_ms(self) -> float:
        """When the last recorded event happened."""
        last = [e.t_ms for e in self.devtools[-1:]] + [e.t_ms for e in self.run_events[-1:]]
        return max(last, default=0.0)

    @property
    def final_status(self) -> str:
        """The status the run ended with: its recorded row, else its last ``run.completed``."""
        status = self.row.get("status") if self.row else None
        if isinstance(status, str) and status:
            return status
        for event in reversed(self.run_events):
            if event.event == RunEventName.RUN_COMPLETED and isinstance(event.payload.get("status"), str):
                return str(event.payload["status"])
        return RunStatus.FINISHED.value

    @property
    def final_snapshot(self) -> Mapping[str, Any] | None:
        """The recorded ``getDevToolsSnapshot`` answer (latest frame), if any."""
        answer = self.answers.get(rpc_key("getDevToolsSnapshot", {}))
        return answer.payload if answer is not None and answer.ok else None

    def answer(self, method: str, params: Mapping[str, Any] | None = None) -> RecordedAnswer | None:
        """The recorded answer to ``method(params)``, if the transcript has one."""
        return self.answers.get(rpc_key(method, params))

    def final_tree(self) -> DevToolsTree:
        """The tree after applying every recorded DevTools event."""
        tree = DevToolsTree()
        for item in self.devtools:
            tree.apply(item.event)
        return tree


# --------------------------------------------------------------------------- extraction


def _run_id_of(params: object) -> str | None:
    if not isinstance(params, Mapping):
        return None
    run_id = params.get("runId")
    if isinstance(run_id, str):
        return run_id
    nested = params.get("filter")
    if isinstance(nested, Mapping) and isinstance(nested.get("runId"), str):
        return str(nested["runId"])
    return None


@dataclass
class _RunDraft:
    """A run being assembled from sessions (mutable while extracting)."""

    run_id: str
    devtools: list[tuple[float, Mapping[str, Any]]] = field(default_factory=list)
    run_events: list[tuple[float, int, str, Mapping[str, Any]]] = field(default_factory=list)
    answers: dict[RpcKey, RecordedAnswer] = field(default_factory=dict)
    row: Mapping[str, Any] | None = None
    workflow: str | None = None
    tree: DevToolsTree = field(default_factory=DevToolsTree)
    clock_known: bool = True


def _session_clocks(sessions: Sequence[Session]) -> list[tuple[float, bool]]:
    """Each session's start on one clock: the Gateway's when known, else end-to-end."""
    out: list[tuple[float, bool]] = []
    cursor = 0.0
    for session in sessions:
        if session.started_at_ms is not None:
            start, known = session.started_at_ms, True
        else:
            start, known = cursor, False
        out.append((start, known))
        cursor = max(cursor, start + session.duration_ms)
    return out


class _Extractor:
    """Walks sessions once and sorts every frame into the run it belongs to."""

    def __init__(self) -> None:
        self.runs: dict[str, _RunDraft] = {}
        self.hello: Mapping[str, Any] | None = None
        self.list_rows: dict[str, Mapping[str, Any]] = {}

    def draft(self, run_id: str) -> _RunDraft:
        if run_id not in self.runs:
            self.runs[run_id] = _RunDraft(run_id)
        return self.runs[run_id]

    def session(self, session: Session, start: float, known: bool) -> None:
        requests: dict[str, tuple[str, Mapping[str, Any]]] = {}
        streams_seen: set[tuple[str, object]] = set()
        for line in session.lines:
            at = start + line.t
            frame = line.frame
            kind = frame.get("type")
            if line.dir == "send" and kind == "req":
                params = frame.get("params")
                requests[str(frame.get("id"))] = (str(frame.get("method")), params if isinstance(params, Mapping) else {})
            elif line.dir == "recv" and kind == "res":
                request = requests.pop(str(frame.get("id")), None)
                if request is not None:
                    self.response(request[0], request[1], frame)
            elif line.dir == "recv" and kind == "event":
                self.event(frame, at, known, session.index, streams_seen)

    def response(self, method: str, params: Mapping[str, Any], frame: Mapping[str, Any]) -> None:
        ok = frame.get("ok") is True
        payload = frame.get("payload")
        error = frame.get("error")
        if method == "connect" and ok and isinstance(payload, Mapping):
            self.hello = self.hello or payload
            return
        if method in ("launchRun", "runs.create") and ok and isinstance(payload, Mapping):
            run_id = payload.get("runId")
            if isinstance(run_id, str):
                workflow = params.get("workflow") or payload.get("workflow")
                self.draft(run_id).workflow = str(workflow) if workflow else None
            return
        if method in ("listRuns", "runs.list") and ok and isinstance(payload, list):
            for row in payload:
                if isinstance(row, Mapping) and isinstance(row.get("runId"), str):
                    self.list_rows[row["runId"]] = row
            return
        run_id = _run_id_of(params)
        if run_id is None or method in ("streamDevTools", "connect"):
            return
        draft = self.draft(run_id)
        answer = RecordedAnswer(ok=ok, payload=payload if ok else None, error=error if isinstance(error, Mapping) else None)
        draft.answers[rpc_key(method, params)] = answer
        if method in ("getRun", "runs.get") and ok and isinstance(payload, Mapping):
            draft.row = payload

    def event(
        self, raw: Mapping[str, Any], at: float, known: bool, session: int, streams: set[tuple[str, object]]
    ) -> None:
        try:
            decoded = decode_frame(raw)
        except ProtocolError:
            return
        if not isinstance(decoded, EventFrame):
            return
        frame = unwrap_run_event(decoded)
        payload = frame.payload
        if not isinstance(payload, Mapping) or not isinstance(payload.get("runId"), str):
            return
        draft = self.draft(str(payload["runId"]))
        draft.clock_known = draft.clock_known and known
        if frame.event == RunEventName.DEVTOOLS_EVENT:
            stream = (str(payload["runId"]), (session, payload.get("streamId")))
            first = stream not in streams
            streams.add(stream)
            self.devtools(draft, payload.get("event"), at, first)
        elif frame.event not in _CONNECTION_EVENTS:
            self.run_event(draft, frame.event, payload, at, session)

    @staticmethod
    def devtools(draft: _RunDraft, event: object, at: float, first_of_stream: bool) -> None:
        """Keep an event if it moves the run's history on; drop what a re-subscribe repeats."""
        if not isinstance(event, Mapping):
            return
        tree = draft.tree
        kind = event.get("kind")
        if kind == "snapshot":
            snap = event.get("snapshot")
            if not isinstance(snap, Mapping) or not isinstance(snap.get("seq"), int):
                return
            if not tree.empty and first_of_stream:
                # A subscription's baseline: news only if it is ahead of what we have.
                same = snap["seq"] == tree.seq and tree.root is not None and snap.get("root") == tree.root.to_wire()
                if same or snap["seq"] < (tree.seq or 0):
                    return
        elif kind == "delta":
            delta = event.get("delta")
            if tree.empty or not isinstance(delta, Mapping) or delta.get("baseSeq") != tree.seq:
                return
        else:
            return
        try:
            tree.apply(event)
        except DevToolsError:
            return
        draft.devtools.append((at, event))

    @staticmethod
    def run_event(draft: _RunDraft, name: str, payload: Mapping[str, Any], at: float, session: int) -> None:
        for other_at, other_session, other_name, other_payload in reversed(draft.run_events):
            if at - other_at > _DUPLICATE_WINDOW_MS:
                break
            if other_session != session and other_name == name and other_payload == payload:
                return
        draft.run_events.append((at, session, name, payload))


def _finish(draft: _RunDraft, extractor: _Extractor, source: str | None) -> RecordedRun:
    draft.run_events.sort(key=lambda e: e[0])
    times = [at for at, _ in draft.devtools[:1]] + [e[0] for e in draft.run_events[:1]]
    origin = min(times, default=0.0)
    row = draft.row or extractor.list_rows.get(draft.run_id)
    workflow = draft.workflow
    if row is not None and not workflow:
        name = row.get("workflowKey") or row.get("workflowName")
        workflow = str(name) if name else None
    if not workflow and not draft.tree.empty and draft.tree.root is not None and draft.tree.root.name != "(empty)":
        workflow = draft.tree.root.name
    return RecordedRun(
        run_id=draft.run_id,
        workflow=workflow,
        origin_epoch_ms=origin if draft.clock_known and (draft.devtools or draft.run_events) else None,
        devtools=tuple(TimedDevToolsEvent(at - origin, event) for at, event in draft.devtools),
        run_events=tuple(TimedRunEvent(at - origin, name, payload) for at, _, name, payload in draft.run_events),
        answers=dict(draft.answers),
        row=row,
        hello=extractor.hello,
        source=source,
    )


def extract_runs(sessions: Sequence[Session], *, source: str | None = None) -> list[RecordedRun]:
    """One :class:`RecordedRun` per ``runId`` mentioned in the sessions, in first-seen order.

    Runs that only appear in RPC answers (no events) are included but not
    :attr:`~RecordedRun.replayable`; :func:`merge_runs` can fold their answers into the
    run recorded elsewhere.
    """
    extractor = _Extractor()
    for session, (start, known) in zip(sessions, _session_clocks(sessions), strict=True):
        extractor.session(session, start, known)
    return [_finish(draft, extractor, source) for draft in extractor.runs.values()]


def merge_runs(runs: Iterable[RecordedRun]) -> list[RecordedRun]:
    """Fold runs with one ``runId`` into one: the most complete recording wins, the
    others contribute answers (and a row) it lacks. Order of first appearance is kept."""
    merged: dict[str, RecordedRun] = {}
    for run in runs:
        have = merged.get(run.run_id)
        if have is None:
            merged[run.run_id] = run
            continue
        base, extra = (run, have) if len(run.devtools) > len(have.devtools) else (have, run)
        merged[run.run_id] = replace(
            base,
            answers={**extra.answers, **base.answers},
            row=base.row or extra.row,
            workflow=base.workflow or extra.workflow,
            hello=base.hello or extra.hello,
        )
    return list(merged.values())


def load_runs(*paths: str | Path, replayable_only: bool = True) -> list[RecordedRun]:
    """The runs recorded in transcript files, merged across files by ``runId``."""
    runs: list[RecordedRun] = []
    for path in paths:
        runs.extend(extract_runs(load_sessions(path), source=Path(path).name))
    out = merge_runs(runs)
    return [run for run in out if run.replayable] if replayable_only else out


# --------------------------------------------------------------------------- writing


class TranscriptWriter:
    """Appends ``{"t","dir","frame"}`` lines as a client talks to a Gateway.

    ``t`` counts milliseconds from the start of the current session: call
    :meth:`new_session` when a new socket opens (the first frame starts one if you
    did not). Each line is flushed as it is written, so a crash leaves a valid file.
    Safe to call from several threads.

    >>> import io
    >>> buf = io.StringIO()
    >>> w = TranscriptWriter(buf, clock=lambda: 0.0)
    >>> w.received({"type": "event", "event": "tick", "payload": {}})
    >>> buf.getvalue()
    '{"t":0,"dir":"recv","frame":{"type":"event","event":"tick","payload":{}}}\\n'
    """

    def __init__(self, target: str | Path | IO[str], *, clock: Callable[[], float] = time.monotonic) -> None:
        if isinstance(target, str | Path):
            self._fh: IO[str] = Path(target).open("a", encoding="utf-8")
            self._owns = True
        else:
            self._fh = target
            self._owns = False
        self._clock = clock
        self._t0: float | None = None
        self._lock = threading.Lock()
        self.lines_written = 0

    def new_session(self) -> None:
        """Start a new session: ``t`` counts from now."""
        with self._lock:
            self._t0 = self._clock()

    def sent(self, frame: Mapping[str, Any] | str) -> None:
        """Record a frame we sent."""
        self._write("send", frame)

    def received(self, frame: Mapping[str, Any] | str) -> None:
        """Record a frame we received."""
        self._write("recv", frame)

    def _write(self, direction: Direction, frame: Mapping[str, Any] | str) -> None:
        body = _frame_object(frame)
        with self._lock:
            now = self._clock()
            if self._t0 is None:
                self._t0 = now
            t = round((now - self._t0) * 1000)
            self._fh.write(TranscriptLine(float(t), direction, body).to_json() + "\n")
            self._fh.flush()
            self.lines_written += 1

    def close(self) -> None:
        with self._lock:
            if self._owns and not self._fh.closed:
                self._fh.close()

    def __enter__(self) -> TranscriptWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _frame_object(frame: Mapping[str, Any] | str) -> Mapping[str, Any]:
    """A frame as a JSON object; text that is not one is kept as an ``unparsed`` frame."""
    if isinstance(frame, Mapping):
        return frame
    try:
        obj = json.loads(frame)
    except ValueError:
        obj = None
    if isinstance(obj, Mapping):
        return obj
    return {"type": "unparsed", "text": frame}


"""A recorded run as a timeline, and one replay of it as state: the pure half of the replay.

:class:`Script` lays a :class:`~inspector.transcript.RecordedRun` out as one time-ordered
list of steps (DevTools events and run events) shared by every replay of it.
:class:`LiveRun` is one replay's position in that list and everything that follows from it:
the DevTools tree and its frame history (for ``getDevToolsSnapshot {frameNo}`` and
rewinds), node states and open approval gates (for ``getRun`` summaries and
``listApprovals``), the run-event window ``streamRunEvents`` replays, and the rows
``listRuns``/``getRun`` answer with. Recorded run ids and timestamps are moved onto the
replay's here, in one place.

Nothing here sleeps, opens a socket or knows about connections: the asyncio clock that
moves a :class:`LiveRun` forward lives in :mod:`~inspector.replay.player`, the RPC answers
built from it in :mod:`~inspector.replay.methods`. That keeps the state testable step by
step and the clock small.
"""

from __future__ import annotations

import collections
import json
import logging
import re
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

from ..agents import DURABLE_EVENT_NAMES, RunAgents
from ..errors import DevToolsError
from ..tree import DevToolsTree, copy_json
from ..vocabulary import ACTIVE_RUN_STATUSES, NODE_EVENT_STATE
from .rpc import rpc_error

if TYPE_CHECKING:
    import asyncio

    from ..transcript import RecordedRun

__all__ = [
    "RUN_EVENT_TERMINAL_GRACE_MS",
    "RUN_EVENT_WINDOW",
    "AutoRewind",
    "LiveRun",
    "Script",
    "Step",
    "as_int",
    "is_int",
    "iso",
    "now_ms",
    "swap_run_id",
]

log = logging.getLogger(__name__)

#: The node state a ``node.*`` event leaves in the Gateway's node table.
_NODE_EVENT_STATES: Final[Mapping[str, str]] = {
    name.removeprefix("node."): state for name, state in NODE_EVENT_STATE.items()
}

#: Run statuses a hello ``snapshot.runs`` lists (``buildSnapshot``).
_ACTIVE_STATUSES: Final = ACTIVE_RUN_STATUSES


#: Live run-event name -> the durable history's (``/v1/api/events``) name, as the Gateway's
#: ``mapEvent`` pairs them; ``run.completed`` is named by its status instead.
_DURABLE_NAMES: Final[Mapping[str, str]] = {
    live: durable for durable, live in DURABLE_EVENT_NAMES.items() if live != "run.completed"
}
_RUN_END_NAMES: Final[Mapping[str, str]] = {"finished": "RunFinished", "failed": "RunFailed", "cancelled": "RunCancelled"}
#: The fields of a ``listRunTokenUsage`` row (``parseRunTokenUsageRow`` in gateway.js).
_USAGE_FIELDS: Final = ("inputTokens", "outputTokens", "cacheReadTokens", "cacheWriteTokens", "reasoningTokens")


_EVENT_WORDS: Final = re.compile(r"[a-z]+(?:[._][a-z]+)+")


def durable_name(event: str, payload: Mapping[str, Any]) -> str:
    """The durable history's name of a live run event (``task.output`` -> ``NodeOutput``)."""
    if event == "run.completed":
        return _RUN_END_NAMES.get(str(payload.get("status")), "RunFinished")
    known = _DURABLE_NAMES.get(event)
    if known is not None:
        return known
    if not _EVENT_WORDS.fullmatch(event):
        return event  # not a name the engine could have persisted: kept as the stream said it
    return "".join(part.capitalize() for part in re.split(r"[._]", event))


#: How many recent events per run ``streamRunEvents`` can replay (the Gateway keeps a window too).
RUN_EVENT_WINDOW = 2000
#: How long after a run ends its replay window is kept (``RUN_EVENT_TERMINAL_WINDOW_GRACE_MS``
#: in gateway.js); later, ``streamRunEvents`` replays nothing and says ``currentSeq`` 0, and the
#: durable history (``/v1/api/events``) is where a client finds the run's events.
RUN_EVENT_TERMINAL_GRACE_MS = 1_000

def now_ms() -> int:
    return int(time.time() * 1000)


def iso(ms: float) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{int(ms) % 1000:03d}Z"


def _run_state_name(status: str) -> str:
    return "succeeded" if status == "finished" else status


def swap_run_id(value: Any, old: str, new: str) -> Any:
    """A copy of a JSON value with the recorded run id replaced by the replay's."""
    if old == new:
        return copy_json(value)
    if isinstance(value, str):
        return value.replace(old, new) if old in value else value
    if isinstance(value, Mapping):
        return {k: swap_run_id(v, old, new) for k, v in value.items()}
    if isinstance(value, list):
        return [swap_run_id(v, old, new) for v in value]
    return value


def is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def as_int(value: object, default: int) -> int:
    """``value`` if it is a real integer (not a bool), else ``default``."""
    return value if isinstance(value, int) and not isinstance(value, bool) else default


# --------------------------------------------------------------------------- scripts


@dataclass(frozen=True, slots=True)
class AutoRewind:
    """Rewind every replay of a run once, the way an operator would mid-run.

    When ``at_fraction`` of the recording's duration has played, the replay rewinds to
    ``to_frame_no`` (default: a third of the frames released so far, at least 1) and
    re-executes from there. :func:`~inspector.replay.demo.serve_demo` uses it so the demo
    always shows a rewind.
    """

    at_fraction: float = 0.6
    to_frame_no: int | None = None


@dataclass(frozen=True, slots=True)
class Step:
    """One thing a run does at ``t_ms``: a DevTools event or a run event."""

    t_ms: float
    devtools: Mapping[str, Any] | None = None
    name: str = ""
    payload: Mapping[str, Any] | None = None


class Script:
    """A recorded run as one timeline, shared by every replay of it."""

    def __init__(self, recorded: RecordedRun) -> None:
        if not recorded.replayable:
            raise ValueError(f"run {recorded.run_id} has no DevTools events to replay")
        self.recorded = recorded
        steps = [Step(e.t_ms, devtools=e.event) for e in recorded.devtools]
        steps += [Step(e.t_ms, name=e.event, payload=e.payload) for e in recorded.run_events]
        steps.sort(key=lambda s: s.t_ms)
        self.steps: tuple[Step, ...] = tuple(steps)
        self.duration_ms = recorded.duration_ms
        self._delta_text: dict[int, str] = {}

    def delta_text(self, index: int) -> str:
        """The JSON of a delta step (deltas carry no run id, so every replay shares it)."""
        text = self._delta_text.get(index)
        if text is None:
            event = self.steps[index].devtools
            text = self._delta_text[index] = json.dumps(event, separators=(",", ":"))
        return text


# --------------------------------------------------------------------------- live runs


class LiveRun:
    """One replay of a recorded run: where it is, and everything derived from that."""

    def __init__(self, script: Script, run_id: str, speed: float, auto_rewind: AutoRewind | None) -> None:
        self.script = script
        self.recorded = script.recorded
        self.run_id = run_id
        self.speed = speed
        self.auto_rewind = auto_rewind
        self.auto_rewound = False
        self.created_ms = now_ms()
        self.finished_ms: int | None = None
        self.done = False
        self.cursor = 0
        self.clock_ms = 0.0
        self.tree = DevToolsTree()
        self.frames: dict[int, Mapping[str, Any]] = {}
        self.frame_step: dict[int, int] = {}
        self.checkpoints: dict[int, Mapping[str, Any]] = {}
        self.nodes: dict[tuple[str, int], str] = {}
        self.iterations: dict[str, int] = {}
        self.approvals: dict[tuple[str, int], int] = {}
        self.task: asyncio.Task[None] | None = None
        self.loop_spawned = False
        #: The run-event window ``streamRunEvents`` replays, numbered per run like the Gateway's.
        self.event_window: collections.deque[dict[str, Any]] = collections.deque(maxlen=RUN_EVENT_WINDOW)
        self.event_seq = 0
        #: The durable history ``GET /v1/api/events`` serves (timestamps, Gateway-style names).
        self.history_rows: collections.deque[dict[str, Any]] = collections.deque(maxlen=50_000)
        #: Which attempt each agent event belongs to: the durable rows carry the iteration and
        #: attempt the live events leave out (the engine knows them; the replay works them out).
        self.agents = RunAgents(run_id, output_cap_bytes=0)

    def record_event(self, event: str, payload: Mapping[str, Any], state_version: int) -> dict[str, Any]:
        """Number a run event and keep it in the window (what ``streamRunEvents`` replays)
        and in the durable history, under the name and with the payload the engine persists."""
        self.event_seq += 1
        frame = {"apiVersion": "v1", "type": "RunEvent", "runId": self.run_id, "event": event,
                 "payload": dict(payload), "seq": self.event_seq, "stateVersion": state_version}
        self.event_window.append(frame)
        stamp = now_ms()
        name = durable_name(event, payload)
        body: dict[str, Any] = {"type": name, **payload}
        key = self.agents.apply(event, payload, seq=self.event_seq, t_ms=stamp)
        if key is not None and event.startswith(("task.", "agent.", "token.")):
            body.setdefault("iteration", key[1])
            body.setdefault("attempt", key[2])
        if name == "NodeOutput":
            body["text"] = body.pop("output", "")
        if name in ("NodeOutput", "TokenUsageReported", "AgentEvent"):
            body.setdefault("timestampMs", stamp)
        self.history_rows.append({"runId": self.run_id, "seq": self.event_seq - 1, "event": name,
                                  "payload": body, "timestampMs": stamp})
        return frame

    @property
    def event_window_released(self) -> bool:
        """Has the run ended more than the grace period ago (its replay window let go)?"""
        return self.done and self.finished_ms is not None and now_ms() - self.finished_ms > RUN_EVENT_TERMINAL_GRACE_MS

    def token_usage(self) -> list[dict[str, Any]]:
        """``listRunTokenUsage``'s ``events``: the persisted usage rows released so far."""
        rows = []
        for row in self.history_rows:
            if row["event"] != "TokenUsageReported":
                continue
            payload = row["payload"]
            out: dict[str, Any] = {
                "nodeId": payload.get("nodeId", "unknown"),
                "iteration": as_int(payload.get("iteration"), 0),
                "attempt": as_int(payload.get("attempt"), 0),
                "model": payload.get("model") or "unknown",
                "agent": payload.get("agent") or "unknown",
            }
            out.update({name: as_int(payload.get(name), 0) for name in _USAGE_FIELDS})
            out["timestampMs"] = as_int(payload.get("timestampMs"), row["timestampMs"])
            rows.append(out)
        return rows

    # ------------------------------------------------------------ state

    @property
    def seq(self) -> int:
        return self.tree.seq or 0

    @property
    def status(self) -> str:
        """``running`` until the last recorded event is out, then the recorded final status."""
        if self.done:
            return self.recorded.final_status
        return "waiting-approval" if self.approvals else "running"

    def wall_for(self, recorded_epoch_ms: float) -> int:
        """A recorded wall-clock time moved onto this replay's clock."""
        origin = self.recorded.origin_epoch_ms
        if origin is None:
            return self.finished_ms or self.created_ms
        return int(self.created_ms + (recorded_epoch_ms - origin) / self.speed)

    def reached(self, recorded_epoch_ms: float) -> bool:
        """Has the replay played past a recorded wall-clock moment?"""
        origin = self.recorded.origin_epoch_ms
        if self.done:
            return True
        return origin is not None and recorded_epoch_ms - origin <= self.clock_ms

    def summary(self) -> dict[str, int]:
        """Node counts by state, like ``countNodesByState``: one per (nodeId, iteration)."""
        if self.nodes:
            return dict(Counter(self.nodes.values()))
        return self.tree.state_counts()

    def run_state(self) -> dict[str, Any]:
        return {"runId": self.run_id, "computedAt": iso(now_ms()), "state": _run_state_name(self.status)}

    # ------------------------------------------------------------ applying steps

    def apply_devtools(self, index: int, event: Mapping[str, Any]) -> bool:
        """Move the tree on by one recorded event and keep the frame history straight."""
        previous = self.tree.seq
        try:
            self.tree.apply(event)
        except DevToolsError as exc:
            log.warning("replay %s: recorded event %d does not apply: %s", self.run_id, index, exc)
            return False
        seq = self.seq
        if previous is not None and seq <= previous:
            self.truncate_history(seq)
        self.frames[seq] = event
        self.frame_step[seq] = index
        if event.get("kind") == "snapshot":
            body = event.get("snapshot")
            if isinstance(body, Mapping):
                self.checkpoints[seq] = body
        elif seq - max(self.checkpoints, default=-1_000) >= 100:
            self.checkpoints[seq] = self.tree.snapshot()
        return True

    def truncate_history(self, seq: int) -> None:
        """Forget frames after ``seq``: a rewind deletes them, as the Gateway's DB does."""
        for store in (self.frames, self.frame_step, self.checkpoints):
            for key in [k for k in store if k > seq]:
                del store[key]

    def track(self, name: str, payload: Mapping[str, Any]) -> None:
        """Follow node states, approvals and rewinds from one run event."""
        node_id = payload.get("nodeId")
        if name.startswith("node.") and isinstance(node_id, str):
            it = as_int(payload.get("iteration"), self.iterations.get(node_id, 0))
            self.iterations[node_id] = it
            state = _NODE_EVENT_STATES.get(name[5:]) or payload.get("state")
            if isinstance(state, str):
                self.nodes[(node_id, it)] = state
            if state != "waiting-approval":
                # A gate whose node moves on was decided, even if approval.decided comes later.
                self.approvals.pop((node_id, it), None)
        elif name == "approval.requested" and isinstance(node_id, str):
            self.approvals.setdefault((node_id, as_int(payload.get("iteration"), 0)), now_ms())
        elif name == "approval.decided" and isinstance(node_id, str):
            self.approvals.pop((node_id, as_int(payload.get("iteration"), 0)), None)

    def retrack(self, upto: int) -> None:
        """Recompute node states and approvals from the steps before ``upto`` (after a rewind)."""
        self.nodes.clear()
        self.iterations.clear()
        self.approvals.clear()
        for step in self.script.steps[:upto]:
            if step.payload is not None:
                self.track(step.name, step.payload)

    # ------------------------------------------------------------ frames

    def frame_snapshot(self, frame_no: int) -> dict[str, Any]:
        """The tree as it was at ``frame_no`` in the current history."""
        if self.tree.empty:
            return self.current_snapshot()
        if frame_no == self.seq:
            snap = self.tree.snapshot()
        else:
            base = max(k for k in self.checkpoints if k <= frame_no)
            tree = DevToolsTree({"version": 1, "kind": "snapshot", "snapshot": self.checkpoints[base]})
            for seq in sorted(k for k in self.frames if base < k <= frame_no):
                tree.apply(self.frames[seq])
            snap = tree.snapshot()
        snap["runId"] = self.run_id
        snap["runState"] = self.run_state()
        return snap

    def first_frame(self) -> int:
        return min(self.checkpoints, default=0)

    def check_frame(self, frame_no: object) -> int:
        """``frame_no`` if it names a frame of the current history, else ``FrameOutOfRange``."""
        low, high = self.first_frame(), self.seq
        if isinstance(frame_no, bool) or not isinstance(frame_no, int) or not low <= frame_no <= high:
            raise rpc_error("FrameOutOfRange", f"frameNo must be between {low} and {high}.")
        return frame_no

    # ------------------------------------------------------------ rewinds

    def rewind_point(self, frame_no: int) -> tuple[int, dict[str, Any]]:
        """Where a rewind to ``frame_no`` resumes: the step that made the frame, and its tree."""
        lower = [k for k in self.frame_step if k <= frame_no]
        if not lower:
            raise rpc_error("FrameOutOfRange", f"Run {self.run_id} has no frames.")
        step_index = self.frame_step[max(lower)]
        snapshot = self.frame_snapshot(frame_no)
        snapshot["frameNo"] = snapshot["seq"] = frame_no
        return step_index, snapshot

    def rewind_to(self, frame_no: int, step_index: int, snapshot: Mapping[str, Any]) -> bool:
        """Make ``snapshot`` frame ``frame_no``, drop the later history, resume after ``step_index``.

        Returns whether the run had finished: it is running again, re-executing.
        """
        event = {"version": 1, "kind": "snapshot", "snapshot": snapshot}
        self.tree = DevToolsTree(event)
        self.truncate_history(frame_no)
        self.frames[frame_no] = event
        self.frame_step[frame_no] = step_index
        self.checkpoints[frame_no] = snapshot
        self.cursor = step_index + 1
        self.clock_ms = self.script.steps[step_index].t_ms
        self.retrack(self.cursor)
        was_done = self.done
        if was_done:
            self.done = False
            self.finished_ms = None
        return was_done

    def snapshot_event_text(self, snapshot: Mapping[str, Any]) -> str:
        return json.dumps({"version": 1, "kind": "snapshot", "snapshot": snapshot}, separators=(",", ":"))

    def released_snapshot_text(self, event: Mapping[str, Any]) -> str:
        """A recorded snapshot event, addressed to this replay's run id and clock."""
        body = dict(event.get("snapshot") or {})
        body["runId"] = self.run_id
        if isinstance(body.get("runState"), Mapping):
            state = dict(body["runState"])
            state.update(runId=self.run_id, computedAt=iso(now_ms()))
            body["runState"] = state
        return self.snapshot_event_text(body)

    def current_snapshot(self) -> dict[str, Any]:
        """What a new subscriber starts from (an empty root before the first frame)."""
        if self.tree.empty:
            root = {"id": 0, "type": "workflow", "name": "(empty)", "props": {}, "children": [], "depth": 0}
            return {"version": 1, "runId": self.run_id, "frameNo": 0, "seq": 0, "root": root,
                    "runState": self.run_state()}
        snap = self.tree.snapshot()
        snap["runId"] = self.run_id
        snap["runState"] = self.run_state()
        return snap

    # ------------------------------------------------------------ rows

    def row(self, *, detailed: bool) -> dict[str, Any]:
        """The run's row as ``listRuns`` (or, ``detailed``, ``getRun``) gives it."""
        recorded = self.recorded.row
        row: dict[str, Any] = swap_run_id(dict(recorded), self.recorded.run_id, self.run_id) if recorded else {
            "runId": self.run_id, "parentRunId": None, "workflowName": self.recorded.workflow,
            "workflowPath": None, "workflowHash": None, "heartbeatAtMs": None, "errorJson": None,
            "configJson": None, "vcsType": None, "workflowKey": self.recorded.workflow, "system": False,
        }
        for key in ("summary", "runState", "startedBy"):
            row.pop(key, None)
        row.update(
            runId=self.run_id,
            status=self.status,
            createdAtMs=self.created_ms,
            startedAtMs=self.created_ms,
            finishedAtMs=self.finished_ms if self.done else None,
        )
        if not self.done:
            row["errorJson"] = None
        row.setdefault("workflowKey", row.get("workflowName"))
        row.setdefault("system", False)
        if detailed:
            row["summary"] = self.summary()
            row["runState"] = self.run_state()
        return row



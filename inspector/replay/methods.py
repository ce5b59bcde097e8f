"""The Gateway RPC methods a replay answers, as the real Gateway would answer them.

:class:`RpcMethods` routes a request frame to its handler after the scope check (legacy
method names are aliases) and turns every :class:`~inspector.errors.GatewayRpcError` into
an error response, so WebSocket and HTTP callers get the same answers. The handlers read
the replays' state (:mod:`~inspector.replay.playback`) through the
:class:`~inspector.replay.player.Player`; the two streaming methods register a stream on
the caller's connection and return the action that sends its first frames after the
response, which is the order the real Gateway keeps.

Apart from the server so the answers can be read next to ``gateway.js`` without tornado
in the way: a connection is anything shaped like :class:`StreamingConnection`.
"""

from __future__ import annotations

import math
import re
import time
import uuid
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Final, Protocol, TypeAlias

from ..errors import GatewayRpcError
from ..protocol import RequestFrame, ResponseFrame
from .playback import LiveRun, as_int, is_int, swap_run_id
from .rpc import METHOD_ALIASES, METHOD_SCOPES, Grant, error_response, has_scope, rpc_error

if TYPE_CHECKING:
    from .player import Player

__all__ = ["After", "RpcMethods", "StreamingConnection", "approval_rows"]

_RUN_ID_PATTERN: Final = re.compile(r"^[a-z0-9_-][a-z0-9_.-]{0,63}$")
_NODE_ID_PATTERN: Final = re.compile(r"^[a-zA-Z0-9:_-]{1,128}$")
_MAX_INT32: Final = 2**31 - 1

#: What a handler asks to run after its response is sent (a stream's first frames).
After: TypeAlias = Callable[[], None] | None


class StreamingConnection(Protocol):
    """What the methods need of a WebSocket caller: its filter, its streams, a way to send."""

    subscribed: set[str] | None
    streams: dict[str, str]
    run_event_streams: dict[str, str]

    def send_event(self, event: str, payload: Any) -> None: ...

    def send_devtools(self, stream_id: str, run_id: str, event_text: str) -> None: ...


_Handler: TypeAlias = Callable[[Mapping[str, Any], Grant, StreamingConnection | None], tuple[Any, After]]


def _recorded_error(error: Mapping[str, Any] | None, old: str, new: str) -> GatewayRpcError:
    body = swap_run_id(dict(error or {}), old, new)
    code = str(body.pop("code", "SERVER_ERROR"))
    message = str(body.pop("message", ""))
    body.pop("version", None)
    return rpc_error(code, message, **body)


def approval_rows(runs: Mapping[str, LiveRun], run_id: str | None) -> list[dict[str, Any]]:
    """The open approval gates of every replay (or of ``run_id``), as ``listApprovals`` rows."""
    rows: list[dict[str, Any]] = []
    for live in runs.values():
        if run_id is not None and live.run_id != run_id:
            continue
        answer = live.recorded.answer("listApprovals", {})
        recorded = answer.payload if answer is not None and answer.ok and isinstance(answer.payload, list) else []
        for (node_id, iteration), requested in live.approvals.items():
            match = next((r for r in recorded if isinstance(r, Mapping) and r.get("nodeId") == node_id
                          and r.get("iteration", 0) == iteration), None)
            row = swap_run_id(match, live.recorded.run_id, live.run_id) if match else {
                "runId": live.run_id, "workflowKey": live.recorded.workflow, "nodeId": node_id,
                "iteration": iteration, "requestTitle": node_id, "requestSummary": None,
                "approvalMode": "gate", "options": [], "allowedScopes": [], "allowedUsers": [],
                "autoApprove": None,
            }
            row["requestedAtMs"] = requested
            rows.append(row)
    return rows


class RpcMethods:
    """The method table of a replay Gateway, over the replays of ``player``."""

    def __init__(self, player: Player) -> None:
        self.player = player
        #: How many ``streamDevTools`` streams were ever opened.
        self.streams_total = 0

    def call(
        self, frame: RequestFrame, grant: Grant, conn: StreamingConnection | None
    ) -> tuple[ResponseFrame, After]:
        """Scope check, then the method; every error becomes an error response."""
        method = METHOD_ALIASES.get(frame.method, frame.method)
        scope = METHOD_SCOPES.get(method, "run:read")
        if not has_scope(grant.scopes, scope):
            error = rpc_error("FORBIDDEN", f"Missing required scope {scope} for {frame.method}", requiredScope=scope)
            return error_response(frame.id, error), None
        handler = self._methods().get(method)
        if handler is None:
            return error_response(frame.id, rpc_error("METHOD_NOT_FOUND", f"Unknown method: {frame.method}")), None
        try:
            payload, after = handler(frame.params, grant, conn)
        except GatewayRpcError as exc:
            return error_response(frame.id, exc), None
        return ResponseFrame(id=frame.id, ok=True, payload=payload), after

    def _methods(self) -> dict[str, _Handler]:
        return {
            "streamDevTools": self._m_stream_devtools,
            "streamRunEvents": self._m_stream_run_events,
            "getRun": self._m_get_run,
            "listRuns": self._m_list_runs,
            "listWorkflows": self._m_list_workflows,
            "getNodeOutput": self._m_get_node_output,
            "getNodeDiff": self._m_get_node_diff,
            "listScores": self._m_list_scores,
            "listRunTokenUsage": self._m_list_run_token_usage,
            "listApprovals": self._m_list_approvals,
            "getDevToolsSnapshot": self._m_get_devtools_snapshot,
            "rewindRun": self._m_rewind_run,
            "launchRun": self._m_launch_run,
        }

    def _run_param(self, params: Mapping[str, Any], *, missing: str = "InvalidRunId", pattern: bool = True) -> str:
        run_id = params.get("runId")
        if not isinstance(run_id, str) or not run_id:
            raise rpc_error(missing, "runId is required")
        if pattern and not _RUN_ID_PATTERN.match(run_id):
            raise rpc_error("InvalidRunId", "runId must match /^[a-z0-9_-][a-z0-9_.-]{0,63}$/.")
        return run_id

    def _find(self, run_id: str, code: str = "RunNotFound") -> LiveRun:
        live = self.player.runs.get(run_id)
        if live is None:
            raise rpc_error(code, f"Run not found: {run_id}")
        return live

    def _m_stream_devtools(self, params: Mapping[str, Any], grant: Grant, conn: StreamingConnection | None) -> tuple[Any, After]:
        if conn is None:
            raise rpc_error("INVALID_REQUEST", "streamDevTools is only supported over websocket connections")
        run_id = self._run_param(params)
        from_seq, after_seq = params.get("fromSeq"), params.get("afterSeq")
        if is_int(from_seq) and is_int(after_seq) and from_seq != after_seq:
            raise rpc_error("SeqOutOfRange", "fromSeq and afterSeq must match when both are provided")
        after = from_seq if from_seq is not None else after_seq
        if after is not None and (not is_int(after) or after < 0):
            raise rpc_error("SeqOutOfRange", "fromSeq must be a non-negative integer.")
        if conn.subscribed is not None and run_id not in conn.subscribed:
            raise rpc_error("Unauthorized", "Connection is not subscribed to this runId.")
        live = self._find(run_id)
        if after is not None and after > live.seq:
            raise rpc_error("SeqOutOfRange", f"fromSeq {after} is newer than current seq {live.seq}")
        stream_id = str(uuid.uuid4())
        conn.streams[stream_id] = run_id
        self.streams_total += 1
        text = live.snapshot_event_text(live.current_snapshot())

        def baseline() -> None:
            conn.send_devtools(stream_id, run_id, text)

        return {"streamId": stream_id, "runId": run_id, "fromSeq": after, "afterSeq": after}, baseline

    def _m_stream_run_events(self, params: Mapping[str, Any], grant: Grant, conn: StreamingConnection | None) -> tuple[Any, After]:
        if conn is None:
            raise rpc_error("INVALID_REQUEST", "streamRunEvents is only supported over websocket connections")
        run_id = self._run_param(params, pattern=False)
        after = params.get("afterSeq")
        if after is not None and (not is_int(after) or after < 0):
            raise rpc_error("SeqOutOfRange", "afterSeq must be a non-negative integer")
        live = self._find(run_id)
        released = live.event_window_released
        current = 0 if released else live.event_seq
        if after is not None and after > current:
            raise rpc_error("SeqOutOfRange", f"afterSeq {after} is newer than current seq {current}")
        stream_id = str(uuid.uuid4())
        history = [] if released else [f for f in live.event_window if after is not None and f["seq"] > after]
        conn.run_event_streams[stream_id] = run_id

        def replay() -> None:
            for frame in history:
                conn.send_event("run.event", {"streamId": stream_id, **frame})

        return {"streamId": stream_id, "runId": run_id, "afterSeq": after, "currentSeq": current}, replay

    def _m_get_run(self, params: Mapping[str, Any], grant: Grant, conn: StreamingConnection | None) -> tuple[Any, After]:
        run_id = self._run_param(params, missing="INVALID_REQUEST", pattern=False)
        return self._find(run_id, "NOT_FOUND").row(detailed=True), None

    def _m_list_runs(self, params: Mapping[str, Any], grant: Grant, conn: StreamingConnection | None) -> tuple[Any, After]:
        flt = params.get("filter") if isinstance(params.get("filter"), Mapping) else {}
        assert isinstance(flt, Mapping)
        limit, offset = flt.get("limit", 50), flt.get("offset", 0)
        limit = 50 if limit is None else limit
        offset = 0 if offset is None else offset
        if not is_int(limit) or limit < 1:
            raise rpc_error("INVALID_REQUEST", "limit must be a positive integer")
        if not is_int(offset) or offset < 0:
            raise rpc_error("INVALID_REQUEST", "offset must be a non-negative integer")
        rows = [live.row(detailed=False) for live in reversed(self.player.runs.values())]
        rows.sort(key=lambda r: -int(r["createdAtMs"]))
        status, workflow = flt.get("status"), flt.get("workflow")
        if isinstance(status, str):
            rows = [r for r in rows if r["status"] == status]
        if isinstance(workflow, str):
            rows = [r for r in rows if workflow in (r.get("workflowName"), r.get("workflowKey"))]
        return rows[offset:offset + limit], None

    def _m_list_workflows(self, params: Mapping[str, Any], grant: Grant, conn: StreamingConnection | None) -> tuple[Any, After]:
        keys = sorted({s.recorded.workflow for s in self.player.scripts if s.recorded.workflow})
        return [{"key": k, "hasUi": False, "uiPath": None, "system": False} for k in keys], None

    def _node_params(self, params: Mapping[str, Any]) -> tuple[LiveRun, str, int]:
        live = self._find(self._run_param(params))
        node_id = params.get("nodeId")
        if not isinstance(node_id, str) or not _NODE_ID_PATTERN.match(node_id):
            raise rpc_error("InvalidNodeId", "nodeId must match /^[a-zA-Z0-9:_-]{1,128}$/.")
        iteration = as_int(params.get("iteration"), -1)
        if not 0 <= iteration <= _MAX_INT32:
            raise rpc_error("InvalidIteration", "iteration must be a non-negative 32-bit integer.")
        return live, node_id, iteration

    @staticmethod
    def _node_state(live: LiveRun, node_id: str, iteration: int) -> str | None:
        """The node's state in the replay so far; raises NodeNotFound/IterationNotFound."""
        state = live.nodes.get((node_id, iteration))
        if state is not None:
            return state
        task = live.tree.find_task(node_id, iteration)
        if task is not None:
            return task.state
        if any(n == node_id for n, _ in live.nodes) or live.tree.find_task(node_id) is not None:
            raise rpc_error("IterationNotFound", f"Iteration not found: {iteration}")
        raise rpc_error("NodeNotFound", f"Node not found: {node_id}")

    def _m_get_node_output(self, params: Mapping[str, Any], grant: Grant, conn: StreamingConnection | None) -> tuple[Any, After]:
        live, node_id, iteration = self._node_params(params)
        state = self._node_state(live, node_id, iteration)
        old = live.recorded.run_id
        answer = live.recorded.answer("getNodeOutput", {"nodeId": node_id, "iteration": iteration})
        if answer is not None and not answer.ok:
            raise _recorded_error(answer.error, old, live.run_id)
        if answer is None:
            if state in ("finished", "failed") or live.done:
                raise rpc_error("NodeHasNoOutput", f"No output was recorded for node {node_id}.")
            return {"status": "pending", "row": None, "schema": None}, None
        payload = swap_run_id(answer.payload, old, live.run_id)
        recorded_status = payload.get("status") if isinstance(payload, Mapping) else None
        reached = live.done or (state == "finished" and recorded_status == "produced") or (
            state == "failed" and recorded_status == "failed") or recorded_status == "pending"
        if reached:
            return payload, None
        schema = payload.get("schema") if isinstance(payload, Mapping) else None
        return {"status": "pending", "row": None, "schema": schema}, None

    def _m_get_node_diff(self, params: Mapping[str, Any], grant: Grant, conn: StreamingConnection | None) -> tuple[Any, After]:
        live, node_id, iteration = self._node_params(params)
        self._node_state(live, node_id, iteration)
        old = live.recorded.run_id
        answer = live.recorded.answer("getNodeDiff", {"nodeId": node_id, "iteration": iteration})
        if answer is not None and answer.ok and live.done:
            return swap_run_id(answer.payload, old, live.run_id), None
        if answer is not None and not answer.ok:
            raise _recorded_error(answer.error, old, live.run_id)
        raise rpc_error("AttemptNotFinished", "Attempt has no finished jj pointer.")

    def _m_list_run_token_usage(self, params: Mapping[str, Any], grant: Grant, conn: StreamingConnection | None) -> tuple[Any, After]:
        run_id = params.get("runId")
        if not isinstance(run_id, str) or not run_id:
            raise rpc_error("INVALID_REQUEST", "runId is required")
        live = self.player.runs.get(run_id)
        if live is None:
            raise rpc_error("RunNotFound", f"Run not found: {run_id}")
        return {"runId": run_id, "events": live.token_usage()}, None

    def _m_list_scores(self, params: Mapping[str, Any], grant: Grant, conn: StreamingConnection | None) -> tuple[Any, After]:
        live = self._find(self._run_param(params, missing="INVALID_REQUEST", pattern=False))
        node_id = params.get("nodeId")
        answer = live.recorded.answer("listScores", {})
        rows = answer.payload if answer is not None and answer.ok and isinstance(answer.payload, list) else []
        out = []
        for row in rows:
            if not isinstance(row, Mapping) or (isinstance(node_id, str) and row.get("nodeId") != node_id):
                continue
            scored = row.get("scoredAtMs")
            at = float(scored) if isinstance(scored, int | float) else math.inf
            if not live.reached(at):
                continue
            fresh = swap_run_id(row, live.recorded.run_id, live.run_id)
            if isinstance(scored, int | float):
                fresh["scoredAtMs"] = live.wall_for(scored)
            out.append(fresh)
        return out, None

    def _m_list_approvals(self, params: Mapping[str, Any], grant: Grant, conn: StreamingConnection | None) -> tuple[Any, After]:
        flt = params.get("filter") if isinstance(params.get("filter"), Mapping) else {}
        assert isinstance(flt, Mapping)
        run_id = params.get("runId") or flt.get("runId")
        return approval_rows(self.player.runs, run_id if isinstance(run_id, str) else None), None

    def _m_get_devtools_snapshot(
        self, params: Mapping[str, Any], grant: Grant, conn: StreamingConnection | None
    ) -> tuple[Any, After]:
        live = self._find(self._run_param(params))
        frame_no = params.get("frameNo")
        if frame_no is None:
            return live.current_snapshot(), None
        return live.frame_snapshot(live.check_frame(frame_no)), None

    def _m_rewind_run(self, params: Mapping[str, Any], grant: Grant, conn: StreamingConnection | None) -> tuple[Any, After]:
        run_id = self._run_param(params, pattern=False)
        frame_no = params.get("frameNo")
        if not isinstance(frame_no, int | float) or isinstance(frame_no, bool):
            raise rpc_error("InvalidFrameNo", "frameNo is required")
        live = self._find(run_id)
        if grant.role != "admin":
            raise rpc_error("Unauthorized", "Only the run owner or an admin may rewind this run.")
        if params.get("confirm") is not True:
            raise rpc_error("ConfirmationRequired", "jumpToFrame is destructive; pass confirm: true to proceed.")
        if not live.done and params.get("force") is not True:
            raise rpc_error(
                "RunOwnerAlive",
                f"Run {run_id} is still running (live owner or fresh heartbeat). "
                "Stop it before rewinding, or pass force: true.",
            )
        target = live.check_frame(frame_no)
        started = time.monotonic()
        deleted = live.seq - target
        rebaseline = self.player.rewind(live, target, grant.user_id or "gateway")
        payload = {
            "ok": True, "newFrameNo": target, "revertedSandboxes": 0, "deletedFrames": deleted,
            "deletedAttempts": 0, "invalidatedDiffs": 0, "durationMs": int((time.monotonic() - started) * 1000),
            "effectBoundary": {"blocking": [], "revertible": [], "warnings": []},
        }
        return payload, rebaseline

    def _m_launch_run(self, params: Mapping[str, Any], grant: Grant, conn: StreamingConnection | None) -> tuple[Any, After]:
        workflow = params.get("workflow")
        script = next((s for s in self.player.scripts if s.recorded.workflow == workflow), None)
        if script is None:
            raise rpc_error("NOT_FOUND", f"Workflow not found: {workflow}")
        live = self.player.launch(script, str(uuid.uuid4()))
        return {"runId": live.run_id, "workflow": workflow, "system": False}, None


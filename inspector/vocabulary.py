"""The Smithers words this package compares against: task states, run statuses, node
types, event names and node icons, each written down once.

Pure data (no I/O). Every module that asks "is this run over?", "which icon does a
``loop`` get?" or "which state does ``node.started`` leave a task in?" imports the answer
from here, so two views can never disagree about it.

The enums are for *our* comparisons, never for rejecting input: Smithers adds states over
time (``waiting-quota`` arrived late), and a value not listed here is kept, shown and
logged by its own name. Members are :class:`enum.StrEnum`, so ``TaskState.FAILED ==
"failed"`` and a member works as a key of a dict that is looked up with the Gateway's plain
strings.

Where each list comes from (``smithers-orchestrator`` 0.32.0, under
``node_modules/@smithers-orchestrator/``):

- :class:`TaskState`: ``scheduler/src/TaskState.ts`` plus ``retrying``
  (``devtools/src/TaskExecutionState.ts``) and ``blocked`` (``runState.blocked``, and
  ``gateway-client/src/sync/snapshotToGatewayRunNode.ts``).
- :class:`RunStatus`: ``driver/src/RunStatus.ts`` (what ``getRun``/``listRuns`` say), the
  DevTools ``runState.state`` values (``protocol/src/devtools/DevToolsSnapshot.ts``),
  ``canceled`` (``cancelRun`` in ``server/src/gateway.js``) and ``completed`` (the
  Gateway's operator UI treats it as finished).
- :data:`TERMINAL_RUN_STATUSES`: ``TERMINAL_RUN_STATUSES`` in ``server/src/gateway.js``
  and ``server/src/gatewayRoutes/getRunDiff.js``, plus the DevTools ending ``succeeded``
  and ``completed``.
- :data:`ACTIVE_RUN_STATUSES`: the runs ``buildSnapshot`` in ``server/src/gateway.js``
  puts in the ``connect`` hello's ``snapshot.runs``.
- :class:`NodeType`: ``devtools/src/SmithersNodeType.ts``
  (``protocol/src/devtools/DevToolsNodeType.ts`` has the same list).
- :class:`RunEventName`: ``mapEvent`` and the ``sendEvent``/``broadcastEvent`` calls in
  ``server/src/gateway.js``.
- :data:`NODE_EVENT_STATE`: the ``state`` ``mapEvent`` puts on each ``node.*`` event,
  and, for the waiting events (whose live payload says only ``waiting``), the state the
  node's row has in the Gateway's node table.
- :class:`OutputStatus`: ``server/src/gatewayRoutes/NodeOutputResponse.ts``.
"""

from __future__ import annotations

import enum
from types import MappingProxyType
from typing import TYPE_CHECKING, Final, NamedTuple

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = [
    "ACTIVE_RUN_STATUSES",
    "APPROVAL_EVENT_PREFIX",
    "DONE_NODE_EVENTS",
    "DONE_TASK_STATES",
    "NODE_EVENT_PREFIX",
    "NODE_EVENT_STATE",
    "NODE_ICONS",
    "RUNNING_TASK_STATES",
    "RUN_EVENT_PREFIX",
    "SUSPENDED_TASK_STATES",
    "TERMINAL_RUN_STATUSES",
    "LogEventName",
    "NodeIcon",
    "NodeType",
    "OutputStatus",
    "RunEventName",
    "RunStatus",
    "TaskState",
    "is_terminal_run_status",
    "is_waiting",
]


class TaskState(enum.StrEnum):
    """A task node's ``task.state`` in DevTools trees, and the ``state`` of node events."""

    PENDING = "pending"
    IN_PROGRESS = "in-progress"
    RETRYING = "retrying"
    FINISHED = "finished"
    FAILED = "failed"
    CANCELLED = "cancelled"
    SKIPPED = "skipped"
    WAITING_APPROVAL = "waiting-approval"
    WAITING_EVENT = "waiting-event"
    WAITING_TIMER = "waiting-timer"
    WAITING_QUOTA = "waiting-quota"
    WAITING_BOUND = "waiting-bound"
    BOUND_STALE = "bound-stale"
    BLOCKED = "blocked"
    #: What :class:`~inspector.tree.TreeNode` reports for a task whose state is missing.
    UNKNOWN = "unknown"


#: States of a task that is executing: the tree's running roll-ups and the "running" count.
RUNNING_TASK_STATES: Final = frozenset({TaskState.IN_PROGRESS, TaskState.RETRYING})

#: States of a task that will not run again (unless the run is rewound or resumed).
DONE_TASK_STATES: Final = frozenset({TaskState.FINISHED, TaskState.FAILED, TaskState.CANCELLED, TaskState.SKIPPED})

#: States of a task parked on something outside it (a person, an event, a clock, a quota).
#: A ``waiting-*`` state not listed here is suspended too: see :func:`is_waiting`.
SUSPENDED_TASK_STATES: Final = frozenset(
    {TaskState.WAITING_APPROVAL, TaskState.WAITING_EVENT, TaskState.WAITING_TIMER, TaskState.WAITING_QUOTA,
     TaskState.WAITING_BOUND}
)


def is_waiting(state: object) -> bool:
    """True for a suspended task state or run status, including ``waiting-*`` ones Smithers
    may add later (a run or task waiting on something new is still waiting, not unknown)."""
    return isinstance(state, str) and state.startswith("waiting")


class RunStatus(enum.StrEnum):
    """A run's ``status`` (``getRun``, ``listRuns``, ``run.completed``) or DevTools
    ``runState.state``; the two lists overlap, so one enum holds both."""

    RUNNING = "running"
    WAITING_APPROVAL = "waiting-approval"
    WAITING_EVENT = "waiting-event"
    WAITING_TIMER = "waiting-timer"
    WAITING_QUOTA = "waiting-quota"
    PAUSED = "paused"
    FINISHED = "finished"
    CONTINUED = "continued"
    FAILED = "failed"
    CANCELLED = "cancelled"
    #: The US spelling some Gateway paths accept (``cancelRun``, ``getRunDiff``).
    CANCELED = "canceled"
    # DevTools runState only:
    RECOVERING = "recovering"
    STALE = "stale"
    ORPHANED = "orphaned"
    SUCCEEDED = "succeeded"
    UNKNOWN = "unknown"
    #: Not sent by 0.32; the Gateway's operator UI counts it as finished, and so do we.
    COMPLETED = "completed"


#: Run statuses after which the run will not change again by itself.
TERMINAL_RUN_STATUSES: Final = frozenset(
    {RunStatus.FINISHED, RunStatus.FAILED, RunStatus.CANCELLED, RunStatus.CANCELED, RunStatus.CONTINUED,
     RunStatus.SUCCEEDED, RunStatus.COMPLETED}
)

#: Run statuses of a run that is live: the ones the ``connect`` hello lists.
ACTIVE_RUN_STATUSES: Final = frozenset(
    {RunStatus.RUNNING, RunStatus.WAITING_APPROVAL, RunStatus.WAITING_EVENT, RunStatus.WAITING_TIMER,
     RunStatus.PAUSED}
)


def is_terminal_run_status(status: object) -> bool:
    """True for a run status after which the run will not change again by itself.

    >>> is_terminal_run_status("succeeded"), is_terminal_run_status("waiting-quota")
    (True, False)
    """
    return isinstance(status, str) and status in TERMINAL_RUN_STATUSES


class NodeType(enum.StrEnum):
    """A DevTools node's ``type`` (``SmithersNodeType``)."""

    WORKFLOW = "workflow"
    TASK = "task"
    SEQUENCE = "sequence"
    PARALLEL = "parallel"
    MERGE_QUEUE = "merge-queue"
    BRANCH = "branch"
    LOOP = "loop"
    WORKTREE = "worktree"
    APPROVAL = "approval"
    TIMER = "timer"
    SUBFLOW = "subflow"
    WAIT_FOR_EVENT = "wait-for-event"
    SAGA = "saga"
    TRY_CATCH = "try-catch"
    FRAGMENT = "fragment"
    UNKNOWN = "unknown"


class NodeIcon(NamedTuple):
    """A node type's two glyphs: ``emoji`` where the screen can draw colour emoji, else
    ``plain``, from the symbols every desktop font has (DejaVu, Liberation, Segoe UI
    Symbol): wall monitors and servers rarely have a colour-emoji font, and a tofu box
    reads as "broken"."""

    emoji: str
    plain: str


#: One icon per node type. The browser's tree (``dashboard/assets/tree.js``) gets this
#: table from :func:`dashboard.treerows.tree_vocabulary_js`; it has none of its own.
NODE_ICONS: Final[Mapping[NodeType, NodeIcon]] = MappingProxyType({
    NodeType.WORKFLOW: NodeIcon("📋", "▤"),
    NodeType.TASK: NodeIcon("●", "●"),
    NodeType.SEQUENCE: NodeIcon("➡", "→"),
    NodeType.PARALLEL: NodeIcon("⇶", "⇉"),
    NodeType.MERGE_QUEUE: NodeIcon("🔀", "⇄"),
    NodeType.BRANCH: NodeIcon("⑂", "⋔"),
    NodeType.LOOP: NodeIcon("↻", "↻"),
    NodeType.WORKTREE: NodeIcon("🌳", "⎇"),
    NodeType.APPROVAL: NodeIcon("✋", "⚑"),
    NodeType.TIMER: NodeIcon("⏱", "◔"),
    NodeType.SUBFLOW: NodeIcon("🔗", "↪"),
    NodeType.WAIT_FOR_EVENT: NodeIcon("📡", "◷"),
    NodeType.SAGA: NodeIcon("🔄", "⟲"),
    NodeType.TRY_CATCH: NodeIcon("🛡", "◈"),
    NodeType.FRAGMENT: NodeIcon("📦", "▭"),
    NodeType.UNKNOWN: NodeIcon("❓", "?"),
})


class RunEventName(enum.StrEnum):
    """Event names on the Gateway's WebSocket (an ``event`` frame's ``event``), bare or
    inside a ``run.event`` envelope."""

    CONNECT_CHALLENGE = "connect.challenge"
    TICK = "tick"
    DEVTOOLS_EVENT = "devtools.event"
    DEVTOOLS_ERROR = "devtools.error"
    RUN_EVENT = "run.event"
    RUN_HEARTBEAT = "run.heartbeat"
    RUN_ERROR = "run.error"
    RUN_GAP_RESYNC = "run.gap_resync"
    RUN_COMPLETED = "run.completed"
    RUN_TIME_TRAVEL_JUMPED = "run.time_travel_jumped"
    RUN_SIDE_EFFECT_BOUNDARY_CROSSED = "run.side_effect_boundary_crossed"
    #: Not in 0.32's live stream: ``run.started`` is durable history's ``RunStarted`` as
    #: :func:`inspector.stream.durable_run_events` names it; all three mean "moving again".
    RUN_STARTED = "run.started"
    RUN_RESUMED = "run.resumed"
    RUN_FAILED = "run.failed"
    NODE_PENDING = "node.pending"
    NODE_STARTED = "node.started"
    NODE_RETRYING = "node.retrying"
    NODE_FINISHED = "node.finished"
    NODE_FAILED = "node.failed"
    NODE_CANCELLED = "node.cancelled"
    NODE_SKIPPED = "node.skipped"
    NODE_WAITING_APPROVAL = "node.waiting_approval"
    NODE_WAITING_TIMER = "node.waiting_timer"
    #: Not sent by 0.32 (a ``waiting-event`` node sends nothing); named so it maps like its siblings.
    NODE_WAITING_EVENT = "node.waiting_event"
    TASK_OUTPUT = "task.output"
    TASK_HEARTBEAT = "task.heartbeat"
    APPROVAL_REQUESTED = "approval.requested"
    APPROVAL_DECIDED = "approval.decided"
    APPROVAL_AUTO_APPROVED = "approval.auto_approved"
    AGENT_EVENT = "agent.event"
    AGENT_SESSION = "agent.session"
    AGENT_TRACE = "agent.trace"
    AGENT_TRACE_SUMMARY = "agent.trace_summary"
    TOKEN_USAGE = "token.usage"
    CRON_TRIGGERED = "cron.triggered"


#: Name prefixes of the Gateway's event families (``name.startswith(...)``).
RUN_EVENT_PREFIX: Final = "run."
NODE_EVENT_PREFIX: Final = "node."
APPROVAL_EVENT_PREFIX: Final = "approval."


class LogEventName(enum.StrEnum):
    """Names of the event-log lines the dashboard writes itself (what the subscription
    did, not what the Gateway said): they sit beside the Gateway's names in one log."""

    STREAM_SETTLED = "stream.settled"
    STREAM_RESYNCED = "stream.resynced"
    #: ``connection.<status>`` (``connection.offline``, ``connection.unauthorized``).
    CONNECTION_PREFIX = "connection."
    STREAM_PREFIX = "stream."


#: The task state a ``node.*`` event leaves its node in.
NODE_EVENT_STATE: Final[Mapping[RunEventName, TaskState]] = MappingProxyType({
    RunEventName.NODE_PENDING: TaskState.PENDING,
    RunEventName.NODE_STARTED: TaskState.IN_PROGRESS,
    RunEventName.NODE_RETRYING: TaskState.IN_PROGRESS,
    RunEventName.NODE_FINISHED: TaskState.FINISHED,
    RunEventName.NODE_FAILED: TaskState.FAILED,
    RunEventName.NODE_CANCELLED: TaskState.CANCELLED,
    RunEventName.NODE_SKIPPED: TaskState.SKIPPED,
    RunEventName.NODE_WAITING_APPROVAL: TaskState.WAITING_APPROVAL,
    RunEventName.NODE_WAITING_EVENT: TaskState.WAITING_EVENT,
    RunEventName.NODE_WAITING_TIMER: TaskState.WAITING_TIMER,
})

#: Node events after which the node will not run again: its output, diff and scores are final.
DONE_NODE_EVENTS: Final = frozenset(name for name, state in NODE_EVENT_STATE.items() if state in DONE_TASK_STATES)


class OutputStatus(enum.StrEnum):
    """``getNodeOutput``'s ``status``."""

    PRODUCED = "produced"
    PENDING = "pending"
    FAILED = "failed"
    #: Ours, not the Gateway's: an answer that was not an object, shown as a raw row.
    UNKNOWN = "unknown"

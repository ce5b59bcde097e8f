"""Pure display helpers shared by every view: durations, node icons, state colours and labels.

Kept free of Panel so the rules (which colour "queued" gets, how an unknown
``waiting-*`` state is shown) are unit-tested once and every view agrees. Peer UIs were
criticised for drawing queued work success-green and for eternal spinners on states they
did not know (smithersai/smithers#1424): every state here has a distinct colour, and any
state we do not know is shown by its own name in a neutral colour, never hidden.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from inspector.vocabulary import (
    NODE_ICONS as VOCABULARY_ICONS,
    NodeType,
    RunStatus,
    TaskState,
    is_waiting,
)

__all__ = [
    "short_labels",
    "shorten",
    "NODE_ICONS",
    "RUN_STATUS_COLOURS",
    "STATE_COLOURS",
    "STATE_LABELS",
    "TaskSummary",
    "format_ago",
    "format_duration",
    "format_value",
    "node_icon",
    "run_elapsed",
    "run_error_text",
    "run_status_colour",
    "state_colour",
    "state_label",
    "task_summary",
]

#: The plain glyph of each DevTools node type (see :class:`~inspector.vocabulary.NodeIcon`):
#: server-rendered views cannot know whether the viewer's browser draws colour emoji, so
#: they use the glyphs every desktop font has. ``dashboard/assets/tree.js`` gets the same
#: table and upgrades to emoji only where the browser can draw them.
NODE_ICONS: Mapping[str, str] = {node_type: icon.plain for node_type, icon in VOCABULARY_ICONS.items()}

_SUSPENDED_COLOUR = "#a142f4"
_NEUTRAL_COLOUR = "#80868b"

#: Task states (``task.state``) to colours. Queued is grey, never green.
STATE_COLOURS: Mapping[str, str] = {
    TaskState.PENDING: "#9aa0a6",
    TaskState.IN_PROGRESS: "#1a73e8",
    TaskState.RETRYING: "#f29900",
    TaskState.FINISHED: "#188038",
    TaskState.FAILED: "#d93025",
    TaskState.CANCELLED: "#5f6368",
    TaskState.SKIPPED: "#bdc1c6",
    TaskState.WAITING_APPROVAL: _SUSPENDED_COLOUR,
    TaskState.WAITING_EVENT: _SUSPENDED_COLOUR,
    TaskState.WAITING_TIMER: _SUSPENDED_COLOUR,
    TaskState.WAITING_QUOTA: _SUSPENDED_COLOUR,
    TaskState.BLOCKED: "#e37400",
    TaskState.UNKNOWN: _NEUTRAL_COLOUR,
}

#: Labels for task states. The Gateway's own names are what operators read in logs, the
#: CLI and Smithers' Monitor, so every view shows those, the same everywhere; only a task
#: without a state gets words of ours.
STATE_LABELS: Mapping[str, str] = {TaskState.UNKNOWN: "no state"}

#: Run statuses (``getRun.status`` / ``runState.state``) to colours. Any other ``waiting-*``
#: status is drawn as suspended; any other status in the neutral colour.
RUN_STATUS_COLOURS: Mapping[str, str] = {
    RunStatus.RUNNING: "#1a73e8",
    RunStatus.FINISHED: "#188038",
    RunStatus.SUCCEEDED: "#188038",
    RunStatus.COMPLETED: "#188038",
    RunStatus.FAILED: "#d93025",
    RunStatus.CANCELLED: "#5f6368",
    RunStatus.PAUSED: "#f29900",
    RunStatus.WAITING_APPROVAL: _SUSPENDED_COLOUR,
    RunStatus.WAITING_EVENT: _SUSPENDED_COLOUR,
    RunStatus.WAITING_TIMER: _SUSPENDED_COLOUR,
}


def node_icon(node_type: str | None) -> str:
    """The glyph for a DevTools node type; unknown types get the ``unknown`` glyph."""
    return NODE_ICONS.get(node_type or NodeType.UNKNOWN, NODE_ICONS[NodeType.UNKNOWN])


def state_colour(state: str | None) -> str:
    """Colour of a task state. ``None`` (not a task) and unknown states are neutral;
    any ``waiting-*`` we have never heard of is drawn as suspended, like the known ones."""
    if state is None:
        return _NEUTRAL_COLOUR
    if state in STATE_COLOURS:
        return STATE_COLOURS[state]
    return _SUSPENDED_COLOUR if is_waiting(state) else _NEUTRAL_COLOUR


def state_label(state: str | None) -> str:
    """Human label of a task state; unknown states are shown by their own name."""
    if state is None:
        return ""
    return STATE_LABELS.get(state, state)


def run_status_colour(status: str | None) -> str:
    if not status:
        return _NEUTRAL_COLOUR
    if status in RUN_STATUS_COLOURS:
        return RUN_STATUS_COLOURS[status]
    return _SUSPENDED_COLOUR if is_waiting(status) else _NEUTRAL_COLOUR


def format_duration(seconds: float | None) -> str:
    """``0.4 s``, ``12 s``, ``3 min 05 s``, ``2 h 07 min``, ``3 d 4 h``; ``–`` when unknown."""
    if seconds is None or not math.isfinite(seconds):
        return "–"
    seconds = max(0.0, seconds)
    if seconds < 10:
        return f"{seconds:.1f} s"
    whole = int(seconds)
    if whole < 60:
        return f"{whole} s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes:02d} min"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h"


def format_ago(at: float | None, now: float | None = None) -> str:
    """``12 s ago`` for a wall-clock time (``time.time()``); ``never`` when unknown."""
    if at is None:
        return "never"
    now = time.time() if now is None else now
    return f"{format_duration(now - at)} ago"


def shorten(text: str, limit: int = 32) -> str:
    """``text`` cut to ``limit`` characters with an ellipsis (for axis labels and legends,
    where a 300-character node id would push the plot off the page)."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def short_labels(keys: Iterable[str], limit: int = 32) -> dict[str, str]:
    """Each key's label for a categorical axis: shortened (:func:`shorten`) and still unique
    (`` #2``, `` #3`` where two long keys share their beginning). Charts put the labels on
    the axis and keep the whole key in their data for the hover."""
    out: dict[str, str] = {}
    taken: set[str] = set()
    for key in keys:
        if key in out:
            continue
        label = shorten(key, limit)
        n = 1
        while label in taken:
            n += 1
            label = shorten(key, limit - len(f" #{n}")) + f" #{n}"
        taken.add(label)
        out[key] = label
    return out


def format_value(value: Any, limit: int = 400) -> str:
    """A one-line text rendering of a JSON value for a table cell (never HTML)."""
    if value is None:
        return "null"
    if isinstance(value, str):
        text = value
    elif isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, int | float):
        text = f"{value:g}" if isinstance(value, float) else str(value)
    else:
        import json

        try:
            text = json.dumps(value, ensure_ascii=False, default=str)
        except (TypeError, ValueError):
            text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _ms(value: object) -> float | None:
    return float(value) / 1000.0 if isinstance(value, int | float) and not isinstance(value, bool) else None


def run_elapsed(run: Mapping[str, Any], now: float | None = None) -> float | None:
    """Seconds the run has been going (or went), from ``startedAtMs``/``finishedAtMs``."""
    start = _ms(run.get("startedAtMs")) or _ms(run.get("createdAtMs"))
    if start is None:
        return None
    end = _ms(run.get("finishedAtMs"))
    if end is None:
        end = time.time() if now is None else now
    return max(0.0, end - start)


def run_error_text(run: Mapping[str, Any]) -> str | None:
    """The failure message of a run (``errorJson`` or ``error``), as plain text."""
    raw: Any = run.get("error")
    if raw is None:
        raw = run.get("errorJson")
    if raw is None or raw == "":
        return None
    if isinstance(raw, str):
        import json

        try:
            raw = json.loads(raw)
        except ValueError:
            return str(raw)
    if isinstance(raw, Mapping):
        message = raw.get("message")
        name = raw.get("code") or raw.get("name")
        if isinstance(message, str) and message:
            return f"{name}: {message}" if isinstance(name, str) and name else message
    return format_value(raw, 2000)


@dataclass(frozen=True, slots=True)
class TaskSummary:
    """Counts of task nodes by what an operator cares about.

    ``running`` is exactly ``in-progress`` and ``failed`` exactly ``failed`` (the
    ``data-*`` attributes of the header are these numbers); ``waiting`` gathers every
    ``waiting-*`` state and ``blocked``; states we do not know land in ``other``.
    """

    total: int = 0
    finished: int = 0
    running: int = 0
    failed: int = 0
    pending: int = 0
    waiting: int = 0
    retrying: int = 0
    skipped: int = 0
    cancelled: int = 0
    other: int = 0

    @property
    def done(self) -> int:
        """Tasks that will not run again: finished, failed, skipped or cancelled."""
        return self.finished + self.failed + self.skipped + self.cancelled

    @property
    def fraction_done(self) -> float:
        return self.done / self.total if self.total else 0.0


#: The :class:`TaskSummary` count each known task state goes to; any other ``waiting-*``
#: state goes to ``waiting``, anything else to ``other``.
_SUMMARY_BUCKETS: Mapping[str, str] = {
    TaskState.IN_PROGRESS: "running",
    TaskState.FINISHED: "finished",
    TaskState.FAILED: "failed",
    TaskState.PENDING: "pending",
    TaskState.RETRYING: "retrying",
    TaskState.SKIPPED: "skipped",
    TaskState.CANCELLED: "cancelled",
    TaskState.BLOCKED: "waiting",
}


def task_summary(counts: Mapping[str, int]) -> TaskSummary:
    """Fold ``DevToolsTree.state_counts()`` into total / finished / running / failed / ..."""
    buckets = dict.fromkeys(("finished", "running", "failed", "pending", "waiting", "retrying", "skipped", "cancelled", "other"), 0)
    total = 0
    for state, n in counts.items():
        total += n
        bucket = _SUMMARY_BUCKETS.get(state) or ("waiting" if is_waiting(state) else "other")
        buckets[bucket] += n
    return TaskSummary(total=total, **buckets)

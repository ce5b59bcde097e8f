"""What a DevTools subscription yields, and its counters.

The items are plain frozen values so the pure :mod:`inspector.subscription` machine can
produce them and any consumer (the hub, the store, the CLI) can match on their types;
:mod:`inspector.stream` re-exports them where callers have always found them.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeAlias

if TYPE_CHECKING:
    from .protocol import EventFrame, TimeTravelJump
    from .status import ConnectionState
    from .tree import DevToolsTree, TreeChange

__all__ = [
    "Heartbeat",
    "Resynced",
    "RunEvent",
    "Settled",
    "StatusChanged",
    "SubscriptionItem",
    "SubscriptionStats",
    "TimeTravelled",
    "TreeUpdated",
]


@dataclass(frozen=True, slots=True)
class StatusChanged:
    state: ConnectionState


@dataclass(frozen=True, slots=True)
class TreeUpdated:
    change: TreeChange
    tree: DevToolsTree


@dataclass(frozen=True, slots=True)
class Resynced:
    """The stream was abandoned and a fresh one requested; ``reason`` is for humans."""

    reason: str
    error: BaseException | None = None


@dataclass(frozen=True, slots=True)
class TimeTravelled:
    jump: TimeTravelJump


@dataclass(frozen=True, slots=True)
class RunEvent:
    """One of the run's events, unwrapped from ``run.event`` when it came through the
    run-event stream. ``seq`` is the Gateway's per-run event number (when known);
    ``replayed`` marks history the Gateway sent on subscribing, as opposed to news."""

    frame: EventFrame
    seq: int | None = None
    replayed: bool = False
    #: When it happened (seconds since the epoch) as the Gateway's event history says, for
    #: replayed events; ``None`` for news (take the time of receipt: node events carry none).
    at: float | None = None


@dataclass(frozen=True, slots=True)
class Heartbeat:
    at: float


@dataclass(frozen=True, slots=True)
class Settled:
    """The run is terminal and the tree equals the Gateway's last snapshot."""

    run_status: str
    seq: int | None


SubscriptionItem: TypeAlias = StatusChanged | TreeUpdated | Resynced | TimeTravelled | RunEvent | Heartbeat | Settled


@dataclass(slots=True)
class SubscriptionStats:
    """Counters for reliability reports: what went wrong and how often we recovered."""

    connects: int = 0
    connect_failures: int = 0
    resyncs: int = 0
    frames: int = 0
    deltas_applied: int = 0
    snapshots_applied: int = 0
    stale_deltas_skipped: int = 0
    reasons: Counter[str] = field(default_factory=Counter)



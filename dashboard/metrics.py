"""Prometheus metrics of the dashboard process (scraped at ``/metrics``, see :mod:`dashboard.ops`).

The hub reports what it sees through small calls (:func:`track_hub`, :func:`hub_item`,
:func:`error`) so the instrumentation stays a few lines wherever the fan-out lives. Gauges
that describe a current state (sessions, upstream streams) are computed when scraped, from
the objects that own that state, so they cannot drift from it.

Metrics live in the process's default registry: each ``panel serve --num-procs`` worker
answers ``/metrics`` with its own numbers (scrape each worker, or run one process per port).
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING

from prometheus_client import Counter, Gauge, Histogram, disable_created_metrics

from inspector.status import ConnectionStatus
from inspector.stream import Resynced, StatusChanged, TreeUpdated

if TYPE_CHECKING:
    from collections.abc import Callable

    from inspector.status import ConnectionState
    from inspector.stream import SubscriptionItem

    from .hub import GatewayHub

__all__ = [
    "DELTAS",
    "DELTA_APPLY_SECONDS",
    "BATCH_STRETCH",
    "ERRORS",
    "GC_PAUSE_SECONDS",
    "RECONNECTS",
    "SESSIONS",
    "SNAPSHOTS",
    "UPSTREAM_STREAMS",
    "error",
    "hub_item",
    "set_session_counter",
    "track_hub",
]

SESSIONS = Gauge("smithers_dashboard_sessions", "Browser sessions the dashboard server holds (Bokeh sessions)")
UPSTREAM_STREAMS = Gauge(
    "smithers_dashboard_upstream_streams",
    "DevTools subscriptions to the Gateway held by this process (one per watched run, shared by its sessions)",
)
DELTAS = Counter("smithers_dashboard_deltas", "DevTools deltas received from the Gateway and applied (per upstream)")
SNAPSHOTS = Counter("smithers_dashboard_snapshots", "DevTools snapshots received from the Gateway (per upstream)")
DELTA_APPLY_SECONDS = Histogram(
    "smithers_dashboard_delta_apply_seconds",
    "Time the hub spends on one delta: recording it in the frame history and handing it to every session's store",
    buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
)
RECONNECTS = Counter("smithers_dashboard_reconnects", "Upstream subscriptions back online after an outage")
ERRORS = Counter(
    "smithers_dashboard_errors",
    "Errors by kind: gateway_unavailable, unauthorized, forbidden, resync, subscription_crash, listener",
    ["kind"],
)

GC_PAUSE_SECONDS = Histogram(
    "smithers_dashboard_gc_pause_seconds",
    "Pauses of Python's cyclic garbage collector by generation (the served process's event loop waits them out; "
    "see dashboard/gc_tuning.py)",
    ["generation"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
)

disable_created_metrics()  # type: ignore[no-untyped-call]  # *_created series would double every counter

BATCH_STRETCH = Gauge(
    "smithers_dashboard_batch_stretch",
    "The largest factor any watched run's batches are stretched by because the event loop could not keep up "
    "(1: every run at its own batch interval; see dashboard/shared.py)",
)

_hubs: weakref.WeakSet[GatewayHub] = weakref.WeakSet()
UPSTREAM_STREAMS.set_function(lambda: float(sum(len(hub.runs) for hub in list(_hubs))))


def _batch_stretch() -> float:
    views = (hub.shared_view(run) for hub in list(_hubs) for run in list(hub.runs))
    return max((view.ticker.stretch for view in views if view is not None), default=1.0)


BATCH_STRETCH.set_function(_batch_stretch)


def track_hub(hub: GatewayHub) -> None:
    """Count ``hub``'s subscriptions in ``smithers_dashboard_upstream_streams`` while it lives."""
    _hubs.add(hub)


def set_session_counter(count: Callable[[], int]) -> None:
    """Have ``smithers_dashboard_sessions`` read ``count()`` at every scrape."""
    SESSIONS.set_function(lambda: float(count()))


def error(kind: str) -> None:
    """Count one error of ``kind`` (a short fixed word: it is a label, keep the set small)."""
    ERRORS.labels(kind=kind).inc()


def hub_item(previous: ConnectionState, item: SubscriptionItem, seconds: float) -> None:
    """Account for one item the hub fanned out; ``previous`` is the feed's state before it,
    ``seconds`` the time the hub spent on it."""
    if isinstance(item, TreeUpdated):
        if item.change.kind == "delta":
            DELTAS.inc()
            DELTA_APPLY_SECONDS.observe(seconds)
        else:
            SNAPSHOTS.inc()
    elif isinstance(item, StatusChanged):
        status = item.state.status
        if status is ConnectionStatus.ONLINE and previous.outage_since is not None:
            RECONNECTS.inc()
        elif status is ConnectionStatus.UNAUTHORIZED and previous.status is not status:
            error("unauthorized")
        elif status is ConnectionStatus.OFFLINE and previous.status is not status:
            error("forbidden" if item.state.required_scope else "gateway_unavailable")
    elif isinstance(item, Resynced):
        error("resync")

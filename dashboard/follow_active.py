"""Follow the Gateway's newest active runs before anyone opens them.

Why: the first page of a process to open a running run waits for the hub's subscription:
a WebSocket, the ``connect`` handshake and the Gateway's first DevTools snapshot, which on a
busy Gateway took 0.5-0.8 s after the session was built (docs/performance.md, issue 14). A
page on a run the hub already follows gets the tree in its first document. On a wall that
rotates through the active runs, or for operators who open runs from the list as they start,
every open is then a second open.

:class:`ActiveRunFollower` keeps the newest ``count`` active runs attached to the hub, with a
listener that ignores the items (the hub keeps the tree, the recent events and the run's
shared products for the sessions that come). It reads the run list from the process's
:class:`~dashboard.views.overview_feed.RunsFeed` (one ``listRuns`` poll every 2 s, shared
with the overview), so it adds no read of its own; when a run ends or falls out of the
newest ``count``, its handle is released and the hub stops the stream after its grace period
unless a page watches it. The cost is one Gateway stream per followed run: off by default
(``smithers-dashboard serve --follow-active N``, ``SMITHERS_DASHBOARD_FOLLOW_ACTIVE``); the
hub's ``max_upstreams`` still bounds the total.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from typing import TYPE_CHECKING, Any, ClassVar

from tornado.ioloop import IOLoop

from .views.overview_feed import ACTIVE_STATUSES, RunsFeed

if TYPE_CHECKING:
    from collections.abc import Callable

    from .hub import GatewayHub, Subscription

__all__ = ["ActiveRunFollower"]

log = logging.getLogger(__name__)


def _ignore(_item: Any) -> None:
    """The follower's listener: the hub keeps what matters (the tree, recent events)."""


class ActiveRunFollower:
    """The hub's followed runs (see the module docstring); :meth:`shared` gives one per hub."""

    _shared: ClassVar[weakref.WeakKeyDictionary[GatewayHub, ActiveRunFollower]] = weakref.WeakKeyDictionary()

    def __init__(self, hub: GatewayHub, count: int, feed: RunsFeed | None = None) -> None:
        self.hub = hub
        self.count = max(0, count)
        self.feed = feed or RunsFeed.shared(hub)
        #: Run id -> the hub handle holding it.
        self.held: dict[str, Subscription] = {}
        self._unsubscribe: Callable[[], None] | None = None

    @classmethod
    def shared(cls, hub: GatewayHub, count: int) -> ActiveRunFollower:
        """The hub's follower, started (idempotent: the served app calls it for every session)."""
        follower = cls._shared.get(hub)
        if follower is None:
            follower = cls._shared[hub] = cls(hub, count)
        follower.start()
        return follower

    @property
    def running(self) -> bool:
        return self._unsubscribe is not None

    def start(self) -> None:
        """Poll the run list (through the shared feed) and follow its newest active runs."""
        if not self.count or self._unsubscribe is not None:
            return
        try:
            asyncio.get_running_loop()
        except RuntimeError:  # ``--warm``'s session is built before the server's loop runs
            IOLoop.current().add_callback(self.start)
            return
        self._unsubscribe = self.feed.subscribe(self._on_runs)

    def close(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        for handle in self.held.values():
            handle.release()
        self.held.clear()

    def wanted(self) -> list[str]:
        """The newest :attr:`count` runs of the list whose status is active."""
        active = set(self.feed.history.active_ids(ACTIVE_STATUSES))
        newest = [str(row.get("runId")) for row in self.feed.history.rows() if row.get("runId") in active]
        return newest[: self.count]

    def _on_runs(self, _changed: bool) -> None:
        wanted = self.wanted()
        for run_id in [r for r in self.held if r not in wanted]:
            self.held.pop(run_id).release()
        for run_id in wanted:
            if run_id not in self.held:
                handle = self.hub.attach(run_id, _ignore)
                if handle.released:  # refused (the hub's upstream limit): not followed
                    continue
                self.held[run_id] = handle
                log.info("following active run %s before anyone opens it", run_id)

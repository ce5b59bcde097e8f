"""A :class:`~tests.faulty_replay.FaultyReplayGateway` on a thread and loop of its own.

Browser tests and benchmarks drive Playwright's sync API on the main thread; the replay
gateway needs a running asyncio loop meanwhile. :meth:`ReplayThread.call` runs a function
on the gateway's loop (its methods are not thread-safe) and returns the result.
"""

from __future__ import annotations

import asyncio
import threading
from typing import TYPE_CHECKING, Any

from tests.faulty_replay import FaultyReplayGateway

if TYPE_CHECKING:
    from collections.abc import Callable

    from inspector.transcript import RecordedRun

__all__ = ["ReplayThread"]


class ReplayThread:
    """A started replay gateway on its own thread; :meth:`stop` it when done."""

    def __init__(self, runs: list[RecordedRun], *, name: str = "replay-gateway", **kwargs: Any) -> None:
        self.loop = asyncio.new_event_loop()
        self.gateway = FaultyReplayGateway(runs, **kwargs)
        started = threading.Event()

        def main() -> None:
            asyncio.set_event_loop(self.loop)
            self.loop.run_until_complete(self.gateway.start())
            started.set()
            self.loop.run_forever()

        self.thread = threading.Thread(target=main, daemon=True, name=name)
        self.thread.start()
        if not started.wait(30):
            raise TimeoutError("the replay gateway did not start")

    def call(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` on the gateway's loop and return its result."""

        async def run() -> Any:
            return fn()

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(30)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.gateway.stop(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)

"""The playback clock: asyncio drivers that release each replay's steps on time.

:class:`Player` owns the replays (:class:`~inspector.replay.playback.LiveRun` values) and
one driver task per replay. A driver sleeps until the next recorded step is due (recorded
time divided by ``speed``; silences longer than ``max_gap_ms`` shrink), applies it to the
replay's state, and hands what it released to a :class:`PlaybackListener`: the server,
which knows which connections want it. Finished runs start again when ``loop`` is set,
old finished ones are forgotten after ``keep_finished``, and a rewind resets a replay and
restarts its driver.

The clock is apart from the server so that what is *due when* does not depend on sockets
(the listener is two callbacks), and apart from :mod:`~inspector.replay.playback` so that
the state stays free of asyncio. :attr:`Player.running` is the one gate on the clock:
cleared, every driver holds where it is (test doubles use it to pause a replay).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import uuid
from collections import deque
from typing import TYPE_CHECKING, Any, Protocol

from .playback import AutoRewind, LiveRun, Script, now_ms, swap_run_id

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping

    from ..transcript import RecordedRun

__all__ = ["PlaybackListener", "Player"]

log = logging.getLogger(__name__)


class PlaybackListener(Protocol):
    """Where a :class:`Player` sends what its replays release."""

    def run_event(self, run_id: str, event: str, payload: Mapping[str, Any]) -> None:
        """A run event (``node.started``, ``run.time_travel_jumped``...) of ``run_id``."""

    def devtools_text(self, run_id: str, text: str) -> None:
        """A DevTools event of ``run_id``, already encoded as JSON, for every stream on the run."""


def _log_crash(task: asyncio.Task[None]) -> None:
    """A run driver that dies of a bug must say so, not leave a run silently frozen."""
    if not task.cancelled() and task.exception() is not None:
        log.error("replay driver %s crashed", task.get_name(), exc_info=task.exception())


class Player:
    """Plays recorded runs as live replays, telling ``listener`` what each releases.

    ``speed``: recorded time is divided by it. ``loop``: a finished run is started again
    as a new run after ``loop_delay_s``. ``max_gap_ms``: longest recorded silence that is
    played as is (longer ones shrink). ``auto_rewinds``: recorded run id ->
    :class:`~inspector.replay.playback.AutoRewind`. ``keep_finished``: how many finished
    runs are kept (and listed).
    """

    def __init__(
        self,
        runs: Iterable[RecordedRun],
        listener: PlaybackListener,
        *,
        speed: float = 1.0,
        loop: bool = False,
        loop_delay_s: float = 2.0,
        max_gap_ms: float | None = 5_000.0,
        auto_rewinds: Mapping[str, AutoRewind] | None = None,
        keep_finished: int = 20,
    ) -> None:
        if not speed > 0:
            raise ValueError("speed must be positive")
        self.scripts = [Script(run) for run in runs]
        if not self.scripts:
            raise ValueError("a replay needs at least one recorded run")
        ids = [script.recorded.run_id for script in self.scripts]
        if len(set(ids)) != len(ids):
            raise ValueError("recorded runs must have distinct run ids (see transcript.merge_runs)")
        self.listener = listener
        self.speed = speed
        self.loop = loop
        self.loop_delay_s = loop_delay_s
        self.max_gap_ms = max_gap_ms
        self.auto_rewinds = dict(auto_rewinds or {})
        self.keep_finished = keep_finished
        #: Every replay the player knows (running and kept finished), oldest first.
        self.runs: dict[str, LiveRun] = {}
        #: The clock's gate: cleared, every driver holds where it is until it is set again.
        self.running = asyncio.Event()
        self.running.set()
        self._finished: deque[str] = deque()
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping = False

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Start a replay of every recorded run, under its recorded run id."""
        for script in self.scripts:
            self.launch(script, script.recorded.run_id)

    def halt(self) -> None:
        """Cancel every driver and pending loop restart (await :meth:`wait_halted` after)."""
        self._stopping = True
        for live in self.runs.values():
            if live.task is not None:
                live.task.cancel()
        for task in list(self._tasks):
            task.cancel()

    async def wait_halted(self) -> None:
        pending = [t for t in [*self._tasks, *(r.task for r in self.runs.values())] if t is not None]
        await asyncio.gather(*pending, return_exceptions=True)

    def live(self, run_id: str) -> LiveRun:
        """The replay ``run_id`` (``KeyError`` if unknown or forgotten)."""
        live = self.runs.get(run_id)
        if live is None:
            raise KeyError(run_id)
        return live

    # ------------------------------------------------------------ running runs

    def launch(self, script: Script, run_id: str) -> LiveRun:
        """Start a new replay of ``script`` as run ``run_id``."""
        live = LiveRun(script, run_id, self.speed, self.auto_rewinds.get(script.recorded.run_id))
        self.runs[run_id] = live
        self._start_driver(live)
        return live

    def _start_driver(self, live: LiveRun) -> None:
        live.task = asyncio.get_running_loop().create_task(self._drive(live), name=f"replay {live.run_id}")
        live.task.add_done_callback(_log_crash)

    def _restart(self, live: LiveRun) -> None:
        """Drive the run again from its (reset) cursor; a driver rewinding itself just goes on."""
        if live.task is not None and live.task is asyncio.current_task():
            return
        if live.task is not None:
            live.task.cancel()
        self._start_driver(live)

    async def _drive(self, live: LiveRun) -> None:
        """Release a run's steps on time, then finish it (and maybe loop it)."""
        steps = live.script.steps
        while live.cursor < len(steps):
            index = live.cursor
            await self._advance(live, steps[index].t_ms)
            if live.cursor != index:
                continue
            live.cursor = index + 1
            self._release(live, index)
            self._maybe_auto_rewind(live)
        self._finish(live)

    async def _advance(self, live: LiveRun, t_ms: float) -> None:
        """Sleep until the run's clock reaches ``t_ms`` (scaled by speed, held while paused)."""
        loop = asyncio.get_running_loop()
        if self.max_gap_ms is not None and t_ms - live.clock_ms > self.max_gap_ms:
            live.clock_ms = t_ms - self.max_gap_ms
        await asyncio.sleep(0)
        while True:
            await self.running.wait()
            remaining = (t_ms - live.clock_ms) / self.speed / 1000.0
            if remaining <= 0 or math.isinf(self.speed):
                live.clock_ms = max(live.clock_ms, t_ms)
                return
            before = loop.time()
            await asyncio.sleep(min(remaining, 0.05))
            if self.running.is_set():
                live.clock_ms += (loop.time() - before) * 1000.0 * self.speed

    def _release(self, live: LiveRun, index: int) -> None:
        step = live.script.steps[index]
        if step.devtools is not None:
            if not live.apply_devtools(index, step.devtools):
                return
            if step.devtools.get("kind") == "snapshot":
                text = live.released_snapshot_text(step.devtools)
            else:
                text = live.script.delta_text(index)
            self.listener.devtools_text(live.run_id, text)
        elif step.payload is not None:
            live.track(step.name, step.payload)
            payload = swap_run_id(step.payload, live.recorded.run_id, live.run_id)
            if "timestampMs" in payload:
                payload["timestampMs"] = now_ms()
            self.listener.run_event(live.run_id, step.name, payload)

    def _maybe_auto_rewind(self, live: LiveRun) -> None:
        plan = live.auto_rewind
        if plan is None or live.auto_rewound or live.clock_ms < plan.at_fraction * live.script.duration_ms:
            return
        target = plan.to_frame_no if plan.to_frame_no is not None else max(1, live.seq // 3)
        if live.first_frame() <= target < live.seq:
            live.auto_rewound = True
            self.rewind(live, target, "user:replay")()

    def _finish(self, live: LiveRun) -> None:
        live.done = True
        live.finished_ms = now_ms()
        self._finished.append(live.run_id)
        self._evict()
        if self.loop and not live.loop_spawned and not self._stopping:
            live.loop_spawned = True
            task = asyncio.get_running_loop().create_task(self._loop_again(live.script))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _loop_again(self, script: Script) -> None:
        await asyncio.sleep(self.loop_delay_s)
        if not self._stopping:
            self.launch(script, str(uuid.uuid4()))

    def _evict(self) -> None:
        while len(self._finished) > self.keep_finished:
            run_id = self._finished.popleft()
            live = self.runs.get(run_id)
            if live is not None and live.done:
                del self.runs[run_id]

    # ------------------------------------------------------------ rewinds

    def rewind(self, live: LiveRun, frame_no: int, caller: str) -> Callable[[], None]:
        """Jump a run back to ``frame_no``: announce it, reset the history, re-execute.

        Returns the action that sends the rebaseline snapshot to the run's streams, so
        ``rewindRun`` can send its response between the two, as the real Gateway does.
        """
        step_index, snapshot = live.rewind_point(frame_no)
        self.listener.run_event(live.run_id, "run.time_travel_jumped", {
            "runId": live.run_id, "fromFrameNo": live.seq, "toFrameNo": frame_no,
            "timestampMs": now_ms(), "caller": caller,
        })
        if live.rewind_to(frame_no, step_index, snapshot):
            with contextlib.suppress(ValueError):
                self._finished.remove(live.run_id)
        self._restart(live)
        text = live.snapshot_event_text(snapshot)
        listener, run_id = self.listener, live.run_id

        def rebaseline() -> None:
            listener.devtools_text(run_id, text)

        return rebaseline


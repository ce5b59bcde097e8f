"""A :class:`~dashboard.store.RunStore`'s background work: its debounced re-reads, the
fetch tasks it owns, and how a failed fetch is put to a user.

Apart from the store so that the store is its state and how items change it; what is
here is the same for any object that reads from the Gateway on a loop it does not own.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from inspector.errors import ErrorCode, GatewayRpcError, GatewayUnavailable

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine

__all__ = ["BackgroundWork", "describe_read_error"]

log = logging.getLogger("dashboard.store")


class BackgroundWork:
    """Named debounce timers (``_timers``) and owned tasks (``_tasks``); the class using it
    creates both in its ``__init__`` and cancels them when it closes."""

    _timers: dict[str, asyncio.TimerHandle]
    _tasks: set[asyncio.Task[Any]]

    def _debounce(self, name: str, delay: float, fn: Callable[[], None], *, replace: bool = True) -> None:
        old = self._timers.get(name)
        if old is not None:
            if not replace:
                return
            old.cancel()

        def fire() -> None:
            self._timers.pop(name, None)
            fn()

        self._timers[name] = asyncio.get_running_loop().call_later(delay, fire)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        try:
            task = asyncio.get_running_loop().create_task(coro)
        except RuntimeError:
            coro.close()
            log.warning("RunStore needs a running asyncio loop to read from the Gateway")
            return
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("a RunStore read failed", exc_info=task.exception())


def describe_read_error(exc: BaseException, what: str) -> str:
    """Plain-text reason for a failed read, naming the Gateway's code when it gave one."""
    if isinstance(exc, GatewayRpcError):
        code = exc.code
        if code is ErrorCode.ATTEMPT_NOT_FINISHED:
            return f"No diff yet: {exc.message}"
        if code is ErrorCode.VCS_ERROR:
            return f"No diff: {exc.message}"
        if code is ErrorCode.NODE_HAS_NO_OUTPUT:
            return "This node has no output table."
        if code is ErrorCode.FORBIDDEN and exc.required_scope:
            return f"The token lacks the scope {exc.required_scope} needed to read the {what}."
        return f"{exc.raw_code}: {exc.message}"
    if isinstance(exc, GatewayUnavailable):
        return f"Gateway unreachable: {exc}"
    return f"{type(exc).__name__}: {exc}"

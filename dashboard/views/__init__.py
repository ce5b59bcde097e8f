"""The dashboard's views: ``pn.viewable.Viewer`` s bound to a :class:`~dashboard.store.RunStore`.

Every view renders Gateway-supplied text (node names, props, outputs, diffs, errors,
score reasons) as TEXT: through ``pn.pane.Str``, Tabulator columns with the
``plaintext`` formatter, or HTML built with :func:`html.escape` around every value.
Nothing untrusted ever reaches a Markdown or HTML pane raw.
"""

from __future__ import annotations

import asyncio
import time
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = [
    "ConnectionStatus",
    "RunActions",
    "EventLog",
    "FrameScrubber",
    "NodeDetail",
    "RunHeader",
    "RunList",
    "ScoresView",
    "Timeline",
    "Throttle",
    "plaintext",
    "stylesheet",
]

_ASSETS = Path(__file__).resolve().parent.parent / "assets"


@cache
def stylesheet() -> str:
    """The dashboard's CSS, to pass as ``stylesheets=[...]`` (panes render in shadow DOM)."""
    return (_ASSETS / "dashboard.css").read_text(encoding="utf-8")


def plaintext(*columns: str) -> dict[str, dict[str, str]]:
    """Tabulator formatters that show these columns as text, never as HTML."""
    return {c: {"type": "plaintext"} for c in columns}


class Throttle:
    """Call ``fn`` at most once per ``interval`` seconds, always with the latest state.

    Charts are expensive to rebuild; a burst of events must cost one redraw now and one
    at the end of the burst (leading and trailing edge), not one per event. Without a
    running loop (a view rendered once for a test) it calls at once.
    """

    def __init__(self, fn: Callable[[], None], interval: float) -> None:
        self.fn = fn
        self.interval = interval
        self._last = 0.0
        self._handle: asyncio.TimerHandle | None = None

    def __call__(self, *_: Any) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.fn()
            return
        if self._handle is not None:
            return
        wait = self.interval - (time.monotonic() - self._last)
        if wait <= 0:
            self._fire()
        else:
            self._handle = loop.call_later(wait, self._fire)

    def _fire(self) -> None:
        self._handle = None
        self._last = time.monotonic()
        self.fn()

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None


from .actions import RunActions  # noqa: E402
from .detail import NodeDetail  # noqa: E402
from .events import EventLog  # noqa: E402
from .header import RunHeader  # noqa: E402
from .runs import RunList  # noqa: E402
from .scores import ScoresView  # noqa: E402
from .scrubber import FrameScrubber  # noqa: E402
from .status import ConnectionStatus  # noqa: E402
from .timeline import Timeline  # noqa: E402

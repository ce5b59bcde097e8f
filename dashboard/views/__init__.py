# mypy: allow-untyped-calls
"""The dashboard's views: ``pn.viewable.Viewer`` s bound to a :class:`~dashboard.store.RunStore`.

Every view renders Gateway-supplied text (node names, props, outputs, diffs, errors,
score reasons) as TEXT: through :class:`TextPane` (never a bare ``pn.pane.Str``, which is
HTML: see there), Tabulator columns with the ``plaintext`` formatter, or HTML built with
:func:`html.escape` around every value. Nothing untrusted ever reaches a Markdown, HTML or
Str pane raw (``tests/test_security_browser.py`` checks every view in Chromium).
"""

from __future__ import annotations

import asyncio
import html
import time
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import panel as pn
import param

from ..htmlpane import TextHTML
from ..store import RunStore

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
    "TextPane",
    "Throttle",
    "TickingHtml",
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


_TEXT_WRAP = "pre { white-space: pre-wrap; overflow-wrap: break-word; }"


class TextPane(pn.pane.Str):
    """A ``pn.pane.Str`` whose text is escaped: safe for Gateway-supplied text.

    Panel's own ``Str`` (1.9) only wraps its object in ``<pre>`` and the browser sets that
    as innerHTML, scripts run: ``Str("<img src=x onerror=...>")`` is live markup. Found by
    ``tests/test_security_browser.py`` (an approval title, props, an action's error).
    Long lines wrap (``pre-wrap``, long words broken): Gateway text has no length limit, and an
    unbroken ``<pre>`` line widened the whole page.
    """

    def __init__(self, object: Any = None, **params: Any) -> None:
        params["stylesheets"] = [_TEXT_WRAP, *params.get("stylesheets", [])]
        super().__init__(object, **params)

    def _transform_object(self, obj: Any) -> dict[str, Any]:
        text = "" if obj is None else str(obj)
        return super()._transform_object(html.escape(text, quote=False) if text else text)


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


class TickingHtml(pn.viewable.Viewer):
    """An escaped-HTML view of the store that re-renders once a second only while it must.

    The header's elapsed time and the badge's "offline for 12 s" change by themselves;
    everything else changes only when the store does. Subclasses give :meth:`_render` (the
    HTML), :attr:`_watch` (the store params it depends on) and :meth:`_wants_tick`.
    """

    store: RunStore = param.ClassSelector(class_=RunStore, doc="The session's store.")  # type: ignore[assignment]

    large = param.Boolean(default=False, doc="Wall-monitor size.")

    _tick = param.Integer(default=0, precedence=-1, doc="Advanced once a second while ticking.")

    _watch: tuple[str, ...] = ()

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self._callback: Any = None
        self._pane = TextHTML(
            self._render(),
            stylesheets=[stylesheet()],
            css_classes=["sd-monitor"] if self.large else [],
            sizing_mode="stretch_width",
            margin=(5, 10),
        )
        # Store changes arrive once per store tick (20 a second on a big run); each pane
        # update costs ~10 ms here (Panel rebuilds the pane's stylesheet models) and a style
        # recalculation in the browser, so redraws are throttled to 4 a second (the last
        # state always lands, at most 0.25 s late) and skipped when the HTML is unchanged.
        self._throttle = Throttle(self._update, 0.25)
        self.store.param.watch(self._throttle, list(self._watch))
        self.param.watch(self._update, "_tick")
        self._ticking()

    def _render(self) -> str:
        raise NotImplementedError

    def _wants_tick(self) -> bool:
        return False

    def _update(self, *events: Any) -> None:
        html = self._render()
        if html != self._pane.object:
            self._pane.object = html
        self._ticking()

    def _ticking(self) -> None:
        # A plain asyncio timer, not pn.state.add_periodic_callback: started from a store
        # update (the document is locked then), Panel's PeriodicCallback.start re-schedules
        # itself on every next tick until the lock is free, which under a stream of store
        # ticks never settles: a busy loop of ~1,000 restarts a second per session (found by
        # bench_fanout.py: one idle wall session cost 0.9 of a core).
        want = self._wants_tick()
        if want and self._callback is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # no loop (e.g. rendered once for a test)
                return
            self._callback = loop.call_later(1.0, self._advance)
        elif not want and self._callback is not None:
            self._callback.cancel()
            self._callback = None

    def _advance(self) -> None:
        self._callback = None
        if not self._pane._models:  # not on any page (session gone): stop until the store moves
            return
        self._tick += 1  # re-renders, and _ticking schedules the next second if still wanted

    def __panel__(self) -> pn.viewable.Viewable:
        return self._pane


from .actions import RunActions  # noqa: E402
from .detail import NodeDetail  # noqa: E402
from .events import EventLog  # noqa: E402
from .header import RunHeader  # noqa: E402
from .runs import RunList  # noqa: E402
from .scores import ScoresView  # noqa: E402
from .scrubber import FrameScrubber  # noqa: E402
from .status import ConnectionStatus  # noqa: E402
from .timeline import Timeline  # noqa: E402

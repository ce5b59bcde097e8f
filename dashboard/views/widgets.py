# mypy: allow-untyped-calls
"""Small building blocks every view shares: the stylesheet, text-only table columns,
:class:`TextPane` (escaped text) and :class:`Throttle` (rate-limited redraws).

They live in their own module, not in the package's ``__init__``, so that the view modules
can import them without importing the package that re-exports those views.
"""

from __future__ import annotations

import asyncio
import html
import time
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import panel as pn
from panel.io.state import set_curdoc

if TYPE_CHECKING:
    from collections.abc import Callable

    from bokeh.document import Document

__all__ = ["TextPane", "Throttle", "in_document", "plaintext", "stylesheet"]

_ASSETS = Path(__file__).resolve().parent.parent / "assets"


@cache
def stylesheet() -> str:
    """The dashboard's CSS, to pass as ``stylesheets=[...]`` (panes render in shadow DOM)."""
    return (_ASSETS / "dashboard.css").read_text(encoding="utf-8")


def plaintext(*columns: str) -> dict[str, dict[str, str]]:
    """Tabulator formatters that show these columns as text, never as HTML."""
    return {c: {"type": "plaintext"} for c in columns}


_TEXT_WRAP = "pre { white-space: pre-wrap; overflow-wrap: break-word; }"


def _pre_escaped(text: Any) -> str:
    """Untrusted text as HTML that shows it verbatim: escaped by :func:`html.escape`, in ``<pre>``."""
    return f"<pre>{html.escape('' if text is None else str(text), quote=False)}</pre>"


class TextPane(pn.pane.HTML):
    """A pane that shows its ``object`` as text, never as markup: safe for Gateway-supplied text.

    Panel's own ``Str`` (1.9) only wraps its object in ``<pre>`` and the browser sets that
    as innerHTML, scripts run: ``Str("<img src=x onerror=...>")`` is live markup. Found by
    ``tests/test_security_browser.py`` (an approval title, props, an action's error). The
    escaping goes through ``pn.pane.HTML``'s public ``sanitize_hook`` (called on every
    render when ``sanitize_html`` is on) with :func:`html.escape`, so it depends on no
    private Panel method; ``object`` stays the plain text.
    Long lines wrap (``pre-wrap``, long words broken): Gateway text has no length limit, and
    one unbroken ``<pre>`` line would widen the whole page.
    """

    def __init__(self, object: Any = None, **params: Any) -> None:
        params["stylesheets"] = [_TEXT_WRAP, *params.get("stylesheets", [])]
        params.update(sanitize_html=True, sanitize_hook=_pre_escaped)
        super().__init__("" if object is None else str(object), **params)


class Throttle:
    """Call ``fn`` at most once per ``interval`` seconds, always with the latest state.

    Charts are expensive to rebuild; a burst of events must cost one redraw at its start
    and one at its end (leading and trailing edge), not one per event. Without a running
    loop (a view rendered once for a test) it calls at once.

    ``stretch`` (a factor, read at each call) lengthens the interval while the process is
    loaded: a session's views then slow down with its store's batches (the run's
    :class:`~dashboard.shared.RunTicker` stretch) instead of outrunning what the loop can
    send, which with 100 screens on a busy run made the backlog.
    """

    def __init__(self, fn: Callable[[], None], interval: float, stretch: Callable[[], float] | None = None) -> None:
        self.fn = fn
        self.interval = interval
        self.stretch = stretch
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
        interval = self.interval * self.stretch() if self.stretch is not None else self.interval
        wait = interval - (time.monotonic() - self._last)
        if wait <= 0:
            self._fire()
        else:
            self._handle = loop.call_later(wait, self._fire)

    def _fire(self) -> None:
        self._handle = None
        self._last = time.monotonic()
        self.fn()

    def flush(self) -> None:
        """Call ``fn`` now, dropping a pending call: for a change that must not wait out the interval."""
        self.cancel()
        self._fire()

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None


def in_document(doc: Document | None, fn: Callable[[], None]) -> None:
    """Run ``fn`` as a callback of ``doc``'s session (now, when there is no session).

    Work shared by every session (the hub's ticks, a feed's poll) runs outside theirs; a
    change made there must reach the right browser: Panel's current document is process
    state (without :func:`set_curdoc` it is whichever session ran last, and ``hold()`` or a
    HoloViews ``Pipe`` would push to that one), and HoloViews sends a ``Pipe`` update only
    from inside the document's own callbacks.
    """
    if doc is None or doc.session_context is None:
        fn()
        return

    def in_doc() -> None:
        with set_curdoc(doc):
            fn()

    doc.add_next_tick_callback(in_doc)

# mypy: allow-untyped-calls
"""The base of every view of a session's store: :class:`StoreView`, and :class:`TickingHtml`
for the views that are one escaped HTML pane with a clock.

A view is a ``pn.viewable.Viewer`` bound to one :class:`~dashboard.store.RunStore`. The
store parameter is declared once, here, and typed as a ``RunStore`` (param's ``NoNone``
tells mypy it is never ``None`` once constructed), so the views read ``self.store.tree``
without a cast or an ignore. Like panel's ``widgets/base.py``, subclasses fill class-level
hooks instead of repeating the wiring:

- :attr:`StoreView._redraw_on`: the store parameters whose change redraws the view;
- :attr:`StoreView._redraw_interval`: at most one redraw per this many seconds (a burst of
  store ticks costs a redraw at its start and one at its end, see :class:`Throttle`);
- :meth:`StoreView._update`: the redraw itself.

A view whose redraw needs more than that (the event log pauses, the timeline waits until
it is shown) leaves ``_redraw_on`` empty and watches the store itself.
"""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

import panel as pn
import param
from param.parameters import NoNone

from ..htmlpane import TextHTML
from ..store import RunStore
from .widgets import Throttle, stylesheet

__all__ = ["StoreView", "TickingHtml"]


class StoreView(pn.viewable.Viewer):
    """A view of one session's :class:`~dashboard.store.RunStore` (see the module docstring)."""

    store = param.ClassSelector(class_=RunStore, allow_None=NoNone, doc="""
        The session's store: the state this view shows. Every view of a session shares
        it; a view reads it and writes only the user's choices (the selected node).""")

    #: Store parameters whose change redraws the view through :meth:`_update`.
    _redraw_on: ClassVar[tuple[str, ...]] = ()

    #: Seconds between two redraws at most (0: redraw on every change).
    _redraw_interval: ClassVar[float] = 0.0

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self._throttle = Throttle(self._update, self._redraw_interval, self._load_stretch)
        if self._redraw_on:
            self.store.param.watch(self._throttle, list(self._redraw_on))

    def _load_stretch(self) -> float:
        """How much the run's batches are stretched now (1.0 when the loop keeps up; see
        :class:`~dashboard.shared.RunTicker`): a view's redraw interval is stretched with them."""
        shared = getattr(self.store, "shared", None) if self.store is not None else None
        return shared.ticker.stretch if shared is not None else 1.0

    def _update(self) -> None:
        """Bring the view up to date with the store (called for :attr:`_redraw_on`)."""
        raise NotImplementedError(f"{type(self).__name__} redraws on {self._redraw_on} but has no _update")


class TickingHtml(StoreView):
    """An escaped-HTML view of the store that re-renders once a second only while it must.

    The header's elapsed time and the badge's "offline for 12 s" change by themselves;
    everything else changes only when the store does. Subclasses give :meth:`_render` (the
    HTML), :attr:`_redraw_on` (the store params it depends on) and :meth:`_wants_tick`.
    """

    large = param.Boolean(default=False, doc="Wall-monitor size.")

    _tick = param.Integer(default=0, precedence=-1, doc="Advanced once a second while ticking.")

    # Store changes arrive once per store tick (20 a second on a big run); each pane update
    # costs ~10 ms here (Panel rebuilds the pane's stylesheet models) and a style
    # recalculation in the browser, so redraws are throttled to 4 a second (the last state
    # always lands, at most 0.25 s late) and skipped when the HTML is unchanged.
    _redraw_interval = 0.25

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

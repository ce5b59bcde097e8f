"""The dashboard's views: ``pn.viewable.Viewer`` s bound to a :class:`~dashboard.store.RunStore`.

Every view derives from :class:`~dashboard.views.base.StoreView` (the ``store`` parameter
and the redraw hooks). Every view renders Gateway-supplied text (node names, props,
outputs, diffs, errors, score reasons) as TEXT: through :class:`TextPane` (never a bare
``pn.pane.Str``, which is HTML: see there), Tabulator columns with the ``plaintext``
formatter, or HTML built with :func:`html.escape` around every value. Nothing untrusted
ever reaches a Markdown, HTML or Str pane raw (``tests/test_security_browser.py`` checks
every view in Chromium).

This module only re-exports; the shared helpers live in :mod:`dashboard.views.widgets`
and :mod:`dashboard.views.base`.
"""

from __future__ import annotations

from .actions import RunActions
from .base import StoreView, TickingHtml
from .compare import RunComparison
from .detail import NodeDetail
from .events import EventLog, RecentEvents
from .header import RunHeader
from .overview import RunsOverview
from .runs import RunList
from .scores import ScoresView
from .scrubber import FrameScrubber
from .status import ConnectionBadge
from .timeline import Timeline
from .tree import NodeTree
from .widgets import TextPane, Throttle, plaintext, stylesheet

__all__ = [
    "ConnectionBadge",
    "EventLog",
    "FrameScrubber",
    "NodeDetail",
    "NodeTree",
    "RecentEvents",
    "RunActions",
    "RunHeader",
    "RunList",
    "RunComparison",
    "RunsOverview",
    "ScoresView",
    "StoreView",
    "TextPane",
    "Throttle",
    "TickingHtml",
    "Timeline",
    "plaintext",
    "stylesheet",
]

# mypy: allow-untyped-calls
"""An HTML pane whose updates send the browser only the new text.

Panel's ``pn.pane.HTML`` answers a new ``object`` by recomputing every property of its Bokeh
model, stylesheets included: new stylesheet models per update, each serialised into the
session's patch and re-applied by the browser (~10 ms of server time per update here, found
by ``tests/benchmarks/bench_shared_tick.py`` under cProfile). The header, the connection badge
and the wall's event list change their HTML several times a second on every session of a busy
run, and nothing but the HTML changes, so :class:`TextHTML` sets only ``text``. The escaped
text (Panel's HTML model carries the HTML escaped) is computed once for every session showing
the same string.
"""

from __future__ import annotations

from functools import lru_cache
from html import escape
from typing import Any

import panel as pn

__all__ = ["TextHTML"]


@lru_cache(maxsize=64)
def _escaped(text: str) -> str:
    return escape(text)


class TextHTML(pn.pane.HTML):
    """``pn.pane.HTML`` whose ``object`` updates change only the model's ``text``."""

    def _update(self, ref: str, model: Any) -> None:
        obj = self.object
        if not isinstance(obj, str) or self.enable_streaming or self.sanitize_html:
            super()._update(ref, model)
            return
        model.update(text=_escaped(obj))

# mypy: allow-untyped-calls
"""What the HoloViews charts of a run page share: a ``Pipe`` whose sends land in the page's
session, a legend of escaped names, and the numbered-axis helpers.

The timeline and scores charts are ``hv.DynamicMap`` s over an ``hv.streams.Pipe``: an update
sends the new data and HoloViews changes the plot's models in place (the data source's
columns, the axis ranges and tick labels), never the plot. Their category axes (task rows,
``node[iteration]`` targets) are numeric positions labelled by tick overrides, not Bokeh
categorical axes: HoloViews' ranges of a categorical ``Segments`` / ``Rectangles`` do not
update per frame, and a position axis lets the timeline keep blank rows below the task rows
(the height grows in steps, see ``timeline.ROW_SLOTS``) without inventing factor names.
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any

import holoviews as hv
from panel.io.state import set_curdoc

if TYPE_CHECKING:
    import panel as pn
    from bokeh.document import Document

__all__ = ["SessionPipe", "legend_html"]

hv.renderer("bokeh")  # registers the Bokeh backend (the options used are Bokeh's) without notebook output

_NOTHING: Any = object()


class SessionPipe:
    """An ``hv.streams.Pipe`` fed from outside the page's session, changes landing inside it.

    The store changes on the server's loop, outside the session's document lock; a served
    Bokeh document refuses model changes made there ("_pending_writes should be non-None").
    :meth:`send` therefore sends at once when the chart is on no served page (a test's
    ``Document``, a notebook cell, not rendered yet) and otherwise on the session's next tick,
    under its lock and with Panel's current document set to it. Sends queued before that
    tick collapse into the latest: a burst costs one update. :attr:`data` is what the chart
    shows (the last data sent through).
    """

    def __init__(self, data: Any) -> None:
        self.pipe = hv.streams.Pipe(data=data)
        self.pane: pn.pane.HoloViews | None = None
        self._pending: Any = _NOTHING
        self._scheduled: Document | None = None

    @property
    def data(self) -> Any:
        return self.pipe.data

    def _document(self) -> Document | None:
        if self.pane is None:
            return None
        for model, _ in list(self.pane._models.values()):
            if model.document is not None:
                return model.document
        return None

    def send(self, data: Any) -> None:
        doc = self._document()
        if doc is None or doc.session_context is None:
            self._pending = _NOTHING
            self.pipe.send(data)
            return
        self._pending = data
        if self._scheduled is not doc:
            self._scheduled = doc
            doc.add_next_tick_callback(lambda: self._flush(doc))

    def _flush(self, doc: Document) -> None:
        self._scheduled = None
        data, self._pending = self._pending, _NOTHING
        if data is not _NOTHING:
            with set_curdoc(doc):
                self.pipe.send(data)


def legend_html(pairs: list[tuple[str, str]]) -> str:
    """Colour swatches with their names, escaped (names are Gateway text)."""
    return "".join(
        f'<span style="display:inline-flex;align-items:center;gap:.3em;margin-right:1em">'
        f'<span style="width:.8em;height:.8em;border-radius:50%;background:{html.escape(colour)}"></span>'
        f"{html.escape(name)}</span>"
        for name, colour in pairs
    )

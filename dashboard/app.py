# mypy: allow-untyped-calls
"""The Dashboard: every view composed around one :class:`~dashboard.store.RunStore`.

``Dashboard(run_id=None, gateway_url=None, token=None, view="full" | "monitor")`` is a
``pn.viewable.Viewer``: display it in JupyterLab (after ``pn.extension()``; it runs on
the kernel's loop) or serve it (``panel serve apps/``, see ``apps/main.py``).

- **full**: without a run, the runs overview and its run table (``?compare=A,B``: the
  comparison); with one, the header and connection badge, the
  node tree beside the selected node's details, and tabs for the timeline, scores, event
  log and frame scrubber.
- **monitor**: for a wall screen: dark, large type, nothing to click. It shows the given
  run or rotates through the active runs every ``rotate_seconds`` (the latest run when
  none is active); while the Gateway is unreachable the run greys out under a badge that
  says since when; it recovers by itself. ``?overview=1`` makes it the control-room wall
  (every active run as a tile), ``?overview=rotate`` alternates the wall with each active
  run. Memory is bounded: one run subscribed at a time,
  ring-buffered events, capped caches.

The Gateway URL and token come from the server's configuration (:mod:`dashboard.config`)
or the constructor, never from the page: the token stays in this process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode

import panel as pn
import param

from inspector.errors import GatewayError
from inspector.vocabulary import ACTIVE_RUN_STATUSES

from .audit import audit_log
from .config import DashboardConfig, load_config
from .follow_active import ActiveRunFollower
from .hub import GatewayHub
from .panel_compat import keep_assets_local
from .roles import Role, session_role, session_visitor
from .store import RunStore
from .views import (
    ConnectionBadge,
    EventLog,
    FrameScrubber,
    NodeDetail,
    RunActions,
    RunHeader,
    ScoresView,
    Timeline,
    stylesheet,
)
from .views.audit import AuditView
from .views.events import RecentEvents
from .views.operate_page import OperatePage
from .views.overview import LandingPage
from .views.run_ops import RunOperations
from .views.tokens import TokenBreakdown, TokenSummary
from .views.tree import NodeTree

if TYPE_CHECKING:
    from collections.abc import Callable

    from panel.io.location import Location

__all__ = ["Dashboard"]

log = logging.getLogger(__name__)

#: Panel extensions the views need (the run list, event log and tables are Tabulators).
EXTENSIONS = ("tabulator",)


def _in_notebook_kernel() -> bool:
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    return shell is not None and "IPKernelApp" in getattr(shell, "config", {})


def ensure_extensions() -> None:
    """Load the JavaScript our views need in a notebook that ran a bare ``pn.extension()``.

    In a notebook, a model whose JavaScript was not loaded by ``pn.extension(...)`` does
    not render (Panel only warns). Loading it here publishes the missing bundle in the
    cell that builds the Dashboard, before the Dashboard's own output, so ``pn.extension()``
    followed by ``Dashboard(...)`` just works. Served apps load theirs up front
    (``apps/main.py``).
    """
    from panel.config import panel_extension

    missing = [name for name in EXTENSIONS if name not in panel_extension._loaded_extensions]
    if missing and _in_notebook_kernel():
        pn.extension(*missing)


#: The URL keys of parameters that can be None. Panel's Location writes None as ``null``,
#: which reads back as the string "null": a reload would open a run (task) called "null".
#: Such a key is dropped from the URL instead (:meth:`Dashboard._tidy_url`).
_NULLABLE_KEYS = frozenset({"runId", "nodeId", "iteration", "attempt"})


def _query_pairs(location: Location) -> list[tuple[str, str]]:
    """The location's query as written, blank values included (no type guessing)."""
    return parse_qsl(location.search.removeprefix("?"), keep_blank_values=True)


_GREY = {"filter": "grayscale(1)", "opacity": "0.55", "transition": "filter .5s, opacity .5s"}
_LIVE = {"filter": "none", "opacity": "1", "transition": "filter .5s, opacity .5s"}


class Dashboard(pn.viewable.Viewer):
    """The whole dashboard (see the module docstring). ``.store`` is its RunStore."""

    view: param.Selector[str] = param.Selector(default="full", objects=["full", "monitor"], doc="Layout: operator page or wall monitor.")

    node_key = param.String(default=None, allow_None=True, doc="""
        The selected task's Smithers nodeId (synced with ``?nodeId=`` when served).""")

    rotate_seconds = param.Number(default=20.0, bounds=(3, None), doc="""
        Monitor: seconds on each active run before moving to the next.""")

    rotating = param.Boolean(default=False, doc="Monitor: rotating through active runs (no run was given).")

    page: param.Selector[str | None] = param.Selector(default=None, objects=[None, "runs", "run"], doc="What the body shows: the run list or a run.")

    wall: param.Selector[str | None] = param.Selector(default=None, objects=[None, "grid", "rotate"], doc="""
        Monitor: the control-room wall (``?overview=1``: every active run as a tile; ``rotate``:
        the tiles, then each active run, ``rotate_seconds`` each).""")

    def __init__(
        self,
        run_id: str | None = None,
        gateway_url: str | None = None,
        token: str | None = None,
        *,
        view: str = "full",
        hub: GatewayHub | None = None,
        config: DashboardConfig | None = None,
        **params: Any,
    ) -> None:
        ensure_extensions()
        keep_assets_local()
        self.config = config or load_config()
        params.setdefault("rotate_seconds", self.config.monitor_rotate_seconds)
        super().__init__(view=view, **params)
        url = gateway_url or self.config.gateway_url
        self.hub = hub or (GatewayHub.shared(url, token) if token is not None else
                           GatewayHub.shared(url, self.config.token, token_file=self.config.token_file))
        self.store = RunStore(hub=self.hub, owner=session_visitor(), max_events=self.config.event_log_size)
        if self.config.follow_active:
            ActiveRunFollower.shared(self.hub, self.config.follow_active)
        self.rotating = self.view == "monitor" and not run_id
        self._rotation: asyncio.Task[None] | None = None
        self.wall_grid: Any = None  # the control-room wall's grid, once shown
        self._landing: tuple[LandingPage, OperatePage, pn.Tabs] | None = None  # see _landing_page
        self._location: Location | None = None  # the session's page URL, once bound (bind_location)
        self._landing_bound = False  # the overview's filters are synced with it (_bind_landing)
        self._closed = False
        large = self.view == "monitor"
        self.status = ConnectionBadge(store=self.store, large=large)
        self.header = RunHeader(store=self.store, large=large)
        self.tree = NodeTree(store=self.store, toolbar=not large)
        self._body = pn.Column(sizing_mode="stretch_width")
        if self.view == "full":
            self.detail = NodeDetail(store=self.store)
            self.timeline = Timeline(store=self.store)
            # The Scores, Events, Frames and Tokens tabs are built when first opened (_tab_views).
            self.scores: ScoresView | None = None
            self.events: EventLog | RecentEvents | None = None
            self.scrubber: FrameScrubber | None = None
            self.tokens: TokenBreakdown | None = None
            self.actions = RunActions(store=self.store, enabled=self.config.actions_enabled, config=self.config)
            self.audit = self._audit_view()
            self.run_ops = RunOperations(store=self.store, config=self.config, on_open=self.open_run,
                                         can_act=session_role(self.config) is Role.OPERATOR)
            self._run_page = self._full_layout()
        else:
            self.events = RecentEvents(store=self.store, height=560)
            self._run_page = self._monitor_layout()
            self.store.param.watch(self._grey, ["connection_status", "outage_since"])
        self.store.param.watch(self._on_run, "run_id")
        self.store.param.watch(self._on_selected, "selected_node")
        self.param.watch(self._on_node_key, "node_key")
        self.store.run_id = run_id
        self._on_run()
        if self.rotating:
            self._start_rotation()
        if self.wall:
            self.show_wall(self.wall)

    # ------------------------------------------------------------------ layouts

    @property
    def landing(self) -> LandingPage:
        """The overview and its run table (full view; built when first needed)."""
        return self._landing_page()[0]

    @property
    def operate(self) -> OperatePage:
        """The landing page's Operate tab (full view; built when first needed)."""
        return self._landing_page()[1]

    @property
    def landing_tabs(self) -> pn.Tabs:
        """The page without a run: the Runs and Operate tabs (full view; built when first needed)."""
        return self._landing_page()[2]

    def _landing_page(self) -> tuple[LandingPage, OperatePage, pn.Tabs]:
        # A run page (``?runId=``) does not show the runs overview: it is built when first
        # asked for ("← All runs"), never on a timer. Built while the run streams, its
        # scripts joining the document were the page's longest task (docs/performance.md).
        if self._landing is None:
            landing = LandingPage(hub=self.hub, on_open=self.open_run)
            operate = OperatePage(hub=self.hub, config=self.config, on_open=self.open_run)
            tabs = pn.Tabs(("Runs", landing), ("Operate", operate), dynamic=True, sizing_mode="stretch_width")
            tabs.param.watch(lambda e: operate.set_shown(e.new == 1), "active")
            self._landing = (landing, operate, tabs)
            self._bind_landing()
        return self._landing

    def _bind_landing(self, *_: Any) -> None:
        """Sync the overview's filters (``?window= &workflow= &status= &compare=``) with the
        page URL, once the overview is built and the URL names the run the store shows (none).

        ``Location.sync`` applies the URL's whole query to every parameter synced so far,
        the store's ``run_id`` included. On a run page the overview is built inside the
        switch to "All runs", by :meth:`_on_run`, a watcher of ``run_id`` that runs before
        the Location's own watcher has written the closing run out of the URL: bound then,
        it set the closing run's ``runId`` back and reopened the run. So it is bound here,
        also a watcher of ``run_id`` (see :meth:`bind_location`) but with precedence 1,
        after the Location's (precedence 0): by then the URL no longer names the run.
        """
        location = self._location
        if location is None or self._landing is None or self._landing_bound:
            return
        named = dict(_query_pairs(location)).get("runId")
        if (named if named != "null" else None) != (self.store.run_id or None):
            return  # mid-switch: called again once the URL has caught up
        self._landing_bound = True
        self._landing[0].bind_location()

    def _full_layout(self) -> pn.viewable.Viewable:
        back = pn.widgets.Button(label="← All runs", width=110, margin=(10, 10))
        back.on_click(lambda e: self.open_run(None))
        # The run controls (or, read-only, the run's pending approvals and who rewound it).
        heading = pn.Column(self.header, TokenSummary(store=self.store), sizing_mode="stretch_width")
        top = pn.Column(pn.Row(back, heading, self._compare_link(), sizing_mode="stretch_width"), self.actions,
                        self.run_ops, sizing_mode="stretch_width")
        main = pn.Row(
            pn.Column(self.tree, sizing_mode="stretch_both", styles={"flex": "0 0 42%", "min-width": "0"}),
            pn.Column(self.detail, sizing_mode="stretch_both", styles={"flex": "1 1 58%", "min-width": "0"}),
            height=600,
            sizing_mode="stretch_width",
        )
        builders = self._tab_views()
        slots = {name: pn.Column(sizing_mode="stretch_width") for name in builders}
        audit = [("Audit", self.audit)] if self.audit is not None else []
        tabs = pn.Tabs(
            ("Timeline", self.timeline),
            *slots.items(),
            *audit,
            # Dynamic: a hidden tab is not in the page, so its views cost the browser nothing
            # while a big run streams (the event table and the timeline redraw as it does).
            dynamic=True,
            sizing_mode="stretch_width",
        )
        names = [name for name, _ in (("Timeline", None), *slots.items(), *audit)]

        def shown(event: Any) -> None:
            name = names[event.new] if 0 <= event.new < len(names) else None
            if name in slots and not slots[name].objects:
                slots[name].objects = [builders[name]()]
            elif name == "Timeline":
                self.timeline.refresh()
            elif name == "Audit" and self.audit is not None:
                self.audit.refresh()

        tabs.param.watch(shown, "active")
        return pn.Column(top, main, tabs, sizing_mode="stretch_width")

    def _tab_views(self) -> dict[str, Callable[[], pn.viewable.Viewer]]:
        """The run page's hidden tabs, each built the first time it is opened.

        A run page opens on the Timeline: building the other tabs' views (a chart, two
        tables, the frame scrubber) up front made every session slower to open, and each
        view follows the store while hidden. Built later, a view reads the store's state
        then, as it does on a run switch, so nothing is missing.
        """

        def scores() -> ScoresView:
            self.scores = ScoresView(store=self.store)
            return self.scores

        def events() -> EventLog:
            self.events = view = EventLog(store=self.store)
            return view

        def frames() -> FrameScrubber:
            self.scrubber = view = FrameScrubber(store=self.store)
            view.param.watch(lambda e: self.actions.set_rewind_frame(e.new), "selected_frame")
            return view

        def tokens() -> TokenBreakdown:
            self.tokens = TokenBreakdown(store=self.store)
            return self.tokens

        return {"Scores": scores, "Events": events, "Frames": frames, "Tokens": tokens}

    def _audit_view(self) -> AuditView | None:
        """The audit log's tab: only with ``--audit-log``, only for an operator."""
        log = audit_log(self.config)
        if log is None or not self.actions.operates:
            return None
        view = AuditView(log=log, run_id=self.store.run_id)
        self.store.param.watch(lambda e: setattr(view, "run_id", e.new), "run_id")
        self.actions.param.watch(lambda e: view.refresh(), "message")
        return view

    def _compare_link(self) -> pn.viewable.Viewer:
        """Issue 13: "Compare with the previous run" of this workflow, beside the header."""
        from .views.compare_link import CompareWithPrevious

        self.compare_link = CompareWithPrevious(store=self.store)
        return self.compare_link

    def _monitor_layout(self) -> pn.viewable.Viewable:
        self._content = pn.Column(
            self.header,
            TokenSummary(store=self.store, large=True),  # the cost so far
            pn.Row(
                # Large type for a wall: the virtual tree keeps its own row geometry, so it
                # is scaled as a whole (CSS zoom) rather than restyled row by row.
                pn.Column(self.tree, sizing_mode="stretch_both", styles={"flex": "1 1 55%", "min-width": "0", "zoom": "1.5"}),
                pn.Column(
                    pn.pane.HTML("<h3>Recent events</h3>", stylesheets=[stylesheet()]),
                    self.events,
                    sizing_mode="stretch_both",
                    styles={"flex": "1 1 45%", "min-width": "0"},
                ),
                height=680,
                sizing_mode="stretch_width",
            ),
            sizing_mode="stretch_width",
        )
        return self._content

    def _title_bar(self) -> pn.viewable.Viewable:
        size = "1.6em" if self.view == "monitor" else "1.2em"
        title = pn.pane.HTML(
            f'<div style="font-size:{size};font-weight:600;white-space:nowrap">Smithers · Gateway dashboard</div>',
            margin=(10, 10),
        )
        return pn.Row(title, pn.layout.HSpacer(), self.status, sizing_mode="stretch_width")

    def __panel__(self) -> pn.viewable.Viewable:
        return pn.Column(self._title_bar(), self._body, sizing_mode="stretch_width")

    # ------------------------------------------------------------------ run and selection

    def open_run(self, run_id: str | None) -> None:
        """Show ``run_id`` (``None``: back to the run list)."""
        # Held: the URL is written several times on the way (the task, the run, the overview's
        # filters once bound), each a browser history entry if sent alone; one is sent.
        with pn.io.hold():
            self.node_key = None
            self.store.run_id = run_id or None

    def _on_run(self, *events: Any) -> None:
        page = "run" if self.store.run_id or self.view == "monitor" else "runs"
        if page == self.page:
            return
        self.page = page
        with pn.io.hold():
            if page == "run":
                self._body.objects = [self._run_page]
            else:
                self._body.objects = [self.landing_tabs]

    def _on_selected(self, event: Any) -> None:
        node = self.store.selected()
        key = node.node_id if node is not None else None
        if key != self.node_key:
            self.node_key = key

    def _on_node_key(self, event: Any) -> None:
        node = self.store.selected()
        current = node.node_id if node is not None else None
        if event.new and event.new != current:
            self.store.select_task(event.new)

    def _grey(self, *events: Any) -> None:
        # Grey for the whole outage, retries included (a "connecting" between two of them
        # has ``outage_since`` set), not only while the status says "offline".
        status = self.store.connection_status
        offline = status in ("offline", "unauthorized") or (status == "connecting" and self.store.outage_since is not None)
        # Explicit values both ways: the browser keeps a style key that is merely left out.
        self._content.styles = _GREY if offline else _LIVE

    # ------------------------------------------------------------------ monitor rotation

    def _start_rotation(self) -> None:
        try:
            self._rotation = asyncio.get_running_loop().create_task(self._rotate())
        except RuntimeError:
            self._rotation = None

    async def _rotate(self) -> None:
        """Cycle through active runs; fall back to the newest run; never give up."""
        position = 0
        while not self._closed:
            try:
                runs = await self.hub.read("listRuns", {"filter": {"limit": 50}}, max_age=2.0)
            except GatewayError as exc:
                log.info("monitor: cannot list runs (%s)", exc)
                runs = None
            if isinstance(runs, list):
                rows = [r for r in runs if isinstance(r, dict) and isinstance(r.get("runId"), str)]
                active = [r["runId"] for r in rows if r.get("status") in ACTIVE_RUN_STATUSES]
                choices = active or [r["runId"] for r in rows[:1]]
                if choices:
                    position = position % len(choices)
                    pick = choices[position]
                    position += 1
                    if pick != self.store.run_id:
                        self.store.run_id = pick
            await asyncio.sleep(self.rotate_seconds)

    # ------------------------------------------------------------------ control-room wall

    def _bind_wall(self) -> None:
        """``?view=monitor&overview=1`` shows the wall grid; ``overview=rotate`` rotates it with runs."""
        raw = (pn.state.session_args.get("overview") or [b""])[0]
        arg = (raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)).strip().lower()
        mode = "rotate" if arg == "rotate" else "grid" if arg in ("1", "true", "yes", "grid") else None
        if self.view == "monitor" and mode and not self.wall_grid:
            self.show_wall(mode)

    def show_wall(self, mode: str = "grid") -> None:
        """Show the control-room wall (:mod:`dashboard.views.wall`) alone or in the rotation."""
        from .views.wall import WallGrid

        self.stop_rotation()
        self.wall = mode
        if self.wall_grid is None:
            self.wall_grid = WallGrid(hub=self.hub)
        self._body.objects = [self.wall_grid]
        if mode == "grid":
            self.store.run_id = None
        else:
            with contextlib.suppress(RuntimeError):
                self._rotation = asyncio.get_running_loop().create_task(self._rotate_wall())

    async def _rotate_wall(self) -> None:
        """The grid, then each active run on it, ``rotate_seconds`` each, round and round."""
        assert self.wall_grid is not None
        position = 0
        while not self._closed:
            runs = [t.run_id for t in self.wall_grid.wall.state.tiles if t.active]
            slots: list[str | None] = [None, *runs]
            pick = slots[position % len(slots)]
            position = (position + 1) % len(slots)
            with pn.io.hold():
                if pick is None:
                    self._body.objects = [self.wall_grid]
                else:
                    self.store.run_id = pick
                    self._body.objects = [self._run_page]
            await asyncio.sleep(self.rotate_seconds)

    # ------------------------------------------------------------------ location and lifecycle

    def bind_location(self) -> None:
        """Sync ``?runId=``, ``?nodeId=``, ``?tab=``, ``?iteration=`` and ``?attempt=`` with the
        page URL (served sessions only)."""
        location = pn.state.location
        if location is None:
            return
        self._location = location
        location.param.watch(self._tidy_url, "search")
        self._tidy_url()
        location.sync(self.store, {"run_id": "runId"})
        if self.view == "full":
            # After the Location's own watcher of run_id (precedence 0): see _bind_landing.
            self.store.param.watch(self._bind_landing, "run_id", precedence=1)
            if not self.store.run_id:
                self._landing_page()  # the page shows it: built (and bound) now
            # A run page builds it when first asked for (_on_run); bound then (_bind_landing).
            self._bind_landing()
        location.sync(self, {"node_key": "nodeId"})
        if self.view == "full":  # ?tab= (the detail's tab), &iteration= &attempt= (the Agent tab's)
            location.sync(self.detail, {"tab": "tab"})
            location.sync(self.detail.agent, {"iteration": "iteration", "attempt": "attempt"})
        if self.rotating and self.store.run_id and pn.state.session_args.get("runId"):
            self.stop_rotation()
        self._bind_wall()

    def _tidy_url(self, *_: Any) -> None:
        """Drop the keys of parameters set to None from the URL, rather than ``runId=null``
        (see ``_NULLABLE_KEYS``): "All runs" then leaves a URL without the closed run."""
        location = self._location
        if location is None:
            return
        pairs = _query_pairs(location)
        kept = [(key, value) for key, value in pairs if not (key in _NULLABLE_KEYS and value == "null")]
        if len(kept) != len(pairs):
            location.search = f"?{urlencode(kept)}" if kept else ""

    def stop_rotation(self) -> None:
        self.rotating = False
        if self._rotation is not None:
            self._rotation.cancel()
            self._rotation = None

    def close(self) -> None:
        """Release everything this session holds (call from ``on_session_destroyed``)."""
        self._closed = True
        self.stop_rotation()
        if self._landing is not None:
            landing, operate, _ = self._landing
            landing.close()
            operate.close()
        if self.wall_grid is not None:
            self.wall_grid.close()
        with contextlib.suppress(Exception):
            self.store.close()

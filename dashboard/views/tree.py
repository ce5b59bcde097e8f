# mypy: allow-untyped-calls
"""The node-tree view: a run's DevTools tree, live, at 10,000 nodes.

Two classes:

- :class:`TreeComponent`, a :class:`panel.custom.JSComponent` whose browser half is
  ``dashboard/assets/tree*.js`` (:data:`TREE_MODULES`), served as one generated bundle
  (:mod:`dashboard.views.tree_bundle`). Python never sends the tree per change: it sends the
  operations of :mod:`dashboard.treerows` (a reset, then small patches), numbered, one
  message per store tick. Collapse, search, keyboard and virtual scrolling all happen in
  the browser, so none of them costs a server round trip.
- :class:`NodeTree`, the :class:`panel.viewable.Viewer` a page puts on screen: the search
  box, the state filter, expand/collapse-all, the follow toggle and the component, wired
  to the store (``tree``, ``tree_version``, ``last_changes``, ``selected_node``, ``run_id``,
  and ``agents`` / ``task_heartbeats`` for the tokens and the heartbeat of each task row).

The store is read on its own ticks: a watcher on ``tree_version`` turns
``last_changes`` into one patch *synchronously*, because the tree will have moved on by
the time any deferred callback ran. Panel then delivers the message on the document's
next tick when the tick came from another thread or the global gateway task.
"""

from __future__ import annotations

import threading
import time
from functools import partial
from typing import TYPE_CHECKING, Any, ClassVar, TypeAlias

import panel as pn
import param
from panel.custom import JSComponent

from dashboard.treerows import (
    NO_HINTS,
    TreeFeed,
    heartbeats_delta,
    task_heartbeats_json,
    task_tokens,
)
from inspector.vocabulary import TaskState

from .base import StoreView
from .tree_bundle import ASSETS, TREE_MODULES, current_bundle, tree_module_js, tree_module_text
from .widgets import Throttle

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from inspector.tree import DevToolsTree, TreeChange

    from ..shared import SharedRunView
    from ..treerows import Message

    #: How :meth:`TreeComponent.send_heartbeats` works out a ``beats`` message (text, merge), or ``None``.
    BeatsDelta: TypeAlias = Callable[[Mapping[tuple[str, int], float], Mapping[tuple[str, int], float]],
                                     tuple[str, bool] | None]

__all__ = ["TREE_MODULES", "NodeTree", "TreeComponent", "tree_module_js"]

_NO_ECHO = object()

#: States every run can show, listed in the filter even before a task reaches them.
COMMON_STATES = tuple(str(state) for state in (
    TaskState.PENDING, TaskState.IN_PROGRESS, TaskState.FINISHED, TaskState.FAILED, TaskState.RETRYING,
    TaskState.WAITING_APPROVAL, TaskState.CANCELLED, TaskState.SKIPPED,
))


class TreeComponent(JSComponent):
    """The virtualised tree itself (browser half: :mod:`dashboard.views.tree_bundle`).

    Feed it with :meth:`push` after every batch of tree changes; it answers the
    browser's ``ready`` handshake with what that browser lacks (the patches since the rows
    its document carried, else a reset), then ``current``, so a reload, a re-render or a
    second view of the same component catches up without help.
    """

    follow = param.Boolean(default=True, doc="""
        Keep the latest running node in view. The browser switches it off when the
        user scrolls or navigates with the keyboard; setting it True scrolls back.""")

    query = param.String(default="", doc="""
        Search text: rows whose label, Smithers nodeId, state or type contains it stay
        visible, with their ancestors. Filtering happens in the browser.""")

    state_filter = param.String(default="", doc="""
        Show only tasks in this exact state (plus their ancestors); empty for all.""")

    tokens = param.String(default="{}", precedence=-1, doc="""
        Tokens per task, ``treerows.task_tokens``' JSON text, shown on task rows beside the
        agent's name. Python-only: sent as a ``tokens`` message when it changes and after
        every ``ready`` (a property set while a page is still loading can miss the browser).""")

    selected = param.Integer(default=None, allow_None=True, precedence=-1, doc="""
        DevTools id of the row the user picked (click or Enter). Python-only: setting it
        highlights and reveals the row in the browser.""")

    initial = param.String(default="", doc="""
        The rows as they were when the page's document was built: a ``reset`` message's JSON
        text, set on the browser's model when it is created (never synced after), so a page
        opened on a run this process already follows draws its rows as soon as the tree
        renders, without waiting for the ``ready`` round trip. Emptied once the browser
        has said ``ready`` (a 7,500-node run's rows are a megabyte per session).""")

    _rename: ClassVar[dict[str, str | None]] = {"selected": None, "tokens": None}
    #: Python-only parameters, sent as messages: Panel's property sync is skipped for them
    #: (its every change rebuilds the component's stylesheets, per session, per change);
    #: ``initial`` is set once, at model creation (:meth:`_get_properties`).
    _manual_params: ClassVar[list[str]] = ["selected", "tokens", "initial"]
    _esm: ClassVar[Any] = tree_module_text()
    #: The same text as a file the browser fetches once and need not compile: see
    #: :mod:`dashboard.views.tree_bundle` (``None`` when the file is stale: ``_esm`` is sent).
    _bundle: ClassVar[Any] = current_bundle(_esm)
    _stylesheets: ClassVar[list[str]] = [(ASSETS / "tree.css").read_text(encoding="utf-8")]

    def __init__(self, tree: Callable[[], DevToolsTree | None] | None = None,
                 shared: Callable[[], SharedRunView | None] | None = None, **params: Any) -> None:
        params.setdefault("sizing_mode", "stretch_both")
        params.setdefault("min_height", 240)
        super().__init__(**params)
        self._tree_source = tree or (lambda: None)
        self._shared_source = shared or (lambda: None)
        self.feed = TreeFeed()
        self._lock = threading.RLock()
        self._echo: object = _NO_ECHO
        self.param.watch(self._selected_changed, "selected")
        self.param.watch(lambda _e: self._send_tokens(), "tokens")
        #: The heartbeats the browser has (or gets at its next ``ready``): see :meth:`send_heartbeats`.
        self._beats: Mapping[tuple[str, int], float] = {}
        #: The task-state hints of the last :meth:`push` (a reset shows them too).
        self._hints: Mapping[int, str] = NO_HINTS
        self._on_ready: list[Callable[[], None]] = []
        #: Whether the browser has said ``ready`` since the model was created: until then a
        #: message would reach a model with no view listening, and is not sent.
        self._rendered = False
        self._rendered_behind = False
        #: ``seq`` of the rows the model's :attr:`initial` carries (``None``: it carries none).
        self._initial_seq: int | None = None
        #: The patches since those rows, encoded, for the browser's ``ready`` (see :meth:`_hold`).
        self._held: list[str] = []
        self._held_bytes = 0
        #: Held patches larger than the rows themselves: a reset is cheaper (the initial's size).
        self._held_limit = 0
        #: Models whose :attr:`initial` a scheduled :meth:`_fill_initial` will fill.
        self._filling: set[str] = set()

    # -------------------------------------------------------------- Python -> browser

    def push(self, tree: DevToolsTree, changes: tuple[TreeChange, ...] | list[TreeChange],
             shared: SharedRunView | None = None, hints: Mapping[int, str] = NO_HINTS) -> None:
        """Send what ``changes`` did to ``tree`` (one message, or none if nothing visible changed),
        with the task states ``hints`` (``RunStore.state_hints``) on their rows.

        With the run's ``shared`` view the patch is computed once per tick for every session on
        the run, and this component only numbers it. Before the browser has said ``ready`` the
        message is held for it (:meth:`_hold`); with no model, the browser's ``ready`` will get
        a reset.
        """
        with self._lock:
            self._hints = hints
            if not self._models:
                self._rendered_behind = True  # the browser's ``ready`` gets a reset
                return
            if not self._rendered:
                self._hold(tree, changes, shared, hints)
                return
            message = self._update(tree, changes, shared, hints)
            if message is not None:
                self._send_msg(self.feed.encode(message))

    def _update(self, tree: DevToolsTree, changes: tuple[TreeChange, ...] | list[TreeChange],
                shared: SharedRunView | None, hints: Mapping[int, str]) -> Message | None:
        if shared is None:
            return self.feed.update(tree, changes, hints=hints)
        return self.feed.update(tree, changes, shared.tree_patch, shared.tree_reset, hints)

    def _hold(self, tree: DevToolsTree, changes: tuple[TreeChange, ...] | list[TreeChange],
              shared: SharedRunView | None, hints: Mapping[int, str]) -> None:
        """A tick between the document's rows (:attr:`initial`) and the browser's ``ready``.

        A page takes about a second from its document's build to its tree's ``ready`` (the
        scripts load, the document is pulled and rendered); a live run moves on meanwhile.
        The patches since the document's rows are kept and sent after ``ready``: the page
        draws its rows once, then applies them. It used to get a reset instead, a second
        full draw of every row in the page's first second (docs/performance.md, section 3,
        round 9). Held patches that outgrow the rows themselves are dropped for one reset.
        With no rows in the document (built before the hub had the tree), the rows are put
        in it if no browser has pulled it yet (:meth:`_fill_unsent_initial`).
        """
        if self._initial_seq is None or self._rendered_behind:
            self._rendered_behind = True  # the browser's ``ready`` gets a reset
            self._fill_unsent_initial()
            return
        message = self._update(tree, changes, shared, hints)
        if message is None:
            return
        text = self.feed.encode(message)
        self._held_bytes += len(text)
        if message["type"] == "reset" or self._held_bytes > self._held_limit:
            self._held, self._held_bytes, self._rendered_behind = [], 0, True
            return
        self._held.append(text)

    def _hold_from(self, initial: str) -> str:
        """Hold the ticks after the rows ``initial`` (just numbered by :attr:`feed`; empty: none)."""
        self._initial_seq = self.feed.seq if initial else None
        self._held, self._held_bytes, self._held_limit = [], 0, len(initial)
        return initial

    def resend(self, hints: Mapping[int, str] | None = None) -> None:
        """Send every row again (a reset; built once for every session of the run that
        resets on the same tree state, see :mod:`dashboard.shared`), with ``hints`` when
        given (a new store), else those of the last :meth:`push`."""
        with self._lock:
            if hints is not None:
                self._hints = hints
            tree = self._tree_source()
            if tree is None or not self._models or not self._rendered:
                return
            self._send_msg(self._reset_text(tree))

    def _reset_text(self, tree: DevToolsTree) -> str:
        shared = self._shared_source()
        return self.feed.encode(self.feed.reset(tree, shared.tree_reset if shared is not None else None, self._hints))

    def _get_properties(self, doc: Any) -> dict[str, Any]:
        """The new model's properties, with :attr:`initial`: the rows of the tree as it is now
        (a reset numbered by :attr:`feed`, so the browser's ``ready`` says it has it)."""
        props = super()._get_properties(doc)
        with self._lock:
            self._rendered = self._rendered_behind = False
            tree = self._tree_source()
            props["data"].initial = self._hold_from(self._reset_text(tree) if tree is not None and len(tree) else "")
        return props

    def _fill_unsent_initial(self) -> None:
        """Put the rows in :attr:`initial` of a model whose page has not connected yet.

        The first page of a process on a run is built before the hub has the run's tree (its
        subscription waits for the Gateway's first DevTools snapshot); the tree usually comes
        while the browser is still loading the page's scripts. Set then, the rows travel in the
        document the browser pulls, drawn as the tree renders, instead of after its ``ready``
        round trip. Only while the model's ``initial`` is empty, and only on the document's
        tick, under its lock, with no connection yet: once a browser has pulled the document
        the change would be a patch as large as a reset.
        """
        for ref, (model, _parent) in list(self._models.items()):
            doc = model.document
            context = doc.session_context if doc is not None else None
            session = getattr(context, "session", None)
            if (session is None or session.connection_count or ref in self._filling
                    or getattr(model.data, "initial", "x")):
                continue
            self._filling.add(ref)
            doc.add_next_tick_callback(partial(self._fill_initial, ref, session))

    def _fill_initial(self, ref: str, session: Any) -> None:
        with self._lock:
            self._filling.discard(ref)
            view = pn.state._views.get(ref)
            tree = self._tree_source()
            if (view is None or ref not in self._models or self._rendered or session.connection_count
                    or tree is None or not len(tree)):
                return
            _viewable, root, doc, comm = view
            model = self._models[ref][0]
            # Panel's own model update (not a bare assignment, which Panel would read back
            # as a change from the browser); no connection is subscribed, so nothing is sent.
            self._update_model({}, {"initial": self._hold_from(self._reset_text(tree))}, root, model, doc, comm)
            self._rendered_behind = False

    def _catch_up(self, seq: Any) -> None:
        """Answer a ``ready`` from a browser holding the rows numbered ``seq`` (0: none).

        Current (``seq`` is the last message's), or holding the document's rows with the
        patches held since (:meth:`_hold`) now sent: then ``current`` tells it so, and it
        stops asking. Anything else gets a reset.
        """
        with self._lock:
            self._rendered = True
            held, self._held, self._held_bytes = self._held, [], 0
            initial, self._initial_seq = self._initial_seq, None
            fresh = isinstance(seq, int) and not isinstance(seq, bool) and seq > 0 and not self._rendered_behind
            self._rendered_behind = False
            if fresh and seq == self.feed.seq:
                held = []
            elif not (fresh and held and seq == initial):
                self.resend()
                return
            for text in held:
                self._send_msg(text)
            self._send_msg({"type": "current", "seq": self.feed.seq})

    def on_ready(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` each time the browser reports this component rendered."""
        self._on_ready.append(callback)

    def _forget_initial(self) -> None:
        """Empty :attr:`initial` on the models once the browser has drawn it (it is read once)."""
        for ref, (model, _parent) in list(self._models.items()):
            if getattr(model.data, "initial", ""):
                self._apply_update({}, {"initial": ""}, model, ref)

    def _send_tokens(self) -> None:
        if self._models:
            self._send_msg({"type": "tokens", "tokens": self.tokens})

    def send_heartbeats(self, beats: Mapping[tuple[str, int], float], delta: BeatsDelta = heartbeats_delta) -> None:
        """Give the browser each task's last heartbeat (``RunStore.task_heartbeats``) as a
        ``beats`` message: only the entries that changed since the last one (``delta``,
        :func:`~dashboard.treerows.heartbeats_delta`; shared by a run's sessions), and the whole
        table after every ``ready``. The server's time goes with it, from which the browser
        counts each running task's "heartbeat 3 s ago" on its own between messages."""
        previous, self._beats = self._beats, beats
        if self._models:
            found = delta(previous, beats)
            if found is not None:
                self._send_beats(*found)

    def _send_beats(self, text: str, merge: bool) -> None:
        self._send_msg({"type": "beats", "beats": text, "merge": merge, "now": time.time() * 1000.0})

    def expand_all(self) -> None:
        self._send_msg({"type": "expand-all"})

    def collapse_all(self) -> None:
        self._send_msg({"type": "collapse-all"})

    def _selected_changed(self, event: param.parameterized.Event) -> None:
        # Tell the browser, unless the browser is where the selection came from.
        if event.new != self._echo:
            self._send_msg({"type": "select", "id": event.new})
        self._echo = _NO_ECHO

    # -------------------------------------------------------------- browser -> Python

    def _handle_msg(self, data: Any) -> None:
        """``ready``: the browser (re)rendered; send what it lacks (:meth:`_catch_up`).
        ``select``: the user picked a row."""
        if not isinstance(data, dict):
            return
        kind = data.get("type")
        if kind == "ready":
            self._catch_up(data.get("seq"))
            self._forget_initial()
            if self.tokens != "{}":
                self._send_tokens()
            if self._beats:
                self._send_beats(task_heartbeats_json(self._beats), False)
            for callback in self._on_ready:
                callback()
        elif kind == "select":
            node_id = data.get("id")
            if isinstance(node_id, int) and not isinstance(node_id, bool):
                self._echo = node_id
                self.selected = node_id


class NodeTree(StoreView):
    """The node-tree panel: toolbar plus :class:`TreeComponent`, bound to a store.

    It reads the store's ``tree`` (a :class:`~inspector.tree.DevToolsTree`), ``tree_version``,
    ``last_changes``, ``selected_node`` and ``run_id``, and writes ``selected_node``.
    """

    toolbar = param.Boolean(default=True, doc="""
        Show search, filter, expand/collapse and follow. Off on the wall monitor, where nobody
        clicks and the tree simply follows the running node.""")

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self.tree = TreeComponent(tree=self._current_tree,
                                  shared=lambda: getattr(self.store, "shared", None) if self.store is not None else None)
        self._search = pn.widgets.TextInput(
            placeholder="Search label, nodeId, state…", width=220, margin=(4, 4),
            styles={"flex": "1 1 180px"},
        )
        self._state = self._state_select({"All states": ""}, "")
        self._expand = pn.widgets.Button(label="Expand all", width=92, margin=(4, 4))
        self._collapse = pn.widgets.Button(label="Collapse all", width=92, margin=(4, 4))
        self._follow = pn.widgets.Toggle(label="Follow", value=True, width=76, margin=(4, 4))
        self._search.param.watch(lambda e: setattr(self.tree, "query", e.new or ""), "value_input")
        self._expand.on_click(lambda _e: self.tree.expand_all())
        self._collapse.on_click(lambda _e: self.tree.collapse_all())
        self._follow.link(self.tree, value="follow", bidirectional=True)
        self.tree.param.watch(self._tree_selected, "selected")
        # A wrapping flex row: the tree often gets under half a screen beside the node
        # details, where five controls in one row would overflow into the next panel.
        self._toolbar = pn.FlexBox(
            self._search, self._state, self._expand, self._collapse, self._follow,
            flex_wrap="wrap", align_items="center", sizing_mode="stretch_width", margin=0,
        )
        self._watchers: list[Any] = []
        self._tokens = Throttle(self._send_tokens, 1.0, self._load_stretch)
        #: A 4-task agentic run beats several times a second: one ``beats`` message a second at most.
        self._beats = Throttle(self._send_heartbeats, 1.0, self._load_stretch)
        self._extra_states: frozenset[str] | None = None
        self._page_ready = False
        self._pending_states: dict[str, str] | None = None
        self.tree.on_ready(self._on_page_ready)
        self._bind_store(None, self.store)
        self.param.watch(lambda e: self._bind_store(e.old, e.new), "store")

    def _current_tree(self) -> DevToolsTree | None:
        return getattr(self.store, "tree", None) if self.store is not None else None

    def _bind_store(self, old: Any, new: Any) -> None:
        for watcher in self._watchers:
            old.param.unwatch(watcher)
        self._watchers = []
        if new is None:
            return
        self._watchers = [
            new.param.watch(self._tick, ["tree_version", "state_hints"]),
            new.param.watch(self._store_selected, "selected_node"),
            new.param.watch(self._tokens, ["agents_version", "agents"]),
            new.param.watch(self._beats, "task_heartbeats"),
        ]
        self._send_tokens()
        self._send_heartbeats()
        self._refresh_states()
        self.tree.resend(getattr(new, "state_hints", NO_HINTS))

    def _send_tokens(self) -> None:
        tokens = task_tokens(getattr(self.store, "agents", None))
        if tokens != self.tree.tokens:
            self.tree.tokens = tokens

    def _send_heartbeats(self) -> None:
        beats = getattr(self.store, "task_heartbeats", None) or {}
        shared = getattr(self.store, "shared", None)
        if shared is None:
            self.tree.send_heartbeats(beats)
            return

        def delta(previous: Mapping[tuple[str, int], float],
                  current: Mapping[tuple[str, int], float]) -> tuple[str, bool] | None:
            # The run's sessions hold the same map objects (SharedRunView.heartbeats): the
            # message between two of them is worked out once for all.
            return shared.memo("beats", (id(previous), id(current)), (previous, current),  # type: ignore[no-any-return]
                               lambda: heartbeats_delta(previous, current))

        self.tree.send_heartbeats(beats, delta)

    def _tick(self, *events: param.parameterized.Event) -> None:
        store = self.store
        tree = store.tree
        if tree is not None:
            # A tick of the hints alone changes no row of the tree: the changes are the last batch's.
            changes = tuple(store.last_changes or ()) if any(e.name == "tree_version" for e in events) else ()
            self.tree.push(tree, changes, getattr(store, "shared", None), getattr(store, "state_hints", NO_HINTS))
        self._refresh_states()

    def _refresh_states(self) -> None:
        """Offer the common states and any other state the run has, by name, in the filter.

        Only when the set of states changes: updating a Select's options makes Bokeh
        re-measure the page, which a 10,000-node run ticking 20 times a second cannot afford
        (counts per state would change on nearly every tick).
        """
        tree = self._current_tree()
        states = frozenset(tree.state_counts()) if tree is not None else frozenset()
        extra = states - set(COMMON_STATES)
        if extra == self._extra_states:
            return
        self._extra_states = extra
        options = {"All states": ""}
        for state in (*COMMON_STATES, *sorted(extra)):
            options[state] = state
        if self._page_ready:
            self._offer_states(options)
        else:
            self._pending_states = options

    def _on_page_ready(self) -> None:
        """Send the filter's options held back while the toolbar was not yet rendered.

        Bokeh's Select view throws on an ``options`` change that reaches it before it
        rendered, and the rest of that patch is lost; a replaced Select is lost the same way.
        The run page joins the document after it loaded (so ``document_ready`` is too early),
        and BokehJS builds its views asynchronously: the tree component's ``ready`` message,
        sent when it rendered, comes after the toolbar above it rendered.
        """
        self._page_ready = True
        if self._pending_states is not None:
            options, self._pending_states = self._pending_states, None
            self._offer_states(options)

    def _offer_states(self, options: dict[str, str]) -> None:
        value = self._state.value if self._state.value in options.values() else ""
        self._state.param.update(options=options, value=value)

    def _state_select(self, options: dict[str, str], value: str) -> pn.widgets.Select:
        select = pn.widgets.Select(options=options, value=value, width=150, margin=(4, 4),
                                   css_classes=["sd-state-filter"])
        select.param.watch(lambda e: setattr(self.tree, "state_filter", e.new or ""), "value")
        return select

    def _tree_selected(self, event: param.parameterized.Event) -> None:
        if self.store is not None and self.store.selected_node != event.new:
            self.store.selected_node = event.new

    def _store_selected(self, event: param.parameterized.Event) -> None:
        if self.tree.selected != event.new:
            self.tree.selected = event.new

    def __panel__(self) -> pn.viewable.Viewable:
        if not self.toolbar:
            return pn.Column(self.tree, sizing_mode="stretch_both", min_height=300)
        return pn.Column(self._toolbar, self.tree, sizing_mode="stretch_both", min_height=300)

# mypy: allow-untyped-calls
"""FrameScrubber: look at the run's tree as it was at any frame, and what changed there.

A slider over frames 0..latest (``tree.seq``). Moving it fetches
``getDevToolsSnapshot(frameNo)`` (debounced 150 ms; an LRU of frames, since a frame is
immutable until a rewind) and shows that tree as a read-only indented list, the nodes
that changed from the frame before highlighted (via :func:`inspector.treediff.diff_trees`).
"Go live" returns to following the latest frame. After a rewind the range shrinks and
cached frames past the jump target are forgotten: they belong to a history that no longer
exists. A late answer for a frame the slider has left is dropped.

Task states: Gateway 0.32's historical snapshots carry the tasks' *current* states
(its getDevToolsSnapshot.js attaches them from the node table), so a finished run's frame 2
comes back all ``finished``. Where this process watched the stream at that frame, the
scrubber shows the states the stream had then (:mod:`inspector.history`, kept by the hub)
and says so; elsewhere it shows the Gateway's states and says that they are current ones.
"""

from __future__ import annotations

import asyncio
import html
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import panel as pn
import param

from inspector.errors import GatewayError
from inspector.treediff import diff_trees, subtree_ids

from ..format import node_icon, state_colour, state_label
from .base import StoreView
from .widgets import TextPane, stylesheet

__all__ = ["FrameScrubber", "changed_ids", "frame_html", "with_states"]


def changed_ids(before: Mapping[str, Any] | None, after: Mapping[str, Any]) -> set[int]:
    """Ids of nodes added or updated between two wire roots (all of them if no ``before``)."""
    if before is None:
        return set(subtree_ids(after))
    out: set[int] = set()
    for op in diff_trees(before, after):
        kind = op.get("op")
        if kind in ("updateTask", "updateProps"):
            out.add(int(op["id"]))
        elif kind in ("addNode", "replaceRoot"):
            out.update(subtree_ids(op["node"]))
    return out


def with_states(node: Mapping[str, Any], states: Mapping[int, str]) -> dict[str, Any]:
    """A copy of a wire tree whose task states are the ones in ``states`` (by DevTools id).

    Task nodes missing from ``states`` did not exist, as tasks, at that frame in what was
    observed; they keep the Gateway's state. The input (a shared, cached answer) is not
    changed.
    """
    out = dict(node)
    task = node.get("task")
    node_id = node.get("id")
    if isinstance(task, Mapping) and isinstance(node_id, int) and node_id in states:
        out["task"] = {**task, "state": states[node_id]}
    children = node.get("children")
    if isinstance(children, list):
        out["children"] = [with_states(c, states) if isinstance(c, Mapping) else c for c in children]
    return out


def _label(node: Mapping[str, Any]) -> str:
    task: Mapping[str, Any] = node["task"] if isinstance(node.get("task"), Mapping) else {}
    for key in ("label", "nodeId"):
        if isinstance(task.get(key), str) and task[key]:
            return str(task[key])
    props: Mapping[str, Any] = node["props"] if isinstance(node.get("props"), Mapping) else {}
    for key in ("label", "id", "name"):
        if isinstance(props.get(key), str) and props[key]:
            return str(props[key])
    return str(node.get("name") or node.get("type") or "?")


def frame_html(root: Mapping[str, Any] | None, changed: set[int], limit: int = 3000) -> str:
    """The tree as an escaped, indented list; ``changed`` ids highlighted."""
    if root is None:
        return '<pre class="sd-frames"></pre>'
    lines: list[str] = []
    stack: list[tuple[Mapping[str, Any], int]] = [(root, 0)]
    while stack and len(lines) < limit:
        node, depth = stack.pop()
        task = node.get("task") if isinstance(node.get("task"), Mapping) else None
        state = task.get("state") if task and isinstance(task.get("state"), str) else None
        mark = "●" if node.get("id") in changed else " "
        state_html = (
            f'<span class="st" style="color:{state_colour(state)}">{html.escape(state_label(state))}</span>'
            if state
            else '<span class="st"></span>'
        )
        text = f"{mark} {state_html} {'  ' * depth}{node_icon(str(node.get('type')))} {html.escape(_label(node))}"
        cls = ' class="changed"' if node.get("id") in changed else ""
        lines.append(f"<span{cls}>{text}</span>")
        children: list[Any] = node["children"] if isinstance(node.get("children"), list) else []
        for child in reversed(children):
            if isinstance(child, Mapping):
                stack.append((child, depth + 1))
    if stack:
        lines.append(html.escape(f"… {len(stack)}+ more nodes not shown"))
    return '<pre class="sd-frames">' + "\n".join(lines) + "</pre>"


class FrameScrubber(StoreView):
    """Frame slider with a historical tree (see the module docstring)."""

    live = param.Boolean(default=True, doc="Following the latest frame.")

    selected_frame = param.Integer(default=None, allow_None=True, doc="""
        The earlier frame being looked at (``None`` while following live): what a rewind
        goes back to (the run controls watch it).""")

    cache_size = param.Integer(default=64, bounds=(2, None), doc="Frames kept in the LRU cache.")

    debounce = param.Number(default=0.15, bounds=(0, None), doc="Seconds the slider must rest before a fetch.")

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self._cache: OrderedDict[tuple[str, int], dict[str, Any]] = OrderedDict()
        self._slider = pn.widgets.IntSlider(label="Frame", start=0, end=1, value=0, sizing_mode="stretch_width")
        self._live_button = pn.widgets.Button(label="Go live", color="primary", width=110, disabled=True)
        self._status = TextPane("", margin=(5, 10))
        self._tree = pn.pane.HTML(frame_html(None, set()), stylesheets=[stylesheet()], sizing_mode="stretch_width",
                                  max_height=520, styles={"overflow": "auto"})
        self._timer: asyncio.TimerHandle | None = None
        self._fetch: asyncio.Task[None] | None = None
        self._programmatic = False
        self._wanted: int | None = None
        self._slider.param.watch(self._on_slider, "value")
        self._live_button.on_click(lambda e: self.go_live())
        self.store.param.watch(self._on_tree, "tree_version")
        self.store.param.watch(self._on_jump, "last_jump")
        self.store.param.watch(self._on_run, "run_id")
        self._on_tree()

    # ------------------------------------------------------------------ following the store

    def _latest(self) -> int:
        tree = self.store.tree
        return tree.seq if tree is not None and tree.seq is not None else 0

    def _set_slider(self, **values: Any) -> None:
        self._programmatic = True
        try:
            self._slider.param.update(**values)
        finally:
            self._programmatic = False

    def _on_tree(self, *events: Any) -> None:
        latest = self._latest()
        end = max(1, latest)
        if self.live:
            self._set_slider(end=end, value=latest)
            self._status.object = f"Live: frame {latest}. Drag the slider to look at an earlier frame."
        else:
            value = min(int(self._slider.value or 0), latest)
            self._set_slider(end=end, value=value)

    def _on_run(self, event: Any) -> None:
        self._cache.clear()
        self.go_live()

    def _on_jump(self, event: Any) -> None:
        jump = event.new
        if not jump:
            return
        to = jump.get("to")
        limit = to if isinstance(to, int) else -1
        for key in [k for k in self._cache if k[1] > limit]:
            del self._cache[key]
        self._on_tree()
        if not self.live and self._wanted is not None and self._wanted > limit:
            self.go_live()

    # ------------------------------------------------------------------ user actions

    def go_live(self) -> None:
        self.live = True
        self._wanted = None
        self.selected_frame = None
        self._cancel()
        self._live_button.disabled = True
        with pn.io.hold():
            self._tree.object = frame_html(None, set())
            self._on_tree()

    def show_frame(self, frame: int) -> None:
        """Show ``frame`` (as if the slider was moved there)."""
        self._set_slider(value=frame)
        self._select(frame)

    def _on_slider(self, event: Any) -> None:
        if self._programmatic:
            return
        self._select(int(event.new))

    def _select(self, frame: int) -> None:
        if frame >= self._latest():
            self.go_live()
            return
        self.live = False
        self._live_button.disabled = False
        self._wanted = frame
        self.selected_frame = frame
        self._status.object = f"Frame {frame} of {self._latest()}: loading…"
        self._cancel()
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._timer = loop.call_later(self.debounce, self._start_fetch, frame)

    def _cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _start_fetch(self, frame: int) -> None:
        self._timer = None
        self._fetch = asyncio.get_running_loop().create_task(self._load(frame))

    # ------------------------------------------------------------------ fetching

    async def _snapshot(self, run_id: str, frame: int) -> dict[str, Any]:
        key = (run_id, frame)
        cached = self._cache.get(key)
        if cached is not None:
            self._cache.move_to_end(key)
            return cached
        hub = self.store.hub
        if hub is None:
            raise GatewayError("no Gateway")
        snap = await hub.read("getDevToolsSnapshot", {"runId": run_id, "frameNo": frame}, max_age=60)
        if not isinstance(snap, dict):
            raise GatewayError("getDevToolsSnapshot did not return a snapshot")
        self._cache[key] = snap
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return snap

    async def _load(self, frame: int) -> None:
        run_id = self.store.run_id
        if not run_id:
            return
        try:
            snap = await self._snapshot(run_id, frame)
            before = await self._snapshot(run_id, frame - 1) if frame > 0 else None
        except GatewayError as exc:
            if self._wanted == frame and run_id == self.store.run_id:
                self._status.object = f"Frame {frame}: cannot load it ({exc})"
            return
        if self._wanted != frame or run_id != self.store.run_id or self.live:
            return  # the slider moved on while we were fetching
        root = snap.get("root") if isinstance(snap.get("root"), Mapping) else None
        prev = before.get("root") if before and isinstance(before.get("root"), Mapping) else None
        root, prev, observed = self._as_streamed(run_id, frame, root, prev)
        changed = changed_ids(prev, root) if root is not None else set()
        where = (
            "task states as this dashboard saw them stream at that frame"
            if observed
            else "task states are the Gateway's current ones (Smithers keeps each frame's structure, "
            "not its states, and this dashboard was not watching then)"
        )
        with pn.io.hold():
            self._status.object = (
                f"Frame {frame} of {self._latest()} · {len(changed)} node(s) changed from frame {frame - 1} · {where}"
                if frame > 0
                else f"Frame 0 of {self._latest()} · {where}"
            )
            self._tree.object = frame_html(root, changed)

    def _as_streamed(
        self, run_id: str, frame: int, root: Mapping[str, Any] | None, prev: Mapping[str, Any] | None
    ) -> tuple[Mapping[str, Any] | None, Mapping[str, Any] | None, bool]:
        """The two frames with the task states they had, where the hub watched them."""
        hub = self.store.hub
        frame_states = getattr(hub, "frame_states", None)
        if root is None or frame_states is None:
            return root, prev, False
        states = frame_states(run_id, frame)
        if states is None:
            return root, prev, False
        root = with_states(root, states)
        if prev is not None:
            # Frame N-1 unwatched (the hub joined at N): compare structure only, with N's
            # states on both sides, rather than call every node changed.
            before = frame_states(run_id, frame - 1)
            prev = with_states(prev, before if before is not None else states)
        return root, prev, True

    def __panel__(self) -> pn.viewable.Viewable:
        return pn.Column(
            pn.Row(self._slider, self._live_button, sizing_mode="stretch_width"),
            self._status,
            self._tree,
            sizing_mode="stretch_width",
        )

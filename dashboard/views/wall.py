# mypy: allow-untyped-calls
"""The control-room wall: every active run as a tile, failing runs first, live.

``?view=monitor&overview=1`` shows the grid alone; ``overview=rotate`` alternates it with
the single-run monitor view (``rotate_seconds``; see :meth:`Dashboard.show_wall
<dashboard.app.Dashboard.show_wall>`). A tile says the workflow, progress (finished / total
tasks, from ``getRun``'s ``summary``), failed tasks, tokens and estimated cost when the run
reported any (``listRunTokenUsage`` folded by :class:`~inspector.agents.RunAgents`, priced
by :mod:`inspector.pricing`: :meth:`RunsFeed.run_usage
<dashboard.views.overview_feed.RunsFeed.run_usage>`), and the time since the tile last changed. Runs that ended a
short while ago (:attr:`WallFeed.keep_ended_seconds`) stay on the wall with their outcome,
so a failure does not vanish the moment it happens.

Cheap for many wall screens:

- :class:`WallFeed` (one per hub) does the work once per tick for every session: it rides
  the overview's shared run-list poll (:class:`~dashboard.views.overview_feed.RunsFeed`),
  reads ``getRun`` / ``listRunTokenUsage`` for the runs on the wall with bounded
  concurrency (ended runs once: their figures never change again), renders each tile's HTML
  once per state change (:func:`tile_html`), and publishes one :class:`WallState`: the whole
  grid's HTML and the patch from the previous state (changed tiles and the order).
- :class:`WallGrid` (one per session) is a ``ReactiveHTML`` holding one element: the first
  render sets the grid's HTML; every later tick sends only the patch, which a few lines of
  JavaScript apply in place (a changed tile is replaced, the others stay, the order is
  fixed up). "Time since the last change" is counted in the browser from the tile's
  ``data-changed-ms``, so a quiet wall sends nothing at all.

Hooks for the tests: one ``data-testid="run-tile"`` element per run with ``data-run-id``
and ``data-status`` (and ``data-failed``). Every Gateway-supplied text is escaped.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import logging
import time
import weakref
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, ClassVar

import panel as pn
import param
from panel.reactive import ReactiveHTML

from inspector.errors import GatewayError
from inspector.protocol import TERMINAL_RUN_STATUSES

from ..format import run_status_colour
from .overview_feed import ACTIVE_STATUSES, RunsFeed
from .widgets import in_document

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping

    from ..hub import GatewayHub

__all__ = ["Tile", "WallFeed", "WallGrid", "WallState", "grid_html", "order_tiles", "tile_html", "wall_patch"]

log = logging.getLogger(__name__)

#: Task states counted as done in a tile's progress.
_DONE_STATES = ("finished", "skipped")
#: Run statuses shown as failing (with runs that have failed tasks).
_FAILED_RUN = ("failed",)


@dataclass(frozen=True, slots=True)
class Tile:
    """One run on the wall. ``changed_ms``: when anything shown last changed (epoch ms)."""

    run_id: str
    workflow: str
    status: str
    done: int = 0
    total: int = 0
    failed: int = 0
    tokens: int | None = None
    cost_usd: float | None = None
    changed_ms: float = 0.0

    @property
    def failing(self) -> bool:
        return self.status in _FAILED_RUN or self.failed > 0

    @property
    def active(self) -> bool:
        return self.status in ACTIVE_STATUSES

    def shown(self) -> tuple[Any, ...]:
        """What the tile shows (its change time aside)."""
        return (self.workflow, self.status, self.done, self.total, self.failed, self.tokens, self.cost_usd)


def order_tiles(tiles: Iterable[Tile]) -> list[Tile]:
    """Failing runs first, then active runs, then ended ones; most recent change first within each."""
    return sorted(tiles, key=lambda t: (not t.failing, not t.active, -t.changed_ms, t.run_id))


def _number(value: float) -> str:
    return f"{value / 1e6:.1f}M" if value >= 1e6 else f"{value / 1e3:.1f}k" if value >= 1e4 else f"{value:,.0f}"


def tile_html(tile: Tile) -> str:
    """One tile (escaped; large type comes from the grid's stylesheet)."""
    esc = html.escape
    pct = 100.0 * tile.done / tile.total if tile.total else 0.0
    colour = run_status_colour(tile.status)
    classes = "sd-tile" + (" sd-tile-failing" if tile.failing else "") + ("" if tile.active else " sd-tile-ended")
    usage = []
    if tile.tokens is not None:
        usage.append(f"{_number(tile.tokens)} tokens")
    if tile.cost_usd is not None:
        usage.append(f"${tile.cost_usd:,.2f}")
    failed = f'<span class="sd-tile-failed">{tile.failed} failed</span>' if tile.failed else ""
    return (
        f'<div class="{classes}" data-testid="run-tile" data-run-id="{esc(tile.run_id, quote=True)}" '
        f'data-status="{esc(tile.status, quote=True)}" data-failed="{tile.failed}" '
        f'data-changed-ms="{tile.changed_ms:.0f}" style="--sd-tile-colour:{colour}">'
        f'<div class="sd-tile-head"><span class="sd-tile-workflow">{esc(tile.workflow or "(no workflow)")}</span>'
        f'<span class="sd-tile-status">{esc(tile.status)}</span></div>'
        f'<div class="sd-tile-bar"><div style="width:{pct:.1f}%"></div></div>'
        f'<div class="sd-tile-figures"><span>{tile.done}/{tile.total} tasks</span>{failed}</div>'
        f'<div class="sd-tile-foot"><span class="sd-tile-usage">{" · ".join(usage)}</span>'
        f'<span class="sd-ago"></span></div>'
        f'<div class="sd-tile-id">{esc(tile.run_id)}</div></div>'
    )


def grid_html(tiles: list[Tile], rendered: Mapping[str, str] | None = None) -> str:
    """Every tile in order (``rendered``: tile HTML already made, by run id)."""
    if not tiles:
        return '<div class="sd-wall-empty">No active runs.</div>'
    rendered = rendered or {}
    return "".join(rendered.get(t.run_id) or tile_html(t) for t in tiles)


def wall_patch(old: Mapping[str, str], new: Mapping[str, str], order: list[str]) -> dict[str, Any]:
    """What turns the grid of ``old`` (run id -> tile HTML) into ``new``: the changed or new
    tiles' HTML and the new order (tiles not in it are removed)."""
    return {"set": {run_id: text for run_id, text in new.items() if old.get(run_id) != text}, "order": order}


@dataclass(frozen=True, slots=True)
class WallState:
    """One tick of the wall, shared by every session: ``version`` counts the changes."""

    version: int = 0
    html: str = '<div class="sd-wall-empty">Loading runs…</div>'
    patch: dict[str, Any] = field(default_factory=dict)
    tiles: tuple[Tile, ...] = ()


class WallFeed:
    """The wall's tiles for one hub, computed once per tick (see the module docstring)."""

    _shared: ClassVar[weakref.WeakKeyDictionary[GatewayHub, WallFeed]] = weakref.WeakKeyDictionary()

    def __init__(self, feed: RunsFeed, *, keep_ended_seconds: float = 900.0, concurrency: int = 4) -> None:
        self.feed = feed
        self.keep_ended_seconds = keep_ended_seconds
        self.state = WallState()
        self._limit = asyncio.Semaphore(concurrency)
        self._tiles: dict[str, Tile] = {}
        self._rendered: dict[str, str] = {}
        self._final: set[str] = set()
        self._listeners: dict[int, Callable[[WallState], None]] = {}
        self._keys = 0
        self._unsubscribe: Callable[[], None] | None = None
        self._task: asyncio.Task[None] | None = None
        self._again = False

    @classmethod
    def shared(cls, hub: GatewayHub) -> WallFeed:
        wall = cls._shared.get(hub)
        if wall is None:
            wall = cls._shared[hub] = cls(RunsFeed.shared(hub))
        return wall

    def subscribe(self, listener: Callable[[WallState], None]) -> Callable[[], None]:
        self._keys += 1
        key = self._keys
        self._listeners[key] = listener
        if self._unsubscribe is None:
            self._unsubscribe = self.feed.subscribe(self._on_poll)
        return lambda: self._leave(key)

    def _leave(self, key: int) -> None:
        self._listeners.pop(key, None)
        if not self._listeners and self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    def _on_poll(self, changed: bool) -> None:
        if self._task is not None and not self._task.done():
            self._again = True
            return
        with contextlib.suppress(RuntimeError):
            self._task = asyncio.get_running_loop().create_task(self.refresh())

    # ------------------------------------------------------------------ one tick

    def on_wall(self, now_ms: float) -> list[dict[str, Any]]:
        """The runs the wall shows: active ones and those that ended in the last
        :attr:`keep_ended_seconds`."""
        since = now_ms - self.keep_ended_seconds * 1000
        out = []
        for row in self.feed.history.runs.values():
            status = row.get("status")
            if status in ACTIVE_STATUSES:
                out.append(row)
            elif status in TERMINAL_RUN_STATUSES:
                end = row.get("finishedAtMs") or row.get("heartbeatAtMs") or 0
                if isinstance(end, int | float) and end >= since:
                    out.append(row)
        return out

    async def refresh(self) -> None:
        """Read what changed, rebuild the changed tiles, publish the new state."""
        while True:
            self._again = False
            now = time.time() * 1000
            rows = self.on_wall(now)
            results = await asyncio.gather(*(self._tile(row, now) for row in rows))
            tiles = {t.run_id: t for t in results if t is not None}
            self._publish(tiles)
            if not self._again:
                return

    async def _tile(self, row: Mapping[str, Any], now_ms: float) -> Tile | None:
        run_id = row.get("runId")
        if not isinstance(run_id, str):
            return None
        old = self._tiles.get(run_id)
        if old is not None and run_id in self._final:
            return old
        async with self._limit:
            try:
                run = await self.feed.hub.read("getRun", {"runId": run_id}, max_age=1.0)
            except GatewayError as exc:
                log.info("wall: cannot read run %s (%s)", run_id, exc)
                return old
            usage = await self._usage(run_id)
        run = run if isinstance(run, dict) else dict(row)
        summary = run.get("summary")
        if not isinstance(summary, dict):
            summary = {}
        counts = {str(k): int(v) for k, v in summary.items() if isinstance(v, int)}
        status = str(run.get("status") or row.get("status") or "")
        tile = Tile(
            run_id=run_id,
            workflow=str(run.get("workflowKey") or run.get("workflowName") or row.get("workflowKey") or ""),
            status=status,
            done=sum(counts.get(s, 0) for s in _DONE_STATES),
            total=sum(counts.values()),
            failed=counts.get("failed", 0),
            tokens=usage[0],
            cost_usd=usage[1],
            changed_ms=now_ms,
        )
        if old is not None and old.shown() == tile.shown():
            tile = old
        elif old is None:
            start = run.get("heartbeatAtMs") or run.get("finishedAtMs") or run.get("startedAtMs")
            if isinstance(start, int | float):
                tile = replace(tile, changed_ms=float(start))
        if status in TERMINAL_RUN_STATUSES:
            self._final.add(run_id)
        return tile

    async def _usage(self, run_id: str) -> tuple[int | None, float | None]:
        spent = await self.feed.run_usage(run_id)
        tokens, cost = (spent or {}).get("tokens"), (spent or {}).get("cost_usd")
        return (int(tokens) if tokens and tokens == tokens else None), (cost if cost is not None and cost == cost else None)

    def _publish(self, tiles: dict[str, Tile]) -> None:
        ordered = order_tiles(tiles.values())
        rendered = {t.run_id: (self._rendered[t.run_id] if self._tiles.get(t.run_id) is t and t.run_id in self._rendered
                               else tile_html(t)) for t in ordered}
        order = [t.run_id for t in ordered]
        old_order = [t.run_id for t in self.state.tiles]
        if rendered == self._rendered and order == old_order and self.state.version:
            return
        patch = wall_patch(self._rendered, rendered, order)
        self._final &= set(tiles)
        self._tiles, self._rendered = tiles, rendered
        self.state = WallState(self.state.version + 1, grid_html(ordered, rendered),
                               {**patch, "version": self.state.version + 1}, tuple(ordered))
        for listener in list(self._listeners.values()):
            try:
                listener(self.state)
            except Exception:  # one broken session must not stop the others' walls
                log.exception("wall listener failed")


_CSS = """
:host { display: block; width: 100%; }
.sd-wall-grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(24rem, 1fr)); gap: 1.2rem;
  padding: 1rem; font-size: 1.6rem; line-height: 1.3; color: var(--sd-fg, #e8eaed); cursor: none; }
.sd-tile { border-radius: .6rem; padding: .9rem 1.1rem; background: rgba(127, 127, 127, .12);
  border-left: .6rem solid var(--sd-tile-colour); display: flex; flex-direction: column; gap: .45rem; }
.sd-tile-failing { background: rgba(217, 48, 37, .22); }
.sd-tile-ended { opacity: .7; }
.sd-tile-head { display: flex; justify-content: space-between; gap: .8rem; align-items: baseline; }
.sd-tile-workflow { font-size: 1.35em; font-weight: 700; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
.sd-tile-status { color: var(--sd-tile-colour); font-weight: 700; white-space: nowrap; }
.sd-tile-bar { height: .7rem; border-radius: .35rem; background: rgba(127, 127, 127, .3); overflow: hidden; }
.sd-tile-bar > div { height: 100%; background: var(--sd-tile-colour); }
.sd-tile-figures, .sd-tile-foot { display: flex; justify-content: space-between; gap: .8rem; }
.sd-tile-failed { color: #ff6b5e; font-weight: 700; }
.sd-tile-usage, .sd-ago, .sd-tile-id { opacity: .8; }
.sd-tile-id { font-size: .6em; font-family: monospace; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
.sd-wall-empty { font-size: 2rem; opacity: .7; padding: 2rem; }
"""

_AGO = """
const ago = (ms) => { const s = Math.max(0, Math.round(ms / 1000));
  return s < 60 ? s + ' s ago' : s < 3600 ? Math.floor(s / 60) + ' min ago' : Math.floor(s / 3600) + ' h ago' }
for (const el of grid.querySelectorAll('[data-testid="run-tile"]')) {
  const span = el.querySelector('.sd-ago')
  if (span) span.textContent = ago(Date.now() + (state.skew || 0) - Number(el.dataset.changedMs))
}
"""


class WallGrid(ReactiveHTML):
    """One session's grid (see the module docstring): the shared HTML, then patches."""

    html = param.String(default="", doc="The whole grid's HTML (the first render, and a session catching up).")

    patch = param.Dict(default={}, doc="Changed tiles and the order, applied in place by the browser.")

    now_ms = param.Number(default=0.0, doc="The server's clock at the last update (the browser counts 'ago' from it).")

    _template = '<div id="grid" class="sd-wall-grid"></div>'

    _scripts: ClassVar[dict[str, str]] = {
        "render": """
          grid.innerHTML = data.html
          state.skew = data.now_ms ? data.now_ms - Date.now() : 0
          state.timer = setInterval(() => self.ago(), 1000)
          self.patch()
        """,
        "html": "grid.innerHTML = data.html; self.ago()",
        "now_ms": "state.skew = data.now_ms - Date.now()",
        "patch": """
          const p = data.patch
          if (!p || !p.order) return
          const tiles = {}
          for (const el of [...grid.children]) {
            if (el.dataset.testid === 'run-tile') tiles[el.dataset.runId] = el; else el.remove()
          }
          if (!p.order.length) { grid.innerHTML = '<div class="sd-wall-empty">No active runs.</div>'; return }
          const tmp = document.createElement('div')
          for (const [id, text] of Object.entries(p.set || {})) {
            tmp.innerHTML = text
            const el = tmp.firstElementChild
            if (tiles[id]) tiles[id].replaceWith(el)
            tiles[id] = el
          }
          let prev = null
          for (const id of p.order) {
            const el = tiles[id]
            if (!el) continue
            if (prev === null ? grid.firstElementChild !== el : prev.nextElementSibling !== el) {
              if (prev === null) grid.prepend(el); else prev.after(el)
            }
            prev = el
            delete tiles[id]
          }
          for (const el of Object.values(tiles)) el.remove()
          self.ago()
        """,
        "ago": _AGO,
        "remove": "clearInterval(state.timer)",
    }

    def __init__(self, wall: WallFeed | None = None, hub: GatewayHub | None = None, **params: Any) -> None:
        if wall is None:
            if hub is None:
                raise ValueError("WallGrid needs a WallFeed or a hub")
            wall = WallFeed.shared(hub)
        state = wall.state
        params.setdefault("sizing_mode", "stretch_width")
        super().__init__(html=state.html, now_ms=time.time() * 1000, stylesheets=[_CSS], **params)
        self.wall = wall
        self._version = state.version
        self._doc = pn.state.curdoc
        self._unsubscribe = wall.subscribe(self._on_state)
        if wall.feed.loaded and not wall.state.version:
            wall._on_poll(True)

    def _on_state(self, state: WallState) -> None:
        in_document(self._doc, lambda: self._apply(state))

    def _apply(self, state: WallState) -> None:
        if state.version <= self._version:
            return
        now = time.time() * 1000
        if state.version == self._version + 1:
            self.param.update(now_ms=now, patch=state.patch)
            # Kept for a view rendered later (a reconnect), without sending it now.
            with param.parameterized.discard_events(self):
                self.html = state.html
        else:  # missed a tick (a session that was busy): the whole grid
            self.param.update(now_ms=now, html=state.html)
        self._version = state.version

    def close(self) -> None:
        self._unsubscribe()

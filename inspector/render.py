"""Terminal rendering of a DevTools tree for ``smithers-dashboard watch`` (rich, no I/O of its own)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from rich.console import Group
from rich.text import Text
from rich.tree import Tree

from .status import ConnectionState, ConnectionStatus
from .vocabulary import NODE_ICONS as VOCABULARY_ICONS, TaskState

if TYPE_CHECKING:
    from collections.abc import Mapping

    from rich.console import RenderableType

    from .tree import DevToolsTree, TreeNode

__all__ = ["NODE_ICONS", "STATE_STYLES", "render_watch"]

#: The emoji of each node type (a terminal draws colour emoji); an unknown type is shown by name.
NODE_ICONS: Mapping[str, str] = {node_type: icon.emoji for node_type, icon in VOCABULARY_ICONS.items()}

#: Colours per task state. A state not listed keeps its own name in a neutral style.
STATE_STYLES: Mapping[str, str] = {
    TaskState.PENDING: "grey50", TaskState.IN_PROGRESS: "bold blue", TaskState.FINISHED: "green",
    TaskState.FAILED: "bold red", TaskState.RETRYING: "dark_orange", TaskState.CANCELLED: "grey42",
    TaskState.SKIPPED: "grey42", TaskState.WAITING_APPROVAL: "yellow", TaskState.WAITING_EVENT: "yellow",
    TaskState.WAITING_TIMER: "yellow", TaskState.WAITING_QUOTA: "yellow", TaskState.BLOCKED: "magenta",
}

STATUS_STYLES = {
    ConnectionStatus.ONLINE: "green", ConnectionStatus.CONNECTING: "yellow", ConnectionStatus.OFFLINE: "red",
    ConnectionStatus.UNAUTHORIZED: "bold red", ConnectionStatus.UNSUPPORTED: "bold red", ConnectionStatus.IDLE: "grey50",
}


def node_text(node: TreeNode) -> Text:
    """One line for a node: icon, label, state and attempt (untrusted text stays text)."""
    icon = NODE_ICONS.get(node.type)
    line = Text(f"{icon} " if icon else f"[{node.type}] ")
    line.append(node.label)
    state = node.state
    if state is not None:
        line.append("  ")
        line.append(state, style=STATE_STYLES.get(state, "italic"))
        task = node.task or {}
        attempt, most = task.get("attempt"), task.get("maxAttempts")
        if isinstance(attempt, int) and (attempt > 1 or isinstance(most, int)):
            line.append(f"  attempt {attempt}" + (f"/{most}" if isinstance(most, int) else ""), style="dim")
        if node.iteration:
            line.append(f"  iter {node.iteration}", style="dim")
    return line


def status_line(state: ConnectionState, run_status: str | None, now: float | None = None) -> Text:
    now = time.time() if now is None else now
    text = Text("● ", style=STATUS_STYLES.get(state.status, ""))
    text.append(state.status.value, style=STATUS_STYLES.get(state.status, ""))
    if state.outage_since and state.status is not ConnectionStatus.ONLINE:
        text.append(f" for {now - state.outage_since:.0f} s")
    if state.retry_in and state.status is ConnectionStatus.OFFLINE:
        text.append(f", retrying in {state.retry_in:.1f} s", style="dim")
    if state.error and state.status is not ConnectionStatus.ONLINE:
        text.append(f" ({state.error})", style="dim")
    if run_status:
        text.append(f"   run {run_status}")
    return text


def render_watch(
    tree: DevToolsTree, state: ConnectionState, run_id: str, run_status: str | None, *, max_rows: int = 60
) -> RenderableType:
    """The whole screen: connection, counts, and the first ``max_rows`` nodes of the tree."""
    counts = tree.state_counts()
    summary = Text(f"run {run_id}  seq {tree.seq}  nodes {len(tree)}  tasks {tree.task_count}  ")
    for name, n in sorted(counts.items()):
        summary.append(f"{name} {n}  ", style=STATE_STYLES.get(name, "italic"))
    if tree.root is None:
        return Group(status_line(state, run_status), summary, Text("waiting for the first snapshot…", style="dim"))
    shown = 0
    top = Tree(node_text(tree.root))
    stack: list[tuple[TreeNode, Tree]] = [(c, top) for c in reversed(tree.root.children)]
    while stack and shown < max_rows:
        node, parent = stack.pop()
        branch = parent.add(node_text(node))
        shown += 1
        stack.extend((c, branch) for c in reversed(node.children))
    parts: list[RenderableType] = [status_line(state, run_status), summary, top]
    if len(tree) - 1 > shown:
        parts.append(Text(f"… {len(tree) - 1 - shown} more nodes", style="dim"))
    return Group(*parts)

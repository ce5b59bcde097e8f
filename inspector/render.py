"""Terminal rendering for ``smithers-dashboard watch`` (rich, no I/O of its own).

The screen: the connection, the tree's counts, the tree, and what the agents do
(:func:`agents_section`): per running task (else the most recent ones) its agent and
model, its newest output lines and actions, then the run's token totals and estimated
cost by Smithers' formula (:mod:`inspector.pricing`). Agent output is untrusted terminal
text: escape sequences and control characters are stripped (:func:`inspector.ansi.strip_ansi`)
so a CLI agent's colours or cursor moves cannot garble the screen, and lines are cut.
Everything here is a pure function of its inputs, so tests compare the rendered text.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from rich.console import Group
from rich.text import Text
from rich.tree import Tree

from .ansi import strip_ansi
from .pricing import TokenCounts, estimate_cost
from .status import ConnectionState, ConnectionStatus
from .vocabulary import NODE_ICONS as VOCABULARY_ICONS, TaskState

if TYPE_CHECKING:
    from collections.abc import Mapping

    from rich.console import RenderableType

    from .agents import AgentAttempt, RunAgents
    from .pricing import PriceTable
    from .tree import DevToolsTree, TreeNode

__all__ = ["NODE_ICONS", "STATE_STYLES", "agents_section", "render_watch", "tokens_line"]

#: How an action's status is drawn.
ACTION_MARKS: Mapping[str, tuple[str, str]] = {"running": ("…", "bold blue"), "ok": ("✓", "green"), "failed": ("✗", "bold red")}
#: Characters shown of one output line or action title.
LINE_CHARS = 160

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


def _cut(text: str, limit: int = LINE_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _output_tail(attempt: AgentAttempt, lines: int) -> list[str]:
    """The attempt's last ``lines`` non-blank output lines, escapes stripped."""
    text = strip_ansi(attempt.text())
    kept = [line.rstrip() for line in text.splitlines() if line.strip()]
    return kept[-lines:]


def _attempt_block(attempt: AgentAttempt, output_lines: int, actions: int) -> list[Text]:
    head = Text("▸ ")
    head.append(_cut(strip_ansi(attempt.node_id), 80), style="bold")
    where = f" iter {attempt.iteration}" if attempt.iteration else ""
    head.append(f"{where} attempt {attempt.attempt}  ", style="dim")
    head.append(attempt.status, style="bold blue" if attempt.status == "running" else STATE_STYLES.get(attempt.status, "italic"))
    who = " · ".join(strip_ansi(x) for x in (attempt.agent, attempt.model) if x)
    if who:
        head.append(f"  {_cut(who, 80)}", style="cyan")
    if attempt.usage is not None:
        head.append(f"  {attempt.usage.total:,} tokens", style="dim")
    out = [head]
    for action in attempt.actions_in_order()[-actions:]:
        mark, style = ACTION_MARKS.get(action.status, ("?", "italic"))
        line = Text("    ")
        line.append(mark, style=style)
        line.append(f" {_cut(strip_ansi(action.kind), 20)}: {_cut(strip_ansi(action.title or action.id))}")
        if action.duration_ms is not None:
            line.append(f"  {action.duration_ms / 1000:.1f} s", style="dim")
        out.append(line)
    for text in _output_tail(attempt, output_lines):
        out.append(Text(f"    │ {_cut(text)}", style="grey70"))
    if attempt.answer and attempt.status != "running":
        out.append(Text(f"    answer: {_cut(strip_ansi(attempt.answer).replace(chr(10), ' '))}", style="green"))
    if attempt.error:
        out.append(Text(f"    error: {_cut(strip_ansi(attempt.error).replace(chr(10), ' '))}", style="red"))
    return out


def tokens_line(agents: RunAgents, prices: PriceTable | None) -> Text:
    """The run's token totals and, with a price table, its estimated cost (unpriced apart)."""
    total: TokenCounts = agents.totals()
    line = Text("tokens ", style="bold")
    line.append(f"in {total.input:,}  out {total.output:,}  cache read {total.cache_read:,}  "
                f"cache write {total.cache_write:,}  reasoning {total.reasoning:,}")
    if prices is not None:
        cost = estimate_cost(((row.model, row.tokens) for row in agents.usage_rows()), prices)
        line.append("   cost ", style="bold")
        line.append("unpriced" if cost.cost_usd is None else f"${cost.cost_usd:.4f}")
        if cost.unpriced_tokens:
            line.append(f" (+{cost.unpriced_tokens:,} tokens of {', '.join(cost.unpriced_models)} unpriced)", style="yellow")
    return line


def agents_section(
    agents: RunAgents, prices: PriceTable | None = None, *, max_attempts: int = 6, output_lines: int = 3, actions: int = 3
) -> list[Text]:
    """What the agents do: the running attempts (else the most recent ones), newest last,
    each with its actions and last output lines; then the token totals and cost."""
    attempts = list(agents)
    if not attempts:
        return []
    running = [a for a in attempts if a.status == "running"]
    if running:
        shown = running[-max_attempts:]
    else:
        def recency(a: AgentAttempt) -> float:
            return a.finished_ms or a.started_ms or 0.0

        shown = sorted(attempts, key=recency)[-max_attempts:]
    title = Text(f"agents  {len(running)} running of {len(attempts)} attempts", style="bold")
    lines = [title]
    for attempt in shown:
        lines.extend(_attempt_block(attempt, output_lines, actions))
    lines.append(tokens_line(agents, prices))
    return lines


def render_watch(
    tree: DevToolsTree,
    state: ConnectionState,
    run_id: str,
    run_status: str | None,
    *,
    max_rows: int = 60,
    agents: RunAgents | None = None,
    prices: PriceTable | None = None,
) -> RenderableType:
    """The whole screen: connection, counts, the first ``max_rows`` nodes of the tree, and
    (given ``agents``) what the agents do with the run's tokens and cost."""
    extra: list[RenderableType] = list(agents_section(agents, prices)) if agents is not None else []
    counts = tree.state_counts()
    summary = Text(f"run {run_id}  seq {tree.seq}  nodes {len(tree)}  tasks {tree.task_count}  ")
    for name, n in sorted(counts.items()):
        summary.append(f"{name} {n}  ", style=STATE_STYLES.get(name, "italic"))
    if tree.root is None:
        return Group(status_line(state, run_status), summary, Text("waiting for the first snapshot…", style="dim"), *extra)
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
    return Group(*parts, *extra)

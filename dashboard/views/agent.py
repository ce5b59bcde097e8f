# mypy: allow-untyped-calls
"""The Agent tab of a task: what the agent printed, which tools it called, what it answered and
what it cost, for any iteration and any attempt.

Three parts:

- :class:`OutputFeed` (pure): an attempt's retained output chunks
  (:class:`~inspector.agents.AgentAttempt`) as messages for the browser: a ``reset`` with
  every retained chunk, then ``append`` s carrying only the chunks printed since. Each chunk is
  one ``<span data-c=N>`` (``sd-o-stdout`` / ``sd-o-stderr``) of HTML built by
  :func:`inspector.ansi.spans_to_html`, which escapes every character of the agent's text and
  takes styles from a fixed palette (colour carries across the chunks of one stream, an escape
  sequence cut between two chunks is completed, every other escape is dropped). ``first``
  tells the browser which chunks the server's byte cap let go, so the page is bounded too.
- :class:`AgentOutput`: the ``JSComponent`` that sends those messages
  (``dashboard/assets/agent_output.js`` appends them); its ``<pre
  data-testid="agent-output">`` holds exactly the output's text.
- :class:`AgentView`: the tab: iteration and attempt pickers (``iteration`` / ``attempt``,
  ``None`` meaning "the tree's iteration, the newest attempt"), the attempt's status, model,
  tokens and cost, the output with "N earlier lines" and a download of the whole text (read
  from the durable history, uncapped, by :func:`inspector.agent_history.output_from_history`), the
  actions (``data-testid="agent-action"`` with ``data-status``), the answer and the
  transcript. Everything the agent wrote is escaped text.
"""

from __future__ import annotations

import html
import io
import itertools
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import panel as pn
import param
from panel.custom import JSComponent

from inspector.agent_history import output_from_history
from inspector.ansi import AnsiStream, spans_to_html, strip_ansi
from inspector.errors import GatewayError
from inspector.pricing import usage_cost
from inspector.vocabulary import TaskState

from ..format import format_duration, state_colour
from ..htmlpane import TextHTML
from .base import StoreView
from .widgets import TextPane, stylesheet

if TYPE_CHECKING:
    from inspector.agents import AgentAction, AgentAttempt, AttemptKey, OutputChunk
    from inspector.pricing import PriceTable

__all__ = [
    "AgentOutput",
    "AgentView",
    "OutputFeed",
    "actions_html",
    "answer_html",
    "chunk_html",
    "summary_html",
]

ASSETS = Path(__file__).resolve().parent.parent / "assets"
AGENT_CSS = (ASSETS / "agent.css").read_text(encoding="utf-8")

#: The task state whose colour an attempt status borrows.
_STATUS_STATE = {"running": TaskState.IN_PROGRESS, "pending": TaskState.PENDING, "finished": TaskState.FINISHED,
                 "failed": TaskState.FAILED, "skipped": TaskState.SKIPPED, "cancelled": TaskState.CANCELLED}
#: A transcript longer than this (characters of text) is cut in the view (the history has it all).
_TRANSCRIPT_CHARS = 200_000
_SAFE_NAME = re.compile(r"[^A-Za-z0-9_.-]+")


def attempt_label(key: AttemptKey | None) -> str:
    """``"nodeId/iteration/attempt"``: what the output element says it shows (tests wait on it)."""
    return "" if key is None else f"{key[0]}/{key[1]}/{key[2]}"


def chunk_html(index: int, chunk: OutputChunk, parser: AnsiStream) -> str:
    """One output chunk as escaped HTML (see the module docstring); ``parser`` is its stream's."""
    title = ' title="stderr"' if chunk.stream == "stderr" else ""
    return f'<span class="sd-o-{chunk.stream}" data-c="{index}"{title}>{spans_to_html(parser.feed(chunk.text))}</span>'


class OutputFeed:
    """The browser's copy of one attempt's output, kept in step with messages (pure).

    :meth:`update` answers the message that brings the browser from what it was last sent to
    the attempt as it is now: ``None`` when nothing changed, an ``append`` of the new chunks,
    or a ``reset`` when another attempt is shown or more chunks arrived than the cap kept.
    """

    def __init__(self) -> None:
        self.key: AttemptKey | None = None
        #: The attempt last sent (the same key in another run's model is another attempt).
        self.attempt: AgentAttempt | None = None
        self.sent_chunks = 0
        self.seq = 0
        self._parsers: dict[str, AnsiStream] = {}
        #: Bytes of the last message and of all messages (JSON), for the wire budget.
        self.last_bytes = 0
        self.total_bytes = 0
        self.messages = 0

    def forget(self) -> None:
        """Nothing is on screen: the next :meth:`update` is a reset."""
        self.key = self.attempt = None
        self.sent_chunks = -1

    def reset(self, attempt: AgentAttempt | None) -> dict[str, Any]:
        self.key = attempt.key if attempt is not None else None
        self.attempt = attempt
        self._parsers = {}
        chunks = list(attempt.chunks) if attempt is not None else []
        first = attempt.total_chunks - len(chunks) if attempt is not None else 0
        self.sent_chunks = attempt.total_chunks if attempt is not None else 0
        return self._message("reset", attempt, first, chunks, first)

    def update(self, attempt: AgentAttempt | None) -> dict[str, Any] | None:
        if attempt is not self.attempt or self.sent_chunks < 0:
            return self.reset(attempt)
        if attempt is None:
            return None
        new = attempt.total_chunks - self.sent_chunks
        if new <= 0:
            return None
        retained = len(attempt.chunks)
        if new > retained:
            return self.reset(attempt)
        fresh = list(itertools.islice(attempt.chunks, retained - new, retained))
        self.sent_chunks = attempt.total_chunks
        return self._message("append", attempt, attempt.total_chunks - new, fresh, attempt.total_chunks - retained)

    def _message(self, kind: str, attempt: AgentAttempt | None, start: int, chunks: list[OutputChunk], first: int) -> dict[str, Any]:
        parts = []
        for index, chunk in enumerate(chunks, start):
            parser = self._parsers.get(chunk.stream)
            if parser is None:
                parser = self._parsers[chunk.stream] = AnsiStream()
            parts.append(chunk_html(index, chunk, parser))
        self.seq += 1
        message = {
            "type": kind,
            "seq": self.seq,
            "key": attempt_label(self.key),
            "html": "".join(parts),
            "first": first,
            "dropped": attempt.dropped_lines if attempt is not None else 0,
        }
        self.last_bytes = len(json.dumps(message, separators=(",", ":")).encode("utf-8"))
        self.total_bytes += self.last_bytes
        self.messages += 1
        return message


class AgentOutput(JSComponent):
    """The streaming output pane (browser half: ``dashboard/assets/agent_output.js``).

    :meth:`push` sends what changed in the attempt; a (re)rendered browser view asks for a
    reset with ``ready``.
    """

    _esm: ClassVar[Any] = (ASSETS / "agent_output.js").read_text(encoding="utf-8")
    _stylesheets: ClassVar[list[str]] = [AGENT_CSS]

    def __init__(self, **params: Any) -> None:
        params.setdefault("sizing_mode", "stretch_width")
        params.setdefault("min_height", 80)
        super().__init__(**params)
        self.feed = OutputFeed()
        self._attempt: AgentAttempt | None = None

    def push(self, attempt: AgentAttempt | None) -> None:
        """Bring the browser to ``attempt``'s output (only the new chunks when it can)."""
        self._attempt = attempt
        if not self._models:
            self.feed.forget()
            return
        message = self.feed.update(attempt)
        if message is not None:
            self._send_msg(message)

    def _handle_msg(self, data: Any) -> None:
        if isinstance(data, dict) and data.get("type") == "ready":
            self._send_msg(self.feed.reset(self._attempt))


# ---------------------------------------------------------------------------- pure HTML


def _tokens_text(attempt: AgentAttempt) -> str:
    usage = attempt.usage
    if usage is None:
        return ""
    parts = [f"in {usage.input:,}", f"out {usage.output:,}"]
    if usage.cache_read or usage.cache_write:
        parts.append(f"cache read {usage.cache_read:,} · write {usage.cache_write:,}")
    if usage.reasoning:
        parts.append(f"reasoning {usage.reasoning:,}")
    return " · ".join(parts)


def summary_html(attempt: AgentAttempt | None, prices: PriceTable | None, node_label: str = "") -> str:
    """The attempt's status, agent, model, engine, duration, tokens and cost, escaped."""
    if attempt is None:
        what = f" for {html.escape(node_label)}" if node_label else ""
        return f'<div class="sd-agent-summary sd-muted">No agent activity{what} yet.</div>'
    colour = state_colour(_STATUS_STATE.get(attempt.status, attempt.status))
    bits = [
        f"<span><b>iteration {attempt.iteration}</b> · <b>attempt {attempt.attempt}</b></span>",
        f'<span class="sd-state" style="background:{colour}">{html.escape(attempt.status)}</span>',
    ]
    for name, value in (("agent", attempt.agent), ("model", attempt.model), ("engine", attempt.engine)):
        if value:
            bits.append(f'<span><span class="sd-muted">{name}</span> <b>{html.escape(value)}</b></span>')
    if attempt.started_ms is not None and attempt.finished_ms is not None:
        bits.append(f'<span><span class="sd-muted">took</span> {format_duration((attempt.finished_ms - attempt.started_ms) / 1000)}</span>')
    tokens = _tokens_text(attempt)
    if tokens:
        bits.append(f'<span class="sd-agent-tokens">{html.escape(tokens)}</span>')
        cost = usage_cost(attempt.model, attempt.usage, prices) if prices is not None and attempt.usage is not None else None
        cost_text = f"${cost:.4f}" if cost is not None else "unpriced model"
        bits.append(f'<span><span class="sd-muted">cost</span> {html.escape(cost_text)}</span>')
    size = attempt.total_bytes
    bits.append(f'<span class="sd-muted">{size:,} bytes of output in {attempt.total_chunks:,} chunks</span>')
    return f'<div class="sd-agent-summary" data-attempt-status="{html.escape(attempt.status)}">{"".join(bits)}</div>'


def _action_html(action: AgentAction) -> str:
    duration = action.duration_ms
    took = format_duration(duration / 1000) if duration is not None else ("…" if action.status == "running" else "")
    message = (
        f'<span class="sd-a-message">{html.escape(action.message)}</span>' if action.message else ""
    )
    return (
        f'<div class="sd-agent-action" data-testid="agent-action" data-status="{action.status}">'
        f'<span class="sd-a-status">{action.status}</span>'
        f'<span class="sd-a-kind">{html.escape(action.kind)}</span>'
        f'<span class="sd-a-title">{html.escape(action.title or action.id)}</span>'
        f'<span class="sd-a-duration">{html.escape(took)}</span>{message}</div>'
    )


def actions_html(attempt: AgentAttempt | None) -> str:
    """One ``data-testid="agent-action"`` row per action (tool call), in start order, escaped."""
    actions = attempt.actions_in_order() if attempt is not None else []
    if not actions:
        return '<div class="sd-muted">No tool calls reported.</div>'
    return '<div class="sd-agent-actions">' + "".join(_action_html(a) for a in actions) + "</div>"


def answer_html(attempt: AgentAttempt | None) -> str:
    """The final answer (or the error), escaped."""
    if attempt is None:
        return ""
    if attempt.answer:
        return f'<div class="sd-agent-answer">{html.escape(attempt.answer)}</div>'
    if attempt.error:
        return f'<div class="sd-agent-answer sd-failed">{html.escape(attempt.error)}</div>'
    return '<div class="sd-muted">No answer yet.</div>'


def _transcript_row(row: Any) -> str:
    """One transcript row as a line: ``#3 assistant: {the provider's row}`` for Smithers'
    ``AgentSessionTranscriptEvent`` (``event.sequence``, ``event.rowType``, ``raw``), else
    the row's JSON."""
    if isinstance(row, str):
        return row
    if isinstance(row, Mapping) and "raw" in row and isinstance(row.get("event"), Mapping):
        event = row["event"]
        sequence, kind = event.get("sequence"), event.get("rowType")
        head = " ".join(str(part) for part in (f"#{sequence}" if sequence is not None else None, kind) if part)
        raw = row["raw"]
        body = raw if isinstance(raw, str) else json.dumps(raw, ensure_ascii=False, default=str)
        return f"{head}: {body}" if head else body
    return json.dumps(row, ensure_ascii=False, default=str)


def transcript_text(transcript: Any, dropped: int = 0) -> str:
    """The ``agent.session`` transcript as text, a row per line (cut when huge).

    Shown in a :class:`TextPane`: whatever the agent wrote, HTML included, stays literal."""
    if not transcript:
        return ""
    rows = transcript if isinstance(transcript, list) else [transcript]
    text = "\n".join(_transcript_row(row) for row in rows)
    if dropped:
        text = f"… {dropped:,} earlier rows\n{text}"
    return text if len(text) <= _TRANSCRIPT_CHARS else text[:_TRANSCRIPT_CHARS] + "\n… (cut)"


def download_name(key: AttemptKey | None) -> str:
    if key is None:
        return "agent-output.txt"
    return f"{_SAFE_NAME.sub('_', key[0]) or 'node'}-iteration{key[1]}-attempt{key[2]}.txt"


# ---------------------------------------------------------------------------- the view


class AgentView(StoreView):
    """The Agent tab of the selected task (see the module docstring)."""

    iteration = param.Integer(default=None, allow_None=True, doc="""
        The loop iteration shown (``?iteration=``); ``None``: the one selected in the tree.
        Reset when another task is selected.""")

    attempt = param.Integer(default=None, allow_None=True, doc="""
        The attempt shown (``?attempt=``, from 1); ``None``: the newest. Reset when another
        task is selected.""")

    _redraw_interval = 0.1

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        css = [stylesheet(), AGENT_CSS]
        self._iteration_select = pn.widgets.Select(name="Iteration", options={"0": 0}, value=0, width=110, margin=(0, 8, 4, 0))
        self._attempt_select = pn.widgets.Select(name="Attempt", options={"1": 1}, value=1, width=110, margin=(0, 8, 4, 0))
        self._legend = pn.pane.HTML(
            '<div class="sd-agent-legend"><span><i class="sd-k-stdout"></i>stdout</span>'
            '<span><i class="sd-k-stderr"></i>stderr</span></div>', stylesheets=css, margin=(22, 4, 0, 4))
        self._summary = TextHTML("", stylesheets=css, sizing_mode="stretch_width", margin=(4, 4))
        self.output = AgentOutput(margin=(4, 4))
        self._download = pn.widgets.FileDownload(
            callback=self._full_text, filename=download_name(None), label="Download the whole output",
            button_type="light", width=240, margin=(4, 4),
        )
        self._actions = TextHTML("", stylesheets=css, sizing_mode="stretch_width", margin=(0, 4))
        self._answer = TextHTML("", stylesheets=css, sizing_mode="stretch_width", margin=(0, 4))
        self._transcript = TextPane("", sizing_mode="stretch_width", max_height=360, css_classes=["sd-agent-transcript"],
                                    styles={"font-size": "0.8em", "overflow": "auto"})
        self._transcript_box = pn.Column(pn.pane.HTML('<div class="sd-agent-h">Transcript</div>', stylesheets=css),
                                         self._transcript, visible=False, sizing_mode="stretch_width")
        heading = lambda text: pn.pane.HTML(f'<div class="sd-agent-h">{text}</div>', stylesheets=css, margin=(0, 4))  # noqa: E731
        self._layout = pn.Column(
            pn.Row(self._iteration_select, self._attempt_select, self._legend, sizing_mode="stretch_width"),
            self._summary,
            self.output,
            self._download,
            heading("Actions and tool calls"),
            self._actions,
            heading("Answer"),
            self._answer,
            self._transcript_box,
            # The detail panel has a fixed height beside the tree: the tab scrolls inside it.
            sizing_mode="stretch_width",
            height=500,
            scroll=True,
        )
        self._setting_widgets = False
        self._selected_key: tuple[str, int | None] | None = None
        self._shown: AttemptKey | None = None
        self._iteration_select.param.watch(self._picked_iteration, "value")
        self._attempt_select.param.watch(self._picked_attempt, "value")
        self.param.watch(self._throttle, ["iteration", "attempt"])
        self.store.param.watch(self._on_selected, "selected_node")
        self.store.param.watch(self._on_agents, "agents_version")
        self._on_selected()

    # -------------------------------------------------------------- what to show

    def _node(self) -> Any:
        node = self.store.selected()
        return node if node is not None and node.task is not None and node.node_id else None

    def target(self) -> tuple[str, int, int] | None:
        """``(nodeId, iteration, attempt)`` shown: the picks, else the tree's iteration and the newest attempt."""
        node = self._node()
        if node is None:
            return None
        iteration = self.iteration if self.iteration is not None else (node.iteration or 0)
        if self.attempt is not None:
            return (node.node_id, iteration, self.attempt)
        attempts = self.store.agents.attempts_of(node.node_id, iteration)
        return (node.node_id, iteration, attempts[-1].attempt if attempts else 1)

    # -------------------------------------------------------------- store -> view

    def _on_selected(self, *events: Any) -> None:
        node = self._node()
        key = (node.node_id, node.iteration) if node is not None else None
        if key is not None and self._selected_key is not None and key != self._selected_key:
            # Another task (or another iteration in the tree): its own newest attempt.
            self.param.update(iteration=None, attempt=None)
        if key is not None:
            self._selected_key = key
        self._throttle()

    def _on_agents(self, *events: Any) -> None:
        changed = self.store.changed_attempts
        node = self._node()
        if changed and (node is None or all(k[0] != node.node_id for k in changed)):
            return  # another task's agent moved
        self._throttle()

    def _update(self) -> None:
        store = self.store
        target = self.target()
        agents = store.agents
        attempt = agents.attempt(*target) if target is not None else None
        node = self._node()
        with pn.io.hold():
            self._refresh_pickers(target)
            self.output.push(attempt)
            label = node.label if node is not None else ""
            self._set(self._summary, summary_html(attempt, store.prices, label) if node is not None
                      else '<div class="sd-muted">Select a task to see what its agent did.</div>')
            self._set(self._actions, actions_html(attempt) if node is not None else "")
            self._set(self._answer, answer_html(attempt))
            transcript = transcript_text(attempt.transcript, attempt.transcript_dropped) if attempt is not None else ""
            if transcript != self._transcript.object:
                self._transcript.object = transcript
            self._transcript_box.visible = bool(transcript)
            name = download_name(target)
            if self._download.filename != name:
                self._download.filename = name
        self._shown = target

    @staticmethod
    def _set(pane: TextHTML, text: str) -> None:
        if pane.object != text:
            pane.object = text

    def _refresh_pickers(self, target: tuple[str, int, int] | None) -> None:
        """Offer every iteration and attempt the agents model knows for the task (and the
        shown ones), set only when they change (a Select's options re-measure the page)."""
        agents = self.store.agents
        iterations: set[int] = set()
        attempts: set[int] = set()
        if target is not None:
            node_id, iteration, number = target
            for a in agents.attempts_of(node_id):
                iterations.add(a.iteration)
                if a.iteration == iteration:
                    attempts.add(a.attempt)
            iterations.add(iteration)
            attempts.add(number)
        it_options = {f"{i}": i for i in sorted(iterations or {0})}
        at_options = {f"{n}": n for n in sorted(attempts or {1})}
        self._setting_widgets = True
        try:
            for select, options, value in ((self._iteration_select, it_options, target[1] if target else 0),
                                           (self._attempt_select, at_options, target[2] if target else 1)):
                if select.options != options:
                    select.options = options
                if select.value != value:
                    select.value = value
        finally:
            self._setting_widgets = False

    # -------------------------------------------------------------- view -> store

    def _picked_iteration(self, event: Any) -> None:
        if not self._setting_widgets and event.new is not None and event.new != self.iteration:
            self.param.update(iteration=event.new, attempt=None)

    def _picked_attempt(self, event: Any) -> None:
        if not self._setting_widgets and event.new is not None and event.new != self.attempt:
            self.attempt = event.new

    async def _full_text(self) -> io.BytesIO:
        """The attempt's whole output from the durable history (the model keeps only its end)."""
        target = self.target()
        store = self.store
        text = ""
        if target is not None and store.client is not None and store.run_id:
            try:
                rows = await store.client.list_run_events(store.run_id)
                text = "".join(chunk.text for chunk in output_from_history(rows, *target))
            except GatewayError:
                text = ""
        if not text and target is not None:
            attempt = store.agents.attempt(*target)
            text = attempt.text() if attempt is not None else ""
        return io.BytesIO(strip_ansi(text).encode("utf-8"))

    def __panel__(self) -> pn.viewable.Viewable:
        return self._layout

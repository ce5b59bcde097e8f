"""A task attempt's diff as escaped HTML, from whichever shape the Gateway answered.

``getNodeDiff`` answers in more than one shape, and a shape the dashboard cannot read must
say so, never pass for "the attempt changed no files":

- **bundle** (Smithers 0.32's Gateway: ``DiffBundle`` in ``engine/effect/DiffBundle``):
  ``{seq, baseRef, patches: [{path, operation, diff, binaryContent?}]}``, each ``diff`` a
  ``git diff --binary`` chunk;
- **files** (the documented shape): ``{status, files: [{path, status, hunks}]}`` where a
  hunk is a unified-diff text, a list of lines, or an object with a ``header`` and
  ``lines`` (or a ``diff`` / ``content`` text);
- **stat** (``GetNodeDiffStatPayload`` in ``server/src/gatewayRoutes``):
  ``{seq, baseRef, summary: {filesChanged, added, removed, files: [{path, added, removed}]}}``.

Binary patches (base85 payloads, possibly megabytes) collapse to one line, as Smithers'
own ``ui-core/src/runs/diffUtils.ts`` does. Diff text is untrusted (an agent wrote the
files): every path, status and line goes through :func:`html.escape`, lines are cut at
:data:`MAX_LINE` characters and files at :data:`MAX_LINES` lines.
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["MAX_LINE", "MAX_LINES", "UNREADABLE", "DiffView", "FileDiff", "diff_html", "read_diff"]

#: Lines shown per file (the rest is counted).
MAX_LINES = 5000
#: Characters shown per line (a minified file is one line of megabytes).
MAX_LINE = 2000
#: What a shape the dashboard cannot read says.
UNREADABLE = "This Gateway answered a diff shape the dashboard cannot read."

_BINARY = re.compile(r"(^GIT binary patch$)|(^Binary files )", re.MULTILINE)


@dataclass(slots=True)
class FileDiff:
    """One changed file: its unified-diff ``lines`` (``None`` when only counted) and a note
    (``operation``/``status``, or ``+3 −1``)."""

    path: str
    note: str = ""
    lines: list[str] | None = None
    binary: bool = False


@dataclass(slots=True)
class DiffView:
    """What :func:`diff_html` draws: a header line and the files."""

    files: list[FileDiff] = field(default_factory=list)
    header: str = ""


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def _hunk_lines(hunk: object) -> list[str] | None:
    if isinstance(hunk, str):
        return hunk.splitlines()
    if isinstance(hunk, Sequence) and all(isinstance(x, str) for x in hunk):
        return list(hunk)
    if isinstance(hunk, Mapping):
        header = _text(hunk.get("header"))
        body = hunk.get("lines")
        if body is None:
            body = hunk.get("diff", hunk.get("content"))
        lines = _hunk_lines(body) if body is not None else None
        if lines is None:
            return None
        return ([header] if header else []) + lines
    return None


def _bundle(diff: Mapping[str, Any]) -> DiffView | None:
    files = []
    for patch in diff["patches"]:
        if not isinstance(patch, Mapping):
            return None
        body = _text(patch.get("diff"))
        binary = bool(_text(patch.get("binaryContent"))) or bool(_BINARY.search(body))
        files.append(FileDiff(_text(patch.get("path")) or "?", _text(patch.get("operation")),
                              None if binary else body.splitlines(), binary))
    base = _text(diff.get("baseRef"))
    return DiffView(files, f"base {base}" if base else "")


def _files(diff: Mapping[str, Any]) -> DiffView | None:
    files = []
    for entry in diff["files"]:
        if not isinstance(entry, Mapping):
            return None
        hunks = entry.get("hunks")
        lines: list[str] | None = None
        if isinstance(hunks, str):
            lines = hunks.splitlines()
        elif isinstance(hunks, Sequence):
            lines = []
            for hunk in hunks:
                got = _hunk_lines(hunk)
                if got is None:
                    return None
                lines.extend(got)
        elif hunks is not None:
            return None
        files.append(FileDiff(_text(entry.get("path")) or "?", _text(entry.get("status")), lines))
    status = _text(diff.get("status"))
    return DiffView(files, f"status {status}" if status else "")


def _count(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _stat(diff: Mapping[str, Any]) -> DiffView | None:
    summary = diff["summary"]
    entries = summary.get("files")
    if not isinstance(entries, Sequence) or isinstance(entries, str):
        return None
    files = [
        FileDiff(_text(e.get("path")) or "?", f"+{_count(e.get('added'))} −{_count(e.get('removed'))}")
        for e in entries
        if isinstance(e, Mapping)
    ]
    base = _text(diff.get("baseRef"))
    header = f"{_count(summary.get('filesChanged')) or len(files)} files, +{_count(summary.get('added'))} " \
             f"−{_count(summary.get('removed'))} (counts only)"
    return DiffView(files, f"base {base} · {header}" if base else header)


def read_diff(diff: Mapping[str, Any]) -> DiffView | None:
    """The files of a ``getNodeDiff`` answer in any known shape; ``None`` for a shape
    this module cannot read."""
    patches, files, summary = diff.get("patches"), diff.get("files"), diff.get("summary")
    if isinstance(patches, Sequence) and not isinstance(patches, str):
        return _bundle(diff)
    if isinstance(files, Sequence) and not isinstance(files, str):
        return _files(diff)
    if isinstance(summary, Mapping):
        return _stat(diff)
    return None


def _line_class(line: str) -> str:
    if line.startswith("+") and not line.startswith("+++"):
        return "add"
    if line.startswith("-") and not line.startswith("---"):
        return "del"
    if line.startswith("@@"):
        return "hunk"
    return ""


def _file_html(f: FileDiff, out: list[str]) -> None:
    note = f' <span class="sd-muted">{html.escape(f.note)}</span>' if f.note else ""
    out.append(f'<div class="sd-file">{html.escape(f.path)}{note}</div>')
    if f.binary:
        out.append('<div class="sd-muted">(binary file changed)</div>')
        return
    if f.lines is None:
        return
    out.append("<pre>")
    for line in f.lines[:MAX_LINES]:
        cls = _line_class(line)
        shown = line if len(line) <= MAX_LINE else f"{line[:MAX_LINE]}… ({len(line) - MAX_LINE} more characters)"
        escaped = html.escape(shown) or " "
        out.append(f'<span class="{cls}">{escaped}</span>' if cls else escaped + "\n")
    if len(f.lines) > MAX_LINES:
        out.append(f'<span class="sd-muted">… {len(f.lines) - MAX_LINES} more lines</span>')
    out.append("</pre>")


def diff_html(diff: Mapping[str, Any] | None, error: str | None) -> str:
    """The diff as HTML: a unified diff per file, coloured by line; every string escaped."""
    if not diff:
        text = error or "No diff for this node."
        return f'<div class="sd-message">{html.escape(text)}</div>'
    view = read_diff(diff)
    if view is None:
        keys = ", ".join(sorted(str(k) for k in diff))[:200]
        return (f'<div class="sd-message sd-failed" data-diff-shape="unknown">{html.escape(UNREADABLE)} '
                f'<span class="sd-muted">(fields: {html.escape(keys)})</span></div>')
    if not view.files:
        return '<div class="sd-message">The attempt changed no files.</div>'
    out = ['<div class="sd-diff">']
    if view.header:
        out.append(f'<div class="sd-muted">{html.escape(view.header)}</div>')
    for f in view.files:
        _file_html(f, out)
    out.append("</div>")
    return "".join(out)

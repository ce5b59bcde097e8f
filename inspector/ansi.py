"""Agent output made safe to show: ANSI colour as styled spans, every other escape dropped.

CLI agents print ANSI escape sequences (colours, cursor moves, window titles, hyperlinks) and,
now and then, bytes that are not UTF-8. A view must show the colours (or nothing) and never
``[32m`` garbage, never a raw ESC, and never take the text for HTML. This module is the pure
part of that:

- :func:`decode_output` turns bytes into text, invalid UTF-8 replaced by U+FFFD;
- :func:`parse_ansi` splits text into :class:`StyledSpan` s: SGR sequences (``ESC [ ... m``)
  set foreground/background colour, bold, dim, italic and underline; every other escape
  (other CSI sequences, OSC titles and hyperlinks ended by BEL or ST, DCS/APC/PM/SOS strings,
  two-byte escapes, a dangling ESC at the end of a chunk) is dropped, and so are C0 control
  characters other than newline and tab (a lone carriage return is dropped too: the view
  appends, it does not redraw a line);
- :func:`strip_ansi` is the same text without styles (the plain text a download or a search
  uses), :func:`styled_lines` cuts spans into lines and marks the long ones
  (:data:`LONG_LINE_CHARS`) so the view can wrap or cut them, keeping the whole text;
- :func:`spans_to_html` renders spans as escaped HTML with a fixed palette (the only way
  agent text should reach a browser as markup).

Why not ``rich.text.Text.from_ansi``: its decoder leaves the payload of an OSC sequence ended
by BEL (``ESC ] 0;title BEL`` becomes ``0;title``), a trailing ESC and unterminated CSI
introducers in the text, which is exactly the garbage this module exists to remove.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

__all__ = [
    "ANSI_PALETTE",
    "LONG_LINE_CHARS",
    "AnsiStream",
    "StyledLine",
    "StyledSpan",
    "decode_output",
    "parse_ansi",
    "spans_to_html",
    "strip_ansi",
    "styled_lines",
]

#: A line longer than this (in characters) is marked ``long`` for the view to wrap or cut.
LONG_LINE_CHARS: Final = 2000

#: The 16 standard colours (xterm's defaults), indexed as SGR 30-37 / 90-97 number them.
ANSI_PALETTE: Final[tuple[str, ...]] = (
    "#000000", "#cd0000", "#00cd00", "#cdcd00", "#0000ee", "#cd00cd", "#00cdcd", "#e5e5e5",
    "#7f7f7f", "#ff0000", "#00ff00", "#ffff00", "#5c5cff", "#ff00ff", "#00ffff", "#ffffff",
)

# One escape sequence (ECMA-48), or one control character to drop:
# - CSI: ESC [ parameter bytes (0x30-0x3F) intermediate bytes (0x20-0x2F) final byte (0x40-0x7E);
# - OSC / DCS / SOS / PM / APC strings: ESC ] P X ^ _ ... up to BEL or ST (ESC \\), or to the end;
# - a two-byte escape ESC + (0x20-0x7E), a lone ESC at the end, an unfinished CSI at the end;
# - the 8-bit CSI (0x9B) form and other C0/C1 controls except \n and \t.
_ESCAPE = re.compile(
    r"""
      (?P<csi>(?:\x1b\[|\x9b)(?P<params>[0-?]*)(?P<inter>[ -/]*)(?P<final>[@-~]))
    | (?:\x1b[\]PX^_]|[\x90\x98\x9d\x9e\x9f]).*?(?:\x07|\x1b\\|\x9c|\Z)
    | (?:\x1b\[|\x9b)[0-?]*[ -/]*\Z
    | \x1b[ -~]?
    | [\x00-\x08\x0b-\x1f\x7f\x80-\x9f]
    """,
    re.VERBOSE | re.DOTALL,
)


@dataclass(frozen=True, slots=True)
class StyledSpan:
    """A run of text in one style. Colours are ``#rrggbb`` strings or ``None`` (the default)."""

    text: str
    fg: str | None = None
    bg: str | None = None
    bold: bool = False
    dim: bool = False
    italic: bool = False
    underline: bool = False

    @property
    def plain(self) -> bool:
        """No style at all (rendered as bare text)."""
        return not (self.fg or self.bg or self.bold or self.dim or self.italic or self.underline)


@dataclass(frozen=True, slots=True)
class StyledLine:
    """One line of output (without its newline), its length and whether it is long."""

    spans: tuple[StyledSpan, ...]
    length: int
    long: bool

    @property
    def text(self) -> str:
        return "".join(span.text for span in self.spans)


_DEFAULT = StyledSpan("")


def decode_output(data: bytes | str) -> str:
    """Text from an agent's output; invalid UTF-8 becomes U+FFFD, never an exception."""
    return data if isinstance(data, str) else data.decode("utf-8", errors="replace")


def _color_256(n: int) -> str | None:
    if not 0 <= n <= 255:
        return None
    if n < 16:
        return ANSI_PALETTE[n]
    if n < 232:
        n -= 16
        levels = (0, 95, 135, 175, 215, 255)
        return f"#{levels[n // 36]:02x}{levels[(n // 6) % 6]:02x}{levels[n % 6]:02x}"
    grey = 8 + 10 * (n - 232)
    return f"#{grey:02x}{grey:02x}{grey:02x}"


def _extended_color(codes: list[int], i: int) -> tuple[str | None, int]:
    """The colour of ``38;5;n`` / ``38;2;r;g;b`` starting after the 38/48 at ``i``; next index."""
    if i < len(codes) and codes[i] == 5:
        return (_color_256(codes[i + 1]) if i + 1 < len(codes) else None), i + 2
    if i < len(codes) and codes[i] == 2:
        rgb = codes[i + 1 : i + 4]
        if len(rgb) == 3 and all(0 <= c <= 255 for c in rgb):
            return f"#{rgb[0]:02x}{rgb[1]:02x}{rgb[2]:02x}", i + 4
        return None, i + 4
    return None, i + 1


def _apply_sgr(style: StyledSpan, params: str) -> StyledSpan:
    """The style after one SGR sequence (``params`` is what stands between ``ESC [`` and ``m``)."""
    codes = [int(p) if p.isdigit() else 0 for p in re.split(r"[;:]", params)] if params else [0]
    i = 0
    while i < len(codes):
        code = codes[i]
        i += 1
        if code == 0:
            style = _DEFAULT
        elif code == 1:
            style = replace(style, bold=True)
        elif code == 2:
            style = replace(style, dim=True)
        elif code == 3:
            style = replace(style, italic=True)
        elif code == 4:
            style = replace(style, underline=True)
        elif code == 22:
            style = replace(style, bold=False, dim=False)
        elif code == 23:
            style = replace(style, italic=False)
        elif code == 24:
            style = replace(style, underline=False)
        elif 30 <= code <= 37:
            style = replace(style, fg=ANSI_PALETTE[code - 30])
        elif 90 <= code <= 97:
            style = replace(style, fg=ANSI_PALETTE[code - 90 + 8])
        elif code == 39:
            style = replace(style, fg=None)
        elif 40 <= code <= 47:
            style = replace(style, bg=ANSI_PALETTE[code - 40])
        elif 100 <= code <= 107:
            style = replace(style, bg=ANSI_PALETTE[code - 100 + 8])
        elif code == 49:
            style = replace(style, bg=None)
        elif code in (38, 48):
            color, i = _extended_color(codes, i)
            style = replace(style, fg=color) if code == 38 else replace(style, bg=color)
    return style


def _tokens(text: str) -> Iterator[tuple[str, str | None]]:
    """``(text, None)`` for printable runs and ``("", sgr params)`` for each SGR sequence."""
    pos = 0
    for match in _ESCAPE.finditer(text):
        if match.start() > pos:
            yield text[pos : match.start()], None
        pos = match.end()
        if match.group("csi") and match.group("final") == "m" and not match.group("inter"):
            params = match.group("params")
            if re.fullmatch(r"[0-9;:]*", params):
                yield "", params
    if pos < len(text):
        yield text[pos:], None


def parse_ansi(text: str, style: StyledSpan | None = None) -> list[StyledSpan]:
    """Styled spans of ``text`` (adjacent spans of one style merged, no empty spans).

    ``style`` is the style in force at the start (the last span's style of the previous chunk,
    so colour carries across chunks of one stream); it defaults to no style.
    """
    current = replace(style, text="") if style is not None else _DEFAULT
    spans: list[StyledSpan] = []
    for chunk, sgr in _tokens(text):
        if sgr is not None:
            current = _apply_sgr(current, sgr)
            continue
        if spans and replace(spans[-1], text="") == current:
            spans[-1] = replace(spans[-1], text=spans[-1].text + chunk)
        else:
            spans.append(replace(current, text=chunk))
    return spans


#: An escape sequence still open at the end of a chunk (the next chunk may finish it).
_OPEN_TAIL = re.compile(r"(?:\x1b|\x1b\[[0-?]*[ -/]*|\x1b[\]PX^_][^\x07\x9c\x1b]*\x1b?)\Z", re.DOTALL)
#: An open tail longer than this is no escape sequence anyone will finish: it is dropped.
_MAX_OPEN_TAIL = 512


class AnsiStream:
    """Parses one output stream chunk by chunk: colour carries over, and an escape sequence cut
    between two chunks (``ESC [3`` then ``2m``) is completed instead of leaking ``2m``.

    Not thread-safe; one per (attempt, stream).
    """

    def __init__(self) -> None:
        self._style: StyledSpan = _DEFAULT
        self._pending = ""

    def feed(self, chunk: str) -> list[StyledSpan]:
        """The spans of ``chunk`` (and of what the previous chunk left open)."""
        text = self._pending + chunk
        self._pending = ""
        tail = _OPEN_TAIL.search(text)
        if tail is not None and tail.start() < len(text):
            open_tail = text[tail.start() :]
            self._pending = open_tail if len(open_tail) <= _MAX_OPEN_TAIL else ""
            text = text[: tail.start()]
        spans = parse_ansi(text, self._style)
        self._style = self._style_after(text)
        return spans

    def _style_after(self, text: str) -> StyledSpan:
        style = self._style
        for _chunk, sgr in _tokens(text):
            if sgr is not None:
                style = _apply_sgr(style, sgr)
        return style


def strip_ansi(text: str) -> str:
    """``text`` without escape sequences and control characters (newline and tab kept)."""
    return "".join(chunk for chunk, sgr in _tokens(text) if sgr is None)


def styled_lines(spans: Iterable[StyledSpan], long_line: int = LONG_LINE_CHARS) -> list[StyledLine]:
    """Spans cut at newlines into :class:`StyledLine` s; lines over ``long_line`` chars marked.

    A trailing newline does not make an empty last line; text after the last newline does
    make a line (an unfinished one, which the next chunk continues in the stream).
    """
    lines: list[StyledLine] = []
    current: list[StyledSpan] = []
    length = 0

    def close() -> None:
        nonlocal current, length
        lines.append(StyledLine(tuple(current), length, length > long_line))
        current, length = [], 0

    for span in spans:
        parts = span.text.split("\n")
        for index, part in enumerate(parts):
            if index:
                close()
            if part:
                current.append(replace(span, text=part))
                length += len(part)
    if current:
        close()
    return lines


def _css(span: StyledSpan) -> str:
    rules = []
    if span.fg:
        rules.append(f"color:{span.fg}")
    if span.bg:
        rules.append(f"background-color:{span.bg}")
    if span.bold:
        rules.append("font-weight:bold")
    if span.dim:
        rules.append("opacity:0.7")
    if span.italic:
        rules.append("font-style:italic")
    if span.underline:
        rules.append("text-decoration:underline")
    return ";".join(rules)


def spans_to_html(spans: Iterable[StyledSpan]) -> str:
    """Spans as HTML: every character of text escaped, styles as inline CSS from fixed values.

    Colours come only from :data:`ANSI_PALETTE` or ``#rrggbb`` built from numbers, so no
    attribute value is ever taken from the agent's text.
    """
    out: list[str] = []
    for span in spans:
        text = html.escape(span.text, quote=True)
        out.append(text if span.plain else f'<span style="{_css(span)}">{text}</span>')
    return "".join(out)

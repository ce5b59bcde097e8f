"""inspector.ansi: colours become spans, every other escape disappears, text stays text."""

from __future__ import annotations

import re

from hypothesis import given, strategies as st

from inspector.ansi import (
    ANSI_PALETTE,
    LONG_LINE_CHARS,
    AnsiStream,
    StyledSpan,
    decode_output,
    parse_ansi,
    spans_to_html,
    strip_ansi,
    styled_lines,
)

ESC = "\x1b"


def test_sgr_colours_and_bold_become_spans() -> None:
    spans = parse_ansi(f"{ESC}[1mB{ESC}[0m {ESC}[32mgreen{ESC}[0m {ESC}[91;1mhot{ESC}[22m{ESC}[39m.")
    assert spans == [
        StyledSpan("B", bold=True),
        StyledSpan(" "),
        StyledSpan("green", fg=ANSI_PALETTE[2]),
        StyledSpan(" "),
        StyledSpan("hot", fg=ANSI_PALETTE[9], bold=True),
        StyledSpan("."),
    ]


def test_256_and_truecolour() -> None:
    spans = parse_ansi(f"{ESC}[38;5;196mred{ESC}[48;2;1;2;3mbg{ESC}[38;5;240mgrey")
    assert spans[0] == StyledSpan("red", fg="#ff0000")
    assert spans[1] == StyledSpan("bg", fg="#ff0000", bg="#010203")
    assert spans[2].fg == "#585858"


def test_other_escapes_and_controls_are_dropped() -> None:
    raw = (
        f"a{ESC}[2K{ESC}[?25l{ESC}]0;window title\x07b{ESC}]8;;http://x{ESC}\\link{ESC}]8;;{ESC}\\"
        f"{ESC}Pdcs{ESC}\\c{ESC}7d\r\x00\x07e\tf\n{ESC}["
    )
    assert strip_ansi(raw) == "ablinkcde\tf\n"
    assert "".join(s.text for s in parse_ansi(raw)) == "ablinkcde\tf\n"


def test_dangling_escapes_leave_nothing() -> None:
    for raw in (ESC, f"{ESC}[", f"{ESC}[1;", f"{ESC}]0;unterminated title", "\x9b31"):
        assert strip_ansi(raw) == "", repr(raw)


def test_html_in_agent_text_is_escaped() -> None:
    html = spans_to_html(parse_ansi(f"{ESC}[31m<img src=x onerror=alert(1)>{ESC}[0m<script>alert('a')</script>"))
    assert "<img" not in html and "<script" not in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    assert html.startswith('<span style="color:#cd0000">')


def test_invalid_utf8_is_replaced() -> None:
    assert decode_output(b"ok \xff\xfe done") == "ok \ufffd\ufffd done"
    assert decode_output("already text") == "already text"


def test_long_lines_are_kept_and_marked() -> None:
    text = "short\n" + "x" * (LONG_LINE_CHARS + 5) + "\nend"
    lines = styled_lines(parse_ansi(text))
    assert [line.length for line in lines] == [5, LONG_LINE_CHARS + 5, 3]
    assert [line.long for line in lines] == [False, True, False]
    assert lines[1].text == "x" * (LONG_LINE_CHARS + 5)


def test_stream_completes_an_escape_cut_between_chunks() -> None:
    stream = AnsiStream()
    assert stream.feed(f"a{ESC}[3") == [StyledSpan("a")]
    assert stream.feed(f"2mgreen{ESC}") == [StyledSpan("green", fg=ANSI_PALETTE[2])]
    assert stream.feed("[0mplain") == [StyledSpan("plain")]
    # colour carries over chunk boundaries
    stream.feed(f"{ESC}[1m")
    assert stream.feed("still bold") == [StyledSpan("still bold", bold=True)]


def test_stream_does_not_hold_a_finished_osc() -> None:
    stream = AnsiStream()
    assert "".join(s.text for s in stream.feed(f"{ESC}]0;t{ESC}\\text")) == "text"


_pieces = st.lists(
    st.one_of(
        st.text(max_size=12),
        st.sampled_from([ESC, f"{ESC}[", f"{ESC}[31m", f"{ESC}[0m", f"{ESC}[1;", f"{ESC}]0;x\x07", f"{ESC}]8;;u{ESC}\\",
                         f"{ESC}[2K", "\x9b", "\r", "\x00", "m", ";", "[", "]", "\\", "\x07", f"{ESC}[38;5;", "2;3m"]),
    ),
    max_size=30,
)


@given(_pieces)
def test_output_never_contains_escape_or_controls(pieces: list[str]) -> None:
    raw = "".join(pieces)
    spans = parse_ansi(raw)
    for span in spans:
        assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]", span.text)
        assert span.text
    html = spans_to_html(spans)
    assert ESC not in html and "<" not in re.sub(r'<span style="[^"<>]*">|</span>', "", html)


@given(_pieces)
def test_chunked_stream_never_leaks_escapes(pieces: list[str]) -> None:
    stream = AnsiStream()
    for piece in pieces:
        for span in stream.feed(piece):
            assert ESC not in span.text and "\x9b" not in span.text


@given(st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cs"), blacklist_characters="\x9b"), max_size=200))
def test_text_without_escapes_is_preserved(text: str) -> None:
    assert "".join(s.text for s in parse_ansi(text)) == text
    assert strip_ansi(text) == text


@given(st.lists(st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cs")), max_size=10), max_size=10),
       st.lists(st.sampled_from([f"{ESC}[31m", f"{ESC}[1m", f"{ESC}[0m", f"{ESC}[2K", f"{ESC}]0;t\x07"]), max_size=10))
def test_content_is_preserved_apart_from_escapes(words: list[str], escapes: list[str]) -> None:
    raw = "".join(w + (escapes[i] if i < len(escapes) else "") for i, w in enumerate(words))
    assert "".join(s.text for s in parse_ansi(raw)) == "".join(words)

"""Diffs of every shape getNodeDiff answers, escaped; an unknown shape says so."""

from __future__ import annotations

import html
import re

from hypothesis import given, strategies as st

from dashboard.views.detail import diff_html as detail_diff_html
from dashboard.views.diff import MAX_LINE, UNREADABLE, diff_html, read_diff

XSS = "<script>alert('x')</script><img src=x onerror=alert(2)>"

BUNDLE = {
    "seq": 7,
    "baseRef": "abc123",
    "patches": [
        {"path": f"src/{XSS}.py", "operation": "modify",
         "diff": f"--- a/x\n+++ b/x\n@@ -1,2 +1,2 @@\n-old {XSS}\n+new {XSS}\n same\n"},
        {"path": "logo.png", "operation": "add", "diff": "GIT binary patch\nliteral 12\nzcmZ?wbhEHb\n"},
    ],
}

FILES = {
    "status": "ok",
    "files": [
        {"path": "a.txt", "status": "modified",
         "hunks": [{"header": "@@ -1 +1 @@", "lines": ["-a", f"+{XSS}"]}, "@@ -9 +9 @@\n-x\n+y"]},
        {"path": "b.txt", "status": "added", "hunks": ["+hello"]},
    ],
}


def test_detail_keeps_exporting_diff_html() -> None:
    assert detail_diff_html is diff_html


def test_bundle_shape_renders_each_file_escaped_and_binary_as_one_line() -> None:
    out = diff_html(BUNDLE, None)
    assert "<script" not in out and "<img" not in out
    assert html.escape(f"src/{XSS}.py") in out
    assert f'<span class="add">{html.escape("+new " + XSS)}</span>' in out
    assert f'<span class="del">{html.escape("-old " + XSS)}</span>' in out
    assert '<span class="hunk">@@ -1,2 +1,2 @@</span>' in out
    assert "base abc123" in out
    assert "(binary file changed)" in out and "zcmZ" not in out


def test_documented_files_shape_renders_hunks() -> None:
    out = diff_html(FILES, None)
    assert "a.txt" in out and "modified" in out and "b.txt" in out and "added" in out
    assert '<span class="hunk">@@ -1 +1 @@</span>' in out and '<span class="hunk">@@ -9 +9 @@</span>' in out
    assert f'<span class="add">{html.escape("+" + XSS)}</span>' in out
    assert '<span class="add">+hello</span>' in out
    assert "status ok" in out and "<script" not in out


def test_stat_shape_lists_counts() -> None:
    stat = {"seq": 1, "baseRef": "r", "summary": {"filesChanged": 1, "added": 3, "removed": 1,
                                                   "files": [{"path": "x.py", "added": 3, "removed": 1}]}}
    out = diff_html(stat, None)
    assert "x.py" in out and "+3 −1" in out and "counts only" in out


def test_empty_answers_say_no_files_changed() -> None:
    assert "changed no files" in diff_html({"seq": 1, "baseRef": "r", "patches": []}, None)
    assert "changed no files" in diff_html({"status": "ok", "files": []}, None)


def test_an_unknown_shape_says_so_never_no_files() -> None:
    for shape in ({"changes": [{"file": "a"}]}, {"patches": ["not an object"]}, {"files": [{"path": "a", "hunks": 3}]},
                  {"files": [{"path": "a", "hunks": [{"weird": 1}]}]}, {f"<{XSS}>": 1}):
        out = diff_html(shape, None)
        assert UNREADABLE in out, shape
        assert "changed no files" not in out
        assert "<script" not in out and "<img" not in out
        assert read_diff(shape) is None


def test_no_diff_says_why() -> None:
    assert "No diff yet: &lt;b&gt;" in diff_html(None, "No diff yet: <b>")
    assert "No diff for this node." in diff_html(None, None)


def test_a_huge_line_is_cut() -> None:
    out = diff_html({"patches": [{"path": "min.js", "operation": "modify", "diff": "+" + "x" * (MAX_LINE * 3)}]}, None)
    assert "more characters" in out and len(out) < MAX_LINE * 2


@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(alphabet="<>&'\"/ab scrip"),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                    max_leaves=20))
def test_any_answer_renders_without_markup_from_its_text(answer: object) -> None:
    """Whatever the Gateway answers, the page gets escaped text (or the unreadable note)."""
    shaped = {"patches": answer} if not isinstance(answer, dict) else answer
    out = diff_html(shaped, None)
    assert set(re.findall(r"<\s*/?\s*([^\s>/]*)", out)) <= {"div", "span", "pre"}, out

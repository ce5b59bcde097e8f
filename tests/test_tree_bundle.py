"""The tree's browser module as a generated bundle (dashboard/views/tree_bundle.py).

A served page loads the tree from the committed bundle file instead of compiling the
module's text in the browser; the bundle must be exactly what the parts make now, and a
stale one must never reach a browser.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from dashboard.views.tree import TreeComponent
from dashboard.views.tree_bundle import TREE_BUNDLE, current_bundle, tree_module_text, write_bundle

if TYPE_CHECKING:
    from pathlib import Path

    import pytest


def test_the_committed_bundle_is_the_module_the_parts_make() -> None:
    assert TREE_BUNDLE.read_text(encoding="utf-8") == tree_module_text(), (
        "dashboard/views/tree.bundle.js is stale: regenerate it with "
        '.venv/bin/python -c "from dashboard.views.tree_bundle import write_bundle; write_bundle()"')
    assert TreeComponent._bundle == TREE_BUNDLE.name
    assert TreeComponent._bundle_path == TREE_BUNDLE


def test_a_stale_or_missing_bundle_is_not_served(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    bundle = write_bundle(tmp_path / "tree.bundle.js")
    assert current_bundle(tree_module_text(), bundle) == "tree.bundle.js"
    assert caplog.records == []

    with caplog.at_level(logging.WARNING, logger="dashboard.views.tree_bundle"):
        assert current_bundle(tree_module_text() + "// a part edited since\n", bundle) is None
        bundle.unlink()
        assert current_bundle(tree_module_text(), bundle) is None
    stale, missing = (r.getMessage() for r in caplog.records)
    assert "tree.bundle.js is out of date:" in stale and "tree.bundle.js cannot be read" in missing


def test_a_served_document_names_the_bundle_and_a_notebook_carries_its_text() -> None:
    """Served: the document holds the bundle's URL (Panel's component route) and marks the
    module compiled; in a notebook (no server) it holds the bundle's text, also compiled."""
    served = TreeComponent._render_esm(compiled=True, server=True)
    assert served == "./components/dashboard.views.tree/TreeComponent/_bundle_path/tree.bundle.js"
    assert TreeComponent._render_esm(compiled=True, server=False) == tree_module_text()

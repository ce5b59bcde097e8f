"""The tree's browser module, joined from its parts, and the bundle file a served page loads.

Panel's ``JSComponent`` sends its ``_esm`` text in every session's document and the browser
compiles it with Sucrase (``ReactiveESMModel.compile`` in Panel's ``models/reactive_esm.ts``)
before the tree can draw a row: on a run page's first view that compile was most of the
task that decodes the document (a traced load: 318 of its 410 CPU samples), and the text
was 42 KB of each session's first document. A component with a ``_bundle`` file is treated as
compiled: the document carries the file's URL (Panel's component route, prefix-aware), the
browser fetches it once, caches it and skips Sucrase. Our module is plain JavaScript (no
TypeScript, no JSX), so the joined text *is* the bundle: :data:`TREE_BUNDLE` holds exactly
:func:`tree_module_text`, generated and committed (``tests/test_tree_bundle.py`` fails when it
is stale). Regenerate it after editing a part with::

    .venv/bin/python -c "from dashboard.views.tree_bundle import write_bundle; write_bundle()"

A stale or missing bundle is never served: :func:`current_bundle` then says so in the log and
the component falls back to sending its text (slower, not wrong).
"""

from __future__ import annotations

import logging
from pathlib import Path

from dashboard.treerows import tree_vocabulary_js

__all__ = ["ASSETS", "TREE_BUNDLE", "TREE_MODULES", "current_bundle", "tree_module_js", "tree_module_text",
           "write_bundle"]

log = logging.getLogger(__name__)

ASSETS = Path(__file__).resolve().parent.parent / "assets"

#: The parts of the tree's browser module, each with one job, in the order they are joined:
#: the row record and icons, task heartbeats and the tooltip, the row model and its messages,
#: the virtual-scroll view, clicks and keys, and the entry point (``render``).
TREE_MODULES = ("tree_row.js", "tree_beats.js", "tree_data.js", "tree_view.js", "tree_input.js", "tree.js")

#: The generated bundle, beside the component's module: Panel serves a component's bundle
#: only from the directory of the module that defines it (``ComponentResourceHandler``).
TREE_BUNDLE = Path(__file__).resolve().parent / "tree.bundle.js"


def tree_module_js() -> str:
    """The tree's browser module: the :data:`TREE_MODULES` joined into one ES module.

    Joined, not imported from each other in the browser: Panel loads a component's module
    from one URL (or a ``blob:`` URL), against which a relative ``import "./tree_data.js"``
    cannot resolve. An import map could point bare names at files served under Panel's
    component route, but its URLs would depend on the prefix the app is served under (a
    proxy's sub-path), and Node (tests/test_tree_view.py runs the module there) would need its
    own mapping. The parts share one scope, so each names, in its header, what it uses from
    the parts before it.
    """
    return "".join(f"// ---- {name}\n{(ASSETS / name).read_text(encoding='utf-8').strip()}\n\n" for name in TREE_MODULES)


def tree_module_text() -> str:
    """What the browser runs: the vocabulary's line (:func:`~dashboard.treerows.tree_vocabulary_js`),
    then the parts (:func:`tree_module_js`)."""
    return tree_vocabulary_js() + tree_module_js()


def current_bundle(text: str, bundle: Path = TREE_BUNDLE) -> str | None:
    """``bundle``'s file name if it holds exactly ``text`` (the module as the parts make it now),
    else ``None``, with a warning: a page must never run an older tree than the server's."""
    try:
        if bundle.read_text(encoding="utf-8") == text:
            return bundle.name
        problem = "is out of date"
    except OSError as exc:
        problem = f"cannot be read ({exc.strerror or exc})"
    log.warning("%s %s: browsers will compile the tree's module themselves (slower first view); "
                "regenerate it with dashboard.views.tree_bundle.write_bundle()", bundle, problem)
    return None


def write_bundle(bundle: Path = TREE_BUNDLE) -> Path:
    """Write :func:`tree_module_text` to ``bundle`` (after editing a part of the module)."""
    bundle.write_text(tree_module_text(), encoding="utf-8")
    return bundle

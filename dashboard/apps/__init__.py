"""The served app, shipped in the package: ``panel serve <this folder>`` serves it at ``/apps``.

``main.py`` here is a Bokeh directory app's script (run once per browser session), so it is
package data rather than a module to import. :data:`APP_DIR` is what ``smithers-dashboard
serve`` and ``demo`` hand to ``panel serve``; a checkout's ``apps/main.py`` runs
:data:`MAIN_SCRIPT` so ``panel serve apps/`` serves the same app.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["APP_DIR", "MAIN_SCRIPT"]

APP_DIR = Path(__file__).resolve().parent
MAIN_SCRIPT = APP_DIR / "main.py"

"""Keep Panel's stylesheets on the dashboard's own server (a wall screen may be offline).

Panel 1.9 resolves each component's ``loading.css`` against the model's document; a model
that is not attached to one (a view in a hidden ``dynamic`` tab, updated while the run
streams) is resolved against Panel's CDN instead. The stylesheet model it rewrites is the
one its session's visible components share, so the browser is told to fetch
``https://cdn.holoviz.org/.../loading.css``: an outside request, which fails offline
(caught by ``tests/test_security_browser.py``, which fails on any non-local request).

:func:`keep_assets_local` wraps Panel's ``patch_stylesheet`` so that, while Panel serves its
resources itself (``use_cdn()`` is false: ``panel serve``, not a notebook or pyodide), that
CDN fallback becomes the local path Panel uses everywhere else. Idempotent.
"""

from __future__ import annotations

from typing import Any

__all__ = ["keep_assets_local"]

_MARK = "_smithers_local_assets"


def keep_assets_local() -> None:
    """Install the wrapper (see the module docstring); calling it again does nothing."""
    import panel.reactive
    import panel.theme.base
    from panel.io import resources

    original = resources.patch_stylesheet
    if getattr(original, _MARK, False):
        return

    def patch_stylesheet(stylesheet: Any, dist_url: str) -> None:
        if dist_url == resources.CDN_DIST and not resources.use_cdn():
            dist_url = resources.LOCAL_DIST
        original(stylesheet, dist_url)  # type: ignore[no-untyped-call]

    setattr(patch_stylesheet, _MARK, True)
    for module in (resources, panel.reactive, panel.theme.base):
        if hasattr(module, "patch_stylesheet"):
            module.patch_stylesheet = patch_stylesheet  # type: ignore[attr-defined]

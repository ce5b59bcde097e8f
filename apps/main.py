"""``panel serve apps/`` from a checkout: the packaged app, ``dashboard/apps/main.py``.

Bokeh runs this script once per browser session; it runs the packaged script in this
module's namespace, so both entry points serve one app at ``/apps``. After ``pip install``,
``smithers-dashboard serve`` (or ``panel serve`` of ``dashboard.apps.APP_DIR``) serves it
without a checkout.
"""

from __future__ import annotations

import runpy

from dashboard.apps import MAIN_SCRIPT

globals().update(runpy.run_path(str(MAIN_SCRIPT), run_name=__name__))

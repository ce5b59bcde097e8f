"""The served dashboard: ``panel serve apps/`` serves this directory app at ``/apps``.

Query parameters: ``?runId=`` opens a run, ``&nodeId=`` selects a task by its Smithers
nodeId, ``?view=monitor`` is the wall-monitor mode (rotates through active runs unless a
``runId`` is given). The Gateway URL and token come only from the server's environment
(``SMITHERS_GATEWAY_URL``, ``SMITHERS_TOKEN`` / ``SMITHERS_TOKEN_FILE``): never from the
page, and the token never reaches the browser. All JavaScript and CSS are Panel's bundled
resources and ``dashboard/assets``: no CDN.
"""

from __future__ import annotations

import panel as pn

from dashboard import Dashboard
from dashboard.gc_tuning import tune_after_this_session


def _arg(name: str) -> str | None:
    values = pn.state.session_args.get(name) or []
    if not values:
        return None
    raw = values[0]
    text = (raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)).strip()
    # "null": how Panel's URL sync wrote a closed run (before Dashboard._tidy_url), in links
    # copied then; it names no run.
    return text if text and text != "null" else None


view = "monitor" if _arg("view") == "monitor" else "full"
if view == "monitor":
    pn.config.theme = "dark"
# reconnect: a wall screen must come back by itself when the dashboard's own socket drops.
# apply_signatures: rewriting every Panel class's signature (for IDE completion) was 8% of
# building each session, here where no one completes code.
pn.extension("tabulator", notifications=True, reconnect=True, apply_signatures=False)

app = Dashboard(run_id=_arg("runId"), view=view)
app.bind_location()
# Bind the instance now: the script's globals are gone by the time the session ends.
pn.state.on_session_destroyed(lambda context, app=app: app.close())
tune_after_this_session()  # once per process: dashboard/gc_tuning.py
app.servable(title="Smithers dashboard" if view == "full" else "Smithers monitor")

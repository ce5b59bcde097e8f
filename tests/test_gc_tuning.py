"""The served process's garbage-collector settings (``dashboard/gc_tuning.py``), in a fresh
interpreter: they change process-wide state that the test run itself must not inherit."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_serving_freezes_the_startup_heap_raises_the_young_threshold_and_times_pauses() -> None:
    script = textwrap.dedent("""
        import gc, json
        import panel  # the libraries a served process has imported by then
        from dashboard import gc_tuning, metrics
        before = gc.get_freeze_count()
        garbage = []
        garbage.append(garbage)  # a cycle, unreachable once deleted: freed, never frozen
        del garbage
        gc_tuning.tune_for_serving()
        gc_tuning.tune_for_serving()  # once per process
        frozen = gc.get_freeze_count()
        gc.collect(2)
        pauses = metrics.GC_PAUSE_SECONDS.labels(generation="2")._sum.get()
        count = sum(s.value for m in metrics.GC_PAUSE_SECONDS.collect() for s in m.samples
                    if s.name.endswith("_count") and s.labels.get("generation") == "2")
        print(json.dumps({"before": before, "frozen": frozen, "threshold": gc.get_threshold(),
                          "callbacks": len(gc.callbacks), "count": count, "pauses": pauses}))
    """)
    out = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    import json

    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["before"] == 0 and result["frozen"] > 50_000  # Panel, Bokeh and param: frozen
    assert result["threshold"][0] == 3_000
    assert result["callbacks"] == 1  # observed once, not once per call
    assert result["count"] == 1 and result["pauses"] > 0  # the collection above was timed

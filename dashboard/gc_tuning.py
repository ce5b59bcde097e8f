"""Keep Python's cyclic garbage collector from stopping the served process for long.

Why: a served dashboard's heap is mostly what was imported (Panel, Bokeh, HoloViews, param:
hundreds of thousands of long-lived objects) plus each session's Bokeh models and each run's
tree. CPython's full (generation 2) collection walks all of it, and it runs whenever enough
new objects have survived, which building sessions and following a busy run do all the time.
Measured on the ``bench_vs_monitor`` run (docs/performance.md, issue 14): 14 full
collections in 75 s, 1.4 s in all and up to 587 ms each, on the one event loop that also
sends every screen its updates. A page's lag, its first view and the server's longest pause
all had these in them.

What :func:`tune_for_serving` does, once per process, when the server's loop next runs after
the first session was built (:func:`tune_after_this_session`, called by the served app; with
``smithers-dashboard serve`` that session is ``--warm``'s throw-away one, built before the loop
starts, so it is garbage by then; under a plain ``panel serve`` it is the first visitor's, and
the cycles of that one session, frozen with the rest, are never freed):

1. ``gc.collect()`` then ``gc.freeze()``: what exists then is the libraries' code and data,
   alive for the life of the process; frozen, the collector never walks it again (the
   technique CPython documents for forking servers). The warm session is garbage by then
   and is freed first, not frozen.
2. A larger first-generation threshold (:data:`YOUNG_THRESHOLD`, CPython's default is 700):
   building one session allocates tens of thousands of container objects, which at 700
   trigger hundreds of young collections per session and, through them, the full ones.
   Not much larger: cyclic garbage waits for a collection. Measured (docs/performance.md,
   sections 6 and 7): at 20,000 a 100,000-delta soak with 20 screens grew the process by
   365 MB before levelling off; at 3,000 by 57 MB (700: 28 MB), while 100 screens on the
   heavy run lag as at 20,000 (p95 545 / 487 ms; 700: 799 ms). Most of that garbage was
   whole runs the wall had left (their trees' parent links, a stopped feed held by its
   cancelled task); those are freed by reference counting now (soak at 3,000: +18 to +25 MB).

Nothing is disabled: cycles are still collected. Pauses are observable in
``smithers_dashboard_gc_pause_seconds`` (per generation).
"""

from __future__ import annotations

import gc
import logging
import os
import time
from typing import Any

from tornado.ioloop import IOLoop

from . import metrics

__all__ = ["YOUNG_THRESHOLD", "YOUNG_THRESHOLD_ENV", "tune_after_this_session", "tune_for_serving"]

log = logging.getLogger(__name__)

#: Allocations (minus deallocations) of container objects before a young collection.
YOUNG_THRESHOLD = 3_000
#: The environment variable that overrides it (an operator trading memory for fewer pauses).
YOUNG_THRESHOLD_ENV = "SMITHERS_DASHBOARD_GC_YOUNG"

_tuned = False
_started: list[float] = []


def _observe(phase: str, info: dict[str, Any]) -> None:
    if phase == "start":
        _started.append(time.perf_counter())
    elif _started:
        metrics.GC_PAUSE_SECONDS.labels(generation=str(info.get("generation", "?"))).observe(
            time.perf_counter() - _started.pop())


def tune_after_this_session() -> None:
    """Schedule :func:`tune_for_serving` on the server's loop (the served app calls this)."""
    if not _tuned:
        IOLoop.current().add_callback(tune_for_serving)


def tune_for_serving() -> None:
    """Freeze the startup heap and raise the young threshold (idempotent; see the module docstring)."""
    global _tuned
    if _tuned:
        return
    _tuned = True
    started = time.perf_counter()
    gc.collect()
    gc.freeze()
    _young, middle, old = gc.get_threshold()
    young = int(os.environ.get(YOUNG_THRESHOLD_ENV) or YOUNG_THRESHOLD)
    gc.set_threshold(young, middle, old)
    gc.callbacks.append(_observe)
    log.info("gc: froze %d startup objects in %.0f ms; young threshold %d",
             gc.get_freeze_count(), (time.perf_counter() - started) * 1000, young)

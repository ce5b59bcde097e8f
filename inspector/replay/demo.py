"""The dashboard's built-in demo: the bundled recordings, replayed in a loop.

The recordings are package data (``inspector/demo_data/*.jsonl``, read through
:mod:`importlib.resources` so the demo works from a wheel). :func:`demo_runs` parses them
once per process; :func:`serve_demo` starts a looping :class:`~inspector.replay.server.ReplayGateway`
over them that rewinds the ``rich`` run mid-run on every loop, so the demo always shows a
time-travel jump. Kept out of the server so the server does not know which recordings ship.
"""

from __future__ import annotations

import functools
from importlib import resources
from typing import Final

from ..transcript import RecordedRun, extract_runs, merge_runs, parse_transcript, split_sessions
from .playback import AutoRewind
from .server import ReplayGateway

__all__ = ["DEMO_TRANSCRIPTS", "demo_runs", "serve_demo"]

#: Transcripts bundled in ``inspector/demo_data`` that :func:`demo_runs` serves.
DEMO_TRANSCRIPTS: Final = (
    "demo-run.jsonl",
    "rich-run.jsonl",
    "rewind-run.jsonl",
    "doomed-run.jsonl",
    "wide-run.jsonl",
    "gated-run.jsonl",
    "agents-run.jsonl",
)


@functools.lru_cache(maxsize=1)
def _demo_runs() -> tuple[RecordedRun, ...]:
    package = resources.files("inspector.demo_data")
    runs: list[RecordedRun] = []
    for name in DEMO_TRANSCRIPTS:
        with package.joinpath(name).open("r", encoding="utf-8") as fh:
            runs.extend(extract_runs(split_sessions(parse_transcript(fh, source=name)), source=name))
    return tuple(run for run in merge_runs(runs) if run.replayable)


def demo_runs() -> list[RecordedRun]:
    """The runs bundled in ``inspector/demo_data`` (demo, rich, rewind, doomed, wide, gated, agents)."""
    return list(_demo_runs())


async def serve_demo(
    port: int = 0, speed: float = 1.0, *, host: str = "127.0.0.1", token: str | None = None
) -> ReplayGateway:
    """Start a looping replay of the demo runs, with the ``rich`` run rewound mid-run each loop.

    The caller owns the returned gateway and must ``await gateway.stop()``.
    """
    runs = demo_runs()
    rewinds = {run.run_id: AutoRewind(0.6) for run in runs if run.source == "rich-run.jsonl"}
    gateway = ReplayGateway(runs, token=token, speed=speed, loop=True, host=host, port=port, auto_rewinds=rewinds)
    await gateway.start()
    return gateway

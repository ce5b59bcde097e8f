"""Where the tests find recorded Gateway transcripts: one definition for every test module.

Two places hold them, each recording in exactly one:

- :data:`RECORDINGS`, the package data ``inspector/demo_data`` (``demo``, ``rich``,
  ``rewind``, ``doomed``, ``wide`` and ``gated`` runs): the same files the built-in demo
  replays, read through :mod:`importlib.resources` so the tests see what an installed
  package ships;
- :data:`FIXTURES`, ``tests/fixtures/smithers-0.32``: the recordings only tests need
  (``errors.jsonl``, ``resume-after-seq.jsonl``) and the README describing all of them.

:func:`recording` finds a file by name in either; :func:`recordings` lists both.
"""

from __future__ import annotations

import atexit
import contextlib
from importlib import resources
from pathlib import Path

__all__ = ["FIXTURES", "RECORDINGS", "recording", "recordings"]

#: ``tests/fixtures/smithers-0.32``: the test-only recordings and their README.
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "smithers-0.32"


def _package_dir() -> Path:
    """``inspector/demo_data`` as a real directory (extracted for the session if zipped)."""
    package = resources.files("inspector.demo_data")
    if isinstance(package, Path):
        return package
    stack = contextlib.ExitStack()
    atexit.register(stack.close)
    return Path(stack.enter_context(resources.as_file(package)))


#: ``inspector/demo_data``: the recordings the package ships (and the demo replays).
RECORDINGS = _package_dir()


def recording(name: str) -> Path:
    """The path of the recording ``name`` (``"rich-run.jsonl"``), wherever it lives."""
    for folder in (RECORDINGS, FIXTURES):
        path = folder / name
        if path.is_file():
            return path
    raise FileNotFoundError(f"no recording {name!r} in {RECORDINGS} or {FIXTURES}")


def recordings(pattern: str = "*.jsonl") -> list[Path]:
    """Every recording matching ``pattern`` in both places, sorted by file name."""
    return sorted([*RECORDINGS.glob(pattern), *FIXTURES.glob(pattern)], key=lambda p: p.name)

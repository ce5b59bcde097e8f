"""What the durable history says of a run's agents beyond the live fold (pure, no I/O).

- :func:`output_from_history`: an attempt's whole output, uncapped (the model keeps only the
  newest ``output_cap_bytes``), for a download.
- :func:`discard_rewound` and :func:`rebuilt_agents`: the run as it now is after rewinds.
  Smithers' ``jumpToFrame`` (time-travel ``jumpToFrame.js``) deletes the attempts started after
  the target frame but keeps every event row, appending a ``TimeTravelJumped``; so the history
  and ``listRunTokenUsage`` of a rewound run still hold the discarded attempts' output,
  actions and usage, and a task that runs again reuses their attempt numbers. The rewound
  stretches are cut out before folding.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .agents import DEFAULT_OUTPUT_CAP_BYTES, HISTORY_SOURCE, OutputChunk, RunAgents, Stream

__all__ = ["Rewound", "discard_rewound", "output_from_history", "rebuilt_agents"]


def _int(value: object, default: int | None = None) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _num(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


@dataclass(frozen=True, slots=True)
class Rewound:
    """A durable history with its rewound stretches cut out (:func:`discard_rewound`)."""

    #: The rows the run still stands on, in ``seq`` order (jump rows included).
    rows: list[Mapping[str, Any]]
    #: Index in ``rows`` just past the last ``TimeTravelJumped`` (0 without a rewind).
    resume: int
    #: ``(from_ms, to_ms]`` of each cut stretch on the Gateway's clock (``None``: unbounded).
    windows: tuple[tuple[float | None, float | None], ...]

    def discards(self, row: Mapping[str, Any]) -> bool:
        """Whether a ``listRunTokenUsage`` row (or any row with ``timestampMs``) was reported
        inside a cut stretch. A row without a time cannot be placed and is kept."""
        at = _num(row.get("timestampMs"))
        if at is None:
            return False
        return any((start is None or at > start) and (end is None or at <= end) for start, end in self.windows)


def discard_rewound(rows: Iterable[Mapping[str, Any]]) -> Rewound:
    """Cut what each rewind discarded out of a run's durable history rows.

    Smithers' ``jumpToFrame`` (time-travel ``jumpToFrame.js``) deletes the frames after the
    target and the attempts started after the target frame was created, and appends a
    ``TimeTravelJumped`` row, but leaves the event rows of the discarded future in place.
    Walking the rows in ``seq`` order, a ``TimeTravelJumped`` to frame F drops every row after
    the latest ``FrameCommitted`` of frame F (frames are renumbered after a rewind, so the
    latest one is the frame the run went back to); with no such row everything before the jump
    goes. The time between that commit and the jump is a cut window, for rows that carry no
    seq (``listRunTokenUsage``).
    """
    def seq_of(row: Mapping[str, Any]) -> int:
        seq = _int(row.get("seq"))
        return seq if seq is not None else -1

    kept: list[Mapping[str, Any]] = []
    frames: dict[int, tuple[int, float | None]] = {}  # frameNo -> (index in kept, commit time)
    windows: list[tuple[float | None, float | None]] = []
    resume = 0
    for row in sorted(rows, key=seq_of):
        event = row.get("event")
        raw = row.get("payload")
        payload: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
        at = _num(row.get("timestampMs"))
        at = at if at is not None else _num(payload.get("timestampMs"))
        if event == "FrameCommitted":
            frame = _int(payload.get("frameNo"))
            if frame is not None:
                frames[frame] = (len(kept), at)
        elif event == "TimeTravelJumped":
            target = _int(payload.get("toFrameNo"))
            index, since = frames.get(target, (-1, None)) if target is not None else (-1, None)
            del kept[index + 1 :]
            frames = {frame: mark for frame, mark in frames.items() if mark[0] <= index}
            windows.append((since, at))
            kept.append(row)
            resume = len(kept)
            continue
        kept.append(row)
    return Rewound(kept, resume, tuple(windows))


def rebuilt_agents(
    history: Iterable[Mapping[str, Any]],
    usage: Iterable[Mapping[str, Any]] = (),
    *,
    run_id: str | None = None,
    output_cap_bytes: int = DEFAULT_OUTPUT_CAP_BYTES,
    live_source: str | None = None,
) -> RunAgents:
    """The run as it now is: durable ``history`` rows with every rewound stretch cut out
    (:func:`discard_rewound`), then ``usage`` (``listRunTokenUsage`` rows) except those
    reported inside a rewound stretch.

    ``live_source`` names a live stream that starts at the last rewind (a subscription
    resumed after ``run.time_travel_jumped``): it never sent what came before, so its k-th
    output chunk of a node, action or transcript row is lined up with the history's k-th
    one *after* that rewind, and what both bring is applied once.
    """
    model = RunAgents(run_id, output_cap_bytes=output_cap_bytes)
    cut = discard_rewound(history)
    model.apply_history(cut.rows[: cut.resume])
    if live_source is not None:
        model.start_source(live_source, like=HISTORY_SOURCE)
    model.apply_history(cut.rows[cut.resume :])
    model.apply_token_usage_rows(row for row in usage if not cut.discards(row))
    return model


def output_from_history(
    rows: Iterable[Mapping[str, Any]], node_id: str, iteration: int = 0, attempt: int = 1
) -> list[OutputChunk]:
    """An attempt's whole output, uncapped, from durable history rows (``NodeOutput``), in seq order.

    What a "download the full text" reads: the model itself keeps only the newest
    ``output_cap_bytes`` of each attempt.
    """
    chunks: list[tuple[int, OutputChunk]] = []
    seen: set[int] = set()
    for row in rows:
        payload = row.get("payload")
        seq = _int(row.get("seq"), -1)
        if row.get("event") != "NodeOutput" or not isinstance(payload, Mapping) or seq is None or seq in seen:
            continue
        if (payload.get("nodeId"), _int(payload.get("iteration"), 0), _int(payload.get("attempt"), 1)) != (
            node_id, iteration, attempt
        ):
            continue
        text = payload.get("text")
        if isinstance(text, str):
            seen.add(seq)
            stream: Stream = "stderr" if payload.get("stream") == "stderr" else "stdout"
            chunks.append((seq, OutputChunk(stream, text, _num(payload.get("timestampMs")))))
    return [chunk for _, chunk in sorted(chunks, key=lambda c: c[0])]

"""Transcripts: reading, session splitting, run extraction and the writer, on the real fixtures."""

from __future__ import annotations

import io
import json
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import given, strategies as st

from inspector.errors import ProtocolError
from inspector.transcript import (
    TranscriptLine,
    TranscriptWriter,
    extract_runs,
    load_runs,
    load_sessions,
    merge_runs,
    parse_transcript,
    read_transcript,
    rpc_key,
    split_sessions,
    write_transcript,
)
from inspector.tree import DevToolsTree
from tests.recordings import recording

if TYPE_CHECKING:
    from pathlib import Path


def fixture(name: str) -> Path:
    return recording(name)


def only_run(name: str) -> Any:
    runs = [r for r in extract_runs(load_sessions(fixture(name))) if r.replayable]
    assert len(runs) == 1
    return runs[0]


# --------------------------------------------------------------------------- reading and sessions


@pytest.mark.parametrize(
    ("name", "sessions"),
    [
        ("demo-run.jsonl", 1),
        ("rich-run.jsonl", 1),
        ("doomed-run.jsonl", 1),
        ("gated-run.jsonl", 1),
        ("wide-run.jsonl", 1),
        ("rewind-run.jsonl", 2),
        ("resume-after-seq.jsonl", 2),
        ("errors.jsonl", 3),
    ],
)
def test_sessions_start_at_a_challenge_with_the_gateway_clock(name: str, sessions: int) -> None:
    found = load_sessions(fixture(name))
    assert len(found) == sessions
    for session in found:
        first = session.lines[0]
        assert first.frame["event"] == "connect.challenge"
        assert first.t == 0 or first.t < 10
        assert session.started_at_ms == first.frame["payload"]["ts"]


def test_lines_without_a_challenge_form_their_own_session() -> None:
    lines = [
        TranscriptLine(0, "recv", {"type": "event", "event": "tick", "payload": {}}),
        TranscriptLine(0, "recv", {"type": "event", "event": "connect.challenge", "payload": {"ts": 5}}),
    ]
    sessions = split_sessions(lines)
    assert [len(s.lines) for s in sessions] == [1, 1]
    assert sessions[0].started_at_ms is None
    assert sessions[1].started_at_ms == 5


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ('{"t": 0, "dir": "recv", "frame": {}}\nnot json\n', ":2: not valid JSON"),
        ('{"t": "soon", "dir": "recv", "frame": {}}\n', "'t' must be"),
        ('{"t": 0, "dir": "sideways", "frame": {}}\n', "'dir' must be"),
        ('{"t": 0, "dir": "send", "frame": [1]}\n', "'frame' must be"),
    ],
)
def test_malformed_lines_are_refused_with_their_line_number(text: str, fragment: str) -> None:
    with pytest.raises(ProtocolError, match=fragment):
        parse_transcript(io.StringIO(text), source="x.jsonl")


def test_blank_lines_are_skipped() -> None:
    lines = parse_transcript(['{"t": 1, "dir": "send", "frame": {"type": "req"}}', "", "  "])
    assert len(lines) == 1


def test_write_then_read_gives_the_same_lines(tmp_path: Path) -> None:
    original = read_transcript(fixture("rich-run.jsonl"))
    out = tmp_path / "copy.jsonl"
    write_transcript(out, original)
    assert read_transcript(out) == original


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=10,
)


@given(
    t=st.integers(min_value=0, max_value=10**9),
    direction=st.sampled_from(["send", "recv"]),
    frame=st.dictionaries(st.text(max_size=6), json_values, max_size=4),
)
def test_any_line_survives_a_round_trip(t: int, direction: Any, frame: dict[str, Any]) -> None:
    line = TranscriptLine(float(t), direction, frame)
    assert parse_transcript([line.to_json()]) == [line]


# --------------------------------------------------------------------------- extraction


def test_rich_run_extracts_the_whole_recorded_run() -> None:
    run = only_run("rich-run.jsonl")
    assert run.run_id == "5d2a5e6e-d54a-43c1-b7d1-6087d93f941a"
    assert run.workflow == "rich"
    assert run.final_status == "finished"
    assert [e.seq for e in run.devtools] == list(range(19))
    assert run.devtools[0].kind == "snapshot"
    times = [e.t_ms for e in run.devtools] + [e.t_ms for e in run.run_events]
    assert min(times) == 0
    assert [e.t_ms for e in run.devtools] == sorted(e.t_ms for e in run.devtools)
    assert [e.event for e in run.run_events].count("run.completed") == 2
    assert run.origin_epoch_ms is not None and run.origin_epoch_ms > 1.7e12


def test_rich_run_tree_equals_the_recorded_final_snapshot() -> None:
    run = only_run("rich-run.jsonl")
    final = run.final_snapshot
    assert final is not None
    tree = run.final_tree()
    assert tree.root is not None
    assert tree.root.to_wire() == final["root"]


def test_recorded_answers_are_keyed_by_the_params_that_matter() -> None:
    run = only_run("rich-run.jsonl")
    refine = run.answer("getNodeOutput", {"runId": "anything", "nodeId": "refine", "iteration": 2})
    assert refine is not None and refine.ok
    assert refine.payload["row"]["note"] == "refine pass 3"
    diff = run.answer("getNodeDiff", {"nodeId": "plan", "iteration": 0})
    assert diff is not None and not diff.ok and diff.code == "AttemptNotFinished"
    scores = run.answer("listScores", {"runId": run.run_id})
    assert scores is not None and len(scores.payload) == 4
    assert run.row is not None and run.row["summary"] == {"finished": 14}
    assert run.hello is not None and run.hello["protocol"] == 1


def test_rpc_key_ignores_run_id_and_flattens_filters() -> None:
    assert rpc_key("listApprovals", {"filter": {"runId": "r"}}) == ("listApprovals", ())
    assert rpc_key("listRuns", {"filter": {"limit": 5, "status": None}}) == ("listRuns", (("filter.limit", "5"),))
    assert rpc_key("m", {"b": 1, "a": "x"}) == rpc_key("m", {"a": "x", "b": 1})


def test_rewind_fixture_keeps_the_rewind_and_drops_the_resubscribe_baseline() -> None:
    run = only_run("rewind-run.jsonl")
    seqs = [e.seq for e in run.devtools]
    # Session 2 starts with a baseline snapshot at 18 that repeats what session 1 ended with.
    assert seqs[:19] == list(range(19))
    assert seqs[19] == 3 and run.devtools[19].kind == "snapshot"
    assert sum(1 for a, b in zip(seqs, seqs[1:], strict=False) if b < a) == 1
    jumps = [e for e in run.run_events if e.event == "run.time_travel_jumped"]
    assert len(jumps) == 1
    assert jumps[0].payload["fromFrameNo"] == 18 and jumps[0].payload["toFrameNo"] == 3
    assert run.devtools[18].t_ms < jumps[0].t_ms <= run.devtools[19].t_ms + 50
    final = run.final_snapshot
    root = run.final_tree().root
    assert final is not None and root is not None
    assert root.to_wire() == final["root"]


def test_resume_fixture_second_session_adds_nothing() -> None:
    run = only_run("resume-after-seq.jsonl")
    assert [e.seq for e in run.devtools] == list(range(19))


def test_every_fixture_run_replays_to_a_valid_tree() -> None:
    for name in ("demo-run.jsonl", "doomed-run.jsonl", "gated-run.jsonl", "wide-run.jsonl"):
        run = only_run(name)
        tree = DevToolsTree()
        for item in run.devtools:
            tree.apply(item.event)
        assert run.final_snapshot is not None
        assert tree.root is not None and tree.root.to_wire() == run.final_snapshot["root"]


def test_doomed_run_final_status_is_failed() -> None:
    assert only_run("doomed-run.jsonl").final_status == "failed"


def test_answer_only_runs_merge_into_the_recorded_run() -> None:
    errors = extract_runs(load_sessions(fixture("errors.jsonl")))
    assert [r.replayable for r in errors] == [False]
    runs = load_runs(fixture("resume-after-seq.jsonl"), fixture("errors.jsonl"))
    assert len(runs) == 1
    answer = runs[0].answer("getDevToolsSnapshot", {"frameNo": 99999})
    assert answer is not None and answer.code == "FrameOutOfRange"
    assert runs[0].row is not None  # from the listRuns answer in errors.jsonl
    assert len(merge_runs([*errors, *runs])) == 1


# --------------------------------------------------------------------------- the writer


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_writer_counts_ms_from_each_session_start(tmp_path: Path) -> None:
    clock = FakeClock()
    path = tmp_path / "rec.jsonl"
    with TranscriptWriter(path, clock=clock) as writer:
        writer.new_session()
        writer.received({"type": "event", "event": "connect.challenge", "payload": {"nonce": "n", "ts": 1000}})
        clock.now += 0.25
        writer.sent({"type": "req", "id": "1", "method": "connect", "params": {}})
        clock.now += 5
        writer.new_session()
        writer.received('{"type":"event","event":"connect.challenge","payload":{"ts":9000}}')
        clock.now += 0.0104
        writer.received("this is not json")
    lines = read_transcript(path)
    assert [(line.t, line.dir) for line in lines] == [(0, "recv"), (250, "send"), (0, "recv"), (10, "recv")]
    assert lines[3].frame == {"type": "unparsed", "text": "this is not json"}
    sessions = split_sessions(lines)
    assert [s.started_at_ms for s in sessions] == [1000, 9000]


def test_writer_starts_a_session_on_the_first_frame_and_appends(tmp_path: Path) -> None:
    clock = FakeClock()
    path = tmp_path / "rec.jsonl"
    path.write_text(json.dumps({"t": 0, "dir": "recv", "frame": {"type": "event", "event": "tick"}}) + "\n")
    writer = TranscriptWriter(path, clock=clock)
    clock.now += 3
    writer.sent({"type": "req"})
    writer.close()
    lines = read_transcript(path)
    assert len(lines) == 2 and lines[1].t == 0 and writer.lines_written == 1


def test_a_written_session_extracts_like_a_recorded_one() -> None:
    """What the ``record`` command writes can be replayed: round-trip a fixture session."""
    clock = FakeClock()
    buf = io.StringIO()
    writer = TranscriptWriter(buf, clock=clock)
    writer.new_session()
    for line in read_transcript(fixture("demo-run.jsonl")):
        clock.now = 100.0 + line.t / 1000
        (writer.sent if line.dir == "send" else writer.received)(line.frame)
    copy = extract_runs(split_sessions(parse_transcript(buf.getvalue().splitlines())))
    original = extract_runs(load_sessions(fixture("demo-run.jsonl")))
    assert [e.event for e in copy[0].devtools] == [e.event for e in original[0].devtools]
    assert copy[0].answers == original[0].answers

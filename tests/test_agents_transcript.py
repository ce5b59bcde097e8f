"""The Agent tab's transcript, from ``agent.session``.

Smithers' ``AgentTraceCollector`` (engine/src/AgentTraceCollector.js) emits one
``AgentSessionEvent`` per row of the provider's session transcript, only for an agent whose
capture mode is ``cli-json-stream`` or ``rpc-events``: a scripted agent gets that mode from
``outputFormat: "stream-json"`` (observability ``detectCaptureMode``), and then each JSON line
it prints is a row. The suite's ``agent-transcript`` workflow does exactly that; the browser
test opens its Agent tab on the real Gateway. HTML in the rows stays literal text.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
from playwright.sync_api import expect

from dashboard.views.agent import transcript_text
from inspector.agents import TRANSCRIPT_MAX_ROWS, RunAgents
from tests.browser import wait_until

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from playwright.sync_api import Page

    from tests.browser import DashboardServer
    from tests.gateway.server import GatewayServer

KEY = {"runId": "r1", "nodeId": "narrate", "iteration": 0, "attempt": 1}


def session_row(sequence: int, row_type: str, raw: Any) -> dict[str, Any]:
    """An ``AgentSessionTranscriptEvent`` as the collector builds it (observeProviderSessionRow)."""
    return {"transcriptVersion": "1", **KEY, "timestampMs": 1000 + sequence,
            "event": {"sequence": sequence, "rowType": row_type},
            "source": {"agentFamily": "unknown", "captureMode": "cli-json-stream", "ingestSource": "live", "observedLive": True},
            "raw": raw, "redaction": {"applied": False, "ruleIds": []}, "annotations": {}}


ROWS = [
    session_row(0, "system", {"type": "system", "subtype": "init"}),
    session_row(1, "assistant", {"type": "assistant", "message": {"content": [{"type": "text", "text": "Reading <img src=x onerror=alert(1)> now"}]}}),
    session_row(2, "result", {"type": "result", "result": "done"}),
]


def test_each_session_event_adds_a_row_once_whichever_source_brings_it() -> None:
    model = RunAgents("r1")
    for seq, row in enumerate(ROWS, start=10):
        model.apply("agent.session", {**KEY, "transcript": row}, seq=seq, source="live")
    for seq, row in enumerate(ROWS, start=40):  # the durable history brings the same rows
        model.apply_history_row({"seq": seq, "event": "AgentSessionEvent", "payload": {**KEY, "transcript": row}})
    attempt = model.attempt("narrate")
    assert attempt is not None and attempt.transcript == ROWS


def test_an_echo_of_the_rows_with_new_seqs_and_no_repeated_transition_adds_nothing() -> None:
    # The Gateway's out-of-process bridge re-streams a run that ended with new seqs
    # (inspector/echoes.py); when its rows come without the repeated transition the echo
    # filter keys on, the rows' own numbers still say they are held.
    model = RunAgents("r1")
    for seq, row in enumerate(ROWS, start=10):
        model.apply("agent.session", {**KEY, "transcript": row}, seq=seq, source="live")
    model.apply("agent.session", {**KEY, "transcript": [ROWS[1], ROWS[2]]}, seq=20, source="live")
    attempt = model.attempt("narrate")
    assert attempt is not None and attempt.transcript == ROWS
    unnumbered = [{"type": "note", "n": 1}, {"type": "note", "n": 1}]  # no number: kept by position
    model.apply("agent.session", {**KEY, "transcript": unnumbered}, seq=21, source="live")
    assert attempt.transcript == [*ROWS, *unnumbered]


def test_a_list_of_rows_extends_and_the_newest_rows_are_kept() -> None:
    model = RunAgents("r1")
    rows = [session_row(i, "assistant", {"n": i}) for i in range(TRANSCRIPT_MAX_ROWS + 5)]
    model.apply("agent.session", {**KEY, "transcript": rows[:3]}, seq=1)
    model.apply("agent.session", {**KEY, "transcript": rows[3:]}, seq=2)
    attempt = model.attempt("narrate")
    assert attempt is not None and attempt.transcript == rows[5:] and attempt.transcript_dropped == 5
    assert transcript_text(attempt.transcript, attempt.transcript_dropped).startswith("… 5 earlier rows\n#5 assistant: ")


def test_transcript_text_is_a_row_per_line_with_the_providers_row_as_json() -> None:
    text = transcript_text(ROWS)
    assert text.splitlines() == [
        '#0 system: {"type": "system", "subtype": "init"}',
        '#1 assistant: {"type": "assistant", "message": {"content": [{"type": "text", "text": "Reading <img src=x onerror=alert(1)> now"}]}}',
        '#2 result: {"type": "result", "result": "done"}',
    ]
    assert transcript_text([]) == "" and transcript_text(None) == ""
    assert transcript_text(["plain", {"role": "user"}]) == 'plain\n{"role": "user"}'


# ---------------------------------------------------------------------------- real Gateway


@pytest.fixture(scope="module")
def transcript_dashboard(gateway: GatewayServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DashboardServer]:
    from tests.browser import DashboardServer
    from tests.gateway.server import ADMIN_TOKEN

    with DashboardServer(gateway.url, ADMIN_TOKEN, tmp_path_factory.mktemp("panel")) as server:
        yield server


def test_the_agent_tab_shows_the_real_engines_transcript_as_text(
    gateway: GatewayServer, transcript_dashboard: DashboardServer, page: Page, tmp_path: Path
) -> None:
    run_id = gateway.launch_run("agent-transcript")
    gateway.wait_for_run(run_id, timeout=60)
    page.goto(transcript_dashboard.url(f"runId={run_id}&nodeId=narrate&tab=agent"))
    transcript = page.locator(".sd-agent-transcript pre").first  # (the pane's text is in its shadow root)
    wait_until(lambda: "#4 result" in (transcript.text_content() or ""), 60, "the transcript's five rows", page)
    text = transcript.text_content() or ""
    lines = [line for line in text.splitlines() if line.startswith("#")]
    assert [line.split(":", 1)[0] for line in lines] == ["#0 system", "#1 user", "#2 assistant", "#3 assistant", "#4 result"]
    assert "Reading <img src=x onerror=alert(1)> now" in text and "Narrate <b>the run</b>" in text
    assert '"name": "read_file"' in text
    assert "narrated <script>alert('transcript')</script> (attempt 1)" in text
    expect(transcript.locator("img, script, b")).to_have_count(0)
    expect(page.get_by_text("Transcript", exact=True)).to_be_visible()

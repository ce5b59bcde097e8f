"""The Agent tab in a real browser, against the real Gateway's scripted agents and the replayed
agentic recording.

- ``agents`` on a slow Gateway (``PACE``): the output shows while the agent still runs, appended
  (the page receives only the new chunks, not the whole output per update), ANSI as colour,
  stderr marked, HTML in the agent's text as literal text, actions with their outcomes.
- ``agent-retry``: ``?tab=agent&attempt=1`` opens the failed first attempt; the picker opens the
  second; the URL follows.
- ``agent-loop``: ``&iteration=1`` opens a loop iteration the tree does not show.
- the replayed ``agents-run.jsonl`` opened after it ended (durable history only), and the
  download of the whole output.

Hooks: ``data-testid="agent-output"`` (its text is the output), ``data-testid="agent-action"``
with ``data-status``.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from playwright.sync_api import expect

from tests.browser import DashboardServer, wait_until
from tests.gateway.server import ADMIN_TOKEN, GatewayServer
from tests.replay_support import TOKEN, runs_of
from tests.replay_thread import ReplayThread

if TYPE_CHECKING:
    from collections.abc import Iterator

    from playwright.sync_api import Locator, Page

    from tests.browser import BrowserLog

#: The scripted agents sleep 60 ms x PACE between steps: slow enough to watch one run.
SLOW_PACE = 20.0
OUTPUT = '[data-testid="agent-output"]'
ACTION = '[data-testid="agent-action"]'
ESC = "\x1b"
#: An output chunk inside a message (``<span class="sd-o-stdout" data-c="3">``, JSON-escaped).
_CHUNK = re.compile(r'class=\\"sd-o-std(?:out|err)\\" data-c=\\"\d')


@pytest.fixture(scope="module")
def slow_gateway(gateway_install: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayServer]:
    server = GatewayServer(gateway_install, tmp_path_factory.mktemp("gateway-slow"), pace=SLOW_PACE)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def agent_dashboard(slow_gateway: GatewayServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DashboardServer]:
    with DashboardServer(slow_gateway.url, ADMIN_TOKEN, tmp_path_factory.mktemp("panel")) as server:
        yield server


def output(page: Page) -> Locator:
    return page.locator(OUTPUT).first


def output_text(page: Page) -> str:
    return output(page).text_content() or ""


def statuses(page: Page) -> list[str]:
    return [a.get_attribute("data-status") or "" for a in page.locator(ACTION).all()]


def picker(page: Page, label: str) -> Locator:
    """The ``<select>`` of the Agent tab's ``Iteration`` / ``Attempt`` picker."""
    return page.locator(".bk-input-group", has=page.locator("label", has_text=re.compile(rf"^{label}$"))).locator("select")


def assert_text_is_safe(page: Page, text: str) -> None:
    """Escapes rendered (never shown as ``[32m``), HTML in the agent's text literal."""
    assert ESC not in text and "[32m" not in text and "]0;title" not in text, text[:400]
    assert "untrusted: <img src=x onerror=alert(1)> <script>alert('agent')</script>" in text
    assert output(page).locator("img, script").count() == 0  # (an alert() would fail the page fixture)


def agent_frames(log: BrowserLog, marker: str) -> list[str]:
    """WebSocket frames from the server carrying output chunks of ``marker``'s agent."""
    return [f for f in log.ws_received if _CHUNK.search(f) and marker in f]


# ---------------------------------------------------------------------------- real Gateway


def test_output_streams_while_the_agent_runs(
    slow_gateway: GatewayServer, agent_dashboard: DashboardServer, page: Page, browser_log: BrowserLog, tmp_path: Path
) -> None:
    run_id = slow_gateway.launch_run("agents")
    page.goto(agent_dashboard.url(f"runId={run_id}&nodeId=research&tab=agent"))
    wait_until(lambda: "researcher starting" in output_text(page), 60, "the first output line", page)
    seen_running = set(statuses(page))
    assert slow_gateway.get_run(run_id)["status"] == "running", "the output must show while the run is live"
    wait_until(lambda: "line 0 of researcher" in output_text(page), 60, "more output, appended", page)
    # An action still running is shown as such, then with its outcome.
    wait_until(lambda: seen_running.update(statuses(page)) or "running" in seen_running or "done:" in output_text(page),
               60, "a running action", page)
    assert "running" in seen_running, f"never saw a running action: {seen_running}"
    wait_until(lambda: "done: researcher answer (i0-a1)" in output_text(page), 60, "the end of the output", page)
    wait_until(lambda: statuses(page) == ["ok", "failed", "ok"], 30, "three actions with outcomes", page)
    text = output_text(page)
    assert_text_is_safe(page, text)
    assert "green ok red warn cursor-moved" in text
    expect(output(page).locator('span[style*="color:#00cd00"]', has_text="green ok")).to_have_count(1)
    expect(output(page).locator(".sd-o-stderr", has_text="stderr: note from researcher")).to_have_count(1)
    failed = page.locator(f'{ACTION}[data-status="failed"]')
    expect(failed).to_contain_text("run tests #1")
    expect(failed).to_contain_text("exit code 1")
    expect(page.get_by_text("researcher answer (i0-a1)", exact=True)).to_be_visible()
    expect(page.locator(".sd-agent-summary")).to_contain_text("claude-sonnet-4-6-20260115")
    # Appended, not resent: the first line travels in one message (the reset), the rest in
    # several smaller ones that do not repeat it.
    frames = agent_frames(browser_log, "researcher")
    with_first_line = [f for f in frames if "researcher starting" in f]
    assert len(frames) >= 4 and len(with_first_line) <= 2, (len(frames), len(with_first_line))
    sizes = sorted(len(f.encode()) for f in frames if f not in with_first_line)
    print(f"agent output frames: {len(frames)}; append frame bytes min {sizes[0]} median {sizes[len(sizes) // 2]} max {sizes[-1]}")
    # One selection everywhere: picking another task in the tree shows its agent.
    page.locator(".st-row[data-node-id]", has_text="write").first.click()
    wait_until(lambda: "writer starting" in output_text(page), 30, "the writer's output", page)
    wait_until(lambda: "nodeId=write" in page.url and "tab=agent" in page.url, 10, "the URL", page)


def test_retried_attempts_open_from_the_url_and_the_picker(
    slow_gateway: GatewayServer, agent_dashboard: DashboardServer, page: Page
) -> None:
    run_id = slow_gateway.launch_run("agent-retry")
    slow_gateway.wait_for_run(run_id, timeout=120)
    page.goto(agent_dashboard.url(f"runId={run_id}&nodeId=flaky-agent&tab=agent&attempt=1"))
    wait_until(lambda: "fatal: scripted failure on attempt 1" in output_text(page), 60, "attempt 1's output", page)
    assert "flaky starting (iteration 0, attempt 1)" in output_text(page)
    expect(page.locator(".sd-agent-summary")).to_have_attribute("data-attempt-status", "failed")
    expect(page.locator(".sd-o-stderr", has_text="fatal: scripted failure on attempt 1")).to_have_count(1)
    select = picker(page, "Attempt")
    wait_until(lambda: select.locator("option").count() == 2, 30, "both attempts offered", page)
    select.select_option("2")
    wait_until(lambda: "done: flaky answer (i0-a2)" in output_text(page), 30, "attempt 2's output", page)
    assert "attempt 1" not in output_text(page)
    wait_until(lambda: "attempt=2" in page.url, 10, "the URL names attempt 2", page)
    expect(page.locator(".sd-agent-summary")).to_have_attribute("data-attempt-status", "finished")


def test_a_loop_iteration_opens_from_the_url(
    slow_gateway: GatewayServer, agent_dashboard: DashboardServer, page: Page
) -> None:
    run_id = slow_gateway.launch_run("agent-loop")
    slow_gateway.wait_for_run(run_id, timeout=120)
    page.goto(agent_dashboard.url(f"runId={run_id}&nodeId=iterate&tab=agent&iteration=1"))
    wait_until(lambda: "looper starting (iteration 1, attempt 1)" in output_text(page), 60, "iteration 1", page)
    select = picker(page, "Iteration")
    wait_until(lambda: select.locator("option").count() == 3, 30, "three iterations offered", page)
    select.select_option("0")
    wait_until(lambda: "looper starting (iteration 0, attempt 1)" in output_text(page), 30, "iteration 0", page)
    wait_until(lambda: "iteration=0" in page.url, 10, "the URL names iteration 0", page)
    assert_text_is_safe(page, output_text(page))


# ---------------------------------------------------------------------------- replayed recording


@pytest.fixture
def finished_replay() -> Iterator[ReplayThread]:
    replay = ReplayThread(runs_of("agents-run.jsonl"), token=TOKEN, speed=5.0)
    try:
        yield replay
    finally:
        replay.stop()


def test_a_finished_recorded_run_shows_its_agents_from_the_durable_history(
    finished_replay: ReplayThread, serve_dashboard: Any, page: Page, tmp_path: Path
) -> None:
    gateway = finished_replay.gateway
    run_id = finished_replay.call(
        lambda: next(r for r in gateway.run_ids() if gateway.player.runs[r].recorded.workflow == "agents"))
    wait_until(lambda: finished_replay.call(lambda: gateway.player.runs[run_id].event_window_released), 60,
               "the run over and its replay window let go")
    server = serve_dashboard(gateway.url, token=TOKEN)
    page.goto(server.url(f"runId={run_id}&nodeId=research&tab=agent"))
    wait_until(lambda: "done: researcher answer (i0-a1)" in output_text(page), 60, "the output", page)
    wait_until(lambda: statuses(page) == ["ok", "failed", "ok"], 30, "the actions", page)
    text = output_text(page)
    assert_text_is_safe(page, text)
    assert text.count("researcher starting") == 1  # one source, counted once
    expect(page.locator(".sd-agent-summary")).to_contain_text("in 1,200")
    # The download is the whole output, escapes stripped, read from the durable history.
    with page.expect_download() as download_info:
        page.get_by_role("button", name="Download the whole output").click()
    download = download_info.value
    path = tmp_path / download.suggested_filename
    download.save_as(path)
    body = path.read_text(encoding="utf-8")
    assert download.suggested_filename == "research-iteration0-attempt1.txt"
    assert ESC not in body and "x" * 3000 in body and "done: researcher answer (i0-a1)" in body
    # The screenshot for the docs: the top of the output (colours, stderr), actions, answer.
    output(page).evaluate("el => { el.scrollTop = 0 }")
    page.wait_for_timeout(200)  # not synchronisation: lets the scroll paint before the picture
    shot = tmp_path / "agent.png"
    page.screenshot(path=str(shot), full_page=True)
    folder = os.environ.get("SMITHERS_SCREENSHOTS")
    if folder:
        shutil.copy(shot, Path(folder) / "agent.png")

"""The Operate tab in Chromium: the inbox (operator and viewer), approving, launching from the form.

Screenshots of the inbox and the launch form are written to ``docs/screenshots/``.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

import pytest
from playwright.sync_api import expect

from .browser import ROOT, wait_until
from .test_launch_form import TYPED

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from playwright.sync_api import Page

    from .browser import DashboardServer

SHOTS = ROOT / "docs" / "screenshots"


@pytest.fixture
def schemas_file(tmp_path: Path) -> Path:
    path = tmp_path / "schemas.json"
    path.write_text(json.dumps({"typed": TYPED, "typed-gated": TYPED}))
    return path


def open_operate(page: Page, server: DashboardServer) -> None:
    page.goto(server.url(), wait_until="domcontentloaded")
    page.locator(".bk-tab", has_text=re.compile(r"^Operate$")).click()
    expect(page.get_by_text("Approvals inbox")).to_be_visible(timeout=30_000)


def row_of(page: Page, run_id: str) -> Any:
    return page.locator(".sd-inbox-row").filter(has_text=run_id)


def test_operator_approves_from_the_inbox(
    gateway: Any, serve_dashboard: Callable[..., DashboardServer], schemas_file: Path, page: Page
) -> None:
    gated = gateway.launch_run("gated")
    other = gateway.launch_run("typed-gated", input={"target": "api", "replicas": 2, "ratio": 1.5, "dryRun": False,
                                                      "tier": "dev", "tags": ["x"]})
    gateway.wait_for_run(gated, ("waiting-approval",), timeout=30)
    gateway.wait_for_run(other, ("waiting-approval",), timeout=30)
    server = serve_dashboard(gateway.url, env={"SMITHERS_DASHBOARD_ACTIONS": "1",
                                               "SMITHERS_DASHBOARD_WORKFLOW_SCHEMAS": str(schemas_file)})
    open_operate(page, server)
    row = row_of(page, gated)
    expect(row).to_be_visible(timeout=30_000)
    expect(row_of(page, other)).to_be_visible()
    expect(row.get_by_text("Deploy to prod · node deploy")).to_be_visible()
    expect(row.get_by_text(re.compile(r"^waiting "))).to_be_visible()
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "inbox.png"), full_page=True)
    row.get_by_role("button", name="Approve").click()
    question = row.get_by_text(f"Approve node deploy (Deploy to prod) of run {gated}?")
    expect(question).to_be_visible()
    assert gateway.get_run(gated)["status"] == "waiting-approval"  # armed, not sent
    row.get_by_role("button", name="Confirm").click()
    expect(page.get_by_text(f"Approved: node deploy of run {gated}.")).to_be_visible(timeout=20_000)
    gateway.wait_for_run(gated, ("finished",), timeout=30)
    expect(row_of(page, gated)).to_have_count(0, timeout=20_000)
    expect(row_of(page, other)).to_be_visible()
    gateway.rpc("submitApproval", {"runId": other, "nodeId": "apply", "decision": {"approved": False}})


def test_launch_form_starts_a_run_that_opens(
    gateway: Any, serve_dashboard: Callable[..., DashboardServer], schemas_file: Path, page: Page
) -> None:
    server = serve_dashboard(gateway.url, env={"SMITHERS_DASHBOARD_ACTIONS": "1",
                                               "SMITHERS_DASHBOARD_WORKFLOW_SCHEMAS": str(schemas_file)})
    open_operate(page, server)
    launch = page.locator(".sd-launch")
    launch.locator("select").first.select_option("typed")
    expect(launch.get_by_text("Input of typed (fields marked * are required):")).to_be_visible(timeout=20_000)
    launch.get_by_placeholder("target").fill("web")
    launch.get_by_placeholder("replicas").fill("3")
    launch.get_by_placeholder("ratio").fill("0.25")
    launch.locator("select").nth(1).select_option("prod")
    launch.get_by_placeholder("tags: JSON array").fill('["blue", ')
    launch.get_by_role("button", name="Launch").click()
    expect(launch.get_by_text(re.compile(r"^Nothing sent: tags is not valid JSON"))).to_be_visible(timeout=10_000)
    launch.get_by_placeholder("tags: JSON array").fill('["blue"]')
    launch.get_by_role("button", name="Launch").click()
    expect(launch.get_by_text(re.compile(r'^Launch workflow typed with input \{"target": "web", "replicas": 3'))).to_be_visible()
    expect(page.get_by_text(re.compile(r"pending approvals?$|^No approval is pending"))).to_be_visible(timeout=30_000)
    page.screenshot(path=str(SHOTS / "launch.png"), full_page=True)
    launch.get_by_role("button", name="Confirm").click()
    run_id = wait_until(lambda: re.search(r"runId=([0-9a-f-]{36})", page.url), 30, "the new run opens", page).group(1)
    expect(page.get_by_role("button", name="← All runs")).to_be_visible(timeout=20_000)
    run = gateway.wait_for_run(run_id, timeout=30)
    assert run["status"] == "finished" and run["workflowKey"] == "typed"
    out = gateway.rpc("getNodeOutput", {"runId": run_id, "nodeId": "echo", "iteration": 0})
    assert out["row"]["note"] == "web on prod"


def test_a_viewer_sees_the_inbox_without_buttons(
    gateway: Any, serve_dashboard: Callable[..., DashboardServer], page: Page
) -> None:
    gated = gateway.launch_run("gated")
    gateway.wait_for_run(gated, ("waiting-approval",), timeout=30)
    # Actions are on, but operators are named and this visitor (no login) is not one.
    server = serve_dashboard(gateway.url, env={"SMITHERS_DASHBOARD_ACTIONS": "1",
                                               "SMITHERS_DASHBOARD_OPERATORS": "alice"})
    open_operate(page, server)
    row = row_of(page, gated)
    expect(row).to_be_visible(timeout=30_000)
    expect(row.get_by_text("Deploy to prod · node deploy")).to_be_visible()
    for label in ("Approve", "Deny", "Confirm", "Launch", "Send signal"):
        expect(page.get_by_role("button", name=label)).to_have_count(0)
    expect(page.locator(".sd-launch")).to_have_count(0)
    gateway.rpc("submitApproval", {"runId": gated, "nodeId": "deploy", "decision": {"approved": True}})


def test_signal_from_the_inbox_and_rerun_from_the_run_header(
    gateway: Any, serve_dashboard: Callable[..., DashboardServer], page: Page
) -> None:
    waiting = gateway.launch_run("signal")
    gateway.wait_for_run(waiting, ("waiting-event",), timeout=30)
    server = serve_dashboard(gateway.url, env={"SMITHERS_DASHBOARD_ACTIONS": "1"})
    open_operate(page, server)
    row = page.locator(".sd-inbox-signal").filter(has_text=waiting)
    expect(row.get_by_text("node release waits for signal 'release'")).to_be_visible(timeout=30_000)
    payload = row.locator("textarea")
    payload.fill('{"note": go}')
    row.get_by_role("button", name="Send signal").click()
    expect(row.get_by_text(re.compile(r"^Nothing sent: the payload is not valid JSON: Expecting value \(line 1, column 10\)")
                           )).to_be_visible(timeout=10_000)
    assert gateway.get_run(waiting)["status"] == "waiting-event"
    payload.fill('{"note": "go"}')
    row.get_by_role("button", name="Send signal").click()
    expect(row.get_by_text(f"Send signal 'release' (node release) to run {waiting} with {{\"note\": \"go\"}}?")).to_be_visible()
    row.get_by_role("button", name="Confirm").click()
    gateway.wait_for_run(waiting, ("finished",), timeout=30)

    # The run header: re-run the finished run with its input; the new run opens.
    page.goto(server.url(f"runId={waiting}"), wait_until="domcontentloaded")
    ops = page.locator(".sd-run-ops")
    ops.get_by_role("button", name="Re-run").click()
    expect(ops.get_by_text(f"Start a new run of workflow signal with the same input as run {waiting}?")).to_be_visible(
        timeout=20_000)
    ops.get_by_role("button", name="Confirm").click()
    new_run = wait_until(lambda: (m := re.search(r"runId=([0-9a-f-]{36})", page.url)) and m.group(1) != waiting and m,
                         30, "the re-run opens", page).group(1)
    assert gateway.get_run(new_run)["workflowKey"] == "signal"
    gateway.wait_for_run(new_run, ("waiting-event",), timeout=30)
    gateway.rpc("submitSignal", {"runId": new_run, "signalName": "release", "data": {"note": "done"}})


# ------------------------------------------------------------------ schemas as server configuration


def test_workflow_schemas_are_server_configuration(schemas_file: Path, tmp_path: Path) -> None:
    """``serve --workflow-schemas FILE`` is checked at start and reaches the config; the
    environment variable still works and the option wins over it."""
    from dashboard.config import SCHEMAS_ENV, load_config
    from dashboard.schema_form import workflow_schemas
    from inspector.cli import ServeRefused, build_parser, serve_plan

    assert load_config({SCHEMAS_ENV: str(schemas_file)}).workflow_schemas == str(schemas_file.resolve())
    assert load_config({}).workflow_schemas is None
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"other": TYPED}))
    assert set(workflow_schemas({SCHEMAS_ENV: str(other)}, path=str(schemas_file))) == {"typed", "typed-gated"}
    assert set(workflow_schemas({SCHEMAS_ENV: str(other)})) == {"other"}

    def plan(path: Path, env: dict[str, str] | None = None) -> dict[str, str]:
        env = dict(env or {})
        serve_plan(build_parser().parse_args(["serve", "--workflow-schemas", str(path)]), env)
        return env

    assert plan(schemas_file, {SCHEMAS_ENV: str(other)})[SCHEMAS_ENV] == str(schemas_file.resolve())
    broken, listed = tmp_path / "broken.json", tmp_path / "list.json"
    broken.write_text('{"typed": ')
    listed.write_text("[1, 2]")
    for path, said in ((broken, "is not JSON"), (tmp_path / "missing.json", "cannot read"),
                       (listed, "must be a JSON object")):
        with pytest.raises(ServeRefused, match=said):
            plan(path)


def test_serve_with_workflow_schemas_shows_the_schemas_fields(
    gateway: Any, schemas_file: Path, tmp_path: Path, page: Page
) -> None:
    import os

    from tests.deploy_support import Served, cli, free_port
    from tests.gateway.server import ADMIN_TOKEN

    token_file = tmp_path / "token"
    token_file.write_text(ADMIN_TOKEN)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "SMITHERS_DASHBOARD_WORKFLOW_SCHEMAS"}
    served = Served(cli("serve", "--gateway", gateway.url, "--token-file", str(token_file), "--port", str(port),
                        "--actions", "--workflow-schemas", str(schemas_file)), tmp_path / "serve.log", env=env)
    try:
        base = f"http://127.0.0.1:{port}"
        served.wait_status(f"{base}/healthz")
        page.goto(f"{base}/apps", wait_until="domcontentloaded")
        page.locator(".bk-tab", has_text=re.compile(r"^Operate$")).click()
        launch = page.locator(".sd-launch")
        launch.locator("select").first.select_option("typed")
        expect(launch.get_by_text("Input of typed (fields marked * are required):")).to_be_visible(timeout=30_000)
        for field in ("target", "replicas", "ratio", "tags: JSON array"):
            expect(launch.get_by_placeholder(field)).to_be_visible()
    finally:
        page.goto("about:blank")  # leave before the server stops: its closed socket is no page error
        served.stop()

"""Roles and audit in Chromium, with real logins, on the real Gateway.

``smithers-dashboard serve --basic-auth FILE --operators alice --audit-log FILE`` with the
Gateway's admin token: bob (a viewer) sees the pending approval and no control; alice (an
operator) approves, cancels and rewinds (to the frame picked in the frame scrubber), each
action is one JSON line in the audit file naming her, the action and the run (never the
token), the Audit tab lists them, and the rewind's notice says who rewound.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

import pytest
from playwright.sync_api import expect

from dashboard.passwords import hash_password
from tests.browser import wait_until
from tests.deploy_support import Served, cli, free_port, poll
from tests.gateway.server import ADMIN_TOKEN

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from playwright.sync_api import Page

pytestmark = pytest.mark.browser

PASSWORDS = {"alice": "alice operates the runs", "bob": "bob only looks"}
CONTROLS = ("Approve", "Deny", "Cancel run", "Rewind…", "Confirm")


class TeamServer:
    def __init__(self, base: str, audit: Path, gateway: Any) -> None:
        self.base, self.audit, self.gateway = base, audit, gateway

    def lines(self) -> list[dict[str, Any]]:
        text = self.audit.read_text() if self.audit.exists() else ""
        return [json.loads(line) for line in text.splitlines()]


@pytest.fixture(scope="module")
def team_server(gateway: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TeamServer]:
    tmp = tmp_path_factory.mktemp("team")
    users = tmp / "users.json"
    users.write_text(json.dumps({name: hash_password(pw) for name, pw in PASSWORDS.items()}))
    secret = tmp / "cookie-secret"
    secret.write_text("cookie-secret-for-the-roles-browser-tests-0123456789")
    token_file = tmp / "token"
    token_file.write_text(ADMIN_TOKEN)
    audit = tmp / "audit.jsonl"
    port = free_port()
    served = Served(cli("serve", "--gateway", gateway.url, "--token-file", str(token_file), "--port", str(port),
                        "--basic-auth", str(users), "--cookie-secret-file", str(secret),
                        "--operators", "alice", "--audit-log", str(audit)), tmp / "serve.log")
    try:
        base = f"http://127.0.0.1:{port}"
        served.wait_status(f"{base}/healthz")
        yield TeamServer(base, audit, gateway)
        assert ADMIN_TOKEN not in served.log()
    finally:
        served.stop()


def log_in(page: Page, base: str, path: str, user: str) -> None:
    page.goto(f"{base}{path}")
    page.wait_for_url(re.compile(r"/login"))
    page.fill("input[name=username]", user)
    page.fill("input[name=password]", PASSWORDS[user])
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r"/apps"))


def button(page: Page, label: str) -> Any:
    return page.locator(".bk-btn", has_text=re.compile(rf"^\s*{re.escape(label)}\s*$")).filter(visible=True)


def test_a_viewer_sees_the_approval_and_no_control(team_server: TeamServer, page: Page) -> None:
    gateway = team_server.gateway
    run_id = gateway.launch_run("gated")
    try:
        gateway.wait_for_run(run_id, ["waiting-approval"], timeout=30)
        log_in(page, team_server.base, f"/apps?runId={run_id}", "bob")
        expect(page.get_by_text("Waiting for approval: Deploy to prod").first).to_be_visible(timeout=60_000)
        expect(page.get_by_text("Read-only: you are signed in as a viewer").first).to_be_visible()
        for label in CONTROLS:
            assert button(page, label).count() == 0, f"a viewer sees {label}"
        assert page.locator(".bk-tab", has_text=re.compile(r"^Audit$")).count() == 0
        assert gateway.get_run(run_id)["status"] == "waiting-approval"
        assert not [e for e in team_server.lines() if e["user"] == "bob"]
    finally:
        gateway.rpc("submitApproval", {"runId": run_id, "nodeId": "deploy", "decision": {"approved": False}})


def confirm(page: Page, label: str, question: str | re.Pattern[str]) -> None:
    button(page, label).first.click()
    expect(page.get_by_text(question).first).to_be_visible(timeout=20_000)
    button(page, "Confirm").first.click()


def test_an_operator_approves_cancels_and_rewinds_and_each_is_audited(team_server: TeamServer, page: Page) -> None:
    gateway = team_server.gateway
    gated = gateway.launch_run("gated")
    gateway.wait_for_run(gated, ["waiting-approval"], timeout=30)
    log_in(page, team_server.base, f"/apps?runId={gated}", "alice")

    # Approve.
    expect(page.get_by_text("Waiting for approval: Deploy to prod").first).to_be_visible(timeout=60_000)
    confirm(page, "Approve", f"Approve this request? (node deploy of run {gated})")
    expect(page.get_by_text("Approved: deploy.").first).to_be_visible(timeout=20_000)
    gateway.wait_for_run(gated, timeout=30)
    first = poll(lambda: team_server.lines(), 10, "the approval's audit line")
    assert [(e["user"], e["action"], e["runId"], e["nodeId"], e["outcome"]) for e in first] == [
        ("alice", "approve", gated, "deploy", "ok")]

    # Cancel a running run.
    slow = gateway.launch_run("slow")
    gateway.wait_for_run(slow, ["running"], timeout=30)
    page.goto(f"{team_server.base}/apps?runId={slow}")
    confirm(page, "Cancel run", re.compile(rf"Cancel run {re.escape(slow)}\? It is running"))
    expect(page.get_by_text(f"Cancel requested for run {slow}.").first).to_be_visible(timeout=20_000)
    assert gateway.wait_for_run(slow, timeout=30)["status"] == "cancelled"

    # Rewind a finished run to the frame picked in the scrubber (one step back from the last).
    done = gateway.launch_run("demo")
    gateway.wait_for_run(done, timeout=30)
    page.goto(f"{team_server.base}/apps?runId={done}")
    summary = page.locator("[data-testid=task-summary]")
    wait_until(lambda: summary.count() and int(summary.first.get_attribute("data-total") or 0) > 0, 60,
               "the run's tasks", page=page)
    page.locator(".bk-tab", has_text=re.compile(r"^Frames$")).first.click()
    handle = page.locator(".noUi-handle").filter(visible=True).first
    handle.focus()
    handle.press("ArrowLeft")
    status = page.get_by_text(re.compile(r"^Frame \d+ of \d+")).first
    expect(status).to_be_visible(timeout=20_000)
    match = re.match(r"Frame (\d+) of (\d+)", status.inner_text())
    assert match and int(match.group(1)) == int(match.group(2)) - 1
    frame = int(match.group(1))
    confirm(page, "Rewind…", f"Rewind run {done} to frame {frame}? The run is finished; frames after {frame} are discarded.")
    expect(page.get_by_text(f"Rewound to frame {frame}.").first).to_be_visible(timeout=30_000)
    expect(page.get_by_text(re.compile(rf"Rewound from frame \d+ to {frame} by user:op")).first).to_be_visible(
        timeout=30_000)

    lines = poll(lambda: len(team_server.lines()) >= 3 and team_server.lines(), 10, "three audit lines")
    assert [(e["user"], e["action"], e["runId"], e["outcome"]) for e in lines] == [
        ("alice", "approve", gated, "ok"), ("alice", "cancel", slow, "ok"), ("alice", "rewind", done, "ok")]
    assert lines[2]["frame"] == frame and lines[2]["force"] is False
    assert ADMIN_TOKEN not in team_server.audit.read_text()
    assert team_server.audit.stat().st_mode & 0o777 == 0o600

    # The Audit tab lists them, newest first.
    page.locator(".bk-tab", has_text=re.compile(r"^Audit$")).first.click()
    first_row = page.locator(".tabulator-row").filter(visible=True).first
    expect(first_row).to_contain_text("rewind", timeout=20_000)
    expect(first_row).to_contain_text("alice")
    expect(first_row).to_contain_text(done)

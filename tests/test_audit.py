"""The audit log: one JSON object a line, 0600, whole lines under concurrency, newest first, no token."""

from __future__ import annotations

import json
import threading
from typing import TYPE_CHECKING, Any

from dashboard.audit import OK, REFUSED, AuditLog, audit_log
from dashboard.config import DashboardConfig

if TYPE_CHECKING:
    from pathlib import Path


def test_a_line_names_who_what_and_how(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path, secrets=("tok-123",))
    try:
        log.record(user="alice", action="rewind", method="rewindRun", run_id="r1", frame=12, force=False,
                   outcome=REFUSED, code="RunOwnerAlive", detail="the Gateway said tok-123")
    finally:
        log.close()
    assert path.stat().st_mode & 0o777 == 0o600
    lines = path.read_text().splitlines()
    assert len(lines) == 1
    entry = json.loads(lines[0])
    assert entry["user"] == "alice" and entry["action"] == "rewind" and entry["runId"] == "r1"
    assert entry["frame"] == 12 and entry["force"] is False and entry["outcome"] == "refused"
    assert entry["code"] == "RunOwnerAlive" and entry["time"].endswith("Z")
    assert "tok-123" not in path.read_text()


def test_concurrent_writers_never_interleave_and_read_is_newest_first(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path)
    detail = "x" * 5000  # longer than a pipe's atomic write, to make interleaving visible if it happened

    def write(worker: int) -> None:
        for n in range(50):
            log.record(user=f"u{worker}", action="cancel", run_id=f"r{worker}-{n}", outcome=OK, detail=detail)

    threads = [threading.Thread(target=write, args=(w,)) for w in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    path.open("a").write("not json\n")
    log.record(user="last", action="approve", run_id="r-last", outcome=OK)
    lines = path.read_text().splitlines()
    assert len(lines) == 8 * 50 + 2
    assert all(json.loads(line)["detail"] == detail for line in lines[:400])
    newest = log.read(limit=3)
    assert [e["runId"] for e in newest][:1] == ["r-last"] and len(newest) == 3
    assert len(log.read()) == 401
    log.close()


def test_one_log_per_path_per_process(tmp_path: Path) -> None:
    assert audit_log(DashboardConfig()) is None
    first = audit_log(DashboardConfig(audit_log=str(tmp_path / "a.jsonl")))
    again = audit_log(DashboardConfig(audit_log=str(tmp_path / "." / "a.jsonl")))
    other = audit_log(DashboardConfig(audit_log=str(tmp_path / "b.jsonl")))
    assert first is not None and first is again and other is not first


def test_audit_view_is_plain_text_newest_first_and_filters_the_run(tmp_path: Path) -> None:
    from dashboard.views.audit import COLUMNS, AuditView

    log = AuditLog(tmp_path / "audit.jsonl")
    try:
        log.record(user="alice", action="cancel", run_id="r1", outcome=OK)
        log.record(user="<img src=x onerror=alert(1)>", action="rewind", run_id="r2", frame=3, outcome=REFUSED,
                   detail="<b>not bold</b>")
        view = AuditView(log=log, run_id="r1")
        table = view._table
        assert all(table.formatters[c] == {"type": "plaintext"} for c in COLUMNS), "user-provided text is text"
        assert list(table.value["runId"]) == ["r2", "r1"], "newest first"
        assert table.value["frame"][0] == "3" and table.value["user"][0].startswith("<img")
        view._only_run.value = True
        assert list(table.value["runId"]) == ["r1"]
        view.run_id = "r2"
        assert list(table.value["runId"]) == ["r2"]
        log.record(user="bob", action="approve", run_id="r2", outcome=OK)
        view.refresh()
        assert list(table.value["user"]) == ["bob", "<img src=x onerror=alert(1)>"]
    finally:
        log.close()


async def test_the_audit_tab_is_for_operators_with_an_audit_log(tmp_path: Path, monkeypatch: Any) -> None:
    from dashboard import Dashboard, roles
    from dashboard.hub import GatewayHub
    from dashboard.views.audit import AuditView
    from inspector.client import GatewayClient

    hub = GatewayHub(GatewayClient("http://127.0.0.1:9", "t"), grace=0.1)  # nothing listens: no run is opened
    path = str(tmp_path / "audit.jsonl")
    cases = [("alice", DashboardConfig(actions_enabled=True, operators=frozenset({"alice"}), audit_log=path), True),
             ("bob", DashboardConfig(actions_enabled=True, operators=frozenset({"alice"}), audit_log=path), False),
             ("alice", DashboardConfig(actions_enabled=True, operators=frozenset({"alice"})), False),
             ("alice", DashboardConfig(audit_log=path), False)]
    for user, config, shown in cases:
        monkeypatch.setattr(roles, "session_user", lambda user=user: user)
        dash = Dashboard(hub=hub, config=config)
        try:
            assert isinstance(dash.audit, AuditView) is shown, (user, config)
        finally:
            dash.close()
    await hub.aclose()

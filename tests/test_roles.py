"""Roles: who operates (names, OAuth claims, no login), the signed user cookie, the token's scopes."""

from __future__ import annotations

from typing import Any

import panel as pn
import pytest
from hypothesis import given, strategies as st
from tornado.web import create_signed_value

from dashboard import roles
from dashboard.config import DashboardConfig, load_config, parse_claim, parse_operators
from dashboard.roles import NotAllowed, Role, claim_matches, may_call, role_for, scope_grants
from inspector.errors import ConfigurationError, SmithersDashboardError

SECRET = "a-cookie-secret-for-the-role-tests-0123456789"


def config(**kwargs: Any) -> DashboardConfig:
    kwargs.setdefault("actions_enabled", True)
    return DashboardConfig(**kwargs)


def test_without_actions_everyone_is_a_viewer() -> None:
    off = DashboardConfig(actions_enabled=False, operators=frozenset({"alice"}))
    assert role_for(off, "alice") is Role.VIEWER
    assert role_for(off, None) is Role.VIEWER


def test_the_local_user_without_a_login_operates() -> None:
    assert role_for(config(), None) is Role.OPERATOR
    # ... but not once the server requires a login or names its operators.
    assert role_for(config(login_required=True), None) is Role.VIEWER
    assert role_for(config(operators=frozenset({"alice"})), None) is Role.VIEWER


def test_named_operators_and_every_logged_in_user_by_default() -> None:
    named = config(operators=frozenset({"alice", "bob"}), login_required=True)
    assert role_for(named, "alice") is Role.OPERATOR
    assert role_for(named, "carol") is Role.VIEWER
    assert role_for(named, "Alice") is Role.VIEWER, "names are exact"
    assert role_for(config(login_required=True), "carol") is Role.OPERATOR


def test_operator_claim() -> None:
    by_claim = config(operator_claim=("groups", "smithers-operators"), login_required=True)
    assert role_for(by_claim, "dave", {"groups": ["staff", "smithers-operators"]}) is Role.OPERATOR
    assert role_for(by_claim, "dave", {"groups": "staff smithers-operators"}) is Role.OPERATOR
    assert role_for(by_claim, "erin", {"groups": ["staff"]}) is Role.VIEWER
    assert role_for(by_claim, "erin", {"groups": "smithers-operators-not"}) is Role.VIEWER
    assert role_for(by_claim, "erin", {}) is Role.VIEWER
    assert role_for(by_claim, "erin") is Role.VIEWER


@given(st.lists(st.text(alphabet="abc-:", min_size=1, max_size=6), max_size=5), st.text(alphabet="abc-:", min_size=1, max_size=6))
def test_a_list_claim_matches_exactly_its_members(members: list[str], value: str) -> None:
    assert claim_matches({"roles": members}, "roles", value) == (value in members)


def test_configuration_from_the_environment() -> None:
    cfg = load_config({"SMITHERS_DASHBOARD_OPERATORS": "alice, bob carol", "SMITHERS_DASHBOARD_LOGIN": "1",
                       "SMITHERS_DASHBOARD_OPERATOR_CLAIM": "groups=ops", "SMITHERS_DASHBOARD_AUDIT_LOG": "/tmp/a.log"})
    assert cfg.operators == {"alice", "bob", "carol"} and cfg.operator_claim == ("groups", "ops")
    assert cfg.actions_enabled, "naming operators turns the controls on"
    assert cfg.login_required and cfg.audit_log == "/tmp/a.log"
    assert not load_config({}).actions_enabled and load_config({}).audit_log is None
    assert parse_operators(None) == frozenset() and parse_claim("") is None
    for bad in ("groups", "=x", "groups="):
        with pytest.raises(ConfigurationError):
            parse_claim(bad)


def _cookies(monkeypatch: pytest.MonkeyPatch, cookies: dict[str, str]) -> None:
    monkeypatch.setattr(type(pn.state), "cookies", property(lambda self: cookies))
    monkeypatch.setattr(pn.config, "cookie_secret", SECRET)


def test_session_user_is_the_signed_cookie_only(monkeypatch: pytest.MonkeyPatch) -> None:
    signed = create_signed_value(SECRET, "user", "alice").decode()
    _cookies(monkeypatch, {"user": signed})
    assert roles.session_user() == "alice"
    _cookies(monkeypatch, {"user": "alice"})
    assert roles.session_user() is None, "an unsigned cookie is nobody"
    forged = create_signed_value("another-secret-entirely-0123456789", "user", "alice").decode()
    _cookies(monkeypatch, {"user": forged})
    assert roles.session_user() is None
    # Panel's pn.state.user would say "guest" here; we do not.
    _cookies(monkeypatch, {"is_guest": "1"})
    assert roles.session_user() is None and roles.session_claims() == {}


def test_session_role_and_require_operator(monkeypatch: pytest.MonkeyPatch) -> None:
    named = config(operators=frozenset({"alice"}), login_required=True)
    _cookies(monkeypatch, {"user": create_signed_value(SECRET, "user", "bob").decode()})
    assert roles.session_role(named) is Role.VIEWER
    with pytest.raises(NotAllowed) as refused:
        roles.require_operator(named, "cancel")
    assert isinstance(refused.value, SmithersDashboardError) and refused.value.user == "bob"
    _cookies(monkeypatch, {"user": create_signed_value(SECRET, "user", "alice").decode()})
    assert roles.session_role(named) is Role.OPERATOR and roles.require_operator(named, "cancel") == "alice"


@pytest.mark.parametrize(
    ("granted", "required", "ok"),
    [(["*"], "run:admin", True), (["run:admin"], "run:write", True), (["run:write"], "run:admin", False),
     (["run:read", "observability:read"], "approval:submit", False), (["approval:submit"], "approval:submit", True),
     (["execute"], "run:write", True), (["execute"], "approval:submit", False), (["approve"], "approval:submit", True),
     (["read"], "run:write", False), (["admin"], "run:admin", True), ([], "run:write", False)],
)
def test_scope_grants(granted: list[str], required: str, ok: bool) -> None:
    assert scope_grants(granted, required) is ok


class _Hub:
    def __init__(self) -> None:
        self.client = type("Client", (), {})()


def test_may_call_from_scopes_and_forbidden_answers() -> None:
    hub = _Hub()
    assert may_call(hub, "rewindRun"), "unknown scopes: the Gateway decides"
    assert not may_call(hub, "rewindRun", frozenset({"run:write"}))
    assert may_call(hub, "cancelRun", frozenset({"run:write"}))
    assert may_call(hub, "getRun", frozenset()), "reads are not gated here"
    roles.note_forbidden(hub, "run:admin")
    assert not may_call(hub, "rewindRun") and may_call(hub, "cancelRun")


async def test_token_scopes_come_from_the_hello(gateway: Any) -> None:
    from inspector.client import GatewayClient

    for token, expected in (("op-token", {"*"}), ("read-token", {"run:read", "observability:read"})):
        client = GatewayClient(gateway.url, token)
        hub = type("Hub", (), {"client": client})()
        try:
            scopes = await roles.token_scopes(hub)
            assert scopes == expected
            assert may_call(hub, "submitApproval") is (token == "op-token")
        finally:
            await client.aclose()


def test_serve_role_and_audit_options(tmp_path: Any) -> None:
    from inspector.cli import ServeRefused, build_parser, serve_plan

    users = tmp_path / "users.json"
    users.write_text('{"alice": "pw", "bob": "pw"}')

    def plan(*argv: str) -> dict[str, str]:
        env: dict[str, str] = {"SMITHERS_DASHBOARD_OPERATORS": "mallory"}  # from the caller's shell: replaced
        serve_plan(build_parser().parse_args(["serve", *argv]), env)
        return env

    env = plan("--basic-auth", str(users), "--operators", "alice", "--operators", "bob,carol",
               "--audit-log", str(tmp_path / "audit.jsonl"))
    assert env["SMITHERS_DASHBOARD_OPERATORS"] == "alice,bob,carol"
    assert env["SMITHERS_DASHBOARD_ACTIONS"] == "1" and env["SMITHERS_DASHBOARD_LOGIN"] == "1"
    assert env["SMITHERS_DASHBOARD_AUDIT_LOG"] == str((tmp_path / "audit.jsonl").resolve())
    assert (tmp_path / "audit.jsonl").stat().st_mode & 0o777 == 0o600
    loaded = load_config(env)
    assert loaded.operators == {"alice", "bob", "carol"} and loaded.login_required and loaded.actions_enabled

    env = plan("--oauth-provider", "generic", "--operator-claim", "groups=smithers-operators")
    assert env["SMITHERS_DASHBOARD_OPERATOR_CLAIM"] == "groups=smithers-operators"
    assert "SMITHERS_DASHBOARD_OPERATORS" not in env
    assert "SMITHERS_DASHBOARD_LOGIN" not in plan("--actions"), "no login: the local user operates"

    for argv, why in [(["--operators", "alice"], "name logged-in users"),
                      (["--basic-auth", str(users), "--operator-claim", "groups=ops"], "needs --oauth-provider"),
                      (["--oauth-provider", "generic", "--operator-claim", "groups"], "NAME=VALUE"),
                      (["--audit-log", str(tmp_path / "no-such-dir" / "a.jsonl")], "cannot open the audit log")]:
        with pytest.raises(ServeRefused, match=why):
            plan(*argv)

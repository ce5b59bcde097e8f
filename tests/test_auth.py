"""Login: the users file (hashed and plaintext entries), ``serve --basic-auth`` over HTTP and in Chromium.

``smithers-dashboard serve --basic-auth FILE --cookie-secret-file FILE --actions --address
0.0.0.0`` (allowed because there is a login) on a replay Gateway: ``/healthz`` answers
without a login; the app, ``/readyz`` and ``/metrics`` do not; Panel's ``/login`` form
(``username`` / ``password``) lets a user with a hashed entry and one with a plaintext entry in,
refuses a wrong password, and ``/logout`` ends the login.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING

import httpx
import pytest
from hypothesis import given, settings, strategies as st

from dashboard.passwords import (
    UsersFileError,
    check_login,
    hash_password,
    load_users,
    set_user,
    verify_password,
)
from tests.browser import wait_until
from tests.deploy_support import Served, cli, free_port, start_replay_gateway
from tests.recordings import recording

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from playwright.sync_api import Page

TOKEN = "auth-test-gateway-token-31c7"
ALICE_PASSWORD = "alice: correct horse battery"
BOB_PASSWORD = "bob-plain-password"

# ------------------------------------------------------------------ the users file


@settings(max_examples=8, deadline=None)  # scrypt costs ~50 ms a hash by design
@given(password=st.text(min_size=1, max_size=40), other=st.text(min_size=1, max_size=40))
def test_a_hash_accepts_its_password_and_nothing_else(password: str, other: str) -> None:
    entry = hash_password(password)
    assert entry.startswith("scrypt$")
    assert verify_password(password, entry)
    assert verify_password(other, entry) == (other == password)


def test_hashes_are_salted_and_plaintext_entries_still_work() -> None:
    assert hash_password("same") != hash_password("same")
    assert verify_password("plain", "plain") and not verify_password("plain!", "plain")
    assert not verify_password("x", "scrypt$not$a$valid$hash$entry")


def test_users_file_errors_and_set_user(tmp_path: Path) -> None:
    users = tmp_path / "users.json"
    with pytest.raises(UsersFileError, match="cannot be read"):
        load_users(users)
    users.write_text("[1, 2]")
    with pytest.raises(UsersFileError, match="JSON object"):
        load_users(users)
    assert not check_login(users, "alice", "x"), "an unreadable file lets nobody in"
    users.unlink()
    set_user(users, "alice", hash_password("pw"))
    set_user(users, "bob", "plain")
    assert users.stat().st_mode & 0o777 == 0o600
    assert check_login(users, "alice", "pw") and check_login(users, "bob", "plain")
    assert not check_login(users, "alice", "plain") and not check_login(users, "carol", "pw")


def test_hash_password_command_writes_the_users_file(tmp_path: Path) -> None:
    import subprocess

    users = tmp_path / "users.json"
    out = subprocess.run(cli("hash-password", "--user", "alice", "--users-file", str(users)),
                         input="s3cret\n", capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "s3cret" not in users.read_text() and check_login(users, "alice", "s3cret")


# ------------------------------------------------------------------ served with a login


class LoginServer:
    def __init__(self, base: str, gateway: str, run_id: str) -> None:
        self.base, self.gateway, self.run_id = base, gateway, run_id


@pytest.fixture(scope="module")
def login_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoginServer]:
    tmp = tmp_path_factory.mktemp("login")
    users = tmp / "users.json"
    users.write_text(json.dumps({"alice": hash_password(ALICE_PASSWORD), "bob": BOB_PASSWORD}))
    secret = tmp / "cookie-secret"
    secret.write_text("cookie-secret-for-the-login-tests-0123456789")
    token_file = tmp / "token"
    token_file.write_text(TOKEN)
    gateway, url = start_replay_gateway([recording("rich-run.jsonl")], tmp / "gateway.log", token_file=token_file)
    port = free_port()
    dashboard = Served(cli("serve", "--gateway", url, "--token-file", str(token_file), "--port", str(port),
                           "--address", "0.0.0.0", "--actions", "--basic-auth", str(users),
                           "--cookie-secret-file", str(secret)), tmp / "serve.log")
    try:
        base = f"http://127.0.0.1:{port}"
        dashboard.wait_status(f"{base}/healthz")
        answer = httpx.post(f"{url}/v1/rpc/launchRun", json={"workflow": "rich", "input": {}},
                            headers={"authorization": f"Bearer {TOKEN}"}, timeout=10).json()
        yield LoginServer(base, url, str(answer["payload"]["runId"]))
        log = dashboard.log()
        assert TOKEN not in log and ALICE_PASSWORD not in log and BOB_PASSWORD not in log
    finally:
        dashboard.stop()
        gateway.stop()


def _login(client: httpx.Client, base: str, username: str, password: str) -> httpx.Response:
    client.get(f"{base}/login")
    return client.post(f"{base}/login", data={"username": username, "password": password})


def test_only_healthz_is_open_without_a_login(login_server: LoginServer) -> None:
    base = login_server.base
    with httpx.Client(timeout=30, follow_redirects=False) as client:
        assert client.get(f"{base}/healthz").status_code == 200
        app = client.get(f"{base}/apps")
        assert app.status_code in (302, 303) and "login" in app.headers["location"]
        for path in ("/readyz", "/metrics"):
            assert client.get(f"{base}{path}").status_code == 401, path
        login_page = client.get(f"{base}/login")
        assert login_page.status_code == 200
        assert 'name="username"' in login_page.text and 'name="password"' in login_page.text
        assert not re.search(r"""(src|href)=["']https?://""", login_page.text), "no asset from a CDN"


@pytest.mark.parametrize(("user", "password"), [("alice", ALICE_PASSWORD), ("bob", BOB_PASSWORD)])
def test_hashed_and_plaintext_users_log_in(login_server: LoginServer, user: str, password: str) -> None:
    base = login_server.base
    with httpx.Client(timeout=30, follow_redirects=False) as client:
        answer = _login(client, base, user, password)
        assert answer.status_code in (302, 303) and "error" not in answer.headers["location"]
        assert client.get(f"{base}/apps").status_code == 200
        assert client.get(f"{base}/metrics").status_code == 200
        assert client.get(f"{base}/readyz").json()["status"] == "ready"
        client.get(f"{base}/logout")
        assert client.get(f"{base}/apps").status_code in (302, 303), "logged out"


@pytest.mark.parametrize(("user", "password"), [("alice", "wrong"), ("alice", BOB_PASSWORD), ("carol", "x")])
def test_a_wrong_password_or_unknown_user_is_refused(login_server: LoginServer, user: str, password: str) -> None:
    base = login_server.base
    with httpx.Client(timeout=30, follow_redirects=False) as client:
        answer = _login(client, base, user, password)
        assert answer.status_code in (302, 303) and "error=" in answer.headers["location"]
        assert "user" not in client.cookies
        assert client.get(f"{base}/apps").status_code in (302, 303)
        assert client.get(f"{base}/metrics").status_code == 401


@pytest.mark.browser
def test_browser_login_shows_the_run_and_logout_ends_it(login_server: LoginServer, page: Page) -> None:
    base = login_server.base
    page.goto(f"{base}/apps?runId={login_server.run_id}")
    page.wait_for_url(re.compile(r"/login"))
    page.fill("input[name=username]", "alice")
    page.fill("input[name=password]", "not her password")
    page.click("button[type=submit]")
    wait_until(lambda: "Invalid username or password" in page.content(), 20, "the login error", page=page)

    # Panel's retry page forgets where the visitor was going: come back through the run's URL.
    page.goto(f"{base}/apps?runId={login_server.run_id}")
    page.wait_for_url(re.compile(r"/login"))
    page.fill("input[name=username]", "alice")
    page.fill("input[name=password]", ALICE_PASSWORD)
    page.click("button[type=submit]")
    summary = page.locator("[data-testid=task-summary]")
    wait_until(lambda: summary.count() and int(summary.first.get_attribute("data-total") or 0) > 0, 60,
               "the run's tasks on the page (the session's websocket is up)", page=page)
    assert f"runId={login_server.run_id}" in page.url, "the login returns to the page asked for"

    page.goto(f"{base}/logout")
    page.locator("[data-testid=logged-out]").wait_for()
    page.goto(f"{base}/apps")
    page.wait_for_url(re.compile(r"/login"))

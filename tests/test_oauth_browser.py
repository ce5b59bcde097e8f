"""A real OAuth login in Chromium: the operator role from an identity claim.

:class:`FakeIdentityProvider` is a tiny OAuth2 / OpenID provider on a free loopback port (the
standard library's HTTP server on a thread of the test): ``/authorize`` shows a sign-in form
and redirects back with a one-time code, ``/token`` trades the code (with the client secret)
for an access token, ``/userinfo`` answers the user's claims for that token. Two users:
alice, whose ``groups`` claim holds ``smithers-operators``, and bob, who is only ``staff``.

``smithers-dashboard serve --oauth-provider generic --operator-claim groups=smithers-operators``
logs in through it (Panel's generic provider, its endpoints in ``PANEL_OAUTH_*_URL``; the
client secret, the cookie secret and the encryption key from files, never on a command line).
Alice sees "Cancel run" on a live run, cancels it, and the audit line names her; bob sees
the run read-only, with no control; logging out ends the login.
"""

from __future__ import annotations

import contextlib
import html
import json
import os
import re
import secrets
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from playwright.sync_api import expect

from tests.deploy_support import Served, cli, free_port, poll
from tests.gateway.server import ADMIN_TOKEN

if TYPE_CHECKING:
    from collections.abc import Iterator

    from playwright.sync_api import Page

pytestmark = pytest.mark.browser

CLIENT_ID = "smithers-dashboard-test"
CLIENT_SECRET = "oauth-client-secret-7d41c9"
COOKIE_SECRET = "cookie-secret-for-the-oauth-tests-0123456789"
ENCRYPTION_KEY = "mH2Bw9s3oX0xJ4e1Zq8mYc6kR5tN7uV2aL3dF9gH1jE="  # 32 url-safe base64 bytes (a Fernet key)
USERS: dict[str, dict[str, Any]] = {
    "alice": {"email": "alice@example.test", "name": "Alice", "groups": ["staff", "smithers-operators"]},
    "bob": {"email": "bob@example.test", "name": "Bob", "groups": ["staff"]},
}
CONTROLS = ("Cancel run", "Rewind…", "Approve", "Deny", "Confirm")


class FakeIdentityProvider:
    """An OAuth2 authorization-code provider with a userinfo endpoint (see the module docstring)."""

    def __init__(self) -> None:
        self.codes: dict[str, tuple[str, str]] = {}  # code -> (user, redirect_uri)
        self.tokens: dict[str, str] = {}  # access token -> user
        self.token_requests: list[dict[str, str]] = []
        provider = self

        class Handler(BaseHTTPRequestHandler):
            server_version = "FakeIdP"

            def log_message(self, *args: Any) -> None:  # quiet: pytest shows failures, not traffic
                pass

            def _send(self, status: int, body: str, content_type: str, **headers: str) -> None:
                data = body.encode("utf-8")
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                for name, value in headers.items():
                    self.send_header(name.replace("_", "-"), value)
                self.end_headers()
                self.wfile.write(data)

            def _form(self) -> dict[str, str]:
                length = int(self.headers.get("Content-Length") or 0)
                return {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode("utf-8")).items()}

            def do_GET(self) -> None:
                url = urlsplit(self.path)
                query = {k: v[0] for k, v in parse_qs(url.query).items()}
                if url.path == "/authorize":
                    if query.get("client_id") != CLIENT_ID or query.get("response_type") != "code":
                        self._send(400, "unknown client", "text/plain")
                        return
                    hidden = "".join(f'<input type="hidden" name="{k}" value="{html.escape(query.get(k, ""))}">'
                                     for k in ("state", "redirect_uri"))
                    self._send(200, f"""<!doctype html><html><head><title>Fake IdP</title>
<link rel="icon" href="data:,"></head><body><h1>Sign in to the fake IdP</h1>
<form method="post" action="/authorize">{hidden}<input name="user" placeholder="user">
<button type="submit">Sign in</button></form></body></html>""", "text/html")
                elif url.path == "/userinfo":
                    token = (self.headers.get("Authorization") or "").removeprefix("Bearer ")
                    user = provider.tokens.get(token)
                    if user is None:
                        self._send(401, json.dumps({"error": "invalid_token"}), "application/json")
                        return
                    self._send(200, json.dumps(USERS[user]), "application/json")
                else:
                    self._send(404, "not found", "text/plain")

            def do_POST(self) -> None:
                form = self._form()
                if self.path == "/authorize":
                    user = form.get("user", "")
                    if user not in USERS:
                        self._send(403, "no such user", "text/plain")
                        return
                    code = secrets.token_urlsafe(16)
                    provider.codes[code] = (user, form["redirect_uri"])
                    target = form["redirect_uri"] + "?" + urlencode({"code": code, "state": form["state"]})
                    self._send(302, "", "text/plain", Location=target)
                elif self.path == "/token":
                    provider.token_requests.append(form)
                    grant = provider.codes.pop(form.get("code", ""), None)  # a code is good once
                    if (form.get("client_id") != CLIENT_ID or form.get("client_secret") != CLIENT_SECRET
                            or grant is None or form.get("redirect_uri") != grant[1]
                            or form.get("grant_type") != "authorization_code"):
                        self._send(400, json.dumps({"error": "invalid_grant"}), "application/json")
                        return
                    token = secrets.token_urlsafe(24)
                    provider.tokens[token] = grant[0]
                    self._send(200, json.dumps({"access_token": token, "token_type": "Bearer", "expires_in": 3600}),
                               "application/json")
                else:
                    self._send(404, "not found", "text/plain")

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-idp", daemon=True)

    def __enter__(self) -> FakeIdentityProvider:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)


class OAuthServer:
    def __init__(self, base: str, audit: Path, gateway: Any, idp: FakeIdentityProvider, served: Served) -> None:
        self.base, self.audit, self.gateway, self.idp, self.served = base, audit, gateway, idp, served

    def lines(self) -> list[dict[str, Any]]:
        text = self.audit.read_text() if self.audit.exists() else ""
        return [json.loads(line) for line in text.splitlines()]


@pytest.fixture(scope="module")
def oauth_server(gateway: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OAuthServer]:
    tmp = tmp_path_factory.mktemp("oauth")
    files = {"client-secret": CLIENT_SECRET, "cookie-secret": COOKIE_SECRET, "encryption-key": ENCRYPTION_KEY,
             "token": ADMIN_TOKEN}
    for name, text in files.items():
        (tmp / name).write_text(text)
    audit = tmp / "audit.jsonl"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with FakeIdentityProvider() as idp:
        env = {**_environ(), "PANEL_OAUTH_AUTHORIZE_URL": f"{idp.url}/authorize",
               "PANEL_OAUTH_TOKEN_URL": f"{idp.url}/token", "PANEL_OAUTH_USER_URL": f"{idp.url}/userinfo"}
        served = Served(cli("serve", "--gateway", gateway.url, "--token-file", str(tmp / "token"), "--port", str(port),
                            "--oauth-provider", "generic", "--oauth-key", CLIENT_ID,
                            "--oauth-secret-file", str(tmp / "client-secret"),
                            "--oauth-encryption-key-file", str(tmp / "encryption-key"),
                            "--cookie-secret-file", str(tmp / "cookie-secret"),
                            "--oauth-redirect-uri", f"{base}/login",
                            "--operator-claim", "groups=smithers-operators", "--audit-log", str(audit)),
                        tmp / "serve.log", env=env)
        try:
            served.wait_status(f"{base}/healthz")
            yield OAuthServer(base, audit, gateway, idp, served)
            log = served.log()
            for secret in (CLIENT_SECRET, COOKIE_SECRET, ENCRYPTION_KEY, ADMIN_TOKEN):
                assert secret not in log, "a secret in the server's log"
        finally:
            served.stop()


def _environ() -> dict[str, str]:
    """This process's environment without its Panel and dashboard settings (the test sets its own)."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("PANEL_", "SMITHERS_"))}


def sign_in(page: Page, server: OAuthServer, path: str, user: str) -> None:
    """Open ``path``: the dashboard sends the browser to the provider, which sends it back signed in."""
    page.goto(f"{server.base}{path}")
    page.wait_for_url(re.compile(re.escape(server.idp.url) + r"/authorize\?"))
    page.fill("input[name=user]", user)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(re.escape(server.base) + r"/apps"))


def button(page: Page, label: str) -> Any:
    return page.locator(".bk-btn", has_text=re.compile(rf"^\s*{re.escape(label)}\s*$")).filter(visible=True)


def test_no_secret_on_the_servers_command_line(oauth_server: OAuthServer) -> None:
    argv = Path(f"/proc/{oauth_server.served.process.pid}/cmdline").read_bytes().decode("utf-8", "replace")
    assert "--oauth-provider" in argv and "generic" in argv, argv
    for secret in (CLIENT_SECRET, COOKIE_SECRET, ENCRYPTION_KEY, ADMIN_TOKEN):
        assert secret not in argv


def test_the_claim_makes_an_operator_whose_action_is_audited(oauth_server: OAuthServer, page: Page) -> None:
    gateway = oauth_server.gateway
    slow = gateway.launch_run("slow")
    gateway.wait_for_run(slow, ["running"], timeout=30)
    sign_in(page, oauth_server, f"/apps?runId={slow}", "alice")
    assert f"runId={slow}" in page.url, "the login returns to the page asked for"
    assert oauth_server.idp.token_requests[-1]["client_secret"] == CLIENT_SECRET  # read from the file

    button(page, "Cancel run").first.click()
    expect(page.get_by_text(re.compile(rf"Cancel run {re.escape(slow)}\? It is running")).first).to_be_visible(
        timeout=20_000)
    button(page, "Confirm").first.click()
    expect(page.get_by_text(f"Cancel requested for run {slow}.").first).to_be_visible(timeout=20_000)
    assert gateway.wait_for_run(slow, timeout=30)["status"] == "cancelled"
    lines = poll(lambda: oauth_server.lines(), 10, "the cancel's audit line")
    assert [(e["user"], e["action"], e["runId"], e["outcome"]) for e in lines] == [
        ("alice@example.test", "cancel", slow, "ok")]

    page.goto(f"{oauth_server.base}/logout")
    page.locator("[data-testid=logged-out]").wait_for()
    assert not [c for c in page.context.cookies() if c["name"] in ("user", "id_token", "access_token")]
    page.goto(f"{oauth_server.base}/apps?runId={slow}")
    page.wait_for_url(re.compile(re.escape(oauth_server.idp.url) + r"/authorize\?"))  # signed out: asked again


def test_a_user_without_the_claim_sees_no_control(oauth_server: OAuthServer, page: Page) -> None:
    gateway = oauth_server.gateway
    slow = gateway.launch_run("slow")
    try:
        gateway.wait_for_run(slow, ["running"], timeout=30)
        sign_in(page, oauth_server, f"/apps?runId={slow}", "bob")
        expect(page.get_by_text("Read-only: you are signed in as a viewer").first).to_be_visible(timeout=60_000)
        summary = page.locator("[data-testid=task-summary]")
        poll(lambda: summary.count() and int(summary.first.get_attribute("data-total") or 0) > 0, 60,
             "the run's tasks on bob's page")
        for label in CONTROLS:
            assert button(page, label).count() == 0, f"bob sees {label}"
        assert gateway.get_run(slow)["status"] == "running"
        assert not [e for e in oauth_server.lines() if e["user"] == "bob@example.test"]
    finally:
        with contextlib.suppress(Exception):
            gateway.rpc("cancelRun", {"runId": slow})

"""The reverse-proxy setup of docs/deploy.md, tested: Debian's nginx in front of two instances.

``docs/nginx.conf.template`` rendered by the ``nginx_proxy`` fixture (tests/nginx_support.py):
TLS terminated by nginx with a test certificate, websockets upgraded, sticky sessions by the
``sd_route`` cookie. Chromium opens the dashboard over ``https`` through nginx: the page
loads, its websocket (through nginx, to the instance that rendered the page) streams a live
run, and visitors with different routes land on both instances (each instance's
``/metrics`` counts its own sessions).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import httpx

from tests import nginx_support
from tests.browser import CHROMIUM, CHROMIUM_ARGS, wait_until
from tests.deploy_support import poll
from tests.nginx_support import TEMPLATE, TOKEN, fetch_metrics

if TYPE_CHECKING:
    from playwright.sync_api import Page

    from tests.nginx_support import NginxProxy

nginx_proxy = nginx_support.nginx_proxy  # the fixture, used by this module only

#: What the fixture's access log says of a request: "URI STATUS UPSTREAM ROUTE".
_LOG_LINE = re.compile(r"^(\S+) (\d{3}) (\S+) (\S+)$")


def launch(gateway: str, workflow: str) -> str:
    answer = httpx.post(f"{gateway}/v1/rpc/launchRun", json={"workflow": workflow, "input": {}},
                        headers={"authorization": f"Bearer {TOKEN}"}, timeout=10).json()
    return str(answer["payload"]["runId"])


def routed(proxy: NginxProxy) -> list[tuple[str, int, str, str]]:
    out = []
    for line in proxy.access_log().splitlines():
        match = _LOG_LINE.match(line.strip())
        if match:
            out.append((match.group(1), int(match.group(2)), match.group(3), match.group(4)))
    return out


def test_deploy_docs_quote_the_tested_template() -> None:
    """docs/deploy.md shows the very configuration the tests run, not a copy that drifts."""
    docs = (TEMPLATE.parent / "deploy.md").read_text(encoding="utf-8")
    assert f"```nginx\n{TEMPLATE.read_text(encoding='utf-8')}```" in docs


def test_tls_and_the_sticky_route_cookie(nginx_proxy: NginxProxy) -> None:
    """Over https, a first visit is given a route; with it every request reaches one instance."""
    with httpx.Client(verify=False, timeout=30) as client:
        first = client.get(f"{nginx_proxy.base}/healthz")
        assert first.status_code == 200 and first.json() == {"status": "ok"}
        cookie = first.headers.get("set-cookie", "")
        assert cookie.startswith("sd_route=") and "Secure" in cookie and "HttpOnly" in cookie
        route = client.cookies["sd_route"]
        for _ in range(6):
            again = client.get(f"{nginx_proxy.base}/healthz")
            assert "set-cookie" not in again.headers, "a route is given once"
    hits = {upstream for uri, _, upstream, r in routed(nginx_proxy) if uri == "/healthz" and r == route}
    assert len(hits) == 1, f"one route, one instance: {hits}"
    plain = httpx.get(f"http://localhost:{nginx_proxy.port}/healthz", timeout=10)
    assert plain.status_code == 400, "plain HTTP on the TLS port gets no page"


def test_dashboard_through_nginx_streams_and_both_instances_get_sessions(nginx_proxy: NginxProxy) -> None:
    from playwright.sync_api import sync_playwright

    run_id = launch(nginx_proxy.gateway, "wide")
    sessions: dict[str, float] = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            # A fresh context is a fresh visitor (no sd_route cookie): nginx routes it by a
            # random id. Visit until both instances hold a session (2^-7 chance to need > 8).
            for visit in range(16):
                context = browser.new_context(ignore_https_errors=True, viewport={"width": 1400, "height": 1000})
                visit_once(nginx_proxy, context.new_page(), run_id, watch_live=visit == 0)
                route = next(c["value"] for c in context.cookies() if c["name"] == "sd_route")
                for base in nginx_proxy.instances:
                    sessions[base] = max(sessions.get(base, 0), fetch_metrics(base)["smithers_dashboard_sessions"])
                context.close()
                check_route(nginx_proxy, route)
                if all(count >= 1 for count in sessions.values()):
                    break
        finally:
            browser.close()
    assert all(count >= 1 for count in sessions.values()), f"sessions per instance: {sessions}"
    for index in range(len(nginx_proxy.instances)):
        log = (nginx_proxy.prefix.parent / f"serve-{index}.log").read_text(errors="replace")
        assert "Refusing websocket connection" not in log, log[-3000:]
        assert TOKEN not in log


def visit_once(proxy: NginxProxy, page: Page, run_id: str, *, watch_live: bool) -> None:
    """Open the run through nginx; it connects, shows its tasks and, if asked, moves."""
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"{proxy.base}/apps?runId={run_id}")
    assert page.title() == "Smithers dashboard"
    badge = page.locator("[data-connection-status]")
    summary = page.locator("[data-testid=task-summary]")

    def online() -> bool:
        return bool(badge.count()) and badge.first.get_attribute("data-connection-status") == "online"

    def total() -> int:
        return int(summary.first.get_attribute("data-total") or 0) if summary.count() else 0

    wait_until(online, 60, "the run live through nginx", page=page)
    wait_until(total, 60, "the run's tasks through nginx", page=page)
    # The tree's module is a file on Panel's component route: fetched through nginx too.
    page.locator(".st-row[data-state=finished], .st-row[data-state=in-progress]").first.wait_for(timeout=60_000)
    if watch_live:  # the counts move while the page is open: the run streams over the websocket
        before = summary.first.get_attribute("data-finished")
        wait_until(lambda: summary.first.get_attribute("data-finished") != before, 60,
                   "a task to finish while watched", page=page)
    assert errors == [], errors


def check_route(proxy: NginxProxy, route: str) -> None:
    """The route's websocket was upgraded through nginx, to the instance that served its page.

    nginx logs a websocket when it closes: call this after the page is gone."""
    def sockets() -> list[tuple[int, str]]:
        return [(s, u) for uri, s, u, r in routed(proxy) if r == route and uri.startswith("/apps/ws")]

    upgraded = poll(sockets, 30, "the closed websocket in nginx's access log")
    assert all(status == 101 for status, _ in upgraded), f"the websocket went through nginx: {upgraded}"
    upstreams = {u for _, _, u, r in routed(proxy) if r == route}
    assert len(upstreams) == 1, f"a page and its websocket reach one instance: {upstreams}"

"""One visitor cannot make the served dashboard hold unbounded upstream subscriptions.

``smithers-dashboard serve --trusted-proxy`` (Bokeh's ``--use-xheaders``: the client address
comes from ``X-Forwarded-For``, as behind nginx) on a replay Gateway, no login: the visitor
is its address (:func:`dashboard.roles.session_visitor`). Two Chromium contexts play two
visitors behind the proxy, each with its own ``X-Forwarded-For``. Visitor A opens
``?runId=`` of run ids while the Gateway is down, a tab each: the first ``max_runs_per_owner``
(4) wait, retrying; the next is refused with a message that says why, and no subscription is
started for it. Visitor B, at the same moment, opens a run id of its own and waits as usual.
When the Gateway is back, A's runs are found missing: they hold nothing upstream any more, so
A's next page is looked up again, and a run that exists streams for B.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from playwright.sync_api import expect

from dashboard.hub import DEFAULT_MAX_RUNS_PER_OWNER
from tests.browser import wait_until
from tests.deploy_support import Served, cli, free_port, poll, start_replay_gateway
from tests.recordings import recording

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from playwright.sync_api import Browser, BrowserContext, Page

pytestmark = pytest.mark.browser

TOKEN = "owner-cap-test-gateway-token-5e02"
NOT_FOUND = re.compile(r"run nope-[\w-]+ not found on the Gateway")
REFUSED = re.compile(rf"refused: you already wait on {DEFAULT_MAX_RUNS_PER_OWNER} runs the Gateway has not confirmed")


class CapServer:
    """The dashboard, served, and a replay Gateway that can be stopped and started again on its port."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.token_file = tmp / "token"
        self.token_file.write_text(TOKEN)
        self.gateway_port = free_port()
        self.gateway: Served | None = None
        port = free_port()
        self.base = f"http://127.0.0.1:{port}"
        self.served = Served(cli("serve", "--gateway", f"http://127.0.0.1:{self.gateway_port}",
                                 "--token-file", str(self.token_file), "--port", str(port), "--trusted-proxy"),
                             tmp / "serve.log")

    def start_gateway(self) -> str:
        """Start the Gateway and launch a run of ``rich`` on it; the run's id."""
        self.gateway, url = start_replay_gateway([recording("rich-run.jsonl")], self.tmp / "gateway.log",
                                                 token_file=self.token_file, port=self.gateway_port)
        answer = httpx.post(f"{url}/v1/rpc/launchRun", json={"workflow": "rich", "input": {}},
                            headers={"authorization": f"Bearer {TOKEN}"}, timeout=10).json()
        return str(answer["payload"]["runId"])

    def stop_gateway(self) -> None:
        if self.gateway is not None:
            self.gateway.stop()
            self.gateway = None


@pytest.fixture(scope="module")
def cap_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CapServer]:
    server = CapServer(tmp_path_factory.mktemp("owner-cap"))
    try:
        server.served.wait_status(f"{server.base}/healthz")
        yield server
    finally:
        server.served.stop()
        server.stop_gateway()


class Visitor:
    """A browser context whose requests arrive from ``address`` (as a proxy would say)."""

    def __init__(self, chromium: Browser, address: str) -> None:
        self.context: BrowserContext = chromium.new_context(
            viewport={"width": 1200, "height": 800}, extra_http_headers={"X-Forwarded-For": address})
        self.errors: list[str] = []

    def open(self, url: str) -> Page:
        page = self.context.new_page()
        page.on("pageerror", lambda e: self.errors.append(str(e)))
        page.set_default_timeout(30_000)
        page.goto(url, wait_until="domcontentloaded")
        return page

    def close(self) -> None:
        self.context.close()
        assert self.errors == [], f"uncaught errors in the page: {self.errors}"


@pytest.fixture
def visitors(chromium: Browser) -> Iterator[list[Visitor]]:
    made = [Visitor(chromium, "203.0.113.7"), Visitor(chromium, "198.51.100.9")]
    yield made
    for visitor in made:
        visitor.close()


def metric(base: str, name: str) -> float:
    text = httpx.get(f"{base}/metrics", timeout=10).text
    match = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    assert match, f"{name} not in /metrics"
    return float(match.group(1))


def test_one_visitor_is_refused_past_the_cap_and_another_is_not(cap_server: CapServer, visitors: list[Visitor]) -> None:
    a, b = visitors
    base = cap_server.base
    cap_server.stop_gateway()  # (not started yet: the runs A opens can be neither confirmed nor denied)
    streams = "smithers_dashboard_upstream_streams"
    pages: list[Any] = []
    for n in range(DEFAULT_MAX_RUNS_PER_OWNER):
        page = a.open(f"{base}/apps?runId=nope-a{n}")
        expect(page.locator("[data-connection-status]")).to_have_attribute("data-connection-status", "offline")
        poll(lambda n=n: metric(base, streams) == n + 1, 30, f"run nope-a{n} waited on")  # type: ignore[misc]
        pages.append(page)

    refused = a.open(f"{base}/apps?runId=nope-a-extra")
    expect(refused.get_by_text(REFUSED).first).to_be_visible(timeout=30_000)
    assert "close one first" in refused.get_by_text(REFUSED).first.inner_text()
    assert metric(base, streams) == DEFAULT_MAX_RUNS_PER_OWNER, "the refusal holds nothing upstream"
    poll(lambda: "run nope-a-extra: refused" in cap_server.served.log(), 10, "the refusal in the server's log")

    # Another visitor, at the same moment, waits as usual.
    other = b.open(f"{base}/apps?runId=nope-b0")
    poll(lambda: metric(base, streams) == DEFAULT_MAX_RUNS_PER_OWNER + 1, 30, "run nope-b0 waited on")
    assert other.get_by_text(REFUSED).count() == 0

    # The Gateway is back: A's runs are found missing, hold nothing upstream, and no longer count.
    run_id = cap_server.start_gateway()
    for page in pages:
        expect(page.get_by_text(NOT_FOUND).first).to_be_visible(timeout=60_000)
    expect(other.get_by_text(NOT_FOUND).first).to_be_visible(timeout=60_000)
    again = a.open(f"{base}/apps?runId=nope-a-after")
    expect(again.get_by_text(NOT_FOUND).first).to_be_visible(timeout=30_000)
    assert again.get_by_text(REFUSED).count() == 0
    # ...and a run that exists streams its tree.
    live = b.open(f"{base}/apps?runId={run_id}")
    summary = live.locator("[data-testid=task-summary]")
    wait_until(lambda: summary.count() and int(summary.first.get_attribute("data-total") or 0) > 0, 60,
               "the existing run's tasks", page=live)

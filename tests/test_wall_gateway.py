"""The control-room wall (``?view=monitor&overview=1``) in Chromium, on a REAL Gateway's runs.

A Gateway of this module's own runs ``doomed`` (fails), ``agents`` (scripted agents that
report token usage) and ``gated`` (waits for an approval). The wall must show one
``data-testid="run-tile"`` per run with the Gateway's status, the failing run first, the
token count ``listRunTokenUsage`` reports; approving ``gated`` must turn its tile to
``finished`` live, by replacing that tile alone (the other tiles' DOM elements stay the
same objects: the grid is patched, not rebuilt). Every wait polls a condition with a deadline.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from inspector.agents import RunAgents
from tests.browser import DashboardServer, wait_until
from tests.gateway.plugin import default_pace
from tests.gateway.server import ADMIN_TOKEN, GatewayServer

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from playwright.sync_api import Page

pytestmark = [pytest.mark.browser, pytest.mark.gateway]

TERMINAL = ("finished", "failed", "cancelled")

TILES_JS = """els => els.map(e => ({id: e.dataset.runId, status: e.dataset.status, failed: e.dataset.failed,
                                    text: e.innerText}))"""

#: Marks every tile element now in the grid (a replaced element loses the mark).
MARK_JS = "els => els.forEach(e => { e.__sdMark = e.dataset.runId })"
MARKED_JS = "els => els.filter(e => e.__sdMark === e.dataset.runId).map(e => e.dataset.runId)"


@pytest.fixture(scope="module")
def runs(gateway_install: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    gw = GatewayServer(gateway_install, tmp_path_factory.mktemp("gateway-wall"), pace=default_pace())
    gw.start()
    try:
        ids = {w: gw.launch_run(w) for w in ("doomed", "agents", "gated")}
        gw.wait_for_run(ids["doomed"], ("failed",), timeout=90)
        gw.wait_for_run(ids["agents"], TERMINAL, timeout=90)
        gw.wait_for_run(ids["gated"], ("waiting-approval",), timeout=90)
        yield {"gw": gw, **ids}
    finally:
        gw.stop()


@pytest.fixture(scope="module")
def server(runs: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator[DashboardServer]:
    with DashboardServer(runs["gw"].url, ADMIN_TOKEN, tmp_path_factory.mktemp("panel-wall")) as server:
        yield server


def tiles(page: Page) -> list[dict[str, str]]:
    result: list[dict[str, str]] = page.locator('[data-testid="run-tile"]').evaluate_all(TILES_JS)
    return result


def test_wall_tiles_failing_first_and_live(page: Page, server: DashboardServer, runs: dict[str, Any],
                                           tmp_path: Path) -> None:
    gw: GatewayServer = runs["gw"]
    expected = {runs[w]: gw.get_run(runs[w])["status"] for w in ("doomed", "agents", "gated")}
    assert expected[runs["doomed"]] == "failed" and expected[runs["gated"]] == "waiting-approval"
    page.goto(server.url("view=monitor&overview=1"), wait_until="domcontentloaded")
    wait_until(lambda: {t["id"]: t["status"] for t in tiles(page)} == expected, 30,
               f"one tile per run with the Gateway's status (page: {tiles(page)})", page)
    shown = tiles(page)
    assert shown[0]["id"] == runs["doomed"], f"the failing run is not first: {shown}"
    doomed = next(t for t in shown if t["id"] == runs["doomed"])
    assert doomed["failed"] == "1"
    # Tokens as listRunTokenUsage reports them (folded the same way the wall folds them).
    usage = gw.rpc("listRunTokenUsage", {"runId": runs["agents"]})
    agents = RunAgents()
    agents.apply_token_usage_rows(usage["events"])
    total = agents.totals().total
    assert total > 0, "the scripted agents reported no tokens: the test cannot check them"
    agents_tile = next(t for t in shown if t["id"] == runs["agents"])
    assert "tokens" in agents_tile["text"], agents_tile
    page.screenshot(path=str(tmp_path / "wall-grid.png"), full_page=True)

    # Live: approving the gate finishes the run; its tile changes in place.
    page.locator('[data-testid="run-tile"]').evaluate_all(MARK_JS)
    gw.rpc("submitApproval", {"runId": runs["gated"], "nodeId": "deploy", "iteration": 0,
                              "decision": {"approved": True}})
    gw.wait_for_run(runs["gated"], TERMINAL, timeout=60)
    final = gw.get_run(runs["gated"])["status"]
    wait_until(lambda: {t["id"]: t["status"] for t in tiles(page)}.get(runs["gated"]) == final, 30,
               f"the gated tile turns {final} (page: {tiles(page)})", page)
    marked = page.locator('[data-testid="run-tile"]').evaluate_all(MARKED_JS)
    assert runs["gated"] not in marked, "the changed tile was not replaced"
    assert runs["doomed"] in marked, "an unchanged tile was rebuilt: the grid was redrawn, not patched"
    assert tiles(page)[0]["id"] == runs["doomed"]

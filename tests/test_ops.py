"""``/healthz``, ``/readyz`` and ``/metrics`` of ``smithers-dashboard serve``, on a replay Gateway.

The Gateway is ``smithers-dashboard replay --loop`` (real sockets, a required token) started
from the project's CLI; the dashboard is ``smithers-dashboard serve`` (``panel serve`` with the
``dashboard.ops`` plugin). A GET of ``/apps?runId=RUN`` opens a real Bokeh session whose app
subscribes to the run through the hub, so the counters move as the run streams.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import httpx
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from inspector.status import ConnectionState, ConnectionStatus
from inspector.stream import Resynced, StatusChanged
from tests.deploy_support import Served, cli, free_port, poll, start_replay_gateway
from tests.recordings import recording
from tests.test_hub import (
    FakeFeeds,
    delta_event,
    make_hub,
    online,
    set_state,
    snapshot_event,
    task_node,
    until,
)

TOKEN = "ops-test-token-8b1d0c"


def metrics(base: str, **kwargs: object) -> dict[str, float]:
    """``/metrics`` as ``{sample name{labels}: value}``."""
    response = httpx.get(f"{base}/metrics", timeout=10, **kwargs)  # type: ignore[arg-type]
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            out[sample.name + (f"{{{labels}}}" if labels else "")] = sample.value
    return out


def launch(gateway: str, workflow: str = "rich") -> str:
    answer = httpx.post(f"{gateway}/v1/rpc/launchRun", json={"workflow": workflow, "input": {}},
                        headers={"authorization": f"Bearer {TOKEN}"}, timeout=10).json()
    return str(answer["payload"]["runId"])


def serve(tmp_path: Path, gateway: str, token: str, *extra: str) -> tuple[Served, str]:
    token_file = tmp_path / f"token-{free_port()}"
    token_file.write_text(token + "\n")
    port = int(extra[extra.index("--port") + 1]) if "--port" in extra else free_port()
    extra = extra if "--port" in extra else (*extra, "--port", str(port))
    served = Served(cli("serve", "--gateway", gateway, "--token-file", str(token_file), *extra),
                    tmp_path / f"serve-{port}.log")
    base = f"http://127.0.0.1:{port}"
    served.wait_status(f"{base}/healthz")
    return served, base


def test_ready_metrics_while_a_run_streams_and_not_ready_when_the_gateway_stops(tmp_path: Path) -> None:
    token_file = tmp_path / "gateway-token"
    token_file.write_text(TOKEN)
    # At a fifth of the recorded speed a run streams for ~20 s: longer than a session takes to open.
    gateway, url = start_replay_gateway([recording("rich-run.jsonl")], tmp_path / "gateway.log", token_file=token_file,
                                        speed=0.2)
    dashboard: Served | None = None
    try:
        dashboard, base = serve(tmp_path, url, TOKEN, "--log-format", "json", "--log-level", "info")
        assert httpx.get(f"{base}/healthz", timeout=5).json() == {"status": "ok"}
        ready = dashboard.wait_status(f"{base}/readyz")
        assert ready.json()["status"] == "ready" and ready.json()["gateway"] == url

        before = metrics(base)
        for name in ("smithers_dashboard_sessions", "smithers_dashboard_upstream_streams",
                     "smithers_dashboard_deltas_total", "smithers_dashboard_reconnects_total",
                     "smithers_dashboard_delta_apply_seconds_count", "smithers_dashboard_batch_stretch"):
            assert name in before, name
        for _ in range(2):  # two runs, one after the other: the counter grows with each
            baseline = metrics(base)["smithers_dashboard_deltas_total"]
            run_id = launch(url)
            page = httpx.get(f"{base}/apps", params={"runId": run_id}, timeout=30)
            assert page.status_code == 200
            grown = poll(lambda b=baseline: (m := metrics(base))["smithers_dashboard_deltas_total"] > b and m, 60,
                         f"deltas_total to grow as the run streams: {metrics(base)}", interval=0.5)
            assert grown["smithers_dashboard_upstream_streams"] >= 1
            assert grown["smithers_dashboard_sessions"] >= 1
            assert 1.0 <= grown["smithers_dashboard_batch_stretch"] <= 10.0
            assert grown["smithers_dashboard_delta_apply_seconds_count"] == grown["smithers_dashboard_deltas_total"]

        gateway.stop()
        down = dashboard.wait_status(f"{base}/readyz", 503, timeout=30)
        assert down.json()["reason"] == "gateway_unreachable"
        assert httpx.get(f"{base}/healthz", timeout=5).status_code == 200, "the process is still up"
        assert metrics(base)['smithers_dashboard_errors_total{kind=readiness}'] >= 1

        log = dashboard.log()
        assert TOKEN not in log
        records = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
        assert any(r["logger"] == "tornado.access" and "/readyz" in r["message"] for r in records), log[-2000:]
        assert all({"time", "level", "logger", "message"} <= r.keys() for r in records)
    finally:
        if dashboard is not None:
            dashboard.stop()
        gateway.stop()


def test_not_ready_when_the_gateway_rejects_the_token(tmp_path: Path) -> None:
    token_file = tmp_path / "gateway-token"
    token_file.write_text(TOKEN)
    gateway, url = start_replay_gateway([recording("rich-run.jsonl")], tmp_path / "gateway.log", token_file=token_file)
    wrong = "not-the-token-4f9a2e"
    dashboard: Served | None = None
    try:
        dashboard, base = serve(tmp_path, url, wrong)
        answer = dashboard.wait_status(f"{base}/readyz", 503)
        assert answer.json()["reason"] == "token_rejected"
        assert wrong not in answer.text and TOKEN not in answer.text
        assert wrong not in dashboard.log()
    finally:
        if dashboard is not None:
            dashboard.stop()
        gateway.stop()


def test_serve_refuses_actions_on_a_public_address_without_login(tmp_path: Path) -> None:
    port = free_port()
    served = Served(cli("serve", "--address", "0.0.0.0", "--port", str(port), "--actions"), tmp_path / "refused.log")
    try:
        assert served.process.wait(timeout=60) == 2
        assert "refusing to serve --actions on 0.0.0.0 without a login" in served.log()
        assert "--basic-auth" in served.log()
    finally:
        served.stop()
    # Loopback with actions, or a public address without actions, is allowed (checked without starting).
    from inspector.cli import ServeRefused, build_parser, serve_plan

    for argv in (["serve", "--actions"], ["serve", "--address", "0.0.0.0"]):
        serve_plan(build_parser().parse_args(argv), {})
    try:
        serve_plan(build_parser().parse_args(["serve", "--address", "::", "--actions"]), {})
    except ServeRefused:
        pass
    else:
        raise AssertionError("'::' is every interface: refused too")



def test_panel_serve_of_the_checkouts_apps_folder_serves_the_packaged_app(tmp_path: Path) -> None:
    """``panel serve apps/`` from a checkout (the shim) with the plugin, as the README says."""
    root = Path(__file__).resolve().parent.parent
    token_file = tmp_path / "gateway-token"
    token_file.write_text(TOKEN)
    gateway, url = start_replay_gateway([recording("rich-run.jsonl")], tmp_path / "gateway.log", token_file=token_file)
    port = free_port()
    env = {**os.environ, "SMITHERS_GATEWAY_URL": url, "SMITHERS_TOKEN": TOKEN}
    panel = Served([sys.executable, "-m", "panel", "serve", "apps/", "--port", str(port), "--plugins", "dashboard.ops"],
                   tmp_path / "panel.log", env=env, cwd=root)
    try:
        base = f"http://127.0.0.1:{port}"
        panel.wait_status(f"{base}/healthz")
        run_id = launch(url)
        page = httpx.get(f"{base}/apps", params={"runId": run_id}, timeout=30)
        assert page.status_code == 200 and "<title>Smithers dashboard</title>" in page.text
        monitor = httpx.get(f"{base}/apps", params={"view": "monitor"}, timeout=30)
        assert monitor.status_code == 200 and "<title>Smithers monitor</title>" in monitor.text
        assert panel.wait_status(f"{base}/readyz").json()["status"] == "ready"
        poll(lambda: metrics(base)["smithers_dashboard_upstream_streams"] >= 1, 30, "the run's upstream stream")
        assert "Traceback" not in panel.log(), panel.log()
    finally:
        panel.stop()
        gateway.stop()


# ------------------------------------------------------------------ the hub's counters (no server)


def _sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_the_hub_counts_deltas_reconnects_errors_and_upstream_streams() -> None:
    names = ("smithers_dashboard_deltas_total", "smithers_dashboard_snapshots_total",
             "smithers_dashboard_reconnects_total", "smithers_dashboard_delta_apply_seconds_count")
    before = {n: _sample(n) for n in names}
    errors_before = {k: _sample("smithers_dashboard_errors_total", kind=k) for k in ("gateway_unavailable", "resync", "listener")}
    streams_before = _sample("smithers_dashboard_upstream_streams")

    feeds = FakeFeeds()
    hub = make_hub(feeds, grace=0)
    seen: list[object] = []
    handle = hub.attach("r1", seen.append)

    def broken(item: object) -> None:
        raise RuntimeError("a broken view")

    other = hub.attach("r1", broken)
    await until(lambda: "r1" in feeds.queues)
    assert _sample("smithers_dashboard_upstream_streams") == streams_before + 1
    offline = StatusChanged(ConnectionState(ConnectionStatus.OFFLINE, since=time.time(), outage_since=time.time()))
    reconnecting = StatusChanged(ConnectionState(ConnectionStatus.CONNECTING, since=time.time(), outage_since=time.time()))
    feeds.push("r1", online(), snapshot_event("r1", 0, [task_node(10, "a")]),
               delta_event(0, [set_state(10, "a", "in-progress")]), delta_event(1, [set_state(10, "a", "finished")]),
               offline, Resynced("connection lost: test"), reconnecting, online())
    await until(lambda: len(seen) >= 9, what="every item delivered")
    after = {n: _sample(n) for n in names}
    assert after["smithers_dashboard_deltas_total"] - before["smithers_dashboard_deltas_total"] == 2
    assert after["smithers_dashboard_delta_apply_seconds_count"] - before["smithers_dashboard_delta_apply_seconds_count"] == 2
    assert after["smithers_dashboard_snapshots_total"] - before["smithers_dashboard_snapshots_total"] == 1
    # The first online (from connecting, no outage) is not a reconnect; the one after the outage is.
    assert after["smithers_dashboard_reconnects_total"] - before["smithers_dashboard_reconnects_total"] == 1
    assert _sample("smithers_dashboard_errors_total", kind="gateway_unavailable") == errors_before["gateway_unavailable"] + 1
    assert _sample("smithers_dashboard_errors_total", kind="resync") == errors_before["resync"] + 1
    assert _sample("smithers_dashboard_errors_total", kind="listener") >= errors_before["listener"] + 9
    handle.release()
    other.release()
    await until(lambda: _sample("smithers_dashboard_upstream_streams") == streams_before, what="the stream stopped")
    await hub.aclose()


# ------------------------------------------------------------------ websocket origins

def test_websocket_origins_on_a_public_address(tmp_path: Path) -> None:
    """``serve --address 0.0.0.0``: a page opened under a host name the server is reached by
    (here ``dash.test``, mapped to loopback in Chromium) connects and shows the run."""
    from playwright.sync_api import sync_playwright

    from tests.browser import CHROMIUM, CHROMIUM_ARGS, wait_until

    token_file = tmp_path / "gateway-token"
    token_file.write_text(TOKEN)
    gateway, url = start_replay_gateway([recording("rich-run.jsonl")], tmp_path / "gateway.log", token_file=token_file)
    dashboard: Served | None = None
    try:
        port = free_port()
        dashboard, base = serve(tmp_path, url, TOKEN, "--address", "0.0.0.0", "--port", str(port),
                                "--allow-websocket-origin", f"dash.test:{port}")
        run_id = launch(url)
        rules = "MAP dash.test 127.0.0.1"
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=[*CHROMIUM_ARGS, f"--host-resolver-rules={rules}"])
            try:
                page = browser.new_page()
                page.goto(f"http://dash.test:{port}/apps?runId={run_id}")
                summary = page.locator("[data-testid=task-summary]")
                wait_until(lambda: summary.count() and int(summary.first.get_attribute("data-total") or 0) > 0, 60,
                           "the run's tasks on a page opened under the server's host name", page=page)
            finally:
                browser.close()
        assert "Refusing websocket connection" not in dashboard.log()
    finally:
        if dashboard is not None:
            dashboard.stop()
        gateway.stop()

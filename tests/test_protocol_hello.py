"""The hello's protocol and features; a Gateway on another protocol gets one message, no loop."""

from __future__ import annotations

import pytest

import inspector.replay.server as replay_server
from dashboard.views.status import connection_html
from inspector.client import GatewayClient
from inspector.errors import GatewayRpcError, ProtocolUnsupported, SmithersDashboardError
from inspector.protocol import GATEWAY_PROTOCOLS, Hello, protocol_refusal, read_hello
from inspector.status import Backoff, ConnectionStatus
from inspector.stream import DevToolsSubscription, StatusChanged
from inspector.subscription import Stop, SubscriptionMachine

from .replay_support import TOKEN, make_gateway, runs_of
from .scripted_gateway import Plan, ScriptedGateway


def test_read_hello_keeps_protocol_features_heartbeat_and_scopes() -> None:
    hello = read_hello({"protocol": 1, "features": ["streaming", "runs", 3], "policy": {"heartbeatMs": 500},
                        "auth": {"scopes": ["run:read", None]}})
    assert hello == Hello(1, frozenset({"streaming", "runs"}), 500, ("run:read",))
    assert hello.has("runs") and not hello.has("presence")
    assert read_hello(None) == Hello()  # a hello that says nothing assumes nothing
    assert read_hello({"protocol": "2", "features": "streaming"}) == Hello()


@pytest.mark.parametrize("protocol", [0, 2, 99])
def test_read_hello_refuses_another_protocol_with_a_typed_error(protocol: int) -> None:
    with pytest.raises(ProtocolUnsupported) as caught:
        read_hello({"protocol": protocol})
    assert isinstance(caught.value, SmithersDashboardError)
    assert caught.value.gateway_protocol == protocol and caught.value.supported == GATEWAY_PROTOCOLS
    assert f"protocol {protocol}" in str(caught.value) and "this dashboard speaks protocol 1" in str(caught.value)


def test_a_refused_connect_is_read_as_protocol_unsupported() -> None:
    refused = GatewayRpcError("PROTOCOL_UNSUPPORTED", "Gateway protocol 2 is not supported by the client", method="connect")
    error = protocol_refusal(refused)
    assert isinstance(error, ProtocolUnsupported) and error.gateway_protocol == 2
    assert protocol_refusal(GatewayRpcError("UNAUTHORIZED", "no")) is None


def test_the_machine_stops_on_an_unsupported_protocol_with_one_status() -> None:
    machine = SubscriptionMachine("r1", backoff=Backoff(base=0.01))
    machine.connecting(0.0)
    machine.connect_failed(ProtocolUnsupported(2, (1, 1)), 0.1)
    out = machine.next_actions()
    statuses = [o.state.status for o in out if isinstance(o, StatusChanged)]
    assert statuses[-1] is ConnectionStatus.UNSUPPORTED
    assert isinstance(out[-1], Stop)
    assert machine.state.retry_in is None and "protocol 2" in (machine.state.error or "")


def test_the_badge_says_the_gateway_is_unsupported_and_escapes() -> None:
    html = connection_html("unsupported", error="The Gateway speaks protocol 2 <b>")
    assert 'data-connection-status="unsupported"' in html and "Unsupported Gateway" in html
    assert "protocol 2 &lt;b&gt;" in html


async def _statuses_until_end(sub: DevToolsSubscription) -> list[StatusChanged]:
    seen = []
    async for item in sub:
        if isinstance(item, StatusChanged):
            seen.append(item)
    return seen


async def test_a_scripted_gateway_on_protocol_2_is_connected_once() -> None:
    async with ScriptedGateway(token=TOKEN) as gw:
        gw.plans = [Plan(hello_protocol=2)] * 5
        client = GatewayClient(gw.url, TOKEN)
        sub = DevToolsSubscription(client, gw.run_id, backoff=Backoff(base=0.01, cap=0.02))
        statuses = await _statuses_until_end(sub)  # ends by itself: no retry loop
        await client.aclose()
    assert gw.connections == 1
    assert [s.state.status for s in statuses] == [ConnectionStatus.CONNECTING, ConnectionStatus.UNSUPPORTED]
    assert "The Gateway speaks protocol 2" in (statuses[-1].state.error or "")


async def test_a_replay_gateway_refusing_our_protocol_is_connected_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(replay_server, "PROTOCOL", 3)
    gateway = make_gateway(runs_of("demo-run.jsonl"))
    await gateway.start()
    try:
        client = GatewayClient(gateway.url, TOKEN)
        run_id = gateway.run_ids()[0]
        sub = DevToolsSubscription(client, run_id, backoff=Backoff(base=0.01, cap=0.02))
        statuses = await _statuses_until_end(sub)
        await client.aclose()
        assert gateway.connections_total == 1
        assert statuses[-1].state.status is ConnectionStatus.UNSUPPORTED
        error = statuses[-1].state.error or ""
        assert "protocol 3" in error and "Gateway protocol 3 is not supported" in error
        assert sub.stats.connect_failures == 1
    finally:
        await gateway.stop()

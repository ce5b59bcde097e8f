"""pytest fixtures for a real Smithers Gateway (registered from ``tests/conftest.py``).

- ``gateway_install`` (session): runs ``install.py`` once (a no-op when the cache is current)
  and returns the install directory.
- ``gateway`` (session): one running Gateway shared by the tests that only launch runs and read
  them; starting Bun and loading smithers-orchestrator takes a couple of seconds, too much to
  pay per test. Tests must not stop, kill or restart it: use ``make_gateway`` for that.
- ``make_gateway`` (function): a factory ``make_gateway(**options) -> GatewayServer`` giving a
  fresh, running Gateway with its own port and database; every one it made is stopped at the
  end of the test. Options are :class:`~tests.gateway.server.GatewayServer`'s keywords
  (``pace``, ``wide``, ``env``, ...); keywords it does not know are treated as environment
  variables of the suite (``make_gateway(SLOW=8)``).
- ``fresh_gateway`` (function): ``make_gateway()`` with the defaults, for a test that needs a
  Gateway of its own (to kill or restart it) and nothing special.

``PACE`` (the multiplier of every sleep in the suite's workflows) defaults to 0.5 and can be set
with ``SMITHERS_GATEWAY_PACE`` (or ``PACE``) in the environment of pytest.

Every test using one of these fixtures is marked ``gateway``, so ``-m "not gateway"`` deselects
them. Nothing is skipped when something is missing: a missing npm or a failing install is an
error, as it would be in CI.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Protocol

import pytest

from .install import install
from .server import GatewayServer

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

__all__ = ["GatewayFactory", "default_pace", "fresh_gateway", "gateway", "gateway_install", "make_gateway"]

_GATEWAY_FIXTURES = frozenset({"gateway_install", "gateway", "make_gateway", "fresh_gateway"})
_SERVER_KEYWORDS = frozenset({"port", "pace", "wide", "env", "db_name", "startup_timeout", "request_timeout"})


class GatewayFactory(Protocol):
    """The type of ``make_gateway``."""

    def __call__(self, **options: Any) -> GatewayServer: ...


def default_pace() -> float:
    """The ``PACE`` the fixtures start the suite with (``SMITHERS_GATEWAY_PACE``, ``PACE`` or 0.5)."""
    raw = os.environ.get("SMITHERS_GATEWAY_PACE") or os.environ.get("PACE") or "0.5"
    return float(raw)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that uses a Gateway fixture with ``gateway``."""
    for item in items:
        if _GATEWAY_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.gateway)


@pytest.fixture(scope="session")
def gateway_install() -> Path:
    """The directory of a complete Gateway install matching ``tests/gateway``'s files."""
    return install()


@pytest.fixture(scope="session")
def gateway(gateway_install: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayServer]:
    """A running Gateway shared by the whole session (do not stop or restart it)."""
    server = GatewayServer(gateway_install, tmp_path_factory.mktemp("gateway"), pace=default_pace())
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def make_gateway(gateway_install: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayFactory]:
    """A factory of fresh, running Gateways, each stopped when the test ends."""
    made: list[GatewayServer] = []

    def factory(**options: Any) -> GatewayServer:
        keywords = {k: v for k, v in options.items() if k in _SERVER_KEYWORDS}
        env = {k: str(v) for k, v in options.items() if k not in _SERVER_KEYWORDS}
        env.update(keywords.pop("env", None) or {})
        keywords.setdefault("pace", default_pace())
        server = GatewayServer(gateway_install, tmp_path_factory.mktemp("gateway-fresh"), env=env, **keywords)
        made.append(server)
        server.start()
        return server

    try:
        yield factory
    finally:
        for server in reversed(made):
            server.stop()


@pytest.fixture
def fresh_gateway(make_gateway: GatewayFactory) -> GatewayServer:
    """A running Gateway of this test's own, with the default options."""
    return make_gateway()

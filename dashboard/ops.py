"""Operations endpoints on the dashboard's own port: ``/healthz``, ``/readyz``, ``/metrics``.

A Panel serve plugin: ``panel serve <app> --plugins dashboard.ops`` adds :data:`ROUTES` to the
server (``smithers-dashboard serve`` and ``demo`` always pass it). Importing it also applies
the log settings of :mod:`dashboard.logs`.

- ``/healthz``: 200 ``{"status": "ok"}`` while the process serves. Always open, even with a
  login, so a load balancer or an orchestrator can probe it.
- ``/readyz``: 200 when the Gateway answers a read with the server's token, else 503 with a
  JSON ``reason`` (``gateway_unreachable``, ``token_rejected``, ``forbidden``, ``gateway_error``)
  and a short ``detail``; never the token. Answers are cached for :data:`READY_CACHE_SECONDS`
  so probes cannot flood the Gateway.
- ``/metrics``: Prometheus' text format (:mod:`dashboard.metrics`).

With a login on, ``/readyz`` and ``/metrics`` need it too (401 without): they say which
Gateway the server uses and how busy it is. A Prometheus that cannot log in scrapes
through a path the reverse proxy keeps inside the private network (``docs/deploy.md``).
"""

from __future__ import annotations

import asyncio
import functools
import json
import time
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from tornado.web import RequestHandler

from inspector.client import GatewayClient
from inspector.errors import ErrorCode, GatewayError, GatewayRpcError, GatewayUnavailable

from . import logs, metrics
from .config import load_config, read_token_file

__all__ = ["READY_CACHE_SECONDS", "ROUTES", "HealthzHandler", "MetricsHandler", "ReadyzHandler", "readiness"]

#: How long a readiness answer is reused.
READY_CACHE_SECONDS = 2.0
#: How long the readiness read may take before the Gateway counts as unreachable.
READY_TIMEOUT_SECONDS = 5.0


class _JsonHandler(RequestHandler):
    def _json(self, status: int, body: dict[str, Any]) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-store")
        self.finish(json.dumps(body))

    async def _logged_in(self) -> bool:
        """True when no login is configured or the request carries a logged-in user."""
        provider = getattr(self.application, "auth_provider", None)
        if provider is None:
            return True
        if provider.get_user is not None:
            return bool(provider.get_user(self))
        if provider.get_user_async is not None:
            return bool(await provider.get_user_async(self))
        return True  # Bokeh's NullAuth: no login configured

    async def _require_login(self) -> bool:
        if await self._logged_in():
            return True
        self._json(401, {"status": "unauthorized", "detail": "log in first (/login)"})
        return False


class HealthzHandler(_JsonHandler):
    """The process is up and its event loop answers."""

    def get(self) -> None:
        self._json(200, {"status": "ok"})


def _without_credentials(url: str) -> str:
    """``url`` without a ``user:password@`` part (it is shown to whoever reads ``/readyz``)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = host + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


class _Readiness:
    """The process's readiness probe: one client, one cached answer, one check at a time."""

    def __init__(self) -> None:
        self.client: GatewayClient | None = None
        self.answer: tuple[int, dict[str, Any]] | None = None
        self.at = 0.0
        self.lock: asyncio.Lock | None = None

    async def check(self) -> tuple[int, dict[str, Any]]:
        if self.lock is None:
            self.lock = asyncio.Lock()
        async with self.lock:
            if self.answer is not None and time.monotonic() - self.at < READY_CACHE_SECONDS:
                return self.answer
            self.answer = await self._probe()
            self.at = time.monotonic()
            return self.answer

    async def _probe(self) -> tuple[int, dict[str, Any]]:
        config = load_config()
        if self.client is None or self.client.base_url != config.gateway_url:
            reread = functools.partial(read_token_file, config.token_file) if config.token_file else None
            self.client = GatewayClient(config.gateway_url, config.token, timeout=READY_TIMEOUT_SECONDS, rpc_retries=0,
                                        token_provider=reread)  # a rotated token file: ready again
        gateway = _without_credentials(self.client.base_url)
        try:
            await asyncio.wait_for(self.client.rpc("listRuns", {"filter": {"limit": 1}}), READY_TIMEOUT_SECONDS)
        except (GatewayUnavailable, TimeoutError):
            metrics.error("readiness")
            return 503, {"status": "not ready", "reason": "gateway_unreachable", "gateway": gateway}
        except GatewayRpcError as exc:
            metrics.error("readiness")
            if exc.unauthorized:
                reason = "token_rejected"
            elif exc.code is ErrorCode.FORBIDDEN:
                reason = "forbidden"
            else:
                reason = "gateway_error"
            return 503, {"status": "not ready", "reason": reason, "code": exc.raw_code, "gateway": gateway}
        except GatewayError:
            metrics.error("readiness")
            return 503, {"status": "not ready", "reason": "gateway_error", "gateway": gateway}
        return 200, {"status": "ready", "gateway": gateway, "token": "accepted" if config.has_token else "none"}


readiness = _Readiness()


class ReadyzHandler(_JsonHandler):
    """The Gateway is reachable and accepts the server's token (503 with a reason if not)."""

    async def get(self) -> None:
        if await self._require_login():
            status, body = await readiness.check()
            self._json(status, body)


class MetricsHandler(_JsonHandler):
    """Prometheus' text exposition of :mod:`dashboard.metrics`."""

    async def get(self) -> None:
        if not await self._require_login():
            return
        applications = getattr(self.application, "applications", {})
        metrics.set_session_counter(lambda: sum(len(list(ctx.sessions)) for ctx in applications.values()))
        self.set_header("Content-Type", CONTENT_TYPE_LATEST)
        self.set_header("Cache-Control", "no-store")
        self.finish(generate_latest())


#: What ``panel serve --plugins dashboard.ops`` adds to the server.
ROUTES: list[tuple[str, type[RequestHandler], dict[str, Any]]] = [
    (r"/healthz", HealthzHandler, {}),
    (r"/readyz", ReadyzHandler, {}),
    (r"/metrics", MetricsHandler, {}),
]

try:
    _token = load_config().token
except ValueError:  # an unreadable token file: the app says so on its page
    _token = None
logs.configure_from_environment(secrets=[_token or ""])

"""Guards on the client's edge: secrets kept out of what is shown, answers kept in bounds.

- :func:`redact_url`: a Gateway URL as it may be shown or logged (no ``user:password@``);
- :func:`refresh_hint` / :func:`with_refresh_hint`: what the Gateway says to do about a
  rejected token, carried into the error's message (the connection badge shows it);
- :func:`read_capped`: an HTTP body read up to a limit, else
  :class:`~inspector.errors.ResponseTooLarge` before anything is decoded.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

from .errors import GatewayRpcError, ResponseTooLarge

if TYPE_CHECKING:
    import httpx

__all__ = ["read_capped", "redact_url", "refresh_hint", "with_refresh_hint"]


def redact_url(url: str) -> str:
    """``url`` without its ``user:password@`` part (kept by the client, never shown or logged)."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit((parts.scheme, f"<redacted>@{host}", parts.path, parts.query, parts.fragment))


def refresh_hint(error: GatewayRpcError) -> str | None:
    """What the Gateway says to do about a rejected token (``details.refresh``, e.g.
    ``"smithers token issue"`` for an expired or revoked one), if it says anything.

    The Gateway spreads an error's details into the error object on the socket and in RPC
    answers, and nests them under ``details`` in some REST answers: both are read.
    """
    details = error.details if isinstance(error.details, Mapping) else {}
    nested = details.get("details")
    for source in (details, nested if isinstance(nested, Mapping) else {}):
        hint = source.get("refresh")
        if isinstance(hint, str) and hint.strip():
            return hint.strip()
    return None


def with_refresh_hint(error: GatewayRpcError) -> GatewayRpcError:
    """``error`` with the Gateway's refresh hint in its message (where the badge shows it)."""
    hint = refresh_hint(error) if error.unauthorized else None
    if hint is None or hint in error.message:
        return error
    return GatewayRpcError(error.raw_code, f"{error.message} (to refresh the token: {hint})", status=error.status,
                           required_scope=error.required_scope, details=error.details, method=error.method,
                           retry_after=error.retry_after)


async def read_capped(response: httpx.Response, what: str, limit: int) -> bytes:
    """The body of a streamed answer, or :class:`ResponseTooLarge` past ``limit`` bytes (a
    declared ``Content-Length`` over the limit is refused before reading anything)."""
    declared = response.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ResponseTooLarge(what, limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > limit:
            raise ResponseTooLarge(what, limit)
        chunks.append(chunk)
    return b"".join(chunks)

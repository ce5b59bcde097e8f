"""A forward HTTP proxy on loopback, as between a dashboard and its Gateway on many company networks.

The dashboard finds it the standard way, ``HTTP_PROXY`` / ``HTTPS_PROXY`` (httpx reads them, and
so does websockets, through ``urllib.request.getproxies``). It speaks the two forms a client
uses:

- ``CONNECT host:port``: a tunnel (``https://`` calls, and every WebSocket: websockets always
  tunnels, even to ``ws://``);
- an absolute-form request (``POST http://host:port/v1/rpc/getRun HTTP/1.1``): plain ``http://``
  calls, forwarded to ``host:port`` and piped from then on (HTTP/1.1 servers accept the
  absolute form, so later requests on a kept-alive connection pass as they are).

:attr:`ForwardProxy.requests` keeps each connection's first request line, so a test can tell
that the traffic really went through the proxy.
"""

from __future__ import annotations

import asyncio
import contextlib
from urllib.parse import urlsplit

__all__ = ["ForwardProxy"]

_HEAD_LIMIT = 64 * 1024


class ForwardProxy:
    """``async with ForwardProxy() as proxy``: listening on a free loopback port, :attr:`url`."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = 0
        self.requests: list[str] = []
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def tunnels(self) -> list[str]:
        """The ``host:port`` of every ``CONNECT``."""
        return [line.split()[1] for line in self.requests if line.startswith("CONNECT ")]

    @property
    def forwarded(self) -> list[str]:
        """The request lines forwarded in absolute form."""
        return [line for line in self.requests if not line.startswith("CONNECT ")]

    async def __aenter__(self) -> ForwardProxy:
        self._server = await asyncio.start_server(self._accept, self.host, 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._serve(reader, writer)
        except (asyncio.CancelledError, OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass  # a client or upstream went away; stop() cancels the rest
        finally:
            self._tasks.discard(task)
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        if len(head) > _HEAD_LIMIT:
            return
        line, _, rest = head.partition(b"\r\n")
        method, target, version = line.decode("latin-1").split(" ", 2)
        self.requests.append(f"{method} {target} {version}")
        if method == "CONNECT":
            host, _, port = target.rpartition(":")
            up_reader, up_writer = await asyncio.open_connection(host, int(port))
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            await writer.drain()
        else:
            parts = urlsplit(target)
            if parts.scheme != "http" or not parts.hostname:
                writer.write(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
                return
            up_reader, up_writer = await asyncio.open_connection(parts.hostname, parts.port or 80)
            origin = parts.path or "/"
            if parts.query:
                origin += f"?{parts.query}"
            up_writer.write(f"{method} {origin} {version}\r\n".encode("latin-1") + rest)
        try:
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        finally:
            up_writer.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError):
        while data := await reader.read(64 * 1024):
            writer.write(data)
            await writer.drain()
    with contextlib.suppress(OSError):
        writer.write_eof()

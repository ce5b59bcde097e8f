"""A chaos TCP proxy for loopback, and the bookkeeping that turns faults into figures.

:class:`ChaosProxy` sits between the dashboard and a Gateway (a real one under Bun, or the
replay gateway) and breaks the network on demand, so the reliability tests can check what
the subscription does when the wire misbehaves, not just when a peer is rude:

- **cuts**: :meth:`~ChaosProxy.cut_next` (after N downstream bytes), :meth:`~ChaosProxy.random_cuts`
  (seeded byte offsets, the HTTP upgrade and every part of a frame included),
  :meth:`~ChaosProxy.cut_first_large_frame` (half way through the first WebSocket frame of
  at least N bytes: the first big snapshot) and :meth:`~ChaosProxy.cut_all` (now). A cut
  delivers exactly the bytes before its offset and then ends the TCP stream, with a FIN
  (the peer reads the partial frame, then EOF) or a RST;
- **latency**: :attr:`~ChaosProxy.latency` (+ :attr:`~ChaosProxy.jitter`) seconds on every
  chunk, both ways, pipelined (a delay, not a bandwidth cap), order kept;
- **stalls**: :meth:`~ChaosProxy.stall` stops reading and writing on the connections open
  now for S seconds (the socket stays up, nothing moves: what a hung middlebox does);
- **a hung HTTP API**: :meth:`~ChaosProxy.hang_http` freezes the client's HTTP calls (open
  and new ones) for S seconds while its WebSocket keeps flowing;
- **down**: when the upstream refuses, the proxy accepts and closes at once (counted in
  :attr:`~ChaosProxy.upstream_failures`).

The downstream (server to client) bytes are scanned for WebSocket frame boundaries after
the ``101`` answer, so every :class:`Cut` records whether it fell inside a frame and how big
that frame was: "cut mid-frame" is an observed fact, not a hope.

:class:`Timeline` consumes a :class:`~inspector.stream.DevToolsSubscription` and stamps
each item with ``time.monotonic()``, so a test or ``tests/benchmarks/fault_suite.py`` can
measure time to recover; :func:`data_lost` counts the differences between the dashboard's
tree and the Gateway's ``getDevToolsSnapshot`` (the acceptance figure: it must be 0).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import ssl
import struct
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from inspector.status import ConnectionState, ConnectionStatus
from inspector.stream import Resynced, Settled, StatusChanged, TreeUpdated
from inspector.treediff import diff_trees

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    import trustme

    from inspector.stream import DevToolsSubscription, SubscriptionItem
    from inspector.tree import DevToolsTree

__all__ = ["ChaosProxy", "Cut", "FrameSpan", "Stall", "Timeline", "data_lost", "tls_server_context"]

_CHUNK = 64 * 1024


@dataclass(frozen=True, slots=True)
class FrameSpan:
    """One downstream WebSocket frame: absolute byte offsets on its connection."""

    start: int
    payload_start: int
    end: int

    @property
    def size(self) -> int:
        return self.end - self.payload_start


@dataclass(frozen=True, slots=True)
class Cut:
    """One connection the proxy ended on purpose, and where in the byte stream."""

    at: float  # time.monotonic()
    connection: int
    offset: int  # downstream bytes delivered before the cut
    kind: str  # "planned" | "random" | "large-frame" | "manual"
    reset: bool  # RST (True) or FIN (False)
    handshake: bool  # before the HTTP upgrade had been delivered
    mid_frame: bool  # strictly inside a WebSocket frame (header or payload)
    frame_size: int | None  # payload size of the frame cut through
    request: str = ""  # the first line the client sent on that connection

    @property
    def websocket(self) -> bool:
        """A cut of a WebSocket (``GET /``), not of an HTTP RPC on a pooled connection."""
        return _is_websocket(self.request)


@dataclass(frozen=True, slots=True)
class Stall:
    at: float
    seconds: float
    connections: int


class _FrameScanner:
    """Finds WebSocket frame boundaries in one connection's downstream bytes.

    Server frames are unmasked, but the mask bit is honoured anyway. Anything that is not a
    ``101 Switching Protocols`` answer (a plain HTTP RPC) is not scanned further.
    """

    def __init__(self) -> None:
        self.upgraded: bool | None = None
        self.upgrade_end = 0
        self.frames_total = 0
        self.spans: deque[FrameSpan] = deque(maxlen=64)
        self._head = bytearray()
        self._pos = 0
        self._hdr = bytearray()
        self._hdr_start = 0
        self._payload_left = 0

    def feed(self, data: bytes) -> list[FrameSpan]:
        """Consume the next downstream bytes; return the frames whose header completed."""
        new: list[FrameSpan] = []
        view = memoryview(data)
        i = 0
        if self.upgraded is None:
            self._head += data
            end = self._head.find(b"\r\n\r\n")
            if end < 0:
                if len(self._head) > 65536:
                    self.upgraded = False
                self._pos += len(data)
                return new
            self.upgraded = self._head.startswith(b"HTTP/1.1 101")
            consumed = end + 4 - (len(self._head) - len(data))
            self.upgrade_end = self._pos + consumed
            self._pos += consumed
            i = consumed
            self._head.clear()
        if not self.upgraded:
            self._pos += len(data) - i
            return new
        n = len(data)
        while i < n:
            if self._payload_left:
                take = min(self._payload_left, n - i)
                self._payload_left -= take
                i += take
                self._pos += take
                continue
            if not self._hdr:
                self._hdr_start = self._pos
            self._hdr.append(view[i])
            i += 1
            self._pos += 1
            need = self._header_length()
            if need is not None and len(self._hdr) == need:
                size = self._payload_length()
                span = FrameSpan(self._hdr_start, self._pos, self._pos + size)
                self.spans.append(span)
                new.append(span)
                self.frames_total += 1
                self._payload_left = size
                self._hdr.clear()
        return new

    def _header_length(self) -> int | None:
        if len(self._hdr) < 2:
            return None
        short = self._hdr[1] & 0x7F
        mask = 4 if self._hdr[1] & 0x80 else 0
        return 2 + {126: 2, 127: 8}.get(short, 0) + mask

    def _payload_length(self) -> int:
        short = self._hdr[1] & 0x7F
        if short == 126:
            return int(struct.unpack("!H", bytes(self._hdr[2:4]))[0])
        if short == 127:
            return int(struct.unpack("!Q", bytes(self._hdr[2:10]))[0])
        return short

    def locate(self, offset: int) -> tuple[bool, int | None]:
        """Is ``offset`` strictly inside a frame (header or payload)? And that frame's size."""
        if not self.upgraded or offset <= self.upgrade_end:
            return False, None
        if self._hdr and offset > self._hdr_start:
            return True, None  # inside a header that has not completed yet
        for span in reversed(self.spans):
            if span.start < offset < span.end:
                return True, span.size
            if span.end <= offset:
                break
        return False, None


class _Link:
    """One proxied connection: two pipes, their byte counters and its fate."""

    def __init__(self, ident: int, client: asyncio.StreamWriter, upstream: asyncio.StreamWriter) -> None:
        self.id = ident
        self.client = client
        self.upstream = upstream
        self.flowing = asyncio.Event()
        self.flowing.set()
        self.down_bytes = 0
        self.up_bytes = 0
        self.scanner = _FrameScanner()
        self.cut_at: int | None = None
        self.cut_kind = ""
        self.cut_reset = False
        self.large_frame: int | None = None
        self.closed = False
        self.tasks: list[asyncio.Task[None]] = []
        self.request_line = ""


def tls_server_context(ca: trustme.CA, host: str = "127.0.0.1") -> ssl.SSLContext:
    """A TLS terminator's server side (``ChaosProxy(..., tls=...)``): a certificate for
    ``host`` signed by ``ca``, e.g. an operator's private CA."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(host).configure_cert(context)
    return context


def _is_websocket(request_line: str) -> bool:
    return request_line.startswith("GET / ")


def _set_linger_zero(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


class ChaosProxy:
    """A TCP proxy on ``host`` (a free port) to ``upstream_host:upstream_port`` that breaks things.

    Every random choice comes from ``random.Random(seed)``, so a failing run can be replayed
    with the same seed (the byte offsets are the same; what lands at an offset depends on
    the Gateway's timing). Use as ``async with ChaosProxy(port) as proxy: ... proxy.url``.
    """

    def __init__(self, upstream_port: int, *, upstream_host: str = "127.0.0.1", host: str = "127.0.0.1",
                 seed: int = 0, tls: ssl.SSLContext | None = None) -> None:
        self.upstream_host = upstream_host
        #: Serve TLS (``https://`` / ``wss://``) with this server context and speak plain TCP to
        #: the upstream: a TLS-terminating proxy, as in front of a Gateway in production. The
        #: faults act on the plaintext inside, so a cut or a stall behaves as without TLS.
        self.tls = tls
        self.upstream_port = upstream_port
        self.host = host
        self.port = 0
        self.rng = random.Random(seed)
        #: A separate stream for jitter, so how many chunks flowed never shifts the cut plans.
        self._jitter_rng = random.Random(seed + 1)
        #: Seconds added to every chunk, both directions; plus up to ``jitter`` more.
        self.latency = 0.0
        self.jitter = 0.0
        #: Whether cut plans also apply to the client's HTTP calls (by default only sockets).
        self.cut_http = False
        self.connections_total = 0
        self.upstream_failures = 0
        self.bytes_down = 0
        self.bytes_up = 0
        self.cuts: list[Cut] = []
        self.stalls: list[Stall] = []
        #: The first line each client sent (``GET / HTTP/1.1``, ``POST /v1/rpc/getRun ...``).
        self.requests: list[str] = []
        self._planned: deque[tuple[int, bool]] = deque()
        self._random: tuple[float, int, int, float] | None = None
        self._random_left: int | None = None
        self._large: tuple[int, bool] | None = None
        self._large_left = 0
        self._hang_http_until = 0.0
        #: HTTP connections frozen by :meth:`hang_http`.
        self.http_hangs = 0
        self._links: dict[int, _Link] = {}
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[Any]] = set()

    # ------------------------------------------------------------------ lifecycle

    @property
    def url(self) -> str:
        return f"{'https' if self.tls is not None else 'http'}://{self.host}:{self.port}"

    @property
    def active(self) -> int:
        """Connections open right now."""
        return len(self._links)

    async def start(self) -> ChaosProxy:
        self._server = await asyncio.start_server(self._accept, self.host, self.port, ssl=self.tls)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        links = list(self._links.values())
        tasks = [t for link in links for t in link.tasks] + list(self._handlers)
        for link in links:
            self._close(link, reset=True)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)
            self._server = None

    async def __aenter__(self) -> ChaosProxy:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ------------------------------------------------------------------ knobs

    def set_upstream(self, port: int, host: str | None = None) -> None:
        """Send new connections elsewhere (open ones stay where they are)."""
        self.upstream_port = port
        if host is not None:
            self.upstream_host = host

    def cut_next(self, after_bytes: int, *, count: int = 1, reset: bool = False) -> None:
        """End each of the next ``count`` connections after ``after_bytes`` downstream bytes.

        Cut plans (this, :meth:`random_cuts`, :meth:`cut_first_large_frame`) go to WebSocket
        connections only, in the order their upgrade requests arrive, unless
        :attr:`cut_http` is set.
        """
        for _ in range(count):
            self._planned.append((after_bytes, reset))

    def random_cuts(self, probability: float, min_bytes: int, max_bytes: int, *, limit: int | None = None,
                    reset_ratio: float = 0.5) -> None:
        """Give each new connection, with ``probability``, a cut at a uniform byte offset.

        ``limit`` caps how many connections get one (``None``: no cap); ``reset_ratio`` of
        them end with a RST, the others with a FIN. ``probability=0`` turns it off.
        """
        self._random = (probability, min_bytes, max_bytes, reset_ratio) if probability > 0 else None
        self._random_left = limit

    def cut_first_large_frame(self, min_payload: int, *, count: int = 1, reset: bool = False) -> None:
        """Cut the next ``count`` connections half way through their first frame of ``min_payload`` bytes."""
        self._large = (min_payload, reset)
        self._large_left = count

    def cut_all(self, *, reset: bool = True) -> int:
        """End every open connection now; returns how many."""
        links = list(self._links.values())
        for link in links:
            self._record_cut(link, link.down_bytes, "manual", reset)
            self._close(link, reset=reset)
        return len(links)

    def stall(self, seconds: float, *, websocket_only: bool = False) -> int:
        """Freeze every open connection for ``seconds`` (no reads, no writes); new ones flow.

        ``websocket_only`` spares the client's pooled HTTP connections (a hung middlebox
        freezes everything; a stuck stream on a healthy network freezes only the socket).
        """
        links = [link for link in self._links.values()
                 if not link.closed and (not websocket_only or _is_websocket(link.request_line))]
        for link in links:
            link.flowing.clear()
        asyncio.get_running_loop().call_later(seconds, self._unstall, links)
        self.stalls.append(Stall(time.monotonic(), seconds, len(links)))
        return len(links)

    def hang_http(self, seconds: float) -> int:
        """Freeze every HTTP connection, open now or opened in the next ``seconds``, until then.

        WebSockets keep flowing: this is a Gateway whose HTTP API hangs (an overloaded
        events endpoint) while its socket is fine. Returns how many open ones it froze.
        """
        loop = asyncio.get_running_loop()
        self._hang_http_until = loop.time() + seconds
        links = [link for link in self._links.values() if link.request_line and not _is_websocket(link.request_line)]
        for link in links:
            self._maybe_hang(link)
        self.stalls.append(Stall(time.monotonic(), seconds, len(links)))
        return len(links)

    def _maybe_hang(self, link: _Link) -> None:
        if _is_websocket(link.request_line):
            return
        loop = asyncio.get_running_loop()
        remaining = self._hang_http_until - loop.time()
        if remaining > 0:
            link.flowing.clear()
            loop.call_later(remaining, link.flowing.set)
            self.http_hangs += 1

    @staticmethod
    def _unstall(links: list[_Link]) -> None:
        for link in links:
            link.flowing.set()

    # ------------------------------------------------------------------ figures

    def mid_frame_cuts(self) -> list[Cut]:
        return [c for c in self.cuts if c.mid_frame]

    def websocket_connections(self) -> int:
        """Connections that asked for the WebSocket (the client also makes HTTP calls)."""
        return sum(_is_websocket(r) for r in self.requests)

    def summary(self) -> dict[str, Any]:
        return {
            "connections": self.connections_total,
            "websocket_connections": self.websocket_connections(),
            "cuts": len(self.cuts),
            "mid_frame_cuts": len(self.mid_frame_cuts()),
            "handshake_cuts": sum(c.handshake for c in self.cuts),
            "stalls": len(self.stalls),
            "upstream_failures": self.upstream_failures,
            "bytes_down": self.bytes_down,
            "bytes_up": self.bytes_up,
        }

    # ------------------------------------------------------------------ plumbing

    async def _accept(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._handlers.add(task)
        try:
            await self._serve(client_reader, client_writer)
        except asyncio.CancelledError:
            pass  # stop() ends us; the server's done-callback must not find a cancelled task
        finally:
            if task is not None:
                self._handlers.discard(task)

    async def _serve(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        self.connections_total += 1
        ident = self.connections_total
        try:
            up_reader, up_writer = await asyncio.wait_for(
                asyncio.open_connection(self.upstream_host, self.upstream_port), 5.0
            )
        except (OSError, TimeoutError):
            self.upstream_failures += 1
            _set_linger_zero(client_writer)
            client_writer.transport.abort()
            return
        link = _Link(ident, client_writer, up_writer)
        self._links[ident] = link
        link.tasks = [
            asyncio.create_task(self._pipe(link, client_reader, up_writer, downstream=False)),
            asyncio.create_task(self._pipe(link, up_reader, client_writer, downstream=True)),
        ]
        try:
            await asyncio.gather(*link.tasks, return_exceptions=True)
        finally:
            self._close(link, reset=False)

    def _plan(self, link: _Link) -> None:
        if self._planned:
            link.cut_at, link.cut_reset = self._planned.popleft()
            link.cut_kind = "planned"
        elif self._random is not None and self._random_left != 0:
            probability, low, high, reset_ratio = self._random
            if self.rng.random() < probability:
                link.cut_at = self.rng.randint(low, high)
                link.cut_reset = self.rng.random() < reset_ratio
                link.cut_kind = "random"
                if self._random_left is not None:
                    self._random_left -= 1
        if link.cut_at is None and self._large is not None and self._large_left > 0:
            link.large_frame, link.cut_reset = self._large

    async def _pipe(self, link: _Link, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    *, downstream: bool) -> None:
        """Read chunks, hold each for the latency, deliver in order (cutting where planned)."""
        queue: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue(maxsize=256)
        loop = asyncio.get_running_loop()

        async def read() -> None:
            try:
                while not link.closed:
                    await link.flowing.wait()
                    data = await reader.read(_CHUNK)
                    if not data:
                        break
                    delay = self.latency + (self._jitter_rng.uniform(0, self.jitter) if self.jitter else 0.0)
                    await queue.put((loop.time() + delay, data))
            except (OSError, asyncio.IncompleteReadError):
                pass
            finally:
                await queue.put(None)

        reading = asyncio.create_task(read())
        try:
            while True:
                item = await queue.get()
                if item is None or link.closed:
                    break
                due, data = item
                wait = due - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)  # the injected latency itself, not a synchronisation
                await link.flowing.wait()
                if link.closed:
                    break
                if downstream:
                    if not await self._deliver(link, writer, data):
                        break
                else:
                    if not link.up_bytes:
                        link.request_line = data.split(b"\r\n", 1)[0][:200].decode("latin-1")
                        self.requests.append(link.request_line)
                        if self.cut_http or _is_websocket(link.request_line):
                            self._plan(link)  # in the order sockets are asked for: seeded plans repeat
                        self._maybe_hang(link)
                        await link.flowing.wait()
                    writer.write(data)
                    link.up_bytes += len(data)
                    self.bytes_up += len(data)
                    await writer.drain()
        except (OSError, ConnectionError):
            pass
        finally:
            reading.cancel()
            with contextlib.suppress(BaseException):
                await reading
            # One side ended: end the other, like a transparent proxy would.
            self._close(link, reset=False)

    async def _deliver(self, link: _Link, writer: asyncio.StreamWriter, data: bytes) -> bool:
        """Write one downstream chunk, or the part before a cut and then cut; False once cut."""
        start = link.down_bytes
        for span in link.scanner.feed(data):
            if link.large_frame is not None and link.cut_at is None and span.size >= link.large_frame:
                link.cut_at = span.payload_start + span.size // 2
                link.cut_kind = "large-frame"
                self._large_left -= 1
        cut_at = link.cut_at
        if cut_at is not None and cut_at < start + len(data):
            part = data[: max(0, cut_at - start)]
            if part:
                writer.write(part)
                link.down_bytes += len(part)
                self.bytes_down += len(part)
            if link.cut_reset:
                # Make sure the partial bytes left us before the RST (abort drops buffers).
                writer.transport.set_write_buffer_limits(high=0)
                with contextlib.suppress(OSError, ConnectionError):
                    await writer.drain()
            self._record_cut(link, link.down_bytes, link.cut_kind, link.cut_reset)
            self._close(link, reset=link.cut_reset)
            return False
        writer.write(data)
        link.down_bytes += len(data)
        self.bytes_down += len(data)
        await writer.drain()
        return True

    def _record_cut(self, link: _Link, offset: int, kind: str, reset: bool) -> None:
        mid, size = link.scanner.locate(offset)
        handshake = link.scanner.upgraded is None or offset < link.scanner.upgrade_end
        self.cuts.append(Cut(time.monotonic(), link.id, offset, kind, reset, handshake, mid, size, link.request_line))

    def _close(self, link: _Link, *, reset: bool) -> None:
        if link.closed:
            return
        link.closed = True
        link.flowing.set()
        self._links.pop(link.id, None)
        for writer in (link.client, link.upstream):
            if reset:
                _set_linger_zero(writer)
                writer.transport.abort()
            else:
                with contextlib.suppress(Exception):
                    writer.close()


# --------------------------------------------------------------------------- measuring


@dataclass
class Timeline:
    """Consume a subscription in a task and stamp every item with ``time.monotonic()``.

    ``faults`` is where a test notes when it injected each fault (``note_fault``);
    :meth:`recoveries` pairs each with the first ``online`` status that followed it.
    """

    sub: DevToolsSubscription
    items: list[tuple[float, SubscriptionItem]] = field(default_factory=list)
    faults: list[tuple[float, str]] = field(default_factory=list)
    task: asyncio.Task[None] | None = None

    def start(self) -> Timeline:
        self.task = asyncio.create_task(self._consume())
        return self

    async def _consume(self) -> None:
        async for item in self.sub:
            self.items.append((time.monotonic(), item))

    async def wait(self, timeout: float) -> None:
        """Wait for the subscription to end by itself (``stop_when_settled``), re-raising its error."""
        assert self.task is not None, "start() first"
        try:
            await asyncio.wait_for(asyncio.shield(self.task), timeout)
        except TimeoutError:
            recent = [type(i).__name__ for _, i in self.items[-10:]]
            self.sub.stop()
            raise AssertionError(f"the subscription did not end within {timeout} s; state {self.sub.state}; "
                                 f"seq {self.sub.tree.seq}; stats {self.sub.stats}; recent {recent}") from None

    def note_fault(self, what: str, at: float | None = None) -> None:
        self.faults.append((time.monotonic() if at is None else at, what))

    async def until(self, condition: Callable[[], bool], timeout: float = 20.0, what: str = "condition") -> None:
        """Poll ``condition`` until it holds; fail with the recent history after ``timeout``."""
        deadline = time.monotonic() + timeout
        while not condition():
            if self.task is not None and self.task.done():
                self.task.result()
                if condition():
                    return
                raise AssertionError(f"the subscription ended before {what}")
            if time.monotonic() > deadline:
                recent = [type(i).__name__ for _, i in self.items[-10:]]
                raise AssertionError(f"{what} not met within {timeout} s; state {self.sub.state}; recent {recent}")
            await asyncio.sleep(0.02)  # poll interval

    async def stop(self) -> None:
        self.sub.stop()
        if self.task is not None:
            await asyncio.wait_for(self.task, 10)

    def states(self) -> list[tuple[float, ConnectionState]]:
        return [(t, i.state) for t, i in self.items if isinstance(i, StatusChanged)]

    def statuses(self) -> list[str]:
        return [s.status.value for _, s in self.states()]

    def offline_states(self) -> list[ConnectionState]:
        return [s for _, s in self.states() if s.status is ConnectionStatus.OFFLINE]

    def resyncs(self) -> list[Resynced]:
        return [i for _, i in self.items if isinstance(i, Resynced)]

    def tree_updates(self) -> int:
        return sum(isinstance(i, TreeUpdated) for _, i in self.items)

    def settled(self) -> Settled | None:
        return next((i for _, i in reversed(self.items) if isinstance(i, Settled)), None)

    def went_offline_then_online(self) -> bool:
        """Somewhere in the history an ``offline`` status is later followed by ``online``."""
        seen_offline = False
        for state in self.statuses():
            if state == "offline":
                seen_offline = True
            elif state == "online" and seen_offline:
                return True
        return False

    def recoveries(self, fault_times: list[float] | None = None) -> list[float | None]:
        """Seconds from each fault to the first ``online`` status after it (``None``: never)."""
        times = [t for t, _ in self.faults] if fault_times is None else fault_times
        onlines = [t for t, s in self.states() if s.status is ConnectionStatus.ONLINE]
        out: list[float | None] = []
        for fault in times:
            after = next((t for t in onlines if t >= fault), None)
            out.append(None if after is None else after - fault)
        return out


def data_lost(tree: DevToolsTree, truth: Mapping[str, Any]) -> int:
    """How far the dashboard's tree is from the Gateway's snapshot: 0 means nothing lost.

    The number of ops that would turn our tree into the truth (one per node added,
    removed or changed), plus one if the ``seq`` differs.
    """
    ours = tree.snapshot()
    if ours["root"] is None:
        return 1 + _count_nodes(truth.get("root"))
    ops = diff_trees(ours["root"], truth["root"]) if truth.get("root") is not None else [{"op": "missing"}]
    return len(ops) + (0 if ours["seq"] == truth.get("seq") else 1)


def _count_nodes(root: Any) -> int:
    if not isinstance(root, dict):
        return 0
    count, stack = 0, [root]
    while stack:
        node = stack.pop()
        count += 1
        stack.extend(c for c in node.get("children", []) if isinstance(c, dict))
    return count

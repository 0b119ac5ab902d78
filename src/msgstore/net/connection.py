"""One client connection of a line protocol, and the service that accepts them.

POP3 and poppassd (and LMTP/SMTP later) are written against :class:`Connection`: an
``asyncio.Protocol`` with our own input buffer (:class:`~msgstore.net.linereader.LineReader`),
because the STLS rule needs to see exactly what was received and not yet consumed
(ECOSYSTEM.md §1, §13). A session is one coroutine ``handler(conn)`` that reads lines and
writes replies::

    service = await LineService.start(listeners, handler, tls=context, limits=...)
    ...
    await service.close()          # stop accepting; sessions see ServiceClosingError; then abort

Input:

- :meth:`Connection.read_line` returns one line (bytes, no terminator) or ``TOO_LONG``; it
  raises :class:`ConnectionClosedError` when the peer is gone, :class:`TimeoutError` when no
  complete line arrived within the deadline (the deadline covers the whole line, so a client
  dripping one octet every few seconds is closed too: RELIABILITY.md §7 case 19), and
  :class:`ServiceClosingError` when the server shuts down.
- At most ``max_buffered_octets`` of received data is held; beyond it the transport stops
  reading until the session consumes lines (a pipelining client is throttled, not buffered).

Output: :meth:`Connection.write` queues bytes; :meth:`Connection.drain` waits while the
transport's buffer is above its high-water mark, so a client that does not read cannot make
the server hold a whole mailbox in memory.

TLS: :meth:`Connection.start_tls` upgrades in place (STLS/STARTTLS). The caller must first check
:meth:`Connection.pending_input` and refuse when the client pipelined anything behind the
command: between that check and the switch to the TLS protocol nothing can be received, and
anything received after the switch is fed to the TLS layer, never to the session.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Final

from msgstore.net.linereader import LineEvent, LineReader
from msgstore.net.listener import Listener

log = logging.getLogger(__name__)

#: How long :meth:`LineService.close` lets sessions say goodbye before cutting them off.
CLOSE_GRACE_S: Final = 5.0


class ConnectionClosedError(Exception):
    """The peer closed the connection or it broke."""


class ServiceClosingError(Exception):
    """The server is shutting down; the session should say goodbye and return."""


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    """Per-connection limits of a line service.

    Attributes:
        max_line_octets: longest line, terminator included (see ``net/linereader.py``).
        max_buffered_octets: received octets held before reading pauses.
        tls_handshake_timeout: seconds a client has to complete a TLS handshake (implicit TLS
            and STLS) before it is disconnected.
    """

    max_line_octets: int
    max_buffered_octets: int = 64 * 1024
    tls_handshake_timeout: float = 30.0


class Connection(asyncio.Protocol):
    """A client connection: lines in, bytes out, TLS upgrade. See the module docstring."""

    def __init__(
        self,
        limits: ConnectionLimits,
        *,
        implicit_tls: bool,
        on_made: Callable[[Connection], None] | None = None,
    ) -> None:
        self._limits = limits
        self._on_made = on_made
        self._reader = LineReader(limits.max_line_octets)
        self._transport: asyncio.Transport | None = None
        self._tls = implicit_tls
        self._peer_host = ""
        self._peer_port = 0
        self._local_port = 0
        self._data_waiter: asyncio.Future[None] | None = None
        self._drain_waiter: asyncio.Future[None] | None = None
        self._write_paused = False
        self._read_paused = False
        self._eof = False
        self._lost = False
        self._closing_service = False
        self.closed = asyncio.Event()

    # --- asyncio.Protocol ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple) and len(peer) >= 2:
            self._peer_host, self._peer_port = str(peer[0]), int(peer[1])
        local = transport.get_extra_info("sockname")
        if isinstance(local, tuple) and len(local) >= 2:
            self._local_port = int(local[1])
        # For implicit TLS this runs after the handshake: no session for a failed one.
        if self._on_made is not None:
            self._on_made(self)

    def data_received(self, data: bytes) -> None:
        self._reader.feed(data)
        if (
            not self._read_paused
            and self._reader.pending() > self._limits.max_buffered_octets
            and self._transport is not None
        ):
            self._read_paused = True
            self._transport.pause_reading()
        self._wake_reader()

    def eof_received(self) -> bool | None:
        self._eof = True
        self._wake_reader()
        return None  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        self._wake_reader()
        if self._drain_waiter is not None and not self._drain_waiter.done():
            self._drain_waiter.set_result(None)
        self.closed.set()

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        if self._drain_waiter is not None and not self._drain_waiter.done():
            self._drain_waiter.set_result(None)

    def _wake_reader(self) -> None:
        if self._data_waiter is not None and not self._data_waiter.done():
            self._data_waiter.set_result(None)

    # --- properties ---------------------------------------------------------------------------

    @property
    def peer_host(self) -> str:
        """The client's address as ``getpeername()`` reports it ("" if unknown)."""
        return self._peer_host

    @property
    def peer_port(self) -> int:
        return self._peer_port

    @property
    def local_port(self) -> int:
        return self._local_port

    @property
    def tls_active(self) -> bool:
        """True after an implicit-TLS handshake or a completed STLS/STARTTLS."""
        return self._tls

    @property
    def is_closing(self) -> bool:
        return self._lost or self._transport is None or self._transport.is_closing()

    # --- input --------------------------------------------------------------------------------

    async def read_line(self, within: float) -> bytes | LineEvent:
        """The next line or ``TOO_LONG``, complete within ``within`` seconds.

        See the module docstring for what it raises.
        """
        try:
            async with asyncio.timeout(within):
                while True:
                    if self._closing_service:
                        raise ServiceClosingError
                    line = self._reader.next_line()
                    if line is not None:
                        self._maybe_resume_reading()
                        return line
                    if self._eof or self._lost:
                        raise ConnectionClosedError
                    self._data_waiter = asyncio.get_running_loop().create_future()
                    try:
                        await self._data_waiter
                    finally:
                        self._data_waiter = None
        except TimeoutError:
            raise TimeoutError(f"no complete line within {within:g}s") from None

    def _maybe_resume_reading(self) -> None:
        if (
            self._read_paused
            and self._reader.pending() <= self._limits.max_buffered_octets // 2
            and self._transport is not None
        ):
            self._read_paused = False
            self._transport.resume_reading()

    @property
    def max_line_octets(self) -> int:
        return self._reader.max_line_octets

    @max_line_octets.setter
    def max_line_octets(self, value: int) -> None:
        """Change the line limit for the lines to come (SASL responses may be longer)."""
        self._reader.max_line_octets = value

    def pending_input(self) -> int:
        """Octets received after the last line handed out (plaintext-injection check)."""
        return self._reader.pending()

    # --- output -------------------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        """Queue octets for the client (dropped silently once the connection is gone)."""
        if self._transport is not None and not self._lost and not self._transport.is_closing():
            self._transport.write(data)

    async def drain(self) -> None:
        """Wait until the transport's write buffer is below its high-water mark.

        Raises:
            ConnectionClosedError: the connection is gone.
        """
        if self._lost:
            raise ConnectionClosedError
        while self._write_paused and not self._lost:
            self._drain_waiter = asyncio.get_running_loop().create_future()
            try:
                await self._drain_waiter
            finally:
                self._drain_waiter = None
        if self._lost:
            raise ConnectionClosedError

    # --- TLS ----------------------------------------------------------------------------------

    async def start_tls(self, context: ssl.SSLContext) -> None:
        """Upgrade to TLS as the server side. The caller has checked :meth:`pending_input`.

        Raises:
            ConnectionClosedError: the handshake failed or timed out (the connection is closed).
        """
        if self._transport is None or self._lost:
            raise ConnectionClosedError
        if self._reader.pending():
            raise RuntimeError("start_tls with unread plaintext: refuse it in the session")
        loop = asyncio.get_running_loop()
        try:
            transport = await loop.start_tls(
                self._transport,
                self,
                context,
                server_side=True,
                ssl_handshake_timeout=self._limits.tls_handshake_timeout,
            )
        except (OSError, ssl.SSLError, TimeoutError, ConnectionError) as exc:
            log.info("TLS handshake failed: %s", exc)
            self.abort()
            raise ConnectionClosedError from None
        if transport is None:
            raise ConnectionClosedError
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self._tls = True

    # --- closing ------------------------------------------------------------------------------

    def close(self) -> None:
        """Close after the queued output is sent."""
        if self._transport is not None:
            self._transport.close()

    def abort(self) -> None:
        """Close now, dropping queued output."""
        if self._transport is not None:
            self._transport.abort()

    def notify_closing(self) -> None:
        """Called by :meth:`LineService.close`: reads now raise ServiceClosingError."""
        self._closing_service = True
        self._wake_reader()


Handler = Callable[[Connection], Awaitable[None]]


class LineService:
    """Accept connections on some listeners and run one handler task per connection."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._servers: list[asyncio.Server] = []
        self._sessions: dict[Connection, asyncio.Task[None]] = {}

    @classmethod
    async def start(
        cls,
        name: str,
        listeners: Sequence[Listener],
        handler: Handler,
        *,
        limits: ConnectionLimits,
        tls: ssl.SSLContext | None,
    ) -> LineService:
        """Start accepting on every listener (``implicit_tls`` ones need ``tls``)."""
        service = cls(name)
        loop = asyncio.get_running_loop()
        try:
            for listener in listeners:
                implicit = listener.implicit_tls
                if implicit and tls is None:
                    raise ValueError(f"{listener.key}: implicit TLS needs a TLS context")

                def factory(implicit: bool = implicit) -> Connection:
                    return service._accept(handler, limits, implicit)

                server = await loop.create_server(
                    factory,
                    sock=listener.sock,
                    ssl=tls if implicit else None,
                    ssl_handshake_timeout=limits.tls_handshake_timeout if implicit else None,
                )
                service._servers.append(server)
        except BaseException:
            await service.close()
            raise
        return service

    def _accept(self, handler: Handler, limits: ConnectionLimits, implicit: bool) -> Connection:
        def made(conn: Connection) -> None:
            task = asyncio.get_running_loop().create_task(self._run(conn, handler))
            self._sessions[conn] = task

        return Connection(limits, implicit_tls=implicit, on_made=made)

    async def _run(self, conn: Connection, handler: Handler) -> None:
        try:
            await handler(conn)
        except (ConnectionClosedError, ServiceClosingError):
            pass
        except Exception:
            log.error("%s: session failed", self._name, exc_info=True)
        finally:
            conn.close()
            self._sessions.pop(conn, None)

    @property
    def session_count(self) -> int:
        return len(self._sessions)

    async def close(self) -> None:
        """Stop accepting, ask every session to finish, abort those still running after
        :data:`CLOSE_GRACE_S`."""
        for server in self._servers:
            server.close()
        for conn in list(self._sessions):
            conn.notify_closing()
        tasks = list(self._sessions.values())
        if tasks:
            _, still = await asyncio.wait(tasks, timeout=CLOSE_GRACE_S)
            for conn, task in list(self._sessions.items()):
                if task in still:
                    conn.abort()
                    task.cancel()
            for task in still:
                with contextlib.suppress(BaseException):
                    await task
        for server in self._servers:
            with contextlib.suppress(Exception):
                await server.wait_closed()
        self._servers.clear()

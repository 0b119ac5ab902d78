"""The plumbing every protocol connection and service shares: transport, flow control, TLS,
and accepting, tracking and closing sessions.

:class:`StreamConnection` is an ``asyncio.Protocol`` that keeps its own input buffer, because
the STLS/STARTTLS rule needs to see exactly what was received and not yet consumed
(ECOSYSTEM.md §1, §13). A subclass decides how received octets are framed: the line protocols
use :class:`~msgstore.net.connection.Connection` (a line reader), IMAP uses
:class:`~msgstore.imap.connection.ImapConnection` (the literal-aware framer). The subclass
implements :meth:`~asyncio.Protocol.data_received`, :meth:`StreamConnection.pending_input`
and the two backpressure predicates; this class does the rest:

- Input: :meth:`StreamConnection.wait_input` sleeps until something happens (data, EOF, loss,
  :meth:`StreamConnection.notify_closing`). Reading pauses while the subclass reports its
  buffer as over its limit and resumes when it reports it drained
  (:meth:`StreamConnection.maybe_pause_reading`, :meth:`StreamConnection.maybe_resume_reading`),
  so a pipelining client is throttled, not buffered.
- Output: :meth:`StreamConnection.write` queues bytes; :meth:`StreamConnection.drain` waits
  while the transport's buffer is above its high-water mark, so a client that does not read
  cannot make the server hold a whole mailbox in memory.
- TLS: :meth:`StreamConnection.start_tls` upgrades in place. The caller must first check
  :meth:`StreamConnection.pending_input` and refuse when the client pipelined anything behind
  the command: between that check and the switch to the TLS protocol nothing can be received,
  and anything received after the switch is fed to the TLS layer, never to the session.

:class:`StreamService` accepts connections on some listeners (``implicit_tls`` ones do the
handshake first, within the handshake deadline), runs one session task per connection, and
closes gracefully: stop accepting, tell every session (reads raise
:class:`ServiceClosingError`), wait :data:`CLOSE_GRACE_S`, abort what is left, then release
what the service owns (``on_close``, e.g. the authenticator's throttle). A single process
accepts with the event loop's own server; a worker of ``--workers N`` accepts one connection
at a time, when it holds no more of the service's connections than its peers
(net/balance.py), and counts each until its session ends.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import functools
import logging
import socket
import ssl
from collections.abc import Callable, Sequence
from typing import Final, Generic, Self, TypeVar, cast

from msgstore import metrics
from msgstore.net import balance
from msgstore.net.listener import Listener
from msgstore.net.sessions import REGISTRY, LiveSession, killer

log = logging.getLogger(__name__)

#: How long :meth:`StreamService.close` lets sessions say goodbye before cutting them off.
CLOSE_GRACE_S: Final = 5.0


class ConnectionClosedError(Exception):
    """The peer closed the connection or it broke."""


class ServiceClosingError(Exception):
    """The server is shutting down; the session should say goodbye and return."""


class StreamConnection(asyncio.Protocol, abc.ABC):
    """A client connection's transport plumbing. See the module docstring."""

    def __init__(
        self,
        *,
        implicit_tls: bool,
        tls_handshake_timeout: float,
        on_made: Callable[[Self], None] | None = None,
    ) -> None:
        self._on_made = on_made
        self._tls_handshake_timeout = tls_handshake_timeout
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
        #: Why :meth:`notify_closing` was called (IMAP puts it in its ``* BYE``).
        self.closing_reason = "Server shutting down"
        self.closed = asyncio.Event()
        #: This connection in ``session list`` (net/sessions.py).
        self.live = LiveSession()

    # --- what a subclass provides -------------------------------------------------------------

    @abc.abstractmethod
    def pending_input(self) -> int:
        """Octets received and not yet handed to the session (plaintext-injection check)."""

    @abc.abstractmethod
    def _input_over_limit(self) -> bool:
        """True when the received input buffered here is enough: reading pauses."""

    @abc.abstractmethod
    def _input_drained(self) -> bool:
        """True when the session consumed enough of the buffered input: reading resumes."""

    def _outgoing(self, data: bytes) -> bytes:
        """The octets to put on the transport for ``data`` (a compression layer hooks in)."""
        return data

    def _tls_started(self) -> None:
        """Called once :meth:`start_tls` switched to the TLS transport."""

    # --- asyncio.Protocol ---------------------------------------------------------------------

    def connection_made(self: Self, transport: asyncio.BaseTransport) -> None:
        # No isinstance check: uvloop's TCP and Unix transports implement asyncio.Transport
        # without deriving from it (or registering with it).
        self._transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple) and len(peer) >= 2:
            self._peer_host, self._peer_port = str(peer[0]), int(peer[1])
        local = transport.get_extra_info("sockname")
        if isinstance(local, tuple) and len(local) >= 2:
            self._local_port = int(local[1])
        # For implicit TLS this runs after the handshake: no session for a failed one.
        on_made = self._on_made
        if on_made is not None:
            self._on_made = None  # once: a TLS upgrade does not start a second session
            on_made(self)

    def eof_received(self) -> bool | None:
        self._eof = True
        self.wake_reader()
        return None  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        self.wake_reader()
        if self._drain_waiter is not None and not self._drain_waiter.done():
            self._drain_waiter.set_result(None)
        self.closed.set()

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        if self._drain_waiter is not None and not self._drain_waiter.done():
            self._drain_waiter.set_result(None)

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

    @property
    def at_end(self) -> bool:
        """The peer sent EOF or the connection is gone: no more input will arrive."""
        return self._eof or self._lost

    @property
    def service_closing(self) -> bool:
        """:meth:`notify_closing` was called."""
        return self._closing_service

    # --- input --------------------------------------------------------------------------------

    def wake_reader(self) -> None:
        """Wake a session waiting in :meth:`wait_input`."""
        if self._data_waiter is not None and not self._data_waiter.done():
            self._data_waiter.set_result(None)

    async def wait_input(self) -> None:
        """Wait for the next data, EOF, loss, :meth:`notify_closing` or :meth:`wake_reader`."""
        self._data_waiter = asyncio.get_running_loop().create_future()
        try:
            await self._data_waiter
        finally:
            self._data_waiter = None

    def maybe_pause_reading(self) -> None:
        """Stop reading from the transport while the input buffer is over its limit."""
        if not self._read_paused and self._transport is not None and self._input_over_limit():
            self._read_paused = True
            self._transport.pause_reading()

    def maybe_resume_reading(self) -> None:
        """Read again once the session consumed enough of the buffered input."""
        if self._read_paused and self._transport is not None and self._input_drained():
            self._read_paused = False
            self._transport.resume_reading()

    # --- output -------------------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        """Queue octets for the client (dropped silently once the connection is gone)."""
        if self._transport is not None and not self._lost and not self._transport.is_closing():
            self._transport.write(self._outgoing(data))

    def writelines(self, chunks: Sequence[bytes]) -> None:
        """Queue several pieces at once: one send, without joining them first where the
        event loop can (uvloop writes them with one ``writev``)."""
        transport = self._transport
        if transport is not None and not self._lost and not transport.is_closing():
            if type(self)._outgoing is StreamConnection._outgoing:
                transport.writelines(chunks)
            else:
                transport.write(self._outgoing(b"".join(chunks)))

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
        if self.pending_input():
            raise RuntimeError("start_tls with unread plaintext: refuse it in the session")
        loop = asyncio.get_running_loop()
        try:
            transport = await loop.start_tls(
                self._transport,
                self,
                context,
                server_side=True,
                ssl_handshake_timeout=self._tls_handshake_timeout,
            )
        except (OSError, ssl.SSLError, TimeoutError, ConnectionError) as exc:
            log.info("TLS handshake failed: %s", exc)
            self.abort()
            raise ConnectionClosedError from None
        if transport is None:
            raise ConnectionClosedError
        self._transport = transport  # no isinstance check: see connection_made
        self._tls = True
        self._read_paused = False  # the TLS transport starts out reading
        self._tls_started()

    # --- closing ------------------------------------------------------------------------------

    def close(self) -> None:
        """Close after the queued output is sent."""
        if self._transport is not None:
            self._transport.close()

    def abort(self) -> None:
        """Close now, dropping queued output."""
        if self._transport is not None:
            self._transport.abort()

    def notify_closing(self, reason: str = "Server shutting down") -> None:
        """Called by :meth:`StreamService.close` (and ``session kill``): reads now raise
        ServiceClosingError."""
        self._closing_service = True
        self.closing_reason = reason
        self.wake_reader()


ConnT = TypeVar("ConnT", bound=StreamConnection)


class StreamService(abc.ABC, Generic[ConnT]):
    """Accept connections on some listeners and run one session task per connection."""

    def __init__(self, name: str, *, on_close: Callable[[], None] | None = None) -> None:
        self._name = name
        self._on_close = on_close
        self._servers: list[asyncio.Server] = []
        self._sessions: dict[ConnT, asyncio.Task[None]] = {}
        # --workers N (net/balance.py): this worker's shares, its acceptors, the connections
        # counted in a share until their session ends, and the accepted ones still connecting
        # (implicit TLS: in the handshake).
        self._shares: set[balance.Share] = set()
        self._acceptors: list[balance.Acceptor] = []
        self._counted: dict[ConnT, balance.Share] = {}
        self._connecting: set[asyncio.Task[None]] = set()

    @abc.abstractmethod
    def _connection(self, implicit_tls: bool, on_made: Callable[[ConnT], None]) -> ConnT:
        """A new connection object; it calls ``on_made`` once the transport is up."""

    @abc.abstractmethod
    async def _serve(self, conn: ConnT) -> None:
        """Run one session on ``conn``."""

    async def listen(
        self,
        listeners: Sequence[Listener],
        *,
        tls: ssl.SSLContext | None,
        tls_handshake_timeout: float,
    ) -> None:
        """Start accepting on every listener (``implicit_tls`` ones need ``tls``)."""
        loop = asyncio.get_running_loop()
        for listener in listeners:
            implicit = listener.implicit_tls
            if implicit and tls is None:
                raise ValueError(f"{listener.key}: implicit TLS needs a TLS context")

            def factory(implicit: bool = implicit) -> ConnT:
                return self._connection(implicit, self._start_session)

            context = tls if implicit else None
            handshake_timeout = tls_handshake_timeout if implicit else None
            share = balance.share(listener.service)
            if share is None:
                server = await loop.create_server(
                    factory,
                    sock=listener.sock,
                    ssl=context,
                    ssl_handshake_timeout=handshake_timeout,
                )
                self._servers.append(server)
                continue

            on_accept = functools.partial(
                self._accepted, share, factory, context, handshake_timeout
            )
            self._acceptors.append(balance.Acceptor(listener.sock, share, on_accept))
            self._shares.add(share)
        for share in self._shares:
            share.accepting(True)

    def _accepted(
        self,
        share: balance.Share,
        factory: Callable[[], ConnT],
        context: ssl.SSLContext | None,
        handshake_timeout: float | None,
        sock: socket.socket,
    ) -> None:
        """Count a connection a :class:`~msgstore.net.balance.Acceptor` just accepted and set
        it up; its session starts once the transport is up (after the handshake for implicit
        TLS) and uncounts it when it ends."""
        conn = factory()
        share.opened()
        self._counted[conn] = share
        task = asyncio.get_running_loop().create_task(
            self._connect(conn, sock, context, handshake_timeout)
        )
        self._connecting.add(task)
        task.add_done_callback(self._connecting.discard)

    async def _connect(
        self,
        conn: ConnT,
        sock: socket.socket,
        context: ssl.SSLContext | None,
        handshake_timeout: float | None,
    ) -> None:
        """Make ``sock`` ``conn``'s transport. A connection that never gets a session (the
        handshake failed, the service closed first) is uncounted here."""
        try:
            await asyncio.get_running_loop().connect_accepted_socket(
                lambda: conn, sock, ssl=context, ssl_handshake_timeout=handshake_timeout
            )
        except BaseException as exc:
            if conn not in self._sessions:
                self._uncount(conn)
            if not isinstance(exc, Exception):
                raise
            # The event loop reported a failed handshake already, as its own server does.
            log.debug("%s: connection not set up: %s", self._name, exc)

    def _uncount(self, conn: ConnT) -> None:
        share = self._counted.pop(conn, None)
        if share is not None:
            share.closed()

    def _start_session(self, conn: ConnT) -> None:
        task = asyncio.get_running_loop().create_task(self._run(conn))
        self._sessions[conn] = task
        kill = killer(conn.notify_closing, conn.abort)
        REGISTRY.register(conn.live, self._name, conn.peer_host, kill)

    async def _run(self, conn: ConnT) -> None:
        try:
            await self._serve(conn)
        except (ConnectionClosedError, ServiceClosingError):
            pass
        except Exception:
            log.error("%s: session failed", self._name, exc_info=True)
            metrics.error(self._name)
        finally:
            conn.close()
            self._sessions.pop(conn, None)
            self._uncount(conn)
            REGISTRY.unregister(conn.live)

    @property
    def session_count(self) -> int:
        return len(self._sessions)

    async def close(self) -> None:
        """Stop accepting, ask every session to finish, abort those still running after
        :data:`CLOSE_GRACE_S`, then call ``on_close``."""
        for server in self._servers:
            server.close()
        for share in self._shares:
            share.accepting(False)
        for acceptor in self._acceptors:
            acceptor.close()
        self._acceptors.clear()
        for task in self._connecting:
            task.cancel()
        await asyncio.gather(*self._connecting, return_exceptions=True)
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
        if self._on_close is not None:
            self._on_close()

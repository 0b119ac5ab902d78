"""One IMAP client connection: an ``asyncio.Protocol`` that feeds the sans-I/O framer.

Received octets go straight into :class:`~msgstore.imap.framer.Framer` (after the inflater
once COMPRESS=DEFLATE is active); the framer's events queue up here and the session takes
them one at a time with :meth:`ImapConnection.next_event`. Reading pauses while more than
:data:`MAX_QUEUED_EVENTS` events wait or the framer holds more than
:data:`MAX_PENDING_OCTETS` unframed octets, so a client that pipelines thousands of commands
is throttled instead of buffered (RELIABILITY.md §7 case 13).

Output is :meth:`write` plus :meth:`drain` (backpressure from the transport's high-water
mark), and :meth:`sendfile` for message bodies on plain sockets.

STARTTLS (:meth:`start_tls`) requires that the framer holds no octets received after the
STARTTLS line: the session checks :meth:`Framer.pending_bytes` and refuses before calling it.
Between that check and the switch of the transport to TLS there is no ``await``, so nothing
can arrive in between, and everything received later goes through the TLS layer.

**Per-command deadline** (``[imap] command_timeout``, RELIABILITY.md §3): when the first octet
of a command arrives, a timer starts; it stops when the framer is between commands again, and
restarts each time :data:`PROGRESS_OCTETS` more octets arrived (a large APPEND that keeps
flowing is not cut off). When it fires while the session waits for input, the connection
writes ``* BYE Command not completed in time`` and closes, so a client that drips one octet
every few seconds cannot hold a half command open for the whole idle timeout. If the session
is busy (it has not read the finished commands yet), the timer starts over instead.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import ssl
import zlib
from collections.abc import Callable
from typing import Final

from msgstore.imap.framer import Event, Framer
from msgstore.net.connection import ConnectionClosedError, ServiceClosingError

log = logging.getLogger(__name__)

#: Framer events held before reading pauses.
MAX_QUEUED_EVENTS: Final = 64
#: Unframed octets held before reading pauses (above one maximal command line).
MAX_PENDING_OCTETS: Final = 256 * 1024
#: Octets of a command whose arrival restarts the per-command deadline.
PROGRESS_OCTETS: Final = 64 * 1024


class ImapConnection(asyncio.Protocol):
    """See the module docstring."""

    def __init__(
        self,
        framer: Framer,
        *,
        implicit_tls: bool,
        tls_handshake_timeout: float,
        command_timeout: float | None = None,
        on_made: Callable[[ImapConnection], None] | None = None,
    ) -> None:
        self.framer = framer
        self._command_timeout = command_timeout
        self._command_timer: asyncio.TimerHandle | None = None
        self._command_progress = 0
        self._reading = False
        self._on_made = on_made
        self._handshake_timeout = tls_handshake_timeout
        self._transport: asyncio.Transport | None = None
        self._tls = implicit_tls
        self._events: collections.deque[Event] = collections.deque()
        self._waiter: asyncio.Future[None] | None = None
        self._drain_waiter: asyncio.Future[None] | None = None
        self._write_paused = False
        self._read_paused = False
        self._eof = False
        self._lost = False
        self._closing_service = False
        self._inflater: zlib._Decompress | None = None
        self._deflater: zlib._Compress | None = None
        self.peer_host = ""
        self.closed = asyncio.Event()

    # --- asyncio.Protocol ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple) and len(peer) >= 2:
            self.peer_host = str(peer[0])
        if self._on_made is not None:
            on_made, self._on_made = self._on_made, None
            on_made(self)

    def data_received(self, data: bytes) -> None:
        if self._inflater is not None:
            try:
                data = self._inflater.decompress(data)
            except zlib.error:
                log.info("invalid deflate stream from the client; closing")
                self.abort()
                return
        self._events.extend(self.framer.feed(data))
        self._watch_command(len(data))
        self._maybe_pause()
        self._wake()

    def _watch_command(self, received: int) -> None:
        """Start, restart or stop the per-command deadline (module docstring)."""
        if self._command_timeout is None or self._lost:
            return
        if not self.framer.in_command:
            self._stop_command_timer()
            return
        if self._command_timer is not None:
            self._command_progress += received
            if self._command_progress < PROGRESS_OCTETS:
                return
            self._command_timer.cancel()
        self._command_progress = 0
        loop = asyncio.get_running_loop()
        self._command_timer = loop.call_later(self._command_timeout, self._command_expired)

    def _stop_command_timer(self) -> None:
        if self._command_timer is not None:
            self._command_timer.cancel()
            self._command_timer = None

    def _command_expired(self) -> None:
        self._command_timer = None
        if not self.framer.in_command or self._lost:
            return
        if not self._reading or self._events:
            self._watch_command(0)  # the session is busy: not the client's fault (yet)
            return
        log.info("command not completed within %ss; closing", self._command_timeout)
        self.write(b"* BYE Command not completed in time\r\n")
        self.framer.close()
        self.close()
        self._wake()

    def eof_received(self) -> bool | None:
        self._eof = True
        self._wake()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        self._stop_command_timer()
        self._wake()
        if self._drain_waiter is not None and not self._drain_waiter.done():
            self._drain_waiter.set_result(None)
        self.closed.set()

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        if self._drain_waiter is not None and not self._drain_waiter.done():
            self._drain_waiter.set_result(None)

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _maybe_pause(self) -> None:
        busy = (
            len(self._events) > MAX_QUEUED_EVENTS
            or self.framer.pending_bytes() > MAX_PENDING_OCTETS
        )
        if busy and not self._read_paused and self._transport is not None:
            self._read_paused = True
            self._transport.pause_reading()

    def _maybe_resume(self) -> None:
        if (
            self._read_paused
            and len(self._events) <= MAX_QUEUED_EVENTS // 2
            and self.framer.pending_bytes() <= MAX_PENDING_OCTETS // 2
            and self._transport is not None
            and not self.framer.paused
        ):
            self._read_paused = False
            self._transport.resume_reading()

    # --- state --------------------------------------------------------------------------------

    @property
    def tls_active(self) -> bool:
        return self._tls

    @property
    def compressed(self) -> bool:
        return self._deflater is not None

    @property
    def is_closing(self) -> bool:
        return self._lost or self._transport is None or self._transport.is_closing()

    # --- input --------------------------------------------------------------------------------

    def has_event(self) -> bool:
        return bool(self._events)

    async def next_event(self, within: float | None) -> Event:
        """The next framer event, waiting at most ``within`` seconds (None: no limit).

        Raises:
            TimeoutError: nothing arrived in time.
            ConnectionClosedError: the client is gone (or the framer stopped).
            ServiceClosingError: the server is shutting down.
        """
        self._reading = True
        try:
            return await self._next_event(within)
        finally:
            self._reading = False

    async def _next_event(self, within: float | None) -> Event:
        async with asyncio.timeout(within):
            while True:
                if self._closing_service:
                    raise ServiceClosingError
                if self._events:
                    event = self._events.popleft()
                    self._maybe_resume()
                    return event
                if self._eof or self._lost or self.framer.closed:
                    raise ConnectionClosedError
                self._waiter = asyncio.get_running_loop().create_future()
                try:
                    await self._waiter
                finally:
                    self._waiter = None

    async def wait_readable(self) -> None:
        """Return when an event is queued, the connection ends or the service closes."""
        self._reading = True
        try:
            await self._wait_readable()
        finally:
            self._reading = False

    async def _wait_readable(self) -> None:
        while not (
            self._events or self._eof or self._lost or self._closing_service or self.framer.closed
        ):
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None

    # --- output -------------------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        if self._transport is None or self._lost or self._transport.is_closing():
            return
        if self._deflater is not None:
            data = self._deflater.compress(data) + self._deflater.flush(zlib.Z_SYNC_FLUSH)
        self._transport.write(data)

    async def drain(self) -> None:
        """Wait while the transport's buffer is above its high-water mark."""
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

    @property
    def can_sendfile(self) -> bool:
        """``loop.sendfile`` makes sense: a plain, uncompressed socket."""
        return not self._tls and self._deflater is None and self._transport is not None

    async def sendfile(self, fd: int, offset: int, count: int) -> None:
        """Send ``count`` octets of the open file ``fd`` from ``offset`` (zero-copy where the
        loop supports it). Raises NotImplementedError when the loop lacks ``sendfile``
        (uvloop); the writer then falls back to reads."""
        if self._transport is None or self._lost:
            raise ConnectionClosedError
        loop = asyncio.get_running_loop()
        with os.fdopen(os.dup(fd), "rb") as f:
            try:
                await loop.sendfile(self._transport, f, offset, count)
            except (ConnectionError, OSError) as exc:
                if self._lost:
                    raise ConnectionClosedError from exc
                raise

    # --- TLS and compression ------------------------------------------------------------------

    async def start_tls(self, context: ssl.SSLContext) -> None:
        """Upgrade to TLS; the caller has checked that no plaintext is pending."""
        if self._transport is None or self._lost:
            raise ConnectionClosedError
        if self.framer.pending_bytes():
            raise RuntimeError("start_tls with unread plaintext: refuse it in the session")
        loop = asyncio.get_running_loop()
        try:
            transport = await loop.start_tls(
                self._transport,
                self,
                context,
                server_side=True,
                ssl_handshake_timeout=self._handshake_timeout,
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
        self._read_paused = False
        self._events.extend(self.framer.resume())

    def resume_framing(self) -> None:
        """Continue framing after a refused barrier command (STARTTLS, COMPRESS)."""
        self._events.extend(self.framer.resume())
        self._maybe_resume()

    def start_compression(self) -> None:
        """COMPRESS=DEFLATE (RFC 4978): raw deflate both ways from now on; octets the client
        sent after the command are already compressed and go through the inflater."""
        self._deflater = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -15)
        self._inflater = zlib.decompressobj(-15)
        pending = self.framer.take_pending()
        if pending:
            self.data_received(pending)
        self._maybe_resume()

    # --- closing ------------------------------------------------------------------------------

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    def notify_closing(self) -> None:
        self._closing_service = True
        self._wake()

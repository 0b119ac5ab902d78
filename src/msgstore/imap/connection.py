"""One IMAP client connection: an ``asyncio.Protocol`` that feeds the sans-I/O framer.

Received octets go straight into :class:`~msgstore.imap.framer.Framer` (after the inflater
once COMPRESS=DEFLATE is active); the framer's events queue up here and the session takes
them one at a time with :meth:`ImapConnection.next_event`. Reading pauses while more than
:data:`MAX_QUEUED_EVENTS` events wait or the framer holds more than
:data:`MAX_PENDING_OCTETS` unframed octets, so a client that pipelines thousands of commands
is throttled instead of buffered (RELIABILITY.md §7 case 13).

The transport plumbing (pausing and resuming reads, :meth:`write` plus :meth:`drain` with
backpressure from the transport's high-water mark, the TLS upgrade, service shutdown) is
:class:`~msgstore.net.stream.StreamConnection`'s; this class adds the framer, COMPRESS and
:meth:`sendfile` for message bodies on plain sockets.

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

**Output cap and deadline** (RELIABILITY.md §7 case 13): what a session has produced and the
client has not read is bounded -- the writer's buffer (``writer.FLUSH_OCTETS``) plus the
transport's high-water mark, plus the kernel's socket buffer -- because long commands wait in
:meth:`drain` (through ``ResponseWriter.pace``) whenever the transport is over its high-water
mark. While a session waits there it reads no further commands, so a pipelining client that
does not read its replies is stopped on both sides. A wait that sees no progress for
``[imap] output_timeout`` closes the connection (log: "output not read"); ``sendfile`` goes out
in pieces of :data:`SENDFILE_PIECE_OCTETS`, each under the same deadline.
"""

from __future__ import annotations

import asyncio
import logging
import os
import zlib
from collections.abc import Callable
from typing import Final

from msgstore.imap.framer import Event, Framer
from msgstore.net.stream import ConnectionClosedError, ServiceClosingError, StreamConnection

log = logging.getLogger(__name__)

#: Framer events held before reading pauses.
MAX_QUEUED_EVENTS: Final = 64
#: Unframed octets held before reading pauses (above one maximal command line).
MAX_PENDING_OCTETS: Final = 256 * 1024
#: Octets of a command whose arrival restarts the per-command deadline.
PROGRESS_OCTETS: Final = 64 * 1024
#: ``sendfile`` piece: each must be taken by the client within the output deadline.
SENDFILE_PIECE_OCTETS: Final = 1024 * 1024


class ImapConnection(StreamConnection):
    """See the module docstring; transport, backpressure and TLS are ``net/stream.py``'s."""

    def __init__(
        self,
        framer: Framer,
        *,
        implicit_tls: bool,
        tls_handshake_timeout: float,
        command_timeout: float | None = None,
        output_timeout: float | None = None,
        on_made: Callable[[ImapConnection], None] | None = None,
    ) -> None:
        super().__init__(
            implicit_tls=implicit_tls, tls_handshake_timeout=tls_handshake_timeout, on_made=on_made
        )
        self.framer = framer
        self._command_timeout = command_timeout
        self._output_timeout = output_timeout
        self._command_timer: asyncio.TimerHandle | None = None
        self._command_progress = 0
        self._reading = False
        # A list, not a deque: at most MAX_QUEUED_EVENTS (plus one read) wait here, and an
        # empty list is 56 octets where an empty deque is over 600 (thousands idle at once).
        self._events: list[Event] = []
        self._inflater: zlib._Decompress | None = None
        self._deflater: zlib._Compress | None = None

    # --- StreamConnection ---------------------------------------------------------------------

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
        self.maybe_pause_reading()
        self.wake_reader()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_command_timer()
        super().connection_lost(exc)

    def pending_input(self) -> int:
        """Octets the framer holds after the last complete command (STARTTLS check)."""
        return self.framer.pending_bytes()

    def _input_over_limit(self) -> bool:
        return (
            len(self._events) > MAX_QUEUED_EVENTS
            or self.framer.pending_bytes() > MAX_PENDING_OCTETS
        )

    def _input_drained(self) -> bool:
        return (
            len(self._events) <= MAX_QUEUED_EVENTS // 2
            and self.framer.pending_bytes() <= MAX_PENDING_OCTETS // 2
            and not self.framer.paused
        )

    def _outgoing(self, data: bytes) -> bytes:
        if self._deflater is not None:
            return self._deflater.compress(data) + self._deflater.flush(zlib.Z_SYNC_FLUSH)
        return data

    def _tls_started(self) -> None:
        self._events.extend(self.framer.resume())

    # --- per-command deadline -----------------------------------------------------------------

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
        self.wake_reader()

    # --- state --------------------------------------------------------------------------------

    @property
    def compressed(self) -> bool:
        return self._deflater is not None

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
                if self.service_closing:
                    raise ServiceClosingError
                if self._events:
                    event = self._events.pop(0)
                    self.maybe_resume_reading()
                    return event
                if self.at_end or self.framer.closed:
                    raise ConnectionClosedError
                await self.wait_input()

    @property
    def readable(self) -> bool:
        """An event is queued, the connection ended or the service is closing."""
        return bool(self._events or self.at_end or self.service_closing or self.framer.closed)

    def notify_readable(self, waiter: asyncio.Future[None]) -> None:
        """Complete ``waiter`` at the next input, EOF, loss or service close -- IDLE's way to
        wait for the client without a task of its own (at once if :attr:`readable`). Undo
        with :meth:`forget_waiter`."""
        if self.readable:
            if not waiter.done():
                waiter.set_result(None)
            return
        self._reading = True
        self._data_waiter = waiter

    def forget_waiter(self, waiter: asyncio.Future[None]) -> None:
        if self._data_waiter is waiter:
            self._data_waiter = None
        self._reading = False

    async def wait_readable(self) -> None:
        """Return when an event is queued, the connection ends or the service closes."""
        self._reading = True
        try:
            while not self.readable:
                await self.wait_input()
        finally:
            self._reading = False

    # --- output -------------------------------------------------------------------------------

    @property
    def output_waiting(self) -> bool:
        """The transport holds more than its high-water mark: the client is behind."""
        return self._write_paused

    async def drain(self) -> None:
        """:meth:`StreamConnection.drain` under the output deadline (module docstring).

        Raises:
            ConnectionClosedError: the connection is gone, or was closed at the deadline.
        """
        if not self._write_paused or self._output_timeout is None:
            await super().drain()
            return
        try:
            async with asyncio.timeout(self._output_timeout):
                await super().drain()
        except TimeoutError:
            self._output_expired()
            raise ConnectionClosedError from None

    def _output_expired(self) -> None:
        log.info("output not read by the client within %ss; closing", self._output_timeout)
        self.framer.close()
        self.abort()
        self.wake_reader()

    @property
    def can_sendfile(self) -> bool:
        """``loop.sendfile`` makes sense: a plain, uncompressed socket, on a loop that has it
        (uvloop does not: MagicStack/uvloop#228)."""
        return (
            not self._tls
            and self._deflater is None
            and self._transport is not None
            and _loop_has_sendfile(asyncio.get_running_loop())
        )

    async def sendfile(self, fd: int, offset: int, count: int) -> None:
        """Send ``count`` octets of the open file ``fd`` from ``offset`` (zero-copy where the
        loop supports it). Raises NotImplementedError when the loop lacks ``sendfile``
        (uvloop); the writer then falls back to reads."""
        if self._transport is None or self._lost:
            raise ConnectionClosedError
        loop = asyncio.get_running_loop()
        with os.fdopen(os.dup(fd), "rb") as f:
            end = offset + count
            while offset < end:
                piece = min(SENDFILE_PIECE_OCTETS, end - offset)
                try:
                    async with asyncio.timeout(self._output_timeout):
                        await loop.sendfile(self._transport, f, offset, piece)
                except TimeoutError:
                    self._output_expired()
                    raise ConnectionClosedError from None
                except (ConnectionError, OSError) as exc:
                    if self._lost:
                        raise ConnectionClosedError from exc
                    raise
                offset += piece

    # --- barriers and compression -------------------------------------------------------------

    def resume_framing(self) -> None:
        """Continue framing after a refused barrier command (STARTTLS, COMPRESS)."""
        self._events.extend(self.framer.resume())
        self.maybe_resume_reading()

    def start_compression(self) -> None:
        """COMPRESS=DEFLATE (RFC 4978): raw deflate both ways from now on; octets the client
        sent after the command are already compressed and go through the inflater."""
        self._deflater = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -15)
        self._inflater = zlib.decompressobj(-15)
        pending = self.framer.take_pending()
        if pending:
            self.data_received(pending)
        self.maybe_resume_reading()


def _loop_has_sendfile(loop: asyncio.AbstractEventLoop) -> bool:
    """False for a loop that keeps ``AbstractEventLoop.sendfile`` (NotImplementedError)."""
    return type(loop).sendfile is not asyncio.AbstractEventLoop.sendfile

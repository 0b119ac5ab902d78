"""One client connection of a line protocol, and the service that accepts them.

POP3, poppassd, LMTP and SMTP are written against :class:`Connection`: a
:class:`~msgstore.net.stream.StreamConnection` (transport, backpressure, TLS upgrade, service
shutdown) whose input buffer is a :class:`~msgstore.net.linereader.LineReader`. A session is
one coroutine ``handler(conn)`` that reads lines and writes replies::

    service = await LineService.start(name, listeners, handler, tls=context, limits=...)
    ...
    await service.close()          # stop accepting; sessions see ServiceClosingError; then abort

Input:

- :meth:`Connection.read_line` returns one line (bytes, no terminator) or ``TOO_LONG``; it
  raises :class:`ConnectionClosedError` when the peer is gone, :class:`TimeoutError` when no
  complete line arrived within the deadline (the deadline covers the whole line, so a client
  dripping one octet every few seconds is closed too: RELIABILITY.md §7 case 19), and
  :class:`ServiceClosingError` when the server shuts down.
- :meth:`Connection.read_chunk` returns raw received octets instead (LMTP/SMTP message data,
  where the DATA decoder must see every CR and LF exactly as sent: the line reader would fold
  a bare LF into a line end, which is what SMTP smuggling exploits), and
  :meth:`Connection.unread` gives back octets read past the end of a message, to be framed as
  the next command lines.
- At most ``max_buffered_octets`` of received data is held; beyond it the transport stops
  reading until the session consumes lines (a pipelining client is throttled, not buffered).

Output: :meth:`Connection.write` queues a reply; what a session writes before it next yields
to the event loop leaves in one send (the replies to a pipelined batch of commands, the
pieces of a RETR), and :meth:`Connection.drain` hands it over early once
:data:`FLUSH_OCTETS` have collected, then waits while the client does not keep up (see
``net/stream.py``).

Cost per command matters here (a POP3 download is a few thousand of them): a line already
buffered is returned without waiting, and the read deadline is kept by one timer per
connection that is re-armed only when it fires (not one ``asyncio.timeout`` per line).

TLS: :meth:`Connection.start_tls` upgrades in place (STLS/STARTTLS). The caller must first check
:meth:`Connection.pending_input` and refuse when the client pipelined anything behind the
command.
"""

from __future__ import annotations

import asyncio
import math
import ssl
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Final, TypeVar

from msgstore.net.linereader import LineEvent, LineReader
from msgstore.net.listener import Listener
from msgstore.net.stream import ConnectionClosedError as ConnectionClosedError
from msgstore.net.stream import ServiceClosingError as ServiceClosingError
from msgstore.net.stream import StreamConnection, StreamService

#: Most octets one :meth:`Connection.read_chunk` returns.
CHUNK_OCTETS: Final = 256 * 1024
#: Octets of replies collected before :meth:`Connection.drain` hands them to the transport
#: (and waits for the client to keep up) without waiting for the session to yield.
FLUSH_OCTETS: Final = 64 * 1024


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


_T = TypeVar("_T")


class Connection(StreamConnection):
    """A client connection: lines (or raw chunks) in, bytes out, TLS upgrade. See the module
    docstring."""

    def __init__(
        self,
        limits: ConnectionLimits,
        *,
        implicit_tls: bool,
        on_made: Callable[[Connection], None] | None = None,
    ) -> None:
        super().__init__(
            implicit_tls=implicit_tls,
            tls_handshake_timeout=limits.tls_handshake_timeout,
            on_made=on_made,
        )
        self._limits = limits
        self._reader = LineReader(limits.max_line_octets)
        # The read deadline (loop time; inf while no read waits) and the one timer that
        # enforces it: re-armed only when it fires early or a read needs an earlier deadline.
        self._deadline = math.inf
        self._timer: asyncio.TimerHandle | None = None
        # Replies written and not yet handed to the transport (see write()).
        self._out: list[bytes] = []
        self._out_octets = 0
        #: Set by a session that only ever waits for input with replies pending (POP3):
        #: replies are handed over when it next waits to read, closes, or calls
        #: :meth:`flush`, instead of by a callback scheduled at the first write, which
        #: saves an event-loop iteration per command. See :meth:`write`.
        self.flush_on_read = False

    # --- StreamConnection ---------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        reader = self._reader
        reader.feed(data)
        if reader.pending() > self._limits.max_buffered_octets:
            self.maybe_pause_reading()
        waiter = self._data_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        super().connection_lost(exc)

    def pending_input(self) -> int:
        """Octets received after the last line handed out (plaintext-injection check)."""
        return self._reader.pending()

    def _input_over_limit(self) -> bool:
        return self._reader.pending() > self._limits.max_buffered_octets

    def _input_drained(self) -> bool:
        return self._reader.pending() <= self._limits.max_buffered_octets // 2

    # --- output -------------------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        """Queue octets for the client.

        They reach the transport when the session next yields to the event loop (waiting for
        input, for the store, in :meth:`drain`), or in :meth:`drain` once
        :data:`FLUSH_OCTETS` have collected: the replies to the commands of one pipelined
        batch leave in one send, as Dovecot's corked output does. With
        :attr:`flush_on_read`, "yields" is narrowed to "waits for input" (a read, or
        :meth:`close`); :meth:`flush` hands them over earlier.
        """
        if not data or self._lost:
            return
        out = self._out
        if not out and not self.flush_on_read:
            asyncio.get_running_loop().call_soon(self._flush)
        out.append(data)
        self._out_octets += len(data)

    def flush(self) -> None:
        """Hand the replies written so far to the transport now."""
        if self._out:
            self._flush()

    def _flush(self) -> None:
        out = self._out
        if out:
            self._out = []
            self._out_octets = 0
            if len(out) == 1:
                super().write(out[0])
            else:
                self.writelines(out)

    @property
    def must_drain(self) -> bool:
        """True when :meth:`drain` has something to do: hand over :data:`FLUSH_OCTETS` of
        collected replies, wait for a client that does not keep up, or report the connection
        gone. A session can skip the call (a coroutine per command) otherwise."""
        return self._out_octets >= FLUSH_OCTETS or self._write_paused or self._lost

    async def drain(self) -> None:
        if self._out_octets >= FLUSH_OCTETS:
            self._flush()
        if self._write_paused or self._lost:
            await super().drain()

    async def start_tls(self, context: ssl.SSLContext) -> None:
        self._flush()  # the reply to STLS/STARTTLS goes out in plaintext
        await super().start_tls(context)

    def close(self) -> None:
        self._flush()
        super().close()

    def abort(self) -> None:
        self._out.clear()
        self._out_octets = 0
        super().abort()

    # --- input --------------------------------------------------------------------------------

    async def read_line(self, within: float) -> bytes | LineEvent:
        """The next line or ``TOO_LONG``, complete within ``within`` seconds.

        See the module docstring for what it raises. The wait is written out here rather
        than through :meth:`_wait_for`: this runs once per command of every line protocol,
        and each coroutine layer between the session and the future costs a frame on every
        call and every resumption.
        """
        reader = self._reader
        if not self._closing_service:
            line = reader.next_line()
            if line is not None:  # already buffered (a pipelining client): no deadline, no wait
                if self._read_paused:
                    self.maybe_resume_reading()
                self.live.command()
                return line
        if self._out:
            self._flush()
        loop = asyncio.get_running_loop()
        deadline = self._arm_deadline(loop, within)
        try:
            while True:
                if self._closing_service:
                    raise ServiceClosingError
                if self._eof or self._lost:
                    raise ConnectionClosedError
                if loop.time() >= deadline:
                    raise TimeoutError(f"no complete line within {within:g}s")
                waiter = self._data_waiter = loop.create_future()
                try:
                    await waiter
                finally:
                    self._data_waiter = None
                if self._closing_service:
                    raise ServiceClosingError
                line = reader.next_line()
                if line is not None:
                    if self._read_paused:
                        self.maybe_resume_reading()
                    self.live.command()
                    return line
        finally:
            self._deadline = math.inf

    async def read_chunk(self, within: float, limit: int = CHUNK_OCTETS) -> bytes:
        """Between 1 and ``limit`` received octets, within ``within`` seconds.

        Raises ConnectionClosedError, TimeoutError, ServiceClosingError like ``read_line``.
        """
        if limit < 1:
            raise ValueError("limit must be at least 1")

        def take() -> bytes | None:
            if not self._reader.pending():
                return None
            data = self._reader.take_pending()
            if len(data) > limit:
                self._reader.feed(data[limit:])
                data = data[:limit]
            return data

        try:
            return await self._read(within, take)
        except TimeoutError:
            raise TimeoutError(f"no data within {within:g}s") from None

    def unread(self, data: bytes) -> None:
        """Give back octets read past the end of a message: they are read again first."""
        if data:
            later = self._reader.take_pending()
            self._reader.feed(data + later)

    async def _read(self, within: float, take: Callable[[], _T | None]) -> _T:
        """The first non-None ``take()``, waiting for input in between, until ``within``
        seconds from now (TimeoutError)."""
        item = None if self.service_closing else take()
        if item is not None:
            self.maybe_resume_reading()
            return item
        return await self._wait_for(within, take)

    async def _wait_for(self, within: float, take: Callable[[], _T | None]) -> _T:
        """:meth:`_read` once ``take()`` has returned None: wait for input, then take again.

        The deadline is enforced by one timer per connection, not one per read: a read only
        stamps its deadline, and the timer, when it fires, either wakes the read (its deadline
        has passed) or is set again for the deadline of the read waiting now. So a session
        reading thousands of commands arms the timer about once per timeout period.
        """
        if self._out:
            self._flush()
        loop = asyncio.get_running_loop()
        deadline = self._arm_deadline(loop, within)
        try:
            while True:
                if self.service_closing:
                    raise ServiceClosingError
                if self.at_end:
                    raise ConnectionClosedError
                if loop.time() >= deadline:
                    raise TimeoutError
                await self.wait_input()
                if self.service_closing:
                    raise ServiceClosingError
                item = take()
                if item is not None:
                    self.maybe_resume_reading()
                    return item
        finally:
            self._deadline = math.inf

    def _arm_deadline(self, loop: asyncio.AbstractEventLoop, within: float) -> float:
        """Stamp the deadline of the read about to wait (``within`` seconds from now) and
        make sure the timer fires by then; returns the deadline."""
        deadline = loop.time() + within
        self._deadline = deadline
        timer = self._timer
        if timer is None or timer.when() > deadline:
            if timer is not None:
                timer.cancel()
            self._timer = loop.call_at(deadline, self._deadline_passed)
        return deadline

    def _deadline_passed(self) -> None:
        """The timer fired: wake a read whose deadline has come (it raises TimeoutError),
        or wait on for the deadline of the read now waiting, if any."""
        self._timer = None
        deadline = self._deadline
        if deadline == math.inf:
            return  # no read is waiting; the next one arms the timer again
        loop = asyncio.get_running_loop()
        if loop.time() >= deadline:
            self.wake_reader()
        else:
            self._timer = loop.call_at(deadline, self._deadline_passed)

    @property
    def max_line_octets(self) -> int:
        return self._reader.max_line_octets

    @max_line_octets.setter
    def max_line_octets(self, value: int) -> None:
        """Change the line limit for the lines to come (SASL responses may be longer)."""
        self._reader.max_line_octets = value


Handler = Callable[[Connection], Awaitable[None]]


class LineService(StreamService[Connection]):
    """Accept connections on some listeners and run ``handler`` once per connection."""

    def __init__(
        self,
        name: str,
        handler: Handler,
        limits: ConnectionLimits,
        *,
        on_close: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(name, on_close=on_close)
        self._handler = handler
        self._limits = limits

    @classmethod
    async def start(
        cls,
        name: str,
        listeners: Sequence[Listener],
        handler: Handler,
        *,
        limits: ConnectionLimits,
        tls: ssl.SSLContext | None,
        on_close: Callable[[], None] | None = None,
    ) -> LineService:
        """Start accepting on every listener (``implicit_tls`` ones need ``tls``).

        ``on_close`` runs when the service has closed, also when starting fails.
        """
        service = cls(name, handler, limits, on_close=on_close)
        try:
            await service.listen(
                listeners, tls=tls, tls_handshake_timeout=limits.tls_handshake_timeout
            )
        except BaseException:
            await service.close()
            raise
        return service

    def _connection(self, implicit_tls: bool, on_made: Callable[[Connection], None]) -> Connection:
        return Connection(self._limits, implicit_tls=implicit_tls, on_made=on_made)

    async def _serve(self, conn: Connection) -> None:
        await self._handler(conn)

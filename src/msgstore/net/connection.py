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

Output: :meth:`Connection.write` and :meth:`Connection.drain` (see ``net/stream.py``).

TLS: :meth:`Connection.start_tls` upgrades in place (STLS/STARTTLS). The caller must first check
:meth:`Connection.pending_input` and refuse when the client pipelined anything behind the
command.
"""

from __future__ import annotations

import asyncio
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

    # --- StreamConnection ---------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        self._reader.feed(data)
        self.maybe_pause_reading()
        self.wake_reader()

    def pending_input(self) -> int:
        """Octets received after the last line handed out (plaintext-injection check)."""
        return self._reader.pending()

    def _input_over_limit(self) -> bool:
        return self._reader.pending() > self._limits.max_buffered_octets

    def _input_drained(self) -> bool:
        return self._reader.pending() <= self._limits.max_buffered_octets // 2

    # --- input --------------------------------------------------------------------------------

    async def read_line(self, within: float) -> bytes | LineEvent:
        """The next line or ``TOO_LONG``, complete within ``within`` seconds.

        See the module docstring for what it raises.
        """
        try:
            line: bytes | LineEvent = await self._read(within, self._reader.next_line)
        except TimeoutError:
            raise TimeoutError(f"no complete line within {within:g}s") from None
        self.live.command()
        return line

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
        """The first non-None ``take()``, waiting for input in between."""
        async with asyncio.timeout(within):
            while True:
                if self.service_closing:
                    raise ServiceClosingError
                item = take()
                if item is not None:
                    self.maybe_resume_reading()
                    return item
                if self.at_end:
                    raise ConnectionClosedError
                await self.wait_input()

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

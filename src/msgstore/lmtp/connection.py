"""The LMTP/SMTP connection: the line connection of ``net/``, plus raw reads for message data.

Commands are lines (:meth:`Connection.read_line`); the message after DATA and the chunks after
BDAT are raw octets, read with :meth:`ChannelConnection.read_chunk` so that the DATA decoder
sees every CR and LF exactly as sent (the line reader would fold a bare LF into a line end,
which is what SMTP smuggling exploits). Octets read past the end of the message are given
back with :meth:`ChannelConnection.unread` and framed as the next command lines.
"""

from __future__ import annotations

import asyncio
from typing import Final

from msgstore.net.connection import (
    Connection,
    ConnectionClosedError,
    ConnectionLimits,
    Handler,
    LineService,
    ServiceClosingError,
)

#: Most octets one raw read returns.
CHUNK_OCTETS: Final = 256 * 1024


class ChannelConnection(Connection):
    """A :class:`~msgstore.net.connection.Connection` that can also hand out raw octets."""

    async def read_chunk(self, within: float, limit: int = CHUNK_OCTETS) -> bytes:
        """Between 1 and ``limit`` received octets, within ``within`` seconds.

        Raises ConnectionClosedError, TimeoutError, ServiceClosingError like ``read_line``.
        """
        if limit < 1:
            raise ValueError("limit must be at least 1")
        try:
            async with asyncio.timeout(within):
                while True:
                    if self._closing_service:
                        raise ServiceClosingError
                    if self._reader.pending():
                        data = self._reader.take_pending()
                        if len(data) > limit:
                            self._reader.feed(data[limit:])
                            data = data[:limit]
                        self._maybe_resume_reading()
                        return data
                    if self._eof or self._lost:
                        raise ConnectionClosedError
                    self._data_waiter = asyncio.get_running_loop().create_future()
                    try:
                        await self._data_waiter
                    finally:
                        self._data_waiter = None
        except TimeoutError:
            raise TimeoutError(f"no data within {within:g}s") from None

    def unread(self, data: bytes) -> None:
        """Give back octets read past the end of a message: they are read again first."""
        if data:
            later = self._reader.take_pending()
            self._reader.feed(data + later)


class ChannelService(LineService):
    """A :class:`~msgstore.net.connection.LineService` whose connections are
    :class:`ChannelConnection`."""

    def _accept(self, handler: Handler, limits: ConnectionLimits, implicit: bool) -> Connection:
        def made(conn: Connection) -> None:
            task = asyncio.get_running_loop().create_task(self._run(conn, handler))
            self._sessions[conn] = task

        return ChannelConnection(limits, implicit_tls=implicit, on_made=made)

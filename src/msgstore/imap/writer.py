"""ResponseWriter: every octet the server sends goes through here.

- **Buffered**: responses collect in one ``bytearray`` and go to the transport when it passes
  :data:`FLUSH_OCTETS` or at :meth:`ResponseWriter.flush` (end of a command, before waiting
  for the client). A FETCH of many messages is therefore written in pieces, never as one
  ``bytes``, and :meth:`flush` waits on the transport's ``drain`` so a client that does not
  read stops the server from producing more (STYLE.md §4.5).
- **Typed responses, encoded here**: :meth:`send` encodes values of ``syntax.responses`` in
  the session's mode: :attr:`utf8` is set once the client enabled UTF8=ACCEPT or IMAP4rev2,
  and decides between UTF-8 and modified UTF-7 mailbox names; handlers never decide.
- **Literals from the store** (:meth:`literal_from`): the ``{n}`` header, then the byte range
  of a :class:`~msgstore.storage.base.BodyReader`. On a plain socket the range goes out with
  ``loop.sendfile`` (zero copy); on TLS or COMPRESS, or under a loop without ``sendfile``
  (uvloop: ``ImapConnection.can_sendfile`` is False there, and a NotImplementedError is
  still caught), it is read in chunks with ``pread`` and written with ``drain()`` between
  chunks.
- **The output cap** (RELIABILITY.md §7 case 13): a command that writes many responses calls
  :meth:`ResponseWriter.pace` between them; once the transport is over its high-water mark it
  waits there for the client (under ``[imap] output_timeout``, see ``connection.py``), so what
  one session holds unsent is at most :data:`FLUSH_OCTETS` here plus the transport's buffer.
"""

from __future__ import annotations

import logging
from typing import Final, Protocol

from msgstore.imap.connection import ImapConnection
from msgstore.storage.base import BodyReader

log = logging.getLogger(__name__)

#: Buffered output pushed to the transport beyond this size.
FLUSH_OCTETS: Final = 64 * 1024
#: Literal ranges up to this size are read and buffered; larger ones stream.
INLINE_LITERAL_OCTETS: Final = 16 * 1024
#: Literal ranges from this size use sendfile on a plain socket.
SENDFILE_MIN_OCTETS: Final = 64 * 1024


class Encodable(Protocol):
    def encode(self, utf8: bool = False) -> bytes: ...


class ResponseWriter:
    """See the module docstring."""

    __slots__ = ("_buf", "_conn", "utf8")

    def __init__(self, conn: ImapConnection) -> None:
        self._conn = conn
        self._buf = bytearray()
        self.utf8 = False

    def send(self, response: Encodable) -> None:
        """Queue a typed response (status, untagged data, continuation)."""
        self.write(response.encode(self.utf8))

    def write(self, data: bytes) -> None:
        """Queue raw octets (FETCH responses are assembled by their handler)."""
        self._buf += data
        if len(self._buf) >= FLUSH_OCTETS:
            self._push()

    def _push(self) -> None:
        if self._buf:
            self._conn.write(bytes(self._buf))
            self._buf.clear()

    async def pace(self) -> None:
        """Between the responses of a long command: wait for the client while it is behind
        (module docstring). Costs nothing while the client keeps up."""
        if self._conn.output_waiting:
            await self.flush()

    async def flush(self) -> None:
        """Hand everything queued to the transport and wait for its buffer to drain."""
        self._push()
        await self._conn.drain()

    async def literal_from(
        self, body: BodyReader, offset: int, length: int, *, binary: bool = False
    ) -> None:
        """Write ``{length}CRLF`` (``~{length}`` for literal8) and ``length`` octets of
        ``body`` from ``offset``. The caller made sure the range lies within the body."""
        self.write((b"~" if binary else b"") + b"{%d}\r\n" % length)
        if length <= INLINE_LITERAL_OCTETS:
            self.write(await body.read(offset, length))
            return
        await self.flush()
        fd = body.fileno()
        if length >= SENDFILE_MIN_OCTETS and fd >= 0 and self._conn.can_sendfile:
            try:
                await self._conn.sendfile(fd, offset, length)
                return
            except NotImplementedError:
                log.debug("loop has no sendfile; streaming with reads")
        async for chunk in body.chunks(offset, length):
            self._conn.write(chunk)
            await self._conn.drain()

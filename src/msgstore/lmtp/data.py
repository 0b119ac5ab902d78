"""Message data after DATA (RFC 5321 §4.5.2) and BDAT (RFC 3030), streamed into staging.

:class:`DotDecoder` is sans-I/O: it takes raw octets as they arrive and returns the message
octets, dot-unstuffed, plus whatever followed the end. Only ``CRLF . CRLF`` ends the data --
the first line counts as following a CRLF (the one of the DATA command). In particular
``LF . LF``, ``CR . CR``, ``LF . CRLF`` and ``CRLF . LF`` do not (SMTP smuggling,
CVE-2023-51764/5/6, CVE-2024-27305): a dot is special only at the start of a line that began
after a CRLF.

**Bare CR and bare LF are refused.** A CR not followed by LF, or an LF not preceded by CR,
anywhere in DATA marks the message bad; the data is read to its real end and every recipient
gets ``550 5.6.0`` (RFC 5321 §2.3.8: CR and LF occur only together). A NUL octet is refused
the same way. Postfix does the same since 3.9 (``smtpd_forbid_bare_newline``). Refusing, rather
than normalising, means a message whose end another server would have read elsewhere is never
stored here in a shape its sender did not mean. BDAT carries octets counted by the client, so
there is no end marker to smuggle; its content is stored as sent (the store normalises line
ends to CRLF).

:class:`DataSource` and :class:`BdatSource` are the async iterables the delivery pipeline
reads; the message is never held whole in memory.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Awaitable, Callable
from typing import Final

from msgstore.core.errors import ErrorKind, StoreError
from msgstore.net.connection import Connection

_CR: Final = 0x0D
_LF: Final = 0x0A
_DOT: Final = 0x2E


class _At(enum.Enum):
    LINE_START = 0  # after CRLF: a dot here is special
    DOT = 1  # a dot at the start of a line
    DOT_CR = 2  # ".\r" at the start of a line: LF ends the data
    MIDDLE = 3  # inside a line (or after a bare LF: no dot handling there)
    CR = 4  # inside a line, the last octet was CR


class Problem(enum.Enum):
    BARE_CR = "Message contains a bare CR (CR not followed by LF)"
    BARE_LF = "Message contains a bare LF (LF not preceded by CR)"
    NUL = "Message contains a NUL octet"


class DotDecoder:
    """Decode DATA octets; see the module docstring."""

    __slots__ = ("_at", "done", "octets", "problem")

    def __init__(self) -> None:
        self._at = _At.LINE_START
        self.done = False
        self.problem: Problem | None = None
        self.octets = 0  # message octets produced

    def _flag(self, problem: Problem) -> None:
        if self.problem is None:
            self.problem = problem

    def feed(self, data: bytes) -> tuple[bytes, bytes]:
        """Decode ``data``: (message octets, octets after the end -- only once ``done``).

        Whole lines are decoded in bulk (``bytes.find``/``count``/``replace`` over the chunk)
        when they hold no problem; the octet-exact state machine (:meth:`_feed_exact`) takes
        a partial last line, a chunk starting in the middle of an end marker or of a CRLF,
        and any chunk with a problem (so the first problem is the one reported). Both give
        the same octets, end and problem for any split of the input.
        """
        if self.done:
            return b"", data
        at = self._at
        if not data or (at is not _At.LINE_START and at is not _At.MIDDLE):
            return self._feed_exact(data)
        # A line start counts as following a CRLF: decode as if the chunk came after one.
        start = b"\r\n" if at is _At.LINE_START else b""
        text = start + data if start else bytes(data)
        # One search finds the first line that starts with a dot: usually the end marker.
        first = text.find(b"\r\n.")
        stuffed = first >= 0 and not text.startswith(b"\r\n", first + 3)
        end = text.find(b"\r\n.\r\n", first) if stuffed else first
        if end >= 0:
            body = text[: end + 2]  # up to the CRLF that ends the last line
        else:
            last = text.rfind(b"\n") + 1
            if last <= len(start):  # no line end in this chunk
                return self._feed_exact(data)
            body = text[:last]
        crlf = body.count(b"\r\n")
        if body.count(b"\n") != crlf or body.count(b"\r") != crlf or b"\0" in body:
            return self._feed_exact(data)  # bare CR, bare LF or NUL: the exact path finds it
        # Every line of ``body`` begins after a CRLF: drop the dot a line starts with.
        out = body.replace(b"\r\n.", b"\r\n") if stuffed else body
        if start:
            out = out[2:]
        self.octets += len(out)
        if end >= 0:
            self.done = True
            return out, data[end + 5 - len(start) :]
        self._at = _At.LINE_START  # ``body`` ends in CRLF
        tail = data[len(body) - len(start) :]
        if not tail:
            return out, b""
        more, _ = self._feed_exact(tail)  # a partial line: no end marker in it (see above)
        return out + more, b""

    def _feed_exact(self, data: bytes) -> tuple[bytes, bytes]:
        """The octet-by-octet state machine (see :meth:`feed`)."""
        out = bytearray()
        i = 0
        n = len(data)
        at = self._at
        while i < n:
            if at is _At.MIDDLE:
                lf = data.find(b"\n", i)
                if lf < 0:
                    segment = data[i:]
                    inner = segment[:-1] if segment[-1] == _CR else segment
                    if b"\r" in inner:
                        self._flag(Problem.BARE_CR)
                    at = _At.CR if segment[-1] == _CR else _At.MIDDLE
                    out += segment
                    i = n
                    break
                if lf > i and data[lf - 1] == _CR:
                    if b"\r" in data[i : lf - 1]:
                        self._flag(Problem.BARE_CR)
                    at = _At.LINE_START
                else:
                    if b"\r" in data[i:lf]:
                        self._flag(Problem.BARE_CR)
                    self._flag(Problem.BARE_LF)
                    at = _At.MIDDLE
                out += data[i : lf + 1]
                i = lf + 1
            elif at is _At.LINE_START:
                if data[i] == _DOT:
                    at = _At.DOT
                    i += 1
                else:
                    at = _At.MIDDLE
            elif at is _At.DOT:
                # The dot of a stuffed line (or a lone dot line's dot) is dropped.
                if data[i] == _CR:
                    at = _At.DOT_CR
                    i += 1
                else:
                    at = _At.MIDDLE
            elif at is _At.DOT_CR:
                if data[i] == _LF:
                    self.done = True
                    self._at = at
                    self._count(out)
                    return bytes(out), data[i + 1 :]
                self._flag(Problem.BARE_CR)
                out += b"\r"
                at = _At.MIDDLE
            else:  # _At.CR: the previous chunk ended in CR
                if data[i] == _LF:
                    out += b"\n"
                    i += 1
                    at = _At.LINE_START
                else:
                    self._flag(Problem.BARE_CR)
                    at = _At.MIDDLE
        self._at = at
        self._count(out)
        return bytes(out), b""

    def _count(self, out: bytearray) -> None:
        self.octets += len(out)
        if b"\0" in out:
            self._flag(Problem.NUL)


class DataSource:
    """The message after DATA as an async iterable of chunks, for ``pipeline.deliver``.

    It ends at ``CRLF.CRLF``; a message with a :class:`Problem` ends with StoreError(PARAMS)
    instead, so that the pipeline stores nothing. Reading stops at ``deadline`` (loop time)
    with TimeoutError; a vanished client raises ConnectionClosedError. Octets after the end
    go back to the connection.
    """

    def __init__(self, conn: Connection, deadline: float) -> None:
        self.conn = conn
        self.decoder = DotDecoder()
        self.deadline = deadline

    def __aiter__(self) -> DataSource:
        return self

    async def __anext__(self) -> bytes:
        while True:
            if self.decoder.done:
                if self.decoder.problem is not None:
                    raise StoreError(ErrorKind.PARAMS, self.decoder.problem.value)
                raise StopAsyncIteration
            payload = await self._read()
            if payload:
                return payload

    async def _read(self) -> bytes:
        remaining = self.deadline - asyncio.get_running_loop().time()
        if remaining <= 0:
            raise TimeoutError("message data not complete in time")
        data = await self.conn.read_chunk(remaining)
        payload, rest = self.decoder.feed(data)
        self.conn.unread(rest)
        return payload

    async def drain(self) -> None:
        """Read and drop the rest of the message (after the pipeline stopped reading)."""
        while not self.decoder.done:
            await self._read()


class Abort(Exception):  # noqa: N818 -- control flow, not a failure
    """A command between BDAT chunks ended the transfer (RSET or QUIT)."""

    def __init__(self, verb: str) -> None:
        super().__init__(verb)
        self.verb = verb


#: Between chunks: called with nothing; returns the next ``(size, last)`` or raises Abort.
NextChunk = Callable[[], Awaitable[tuple[int, bool]]]


class BdatSource:
    """The chunks of a BDAT transfer as one async iterable (RFC 3030).

    Starts with the chunk of the BDAT command that created it; after each non-LAST chunk it
    calls ``next_chunk``, which acknowledges the chunk and reads commands until the next BDAT.
    """

    def __init__(
        self,
        conn: Connection,
        size: int,
        last: bool,
        *,
        timeout: float,
        next_chunk: NextChunk,
    ) -> None:
        self.conn = conn
        self.remaining = size
        self.last = last
        self.timeout = timeout
        self.next_chunk = next_chunk
        self.finished = False  # the LAST chunk was read completely
        self.octets = 0
        self._deadline = asyncio.get_running_loop().time() + timeout

    def __aiter__(self) -> BdatSource:
        return self

    async def __anext__(self) -> bytes:
        while self.remaining == 0:
            if self.last:
                self.finished = True
                raise StopAsyncIteration
            self.remaining, self.last = await self.next_chunk()
            self._deadline = asyncio.get_running_loop().time() + self.timeout
        return await self._read()

    async def _read(self) -> bytes:
        left = self._deadline - asyncio.get_running_loop().time()
        if left <= 0:
            raise TimeoutError("BDAT chunk not complete in time")
        data = await self.conn.read_chunk(left, min(self.remaining, 1 << 20))
        self.remaining -= len(data)
        self.octets += len(data)
        return data

    async def drain_chunk(self) -> None:
        """Read and drop the rest of the current chunk."""
        while self.remaining:
            await self._read()

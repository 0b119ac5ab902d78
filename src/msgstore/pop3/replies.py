"""POP3 reply lines and the multi-line writer (RFC 1939 §3).

A multi-line reply is ``+OK ...``, then lines in which every line starting with "." gets one
more "." (byte-stuffing), then ``.``. Stored messages are CRLF-normalised, so a line starts
after every LF and stuffing is one substitution per chunk plus a look at the chunk
boundary; bodies stream chunk by chunk with backpressure and are never held whole.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterable, Iterable
from typing import Final

from msgstore.net.connection import Connection

END: Final = b".\r\n"
#: ``+OK`` without text (NOOP).
OK: Final = b"+OK\r\n"
#: Octets collected before a write (and a wait for the client to keep up).
WRITE_OCTETS: Final = 64 * 1024
#: A line that starts with ".", found by the LF before it. Most mail has none, and the
#: regular expression engine tells so three times as fast as ``bytes.replace`` or ``in``
#: (CPython 3.11: 3 us against 9 us per 10 KB of ordinary text), which step through the text
#: a few octets at a time looking for a two-octet pattern. Where there are such lines,
#: ``replace`` stuffs them: it beats ``sub`` threefold on a text of nothing but dots.
_DOT_LINE: Final = re.compile(rb"\n\.")


def ok(text: str = "") -> bytes:
    """``+OK text`` with CRLF."""
    return f"+OK {text}\r\n".encode("utf-8", "replace") if text else OK


class DotStuffer:
    """Byte-stuff a stream of chunks of CRLF text; :meth:`end` closes the reply."""

    __slots__ = ("_at_line_start",)

    def __init__(self) -> None:
        self._at_line_start = True

    def stuff(self, chunk: bytes) -> bytes:
        if not chunk:
            return chunk
        out = chunk if _DOT_LINE.search(chunk) is None else chunk.replace(b"\n.", b"\n..")
        if self._at_line_start and chunk[:1] == b".":
            out = b"." + out
        self._at_line_start = chunk[-1:] == b"\n"
        return out

    def end(self) -> bytes:
        """CRLF if the text did not end a line, then the terminating ``.``."""
        return END if self._at_line_start else b"\r\n" + END


def write_whole(conn: Connection, first: bytes, text: bytes) -> None:
    """A multi-line reply of a text held whole (RETR from the read-ahead): its pieces leave
    in one send, without being joined into one more copy of the text first."""
    stuffer = DotStuffer()
    conn.write(first)
    conn.write(stuffer.stuff(text))
    conn.write(stuffer.end())


async def send_lines(conn: Connection, first: bytes, lines: Iterable[bytes]) -> None:
    """A multi-line reply of short lines (LIST, UIDL, CAPA), written with backpressure."""
    conn.write(first)
    batch: list[bytes] = []
    size = 0
    for line in lines:
        batch.append(b"." + line + b"\r\n" if line[:1] == b"." else line + b"\r\n")
        size += len(line) + 2
        if size >= 16384:
            conn.write(b"".join(batch))
            batch.clear()
            size = 0
            await conn.drain()
    batch.append(END)
    conn.write(b"".join(batch))
    await conn.drain()


async def send_stream(conn: Connection, first: bytes, chunks: AsyncIterable[bytes]) -> None:
    """A multi-line reply from CRLF text chunks (RETR, TOP), stuffed as it streams.

    Output is coalesced up to :data:`WRITE_OCTETS` per write, so a small message leaves in one
    write (status line, text and terminator together) and a large one with backpressure.
    """
    stuffer = DotStuffer()
    pending = [first]
    size = len(first)
    async for chunk in chunks:
        stuffed = stuffer.stuff(chunk)
        pending.append(stuffed)
        size += len(stuffed)
        if size >= WRITE_OCTETS:
            conn.write(b"".join(pending))
            pending.clear()
            size = 0
            await conn.drain()
    pending.append(stuffer.end())
    conn.write(b"".join(pending))
    await conn.drain()

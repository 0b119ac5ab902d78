"""TRANSACTION state: STAT, LIST, RETR, TOP, UIDL, DELE, RSET, NOOP (RFC 1939 §5, §7).

Message numbers are positions in the snapshot taken at login (``maildrop.py``); ``0``, numbers
past the end and messages marked deleted get ``-ERR``. Sizes are the stored octets
(CRLF-normalised, before byte-stuffing), as RFC 1939 §11 allows.

RETR of a message of at most ``[pop3] read_ahead`` octets takes it whole from the session's
read-ahead (``readahead.py``: one store call for it and the next ones) and writes the reply
at once; a larger one, or any on a backend without ``read_bodies``, streams the stored file
in chunks, byte-stuffed on the fly. TOP reads the header length
from the part map computed at delivery and then counts body lines while streaming: no MIME
parsing on the read path (ARCHITECTURE.md).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable

from msgstore.core.errors import ErrorKind, StoreError
from msgstore.core.ids import UidSet
from msgstore.mime.partmap import PartMap
from msgstore.net.connection import ConnectionClosedError
from msgstore.pop3.errors import Refusal
from msgstore.pop3.maildrop import Entry
from msgstore.pop3.replies import OK, ok, send_lines, send_stream, write_whole
from msgstore.pop3.session import Session
from msgstore.pop3.syntax import Command, arity, number
from msgstore.storage.base import BodyReader, Want

log = logging.getLogger(__name__)


def noop(session: Session, cmd: Command) -> None:
    arity(cmd, 0)
    session.send(OK)


def stat(session: Session, cmd: Command) -> None:
    arity(cmd, 0)
    count, octets = session.drop.stat()
    session.send(ok(f"{count} {octets}"))


def list_(session: Session, cmd: Command) -> Awaitable[None] | None:
    args = arity(cmd, 0, 1)
    drop = session.drop
    if args:
        n = number(args[0])
        session.send(ok(f"{n} {drop.get(n).size}"))
        return None
    count, octets = drop.stat()
    return send_lines(
        session.conn,
        ok(f"{count} messages ({octets} octets)"),
        (f"{n} {e.size}".encode() for n, e in drop.live()),
    )


def uidl(session: Session, cmd: Command) -> Awaitable[None] | None:
    args = arity(cmd, 0, 1)
    drop = session.drop
    if args:
        n = number(args[0])
        session.send(ok(f"{n} {drop.get(n).uidl}"))
        return None
    return send_lines(
        session.conn,
        ok("Unique-ID listing follows"),
        (f"{n} {e.uidl}".encode() for n, e in drop.live()),
    )


def dele(session: Session, cmd: Command) -> None:
    (arg,) = arity(cmd, 1)
    n = number(arg)
    session.drop.delete(n)
    session.send(b"+OK Message %d deleted\r\n" % n)


def rset(session: Session, cmd: Command) -> None:
    arity(cmd, 0)
    drop = session.drop
    drop.reset()
    count, octets = drop.stat()
    session.send(ok(f"Maildrop has {count} messages ({octets} octets)"))


def retr(session: Session, cmd: Command) -> Awaitable[None] | None:
    """A message read ahead is answered at once, without a coroutine (most RETRs of a
    download in order); any other waits for the store."""
    (arg,) = arity(cmd, 1)
    n = number(arg)
    entry = session.drop.get(n)
    ahead = session.read_ahead
    body = ahead.take(n) if ahead is not None else None
    if body is None:
        return _retr_from_store(session, n, entry)
    write_whole(session.conn, b"+OK %d octets\r\n" % entry.size, body)
    _retrieved(session, entry)
    return None


async def _retr_from_store(session: Session, n: int, entry: Entry) -> None:
    """RETR of a message not read ahead: read it whole (and the next ones ahead), or stream it."""
    drop = session.drop
    limit = session.ctx.config.pop3.read_ahead
    ahead = session.read_ahead
    body = await ahead.body(drop, n, entry, limit) if ahead is not None and limit else None
    if body is not None:
        write_whole(session.conn, b"+OK %d octets\r\n" % entry.size, body)
    else:
        await _send_body(session, entry, None)
    _retrieved(session, entry)


def _retrieved(session: Session, entry: Entry) -> None:
    entry.retrieved = True
    stats = session.stats
    stats.retr += 1
    stats.retr_octets += entry.size


async def top(session: Session, cmd: Command) -> None:
    msg_arg, lines_arg = arity(cmd, 2)
    entry = session.drop.get(number(msg_arg))
    lines = number(lines_arg, "line count")
    await _send_body(session, entry, lines)
    session.stats.top += 1


async def _header_end(session: Session, entry: Entry) -> int:
    drop = session.drop
    metas = await drop.backend.fetch_meta(
        drop.account.id, drop.mailbox.id, UidSet.from_uids([entry.uid]), Want.PARTMAP
    )
    if not metas:
        raise StoreError(ErrorKind.EXPUNGED, "Message was expunged")
    partmap = metas[0].partmap
    part = PartMap.from_bytes(partmap).part(()) if partmap else None
    return part.header_end if part is not None else entry.size


async def _send_body(session: Session, entry: Entry, lines: int | None) -> None:
    """RETR (``lines`` None) or TOP: ``+OK``, the stuffed text, ``.``."""
    drop = session.drop
    replying = False
    try:
        header_end = await _header_end(session, entry) if lines is not None else 0
        async with drop.backend.open_body(drop.account.id, drop.mailbox.id, entry.uid) as body:
            if lines is None:
                first, chunks = ok(f"{entry.size} octets"), body.chunks(0, body.size)
            else:
                first, chunks = ok("Top of message follows"), _top(body, header_end, lines)
            replying = True
            await send_stream(session.conn, first, chunks)
    except StoreError as exc:
        if replying:
            # Part of the reply is out: it can be neither finished nor turned into -ERR.
            log.error("reading message uid %d failed mid-reply: %s", entry.uid, exc)
            session.conn.abort()
            raise ConnectionClosedError from None
        if exc.kind in (ErrorKind.EXPUNGED, ErrorKind.NOT_FOUND):
            raise Refusal("Message was removed by another session") from None
        raise


async def _top(body: BodyReader, header_end: int, lines: int) -> AsyncIterator[bytes]:
    """The header (with its blank line), then the first ``lines`` lines of the body."""
    header_end = min(header_end, body.size)
    async for chunk in body.chunks(0, header_end):
        yield chunk
    remaining = lines
    if remaining == 0:
        return
    async for chunk in body.chunks(header_end, body.size - header_end):
        start = 0
        while remaining:
            lf = chunk.find(b"\n", start)
            if lf < 0:
                break
            start = lf + 1
            remaining -= 1
        if not remaining:
            yield chunk[:start]
            return
        yield chunk

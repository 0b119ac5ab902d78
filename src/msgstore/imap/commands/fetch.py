"""FETCH and UID FETCH (RFC 9051 §6.4.5, RFC 3516 BINARY, RFC 7162 CHANGEDSINCE/VANISHED).

Everything comes from what delivery computed (ARCHITECTURE.md "parse once"): FLAGS, dates and
sizes from the index row, ENVELOPE/BODY/BODYSTRUCTURE as stored bytes, and every
``BODY[section]`` as a byte range of the stored file found in the part map
(``mime.partmap`` explains each section). Ranges stream from the file through the writer
(``sendfile`` on plain sockets); HEADER.FIELDS reads only the header block, and BINARY decodes
only the one part it names.

Two paths, one output (``tests/imap_server/test_fetch_paths.py`` checks it byte for byte):

- **Metadata only** (every item one of :data:`META_ATTRS`: FLAGS, UID, MODSEQ, INTERNALDATE,
  RFC822.SIZE and the stored ENVELOPE/BODY/BODYSTRUCTURE -- how clients resync flags): one
  ``fetch_meta`` per :data:`META_CHUNK` messages, the next chunk's query already running on
  the index thread while this one is formatted; each chunk's responses are built with bytes
  joins, written as one piece and followed by ``drain()`` (a client that does not read stops
  the server), with no await per message.
  When every item is one of :data:`FLAG_ATTRS` (UID, FLAGS, MODSEQ) and the backend offers
  ``SupportsFlagScan``, the chunks come from ``fetch_flags`` instead: ``(uid, modseq,
  flags)`` rows without a ``MessageMeta`` each, formatted through one precomputed template
  per item list (``FETCH 1:* (FLAGS)`` of 100,000 messages: see docs/benchmarks.md).
- **Everything else**: messages in batches of :data:`BATCH` (one ``fetch_meta`` each) and
  written item by item. The implicit ``\\Seen`` of BODY[]/BINARY[]/RFC822[.TEXT] is one
  ``store_flags`` for the whole set, committed before the first response: RFC 9051 §6.4.5
  says the changed flags SHOULD be part of the FETCH responses, so each newly seen message's
  response carries FLAGS even if not asked for, and the store must be done to know which
  changed. Bodies are opened :data:`OPEN_AHEAD` at a time, concurrently, so their trips to the
  index thread overlap. ``FETCH 1:* BODY[]`` on a big mailbox never holds more than one batch
  of metadata, a few open files and one buffer of output.
"""

from __future__ import annotations

import asyncio
import binascii
import contextlib
import datetime as dt
import operator
from collections.abc import Iterator, Sequence
from collections.abc import Set as AbstractSet
from typing import TYPE_CHECKING, Final

from msgstore.core.errors import ErrorKind, StoreError
from msgstore.core.flags import SEEN, FlagOp
from msgstore.core.ids import ModSeq, Uid, UidSet
from msgstore.imap.selected import ranges_of
from msgstore.imap.syntax.args import Command, FetchArgs
from msgstore.imap.syntax.fetchatt import (
    FetchAttr,
    FetchBinary,
    FetchBinarySize,
    FetchBody,
    FetchItem,
    Partial,
    Section,
    SectionText,
)
from msgstore.imap.syntax.responses import (
    Code,
    ResponseCode,
    Status,
    StatusResponse,
    Vanished,
    encode_astring,
    encode_flag_list,
)
from msgstore.mime.partmap import PartInfo, PartMap
from msgstore.storage.base import BodyReader, MessageMeta, SupportsFlagScan, Want

if TYPE_CHECKING:
    from msgstore.imap.session import Session

#: Messages per metadata query on the per-message path.
BATCH: Final = 256
#: Messages per metadata query (and per write + drain) on the metadata-only path.
META_CHUNK: Final = 5000
#: Messages per ``fetch_flags`` call on the flag-scan path.
FLAG_CHUNK: Final = 20_000
#: Bodies opened concurrently on the per-message path.
OPEN_AHEAD: Final = 8
#: Items answered from the index row alone (the metadata-only path).
META_ATTRS: Final = frozenset(
    {
        FetchAttr.UID,
        FetchAttr.FLAGS,
        FetchAttr.MODSEQ,
        FetchAttr.INTERNALDATE,
        FetchAttr.RFC822_SIZE,
        FetchAttr.ENVELOPE,
        FetchAttr.BODY,
        FetchAttr.BODYSTRUCTURE,
    }
)
_MONTHS: Final = (
    "Jan",
    "Feb",
    "Mar",
    "Apr",
    "May",
    "Jun",
    "Jul",
    "Aug",
    "Sep",
    "Oct",
    "Nov",
    "Dec",
)


class _UnknownCteError(ValueError):
    pass


def imap_date_time(when: dt.datetime) -> bytes:
    """``"dd-Mon-yyyy hh:mm:ss +zzzz"`` (RFC 9051 date-time; day padded with a space)."""
    zone = when.strftime("%z") or "+0000"
    return (
        f'"{when.day:2d}-{_MONTHS[when.month - 1]}-{when.year:04d} {when:%H:%M:%S} {zone}"'
    ).encode()


def header_fields(block: bytes) -> list[tuple[bytes, bytes]]:
    """The fields of a header block as ``(lower-case name, raw octets with CRLF)``."""
    out: list[tuple[bytes, bytes]] = []
    for line in block.splitlines(keepends=True):
        if line in (b"\r\n", b"\n"):
            break
        if line[:1] in (b" ", b"\t") and out:
            name, raw = out[-1]
            out[-1] = (name, raw + line)
            continue
        name, colon, _ = line.partition(b":")
        out.append((name.strip().lower() if colon else b"", line))
    return out


def filter_header(block: bytes, fields: Sequence[str], *, exclude: bool) -> bytes:
    """HEADER.FIELDS / HEADER.FIELDS.NOT: the chosen fields and the blank line."""
    wanted = {f.lower().encode("ascii") for f in fields}
    kept = [raw for name, raw in header_fields(block) if name and ((name in wanted) != exclude)]
    return b"".join(kept) + b"\r\n"


def decode_cte(data: bytes, encoding: str) -> bytes:
    """Undo a Content-Transfer-Encoding for BINARY (RFC 3516 §4.2)."""
    if encoding in ("7bit", "8bit", "binary", ""):
        return data
    if encoding == "base64":
        cleaned = b"".join(data.split())
        cleaned = cleaned[: len(cleaned) - len(cleaned) % 4]
        try:
            return binascii.a2b_base64(cleaned)
        except binascii.Error:
            raise _UnknownCteError from None
    if encoding == "quoted-printable":
        return binascii.a2b_qp(data)
    raise _UnknownCteError


def section_spec(section: Section) -> bytes:
    """The section as the response names it (the client's spelling of field names)."""
    spec = b".".join(b"%d" % n for n in section.part)
    if section.text is not None:
        spec += (b"." if spec else b"") + section.text.value
    if section.fields:
        spec += b" (" + b" ".join(encode_astring(f.encode()) for f in section.fields) + b")"
    return spec


def _want(items: Sequence[FetchItem]) -> Want:
    want = Want.FLAGS
    for item in items:
        if item is FetchAttr.ENVELOPE:
            want |= Want.ENVELOPE
        elif item is FetchAttr.BODY:
            want |= Want.BODY
        elif item is FetchAttr.BODYSTRUCTURE:
            want |= Want.BODYSTRUCTURE
        elif isinstance(item, FetchBody | FetchBinary | FetchBinarySize) or item in (
            FetchAttr.RFC822,
            FetchAttr.RFC822_HEADER,
            FetchAttr.RFC822_TEXT,
        ):
            want |= Want.PARTMAP
    return want


def _sets_seen(items: Sequence[FetchItem]) -> bool:
    for item in items:
        if isinstance(item, FetchBody | FetchBinary) and not item.peek:
            return True
        if item in (FetchAttr.RFC822, FetchAttr.RFC822_TEXT):
            return True
    return False


def _range(pm: PartMap, section: Section, size: int) -> tuple[int, int] | None:
    """``(start, end)`` of a section without HEADER.FIELDS, or None if it does not exist."""
    if not section.part and section.text is None:
        return 0, size
    p: PartInfo | None = pm.part(section.part)
    if p is None:
        return None
    text = section.text
    if not section.part:
        if text is SectionText.HEADER:
            return p.header_start, p.header_end
        return p.header_end, p.body_end  # TEXT
    if text is None:
        return p.header_end, p.body_end
    if text is SectionText.MIME:
        return p.header_start, p.header_end
    if not p.is_message:
        return None
    if text is SectionText.HEADER:
        return p.header_end, p.inner_header_end
    return p.inner_header_end, p.body_end


def _header_block(pm: PartMap, section: Section) -> tuple[int, int] | None:
    if not section.part:
        p = pm.part(())
        return None if p is None else (p.header_start, p.header_end)
    p = pm.part(section.part)
    if p is None or not p.is_message:
        return None
    return p.header_end, p.inner_header_end


def _clip(start: int, end: int, partial: Partial | None) -> tuple[int, int]:
    if partial is None:
        return start, end
    lo = min(end, start + partial.offset)
    return lo, min(end, lo + partial.length)


def _literal(data: bytes) -> bytes:
    if b"\0" in data:
        return b"~{%d}\r\n" % len(data) + data
    return b"{%d}\r\n" % len(data) + data


class _Message:
    """One message's FETCH response, written item by item."""

    def __init__(self, s: Session, meta: MessageMeta, body: BodyReader | None) -> None:
        self.s = s
        self.meta = meta
        self.body = body
        self._pm: PartMap | None = None

    @property
    def pm(self) -> PartMap:
        if self._pm is None:
            if self.meta.partmap is None:
                raise StoreError(ErrorKind.CORRUPTED, "Message metadata is missing")
            self._pm = PartMap.from_bytes(self.meta.partmap)
        return self._pm

    def _reader(self) -> BodyReader:
        assert self.body is not None
        return self.body

    async def item(self, item: FetchItem) -> None:
        out, meta = self.s.out, self.meta
        sel = self.s.selected
        assert sel is not None
        if item is FetchAttr.UID:
            out.write(b"UID %d" % meta.uid)
        elif item is FetchAttr.FLAGS:
            flags = sorted(meta.flags)
            if meta.uid in sel.recent and not self.s.rev2:
                flags.append("\\Recent")
            out.write(b"FLAGS " + encode_flag_list(flags))
        elif item is FetchAttr.INTERNALDATE:
            out.write(b"INTERNALDATE " + imap_date_time(meta.internal_date))
        elif item is FetchAttr.RFC822_SIZE:
            out.write(b"RFC822.SIZE %d" % meta.size)
        elif item is FetchAttr.ENVELOPE:
            out.write(b"ENVELOPE " + (meta.envelope or b"NIL"))
        elif item is FetchAttr.BODY:
            out.write(b"BODY " + (meta.body or b"NIL"))
        elif item is FetchAttr.BODYSTRUCTURE:
            out.write(b"BODYSTRUCTURE " + (meta.bodystructure or b"NIL"))
        elif item is FetchAttr.MODSEQ:
            out.write(b"MODSEQ (%d)" % meta.modseq)
        elif item is FetchAttr.RFC822:
            await self._section(b"RFC822", Section(), None)
        elif item is FetchAttr.RFC822_HEADER:
            await self._section(b"RFC822.HEADER", Section((), SectionText.HEADER), None)
        elif item is FetchAttr.RFC822_TEXT:
            await self._section(b"RFC822.TEXT", Section((), SectionText.TEXT), None)
        elif isinstance(item, FetchBody):
            name = b"BODY[" + section_spec(item.section) + b"]"
            if item.partial is not None:
                name += b"<%d>" % item.partial.offset
            await self._section(name, item.section, item.partial)
        elif isinstance(item, FetchBinary):
            data = await self._binary(item.part)
            name = b"BINARY[" + b".".join(b"%d" % n for n in item.part) + b"]"
            if item.partial is not None:
                lo, hi = _clip(0, len(data), item.partial)
                data = data[lo:hi]
                name += b"<%d>" % item.partial.offset
            out.write(name + b" " + _literal(data))
        elif isinstance(item, FetchBinarySize):
            data = await self._binary(item.part)
            out.write(
                b"BINARY.SIZE[" + b".".join(b"%d" % n for n in item.part) + b"] %d" % len(data)
            )

    async def _section(self, name: bytes, section: Section, partial: Partial | None) -> None:
        out = self.s.out
        out.write(name + b" ")
        if section.text in (SectionText.HEADER_FIELDS, SectionText.HEADER_FIELDS_NOT):
            block = _header_block(self.pm, section)
            if block is None:
                out.write(b'""')
                return
            raw = await self._reader().read(block[0], block[1] - block[0])
            data = filter_header(
                raw, section.fields, exclude=section.text is SectionText.HEADER_FIELDS_NOT
            )
            lo, hi = _clip(0, len(data), partial)
            out.write(_literal(data[lo:hi]))
            return
        span = _range(self.pm, section, self.meta.size)
        if span is None:
            out.write(b'""')
            return
        lo, hi = _clip(span[0], span[1], partial)
        await out.literal_from(self._reader(), lo, hi - lo)

    async def _binary(self, part: tuple[int, ...]) -> bytes:
        if not part:
            return await self._reader().read(0, self.meta.size)
        p = self.pm.part(part)
        if p is None:
            return b""
        raw = await self._reader().read(p.header_end, p.body_end - p.header_end)
        return decode_cte(raw, p.encoding)


def _needs_body(items: Sequence[FetchItem]) -> bool:
    return any(
        isinstance(i, FetchBody | FetchBinary | FetchBinarySize)
        or i in (FetchAttr.RFC822, FetchAttr.RFC822_HEADER, FetchAttr.RFC822_TEXT)
        for i in items
    )


async def fetch(s: Session, cmd: Command) -> StatusResponse:
    args = cmd.args
    assert isinstance(args, FetchArgs)
    sel = s.selected
    assert sel is not None
    items = list(args.items)
    if cmd.uid and FetchAttr.UID not in items:
        items.insert(0, FetchAttr.UID)
    if args.changed_since is not None or FetchAttr.MODSEQ in items:
        s.enable(b"CONDSTORE")
        if FetchAttr.MODSEQ not in items:
            items.append(FetchAttr.MODSEQ)
    if args.vanished and not (cmd.uid and s.qresync and args.changed_since is not None):
        return StatusResponse(Status.BAD, "VANISHED needs UID FETCH, QRESYNC and CHANGEDSINCE")
    pairs = sel.resolve(args.seqs, uid=cmd.uid, saved=s.saved_search)
    backend, opened = s.ctx.backend, sel.opened
    if args.vanished and args.changed_since is not None:
        changes = await backend.changes_since(opened.owner, opened.id, ModSeq(args.changed_since))
        wanted = args.seqs.resolve(sel.uids[-1] if sel.uids else 0)
        gone = [u for u in changes.expunged if any(lo <= u <= hi for lo, hi in wanted)]
        if gone:
            s.out.send(Vanished(ranges_of(gone), earlier=True))
    done = StatusResponse(Status.OK, f"{cmd.name.decode()} completed")
    if all(isinstance(item, FetchAttr) and item in META_ATTRS for item in items):
        backend_ = s.ctx.backend
        if all(item in FLAG_ATTRS for item in items) and isinstance(backend_, SupportsFlagScan):
            await _fetch_flags_only(s, backend_, pairs, items, args.changed_since)
        else:
            await _fetch_meta_only(s, pairs, items, args.changed_since)
        return done
    want = _want(items)
    newly_seen: set[int] = set()
    if _sets_seen(items) and not sel.readonly and pairs:
        result = await s.access.store_flags(
            opened, sel.uid_set(pairs), FlagOp.ADD, frozenset({SEEN})
        )
        for upd in result.updated:
            sel.reported[upd.uid] = upd.modseq
            newly_seen.add(upd.uid)
    needs_body = _needs_body(items)
    with_flags = [*items, FetchAttr.FLAGS]
    for start in range(0, len(pairs), BATCH):
        batch = pairs[start : start + BATCH]
        metas = await backend.fetch_meta(opened.owner, opened.id, sel.uid_set(batch), want)
        todo: list[tuple[int, MessageMeta]] = []
        for meta in metas:
            if args.changed_since is not None and meta.modseq <= args.changed_since:
                continue
            number = sel.seq_for(meta.uid)
            if number is not None:
                todo.append((number, meta))
        for first in range(0, len(todo), OPEN_AHEAD):
            group = todo[first : first + OPEN_AHEAD]
            async with contextlib.AsyncExitStack() as stack:
                bodies: dict[int, BodyReader | None] = {}
                if needs_body:
                    bodies = await _open_bodies(s, stack, [meta.uid for _, meta in group])
                for seq, meta in group:
                    body = bodies.get(meta.uid)
                    if needs_body and body is None:
                        continue  # expunged since
                    these = items
                    if meta.uid in newly_seen and FetchAttr.FLAGS not in items:
                        these = with_flags
                    try:
                        s.out.write(b"* %d FETCH (" % seq)
                        await _write_items(_Message(s, meta, body), these)
                    except _UnknownCteError:
                        return StatusResponse(
                            Status.NO,
                            "Unknown content-transfer-encoding",
                            ResponseCode(Code.UNKNOWN_CTE),
                        )
                    await s.out.pace()
    return done


async def _open_bodies(
    s: Session, stack: contextlib.AsyncExitStack, uids: Sequence[int]
) -> dict[int, BodyReader | None]:
    """Open the bodies of ``uids`` concurrently, each closed by ``stack``; None for a
    message expunged meanwhile. Any other store error is raised once all have settled."""
    sel = s.selected
    assert sel is not None
    owner, mailbox = sel.opened.owner, sel.opened.id
    backend = s.ctx.backend

    async def one(uid: int) -> BodyReader:
        return await stack.enter_async_context(backend.open_body(owner, mailbox, Uid(uid)))

    results = await asyncio.gather(*(one(uid) for uid in uids), return_exceptions=True)
    out: dict[int, BodyReader | None] = {}
    for uid, res in zip(uids, results, strict=True):
        if isinstance(res, BaseException):
            if isinstance(res, StoreError) and res.kind in (
                ErrorKind.EXPUNGED,
                ErrorKind.NOT_FOUND,
            ):
                out[uid] = None
                continue
            raise res
        out[uid] = res
    return out


async def _write_items(msg: _Message, items: Sequence[FetchItem]) -> None:
    out = msg.s.out
    for n, item in enumerate(items):
        if n:
            out.write(b" ")
        try:
            await msg.item(item)
        except _UnknownCteError:
            out.write(b'"")\r\n')
            raise
    out.write(b")\r\n")


# --- the metadata-only path ------------------------------------------------------------------


def _drop_result(task: asyncio.Future[list[MessageMeta]]) -> None:
    if not task.cancelled():
        task.exception()  # retrieved: a query nobody waits for any more may fail quietly


async def _fetch_meta_only(
    s: Session,
    pairs: Sequence[tuple[int, int]],
    items: Sequence[FetchItem],
    changed_since: int | None,
) -> None:
    """FETCH of :data:`META_ATTRS` only (module docstring)."""
    sel = s.selected
    assert sel is not None
    backend, opened = s.ctx.backend, sel.opened
    want = _want(items)
    chunks = [pairs[i : i + META_CHUNK] for i in range(0, len(pairs), META_CHUNK)]
    recent: AbstractSet[int] = frozenset() if s.rev2 else sel.recent
    pending: asyncio.Future[list[MessageMeta]] | None = None
    try:
        for n, chunk in enumerate(chunks):
            if pending is None:
                pending = asyncio.ensure_future(
                    backend.fetch_meta(opened.owner, opened.id, sel.uid_set(chunk), want)
                )
            metas = await pending
            pending = None
            if n + 1 < len(chunks):  # the next query runs while this chunk is formatted
                pending = asyncio.ensure_future(
                    backend.fetch_meta(opened.owner, opened.id, sel.uid_set(chunks[n + 1]), want)
                )
            data = _meta_responses(chunk, metas, items, recent, changed_since)
            if data:
                s.out.write(data)
            if pending is not None:
                await s.out.flush()
    finally:
        if pending is not None and not pending.done():
            pending.cancel()
            pending.add_done_callback(_drop_result)


#: Items the flag-scan path answers, and the position of each in its per-row values.
FLAG_ATTRS: Final = {FetchAttr.UID: 1, FetchAttr.FLAGS: 3, FetchAttr.MODSEQ: 2}
_FLAG_FIELDS: Final = {
    FetchAttr.UID: b"UID %d",
    FetchAttr.FLAGS: b"FLAGS %b",
    FetchAttr.MODSEQ: b"MODSEQ (%d)",
}


async def _fetch_flags_only(
    s: Session,
    scan: SupportsFlagScan,
    pairs: Sequence[tuple[int, int]],
    items: Sequence[FetchItem],
    changed_since: int | None,
) -> None:
    """FETCH of UID/FLAGS/MODSEQ only, from ``fetch_flags`` (module docstring)."""
    sel = s.selected
    assert sel is not None
    owner, mailbox = sel.opened.owner, sel.opened.id
    chunks = [pairs[i : i + FLAG_CHUNK] for i in range(0, len(pairs), FLAG_CHUNK)]
    recent: AbstractSet[int] = frozenset() if s.rev2 else sel.recent
    attrs = [item for item in items if isinstance(item, FetchAttr)]  # all of them
    template = b"* %d FETCH (" + b" ".join(_FLAG_FIELDS[a] for a in attrs) + b")\r\n"
    pick = operator.itemgetter(0, *(FLAG_ATTRS[a] for a in attrs))
    flags_only = attrs == [FetchAttr.FLAGS]
    listed_by_flags: dict[frozenset[str], bytes] = {}
    listed_recent: dict[frozenset[str], bytes] = {}

    def listed(flags: frozenset[str], uid: int) -> bytes:
        is_recent = uid in recent
        cache = listed_recent if is_recent else listed_by_flags
        text = cache.get(flags)
        if text is None:
            names = sorted(flags)
            if is_recent:
                names.append("\\Recent")
            text = cache[flags] = encode_flag_list(names)
        return text

    def uid_set(chunk: Sequence[tuple[int, int]]) -> UidSet:
        lo, hi = chunk[0][1], chunk[-1][1]
        if hi - lo == len(chunk) - 1:  # ascending and unique: one run, no sort needed
            return UidSet(((lo, hi),))
        return sel.uid_set(chunk)

    pending: asyncio.Future[list[tuple[int, int, frozenset[str]]]] | None = None
    try:
        for n, chunk in enumerate(chunks):
            if pending is None:
                pending = asyncio.ensure_future(scan.fetch_flags(owner, mailbox, uid_set(chunk)))
            rows = await pending
            pending = None
            if n + 1 < len(chunks):  # the next query runs while this chunk is formatted
                pending = asyncio.ensure_future(
                    scan.fetch_flags(owner, mailbox, uid_set(chunks[n + 1]))
                )
            lines: list[bytes] = []
            line = lines.append
            if changed_since is None and not recent and flags_only and len(rows) == len(chunk):
                # The common resync: FETCH 1:* (FLAGS), every message there (rows are a
                # subset of the chunk, both ascending: equal lengths mean equal UIDs).
                get = listed_by_flags.get
                for (seq, _), (uid, _, flags) in zip(chunk, rows, strict=True):
                    text = get(flags)
                    if text is None:
                        text = listed(flags, uid)
                    line(b"* %d FETCH (FLAGS %b)\r\n" % (seq, text))
            else:
                for seq, uid, modseq, flags in _merge(chunk, rows):
                    if changed_since is not None and modseq <= changed_since:
                        continue
                    line(template % pick((seq, uid, modseq, listed(flags, uid))))
            if lines:
                s.out.write(b"".join(lines))
            if pending is not None:
                await s.out.flush()
    finally:
        if pending is not None and not pending.done():
            pending.cancel()
            pending.add_done_callback(_drop_flags)


def _merge(
    chunk: Sequence[tuple[int, int]], rows: list[tuple[int, int, frozenset[str]]]
) -> Iterator[tuple[int, int, int, frozenset[str]]]:
    """``(seq, uid, modseq, flags)`` of the rows whose UID is in ``chunk``; both ascending by
    UID, the rows a subset of the chunk (``fetch_flags`` returns only messages it was asked
    for). Usually every requested message exists: then a plain zip."""
    if len(rows) == len(chunk):
        for (seq, _), (uid, modseq, flags) in zip(chunk, rows, strict=True):
            yield seq, uid, modseq, flags
        return
    i, count = 0, len(chunk)
    for uid, modseq, flags in rows:
        while i < count and chunk[i][1] < uid:
            i += 1
        if i == count:
            return
        if chunk[i][1] == uid:
            yield chunk[i][0], uid, modseq, flags


def _drop_flags(task: asyncio.Future[list[tuple[int, int, frozenset[str]]]]) -> None:
    if not task.cancelled():
        task.exception()


def _meta_responses(
    chunk: Sequence[tuple[int, int]],
    metas: Sequence[MessageMeta],
    items: Sequence[FetchItem],
    recent: AbstractSet[int],
    changed_since: int | None,
) -> bytes:
    """The ``* n FETCH (...)`` lines of one chunk, exactly as :meth:`_Message.item` writes
    each item, joined into one ``bytes``."""
    seq_of = {uid: seq for seq, uid in chunk}
    flag_lists: dict[tuple[frozenset[str], bool], bytes] = {}
    dates: dict[dt.datetime, bytes] = {}
    lines: list[bytes] = []
    line = lines.append
    for meta in metas:
        if changed_since is not None and meta.modseq <= changed_since:
            continue
        uid = meta.uid
        seq = seq_of.get(uid)
        if seq is None:
            continue
        fields: list[bytes] = []
        field = fields.append
        for item in items:
            if item is FetchAttr.FLAGS:
                key = (meta.flags, uid in recent)
                listed = flag_lists.get(key)
                if listed is None:
                    names = sorted(meta.flags)
                    if key[1]:
                        names.append("\\Recent")
                    listed = flag_lists[key] = b"FLAGS " + encode_flag_list(names)
                field(listed)
            elif item is FetchAttr.UID:
                field(b"UID %d" % uid)
            elif item is FetchAttr.MODSEQ:
                field(b"MODSEQ (%d)" % meta.modseq)
            elif item is FetchAttr.INTERNALDATE:
                date = dates.get(meta.internal_date)
                if date is None:
                    date = dates[meta.internal_date] = b"INTERNALDATE " + imap_date_time(
                        meta.internal_date
                    )
                field(date)
            elif item is FetchAttr.RFC822_SIZE:
                field(b"RFC822.SIZE %d" % meta.size)
            elif item is FetchAttr.ENVELOPE:
                field(b"ENVELOPE " + (meta.envelope or b"NIL"))
            elif item is FetchAttr.BODY:
                field(b"BODY " + (meta.body or b"NIL"))
            elif item is FetchAttr.BODYSTRUCTURE:
                field(b"BODYSTRUCTURE " + (meta.bodystructure or b"NIL"))
        line(b"* %d FETCH (%b)\r\n" % (seq, b" ".join(fields)))
    return b"".join(lines)

"""SEARCH and UID SEARCH (RFC 9051 §6.4.4, RFC 4731 ESEARCH, RFC 5182 SEARCHRES, RFC 7162
MODSEQ).

Keys are evaluated on stored metadata: flags, dates, sizes and modseqs from the index row,
FROM/TO/CC/BCC/SUBJECT and the other indexed fields from the header index computed at
delivery (decoded, lower case). Only HEADER on a field outside the index reads the stored
header block, and only BODY/TEXT read the message file.

BODY and TEXT match a case-insensitive substring of the raw octets (TEXT: header included)
*or* of the decoded text of any text/* part: the part map computed at delivery gives each
part's offsets, Content-Transfer-Encoding and charset, so the part's octets are sliced from
the stored file, base64/quoted-printable undone and the charset applied (UTF-8, US-ASCII and
ISO-8859-1/latin-1 by name; anything else is read as UTF-8 with replacement characters). That
is reading stored bytes at known offsets, not parsing MIME again. The key tree is at most
``ParseContext.max_search_depth`` deep, so evaluating it recursively is safe.
"""

from __future__ import annotations

import bisect
import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from email.utils import parsedate_tz
from typing import TYPE_CHECKING, Final, TypeVar

from msgstore.core.ids import Uid, UidSet
from msgstore.imap.commands.fetch import decode_cte, header_fields
from msgstore.imap.selected import SelectedMailbox, ranges_of
from msgstore.imap.syntax.args import Command, SearchArgs, SearchReturn
from msgstore.imap.syntax.responses import ESearchData, SearchData, Status, StatusResponse
from msgstore.imap.syntax.search import (
    DateField,
    DateOp,
    SearchAll,
    SearchAnd,
    SearchBody,
    SearchDate,
    SearchFlag,
    SearchHeader,
    SearchKey,
    SearchModSeq,
    SearchNot,
    SearchOr,
    SearchRecent,
    SearchSeq,
    SearchSize,
    SearchText,
    SearchUid,
)
from msgstore.mime.headers import decode_words
from msgstore.mime.partmap import PartMap
from msgstore.storage.base import MessageMeta, Want

if TYPE_CHECKING:
    from msgstore.imap.session import Session

#: Fields of the header index computed at delivery (mime.parse).
INDEXED: Final = frozenset(
    {
        "from",
        "to",
        "cc",
        "bcc",
        "subject",
        "date",
        "message-id",
        "in-reply-to",
        "references",
        "list-id",
    }
)
BATCH: Final = 512
T = TypeVar("T")


def _walk(key: SearchKey) -> list[SearchKey]:
    out: list[SearchKey] = [key]
    i = 0
    while i < len(out):
        k = out[i]
        if isinstance(k, SearchNot):
            out.append(k.key)
        elif isinstance(k, SearchOr | SearchAnd):
            out.extend(k.keys)
        i += 1
    return out


class _Ctx:
    def __init__(self, s: Session, sel: SelectedMailbox, key: SearchKey) -> None:
        self.s = s
        self.sel = sel
        keys = _walk(key)
        self.needs_file = any(
            isinstance(k, SearchBody | SearchText)
            or (isinstance(k, SearchHeader) and k.field not in INDEXED)
            for k in keys
        )
        self.uses_modseq = any(isinstance(k, SearchModSeq) for k in keys)
        n = sel.exists
        star_uid = sel.uids[-1] if sel.uids else 0
        saved = s.saved_search or ()
        saved_seqs = [
            (q, q)
            for lo, hi in saved
            for q in range(
                bisect.bisect_left(sel.uids, lo) + 1, bisect.bisect_right(sel.uids, hi) + 1
            )
        ]
        self.seq_sets: dict[int, tuple[tuple[int, int], ...]] = {}
        self.uid_sets: dict[int, tuple[tuple[int, int], ...]] = {}
        for k in keys:
            if isinstance(k, SearchSeq):
                self.seq_sets[id(k)] = k.seqs.resolve(n, saved_seqs)
            elif isinstance(k, SearchUid):
                self.uid_sets[id(k)] = k.uids.resolve(star_uid, saved)


def _in(ranges: Sequence[tuple[int, int]], value: int) -> bool:
    i = bisect.bisect_right(ranges, (value, 2**63)) - 1
    return i >= 0 and ranges[i][0] <= value <= ranges[i][1]


def _date_match(op: DateOp, day: dt.date, want: dt.date) -> bool:
    if op is DateOp.BEFORE:
        return day < want
    if op is DateOp.ON:
        return day == want
    return day >= want


class _Msg:
    __slots__ = ("data", "meta", "seq")

    def __init__(self, seq: int, meta: MessageMeta, data: bytes | None) -> None:
        self.seq = seq
        self.meta = meta
        self.data = data

    def header_block(self) -> bytes:
        if self.data is None or self.meta.partmap is None:
            return b""
        p = PartMap.from_bytes(self.meta.partmap).part(())
        return self.data[: p.header_end] if p is not None else b""


#: Charsets decoded by name for BODY/TEXT; others are read as UTF-8.
_CHARSETS: Final = {
    "utf-8": "utf-8",
    "us-ascii": "utf-8",
    "iso-8859-1": "latin-1",
    "latin-1": "latin-1",
    "latin1": "latin-1",
}


def _in_decoded_text(m: _Msg, needle: str) -> bool:
    """``needle`` (lower case) in the decoded text of a text/* part (module docstring)."""
    if m.data is None or m.meta.partmap is None:
        return False
    for part in PartMap.from_bytes(m.meta.partmap).parts():
        if not part.content_type.startswith("text/") or part.is_message:
            continue
        raw = m.data[part.header_end : part.body_end]
        try:
            octets = decode_cte(raw, part.encoding)
        except ValueError:
            continue
        codec = _CHARSETS.get(part.charset or "us-ascii", "utf-8")
        if needle in octets.decode(codec, "replace").lower():
            return True
    return False


def _in_decoded_header(m: _Msg, needle: str) -> bool:
    """TEXT: ``needle`` (lower case) in a header field with RFC 2047 words decoded."""
    for _, raw in header_fields(m.header_block()):
        if needle in decode_words(raw.partition(b":")[2].strip()).lower():
            return True
    return False


def _sent_day(headers: Mapping[str, str]) -> dt.date | None:
    """The day of the Date header as written: SENTBEFORE/SENTON/SENTSINCE disregard time and
    time zone (RFC 9051 §6.4.4), so 00:30 +0100 on the 2nd is the 2nd, not the 1st in UTC."""
    parsed = parsedate_tz(headers.get("date", "")[:256])
    if parsed is not None:
        try:
            return dt.date(*parsed[:3])
        except ValueError:
            pass
    sent = headers.get("sent-date", "")
    return dt.date.fromisoformat(sent[:10]) if sent else None


def _matches(key: SearchKey, m: _Msg, c: _Ctx) -> bool:
    meta = m.meta
    if isinstance(key, SearchAll):
        return True
    if isinstance(key, SearchFlag):
        lower = key.flag.lower()
        return any(f.lower() == lower for f in meta.flags) == key.present
    if isinstance(key, SearchRecent):
        return (meta.uid in c.sel.recent) == key.recent
    if isinstance(key, SearchHeader):
        needle = key.value.lower()
        if key.field in INDEXED:
            value = (meta.headers or {}).get(key.field)
            return value is not None and needle in value
        wanted = key.field.encode("ascii", "replace")
        for name, raw in header_fields(m.header_block()):
            if name == wanted:
                text = decode_words(raw.partition(b":")[2].strip()).lower()
                if needle in text:
                    return True
        return False
    if isinstance(key, SearchBody | SearchText):
        if m.data is None:
            return False
        data = m.data
        if isinstance(key, SearchBody):
            data = data[len(m.header_block()) :]
        needle = key.value.lower()
        if needle.encode("utf-8") in data.lower():
            return True
        if isinstance(key, SearchText) and _in_decoded_header(m, needle):
            return True
        return _in_decoded_text(m, needle)
    if isinstance(key, SearchDate):
        if key.field is DateField.INTERNAL:
            day = meta.internal_date.date()
        else:
            sent = _sent_day(meta.headers or {})
            if sent is None:
                return False
            day = sent
        return _date_match(key.op, day, key.date)
    if isinstance(key, SearchSize):
        return meta.size > key.octets if key.larger else meta.size < key.octets
    if isinstance(key, SearchSeq):
        return _in(c.seq_sets[id(key)], m.seq)
    if isinstance(key, SearchUid):
        return _in(c.uid_sets[id(key)], meta.uid)
    if isinstance(key, SearchModSeq):
        return meta.modseq >= key.modseq
    if isinstance(key, SearchNot):
        return not _matches(key.key, m, c)
    if isinstance(key, SearchOr):
        return any(_matches(k, m, c) for k in key.keys)
    return all(_matches(k, m, c) for k in key.keys)


async def matching(
    s: Session, key: SearchKey, keep: Callable[[MessageMeta], T], want: Want | None = None
) -> tuple[list[tuple[int, T]], bool]:
    """``(seq, keep(meta))`` of the selected messages that match ``key``, in sequence order
    (``want``: fields ``keep`` needs beyond what the search reads; only what ``keep`` returns
    is held, so a 100,000-message result stays small); and whether ``key`` used MODSEQ
    (which enables CONDSTORE, RFC 7162 §3.1)."""
    sel = s.selected
    assert sel is not None
    c = _Ctx(s, sel, key)
    if c.uses_modseq:
        s.enable(b"CONDSTORE")
    backend, opened = s.ctx.backend, sel.opened
    want = (want or Want(0)) | Want.FLAGS | Want.HEADERS
    if c.needs_file:
        want |= Want.PARTMAP
    found: list[tuple[int, T]] = []
    uids = list(sel.uids)
    for start in range(0, len(uids), BATCH):
        chunk = uids[start : start + BATCH]
        metas = await backend.fetch_meta(opened.owner, opened.id, UidSet(ranges_of(chunk)), want)
        for meta in metas:
            seq = sel.seq_for(meta.uid)
            if seq is None:
                continue
            data = None
            if c.needs_file:
                async with backend.open_body(opened.owner, opened.id, Uid(meta.uid)) as body:
                    data = await body.read(0, body.size)
            if _matches(key, _Msg(seq, meta, data), c):
                found.append((seq, keep(meta)))
    found.sort(key=lambda f: f[0])
    return found, c.uses_modseq


async def search(s: Session, cmd: Command) -> StatusResponse:
    args = cmd.args
    assert isinstance(args, SearchArgs)
    hits, uses_modseq = await matching(s, args.key, lambda m: (int(m.uid), int(m.modseq)))
    found = [(q, u, m) for q, (u, m) in hits]
    numbers = [u if cmd.uid else q for q, u, _ in found]
    top_modseq = max((m for _, _, m in found), default=None) if uses_modseq else None
    returns = args.returns
    if returns is None and not s.rev2:
        s.out.send(SearchData(tuple(numbers), top_modseq))
        return StatusResponse(Status.OK, f"{cmd.name.decode()} completed")
    wanted = returns or frozenset()
    if not wanted:
        wanted = frozenset({SearchReturn.ALL})
    if SearchReturn.SAVE in wanted:
        s.saved_search = ranges_of(u for _, u, _ in found)
        if wanted == {SearchReturn.SAVE}:
            return StatusResponse(Status.OK, f"{cmd.name.decode()} completed")
    s.out.send(
        ESearchData(
            cmd.tag,
            uid=cmd.uid,
            min=min(numbers) if numbers and SearchReturn.MIN in wanted else None,
            max=max(numbers) if numbers and SearchReturn.MAX in wanted else None,
            all=ranges_of(numbers) if numbers and SearchReturn.ALL in wanted else None,
            count=len(numbers) if SearchReturn.COUNT in wanted else None,
            modseq=top_modseq if numbers else None,
        )
    )
    return StatusResponse(Status.OK, f"{cmd.name.decode()} completed")

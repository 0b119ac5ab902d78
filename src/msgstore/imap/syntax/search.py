"""SEARCH keys (RFC 9051 §6.4.4, RFC 3501 §6.4.4, RFC 7162 §3.1.5) as a typed tree.

Every key of RFC 9051 plus RFC 3501's NEW, OLD and RECENT, sequence sets and ``$`` (RFC 5182),
parenthesised groups and MODSEQ. The parser is iterative: an explicit stack of open groups,
each with its pending NOT/OR operators, so 10,000 nested parentheses or a 100,000-long NOT
chain end in a BAD at the depth limit, never in a RecursionError (RELIABILITY.md §4 item 6).

The tree is kept shallow so that code walking it later may recurse safely: OR chains are
flattened (``OR OR a b c`` is one :class:`SearchOr` of three keys), groups and the implicit
AND of a key list become one :class:`SearchAnd`, a group of one key is that key, and the
depth of the result is bounded by ``ParseContext.max_search_depth``.

Strings are decoded once here: CHARSET ``UTF-8`` and ``US-ASCII`` (the two RFC 9051 requires)
are both read as strict UTF-8, a superset of US-ASCII that tolerates clients that send UTF-8
without saying so; any other charset is ``NO [BADCHARSET (US-ASCII UTF-8)]``.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from msgstore.core.flags import ANSWERED, DELETED, DRAFT, FLAGGED, SEEN
from msgstore.imap.syntax.errors import BadCommandError, RefusedCommandError
from msgstore.imap.syntax.grammar import (
    MAX_NUMBER64,
    ParseContext,
    SeqSet,
    TokenReader,
    astring,
    date,
    flag,
    number,
    sequence_set,
    utf8_text,
)
from msgstore.imap.syntax.tokens import AtomToken, ListToken, QuotedToken, Token

#: Charsets accepted by SEARCH, SORT and THREAD, as listed in BADCHARSET.
CHARSETS: Final = (b"US-ASCII", b"UTF-8")
BADCHARSET_CODE: Final = b"BADCHARSET (US-ASCII UTF-8)"


class DateField(enum.Enum):
    INTERNAL = "internal"  # BEFORE ON SINCE: the internal date (RFC 9051 §2.3.3)
    SENT = "sent"  # SENTBEFORE SENTON SENTSINCE: the Date: header


class DateOp(enum.Enum):
    BEFORE = "before"
    ON = "on"
    SINCE = "since"


@dataclass(frozen=True, slots=True)
class SearchAll:
    """ALL."""


@dataclass(frozen=True, slots=True)
class SearchFlag:
    """ANSWERED/UNANSWERED ... KEYWORD/UNKEYWORD: ``flag`` set (``present``) or not."""

    flag: str
    present: bool = True


@dataclass(frozen=True, slots=True)
class SearchRecent:
    """RECENT (``recent``) or OLD (not ``recent``); NEW is RECENT UNSEEN."""

    recent: bool = True


@dataclass(frozen=True, slots=True)
class SearchHeader:
    """BCC CC FROM SUBJECT TO and HEADER: ``field`` (lower case) contains ``value``."""

    field: str
    value: str


@dataclass(frozen=True, slots=True)
class SearchBody:
    """BODY: the body contains ``value``."""

    value: str


@dataclass(frozen=True, slots=True)
class SearchText:
    """TEXT: header or body contains ``value``."""

    value: str


@dataclass(frozen=True, slots=True)
class SearchDate:
    field: DateField
    op: DateOp
    date: dt.date


@dataclass(frozen=True, slots=True)
class SearchSize:
    """LARGER (``larger``) / SMALLER than ``octets`` (RFC822.SIZE)."""

    larger: bool
    octets: int


@dataclass(frozen=True, slots=True)
class SearchSeq:
    """A bare sequence set (message sequence numbers) or ``$``."""

    seqs: SeqSet


@dataclass(frozen=True, slots=True)
class SearchUid:
    uids: SeqSet


@dataclass(frozen=True, slots=True)
class SearchModSeq:
    """MODSEQ (RFC 7162 §3.1.5); ``entry`` is e.g. ``/flags/\\seen`` with its ``entry_type``."""

    modseq: int
    entry: str | None = None
    entry_type: str | None = None


@dataclass(frozen=True, slots=True)
class SearchNot:
    key: SearchKey


@dataclass(frozen=True, slots=True)
class SearchOr:
    """Any of ``keys`` (two or more)."""

    keys: tuple[SearchKey, ...]


@dataclass(frozen=True, slots=True)
class SearchAnd:
    """All of ``keys`` (two or more)."""

    keys: tuple[SearchKey, ...]


SearchKey = (
    SearchAll
    | SearchFlag
    | SearchRecent
    | SearchHeader
    | SearchBody
    | SearchText
    | SearchDate
    | SearchSize
    | SearchSeq
    | SearchUid
    | SearchModSeq
    | SearchNot
    | SearchOr
    | SearchAnd
)

_FLAG_KEYS: Final[dict[bytes, tuple[str, bool]]] = {
    b"ANSWERED": (ANSWERED, True),
    b"DELETED": (DELETED, True),
    b"DRAFT": (DRAFT, True),
    b"FLAGGED": (FLAGGED, True),
    b"SEEN": (SEEN, True),
    b"UNANSWERED": (ANSWERED, False),
    b"UNDELETED": (DELETED, False),
    b"UNDRAFT": (DRAFT, False),
    b"UNFLAGGED": (FLAGGED, False),
    b"UNSEEN": (SEEN, False),
}
_HEADER_KEYS: Final = {b"BCC": "bcc", b"CC": "cc", b"FROM": "from", b"SUBJECT": "subject"}
_DATE_KEYS: Final[dict[bytes, tuple[DateField, DateOp]]] = {
    b"BEFORE": (DateField.INTERNAL, DateOp.BEFORE),
    b"ON": (DateField.INTERNAL, DateOp.ON),
    b"SINCE": (DateField.INTERNAL, DateOp.SINCE),
    b"SENTBEFORE": (DateField.SENT, DateOp.BEFORE),
    b"SENTON": (DateField.SENT, DateOp.ON),
    b"SENTSINCE": (DateField.SENT, DateOp.SINCE),
}
_ENTRY_TYPES: Final = frozenset({b"PRIV", b"SHARED", b"ALL"})
_SEQ_START: Final = frozenset(b"0123456789*$")


def charset(tok: Token) -> str:
    """A CHARSET argument; ``NO [BADCHARSET ...]`` unless it is one of :data:`CHARSETS`."""
    name = astring(tok, "charset").upper()
    if name not in CHARSETS:
        raise RefusedCommandError("Unsupported charset", code=BADCHARSET_CODE)
    return name.decode("ascii")


def search_program(reader: TokenReader, ctx: ParseContext) -> tuple[str | None, SearchKey]:
    """``search-program`` = ["CHARSET" SP charset SP] search-key *(SP search-key)."""
    cs: str | None = None
    if reader.peek_atom() == b"CHARSET":
        reader.skip()
        cs = charset(reader.take("charset"))
    return cs, search_keys(reader.rest(), ctx)


class _Op:
    __slots__ = ("args", "name", "need")

    def __init__(self, name: str, need: int) -> None:
        self.name = name
        self.need = need
        self.args: list[tuple[SearchKey, int]] = []


class _Group:
    __slots__ = ("keys", "ops", "pos", "tokens")

    def __init__(self, tokens: Sequence[Token]) -> None:
        self.tokens = tokens
        self.pos = 0
        self.keys: list[tuple[SearchKey, int]] = []
        self.ops: list[_Op] = []

    def arg(self, what: str) -> Token:
        if self.pos >= len(self.tokens):
            raise BadCommandError(f"Missing {what}")
        tok = self.tokens[self.pos]
        self.pos += 1
        return tok


def search_keys(tokens: Sequence[Token], ctx: ParseContext) -> SearchKey:
    """One or more search keys (their implicit AND) -> a key tree."""
    if not tokens:
        raise BadCommandError("Missing search criteria")
    stack = [_Group(tokens)]
    while True:
        group = stack[-1]
        if group.pos == len(group.tokens):
            if group.ops:
                raise BadCommandError(f"Missing search key after {group.ops[-1].name}")
            result = _combine(SearchAnd, group.keys, ctx)
            stack.pop()
            if not stack:
                return result[0]
            _emit(stack[-1], result, ctx)
            continue
        tok = group.tokens[group.pos]
        group.pos += 1
        if isinstance(tok, ListToken):
            if not tok.items:
                raise BadCommandError("Empty search key group")
            stack.append(_Group(tok.items))
            continue
        if not isinstance(tok, AtomToken):
            raise BadCommandError("Invalid search key")
        name = tok.value.upper()
        if name == b"NOT":
            group.ops.append(_Op("NOT", 1))
        elif name == b"OR":
            group.ops.append(_Op("OR", 2))
        else:
            key = _simple_key(name, tok, group)
            _emit(group, (key, 2 if isinstance(key, SearchAnd) else 1), ctx)


def _emit(group: _Group, item: tuple[SearchKey, int], ctx: ParseContext) -> None:
    while group.ops:
        op = group.ops[-1]
        op.args.append(item)
        if len(op.args) < op.need:
            return
        group.ops.pop()
        if op.name == "NOT":
            item = (SearchNot(op.args[0][0]), op.args[0][1] + 1)
            if item[1] > ctx.max_search_depth:
                raise BadCommandError("Search keys nested too deeply")
        else:
            item = _combine(SearchOr, op.args, ctx)
    group.keys.append(item)


def _combine(
    kind: type[SearchAnd] | type[SearchOr], items: list[tuple[SearchKey, int]], ctx: ParseContext
) -> tuple[SearchKey, int]:
    """AND or OR of ``items``, splicing children of the same kind; one item is itself."""
    if len(items) == 1:
        return items[0]
    keys: list[SearchKey] = []
    depth = 0
    for key, d in items:
        if isinstance(key, kind):
            keys.extend(key.keys)
            d -= 1
        else:
            keys.append(key)
        depth = max(depth, d)
    depth += 1
    if depth > ctx.max_search_depth:
        raise BadCommandError("Search keys nested too deeply")
    return kind(tuple(keys)), depth


def _text(group: _Group, what: str) -> str:
    return utf8_text(astring(group.arg(what), what), what)


def _simple_key(name: bytes, tok: AtomToken, group: _Group) -> SearchKey:
    if name == b"ALL":
        return SearchAll()
    fk = _FLAG_KEYS.get(name)
    if fk is not None:
        return SearchFlag(fk[0], fk[1])
    header = _HEADER_KEYS.get(name)
    if header is not None:
        return SearchHeader(header, _text(group, f"string after {name.decode()}"))
    if name == b"TO":
        return SearchHeader("to", _text(group, "string after TO"))
    dk = _DATE_KEYS.get(name)
    if dk is not None:
        return SearchDate(dk[0], dk[1], date(group.arg(f"date after {name.decode()}")))
    if name in (b"KEYWORD", b"UNKEYWORD"):
        kw = flag(group.arg(f"keyword after {name.decode()}"), "keyword")
        if kw.startswith("\\"):
            raise BadCommandError("Invalid keyword")
        return SearchFlag(kw, name == b"KEYWORD")
    if name == b"HEADER":
        field = astring(group.arg("header field name after HEADER"), "header field name")
        value = _text(group, "string after HEADER")
        return SearchHeader(utf8_text(field, "header field name").lower(), value)
    if name == b"BODY":
        return SearchBody(_text(group, "string after BODY"))
    if name == b"TEXT":
        return SearchText(_text(group, "string after TEXT"))
    if name in (b"LARGER", b"SMALLER"):
        size = number(group.arg(f"size after {name.decode()}"), "size", maximum=MAX_NUMBER64)
        return SearchSize(name == b"LARGER", size)
    if name == b"UID":
        return SearchUid(sequence_set(group.arg("UID set after UID")))
    if name == b"NEW":
        return SearchAnd((SearchRecent(True), SearchFlag(SEEN, False)))
    if name in (b"OLD", b"RECENT"):
        return SearchRecent(name == b"RECENT")
    if name == b"MODSEQ":
        return _modseq(group)
    if name[:1] and name[0] in _SEQ_START:
        return SearchSeq(sequence_set(tok))
    raise BadCommandError("Unknown search key")


def _modseq(group: _Group) -> SearchModSeq:
    """MODSEQ [SP entry-name SP entry-type-req] SP mod-sequence-valzer (RFC 7162 §3.1.5)."""
    tok = group.arg("mod-sequence after MODSEQ")
    entry: str | None = None
    entry_type: str | None = None
    if isinstance(tok, QuotedToken):
        raw = tok.value
        if not raw.lower().startswith(b"/flags/"):
            raise BadCommandError("Invalid MODSEQ entry name")
        entry = utf8_text(raw, "MODSEQ entry name")
        kind = group.arg("entry type after MODSEQ entry name")
        if not isinstance(kind, AtomToken) or kind.value.upper() not in _ENTRY_TYPES:
            raise BadCommandError("Invalid MODSEQ entry type")
        entry_type = kind.value.lower().decode("ascii")
        tok = group.arg("mod-sequence after MODSEQ")
    return SearchModSeq(number(tok, "mod-sequence", maximum=MAX_NUMBER64), entry, entry_type)

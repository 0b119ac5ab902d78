"""Shared productions of the IMAP command grammar (RFC 9051 §9, RFC 3501 §9).

Each production takes tokens (:mod:`msgstore.imap.syntax.tokens`) and returns a typed value,
or raises :class:`~msgstore.imap.syntax.errors.BadCommandError` with a text that says what was
wrong and never quotes the input. The per-command parsers (``parse_*.py``) read their
arguments through a :class:`TokenReader` and these functions:

- strings: :func:`astring`, :func:`nstring`, :func:`string`, :func:`atom`, :func:`number`;
- names: :func:`mailbox` (INBOX in any case, modified UTF-7 or UTF-8 by session mode, then
  :func:`msgstore.core.names.mailbox_name`), :func:`list_mailbox` for LIST patterns;
- :class:`SeqSet` via :func:`sequence_set` (``*`` and ``$`` kept symbolic);
- flags: :func:`flag`, :func:`flag_list`;
- dates: :func:`date` (SEARCH) and :func:`date_time` (APPEND).

Search keys live in :mod:`~msgstore.imap.syntax.search` and fetch attributes in
:mod:`~msgstore.imap.syntax.fetchatt` (split out to keep each module under ~600 lines).

Mailbox names that decode fine but fail the store's naming rules (``a//b``, ``..``, 300
octets) are not a syntax error: they give ``NO [CANNOT]`` (RELIABILITY.md §7 case 14), raised
here as :class:`~msgstore.imap.syntax.errors.RefusedCommandError`.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final

from msgstore.core.errors import StoreError
from msgstore.core.flags import normalize_flag
from msgstore.core.names import (
    DELIMITER,
    INBOX,
    MailboxName,
    decode_mutf7,
    decode_utf8,
    mailbox_name,
)
from msgstore.imap.syntax.errors import BadCommandError, RefusedCommandError
from msgstore.imap.syntax.tokens import (
    AtomToken,
    ListToken,
    LiteralFileToken,
    LiteralToken,
    QuotedToken,
    Token,
    TokenLimits,
)

MAX_U32: Final = 2**32 - 1
MAX_NUMBER64: Final = 2**63 - 1
#: ``*`` in a :class:`SeqSet` range (0 is never a valid sequence number or UID).
STAR: Final = 0

_ASTRING_ATOM: Final = re.compile(rb'[^\x00-\x20\x7f-\xff(){%*"\\]+\Z')
_PLAIN_ATOM: Final = re.compile(rb'[^\x00-\x20\x7f-\xff(){%*"\\\]]+\Z')
_LIST_ATOM: Final = re.compile(rb'[^\x00-\x20\x7f-\xff(){"\\]+\Z')
_MONTHS: Final = {
    m: i + 1 for i, m in enumerate(b"JAN FEB MAR APR MAY JUN JUL AUG SEP OCT NOV DEC".split())
}
_DATE: Final = re.compile(rb"([0-9]{1,2})-([A-Za-z]{3})-([0-9]{4})\Z")
_DATE_TIME: Final = re.compile(
    rb"([ 0-9][0-9])-([A-Za-z]{3})-([0-9]{4}) ([0-9]{2}):([0-9]{2}):([0-9]{2}) ([+-])([0-9]{4})\Z"
)


@dataclass(frozen=True, slots=True)
class ParseContext:
    """What the parsers need to know about the session.

    Attributes:
        utf8: UTF8=ACCEPT is enabled (RFC 6855): names and strings are UTF-8 on the wire.
        rev2: IMAP4rev2 is enabled (RFC 9051); implies UTF-8 names (RFC 9051 §5.1).
        tokens: limits of the token tree.
        max_search_depth: depth of the SEARCH key tree after flattening OR chains and
            AND groups; deeper input gets BAD instead of a tree that recursive code downstream
            could not walk.
    """

    utf8: bool = False
    rev2: bool = False
    tokens: TokenLimits = field(default_factory=TokenLimits)
    max_search_depth: int = 64

    @property
    def utf8_names(self) -> bool:
        """True if mailbox names arrive as UTF-8 rather than modified UTF-7."""
        return self.utf8 or self.rev2


class TokenReader:
    """A cursor over a command's argument tokens, with precise "missing"/"too many" errors."""

    __slots__ = ("_pos", "_tokens")

    def __init__(self, tokens: Sequence[Token]) -> None:
        self._tokens = tokens
        self._pos = 0

    def peek(self) -> Token | None:
        """The next token, not consumed."""
        return self._tokens[self._pos] if self._pos < len(self._tokens) else None

    def peek_atom(self) -> bytes | None:
        """The next token in upper case if it is an atom, else None; not consumed."""
        tok = self.peek()
        return tok.value.upper() if isinstance(tok, AtomToken) else None

    def take(self, what: str) -> Token:
        """Consume the next token; ``BAD Missing <what>`` if there is none."""
        if self._pos >= len(self._tokens):
            raise BadCommandError(f"Missing {what}")
        tok = self._tokens[self._pos]
        self._pos += 1
        return tok

    def skip(self) -> None:
        """Consume the token just peeked at."""
        self._pos += 1

    def rest(self) -> Sequence[Token]:
        """Consume and return every remaining token."""
        out = self._tokens[self._pos :]
        self._pos = len(self._tokens)
        return out

    def at_end(self) -> bool:
        return self._pos >= len(self._tokens)

    def end(self) -> None:
        """``BAD Too many arguments`` unless every token was consumed."""
        if self._pos < len(self._tokens):
            raise BadCommandError("Too many arguments")


# --- strings and numbers ----------------------------------------------------------------


def _string_of(tok: Token, what: str) -> bytes | None:
    if isinstance(tok, QuotedToken):
        return tok.value
    if isinstance(tok, LiteralToken):
        if tok.binary:
            raise BadCommandError(f"Binary literal not allowed for {what}")
        return tok.value
    if isinstance(tok, LiteralFileToken):
        raise BadCommandError(f"{what[:1].upper()}{what[1:]} too long")
    return None


def string(tok: Token, what: str) -> bytes:
    """``string`` = quoted / literal."""
    value = _string_of(tok, what)
    if value is None:
        raise BadCommandError(f"Invalid {what}: expected a string")
    return value


def astring(tok: Token, what: str) -> bytes:
    """``astring`` = 1*ASTRING-CHAR / string."""
    if isinstance(tok, AtomToken):
        if _ASTRING_ATOM.match(tok.value) is None:
            raise BadCommandError(f"Invalid characters in {what}")
        return tok.value
    value = _string_of(tok, what)
    if value is None:
        raise BadCommandError(f"Invalid {what}")
    return value


def nstring(tok: Token, what: str) -> bytes | None:
    """``nstring`` = string / NIL."""
    if isinstance(tok, AtomToken) and tok.value.upper() == b"NIL":
        return None
    value = _string_of(tok, what)
    if value is None:
        raise BadCommandError(f"Invalid {what}: expected a string or NIL")
    return value


def atom(tok: Token, what: str) -> bytes:
    """``atom`` = 1*ATOM-CHAR, returned in upper case (every atom we compare is a keyword)."""
    if not isinstance(tok, AtomToken) or _PLAIN_ATOM.match(tok.value) is None:
        raise BadCommandError(f"Invalid {what}")
    return tok.value.upper()


def number(tok: Token, what: str, *, maximum: int = MAX_U32, minimum: int = 0) -> int:
    """``number`` (default: 32-bit), ``nz-number`` with ``minimum=1``, ``number64``.

    The digit count is checked before ``int()``, so a 5,000-digit number is a BAD, not the
    ``ValueError`` of Python's integer-string conversion limit (RELIABILITY.md §4 item 5).
    """
    if not isinstance(tok, AtomToken) or not tok.value.isdigit():
        raise BadCommandError(f"Invalid {what}: expected a number")
    if len(tok.value) > len(str(maximum)):
        raise BadCommandError(f"Invalid {what}: number out of range")
    value = int(tok.value)
    if not minimum <= value <= maximum:
        raise BadCommandError(f"Invalid {what}: number out of range")
    return value


def utf8_text(raw: bytes, what: str) -> str:
    """Decode a string argument as strict UTF-8 (a superset of the US-ASCII of IMAP4rev1)."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BadCommandError(f"Invalid UTF-8 in {what}") from None


# --- mailbox names ----------------------------------------------------------------------


def decode_name(raw: bytes, ctx: ParseContext, what: str = "mailbox name") -> str:
    """Wire octets of a name -> str: UTF-8 under UTF8=ACCEPT/IMAP4rev2, else modified UTF-7."""
    try:
        return decode_utf8(raw) if ctx.utf8_names else decode_mutf7(raw)
    except StoreError as e:
        raise BadCommandError(e.public if what == "mailbox name" else f"Invalid {what}") from None


def mailbox(
    tok: Token, ctx: ParseContext, what: str = "mailbox name", *, strip_delimiter: bool = False
) -> MailboxName:
    """``mailbox`` = "INBOX" / astring, decoded and validated.

    ``strip_delimiter`` drops one trailing ``/`` first (CREATE, RFC 9051 §6.3.4: "the name
    created is without the trailing hierarchy delimiter").

    Raises:
        BadCommandError: not an astring, or not valid modified UTF-7 / UTF-8.
        RefusedCommandError: ``NO [CANNOT]`` for a name the store's naming rules refuse.
    """
    raw = astring(tok, what)
    if raw.upper() == b"INBOX":
        return INBOX
    name = decode_name(raw, ctx, what)
    if strip_delimiter and name.endswith(DELIMITER) and len(name) > 1:
        name = name[:-1]
    try:
        return mailbox_name(name)
    except StoreError as e:
        raise RefusedCommandError(e.public, code=b"CANNOT") from None


def list_mailbox(tok: Token, ctx: ParseContext, what: str = "mailbox pattern") -> str:
    """``list-mailbox`` = 1*list-char / string: a LIST pattern, wildcards ``%`` ``*`` kept."""
    if isinstance(tok, AtomToken):
        if _LIST_ATOM.match(tok.value) is None:
            raise BadCommandError(f"Invalid characters in {what}")
        raw = tok.value
    else:
        value = _string_of(tok, what)
        if value is None:
            raise BadCommandError(f"Invalid {what}")
        raw = value
    return decode_name(raw, ctx, what)


def reference_name(tok: Token, ctx: ParseContext) -> str:
    """LIST's reference name: a ``mailbox`` that may be empty and is not validated."""
    return decode_name(astring(tok, "reference name"), ctx, "reference name")


# --- sequence sets ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SeqSet:
    """A sequence set as the client wrote it, ``*`` and ``$`` unresolved.

    ``ranges`` holds ``(a, b)`` pairs as given (``a`` may exceed ``b``; :data:`STAR` stands
    for ``*``); a single number ``n`` is ``(n, n)``. ``saved`` is true if ``$`` (RFC 5182
    SEARCHRES) appeared. The same type serves message sequence numbers and UIDs: the command
    (FETCH or UID FETCH) says which, and the selected state resolves it.
    """

    ranges: tuple[tuple[int, int], ...]
    saved: bool = False

    @classmethod
    def of(cls, *ranges: tuple[int, int], saved: bool = False) -> SeqSet:
        return cls(tuple(ranges), saved)

    def resolve(
        self, star: int, saved: Iterable[tuple[int, int]] = ()
    ) -> tuple[tuple[int, int], ...]:
        """Sorted, merged, non-empty ranges with ``*`` replaced by ``star`` (the highest
        sequence number or UID, 0 in an empty mailbox) and ``$`` by ``saved``.

        RFC 9051 §9: ``*:4`` is ``4:*``; in an empty mailbox ``*`` matches nothing.
        """
        spans: list[tuple[int, int]] = []
        for a, b in self.ranges:
            a2 = star if a == STAR else a
            b2 = star if b == STAR else b
            if a2 == 0 or b2 == 0:
                continue
            spans.append((min(a2, b2), max(a2, b2)))
        if self.saved:
            spans.extend(saved)
        spans.sort()
        out: list[tuple[int, int]] = []
        for lo, hi in spans:
            if out and lo <= out[-1][1] + 1:
                if hi > out[-1][1]:
                    out[-1] = (out[-1][0], hi)
            else:
                out.append((lo, hi))
        return tuple(out)


def _seq_number(part: bytes) -> int:
    if part == b"*":
        return STAR
    if not part.isdigit():
        raise BadCommandError("Invalid sequence set")
    if len(part) > 10:
        raise BadCommandError("Invalid sequence set: number out of range")
    value = int(part)
    if value == 0:
        raise BadCommandError("Invalid sequence set: 0 is not a valid number")
    if value > MAX_U32:
        raise BadCommandError("Invalid sequence set: number out of range")
    return value


def sequence_set(tok: Token, *, allow_saved: bool = True) -> SeqSet:
    """``sequence-set`` (RFC 9051 §9) plus ``$`` (RFC 5182); linear in its length."""
    if not isinstance(tok, AtomToken):
        raise BadCommandError("Invalid sequence set")
    ranges: list[tuple[int, int]] = []
    saved = False
    for part in tok.value.split(b","):
        if part == b"$":
            if not allow_saved:
                raise BadCommandError("Invalid sequence set: '$' is not allowed here")
            saved = True
            continue
        lo, colon, hi = part.partition(b":")
        a = _seq_number(lo)
        ranges.append((a, _seq_number(hi) if colon else a))
    return SeqSet(tuple(ranges), saved)


# --- flags ------------------------------------------------------------------------------


def flag(tok: Token, what: str = "flag") -> str:
    """``flag`` = system flag / keyword, in canonical spelling (core.flags.normalize_flag)."""
    if not isinstance(tok, AtomToken):
        raise BadCommandError(f"Invalid {what}")
    raw = tok.value
    body = raw[1:] if raw.startswith(b"\\") else raw
    if not body or _PLAIN_ATOM.match(body) is None:
        raise BadCommandError(f"Invalid {what}")
    text = raw.decode("ascii")
    try:
        return normalize_flag(text)
    except StoreError as e:
        raise BadCommandError(e.public if repr(text) not in e.public else "Invalid flag") from None


def flag_list(tok: Token, what: str = "flag list") -> frozenset[str]:
    """``flag-list`` = "(" [flag *(SP flag)] ")"."""
    if not isinstance(tok, ListToken):
        raise BadCommandError(f"Invalid {what}: expected a parenthesised list")
    return frozenset(flag(item) for item in tok.items)


# --- dates ------------------------------------------------------------------------------


def date(tok: Token, what: str = "date") -> dt.date:
    """``date`` = date-text / DQUOTE date-text DQUOTE, e.g. ``1-Feb-2024`` (SEARCH)."""
    if isinstance(tok, AtomToken | QuotedToken):
        m = _DATE.match(tok.value)
        if m is not None:
            month = _MONTHS.get(m.group(2).upper())
            if month is not None:
                try:
                    return dt.date(int(m.group(3)), month, int(m.group(1)))
                except ValueError:
                    pass
    raise BadCommandError(f"Invalid {what}")


def date_time(tok: Token, what: str = "date-time") -> dt.datetime:
    """``date-time`` = DQUOTE date-day-fixed "-" date-month "-" date-year SP time SP zone
    DQUOTE, e.g. ``"17-Jul-1996 02:44:25 -0700"`` (APPEND)."""
    if isinstance(tok, QuotedToken):
        m = _DATE_TIME.match(tok.value)
        if m is not None:
            day, mon, year, hh, mm, ss, sign, zone = m.groups()
            month = _MONTHS.get(mon.upper())
            zh, zm = int(zone[:2]), int(zone[2:])
            if month is not None and zm < 60:
                try:
                    offset = dt.timedelta(hours=zh, minutes=zm)
                    tz = dt.timezone(-offset if sign == b"-" else offset)
                    return dt.datetime(
                        int(year), month, int(day), int(hh), int(mm), int(ss), tzinfo=tz
                    )
                except ValueError:
                    pass
    raise BadCommandError(f"Invalid {what}")

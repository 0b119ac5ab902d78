"""FETCH attributes (RFC 9051 §6.4.5, RFC 3501 §6.4.5, RFC 3516 BINARY, RFC 7162 MODSEQ).

A FETCH asks for a macro (ALL, FAST, FULL), one attribute, or a parenthesised list. The result
is a tuple of :data:`FetchItem`:

- :class:`FetchAttr` for the attributes without arguments (ENVELOPE, FLAGS, ..., MODSEQ;
  ``BODY`` alone is the non-extensible BODYSTRUCTURE). RFC822, RFC822.HEADER and RFC822.TEXT
  stay attributes rather than becoming sections: their responses carry their own names;
- :class:`FetchBody` for ``BODY[section]<partial>`` and ``BODY.PEEK[...]``;
- :class:`FetchBinary` for ``BINARY[part]<partial>`` / ``BINARY.PEEK``;
- :class:`FetchBinarySize` for ``BINARY.SIZE[part]``.

Section specs: ``HEADER``, ``HEADER.FIELDS (list)``, ``HEADER.FIELDS.NOT (list)``, ``TEXT``,
``MIME`` (after a part number only), and part numbers ``1.2.3``. Header field names are kept as
the client spelled them: the response must echo the section as requested.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import Final

from msgstore.imap.syntax.errors import BadCommandError
from msgstore.imap.syntax.grammar import MAX_NUMBER64, MAX_U32, astring
from msgstore.imap.syntax.tokens import AtomToken, ListToken, SectionToken, Token


class FetchAttr(enum.Enum):
    """Fetch attributes without arguments; the value is the RFC spelling."""

    ENVELOPE = b"ENVELOPE"
    FLAGS = b"FLAGS"
    INTERNALDATE = b"INTERNALDATE"
    RFC822 = b"RFC822"
    RFC822_HEADER = b"RFC822.HEADER"
    RFC822_SIZE = b"RFC822.SIZE"
    RFC822_TEXT = b"RFC822.TEXT"
    BODY = b"BODY"
    BODYSTRUCTURE = b"BODYSTRUCTURE"
    UID = b"UID"
    MODSEQ = b"MODSEQ"


class SectionText(enum.Enum):
    HEADER = b"HEADER"
    HEADER_FIELDS = b"HEADER.FIELDS"
    HEADER_FIELDS_NOT = b"HEADER.FIELDS.NOT"
    TEXT = b"TEXT"
    MIME = b"MIME"


@dataclass(frozen=True, slots=True)
class Section:
    """``[1.2.HEADER.FIELDS (From To)]``: ``part=(1, 2)``, ``text=HEADER_FIELDS``,
    ``fields=("From", "To")``. ``Section()`` is the whole message (``BODY[]``)."""

    part: tuple[int, ...] = ()
    text: SectionText | None = None
    fields: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Partial:
    """``<offset.length>``: ``length`` octets from ``offset``."""

    offset: int
    length: int


@dataclass(frozen=True, slots=True)
class FetchBody:
    section: Section
    peek: bool = False
    partial: Partial | None = None


@dataclass(frozen=True, slots=True)
class FetchBinary:
    part: tuple[int, ...]
    peek: bool = False
    partial: Partial | None = None


@dataclass(frozen=True, slots=True)
class FetchBinarySize:
    part: tuple[int, ...]


FetchItem = FetchAttr | FetchBody | FetchBinary | FetchBinarySize

_SIMPLE: Final = {a.value: a for a in FetchAttr}
_FAST: Final = (FetchAttr.FLAGS, FetchAttr.INTERNALDATE, FetchAttr.RFC822_SIZE)
MACROS: Final[dict[bytes, tuple[FetchItem, ...]]] = {
    b"FAST": _FAST,
    b"ALL": (*_FAST, FetchAttr.ENVELOPE),
    b"FULL": (*_FAST, FetchAttr.ENVELOPE, FetchAttr.BODY),
}
_PARTIAL: Final = re.compile(rb"<([0-9]{1,19})\.([0-9]{1,19})>\Z")
_FIELD_NAME: Final = re.compile(rb"[\x21-\x39\x3b-\x7e]+\Z")
#: Deepest MIME part number we accept (``1.2.3...``); real messages stay in single digits.
MAX_PART_DEPTH: Final = 64


def fetch_attributes(tok: Token) -> tuple[FetchItem, ...]:
    """``"ALL" / "FULL" / "FAST" / fetch-att / "(" fetch-att *(SP fetch-att) ")"``."""
    if isinstance(tok, AtomToken):
        macro = MACROS.get(tok.value.upper())
        if macro is not None:
            return macro
    if isinstance(tok, ListToken):
        if not tok.items:
            raise BadCommandError("Empty fetch attribute list")
        return tuple(fetch_att(item) for item in tok.items)
    return (fetch_att(tok),)


def fetch_att(tok: Token) -> FetchItem:
    """One ``fetch-att``."""
    if isinstance(tok, AtomToken):
        attr = _SIMPLE.get(tok.value.upper())
        if attr is None:
            raise BadCommandError("Unknown fetch attribute")
        return attr
    if not isinstance(tok, SectionToken):
        raise BadCommandError("Invalid fetch attribute")
    name = tok.name.upper()
    partial = _partial(tok.suffix)
    if name in (b"BODY", b"BODY.PEEK"):
        return FetchBody(_section(tok.items), name == b"BODY.PEEK", partial)
    part = _binary_part(tok.items)
    if name == b"BINARY.SIZE":
        if partial is not None:
            raise BadCommandError("BINARY.SIZE takes no partial range")
        return FetchBinarySize(part)
    return FetchBinary(part, name == b"BINARY.PEEK", partial)


def _partial(suffix: bytes) -> Partial | None:
    if not suffix:
        return None
    m = _PARTIAL.match(suffix)
    if m is None:
        raise BadCommandError("Invalid partial range")
    offset, length = int(m.group(1)), int(m.group(2))
    if offset > MAX_NUMBER64 or not 0 < length <= MAX_NUMBER64:
        raise BadCommandError("Invalid partial range")
    return Partial(offset, length)


def _part_numbers(words: list[bytes]) -> tuple[int, ...]:
    if len(words) > MAX_PART_DEPTH:
        raise BadCommandError("Section part number too deep")
    out: list[int] = []
    for w in words:
        if not w.isdigit() or len(w) > 10 or w.startswith(b"0") or int(w) > MAX_U32:
            raise BadCommandError("Invalid section part number")
        out.append(int(w))
    return tuple(out)


def _binary_part(items: tuple[Token, ...]) -> tuple[int, ...]:
    """``section-binary`` = "[" [section-part] "]"."""
    if not items:
        return ()
    if len(items) != 1 or not isinstance(items[0], AtomToken):
        raise BadCommandError("Invalid BINARY section")
    return _part_numbers(items[0].value.split(b"."))


def _section(items: tuple[Token, ...]) -> Section:
    """``section-spec`` = section-msgtext / (section-part ["." section-text])."""
    if not items:
        return Section()
    head = items[0]
    if not isinstance(head, AtomToken):
        raise BadCommandError("Invalid section")
    words = head.value.split(b".")
    n = 0
    while n < len(words) and words[n][:1].isdigit():
        n += 1
    part = _part_numbers(words[:n])
    rest = b".".join(words[n:]).upper()
    if not rest:
        if len(items) != 1:
            raise BadCommandError("Invalid section")
        return Section(part)
    try:
        text = SectionText(rest)
    except ValueError:
        raise BadCommandError("Invalid section text") from None
    if text is SectionText.MIME and not part:
        raise BadCommandError("MIME section requires a part number")
    if text not in (SectionText.HEADER_FIELDS, SectionText.HEADER_FIELDS_NOT):
        if len(items) != 1:
            raise BadCommandError("Invalid section")
        return Section(part, text)
    if len(items) != 2 or not isinstance(items[1], ListToken) or not items[1].items:
        raise BadCommandError("Missing header field list")
    fields: list[str] = []
    for item in items[1].items:
        raw = astring(item, "header field name")
        if _FIELD_NAME.match(raw) is None:
            raise BadCommandError("Invalid header field name")
        fields.append(raw.decode("ascii"))
    return Section(part, text, tuple(fields))

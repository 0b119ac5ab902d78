"""Typed IMAP responses, response codes, and the pure encoders for strings and names.

Handlers return values from this module; the response writer (``msgstore.imap.writer``, I/O)
turns them into octets with :meth:`encode`, passing the session's mode: ``utf8`` is true once
the client ENABLEd UTF8=ACCEPT or IMAP4rev2, and decides how strings and mailbox names are
written (STYLE.md §4.5: handlers never think about the client's version).

- :class:`Code` — every response code we send, in its RFC spelling; :class:`ResponseCode` adds
  the code's data (``[UIDNEXT 4392]``, ``[COPYUID 38505 304,319:320 3956:3958]``). Builders
  for codes with data: :func:`uidnext`, :func:`appenduid`, :func:`copyuid`, ...
- :class:`StatusResponse` — tagged or untagged OK/NO/BAD, and PREAUTH/BYE;
  :class:`Continuation` — ``+ text``.
- Untagged data: :class:`Exists`, :class:`Expunge`, :class:`Vanished`, :class:`FlagsData`,
  :class:`CapabilityData`, :class:`EnabledData`, :class:`ListData`, :class:`StatusData`,
  :class:`SearchData`, :class:`ESearchData`. FETCH responses are built by the writer from
  precomputed bytes (ARCHITECTURE.md) and are not modelled here.
- Strings: :func:`encode_astring`, :func:`encode_string`, :func:`encode_nstring` choose atom,
  quoted string or literal; :func:`encode_mailbox` writes a name as UTF-8 or modified UTF-7.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from msgstore.core.names import INBOX, encode_mutf7

CRLF: Final = b"\r\n"
#: Longest string sent as a quoted string; longer ones go as literals (easier on clients).
MAX_QUOTED_OCTETS: Final = 1024

_ASTRING_ATOM: Final = re.compile(rb'[^\x00-\x20\x7f-\xff(){%*"\\]+\Z')
_QUOTABLE_7BIT: Final = re.compile(rb"[\x01-\x09\x0b\x0c\x0e-\x7f]*\Z")
_QUOTABLE_8BIT: Final = re.compile(rb"[\x01-\x09\x0b\x0c\x0e-\xff]*\Z")
_TEXT_UNSAFE: Final = re.compile(r"[\x00-\x1f\x7f]")


class Code(enum.Enum):
    """Response codes (RFC 9051 §7.1, RFC 5530, RFC 4315, RFC 7162, RFC 6154, RFC 3516,
    RFC 9208, RFC 4314); the value is the exact wire spelling."""

    ALERT = b"ALERT"
    ALREADYEXISTS = b"ALREADYEXISTS"
    APPENDUID = b"APPENDUID"
    AUTHENTICATIONFAILED = b"AUTHENTICATIONFAILED"
    AUTHORIZATIONFAILED = b"AUTHORIZATIONFAILED"
    BADCHARSET = b"BADCHARSET"
    CANNOT = b"CANNOT"
    CAPABILITY = b"CAPABILITY"
    CLIENTBUG = b"CLIENTBUG"
    CLOSED = b"CLOSED"
    COMPRESSIONACTIVE = b"COMPRESSIONACTIVE"  # RFC 4978
    CONTACTADMIN = b"CONTACTADMIN"
    COPYUID = b"COPYUID"
    CORRUPTION = b"CORRUPTION"
    EXPIRED = b"EXPIRED"
    EXPUNGEISSUED = b"EXPUNGEISSUED"
    HASCHILDREN = b"HASCHILDREN"
    HIGHESTMODSEQ = b"HIGHESTMODSEQ"
    INUSE = b"INUSE"
    LIMIT = b"LIMIT"
    MODIFIED = b"MODIFIED"
    NOMODSEQ = b"NOMODSEQ"
    NONEXISTENT = b"NONEXISTENT"
    NOPERM = b"NOPERM"
    NOTSAVED = b"NOTSAVED"
    OVERQUOTA = b"OVERQUOTA"
    PARSE = b"PARSE"
    PERMANENTFLAGS = b"PERMANENTFLAGS"
    PRIVACYREQUIRED = b"PRIVACYREQUIRED"
    READ_ONLY = b"READ-ONLY"
    READ_WRITE = b"READ-WRITE"
    SERVERBUG = b"SERVERBUG"
    TOOBIG = b"TOOBIG"
    TRYCREATE = b"TRYCREATE"
    UIDNEXT = b"UIDNEXT"
    UIDNOTSTICKY = b"UIDNOTSTICKY"
    UIDVALIDITY = b"UIDVALIDITY"
    UNAVAILABLE = b"UNAVAILABLE"
    UNKNOWN_CTE = b"UNKNOWN-CTE"
    UNSEEN = b"UNSEEN"
    USEATTR = b"USEATTR"


@dataclass(frozen=True, slots=True)
class ResponseCode:
    """``[CODE data]``; ``data`` is already in wire form (use the builders below)."""

    code: Code
    data: bytes = b""

    def encode(self) -> bytes:
        inner = self.code.value + (b" " + self.data if self.data else b"")
        return b"[" + inner + b"]"


def uid_set_text(ranges: Iterable[tuple[int, int]]) -> bytes:
    """``1:3,7`` from ``((1, 3), (7, 7))``, order kept (COPYUID pairs sets positionally)."""
    return b",".join(b"%d" % a if a == b else b"%d:%d" % (a, b) for a, b in ranges)


def uidnext(uid: int) -> ResponseCode:
    return ResponseCode(Code.UIDNEXT, b"%d" % uid)


def uidvalidity(value: int) -> ResponseCode:
    return ResponseCode(Code.UIDVALIDITY, b"%d" % value)


def unseen(seq: int) -> ResponseCode:
    return ResponseCode(Code.UNSEEN, b"%d" % seq)


def highestmodseq(modseq: int) -> ResponseCode:
    return ResponseCode(Code.HIGHESTMODSEQ, b"%d" % modseq)


def appenduid(validity: int, uids: Iterable[tuple[int, int]]) -> ResponseCode:
    """``[APPENDUID uidvalidity uid-set]`` (RFC 4315 §3)."""
    return ResponseCode(Code.APPENDUID, b"%d " % validity + uid_set_text(uids))


def copyuid(
    validity: int, source: Iterable[tuple[int, int]], dest: Iterable[tuple[int, int]]
) -> ResponseCode:
    """``[COPYUID uidvalidity source-uids dest-uids]`` (RFC 4315 §3)."""
    return ResponseCode(
        Code.COPYUID, b"%d " % validity + uid_set_text(source) + b" " + uid_set_text(dest)
    )


def modified(ranges: Iterable[tuple[int, int]]) -> ResponseCode:
    """``[MODIFIED set]`` (RFC 7162 §3.1.3)."""
    return ResponseCode(Code.MODIFIED, uid_set_text(ranges))


def permanentflags(flags: Iterable[str], *, new_keywords: bool) -> ResponseCode:
    """``[PERMANENTFLAGS (\\Seen ... \\*)]``; ``\\*`` if clients may create keywords."""
    items = sorted(flags) + (["\\*"] if new_keywords else [])
    return ResponseCode(Code.PERMANENTFLAGS, encode_flag_list(items))


def capability(caps: Iterable[bytes]) -> ResponseCode:
    return ResponseCode(Code.CAPABILITY, b" ".join(caps))


def badcharset(charsets: Iterable[bytes]) -> ResponseCode:
    return ResponseCode(Code.BADCHARSET, b"(" + b" ".join(charsets) + b")")


class Status(enum.Enum):
    OK = b"OK"
    NO = b"NO"
    BAD = b"BAD"
    PREAUTH = b"PREAUTH"
    BYE = b"BYE"


def encode_text(text: str) -> bytes:
    """Human-readable response text: control characters become spaces, so server text can
    never end a line early; non-ASCII is sent as UTF-8."""
    clean = _TEXT_UNSAFE.sub(" ", text).strip() or "-"
    return clean.encode("utf-8", "replace")


@dataclass(frozen=True, slots=True)
class StatusResponse:
    """``tag OK [code] text`` (or ``* ...`` when ``tag`` is None)."""

    status: Status
    text: str
    code: ResponseCode | None = None
    tag: bytes | None = None

    def encode(self, utf8: bool = False) -> bytes:
        parts = [self.tag or b"*", self.status.value]
        if self.code is not None:
            parts.append(self.code.encode())
        parts.append(encode_text(self.text))
        return b" ".join(parts) + CRLF


@dataclass(frozen=True, slots=True)
class Continuation:
    """``+ text`` (a continuation request; SASL challenges put base64 in ``text``)."""

    text: bytes = b"Ready"

    def encode(self, utf8: bool = False) -> bytes:
        return b"+ " + self.text + CRLF


# --- strings ----------------------------------------------------------------------------


def quoted(value: bytes) -> bytes:
    """A quoted string; ``value`` must be quotable (no NUL, CR, LF)."""
    return b'"' + value.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


def literal(value: bytes, *, binary: bool = False) -> bytes:
    """``{n}CRLF`` + octets (``~{n}`` for literal8, RFC 3516)."""
    return (b"~" if binary else b"") + b"{%d}" % len(value) + CRLF + value


def encode_string(value: bytes, *, utf8: bool = False) -> bytes:
    """``string``: quoted when short and free of NUL/CR/LF (and 7-bit unless ``utf8``),
    otherwise a literal."""
    quotable = _QUOTABLE_8BIT if utf8 else _QUOTABLE_7BIT
    if len(value) <= MAX_QUOTED_OCTETS and quotable.match(value) is not None:
        return quoted(value)
    return literal(value)


def encode_astring(value: bytes, *, utf8: bool = False) -> bytes:
    """``astring``: a bare atom when possible (never ``NIL``, which reads as nil in some
    client parsers), else :func:`encode_string`."""
    if _ASTRING_ATOM.match(value) is not None and value.upper() != b"NIL":
        return value
    return encode_string(value, utf8=utf8)


def encode_nstring(value: bytes | None, *, utf8: bool = False) -> bytes:
    """``nstring``: NIL or a string."""
    return b"NIL" if value is None else encode_string(value, utf8=utf8)


def mailbox_wire(name: str, *, utf8: bool) -> bytes:
    """A name's wire octets: UTF-8 for UTF8=ACCEPT/IMAP4rev2 sessions, else modified UTF-7."""
    return name.encode("utf-8") if utf8 else encode_mutf7(name)


def encode_mailbox(name: str, *, utf8: bool) -> bytes:
    """A mailbox name as an astring in the session's encoding (``INBOX`` as is)."""
    if name == INBOX:
        return b"INBOX"
    return encode_astring(mailbox_wire(name, utf8=utf8), utf8=utf8)


def encode_flag_list(flags: Iterable[str]) -> bytes:
    """``(\\Seen $Junk)``; flags are atoms already (core.flags validated them)."""
    return b"(" + b" ".join(f.encode("ascii") for f in flags) + b")"


# --- untagged data ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Exists:
    count: int

    def encode(self, utf8: bool = False) -> bytes:
        return b"* %d EXISTS" % self.count + CRLF


@dataclass(frozen=True, slots=True)
class Expunge:
    seq: int

    def encode(self, utf8: bool = False) -> bytes:
        return b"* %d EXPUNGE" % self.seq + CRLF


@dataclass(frozen=True, slots=True)
class Vanished:
    """``* VANISHED [(EARLIER)] uids`` (RFC 7162 §3.2.10)."""

    uids: tuple[tuple[int, int], ...]
    earlier: bool = False

    def encode(self, utf8: bool = False) -> bytes:
        head = b"* VANISHED (EARLIER) " if self.earlier else b"* VANISHED "
        return head + uid_set_text(self.uids) + CRLF


@dataclass(frozen=True, slots=True)
class FlagsData:
    flags: tuple[str, ...]

    def encode(self, utf8: bool = False) -> bytes:
        return b"* FLAGS " + encode_flag_list(self.flags) + CRLF


@dataclass(frozen=True, slots=True)
class CapabilityData:
    caps: tuple[bytes, ...]

    def encode(self, utf8: bool = False) -> bytes:
        return b"* CAPABILITY " + b" ".join(self.caps) + CRLF


@dataclass(frozen=True, slots=True)
class EnabledData:
    """``* ENABLED ...`` (RFC 5161); sent even when empty."""

    caps: tuple[bytes, ...]

    def encode(self, utf8: bool = False) -> bytes:
        return b" ".join((b"* ENABLED", *self.caps)) + CRLF


@dataclass(frozen=True, slots=True)
class ListData:
    """``* LIST (attrs) "/" name [(extended items)]``; ``lsub`` writes LSUB instead."""

    name: str
    attributes: tuple[bytes, ...] = ()
    delimiter: bytes | None = b"/"
    lsub: bool = False
    child_info_subscribed: bool = False  # RFC 5258 CHILDINFO ("SUBSCRIBED")

    def encode(self, utf8: bool = False) -> bytes:
        word = b"* LSUB (" if self.lsub else b"* LIST ("
        delim = b"NIL" if self.delimiter is None else quoted(self.delimiter)
        out = word + b" ".join(self.attributes) + b") " + delim + b" "
        out += encode_mailbox(self.name, utf8=utf8)
        if self.child_info_subscribed:
            out += b' ("CHILDINFO" ("SUBSCRIBED"))'
        return out + CRLF


@dataclass(frozen=True, slots=True)
class StatusData:
    """``* STATUS name (ITEM value ...)``; items are (RFC spelling, value) pairs."""

    name: str
    items: tuple[tuple[bytes, int], ...]

    def encode(self, utf8: bool = False) -> bytes:
        body = b" ".join(b"%s %d" % (k, v) for k, v in self.items)
        return b"* STATUS " + encode_mailbox(self.name, utf8=utf8) + b" (" + body + b")" + CRLF


@dataclass(frozen=True, slots=True)
class SearchData:
    """``* SEARCH n...`` (IMAP4rev1), with ``(MODSEQ n)`` for CONDSTORE (RFC 7162 §3.1.5)."""

    numbers: tuple[int, ...]
    modseq: int | None = None

    def encode(self, utf8: bool = False) -> bytes:
        out = b"* SEARCH" + b"".join(b" %d" % n for n in self.numbers)
        if self.modseq is not None and self.numbers:
            out += b" (MODSEQ %d)" % self.modseq
        return out + CRLF


@dataclass(frozen=True, slots=True)
class ESearchData:
    """``* ESEARCH (TAG "t") [UID] MIN n MAX n ALL set COUNT n [MODSEQ n]`` (RFC 4731)."""

    tag: bytes
    uid: bool = False
    min: int | None = None
    max: int | None = None
    all: tuple[tuple[int, int], ...] | None = None
    count: int | None = None
    modseq: int | None = None

    def encode(self, utf8: bool = False) -> bytes:
        out = b"* ESEARCH (TAG " + quoted(self.tag) + b")"
        if self.uid:
            out += b" UID"
        if self.min is not None:
            out += b" MIN %d" % self.min
        if self.max is not None:
            out += b" MAX %d" % self.max
        if self.all:
            out += b" ALL " + uid_set_text(self.all)
        if self.count is not None:
            out += b" COUNT %d" % self.count
        if self.modseq is not None:
            out += b" MODSEQ %d" % self.modseq
        return out + CRLF

"""Message flags and keywords (RFC 9051 §2.3.2).

Flags are ``str`` values: system flags in their canonical spelling (``\\Seen``), keywords as
atoms. Flag comparison is case-insensitive (RFC 9051 §2.3.2); the store keeps system flags in
canonical case and keywords as first given.

- :func:`normalize_flag` / :func:`normalize_flags` validate client input (STORE, APPEND);
- :func:`apply_flag_op` computes a message's new flags for STORE (case-insensitively);
- :func:`system_bits`, :func:`keywords_of` and :func:`from_storage` convert to and from the
  stored form (a bitmask plus a space-separated keyword string).

``\\Recent`` is a session flag (IMAP4rev1 only): the server sets it, a client can never store
it, and it is never part of the stored flags.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from typing import Final

from msgstore.core.errors import ErrorKind, StoreError

SEEN: Final = "\\Seen"
ANSWERED: Final = "\\Answered"
FLAGGED: Final = "\\Flagged"
DELETED: Final = "\\Deleted"
DRAFT: Final = "\\Draft"
RECENT: Final = "\\Recent"  # session flag: never stored, never settable

#: System flags that a client may store, in bit order for compact storage.
SYSTEM_FLAGS: Final[tuple[str, ...]] = (SEEN, ANSWERED, FLAGGED, DELETED, DRAFT)
_CANONICAL: Final[dict[str, str]] = {f.lower(): f for f in SYSTEM_FLAGS}
SYSTEM_BITS: Final[dict[str, int]] = {f: 1 << i for i, f in enumerate(SYSTEM_FLAGS)}

#: Bytes an atom may not contain besides CTL and non-ASCII: atom-specials of RFC 9051 §9
#: ("(" ")" "{" SP "%" "*" DQUOTE "\\") plus resp-specials "]".
_ATOM_SPECIALS: Final = frozenset('(){ %*"\\]')
MAX_KEYWORD_OCTETS: Final = 255

Flags = frozenset[str]


class FlagOp(enum.Enum):
    """How STORE combines the given flags with the message's current ones."""

    REPLACE = "replace"  # FLAGS
    ADD = "add"  # +FLAGS
    REMOVE = "remove"  # -FLAGS


def normalize_flag(flag: str) -> str:
    """Return the canonical spelling of a storable flag, or raise PARAMS.

    System flags are recognised in any case and returned canonically (``\\SEEN`` ->
    ``\\Seen``). ``\\Recent`` and unknown backslash flags are refused: \\Recent is set by the
    server only, and RFC 9051 reserves other flag-extensions. A keyword must be an atom of
    1 to ``MAX_KEYWORD_OCTETS`` ASCII characters without atom-specials or ``]``; it keeps the
    case it was given.

    Raises:
        StoreError: PARAMS with the reason.
    """
    if not flag:
        raise StoreError(ErrorKind.PARAMS, "Flag is empty")
    if flag.startswith("\\"):
        canon = _CANONICAL.get(flag.lower())
        if canon is not None:
            return canon
        if flag.lower() == RECENT.lower():
            raise StoreError(
                ErrorKind.PARAMS, "Flag \\Recent is set by the server and cannot be stored"
            )
        if len(flag) > MAX_KEYWORD_OCTETS:
            raise StoreError(ErrorKind.PARAMS, "Flag is not a system flag that can be stored")
        raise StoreError(
            ErrorKind.PARAMS, f"Flag {flag!r} is not a system flag that can be stored"
        )
    if len(flag) > MAX_KEYWORD_OCTETS:
        raise StoreError(ErrorKind.PARAMS, f"Keyword is longer than {MAX_KEYWORD_OCTETS} octets")
    for ch in flag:
        if not ch.isascii():
            raise StoreError(
                ErrorKind.PARAMS,
                f"Keyword contains the non-ASCII character U+{ord(ch):04X}; keywords are atoms",
            )
        if ch <= " " or ch == "\x7f":
            raise StoreError(
                ErrorKind.PARAMS,
                f"Keyword contains the control character or space U+{ord(ch):04X}",
            )
        if ch in _ATOM_SPECIALS:
            raise StoreError(
                ErrorKind.PARAMS, f"Keyword contains {ch!r}, which is not allowed in an atom"
            )
    return flag


def normalize_flags(flags: Iterable[str]) -> Flags:
    """Normalise an iterable of flags into a frozenset; duplicates differing in case collapse.

    The first spelling of a keyword wins (``$Junk`` then ``$JUNK`` keeps ``$Junk``).

    Raises:
        StoreError: PARAMS for the first invalid flag.
        TypeError: if ``flags`` is a single ``str`` (a classic mistake: it iterates letters).
    """
    if isinstance(flags, str):
        raise TypeError("flags must be an iterable of str, not str")
    out: dict[str, str] = {}
    for f in flags:
        canon = normalize_flag(f)
        out.setdefault(canon.lower(), canon)
    return frozenset(out.values())


def apply_flag_op(current: Flags, op: FlagOp, given: Flags) -> Flags:
    """A message's flags after STORE ``op`` with ``given`` (RFC 9051 §6.4.6).

    Comparison is case-insensitive and an existing keyword keeps its stored spelling:
    ``+FLAGS ($junk)`` on a message with ``$Junk`` changes nothing, ``-FLAGS ($JUNK)``
    removes it. ``given`` must come from :func:`normalize_flags`.
    """
    if op is FlagOp.REPLACE:
        return given
    have = {f.lower(): f for f in current}
    if op is FlagOp.ADD:
        for f in given:
            have.setdefault(f.lower(), f)
    else:
        for f in given:
            have.pop(f.lower(), None)
    return frozenset(have.values())


def system_bits(flags: Flags) -> int:
    """Bitmask of the system flags in ``flags`` (see ``SYSTEM_BITS``).

    ``flags`` must be normalised: a non-canonical ``\\SEEN`` would not be counted.
    """
    bits = 0
    for f in flags:
        bits |= SYSTEM_BITS.get(f, 0)
    return bits


def keywords_of(flags: Flags) -> list[str]:
    """The non-system flags, sorted (stored as a space-separated string)."""
    return sorted(f for f in flags if f not in SYSTEM_BITS)


def from_storage(bits: int, keywords: str | None) -> Flags:
    """Rebuild a flag set from its stored form (``system_bits`` + joined ``keywords_of``)."""
    out = {f for f, b in SYSTEM_BITS.items() if bits & b}
    if keywords:
        out.update(keywords.split())
    return frozenset(out)

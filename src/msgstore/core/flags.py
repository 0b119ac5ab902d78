"""Message flags and keywords (RFC 9051 §2.3.2).

Flags are ``str`` values: system flags in their canonical spelling (``\\Seen``), keywords as
atoms. Flag comparison is case-insensitive (RFC 9051 §2.3.2); the store keeps system flags in
canonical case and keywords as first given.
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

#: Bytes an atom may not contain (RFC 9051 atom-specials, plus ']' which flag-keyword excludes).
_ATOM_SPECIALS: Final = frozenset(b'(){ %*"\\]')
MAX_KEYWORD_OCTETS: Final = 255

Flags = frozenset[str]


class FlagOp(enum.Enum):
    """How STORE combines the given flags with the message's current ones."""

    REPLACE = "replace"  # FLAGS
    ADD = "add"  # +FLAGS
    REMOVE = "remove"  # -FLAGS


def normalize_flag(flag: str) -> str:
    """Return the canonical spelling of a storable flag, or raise PARAMS.

    ``\\Recent`` and unknown backslash flags are refused: \\Recent is set by the server only,
    and RFC 9051 reserves other flag-extensions.
    """
    if flag.startswith("\\"):
        canon = _CANONICAL.get(flag.lower())
        if canon is None:
            raise StoreError(ErrorKind.PARAMS, f"Flag {flag!r} cannot be stored")
        return canon
    raw = flag.encode("utf-8", "surrogateescape")
    if not raw or len(raw) > MAX_KEYWORD_OCTETS:
        raise StoreError(ErrorKind.PARAMS, "Keyword must be 1 to 255 octets")
    if any(b <= 0x20 or b >= 0x7F or b in _ATOM_SPECIALS for b in raw):
        raise StoreError(ErrorKind.PARAMS, f"Keyword {flag!r} is not a valid atom")
    return flag


def normalize_flags(flags: Iterable[str]) -> Flags:
    """Normalise an iterable of flags into a frozenset; duplicates differing in case collapse."""
    if isinstance(flags, str):
        raise TypeError("flags must be an iterable of str, not str")
    out: dict[str, str] = {}
    for f in flags:
        canon = normalize_flag(f)
        out.setdefault(canon.lower(), canon)
    return frozenset(out.values())


def system_bits(flags: Flags) -> int:
    """Bitmask of the system flags in ``flags`` (see ``SYSTEM_BITS``)."""
    bits = 0
    for f in flags:
        bits |= SYSTEM_BITS.get(f, 0)
    return bits


def keywords_of(flags: Flags) -> list[str]:
    """The non-system flags, sorted (stored as a space-separated string)."""
    return sorted(f for f in flags if f not in SYSTEM_BITS)


def from_storage(bits: int, keywords: str | None) -> Flags:
    """Rebuild a flag set from its stored form."""
    out = {f for f, b in SYSTEM_BITS.items() if bits & b}
    if keywords:
        out.update(keywords.split(" "))
    return frozenset(out)

"""IMAP string encoding for the precomputed responses (RFC 3501 §4.3, RFC 9051 §4.3).

A string is sent quoted when every octet is a 7-bit TEXT-CHAR (no NUL, CR, LF, no 8-bit), with
``"`` and ``\\`` escaped; otherwise as a synchronising literal ``{n}\\r\\n`` followed by the
octets, which any IMAP4rev1 client reads. NUL may not appear in a literal either (CHAR8 is
%x01-FF), so NUL octets are replaced by U+FFFD (as UTF-8) beforehand, as Dovecot does.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = ["NIL", "astring_list", "nstring", "string"]

NIL: Final[bytes] = b"NIL"

# Octets that force a literal: controls CR, LF, NUL and everything 8-bit.
_NEEDS_LITERAL: Final = re.compile(rb"[\x00\r\n\x80-\xff]")


def string(value: bytes) -> bytes:
    """Encode ``value`` as an IMAP string: quoted when possible, else a literal."""
    if b"\x00" in value:
        value = value.replace(b"\x00", b"\xef\xbf\xbd")
    if _NEEDS_LITERAL.search(value) is None:
        if b"\\" in value or b'"' in value:
            value = value.replace(b"\\", b"\\\\").replace(b'"', b'\\"')
        return b'"' + value + b'"'
    return b"{%d}\r\n" % len(value) + value


def nstring(value: bytes | None) -> bytes:
    """Encode ``value`` as an IMAP nstring: ``NIL`` for None, else :func:`string`."""
    return NIL if value is None else string(value)


def astring_list(values: list[bytes]) -> bytes:
    """A parenthesised list of strings, or ``NIL`` when empty (body-fld-lang style)."""
    if not values:
        return NIL
    return b"(" + b" ".join(string(v) for v in values) + b")"

"""Mailbox names: validation, hierarchy ("/"), modified UTF-7, LIST wildcards.

Names are stored as UTF-8 ``str`` in Unicode Normalization Form C; modified UTF-7
(RFC 3501 §5.1.3) is only spoken on the wire to IMAP4rev1 clients. A name never reaches the
filesystem: files live under mailbox ids.

The path of a name from the wire to the store::

    raw bytes --decode_mutf7 (IMAP4rev1) / decode_utf8 (UTF8=ACCEPT, IMAP4rev2)--> str
        --mailbox_name--> MailboxName (validated, NFC, INBOX canonical)

and back: a ``MailboxName`` is sent as is to UTF-8 clients and through :func:`encode_mutf7` to
the others.

**Unicode normalisation.** :func:`mailbox_name` returns the NFC form, so two names that differ
only in normalisation (``"Caf\\u00e9"`` and ``"Cafe\\u0301"``) are the same mailbox: CREATE of
the second fails with ALREADYEXISTS and SELECT of either opens the one mailbox. A client that
created a name in NFD sees it in NFC in LIST. :func:`match_pattern` normalises LIST patterns
the same way. Only canonical equivalence is applied (NFC, not NFKC): ``"ﬁ"`` and ``"fi"`` stay
different mailboxes.

**INBOX** is case-insensitive as the first level only (RFC 3501 §5.1): ``inbox/Sub`` is
``INBOX/Sub``, while ``Work/inbox`` keeps its case. The comparison is ASCII-only, so the
Turkish dotless ``ınbox`` is an ordinary name (Python's ``"ı".upper()`` is ``"I"``).

Every error is ``StoreError(PARAMS, reason)`` whose text says exactly why; the texts reach
IMAP and CLI users, and never echo the offending name.
"""

from __future__ import annotations

import unicodedata
from typing import Final, NewType

from msgstore.core.errors import ErrorKind, StoreError

MailboxName = NewType("MailboxName", str)

DELIMITER: Final = "/"
INBOX: Final = MailboxName("INBOX")
#: Longest name, in UTF-8 octets after normalisation.
MAX_NAME_OCTETS: Final = 255
#: Most hierarchy levels in one name (``a/b/c`` has 3).
MAX_LEVELS: Final = 32
#: NFC turns at most 4 code points into 1 and a code point is 1 to 4 octets, so a string of
#: more than 16 * MAX_NAME_OCTETS code points can never fit; refusing it up front bounds the
#: cost of normalising hostile input.
_MAX_RAW_CHARS: Final = 16 * MAX_NAME_OCTETS

# Modified BASE64 (RFC 3501 §5.1.3): RFC 2045 base64 with "," instead of "/", no padding.
_B64_ALPHABET: Final = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,"
_B64_VALUE: Final[dict[int, int]] = {c: i for i, c in enumerate(_B64_ALPHABET)}
_AMP: Final = 0x26
_DASH: Final = 0x2D


def _params(reason: str) -> StoreError:
    return StoreError(ErrorKind.PARAMS, reason)


def _codepoint(ch: str) -> str:
    return f"U+{ord(ch):04X}"


# --- modified UTF-7 -----------------------------------------------------------------------


def encode_mutf7(name: str) -> bytes:
    """Encode a name in modified UTF-7 (RFC 3501 §5.1.3) for an IMAP4rev1 client.

    Printable US-ASCII (0x20-0x7E) stands for itself, ``&`` becomes ``&-``, and every run of
    other characters becomes ``&`` + modified BASE64 of its UTF-16BE form + ``-``. The output
    is the one canonical encoding, so ``decode_mutf7(encode_mutf7(s)) == s`` and the output
    contains printable ASCII only.

    Raises:
        StoreError: PARAMS if ``name`` contains a lone surrogate (not Unicode text).
    """
    out = bytearray()
    start = -1  # index where the current run of characters to encode began, or -1
    for i, ch in enumerate(name):
        o = ord(ch)
        if 0x20 <= o <= 0x7E:
            if start >= 0:
                out += _encode_run(name[start:i])
                start = -1
            out += b"&-" if o == _AMP else bytes((o,))
        elif start < 0:
            start = i
    if start >= 0:
        out += _encode_run(name[start:])
    return bytes(out)


def _encode_run(run: str) -> bytes:
    try:
        utf16 = run.encode("utf-16-be")
    except UnicodeEncodeError:
        raise _params(
            "Mailbox name contains a lone surrogate, which is not Unicode text"
        ) from None
    out = bytearray(b"&")
    bits = 0
    nbits = 0
    for octet in utf16:
        bits = (bits << 8) | octet
        nbits += 8
        while nbits >= 6:
            nbits -= 6
            out.append(_B64_ALPHABET[(bits >> nbits) & 0x3F])
        bits &= (1 << nbits) - 1
    if nbits:
        out.append(_B64_ALPHABET[(bits << (6 - nbits)) & 0x3F])
    out.append(_DASH)
    return bytes(out)


def decode_mutf7(raw: bytes) -> str:
    """Decode a modified UTF-7 name from an IMAP4rev1 client, refusing anything non-canonical.

    Only the one canonical encoding is accepted (as Dovecot does since CVE-2019-10691's
    fixes), so every accepted input re-encodes to the same bytes and two spellings can never
    name the same mailbox. Refused, each with its reason:

    - a byte outside 0x20-0x7E (8-bit or control bytes must be BASE64-encoded);
    - ``&`` without a closing ``-``; a character inside a run that is not modified BASE64;
    - a run ending inside a UTF-16 unit, or with non-zero padding bits;
    - an unpaired UTF-16 surrogate;
    - a run encoding a printable ASCII character (``&AGE-`` for ``a``, ``&ACY-`` for ``&``);
    - two adjacent runs ``&...-&...-`` (they must be one run).

    ``&-`` is ``&``. The result is not yet a valid mailbox name: pass it to
    :func:`mailbox_name`.

    Raises:
        StoreError: PARAMS with the reason.
    """
    out: list[str] = []
    i = 0
    n = len(raw)
    last_run_end = -1  # index just after the '-' that closed the previous non-empty run
    while i < n:
        b = raw[i]
        if b >= 0x80:
            raise _params(
                "Mailbox name contains an 8-bit byte; modified UTF-7 must encode it in '&...-'"
            )
        if b < 0x20 or b == 0x7F:
            raise _params(f"Mailbox name contains the control character U+{b:04X}")
        if b != _AMP:
            out.append(chr(b))
            i += 1
            continue
        end = raw.find(b"-", i + 1)
        if end < 0:
            raise _params("Mailbox name has an '&' without a closing '-' (modified UTF-7)")
        if end == i + 1:
            out.append("&")
        else:
            if i == last_run_end:
                raise _params(
                    "Mailbox name has two adjacent modified UTF-7 runs '&...-&...-'; "
                    "they must be written as one"
                )
            out.append(_decode_run(raw[i + 1 : end]))
            last_run_end = end + 1
        i = end + 1
    return "".join(out)


def _decode_run(chunk: bytes) -> str:
    units: list[int] = []
    bits = 0
    nbits = 0
    for c in chunk:
        value = _B64_VALUE.get(c)
        if value is None:
            shown = repr(chr(c)) if 0x20 < c < 0x7F else f"the byte 0x{c:02X}"
            raise _params(
                f"Mailbox name has {shown} inside a modified UTF-7 '&...-' run, "
                "which is not a modified BASE64 character"
            )
        bits = (bits << 6) | value
        nbits += 6
        if nbits >= 16:
            nbits -= 16
            units.append(bits >> nbits)
            bits &= (1 << nbits) - 1
    if nbits >= 6:
        raise _params("Mailbox name has a modified UTF-7 run that ends inside a character")
    if bits:
        raise _params("Mailbox name has a modified UTF-7 run with non-zero padding bits")
    out: list[str] = []
    k = 0
    while k < len(units):
        u = units[k]
        k += 1
        if 0xD800 <= u <= 0xDBFF:
            if k == len(units) or not 0xDC00 <= units[k] <= 0xDFFF:
                raise _params("Mailbox name has an unpaired UTF-16 surrogate in modified UTF-7")
            u = 0x10000 + ((u - 0xD800) << 10) + (units[k] - 0xDC00)
            k += 1
        elif 0xDC00 <= u <= 0xDFFF:
            raise _params("Mailbox name has an unpaired UTF-16 surrogate in modified UTF-7")
        if 0x20 <= u <= 0x7E:
            raise _params(
                f"Mailbox name encodes the printable character {chr(u)!r} in modified UTF-7; "
                "it must be written as itself"
            )
        out.append(chr(u))
    return "".join(out)


def decode_utf8(raw: bytes) -> str:
    """Decode a name sent as UTF-8 (UTF8=ACCEPT, IMAP4rev2), refusing invalid UTF-8.

    Overlong forms, encoded surrogates and truncated sequences are refused (Python's
    decoder is strict). The result still has to pass :func:`mailbox_name`.

    Raises:
        StoreError: PARAMS if ``raw`` is not valid UTF-8.
    """
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise _params("Mailbox name is not valid UTF-8") from None


# --- validation and hierarchy -------------------------------------------------------------


def mailbox_name(raw: str) -> MailboxName:
    """Validate a mailbox name and return its canonical form.

    Canonical means: Unicode NFC, and ``INBOX`` in upper case when the first level is any
    ASCII case of "inbox" (``inbox/Sub`` -> ``INBOX/Sub``). Refused, in this order:
    empty; lone surrogates (invalid UTF-8 decoded with ``surrogateescape``); control
    characters (C0, DEL, C1); a leading or trailing ``/``; an empty level (``a//b``); a ``.``
    or ``..`` level; more than ``MAX_LEVELS`` levels; more than ``MAX_NAME_OCTETS`` UTF-8
    octets. The list wildcards ``%`` and ``*`` are allowed (RFC 3501 §5.1), as is ``&``.

    Raises:
        StoreError: PARAMS with the reason spelled out.
    """
    if not raw:
        raise _params("Mailbox name is empty")
    if len(raw) > _MAX_RAW_CHARS:
        raise _params(f"Mailbox name is longer than {MAX_NAME_OCTETS} octets")
    try:
        raw.encode("utf-8")
    except UnicodeEncodeError:
        raise _params("Mailbox name is not valid UTF-8 (it contains a lone surrogate)") from None
    for ch in raw:
        if unicodedata.category(ch) == "Cc":
            raise _params(f"Mailbox name contains the control character {_codepoint(ch)}")
    name = raw if unicodedata.is_normalized("NFC", raw) else unicodedata.normalize("NFC", raw)
    if name.startswith(DELIMITER):
        raise _params(f"Mailbox name starts with the hierarchy delimiter {DELIMITER!r}")
    if name.endswith(DELIMITER):
        raise _params(f"Mailbox name ends with the hierarchy delimiter {DELIMITER!r}")
    levels = name.split(DELIMITER)
    if "" in levels:
        raise _params(f"Mailbox name has an empty hierarchy level ({DELIMITER * 2!r})")
    if "." in levels or ".." in levels:
        raise _params("Mailbox name has a '.' or '..' hierarchy level")
    if len(levels) > MAX_LEVELS:
        raise _params(f"Mailbox name has more than {MAX_LEVELS} hierarchy levels")
    if len(name.encode("utf-8")) > MAX_NAME_OCTETS:
        raise _params(f"Mailbox name is longer than {MAX_NAME_OCTETS} octets")
    first = levels[0]
    if first != INBOX and first.isascii() and first.upper() == INBOX:
        levels[0] = INBOX
        name = DELIMITER.join(levels)
    return MailboxName(name)


def parent_of(name: MailboxName) -> MailboxName | None:
    """The immediate parent (``a/b/c`` -> ``a/b``), or None at the top level."""
    head, sep, _ = name.rpartition(DELIMITER)
    return MailboxName(head) if sep else None


def parents(name: MailboxName) -> list[MailboxName]:
    """All ancestors, outermost first: ``a/b/c`` -> ``[a, a/b]``; ``[]`` at the top level.

    The order is the order in which CREATE makes missing parents (RFC 3501 §6.3.3).
    """
    out: list[MailboxName] = []
    pos = name.find(DELIMITER)
    while pos >= 0:
        out.append(MailboxName(name[:pos]))
        pos = name.find(DELIMITER, pos + 1)
    return out


def is_below(child: MailboxName, parent: MailboxName) -> bool:
    """True if ``child`` is strictly inside ``parent``'s subtree."""
    return child.startswith(parent + DELIMITER)


# --- LIST / LSUB patterns -----------------------------------------------------------------


def match_pattern(pattern: str, name: str) -> bool:
    """True if ``name`` matches a LIST/LSUB ``pattern`` (RFC 3501 §6.3.8, RFC 9051 §6.3.9).

    ``*`` matches any run of characters including the delimiter ``/``; ``%`` matches any run
    without ``/``; everything else matches itself. The first level of a name in the INBOX
    tree compares ASCII-case-insensitively, so ``inbox/%``, ``Inb*`` and ``INBOX`` all match
    ``INBOX``. The pattern is NFC-normalised like names (the IMAP layer joins reference and
    pattern before calling).

    Runs in O(len(name) * len(pattern) / word size): a bit-parallel simulation of the
    pattern's automaton (one bit per pattern position, updated with integer operations per
    character of the name) that never backtracks, so hostile patterns such as
    ``*a*a*a*a*a*a*a*b`` cost the same as plain ones.
    """
    pat = _compact_wildcards(unicodedata.normalize("NFC", pattern))
    literal: dict[str, int] = {}
    star = 0
    percent = 0
    for j, ch in enumerate(pat):
        bit = 1 << j
        if ch == "*":
            star |= bit
        elif ch == "%":
            percent |= bit
        else:
            literal[ch] = literal.get(ch, 0) | bit
    wild = star | percent
    # Bit j set: the name read so far matches pat[:j]. A wildcard may match nothing, so a
    # set bit on a wildcard position also sets the next bit; after _compact_wildcards no
    # two wildcards are adjacent, so one shift closes the set.
    state = 1 | ((1 & wild) << 1)
    folded = _inbox_prefix_len(name)
    for i, ch in enumerate(name):
        if i < folded:
            mask = literal.get(ch.upper(), 0) | literal.get(ch.lower(), 0)
        else:
            mask = literal.get(ch, 0)
        following = ((state & mask) << 1) | (state & star)
        if ch != DELIMITER:
            following |= state & percent
        state = following | ((following & wild) << 1)
        if not state:
            return False
    return bool((state >> len(pat)) & 1)


def _compact_wildcards(pattern: str) -> str:
    """Collapse each run of wildcards into one: ``*`` if the run has one, else ``%``."""
    out: list[str] = []
    run = ""
    for ch in pattern:
        if ch in "*%":
            run = "*" if "*" in (run, ch) else "%"
            continue
        if run:
            out.append(run)
            run = ""
        out.append(ch)
    if run:
        out.append(run)
    return "".join(out)


def _inbox_prefix_len(name: str) -> int:
    """5 if the first level of ``name`` is INBOX in any ASCII case, else 0."""
    head = name[: len(INBOX)]
    if head.isascii() and head.upper() == INBOX and name[len(INBOX) : len(INBOX) + 1] in ("", "/"):
        return len(INBOX)
    return 0

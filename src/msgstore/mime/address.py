"""A small RFC 5322 address-list tokenizer for ENVELOPE (RFC 9051 §7.5.2, RFC 3501 §7.4.2).

Written for this purpose instead of ``email.utils.getaddresses`` (ECOSYSTEM.md §4: 3.11.7's
version predates the CVE-2023-27043 fix, flattens groups and loses route-addrs). It keeps what
IMAP needs: display names (quoted-string content unescaped; RFC 2047 words left encoded, since
ENVELOPE carries the raw header text), source routes, groups, and the comment fallback for a
name (``user@host (Real Name)``; only a comment after the addr-spec counts). An empty display
name (``"" <a@b>``) is NIL, as in Dovecot. It is lenient and never fails: what it cannot place
becomes an address with an empty mailbox or host rather than an exception. Iterative, linear in
the input; inputs are bounded by :data:`~msgstore.mime.limits.MAX_FIELD_VALUE` and the output by
:data:`~msgstore.mime.limits.MAX_ADDRESSES`.

An :data:`Address` is ``(name, adl, mailbox, host)`` as in the IMAP address structure. RFC 3501
group syntax: ``(None, None, b"group", None)`` starts a group, ``(None, None, None, None)`` ends
it. A normal address always has a non-None mailbox and host (``b""`` when missing), so it can
never be mistaken for a group marker.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from typing import Final

from msgstore.mime.limits import MAX_ADDRESSES

__all__ = ["Address", "is_group_marker", "parse_address_list"]

Address = tuple[bytes | None, bytes | None, bytes | None, bytes | None]

_WS, _QUOTED, _COMMENT, _SPECIAL, _ATOM = range(5)

_TOKEN_RE: Final = re.compile(
    rb"""
      (?P<ws>[ \t\r\n]+)
    | "(?P<qs>(?:[^"\\]|\\.)*)"?
    | (?P<cm>\()
    | (?P<sp>[<>@,;:])
    | (?P<dl>\[(?:[^\]\\]|\\.)*\]?)
    | (?P<at>[^ \t\r\n"()<>@,;:\[\\]+|\\.?|[\])])
    """,
    re.VERBOSE | re.DOTALL,
)
_COMMENT_SCAN_RE: Final = re.compile(rb"[()\\]")
_QUOTED_PAIR_RE: Final = re.compile(rb"\\(.)", re.DOTALL)

Token = tuple[int, bytes]


def _comment_end(value: bytes, start: int) -> int:
    """Index just after the comment whose "(" is at ``start`` (nested, quoted-pairs)."""
    depth = 1
    pos = start + 1
    while True:
        m = _COMMENT_SCAN_RE.search(value, pos)
        if m is None:
            return len(value)
        ch = value[m.start()]
        pos = m.end()
        if ch == 0x5C:  # backslash: skip the quoted character
            pos += 1
        elif ch == 0x28:
            depth += 1
        else:
            depth -= 1
            if depth == 0:
                return pos


def _tokens(value: bytes) -> list[Token]:
    tokens: list[Token] = []
    pos = 0
    size = len(value)
    while pos < size:
        m = _TOKEN_RE.match(value, pos)
        if m is None:  # cannot happen: the last alternative takes any single octet
            tokens.append((_ATOM, value[pos : pos + 1]))
            pos += 1
            continue
        kind = m.lastgroup
        if kind == "cm":
            end = _comment_end(value, pos)
            text = value[pos + 1 : end - 1 if value[end - 1 : end] == b")" else end]
            tokens.append((_COMMENT, _QUOTED_PAIR_RE.sub(rb"\1", text).strip()))
            pos = end
            continue
        if kind == "qs":
            text = m.group("qs")
            tokens.append((_QUOTED, _QUOTED_PAIR_RE.sub(rb"\1", text) if b"\\" in text else text))
        elif kind == "sp":
            tokens.append((_SPECIAL, m.group("sp")))
        elif kind == "dl":
            tokens.append((_ATOM, m.group("dl")))
        elif kind == "at":
            tokens.append((_ATOM, m.group("at")))
        pos = m.end()
    return tokens


def _phrase(words: list[Token]) -> bytes | None:
    """Display-name words joined by single spaces (RFC 5322 §3.2.5 phrase); None if empty."""
    texts = [text for kind, text in words if (kind in (_ATOM, _QUOTED) or text == b"@") and text]
    if not texts:
        return None
    return b" ".join(texts)


def _addr_spec(words: list[Token]) -> tuple[bytes, bytes]:
    """``local-part "@" domain`` -> (mailbox, host); CFWS around dots is dropped."""
    at = next((i for i, (k, t) in enumerate(words) if k == _SPECIAL and t == b"@"), -1)
    if at == -1:
        texts = [t for k, t in words if k != _SPECIAL]
        return b" ".join(texts), b""
    local = b"".join(t for k, t in words[:at])
    host = b"".join(t for k, t in words[at + 1 :] if not (k == _SPECIAL and t == b"@"))
    return local, host


def _angle(
    tokens: list[Token], i: int, closers: list[int]
) -> tuple[bytes | None, bytes, bytes, int]:
    """Parse ``< [route ":"] addr-spec >`` from the "<" at ``i``.

    ``closers`` are the indexes of all ">" tokens, ascending (found by bisection, so many
    unclosed "<" stay linear). Returns ``(adl, mailbox, host, index after the address)``.
    """
    size = len(tokens)
    j = i + 1
    k = bisect_right(closers, i)
    if k < len(closers):
        end = closers[k]
        nxt = end + 1
    else:
        # No ">": the address runs to the next "," or ";" that is not part of a route.
        end = j
        while end < size and not (
            tokens[end][0] == _SPECIAL
            and tokens[end][1] in (b";", b",")
            and not (end + 1 < size and tokens[end + 1][1] == b"@")
        ):
            end += 1
        nxt = end
    inner = [t for t in tokens[j:end] if t[0] != _COMMENT]
    adl: bytes | None = None
    if inner and inner[0] == (_SPECIAL, b"@"):
        colon = next((n for n, t in enumerate(inner) if t == (_SPECIAL, b":")), -1)
        if colon != -1:
            adl = b"".join(t for _, t in inner[:colon])
            inner = inner[colon + 1 :]
    mailbox, host = _addr_spec(inner)
    return adl, mailbox, host, nxt


def parse_address_list(value: bytes) -> tuple[list[Address], list[str]]:
    """Parse an address-list header value into IMAP address structures and defects."""
    tokens = _tokens(value)
    closers = [n for n, token in enumerate(tokens) if token == (_SPECIAL, b">")]
    out: list[Address] = []
    defects: list[str] = []
    words: list[Token] = []
    comment: bytes | None = None
    in_group = False
    after_angle = False
    size = len(tokens)
    i = 0

    def emit_words() -> None:
        if words and not after_angle:
            mailbox, host = _addr_spec(words)
            out.append((comment or None, None, mailbox, host))

    while i < size and len(out) < MAX_ADDRESSES:
        kind, text = tokens[i]
        if kind == _COMMENT:
            comment = text
        elif kind != _SPECIAL:
            if not after_angle:
                words.append((kind, text))
                comment = None  # only a comment *after* the addr-spec names it
        elif text == b"<":
            adl, mailbox, host, i = _angle(tokens, i, closers)
            out.append((_phrase(words), adl, mailbox, host))
            words = []
            after_angle = True
            continue
        elif text == b":":
            if in_group or after_angle:
                defects.append("address-nested-group")
            else:
                out.append((None, None, _phrase(words) or b"", None))
                in_group = True
                words = []
                comment = None
        elif text in (b",", b";"):
            emit_words()
            words = []
            comment = None
            after_angle = False
            if text == b";":
                if in_group:
                    out.append((None, None, None, None))
                    in_group = False
                else:
                    defects.append("address-stray-semicolon")
        else:  # "@" or a stray ">"
            if not after_angle:
                words.append((kind, text))
                comment = None
        i += 1
    if len(out) >= MAX_ADDRESSES and i < size:
        defects.append("too-many-addresses")
    else:
        emit_words()
    if in_group:
        out.append((None, None, None, None))
        defects.append("address-group-not-closed")
    return out, defects


def is_group_marker(address: Address) -> bool:
    """True for the RFC 3501 group start/end markers (host NIL)."""
    return address[3] is None

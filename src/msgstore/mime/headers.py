"""Header fields: finding them in a header block, unfolding, RFC 2047 words, MIME parameters.

Only the fields the precompute needs are looked at (ENVELOPE, the MIME fields of
BODYSTRUCTURE, the search/sort index); a header block is read up to
:data:`~msgstore.mime.limits.MAX_HEADER_BYTES`. When a field occurs twice, the first occurrence
wins (RFC 5322 §3.6 allows most fields once; Dovecot and Cyrus use the first as well).

Parameters (Content-Type, Content-Disposition) follow RFC 2045 §5.1 with RFC 2231
continuations (``name*0*=``, ``name*1=``) and charset/language tagging (``name*=utf-8'en'%E2``);
the decoded value is returned as UTF-8 when its charset is known.
"""

from __future__ import annotations

import binascii
import codecs
import functools
import re
from typing import Final
from urllib.parse import unquote_to_bytes

from msgstore.mime.limits import MAX_FIELD_VALUE, MAX_HEADER_BYTES, MAX_PARAMETERS

__all__ = [
    "FIELDS",
    "HeaderFields",
    "decode_text",
    "decode_words",
    "known_charset",
    "parse_language",
    "parse_parameters",
    "read_fields",
    "unfold",
]

FIELDS: Final[tuple[str, ...]] = (
    "date",
    "subject",
    "from",
    "sender",
    "reply-to",
    "to",
    "cc",
    "bcc",
    "in-reply-to",
    "message-id",
    "references",
    "list-id",
    "content-type",
    "content-transfer-encoding",
    "content-id",
    "content-description",
    "content-disposition",
    "content-language",
    "content-location",
    "content-md5",
)
"""The header fields the precompute reads; every other field is left to BODY[HEADER.FIELDS]."""

# A wanted field name at the start of a line, optional WSP (obs-optional, RFC 5322 §4.5.3),
# then the colon. Literal alternatives only: no backtracking beyond one name.
_FIELD_RE: Final = re.compile(
    rb"^(" + b"|".join(re.escape(f.encode()) for f in FIELDS) + rb")[ \t]*:",
    re.IGNORECASE | re.MULTILINE,
)
# A line that is neither a field ("name:"), a continuation (leading WSP) nor empty.
_BAD_LINE_RE: Final = re.compile(rb"^(?![ \t]|[!-9;-~]+[ \t]*:|\r?$)", re.MULTILINE)
_WSP: Final = b" \t"


class HeaderFields:
    """The wanted fields of one header block: raw (folded) values, first occurrence wins."""

    __slots__ = ("defects", "values")

    def __init__(self, values: dict[str, bytes], defects: list[str]) -> None:
        self.values = values
        self.defects = defects

    def get(self, name: str) -> bytes | None:
        """The unfolded value with surrounding whitespace removed, or None when absent."""
        raw = self.values.get(name)
        return None if raw is None else unfold(raw)


def read_fields(block: bytes) -> HeaderFields:
    """Find the wanted fields in one header block (the octets before the blank line).

    Records defects: ``header-truncated`` when the block is larger than the metadata budget,
    ``invalid-header-line`` for a line that is no field, ``duplicate-<name>``.
    """
    defects: list[str] = []
    if len(block) > MAX_HEADER_BYTES:
        block = block[:MAX_HEADER_BYTES]
        defects.append("header-truncated")
    values: dict[str, bytes] = {}
    if block[:1] in (b" ", b"\t"):
        defects.append("header-starts-with-whitespace")
    if _BAD_LINE_RE.search(block) is not None:
        defects.append("invalid-header-line")
    size = len(block)
    for m in _FIELD_RE.finditer(block):
        name = m.group(1).lower().decode("ascii")
        if name in values:
            dup = "duplicate-" + name
            if dup not in defects:
                defects.append(dup)
            continue
        start = m.end()
        end = block.find(b"\r\n", start)
        while end != -1 and end + 2 < size and block[end + 2] in (0x20, 0x09):
            end = block.find(b"\r\n", end + 2)
        if end == -1:
            end = size
        value = block[start:end]
        if len(value) > MAX_FIELD_VALUE:
            value = value[:MAX_FIELD_VALUE]
            if "header-value-truncated" not in defects:
                defects.append("header-value-truncated")
        values[name] = value
    return HeaderFields(values, defects)


def unfold(raw: bytes) -> bytes:
    """Remove folding (RFC 5322 §2.2.3: CRLF before WSP) and surrounding whitespace."""
    if b"\r" in raw or b"\n" in raw:
        raw = raw.replace(b"\r\n", b"").replace(b"\r", b"").replace(b"\n", b"")
    return raw.strip(_WSP)


def decode_text(raw: bytes) -> str:
    """Octets of a header as text: UTF-8 (RFC 6532) when valid, else Latin-1 (never fails)."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


@functools.lru_cache(maxsize=256)
def known_charset(charset: str) -> bool:
    """True when Python has a *text* codec of this name (not base64, zlib, rot13 ...)."""
    try:
        info = codecs.lookup(charset)
    except (LookupError, ValueError, TypeError):
        return False
    return bool(getattr(info, "_is_text_encoding", True))


def _charset_decode(data: bytes, charset: str) -> str | None:
    """Decode with a MIME charset name; None when Python does not know it as a text codec."""
    if not known_charset(charset):
        return None
    try:
        return data.decode(charset, "replace")
    except (LookupError, UnicodeError, ValueError, TypeError):
        return None


# RFC 2047 §2 encoded-word; charset may carry an RFC 2231 §5 language suffix ("*en").
_EW_RE: Final = re.compile(rb"=\?([^?\s*]{1,64})(?:\*[^?\s]{0,64})?\?([bBqQ])\?([^?\s]*)\?=")


def _ew_bytes(kind: bytes, text: bytes) -> bytes | None:
    if kind in (b"q", b"Q"):
        return binascii.a2b_qp(text, header=True)
    try:
        return binascii.a2b_base64(text + b"=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        return None


def decode_words(raw: bytes) -> str:
    """Decode RFC 2047 encoded words in an unstructured header value.

    Whitespace between adjacent encoded words is dropped (RFC 2047 §6.2); adjacent words in the
    same charset are joined before decoding, so a multi-byte character split across two words
    survives. An encoded word with an unknown charset or broken base64 stays as it was.
    """
    if b"=?" not in raw:
        return decode_text(raw)
    out: list[str] = []
    pos = 0
    run_charset = ""
    run: list[bytes] = []

    def flush() -> None:
        if run:
            text = _charset_decode(b"".join(run), run_charset)
            out.append(text if text is not None else decode_text(b"".join(run)))
            run.clear()

    last_decoded = False
    for m in _EW_RE.finditer(raw):
        gap = raw[pos : m.start()]
        charset = m.group(1).decode("ascii", "replace").lower()
        octets = _ew_bytes(m.group(2), m.group(3))
        if octets is not None and known_charset(charset):
            if last_decoded and not gap.strip(b" \t\r\n"):
                # whitespace between two encoded words goes (RFC 2047 §6.2)
                if charset != run_charset:
                    flush()
            else:
                flush()
                out.append(decode_text(gap))
            run_charset = charset
            run.append(octets)
            last_decoded = True
        else:
            flush()
            out.append(decode_text(gap))
            out.append(decode_text(m.group(0)))
            last_decoded = False
        pos = m.end()
    flush()
    out.append(decode_text(raw[pos:]))
    return "".join(out)


_PARAM_RE: Final = re.compile(
    rb'[\s;]*([^\s;="]*)\s*(?:=\s*(?:"((?:[^"\\]|\\.)*)("?)|([^;]*)))?',
    re.DOTALL,
)
_QUOTED_PAIR_RE: Final = re.compile(rb"\\(.)", re.DOTALL)
_ATTRIBUTE_RE: Final = re.compile(rb"^[!#$%&'*+\-.^_`|~0-9a-z]+$")
_COMMENT_RE: Final = re.compile(rb"\([^()]*\)")
_RFC2231_NAME_RE: Final = re.compile(rb"^([^*]+)\*(?:([0-9]{1,5})(\*)?)?$")


def _note(defects: list[str], name: str) -> None:
    if name not in defects:
        defects.append(name)


def _strip_comments(value: bytes) -> bytes:
    """Remove RFC 5322 comments (one nesting level per pass, at most a few passes)."""
    for _ in range(4):
        if b"(" not in value:
            break
        value = _COMMENT_RE.sub(b"", value)
    return value


def parse_parameters(value: bytes) -> tuple[bytes, list[tuple[bytes, bytes]], list[str]]:
    """Split ``main; name=value; ...`` (RFC 2045 §5.1) into the main token and parameters.

    Returns ``(main, params, defects)``: ``main`` lower-cased with whitespace and comments
    removed; ``params`` as ``(lower-case name, value)`` in order of first appearance, RFC 2231
    sections joined and decoded (UTF-8 output when the charset is known), a parameter given
    both plainly and in RFC 2231 form keeping the RFC 2231 value; duplicates: first wins.
    """
    defects: list[str] = []
    semi = value.find(b";")
    main_raw, rest = (value, b"") if semi == -1 else (value[:semi], value[semi:])
    main = b"".join(_strip_comments(main_raw).split()).lower()
    plain: dict[bytes, bytes] = {}
    order: list[bytes] = []
    sections: dict[bytes, dict[int, tuple[bytes, bool]]] = {}
    simple_ext: dict[bytes, bytes] = {}
    pos = 0
    count = 0
    size = len(rest)
    while pos < size:
        m = _PARAM_RE.match(rest, pos)
        if m is None or m.end() == pos:
            break
        pos = m.end()
        name = m.group(1).lower()
        if not name and m.group(2) is None and m.group(4) is None:
            continue  # only separators
        count += 1
        if count > MAX_PARAMETERS:
            _note(defects, "too-many-parameters")
            break
        if _ATTRIBUTE_RE.match(name) is None:
            # RFC 2045 §5.1: attribute := token; anything else is dropped (so does Dovecot).
            _note(defects, "invalid-parameter")
            continue
        if m.group(2) is not None:
            val = m.group(2)
            if b"\\" in val:
                val = _QUOTED_PAIR_RE.sub(rb"\1", val)
            if not m.group(3):
                _note(defects, "unterminated-quoted-parameter")
        elif m.group(4) is not None:
            val = m.group(4).strip()
        else:
            _note(defects, "parameter-without-value")
            continue
        ext = _RFC2231_NAME_RE.match(name)
        if ext is None:
            if name not in plain:
                plain[name] = val
                if name not in order:
                    order.append(name)
            continue
        base = ext.group(1)
        if base not in order:
            order.append(base)
        if ext.group(2) is None:
            simple_ext.setdefault(base, val)
        else:
            sections.setdefault(base, {}).setdefault(int(ext.group(2)), (val, bool(ext.group(3))))
    params: list[tuple[bytes, bytes]] = []
    for name in order:
        if name in simple_ext:
            params.append((name, _decode_2231(simple_ext[name], True, defects)))
        elif name in sections:
            params.append((name, _join_2231(sections[name], defects)))
        else:
            params.append((name, plain[name]))
    return main, params, defects


def _split_charset(val: bytes) -> tuple[str, bytes] | None:
    """``charset'lang'text`` -> (charset, text); None when the two quotes are missing."""
    first = val.find(b"'")
    if first == -1:
        return None
    second = val.find(b"'", first + 1)
    if second == -1:
        return None
    return val[:first].decode("ascii", "replace").strip().lower(), val[second + 1 :]


def _charset_to_utf8(data: bytes, charset: str, defects: list[str]) -> bytes:
    if not charset or charset in ("utf-8", "utf8", "us-ascii", "ascii"):
        return data
    text = _charset_decode(data, charset)
    if text is None:
        _note(defects, "unknown-parameter-charset")
        return data
    return text.encode("utf-8", "surrogateescape")


def _decode_2231(val: bytes, extended: bool, defects: list[str]) -> bytes:
    """A single ``name*=charset'lang'%XX`` value (RFC 2231 §4)."""
    if not extended:
        return val
    split = _split_charset(val)
    if split is None:
        _note(defects, "invalid-rfc2231-value")
        return unquote_to_bytes(val)
    charset, text = split
    return _charset_to_utf8(unquote_to_bytes(text), charset, defects)


def _join_2231(parts: dict[int, tuple[bytes, bool]], defects: list[str]) -> bytes:
    """Join ``name*0*``, ``name*1`` ... sections (RFC 2231 §3); stop at the first gap."""
    charset = ""
    chunks: list[bytes] = []
    index = 0
    while index in parts:
        val, extended = parts[index]
        if extended:
            if index == 0:
                split = _split_charset(val)
                if split is None:
                    _note(defects, "invalid-rfc2231-value")
                else:
                    charset, val = split
            chunks.append(unquote_to_bytes(val))
        else:
            chunks.append(val)
        index += 1
    if index != len(parts):
        _note(defects, "rfc2231-section-gap")
    return _charset_to_utf8(b"".join(chunks), charset, defects)


_LANG_SPLIT_RE: Final = re.compile(rb"[\s,]+")


def parse_language(value: bytes) -> list[bytes]:
    """Content-Language (RFC 3282): comma-separated language tags, comments removed."""
    return [tag for tag in _LANG_SPLIT_RE.split(_strip_comments(value)) if tag]

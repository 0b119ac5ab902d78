"""parse_message: the one MIME parse a message gets, at delivery (ARCHITECTURE.md "parse once").

Data flow::

    raw CRLF bytes --scan.scan--> nodes (offsets, MIME fields; iterative, budgeted)
        |-- envelope.build_envelope      ENVELOPE of the message and of each message/rfc822
        |-- bodystructure                BODY and BODYSTRUCTURE, ready to send
        |-- partmap.PartMap              offsets per IMAP section (see partmap.py for how
        |                                BODY[n.MIME], [n.HEADER], [n.TEXT], BINARY[n] are read)
        `-- the header index             decoded, lower-cased search/sort fields

Garbage never raises: every problem becomes a short defect name in ``ParsedMessage.defects``
and the best-effort result is still complete and consistent with the stored bytes.

Defect names (each reported once, in the order first met):

=================================  ==========================================================
structure                          ``no-header-body-separator``, ``part-without-body`` (a
                                   boundary cut a header short), ``missing-final-boundary``,
                                   ``multipart-without-boundary``, ``boundary-too-long``,
                                   ``encoded-message-part`` (base64/QP message/rfc822, not
                                   looked into)
budgets                            ``nesting-too-deep``, ``too-many-parts``,
                                   ``header-truncated``, ``header-value-truncated``,
                                   ``too-many-parameters``, ``too-many-addresses``
header syntax                      ``invalid-header-line``, ``header-starts-with-whitespace``,
                                   ``duplicate-<field>`` (first occurrence used),
                                   ``invalid-content-type`` (treated as text/plain)
parameters (RFC 2045/2231)         ``invalid-parameter``, ``parameter-without-value``,
                                   ``unterminated-quoted-parameter``, ``invalid-rfc2231-value``,
                                   ``rfc2231-section-gap``, ``unknown-parameter-charset``
addresses (RFC 5322)               ``address-group-not-closed``, ``address-nested-group``,
                                   ``address-stray-semicolon``
=================================  ==========================================================
"""

from __future__ import annotations

import mmap
from dataclasses import dataclass
from typing import Final

from msgstore.mime.address import is_group_marker, parse_address_list
from msgstore.mime.bodystructure import build_body_structures
from msgstore.mime.envelope import build_envelope
from msgstore.mime.headers import HeaderFields, decode_text, decode_words
from msgstore.mime.partmap import PartInfo, PartMap
from msgstore.mime.scan import MESSAGE, Buffer, Node, scan
from msgstore.mime.sortkeys import base_subject, sent_date

__all__ = ["METADATA_VERSION", "ParsedMessage", "parse_message"]

METADATA_VERSION: Final[int] = 1
"""Version of everything parse_message precomputes (ENVELOPE/BODY/BODYSTRUCTURE text, the part
map format, the header index). Bump it whenever any of them changes; reconstruct re-parses rows
stored with an older version."""

_INDEX_TEXT: Final = ("subject", "date", "message-id", "in-reply-to", "references", "list-id")
_INDEX_ADDR: Final = ("from", "to", "cc", "bcc")
_NL_CHUNK: Final[int] = 1 << 20


@dataclass(frozen=True, slots=True)
class ParsedMessage:
    """Everything a client may ask about a message, computed once."""

    envelope: bytes
    """Ready-to-send IMAP ENVELOPE (RFC 9051 §7.5.2)."""
    body: bytes
    """Ready-to-send non-extensible BODY."""
    bodystructure: bytes
    """Ready-to-send BODYSTRUCTURE with extension data."""
    partmap: PartMap
    """Offsets of every part by section (see :mod:`msgstore.mime.partmap`)."""
    headers: dict[str, str]
    """Search/sort index: decoded, unfolded, lower-cased values; absent headers absent."""
    defects: tuple[str, ...]
    """Short names of what was wrong with the message; empty for a clean message."""


def _newline_counter(buf: Buffer, offsets: set[int]) -> dict[int, int]:
    """Number of LF octets before each offset, in one forward sweep."""
    counts: dict[int, int] = {}
    total = 0
    prev = 0
    is_mmap = isinstance(buf, mmap.mmap)
    for offset in sorted(offsets):
        if offset > prev:
            if is_mmap:
                pos = prev
                while pos < offset:
                    stop = min(pos + _NL_CHUNK, offset)
                    total += buf[pos:stop].count(b"\n")
                    pos = stop
            else:
                assert not isinstance(buf, mmap.mmap)
                total += buf.count(b"\n", prev, offset)
            prev = offset
        counts[offset] = total
    return counts


def _index(fields: HeaderFields) -> dict[str, str]:
    """The search/sort header index of the top-level header (RFC 5256 sort keys included)."""
    index: dict[str, str] = {}
    for name in _INDEX_TEXT:
        raw = fields.get(name)
        if raw is not None:
            text = decode_words(raw) if name == "subject" else decode_text(raw)
            index[name] = text.lower()
    for name in _INDEX_ADDR:
        raw = fields.get(name)
        if raw is None:
            continue
        index[name] = decode_words(raw).lower()
        if name == "bcc":
            continue
        addresses, _ = parse_address_list(raw)
        first = next((a for a in addresses if not is_group_marker(a)), None)
        mailbox = first[2] if first is not None else None
        index["sort-" + name] = decode_text(mailbox).lower() if mailbox else ""
    if "subject" in index:
        index["sort-subject"] = base_subject(decode_words(fields.get("subject") or b""))
    date = fields.get("date")
    if date is not None:
        index["sent-date"] = sent_date(decode_text(date))
    return index


def parse_message(data: bytes | bytearray | memoryview | mmap.mmap) -> ParsedMessage:
    """Parse a CRLF-normalised message once; never raises on bad input.

    RFC 9051 §7.5.2 (ENVELOPE, BODY, BODYSTRUCTURE), RFC 2045-2047 and 2231 (MIME), RFC 5256
    (sort keys). Budgets in :mod:`msgstore.mime.limits` keep the work linear in the size.

    Args:
        data: the stored message bytes; an ``mmap`` is read in place, a memoryview copied.
    """
    buf: Buffer = bytes(data) if isinstance(data, memoryview) else data
    nodes, scan_defects = scan(buf)
    defects = list(scan_defects)

    offsets: set[int] = set()
    for node in nodes:
        offsets.add(node.header_end)
        offsets.add(node.body_end)
    newlines = _newline_counter(buf, offsets)

    def lines(node: Node) -> int:
        start, end = node.header_end, node.body_end
        # Lines are line ends in the body. A multipart's body part does not end in one (that
        # CRLF belongs to the boundary, RFC 2046 §5.1.1), so its last line is not counted:
        # what Dovecot reports too.
        return newlines[end] - newlines[start]

    envelopes: dict[int, bytes] = {}

    def envelope(node: Node) -> bytes:
        cached = envelopes.get(node.index)
        if cached is None:
            cached = envelopes[node.index] = build_envelope(node.fields, defects)
        return cached

    root = nodes[0]
    top_envelope = envelope(root)
    body, bodystructure = build_body_structures(nodes, lines, envelope, defects)

    parts: list[PartInfo] = []
    for node in nodes:
        is_message = node.kind == MESSAGE and bool(node.children)
        inner_end = nodes[node.children[0]].header_end if is_message else node.header_end
        charset = node.param(b"charset")
        info = PartInfo(
            section=(),
            header_start=node.header_start,
            header_end=node.header_end,
            body_end=node.body_end,
            content_type=f"{node.type}/{node.subtype}",
            encoding=node.encoding,
            lines=lines(node),
            charset=(
                decode_text(charset).lower()
                if charset is not None
                else ("us-ascii" if node.type == "text" else None)
            ),
            is_message=is_message,
            inner_header_end=inner_end,
        )
        if node.index == 0 and node.section != ():
            parts.append(_with_section(info, (), is_message=False))
        if node.section is not None:
            parts.append(_with_section(info, node.section, is_message=is_message))

    return ParsedMessage(
        envelope=top_envelope,
        body=body,
        bodystructure=bodystructure,
        partmap=PartMap(parts),
        headers=_index(root.fields),
        defects=tuple(dict.fromkeys(defects)),
    )


def _with_section(info: PartInfo, section: tuple[int, ...], *, is_message: bool) -> PartInfo:
    return PartInfo(
        section=section,
        header_start=info.header_start,
        header_end=info.header_end,
        body_end=info.body_end,
        content_type=info.content_type,
        encoding=info.encoding,
        lines=info.lines,
        charset=info.charset,
        is_message=is_message,
        inner_header_end=info.inner_header_end if is_message else info.header_end,
    )

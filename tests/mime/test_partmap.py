"""The part map answers BODY[section], [section.MIME], [section.HEADER], [section.TEXT] and
BINARY[section] by offsets alone, as the msgstore.mime.partmap docstring describes
(RFC 9051 §6.4.5); and it survives serialisation."""

from __future__ import annotations

import base64
import binascii
import mmap
from collections.abc import Callable

import pytest

from msgstore.core.errors import ErrorKind, StoreError
from msgstore.mime import PartMap, normalize, parse_message
from msgstore.mime.partmap import PartInfo


def _part(pm: PartMap, section: tuple[int, ...]) -> PartInfo:
    part = pm.part(section)
    assert part is not None, section
    return part


def fetch(data: bytes, pm: PartMap, section: tuple[int, ...], item: str = "") -> bytes:
    """What an IMAP server sends for BODY[section.item], using only the part map."""
    p = _part(pm, section)
    if item == "MIME":
        assert section != ()
        return data[p.header_start : p.header_end]
    if item == "HEADER":
        if section == ():
            return data[p.header_start : p.header_end]
        assert p.is_message
        return data[p.header_end : p.inner_header_end]
    if item == "TEXT":
        if section == ():
            return data[p.header_end : p.body_end]
        assert p.is_message
        return data[p.inner_header_end : p.body_end]
    assert item == ""
    if section == ():
        return data[p.header_start : p.body_end]
    return data[p.header_end : p.body_end]


def binary(data: bytes, pm: PartMap, section: tuple[int, ...]) -> bytes:
    """BINARY[section] (RFC 3516): the decoded body."""
    p = _part(pm, section)
    raw = data[p.header_end : p.body_end]
    if p.encoding == "base64":
        return base64.b64decode(raw)
    if p.encoding == "quoted-printable":
        return binascii.a2b_qp(raw)
    return raw


NESTED = normalize(
    b"Subject: top\n"
    b"Content-Type: multipart/mixed; boundary=b\n"
    b"\n"
    b"preamble\n"
    b"--b\n"
    b"Content-Type: text/plain\n"
    b"\n"
    b"part one\n"
    b"--b\n"
    b"Content-Type: message/rfc822\n"
    b"\n"
    b"Subject: inner\n"
    b"Content-Type: multipart/alternative; boundary=c\n"
    b"\n"
    b"--c\n"
    b"\n"
    b"inner plain\n"
    b"--c\n"
    b"Content-Type: text/html\n"
    b"\n"
    b"<p>inner</p>\n"
    b"--c--\n"
    b"\n"
    b"--b\n"
    b"Content-Type: message/rfc822\n"
    b"\n"
    b"Subject: single\n"
    b"\n"
    b"single body\n"
    b"--b--\n"
    b"epilogue\n"
)

INNER_TEXT = (
    b"--c\r\n\r\ninner plain\r\n--c\r\nContent-Type: text/html\r\n\r\n<p>inner</p>\r\n--c--\r\n"
)
INNER_HEADER = b"Subject: inner\r\nContent-Type: multipart/alternative; boundary=c\r\n\r\n"


@pytest.mark.parametrize(
    ("section", "item", "expected"),
    [
        ((), "", NESTED),
        ((), "HEADER", b"Subject: top\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"),
        ((), "TEXT", NESTED[NESTED.index(b"preamble") :]),
        ((1,), "", b"part one"),
        ((1,), "MIME", b"Content-Type: text/plain\r\n\r\n"),
        ((2,), "MIME", b"Content-Type: message/rfc822\r\n\r\n"),
        ((2,), "", INNER_HEADER + INNER_TEXT),
        ((2,), "HEADER", INNER_HEADER),
        ((2,), "TEXT", INNER_TEXT),
        ((2, 1), "", b"inner plain"),
        ((2, 1), "MIME", b"\r\n"),
        ((2, 2), "", b"<p>inner</p>"),
        ((2, 2), "MIME", b"Content-Type: text/html\r\n\r\n"),
        ((3,), "", b"Subject: single\r\n\r\nsingle body"),
        ((3,), "HEADER", b"Subject: single\r\n\r\n"),
        ((3,), "TEXT", b"single body"),
        # Part 1 of a non-multipart message is its body; its MIME header is the message header.
        ((3, 1), "", b"single body"),
        ((3, 1), "MIME", b"Subject: single\r\n\r\n"),
    ],
)
def test_nested_sections_by_offset(section: tuple[int, ...], item: str, expected: bytes) -> None:
    """Each BODY[section.item] of a nested message is a plain slice of the stored bytes."""
    pm = parse_message(NESTED).partmap
    assert fetch(NESTED, pm, section, item) == expected


def test_nested_sections_exist_exactly() -> None:
    """Only real sections have entries; types, encodings and the is_message flag are right."""
    pm = parse_message(NESTED).partmap
    sections = [p.section for p in pm.parts()]
    assert sections == [(), (1,), (2,), (2, 1), (2, 2), (3,), (3, 1)]
    assert pm.part((4,)) is None
    assert pm.part((1, 1)) is None
    assert pm.part((2, 3)) is None
    types = {p.section: (p.content_type, p.is_message) for p in pm.parts()}
    assert types == {
        (): ("multipart/mixed", False),
        (1,): ("text/plain", False),
        (2,): ("message/rfc822", True),
        (2, 1): ("text/plain", False),
        (2, 2): ("text/html", False),
        (3,): ("message/rfc822", True),
        (3, 1): ("text/plain", False),
    }


def test_single_part_message_part_one_is_the_body() -> None:
    """RFC 9051 §6.4.5: a non-multipart message has part 1, its body, with the message header
    as its MIME header."""
    data = normalize(b"Subject: s\nContent-Type: text/plain; charset=UTF-8\n\nline 1\nline 2\n")
    pm = parse_message(data).partmap
    assert fetch(data, pm, (1,)) == b"line 1\r\nline 2\r\n"
    assert fetch(data, pm, (1,), "MIME") == fetch(data, pm, (), "HEADER")
    one = _part(pm, (1,))
    assert (one.content_type, one.charset, one.lines, one.size) == ("text/plain", "utf-8", 2, 16)
    assert pm.part((2,)) is None


def test_top_level_rfc822_message() -> None:
    """A message whose own type is message/rfc822: part 1 is the encapsulated message."""
    data = normalize(b"Content-Type: message/rfc822\n\nSubject: in\n\nhello\n")
    pm = parse_message(data).partmap
    assert fetch(data, pm, (1,)) == b"Subject: in\r\n\r\nhello\r\n"
    assert fetch(data, pm, (1,), "HEADER") == b"Subject: in\r\n\r\n"
    assert fetch(data, pm, (1,), "TEXT") == b"hello\r\n"
    assert fetch(data, pm, (1, 1)) == b"hello\r\n"


def test_binary_decodes_by_offsets() -> None:
    """BINARY[n] decodes the offset slice with the part's encoding (RFC 3516)."""
    payload = bytes(range(256)) * 3
    encoded = base64.encodebytes(payload)
    data = normalize(
        b"Content-Type: multipart/mixed; boundary=z\n\n--z\n"
        b"Content-Type: application/octet-stream\nContent-Transfer-Encoding: BASE64\n\n"
        + encoded
        + b"--z\nContent-Type: text/plain; charset=utf-8\n"
        b"Content-Transfer-Encoding: quoted-printable\n\nCaf=C3=A9 =\nau lait\n--z--\n"
    )
    pm = parse_message(data).partmap
    assert _part(pm, (1,)).encoding == "base64"
    assert binary(data, pm, (1,)) == payload
    assert binary(data, pm, (2,)).decode("utf-8") == "Café au lait"


def test_serialisation_round_trip_and_compactness() -> None:
    """to_bytes/from_bytes give back an equal map; repeated strings are stored once."""
    parts = "".join(f"--b\nContent-Type: text/plain\n\npart {i}\n" for i in range(500))
    data = normalize(
        b"Content-Type: multipart/mixed; boundary=b\n\n" + parts.encode() + b"--b--\n"
    )
    pm = parse_message(data).partmap
    raw = pm.to_bytes()
    back = PartMap.from_bytes(raw)
    assert back == pm
    assert list(back.parts()) == list(pm.parts())
    assert len(back) == 501
    assert len(raw) < 60 * 501


@pytest.mark.parametrize(
    "damage",
    [
        lambda raw: raw[:-1],
        lambda raw: raw + b"\x00",
        lambda raw: b"XX" + raw[2:],
        lambda raw: raw[:5],
        lambda raw: b"",
    ],
)
def test_damaged_serialisation_is_corrupted(damage: Callable[[bytes], bytes]) -> None:
    """A damaged stored part map raises StoreError(CORRUPTED), never another exception."""
    raw = parse_message(NESTED).partmap.to_bytes()
    with pytest.raises(StoreError) as info:
        PartMap.from_bytes(damage(raw))
    assert info.value.kind is ErrorKind.CORRUPTED


@pytest.mark.parametrize("data", [NESTED, NESTED.replace(b"part one", b"line\r\n" * 500_000)])
def test_mmap_input_reads_in_place(data: bytes) -> None:
    """An mmap (how the store may hand over its temporary file) parses like bytes, line counts
    of multi-MiB parts included."""
    with mmap.mmap(-1, len(data)) as mapped:
        mapped.write(data)
        from_map = parse_message(mapped)
    assert from_map == parse_message(data)

"""Parsing budgets keep every hostile message linear (RELIABILITY.md §7 tests 26-27, the
Dovecot CVE classes named in msgstore.mime.limits): each case finishes well within a generous
time bound, raises nothing (no RecursionError), stays consistent, and records its defect."""

from __future__ import annotations

import time

from msgstore.mime import ParsedMessage, parse_message
from msgstore.mime.limits import MAX_ADDRESSES, MAX_NESTING, MAX_PARTS
from tests.mime.imapsyntax import read
from tests.mime.invariants import check_parsed

SECONDS = 5.0  # generous: each case takes well under a second on a laptop


def timed(data: bytes) -> ParsedMessage:
    start = time.process_time()  # CPU time: other test workers share the cores
    parsed = parse_message(data)
    elapsed = time.process_time() - start
    assert elapsed < SECONDS, f"took {elapsed:.2f}s"
    return parsed


def nesting_depth(bodystructure: bytes) -> int:
    """Deepest parenthesis nesting outside quoted strings and literals."""
    depth = deepest = 0
    value = read(bodystructure)
    todo = [(value, 1)]
    while todo:
        item, depth = todo.pop()
        if isinstance(item, list):
            deepest = max(deepest, depth)
            todo.extend((child, depth + 1) for child in item)
    return deepest


def test_ten_thousand_nested_multiparts() -> None:
    """10,000 nested multiparts (CVE-2020-12100): parsed to depth 100, the rest is one opaque
    application/octet-stream leaf, as Dovecot does."""
    n = 10_000
    head = b"".join(
        b"--b%05d\r\nContent-Type: multipart/mixed; boundary=b%05d\r\n\r\n" % (i, i + 1)
        for i in range(n)
    )
    tail = b"".join(b"\r\n--b%05d--" % i for i in range(n, -1, -1))
    data = (
        b"Content-Type: multipart/mixed; boundary=b00000\r\n\r\n"
        + head
        + b"--b%05d\r\n\r\nleaf" % n
        + tail
        + b"\r\n"
    )
    parsed = timed(data)
    check_parsed(data, parsed)
    assert "nesting-too-deep" in parsed.defects
    assert len(parsed.partmap) == MAX_NESTING
    deepest = max(parsed.partmap.parts(), key=lambda p: len(p.section))
    assert deepest.content_type == "application/octet-stream"
    # 100 nested bodies (99 multiparts and the opaque leaf), plus the leaf's parameter list.
    assert nesting_depth(parsed.bodystructure) == MAX_NESTING + 1


def test_ten_thousand_nested_messages() -> None:
    """10,000 nested message/rfc822 parts: no recursion, depth capped."""
    data = b"Content-Type: message/rfc822\r\n\r\n" * 10_000 + b"Subject: x\r\n\r\nleaf\r\n"
    parsed = timed(data)
    check_parsed(data, parsed)
    assert "nesting-too-deep" in parsed.defects
    assert max(len(p.section) for p in parsed.partmap.parts()) <= MAX_NESTING


def test_nested_multiparts_sharing_one_boundary() -> None:
    """10,000 nested multiparts that all use the same boundary stay linear."""
    n = 10_000
    data = (
        b"Content-Type: multipart/mixed; boundary=b\r\n\r\n"
        + b"--b\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n" * n
        + b"--b\r\n\r\nleaf\r\n"
        + b"--b--\r\n" * n
    )
    parsed = timed(data)
    check_parsed(data, parsed)


def test_hundred_thousand_parts() -> None:
    """100,000 body parts (CVE-2020-25275): 10,000 recorded, the rest stays in the parent's
    body; BODYSTRUCTURE lists only the recorded parts."""
    data = (
        b"Content-Type: multipart/mixed; boundary=p\r\n\r\n"
        + b"--p\r\nContent-Type: text/plain\r\n\r\nx\r\n" * 100_000
        + b"--p--\r\n"
    )
    parsed = timed(data)
    check_parsed(data, parsed)
    assert "too-many-parts" in parsed.defects
    assert len(parsed.partmap) == MAX_PARTS
    root = parsed.partmap.part(())
    assert root is not None
    assert root.body_end == len(data)


def test_five_hundred_parts() -> None:
    """A legitimate 500-part message is parsed completely, sizes and order exact."""
    parts = [b"part number %d" % i for i in range(500)]
    data = (
        b"Subject: many\r\nContent-Type: multipart/mixed; boundary=five\r\n\r\n"
        + b"".join(b"--five\r\nContent-Type: text/plain\r\n\r\n" + p + b"\r\n" for p in parts)
        + b"--five--\r\n"
    )
    parsed = timed(data)
    check_parsed(data, parsed)
    assert parsed.defects == ()
    for i, body in enumerate(parts, start=1):
        part = parsed.partmap.part((i,))
        assert part is not None
        assert data[part.header_end : part.body_end] == body
    structure = read(parsed.bodystructure)
    assert isinstance(structure, list)
    children = 0
    while isinstance(structure[children], list):
        children += 1
    assert children == 500


def test_one_mebibyte_header_block() -> None:
    """A 1 MiB header block: fields before the budget count, fields after it are ignored, the
    header still ends exactly at its blank line."""
    filler = b"".join(b"X-Filler-%06d: %s\r\n" % (i, b"y" * 40) for i in range(20_000))
    assert len(filler) > 1024 * 1024
    data = b"Subject: early\r\n" + filler + b"From: late@example.com\r\n\r\nbody\r\n"
    parsed = timed(data)
    check_parsed(data, parsed)
    assert "header-truncated" in parsed.defects
    assert parsed.headers["subject"] == "early"
    assert "from" not in parsed.headers
    root = parsed.partmap.part(())
    assert root is not None
    assert data[root.header_end :] == b"body\r\n"


def test_half_a_million_to_lines() -> None:
    """500,000 To: lines (CVE-2024-23184): linear; the first To: is the one used."""
    data = b"".join(b"To: user%d@example.com\r\n" % i for i in range(500_000)) + b"\r\nbody\r\n"
    parsed = timed(data)
    check_parsed(data, parsed)
    assert parsed.headers["sort-to"] == "user0"


def test_huge_address_header() -> None:
    """One To: header with 100,000 addresses: capped at MAX_ADDRESSES."""
    data = b"To: " + b", ".join(b"u%d@x.example" % i for i in range(100_000)) + b"\r\n\r\n"
    parsed = timed(data)
    check_parsed(data, parsed)
    to = read(parsed.envelope)
    assert isinstance(to, list)
    assert isinstance(to[5], list)
    assert len(to[5]) <= MAX_ADDRESSES


def test_fifty_megabyte_header_line() -> None:
    """One 50 MB header line (CVE-2024-23185): found and skipped in linear time."""
    data = b"Subject: " + b"x" * 50_000_000 + b"\r\n\r\nbody\r\n"
    parsed = timed(data)
    assert "header-truncated" in parsed.defects
    root = parsed.partmap.part(())
    assert root is not None
    assert root.header_end == len(data) - 6


def test_ten_thousand_rfc2231_continuations() -> None:
    """10,000 RFC 2231 sections (CVE-2026-27859): capped, quick."""
    params = b"; ".join(b"name*%d*=a%%20b" % i for i in range(10_000))
    data = b"Content-Type: application/x; " + params + b"\r\n\r\nx\r\n"
    parsed = timed(data)
    check_parsed(data, parsed)
    assert "too-many-parameters" in parsed.defects


def test_one_megabyte_boundary() -> None:
    """A 1 MB boundary is refused (longer than any conforming line): an empty multipart."""
    boundary = b"z" * 1_000_000
    data = (
        b"Content-Type: multipart/mixed; boundary="
        + boundary
        + b"\r\n\r\n--"
        + boundary
        + b"\r\n\r\nx\r\n--"
        + boundary
        + b"--\r\n"
    )
    parsed = timed(data)
    check_parsed(data, parsed)
    assert "boundary-too-long" in parsed.defects


def test_many_near_boundary_lines_under_deep_nesting() -> None:
    """300,000 lines that start like a boundary, under 99 open multiparts with boundaries of
    99 different lengths: each line costs a bounded number of lookups."""
    head = b"".join(
        b"--%s\r\nContent-Type: multipart/mixed; boundary=%s\r\n\r\n" % (b"q" * i, b"q" * (i + 1))
        for i in range(1, 99)
    )
    data = (
        b"Content-Type: multipart/mixed; boundary=q\r\n\r\n"
        + head
        + b"--"
        + b"q" * 99
        + b"\r\n\r\n"
        + b"--x\r\n" * 300_000
    )
    parsed = timed(data)
    check_parsed(data, parsed)


def test_hostile_header_syntax() -> None:
    """Pathological address, encoded-word and parameter syntax (regex backtracking class,
    RELIABILITY.md §4.7) stays fast."""
    data = (
        b"To: " + b"(" * 60_000 + b"\r\n"
        b"From: " + b'"' * 60_000 + b"\r\n"
        b"Cc: " + b"<@a," * 15_000 + b"\r\n"
        b"Bcc: " + b"<" * 60_000 + b"\r\n"
        b"Subject: " + b"=?" * 30_000 + b"\r\n"
        b"Content-Type: text/plain; " + b'a="\\' * 20_000 + b"\r\n"
        b"Content-Disposition: " + b"a=b;" * 20_000 + b"\r\n"
        b"\r\n"
    )
    parsed = timed(data)
    check_parsed(data, parsed)

"""Garbage in never crashes (RELIABILITY.md §7 test 27): random bytes, generated MIME trees and
mutated MIME always parse to a complete result whose offsets are in bounds, ordered and nested,
and whose ENVELOPE/BODY/BODYSTRUCTURE follow the RFC 9051 grammar."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from msgstore.mime import normalize, parse_message
from tests.mime.imapsyntax import Value, read
from tests.mime.invariants import check_parsed

BOUNDARIES = st.sampled_from([b"b", b"bb", b"b1", b"=_x", b"same", b"a b", b"--"])
TEXT_LINES = st.lists(
    st.sampled_from(
        [
            b"hello",
            b"",
            b"--",
            b"--b",
            b"--bb--",
            b"-- sig",
            b"=?utf-8?q?x?=",
            b"\xc3\xa9t\xc3\xa9",
        ]
    ),
    max_size=5,
)
LEAF_HEADERS = st.lists(
    st.sampled_from(
        [
            b"Content-Type: text/plain; charset=utf-8",
            b"Content-Type: text/html",
            b"Content-Type: image/png; name*0*=utf-8''a%20; name*1=b.png",
            b"Content-Transfer-Encoding: base64",
            b'Content-Disposition: attachment; filename="x.bin"',
            b"Content-Language: en, de",
            b"Content-ID: <id@x>",
            b"Subject: =?utf-8?b?w6k=?= sub",
            b'From: "A, B" <a@b.example>, Group: c@d.example;',
            b"To: <@route.example:x@y.example>",
            b"Date: Mon, 1 Jan 2024 10:00:00 +0100",
            b"X-Folded: a\r\n b",
            b"no colon line",
            b" leading space",
        ]
    ),
    max_size=4,
)


def _leaf(headers: list[bytes], lines: list[bytes]) -> bytes:
    return b"".join(h + b"\r\n" for h in headers) + b"\r\n" + b"\r\n".join(lines)


def _multipart(
    boundary: bytes, subtype: bytes, children: list[bytes], close: bool, epilogue: bytes
) -> bytes:
    head = b"Content-Type: multipart/" + subtype + b'; boundary="' + boundary + b'"\r\n\r\n'
    body = b"preamble\r\n" + b"".join(b"--" + boundary + b"\r\n" + c + b"\r\n" for c in children)
    if close:
        body += b"--" + boundary + b"--\r\n" + epilogue
    return head + body


def _message(inner: bytes) -> bytes:
    return b"Content-Type: message/rfc822\r\n\r\n" + inner


MIME_TREES = st.recursive(
    st.builds(_leaf, LEAF_HEADERS, TEXT_LINES),
    lambda children: st.one_of(
        st.builds(
            _multipart,
            BOUNDARIES,
            st.sampled_from([b"mixed", b"alternative", b"digest", b"related"]),
            st.lists(children, max_size=4),
            st.booleans(),
            st.sampled_from([b"", b"epilogue\r\n", b"--b\r\nafter\r\n"]),
        ),
        st.builds(_message, children),
    ),
    max_leaves=12,
)

FRAGMENTS = st.sampled_from(
    [
        b"\r\n",
        b"\r\n\r\n",
        b"\r\n--b\r\n",
        b"\r\n--b--",
        b"\r\n--bb",
        b"\x00",
        b"\r",
        b"\n",
        b"\xff\xfe",
        b"Content-Type: multipart/mixed; boundary=b\r\n",
        b"Content-Type: message/rfc822\r\n\r\n",
        b'"',
        b"(",
        b"<",
        b"=?",
    ]
)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(MIME_TREES))
    for _ in range(draw(st.integers(min_value=0, max_value=4))):
        pos = draw(st.integers(min_value=0, max_value=len(data)))
        op = draw(st.sampled_from(["insert", "delete", "truncate"]))
        if op == "insert":
            data[pos:pos] = draw(FRAGMENTS)
        elif op == "delete":
            del data[pos : pos + draw(st.integers(min_value=1, max_value=20))]
        else:
            del data[pos:]
    return bytes(data)


SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(st.binary(max_size=2000))
def test_random_bytes_never_raise(data: bytes) -> None:
    """Arbitrary octets, normalised or not, give a consistent best-effort result."""
    check_parsed(data, parse_message(data))
    normal = normalize(data)
    check_parsed(normal, parse_message(normal))


@SETTINGS
@given(MIME_TREES)
def test_generated_mime_is_consistent(data: bytes) -> None:
    """Well-formed generated MIME trees parse consistently."""
    check_parsed(data, parse_message(data))


@SETTINGS
@given(mutated())
def test_mutated_mime_never_raises(data: bytes) -> None:
    """MIME with inserted boundaries, CRs, NULs, cut-offs and deletions never raises."""
    check_parsed(data, parse_message(data))
    normal = normalize(data)
    check_parsed(normal, parse_message(normal))


def _without_extensions(value: Value) -> Value:
    """BODYSTRUCTURE minus the extension fields: what BODY must be (RFC 9051 §7.5.2)."""
    if not isinstance(value, list):
        return value
    if value and isinstance(value[0], list):
        k = 0
        while isinstance(value[k], list):
            k += 1
        return [_without_extensions(v) for v in value[:k]] + [value[k]]
    media = value[0]
    assert isinstance(media, bytes)
    subtype = value[1]
    assert isinstance(subtype, bytes)
    if media == b"message" and subtype in (b"rfc822", b"global"):
        return [*value[:8], _without_extensions(value[8]), value[9]]
    return value[:8] if media == b"text" else value[:7]


@SETTINGS
@given(mutated())
def test_body_is_bodystructure_without_extensions(data: bytes) -> None:
    """BODY and BODYSTRUCTURE describe the same tree; only the extension data differs."""
    parsed = parse_message(data)
    assert read(parsed.body) == _without_extensions(read(parsed.bodystructure))

"""CRLF normalisation (RFC 5322 §2.3): bare LF and bare CR become CRLF, CRLF stays, a final
CRLF is added unless the message is empty, and any chunking gives the one-shot result."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from msgstore.mime import CrlfNormalizer, normalize


def reference(data: bytes) -> bytes:
    """Independent statement of the rule."""
    out = re.sub(rb"\r\n|\r|\n", b"\r\n", data)
    if out and not out.endswith(b"\r\n"):
        out += b"\r\n"
    return out


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"", b""),
        (b"a", b"a\r\n"),
        (b"a\n", b"a\r\n"),
        (b"a\r", b"a\r\n"),
        (b"a\r\n", b"a\r\n"),
        (b"\n", b"\r\n"),
        (b"\r", b"\r\n"),
        (b"\r\r\n", b"\r\n\r\n"),
        (b"\n\r", b"\r\n\r\n"),
        (b"a\n\nb", b"a\r\n\r\nb\r\n"),
        (b"a\r\rb\r\n", b"a\r\n\r\nb\r\n"),
        (b"x\r\n.\n\r\n", b"x\r\n.\r\n\r\n"),
    ],
)
def test_normalize_table(raw: bytes, expected: bytes) -> None:
    """Each line-end spelling becomes CRLF; the result ends in CRLF unless empty."""
    assert normalize(raw) == expected
    assert reference(raw) == expected


def test_cr_at_chunk_end_joins_lf_of_next_chunk() -> None:
    """A CR ending one chunk and an LF starting the next are one line end."""
    n = CrlfNormalizer()
    out = n.feed(b"one\r") + n.feed(b"\ntwo\r") + n.feed(b"\r") + n.feed(b"three") + n.finish()
    assert out == b"one\r\ntwo\r\n\r\nthree\r\n"


def test_empty_chunks_and_repeated_finish() -> None:
    """Empty feeds change nothing; a second finish adds nothing."""
    n = CrlfNormalizer()
    assert n.feed(b"") == b""
    assert n.finish() == b""
    n = CrlfNormalizer()
    assert n.feed(b"a\r\n") == b"a\r\n"
    assert n.feed(b"") == b""
    assert n.finish() == b""
    assert n.finish() == b""


@given(
    data=st.binary(max_size=300)
    | st.lists(st.sampled_from([b"a", b"\r", b"\n", b"\r\n", b"bc"]), max_size=60).map(b"".join),
    cuts=st.lists(st.integers(min_value=0, max_value=300), max_size=12),
)
def test_any_chunking_equals_one_shot(data: bytes, cuts: list[int]) -> None:
    """Streaming over any split of the input gives exactly normalize(input) (and the rule)."""
    points = sorted({min(c, len(data)) for c in cuts})
    n = CrlfNormalizer()
    out = b""
    prev = 0
    for point in [*points, len(data)]:
        out += n.feed(data[prev:point])
        prev = point
    out += n.finish()
    assert out == normalize(data) == reference(data)

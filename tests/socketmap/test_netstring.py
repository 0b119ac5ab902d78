"""Netstring framing of socketmap requests (https://cr.yp.to/proto/netstrings.txt)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from msgstore.socketmap.netstring import NetstringDecoder, NetstringError, encode


def test_encode_writes_length_colon_payload_comma() -> None:
    assert encode(b"hello there") == b"11:hello there,"
    assert encode(b"") == b"0:,"


def test_complete_requests_come_out_in_order_and_the_rest_waits() -> None:
    decoder = NetstringDecoder(100)
    decoder.feed(b"3:abc,0:,5:hel")
    assert decoder.next() == b"abc"
    assert decoder.next() == b""
    assert decoder.next() is None
    assert decoder.pending() == 5
    decoder.feed(b"lo,")
    assert decoder.next() == b"hello"
    assert decoder.pending() == 0


def test_a_request_fed_one_octet_at_a_time_is_the_same_request() -> None:
    decoder = NetstringDecoder(100)
    wire = encode(b"recipients alice@example.org")
    for i, octet in enumerate(wire):
        assert decoder.next() is None, f"complete after {i} octets"
        decoder.feed(bytes([octet]))
    assert decoder.next() == b"recipients alice@example.org"


@pytest.mark.parametrize(
    ("wire", "reason"),
    [
        (b"abc", "malformed netstring length"),
        (b":abc,", "malformed netstring length"),
        (b"-1:a,", "malformed netstring length"),
        (b"+1:a,", "malformed netstring length"),
        (b" 1:a,", "malformed netstring length"),
        (b"01:a,", "leading zero"),
        (b"3:abcd", "not terminated by a comma"),
        (b"3:abc;", "not terminated by a comma"),
        (b"101:", "longer than 100 octets"),
        (b"101", "longer than 100 octets"),  # refused before the colon arrives
        (b"1234567890", "length too long"),
        (b"\xff\xfe:", "malformed netstring length"),
    ],
)
def test_malformed_or_oversized_input_is_refused_as_soon_as_it_is_visible(
    wire: bytes, reason: str
) -> None:
    decoder = NetstringDecoder(100)
    decoder.feed(wire)
    with pytest.raises(NetstringError, match=reason):
        decoder.next()


def test_the_limit_itself_is_allowed() -> None:
    decoder = NetstringDecoder(100)
    decoder.feed(encode(b"x" * 100))
    assert decoder.next() == b"x" * 100


@given(st.lists(st.binary(max_size=64), max_size=8), st.integers(min_value=1, max_value=7))
def test_any_payloads_survive_any_chunking(payloads: list[bytes], step: int) -> None:
    wire = b"".join(encode(p) for p in payloads)
    decoder = NetstringDecoder(64)
    out: list[bytes] = []
    for i in range(0, len(wire), step):
        decoder.feed(wire[i : i + step])
        while (item := decoder.next()) is not None:
            out.append(item)
    assert out == payloads
    assert decoder.pending() == 0

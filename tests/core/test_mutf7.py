"""Modified UTF-7 (RFC 3501 §5.1.3): canonical encoding, strict decoding, round trip."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from msgstore.core.errors import ErrorKind, StoreError
from msgstore.core.names import decode_mutf7, decode_utf8, encode_mutf7

#: Unicode text without surrogates: every such str is a possible mailbox name on the wire.
unicode_text = st.text(st.characters(exclude_categories=["Cs"]))


@pytest.mark.parametrize(
    ("name", "wire"),
    [
        ("INBOX", b"INBOX"),
        ("", b""),
        ("&", b"&-"),
        ("a&b", b"a&-b"),
        ("Entwürfe", b"Entw&APw-rfe"),
        ("éé", b"&AOkA6Q-"),
        ("é&", b"&AOk-&-"),
        ("&é", b"&-&AOk-"),
        # RFC 3501 §5.1.3's own example.
        ("~peter/mail/台北/日本語", b"~peter/mail/&U,BTFw-/&ZeVnLIqe-"),
        ("😀", b"&2D3eAA-"),
        ("\x00", b"&AAA-"),
        ("a\x7fb", b"a&AH8-b"),
    ],
)
def test_known_encodings_match_rfc_3501(name: str, wire: bytes) -> None:
    """Encoding gives the canonical wire form and decoding gives the name back."""
    assert encode_mutf7(name) == wire
    assert decode_mutf7(wire) == name


@given(unicode_text)
def test_any_unicode_text_round_trips(name: str) -> None:
    """Every str without surrogates survives encode then decode."""
    assert decode_mutf7(encode_mutf7(name)) == name


@given(unicode_text)
def test_encoding_is_printable_ascii(name: str) -> None:
    """The encoder emits printable US-ASCII only (0x20-0x7E)."""
    assert all(0x20 <= b <= 0x7E for b in encode_mutf7(name))


def _assert_canonical_or_refused(raw: bytes) -> None:
    result: str | StoreError
    try:
        result = decode_mutf7(raw)
    except StoreError as e:
        result = e
    if isinstance(result, StoreError):
        assert result.kind is ErrorKind.PARAMS
    else:
        assert encode_mutf7(result) == raw


@given(st.binary(max_size=40))
def test_decoder_accepts_only_canonical_input(raw: bytes) -> None:
    """Whatever the decoder accepts re-encodes to the same bytes; the rest is PARAMS."""
    _assert_canonical_or_refused(raw)


@given(st.text(alphabet="&-AOkDZ0+,aé", max_size=20))
def test_decoder_accepts_only_canonical_input_near_misses(raw_text: str) -> None:
    """Inputs built from '&', '-' and BASE64 letters either re-encode exactly or are refused."""
    raw = raw_text.encode("utf-8")
    _assert_canonical_or_refused(raw)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"&Jjo", "Mailbox name has an '&' without a closing '-' (modified UTF-7)"),
        (b"a&", "Mailbox name has an '&' without a closing '-' (modified UTF-7)"),
        (b"&Jjo!", "Mailbox name has an '&' without a closing '-' (modified UTF-7)"),
        (
            b"&AGE-",
            "Mailbox name encodes the printable character 'a' in modified UTF-7; "
            "it must be written as itself",
        ),
        (
            b"&ACY-",
            "Mailbox name encodes the printable character '&' in modified UTF-7; "
            "it must be written as itself",
        ),
        (
            b"&AOkAYQ-",
            "Mailbox name encodes the printable character 'a' in modified UTF-7; "
            "it must be written as itself",
        ),
        (
            b"&AOk-&AOk-",
            "Mailbox name has two adjacent modified UTF-7 runs '&...-&...-'; "
            "they must be written as one",
        ),
        (b"&AOl-", "Mailbox name has a modified UTF-7 run with non-zero padding bits"),
        (b"&AA-", "Mailbox name has a modified UTF-7 run that ends inside a character"),
        (b"&AOkA-", "Mailbox name has a modified UTF-7 run that ends inside a character"),
        (
            b"&Jj/-",
            "Mailbox name has '/' inside a modified UTF-7 '&...-' run, "
            "which is not a modified BASE64 character",
        ),
        (
            b"&AOk=-",
            "Mailbox name has '=' inside a modified UTF-7 '&...-' run, "
            "which is not a modified BASE64 character",
        ),
        (
            b"&AO k-",
            "Mailbox name has the byte 0x20 inside a modified UTF-7 '&...-' run, "
            "which is not a modified BASE64 character",
        ),
        (b"&2DQ-", "Mailbox name has an unpaired UTF-16 surrogate in modified UTF-7"),
        (b"&3gA-", "Mailbox name has an unpaired UTF-16 surrogate in modified UTF-7"),
        (
            b"caf\xc3\xa9",
            "Mailbox name contains an 8-bit byte; modified UTF-7 must encode it in '&...-'",
        ),
        (b"a\x00b", "Mailbox name contains the control character U+0000"),
        (b"a\rb", "Mailbox name contains the control character U+000D"),
        (b"a\x7fb", "Mailbox name contains the control character U+007F"),
    ],
)
def test_invalid_input_is_refused_with_its_reason(raw: bytes, reason: str) -> None:
    """Each kind of malformed or non-canonical modified UTF-7 gets PARAMS and its own text."""
    with pytest.raises(StoreError) as info:
        decode_mutf7(raw)
    assert info.value.kind is ErrorKind.PARAMS
    assert info.value.public == reason


def test_ampersand_dash_is_an_ampersand() -> None:
    """``&-`` decodes to ``&`` and may stand next to an encoded run."""
    assert decode_mutf7(b"&-") == "&"
    assert decode_mutf7(b"&-&-") == "&&"
    assert decode_mutf7(b"&AOk-&-&AOk-") == "é&é"


def test_encoding_a_lone_surrogate_is_refused() -> None:
    """A str with a lone surrogate is not Unicode text and has no UTF-16 form."""
    with pytest.raises(StoreError) as info:
        encode_mutf7("a\udc80")
    assert info.value.public == "Mailbox name contains a lone surrogate, which is not Unicode text"


@pytest.mark.parametrize(
    "raw",
    [b"\xc3", b"\xc0\xaf", b"\xed\xa0\x80", b"a\xffb"],
    ids=["truncated", "overlong", "encoded-surrogate", "invalid-byte"],
)
def test_invalid_utf8_names_are_refused(raw: bytes) -> None:
    """UTF8=ACCEPT names must be strict UTF-8: truncated, overlong and surrogate forms fail."""
    with pytest.raises(StoreError) as info:
        decode_utf8(raw)
    assert info.value.kind is ErrorKind.PARAMS
    assert info.value.public == "Mailbox name is not valid UTF-8"


def test_valid_utf8_names_decode() -> None:
    """A UTF-8 name decodes to its text."""
    assert decode_utf8("Entwürfe/日本語".encode()) == "Entwürfe/日本語"

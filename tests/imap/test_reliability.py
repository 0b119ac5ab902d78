"""RELIABILITY.md §7, cases 1-11 and 14, at the framer/parser level.

The server-level versions (real sockets, RSS measurements, BYE after 10 BADs) belong to the
session tests; these pin down the syntax layer's part of each case.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence

import pytest

from msgstore.imap.framer import (
    CommandReady,
    Framer,
    FramerLimits,
    FramingError,
    SendContinuation,
)
from msgstore.imap.syntax.command import parse_command
from msgstore.imap.syntax.errors import (
    BadCommandError,
    InvalidTagError,
    ParseError,
    RefusedCommandError,
)
from msgstore.imap.syntax.grammar import ParseContext, SeqSet
from msgstore.imap.syntax.unit import CommandUnit
from tests.imap.wire import CTX, UTF8, errors_of, frame

KIB = 1024


def units(events: Sequence[object]) -> list[CommandUnit]:
    return [e.unit for e in events if isinstance(e, CommandReady)]


# 1. A 2 GB literal announcement.
def test_case01_huge_sync_literal_is_refused_without_continuation() -> None:
    events = frame(b"a APPEND INBOX {2147483648}\r\nb NOOP\r\n")
    assert events[0] == FramingError(b"a", b"NO", b"TOOBIG", "Literal too big", fatal=False)
    assert SendContinuation() not in events
    assert units(events) == [CommandUnit((b"b NOOP",))]  # the session stays usable


def test_case01_huge_nonsync_literal_is_fatal_without_reading() -> None:
    framer = Framer(FramerLimits(max_nonsync_literal_octets=None))
    [err] = framer.feed(b"a APPEND INBOX {2147483648+}\r\n" + b"x" * 100_000)
    assert err == FramingError(b"a", b"BAD", b"TOOBIG", "Literal too big", fatal=True)
    assert framer.closed
    assert framer.feed(b"x" * 1_000_000) == []
    assert framer.pending_bytes() == 0  # nothing is buffered: memory stays flat


# 2. Literal lengths with 5,000 digits, negative, {12x}.
@pytest.mark.parametrize("marker", [b"{" + b"1" * 5000 + b"}", b"{-12}", b"{12x}", b"{}"])
def test_case02_invalid_literal_lengths_are_tagged_bad(marker: bytes) -> None:
    events = frame(b"a LOGIN " + marker + b"\r\n")
    errs = errors_of(events)
    if errs:
        assert (errs[0].tag, errs[0].status, errs[0].fatal) == (b"a", b"BAD", False)
    else:
        [unit] = units(events)
        with pytest.raises(BadCommandError) as info:
            parse_command(unit, CTX)
        assert (info.value.tag, info.value.text) == (b"a", "Invalid literal")


# 3. LITERAL-: 4097 refused, 4096 accepted.
def test_case03_literal_minus_cap() -> None:
    ok = frame(b"a APPEND INBOX {4096+}\r\n" + b"x" * 4096 + b"\r\n")
    assert len(units(ok)) == 1
    [err] = frame(b"a APPEND INBOX {4097+}\r\n" + b"x" * 4097 + b"\r\n")
    assert err == FramingError(b"a", b"BAD", b"TOOBIG", "Literal too big", fatal=True)


# 4. 10,000 small literals in one command.
def test_case04_many_small_sync_literals_hit_the_cap() -> None:
    data = b"a ID (" + b"{1}\r\nx " * 10_000 + b")\r\n"
    events = frame(data)
    first_error = errors_of(events)[0]
    # A real client stops at the refusal; this one keeps sending, which frames as new lines.
    assert events[: events.index(first_error)] == [SendContinuation()] * 1000
    assert first_error == FramingError(
        b"a", b"BAD", None, "Too many literals in command", fatal=False
    )


def test_case04_many_small_nonsync_literals_hit_the_cap_fatally() -> None:
    events = frame(b"a SEARCH " + b"TEXT {1+}\r\nx " * 10_000 + b"\r\n")
    assert errors_of(events) == [
        FramingError(b"a", b"BAD", None, "Too many literals in command", fatal=True)
    ]


# 5. 10 MB line without CRLF.
def test_case05_ten_megabyte_line_is_refused_once_the_limit_passes() -> None:
    framer = Framer()
    chunk = b"x" * (16 * KIB)
    fed = 0
    events: list[object] = []
    while not events and fed < 10 * 1024 * KIB:
        events = list(framer.feed(chunk if fed else b"a SEARCH " + chunk))
        fed += len(chunk)
        assert framer.pending_bytes() <= 64 * KIB + 16 * KIB + 16
    assert fed <= 64 * KIB + 16 * KIB  # refused right after the limit, without waiting for LF
    assert events == [FramingError(b"a", b"BAD", None, "Command line too long", fatal=True)]


# 6. 10,000 nested parentheses; 100,000 '(' without LF.
def test_case06_nested_parentheses() -> None:
    [unit] = units(frame(b"a SEARCH " + b"(" * 10_000 + b"ALL" + b")" * 10_000 + b"\r\n"))
    with pytest.raises(BadCommandError, match="nested too deeply"):
        parse_command(unit, CTX)
    [err] = frame(b"a SEARCH " + b"(" * 100_000)
    assert err == FramingError(b"a", b"BAD", None, "Command line too long", fatal=True)


# 7. Unterminated quoted string, unmatched ')', lone '\', CR/LF inside quotes.
@pytest.mark.parametrize(
    ("line", "text"),
    [
        (b'a LOGIN "alice pw', "Unterminated quoted string"),
        (b"a LOGIN alice pw)", "Unexpected ')'"),
        (b'a LOGIN "ali\\ce" pw', "Invalid escape in quoted string"),
        (b'a LOGIN "alice\\', "Unterminated quoted string"),
        (b'a LOGIN "ali', "Unterminated quoted string"),  # LF inside the quotes ends the line
    ],
)
def test_case07_broken_strings_are_bad_and_the_next_command_parses(line: bytes, text: str) -> None:
    [unit, nxt] = units(frame(line + b"\r\nb NOOP\r\n"))
    with pytest.raises(BadCommandError) as info:
        parse_command(unit, CTX)
    assert (info.value.tag, info.value.text) == (b"a", text)
    assert parse_command(nxt, CTX).name == b"NOOP"


def test_case07_cr_inside_quotes_is_bad() -> None:
    [err] = frame(b'a LOGIN "al\rice" pw\r\n')
    assert (err.tag, err.text) == (b"a", "CR without LF in command")  # type: ignore[union-attr]


# 8. NUL bytes.
@pytest.mark.parametrize(
    "data",
    [
        b"a\0b NOOP\r\n",
        b"a LOGIN al\0ice pw\r\n",
        b'a LOGIN "al\0ice" pw\r\n',
        b"a SELECT IN\0BOX\r\n",
        b"a STORE 1 +FLAGS (\\Se\0en)\r\n",
        b"a LOGIN {5}\r\nal\0ce pw\r\n",
    ],
)
def test_case08_nul_bytes_are_bad(data: bytes) -> None:
    [err] = errors_of(frame(data))
    assert err.status == b"BAD"
    assert not err.fatal


def test_case08_nul_is_fine_in_literal8() -> None:
    [unit] = units(frame(b"a APPEND INBOX ~{3}\r\n\0\0\0\r\n"))
    assert parse_command(unit, CTX).name == b"APPEND"


# 9. Invalid UTF-8 and invalid modified UTF-7.
@pytest.mark.parametrize(
    ("line", "ctx"),
    [
        (b'a LOGIN "\xc0\xafroot" pw', CTX),
        (b'a LOGIN "\xed\xa0\x80" pw', CTX),
        (b'a SELECT "caf\xc3"', UTF8),
        (b'a SELECT "\xf8\x88\x80\x80\x80"', UTF8),
        (b'a SEARCH CHARSET UTF-8 TEXT "\xe2\x82"', UTF8),
        (b"a SELECT &Jjo", CTX),
        (b"a SELECT &AGE-", CTX),
        (b"a SELECT &Jjo-&Jjo-", CTX),
        (b'a SELECT "caf\xc3\xa9"', CTX),
    ],
)
def test_case09_invalid_encodings_are_bad(line: bytes, ctx: ParseContext) -> None:
    with pytest.raises(BadCommandError) as info:
        parse_command(CommandUnit.of_line(line), ctx)
    assert info.value.tag == b"a"


def test_case09_authenticate_payload_is_left_to_sasl() -> None:
    """Base64 of invalid UTF-8 decodes to octets; the SASL layer judges them."""
    payload = base64.b64encode(b"\0\xc0\xafroot\0pw")
    cmd = parse_command(CommandUnit.of_line(b"a AUTHENTICATE PLAIN " + payload), CTX)
    assert cmd.args.initial_response == b"\0\xc0\xafroot\0pw"  # type: ignore[union-attr]


def test_case09_ampersand_dash_is_ampersand() -> None:
    cmd = parse_command(CommandUnit.of_line(b"a SELECT A&-B"), CTX)
    assert cmd.args.mailbox == "A&B"  # type: ignore[union-attr]


# 10. Sequence sets.
@pytest.mark.parametrize("seqs", [b"0", b"4294967296", b"1:4294967296", b"0:*", b"9" * 5000])
def test_case10_invalid_sequence_sets(seqs: bytes) -> None:
    with pytest.raises(BadCommandError):
        parse_command(CommandUnit.of_line(b"a FETCH " + seqs + b" FLAGS"), CTX)


def test_case10_star_forms_resolve() -> None:
    def seqs(text: bytes) -> SeqSet:
        cmd = parse_command(CommandUnit.of_line(b"a UID FETCH " + text + b" FLAGS"), CTX)
        return cmd.args.seqs  # type: ignore[union-attr]

    assert seqs(b"*:1").resolve(5) == ((1, 5),)
    assert seqs(b"*:*").resolve(5) == ((5, 5),)
    assert seqs(b"1:*").resolve(0) == ()  # empty mailbox
    assert seqs(b"$").resolve(7) == ()  # no saved result: empty
    assert seqs(b"5:1,3:9,2").resolve(100) == ((1, 9),)  # overlaps merge


# 11. Tags.
@pytest.mark.parametrize(
    "line",
    [
        b"NOOP",  # a lone word: taken as a tag without a command
        b" NOOP",
        b"* NOOP",
        b"+ NOOP",
        b"a{ NOOP",
        b"a( NOOP",
        b"a% NOOP",
        b'a" NOOP',
        b"a\\ NOOP",
        b"x" * (64 * KIB - 10) + b" NOOP",
    ],
)
def test_case11_bad_tags_never_echo(line: bytes) -> None:
    with pytest.raises(ParseError) as info:
        parse_command(CommandUnit.of_line(line), CTX)
    e = info.value
    assert e.text in ("Missing tag", "Invalid tag", "Missing command")
    if isinstance(e, InvalidTagError):
        assert e.tag is None
    else:
        assert e.tag == b"NOOP"


def test_case11_long_tag_line_from_the_framer_is_untagged() -> None:
    [err] = frame(b"x" * (64 * KIB + 1))
    assert err == FramingError(None, b"BAD", None, "Command line too long", fatal=True)


def test_case11_html_in_a_valid_tag_is_not_echoed_in_the_text() -> None:
    """``<img`` is a valid tag (RFC 9051), so it is echoed as the tag, never in the text."""
    with pytest.raises(ParseError) as info:
        parse_command(CommandUnit.of_line(b"<img src=x onerror=alert(1)>"), CTX)
    assert (info.value.tag, info.value.text) == (b"<img", "Unknown command")


# 14. Mailbox names.
@pytest.mark.parametrize(
    "name",
    [b"../x", b"/x", b"a//b", b"a/", b"/".join([b"a"] * 1000), b"a/../b", b"./x"],
)
def test_case14_invalid_names_are_no_cannot(name: bytes) -> None:
    with pytest.raises(RefusedCommandError) as info:
        parse_command(CommandUnit.of_line(b'a SELECT "' + name + b'"'), CTX)
    assert (info.value.status, info.value.code, info.value.tag) == (b"NO", b"CANNOT", b"a")


def test_case14_64k_name_as_literal_is_no_cannot() -> None:
    [unit] = units(frame(b"a CREATE {65536}\r\n" + b"n" * 65536 + b"\r\n"))
    with pytest.raises(RefusedCommandError, match="longer than 255 octets"):
        parse_command(unit, CTX)


@pytest.mark.parametrize("spelling", [b"inbox", b"INBOX", b"Inbox", b'"iNbOx"'])
def test_case14_inbox_spellings(spelling: bytes) -> None:
    cmd = parse_command(CommandUnit.of_line(b"a SELECT " + spelling), CTX)
    assert cmd.args.mailbox == "INBOX"  # type: ignore[union-attr]


def test_case14_normalisation_equal_names_parse_equal() -> None:
    """NFC and NFD spellings give the same name (the store then sees one mailbox)."""
    nfc = parse_command(CommandUnit.of_line('a SELECT "Caf\u00e9"'.encode()), UTF8)
    nfd = parse_command(CommandUnit.of_line('a SELECT "Cafe\u0301"'.encode()), UTF8)
    assert nfc.args == nfd.args


def test_case14_namespace_prefixes_are_passed_through() -> None:
    """'Other Users/' and 'Public/' are ordinary names here; storage/access maps them."""
    cmd = parse_command(CommandUnit.of_line(b'a SELECT "Other Users/bob/INBOX"'), CTX)
    assert cmd.args.mailbox == "Other Users/bob/INBOX"  # type: ignore[union-attr]

"""The IMAP framer: lines, literals, continuations, limits, spill files, STARTTLS pause."""

from __future__ import annotations

import itertools
import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from msgstore.imap.framer import (
    CommandReady,
    Framer,
    FramerLimits,
    FramingError,
    SendContinuation,
    discard_unit,
    read_literal,
)
from msgstore.imap.syntax.unit import CommandUnit, LiteralFile
from tests.imap.wire import errors_of, frame, normalised

SMALL = FramerLimits(
    max_line_octets=64,
    max_literal_octets=32,
    max_append_literal_octets=200,
    max_nonsync_literal_octets=16,
    max_literals=4,
    max_command_octets=256,
    max_append_command_octets=1000,
    spill_threshold_octets=8,
)


def test_a_simple_line_is_one_unit_and_crlf_is_stripped() -> None:
    """A command line without literals frames to one unit holding the line."""
    assert frame(b"a NOOP\r\n") == [CommandReady(CommandUnit((b"a NOOP",)))]


def test_a_bare_lf_also_ends_a_line() -> None:
    """A bare LF is accepted as a line end, as Dovecot does."""
    assert frame(b"a NOOP\n") == [CommandReady(CommandUnit((b"a NOOP",)))]


def test_byte_at_a_time_needs_more_until_the_line_ends() -> None:
    """Fed one byte at a time, nothing is emitted before the LF (Dovecot test-imap-parser)."""
    framer = Framer()
    data = b"a1 LOGIN alice secret\r\n"
    for b in data[:-1]:
        assert framer.feed(bytes([b])) == []
    assert framer.feed(b"\n") == [CommandReady(CommandUnit((data[:-2],)))]


def test_synchronising_literal_gets_a_continuation_then_completes() -> None:
    """``{5}`` asks for ``+ Ready`` and its octets belong to the same command."""
    framer = Framer()
    assert framer.feed(b"a LOGIN {5}\r\n") == [SendContinuation()]
    assert framer.feed(b"ali") == []
    assert framer.feed(b"ce pw\r\n") == [
        CommandReady(CommandUnit((b"a LOGIN {5}", b" pw"), (b"alice",)))
    ]


def test_non_synchronising_literal_gets_no_continuation() -> None:
    """``{5+}`` (RFC 7888) is read without a continuation request."""
    assert frame(b"a LOGIN {5+}\r\nalice pw\r\n") == [
        CommandReady(CommandUnit((b"a LOGIN {5+}", b" pw"), (b"alice",)))
    ]


def test_literal8_is_recognised_and_may_hold_nul() -> None:
    """``~{n}`` (RFC 3516) may carry NUL octets."""
    events = frame(b"a APPEND INBOX ~{3}\r\na\0b\r\n")
    assert events == [
        SendContinuation(),
        CommandReady(CommandUnit((b"a APPEND INBOX ~{3}", b""), (b"a\0b",))),
    ]


def test_zero_length_literal() -> None:
    """``{0}`` is a valid, empty literal."""
    assert frame(b"a LOGIN {0}\r\n pw\r\n") == [
        SendContinuation(),
        CommandReady(CommandUnit((b"a LOGIN {0}", b" pw"), (b"",))),
    ]


def test_literal_octets_may_contain_crlf_and_braces() -> None:
    """Literal content is opaque: CRLF or ``{9}`` inside it frame nothing."""
    data = b"a APPEND x {12}\r\nab\r\n{9}\r\nxy\r\n"
    [cont, ready] = frame(data)
    assert cont == SendContinuation()
    assert isinstance(ready, CommandReady)
    assert ready.unit.literals == (b"ab\r\n{9}\r\nxy\r",)


def test_pipelined_commands_frame_in_order() -> None:
    """Many commands in one write give their units in order."""
    data = b"".join(b"t%d NOOP\r\n" % i for i in range(1000))
    events = frame(data)
    assert [e.unit.lines[0] for e in events if isinstance(e, CommandReady)] == [
        b"t%d NOOP" % i for i in range(1000)
    ]


def test_line_too_long_is_fatal_before_the_lf_arrives() -> None:
    """The line limit is checked as octets arrive (RELIABILITY §4 item 8)."""
    framer = Framer(SMALL)
    assert framer.feed(b"a1 SEARCH " + b"x" * 54) == []  # exactly 64 octets
    [err] = framer.feed(b"x")
    assert err == FramingError(b"a1", b"BAD", None, "Command line too long", fatal=True)
    assert framer.closed
    assert framer.feed(b"\r\nb NOOP\r\n") == []


def test_line_at_the_limit_including_crlf_is_accepted() -> None:
    """The limit counts the terminator: 62 octets + CRLF fit in 64."""
    line = b"a SEARCH " + b"x" * 53
    assert len(line) + 2 == 64
    assert frame(line + b"\r\n", SMALL) == [CommandReady(CommandUnit((line,)))]
    assert errors_of(frame(line + b"x\r\n", SMALL))[0].text == "Command line too long"


def test_line_too_long_without_a_readable_tag_is_untagged() -> None:
    """A line that is all tag gets an untagged error: the tag is never echoed."""
    [err] = errors_of(frame(b"x" * 100, SMALL))
    assert err.tag is None
    assert err.fatal


def test_sync_literal_over_the_limit_is_refused_without_continuation() -> None:
    """An over-limit synchronising literal gets NO [TOOBIG] and no ``+``; the session goes on."""
    events = frame(b"a LOGIN {33}\r\nb NOOP\r\n", SMALL)
    assert events == [
        FramingError(b"a", b"NO", b"TOOBIG", "Literal too big", fatal=False),
        CommandReady(CommandUnit((b"b NOOP",))),
    ]


def test_append_uses_the_append_literal_limit() -> None:
    """APPEND literals are checked against APPENDLIMIT, others against the generic cap."""
    framer = Framer(SMALL)
    assert framer.feed(b"a APPEND INBOX {200}\r\n") == [SendContinuation()]
    framer.close()  # deletes the spill file opened for the announced literal
    assert errors_of(frame(b"a APPEND INBOX {201}\r\n", SMALL))[0].code == b"TOOBIG"
    assert errors_of(frame(b"a SEARCH TEXT {100}\r\n", SMALL))[0].code == b"TOOBIG"


def test_nonsync_literal_over_literal_minus_cap_is_fatal() -> None:
    """LITERAL-: a non-synchronising literal above the cap gets BAD [TOOBIG] and BYE."""
    [err] = frame(b"a LOGIN {17+}\r\n" + b"x" * 17, SMALL)
    assert err == FramingError(b"a", b"BAD", b"TOOBIG", "Literal too big", fatal=True)


def test_literal_plus_mode_lifts_the_nonsync_cap() -> None:
    """With LITERAL+ (no cap) a non-synchronising literal gets the ordinary limits."""
    limits = FramerLimits(max_nonsync_literal_octets=None)
    data = b"a APPEND INBOX {5000+}\r\n" + b"x" * 5000 + b"\r\n"
    [ready] = Framer(limits, spill_dir=tempfile.gettempdir()).feed(data)
    assert isinstance(ready, CommandReady)
    discard_unit(ready.unit)


def test_too_many_literals() -> None:
    """The literals-per-command cap refuses the next literal before it is read."""
    data = b"a ID (" + b"{1}\r\nx " * 4 + b"{1}\r\n"
    events = frame(data, SMALL)
    assert events[-1] == FramingError(
        b"a", b"BAD", None, "Too many literals in command", fatal=False
    )
    assert events.count(SendContinuation()) == 4


def test_command_size_limit_counts_lines_and_literals() -> None:
    """Lines plus literals of one command stay under max_command_octets."""
    limits = FramerLimits(max_line_octets=64, max_literal_octets=32, max_command_octets=256)
    chunk = b"{30}\r\n" + b"x" * 30 + b" "
    events = frame(b"a ID (" + chunk * 6 + b"{30}\r\n", limits)
    assert events.count(SendContinuation()) == 6  # 6 * 37 + 12 octets fit, the 7th would not
    assert errors_of(events) == [
        FramingError(b"a", b"NO", b"TOOBIG", "Command too big", fatal=False)
    ]


@pytest.mark.parametrize(
    ("marker", "fatal"),
    [
        (b"{" + b"9" * 5000 + b"}", False),
        (b"{99999999999999999999}", False),
        (b"{" + b"9" * 5000 + b"+}", True),
        (b"{-5+}", True),
        (b"{12x+}", True),
    ],
)
def test_invalid_literal_lengths_are_bad(marker: bytes, fatal: bool) -> None:
    """A literal length beyond number64 or not a number is BAD, never a traceback."""
    [err] = frame(b"a LOGIN " + marker + b"\r\n")
    assert err == FramingError(b"a", b"BAD", None, "Invalid literal length", fatal=fatal)


def test_malformed_sync_marker_is_left_to_the_tokenizer() -> None:
    """``{12x}`` and ``{-5}`` are not literal markers: the line is a complete command."""
    assert frame(b"a LOGIN {12x}\r\n") == [CommandReady(CommandUnit((b"a LOGIN {12x}",)))]


def test_nul_in_a_line_is_bad_and_the_session_continues() -> None:
    """NUL outside literal8 is refused with a tagged BAD (CVE-2019-11500 class)."""
    assert frame(b"a LOGIN x\0y pw\r\nb NOOP\r\n") == [
        FramingError(b"a", b"BAD", None, "NUL octet in command", fatal=False),
        CommandReady(CommandUnit((b"b NOOP",))),
    ]


def test_nul_in_a_literal_is_bad_after_the_literal_is_consumed() -> None:
    """NUL inside an ordinary literal: the literal is read and dropped, then BAD."""
    assert frame(b"a LOGIN {3+}\r\na\0b pw\r\nb NOOP\r\n") == [
        FramingError(b"a", b"BAD", None, "NUL octet in literal", fatal=False),
        CommandReady(CommandUnit((b"b NOOP",))),
    ]


def test_bad_line_followed_by_sync_literal_is_refused_at_once() -> None:
    """A command already known bad gets its BAD instead of a continuation."""
    assert frame(b"a LOGIN x\0 {5}\r\n") == [
        FramingError(b"a", b"BAD", None, "NUL octet in command", fatal=False)
    ]


def test_cr_without_lf_is_bad() -> None:
    """A CR inside a line (CR without LF) is refused."""
    [err] = frame(b"a NOOP\rb NOOP\r\n")
    assert err == FramingError(b"a", b"BAD", None, "CR without LF in command", fatal=False)


def test_large_literal_is_spilled_to_a_file(tmp_path: Path) -> None:
    """Literals above the spill threshold are written to a temporary file as they arrive."""
    framer = Framer(SMALL, spill_dir=str(tmp_path))
    assert framer.feed(b"a APPEND INBOX {100}\r\n") == [SendContinuation()]
    framer.feed(b"y" * 50)
    assert len(os.listdir(tmp_path)) == 1  # the file exists while the literal arrives
    [ready] = framer.feed(b"y" * 50 + b"\r\n")
    assert isinstance(ready, CommandReady)
    [lit] = ready.unit.literals
    assert isinstance(lit, LiteralFile)
    assert lit.size_octets == 100
    assert read_literal(lit) == b"y" * 100
    discard_unit(ready.unit)
    assert os.listdir(tmp_path) == []


def test_refused_command_deletes_its_spill_files(tmp_path: Path) -> None:
    """A command refused after a spilled literal leaves no file behind."""
    framer = Framer(SMALL, spill_dir=str(tmp_path))
    events = framer.feed(b"a APPEND INBOX {100}\r\n" + b"z" * 100 + b" {201}\r\n")
    assert errors_of(events)[-1].code == b"TOOBIG"
    assert os.listdir(tmp_path) == []


def test_close_deletes_a_partial_spill_file(tmp_path: Path) -> None:
    """Closing mid-literal removes the partial spill file."""
    framer = Framer(SMALL, spill_dir=str(tmp_path))
    framer.feed(b"a APPEND INBOX {100}\r\n" + b"z" * 10)
    assert len(os.listdir(tmp_path)) == 1
    framer.close()
    assert os.listdir(tmp_path) == []


def test_starttls_pauses_and_reports_pipelined_bytes() -> None:
    """Bytes after STARTTLS are kept unframed and reported (injection defence)."""
    framer = Framer()
    events = framer.feed(b"a STARTTLS\r\nb LOGIN u p\r\n")
    assert events == [CommandReady(CommandUnit((b"a STARTTLS",)))]
    assert framer.paused
    assert framer.pending_bytes() == len(b"b LOGIN u p\r\n")
    assert framer.feed(b"c NOOP\r\n") == []  # still paused: nothing framed


def test_starttls_without_pipelining_has_nothing_pending() -> None:
    """A well-behaved client leaves nothing buffered; resume continues framing."""
    framer = Framer()
    framer.feed(b"a starttls\r\n")
    assert framer.pending_bytes() == 0
    assert framer.resume() == []
    assert framer.feed(b"b NOOP\r\n") == [CommandReady(CommandUnit((b"b NOOP",)))]


def test_compress_hands_over_the_following_bytes() -> None:
    """After COMPRESS the following octets are handed over raw (they are deflated)."""
    framer = Framer()
    framer.feed(b"a COMPRESS DEFLATE\r\n\x78\x9c")
    assert framer.take_pending() == b"\x78\x9c"
    assert not framer.paused
    assert framer.feed(b"b NOOP\r\n") == [CommandReady(CommandUnit((b"b NOOP",)))]


def test_resume_frames_what_was_buffered() -> None:
    """If STARTTLS is refused, the buffered commands are framed on resume."""
    framer = Framer()
    framer.feed(b"a STARTTLS\r\nb NOOP\r\n")
    assert framer.resume() == [CommandReady(CommandUnit((b"b NOOP",)))]


# --- chunking property --------------------------------------------------------------------

_PIECES = [
    b"a NOOP\r\n",
    b"b LOGIN {5}\r\nalice {3+}\r\npw!\r\n",
    b"c APPEND INBOX (\\Seen) ~{12}\r\nhello\0world!\r\n",
    b"d APPEND INBOX {150}\r\n" + b"m" * 150 + b"\r\n",
    b"e SEARCH TEXT {40}\r\n",
    b"f LOGIN {17+}\r\n",
    b"g NOOP\0\r\n",
    b"h X {3+}\r\na\0b\r\n",
    b"i SEARCH " + b"q" * 70 + b"\r\n",
    b"j ID (" + b"{1}\r\nx " * 5 + b")\r\n",
    b"k NOOP\rx\r\n",
    b"l LOGIN {" + b"9" * 30 + b"}\r\n",
    b"m STARTTLS\r\n",
    b"n BAD\n",
]


@st.composite
def _stream_and_cuts(draw: st.DrawFn) -> tuple[bytes, list[int]]:
    parts = draw(st.lists(st.sampled_from(_PIECES), min_size=1, max_size=6))
    noise = draw(st.binary(max_size=20))
    data = b"".join(parts) + noise
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=30)))
    return data, cuts


@settings(max_examples=300, deadline=None)
@given(_stream_and_cuts())
def test_any_chunking_gives_the_same_events(case: tuple[bytes, list[int]]) -> None:
    """Any split of a stream into chunks frames to the same events (Dovecot's fuzz property)."""
    data, cuts = case
    with tempfile.TemporaryDirectory() as spill:
        whole = Framer(SMALL, spill_dir=spill)
        expected = whole.feed(data)
        bounds = [0, *cuts, len(data)]
        chunked = Framer(SMALL, spill_dir=spill)
        got = []
        for lo, hi in itertools.pairwise(bounds):
            got += chunked.feed(data[lo:hi])
        bytewise = Framer(SMALL, spill_dir=spill)
        one_by_one = []
        for i in range(len(data)):
            one_by_one += bytewise.feed(data[i : i + 1])
        assert normalised(got) == normalised(expected)
        assert normalised(one_by_one) == normalised(expected)
        assert chunked.pending_bytes() == whole.pending_bytes() == bytewise.pending_bytes()
        for events in (expected, got, one_by_one):
            for e in events:
                if isinstance(e, CommandReady):
                    discard_unit(e.unit)
        for framer in (whole, chunked, bytewise):
            framer.close()
        assert os.listdir(spill) == []

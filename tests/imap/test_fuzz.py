"""Fuzzing the syntax layer: random and mutated input only ever raises the parser's errors,
and pathological 1 MB commands are handled in linear time."""

from __future__ import annotations

import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from msgstore.imap.framer import CommandReady, Framer, FramerLimits, discard_unit
from msgstore.imap.syntax.command import parse_command
from msgstore.imap.syntax.errors import ParseError
from msgstore.imap.syntax.grammar import ParseContext
from msgstore.imap.syntax.unit import CommandUnit

CORPUS = [
    b"a LOGIN alice secret\r\n",
    b"a AUTHENTICATE PLAIN AGFsaWNlAHB3\r\n",
    b"a SELECT INBOX (QRESYNC (1 2 1:5 (1,3 5,9)))\r\n",
    b'a LIST (SUBSCRIBED) "" (INBOX "%") RETURN (CHILDREN STATUS (MESSAGES))\r\n',
    b"a STATUS INBOX (MESSAGES UNSEEN HIGHESTMODSEQ)\r\n",
    b"a UID FETCH 1:*,$ (FLAGS BODY.PEEK[1.HEADER.FIELDS (From)]<0.10> BINARY[2]) "
    b"(CHANGEDSINCE 5 VANISHED)\r\n",
    b"a SEARCH RETURN (MIN) CHARSET UTF-8 OR (FROM x NOT SEEN) UID 1:4 SINCE 1-Feb-2024\r\n",
    b"a STORE 1:3 (UNCHANGEDSINCE 9) +FLAGS.SILENT (\\Deleted $Junk)\r\n",
    b'a APPEND INBOX (\\Seen) " 7-Feb-1994 21:52:25 -0800" {5+}\r\nhello ~{2}\r\nhi\r\n',
    b"a SORT (REVERSE DATE) UTF-8 ALL\r\n",
    b"a THREAD REFERENCES UTF-8 SUBJECT {3+}\r\nabc\r\n",
    b'a ID ("name" "x" "os" NIL)\r\n',
    b"a SETACL INBOX bob +lrs\r\n",
    b"a SETQUOTA root (STORAGE 100)\r\n",
    b"a CREATE x (USE (\\Sent))\r\n",
    b"a RENAME &ZeVnLIqe- y\r\n",
]

CONTEXTS = [ParseContext(), ParseContext(utf8=True), ParseContext(rev2=True)]
LIMITS = FramerLimits(max_nonsync_literal_octets=None)


def _check_parse(unit: CommandUnit, ctx: ParseContext) -> None:
    """Parse ``unit``; a failure must be a ParseError with a reply text and status."""
    error: ParseError | None = None
    try:
        parse_command(unit, ctx)
    except ParseError as e:
        error = e
    if error is not None:
        assert error.text
        assert error.status in (b"BAD", b"NO")


def _parse_stream(data: bytes) -> None:
    """Frame ``data`` and parse every unit in every mode; only ParseError may escape."""
    framer = Framer(LIMITS)
    for event in framer.feed(data):
        if isinstance(event, CommandReady):
            try:
                for ctx in CONTEXTS:
                    _check_parse(event.unit, ctx)
            finally:
                discard_unit(event.unit)
    framer.close()


def test_corpus_parses() -> None:
    """Every corpus command is valid (so mutations start from real commands)."""
    framer = Framer(LIMITS)
    for data in CORPUS:
        [event] = [e for e in framer.feed(data) if isinstance(e, CommandReady)]
        parse_command(event.unit, ParseContext())


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_only_raise_parse_errors(data: bytes) -> None:
    _parse_stream(data + b"\r\n")


_ALPHABET = b' ()[]{}<>"\\*%$~+-:.,0123456789ABCFILNORSTUXabc\r\n\x00\xff'


@st.composite
def _mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(CORPUS)))
    for _ in range(draw(st.integers(1, 8))):
        op = draw(st.integers(0, 2))
        pos = draw(st.integers(0, len(data)))
        byte = draw(st.sampled_from(_ALPHABET))
        if op == 0:
            data.insert(pos, byte)
        elif op == 1 and pos < len(data):
            del data[pos]
        elif pos < len(data):
            data[pos] = byte
    return bytes(data) + b"\r\n"


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_mutated())
def test_mutated_commands_only_raise_parse_errors(data: bytes) -> None:
    _parse_stream(data)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.binary(max_size=40).filter(lambda b: b"\n" not in b), min_size=1, max_size=4),
    st.data(),
)
def test_random_units_only_raise_parse_errors(lines: list[bytes], data: st.DataObject) -> None:
    """Hand-built units (lines ending in literal markers, random literal octets)."""
    literals = []
    fixed = [b"t " + lines[0]]
    for line in lines[1:]:
        lit = data.draw(st.binary(max_size=10))
        fixed[-1] += b" {%d}" % len(lit)
        literals.append(lit)
        fixed.append(line)
    unit = CommandUnit(tuple(fixed), tuple(literals))
    for ctx in CONTEXTS:
        _check_parse(unit, ctx)


MB = 1024 * 1024


@pytest.mark.parametrize(
    "line",
    [
        b"t SEARCH " + b"(" * MB,
        b"t SEARCH " + b"NOT " * (MB // 4) + b"ALL",
        b"t SEARCH " + b"OR " * (MB // 3),
        b't SEARCH SUBJECT "' + b"\\\\" * (MB // 2) + b'"',
        b't SEARCH SUBJECT "' + b"a" * MB,
        b"t FETCH " + b"1:2," * (MB // 4) + b"1 FLAGS",
        b"t FETCH 1 (" + b"BODY[HEADER.FIELDS (" * (MB // 20),
        b"t FETCH 1 BODY[" + b"1." * (MB // 2) + b"TEXT]",
        b"t ID (" + b'"a" NIL ' * (MB // 8) + b")",
        b't LIST "" ' + b"%*" * (MB // 2),
        b"t SELECT " + b"&" * MB,
        b't SELECT "' + b"&AAA" * (MB // 4) + b'-"',
        b"t STORE 1 FLAGS (" + b"\\Seen " * (MB // 6) + b")",
        b"t " + b"x" * MB,
        b"t SEARCH " + b"9" * MB,
        b"t SEARCH " + b"[" * MB,
    ],
)
def test_megabyte_pathological_commands_finish_fast(line: bytes) -> None:
    """1 MB of hostile input is refused (or parsed) in well under a second or two of CPU
    (process time: other test workers share the cores; a quadratic parse takes minutes)."""
    unit = CommandUnit.of_line(line)
    start = time.process_time()
    for ctx in CONTEXTS:
        _check_parse(unit, ctx)
    assert time.process_time() - start < 3.0

"""Helpers shared by the IMAP syntax tests: frame wire bytes, parse them, compare events."""

from __future__ import annotations

from collections.abc import Iterable

from msgstore.imap.framer import (
    CommandReady,
    Event,
    Framer,
    FramerLimits,
    FramingError,
    discard_unit,
    read_literal,
)
from msgstore.imap.syntax.args import Command, CommandArgs
from msgstore.imap.syntax.command import parse_command
from msgstore.imap.syntax.errors import ParseError
from msgstore.imap.syntax.grammar import ParseContext
from msgstore.imap.syntax.unit import CommandUnit, LiteralFile

CTX = ParseContext()
UTF8 = ParseContext(utf8=True)


def frame(data: bytes, limits: FramerLimits | None = None) -> list[Event]:
    """All events of ``data`` fed in one call."""
    return Framer(limits).feed(data)


def frame_chunks(chunks: Iterable[bytes], limits: FramerLimits | None = None) -> list[Event]:
    framer = Framer(limits)
    events: list[Event] = []
    for chunk in chunks:
        events += framer.feed(chunk)
    return events


def unit_of(data: bytes) -> CommandUnit:
    """The single command unit framed from ``data``."""
    units = [e.unit for e in frame(data) if isinstance(e, CommandReady)]
    assert len(units) == 1, units
    return units[0]


def parse(data: bytes, ctx: ParseContext = CTX) -> Command:
    """Frame and parse one command given as wire bytes (CRLF added if missing)."""
    if not data.endswith(b"\n"):
        data += b"\r\n"
    unit = unit_of(data)
    try:
        return parse_command(unit, ctx)
    finally:
        discard_unit(unit)


def args(data: bytes, ctx: ParseContext = CTX) -> CommandArgs:
    return parse(data, ctx).args


def error(data: bytes, ctx: ParseContext = CTX) -> ParseError:
    """The parse error ``data`` raises (fails the test if it parses)."""
    try:
        cmd = parse(data, ctx)
    except ParseError as e:
        return e
    raise AssertionError(f"parsed: {cmd!r}")


def normalised(events: list[Event]) -> list[object]:
    """Events with spill-file paths replaced by the file contents, for comparing two runs."""
    out: list[object] = []
    for e in events:
        if isinstance(e, CommandReady):
            lits = tuple(
                ("file", read_literal(lit)) if isinstance(lit, LiteralFile) else lit
                for lit in e.unit.literals
            )
            out.append(("unit", e.unit.lines, lits))
        else:
            out.append(e)
    return out


def errors_of(events: list[Event]) -> list[FramingError]:
    return [e for e in events if isinstance(e, FramingError)]

"""The tokenizer: atoms, quoted strings, literals, lists, sections, and its errors."""

from __future__ import annotations

import pytest

from msgstore.imap.syntax.errors import BadCommandError
from msgstore.imap.syntax.tokens import (
    AtomToken,
    ListToken,
    LiteralFileToken,
    LiteralToken,
    QuotedToken,
    SectionToken,
    TokenLimits,
    is_valid_tag,
    tokenize,
)
from msgstore.imap.syntax.unit import CommandUnit, LiteralFile

A, Q, L = AtomToken, QuotedToken, ListToken


def tok(line: bytes, *literals: bytes) -> tuple[object, ...]:
    lines = line.split(b"\n")
    return tokenize(CommandUnit(tuple(lines), literals))


@pytest.mark.parametrize(
    ("line", "tokens"),
    [
        (b"a", (A(b"a"),)),
        (b"NIL 123 \\Seen 1:*,$ %", (A(b"NIL"), A(b"123"), A(b"\\Seen"), A(b"1:*,$"), A(b"%"))),
        (b'"a b" ""', (Q(b"a b"), Q(b""))),
        (b'"q\\"x\\\\y"', (Q(b'q"x\\y'),)),
        (b"(a (b c) ())", (L((A(b"a"), L((A(b"b"), A(b"c"))), L(()))),)),
        (b"[Gmail]/Sent", (A(b"[Gmail]/Sent"),)),
        (b"a  b ", (A(b"a"), A(b"b"))),
        (
            b"BODY.PEEK[HEADER.FIELDS (From To)]<0.100>",
            (
                SectionToken(
                    b"BODY.PEEK", (A(b"HEADER.FIELDS"), L((A(b"From"), A(b"To")))), b"<0.100>"
                ),
            ),
        ),
        (
            b"(BODY[] BINARY[1])",
            (L((SectionToken(b"BODY", ()), SectionToken(b"BINARY", (A(b"1"),)))),),
        ),
        (b'"utf8 \xc3\xa9"', (Q(b"utf8 \xc3\xa9"),)),
    ],
)
def test_tokens(line: bytes, tokens: tuple[object, ...]) -> None:
    """Each line tokenizes to the expected tree."""
    assert tok(line) == tokens


def test_literals_join_lines() -> None:
    """A literal at a line end takes the unit's next literal; literal8 is marked binary."""
    unit = CommandUnit((b"a {3}", b" ~{2}", b" b"), (b"xyz", b"\0\1"))
    assert tokenize(unit) == (
        A(b"a"),
        LiteralToken(b"xyz"),
        LiteralToken(b"\0\1", binary=True),
        A(b"b"),
    )


def test_spilled_literal_becomes_a_file_token() -> None:
    """A spilled literal is passed on as a reference, never read."""
    ref = LiteralFile("/nonexistent", 7)
    unit = CommandUnit((b"x {7}", b""), (ref,))
    assert tokenize(unit) == (A(b"x"), LiteralFileToken(ref))


def test_start_offset_requires_a_space_before_the_first_token() -> None:
    """Tokenizing from after the command name needs a separating space."""
    unit = CommandUnit((b"a NOOP x",))
    assert tokenize(unit, 6) == (A(b"x"),)
    with pytest.raises(BadCommandError, match="Missing space"):
        tokenize(CommandUnit((b"a NOOP(x)",)), 6)


@pytest.mark.parametrize(
    ("line", "text"),
    [
        (b'"abc', "Unterminated quoted string"),
        (b'"abc\\', "Unterminated quoted string"),
        (b'"a\\nb"', "Invalid escape in quoted string"),
        (b"(a", "Missing ')'"),
        (b"a)", "Unexpected ')'"),
        (b"BODY[TEXT", "Missing ']'"),
        (b"BODY[TEXT)", "Unexpected ')'"),
        (b'"a"b', "Missing space between arguments"),
        (b"a{5}", "Missing space between arguments"),
        (b"{12x}", "Invalid literal"),
        (b"{-5}", "Invalid literal"),
        (b"{5} x", "Invalid literal"),
        (b"{5}", "Missing literal data"),
        (b"a\x00b", "Missing space between arguments"),
        (b"\x01", "Invalid character in command"),
        (b"caf\xc3\xa9", "Missing space between arguments"),
    ],
)
def test_token_errors(line: bytes, text: str) -> None:
    """Malformed input gives a BAD with a precise text."""
    with pytest.raises(BadCommandError) as info:
        tok(line)
    assert info.value.text == text


def test_nesting_limit_is_enforced_without_recursion() -> None:
    """10,000 nested parentheses hit the depth limit (RELIABILITY §7 case 6)."""
    with pytest.raises(BadCommandError, match="nested too deeply"):
        tok(b"(" * 10_000 + b"a" + b")" * 10_000)
    assert tok(b"(" * 32 + b")" * 32)  # exactly at the limit


def test_token_count_limit() -> None:
    """A command with more tokens than the limit is refused."""
    unit = CommandUnit((b" ".join([b"x"] * 11),))
    with pytest.raises(BadCommandError, match="Too many arguments"):
        tokenize(unit, 0, TokenLimits(max_tokens=10))


def test_literal_length_must_match() -> None:
    """A unit whose literal does not match its marker is refused."""
    with pytest.raises(BadCommandError, match="does not match"):
        tokenize(CommandUnit((b"{3}", b""), (b"ab",)))


@pytest.mark.parametrize(
    ("tag", "valid"),
    [
        (b"a1", True),
        (b"A.b-c_]", True),
        (b"", False),
        (b"*", False),
        (b"+a", False),
        (b"a{", False),
        (b"a(", False),
        (b"a%", False),
        (b'a"', False),
        (b"a\\", False),
        (b"x" * 64, True),
        (b"x" * 65, False),
        (b"<script>", True),
        (b"caf\xc3\xa9", False),
    ],
)
def test_tag_validity(tag: bytes, valid: bool) -> None:
    """Tags follow RFC 9051 (ASTRING-CHAR except "+") and a length cap."""
    assert is_valid_tag(tag) is valid

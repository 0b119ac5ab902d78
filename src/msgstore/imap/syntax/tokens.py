"""Tokenizer: a command unit's arguments -> a token tree.

Tokens (RFC 9051 §4, §9):

- :class:`AtomToken` — any run of atom characters, which includes what the grammar later reads
  as a number, ``NIL``, a flag (``\\Seen``), a sequence set (``1:*``), a list pattern (``%``)
  or a fetch partial (``<0.100>``). Numbers and NIL are left as atoms on purpose: ``123`` and
  ``NIL`` are also valid mailbox names (astring), so only the production that wants a number
  or NIL can decide.
- :class:`QuotedToken` — a quoted string with its ``\\"`` and ``\\\\`` escapes removed (no other
  escape exists).
- :class:`LiteralToken` / :class:`LiteralFileToken` — a literal in memory or spilled to a file;
  ``binary`` for literal8 (``~{N}``, RFC 3516).
- :class:`ListToken` — a parenthesised list.
- :class:`SectionToken` — ``BODY[...]<...>``: an atom that ends in ``[`` opens a section when
  it names a fetch attribute that takes one (BODY, BODY.PEEK, BINARY, BINARY.PEEK,
  BINARY.SIZE); the section holds ordinary tokens (``HEADER.FIELDS (From "To")``) up to ``]``,
  and atom characters glued after ``]`` are its suffix (the partial ``<0.100>``). In every other
  atom ``[`` and ``]`` are plain characters, so ``[Gmail]/Sent`` stays one atom.

The tokenizer is iterative (an explicit stack, no recursion), linear in the input, and bounded
by :class:`TokenLimits`. Runs of spaces separate tokens; a trailing space is ignored (lenient
like Dovecot's parser, strict about everything else). Errors are :class:`BadCommandError` with a
text that never quotes the input.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from msgstore.imap.syntax.errors import BadCommandError
from msgstore.imap.syntax.unit import CommandUnit, LiteralFile

#: Longest tag we accept; a longer tag gets an untagged BAD (RELIABILITY.md §7 case 11).
MAX_TAG_OCTETS: Final = 64

#: Atom names that open a ``[section]`` (RFC 9051 fetch-att, RFC 3516 BINARY).
SECTION_NAMES: Final = frozenset(
    {b"BODY", b"BODY.PEEK", b"BINARY", b"BINARY.PEEK", b"BINARY.SIZE"}
)

# Atom characters for the tokenizer: CHAR minus SP, CTL, "(", ")", "{", DQUOTE. The grammar
# narrows this per production (astring excludes "%", "*", "\", ...).
_ATOM: Final = re.compile(rb'[^\x00-\x20\x7f-\xff(){"]+')
_ATOM_NO_BRACKET: Final = re.compile(rb'[^\x00-\x20\x7f-\xff(){"\[\]]+')
_ATOM_IN_SECTION: Final = re.compile(rb'[^\x00-\x20\x7f-\xff(){"\]]+')
_QUOTED_STOP: Final = re.compile(rb'["\\]')
_MARKER: Final = re.compile(rb"(~?)\{([0-9]{1,19})(\+?)\}")
# Tag: ASTRING-CHAR except "+" (RFC 9051 §9): no SP, CTL, ( ) { % * " \ +
_TAG: Final = re.compile(rb'[^\x00-\x20\x7f-\xff(){%*"\\+]+\Z')


def is_valid_tag(tag: bytes) -> bool:
    """True if ``tag`` is a valid RFC 9051 tag no longer than :data:`MAX_TAG_OCTETS`."""
    return 0 < len(tag) <= MAX_TAG_OCTETS and _TAG.match(tag) is not None


@dataclass(frozen=True, slots=True)
class TokenLimits:
    """Bounds on the token tree of one command (each becomes a config key).

    Attributes:
        max_depth: nesting of lists and sections. SEARCH groups are the deepest real use;
            clients stay far below 32. Deeper input gets ``BAD`` (RELIABILITY.md §7 case 6).
        max_tokens: tokens in one command; bounds the objects a 1 MiB command can create.
    """

    max_depth: int = 32
    max_tokens: int = 100_000


@dataclass(frozen=True, slots=True)
class AtomToken:
    value: bytes


@dataclass(frozen=True, slots=True)
class QuotedToken:
    value: bytes


@dataclass(frozen=True, slots=True)
class LiteralToken:
    value: bytes
    binary: bool = False


@dataclass(frozen=True, slots=True)
class LiteralFileToken:
    file: LiteralFile
    binary: bool = False


@dataclass(frozen=True, slots=True)
class ListToken:
    items: tuple[Token, ...]


@dataclass(frozen=True, slots=True)
class SectionToken:
    """``name[items]suffix``: ``BODY.PEEK[HEADER.FIELDS (From)]<0.100>``."""

    name: bytes
    items: tuple[Token, ...]
    suffix: bytes = b""


Token = AtomToken | QuotedToken | LiteralToken | LiteralFileToken | ListToken | SectionToken

_DEFAULT_LIMITS: Final = TokenLimits()


class _Open:
    """An open list or section on the tokenizer's stack."""

    __slots__ = ("items", "section")

    def __init__(self, section: bytes | None) -> None:
        self.items: list[Token] = []
        self.section = section


def tokenize(
    unit: CommandUnit, start: int = 0, limits: TokenLimits = _DEFAULT_LIMITS
) -> tuple[Token, ...]:
    """Tokenize ``unit`` from offset ``start`` of its first line to the end.

    ``start`` normally points just after the command name, so the first token must be
    preceded by a space.

    Raises:
        BadCommandError: with a precise text ("Unterminated quoted string", "Missing ')'", ...).
    """
    stack: list[_Open] = [_Open(None)]
    count = 0
    after_token = start > 0
    last = len(unit.lines) - 1
    for li, line in enumerate(unit.lines):
        i = start if li == 0 else 0
        n = len(line)
        literal_used = False
        while i < n:
            c = line[i]
            top = stack[-1]
            if c == 0x20:
                i += 1
                after_token = False
                continue
            if c == 0x29:  # ")"
                if top.section is not None or len(stack) == 1:
                    raise BadCommandError("Unexpected ')'")
                stack.pop()
                stack[-1].items.append(ListToken(tuple(top.items)))
                i += 1
                after_token = True
                continue
            if c == 0x5D and top.section is not None:  # "]" closing a section
                stack.pop()
                m = _ATOM_NO_BRACKET.match(line, i + 1)
                suffix = m.group() if m else b""
                stack[-1].items.append(SectionToken(top.section, tuple(top.items), suffix))
                i = m.end() if m else i + 1
                after_token = True
                continue
            if after_token:
                raise BadCommandError("Missing space between arguments")
            count += 1
            if count > limits.max_tokens:
                raise BadCommandError("Too many arguments")
            after_token = True
            if c == 0x28:  # "("
                if len(stack) > limits.max_depth:
                    raise BadCommandError("Lists nested too deeply")
                stack.append(_Open(None))
                i += 1
                after_token = False
            elif c == 0x22:  # DQUOTE
                value, i = _quoted(line, i + 1)
                top.items.append(QuotedToken(value))
            elif c == 0x7B or (c == 0x7E and line.startswith(b"{", i + 1)):  # "{" or "~{"
                m = _MARKER.match(line, i)
                if m is None or m.end() != n:
                    raise BadCommandError("Invalid literal")
                if li >= last:
                    raise BadCommandError("Missing literal data")
                binary = m.group(1) == b"~"
                data = unit.literals[li]
                size = data.size_octets if isinstance(data, LiteralFile) else len(data)
                if size != int(m.group(2)):
                    raise BadCommandError("Literal length does not match its data")
                if isinstance(data, LiteralFile):
                    top.items.append(LiteralFileToken(data, binary))
                else:
                    top.items.append(LiteralToken(data, binary))
                literal_used = True
                i = n
            else:
                i = _atom(line, i, stack, limits)
                if stack[-1] is not top:
                    after_token = False
        if li < last and not literal_used:
            raise BadCommandError("Invalid literal")
    if len(stack) > 1:
        raise BadCommandError("Missing ']'" if stack[-1].section is not None else "Missing ')'")
    return tuple(stack[0].items)


def _quoted(line: bytes, i: int) -> tuple[bytes, int]:
    """Read a quoted string whose opening quote is just before ``i``; return (value, end)."""
    out = bytearray()
    n = len(line)
    while True:
        m = _QUOTED_STOP.search(line, i)
        if m is None:
            raise BadCommandError("Unterminated quoted string")
        j = m.start()
        out += line[i:j]
        if line[j] == 0x22:
            return bytes(out), j + 1
        if j + 1 >= n:
            raise BadCommandError("Unterminated quoted string")
        esc = line[j + 1]
        if esc not in (0x22, 0x5C):
            raise BadCommandError("Invalid escape in quoted string")
        out.append(esc)
        i = j + 2


def _atom(line: bytes, i: int, stack: list[_Open], limits: TokenLimits) -> int:
    """Read an atom at ``i`` (or open a section); return the offset after it."""
    top = stack[-1]
    m = _ATOM_NO_BRACKET.match(line, i)
    j = m.end() if m else i
    if j < len(line) and line[j] == 0x5B and line[i:j].upper() in SECTION_NAMES:  # "["
        if len(stack) > limits.max_depth:
            raise BadCommandError("Lists nested too deeply")
        stack.append(_Open(line[i:j]))
        return j + 1
    pattern = _ATOM_IN_SECTION if top.section is not None else _ATOM
    m = pattern.match(line, i)
    if m is None:
        raise BadCommandError("Invalid character in command")
    top.items.append(AtomToken(m.group()))
    return m.end()

"""Pure POP3 command parsing: one line in, a :class:`Command` or a :class:`SyntaxProblem` out.

RFC 1939 §3: a command is a case-insensitive keyword of 3 or 4 characters, possibly followed
by arguments separated by single spaces, each at most 40 characters. Two commands take the rest
of the line as one argument: ``PASS`` (passwords may contain spaces, RFC 1939 §7) and ``AUTH``
(mechanism and initial response are split by the handler). Numbers are plain ASCII digits,
never signs or more than 10 digits, so ``int()`` never sees attacker-sized input.

Error texts are precise and never echo what the client sent (RELIABILITY.md §3, ALPACA).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

#: RFC 1939 §3: "each argument may be up to 40 characters long".
MAX_ARGUMENT_OCTETS: Final = 40
#: Digits accepted in a number; 4294967295 has 10.
MAX_NUMBER_DIGITS: Final = 10
#: Commands whose argument is the rest of the line, spaces included.
REST_OF_LINE: Final = frozenset({b"PASS", b"AUTH"})


class SyntaxProblem(Exception):  # noqa: N818 -- a reply, not a failure of ours
    """The line is not a valid command; ``str()`` is the reason, safe to send."""


@dataclass(slots=True)
class Command:
    """A parsed command line: upper-case keyword and its arguments (not frozen: one is made
    per command line, and a frozen dataclass's ``__init__`` costs three times as much)."""

    name: bytes
    args: tuple[bytes, ...]
    rest: bytes  # everything after "NAME " (for PASS and AUTH)


def parse_line(line: bytes) -> Command:
    """Split a command line (without CRLF). Raises SyntaxProblem."""
    if not line:
        raise SyntaxProblem("Empty command")
    if b"\0" in line:
        raise SyntaxProblem("NUL octet in command")
    name, sep, rest = line.partition(b" ")
    if not (3 <= len(name) <= 4) or not name.isalpha() or not name.isascii():
        raise SyntaxProblem("Unknown command")
    name = name.upper()
    if name in REST_OF_LINE:
        return Command(name, (rest,) if rest else (), rest)
    if not sep:
        return Command(name, (), b"")
    args = tuple(rest.split(b" "))
    if b"" in args:
        raise SyntaxProblem("Arguments must be separated by single spaces")
    if len(rest) > MAX_ARGUMENT_OCTETS and max(map(len, args)) > MAX_ARGUMENT_OCTETS:
        raise SyntaxProblem(f"Argument longer than {MAX_ARGUMENT_OCTETS} characters")
    return Command(name, args, rest)


def number(arg: bytes, what: str = "message number") -> int:
    """A non-negative decimal number of at most 10 digits. Raises SyntaxProblem."""
    if not arg.isdigit() or not arg.isascii():
        raise SyntaxProblem(f"Invalid {what}")
    if len(arg) > MAX_NUMBER_DIGITS:
        raise SyntaxProblem(f"{what.capitalize()} too large")
    return int(arg)


def arity(cmd: Command, minimum: int, maximum: int | None = None) -> tuple[bytes, ...]:
    """The arguments, if their count is within bounds. Raises SyntaxProblem."""
    maximum = minimum if maximum is None else maximum
    if len(cmd.args) < minimum:
        raise SyntaxProblem(
            "Missing argument" if minimum - len(cmd.args) == 1 else "Missing arguments"
        )
    if len(cmd.args) > maximum:
        raise SyntaxProblem("Too many arguments" if maximum else "No arguments expected")
    return cmd.args

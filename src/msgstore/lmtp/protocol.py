"""LMTP (RFC 2033) and SMTP (RFC 5321) command syntax: verbs, session states, arguments.

Pure functions, no I/O. A command line is ``VERB [SP argument]``; the verb is
case-insensitive. ``MAIL FROM:<path> [params]`` and ``RCPT TO:<path> [params]`` carry ESMTP
parameters ``KEYWORD[=value]`` (RFC 5321 §4.1.2); the ones we know:

=================  =========  ===========================================================
parameter          command    meaning
=================  =========  ===========================================================
``SIZE=n``         MAIL       announced size (RFC 1870); too big -> 552 5.3.4 at MAIL
``BODY=7BIT``      MAIL       RFC 6152; ``8BITMIME`` (RFC 6152), ``BINARYMIME`` (RFC 3030,
                              BDAT only)
``SMTPUTF8``       MAIL       UTF-8 in addresses and headers (RFC 6531)
=================  =========  ===========================================================

An unknown parameter gets 555 5.5.4 (RFC 5321 §4.1.1.11).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final


class Protocol(enum.Enum):
    LMTP = "lmtp"
    SMTP = "smtp"


class State(enum.Enum):
    """Where a session is: before the greeting verb, between transactions, inside one."""

    START = "start"  # before LHLO/EHLO/HELO
    READY = "ready"  # greeted; no transaction
    MAIL = "mail"  # MAIL accepted; RCPTs may follow
    CHUNKING = "chunking"  # inside a BDAT transfer (non-LAST chunks received)


#: Verbs we implement (the session's command table holds their handlers).
VERBS: Final = frozenset(
    {
        "LHLO",
        "EHLO",
        "HELO",
        "MAIL",
        "RCPT",
        "DATA",
        "BDAT",
        "RSET",
        "NOOP",
        "QUIT",
        "VRFY",
        "STARTTLS",
        "HELP",
    }
)

#: Longest argument of a greeting verb we keep (a domain or an address literal).
MAX_HELO_OCTETS: Final = 255


class SyntaxProblem(Exception):  # noqa: N818 -- a reply, not a failure of ours
    """A command line that cannot be parsed; ``str()`` is the text of the 5xx reply."""


@dataclass(frozen=True, slots=True)
class Command:
    verb: str  # upper case
    argument: str  # the rest of the line after one space, as sent


def parse_command(line: bytes) -> Command:
    """Split a command line. Non-UTF-8 and control characters are refused (NUL included)."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        raise SyntaxProblem("Command line is not valid UTF-8") from None
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in text):
        raise SyntaxProblem("Command line contains control characters")
    verb, _, argument = text.partition(" ")
    return Command(verb.upper(), argument)


class BodyType(enum.Enum):
    SEVEN_BIT = "7BIT"
    EIGHT_BIT = "8BITMIME"
    BINARY = "BINARYMIME"


@dataclass(frozen=True, slots=True)
class MailArguments:
    path: str  # "<...>" as sent
    size: int | None = None
    body: BodyType = BodyType.SEVEN_BIT
    smtputf8: bool = False


@dataclass(frozen=True, slots=True)
class RcptArguments:
    path: str


#: SIZE values above this are not parsed as numbers (RELIABILITY.md §4: int() digit limits).
_MAX_SIZE_DIGITS: Final = 20


def _split_path(argument: str, prefix: str) -> tuple[str, list[str]]:
    """``FROM:<path> p1 p2`` -> ("<path>", ["p1", "p2"]). The path may hold quoted spaces."""
    if argument[: len(prefix)].upper() != prefix:
        raise SyntaxProblem(f"Syntax: {prefix}<address>")
    rest = argument[len(prefix) :].lstrip(" ")  # RFC 5321 forbids the space; many send it
    if not rest.startswith("<"):
        raise SyntaxProblem("The address must be enclosed in <>")
    quoted = False
    escaped = False
    for i, ch in enumerate(rest):
        if escaped:
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == '"':
            quoted = not quoted
        elif ch == ">" and not quoted:
            path, params = rest[: i + 1], rest[i + 1 :]
            if params and not params.startswith(" "):
                raise SyntaxProblem("Expected a space between the address and parameters")
            return path, params.split()
    raise SyntaxProblem("The address has no closing '>'")


def _keyword(param: str) -> tuple[str, str | None]:
    key, eq, value = param.partition("=")
    if not key or not all(ch.isascii() and (ch.isalnum() or ch == "-") for ch in key):
        raise SyntaxProblem(f"Invalid parameter {param[:40]!r}")
    return key.upper(), value if eq else None


class UnknownParameter(SyntaxProblem):
    """An ESMTP parameter we do not support (555 5.5.4)."""


def parse_mail(argument: str, *, extended: bool) -> MailArguments:
    """``FROM:<path> [params]``. ``extended``: the client greeted with EHLO/LHLO.

    Raises:
        SyntaxProblem: bad syntax (501); UnknownParameter: unsupported parameter (555).
    """
    path, params = _split_path(argument, "FROM:")
    if params and not extended:
        raise UnknownParameter("Parameters need EHLO")
    size: int | None = None
    body = BodyType.SEVEN_BIT
    smtputf8 = False
    seen: set[str] = set()
    for param in params:
        key, value = _keyword(param)
        if key in seen:
            raise SyntaxProblem(f"Parameter {key} given twice")
        seen.add(key)
        if key == "SIZE":
            if value is None or not value.isascii() or not value.isdigit():
                raise SyntaxProblem("SIZE needs a number")
            size = int(value) if len(value) <= _MAX_SIZE_DIGITS else 10**_MAX_SIZE_DIGITS
        elif key == "BODY":
            try:
                body = BodyType((value or "").upper())
            except ValueError:
                raise UnknownParameter("BODY must be 7BIT, 8BITMIME or BINARYMIME") from None
        elif key == "SMTPUTF8":
            if value is not None:
                raise SyntaxProblem("SMTPUTF8 takes no value")
            smtputf8 = True
        else:
            raise UnknownParameter(f"Parameter {key} is not supported")
    return MailArguments(path, size, body, smtputf8)


def parse_rcpt(argument: str, *, extended: bool) -> RcptArguments:
    """``TO:<path>``; RCPT parameters (DSN's NOTIFY/ORCPT) are not supported (555)."""
    path, params = _split_path(argument, "TO:")
    if params:
        key, _ = _keyword(params[0])
        raise UnknownParameter(f"Parameter {key} is not supported")
    return RcptArguments(path)


def parse_bdat(argument: str) -> tuple[int, bool]:
    """``chunk-size [LAST]`` (RFC 3030 §2) -> (size, last)."""
    words = argument.split(" ")
    if not 1 <= len(words) <= 2 or not words[0].isascii() or not words[0].isdigit():
        raise SyntaxProblem("Syntax: BDAT <size> [LAST]")
    if len(words[0]) > _MAX_SIZE_DIGITS:
        raise SyntaxProblem("BDAT chunk size is too large")
    last = len(words) == 2
    if last and words[1].upper() != "LAST":
        raise SyntaxProblem("Syntax: BDAT <size> [LAST]")
    return int(words[0]), last


def clean_helo(argument: str) -> str:
    """The greeting argument as it may appear in a Received line: one token of domain or
    address-literal characters, at most :data:`MAX_HELO_OCTETS` octets ("unknown" if none)."""
    token = argument.strip().split(" ")[0][:MAX_HELO_OCTETS]
    allowed = "".join(ch for ch in token if ch.isascii() and (ch.isalnum() or ch in ".-_:[]"))
    return allowed or "unknown"

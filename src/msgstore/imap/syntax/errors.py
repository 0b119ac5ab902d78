"""Errors of the syntax layer, and what the session replies to each.

    ParseError                 text safe to send; never echoes the client's input
      InvalidTagError               "* BAD <text>" (untagged: the tag could not be trusted)
      UnknownCommandError           "<tag> BAD <text>"
      BadCommandError               "<tag> BAD [<code>] <text>": syntax or argument error
      RefusedCommandError           "<tag> NO [<code>] <text>": well-formed but refused at parse
                               time (SEARCH CHARSET the server does not know: BADCHARSET)

``tag`` is filled in by :func:`msgstore.imap.syntax.command.parse_command` once the tag has
been read; the per-command parsers raise without it. Texts never quote the client's bytes back
(RELIABILITY.md §7 case 11 and the ALPACA mitigation in ECOSYSTEM.md §13).
"""

from __future__ import annotations

from typing import ClassVar


class ParseError(Exception):
    """Base of every error the syntax layer raises."""

    status: ClassVar[bytes] = b"BAD"

    def __init__(self, text: str, *, code: bytes | None = None, tag: bytes | None = None) -> None:
        super().__init__(text)
        self.text = text
        self.code = code
        self.tag = tag

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.text!r}, code={self.code!r}, tag={self.tag!r})"


class InvalidTagError(ParseError):
    """The command has no usable tag; the reply is an untagged ``* BAD``."""


class UnknownCommandError(ParseError):
    """The command name is not one this server parses."""


class BadCommandError(ParseError):
    """The command's arguments do not follow its grammar."""


class RefusedCommandError(ParseError):
    """The command is well-formed but refused with ``NO`` before it runs."""

    status: ClassVar[bytes] = b"NO"

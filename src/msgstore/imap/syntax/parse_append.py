"""Parser for APPEND (RFC 9051 §6.3.12) with MULTIAPPEND (RFC 3502), literal8 (RFC 3516) and
``UTF8 (~{n})`` message data (RFC 6855 §4).

The message octets are never copied here: each :class:`~msgstore.imap.syntax.args.AppendMessage`
carries the literal exactly as the framer produced it (``bytes``, or the spill file of a large
message), so the handler can move a spilled message into the store without reading it.
"""

from __future__ import annotations

import datetime as dt

from msgstore.imap.syntax.args import AppendArgs, AppendMessage
from msgstore.imap.syntax.errors import BadCommandError
from msgstore.imap.syntax.grammar import ParseContext, TokenReader, date_time, flag_list, mailbox
from msgstore.imap.syntax.tokens import (
    AtomToken,
    ListToken,
    LiteralFileToken,
    LiteralToken,
    QuotedToken,
    Token,
)
from msgstore.imap.syntax.unit import LiteralData


def _literal(tok: Token) -> tuple[LiteralData, bool] | None:
    if isinstance(tok, LiteralToken):
        return tok.value, tok.binary
    if isinstance(tok, LiteralFileToken):
        return tok.file, tok.binary
    return None


def parse_append(reader: TokenReader, ctx: ParseContext) -> AppendArgs:
    """``APPEND SP mailbox 1*(SP [flag-list SP] [date-time SP] append-data)``."""
    name = mailbox(reader.take("mailbox name"), ctx)
    messages: list[AppendMessage] = []
    while True:
        flags: frozenset[str] = frozenset()
        when: dt.datetime | None = None
        tok = reader.take("message literal")
        if isinstance(tok, ListToken):
            flags = flag_list(tok)
            tok = reader.take("message literal")
        if isinstance(tok, QuotedToken):
            when = date_time(tok, "internal date")
            tok = reader.take("message literal")
        utf8 = False
        if isinstance(tok, AtomToken) and tok.value.upper() == b"UTF8":
            wrapped = reader.take("UTF8 message data")
            if (
                not isinstance(wrapped, ListToken)
                or len(wrapped.items) != 1
                or not isinstance(wrapped.items[0], LiteralToken | LiteralFileToken)
                or not wrapped.items[0].binary
            ):
                raise BadCommandError("UTF8 message data must be a parenthesised literal8")
            tok = wrapped.items[0]
            utf8 = True
        lit = _literal(tok)
        if lit is None:
            raise BadCommandError("Message must be sent as a literal")
        messages.append(AppendMessage(lit[0], flags, when, lit[1], utf8))
        if reader.at_end():
            return AppendArgs(name, tuple(messages))

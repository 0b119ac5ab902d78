"""From a command unit to a :class:`~msgstore.imap.syntax.args.Command`.

:func:`parse_command` reads the tag and the command name lexically, looks the name up in
:data:`PARSERS`, tokenizes the rest and runs the command's parser. The session calls it for
every :class:`~msgstore.imap.framer.CommandReady` outside IDLE and AUTHENTICATE, and maps
the :class:`~msgstore.imap.syntax.errors.ParseError` family to replies (see that module).

State checks (FETCH before SELECT, LOGIN after authentication) are not made here: the command
table of the session layer declares the states, and checks them before calling the parser, so
a command in the wrong state gets ``BAD`` without its arguments being parsed.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Final

from msgstore.imap.syntax.args import Command, CommandArgs
from msgstore.imap.syntax.errors import (
    BadCommandError,
    InvalidTagError,
    ParseError,
    UnknownCommandError,
)
from msgstore.imap.syntax.grammar import ParseContext, TokenReader
from msgstore.imap.syntax.parse_acl import (
    parse_acl_identifier,
    parse_getquota,
    parse_setacl,
    parse_setquota,
)
from msgstore.imap.syntax.parse_anystate import (
    parse_authenticate,
    parse_compress,
    parse_enable,
    parse_id,
    parse_login,
    parse_no_args,
)
from msgstore.imap.syntax.parse_append import parse_append
from msgstore.imap.syntax.parse_mailboxes import (
    parse_create,
    parse_list,
    parse_lsub,
    parse_mailbox_only,
    parse_rename,
    parse_select,
    parse_status,
)
from msgstore.imap.syntax.parse_message import (
    parse_copy,
    parse_fetch,
    parse_store,
    parse_uid_expunge,
    parse_uid_fetch,
)
from msgstore.imap.syntax.parse_search import parse_search, parse_sort, parse_thread
from msgstore.imap.syntax.tokens import is_valid_tag, tokenize
from msgstore.imap.syntax.unit import CommandUnit

Parser = Callable[[TokenReader, ParseContext], CommandArgs]

#: Every command this server parses, by upper-case name (UID forms with their prefix).
PARSERS: Final[dict[bytes, Parser]] = {
    b"CAPABILITY": parse_no_args,
    b"NOOP": parse_no_args,
    b"LOGOUT": parse_no_args,
    b"STARTTLS": parse_no_args,
    b"AUTHENTICATE": parse_authenticate,
    b"LOGIN": parse_login,
    b"ENABLE": parse_enable,
    b"ID": parse_id,
    b"COMPRESS": parse_compress,
    b"SELECT": parse_select,
    b"EXAMINE": parse_select,
    b"CREATE": parse_create,
    b"DELETE": parse_mailbox_only,
    b"RENAME": parse_rename,
    b"SUBSCRIBE": parse_mailbox_only,
    b"UNSUBSCRIBE": parse_mailbox_only,
    b"LIST": parse_list,
    b"LSUB": parse_lsub,
    b"NAMESPACE": parse_no_args,
    b"STATUS": parse_status,
    b"APPEND": parse_append,
    b"IDLE": parse_no_args,
    b"CHECK": parse_no_args,
    b"CLOSE": parse_no_args,
    b"UNSELECT": parse_no_args,
    b"EXPUNGE": parse_no_args,
    b"SEARCH": parse_search,
    b"FETCH": parse_fetch,
    b"STORE": parse_store,
    b"COPY": parse_copy,
    b"MOVE": parse_copy,
    b"SORT": parse_sort,
    b"THREAD": parse_thread,
    b"UID FETCH": parse_uid_fetch,
    b"UID STORE": parse_store,
    b"UID COPY": parse_copy,
    b"UID MOVE": parse_copy,
    b"UID SEARCH": parse_search,
    b"UID SORT": parse_sort,
    b"UID THREAD": parse_thread,
    b"UID EXPUNGE": parse_uid_expunge,
    b"SETACL": parse_setacl,
    b"DELETEACL": parse_acl_identifier,
    b"GETACL": parse_mailbox_only,
    b"LISTRIGHTS": parse_acl_identifier,
    b"MYRIGHTS": parse_mailbox_only,
    b"GETQUOTA": parse_getquota,
    b"GETQUOTAROOT": parse_mailbox_only,
    b"SETQUOTA": parse_setquota,
}

_NAME: Final = re.compile(rb"[A-Za-z][A-Za-z0-9.-]{0,31}")


def _word(line: bytes, start: int) -> tuple[bytes, int]:
    """The command-name word at ``start``: upper case, and the offset just after it."""
    m = _NAME.match(line, start)
    if m is None:
        return b"", start
    end = m.end()
    if end < len(line) and line[end] != 0x20:
        return b"", start  # glued to something that is not a space: not a command name
    return m.group().upper(), end


def split_tag(line: bytes) -> tuple[bytes, int]:
    """The tag of a command line and the offset of the space after it.

    Raises:
        InvalidTagError: no tag, or one with characters RFC 9051 forbids, or longer than
            ``MAX_TAG_OCTETS`` (the reply is untagged and does not echo it).
    """
    sp = line.find(b" ")
    tag = line if sp < 0 else line[:sp]
    if not tag:
        raise InvalidTagError("Missing tag")
    if not is_valid_tag(tag):
        raise InvalidTagError("Invalid tag")
    return tag, len(line) if sp < 0 else sp


def read_name(unit: CommandUnit) -> tuple[bytes, bytes, int]:
    """The tag, the upper-case command name (``UID FETCH`` with its prefix) and the offset
    just after the name, read lexically; the session checks the command's state with it
    before the arguments are parsed.

    Raises:
        InvalidTagError: see :func:`split_tag`.
        BadCommandError, UnknownCommandError: no command name, or one we do not know (both
            carry ``tag``).
    """
    line = unit.lines[0]
    tag, pos = split_tag(line)
    try:
        if pos >= len(line) or line[pos + 1 : pos + 2] in (b"", b" "):
            raise BadCommandError("Missing command")
        name, pos = _word(line, pos + 1)
        if name == b"UID":
            if pos >= len(line):
                raise BadCommandError("Missing command after UID")
            sub, pos = _word(line, pos + 1)
            name = b"UID " + sub
        if name not in PARSERS:
            raise UnknownCommandError("Unknown command")
    except ParseError as e:
        e.tag = tag
        raise
    return tag, name, pos


def parse_arguments(
    unit: CommandUnit, tag: bytes, name: bytes, pos: int, ctx: ParseContext
) -> Command:
    """Parse the arguments of a command whose name :func:`read_name` returned."""
    try:
        tokens = tokenize(unit, pos, ctx.tokens)
        return Command(tag, name, PARSERS[name](TokenReader(tokens), ctx))
    except ParseError as e:
        e.tag = tag
        raise


def parse_command(unit: CommandUnit, ctx: ParseContext) -> Command:
    """Parse one command unit.

    Raises:
        ParseError: one of its subclasses; each carries ``tag`` when the tag was valid
            (see :mod:`msgstore.imap.syntax.errors`).
    """
    tag, name, pos = read_name(unit)
    return parse_arguments(unit, tag, name, pos, ctx)


def is_idle_done(unit: CommandUnit) -> bool:
    """True if the unit is the ``DONE`` line that ends IDLE (RFC 2177; any case)."""
    return len(unit.lines) == 1 and unit.lines[0].upper() == b"DONE"

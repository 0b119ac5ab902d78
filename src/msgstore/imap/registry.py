"""The command table: one row per command -- name, allowed states, sequence flags, handler,
and the capabilities the command brings (STYLE.md §4.2; Dovecot ``imap-commands.c``).

The session checks the state from the row *before* the arguments are parsed, and the
selected state reads :attr:`CommandSpec.flags`: ``USES_SEQS`` commands (FETCH, STORE, SEARCH,
COPY, MOVE by sequence number) must not see an untagged EXPUNGE (RFC 9051 §7.5.1); their UID
forms may (``BREAKS_SEQS``). The parsers are ``syntax.command.PARSERS``, keyed by the same
names (a test checks that both tables list the same commands).

CAPABILITY is computed by :func:`capabilities` from this table plus the session's state, so
a command and its capability cannot drift apart.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from msgstore.auth.sasl import SCRAM_SHA_256
from msgstore.imap.commands import (
    acl,
    anystate,
    append,
    copy_move,
    fetch,
    idle,
    mailboxes,
    nonauth,
    quota,
    search,
    selected,
    sort_thread,
    store_flags,
)
from msgstore.imap.session import ANY, AUTH, State
from msgstore.imap.syntax.args import Command
from msgstore.imap.syntax.responses import StatusResponse

if TYPE_CHECKING:
    from msgstore.imap.session import Session

Handler = Callable[["Session", Command], Awaitable[StatusResponse]]


class CmdFlags(enum.Flag):
    NONE = 0
    USES_SEQS = enum.auto()  # no untagged EXPUNGE while it runs
    BREAKS_SEQS = enum.auto()  # UID form: EXPUNGE may be sent


NONE: Final = CmdFlags.NONE
USES_SEQS: Final = CmdFlags.USES_SEQS
BREAKS_SEQS: Final = CmdFlags.BREAKS_SEQS
NOT_AUTH: Final = State.NOT_AUTHENTICATED
SELECTED: Final = State.SELECTED


@dataclass(frozen=True, slots=True)
class CommandSpec:
    name: bytes
    states: State
    flags: CmdFlags
    handler: Handler
    capabilities: tuple[bytes, ...] = ()


_ROWS: Final = (
    CommandSpec(b"CAPABILITY", ANY, NONE, anystate.capability),
    CommandSpec(b"NOOP", ANY, NONE, anystate.noop),
    CommandSpec(b"LOGOUT", ANY, NONE, anystate.logout),
    CommandSpec(b"ID", ANY, NONE, anystate.id_, (b"ID",)),
    CommandSpec(
        b"ENABLE",
        State.AUTHENTICATED,
        NONE,
        anystate.enable,
        (b"ENABLE", b"CONDSTORE", b"QRESYNC", b"UTF8=ACCEPT"),
    ),
    CommandSpec(b"STARTTLS", NOT_AUTH, NONE, nonauth.starttls),
    CommandSpec(b"COMPRESS", AUTH, NONE, anystate.compress, (b"COMPRESS=DEFLATE",)),
    CommandSpec(b"LOGIN", NOT_AUTH, NONE, nonauth.login),
    CommandSpec(b"AUTHENTICATE", NOT_AUTH, NONE, nonauth.authenticate, (b"SASL-IR",)),
    CommandSpec(b"SELECT", AUTH, NONE, mailboxes.select),
    CommandSpec(b"EXAMINE", AUTH, NONE, mailboxes.select),
    CommandSpec(b"CREATE", AUTH, NONE, mailboxes.create, (b"CREATE-SPECIAL-USE",)),
    CommandSpec(b"DELETE", AUTH, NONE, mailboxes.delete),
    CommandSpec(b"RENAME", AUTH, NONE, mailboxes.rename),
    CommandSpec(b"SUBSCRIBE", AUTH, NONE, mailboxes.subscribe),
    CommandSpec(b"UNSUBSCRIBE", AUTH, NONE, mailboxes.subscribe),
    CommandSpec(
        b"LIST",
        AUTH,
        NONE,
        mailboxes.list_,
        (b"LIST-EXTENDED", b"LIST-STATUS", b"SPECIAL-USE", b"CHILDREN"),
    ),
    CommandSpec(b"LSUB", AUTH, NONE, mailboxes.lsub),
    CommandSpec(b"NAMESPACE", AUTH, NONE, mailboxes.namespace, (b"NAMESPACE",)),
    CommandSpec(b"STATUS", AUTH, NONE, mailboxes.status, (b"STATUS=SIZE",)),
    CommandSpec(b"APPEND", AUTH, NONE, append.append, (b"MULTIAPPEND", b"UIDPLUS")),
    CommandSpec(b"IDLE", AUTH, NONE, idle.idle, (b"IDLE",)),
    CommandSpec(b"CHECK", SELECTED, NONE, selected.check),
    CommandSpec(b"CLOSE", SELECTED, NONE, selected.close),
    CommandSpec(b"UNSELECT", SELECTED, NONE, selected.unselect, (b"UNSELECT",)),
    CommandSpec(b"EXPUNGE", SELECTED, NONE, selected.expunge),
    CommandSpec(b"UID EXPUNGE", SELECTED, BREAKS_SEQS, selected.expunge),
    CommandSpec(b"SEARCH", SELECTED, USES_SEQS, search.search, (b"ESEARCH", b"SEARCHRES")),
    CommandSpec(b"UID SEARCH", SELECTED, BREAKS_SEQS, search.search),
    CommandSpec(
        b"SORT", SELECTED, USES_SEQS, sort_thread.sort, (b"SORT", b"SORT=DISPLAY", b"ESORT")
    ),
    CommandSpec(b"UID SORT", SELECTED, BREAKS_SEQS, sort_thread.sort),
    CommandSpec(
        b"THREAD",
        SELECTED,
        USES_SEQS,
        sort_thread.thread,
        (b"THREAD=ORDEREDSUBJECT", b"THREAD=REFERENCES"),
    ),
    CommandSpec(b"UID THREAD", SELECTED, BREAKS_SEQS, sort_thread.thread),
    CommandSpec(b"FETCH", SELECTED, USES_SEQS, fetch.fetch, (b"BINARY",)),
    CommandSpec(b"UID FETCH", SELECTED, BREAKS_SEQS, fetch.fetch),
    CommandSpec(b"STORE", SELECTED, USES_SEQS, store_flags.store),
    CommandSpec(b"UID STORE", SELECTED, BREAKS_SEQS, store_flags.store),
    CommandSpec(b"COPY", SELECTED, NONE, copy_move.copy),
    CommandSpec(b"UID COPY", SELECTED, BREAKS_SEQS, copy_move.copy),
    CommandSpec(b"MOVE", SELECTED, NONE, copy_move.copy, (b"MOVE",)),
    CommandSpec(b"UID MOVE", SELECTED, BREAKS_SEQS, copy_move.copy),
    CommandSpec(b"SETACL", AUTH, NONE, acl.setacl, (b"ACL", b"RIGHTS=kxte")),
    CommandSpec(b"DELETEACL", AUTH, NONE, acl.deleteacl),
    CommandSpec(b"GETACL", AUTH, NONE, acl.getacl),
    CommandSpec(b"LISTRIGHTS", AUTH, NONE, acl.listrights),
    CommandSpec(b"MYRIGHTS", AUTH, NONE, acl.myrights),
    CommandSpec(
        b"GETQUOTA",
        AUTH,
        NONE,
        quota.getquota,
        (b"QUOTA", b"QUOTA=RES-STORAGE", b"QUOTA=RES-MESSAGE"),
    ),
    CommandSpec(b"GETQUOTAROOT", AUTH, NONE, quota.getquotaroot),
    CommandSpec(b"SETQUOTA", AUTH, NONE, quota.setquota, (b"QUOTASET",)),
)

#: Every command the session runs, by upper-case name.
REGISTRY: Final[dict[bytes, CommandSpec]] = {row.name: row for row in _ROWS}


def capabilities(s: Session) -> tuple[bytes, ...]:
    """The CAPABILITY list for the session's current state."""
    caps: list[bytes] = [b"IMAP4rev1", b"IMAP4rev2"]
    tls = s.conn.tls_active
    if s.state is State.NOT_AUTHENTICATED:
        if not tls and s.ctx.tls is not None:
            caps.append(b"STARTTLS")
        if s.plaintext_ok:
            caps.append(b"AUTH=PLAIN")
        else:
            caps.append(b"LOGINDISABLED")
        if s.ctx.config.auth.scram_sha_256:
            caps.append(b"AUTH=" + SCRAM_SHA_256.encode())
    limits = s.conn.framer.limits
    caps.append(b"LITERAL-" if limits.max_nonsync_literal_octets is not None else b"LITERAL+")
    for row in _ROWS:
        # Everything is advertised in every state (clients cache the list), except what only
        # matters before login.
        if row.states & s.state or s.state is State.NOT_AUTHENTICATED or row.states & AUTH:
            caps.extend(row.capabilities)
    caps.append(b"APPENDLIMIT=%d" % mailboxes.append_limit(s))
    return tuple(dict.fromkeys(caps))

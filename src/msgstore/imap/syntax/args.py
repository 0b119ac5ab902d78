"""One frozen dataclass per command's arguments, as the handlers receive them.

Values are already typed and decoded: mailbox names are validated
:data:`~msgstore.core.names.MailboxName` values (UTF-8, NFC, INBOX canonical), flags are in
canonical spelling, sequence sets are symbolic :class:`~msgstore.imap.syntax.grammar.SeqSet`
values (``*`` and ``$`` are resolved by the selected state, never here), search programs are
:mod:`~msgstore.imap.syntax.search` trees and FETCH items
:mod:`~msgstore.imap.syntax.fetchatt` values. Protocol-level semantics that need session state
(is QRESYNC enabled? is the mailbox selected? does this user exist?) are the handlers' job.

Commands that take no arguments share :class:`NoArgs`; commands whose only argument is a
mailbox (DELETE, SUBSCRIBE, UNSUBSCRIBE, GETACL, MYRIGHTS, GETQUOTAROOT) share
:class:`MailboxArgs`; SELECT/EXAMINE share :class:`SelectArgs` and COPY/MOVE
:class:`CopyArgs` (the command name tells them apart).
"""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass

from msgstore.core.flags import FlagOp
from msgstore.core.names import MailboxName
from msgstore.imap.syntax.fetchatt import FetchItem
from msgstore.imap.syntax.grammar import SeqSet
from msgstore.imap.syntax.search import SearchKey
from msgstore.imap.syntax.unit import LiteralData


@dataclass(frozen=True, slots=True)
class NoArgs:
    """CAPABILITY NOOP LOGOUT STARTTLS NAMESPACE CHECK CLOSE UNSELECT EXPUNGE IDLE.

    IDLE (RFC 2177, RFC 9051 §6.3.13): after ``+ idling`` the session reads lines itself and
    ends on ``DONE`` (:func:`msgstore.imap.syntax.command.is_idle_done`); any other line
    ends IDLE with a tagged BAD.
    """


@dataclass(frozen=True, slots=True)
class MailboxArgs:
    """DELETE SUBSCRIBE UNSUBSCRIBE GETACL MYRIGHTS GETQUOTAROOT: one mailbox."""

    mailbox: MailboxName


@dataclass(frozen=True, slots=True)
class AuthenticateArgs:
    """AUTHENTICATE (RFC 9051 §6.2.2) with an optional SASL-IR initial response (RFC 4959).

    ``initial_response`` is None when absent, ``b""`` when sent as ``=`` (empty).
    """

    mechanism: str
    initial_response: bytes | None = None


@dataclass(frozen=True, slots=True)
class LoginArgs:
    """LOGIN (RFC 9051 §6.2.3). The password stays octets: the auth layer decides."""

    userid: str
    password: bytes


@dataclass(frozen=True, slots=True)
class EnableArgs:
    """ENABLE (RFC 5161): capability names in upper case, order kept."""

    capabilities: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class QresyncParams:
    """SELECT's QRESYNC parameter (RFC 7162 §3.2.5)."""

    uidvalidity: int
    modseq: int
    known_uids: SeqSet | None = None
    #: (known sequence numbers, the UIDs they correspond to)
    seq_match: tuple[SeqSet, SeqSet] | None = None


@dataclass(frozen=True, slots=True)
class SelectArgs:
    """SELECT and EXAMINE (RFC 9051 §6.3.2-3) with CONDSTORE / QRESYNC parameters."""

    mailbox: MailboxName
    condstore: bool = False
    qresync: QresyncParams | None = None


@dataclass(frozen=True, slots=True)
class CreateArgs:
    """CREATE (RFC 9051 §6.3.4), optionally ``(USE (\\Sent ...))`` (RFC 6154 §3)."""

    mailbox: MailboxName
    special_use: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class RenameArgs:
    """RENAME (RFC 9051 §6.3.6)."""

    old: MailboxName
    new: MailboxName


class ListSelect(enum.Enum):
    """LIST-EXTENDED selection options (RFC 5258 §3.1, RFC 6154 §5.1)."""

    SUBSCRIBED = b"SUBSCRIBED"
    REMOTE = b"REMOTE"
    RECURSIVEMATCH = b"RECURSIVEMATCH"
    SPECIAL_USE = b"SPECIAL-USE"


class StatusItem(enum.Enum):
    """STATUS data items (RFC 9051 §6.3.11, RFC 7162 HIGHESTMODSEQ, RFC 7889 APPENDLIMIT)."""

    MESSAGES = b"MESSAGES"
    RECENT = b"RECENT"
    UIDNEXT = b"UIDNEXT"
    UIDVALIDITY = b"UIDVALIDITY"
    UNSEEN = b"UNSEEN"
    DELETED = b"DELETED"
    SIZE = b"SIZE"
    HIGHESTMODSEQ = b"HIGHESTMODSEQ"
    APPENDLIMIT = b"APPENDLIMIT"


@dataclass(frozen=True, slots=True)
class ListReturn:
    """LIST-EXTENDED return options (RFC 5258 §3.2, RFC 6154, RFC 5819 LIST-STATUS)."""

    subscribed: bool = False
    children: bool = False
    special_use: bool = False
    status: tuple[StatusItem, ...] | None = None


@dataclass(frozen=True, slots=True)
class ListArgs:
    """LIST (RFC 9051 §6.3.9, RFC 5258). ``reference`` and ``patterns`` are decoded, not
    validated: patterns hold wildcards and may be ``""`` (the delimiter query)."""

    reference: str
    patterns: tuple[str, ...]
    select: frozenset[ListSelect] = frozenset()
    returns: ListReturn = ListReturn()


@dataclass(frozen=True, slots=True)
class LsubArgs:
    """LSUB (RFC 3501 §6.3.9; deprecated in RFC 9051 but still sent by rev1 clients)."""

    reference: str
    pattern: str


@dataclass(frozen=True, slots=True)
class StatusArgs:
    """STATUS (RFC 9051 §6.3.11): the items in the order given, without repeats."""

    mailbox: MailboxName
    items: tuple[StatusItem, ...]


@dataclass(frozen=True, slots=True)
class AppendMessage:
    """One message of APPEND/MULTIAPPEND (RFC 3502).

    ``data`` is the literal's content or its spill file; ``binary`` if sent as literal8
    (RFC 3516: may contain NUL, must not be content-transfer-decoded by the server);
    ``utf8`` if wrapped as ``UTF8 (~{n})`` (RFC 6855 §4).
    """

    data: LiteralData
    flags: frozenset[str] = frozenset()
    internal_date: dt.datetime | None = None
    binary: bool = False
    utf8: bool = False


@dataclass(frozen=True, slots=True)
class AppendArgs:
    """APPEND (RFC 9051 §6.3.12) with one or more messages (MULTIAPPEND, RFC 3502)."""

    mailbox: MailboxName
    messages: tuple[AppendMessage, ...]


class SearchReturn(enum.Enum):
    """ESEARCH return options (RFC 9051 §6.4.4, RFC 4731, RFC 5182 SAVE)."""

    MIN = b"MIN"
    MAX = b"MAX"
    ALL = b"ALL"
    COUNT = b"COUNT"
    SAVE = b"SAVE"


@dataclass(frozen=True, slots=True)
class SearchArgs:
    """SEARCH / UID SEARCH. ``returns`` is None without ``RETURN`` (classic ``* SEARCH``
    reply in IMAP4rev1); ``RETURN ()`` gives ``{ALL}`` (RFC 9051 §6.4.4)."""

    key: SearchKey
    charset: str | None = None
    returns: frozenset[SearchReturn] | None = None


@dataclass(frozen=True, slots=True)
class FetchArgs:
    """FETCH / UID FETCH (RFC 9051 §6.4.5) with CHANGEDSINCE and VANISHED (RFC 7162)."""

    seqs: SeqSet
    items: tuple[FetchItem, ...]
    changed_since: int | None = None
    vanished: bool = False


@dataclass(frozen=True, slots=True)
class StoreArgs:
    """STORE / UID STORE (RFC 9051 §6.4.6) with UNCHANGEDSINCE (RFC 7162 §3.1.3)."""

    seqs: SeqSet
    op: FlagOp
    flags: frozenset[str]
    silent: bool = False
    unchanged_since: int | None = None


@dataclass(frozen=True, slots=True)
class CopyArgs:
    """COPY / MOVE and their UID forms (RFC 9051 §6.4.7-8)."""

    seqs: SeqSet
    mailbox: MailboxName


@dataclass(frozen=True, slots=True)
class UidExpungeArgs:
    """UID EXPUNGE (RFC 9051 §6.4.9, RFC 4315)."""

    uids: SeqSet


class SortKey(enum.Enum):
    """SORT keys (RFC 5256 §3, RFC 5957 DISPLAYFROM/DISPLAYTO)."""

    ARRIVAL = b"ARRIVAL"
    CC = b"CC"
    DATE = b"DATE"
    FROM = b"FROM"
    SIZE = b"SIZE"
    SUBJECT = b"SUBJECT"
    TO = b"TO"
    DISPLAYFROM = b"DISPLAYFROM"
    DISPLAYTO = b"DISPLAYTO"


@dataclass(frozen=True, slots=True)
class SortCriterion:
    key: SortKey
    reverse: bool = False


@dataclass(frozen=True, slots=True)
class SortArgs:
    """SORT / UID SORT (RFC 5256); ``returns`` for ESORT (RFC 5267) as in SEARCH."""

    criteria: tuple[SortCriterion, ...]
    charset: str
    key: SearchKey
    returns: frozenset[SearchReturn] | None = None


class ThreadAlgorithm(enum.Enum):
    """THREAD algorithms (RFC 5256 §3)."""

    ORDEREDSUBJECT = b"ORDEREDSUBJECT"
    REFERENCES = b"REFERENCES"


@dataclass(frozen=True, slots=True)
class ThreadArgs:
    """THREAD / UID THREAD (RFC 5256)."""

    algorithm: ThreadAlgorithm
    charset: str
    key: SearchKey


@dataclass(frozen=True, slots=True)
class IdArgs:
    """ID (RFC 2971): field/value pairs in order, or None for ``ID NIL``."""

    fields: tuple[tuple[str, str | None], ...] | None


@dataclass(frozen=True, slots=True)
class SetAclArgs:
    """SETACL (RFC 4314 §3.1): ``rights`` as sent (``+lr``, ``-w``, ``lrs``), letters checked."""

    mailbox: MailboxName
    identifier: str
    rights: str


@dataclass(frozen=True, slots=True)
class AclIdentifierArgs:
    """DELETEACL and LISTRIGHTS (RFC 4314 §3.2, §3.4): a mailbox and an identifier."""

    mailbox: MailboxName
    identifier: str


@dataclass(frozen=True, slots=True)
class GetQuotaArgs:
    """GETQUOTA (RFC 9208 §4.2): a quota root name."""

    root: str


@dataclass(frozen=True, slots=True)
class SetQuotaArgs:
    """SETQUOTA (RFC 9208 §4.4): resource names in upper case with their limits;
    ``()`` removes every limit of the root."""

    root: str
    limits: tuple[tuple[str, int], ...]


@dataclass(frozen=True, slots=True)
class CompressArgs:
    """COMPRESS (RFC 4978): the mechanism in upper case (only DEFLATE is defined)."""

    mechanism: str


CommandArgs = (
    NoArgs
    | MailboxArgs
    | AuthenticateArgs
    | LoginArgs
    | EnableArgs
    | SelectArgs
    | CreateArgs
    | RenameArgs
    | ListArgs
    | LsubArgs
    | StatusArgs
    | AppendArgs
    | SearchArgs
    | FetchArgs
    | StoreArgs
    | CopyArgs
    | UidExpungeArgs
    | SortArgs
    | ThreadArgs
    | IdArgs
    | SetAclArgs
    | AclIdentifierArgs
    | GetQuotaArgs
    | SetQuotaArgs
    | CompressArgs
)


@dataclass(frozen=True, slots=True)
class Command:
    """A parsed command: ``name`` in upper case, ``UID FETCH`` with its prefix."""

    tag: bytes
    name: bytes
    args: CommandArgs

    @property
    def uid(self) -> bool:
        """True for the UID forms (UID FETCH, UID STORE, ...)."""
        return self.name.startswith(b"UID ")

"""The storage interface: what every backend (local SQLite + files, PostgreSQL) provides.

Protocol code never talks to SQLite, PostgreSQL or message files; it talks to this interface.
The interface is *narrow and by id* (``AccountId``, ``MailboxId``, ``Uid``): it knows nothing of
ACL enforcement or IMAP namespaces. ``storage/access.py`` builds the name-based, ACL-checked
view above it, once, for every backend.

Parts
-----
accounts      create/get/list/update/rename/delete, password hash (system database)
mailboxes     create/delete/rename (children move along), list, subscribe, status, special-use
messages      stage -> append (the durable write), snapshot, fetch_meta, list_maildrop,
              open_body,
              store_flags (modseq, UNCHANGEDSINCE), copy, move, expunge, changes_since
acl           get/set/delete entries per mailbox (effective rights: core/acl.py)
quota         per account: limits and usage, usage updated in the same transaction as the change
notify        watch(account, mailbox): wakes when something in that mailbox may have changed,
              whichever process (server worker, CLI, delivery) made the change

The durable write
-----------------
A message enters the store in two steps, so one received message can go to many recipients
as one file (hard links on the local backend, one content-addressed blob on PostgreSQL)::

    async with backend.stage(max_octets=limit) as staged:
        async for chunk in source:
            await staged.write(chunk)         # CRLF-normalised into a temp file
        await staged.finish()                 # fsync + parse once (mime.parse)
        for account, mailbox in targets:
            result = await backend.append(account, mailbox, staged, flags=..., internal_date=...)
    # leaving the block deletes the temp file

``append`` returns only after the message is durable (file fsynced, linked/renamed into place,
directory fsynced, index row committed); only then may a protocol acknowledge it.

Errors
------
Every method raises :class:`msgstore.core.errors.StoreError`: NOT_FOUND for a missing account,
mailbox or message; EXISTS; PARAMS; OVER_QUOTA; TOO_BIG; NOT_POSSIBLE; HAS_CHILDREN; TEMP for
I/O failures (EIO, ENOSPC) -- the store is left as it was; CORRUPTED when an index cannot be read.
"""

from __future__ import annotations

import datetime as dt
import enum
from array import array
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Protocol, runtime_checkable

from msgstore.core.accounts import AccountChanges, AccountInfo, AccountKind
from msgstore.core.acl import Rights
from msgstore.core.errors import StoreError
from msgstore.core.flags import FlagOp, Flags
from msgstore.core.ids import AccountId, MailboxId, ModSeq, Uid, UidSet, UidValidity
from msgstore.core.names import MailboxName
from msgstore.core.quota import QuotaInfo


class Feature(enum.Enum):
    """Optional capabilities a backend declares in ``Backend.features``."""

    HARD_LINKS = "hard-links"  # fan-out stores one file linked into each tree
    CROSS_HOST_NOTIFY = "cross-host-notify"  # notifications reach other machines (LISTEN/NOTIFY)
    RECONSTRUCT = "reconstruct"  # implements SupportsReconstruct (msgstore reconstruct)
    UID_IMPORT = "uid-import"  # implements SupportsUidImport (msgstore migrate keeps UIDs)
    STORE_IMPORT = "store-import"  # implements SupportsStoreImport (msgstore store copy)


class Want(enum.Flag):
    """Which fields ``fetch_meta`` must fill; the backend selects only those columns."""

    FLAGS = enum.auto()
    ENVELOPE = enum.auto()
    BODY = enum.auto()  # the non-extensible BODY response
    BODYSTRUCTURE = enum.auto()
    PARTMAP = enum.auto()
    HEADERS = enum.auto()  # the search/sort header index
    ALL = FLAGS | ENVELOPE | BODY | BODYSTRUCTURE | PARTMAP | HEADERS


# --- row types -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MailboxInfo:
    """One mailbox of an account's tree."""

    id: MailboxId
    name: MailboxName
    uidvalidity: UidValidity
    special_use: frozenset[str]  # RFC 6154 attributes, e.g. {"\\Sent"}
    subscribed: bool


@dataclass(frozen=True, slots=True)
class MailboxStatus:
    """What STATUS and SELECT report (RFC 9051 §6.3.11, RFC 7162, RFC 8438 SIZE)."""

    id: MailboxId
    messages: int
    recent: int
    unseen: int
    uidnext: Uid
    uidvalidity: UidValidity
    highestmodseq: ModSeq
    size_octets: int  # sum of RFC822.SIZE of all messages (STATUS=SIZE)
    deleted: int  # messages with \Deleted


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The state SELECT starts from; later changes arrive through ``changes_since``.

    ``uids`` is a sorted ``array('I')``: sequence number n is ``uids[n-1]``.
    """

    id: MailboxId
    uidvalidity: UidValidity
    uidnext: Uid
    highestmodseq: ModSeq
    uids: array[int]
    first_unseen: Uid | None  # lowest UID without \Seen (IMAP4rev1 UNSEEN)
    recent_uids: frozenset[Uid]  # \Recent for *this* session (claimed by this snapshot)
    #: Keywords defined in this mailbox, for the FLAGS response: every keyword set on a
    #: message here (a backend may keep one after the last message carrying it is gone).
    keywords: frozenset[str]


@dataclass(frozen=True, slots=True)
class MessageMeta:
    """Metadata of one message, computed at delivery. Unrequested fields are None."""

    uid: Uid
    modseq: ModSeq
    flags: Flags
    internal_date: dt.datetime  # timezone-aware
    size: int  # RFC822.SIZE: octets of the stored (CRLF-normalised) file
    sha256: bytes  # content hash of the stored file (reconstruct, dedup)
    uidl: str  # POP3 UIDL, kept across migration and reconstruct
    envelope: bytes | None = None  # ready-to-send IMAP ENVELOPE
    body: bytes | None = None  # ready-to-send IMAP BODY (non-extensible)
    bodystructure: bytes | None = None  # ready-to-send IMAP BODYSTRUCTURE
    partmap: bytes | None = None  # serialised mime.PartMap
    headers: Mapping[str, str] | None = None  # search/sort header index (mime.parse)


#: One message of a POP3 maildrop (``Backend.list_maildrop``): ``(uid, size, uidl, seen,
#: internal_date)``, where ``seen`` is whether it has ``\\Seen`` and ``internal_date`` is in
#: whole POSIX seconds.
MaildropRow = tuple[Uid, int, str, bool, int]


@dataclass(frozen=True, slots=True)
class AppendResult:
    """What APPEND/COPY/delivery report: RFC 4315 APPENDUID needs uidvalidity and uid."""

    account: AccountId
    mailbox: MailboxId
    uidvalidity: UidValidity
    uid: Uid
    modseq: ModSeq


@dataclass(frozen=True, slots=True)
class CopyResult:
    """RFC 4315 COPYUID: source and destination UIDs, pairwise, in source UID order."""

    uidvalidity: UidValidity  # of the destination
    source_uids: tuple[Uid, ...]
    dest_uids: tuple[Uid, ...]


@dataclass(frozen=True, slots=True)
class FlagUpdate:
    uid: Uid
    modseq: ModSeq
    flags: Flags


@dataclass(frozen=True, slots=True)
class StoreFlagsResult:
    """Result of STORE: the messages changed, and those refused by UNCHANGEDSINCE."""

    updated: tuple[FlagUpdate, ...]
    modified: UidSet  # RFC 7162 §3.1.3 MODIFIED: failed the unchanged_since test


@dataclass(frozen=True, slots=True)
class Changes:
    """Everything that changed in a mailbox after a modseq (for IDLE, NOOP, QRESYNC).

    ``changed`` holds messages (new or with changed flags) whose modseq is greater than the
    asked-for one, in UID order, with ``Want.FLAGS`` filled; ``expunged`` the UIDs expunged
    after it. A UID may be in both only if it was added and expunged since.
    """

    highestmodseq: ModSeq
    uidnext: Uid
    changed: tuple[MessageMeta, ...]
    expunged: tuple[Uid, ...]


@dataclass(frozen=True, slots=True)
class NewAccount:
    name: str
    password_hash: str
    kind: AccountKind = AccountKind.IMAP
    manager: bool = False
    storage_limit_kib: int | None = None
    message_limit: int | None = None
    #: Mailboxes created with the account, with their special-use attribute ("" for none).
    mailboxes: Sequence[tuple[MailboxName, str]] = field(default_factory=tuple)


@dataclass(frozen=True, slots=True)
class AccountQuery:
    """Which accounts ``Backend.list_accounts`` returns: filters (all must hold), then a page."""

    kind: AccountKind | None = None
    manager: bool | None = None
    login_disabled: bool | None = None
    receive_disabled: bool | None = None
    #: A substring of the case-folded name ("": any name).
    contains: str = ""
    #: Keyset paging: only accounts sorted after this ``(name.casefold(), id)``.
    after: tuple[str, int] | None = None
    limit: int | None = None  # None: no limit
    offset: int = 0


# --- the staged message ----------------------------------------------------------------------


class StagedMessage(Protocol):
    """A received message on its way in: written once, parsed once, appended to N mailboxes."""

    async def write(self, data: bytes) -> None:
        """Append raw bytes; line endings are normalised to CRLF as they stream.

        Raises:
            StoreError: TOO_BIG as soon as the normalised size passes ``max_octets``
                (nothing is stored); TEMP on an I/O error.
        """
        ...

    async def finish(self) -> None:
        """End the message: add a final CRLF if missing, fsync, parse metadata once."""
        ...

    @property
    def size(self) -> int:
        """Octets of the normalised message (valid after ``finish``)."""
        ...

    @property
    def sha256(self) -> bytes:
        """Content hash of the normalised message (valid after ``finish``)."""
        ...


# --- the backend -----------------------------------------------------------------------------


class Backend(Protocol):
    """A storage backend. All methods are coroutines and never block the event loop."""

    @property
    def features(self) -> frozenset[Feature]: ...

    async def close(self) -> None:
        """Release connections, threads and listeners. Idempotent."""
        ...

    # accounts ---------------------------------------------------------------------------------

    async def create_account(self, spec: NewAccount) -> AccountInfo:
        """Create an account with its tree and ``spec.mailboxes`` (INBOX always exists).

        Raises EXISTS if the name is taken (names compare case-insensitively), PARAMS if invalid.
        """
        ...

    async def get_account(self, name: str) -> AccountInfo:
        """Raises NOT_FOUND."""
        ...

    async def get_account_by_id(self, account: AccountId) -> AccountInfo:
        """Raises NOT_FOUND."""
        ...

    async def list_accounts(self, query: AccountQuery | None = None) -> list[AccountInfo]:
        """The accounts ``query`` selects (default: every one) except the public
        pseudo-account, sorted by case-folded name in code point order, then id; filtered and
        paged by the database, so a page costs the page, not the whole table."""
        ...

    async def update_account(self, name: str, changes: AccountChanges) -> AccountInfo: ...

    async def rename_account(self, old: str, new: str) -> AccountInfo:
        """Rename; the account id, its tree and its mail stay. Raises EXISTS, NOT_FOUND."""
        ...

    async def delete_account(self, name: str) -> None:
        """Delete the account, its tree and every ACL entry naming it."""
        ...

    async def get_password_hash(self, name: str) -> tuple[AccountInfo, str]:
        """The account and its stored hash, for the auth layer. Raises NOT_FOUND."""
        ...

    async def set_password_hash(self, name: str, password_hash: str) -> None: ...

    async def public_account(self) -> AccountInfo:
        """The pseudo-account owning the public folder tree ("Public/..." in IMAP)."""
        ...

    # mailboxes --------------------------------------------------------------------------------

    async def create_mailbox(
        self, account: AccountId, name: MailboxName, *, special_use: str = ""
    ) -> MailboxInfo:
        """Create a mailbox; missing parents are created too (RFC 9051 §6.3.4).

        Raises EXISTS (also for a name differing only in INBOX case), PARAMS.
        """
        ...

    async def delete_mailbox(self, account: AccountId, name: MailboxName) -> None:
        """Delete a mailbox and its messages (quota usage drops in the same transaction).

        Raises NOT_POSSIBLE for INBOX, HAS_CHILDREN if it has children, NOT_FOUND.
        """
        ...

    async def rename_mailbox(self, account: AccountId, old: MailboxName, new: MailboxName) -> None:
        """Rename with every child (RFC 9051 §6.3.6). No message file moves.

        Renaming INBOX moves its messages to ``new`` and leaves INBOX empty. Raises EXISTS,
        NOT_FOUND, NOT_POSSIBLE (rename under itself).
        """
        ...

    async def get_mailbox(self, account: AccountId, name: MailboxName) -> MailboxInfo:
        """Raises NOT_FOUND."""
        ...

    async def list_mailboxes(self, account: AccountId) -> list[MailboxInfo]:
        """Every mailbox of the tree, sorted by name (pattern matching: core/names.py)."""
        ...

    async def set_subscribed(self, account: AccountId, name: MailboxName, on: bool) -> None:
        """Subscribe/unsubscribe; a name may be subscribed without existing (RFC 9051 §6.3.7)."""
        ...

    async def list_subscriptions(self, account: AccountId) -> list[MailboxName]: ...

    async def set_special_use(
        self, account: AccountId, name: MailboxName, special_use: str
    ) -> None:
        """Set ("" clears) the RFC 6154 attribute of a mailbox."""
        ...

    async def mailbox_status(self, account: AccountId, mailbox: MailboxId) -> MailboxStatus: ...

    # messages ---------------------------------------------------------------------------------

    def stage(self, *, max_octets: int) -> AbstractAsyncContextManager[StagedMessage]:
        """Start receiving one message into a temporary file (see the module docstring)."""
        ...

    async def append(
        self,
        account: AccountId,
        mailbox: MailboxId,
        staged: StagedMessage,
        *,
        flags: Flags = frozenset(),
        internal_date: dt.datetime | None = None,
        uidl: str | None = None,
        check_quota: bool = True,
    ) -> AppendResult:
        """Durably add a finished staged message to a mailbox; returns when it is durable.

        ``internal_date`` defaults to now; ``uidl`` to a value derived from UIDVALIDITY and
        UID. Quota is reserved atomically with the insert (two appends racing for the last
        bytes cannot both succeed). Raises OVER_QUOTA, NOT_FOUND, TEMP.
        """
        ...

    async def snapshot(
        self, account: AccountId, mailbox: MailboxId, *, claim_recent: bool = False
    ) -> Snapshot:
        """The mailbox as SELECT sees it; ``claim_recent`` makes new messages \\Recent here
        and nowhere else (IMAP4rev1)."""
        ...

    async def fetch_meta(
        self, account: AccountId, mailbox: MailboxId, uids: UidSet, want: Want
    ) -> list[MessageMeta]:
        """Metadata of the existing messages in ``uids``, in UID order; missing UIDs are
        skipped silently (they may have been expunged)."""
        ...

    async def list_maildrop(self, account: AccountId, mailbox: MailboxId) -> list[MaildropRow]:
        """Every message of the mailbox as a POP3 maildrop, in UID order: ``fetch_meta(...,
        UidSet.all(), Want.FLAGS)`` projected on what POP3 keeps (:data:`MaildropRow`), in
        one read transaction. A login opens a maildrop of thousands of messages: rows, not a
        ``MessageMeta`` with a flag set and a datetime each. Raises NOT_FOUND."""
        ...

    def open_body(
        self, account: AccountId, mailbox: MailboxId, uid: Uid
    ) -> AbstractAsyncContextManager[BodyReader]:
        """Open a message's stored bytes for reading. Raises EXPUNGED/NOT_FOUND."""
        ...

    async def store_flags(
        self,
        account: AccountId,
        mailbox: MailboxId,
        uids: UidSet,
        op: FlagOp,
        flags: Flags,
        *,
        unchanged_since: ModSeq | None = None,
    ) -> StoreFlagsResult:
        """Change flags atomically per call; every changed message gets a new modseq.

        RFC 9051 §6.4.6, RFC 7162 §3.1.3. A message whose flags would not change is not
        touched (no new modseq) and not reported.
        """
        ...

    async def copy(
        self,
        account: AccountId,
        mailbox: MailboxId,
        uids: UidSet,
        dest_account: AccountId,
        dest_mailbox: MailboxId,
    ) -> CopyResult:
        """Copy messages with their flags and internal dates (files are hard-linked where
        the backend can). Quota of the destination is checked for the whole set first."""
        ...

    async def move(
        self,
        account: AccountId,
        mailbox: MailboxId,
        uids: UidSet,
        dest_account: AccountId,
        dest_mailbox: MailboxId,
    ) -> CopyResult:
        """RFC 6851 MOVE: copy, then expunge the sources; nothing is lost on failure."""
        ...

    async def expunge(
        self,
        account: AccountId,
        mailbox: MailboxId,
        uids: UidSet | None = None,
        *,
        only_deleted: bool = True,
    ) -> list[Uid]:
        """Remove messages; returns the expunged UIDs in ascending order.

        With ``only_deleted`` (IMAP EXPUNGE / UID EXPUNGE) only messages flagged \\Deleted go;
        without it (POP3 QUIT) every message in ``uids`` goes. Quota usage drops in the same
        transaction; the expunge is recorded for ``changes_since`` (QRESYNC VANISHED).
        """
        ...

    async def changes_since(
        self, account: AccountId, mailbox: MailboxId, modseq: ModSeq
    ) -> Changes:
        """See :class:`Changes`. Raises NOT_FOUND if the mailbox was deleted."""
        ...

    # acl --------------------------------------------------------------------------------------

    async def get_acl(self, account: AccountId, mailbox: MailboxId) -> dict[str, Rights]:
        """Identifier (``user``, ``anyone``, ``authenticated``, ``-user``...) -> rights."""
        ...

    async def set_acl(
        self, account: AccountId, mailbox: MailboxId, identifier: str, rights: Rights
    ) -> None:
        """Set an identifier's rights (empty rights delete the entry). Also records the share
        in the system directory so other users can find it without opening every tree."""
        ...

    async def delete_acl(
        self, account: AccountId, mailbox: MailboxId, identifier: str
    ) -> None: ...

    async def shared_with(self, identifiers: Sequence[str]) -> list[tuple[AccountId, MailboxId]]:
        """Mailboxes of other accounts with an ACL entry for any of ``identifiers`` (the
        directory behind "Other Users/" and "Public/")."""
        ...

    # quota ------------------------------------------------------------------------------------

    async def get_quota(self, account: AccountId) -> QuotaInfo: ...

    async def set_quota(
        self, account: AccountId, *, storage_limit_kib: int | None, message_limit: int | None
    ) -> QuotaInfo:
        """Set both limits (None = unlimited)."""
        ...

    # audit log (management, issue #6; AuditRecord below) -------------------------------------

    async def append_audit(self, record: AuditRecord) -> None:
        """Append one record of the management audit log, durably."""
        ...

    async def list_audit(
        self,
        *,
        since: dt.datetime | None = None,
        actor: str | None = None,
        operation: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[AuditRecord]:
        """Audit records newest first; ``since`` inclusive; ``actor``/``operation`` exact."""
        ...

    # forwarding and the relay queue (delivery, issue #4; ForwardEntry, QueueEntry below) -----

    async def put_forward(
        self, address: str, destinations: Sequence[str], *, keep_copy: bool, replace: bool
    ) -> ForwardEntry:
        """Create (or with ``replace`` overwrite) the forwarding entry of ``address``.

        Addresses compare case-insensitively (``casefold``); the entry keeps the case given.
        The backend only stores: syntax, loops and destinations are checked by the caller
        (management/forwarding.py). Raises EXISTS (without ``replace``), PARAMS (empty).
        """
        ...

    async def get_forward(self, address: str) -> ForwardEntry:
        """Raises NOT_FOUND."""
        ...

    async def list_forwards(self) -> list[ForwardEntry]:
        """Every entry, sorted by address (case-insensitively)."""
        ...

    async def delete_forward(self, address: str) -> None:
        """Raises NOT_FOUND."""
        ...

    async def enqueue(
        self,
        staged: StagedMessage,
        *,
        sender: str,
        recipients: Sequence[str],
        prefix: bytes = b"",
        skip_octets: int = 0,
    ) -> QueueEntry:
        """Durably put a message on the outbound relay queue; returns when it is durable.

        The queued message is ``prefix`` followed by the finished staged message without its
        first ``skip_octets`` octets (the local-only trace fields). ``sender`` "" is the null
        reverse-path. Raises PARAMS (no recipients), TEMP.
        """
        ...

    async def list_queue(self) -> list[QueueEntry]:
        """Every queued message, by next attempt then id."""
        ...

    async def get_queued(self, ident: int) -> QueueEntry:
        """Raises NOT_FOUND."""
        ...

    async def read_queued(self, ident: int) -> bytes:
        """The queued message's octets. Raises NOT_FOUND."""
        ...

    async def update_queued(
        self,
        ident: int,
        *,
        done: Sequence[str] = (),
        attempts: int | None = None,
        next_attempt: dt.datetime | None = None,
        last_error: str | None = None,
        dsn: StagedMessage | None = None,
    ) -> QueueEntry | None:
        """One durable step after a delivery attempt: drop the recipients in ``done``
        (delivered or given up) and set the other fields (None: unchanged). When no recipient
        is left the entry and its message go, and None is returned. Raises NOT_FOUND.

        ``dsn``, a finished staged delivery status notification, is queued in the same
        transaction (null sender, to the entry's sender), so a crash can neither send it
        twice nor lose it. Raises PARAMS with ``dsn`` for an entry with the null sender."""
        ...

    async def delete_queued(self, ident: int) -> None:
        """Remove a queued message without sending it. Raises NOT_FOUND."""
        ...

    def runner_lock(self, name: str) -> AbstractAsyncContextManager[RunnerLock | None]:
        """Try to become the one process of the whole store running the task ``name`` (the
        relay queue runner): yields a :class:`RunnerLock` while this process holds it, and
        None at once when another process does. It is released on leaving the block, and
        when the process dies. Local backend: ``flock`` on ``DATA/run/<name>.lock`` (one
        machine, one data directory); PostgreSQL: a session-level advisory lock on a
        connection of its own, shared by every front end on the database. Raises UNAVAILABLE.
        """
        ...

    # web sessions and last logins (web pages, issue #7; WebSession, LoginRecord below) -------

    async def create_web_session(self, session: NewWebSession) -> None:
        """Store a new web session, durably. The backend notes the account's current password
        hash with it: once the hash changes (any face: web, poppassd, CLI, REST), the session
        is gone. Raises NOT_FOUND for an unknown account, EXISTS for a taken ``id_hash``."""
        ...

    async def get_web_session(self, id_hash: str) -> WebSession | None:
        """The session with its account as it is now, or None if there is none, its account
        was deleted or the account's password changed since it began. Expiry is the
        caller's policy (``created``, ``last_seen``)."""
        ...

    async def touch_web_session(self, id_hash: str, last_seen: dt.datetime) -> None:
        """Record activity (for the idle timeout); no error if the session is gone."""
        ...

    async def delete_web_session(self, id_hash: str) -> None:
        """End one session (log out); no error if it is gone."""
        ...

    async def delete_web_sessions(self, account: AccountId) -> int:
        """End every web session of an account; returns how many ended."""
        ...

    async def expire_web_sessions(
        self, *, idle_before: dt.datetime, created_before: dt.datetime
    ) -> int:
        """Delete sessions last seen before ``idle_before`` or begun before
        ``created_before``; returns how many."""
        ...

    async def record_logins(self, logins: Sequence[LoginRecord]) -> None:
        """Remember successful logins: per account, protocol and client address the latest
        time only (an older ``at`` never replaces a newer one). Keeps at most
        :data:`MAX_LOGINS_KEPT` entries per account (the oldest go)."""
        ...

    async def last_logins(self, account: AccountId, *, limit: int = 20) -> list[LoginRecord]:
        """An account's remembered logins, newest first."""
        ...

    # API tokens (REST API, issue #6; NewApiToken, ApiToken below) ---------------------------

    async def create_api_token(self, token: NewApiToken) -> ApiToken:
        """Store a bearer token of the REST API (only its hash), durably. Raises NOT_FOUND for
        an unknown account, EXISTS for a taken ``token_hash``."""
        ...

    async def find_api_token(self, token_hash: str) -> tuple[ApiToken, AccountInfo] | None:
        """The token with that hash and its account as it is now, or None. Expiry is the
        caller's policy (``expires``); a deleted account's tokens are gone with it."""
        ...

    async def list_api_tokens(self, account: AccountId | None = None) -> list[ApiToken]:
        """Every token (of one account), by account name then id."""
        ...

    async def delete_api_token(self, token_id: int) -> None:
        """Revoke a token. Raises NOT_FOUND."""
        ...

    # notifications ----------------------------------------------------------------------------

    def watch(
        self, account: AccountId, mailbox: MailboxId
    ) -> AbstractAsyncContextManager[ChangeWatcher]:
        """Watch a mailbox for changes made by any process using the same store."""
        ...


# --- forwarding and the relay queue (delivery, issue #4) -------------------------------------


@dataclass(frozen=True, slots=True)
class ForwardEntry:
    """An address (an account's or a fictitious one) and where its mail goes instead.

    Destinations are written as given: an account name or a local address, ``public:NAME``
    (the public folder "Public/NAME"), another forwarding address, or an external address.
    """

    address: str
    destinations: tuple[str, ...]
    keep_copy: bool  # the account named ``address`` also gets the message
    created: dt.datetime  # timezone-aware, UTC


@dataclass(frozen=True, slots=True)
class QueueEntry:
    """One message waiting on the outbound relay queue."""

    id: int
    sender: str  # the envelope sender; "" for the null reverse-path
    recipients: tuple[str, ...]  # still to be delivered
    size: int  # octets of the queued message
    created: dt.datetime  # timezone-aware, UTC
    next_attempt: dt.datetime
    attempts: int
    last_error: str  # the last failure's reply ("" before the first attempt)


class RunnerLock(Protocol):
    """Held by one process of a store at a time (``Backend.runner_lock``)."""

    async def held(self) -> bool:
        """Whether the lock is still this process's: False once it was lost (PostgreSQL:
        its connection broke, so another process may hold it now)."""
        ...


# --- flag scans (optional; IMAP FETCH of flags, issue #3) ------------------------------------


@runtime_checkable
class SupportsFlagScan(Protocol):
    """A backend that lists the flags of many messages without building a ``MessageMeta``
    each: ``FETCH 1:* (FLAGS)`` / ``UID FETCH 1:* (UID FLAGS MODSEQ)``, the flag resync every
    client does, on a 100,000-message mailbox. Optional: IMAP falls back to ``fetch_meta``."""

    async def fetch_flags(
        self, account: AccountId, mailbox: MailboxId, uids: UidSet
    ) -> list[tuple[int, int, Flags]]:
        """``(uid, modseq, flags)`` of the existing messages in ``uids``, in UID order: the
        same as ``fetch_meta(..., Want.FLAGS)`` projected on those fields. Raises NOT_FOUND."""
        ...


@runtime_checkable
class SupportsBodyBatch(Protocol):
    """A backend that reads several small messages whole in one call: POP3 reads ahead while
    a client retrieves a maildrop in order (fetchmail, getmail: RETR 1, DELE 1, RETR 2, ...),
    so most RETRs cost no store round trip. Optional: POP3 falls back to ``open_body``."""

    async def read_bodies(
        self, account: AccountId, mailbox: MailboxId, uids: Sequence[Uid]
    ) -> dict[Uid, bytes]:
        """The whole stored bytes of those of ``uids`` that exist, by UID. Expunged, missing
        and damaged messages are left out (``open_body`` reports them); the caller bounds the
        total size (it knows the sizes from ``fetch_meta``)."""
        ...


@runtime_checkable
class SupportsDeliverMany(Protocol):
    """A backend that appends one staged message to many accounts' mailboxes in one call: a
    delivery to 1,000 local recipients without 1,000 round trips, and a single-recipient
    delivery without a separate INBOX lookup. Optional: the delivery pipeline falls back to
    ``get_mailbox`` + ``append`` per mailbox."""

    async def deliver_many(
        self,
        staged: StagedMessage,
        destinations: Sequence[tuple[AccountInfo, MailboxId | None]],
        *,
        internal_date: dt.datetime | None = None,
        release: bool = False,
    ) -> list[AppendResult | StoreError]:
        """Append ``staged`` to each ``(account, mailbox)`` (None: the account's INBOX), with
        ``append``'s guarantees for each: quota checked atomically, durable before this
        returns. One ``AppendResult`` or ``StoreError`` per destination, in order (a failure
        of one account does not affect the others). ``release``: the caller will not use
        ``staged`` again, so the backend may drop its temporary file as part of the call."""
        ...


@runtime_checkable
class SupportsRecipientLookup(Protocol):
    """Optional backend capability: the RCPT lookups in one call (one hop to the system
    database instead of one per forwarding key and one per candidate account name)."""

    async def find_recipient(
        self, forward_keys: Sequence[str], account_names: Sequence[str]
    ) -> tuple[ForwardEntry | None, AccountInfo | None, int]:
        """The forwarding entry of the first of ``forward_keys`` that has one; else the first
        of ``account_names`` that is an account, and its position; else (None, None, -1)."""
        ...


@runtime_checkable
class SupportsFinishAndDeliver(Protocol):
    """Optional backend capability: ``staged.finish()`` and ``deliver_many`` in one call,
    which the local backend runs with one trip through the event loop for one recipient."""

    async def finish_and_deliver(
        self,
        staged: StagedMessage,
        destinations: Sequence[tuple[AccountInfo, MailboxId | None]],
        *,
        internal_date: dt.datetime | None = None,
        release: bool = False,
    ) -> list[AppendResult | StoreError]:
        """Finish ``staged`` (raising what ``finish`` raises), then what ``deliver_many``
        does."""
        ...


# --- reconstruct (optional: Feature.RECONSTRUCT) ----------------------------------------------


@dataclass(frozen=True, slots=True)
class Discrepancy:
    """One thing reconstruct found wrong (and, when applied, repaired)."""

    code: str  # stable, machine-readable: "file-missing", "uidvalidity-changed", ...
    mailbox: str  # the mailbox name after reconstruct ("" for the whole account)
    uid: int | None  # the UID concerned (before reconstruct), if any
    text: str  # one human-readable line


@dataclass(frozen=True, slots=True)
class ReconstructReport:
    """What ``SupportsReconstruct.reconstruct`` found in one account, and whether it repaired."""

    account: str
    applied: bool  # True when the repairs were written (False: check only, or nothing to do)
    discrepancies: tuple[Discrepancy, ...]
    mailboxes: int  # after reconstruct (what it would be, in a check)
    messages: int
    octets: int
    seconds: float

    @property
    def clean(self) -> bool:
        return not self.discrepancies


@runtime_checkable
class SupportsReconstruct(Protocol):
    """A backend that can rebuild an account's index from its message files."""

    async def reconstruct(
        self,
        account: AccountId,
        *,
        apply: bool,
        mailbox: MailboxName | None = None,
        new_uidvalidity: bool = False,
        progress: Progress | None = None,
    ) -> ReconstructReport:
        """Salvage what the damaged index still holds, compare it with the message files and
        report every discrepancy; with ``apply`` write a repaired index (while the servers run).
        ``progress(done, total)`` is called (from any thread) as message files are checked.
        ``mailbox`` limits the file checks to one mailbox; ``new_uidvalidity`` gives every
        mailbox a new UIDVALIDITY (after restoring a tree from a backup, when UIDs that clients
        have seen may come back). Raises NOT_FOUND, TEMP."""
        ...


# --- migration: keeping the source's UIDs (optional: Feature.UID_IMPORT; issue #8) ------------


@runtime_checkable
class SupportsUidImport(Protocol):
    """A backend that lets ``msgstore migrate`` keep the UIDs and UIDVALIDITY of a source.

    Appending never takes a UID of the caller's choosing; instead the migration moves a
    mailbox's UIDNEXT up to the source UID just before each ``append`` (IMAP allows gaps), and
    sets UIDVALIDITY while the mailbox has never held a message. ``append`` stays the one
    durable write path.
    """

    async def import_uid_state(
        self,
        account: AccountId,
        mailbox: MailboxId,
        *,
        uidvalidity: UidValidity | None,
        uidnext: Uid,
    ) -> None:
        """Raise the mailbox's UIDNEXT to at least ``uidnext`` (never lowers it), and, when
        ``uidvalidity`` is given and differs, set it -- only while the mailbox has never held
        a message (UIDNEXT still 1), else NOT_POSSIBLE. A UIDVALIDITY set here is never handed
        out again to a new mailbox of the account. Raises NOT_FOUND, PARAMS (0 or above
        2**32-1), NOT_POSSIBLE, TEMP."""
        ...


# --- audit log (management, issue #6) ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One management action as the audit log keeps it (``append_audit``/``list_audit``)."""

    ts: dt.datetime  # timezone-aware, UTC
    actor: str  # "os:<user>" for the operating-system administrator, else the account name
    origin: str  # "cli", "python", "rest 192.0.2.7", "poppassd 192.0.2.7", ...
    operation: str  # "account add"
    params: str  # a JSON object of the parameters, secrets replaced by "<redacted>"
    outcome: str  # "ok", or the ErrorKind name in lower case ("no_perm", "params", ...)
    message: str  # the public error text ("" when ok)


# --- per-account backup (optional, like SupportsReconstruct; issue #6) ------------------------


@dataclass(frozen=True, slots=True)
class ExportSummary:
    """What ``export_account`` wrote."""

    account: str
    mailboxes: int
    messages: int
    octets: int  # message octets in the archive
    archive_octets: int  # size of the tar file


#: Progress callback of export/restore: (done, total) in messages.
Progress = Callable[[int, int], None]


@runtime_checkable
class SupportsBackup(Protocol):
    """A backend that can write one account's tree to a tar archive and load one back."""

    async def export_account(
        self, account: AccountId, destination: Path, *, progress: Progress | None = None
    ) -> ExportSummary:
        """Write a consistent tar of the account (taken while deliveries go on: every message
        the archive's index lists is in the archive). Raises NOT_FOUND, TEMP."""
        ...

    async def restore_account(
        self, account: AccountId, source: Path, *, progress: Progress | None = None
    ) -> int:
        """Load an archive written by ``export_account`` into an account whose mailboxes are
        all empty; returns the number of messages placed. The caller reconstructs afterwards.
        Raises PARAMS for an unsafe or malformed archive (absolute or ``..`` paths, links,
        devices), NOT_POSSIBLE if the account holds mail; nothing is changed then."""
        ...


# --- web sessions and last logins (web pages, issue #7) ---------------------------------------

#: Logins ``record_logins`` keeps per account (protocol and client address pairs).
MAX_LOGINS_KEPT: Final = 50


@dataclass(frozen=True, slots=True)
class NewWebSession:
    """A web session as the web pages create it (the cookie value itself is never stored)."""

    id_hash: str  # sha256 hex of the cookie value
    account: AccountId
    csrf_token: str  # the synchronizer token of the session's forms
    created: dt.datetime  # timezone-aware, UTC
    address: str  # the client address it began from


@dataclass(frozen=True, slots=True)
class WebSession:
    """A stored web session with its account as it is now."""

    id_hash: str
    account: AccountInfo
    csrf_token: str
    created: dt.datetime
    last_seen: dt.datetime
    address: str


@dataclass(frozen=True, slots=True)
class LoginRecord:
    """A successful login: when an account last logged in over a protocol from an address."""

    account: AccountId
    protocol: str  # "imap", "pop3", "poppassd", "web", ...
    address: str
    at: dt.datetime  # timezone-aware, UTC


# --- API tokens (REST API, issue #6) ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NewApiToken:
    """A bearer token as ``token create`` makes it (the token itself is never stored)."""

    account: AccountId
    token_hash: str  # sha256 hex of the token
    label: str  # what the token is for, as given ("" for none)
    created: dt.datetime  # timezone-aware, UTC
    expires: dt.datetime | None  # None: never


@dataclass(frozen=True, slots=True)
class ApiToken:
    """A stored bearer token."""

    id: int
    account: AccountId
    account_name: str
    label: str
    created: dt.datetime  # timezone-aware, UTC (whole seconds)
    expires: dt.datetime | None


class BodyReader(Protocol):
    """Read access to one stored message file."""

    @property
    def size(self) -> int: ...

    def fileno(self) -> int:
        """For ``loop.sendfile`` on plain sockets (local backend); -1 if not file-backed."""
        ...

    async def read(self, offset: int, length: int) -> bytes:
        """Up to ``length`` octets from ``offset``; fewer only at the end of the message."""
        ...

    def chunks(self, offset: int, length: int, chunk: int = 65536) -> AsyncIterator[bytes]:
        """Stream a byte range in chunks, for FETCH BODY[] with backpressure."""
        ...


class ChangeWatcher(Protocol):
    async def wait(self) -> None:
        """Return when the watched mailbox may have changed since the last return (or since
        the watcher was created). Spurious wake-ups are allowed; lost ones are not."""
        ...


# --- moving a whole store (optional: Feature.STORE_IMPORT; msgstore store copy, issue #9) -----


@dataclass(frozen=True, slots=True)
class StoredWebSession:
    """A web session as ``msgstore store copy`` moves it: by account name, with the
    fingerprint of the password hash it began with (``credential``), so the copy ends on the
    same password change as the original and its cookie keeps working."""

    id_hash: str
    account_name: str
    credential: str
    csrf_token: str
    created: dt.datetime  # timezone-aware, UTC (whole seconds)
    last_seen: dt.datetime
    address: str


@dataclass(frozen=True, slots=True)
class ImportedMessage:
    """One message as ``SupportsStoreImport.import_messages`` places it: at the source's UID
    with the source's modseq, flags, internal date and UIDL."""

    staged: StagedMessage  # finished, staged by the destination
    uid: Uid
    modseq: ModSeq
    flags: Flags
    internal_date: dt.datetime
    uidl: str


@runtime_checkable
class SupportsStoreImport(Protocol):
    """A backend that ``msgstore store copy`` can fill with another store's state exactly:
    UIDs *and* modseqs, the expunge floor, keywords, and the site-wide tables with their
    timestamps and ids. Together with ``SupportsUidImport`` (UIDVALIDITY). Every method is
    idempotent or reports what was already there, so an interrupted copy is run again."""

    async def import_messages(
        self, account: AccountId, mailbox: MailboxId, messages: Sequence[ImportedMessage]
    ) -> None:
        """Add the messages (ascending UIDs, each at least the mailbox's UIDNEXT) in one
        durable transaction, with their own modseqs; UIDNEXT becomes the last UID + 1 and
        HIGHESTMODSEQ rises to the highest modseq. Quota usage is charged, never checked.
        Raises NOT_FOUND, PARAMS (out of range), NOT_POSSIBLE (a UID below UIDNEXT), TEMP."""
        ...

    async def import_mailbox_state(
        self,
        account: AccountId,
        mailbox: MailboxId,
        *,
        uidnext: Uid,
        highestmodseq: ModSeq,
        keywords: frozenset[str],
    ) -> None:
        """Raise UIDNEXT and HIGHESTMODSEQ to at least these (never lowers them), define the
        keywords, and raise the expunge floor to ``highestmodseq``: the source's expunge log
        is not copied, so ``changes_since`` an older modseq reports every UID below UIDNEXT
        without a message as expunged (RFC 7162 allows that). Raises NOT_FOUND, PARAMS."""
        ...

    async def import_forward(self, entry: ForwardEntry) -> None:
        """Create or overwrite the forwarding entry, keeping ``created``."""
        ...

    async def import_queued(self, entry: QueueEntry, data: bytes) -> bool:
        """Queue ``data`` with the entry's id, recipients, times, attempts and last error;
        False (nothing changed) when a message with that id is queued already."""
        ...

    async def export_api_tokens(self) -> list[tuple[ApiToken, str]]:
        """Every API token with its stored hash, by id."""
        ...

    async def import_api_token(self, token: NewApiToken, ident: int) -> bool:
        """Store a token under id ``ident`` (a new id if that one is taken); False (nothing
        changed) when its hash is stored already. Raises NOT_FOUND for an unknown account."""
        ...

    async def import_audit(self, records: Sequence[AuditRecord]) -> None:
        """Append records (oldest first) to the audit log in one transaction, keeping their
        timestamps."""
        ...

    async def set_account_created(self, account: AccountId, created: dt.datetime) -> None:
        """Set an account's creation time (whole seconds, UTC). Raises NOT_FOUND."""
        ...

    async def export_web_sessions(self) -> list[StoredWebSession]:
        """Every stored web session (also those whose password changed since), by id hash."""
        ...

    async def import_web_session(self, account: AccountId, session: StoredWebSession) -> bool:
        """Store a session of ``account`` with its id hash, credential fingerprint, CSRF token
        and times; False (nothing changed but ``last_seen``, which only rises) when that id
        hash is stored already. Raises NOT_FOUND for an unknown account."""
        ...

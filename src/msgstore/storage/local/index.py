"""index.db: one account's mailboxes, messages, ACL and quota, and its message files.

An :class:`AccountIndex` lives on the account's worker thread (``db.Worker``); every method
blocks and runs there. Write methods are one ``BEGIN IMMEDIATE`` transaction each; files are
placed inside it (``files.place_messages``) and removed after it commits, so a crash can leave
an orphan file (removed by :meth:`AccountIndex.recover` when the index is next opened) but
never a row without its file.

Every change takes ``highestmodseq + 1`` of its mailbox (RFC 7162), once per call: all messages
changed by one STORE share the new modseq.
"""

from __future__ import annotations

import bisect
import datetime as dt
import json
import logging
import os
import sqlite3
import time
from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from msgstore.core.acl import Rights, validate_identifier
from msgstore.core.errors import ErrorKind, StoreError
from msgstore.core.flags import SYSTEM_BITS, FlagOp, Flags, keywords_of, normalize_flags
from msgstore.core.ids import MAX_UID, AccountId, MailboxId, ModSeq, Uid, UidSet, UidValidity
from msgstore.core.names import INBOX, MailboxName, is_below, mailbox_name, parent_of
from msgstore.storage.base import (
    AppendResult,
    Changes,
    CopyResult,
    FlagUpdate,
    MailboxInfo,
    MailboxStatus,
    MaildropRow,
    MessageMeta,
    Snapshot,
    StoreFlagsResult,
    Want,
)
from msgstore.storage.local import files, schema
from msgstore.storage.local.db import (
    INDEX_DAMAGED,
    commit,
    connect,
    read_transaction,
    rollback,
    store_error,
    write_transaction,
)
from msgstore.storage.local.files import FileOps

log = logging.getLogger("msgstore.storage.local")

INDEX_FILE: Final = "index.db"
MAIL_DIR: Final = "mail"
#: Files recovery moved out of mail/ (no row, UID at or above UIDNEXT); reconstruct adopts them.
ORPHANS_DIR: Final = "orphans"
MESSAGE_DAMAGED: Final = "message file damaged; run msgstore reconstruct"
SEEN_BIT: Final = SYSTEM_BITS["\\Seen"]
DELETED_BIT: Final = SYSTEM_BITS["\\Deleted"]
#: RFC 6154 and RFC 8457 special-use attributes, canonical spelling by lower case.
SPECIAL_USE: Final = {
    a.lower(): a
    for a in (
        "\\All",
        "\\Archive",
        "\\Drafts",
        "\\Flagged",
        "\\Junk",
        "\\Sent",
        "\\Trash",
        "\\Important",
    )
}
#: Expunged UIDs remembered per mailbox (QRESYNC, ``changes_since``); the log is pruned back
#: to this many once it holds a quarter more. Older expunges are summarised by a floor modseq.
EXPUNGED_KEEP: Final = 10_000
#: Octets of a message read in the same thread hop that opens it (a POP3 RETR or small FETCH
#: BODY[] then needs no second hop).
BODY_HEAD_OCTETS: Final = 64 * 1024
#: The ``meta`` key holding a mailbox's expunge floor (highest modseq of a pruned expunge).
_FLOOR_KEY: Final = "expunged_floor.{}"
#: Above this many ranges fetch_meta scans the span once and filters, instead of one query each.
_MAX_RANGE_QUERIES: Final = 64
_BASE_COLUMNS: Final = (
    "m.uid, m.modseq, m.sysflags, m.keywords, m.internal_date, m.tz_offset, m.size, "
    "x.sha256, x.uidl"
)
_META_FROM: Final = "FROM messages m JOIN message_meta x ON x.id = m.meta_id"

#: A row as sqlite3 returns it (the edge where untyped data enters; typed right after).
Row = tuple[Any, ...]

#: Called after a commit with the mailbox that changed (wakes watchers in every process).
ChangeCallback = Callable[[AccountId, MailboxId], None]


@dataclass(frozen=True, slots=True)
class StagedFile:
    """A finished staged message as ``append`` needs it: its file and its parsed metadata."""

    path: Path
    size: int
    sha256: bytes
    envelope: bytes
    body: bytes
    bodystructure: bytes
    partmap: bytes
    headers_json: str
    meta_version: int


@dataclass(frozen=True, slots=True)
class AppendRequest:
    """One ``Backend.append`` call, queued for the group commit (``append_batch``)."""

    mailbox: MailboxId | None  # None: the account's INBOX (delivery), looked up here
    staged: StagedFile
    flags: Flags
    internal_date: dt.datetime
    uidl: str | None
    check_quota: bool
    #: Remove the staged file once the message is committed (its last use: one hop less).
    release: bool = False


@dataclass(frozen=True, slots=True)
class PreparedAppend:
    """An ``append_batch`` between its links and its commit (``AccountIndex.prepare_append``):
    the index's write transaction is open until ``commit_append`` or ``abort_append``."""

    requests: Sequence[AppendRequest]
    results: list[AppendResult | StoreError]  # one per request, final once committed
    placed: list[Path]  # the links made, removed if the transaction does not commit
    mailbox_dirs: list[Path]  # to fsync before the commit


@dataclass(frozen=True, slots=True)
class CopySource:
    """One message read for a copy into another account's tree."""

    uid: Uid
    sysflags: int
    keywords: tuple[str, ...]
    internal_date: int
    tz_offset: int
    size: int
    path: Path
    sha256: bytes
    uidl: str
    envelope: bytes | None
    bodystructure: bytes | None
    body: bytes | None
    partmap: bytes | None
    headers: str | None
    meta_version: int


def parse_special_use(text: str) -> str:
    """Canonical, space-separated special-use attributes; PARAMS for an unknown one."""
    out: list[str] = []
    for item in text.split():
        canon = SPECIAL_USE.get(item.lower())
        if canon is None:
            raise StoreError(ErrorKind.PARAMS, f"Unknown special-use attribute {item!r}")
        if canon not in out:
            out.append(canon)
    return " ".join(sorted(out))


def acl_identifier(raw: str) -> tuple[str, str]:
    """Validate an ACL identifier (core.acl); returns (identifier as stored, casefolded key).

    Identifiers name accounts, whose names compare case-insensitively, so one entry per
    casefolded identifier is kept.
    """
    ident = validate_identifier(raw)
    return ident, ident.casefold()


_TZ_CACHE: dict[int, dt.tzinfo] = {}


def _tz(offset_min: int) -> dt.tzinfo:
    tz = _TZ_CACHE.get(offset_min)
    if tz is None:
        tz = dt.UTC if offset_min == 0 else dt.timezone(dt.timedelta(minutes=offset_min))
        _TZ_CACHE[offset_min] = tz
    return tz


def date_to_storage(when: dt.datetime) -> tuple[int, int]:
    """(epoch seconds, minutes east of UTC) of an aware datetime; IMAP keeps seconds only."""
    offset = when.utcoffset()
    if offset is None:
        raise StoreError(ErrorKind.PARAMS, "Internal date must carry a time zone")
    return int(when.timestamp() // 1), int(offset.total_seconds() // 60)


def date_from_storage(seconds: int, offset_min: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(seconds, _tz(offset_min))


def _not_found_mailbox(what: object) -> StoreError:
    return StoreError(ErrorKind.NOT_FOUND, f"No such mailbox: {what}")


def _over_quota(which: str) -> StoreError:
    return StoreError(ErrorKind.OVER_QUOTA, f"Quota exceeded ({which})")


class AccountIndex:
    """One account's open index.db and its tree of message files."""

    def __init__(
        self,
        account: AccountId,
        tree: Path,
        ops: FileOps,
        on_change: ChangeCallback,
        *,
        defer: Callable[[Callable[[], None]], None] | None = None,
        expunged_keep: int = EXPUNGED_KEEP,
        recover: bool = True,
        any_thread: bool = False,
    ) -> None:
        """``recover=False`` (an open for deliveries only, ``LocalBackend.deliver_many``)
        skips :meth:`recover`; an append then checks its own target name instead (see
        :meth:`_append_one`), and the full recovery runs when the index is next opened for
        good. ``any_thread``: see ``db.connect``."""
        self.account = account
        self._recovered = recover
        self.defer: Callable[[Callable[[], None]], None] = defer or _run_now
        self.expunged_keep = max(1, expunged_keep)
        self.tree = tree
        self.mail_dir = tree / MAIL_DIR
        self.ops = ops
        self.faults = ops.faults
        self.on_change = on_change
        path = tree / INDEX_FILE
        self.path = path
        try:
            st = os.stat(path)
        except FileNotFoundError:
            if not tree.is_dir():
                raise StoreError(
                    ErrorKind.NOT_FOUND, f"No such account: #{account}", detail=str(tree)
                ) from None
            raise StoreError(
                ErrorKind.CORRUPTED, INDEX_DAMAGED, detail=f"{path} is missing"
            ) from None
        self._ident = (st.st_dev, st.st_ino)
        self.conn = connect(path, create=False, any_thread=any_thread)
        try:
            version = schema.schema_version(self.conn)
            if version != schema.INDEX_SCHEMA_VERSION:
                raise StoreError(
                    ErrorKind.CORRUPTED,
                    INDEX_DAMAGED,
                    detail=f"{path}: schema version {version}",
                )
            if schema.pending_migrations(self.conn, schema.INDEX_MIGRATIONS):
                with write_transaction(self.conn, None):
                    schema.apply_migrations(
                        self.conn, schema.pending_migrations(self.conn, schema.INDEX_MIGRATIONS)
                    )
            if recover:
                self.recover()
        except BaseException:
            self.conn.close()
            raise

    # lifecycle --------------------------------------------------------------------------------

    @staticmethod
    def build(
        tree: Path,
        ops: FileOps,
        *,
        account: AccountId,
        name: str,
        storage_limit_kib: int | None,
        message_limit: int | None,
        mailboxes: Sequence[tuple[MailboxName, str]] = (),
    ) -> None:
        """Create a new account tree: ``tree/``, ``tree/mail/`` and an initialised index.db.

        A leftover directory at ``tree`` (a create that crashed before its account row
        committed, in another process since this one opened: the id is handed out again) is
        removed first.
        """
        if tree.exists():
            log.warning("%s: removing the leftover of an account creation that failed", tree)
            files.remove_tree_quietly(tree)
        ops.ensure_dir(tree.parent)
        ops.mkdir(tree)
        ops.mkdir(tree / MAIL_DIR)
        specs = [(INBOX, "")]
        for raw, special in mailboxes:
            specs.append((mailbox_name(raw), parse_special_use(special)))
        conn = connect(tree / INDEX_FILE, create=True)
        try:
            with write_transaction(conn, ops.faults):
                schema.create_index_schema(
                    conn,
                    account_id=account,
                    account_name=name,
                    storage_limit_octets=None
                    if storage_limit_kib is None
                    else storage_limit_kib * 1024,
                    message_limit=message_limit,
                    first_uidvalidity=int(time.time()),
                )
                for mbname, special in specs:
                    _create_mailbox_rows(conn, mbname, special, exist_ok=True)
            inbox = conn.execute("SELECT id FROM mailboxes WHERE name = ?", (INBOX,)).fetchone()
        finally:
            conn.close()
        leave_empty_log_files(tree / INDEX_FILE)
        # INBOX's directory now rather than at the first delivery (a new inode is among the
        # slowest file system operations; a fan-out to new accounts would pay it for each).
        ops.mkdir(tree / MAIL_DIR / str(inbox[0]))
        ops.fsync_dir(tree / MAIL_DIR)
        ops.fsync_dir(tree)
        ops.fsync_dir(tree.parent)

    @staticmethod
    def is_valid_tree(tree: Path) -> bool:
        """True if ``tree`` holds an index.db of our schema (a tree worth keeping)."""
        path = tree / INDEX_FILE
        if not path.is_file():
            return False
        try:
            conn = connect(path, create=False)
        except sqlite3.Error:
            return False
        try:
            return schema.schema_version(conn) == schema.INDEX_SCHEMA_VERSION
        except sqlite3.Error:
            return False
        finally:
            conn.close()

    def is_stale(self) -> bool:
        """True when index.db was replaced or removed (reconstruct, account deletion)."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return True
        return (st.st_dev, st.st_ino) != self._ident

    def close(self) -> None:
        current = not self.is_stale()
        self.conn.close()
        if current:
            leave_empty_log_files(self.path)

    def recover(self) -> None:
        """Clear away what a crash can leave behind; never delete a file the index may not
        know yet.

        Runs under the write lock, so no append of another process is between its link and
        its commit. Removed: a message file without a row recorded as expunged (a crash
        between an expunge's commit and its unlink); the directory of a mailbox that was
        deleted (its id was handed out, but the row is gone). Moved aside to
        ``orphans/<mailbox>.<uid>.<time>`` (not deleted): a message file without a row whose
        UID is at or above UIDNEXT. A crash between link and commit leaves one, but so does
        an index older than its files -- a tree restored from a backup whose index.db was
        copied before the last messages arrived -- and the two cannot be told apart here;
        the UID must be freed for the next append either way. ``msgstore reconstruct``
        adopts the orphans that are not already in the mailbox and removes the rest.
        Anything else the index does not explain -- a file below UIDNEXT that was never
        expunged, a directory of an id never handed out, names that are not numbers -- is
        logged and kept for reconstruct.
        """
        with write_transaction(self.conn, None):
            boxes = dict(self.conn.execute("SELECT id, uidnext FROM mailboxes").fetchall())
            row = self.conn.execute(
                "SELECT seq FROM sqlite_sequence WHERE name = 'mailboxes'"
            ).fetchone()
            highest_id = max([row[0] if row else 0, *boxes])
            try:
                entries = os.listdir(self.mail_dir)
            except FileNotFoundError:
                return
            for entry in entries:
                if not entry.isdigit() or entry.startswith("0"):
                    continue
                mailbox = int(entry)
                if mailbox not in boxes:
                    if mailbox <= highest_id:
                        log.info("%s: removing the files of deleted mailbox %s", self.tree, entry)
                        files.remove_tree_quietly(self.mail_dir / entry)
                    else:
                        log.warning("%s: unknown mailbox directory mail/%s kept", self.tree, entry)
                    continue
                self._recover_mailbox(mailbox, boxes[mailbox])

    def _recover_mailbox(self, mailbox: int, uidnext: int) -> None:
        on_disk = files.message_uids_on_disk(self.mail_dir / str(mailbox))
        if not on_disk:
            return
        rows = {
            r[0]
            for r in self.conn.execute("SELECT uid FROM messages WHERE mailbox_id = ?", (mailbox,))
        }
        removed = kept = moved = 0
        for uid in on_disk:
            if uid in rows:
                continue
            expunged = self.conn.execute(
                "SELECT 1 FROM expunged WHERE mailbox_id = ? AND uid = ?", (mailbox, uid)
            ).fetchone()
            if expunged is not None:
                self.ops.remove_quietly(self._mail_path(mailbox, uid))
                removed += 1
            elif uid >= uidnext:
                orphans = self.tree / ORPHANS_DIR
                target = orphans / f"{mailbox}.{uid}.{time.time_ns()}"
                try:
                    self.ops.ensure_dir(orphans)
                    self.ops.rename(self._mail_path(mailbox, uid), target)
                    self.ops.fsync_dir(orphans)
                    self.ops.fsync_dir(self.mail_dir / str(mailbox))
                except OSError as exc:  # left in place: the next append at this UID replaces it
                    log.error("%s: cannot move orphan %s aside: %s", self.tree, target.name, exc)
                    continue
                moved += 1
            else:
                kept += 1
        if removed:
            log.info("%s: removed %d orphan file(s) of mailbox %d", self.tree, removed, mailbox)
        if moved:
            log.warning(
                "%s: %d file(s) of mailbox %d at or above UIDNEXT without a row moved to "
                "%s/ (a crash, or an index older than its files); msgstore reconstruct "
                "adopts them",
                self.tree,
                moved,
                mailbox,
                ORPHANS_DIR,
            )
        if kept:
            log.warning(
                "%s: %d file(s) of mailbox %d have no index row; kept for msgstore reconstruct",
                self.tree,
                kept,
                mailbox,
            )

    # helpers ----------------------------------------------------------------------------------

    def _mailbox(self, mailbox: int) -> tuple[int, int, int, int]:
        """(uidvalidity, uidnext, highestmodseq, recent_uid), or NOT_FOUND."""
        row = self.conn.execute(
            "SELECT uidvalidity, uidnext, highestmodseq, recent_uid FROM mailboxes WHERE id = ?",
            (mailbox,),
        ).fetchone()
        if row is None:
            raise _not_found_mailbox(f"#{mailbox}")
        return row[0], row[1], row[2], row[3]

    def _mailbox_by_name(self, name: MailboxName) -> tuple[int, str, int, str] | None:
        row = self.conn.execute(
            "SELECT id, name, uidvalidity, special_use FROM mailboxes WHERE name = ?", (name,)
        ).fetchone()
        return None if row is None else (row[0], row[1], row[2], row[3])

    def _info(self, row: tuple[int, str, int, str]) -> MailboxInfo:
        ident, name, uidvalidity, special = row
        subscribed = (
            self.conn.execute("SELECT 1 FROM subscriptions WHERE name = ?", (name,)).fetchone()
            is not None
        )
        return MailboxInfo(
            id=MailboxId(ident),
            name=MailboxName(name),
            uidvalidity=UidValidity(uidvalidity),
            special_use=frozenset(special.split()),
            subscribed=subscribed,
        )

    def _mail_path(self, mailbox: int, uid: int) -> Path:
        return self.mail_dir / str(mailbox) / str(uid)

    def _keyword_map(self, mailbox: int) -> dict[str, str]:
        """The mailbox's keyword spellings by lower case (the first spelling used sticks)."""
        return {
            r[0].lower(): r[0]
            for r in self.conn.execute(
                "SELECT keyword FROM mailbox_keywords WHERE mailbox_id = ?", (mailbox,)
            )
        }

    def _store_keywords(
        self, mailbox: int, known: dict[str, str], keywords: Iterable[str]
    ) -> tuple[str, ...]:
        """Map keywords to the mailbox's spelling, registering new ones; sorted."""
        out: set[str] = set()
        for kw in keywords:
            spelled = known.get(kw.lower())
            if spelled is None:
                spelled = kw
                known[kw.lower()] = kw
                self.conn.execute(
                    "INSERT OR IGNORE INTO mailbox_keywords(mailbox_id, keyword) VALUES (?, ?)",
                    (mailbox, kw),
                )
            out.add(spelled)
        return tuple(sorted(out))

    def _reserve(self, octets: int, messages: int, check: bool) -> None:
        """Charge quota in the caller's transaction; OVER_QUOTA if a limit would be passed."""
        cur = self.conn.execute(
            "UPDATE quota SET storage_used_octets = storage_used_octets + :n, "
            "messages_used = messages_used + :m "
            "WHERE id = 1 AND (:force OR ("
            "(storage_limit_octets IS NULL OR storage_used_octets + :n <= storage_limit_octets)"
            " AND (message_limit IS NULL OR messages_used + :m <= message_limit)))",
            {"n": octets, "m": messages, "force": int(not check)},
        )
        if cur.rowcount == 1:
            return
        used, _, limit, _ = self.conn.execute(
            "SELECT storage_used_octets, messages_used, storage_limit_octets, message_limit "
            "FROM quota WHERE id = 1"
        ).fetchone()
        if limit is not None and used + octets > limit:
            raise _over_quota("storage")
        raise _over_quota("messages")

    def _release(self, octets: int, messages: int) -> None:
        self.conn.execute(
            "UPDATE quota SET storage_used_octets = max(0, storage_used_octets - ?), "
            "messages_used = max(0, messages_used - ?) WHERE id = 1",
            (octets, messages),
        )

    def _rows_in(self, sql: str, mailbox: int, uids: UidSet | None) -> Iterator[Row]:
        """Run ``sql`` (ending in a WHERE clause on ``m``, with ``{uids}`` for the UID filter
        and ``{order}``) once per UID range, or once over the whole span for many ranges."""
        if uids is None:
            yield from self.conn.execute(sql.format(uids="", order="ORDER BY m.uid"), (mailbox,))
            return
        if not uids:
            return
        if len(uids.ranges) <= _MAX_RANGE_QUERIES:
            query = sql.format(uids="AND m.uid BETWEEN ? AND ?", order="ORDER BY m.uid")
            for lo, hi in uids.ranges:
                yield from self.conn.execute(query, (mailbox, lo, hi))
            return
        query = sql.format(uids="AND m.uid BETWEEN ? AND ?", order="ORDER BY m.uid")
        lo, hi = uids.ranges[0][0], uids.ranges[-1][1]
        for row in self.conn.execute(query, (mailbox, lo, hi)):
            if row[0] in uids:
                yield row

    def _changed(self, *mailboxes: int) -> None:
        for mailbox in dict.fromkeys(mailboxes):
            self.on_change(self.account, MailboxId(mailbox))

    # mailboxes --------------------------------------------------------------------------------

    def create_mailbox(self, name: MailboxName, special_use: str) -> MailboxInfo:
        name = mailbox_name(name)
        special = parse_special_use(special_use)
        with write_transaction(self.conn, self.faults):
            if self._mailbox_by_name(name) is not None:
                raise StoreError(ErrorKind.EXISTS, f"Mailbox already exists: {name}")
            _create_mailbox_rows(self.conn, name, special, exist_ok=False)
            row = self._mailbox_by_name(name)
            assert row is not None
            return self._info(row)

    def get_mailbox(self, name: MailboxName) -> MailboxInfo:
        name = mailbox_name(name)
        with read_transaction(self.conn):
            row = self._mailbox_by_name(name)
            if row is None:
                raise _not_found_mailbox(name)
            return self._info(row)

    def list_mailboxes(self) -> list[MailboxInfo]:
        rows = self.conn.execute(
            "SELECT m.id, m.name, m.uidvalidity, m.special_use, s.name IS NOT NULL "
            "FROM mailboxes m LEFT JOIN subscriptions s ON s.name = m.name"
        ).fetchall()
        out = [
            MailboxInfo(
                id=MailboxId(r[0]),
                name=MailboxName(r[1]),
                uidvalidity=UidValidity(r[2]),
                special_use=frozenset(r[3].split()),
                subscribed=bool(r[4]),
            )
            for r in rows
        ]
        out.sort(key=lambda m: m.name)
        return out

    def delete_mailbox(self, name: MailboxName) -> MailboxId:
        name = mailbox_name(name)
        if name == INBOX:
            raise StoreError(ErrorKind.NOT_POSSIBLE, "INBOX cannot be deleted")
        with write_transaction(self.conn, self.faults):
            row = self._mailbox_by_name(name)
            if row is None:
                raise _not_found_mailbox(name)
            mailbox = row[0]
            child = self.conn.execute(
                "SELECT 1 FROM mailboxes WHERE substr(name, 1, ?) = ? LIMIT 1",
                (len(name) + 1, name + "/"),
            ).fetchone()
            if child is not None:
                raise StoreError(
                    ErrorKind.HAS_CHILDREN, f"Mailbox {name} has children; delete them first"
                )
            count, octets = self.conn.execute(
                "SELECT count(*), coalesce(sum(size), 0) FROM messages WHERE mailbox_id = ?",
                (mailbox,),
            ).fetchone()
            self._release(octets, count)
            self.conn.execute(
                "DELETE FROM message_meta WHERE id IN "
                "(SELECT meta_id FROM messages WHERE mailbox_id = ?)",
                (mailbox,),
            )
            self.conn.execute("DELETE FROM messages WHERE mailbox_id = ?", (mailbox,))
            self.conn.execute("DELETE FROM expunged WHERE mailbox_id = ?", (mailbox,))
            self.conn.execute("DELETE FROM meta WHERE key = ?", (_FLOOR_KEY.format(mailbox),))
            self.conn.execute("DELETE FROM mailbox_keywords WHERE mailbox_id = ?", (mailbox,))
            self.conn.execute("DELETE FROM acl WHERE mailbox_id = ?", (mailbox,))
            self.conn.execute("DELETE FROM mailboxes WHERE id = ?", (mailbox,))
        files.remove_tree_quietly(self.mail_dir / str(mailbox))
        self._changed(mailbox)
        return MailboxId(mailbox)

    def rename_mailbox(self, old: MailboxName, new: MailboxName) -> None:
        old, new = mailbox_name(old), mailbox_name(new)
        if old == INBOX:
            self._rename_inbox(new)
            return
        with write_transaction(self.conn, self.faults):
            if self._mailbox_by_name(old) is None:
                raise _not_found_mailbox(old)
            if new == INBOX or self._mailbox_by_name(new) is not None:
                raise StoreError(ErrorKind.EXISTS, f"Mailbox already exists: {new}")
            if is_below(new, old):
                raise StoreError(
                    ErrorKind.NOT_POSSIBLE, f"Cannot rename {old} into its own subtree"
                )
            moving = self.conn.execute(
                "SELECT id, name FROM mailboxes WHERE name = ? OR substr(name, 1, ?) = ?",
                (old, len(old) + 1, old + "/"),
            ).fetchall()
            renames = [(ident, MailboxName(new + name[len(old) :])) for ident, name in moving]
            for _, target in renames:
                mailbox_name(target)  # the new names must be valid too (length, depth)
                if self._mailbox_by_name(target) is not None:
                    raise StoreError(ErrorKind.EXISTS, f"Mailbox already exists: {target}")
            parent = parent_of(new)
            if parent is not None and self._mailbox_by_name(parent) is None:
                _create_mailbox_rows(self.conn, parent, "", exist_ok=True)
            self.conn.executemany(
                "UPDATE mailboxes SET name = ? WHERE id = ?",
                [(target, ident) for ident, target in renames],
            )
            subs = self.conn.execute(
                "SELECT name FROM subscriptions WHERE name = ? OR substr(name, 1, ?) = ?",
                (old, len(old) + 1, old + "/"),
            ).fetchall()
            for (sub,) in subs:
                self.conn.execute("DELETE FROM subscriptions WHERE name = ?", (sub,))
                self.conn.execute(
                    "INSERT OR IGNORE INTO subscriptions(name) VALUES (?)",
                    (new + sub[len(old) :],),
                )

    def _rename_inbox(self, new: MailboxName) -> None:
        """RFC 9051 §6.3.6: move every INBOX message to a new mailbox ``new``; INBOX stays,
        empty, and its children stay where they are. One transaction; files are linked to
        their new names before the commit and the old names removed after it."""
        placed: list[Path] = []
        try:
            with write_transaction(self.conn, self.faults):
                if self._mailbox_by_name(new) is not None or new == INBOX:
                    raise StoreError(ErrorKind.EXISTS, f"Mailbox already exists: {new}")
                inbox_row = self._mailbox_by_name(INBOX)
                assert inbox_row is not None
                inbox = inbox_row[0]
                _create_mailbox_rows(self.conn, new, "", exist_ok=False)
                target_row = self._mailbox_by_name(new)
                assert target_row is not None
                placed, moved = self._move_rows(inbox, None, target_row[0])
        except BaseException:
            for path in placed:
                self.ops.remove_quietly(path)
            raise
        for uid in moved:
            self.ops.remove_quietly(self._mail_path(inbox, uid))
        self._changed(inbox)

    def set_subscribed(self, name: MailboxName, on: bool) -> None:
        name = mailbox_name(name)
        with write_transaction(self.conn, self.faults):
            if on:
                self.conn.execute("INSERT OR IGNORE INTO subscriptions(name) VALUES (?)", (name,))
            else:
                self.conn.execute("DELETE FROM subscriptions WHERE name = ?", (name,))

    def list_subscriptions(self) -> list[MailboxName]:
        names = [MailboxName(r[0]) for r in self.conn.execute("SELECT name FROM subscriptions")]
        names.sort()
        return names

    def set_special_use(self, name: MailboxName, special_use: str) -> None:
        name = mailbox_name(name)
        special = parse_special_use(special_use)
        with write_transaction(self.conn, self.faults):
            cur = self.conn.execute(
                "UPDATE mailboxes SET special_use = ? WHERE name = ?", (special, name)
            )
            if cur.rowcount == 0:
                raise _not_found_mailbox(name)

    def mailbox_status(self, mailbox: MailboxId) -> MailboxStatus:
        with read_transaction(self.conn):
            uidvalidity, uidnext, highestmodseq, recent_uid = self._mailbox(mailbox)
            count, octets = self.conn.execute(
                "SELECT count(*), coalesce(sum(size), 0) FROM messages WHERE mailbox_id = ?",
                (mailbox,),
            ).fetchone()
            (unseen,) = self.conn.execute(
                "SELECT count(*) FROM messages WHERE mailbox_id = ? AND sysflags & 1 = 0",
                (mailbox,),
            ).fetchone()
            (deleted,) = self.conn.execute(
                "SELECT count(*) FROM messages WHERE mailbox_id = ? AND sysflags & 8 != 0",
                (mailbox,),
            ).fetchone()
            (recent,) = self.conn.execute(
                "SELECT count(*) FROM messages WHERE mailbox_id = ? AND uid >= ?",
                (mailbox, recent_uid),
            ).fetchone()
        return MailboxStatus(
            id=mailbox,
            messages=count,
            recent=recent,
            unseen=unseen,
            uidnext=Uid(uidnext),
            uidvalidity=UidValidity(uidvalidity),
            highestmodseq=ModSeq(highestmodseq),
            size_octets=octets,
            deleted=deleted,
        )

    # messages ---------------------------------------------------------------------------------

    def append_batch(self, requests: Sequence[AppendRequest]) -> list[AppendResult | StoreError]:
        """Group commit: append every request in one ``BEGIN IMMEDIATE`` transaction.

        Concurrent appends to this index are queued by the backend and arrive here together
        (one request when there is no concurrency). Each request reserves quota, takes the
        next UID of its mailbox (and its own modseq) and links its fsynced staged file inside
        a savepoint; a request that fails (quota, a vanished mailbox, a link error) is rolled
        back to its savepoint, its link removed, and gets its own error while the others go
        on. Then every mailbox directory that received a link is fsynced once, and the
        transaction commits once: for every message of the batch the order stays fsync(file)
        -> link -> fsync(dir) -> COMMIT -> return (acknowledge). A failure of a directory
        fsync or of the commit fails the whole batch and removes its links.

        The three steps are also callable one by one (:meth:`prepare_append`, then fsync of
        ``mailbox_dirs``, then :meth:`commit_append` or :meth:`abort_append`), so that a
        fan-out can link into many indexes, fsync all their directories, then commit them
        all (``LocalBackend.deliver_many``).
        """
        prepared = self.prepare_append(requests)
        try:
            for mailbox_dir in prepared.mailbox_dirs:
                self.ops.fsync_dir(mailbox_dir)
        except BaseException:
            self.abort_append(prepared)
            raise
        return self.commit_append(prepared)

    def prepare_append(self, requests: Sequence[AppendRequest]) -> PreparedAppend:
        """``BEGIN IMMEDIATE`` and every request's rows and link (see :meth:`append_batch`);
        the transaction stays open. Nothing is durable yet: the caller fsyncs
        ``mailbox_dirs``, then calls :meth:`commit_append` (or :meth:`abort_append`). If this
        raises, the transaction is rolled back and the links are removed."""
        results: list[AppendResult | StoreError] = []
        placed: list[Path] = []
        mailbox_dirs: dict[Path, None] = {}
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            for request in requests:
                self.conn.execute("SAVEPOINT append_one")
                mine: list[Path] = []
                try:
                    result = self._append_one(request, mine)
                except (StoreError, OSError) as exc:
                    self.conn.execute("ROLLBACK TO append_one")
                    self.conn.execute("RELEASE append_one")
                    for path in mine:
                        self.ops.remove_quietly(path)
                    err = store_error(exc, damaged_text=INDEX_DAMAGED)
                    if err.kind is ErrorKind.CORRUPTED:
                        raise
                    if isinstance(exc, OSError):
                        log.warning("%s: append failed: %s", self.tree, err.detail)
                    results.append(err)
                    continue
                self.conn.execute("RELEASE append_one")
                results.append(result)
                placed.extend(mine)
                mailbox_dirs[self.mail_dir / str(result.mailbox)] = None
        except BaseException:
            self.abort_append(PreparedAppend(requests, results, placed, []))
            raise
        return PreparedAppend(requests, results, placed, list(mailbox_dirs))

    def commit_append(self, prepared: PreparedAppend) -> list[AppendResult | StoreError]:
        """Commit what :meth:`prepare_append` left open, once its ``mailbox_dirs`` are
        fsynced; then notify and remove the released temp files. If the commit fails, it is
        rolled back and the links removed (:meth:`abort_append`), and the error raised."""
        try:
            commit(self.conn, self.faults)
        except BaseException:
            self.abort_append(prepared)
            raise
        results = prepared.results
        self._changed(*(r.mailbox for r in results if isinstance(r, AppendResult)))
        for request, outcome in zip(prepared.requests, results, strict=True):
            if request.release and isinstance(outcome, AppendResult):
                self.ops.remove_quietly(request.staged.path)  # committed: the temp file is spare
        return results

    def abort_append(self, prepared: PreparedAppend) -> None:
        """Roll back what :meth:`prepare_append` left open and remove its links."""
        rollback(self.conn)
        for path in prepared.placed:
            self.ops.remove_quietly(path)

    def _append_one(self, request: AppendRequest, placed: list[Path]) -> AppendResult:
        """One message of a batch, inside the caller's transaction and savepoint; its link
        goes to ``placed`` (the directory fsync is the caller's)."""
        staged = request.staged
        if request.mailbox is not None:
            mailbox = request.mailbox
        else:
            inbox = self._mailbox_by_name(INBOX)
            if inbox is None:
                raise _not_found_mailbox(INBOX)
            mailbox = MailboxId(inbox[0])
        flags = normalize_flags(request.flags)
        seconds, offset = date_to_storage(request.internal_date)
        bits = sum(SYSTEM_BITS.get(f, 0) for f in flags)
        uidvalidity, uid, highestmodseq, _ = self._mailbox(mailbox)
        if uid > MAX_UID:
            raise StoreError(ErrorKind.LIMIT, "Mailbox has run out of UIDs")
        if not self._recovered and _exists(self._mail_path(mailbox, uid)):
            # Opened without recovery: a file at the new UID (a crash between link and
            # commit, or a tree restored with an older index) is moved aside as recovery
            # would have, never replaced.
            self._recover_mailbox(mailbox, uid)
        self._reserve(staged.size, 1, request.check_quota)
        modseq = highestmodseq + 1
        placed.extend(
            files.place_messages(
                self.ops, [(staged.path, uid)], self.mail_dir / str(mailbox), sync=False
            )
        )
        given_keywords = keywords_of(flags)
        keywords = (
            self._store_keywords(mailbox, self._keyword_map(mailbox), given_keywords)
            if given_keywords
            else ()
        )
        uidl = request.uidl
        cur = self.conn.execute(
            "INSERT INTO message_meta(sha256, uidl, meta_version, envelope, "
            "bodystructure, body, partmap, headers) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                staged.sha256,
                uidl if uidl is not None else default_uidl(uidvalidity, uid),
                staged.meta_version,
                staged.envelope,
                staged.bodystructure,
                staged.body,
                staged.partmap,
                staged.headers_json,
            ),
        )
        self.conn.execute(
            "INSERT INTO messages(mailbox_id, uid, modseq, sysflags, keywords, "
            "internal_date, tz_offset, size, meta_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                mailbox,
                uid,
                modseq,
                bits,
                " ".join(keywords) or None,
                seconds,
                offset,
                staged.size,
                cur.lastrowid,
            ),
        )
        self.conn.execute(
            "UPDATE mailboxes SET uidnext = ?, highestmodseq = ? WHERE id = ?",
            (uid + 1, modseq, mailbox),
        )
        return AppendResult(
            account=self.account,
            mailbox=mailbox,
            uidvalidity=UidValidity(uidvalidity),
            uid=Uid(uid),
            modseq=ModSeq(modseq),
        )

    def snapshot(self, mailbox: MailboxId, claim_recent: bool) -> Snapshot:
        txn = (
            write_transaction(self.conn, self.faults)
            if claim_recent
            else read_transaction(self.conn)
        )
        with txn:
            uidvalidity, uidnext, highestmodseq, recent_uid = self._mailbox(mailbox)
            # One string instead of 100,000 row tuples: several times faster. The subquery
            # walks the (mailbox_id, uid) primary key, so the UIDs arrive ascending.
            (joined,) = self.conn.execute(
                "SELECT group_concat(uid) FROM "
                "(SELECT uid FROM messages WHERE mailbox_id = ? ORDER BY uid)",
                (mailbox,),
            ).fetchone()
            uids = array("I", map(int, joined.split(","))) if joined else array("I")
            (first_unseen,) = self.conn.execute(
                "SELECT min(uid) FROM messages WHERE mailbox_id = ? AND sysflags & 1 = 0",
                (mailbox,),
            ).fetchone()
            keywords = frozenset(
                r[0]
                for r in self.conn.execute(
                    "SELECT keyword FROM mailbox_keywords WHERE mailbox_id = ?", (mailbox,)
                )
            )
            recent: frozenset[Uid] = frozenset()
            if claim_recent and recent_uid < uidnext:
                start = bisect.bisect_left(uids, recent_uid)
                recent = frozenset(Uid(u) for u in uids[start:])
                self.conn.execute(
                    "UPDATE mailboxes SET recent_uid = ? WHERE id = ?", (uidnext, mailbox)
                )
        return Snapshot(
            id=mailbox,
            uidvalidity=UidValidity(uidvalidity),
            uidnext=Uid(uidnext),
            highestmodseq=ModSeq(highestmodseq),
            uids=uids,
            first_unseen=None if first_unseen is None else Uid(first_unseen),
            recent_uids=recent,
            keywords=keywords,
        )

    def fetch_meta(self, mailbox: MailboxId, uids: UidSet, want: Want) -> list[MessageMeta]:
        extra: list[str] = []
        for flag, column in (
            (Want.ENVELOPE, "envelope"),
            (Want.BODY, "body"),
            (Want.BODYSTRUCTURE, "bodystructure"),
            (Want.PARTMAP, "partmap"),
            (Want.HEADERS, "headers"),
        ):
            if flag in want:
                extra.append(f"x.{column}")
        columns = ", ".join([_BASE_COLUMNS, *extra])
        sql = f"SELECT {columns} {_META_FROM} WHERE m.mailbox_id = ? {{uids}} {{order}}"
        with read_transaction(self.conn):
            self._mailbox(mailbox)
            rows = list(self._rows_in(sql, mailbox, uids))
        return _metas(rows, want)

    def fetch_flags(self, mailbox: MailboxId, uids: UidSet) -> list[tuple[int, int, Flags]]:
        """``(uid, modseq, flags)`` rows (``storage.base.SupportsFlagScan``): one table, no
        join and no ``MessageMeta``, about a fifth of ``fetch_meta(Want.FLAGS)``'s time."""
        sql = (
            "SELECT m.uid, m.modseq, m.sysflags, m.keywords FROM messages m "
            "WHERE m.mailbox_id = ? {uids} {order}"
        )
        with read_transaction(self.conn):
            self._mailbox(mailbox)
            rows = list(self._rows_in(sql, mailbox, uids))
        cache: dict[tuple[int, str | None], Flags] = {}
        out: list[tuple[int, int, Flags]] = []
        append = out.append
        for uid, modseq, bits, keywords in rows:
            key = (bits, keywords)
            flags = cache.get(key)
            if flags is None:
                flags = cache[key] = _flags_from_storage(bits, keywords)
            append((uid, modseq, flags))
        return out

    def list_maildrop(self, mailbox: MailboxId) -> list[MaildropRow]:
        """``Backend.list_maildrop``: one statement, the rows as sqlite3 builds them but for
        the \\Seen bit made a bool."""
        with read_transaction(self.conn):
            self._mailbox(mailbox)
            rows = self.conn.execute(
                f"SELECT m.uid, m.size, x.uidl, m.sysflags & {SEEN_BIT}, m.internal_date "
                f"{_META_FROM} WHERE m.mailbox_id = ? ORDER BY m.uid",
                (mailbox,),
            ).fetchall()
        return [(uid, size, uidl, seen != 0, date) for uid, size, uidl, seen, date in rows]

    def open_body(self, mailbox: MailboxId, uid: Uid) -> tuple[int, int, bytes]:
        """(file descriptor, size, first octets) of a message; the caller closes the
        descriptor. Up to ``BODY_HEAD_OCTETS`` are read here, in the same thread hop."""
        row = self.conn.execute(
            "SELECT size FROM messages WHERE mailbox_id = ? AND uid = ?", (mailbox, uid)
        ).fetchone()
        if row is None:
            _, uidnext, _, _ = self._mailbox(mailbox)
            if uid < uidnext:
                raise StoreError(ErrorKind.EXPUNGED, f"Message {uid} has been expunged")
            raise StoreError(ErrorKind.NOT_FOUND, f"No message with UID {uid}")
        size: int = row[0]
        path = self._mail_path(mailbox, uid)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            still = self.conn.execute(
                "SELECT 1 FROM messages WHERE mailbox_id = ? AND uid = ?", (mailbox, uid)
            ).fetchone()
            if still is None:  # expunged (and unlinked) between the two statements
                raise StoreError(ErrorKind.EXPUNGED, f"Message {uid} has been expunged") from None
            log.error("%s: message file missing for UID %d", path.parent, uid)
            raise StoreError(
                ErrorKind.CORRUPTED, MESSAGE_DAMAGED, detail=f"{path} is missing"
            ) from None
        actual = os.fstat(fd).st_size
        if actual != size:
            os.close(fd)
            log.error("%s: %d octets on disk, %d recorded", path, actual, size)
            raise StoreError(
                ErrorKind.CORRUPTED,
                MESSAGE_DAMAGED,
                detail=f"{path}: {actual} octets on disk, {size} recorded",
            )
        try:
            head = os.pread(fd, min(size, BODY_HEAD_OCTETS), 0)
        except BaseException:
            os.close(fd)
            raise
        return fd, size, head

    def read_bodies(self, mailbox: MailboxId, uids: Sequence[Uid]) -> dict[Uid, bytes]:
        """Whole files of the existing messages among ``uids`` (``SupportsBodyBatch``): one
        query, then open-read-close each. A file that is missing or not of the recorded size
        is left out; ``open_body`` on it reports (and logs) the damage."""
        if not uids:
            return {}
        marks = ",".join("?" * len(uids))
        rows = self.conn.execute(
            f"SELECT uid, size FROM messages WHERE mailbox_id = ? AND uid IN ({marks})",  # noqa: S608
            (mailbox, *uids),
        ).fetchall()
        out: dict[Uid, bytes] = {}
        folder = f"{self._mail_path(mailbox, 0).parent}{os.sep}"
        for uid, size in rows:
            try:
                fd = os.open(f"{folder}{uid}", os.O_RDONLY | os.O_CLOEXEC)
            except OSError:  # gone or unreadable: open_body tells which
                continue
            try:
                data = os.pread(fd, size + 1, 0)
            except OSError:
                continue
            finally:
                os.close(fd)
            if len(data) == size:
                out[Uid(uid)] = data
        return out

    def store_flags(
        self,
        mailbox: MailboxId,
        uids: UidSet,
        op: FlagOp,
        flags: Flags,
        unchanged_since: ModSeq | None,
    ) -> StoreFlagsResult:
        given = normalize_flags(flags)
        given_bits = sum(SYSTEM_BITS.get(f, 0) for f in given)
        updates: list[tuple[int, int, str | None]] = []  # (uid, bits, keywords)
        modified: list[int] = []
        with write_transaction(self.conn, self.faults):
            _, _, highestmodseq, _ = self._mailbox(mailbox)
            known = self._keyword_map(mailbox)
            given_kw = set(self._store_keywords(mailbox, known, keywords_of(given)))
            sql = (
                "SELECT m.uid, m.modseq, m.sysflags, m.keywords FROM messages m "
                "WHERE m.mailbox_id = ? {uids} {order}"
            )
            for uid, modseq, bits, kw_text in self._rows_in(sql, mailbox, uids):
                if unchanged_since is not None and modseq > unchanged_since:
                    modified.append(uid)
                    continue
                current = set(kw_text.split(" ")) if kw_text else set()
                if op is FlagOp.ADD:
                    new_bits, new_kw = bits | given_bits, current | given_kw
                elif op is FlagOp.REMOVE:
                    new_bits, new_kw = bits & ~given_bits, current - given_kw
                else:
                    new_bits, new_kw = given_bits, given_kw
                if new_bits == bits and new_kw == current:
                    continue
                updates.append((uid, new_bits, " ".join(sorted(new_kw)) or None))
            new_modseq = highestmodseq + 1
            if updates:
                self.conn.executemany(
                    "UPDATE messages SET modseq = ?, sysflags = ?, keywords = ? "
                    "WHERE mailbox_id = ? AND uid = ?",
                    [(new_modseq, b, k, mailbox, u) for u, b, k in updates],
                )
                self.conn.execute(
                    "UPDATE mailboxes SET highestmodseq = ? WHERE id = ?", (new_modseq, mailbox)
                )
        if updates:
            self._changed(mailbox)
        return StoreFlagsResult(
            updated=tuple(
                FlagUpdate(Uid(u), ModSeq(new_modseq), _flags_from_storage(b, k))
                for u, b, k in updates
            ),
            modified=UidSet.from_uids(modified),
        )

    def read_for_copy(self, mailbox: MailboxId, uids: UidSet) -> list[CopySource]:
        sql = (
            "SELECT m.uid, m.sysflags, m.keywords, m.internal_date, m.tz_offset, m.size, "
            "x.sha256, x.uidl, x.envelope, x.bodystructure, x.body, x.partmap, x.headers, "
            f"x.meta_version {_META_FROM} WHERE m.mailbox_id = ? {{uids}} {{order}}"
        )
        with read_transaction(self.conn):
            self._mailbox(mailbox)
            rows = list(self._rows_in(sql, mailbox, uids))
        out: list[CopySource] = []
        for r in rows:
            uid, bits, kw, seconds, offset, size, sha, uidl, env, bs, body, pm, hdr, ver = r
            out.append(
                CopySource(
                    uid=Uid(uid),
                    sysflags=bits,
                    keywords=tuple(kw.split(" ")) if kw else (),
                    internal_date=seconds,
                    tz_offset=offset,
                    size=size,
                    path=self._mail_path(mailbox, uid),
                    sha256=sha,
                    uidl=uidl,
                    envelope=env,
                    bodystructure=bs,
                    body=body,
                    partmap=pm,
                    headers=hdr,
                    meta_version=ver,
                )
            )
        return out

    def insert_copies(
        self, mailbox: MailboxId, sources: Sequence[CopySource], check_quota: bool
    ) -> CopyResult:
        """The destination half of a copy from another tree (files are hard-linked)."""
        placed: list[Path] = []
        pairs: list[tuple[Uid, Uid]] = []
        try:
            with write_transaction(self.conn, self.faults):
                uidvalidity, uidnext, highestmodseq, _ = self._mailbox(mailbox)
                present = [s for s in sources if _exists(s.path)]
                if not present:
                    return CopyResult(UidValidity(uidvalidity), (), ())
                if uidnext + len(present) - 1 > MAX_UID:
                    raise StoreError(ErrorKind.LIMIT, "Mailbox has run out of UIDs")
                self._reserve(sum(s.size for s in present), len(present), check_quota)
                modseq = highestmodseq + 1
                placed = files.place_messages(
                    self.ops,
                    [(s.path, uidnext + i) for i, s in enumerate(present)],
                    self.mail_dir / str(mailbox),
                )
                known = self._keyword_map(mailbox)
                for i, s in enumerate(present):
                    uid = uidnext + i
                    keywords = self._store_keywords(mailbox, known, s.keywords)
                    cur = self.conn.execute(
                        "INSERT INTO message_meta(sha256, uidl, meta_version, envelope, "
                        "bodystructure, body, partmap, headers) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        (
                            s.sha256,
                            default_uidl(uidvalidity, uid),
                            s.meta_version,
                            s.envelope,
                            s.bodystructure,
                            s.body,
                            s.partmap,
                            s.headers,
                        ),
                    )
                    self.conn.execute(
                        "INSERT INTO messages(mailbox_id, uid, modseq, sysflags, keywords, "
                        "internal_date, tz_offset, size, meta_id) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (
                            mailbox,
                            uid,
                            modseq,
                            s.sysflags,
                            " ".join(keywords) or None,
                            s.internal_date,
                            s.tz_offset,
                            s.size,
                            cur.lastrowid,
                        ),
                    )
                    pairs.append((s.uid, Uid(uid)))
                self.conn.execute(
                    "UPDATE mailboxes SET uidnext = ?, highestmodseq = ? WHERE id = ?",
                    (uidnext + len(present), modseq, mailbox),
                )
        except BaseException:
            for path in placed:
                self.ops.remove_quietly(path)
            raise
        self._changed(mailbox)
        return CopyResult(
            uidvalidity=UidValidity(uidvalidity),
            source_uids=tuple(p[0] for p in pairs),
            dest_uids=tuple(p[1] for p in pairs),
        )

    def copy_within(
        self, source: MailboxId, uids: UidSet, dest: MailboxId, *, move: bool
    ) -> CopyResult:
        """COPY or MOVE inside this tree, one transaction: a MOVE here is atomic, and its
        quota does not change (the messages stay in the same quota root)."""
        placed: list[Path] = []
        pairs: list[tuple[Uid, Uid]] = []
        try:
            with write_transaction(self.conn, self.faults):
                self._mailbox(source)
                dest_validity = self._mailbox(dest)[0]
                placed, moved, pairs = self._transfer(source, uids, dest, move=move)
        except BaseException:
            for path in placed:
                self.ops.remove_quietly(path)
            raise
        if move:
            for uid in moved:
                self.ops.remove_quietly(self._mail_path(source, uid))
        if move:
            self._changed(source, dest)
        else:
            self._changed(dest)
        return CopyResult(
            uidvalidity=UidValidity(dest_validity),
            source_uids=tuple(p[0] for p in pairs),
            dest_uids=tuple(p[1] for p in pairs),
        )

    def _move_rows(
        self, source: int, uids: UidSet | None, dest: int
    ) -> tuple[list[Path], list[int]]:
        placed, moved, _ = self._transfer(source, uids, dest, move=True)
        return placed, moved

    def _transfer(
        self, source: int, uids: UidSet | None, dest: int, *, move: bool
    ) -> tuple[list[Path], list[int], list[tuple[Uid, Uid]]]:
        """Link messages of ``source`` into ``dest`` with new UIDs (inside the caller's write
        transaction). A move re-uses the metadata rows and expunges the sources; a copy
        duplicates them and is charged to quota. Returns (placed files, moved source UIDs,
        (source, dest) UID pairs)."""
        rows = [
            (r[0], r)
            for r in self._rows_in(
                "SELECT m.uid, m.sysflags, m.keywords, m.internal_date, m.tz_offset, m.size, "
                "m.meta_id FROM messages m WHERE m.mailbox_id = ? {uids} {order}",
                source,
                uids,
            )
        ]
        present = [(uid, r) for uid, r in rows if _exists(self._mail_path(source, uid))]
        for uid, _ in rows:
            if not _exists(self._mail_path(source, uid)):
                log.error("%s: message file missing for UID %d; not copied", self.tree, uid)
        if not present:
            return [], [], []
        dest_validity, uidnext, dest_modseq, _ = self._mailbox(dest)
        if uidnext + len(present) - 1 > MAX_UID:
            raise StoreError(ErrorKind.LIMIT, "Mailbox has run out of UIDs")
        if not move:
            octets = sum(r[5] for _, r in present)
            self._reserve(octets, len(present), True)
        placed = files.place_messages(
            self.ops,
            [(self._mail_path(source, uid), uidnext + i) for i, (uid, _) in enumerate(present)],
            self.mail_dir / str(dest),
        )
        known = self._keyword_map(dest)
        new_modseq = dest_modseq + 1
        pairs: list[tuple[Uid, Uid]] = []
        inserts: list[Row] = []
        for i, (uid, r) in enumerate(present):
            _, bits, kw, seconds, offset, size, meta_id = r
            new_uid = uidnext + i
            keywords = self._store_keywords(dest, known, kw.split(" ") if kw else ())
            if not move:
                cur = self.conn.execute(
                    "INSERT INTO message_meta(sha256, uidl, meta_version, envelope, "
                    "bodystructure, body, partmap, headers) "
                    "SELECT sha256, ?, meta_version, envelope, bodystructure, body, partmap, "
                    "headers FROM message_meta WHERE id = ?",
                    (default_uidl(dest_validity, new_uid), meta_id),
                )
                meta_id = cur.lastrowid
            inserts.append(
                (
                    dest,
                    new_uid,
                    new_modseq,
                    bits,
                    " ".join(keywords) or None,
                    seconds,
                    offset,
                    size,
                    meta_id,
                )
            )
            pairs.append((Uid(uid), Uid(new_uid)))
        self.conn.executemany(
            "INSERT INTO messages(mailbox_id, uid, modseq, sysflags, keywords, internal_date, "
            "tz_offset, size, meta_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            inserts,
        )
        self.conn.execute(
            "UPDATE mailboxes SET uidnext = ?, highestmodseq = ? WHERE id = ?",
            (uidnext + len(present), new_modseq, dest),
        )
        moved: list[int] = []
        if move:
            moved = [uid for uid, _ in present]
            _, _, source_modseq, _ = self._mailbox(source)
            expunge_modseq = source_modseq + 1
            self.conn.executemany(
                "DELETE FROM messages WHERE mailbox_id = ? AND uid = ?",
                [(source, uid) for uid in moved],
            )
            self.conn.executemany(
                "INSERT OR REPLACE INTO expunged(mailbox_id, uid, modseq) VALUES (?, ?, ?)",
                [(source, uid, expunge_modseq) for uid in moved],
            )
            self.conn.execute(
                "UPDATE mailboxes SET highestmodseq = ? WHERE id = ?", (expunge_modseq, source)
            )
        return placed, moved, pairs

    def expunge(self, mailbox: MailboxId, uids: UidSet | None, only_deleted: bool) -> list[Uid]:
        sql = (
            "SELECT m.uid, m.size, m.meta_id FROM messages m WHERE m.mailbox_id = ? "
            "AND m.sysflags & 8 != 0 {uids} {order}"
            if only_deleted
            else "SELECT m.uid, m.size, m.meta_id FROM messages m WHERE m.mailbox_id = ? "
            "{uids} {order}"
        )
        with write_transaction(self.conn, self.faults):
            _, _, highestmodseq, _ = self._mailbox(mailbox)
            rows: list[tuple[int, int, int]] = [
                (r[0], r[1], r[2]) for r in self._rows_in(sql, mailbox, uids)
            ]
            if not rows:
                return []
            modseq = highestmodseq + 1
            runs = _runs(r[0] for r in rows)
            if len(runs) <= _MAX_RANGE_QUERIES:
                # Each run of consecutive UIDs holds exactly the selected rows: one range
                # statement instead of a statement per message (a POP3 QUIT is one run).
                for lo, hi in runs:
                    self.conn.execute(
                        "DELETE FROM message_meta WHERE id IN (SELECT meta_id FROM messages "
                        "WHERE mailbox_id = ? AND uid BETWEEN ? AND ?)",
                        (mailbox, lo, hi),
                    )
                    self.conn.execute(
                        "DELETE FROM messages WHERE mailbox_id = ? AND uid BETWEEN ? AND ?",
                        (mailbox, lo, hi),
                    )
            else:
                self.conn.executemany(
                    "DELETE FROM message_meta WHERE id = ?", [(r[2],) for r in rows]
                )
                self.conn.executemany(
                    "DELETE FROM messages WHERE mailbox_id = ? AND uid = ?",
                    [(mailbox, r[0]) for r in rows],
                )
            self.conn.executemany(
                "INSERT OR REPLACE INTO expunged(mailbox_id, uid, modseq) VALUES (?, ?, ?)",
                [(mailbox, r[0], modseq) for r in rows],
            )
            self.conn.execute(
                "UPDATE mailboxes SET highestmodseq = ? WHERE id = ?", (modseq, mailbox)
            )
            self._release(sum(r[1] for r in rows), len(rows))
        self._changed(mailbox)
        doomed = tuple(r[0] for r in rows)
        # After the commit, and off the caller's path: it has its answer (POP3 QUIT's +OK)
        # while the files go -- freeing an inode costs as much as creating one -- and the
        # expunge log is kept bounded. Every later call on this index runs after this. A
        # crash before the files are gone leaves orphans of expunged UIDs, which recovery
        # removes.
        self.defer(lambda: self._after_expunge(mailbox, doomed))
        return [Uid(uid) for uid in doomed]

    def _after_expunge(self, mailbox: int, uids: Sequence[int]) -> None:
        """Unlink the files of expunged (committed) UIDs, then bound the expunge log.

        Files are unlinked by name relative to the mailbox directory, opened once: a
        ``Path`` built and the whole path walked again for every file cost about 15 µs more
        per 10 KB file, on top of the ~20 µs of the unlink itself (docs/benchmarks.md, POP3)."""
        directory = self.mail_dir / str(mailbox)
        try:
            dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except FileNotFoundError:
            dir_fd = -1  # no directory, no files
        except OSError as exc:
            log.warning("could not open %s to remove expunged files: %s", directory, exc)
            for uid in uids:
                self.ops.remove_quietly(directory / str(uid))
            dir_fd = -1
        if dir_fd >= 0:
            faults = self.ops.faults
            try:
                for uid in uids:
                    try:
                        if faults is not None:
                            faults.check("unlink")
                        os.unlink(str(uid), dir_fd=dir_fd)
                    except FileNotFoundError:
                        pass
                    except OSError as exc:
                        log.warning("could not remove %s: %s", directory / str(uid), exc)
            finally:
                os.close(dir_fd)
        self.prune_expunged(mailbox)

    def prune_expunged(self, mailbox: int) -> int:
        """Keep the expunge log of ``mailbox`` bounded; returns the rows removed.

        When more than ``expunged_keep`` plus a quarter are recorded, the oldest are removed
        so that ``expunged_keep`` remain (whole modseqs at a time: one expunge's UIDs share a
        modseq), and the mailbox's floor -- kept in ``meta`` -- becomes the highest removed
        modseq. ``changes_since`` a modseq below the floor reports every UID below UIDNEXT
        that has no message as expunged (RFC 7162 allows UIDs the client never had), which
        is a full resync for a QRESYNC client. A removed row's file is unlinked first (it
        is normally gone already; an expunge of a process that crashed before its unlinks
        may have left it, and without the row recovery would no longer know it)."""
        keep = self.expunged_keep
        over = self.conn.execute(
            "SELECT 1 FROM expunged WHERE mailbox_id = ? ORDER BY modseq DESC LIMIT 1 OFFSET ?",
            (mailbox, keep + keep // 4),
        ).fetchone()
        if over is None:
            return 0
        with write_transaction(self.conn, self.faults):
            row = self.conn.execute(
                "SELECT modseq FROM expunged WHERE mailbox_id = ? "
                "ORDER BY modseq DESC LIMIT 1 OFFSET ?",
                (mailbox, keep),
            ).fetchone()
            if row is None:
                return 0
            cutoff: int = row[0]
            uids = [
                r[0]
                for r in self.conn.execute(
                    "SELECT e.uid FROM expunged e WHERE e.mailbox_id = ? AND e.modseq <= ? "
                    "AND NOT EXISTS (SELECT 1 FROM messages m "
                    "WHERE m.mailbox_id = e.mailbox_id AND m.uid = e.uid)",
                    (mailbox, cutoff),
                )
            ]
            for uid in uids:
                self.ops.remove_quietly(self._mail_path(mailbox, uid))
            cur = self.conn.execute(
                "DELETE FROM expunged WHERE mailbox_id = ? AND modseq <= ?", (mailbox, cutoff)
            )
            self.conn.execute(
                "INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE "
                "SET value = max(CAST(value AS INTEGER), CAST(excluded.value AS INTEGER))",
                (_FLOOR_KEY.format(mailbox), str(cutoff)),
            )
        removed: int = cur.rowcount
        log.info(
            "%s: pruned %d expunged UIDs of mailbox %d (floor %d)",
            self.tree,
            removed,
            mailbox,
            cutoff,
        )
        return removed

    def _expunged_floor(self, mailbox: int) -> int:
        row = self.conn.execute(
            "SELECT value FROM meta WHERE key = ?", (_FLOOR_KEY.format(mailbox),)
        ).fetchone()
        return int(row[0]) if row is not None else 0

    def changes_since(self, mailbox: MailboxId, modseq: ModSeq) -> Changes:
        with read_transaction(self.conn):
            _, uidnext, highestmodseq, _ = self._mailbox(mailbox)
            # INDEXED BY: without it SQLite walks the whole mailbox in UID order to skip the
            # sort, ~100 ms cold / 5-9 ms warm for 100,000 messages on every command's sync.
            rows = self.conn.execute(
                f"SELECT {_BASE_COLUMNS} "
                + _META_FROM.replace("messages m", "messages m INDEXED BY messages_by_modseq")
                + " WHERE m.mailbox_id = ? AND m.modseq > ? ORDER BY m.uid",
                (mailbox, modseq),
            ).fetchall()
            if modseq < self._expunged_floor(mailbox):
                # Older than the pruned log: every UID below UIDNEXT without a message.
                (joined,) = self.conn.execute(
                    "SELECT group_concat(uid) FROM "
                    "(SELECT uid FROM messages WHERE mailbox_id = ? ORDER BY uid)",
                    (mailbox,),
                ).fetchone()
                present = set(map(int, joined.split(","))) if joined else set()
                expunged = [Uid(u) for u in range(1, uidnext) if u not in present]
            else:
                expunged = [
                    Uid(r[0])
                    for r in self.conn.execute(
                        "SELECT uid FROM expunged WHERE mailbox_id = ? AND modseq > ? "
                        "ORDER BY uid",
                        (mailbox, modseq),
                    )
                ]
        return Changes(
            highestmodseq=ModSeq(highestmodseq),
            uidnext=Uid(uidnext),
            changed=tuple(_metas(rows, Want.FLAGS)),
            expunged=tuple(expunged),
        )

    # acl --------------------------------------------------------------------------------------

    def check_mailbox(self, mailbox: MailboxId) -> None:
        """NOT_FOUND unless the mailbox exists."""
        self._mailbox(mailbox)

    def get_acl(self, mailbox: MailboxId) -> dict[str, Rights]:
        with read_transaction(self.conn):
            self._mailbox(mailbox)
            rows = self.conn.execute(
                "SELECT identifier, rights FROM acl WHERE mailbox_id = ? ORDER BY identifier_key",
                (mailbox,),
            ).fetchall()
        return {ident: Rights.parse(rights) for ident, rights in rows}

    def set_acl(self, mailbox: MailboxId, identifier: str, rights: Rights) -> None:
        ident, key = acl_identifier(identifier)
        with write_transaction(self.conn, self.faults):
            self._mailbox(mailbox)
            if rights:
                self.conn.execute(
                    "INSERT OR REPLACE INTO acl(mailbox_id, identifier_key, identifier, rights) "
                    "VALUES (?, ?, ?, ?)",
                    (mailbox, key, ident, str(rights)),
                )
            else:
                self.conn.execute(
                    "DELETE FROM acl WHERE mailbox_id = ? AND identifier_key = ?", (mailbox, key)
                )

    def delete_acl(self, mailbox: MailboxId, identifier: str) -> None:
        _, key = acl_identifier(identifier)
        with write_transaction(self.conn, self.faults):
            self._mailbox(mailbox)
            self.conn.execute(
                "DELETE FROM acl WHERE mailbox_id = ? AND identifier_key = ?", (mailbox, key)
            )

    def drop_identifiers(self, keys: Sequence[str]) -> None:
        """Remove every ACL entry for these identifier keys (an account was deleted)."""
        with write_transaction(self.conn, self.faults):
            self.conn.executemany("DELETE FROM acl WHERE identifier_key = ?", [(k,) for k in keys])

    def rename_identifiers(self, renames: Sequence[tuple[str, str]]) -> None:
        """Rewrite ACL identifiers (an account was renamed): ``(old, new)`` as given."""
        with write_transaction(self.conn, self.faults):
            for old, new in renames:
                old_key = old.casefold()
                new_ident, new_key = acl_identifier(new)
                self.conn.execute(
                    "UPDATE OR REPLACE acl SET identifier = ?, identifier_key = ? "
                    "WHERE identifier_key = ?",
                    (new_ident, new_key, old_key),
                )

    # quota and account meta -------------------------------------------------------------------

    def get_quota(self) -> tuple[int, int, int | None, int | None]:
        """(used octets, used messages, storage limit in octets, message limit)."""
        row = self.conn.execute(
            "SELECT storage_used_octets, messages_used, storage_limit_octets, message_limit "
            "FROM quota WHERE id = 1"
        ).fetchone()
        return row[0], row[1], row[2], row[3]

    def sync_limits(self, storage_limit_kib: int | None, message_limit: int | None) -> None:
        """Make the mirrored limits equal system.db's (written only if they differ)."""
        octets = None if storage_limit_kib is None else storage_limit_kib * 1024
        _, _, limit, msg_limit = self.get_quota()
        if (limit, msg_limit) != (octets, message_limit):
            self.set_limits(storage_limit_kib, message_limit)

    def set_limits(self, storage_limit_kib: int | None, message_limit: int | None) -> None:
        with write_transaction(self.conn, self.faults):
            self.conn.execute(
                "UPDATE quota SET storage_limit_octets = ?, message_limit = ? WHERE id = 1",
                (None if storage_limit_kib is None else storage_limit_kib * 1024, message_limit),
            )

    def set_account_name(self, name: str) -> None:
        with write_transaction(self.conn, self.faults):
            self.conn.execute(
                "INSERT OR REPLACE INTO meta(key, value) VALUES ('account_name', ?)", (name,)
            )


# --- module helpers --------------------------------------------------------------------------


def leave_empty_log_files(path: Path) -> None:
    """After closing a connection to ``path``: create ``-wal`` and ``-shm`` again, empty, if
    SQLite removed them (it does when the last connection closes, after checkpointing every
    frame into ``path``), so that the next open -- the first delivery to an account, a
    fan-out to a thousand -- creates no inode (about 0.3 ms of kernel CPU each on the
    reference VM; docs/benchmarks.md, LMTP). An empty ``-wal`` holds no frames: nothing to
    recover, ``path`` alone holds everything; the first connection reinitialises an ``-shm``
    it finds. An existing file is never touched (``O_EXCL``): another connection may have
    made its own, with frames. Best effort: a failure only leaves the cost to the next
    open."""
    try:
        mode = os.stat(path).st_mode & 0o666
    except OSError as exc:
        log.debug("%s: empty -wal/-shm not left: %s", path, exc)
        return
    for suffix in ("-wal", "-shm"):
        try:
            fd = os.open(
                f"{path}{suffix}", os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode
            )
            os.close(fd)
        except FileExistsError:
            pass
        except OSError as exc:
            log.debug("%s: empty %s not left: %s", path, suffix, exc)


def _runs(uids: Iterable[int]) -> list[tuple[int, int]]:
    """Runs of consecutive integers in ascending ``uids``, as inclusive (first, last) pairs."""
    runs: list[tuple[int, int]] = []
    for uid in uids:
        if runs and uid == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], uid)
        else:
            runs.append((uid, uid))
    return runs


def _run_now(fn: Callable[[], None]) -> None:
    """``defer`` without a worker (an index opened on its own): run the work at once."""
    fn()


def default_uidl(uidvalidity: int, uid: int) -> str:
    """POP3 UIDL derived from UID and UIDVALIDITY (Dovecot's default ``%08Xu%08Xv``)."""
    return f"{uid:08x}{uidvalidity:08x}"


def _exists(path: Path) -> bool:
    try:
        os.stat(path)
    except FileNotFoundError:
        return False
    return True


def _next_uidvalidity(conn: sqlite3.Connection) -> int:
    """A UIDVALIDITY never used before in this tree: a counter seeded by the clock, so that a
    mailbox deleted and created again (or a rebuilt tree) gets a new one (RFC 9051 §2.3.1.1)."""
    row = conn.execute("SELECT value FROM meta WHERE key = 'next_uidvalidity'").fetchone()
    stored = int(row[0]) if row is not None else 1
    value = max(stored, int(time.time()))
    if value > MAX_UID:
        value = 1 if stored > MAX_UID else stored
    conn.execute(
        "INSERT OR REPLACE INTO meta(key, value) VALUES ('next_uidvalidity', ?)", (str(value + 1),)
    )
    return value


def _create_mailbox_rows(
    conn: sqlite3.Connection, name: MailboxName, special: str, *, exist_ok: bool
) -> None:
    """Insert ``name`` and its missing parents (inside the caller's transaction)."""
    levels = name.split("/")
    for depth in range(1, len(levels) + 1):
        current = "/".join(levels[:depth])
        exists = conn.execute("SELECT 1 FROM mailboxes WHERE name = ?", (current,)).fetchone()
        if exists is not None:
            if depth == len(levels) and not exist_ok:
                raise StoreError(ErrorKind.EXISTS, f"Mailbox already exists: {current}")
            continue
        conn.execute(
            "INSERT INTO mailboxes(name, uidvalidity, special_use) VALUES (?, ?, ?)",
            (current, _next_uidvalidity(conn), special if depth == len(levels) else ""),
        )


def _metas(rows: Sequence[Row], want: Want) -> list[MessageMeta]:
    """MessageMeta objects from rows of ``_BASE_COLUMNS`` plus the wanted blob columns.

    The hot loop of FETCH: rows are ``Any`` (no NewType calls), flag sets and time zones
    are shared through small caches, and each optional column is picked by a fixed index.
    """
    flag_cache: dict[tuple[int, str | None], Flags] = {}
    envelope_i = body_i = bodystructure_i = partmap_i = headers_i = -1
    i = 9  # the columns fetch_meta appends, in this order
    if Want.ENVELOPE in want:
        envelope_i, i = i, i + 1
    if Want.BODY in want:
        body_i, i = i, i + 1
    if Want.BODYSTRUCTURE in want:
        bodystructure_i, i = i, i + 1
    if Want.PARTMAP in want:
        partmap_i, i = i, i + 1
    if Want.HEADERS in want:
        headers_i, i = i, i + 1
    from_timestamp = dt.datetime.fromtimestamp
    loads = json.loads
    meta = MessageMeta
    out: list[MessageMeta] = []
    append = out.append
    for r in rows:
        key = (r[2], r[3])
        flags = flag_cache.get(key)
        if flags is None:
            flags = flag_cache[key] = _flags_from_storage(r[2], r[3])
        tz = _TZ_CACHE.get(r[5]) or _tz(r[5])
        append(
            meta(
                r[0],
                r[1],
                flags,
                from_timestamp(r[4], tz),
                r[6],
                r[7],
                r[8],
                r[envelope_i] if envelope_i >= 0 else None,
                r[body_i] if body_i >= 0 else None,
                r[bodystructure_i] if bodystructure_i >= 0 else None,
                r[partmap_i] if partmap_i >= 0 else None,
                (loads(r[headers_i]) if r[headers_i] else {}) if headers_i >= 0 else None,
            )
        )
    return out


def _flags_from_storage(bits: int, keywords: str | None) -> Flags:
    found = {f for f, b in SYSTEM_BITS.items() if bits & b}
    if keywords:
        found.update(keywords.split(" "))
    return frozenset(found)

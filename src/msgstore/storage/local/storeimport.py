"""Filling a local store with another store's exact state (``SupportsStoreImport``, used by
``msgstore store copy --to local``).

Messages go in at the source's UID with the source's modseq, through the same durable write
as an append (``AccountIndex._append_one``: fsynced file, link, directory fsync, commit), one
transaction per batch; the mailbox's UIDNEXT is moved up to each UID first (IMAP allows
gaps) and its HIGHESTMODSEQ ends at the highest modseq imported, not at one more per message.
The expunge log is not copied: the mailbox's expunge floor is raised instead (see
``index.AccountIndex.prune_expunged``). The system-database parts keep ids and timestamps.

The index functions run on the account's index thread, the ``SystemDb`` ones on the system
thread, the queue file one on a file thread.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from msgstore.core.errors import ErrorKind, StoreError
from msgstore.core.ids import MAX_UID, MailboxId, ModSeq, Uid
from msgstore.storage.base import ApiToken, AuditRecord, ForwardEntry, NewApiToken, QueueEntry
from msgstore.storage.local.audit import _micros
from msgstore.storage.local.db import read_transaction, write_transaction
from msgstore.storage.local.index import _FLOOR_KEY, AccountIndex, AppendRequest, StagedFile
from msgstore.storage.local.system import SystemDb
from msgstore.storage.local.tokens import _token

MAX_MODSEQ = 2**63 - 1


@dataclass(frozen=True, slots=True)
class ImportRow:
    """One ``ImportedMessage`` with its staged file (what the index thread needs)."""

    staged: StagedFile
    uid: Uid
    modseq: ModSeq
    flags: frozenset[str]
    internal_date: dt.datetime
    uidl: str


def import_messages(index: AccountIndex, mailbox: MailboxId, rows: Sequence[ImportRow]) -> None:
    """See ``SupportsStoreImport.import_messages``."""
    for row in rows:
        if not 1 <= row.uid <= MAX_UID or not 1 <= row.modseq <= MAX_MODSEQ:
            raise StoreError(ErrorKind.PARAMS, f"UID or modseq out of range: {row.uid}")
    if not rows:
        return
    conn = index.conn
    placed: list[Path] = []
    try:
        with write_transaction(conn, index.faults):
            for row in rows:
                _, uidnext, highest, _ = index._mailbox(mailbox)
                if row.uid < uidnext:
                    raise StoreError(
                        ErrorKind.NOT_POSSIBLE,
                        f"UID {row.uid} is below UIDNEXT {uidnext}",
                    )
                conn.execute("UPDATE mailboxes SET uidnext = ? WHERE id = ?", (row.uid, mailbox))
                request = AppendRequest(
                    mailbox, row.staged, row.flags, row.internal_date, row.uidl, False
                )
                index._append_one(request, placed)
                conn.execute(
                    "UPDATE messages SET modseq = ? WHERE mailbox_id = ? AND uid = ?",
                    (row.modseq, mailbox, row.uid),
                )
                conn.execute(
                    "UPDATE mailboxes SET highestmodseq = ? WHERE id = ?",
                    (max(highest, row.modseq), mailbox),
                )
            index.ops.fsync_dir(index.mail_dir / str(mailbox))
    except BaseException:
        for path in placed:
            index.ops.remove_quietly(path)
        raise
    index._changed(mailbox)


def import_mailbox_state(
    index: AccountIndex,
    mailbox: MailboxId,
    uidnext: Uid,
    highestmodseq: ModSeq,
    keywords: frozenset[str],
) -> None:
    """See ``SupportsStoreImport.import_mailbox_state``."""
    if not 1 <= uidnext <= MAX_UID + 1 or not 0 <= highestmodseq <= MAX_MODSEQ:
        raise StoreError(ErrorKind.PARAMS, f"UIDNEXT or HIGHESTMODSEQ out of range: {uidnext}")
    conn = index.conn
    with write_transaction(conn, index.faults):
        _, current_next, current_high, _ = index._mailbox(mailbox)
        conn.execute(
            "UPDATE mailboxes SET uidnext = ?, highestmodseq = ? WHERE id = ?",
            (max(uidnext, current_next), max(highestmodseq, current_high), mailbox),
        )
        conn.execute(
            "INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE "
            "SET value = max(CAST(value AS INTEGER), CAST(excluded.value AS INTEGER))",
            (_FLOOR_KEY.format(mailbox), str(highestmodseq)),
        )
        if keywords:
            index._store_keywords(mailbox, index._keyword_map(mailbox), sorted(keywords))
    index._changed(mailbox)


# --- system database (system thread) ----------------------------------------------------------


def import_forward(db: SystemDb, entry: ForwardEntry) -> None:
    if not entry.address or not entry.destinations:
        raise StoreError(ErrorKind.PARAMS, "A forwarding entry needs an address and destinations")
    with write_transaction(db.conn, db.faults):
        db.conn.execute(
            "INSERT OR REPLACE INTO forwards(address_key, address, destinations, keep_copy, "
            "created) VALUES (?, ?, ?, ?, ?)",
            (
                entry.address.casefold(),
                entry.address,
                json.dumps(list(entry.destinations)),
                int(entry.keep_copy),
                int(entry.created.timestamp()),
            ),
        )


def queued_exists(db: SystemDb, ident: int) -> bool:
    row = db.conn.execute("SELECT 1 FROM relay_queue WHERE id = ?", (ident,)).fetchone()
    return row is not None


def insert_queued(db: SystemDb, entry: QueueEntry, file: str, size: int) -> bool:
    """The row of an imported queue file; False if the id is taken (the file is the
    caller's to remove then)."""
    if not entry.recipients:
        raise StoreError(ErrorKind.PARAMS, "A queued message needs recipients")
    with write_transaction(db.conn, db.faults):
        if queued_exists(db, entry.id):
            return False
        db.conn.execute(
            "INSERT INTO relay_queue(id, file, sender, recipients, size, created, "
            "next_attempt, attempts, last_error) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                entry.id,
                file,
                entry.sender,
                json.dumps(list(entry.recipients)),
                size,
                entry.created.timestamp(),
                entry.next_attempt.timestamp(),
                entry.attempts,
                entry.last_error,
            ),
        )
    return True


def export_api_tokens(db: SystemDb) -> list[tuple[ApiToken, str]]:
    with read_transaction(db.conn):
        rows = db.conn.execute(
            "SELECT t.id, t.account, a.name, t.label, t.created, t.expires, t.token_hash "
            "FROM api_tokens t JOIN accounts a ON a.id = t.account ORDER BY t.id"
        ).fetchall()
    return [(_token(r[:6]), str(r[6])) for r in rows]


def import_api_token(db: SystemDb, token: NewApiToken, ident: int) -> bool:
    with write_transaction(db.conn, db.faults):
        exists = db.conn.execute(
            "SELECT 1 FROM accounts WHERE id = ? AND public = 0", (int(token.account),)
        ).fetchone()
        if exists is None:
            raise StoreError(ErrorKind.NOT_FOUND, f"No such account: #{int(token.account)}")
        if (
            db.conn.execute(
                "SELECT 1 FROM api_tokens WHERE token_hash = ?", (token.token_hash,)
            ).fetchone()
            is not None
        ):
            return False
        taken = db.conn.execute("SELECT 1 FROM api_tokens WHERE id = ?", (ident,)).fetchone()
        db.conn.execute(
            "INSERT INTO api_tokens(id, token_hash, account, label, created, expires) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (
                None if taken is not None else ident,
                token.token_hash,
                int(token.account),
                token.label,
                int(token.created.timestamp()),
                None if token.expires is None else int(token.expires.timestamp()),
            ),
        )
    return True


def import_audit(db: SystemDb, records: Sequence[AuditRecord]) -> None:
    with write_transaction(db.conn, db.faults):
        db.conn.executemany(
            "INSERT INTO audit_log(ts, actor, origin, operation, params, outcome, message) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                (_micros(r.ts), r.actor, r.origin, r.operation, r.params, r.outcome, r.message)
                for r in records
            ],
        )


def set_account_created(db: SystemDb, account: int, created: dt.datetime) -> None:
    with write_transaction(db.conn, db.faults):
        cur = db.conn.execute(
            "UPDATE accounts SET created = ? WHERE id = ?", (int(created.timestamp()), account)
        )
        if not cur.rowcount:
            raise StoreError(ErrorKind.NOT_FOUND, f"No such account: #{account}")

"""Keeping a migration source's UIDs (``SupportsUidImport``, used by ``msgstore migrate``).

The one durable write stays ``append``: it always takes the mailbox's UIDNEXT. To place a
message at the source's UID the migration first moves UIDNEXT up to that UID (IMAP allows
gaps; UIDs only ever grow), then appends. UIDVALIDITY may be set only while the mailbox has
never held a message, and the account's UIDVALIDITY counter is moved past it so a mailbox
created later never gets the same value.
"""

from __future__ import annotations

from msgstore.core.errors import ErrorKind, StoreError
from msgstore.core.ids import MAX_UID, MailboxId, Uid, UidValidity
from msgstore.storage.local.db import write_transaction
from msgstore.storage.local.index import AccountIndex


def import_uid_state(
    index: AccountIndex, mailbox: MailboxId, uidvalidity: UidValidity | None, uidnext: Uid
) -> None:
    """See ``SupportsUidImport.import_uid_state``; runs on the index thread."""
    if not 1 <= uidnext <= MAX_UID + 1:
        raise StoreError(ErrorKind.PARAMS, f"UIDNEXT out of range: {uidnext}")
    if uidvalidity is not None and not 1 <= uidvalidity <= MAX_UID:
        raise StoreError(ErrorKind.PARAMS, f"UIDVALIDITY out of range: {uidvalidity}")
    conn = index.conn
    with write_transaction(conn, index.faults):
        row = conn.execute(
            "SELECT uidvalidity, uidnext FROM mailboxes WHERE id = ?", (mailbox,)
        ).fetchone()
        if row is None:
            raise StoreError(ErrorKind.NOT_FOUND, f"No such mailbox: #{mailbox}")
        current_validity, current_next = int(row[0]), int(row[1])
        changed = False
        if uidvalidity is not None and uidvalidity != current_validity:
            if current_next != 1:
                raise StoreError(
                    ErrorKind.NOT_POSSIBLE,
                    "UIDVALIDITY can only be set on a mailbox that never held a message",
                )
            conn.execute(
                "UPDATE mailboxes SET uidvalidity = ? WHERE id = ?", (uidvalidity, mailbox)
            )
            counter = conn.execute(
                "SELECT value FROM meta WHERE key = 'next_uidvalidity'"
            ).fetchone()
            stored = int(counter[0]) if counter is not None else 1
            if uidvalidity >= stored and uidvalidity < MAX_UID:
                conn.execute(
                    "INSERT OR REPLACE INTO meta(key, value) VALUES ('next_uidvalidity', ?)",
                    (str(uidvalidity + 1),),
                )
            changed = True
        if uidnext > current_next:
            conn.execute("UPDATE mailboxes SET uidnext = ? WHERE id = ?", (uidnext, mailbox))
            changed = True
    if changed:
        index.on_change(index.account, mailbox)

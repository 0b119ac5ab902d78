"""Web sessions and last logins in system.db (tables ``web_sessions`` and ``last_logins``,
migration "web_sessions_and_last_logins"), and their export and import for ``msgstore store
copy`` (sessions move with the fingerprint they began with, so cookies keep working).

Blocking functions run on the system worker thread (``LocalBackend._sys``). A session row
keeps a fingerprint of the account's password hash from when it began; ``get_web_session``
compares it with the hash now, so a password change by any face ends every web session of the
account without that face knowing sessions exist. Both tables reference ``accounts`` with
``ON DELETE CASCADE``: deleting an account deletes its sessions and logins.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Sequence

from msgstore.core.errors import ErrorKind, StoreError
from msgstore.core.ids import AccountId
from msgstore.storage.base import (
    MAX_LOGINS_KEPT,
    LoginRecord,
    NewWebSession,
    StoredWebSession,
    WebSession,
)
from msgstore.storage.local.db import read_transaction, write_transaction
from msgstore.storage.local.system import _SELECT_ACCOUNTS, SystemDb, _info


def _epoch(when: dt.datetime) -> int:
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return int(when.timestamp())


def _utc(seconds: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(seconds, dt.UTC)


def _credential(password_hash: str) -> str:
    return hashlib.sha256(password_hash.encode("utf-8", "surrogatepass")).hexdigest()


def create_web_session(db: SystemDb, session: NewWebSession) -> None:
    with write_transaction(db.conn, db.faults):
        row = db.conn.execute(
            "SELECT password_hash FROM accounts WHERE id = ?", (int(session.account),)
        ).fetchone()
        if row is None:
            raise StoreError(ErrorKind.NOT_FOUND, f"No such account: #{int(session.account)}")
        taken = db.conn.execute(
            "SELECT 1 FROM web_sessions WHERE id_hash = ?", (session.id_hash,)
        ).fetchone()
        if taken is not None:
            raise StoreError(ErrorKind.EXISTS, "Session id already in use")
        created = _epoch(session.created)
        db.conn.execute(
            "INSERT INTO web_sessions(id_hash, account, credential, csrf_token, created, "
            "last_seen, address) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                session.id_hash,
                int(session.account),
                _credential(str(row[0])),
                session.csrf_token,
                created,
                created,
                session.address,
            ),
        )


def get_web_session(db: SystemDb, id_hash: str) -> WebSession | None:
    with read_transaction(db.conn):
        row = db.conn.execute(
            "SELECT s.account, s.credential, s.csrf_token, s.created, s.last_seen, s.address, "
            "a.password_hash FROM web_sessions s JOIN accounts a ON a.id = s.account "
            "WHERE s.id_hash = ?",
            (id_hash,),
        ).fetchone()
        if row is None:
            return None
        account_row = db.conn.execute(_SELECT_ACCOUNTS + "WHERE id = ?", (row[0],)).fetchone()
    if account_row is None or _credential(str(row[6])) != row[1]:
        return None
    return WebSession(
        id_hash=id_hash,
        account=_info(account_row),
        csrf_token=str(row[2]),
        created=_utc(int(row[3])),
        last_seen=_utc(int(row[4])),
        address=str(row[5]),
    )


def touch_web_session(db: SystemDb, id_hash: str, last_seen: dt.datetime) -> None:
    with write_transaction(db.conn, db.faults):
        db.conn.execute(
            "UPDATE web_sessions SET last_seen = max(last_seen, ?) WHERE id_hash = ?",
            (_epoch(last_seen), id_hash),
        )


def delete_web_session(db: SystemDb, id_hash: str) -> None:
    with write_transaction(db.conn, db.faults):
        db.conn.execute("DELETE FROM web_sessions WHERE id_hash = ?", (id_hash,))


def delete_web_sessions(db: SystemDb, account: int) -> int:
    with write_transaction(db.conn, db.faults):
        cur = db.conn.execute("DELETE FROM web_sessions WHERE account = ?", (account,))
        return cur.rowcount


def expire_web_sessions(
    db: SystemDb, idle_before: dt.datetime, created_before: dt.datetime
) -> int:
    with write_transaction(db.conn, db.faults):
        cur = db.conn.execute(
            "DELETE FROM web_sessions WHERE last_seen < ? OR created < ?",
            (_epoch(idle_before), _epoch(created_before)),
        )
        return cur.rowcount


def record_logins(db: SystemDb, logins: Sequence[LoginRecord]) -> None:
    if not logins:
        return
    with write_transaction(db.conn, db.faults):
        accounts: set[int] = set()
        for login in logins:
            exists = db.conn.execute(
                "SELECT 1 FROM accounts WHERE id = ?", (int(login.account),)
            ).fetchone()
            if exists is None:
                continue  # deleted since the login: nothing to remember
            accounts.add(int(login.account))
            db.conn.execute(
                "INSERT INTO last_logins(account, protocol, address, at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(account, protocol, address) DO UPDATE SET at = max(at, excluded.at)",
                (int(login.account), login.protocol, login.address, _epoch(login.at)),
            )
        for account in accounts:
            db.conn.execute(
                "DELETE FROM last_logins WHERE account = ? AND (protocol, address) NOT IN ("
                "SELECT protocol, address FROM last_logins WHERE account = ? "
                "ORDER BY at DESC, protocol, address LIMIT ?)",
                (account, account, MAX_LOGINS_KEPT),
            )


def last_logins(db: SystemDb, account: int, limit: int) -> list[LoginRecord]:
    with read_transaction(db.conn):
        rows = db.conn.execute(
            "SELECT account, protocol, address, at FROM last_logins WHERE account = ? "
            "ORDER BY at DESC, protocol, address LIMIT ?",
            (account, max(0, limit)),
        ).fetchall()
    return [
        LoginRecord(
            account=AccountId(int(r[0])),
            protocol=str(r[1]),
            address=str(r[2]),
            at=_utc(int(r[3])),
        )
        for r in rows
    ]


# --- msgstore store copy (storage/local/storeimport.py has the rest) ------------------------


def export_web_sessions(db: SystemDb) -> list[StoredWebSession]:
    with read_transaction(db.conn):
        rows = db.conn.execute(
            "SELECT s.id_hash, a.name, s.credential, s.csrf_token, s.created, s.last_seen, "
            "s.address FROM web_sessions s JOIN accounts a ON a.id = s.account "
            "ORDER BY s.id_hash"
        ).fetchall()
    return [
        StoredWebSession(
            id_hash=str(r[0]),
            account_name=str(r[1]),
            credential=str(r[2]),
            csrf_token=str(r[3]),
            created=_utc(int(r[4])),
            last_seen=_utc(int(r[5])),
            address=str(r[6]),
        )
        for r in rows
    ]


def import_web_session(db: SystemDb, account: int, session: StoredWebSession) -> bool:
    """See ``SupportsStoreImport.import_web_session``."""
    with write_transaction(db.conn, db.faults):
        exists = db.conn.execute(
            "SELECT 1 FROM accounts WHERE id = ? AND public = 0", (account,)
        ).fetchone()
        if exists is None:
            raise StoreError(ErrorKind.NOT_FOUND, f"No such account: #{account}")
        last_seen = _epoch(session.last_seen)
        cur = db.conn.execute(
            "UPDATE web_sessions SET last_seen = max(last_seen, ?) WHERE id_hash = ?",
            (last_seen, session.id_hash),
        )
        if cur.rowcount:
            return False
        db.conn.execute(
            "INSERT INTO web_sessions(id_hash, account, credential, csrf_token, created, "
            "last_seen, address) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                session.id_hash,
                account,
                session.credential,
                session.csrf_token,
                _epoch(session.created),
                last_seen,
                session.address,
            ),
        )
    return True

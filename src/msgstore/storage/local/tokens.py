"""Bearer tokens of the REST API in system.db (table ``api_tokens``, migration "api_tokens").

Blocking functions run on the system worker thread (``LocalBackend._sys``). Only the SHA-256
of a token is stored; the table references ``accounts`` with ``ON DELETE CASCADE``, so
deleting an account revokes its tokens.
"""

from __future__ import annotations

import datetime as dt

from msgstore.core.accounts import AccountInfo
from msgstore.core.errors import ErrorKind, StoreError
from msgstore.core.ids import AccountId
from msgstore.storage.base import ApiToken, NewApiToken
from msgstore.storage.local.db import read_transaction, write_transaction
from msgstore.storage.local.system import _SELECT_ACCOUNTS, SystemDb, _info

_SELECT = (
    "SELECT t.id, t.account, a.name, t.label, t.created, t.expires "
    "FROM api_tokens t JOIN accounts a ON a.id = t.account "
)


def _epoch(when: dt.datetime) -> int:
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return int(when.timestamp())


def _utc(seconds: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(seconds, dt.UTC)


def _token(row: tuple[object, ...]) -> ApiToken:
    ident, account, name, label, created, expires = row
    assert isinstance(ident, int)
    assert isinstance(account, int)
    assert isinstance(created, int)
    return ApiToken(
        id=ident,
        account=AccountId(account),
        account_name=str(name),
        label=str(label),
        created=_utc(created),
        expires=None if expires is None else _utc(int(str(expires))),
    )


def create_api_token(db: SystemDb, token: NewApiToken) -> ApiToken:
    with write_transaction(db.conn, db.faults):
        exists = db.conn.execute(
            "SELECT 1 FROM accounts WHERE id = ? AND public = 0", (int(token.account),)
        ).fetchone()
        if exists is None:
            raise StoreError(ErrorKind.NOT_FOUND, f"No such account: #{int(token.account)}")
        taken = db.conn.execute(
            "SELECT 1 FROM api_tokens WHERE token_hash = ?", (token.token_hash,)
        ).fetchone()
        if taken is not None:
            raise StoreError(ErrorKind.EXISTS, "Token already in use")
        cur = db.conn.execute(
            "INSERT INTO api_tokens(token_hash, account, label, created, expires) "
            "VALUES (?, ?, ?, ?, ?)",
            (
                token.token_hash,
                int(token.account),
                token.label,
                _epoch(token.created),
                None if token.expires is None else _epoch(token.expires),
            ),
        )
        row = db.conn.execute(_SELECT + "WHERE t.id = ?", (cur.lastrowid,)).fetchone()
    return _token(row)


def find_api_token(db: SystemDb, token_hash: str) -> tuple[ApiToken, AccountInfo] | None:
    with read_transaction(db.conn):
        row = db.conn.execute(_SELECT + "WHERE t.token_hash = ?", (token_hash,)).fetchone()
        if row is None:
            return None
        account = db.conn.execute(_SELECT_ACCOUNTS + "WHERE id = ?", (row[1],)).fetchone()
    if account is None:
        return None
    return _token(row), _info(account)


def list_api_tokens(db: SystemDb, account: int | None) -> list[ApiToken]:
    with read_transaction(db.conn):
        if account is None:
            rows = db.conn.execute(_SELECT + "ORDER BY a.name_key, t.id").fetchall()
        else:
            rows = db.conn.execute(
                _SELECT + "WHERE t.account = ? ORDER BY t.id", (account,)
            ).fetchall()
    return [_token(r) for r in rows]


def delete_api_token(db: SystemDb, token_id: int) -> None:
    with write_transaction(db.conn, db.faults):
        cur = db.conn.execute("DELETE FROM api_tokens WHERE id = ?", (token_id,))
        if cur.rowcount == 0:
            raise StoreError(ErrorKind.NOT_FOUND, f"No such token {token_id}")

"""system.db: accounts, credentials, privileges and the directory of shared mailboxes.

One :class:`SystemDb` lives on the system worker thread. Every method is blocking and runs
there; trees (``users/<aa>/<id>/``) are created while the account row's transaction is open, so
an account row never exists without its tree.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Final

from msgstore.core.accounts import AccountChanges, AccountInfo, AccountKind
from msgstore.core.errors import ErrorKind, StoreError
from msgstore.core.ids import AccountId
from msgstore.storage.base import AccountQuery
from msgstore.storage.local import schema
from msgstore.storage.local.db import connect, read_transaction, write_transaction
from msgstore.storage.local.faults import FaultPlan

log = logging.getLogger("msgstore.storage.local")

PUBLIC_NAME: Final = "#public"
MAX_ACCOUNT_NAME_OCTETS: Final = 255
_RESERVED_NAMES: Final = frozenset({"anyone", "authenticated", "anonymous"})
_SELECT_ACCOUNTS: Final = (
    "SELECT id, name, kind, manager, login_disabled, receive_disabled, storage_limit_kib, "
    "message_limit, created FROM accounts "
)

#: Builds an account's tree (index.db with its mailboxes) while the row's transaction is open.
TreeBuilder = Callable[[AccountId, str, int | None, int | None], None]


def account_name(raw: str) -> str:
    """Validate an account name; returns it unchanged (names keep the case they were given).

    Names are compared case-insensitively (``casefold``). They may look like addresses
    (``user@example.org``) but may not contain whitespace, control characters or ``/``, may
    not start with ``#`` (reserved for pseudo-accounts) or ``-`` (negative ACL identifiers),
    and may not be an ACL keyword (``anyone``, ``authenticated``).
    """
    if not raw:
        raise StoreError(ErrorKind.PARAMS, "Account name is empty")
    if len(raw.encode("utf-8", "surrogatepass")) > MAX_ACCOUNT_NAME_OCTETS:
        raise StoreError(
            ErrorKind.PARAMS, f"Account name is longer than {MAX_ACCOUNT_NAME_OCTETS} octets"
        )
    if any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in raw):
        raise StoreError(ErrorKind.PARAMS, "Account name contains a space or control character")
    if any(0xD800 <= ord(c) <= 0xDFFF for c in raw):
        raise StoreError(ErrorKind.PARAMS, "Account name is not valid UTF-8")
    if "/" in raw or "\\" in raw:
        raise StoreError(ErrorKind.PARAMS, "Account name contains '/' or '\\'")
    if raw[0] in "#-":
        raise StoreError(ErrorKind.PARAMS, "Account name may not start with '#' or '-'")
    if raw.casefold() in _RESERVED_NAMES:
        raise StoreError(ErrorKind.PARAMS, f"Account name {raw!r} is reserved")
    return raw


def _limit(value: int | None, what: str) -> int | None:
    if value is not None and value < 0:
        raise StoreError(ErrorKind.PARAMS, f"{what} must not be negative")
    return value


def _info(row: tuple[object, ...]) -> AccountInfo:
    (ident, name, kind, manager, login_off, receive_off, storage, messages, created) = row
    assert isinstance(ident, int)
    assert isinstance(name, str)
    assert isinstance(kind, str)
    assert isinstance(created, int)
    return AccountInfo(
        id=AccountId(ident),
        name=name,
        kind=AccountKind(kind),
        manager=bool(manager),
        login_disabled=bool(login_off),
        receive_disabled=bool(receive_off),
        storage_limit_kib=storage if isinstance(storage, int) else None,
        message_limit=messages if isinstance(messages, int) else None,
        created=dt.datetime.fromtimestamp(created, dt.UTC),
    )


def _not_public(row: tuple[object, ...]) -> None:
    if row[1] == PUBLIC_NAME:
        raise StoreError(
            ErrorKind.NOT_POSSIBLE, "The public folders' pseudo-account cannot be changed"
        )


def _not_found(name: str) -> StoreError:
    return StoreError(ErrorKind.NOT_FOUND, f"No such account: {name}")


class SystemDb:
    """The open system database (lives on the system worker thread)."""

    def __init__(self, path: Path, faults: FaultPlan | None) -> None:
        self.path = path
        self.faults = faults
        self.conn = connect(path, create=True)
        try:
            self._ensure_schema()
        except BaseException:
            self.conn.close()
            raise
        self._ident = _file_identity(path)

    def _ensure_schema(self) -> None:
        version = schema.schema_version(self.conn)
        if version == schema.SYSTEM_SCHEMA_VERSION:
            self._migrate()
            return
        if version is not None:
            raise StoreError(
                ErrorKind.NOT_POSSIBLE,
                "system database has an unknown layout",
                detail=f"{self.path}: schema_version {version}",
            )
        with write_transaction(self.conn, None):
            if schema.schema_version(self.conn) == schema.SYSTEM_SCHEMA_VERSION:
                return  # another process (a server worker) created it while we waited
            has_tables = self.conn.execute(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table'"
            ).fetchone()[0]
            if has_tables:
                raise StoreError(
                    ErrorKind.CORRUPTED,
                    "system database damaged; restore it from a backup",
                    detail=f"{self.path}: tables without a schema version",
                )
            schema.create_system_schema(self.conn)

    def _migrate(self) -> None:
        """Apply the named additions of schema.SYSTEM_MIGRATIONS this file lacks."""
        if not schema.pending_migrations(self.conn, schema.SYSTEM_MIGRATIONS):
            return
        with write_transaction(self.conn, None):
            # Re-read under the write lock: another process may have applied them meanwhile.
            schema.apply_migrations(
                self.conn, schema.pending_migrations(self.conn, schema.SYSTEM_MIGRATIONS)
            )

    def is_stale(self) -> bool:
        return _file_identity(self.path) != self._ident

    def close(self) -> None:
        self.conn.close()

    # accounts ---------------------------------------------------------------------------------

    def _row_by_name(self, name: str) -> tuple[object, ...] | None:
        row: tuple[object, ...] | None = self.conn.execute(
            _SELECT_ACCOUNTS + "WHERE name_key = ?", (name.casefold(),)
        ).fetchone()
        return row

    def get_account(self, name: str) -> AccountInfo:
        row = self._row_by_name(name)
        if row is None:
            raise _not_found(name)
        return _info(row)

    def get_account_by_id(self, account: AccountId) -> AccountInfo:
        row = self.conn.execute(_SELECT_ACCOUNTS + "WHERE id = ?", (account,)).fetchone()
        if row is None:
            raise StoreError(ErrorKind.NOT_FOUND, f"No such account: #{account}")
        return _info(row)

    def list_accounts(self, query: AccountQuery | None = None) -> list[AccountInfo]:
        """Filtered and paged in SQL (name_key is UNIQUE, so the index serves the order)."""
        q = query if query is not None else AccountQuery()
        where = ["public = 0"]
        args: list[object] = []
        for column, value in (
            ("manager", q.manager),
            ("login_disabled", q.login_disabled),
            ("receive_disabled", q.receive_disabled),
        ):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(int(value))
        if q.kind is not None:
            where.append("kind = ?")
            args.append(q.kind.value)
        if q.contains:
            where.append("instr(name_key, ?) > 0")
            args.append(q.contains)
        if q.after is not None:
            where.append("(name_key, id) > (?, ?)")
            args.extend(q.after)
        sql = _SELECT_ACCOUNTS + "WHERE " + " AND ".join(where) + " ORDER BY name_key, id"
        if q.limit is not None or q.offset:
            sql += " LIMIT ? OFFSET ?"
            args.extend((-1 if q.limit is None else q.limit, q.offset))
        rows = self.conn.execute(sql, args).fetchall()
        return [_info(r) for r in rows]

    def create_account(
        self,
        *,
        name: str,
        password_hash: str,
        kind: AccountKind,
        manager: bool,
        storage_limit_kib: int | None,
        message_limit: int | None,
        build_tree: TreeBuilder,
        remove_tree: Callable[[AccountId], None],
        public: bool = False,
    ) -> AccountInfo:
        if not public:
            account_name(name)
        _limit(storage_limit_kib, "Storage limit")
        _limit(message_limit, "Message limit")
        now = int(dt.datetime.now(dt.UTC).timestamp())
        built: AccountId | None = None
        try:
            with write_transaction(self.conn, self.faults):
                if self._row_by_name(name) is not None:
                    raise StoreError(ErrorKind.EXISTS, f"Account already exists: {name}")
                cur = self.conn.execute(
                    "INSERT INTO accounts(name, name_key, kind, manager, password_hash, "
                    "storage_limit_kib, message_limit, created, public) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        name,
                        name.casefold(),
                        kind.value,
                        int(manager),
                        password_hash,
                        storage_limit_kib,
                        message_limit,
                        now,
                        int(public),
                    ),
                )
                assert cur.lastrowid is not None
                account = AccountId(cur.lastrowid)
                built = account
                build_tree(account, name, storage_limit_kib, message_limit)
        except BaseException:
            # The row did not commit: the tree (complete or not) must not outlive it.
            if built is not None:
                remove_tree(built)
            raise
        return self.get_account_by_id(account)

    def public_account(
        self, build_tree: TreeBuilder, remove_tree: Callable[[AccountId], None]
    ) -> AccountInfo:
        """The public pseudo-account, created on first use."""
        row = self.conn.execute(_SELECT_ACCOUNTS + "WHERE public = 1").fetchone()
        if row is not None:
            return _info(row)
        try:
            return self.create_account(
                name=PUBLIC_NAME,
                password_hash="",
                kind=AccountKind.IMAP,
                manager=False,
                storage_limit_kib=None,
                message_limit=None,
                build_tree=build_tree,
                remove_tree=remove_tree,
                public=True,
            )
        except StoreError as exc:
            if exc.kind is not ErrorKind.EXISTS:  # another process created it meanwhile
                raise
        return self.get_account(PUBLIC_NAME)

    def update_account(self, name: str, changes: AccountChanges) -> AccountInfo:
        sets: list[str] = []
        values: list[object] = []
        for column, value in (
            ("kind", changes.kind.value if changes.kind is not None else None),
            ("manager", changes.manager),
            ("login_disabled", changes.login_disabled),
            ("receive_disabled", changes.receive_disabled),
        ):
            if value is not None:
                sets.append(f"{column} = ?")
                values.append(int(value) if isinstance(value, bool) else value)
        for column, limit, what in (
            ("storage_limit_kib", changes.storage_limit_kib, "Storage limit"),
            ("message_limit", changes.message_limit, "Message limit"),
        ):
            if limit is None:
                continue
            if limit < -1:
                raise StoreError(ErrorKind.PARAMS, f"{what} must be -1 (unlimited) or more")
            sets.append(f"{column} = ?")
            values.append(None if limit == -1 else limit)
        with write_transaction(self.conn, self.faults):
            row = self._row_by_name(name)
            if row is None:
                raise _not_found(name)
            if sets:
                # The column names come from the fixed list above, never from input.
                sql = f"UPDATE accounts SET {', '.join(sets)} WHERE id = ?"  # noqa: S608
                self.conn.execute(sql, (*values, row[0]))
        return self.get_account(name)

    def set_limits(
        self, account: AccountId, storage_limit_kib: int | None, message_limit: int | None
    ) -> AccountInfo:
        _limit(storage_limit_kib, "Storage limit")
        _limit(message_limit, "Message limit")
        with write_transaction(self.conn, self.faults):
            cur = self.conn.execute(
                "UPDATE accounts SET storage_limit_kib = ?, message_limit = ? WHERE id = ?",
                (storage_limit_kib, message_limit, account),
            )
            if cur.rowcount == 0:
                raise StoreError(ErrorKind.NOT_FOUND, f"No such account: #{account}")
        return self.get_account_by_id(account)

    def rename_account(self, old: str, new: str) -> tuple[AccountInfo, AccountInfo]:
        """Returns (before, after)."""
        account_name(new)
        with write_transaction(self.conn, self.faults):
            row = self._row_by_name(old)
            if row is None:
                raise _not_found(old)
            before = _info(row)
            _not_public(row)
            clash = self._row_by_name(new)
            if clash is not None and clash[0] != before.id:
                raise StoreError(ErrorKind.EXISTS, f"Account already exists: {new}")
            self.conn.execute(
                "UPDATE accounts SET name = ?, name_key = ? WHERE id = ?",
                (new, new.casefold(), before.id),
            )
        return before, self.get_account_by_id(before.id)

    def delete_account(self, name: str) -> AccountInfo:
        """Delete the row and the shares of its tree; the caller removes the tree."""
        with write_transaction(self.conn, self.faults):
            row = self._row_by_name(name)
            if row is None:
                raise _not_found(name)
            info = _info(row)
            _not_public(row)
            self.conn.execute("DELETE FROM shares WHERE owner = ?", (info.id,))
            self.conn.execute("DELETE FROM accounts WHERE id = ?", (info.id,))
        return info

    def get_password_hash(self, name: str) -> tuple[AccountInfo, str]:
        with read_transaction(self.conn):
            row = self._row_by_name(name)
            if row is None:
                raise _not_found(name)
            (password_hash,) = self.conn.execute(
                "SELECT password_hash FROM accounts WHERE id = ?", (row[0],)
            ).fetchone()
        return _info(row), str(password_hash)

    def set_password_hash(self, name: str, password_hash: str) -> None:
        with write_transaction(self.conn, self.faults):
            cur = self.conn.execute(
                "UPDATE accounts SET password_hash = ? WHERE name_key = ?",
                (password_hash, name.casefold()),
            )
            if cur.rowcount == 0:
                raise _not_found(name)

    def account_ids(self) -> set[int]:
        return {r[0] for r in self.conn.execute("SELECT id FROM accounts")}

    def remove_orphan_trees(self, users_dir: Path, trash: Callable[[Path], None]) -> int:
        """Remove the trees of deleted accounts; keep (and log) trees nobody can explain.

        A tree without an account row whose id was handed out (at most the AUTOINCREMENT
        sequence) belongs to a deleted account: a crash between the row's deletion and the
        tree's removal. A tree with a higher id is kept: it is either a crashed account
        creation or -- if system.db was lost or restored from an older backup -- a real
        account's mail, which reconstruct can re-register. The sequence is raised past it so
        no new account is ever given its id. Runs under the write lock, so it cannot race an
        account being created by another process (whose tree exists before its row commits).
        """
        removed = 0
        with write_transaction(self.conn, None):
            known = self.account_ids()
            row = self.conn.execute(
                "SELECT seq FROM sqlite_sequence WHERE name = 'accounts'"
            ).fetchone()
            handed_out = row[0] if row is not None else 0
            unexplained = 0
            for bucket in _listdir(users_dir):
                for entry in _listdir(users_dir / bucket):
                    if not entry.isdigit() or entry.startswith("0") or int(entry) in known:
                        continue
                    ident = int(entry)
                    if ident <= handed_out:
                        trash(users_dir / bucket / entry)
                        removed += 1
                    else:
                        log.error(
                            "account tree %s has no account in system.db; kept for msgstore "
                            "reconstruct",
                            users_dir / bucket / entry,
                        )
                        unexplained = max(unexplained, ident)
            if unexplained > handed_out:
                if row is None:
                    self.conn.execute(
                        "INSERT INTO sqlite_sequence(name, seq) VALUES ('accounts', ?)",
                        (unexplained,),
                    )
                else:
                    self.conn.execute(
                        "UPDATE sqlite_sequence SET seq = ? WHERE name = 'accounts'",
                        (unexplained,),
                    )
        return removed

    # the shares directory ---------------------------------------------------------------------

    def add_share(self, owner: AccountId, mailbox: int, identifier_key: str) -> None:
        with write_transaction(self.conn, self.faults):
            self.conn.execute(
                "INSERT OR IGNORE INTO shares(owner, mailbox_id, identifier_key) VALUES (?, ?, ?)",
                (owner, mailbox, identifier_key),
            )

    def remove_shares(
        self, owner: AccountId, mailbox: int | None, identifier_keys: Iterable[str] | None
    ) -> None:
        """Remove directory entries of a tree, a mailbox, or some identifiers of a mailbox."""
        with write_transaction(self.conn, self.faults):
            if mailbox is None:
                self.conn.execute("DELETE FROM shares WHERE owner = ?", (owner,))
            elif identifier_keys is None:
                self.conn.execute(
                    "DELETE FROM shares WHERE owner = ? AND mailbox_id = ?", (owner, mailbox)
                )
            else:
                self.conn.executemany(
                    "DELETE FROM shares WHERE owner = ? AND mailbox_id = ? AND identifier_key = ?",
                    [(owner, mailbox, key) for key in identifier_keys],
                )

    def shares_for(self, identifier_keys: Iterable[str]) -> list[tuple[int, int, str]]:
        """(owner, mailbox, identifier_key) entries for any of the identifiers."""
        keys = sorted(set(identifier_keys))
        return [
            (r[0], r[1], r[2])
            for r in self.conn.execute(
                "SELECT owner, mailbox_id, identifier_key FROM shares "
                "WHERE identifier_key IN (SELECT value FROM json_each(?)) "
                "ORDER BY owner, mailbox_id",
                (json.dumps(keys),),
            )
        ]


def _file_identity(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_dev, st.st_ino)


def _listdir(path: Path) -> list[str]:
    try:
        return os.listdir(path)
    except FileNotFoundError:
        return []

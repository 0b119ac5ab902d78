# SQL here is assembled only from constant fragments, never from input:
# ruff: noqa: S608
"""The state and plumbing every part of ``PostgresBackend`` shares."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]

from msgstore.core.accounts import AccountInfo
from msgstore.core.errors import ErrorKind, StoreError
from msgstore.core.ids import AccountId, MailboxId
from msgstore.storage.notify import ChangeHub
from msgstore.storage.postgres.db import Database, store_error
from msgstore.storage.postgres.notify import PgNotifier
from msgstore.storage.postgres.queries import (
    ACCOUNT_COLUMNS,
    account_info,
    not_found_account,
)


class PgBase:
    """Attributes set by ``PostgresBackend.__init__``, and the plumbing on them."""

    _db: Database
    _tmp_dir: Path
    _dsn: str
    _expunged_keep: int  # expunged UIDs kept per mailbox (queries.prune_expunged)
    _hub: ChangeHub
    _notifier: PgNotifier
    _public: AccountInfo | None
    _closed: bool

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError(ErrorKind.UNAVAILABLE, "The store is closed")

    async def _listen_connect(self) -> Any:
        try:
            return await asyncpg.connect(self._dsn, timeout=self._db.acquire_timeout)
        except Exception as exc:
            raise store_error(exc) from exc

    async def _send_notify(self, channel: str, payload: str) -> None:
        async def send(conn: Any) -> None:
            await conn.execute("SELECT pg_notify($1, $2)", channel, payload)

        await self._db.run(send)

    def _changed(self, account: AccountId, *mailboxes: int) -> None:
        for mailbox in dict.fromkeys(mailboxes):
            self._hub.publish(account, MailboxId(mailbox))
        self._notifier.changed(account)

    async def _run(self, fn: Any, *, write: bool = True, isolation: str = "read_committed") -> Any:
        self._check_open()
        return await self._db.run(fn, write=write, isolation=isolation)

    async def _account_and_hash(self, account: AccountId) -> tuple[AccountInfo, str]:
        async def get(conn: Any) -> Any:
            return await conn.fetchrow(
                f"SELECT {ACCOUNT_COLUMNS}, password_hash FROM accounts WHERE account_id = $1",
                account,
            )

        row = await self._run(get, write=False)
        if row is None:
            raise not_found_account(f"#{account}")
        return account_info(row), str(row["password_hash"])

"""``PostgresBackend``: the Backend protocol over one PostgreSQL database.

Every method is one transaction (``Database.run``); the rows a change depends on are locked
in one order -- mailbox rows (by account, then mailbox id), then ``account_state`` rows (by
account id), then ``blobs`` rows (by hash) -- and a transaction that still meets a deadlock
is retried. UIDs, modseqs and quota usage are therefore right under any number of writers in
any number of processes. Watchers are woken after the commit (``notify.PgNotifier``).

The methods live in one module per family (``accounts``, ``mailboxes``, ``messages``,
``updates``, ``extras``), mixed in here; SQL helpers shared by them are in ``queries``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

from msgstore.core.accounts import AccountInfo
from msgstore.core.ids import AccountId, MailboxId
from msgstore.core.names import MailboxName
from msgstore.storage.base import (
    ChangeWatcher,
    ExportSummary,
    Feature,
    Progress,
    ReconstructReport,
)
from msgstore.storage.notify import ChangeHub
from msgstore.storage.postgres import schema
from msgstore.storage.postgres.accounts import AccountsMixin
from msgstore.storage.postgres.db import Database
from msgstore.storage.postgres.extras import ExtrasMixin
from msgstore.storage.postgres.mailboxes import MailboxesMixin
from msgstore.storage.postgres.messages import MessagesMixin
from msgstore.storage.postgres.notify import PgNotifier
from msgstore.storage.postgres.queries import EXPUNGED_KEEP
from msgstore.storage.postgres.storeimport import StoreImportMixin
from msgstore.storage.postgres.updates import UpdatesMixin


class PostgresBackend(
    StoreImportMixin, AccountsMixin, MailboxesMixin, MessagesMixin, UpdatesMixin, ExtrasMixin
):
    """The scale-out backend (implements ``storage.base.Backend``). Open with :meth:`open`."""

    def __init__(
        self,
        db: Database,
        tmp_dir: Path,
        channel: str,
        dsn: str,
        expunged_keep: int = EXPUNGED_KEEP,
    ) -> None:
        self._db = db
        self._expunged_keep = max(1, expunged_keep)
        self._tmp_dir = tmp_dir
        self._dsn = dsn
        self._hub = ChangeHub(asyncio.get_running_loop())
        self._notifier = PgNotifier(self._hub, channel, self._listen_connect, self._send_notify)
        self._public: AccountInfo | None = None
        self._closed = False

    @classmethod
    async def open(
        cls,
        dsn: str,
        data_dir: Path,
        *,
        pool_min: int = 1,
        pool_max: int = 10,
        acquire_timeout: float = 10.0,
        expunged_keep: int = EXPUNGED_KEEP,
    ) -> PostgresBackend:
        """Connect, check the schema version (NOT_POSSIBLE: run ``msgstore db upgrade``)
        and make sure the public pseudo-account exists.

        ``expunged_keep``: expunged UIDs remembered per mailbox for QRESYNC and
        ``changes_since``, as the local backend's (docs/storage-postgres.md)."""
        db = await Database.connect(
            dsn, min_size=pool_min, max_size=pool_max, acquire_timeout=acquire_timeout
        )
        try:

            async def check(conn: Any) -> str:
                await schema.check_schema(conn)
                return str(await conn.fetchval("SELECT current_schema()"))

            current = await db.run(check, write=False)
            backend = cls(db, data_dir / "tmp", f"msgstore.{current}"[:63], dsn, expunged_keep)
            backend._public = await backend._ensure_public()
        except BaseException:
            await db.close()
            raise
        return backend

    @property
    def features(self) -> frozenset[Feature]:
        return frozenset(
            {
                Feature.CROSS_HOST_NOTIFY,
                Feature.UID_IMPORT,
                Feature.STORE_IMPORT,
                Feature.RECONSTRUCT,
            }
        )

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self._notifier.close()
        self._hub.close()
        await self._db.close()

    # --- notifications ------------------------------------------------------------------------

    @asynccontextmanager
    async def _watch(self, account: AccountId, mailbox: MailboxId) -> AsyncIterator[ChangeWatcher]:
        self._check_open()
        await self._notifier.listen()
        self._notifier.watching(account, 1)
        try:
            async with self._hub.watch(account, mailbox) as watcher:
                yield watcher
        finally:
            self._notifier.watching(account, -1)

    def watch(
        self, account: AccountId, mailbox: MailboxId
    ) -> AbstractAsyncContextManager[ChangeWatcher]:
        return self._watch(account, mailbox)

    # --- per-account backup and reconstruct (postgres/backup.py, postgres/reconstruct.py) -----

    async def export_account(
        self, account: AccountId, destination: Path, *, progress: Progress | None = None
    ) -> ExportSummary:
        """``storage.base.SupportsBackup``: the backend-neutral archive (storage/archive.py)."""
        from msgstore.storage.postgres import backup

        return await backup.export_account(self, account, destination, progress)

    async def restore_account(
        self, account: AccountId, source: Path, *, progress: Progress | None = None
    ) -> int:
        from msgstore.storage.postgres import backup

        return await backup.restore_account(self, account, source, progress)

    async def reconstruct(
        self,
        account: AccountId,
        *,
        apply: bool,
        mailbox: MailboxName | None = None,
        new_uidvalidity: bool = False,
        progress: Progress | None = None,
    ) -> ReconstructReport:
        """``storage.base.SupportsReconstruct``: check and repair what can drift in the
        rows (postgres/reconstruct.py)."""
        from msgstore.storage.postgres import reconstruct

        return await reconstruct.reconstruct_account(
            self,
            account,
            apply=apply,
            mailbox=mailbox,
            new_uidvalidity=new_uidvalidity,
            progress=progress,
        )

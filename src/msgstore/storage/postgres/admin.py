"""Administration of the PostgreSQL store: ``msgstore db upgrade`` and ``msgstore store copy``.

Both copies read the source store through ``storage.base`` only, account by account, mailbox
by mailbox, and skip messages whose UID is already in the destination, so an interrupted copy
is resumed by running it again.

``--to postgres`` writes the destination's rows directly, so that account and mailbox ids,
UIDs, UIDVALIDITY, UIDNEXT, modseqs, flags, internal dates and UIDLs stay what they were
(clients keep their caches, QRESYNC included). One transaction per batch of messages.

``--to local`` goes through the destination's ``Backend`` interface with
``SupportsUidImport``: UIDs, UIDVALIDITY, UIDNEXT, flags, internal dates and UIDLs are kept;
modseqs are the destination's own (HIGHESTMODSEQ restarts, so CONDSTORE/QRESYNC clients
resynchronise their flags once), and account ids are the destination's.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import asyncpg  # type: ignore[import-untyped]

from msgstore.config import Config
from msgstore.core.accounts import AccountChanges, AccountInfo
from msgstore.core.errors import ErrorKind, StoreError
from msgstore.core.flags import SYSTEM_BITS
from msgstore.core.ids import AccountId, Uid, UidSet
from msgstore.core.names import INBOX
from msgstore.storage.base import (
    Backend,
    MailboxInfo,
    NewAccount,
    SupportsUidImport,
    Want,
)
from msgstore.storage.local.index import date_to_storage
from msgstore.storage.postgres import schema
from msgstore.storage.postgres.db import store_error
from msgstore.storage.postgres.staging import CHUNK_OCTETS

#: Messages per destination transaction.
BATCH: Final = 200


async def _connect(dsn: str) -> Any:
    try:
        return await asyncpg.connect(dsn, timeout=30)
    except Exception as exc:
        raise store_error(exc) from exc


async def upgrade_database(dsn: str) -> tuple[int, list[int]]:
    """Apply the missing migrations; returns (version now, versions applied)."""
    conn = await _connect(dsn)
    try:
        applied = await schema.upgrade(conn)
        return await schema.current_version(conn), applied
    except Exception as exc:
        raise store_error(exc) from exc
    finally:
        await conn.close()


@dataclass
class CopySummary:
    accounts: int = 0
    mailboxes: int = 0
    messages: int = 0
    skipped: int = 0
    octets: int = 0

    def __str__(self) -> str:
        return (
            f"copied {self.accounts} accounts, {self.mailboxes} mailboxes, {self.messages} "
            f"messages ({self.octets} octets); {self.skipped} already there"
        )


class _Bar:
    """A rich progress bar over messages, or nothing."""

    def __init__(self, enabled: bool, total: int) -> None:
        self._progress: Any = None
        self._task: Any = None
        if enabled:
            from rich.progress import Progress

            self._progress = Progress(transient=False)
            self._progress.start()
            self._task = self._progress.add_task("copying messages", total=total)

    def advance(self, n: int = 1) -> None:
        if self._progress is not None:
            self._progress.advance(self._task, n)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()


@contextlib.contextmanager
def _bar(enabled: bool, total: int) -> Iterator[_Bar]:
    bar = _Bar(enabled, total)
    try:
        yield bar
    finally:
        bar.close()


async def _count(source: Backend, accounts: list[AccountInfo]) -> int:
    total = 0
    for info in accounts:
        for box in await source.list_mailboxes(info.id):
            total += (await source.mailbox_status(info.id, box.id)).messages
    return total


async def copy_store(config: Config, dsn: str, *, progress: bool = True) -> CopySummary:
    """Copy the store ``config`` opens into the PostgreSQL database ``dsn`` (upgraded first)."""
    from msgstore.storage.open import open_backend

    await upgrade_database(dsn)
    source = await open_backend(config)
    conn = await _connect(dsn)
    summary = CopySummary()
    try:
        accounts = [await source.public_account(), *await source.list_accounts()]
        with _bar(progress, await _count(source, accounts)) as bar:
            for info in accounts:
                await _copy_account(source, conn, info.id, summary, bar)
                summary.accounts += 1
        await conn.execute(
            "SELECT setval('account_ids', greatest((SELECT max(account_id) FROM accounts), 1))"
        )
        await conn.execute(
            "SELECT setval('mailbox_ids', greatest((SELECT max(mailbox_id) FROM mailboxes), 1))"
        )
    finally:
        await conn.close()
        await source.close()
    return summary


async def _copy_account(
    source: Backend, conn: Any, account: AccountId, summary: CopySummary, bar: _Bar
) -> None:
    info = await source.get_account_by_id(account)
    public = info.id == (await source.public_account()).id
    password_hash = "" if public else (await source.get_password_hash(info.name))[1]
    quota = await source.get_quota(account)
    async with conn.transaction():
        if public:
            existing = await conn.fetchval("SELECT account_id FROM accounts WHERE public")
            if existing is not None and existing != info.id:
                # The destination made its own public account: take the source's id instead.
                for table in ("mailboxes", "account_state", "accounts"):
                    await conn.execute(
                        f"DELETE FROM {table} WHERE account_id = $1",  # noqa: S608
                        existing,
                    )
        await conn.execute(
            "INSERT INTO accounts(account_id, name, name_key, kind, manager, login_disabled, "
            "receive_disabled, password_hash, storage_limit_kib, message_limit, created, public) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) "
            "ON CONFLICT (account_id) DO NOTHING",
            info.id,
            info.name,
            info.name.casefold(),
            info.kind.value,
            info.manager,
            info.login_disabled,
            info.receive_disabled,
            password_hash,
            info.storage_limit_kib,
            info.message_limit,
            int(info.created.timestamp()),
            public,
        )
        await conn.execute(
            "INSERT INTO account_state(account_id, storage_limit_octets, message_limit, "
            "next_uidvalidity) VALUES ($1, $2, $3, extract(epoch from now())::bigint) "
            "ON CONFLICT (account_id) DO NOTHING",
            info.id,
            None if quota.storage_limit_kib is None else quota.storage_limit_kib * 1024,
            quota.message_limit,
        )
        for name in await source.list_subscriptions(account):
            await conn.execute(
                "INSERT INTO subscriptions(account_id, name) VALUES ($1, $2) "
                "ON CONFLICT DO NOTHING",
                account,
                name,
            )
    for box in await source.list_mailboxes(account):
        await _copy_mailbox(source, conn, account, box, summary, bar)
        summary.mailboxes += 1
    async with conn.transaction():
        await conn.execute(
            "UPDATE account_state s SET storage_used_octets = coalesce(t.octets, 0), "
            "messages_used = coalesce(t.n, 0), next_uidvalidity = greatest(next_uidvalidity, "
            "coalesce(t.validity, 0) + 1) FROM (SELECT sum(m.size) AS octets, count(*) AS n, "
            "(SELECT max(uidvalidity) FROM mailboxes WHERE account_id = $1) AS validity "
            "FROM messages m WHERE m.account_id = $1) t WHERE s.account_id = $1",
            account,
        )


async def _copy_mailbox(
    source: Backend,
    conn: Any,
    account: AccountId,
    box: MailboxInfo,
    summary: CopySummary,
    bar: _Bar,
) -> None:
    status = await source.mailbox_status(account, box.id)
    if box.name == INBOX:
        # The destination account may have been created with its own INBOX: replace it.
        await conn.execute(
            "DELETE FROM mailboxes WHERE account_id = $1 AND name = 'INBOX' "
            "AND mailbox_id <> $2 AND NOT EXISTS (SELECT 1 FROM messages m "
            "WHERE m.account_id = $1 AND m.mailbox_id = mailboxes.mailbox_id)",
            account,
            box.id,
        )
    await conn.execute(
        "INSERT INTO mailboxes(account_id, mailbox_id, name, uidvalidity, uidnext, "
        "highestmodseq, special_use, recent_uid) VALUES ($1, $2, $3, $4, $5, $6, $7, $5) "
        "ON CONFLICT (account_id, mailbox_id) DO UPDATE SET uidnext = excluded.uidnext, "
        "highestmodseq = greatest(mailboxes.highestmodseq, excluded.highestmodseq)",
        account,
        box.id,
        box.name,
        status.uidvalidity,
        status.uidnext,
        status.highestmodseq,
        " ".join(sorted(box.special_use)),
    )
    for ident, rights in (await source.get_acl(account, box.id)).items():
        await conn.execute(
            "INSERT INTO acl(account_id, mailbox_id, identifier_key, identifier, rights) "
            "VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
            account,
            box.id,
            ident.casefold(),
            ident,
            str(rights),
        )
    snapshot = await source.snapshot(account, box.id)
    for keyword in snapshot.keywords:
        await conn.execute(
            "INSERT INTO mailbox_keywords(account_id, mailbox_id, keyword) VALUES ($1, $2, $3) "
            "ON CONFLICT DO NOTHING",
            account,
            box.id,
            keyword,
        )
    have = set(
        await conn.fetchval(
            "SELECT coalesce(array_agg(uid), '{}') FROM messages WHERE account_id = $1 "
            "AND mailbox_id = $2",
            account,
            box.id,
        )
    )
    todo = [Uid(u) for u in snapshot.uids if u not in have]
    summary.skipped += len(snapshot.uids) - len(todo)
    bar.advance(len(snapshot.uids) - len(todo))
    for start in range(0, len(todo), BATCH):
        batch = todo[start : start + BATCH]
        metas = await source.fetch_meta(account, box.id, UidSet.from_uids(batch), Want.FLAGS)
        async with conn.transaction():
            for meta in metas:
                async with source.open_body(account, box.id, meta.uid) as reader:
                    data = await reader.read(0, reader.size)
                await _put_blob(conn, source, account, box.id, meta.uid, data)
                seconds, offset = date_to_storage(meta.internal_date)
                bits = sum(SYSTEM_BITS.get(f, 0) for f in meta.flags)
                keywords = sorted(f for f in meta.flags if not f.startswith("\\"))
                await conn.execute(
                    "INSERT INTO messages(account_id, mailbox_id, uid, modseq, sysflags, "
                    "keywords, internal_date, tz_offset, size, sha256, uidl) "
                    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
                    account,
                    box.id,
                    meta.uid,
                    meta.modseq,
                    bits,
                    " ".join(keywords) or None,
                    seconds,
                    offset,
                    meta.size,
                    meta.sha256,
                    meta.uidl,
                )
                summary.messages += 1
                summary.octets += meta.size
        bar.advance(len(batch))


async def _put_blob(
    conn: Any, source: Backend, account: AccountId, mailbox: int, uid: Uid, data: bytes
) -> None:
    import hashlib

    from msgstore.mime.parse import parse_message
    from msgstore.storage.postgres.staging import parsed_meta

    sha = hashlib.sha256(data).digest()
    known = await conn.fetchval(
        "UPDATE blobs SET refcount = refcount + 1 WHERE sha256 = $1 RETURNING 1", sha
    )
    if known is not None:
        return
    meta = parsed_meta(parse_message(data))
    await conn.execute(
        "INSERT INTO blobs(sha256, size, refcount, chunk_octets, meta_version, envelope, "
        "bodystructure, body, partmap, headers) VALUES ($1, $2, 1, $3, $4, $5, $6, $7, $8, $9)",
        sha,
        len(data),
        CHUNK_OCTETS,
        meta.meta_version,
        meta.envelope,
        meta.bodystructure,
        meta.body,
        meta.partmap,
        meta.headers_json,
    )
    await conn.executemany(
        "INSERT INTO blob_chunks(sha256, seq, data) VALUES ($1, $2, $3)",
        [
            (sha, i, data[pos : pos + CHUNK_OCTETS])
            for i, pos in enumerate(range(0, max(len(data), 1), CHUNK_OCTETS))
        ],
    )


async def copy_to_backend(source: Backend, dest: Backend, *, progress: bool = True) -> CopySummary:
    """Copy every account of ``source`` into ``dest`` through the Backend interface, keeping
    UIDs and UIDVALIDITY with ``SupportsUidImport`` (``--to local``)."""
    if not isinstance(dest, SupportsUidImport):
        raise StoreError(ErrorKind.NOT_POSSIBLE, "The destination cannot keep UIDs")
    summary = CopySummary()
    source_public = await source.public_account()
    accounts = [source_public, *await source.list_accounts()]
    with _bar(progress, await _count(source, accounts)) as bar:
        for info in accounts:
            if info.id == source_public.id:
                target = await dest.public_account()
            else:
                target = await _dest_account(source, dest, info)
            for name in await source.list_subscriptions(info.id):
                await dest.set_subscribed(target.id, name, True)
            for box in await source.list_mailboxes(info.id):
                await _copy_box_via(source, dest, info.id, target.id, box, summary, bar)
                summary.mailboxes += 1
            summary.accounts += 1
    return summary


async def _dest_account(source: Backend, dest: Backend, info: AccountInfo) -> AccountInfo:
    try:
        return await dest.get_account(info.name)
    except StoreError as exc:
        if exc.kind is not ErrorKind.NOT_FOUND:
            raise
    _, password_hash = await source.get_password_hash(info.name)
    await dest.create_account(
        NewAccount(
            name=info.name,
            password_hash=password_hash,
            kind=info.kind,
            manager=info.manager,
            storage_limit_kib=info.storage_limit_kib,
            message_limit=info.message_limit,
        )
    )
    return await dest.update_account(
        info.name,
        AccountChanges(login_disabled=info.login_disabled, receive_disabled=info.receive_disabled),
    )


async def _copy_box_via(
    source: Backend,
    dest: Backend,
    account: AccountId,
    target: AccountId,
    box: MailboxInfo,
    summary: CopySummary,
    bar: _Bar,
) -> None:
    assert isinstance(dest, SupportsUidImport)
    status = await source.mailbox_status(account, box.id)
    try:
        mine = await dest.get_mailbox(target, box.name)
    except StoreError as exc:
        if exc.kind is not ErrorKind.NOT_FOUND:
            raise
        mine = await dest.create_mailbox(target, box.name)
    await dest.set_special_use(target, box.name, " ".join(sorted(box.special_use)))
    for ident, rights in (await source.get_acl(account, box.id)).items():
        await dest.set_acl(target, mine.id, ident, rights)
    there = await dest.snapshot(target, mine.id)
    if there.uidvalidity != status.uidvalidity:
        await dest.import_uid_state(
            target, mine.id, uidvalidity=status.uidvalidity, uidnext=Uid(1)
        )
    have = set(there.uids)
    snapshot = await source.snapshot(account, box.id)
    todo = [Uid(u) for u in snapshot.uids if u not in have]
    summary.skipped += len(snapshot.uids) - len(todo)
    bar.advance(len(snapshot.uids) - len(todo))
    for start in range(0, len(todo), BATCH):
        batch = todo[start : start + BATCH]
        for meta in await source.fetch_meta(account, box.id, UidSet.from_uids(batch), Want.FLAGS):
            async with source.open_body(account, box.id, meta.uid) as reader:
                data = await reader.read(0, reader.size)
            await dest.import_uid_state(target, mine.id, uidvalidity=None, uidnext=meta.uid)
            async with dest.stage(max_octets=max(len(data), 1) * 2) as staged:
                await staged.write(data)
                await staged.finish()
                result = await dest.append(
                    target,
                    mine.id,
                    staged,
                    flags=meta.flags,
                    internal_date=meta.internal_date,
                    uidl=meta.uidl,
                    check_quota=False,
                )
            if result.uid != meta.uid:
                raise StoreError(
                    ErrorKind.INTERNAL,
                    "UID not kept while copying",
                    detail=f"{box.name}: UID {meta.uid} became {result.uid}",
                )
            summary.messages += 1
            summary.octets += meta.size
            bar.advance()
    await dest.import_uid_state(target, mine.id, uidvalidity=None, uidnext=status.uidnext)


async def copy_to_local(config: Config, data_dir: Path, *, progress: bool = True) -> CopySummary:
    """Copy the configured store into a local store in ``data_dir`` (created if new)."""
    from msgstore.config import load_config
    from msgstore.storage.open import open_backend

    source = await open_backend(config)
    try:
        dest = await open_backend(load_config(None, data_dir=data_dir))
        try:
            return await copy_to_backend(source, dest, progress=progress)
        finally:
            await dest.close()
    finally:
        await source.close()


async def create_schema(dsn: str, name: str) -> None:
    """Create schema ``name`` (for benchmarks and tests: ``?search_path=name`` selects it)."""
    if not name.isidentifier() or not name.isascii():
        raise StoreError(ErrorKind.PARAMS, f"Bad schema name {name!r}")
    conn = await _connect(dsn)
    try:
        await conn.execute(f"CREATE SCHEMA {name}")
    finally:
        await conn.close()


async def drop_schema(dsn: str, name: str) -> None:
    if not name.isidentifier() or not name.isascii():
        raise StoreError(ErrorKind.PARAMS, f"Bad schema name {name!r}")
    conn = await _connect(dsn)
    try:
        await conn.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")
    finally:
        await conn.close()

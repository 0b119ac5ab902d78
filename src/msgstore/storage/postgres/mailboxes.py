# SQL here is assembled only from constant fragments, never from input:
# ruff: noqa: S608
"""Mailboxes of ``PostgresBackend``: the tree, subscriptions, special use, status."""

from __future__ import annotations

from typing import Any

import asyncpg  # type: ignore[import-untyped]

from msgstore.core.errors import ErrorKind, StoreError
from msgstore.core.ids import AccountId, MailboxId, ModSeq, Uid, UidValidity
from msgstore.core.names import INBOX, MailboxName, is_below, mailbox_name, parent_of
from msgstore.storage.base import (
    MailboxInfo,
    MailboxStatus,
)
from msgstore.storage.local.index import (
    parse_special_use,
)
from msgstore.storage.postgres.mixin import PgBase
from msgstore.storage.postgres.queries import (
    check_account,
    create_mailbox_rows,
    drop_refs,
    mailbox_by_name,
    mailbox_row,
    not_found_mailbox,
    release,
    transfer,
)


def mailbox_info(row: Any, subscribed: bool) -> MailboxInfo:
    """A ``mailboxes`` row (id, name, uidvalidity, special use) as ``MailboxInfo``."""
    return MailboxInfo(
        id=MailboxId(row["mailbox_id"]),
        name=MailboxName(row["name"]),
        uidvalidity=UidValidity(row["uidvalidity"]),
        special_use=frozenset(row["special_use"].split()),
        subscribed=subscribed,
    )


class MailboxesMixin(PgBase):
    # --- mailboxes ----------------------------------------------------------------------------

    async def _mailbox_info(self, conn: Any, account: AccountId, row: Any) -> MailboxInfo:
        subscribed = await conn.fetchval(
            "SELECT 1 FROM subscriptions WHERE account_id = $1 AND name = $2",
            account,
            row["name"],
        )
        return mailbox_info(row, subscribed is not None)

    async def create_mailbox(
        self, account: AccountId, name: MailboxName, *, special_use: str = ""
    ) -> MailboxInfo:
        name = mailbox_name(name)
        special = parse_special_use(special_use)

        async def create(conn: Any) -> MailboxInfo:
            await check_account(conn, account)
            if await mailbox_by_name(conn, account, name) is not None:
                raise StoreError(ErrorKind.EXISTS, f"Mailbox already exists: {name}")
            try:
                async with conn.transaction():
                    await create_mailbox_rows(conn, account, name, special, exist_ok=False)
            except asyncpg.UniqueViolationError:
                raise StoreError(ErrorKind.EXISTS, f"Mailbox already exists: {name}") from None
            row = await mailbox_by_name(conn, account, name)
            return await self._mailbox_info(conn, account, row)

        return await self._run(create)  # type: ignore[no-any-return]

    async def delete_mailbox(self, account: AccountId, name: MailboxName) -> None:
        name = mailbox_name(name)
        if name == INBOX:
            raise StoreError(ErrorKind.NOT_POSSIBLE, "INBOX cannot be deleted")

        async def delete(conn: Any) -> int:
            row = await mailbox_by_name(conn, account, name)
            if row is None:
                await check_account(conn, account)
                raise not_found_mailbox(name)
            mailbox = row["mailbox_id"]
            await mailbox_row(conn, account, mailbox, lock=True)
            child = await conn.fetchval(
                "SELECT 1 FROM mailboxes WHERE account_id = $1 AND left(name, $2) = $3 LIMIT 1",
                account,
                len(name) + 1,
                name + "/",
            )
            if child is not None:
                raise StoreError(
                    ErrorKind.HAS_CHILDREN, f"Mailbox {name} has children; delete them first"
                )
            gone = await conn.fetch(
                "DELETE FROM messages WHERE account_id = $1 AND mailbox_id = $2 "
                "RETURNING size, sha256",
                account,
                mailbox,
            )
            await release(conn, account, sum(r["size"] for r in gone), len(gone))
            for table in ("expunged", "mailbox_keywords", "acl", "mailboxes"):
                await conn.execute(
                    f"DELETE FROM {table} WHERE account_id = $1 AND mailbox_id = $2",
                    account,
                    mailbox,
                )
            await drop_refs(conn, [r["sha256"] for r in gone])
            return int(mailbox)

        mailbox = await self._run(delete)
        self._changed(account, mailbox)

    async def rename_mailbox(self, account: AccountId, old: MailboxName, new: MailboxName) -> None:
        old, new = mailbox_name(old), mailbox_name(new)
        if old == INBOX:
            await self._rename_inbox(account, new)
            return

        async def rename(conn: Any) -> None:
            await check_account(conn, account)
            if await mailbox_by_name(conn, account, old) is None:
                raise not_found_mailbox(old)
            if new == INBOX or await mailbox_by_name(conn, account, new) is not None:
                raise StoreError(ErrorKind.EXISTS, f"Mailbox already exists: {new}")
            if is_below(new, old):
                raise StoreError(
                    ErrorKind.NOT_POSSIBLE, f"Cannot rename {old} into its own subtree"
                )
            moving = await conn.fetch(
                "SELECT mailbox_id, name FROM mailboxes WHERE account_id = $1 "
                "AND (name = $2 OR left(name, $3) = $4) ORDER BY mailbox_id FOR UPDATE",
                account,
                old,
                len(old) + 1,
                old + "/",
            )
            renames = [(r["mailbox_id"], MailboxName(new + r["name"][len(old) :])) for r in moving]
            for _, target in renames:
                mailbox_name(target)
                if await mailbox_by_name(conn, account, target) is not None:
                    raise StoreError(ErrorKind.EXISTS, f"Mailbox already exists: {target}")
            parent = parent_of(new)
            if parent is not None and await mailbox_by_name(conn, account, parent) is None:
                await create_mailbox_rows(conn, account, parent, "", exist_ok=True)
            # Two steps, so that names swapping places never collide mid-update.
            for ident, _ in renames:
                await conn.execute(
                    "UPDATE mailboxes SET name = $3 WHERE account_id = $1 AND mailbox_id = $2",
                    account,
                    ident,
                    f"\x01rename\x01{ident}",
                )
            for ident, target in renames:
                await conn.execute(
                    "UPDATE mailboxes SET name = $3 WHERE account_id = $1 AND mailbox_id = $2",
                    account,
                    ident,
                    target,
                )
            subs = await conn.fetch(
                "DELETE FROM subscriptions WHERE account_id = $1 "
                "AND (name = $2 OR left(name, $3) = $4) RETURNING name",
                account,
                old,
                len(old) + 1,
                old + "/",
            )
            for sub in subs:
                await conn.execute(
                    "INSERT INTO subscriptions(account_id, name) VALUES ($1, $2) "
                    "ON CONFLICT DO NOTHING",
                    account,
                    new + sub["name"][len(old) :],
                )

        await self._run(rename)

    async def _rename_inbox(self, account: AccountId, new: MailboxName) -> None:
        async def rename(conn: Any) -> int:
            await check_account(conn, account)
            if new == INBOX or await mailbox_by_name(conn, account, new) is not None:
                raise StoreError(ErrorKind.EXISTS, f"Mailbox already exists: {new}")
            inbox = (await mailbox_by_name(conn, account, INBOX))["mailbox_id"]
            await create_mailbox_rows(conn, account, new, "", exist_ok=False)
            target = (await mailbox_by_name(conn, account, new))["mailbox_id"]
            await transfer(conn, account, inbox, None, account, target, move=True)
            return int(inbox)

        inbox = await self._run(rename)
        self._changed(account, inbox)

    async def get_mailbox(self, account: AccountId, name: MailboxName) -> MailboxInfo:
        name = mailbox_name(name)

        async def get(conn: Any) -> MailboxInfo:
            # One statement: IMAP looks the mailbox up by name for every STATUS.
            row = await conn.fetchrow(
                "SELECT mailbox_id, name, uidvalidity, special_use, EXISTS (SELECT 1 FROM "
                "subscriptions s WHERE s.account_id = $1 AND s.name = $2) AS subscribed "
                "FROM mailboxes WHERE account_id = $1 AND name = $2",
                account,
                name,
            )
            if row is None:
                await check_account(conn, account)
                raise not_found_mailbox(name)
            return mailbox_info(row, row["subscribed"])

        return await self._run(get, write=False)  # type: ignore[no-any-return]

    async def list_mailboxes(self, account: AccountId) -> list[MailboxInfo]:
        async def get(conn: Any) -> list[Any]:
            await check_account(conn, account)
            return list(
                await conn.fetch(
                    "SELECT m.mailbox_id, m.name, m.uidvalidity, m.special_use, "
                    "s.name IS NOT NULL AS subscribed FROM mailboxes m LEFT JOIN subscriptions s "
                    "ON s.account_id = m.account_id AND s.name = m.name WHERE m.account_id = $1",
                    account,
                )
            )

        out = [
            MailboxInfo(
                id=MailboxId(r["mailbox_id"]),
                name=MailboxName(r["name"]),
                uidvalidity=UidValidity(r["uidvalidity"]),
                special_use=frozenset(r["special_use"].split()),
                subscribed=r["subscribed"],
            )
            for r in await self._run(get, write=False)
        ]
        out.sort(key=lambda m: m.name)
        return out

    async def set_subscribed(self, account: AccountId, name: MailboxName, on: bool) -> None:
        name = mailbox_name(name)

        async def update(conn: Any) -> None:
            await check_account(conn, account)
            if on:
                await conn.execute(
                    "INSERT INTO subscriptions(account_id, name) VALUES ($1, $2) "
                    "ON CONFLICT DO NOTHING",
                    account,
                    name,
                )
            else:
                await conn.execute(
                    "DELETE FROM subscriptions WHERE account_id = $1 AND name = $2", account, name
                )

        await self._run(update)

    async def list_subscriptions(self, account: AccountId) -> list[MailboxName]:
        async def get(conn: Any) -> list[Any]:
            await check_account(conn, account)
            return list(
                await conn.fetch("SELECT name FROM subscriptions WHERE account_id = $1", account)
            )

        return sorted(MailboxName(r["name"]) for r in await self._run(get, write=False))

    async def set_special_use(
        self, account: AccountId, name: MailboxName, special_use: str
    ) -> None:
        name = mailbox_name(name)
        special = parse_special_use(special_use)

        async def update(conn: Any) -> None:
            done = await conn.fetchval(
                "UPDATE mailboxes SET special_use = $3 WHERE account_id = $1 AND name = $2 "
                "RETURNING 1",
                account,
                name,
                special,
            )
            if done is None:
                await check_account(conn, account)
                raise not_found_mailbox(name)

        await self._run(update)

    async def mailbox_status(self, account: AccountId, mailbox: MailboxId) -> MailboxStatus:
        """One statement (one round trip, one snapshot)."""

        async def get(conn: Any) -> Any:
            return await conn.fetchrow(
                "SELECT b.uidnext, b.uidvalidity, b.highestmodseq, c.* FROM mailboxes b "
                "LEFT JOIN LATERAL (SELECT count(*) AS n, coalesce(sum(m.size), 0) AS octets, "
                " count(*) FILTER (WHERE m.sysflags & 1 = 0) AS unseen, "
                " count(*) FILTER (WHERE m.sysflags & 8 <> 0) AS deleted, "
                " count(*) FILTER (WHERE m.uid >= b.recent_uid) AS recent "
                " FROM messages m WHERE m.account_id = $1 AND m.mailbox_id = $2) c ON true "
                "WHERE b.account_id = $1 AND b.mailbox_id = $2",
                account,
                mailbox,
            )

        row = await self._run(get, write=False)
        if row is None:
            await self._run(lambda conn: check_account(conn, account), write=False)
            raise not_found_mailbox(f"#{mailbox}")
        return MailboxStatus(
            id=mailbox,
            messages=row["n"],
            recent=row["recent"],
            unseen=row["unseen"],
            uidnext=Uid(row["uidnext"]),
            uidvalidity=UidValidity(row["uidvalidity"]),
            highestmodseq=ModSeq(row["highestmodseq"]),
            size_octets=int(row["octets"]),
            deleted=row["deleted"],
        )

# SQL here is assembled only from constant fragments, never from input:
# ruff: noqa: S608
"""Accounts, ACLs and quota of ``PostgresBackend``."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Sequence
from typing import Any

from msgstore.core.accounts import AccountChanges, AccountInfo, AccountKind
from msgstore.core.acl import Rights
from msgstore.core.errors import ErrorKind, StoreError
from msgstore.core.ids import AccountId, MailboxId
from msgstore.core.names import INBOX, MailboxName, mailbox_name
from msgstore.core.quota import QuotaInfo
from msgstore.storage.base import (
    AccountQuery,
    NewAccount,
)
from msgstore.storage.local.index import (
    acl_identifier,
    parse_special_use,
)
from msgstore.storage.local.system import PUBLIC_NAME, account_name
from msgstore.storage.postgres.mixin import PgBase
from msgstore.storage.postgres.queries import (
    ACCOUNT_COLUMNS,
    PUBLIC_QUOTA_ROOT,
    account_info,
    account_row,
    check_limit,
    create_mailbox_rows,
    drop_refs,
    mailbox_row,
    not_found_account,
)


class AccountsMixin(PgBase):
    # --- accounts -----------------------------------------------------------------------------

    async def _insert_account(
        self,
        conn: Any,
        *,
        name: str,
        password_hash: str,
        kind: AccountKind,
        manager: bool,
        storage_limit_kib: int | None,
        message_limit: int | None,
        mailboxes: Sequence[tuple[MailboxName, str]],
        public: bool = False,
    ) -> AccountId:
        ident = await conn.fetchval(
            "INSERT INTO accounts(name, name_key, kind, manager, password_hash, "
            "storage_limit_kib, message_limit, created, public) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) "
            "ON CONFLICT DO NOTHING RETURNING account_id",
            name,
            name.casefold(),
            kind.value,
            manager,
            password_hash,
            storage_limit_kib,
            message_limit,
            int(dt.datetime.now(dt.UTC).timestamp()),
            public,
        )
        if ident is None:
            raise StoreError(ErrorKind.EXISTS, f"Account already exists: {name}")
        account = AccountId(ident)
        await conn.execute(
            "INSERT INTO account_state(account_id, storage_limit_octets, message_limit, "
            "next_uidvalidity) VALUES ($1, $2, $3, $4)",
            account,
            None if storage_limit_kib is None else storage_limit_kib * 1024,
            message_limit,
            int(time.time()),
        )
        for mbname, special in [(INBOX, ""), *mailboxes]:
            await create_mailbox_rows(conn, account, mbname, special, exist_ok=True)
        return account

    async def _ensure_public(self) -> AccountInfo:
        async def get(conn: Any) -> Any:
            return await conn.fetchrow(f"SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE public")

        row = await self._run(get, write=False)
        if row is None:

            async def create(conn: Any) -> None:
                await self._insert_account(
                    conn,
                    name=PUBLIC_NAME,
                    password_hash="",
                    kind=AccountKind.IMAP,
                    manager=False,
                    storage_limit_kib=None,
                    message_limit=None,
                    mailboxes=(),
                    public=True,
                )

            try:
                await self._run(create)
            except StoreError as exc:
                if exc.kind is not ErrorKind.EXISTS:
                    raise
            row = await self._run(get, write=False)
        return account_info(row)

    async def create_account(self, spec: NewAccount) -> AccountInfo:
        account_name(spec.name)
        check_limit(spec.storage_limit_kib, "Storage limit")
        check_limit(spec.message_limit, "Message limit")
        mailboxes = [(mailbox_name(n), parse_special_use(s)) for n, s in spec.mailboxes]

        async def create(conn: Any) -> AccountId:
            return await self._insert_account(
                conn,
                name=spec.name,
                password_hash=spec.password_hash,
                kind=spec.kind,
                manager=spec.manager,
                storage_limit_kib=spec.storage_limit_kib,
                message_limit=spec.message_limit,
                mailboxes=mailboxes,
            )

        account = await self._run(create)
        return await self.get_account_by_id(account)

    async def get_account(self, name: str) -> AccountInfo:
        row = await self._run(lambda conn: account_row(conn, name), write=False)
        if row is None:
            raise not_found_account(name)
        return account_info(row)

    async def get_account_by_id(self, account: AccountId) -> AccountInfo:
        async def get(conn: Any) -> Any:
            return await conn.fetchrow(
                f"SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE account_id = $1", account
            )

        row = await self._run(get, write=False)
        if row is None:
            raise not_found_account(f"#{account}")
        return account_info(row)

    async def list_accounts(self, query: AccountQuery | None = None) -> list[AccountInfo]:
        """Filtered and paged in SQL, ordered by code point (COLLATE "C") whatever the
        database's collation, as the SQLite backend orders."""
        q = query if query is not None else AccountQuery()
        where = ["NOT public"]
        args: list[object] = []

        def arg(value: object) -> str:
            args.append(value)
            return f"${len(args)}"

        for column, value in (
            ("manager", q.manager),
            ("login_disabled", q.login_disabled),
            ("receive_disabled", q.receive_disabled),
        ):
            if value is not None:
                where.append(f"{column} = {arg(value)}")
        if q.kind is not None:
            where.append(f"kind = {arg(q.kind.value)}")
        if q.contains:
            where.append(f"strpos(name_key, {arg(q.contains)}) > 0")
        if q.after is not None:
            key, ident = q.after
            where.append(f'(name_key COLLATE "C", account_id) > ({arg(key)}, {arg(ident)})')
        sql = (
            f"SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE {' AND '.join(where)} "
            'ORDER BY name_key COLLATE "C", account_id'
        )
        if q.limit is not None:
            sql += f" LIMIT {arg(q.limit)}"
        if q.offset:
            sql += f" OFFSET {arg(q.offset)}"

        async def get(conn: Any) -> list[Any]:
            return list(await conn.fetch(sql, *args))

        return [account_info(r) for r in await self._run(get, write=False)]

    async def update_account(self, name: str, changes: AccountChanges) -> AccountInfo:
        sets: list[str] = []
        values: list[object] = []
        for column, value in (
            ("kind", changes.kind.value if changes.kind is not None else None),
            ("manager", changes.manager),
            ("login_disabled", changes.login_disabled),
            ("receive_disabled", changes.receive_disabled),
        ):
            if value is not None:
                values.append(value)
                sets.append(f"{column} = ${len(values) + 1}")
        limits = False
        for column, limit, what in (
            ("storage_limit_kib", changes.storage_limit_kib, "Storage limit"),
            ("message_limit", changes.message_limit, "Message limit"),
        ):
            if limit is None:
                continue
            if limit < -1:
                raise StoreError(ErrorKind.PARAMS, f"{what} must be -1 (unlimited) or more")
            values.append(None if limit == -1 else limit)
            sets.append(f"{column} = ${len(values) + 1}")
            limits = True

        async def update(conn: Any) -> Any:
            row = await account_row(conn, name, lock=True)
            if row is None:
                raise not_found_account(name)
            if sets:
                # Column names come from the fixed list above, never from input.
                await conn.execute(
                    f"UPDATE accounts SET {', '.join(sets)} WHERE account_id = $1",
                    row["account_id"],
                    *values,
                )
            if limits:
                await conn.execute(
                    "UPDATE account_state s "
                    "SET storage_limit_octets = a.storage_limit_kib * 1024, "
                    "message_limit = a.message_limit FROM accounts a "
                    "WHERE a.account_id = $1 AND s.account_id = a.account_id",
                    row["account_id"],
                )
            return await conn.fetchrow(
                f"SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE account_id = $1",
                row["account_id"],
            )

        return account_info(await self._run(update))

    async def rename_account(self, old: str, new: str) -> AccountInfo:
        account_name(new)

        async def rename(conn: Any) -> Any:
            row = await account_row(conn, old, lock=True)
            if row is None:
                raise not_found_account(old)
            if row["public"]:
                raise StoreError(
                    ErrorKind.NOT_POSSIBLE, "The public folders' pseudo-account cannot be changed"
                )
            clash = await account_row(conn, new)
            if clash is not None and clash["account_id"] != row["account_id"]:
                raise StoreError(ErrorKind.EXISTS, f"Account already exists: {new}")
            await conn.execute(
                "UPDATE accounts SET name = $2, name_key = $3 WHERE account_id = $1",
                row["account_id"],
                new,
                new.casefold(),
            )
            before = row["name"]
            if before.casefold() != new.casefold():
                for old_i, new_i in ((before, new), ("-" + before, "-" + new)):
                    old_key = old_i.casefold()
                    new_ident, new_key = acl_identifier(new_i)
                    await conn.execute(
                        "DELETE FROM acl a USING acl b WHERE a.identifier_key = $2 "
                        "AND b.identifier_key = $1 AND b.account_id = a.account_id "
                        "AND b.mailbox_id = a.mailbox_id",
                        old_key,
                        new_key,
                    )
                    await conn.execute(
                        "UPDATE acl SET identifier = $3, identifier_key = $2 "
                        "WHERE identifier_key = $1",
                        old_key,
                        new_key,
                        new_ident,
                    )
            return await conn.fetchrow(
                f"SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE account_id = $1",
                row["account_id"],
            )

        return account_info(await self._run(rename))

    async def delete_account(self, name: str) -> None:
        async def delete(conn: Any) -> AccountId:
            row = await account_row(conn, name)
            if row is None:
                raise not_found_account(name)
            if row["public"]:
                raise StoreError(
                    ErrorKind.NOT_POSSIBLE, "The public folders' pseudo-account cannot be changed"
                )
            account = AccountId(row["account_id"])
            await conn.execute(
                "SELECT 1 FROM mailboxes WHERE account_id = $1 ORDER BY mailbox_id FOR UPDATE",
                account,
            )
            await conn.execute(
                "SELECT 1 FROM account_state WHERE account_id = $1 FOR UPDATE", account
            )
            shas = await conn.fetch(
                "DELETE FROM messages WHERE account_id = $1 RETURNING sha256", account
            )
            for table in (
                "expunged",
                "mailbox_keywords",
                "acl",
                "subscriptions",
                "mailboxes",
                "web_sessions",
                "last_logins",
                "api_tokens",
            ):
                await conn.execute(f"DELETE FROM {table} WHERE account_id = $1", account)
            await conn.execute("DELETE FROM account_state WHERE account_id = $1", account)
            await drop_refs(conn, [r["sha256"] for r in shas])
            keys = sorted({k.casefold() for n in (name, row["name"]) for k in (n, "-" + n)})
            await conn.execute("DELETE FROM acl WHERE identifier_key = ANY($1::text[])", keys)
            await conn.execute("DELETE FROM accounts WHERE account_id = $1", account)
            return account

        account = await self._run(delete)
        self._hub.publish_account(account)
        self._notifier.changed(account)

    async def get_password_hash(self, name: str) -> tuple[AccountInfo, str]:
        async def get(conn: Any) -> Any:
            return await conn.fetchrow(
                f"SELECT {ACCOUNT_COLUMNS}, password_hash FROM accounts WHERE name_key = $1",
                name.casefold(),
            )

        row = await self._run(get, write=False)
        if row is None:
            raise not_found_account(name)
        return account_info(row), str(row["password_hash"])

    async def set_password_hash(self, name: str, password_hash: str) -> None:
        async def update(conn: Any) -> Any:
            return await conn.fetchval(
                "UPDATE accounts SET password_hash = $2 WHERE name_key = $1 RETURNING 1",
                name.casefold(),
                password_hash,
            )

        if await self._run(update) is None:
            raise not_found_account(name)

    async def public_account(self) -> AccountInfo:
        self._check_open()
        assert self._public is not None
        return self._public

    # --- acl ----------------------------------------------------------------------------------

    async def get_acl(self, account: AccountId, mailbox: MailboxId) -> dict[str, Rights]:
        async def get(conn: Any) -> list[Any]:
            await mailbox_row(conn, account, mailbox)
            return list(
                await conn.fetch(
                    "SELECT identifier, rights FROM acl WHERE account_id = $1 "
                    "AND mailbox_id = $2 ORDER BY identifier_key",
                    account,
                    mailbox,
                )
            )

        return {
            r["identifier"]: Rights.parse(r["rights"]) for r in await self._run(get, write=False)
        }

    async def set_acl(
        self, account: AccountId, mailbox: MailboxId, identifier: str, rights: Rights
    ) -> None:
        ident, key = acl_identifier(identifier)
        if not rights:
            await self.delete_acl(account, mailbox, identifier)
            return

        async def update(conn: Any) -> None:
            await mailbox_row(conn, account, mailbox)
            await conn.execute(
                "INSERT INTO acl(account_id, mailbox_id, identifier_key, identifier, rights) "
                "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (account_id, mailbox_id, identifier_key) "
                "DO UPDATE SET identifier = excluded.identifier, rights = excluded.rights",
                account,
                mailbox,
                key,
                ident,
                str(rights),
            )

        await self._run(update)

    async def delete_acl(self, account: AccountId, mailbox: MailboxId, identifier: str) -> None:
        _, key = acl_identifier(identifier)

        async def delete(conn: Any) -> None:
            await mailbox_row(conn, account, mailbox)
            await conn.execute(
                "DELETE FROM acl WHERE account_id = $1 AND mailbox_id = $2 "
                "AND identifier_key = $3",
                account,
                mailbox,
                key,
            )

        await self._run(delete)

    async def shared_with(self, identifiers: Sequence[str]) -> list[tuple[AccountId, MailboxId]]:
        keys = sorted({acl_identifier(i)[1] for i in identifiers})

        async def get(conn: Any) -> list[Any]:
            return list(
                await conn.fetch(
                    "SELECT DISTINCT account_id, mailbox_id FROM acl "
                    "WHERE identifier_key = ANY($1::text[]) ORDER BY 1, 2",
                    keys,
                )
            )

        return [
            (AccountId(r["account_id"]), MailboxId(r["mailbox_id"]))
            for r in await self._run(get, write=False)
        ]

    # --- quota --------------------------------------------------------------------------------

    async def get_quota(self, account: AccountId) -> QuotaInfo:
        async def get(conn: Any) -> Any:
            return await conn.fetchrow(
                "SELECT a.name, a.public, a.storage_limit_kib, a.message_limit, "
                "s.storage_used_octets, s.messages_used FROM accounts a, account_state s "
                "WHERE a.account_id = $1 AND s.account_id = $1",
                account,
            )

        row = await self._run(get, write=False)
        if row is None:
            raise not_found_account(f"#{account}")
        return QuotaInfo(
            root=PUBLIC_QUOTA_ROOT if row["public"] else row["name"],
            storage_limit_kib=row["storage_limit_kib"],
            message_limit=row["message_limit"],
            storage_used_octets=row["storage_used_octets"],
            messages_used=row["messages_used"],
        )

    async def set_quota(
        self, account: AccountId, *, storage_limit_kib: int | None, message_limit: int | None
    ) -> QuotaInfo:
        check_limit(storage_limit_kib, "Storage limit")
        check_limit(message_limit, "Message limit")

        async def update(conn: Any) -> None:
            done = await conn.fetchval(
                "UPDATE accounts SET storage_limit_kib = $2, message_limit = $3 "
                "WHERE account_id = $1 RETURNING 1",
                account,
                storage_limit_kib,
                message_limit,
            )
            if done is None:
                raise not_found_account(f"#{account}")
            await conn.execute(
                "UPDATE account_state SET storage_limit_octets = $2, message_limit = $3 "
                "WHERE account_id = $1",
                account,
                None if storage_limit_kib is None else storage_limit_kib * 1024,
                message_limit,
            )

        await self._run(update)
        return await self.get_quota(account)

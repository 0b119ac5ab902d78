"""The audit log, forwarding, the relay queue, web sessions and last logins in PostgreSQL.

The same semantics as the local backend's ``audit.py``, ``relay.py`` and ``websessions.py``
(see ``storage.base`` for the contract); here each is one transaction on the pool. Queued
messages keep their octets in ``relay_queue.data``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import time
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

from msgstore.core.accounts import AccountInfo
from msgstore.core.errors import ErrorKind, StoreError
from msgstore.core.ids import AccountId
from msgstore.storage.base import (
    MAX_LOGINS_KEPT,
    ApiToken,
    AuditRecord,
    ForwardEntry,
    LoginRecord,
    NewApiToken,
    NewWebSession,
    QueueEntry,
    RunnerLock,
    StagedMessage,
    WebSession,
)
from msgstore.storage.postgres.mixin import PgBase
from msgstore.storage.postgres.staging import PgStagedMessage

_SELECT_FORWARD = "SELECT address, destinations, keep_copy, created FROM forwards "
_SELECT_BEARERS = (
    "SELECT t.id, t.account_id, a.name, t.label, t.created, t.expires "
    "FROM api_tokens t JOIN accounts a ON a.account_id = t.account_id "
)
_SELECT_QUEUED = (
    "SELECT id, sender, recipients, size, created, next_attempt, attempts, last_error "
    "FROM relay_queue "
)


def _epoch(when: dt.datetime) -> int:
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return int(when.timestamp())


def _utc(seconds: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(seconds, dt.UTC)


def _aware(ts: dt.datetime) -> dt.datetime:
    return ts if ts.tzinfo is not None else ts.replace(tzinfo=dt.UTC)


def _credential(password_hash: str) -> str:
    return hashlib.sha256(password_hash.encode("utf-8", "surrogatepass")).hexdigest()


def _forward(row: Any) -> ForwardEntry:
    return ForwardEntry(
        address=row["address"],
        destinations=tuple(row["destinations"]),
        keep_copy=row["keep_copy"],
        created=_utc(row["created"]),
    )


def _token(row: Any) -> ApiToken:
    return ApiToken(
        id=row["id"],
        account=AccountId(row["account_id"]),
        account_name=row["name"],
        label=row["label"],
        created=_utc(row["created"]),
        expires=None if row["expires"] is None else _utc(row["expires"]),
    )


def _queued(row: Any) -> QueueEntry:
    return QueueEntry(
        id=row["id"],
        sender=row["sender"],
        recipients=tuple(row["recipients"]),
        size=row["size"],
        created=_utc(row["created"]),
        next_attempt=_utc(row["next_attempt"]),
        attempts=row["attempts"],
        last_error=row["last_error"],
    )


async def _staged_octets(staged: StagedMessage) -> bytes:
    if not isinstance(staged, PgStagedMessage):
        raise StoreError(ErrorKind.PARAMS, "The message was not staged by this store")
    staged.meta()
    import asyncio

    return b"".join(await asyncio.get_running_loop().run_in_executor(None, staged.read_chunks))


class ExtrasMixin(PgBase):
    """Mixed into ``PostgresBackend``."""

    # --- audit log ----------------------------------------------------------------------------

    async def append_audit(self, record: AuditRecord) -> None:
        async def add(conn: Any) -> None:
            await conn.execute(
                "INSERT INTO audit_log(ts, actor, origin, operation, params, outcome, message) "
                "VALUES ($1, $2, $3, $4, $5, $6, $7)",
                _aware(record.ts),
                record.actor,
                record.origin,
                record.operation,
                record.params,
                record.outcome,
                record.message,
            )

        await self._run(add)

    async def list_audit(
        self,
        *,
        since: dt.datetime | None = None,
        actor: str | None = None,
        operation: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[AuditRecord]:
        async def get(conn: Any) -> list[Any]:
            return list(
                await conn.fetch(
                    "SELECT ts, actor, origin, operation, params, outcome, message "
                    "FROM audit_log WHERE ($1::timestamptz IS NULL OR ts >= $1) "
                    "AND ($2::text IS NULL OR actor = $2) "
                    "AND ($3::text IS NULL OR operation = $3) "
                    "ORDER BY id DESC LIMIT $4 OFFSET $5",
                    None if since is None else _aware(since),
                    actor,
                    operation,
                    max(0, limit),
                    max(0, offset),
                )
            )

        return [
            AuditRecord(
                ts=r["ts"].astimezone(dt.UTC),
                actor=r["actor"],
                origin=r["origin"],
                operation=r["operation"],
                params=r["params"],
                outcome=r["outcome"],
                message=r["message"],
            )
            for r in await self._run(get, write=False)
        ]

    # --- forwarding ---------------------------------------------------------------------------

    async def put_forward(
        self, address: str, destinations: Sequence[str], *, keep_copy: bool, replace: bool
    ) -> ForwardEntry:
        if not address or not destinations:
            raise StoreError(
                ErrorKind.PARAMS, "A forwarding entry needs an address and destinations"
            )

        async def put(conn: Any) -> Any:
            key = address.casefold()
            exists = await conn.fetchval("SELECT 1 FROM forwards WHERE address_key = $1", key)
            if exists is not None and not replace:
                raise StoreError(ErrorKind.EXISTS, f"Forwarding entry already exists: {address}")
            return await conn.fetchrow(
                "INSERT INTO forwards(address_key, address, destinations, keep_copy, created) "
                "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (address_key) DO UPDATE SET "
                "address = excluded.address, destinations = excluded.destinations, "
                "keep_copy = excluded.keep_copy, created = excluded.created "
                "RETURNING address, destinations, keep_copy, created",
                key,
                address,
                list(destinations),
                keep_copy,
                int(time.time()),
            )

        return _forward(await self._run(put))

    async def get_forward(self, address: str) -> ForwardEntry:
        async def get(conn: Any) -> Any:
            return await conn.fetchrow(
                _SELECT_FORWARD + "WHERE address_key = $1", address.casefold()
            )

        row = await self._run(get, write=False)
        if row is None:
            raise StoreError(ErrorKind.NOT_FOUND, f"No forwarding entry for {address}")
        return _forward(row)

    async def list_forwards(self) -> list[ForwardEntry]:
        async def get(conn: Any) -> list[Any]:
            return list(await conn.fetch(_SELECT_FORWARD + "ORDER BY address_key"))

        return [_forward(r) for r in await self._run(get, write=False)]

    async def delete_forward(self, address: str) -> None:
        async def delete(conn: Any) -> Any:
            return await conn.fetchval(
                "DELETE FROM forwards WHERE address_key = $1 RETURNING 1", address.casefold()
            )

        if await self._run(delete) is None:
            raise StoreError(ErrorKind.NOT_FOUND, f"No forwarding entry for {address}")

    # --- relay queue --------------------------------------------------------------------------

    async def enqueue(
        self,
        staged: StagedMessage,
        *,
        sender: str,
        recipients: Sequence[str],
        prefix: bytes = b"",
        skip_octets: int = 0,
    ) -> QueueEntry:
        if not recipients:
            raise StoreError(ErrorKind.PARAMS, "A queued message needs recipients")
        if not isinstance(staged, PgStagedMessage):
            raise StoreError(ErrorKind.PARAMS, "The message was not staged by this store")
        staged.meta()
        import asyncio

        whole = b"".join(
            await asyncio.get_running_loop().run_in_executor(None, staged.read_chunks)
        )
        data = prefix + whole[skip_octets:]
        now = time.time()

        async def add(conn: Any) -> Any:
            return await conn.fetchrow(
                "INSERT INTO relay_queue(sender, recipients, size, created, next_attempt, data) "
                "VALUES ($1, $2, $3, $4, $4, $5) RETURNING id, sender, recipients, size, "
                "created, next_attempt, attempts, last_error",
                sender,
                list(recipients),
                len(data),
                now,
                data,
            )

        return _queued(await self._run(add))

    async def list_queue(self) -> list[QueueEntry]:
        async def get(conn: Any) -> list[Any]:
            return list(await conn.fetch(_SELECT_QUEUED + "ORDER BY next_attempt, id"))

        return [_queued(r) for r in await self._run(get, write=False)]

    async def get_queued(self, ident: int) -> QueueEntry:
        async def get(conn: Any) -> Any:
            return await conn.fetchrow(_SELECT_QUEUED + "WHERE id = $1", ident)

        row = await self._run(get, write=False)
        if row is None:
            raise StoreError(ErrorKind.NOT_FOUND, f"No queued message {ident}")
        return _queued(row)

    async def read_queued(self, ident: int) -> bytes:
        async def get(conn: Any) -> Any:
            return await conn.fetchval("SELECT data FROM relay_queue WHERE id = $1", ident)

        data = await self._run(get, write=False)
        if data is None:
            raise StoreError(ErrorKind.NOT_FOUND, f"No queued message {ident}")
        return bytes(data)

    async def update_queued(
        self,
        ident: int,
        *,
        done: Sequence[str] = (),
        attempts: int | None = None,
        next_attempt: dt.datetime | None = None,
        last_error: str | None = None,
        dsn: StagedMessage | None = None,
    ) -> QueueEntry | None:
        report = None if dsn is None else await _staged_octets(dsn)

        async def update(conn: Any) -> Any:
            row = await conn.fetchrow(
                "SELECT recipients, sender FROM relay_queue WHERE id = $1 FOR UPDATE", ident
            )
            if row is None:
                raise StoreError(ErrorKind.NOT_FOUND, f"No queued message {ident}")
            recipients = row["recipients"]
            if report is not None:  # the DSN commits with the change it reports
                if not row["sender"]:
                    raise StoreError(ErrorKind.PARAMS, "No DSN for the null sender")
                await conn.execute(
                    "INSERT INTO relay_queue(sender, recipients, size, created, next_attempt, "
                    "data) VALUES ('', $1, $2, $3, $3, $4)",
                    [row["sender"]],
                    len(report),
                    time.time(),
                    report,
                )
            gone = {r.casefold() for r in done}
            left = [r for r in recipients if r.casefold() not in gone]
            if not left:
                await conn.execute("DELETE FROM relay_queue WHERE id = $1", ident)
                return None
            return await conn.fetchrow(
                "UPDATE relay_queue SET recipients = $2, attempts = coalesce($3, attempts), "
                "next_attempt = coalesce($4, next_attempt), "
                "last_error = coalesce($5, last_error) WHERE id = $1 "
                "RETURNING id, sender, recipients, size, created, next_attempt, attempts, "
                "last_error",
                ident,
                left,
                attempts,
                None if next_attempt is None else next_attempt.timestamp(),
                last_error,
            )

        row = await self._run(update)
        return None if row is None else _queued(row)

    async def delete_queued(self, ident: int) -> None:
        async def delete(conn: Any) -> Any:
            return await conn.fetchval("DELETE FROM relay_queue WHERE id = $1 RETURNING 1", ident)

        if await self._run(delete) is None:
            raise StoreError(ErrorKind.NOT_FOUND, f"No queued message {ident}")

    def runner_lock(self, name: str) -> AbstractAsyncContextManager[RunnerLock | None]:
        from msgstore.storage.postgres.runnerlock import runner_lock

        self._check_open()
        return runner_lock(self._dsn, name, wait=self._db.acquire_timeout)

    # --- web sessions and last logins -----------------------------------------------------------

    async def create_web_session(self, session: NewWebSession) -> None:
        async def create(conn: Any) -> None:
            password_hash = await conn.fetchval(
                "SELECT password_hash FROM accounts WHERE account_id = $1", session.account
            )
            if password_hash is None:
                raise StoreError(ErrorKind.NOT_FOUND, f"No such account: #{int(session.account)}")
            created = _epoch(session.created)
            done = await conn.fetchval(
                "INSERT INTO web_sessions(id_hash, account_id, credential, csrf_token, created, "
                "last_seen, address) VALUES ($1, $2, $3, $4, $5, $5, $6) "
                "ON CONFLICT DO NOTHING RETURNING 1",
                session.id_hash,
                session.account,
                _credential(password_hash),
                session.csrf_token,
                created,
                session.address,
            )
            if done is None:
                raise StoreError(ErrorKind.EXISTS, "Session id already in use")

        await self._run(create)

    async def get_web_session(self, id_hash: str) -> WebSession | None:
        async def get(conn: Any) -> Any:
            return await conn.fetchrow(
                "SELECT account_id, credential, csrf_token, created, last_seen, address "
                "FROM web_sessions WHERE id_hash = $1",
                id_hash,
            )

        row = await self._run(get, write=False)
        if row is None:
            return None
        try:
            info, password_hash = await self._account_and_hash(AccountId(row["account_id"]))
        except StoreError as exc:
            if exc.kind is ErrorKind.NOT_FOUND:
                return None
            raise
        if _credential(password_hash) != row["credential"]:
            return None
        return WebSession(
            id_hash=id_hash,
            account=info,
            csrf_token=row["csrf_token"],
            created=_utc(row["created"]),
            last_seen=_utc(row["last_seen"]),
            address=row["address"],
        )

    async def touch_web_session(self, id_hash: str, last_seen: dt.datetime) -> None:
        async def touch(conn: Any) -> None:
            await conn.execute(
                "UPDATE web_sessions SET last_seen = greatest(last_seen, $2) WHERE id_hash = $1",
                id_hash,
                _epoch(last_seen),
            )

        await self._run(touch)

    async def delete_web_session(self, id_hash: str) -> None:
        async def delete(conn: Any) -> None:
            await conn.execute("DELETE FROM web_sessions WHERE id_hash = $1", id_hash)

        await self._run(delete)

    async def delete_web_sessions(self, account: AccountId) -> int:
        async def delete(conn: Any) -> int:
            rows = await conn.fetch(
                "DELETE FROM web_sessions WHERE account_id = $1 RETURNING 1", account
            )
            return len(rows)

        return int(await self._run(delete))

    async def expire_web_sessions(
        self, *, idle_before: dt.datetime, created_before: dt.datetime
    ) -> int:
        async def delete(conn: Any) -> int:
            rows = await conn.fetch(
                "DELETE FROM web_sessions WHERE last_seen < $1 OR created < $2 RETURNING 1",
                _epoch(idle_before),
                _epoch(created_before),
            )
            return len(rows)

        return int(await self._run(delete))

    async def record_logins(self, logins: Sequence[LoginRecord]) -> None:
        if not logins:
            return

        async def record(conn: Any) -> None:
            accounts: set[int] = set()
            for login in logins:
                exists = await conn.fetchval(
                    "SELECT 1 FROM accounts WHERE account_id = $1", login.account
                )
                if exists is None:
                    continue
                accounts.add(int(login.account))
                await conn.execute(
                    "INSERT INTO last_logins(account_id, protocol, address, at) "
                    "VALUES ($1, $2, $3, $4) ON CONFLICT (account_id, protocol, address) "
                    "DO UPDATE SET at = greatest(last_logins.at, excluded.at)",
                    login.account,
                    login.protocol,
                    login.address,
                    _epoch(login.at),
                )
            for account in sorted(accounts):
                await conn.execute(
                    "DELETE FROM last_logins WHERE account_id = $1 AND (protocol, address) "
                    "NOT IN (SELECT protocol, address FROM last_logins WHERE account_id = $1 "
                    "ORDER BY at DESC, protocol, address LIMIT $2)",
                    account,
                    MAX_LOGINS_KEPT,
                )

        await self._run(record)

    async def last_logins(self, account: AccountId, *, limit: int = 20) -> list[LoginRecord]:
        async def get(conn: Any) -> list[Any]:
            return list(
                await conn.fetch(
                    "SELECT account_id, protocol, address, at FROM last_logins "
                    "WHERE account_id = $1 ORDER BY at DESC, protocol, address LIMIT $2",
                    account,
                    max(0, limit),
                )
            )

        return [
            LoginRecord(
                account=AccountId(r["account_id"]),
                protocol=r["protocol"],
                address=r["address"],
                at=_utc(r["at"]),
            )
            for r in await self._run(get, write=False)
        ]

    # --- API tokens ---------------------------------------------------------------------------

    async def create_api_token(self, token: NewApiToken) -> ApiToken:
        async def create(conn: Any) -> Any:
            exists = await conn.fetchval(
                "SELECT 1 FROM accounts WHERE account_id = $1 AND NOT public", token.account
            )
            if exists is None:
                raise StoreError(ErrorKind.NOT_FOUND, f"No such account: #{int(token.account)}")
            ident = await conn.fetchval(
                "INSERT INTO api_tokens(token_hash, account_id, label, created, expires) "
                "VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING RETURNING id",
                token.token_hash,
                token.account,
                token.label,
                _epoch(token.created),
                None if token.expires is None else _epoch(token.expires),
            )
            if ident is None:
                raise StoreError(ErrorKind.EXISTS, "Token already in use")
            return await conn.fetchrow(_SELECT_BEARERS + "WHERE t.id = $1", ident)

        return _token(await self._run(create))

    async def find_api_token(self, token_hash: str) -> tuple[ApiToken, AccountInfo] | None:
        async def get(conn: Any) -> Any:
            return await conn.fetchrow(_SELECT_BEARERS + "WHERE t.token_hash = $1", token_hash)

        row = await self._run(get, write=False)
        if row is None:
            return None
        try:
            info, _ = await self._account_and_hash(AccountId(row["account_id"]))
        except StoreError as exc:
            if exc.kind is ErrorKind.NOT_FOUND:
                return None
            raise
        return _token(row), info

    async def list_api_tokens(self, account: AccountId | None = None) -> list[ApiToken]:
        async def get(conn: Any) -> list[Any]:
            if account is None:
                return list(await conn.fetch(_SELECT_BEARERS + "ORDER BY a.name_key, t.id"))
            return list(
                await conn.fetch(
                    _SELECT_BEARERS + "WHERE t.account_id = $1 ORDER BY t.id", account
                )
            )

        return [_token(r) for r in await self._run(get, write=False)]

    async def delete_api_token(self, token_id: int) -> None:
        async def delete(conn: Any) -> Any:
            return await conn.fetchval(
                "DELETE FROM api_tokens WHERE id = $1 RETURNING 1", token_id
            )

        if await self._run(delete) is None:
            raise StoreError(ErrorKind.NOT_FOUND, f"No such token {token_id}")

"""Filling a PostgreSQL store with another store's exact state (``SupportsStoreImport``, used
by ``msgstore store copy``): messages at the source's UIDs with the source's modseqs, the
mailbox state, and the site-wide tables with their ids and timestamps.

The same rules as the local backend's ``storeimport.py``; each call is one transaction, with
the rows locked in the backend's global order (mailbox, ``account_state``, blobs by hash).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from msgstore.core.errors import ErrorKind, StoreError
from msgstore.core.flags import SYSTEM_BITS, keywords_of, normalize_flags
from msgstore.core.ids import MAX_UID, AccountId, MailboxId, ModSeq, Uid
from msgstore.storage.base import (
    ApiToken,
    AuditRecord,
    ForwardEntry,
    ImportedMessage,
    NewApiToken,
    QueueEntry,
    StoredWebSession,
)
from msgstore.storage.local.index import date_to_storage
from msgstore.storage.postgres.messages import MessagesMixin
from msgstore.storage.postgres.queries import (
    keyword_map,
    mailbox_row,
    reserve,
    store_keywords,
)
from msgstore.storage.postgres.staging import PgStagedMessage

MAX_MODSEQ = 2**63 - 1


def _epoch(when: dt.datetime) -> int:
    return int(when.timestamp())


def _utc(seconds: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(seconds, dt.UTC)


class StoreImportMixin(MessagesMixin):
    """Mixed into ``PostgresBackend`` (before the other parts: it needs ``_store_blob``)."""

    async def import_messages(
        self, account: AccountId, mailbox: MailboxId, messages: Sequence[ImportedMessage]
    ) -> None:
        staged: list[PgStagedMessage] = []
        for m in messages:
            if not isinstance(m.staged, PgStagedMessage):
                raise StoreError(ErrorKind.PARAMS, "The message was not staged by this store")
            if not 1 <= m.uid <= MAX_UID or not 1 <= m.modseq <= MAX_MODSEQ:
                raise StoreError(ErrorKind.PARAMS, f"UID or modseq out of range: {m.uid}")
            m.staged.meta()
            staged.append(m.staged)
        if not messages:
            return

        async def add(conn: Any) -> None:
            box = await mailbox_row(conn, account, mailbox, lock=True)
            uidnext, highest = int(box["uidnext"]), int(box["highestmodseq"])
            await reserve(conn, account, sum(s.size for s in staged), len(staged), False)
            known = await keyword_map(conn, account, mailbox)
            for one in sorted(staged, key=lambda s: s.sha256):  # the lock order on blobs
                await self._store_blob(conn, one)
            for m, one in zip(messages, staged, strict=True):
                if m.uid < uidnext:
                    raise StoreError(
                        ErrorKind.NOT_POSSIBLE, f"UID {m.uid} is below UIDNEXT {uidnext}"
                    )
                flags = normalize_flags(m.flags)
                given_kw = keywords_of(flags)
                keywords = (
                    await store_keywords(conn, account, mailbox, known, given_kw)
                    if given_kw
                    else ()
                )
                seconds, offset = date_to_storage(m.internal_date)
                await conn.execute(
                    "INSERT INTO messages(account_id, mailbox_id, uid, modseq, sysflags, "
                    "keywords, internal_date, tz_offset, size, sha256, uidl) "
                    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
                    account,
                    mailbox,
                    m.uid,
                    m.modseq,
                    sum(SYSTEM_BITS.get(f, 0) for f in flags),
                    " ".join(keywords) or None,
                    seconds,
                    offset,
                    one.size,
                    one.sha256,
                    m.uidl,
                )
                uidnext, highest = m.uid + 1, max(highest, m.modseq)
            await conn.execute(
                "UPDATE mailboxes SET uidnext = $3, highestmodseq = $4 "
                "WHERE account_id = $1 AND mailbox_id = $2",
                account,
                mailbox,
                uidnext,
                highest,
            )

        await self._run(add)
        self._changed(account, mailbox)

    async def import_mailbox_state(
        self,
        account: AccountId,
        mailbox: MailboxId,
        *,
        uidnext: Uid,
        highestmodseq: ModSeq,
        keywords: frozenset[str],
    ) -> None:
        if not 1 <= uidnext <= MAX_UID + 1 or not 0 <= highestmodseq <= MAX_MODSEQ:
            raise StoreError(ErrorKind.PARAMS, f"UIDNEXT or HIGHESTMODSEQ out of range: {uidnext}")

        async def update(conn: Any) -> None:
            await mailbox_row(conn, account, mailbox, lock=True)
            await conn.execute(
                "UPDATE mailboxes SET uidnext = greatest(uidnext, $3), "
                "highestmodseq = greatest(highestmodseq, $4), "
                "expunged_floor = greatest(expunged_floor, $4) "
                "WHERE account_id = $1 AND mailbox_id = $2",
                account,
                mailbox,
                uidnext,
                highestmodseq,
            )
            if keywords:
                known = await keyword_map(conn, account, mailbox)
                await store_keywords(conn, account, mailbox, known, sorted(keywords))

        await self._run(update)
        self._changed(account, mailbox)

    async def import_forward(self, entry: ForwardEntry) -> None:
        if not entry.address or not entry.destinations:
            raise StoreError(
                ErrorKind.PARAMS, "A forwarding entry needs an address and destinations"
            )

        async def put(conn: Any) -> None:
            await conn.execute(
                "INSERT INTO forwards(address_key, address, destinations, keep_copy, created) "
                "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (address_key) DO UPDATE SET "
                "address = excluded.address, destinations = excluded.destinations, "
                "keep_copy = excluded.keep_copy, created = excluded.created",
                entry.address.casefold(),
                entry.address,
                list(entry.destinations),
                entry.keep_copy,
                _epoch(entry.created),
            )

        await self._run(put)

    async def import_queued(self, entry: QueueEntry, data: bytes) -> bool:
        if not entry.recipients:
            raise StoreError(ErrorKind.PARAMS, "A queued message needs recipients")

        async def add(conn: Any) -> bool:
            done = await conn.fetchval(
                "INSERT INTO relay_queue(id, sender, recipients, size, created, next_attempt, "
                "attempts, last_error, data) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) "
                "ON CONFLICT (id) DO NOTHING RETURNING 1",
                entry.id,
                entry.sender,
                list(entry.recipients),
                len(data),
                entry.created.timestamp(),
                entry.next_attempt.timestamp(),
                entry.attempts,
                entry.last_error,
                data,
            )
            await conn.execute(
                "SELECT setval(pg_get_serial_sequence('relay_queue', 'id'), "
                "greatest((SELECT max(id) FROM relay_queue), 1))"
            )
            return done is not None

        return bool(await self._run(add))

    async def export_api_tokens(self) -> list[tuple[ApiToken, str]]:
        async def get(conn: Any) -> list[Any]:
            return list(
                await conn.fetch(
                    "SELECT t.id, t.account_id, a.name, t.label, t.created, t.expires, "
                    "t.token_hash FROM api_tokens t JOIN accounts a "
                    "ON a.account_id = t.account_id ORDER BY t.id"
                )
            )

        return [
            (
                ApiToken(
                    id=int(r["id"]),
                    account=AccountId(r["account_id"]),
                    account_name=str(r["name"]),
                    label=str(r["label"]),
                    created=_utc(r["created"]),
                    expires=None if r["expires"] is None else _utc(r["expires"]),
                ),
                str(r["token_hash"]),
            )
            for r in await self._run(get, write=False)
        ]

    async def import_api_token(self, token: NewApiToken, ident: int) -> bool:
        async def add(conn: Any) -> bool:
            known = await conn.fetchval(
                "SELECT 1 FROM accounts WHERE account_id = $1 AND NOT public", token.account
            )
            if known is None:
                raise StoreError(ErrorKind.NOT_FOUND, f"No such account: #{int(token.account)}")
            if (
                await conn.fetchval(
                    "SELECT 1 FROM api_tokens WHERE token_hash = $1", token.token_hash
                )
                is not None
            ):
                return False
            taken = await conn.fetchval("SELECT 1 FROM api_tokens WHERE id = $1", ident)
            values = (
                token.token_hash,
                token.account,
                token.label,
                _epoch(token.created),
                None if token.expires is None else _epoch(token.expires),
            )
            if taken is None:
                await conn.execute(
                    "INSERT INTO api_tokens(id, token_hash, account_id, label, created, "
                    "expires) VALUES ($6, $1, $2, $3, $4, $5)",
                    *values,
                    ident,
                )
            else:
                await conn.execute(
                    "INSERT INTO api_tokens(token_hash, account_id, label, created, expires) "
                    "VALUES ($1, $2, $3, $4, $5)",
                    *values,
                )
            await conn.execute(
                "SELECT setval(pg_get_serial_sequence('api_tokens', 'id'), "
                "greatest((SELECT max(id) FROM api_tokens), 1))"
            )
            return True

        return bool(await self._run(add))

    async def import_audit(self, records: Sequence[AuditRecord]) -> None:
        if not records:
            return

        async def add(conn: Any) -> None:
            await conn.executemany(
                "INSERT INTO audit_log(ts, actor, origin, operation, params, outcome, message) "
                "VALUES ($1, $2, $3, $4, $5, $6, $7)",
                [
                    (
                        r.ts if r.ts.tzinfo is not None else r.ts.replace(tzinfo=dt.UTC),
                        r.actor,
                        r.origin,
                        r.operation,
                        r.params,
                        r.outcome,
                        r.message,
                    )
                    for r in records
                ],
            )

        await self._run(add)

    async def set_account_created(self, account: AccountId, created: dt.datetime) -> None:
        async def put(conn: Any) -> None:
            done = await conn.fetchval(
                "UPDATE accounts SET created = $2 WHERE account_id = $1 RETURNING 1",
                account,
                _epoch(created),
            )
            if done is None:
                raise StoreError(ErrorKind.NOT_FOUND, f"No such account: #{int(account)}")

        await self._run(put)

    async def export_web_sessions(self) -> list[StoredWebSession]:
        async def get(conn: Any) -> list[Any]:
            return list(
                await conn.fetch(
                    "SELECT s.id_hash, a.name, s.credential, s.csrf_token, s.created, "
                    "s.last_seen, s.address FROM web_sessions s JOIN accounts a "
                    "ON a.account_id = s.account_id ORDER BY s.id_hash"
                )
            )

        return [
            StoredWebSession(
                id_hash=str(r["id_hash"]),
                account_name=str(r["name"]),
                credential=str(r["credential"]),
                csrf_token=str(r["csrf_token"]),
                created=_utc(r["created"]),
                last_seen=_utc(r["last_seen"]),
                address=str(r["address"]),
            )
            for r in await self._run(get, write=False)
        ]

    async def import_web_session(self, account: AccountId, session: StoredWebSession) -> bool:
        async def add(conn: Any) -> bool:
            known = await conn.fetchval(
                "SELECT 1 FROM accounts WHERE account_id = $1 AND NOT public", account
            )
            if known is None:
                raise StoreError(ErrorKind.NOT_FOUND, f"No such account: #{int(account)}")
            inserted = await conn.fetchval(
                "INSERT INTO web_sessions(id_hash, account_id, credential, csrf_token, created, "
                "last_seen, address) VALUES ($1, $2, $3, $4, $5, $6, $7) "
                "ON CONFLICT (id_hash) DO UPDATE SET "
                "last_seen = greatest(web_sessions.last_seen, excluded.last_seen) "
                "RETURNING xmax = 0",
                session.id_hash,
                account,
                session.credential,
                session.csrf_token,
                _epoch(session.created),
                _epoch(session.last_seen),
                session.address,
            )
            return bool(inserted)

        return bool(await self._run(add))

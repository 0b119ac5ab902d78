# SQL here is assembled only from constant fragments, never from input:
# ruff: noqa: S608
"""Messages of ``PostgresBackend``: staging, append (contents stored once per SHA-256), snapshot,
metadata and bodies (streamed from 256 KiB chunks)."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from array import array
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from msgstore.core.errors import ErrorKind, StoreError
from msgstore.core.flags import SYSTEM_BITS, Flags, keywords_of, normalize_flags
from msgstore.core.ids import MAX_UID, AccountId, MailboxId, ModSeq, Uid, UidSet, UidValidity
from msgstore.storage.base import (
    AppendResult,
    BodyReader,
    MaildropRow,
    MessageMeta,
    Snapshot,
    StagedMessage,
    Want,
)
from msgstore.storage.local.index import (
    date_to_storage,
    default_uidl,
)
from msgstore.storage.postgres.db import Database
from msgstore.storage.postgres.mixin import PgBase
from msgstore.storage.postgres.queries import (
    META_COLUMNS,
    MSG_COLUMNS,
    SEEN_BIT,
    flags_of,
    keyword_map,
    mailbox_row,
    message_meta,
    message_rows,
    reserve,
    store_keywords,
)
from msgstore.storage.postgres.staging import CHUNK_OCTETS, PgStagedMessage

log = logging.getLogger("msgstore.storage.postgres")


class PgBodyReader:
    """Implements ``storage.base.BodyReader`` over the chunks of one blob."""

    __slots__ = ("_chunk", "_db", "_head", "_sha", "_size")

    def __init__(self, db: Database, sha: bytes, size: int, chunk: int, head: bytes) -> None:
        self._db = db
        self._sha = sha
        self._size = size
        self._chunk = chunk
        self._head = head  # chunk 0, read when the message was opened

    @property
    def size(self) -> int:
        return self._size

    def fileno(self) -> int:
        return -1  # not file-backed: protocols stream with read/chunks

    async def read(self, offset: int, length: int) -> bytes:
        if offset < 0 or length < 0:
            raise StoreError(ErrorKind.PARAMS, "Negative offset or length")
        length = max(0, min(length, self._size - offset))
        if length == 0:
            return b""
        end = offset + length
        if end <= len(self._head):
            return self._head[offset:end]
        first, last = offset // self._chunk, (end - 1) // self._chunk

        async def load(conn: Any) -> list[Any]:
            return list(
                await conn.fetch(
                    "SELECT seq, data FROM blob_chunks WHERE sha256 = $1 "
                    "AND seq BETWEEN $2 AND $3 ORDER BY seq",
                    self._sha,
                    first,
                    last,
                )
            )

        rows = await self._db.run(load, write=False)
        if [r["seq"] for r in rows] != list(range(first, last + 1)):
            raise StoreError(ErrorKind.EXPUNGED, "The message has been expunged")
        data = b"".join(bytes(r["data"]) for r in rows)
        start = offset - first * self._chunk
        out = data[start : start + length]
        if len(out) != length:
            raise StoreError(
                ErrorKind.CORRUPTED,
                "message content damaged",
                detail=f"blob {self._sha.hex()}: shorter than its recorded size {self._size}",
            )
        return out

    async def chunks(self, offset: int, length: int, chunk: int = 65536) -> AsyncIterator[bytes]:
        if chunk <= 0:
            raise StoreError(ErrorKind.PARAMS, "Chunk size must be positive")
        end = min(self._size, offset + max(0, length))
        pos = max(0, offset)
        step = max(chunk, self._chunk)
        while pos < end:
            data = await self.read(pos, min(step, end - pos))
            for i in range(0, len(data), chunk):
                yield data[i : i + chunk]
            pos += len(data)


class MessagesMixin(PgBase):
    # --- messages -----------------------------------------------------------------------------

    @asynccontextmanager
    async def _stage(self, max_octets: int) -> AsyncIterator[StagedMessage]:
        self._check_open()
        staged = PgStagedMessage(tmp_dir=self._tmp_dir, max_octets=max_octets)
        try:
            yield staged
        finally:
            staged.discard()

    def stage(self, *, max_octets: int) -> AbstractAsyncContextManager[StagedMessage]:
        return self._stage(max_octets)

    async def _store_blob(self, conn: Any, staged: PgStagedMessage) -> None:
        """One more reference to the staged content, storing it if it is new."""
        meta = staged.meta()
        inserted = await conn.fetchval(
            "INSERT INTO blobs(sha256, size, refcount, chunk_octets, meta_version, envelope, "
            "bodystructure, body, partmap, headers) VALUES ($1, $2, 1, $3, $4, $5, $6, $7, $8, "
            "$9) ON CONFLICT (sha256) DO UPDATE SET refcount = blobs.refcount + 1 "
            "RETURNING (xmax = 0)",
            staged.sha256,
            staged.size,
            CHUNK_OCTETS,
            meta.meta_version,
            meta.envelope,
            meta.bodystructure,
            meta.body,
            meta.partmap,
            meta.headers_json,
        )
        if not inserted:
            return
        if staged.in_memory:
            await conn.executemany(
                "INSERT INTO blob_chunks(sha256, seq, data) VALUES ($1, $2, $3)",
                [(staged.sha256, i, c) for i, c in enumerate(staged.chunks())],
            )
            return
        # A spilled (large) message: one chunk in memory at a time.
        loop = asyncio.get_running_loop()
        pieces = staged.chunks()
        seq = 0
        while (piece := await loop.run_in_executor(None, next, pieces, None)) is not None:
            await conn.execute(
                "INSERT INTO blob_chunks(sha256, seq, data) VALUES ($1, $2, $3)",
                staged.sha256,
                seq,
                piece,
            )
            seq += 1

    async def append(
        self,
        account: AccountId,
        mailbox: MailboxId,
        staged: StagedMessage,
        *,
        flags: Flags = frozenset(),
        internal_date: dt.datetime | None = None,
        uidl: str | None = None,
        check_quota: bool = True,
    ) -> AppendResult:
        if not isinstance(staged, PgStagedMessage):
            raise StoreError(ErrorKind.PARAMS, "The message was not staged by this store")
        staged.meta()
        given = normalize_flags(flags)
        when = internal_date if internal_date is not None else dt.datetime.now().astimezone()
        seconds, offset = date_to_storage(when)
        bits = sum(SYSTEM_BITS.get(f, 0) for f in given)

        async def add(conn: Any) -> AppendResult:
            box = await mailbox_row(conn, account, mailbox, lock=True)
            uid = box["uidnext"]
            if uid > MAX_UID:
                raise StoreError(ErrorKind.LIMIT, "Mailbox has run out of UIDs")
            await reserve(conn, account, staged.size, 1, check_quota)
            modseq = box["highestmodseq"] + 1
            given_kw = keywords_of(given)
            keywords: tuple[str, ...] = ()
            if given_kw:
                known = await keyword_map(conn, account, mailbox)
                keywords = await store_keywords(conn, account, mailbox, known, given_kw)
            await self._store_blob(conn, staged)
            await conn.execute(
                "WITH added AS (INSERT INTO messages(account_id, mailbox_id, uid, modseq, "
                "sysflags, keywords, internal_date, tz_offset, size, sha256, uidl) "
                "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)) "
                "UPDATE mailboxes SET uidnext = $3 + 1, highestmodseq = $4 "
                "WHERE account_id = $1 AND mailbox_id = $2",
                account,
                mailbox,
                uid,
                modseq,
                bits,
                " ".join(keywords) or None,
                seconds,
                offset,
                staged.size,
                staged.sha256,
                uidl if uidl is not None else default_uidl(box["uidvalidity"], uid),
            )
            return AppendResult(
                account=account,
                mailbox=mailbox,
                uidvalidity=UidValidity(box["uidvalidity"]),
                uid=Uid(uid),
                modseq=ModSeq(modseq),
            )

        result: AppendResult = await self._run(add)
        self._changed(account, mailbox)
        return result

    async def snapshot(
        self, account: AccountId, mailbox: MailboxId, *, claim_recent: bool = False
    ) -> Snapshot:
        async def get(conn: Any) -> Snapshot:
            box = await mailbox_row(conn, account, mailbox, lock=claim_recent)
            row = await conn.fetchrow(
                "SELECT array_agg(uid ORDER BY uid) AS uids, "
                "min(uid) FILTER (WHERE sysflags & 1 = 0) AS first_unseen "
                "FROM messages WHERE account_id = $1 AND mailbox_id = $2",
                account,
                mailbox,
            )
            uids = array("I", row["uids"] or ())
            keywords = frozenset(
                r["keyword"]
                for r in await conn.fetch(
                    "SELECT keyword FROM mailbox_keywords WHERE account_id = $1 "
                    "AND mailbox_id = $2",
                    account,
                    mailbox,
                )
            )
            recent: frozenset[Uid] = frozenset()
            if claim_recent and box["recent_uid"] < box["uidnext"]:
                recent = frozenset(Uid(u) for u in uids if u >= box["recent_uid"])
                await conn.execute(
                    "UPDATE mailboxes SET recent_uid = $3 WHERE account_id = $1 "
                    "AND mailbox_id = $2",
                    account,
                    mailbox,
                    box["uidnext"],
                )
            first = row["first_unseen"]
            return Snapshot(
                id=mailbox,
                uidvalidity=UidValidity(box["uidvalidity"]),
                uidnext=Uid(box["uidnext"]),
                highestmodseq=ModSeq(box["highestmodseq"]),
                uids=uids,
                first_unseen=None if first is None else Uid(first),
                recent_uids=recent,
                keywords=keywords,
            )

        if claim_recent:
            return await self._run(get)  # type: ignore[no-any-return]
        return await self._run(get, write=False, isolation="repeatable_read")  # type: ignore[no-any-return]

    async def fetch_meta(
        self, account: AccountId, mailbox: MailboxId, uids: UidSet, want: Want
    ) -> list[MessageMeta]:
        """One statement, also with metadata: the rows joined to their contents' metadata
        (one statement, one snapshot: an expunge cannot remove the content in between)."""
        extra = [column for flag, column in META_COLUMNS if flag in want]
        columns = MSG_COLUMNS + "".join(f", b.{column}" for column in extra)
        join = "LEFT JOIN blobs b ON b.sha256 = m.sha256" if extra else ""

        async def get(conn: Any) -> list[Any]:
            rows = await message_rows(conn, columns, account, mailbox, uids, join=join)
            if not rows:
                await mailbox_row(conn, account, mailbox)  # NOT_FOUND for a missing one
            return rows

        rows = await self._run(get, write=False)
        # The row carries the metadata columns asked for (None for a missing content).
        return [message_meta(r, want, r) for r in rows]

    async def fetch_flags(
        self, account: AccountId, mailbox: MailboxId, uids: UidSet
    ) -> list[tuple[int, int, Flags]]:
        """``storage.base.SupportsFlagScan``: (uid, modseq, flags) without building metas."""

        async def get(conn: Any) -> list[Any]:
            rows = await message_rows(
                conn, "m.uid, m.modseq, m.sysflags, m.keywords", account, mailbox, uids
            )
            if not rows:
                await mailbox_row(conn, account, mailbox)
            return rows

        rows = await self._run(get, write=False)
        cache: dict[tuple[int, str | None], Flags] = {}
        out: list[tuple[int, int, Flags]] = []
        for r in rows:
            key = (r["sysflags"], r["keywords"])
            flags = cache.get(key)
            if flags is None:
                flags = cache[key] = flags_of(*key)
            out.append((r["uid"], r["modseq"], flags))
        return out

    async def list_maildrop(self, account: AccountId, mailbox: MailboxId) -> list[MaildropRow]:
        """``Backend.list_maildrop``: one statement (and the mailbox's row when it is empty:
        NOT_FOUND for a missing one)."""

        async def get(conn: Any) -> list[Any]:
            rows = await conn.fetch(
                f"SELECT uid, size, uidl, sysflags & {SEEN_BIT} <> 0, internal_date "
                "FROM messages WHERE account_id = $1 AND mailbox_id = $2 ORDER BY uid",
                account,
                mailbox,
            )
            if not rows:
                await mailbox_row(conn, account, mailbox)
            return rows  # type: ignore[no-any-return]

        rows = await self._run(get, write=False)
        return [(r[0], r[1], r[2], r[3], r[4]) for r in rows]

    @asynccontextmanager
    async def _open_body(
        self, account: AccountId, mailbox: MailboxId, uid: Uid
    ) -> AsyncIterator[BodyReader]:
        """One statement: the message joined to its content's first chunk (one snapshot: a
        message seen without its content is damage, not an expunge in between)."""

        async def get(conn: Any) -> tuple[bytes, int, int, bytes]:
            row = await conn.fetchrow(
                "SELECT m.size, m.sha256, b.chunk_octets, c.data FROM messages m "
                "LEFT JOIN blobs b ON b.sha256 = m.sha256 "
                "LEFT JOIN blob_chunks c ON c.sha256 = m.sha256 AND c.seq = 0 "
                "WHERE m.account_id = $1 AND m.mailbox_id = $2 AND m.uid = $3",
                account,
                mailbox,
                uid,
            )
            if row is None:
                box = await mailbox_row(conn, account, mailbox)
                if uid < box["uidnext"]:
                    raise StoreError(ErrorKind.EXPUNGED, f"Message {uid} has been expunged")
                raise StoreError(ErrorKind.NOT_FOUND, f"No message with UID {uid}")
            sha = bytes(row["sha256"])
            if row["chunk_octets"] is None or (row["data"] is None and row["size"] > 0):
                log.error("account #%d: content of UID %d missing", account, uid)
                raise StoreError(
                    ErrorKind.CORRUPTED,
                    "message content damaged",
                    detail=f"blob {sha.hex()} missing",
                )
            return sha, int(row["size"]), int(row["chunk_octets"]), bytes(row["data"] or b"")

        sha, size, chunk, head = await self._run(get, write=False)
        yield PgBodyReader(self._db, sha, size, chunk, head)

    def open_body(
        self, account: AccountId, mailbox: MailboxId, uid: Uid
    ) -> AbstractAsyncContextManager[BodyReader]:
        return self._open_body(account, mailbox, uid)

    async def read_bodies(
        self, account: AccountId, mailbox: MailboxId, uids: Sequence[Uid]
    ) -> dict[Uid, bytes]:
        """``storage.base.SupportsBodyBatch``: one statement; a message stored in more than
        one chunk, or whose content is missing, is left out (``open_body`` handles it)."""
        if not uids:
            return {}

        async def get(conn: Any) -> list[Any]:
            return await conn.fetch(  # type: ignore[no-any-return]
                "SELECT m.uid, m.size, c.data FROM messages m "
                "JOIN blob_chunks c ON c.sha256 = m.sha256 AND c.seq = 0 "
                "WHERE m.account_id = $1 AND m.mailbox_id = $2 AND m.uid = ANY($3::bigint[])",
                account,
                mailbox,
                list(uids),
            )

        rows = await self._run(get, write=False)
        return {Uid(r["uid"]): bytes(r["data"]) for r in rows if len(r["data"]) == r["size"]}

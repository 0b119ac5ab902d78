# SQL here is assembled only from constant fragments, never from input:
# ruff: noqa: S608
"""Per-account export and restore on PostgreSQL (``SupportsBackup``), in the backend-neutral
archive format of ``storage/archive.py``: an archive written here restores into a local store
and the reverse (format 2; local format-1 archives, ``index.db`` + ``mail/``, are read too).

**Export** runs in one read-only REPEATABLE READ transaction: every row it reads, and every
content chunk, belongs to one committed state of the database, whatever is delivered or
expunged meanwhile (a content expunged after the snapshot stays visible to it). It streams:
``messages.jsonl`` is produced twice from the same snapshot (once to learn its length for the
tar header, once to write it), and message contents are read a bounded number of chunks at a
time; the tar is written through a small buffer to a temporary name beside the destination
and renamed when complete. Nothing the size of the account is held in memory.

**Restore** first extracts the archive into a staging directory under ``DATA/tmp`` with the
checks of ``archive.extract`` (hostile members refused before anything is written), then loads
it in **one transaction**: the account's mailbox rows and quota row are locked (deliveries to
it wait), the account must hold no message (NOT_POSSIBLE), the archive's mailboxes replace the
account's (empty) ones, and every message is staged from its file, checked against its record
(size, SHA-256) and inserted with its UID, modseq, flags, internal date and UIDL. Any refusal
or failure rolls the whole transaction back: the store is as it was. The caller reconstructs
afterwards (``account restore``: a new UIDVALIDITY unless ``--keep-uidvalidity``).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import asyncpg  # type: ignore[import-untyped]

from msgstore.core.acl import Rights
from msgstore.core.errors import ErrorKind, StoreError
from msgstore.core.flags import SYSTEM_BITS, from_storage, keywords_of
from msgstore.core.ids import AccountId
from msgstore.core.names import INBOX, MailboxName
from msgstore.storage import archive
from msgstore.storage.archive import (
    ACCOUNT_FILE,
    INDEX_FILE,
    MAIL_DIR,
    MANIFEST,
    MESSAGES_FILE,
    ArchiveAccount,
    ArchiveMailbox,
    ArchiveMessage,
    TarStream,
)
from msgstore.storage.base import ExportSummary, Progress
from msgstore.storage.local import files
from msgstore.storage.local.backup import IndexRecords, new_staging
from msgstore.storage.local.index import (
    acl_identifier,
    date_from_storage,
    date_to_storage,
    parse_special_use,
)
from msgstore.storage.postgres.db import is_store_failure, store_error
from msgstore.storage.postgres.queries import (
    create_mailbox_rows,
    keyword_map,
    not_found_account,
    store_keywords,
)
from msgstore.storage.postgres.staging import CHUNK_OCTETS, PgStagedMessage

if TYPE_CHECKING:
    from msgstore.storage.postgres.backend import PostgresBackend

#: Message rows read per statement (keyset pagination inside the snapshot).
PAGE: Final = 1000
#: Buffered tar octets written out at once; content octets read per statement at most.
FLUSH_OCTETS: Final = 1024 * 1024
READ_OCTETS: Final = 4 * 1024 * 1024
#: Records loaded per step of a restore; messages up to ``SMALL_OCTETS`` are read together.
BATCH: Final = 200
SMALL_OCTETS: Final = 64 * 1024
#: Staged contents held before they are written (memory bound of a restore).
PENDING_OCTETS: Final = 16 * 1024 * 1024


# --- export ----------------------------------------------------------------------------------


async def _account_record(conn: Any, account: AccountId) -> ArchiveAccount:
    row = await conn.fetchrow(
        "SELECT name, storage_limit_kib, message_limit FROM accounts WHERE account_id = $1",
        account,
    )
    if row is None:
        raise not_found_account(f"#{account}")
    keywords: dict[int, list[str]] = {}
    for r in await conn.fetch(
        "SELECT mailbox_id, keyword FROM mailbox_keywords WHERE account_id = $1 ORDER BY 1, 2",
        account,
    ):
        keywords.setdefault(r["mailbox_id"], []).append(r["keyword"])
    acl: dict[int, list[tuple[str, str]]] = {}
    for r in await conn.fetch(
        "SELECT mailbox_id, identifier, rights FROM acl WHERE account_id = $1 "
        "ORDER BY 1, identifier_key",
        account,
    ):
        acl.setdefault(r["mailbox_id"], []).append((r["identifier"], r["rights"]))
    boxes = await conn.fetch(
        "SELECT mailbox_id, name, uidvalidity, uidnext, highestmodseq, special_use "
        "FROM mailboxes WHERE account_id = $1 ORDER BY mailbox_id",
        account,
    )
    subscriptions = await conn.fetch(
        "SELECT name FROM subscriptions WHERE account_id = $1 ORDER BY name", account
    )
    return ArchiveAccount(
        name=row["name"],
        mailboxes=tuple(
            ArchiveMailbox(
                id=b["mailbox_id"],
                name=b["name"],
                uidvalidity=b["uidvalidity"],
                uidnext=b["uidnext"],
                highestmodseq=b["highestmodseq"],
                special_use=b["special_use"],
                keywords=tuple(keywords.get(b["mailbox_id"], ())),
                acl=tuple(acl.get(b["mailbox_id"], ())),
            )
            for b in boxes
        ),
        subscriptions=tuple(r["name"] for r in subscriptions),
        storage_limit_kib=row["storage_limit_kib"],
        message_limit=row["message_limit"],
    )


async def _pages(conn: Any, account: AccountId, columns: str) -> Any:
    """Every message row of the account in (mailbox, uid) order, a page at a time."""
    after = (0, 0)
    while True:
        rows = await conn.fetch(
            f"SELECT mailbox_id, uid, {columns} FROM messages WHERE account_id = $1 "
            "AND (mailbox_id, uid) > ($2, $3) ORDER BY mailbox_id, uid LIMIT $4",
            account,
            after[0],
            after[1],
            PAGE,
        )
        if not rows:
            return
        yield rows
        after = (rows[-1]["mailbox_id"], rows[-1]["uid"])


_RECORD_COLUMNS: Final = "modseq, sysflags, keywords, internal_date, tz_offset, size, sha256, uidl"


def _record(r: Any) -> ArchiveMessage:
    return ArchiveMessage(
        mailbox=r["mailbox_id"],
        uid=r["uid"],
        modseq=r["modseq"],
        flags=from_storage(r["sysflags"], r["keywords"]),
        internal_date=date_from_storage(r["internal_date"], r["tz_offset"]),
        size=r["size"],
        sha256=bytes(r["sha256"]),
        uidl=r["uidl"],
    )


async def _flush(stream: TarStream, *, force: bool = False) -> None:
    if stream.buffered >= FLUSH_OCTETS or (force and stream.buffered):
        await asyncio.to_thread(stream.flush)


def _damaged(r: Any) -> StoreError:
    return StoreError(
        ErrorKind.CORRUPTED,
        f"The content of message {r['uid']} (mailbox #{r['mailbox_id']}) is damaged: "
        "run msgstore reconstruct",
        detail=f"blob {bytes(r['sha256']).hex()}",
    )


async def _write_contents(conn: Any, stream: TarStream, rows: list[Any]) -> None:
    """The message members of one page: small contents fetched together (at most
    ``READ_OCTETS`` per statement), larger ones a few chunks at a time."""
    pending: list[Any] = []

    async def small(batch: list[Any]) -> None:
        shas = sorted({bytes(r["sha256"]) for r in batch if r["size"] > 0})
        data = {
            bytes(c["sha256"]): bytes(c["data"])
            for c in await conn.fetch(
                "SELECT c.sha256, c.data FROM blob_chunks c JOIN blobs b ON b.sha256 = c.sha256 "
                "WHERE c.sha256 = ANY($1::bytea[]) AND c.seq = 0 AND b.size <= b.chunk_octets",
                shas,
            )
        }
        for r in batch:
            body = data.get(bytes(r["sha256"]), b"") if r["size"] > 0 else b""
            if len(body) != r["size"]:
                raise _damaged(r)
            stream.begin(archive.mail_member(r["mailbox_id"], r["uid"]), r["size"])
            stream.data(body)
            stream.end(r["size"])
            await _flush(stream)

    total = 0
    for r in rows:
        if r["size"] <= r["chunk_octets"]:
            if total + r["size"] > READ_OCTETS and pending:
                await small(pending)
                pending, total = [], 0
            pending.append(r)
            total += r["size"]
            continue
        if pending:
            await small(pending)
            pending, total = [], 0
        size, sha, step = r["size"], bytes(r["sha256"]), r["chunk_octets"]
        stream.begin(archive.mail_member(r["mailbox_id"], r["uid"]), size)
        written, seq, per = 0, 0, max(1, READ_OCTETS // step)
        while written < size:
            chunks = await conn.fetch(
                "SELECT seq, data FROM blob_chunks WHERE sha256 = $1 AND seq >= $2 "
                "AND seq < $3 ORDER BY seq",
                sha,
                seq,
                seq + per,
            )
            if [c["seq"] for c in chunks] != list(range(seq, seq + len(chunks))) or not chunks:
                raise _damaged(r)
            for c in chunks:
                piece = bytes(c["data"])
                written += len(piece)
                stream.data(piece)
            seq += len(chunks)
            if written > size:
                raise _damaged(r)
            await _flush(stream)
        stream.end(size)
    if pending:
        await small(pending)


async def _export(
    conn: Any, stream: TarStream, account: AccountId, progress: Progress | None
) -> ExportSummary:
    record = await _account_record(conn, account)
    stream.add_bytes(MANIFEST, archive.manifest_bytes(record.name, "postgres"))
    stream.add_bytes(ACCOUNT_FILE, archive.account_bytes(record))
    # messages.jsonl: its length first (same snapshot, same bytes), then its lines.
    length = count = octets = 0
    async for rows in _pages(conn, account, _RECORD_COLUMNS):
        for r in rows:
            length += len(archive.message_line(_record(r)))
            count += 1
            octets += r["size"]
    stream.begin(MESSAGES_FILE, length)
    written = 0
    async for rows in _pages(conn, account, _RECORD_COLUMNS):
        for r in rows:
            line = archive.message_line(_record(r))
            written += len(line)
            stream.data(line)
        await _flush(stream)
    if written != length:
        raise StoreError(ErrorKind.INTERNAL, "The export's snapshot changed under it")
    stream.end(length)
    stream.add_dir(MAIL_DIR)
    done = 0
    boxes: set[int] = set()
    if progress is not None:
        progress(0, count)
    after = (0, 0)
    while True:
        rows = await conn.fetch(
            "SELECT m.mailbox_id, m.uid, m.size, m.sha256, coalesce(b.chunk_octets, 1) "
            "AS chunk_octets FROM messages m LEFT JOIN blobs b ON b.sha256 = m.sha256 "
            "WHERE m.account_id = $1 AND (m.mailbox_id, m.uid) > ($2, $3) "
            "ORDER BY m.mailbox_id, m.uid LIMIT $4",
            account,
            after[0],
            after[1],
            PAGE,
        )
        if not rows:
            break
        after = (rows[-1]["mailbox_id"], rows[-1]["uid"])
        for box in sorted({r["mailbox_id"] for r in rows} - boxes):
            boxes.add(box)
            stream.add_dir(f"{MAIL_DIR}/{box}")
        await _write_contents(conn, stream, list(rows))
        done += len(rows)
        if progress is not None:
            progress(done, count)
    if done != count:
        raise StoreError(ErrorKind.INTERNAL, "The export's snapshot changed under it")
    return ExportSummary(
        account=record.name,
        mailboxes=len(boxes),
        messages=count,
        octets=octets,
        archive_octets=0,
    )


async def export_account(
    backend: PostgresBackend, account: AccountId, destination: Path, progress: Progress | None
) -> ExportSummary:
    backend._check_open()
    destination = await asyncio.to_thread(archive.check_destination, destination)
    stream = TarStream(destination)
    try:
        try:
            await asyncio.to_thread(stream.open)
            async with backend._db.acquire() as conn:
                try:
                    async with conn.transaction(isolation="repeatable_read", readonly=True):
                        summary = await _export(conn, stream, account, progress)
                except StoreError:
                    raise
                except Exception as exc:
                    if not is_store_failure(exc):
                        raise
                    raise store_error(exc) from exc
            size = await asyncio.to_thread(stream.commit)
        except OSError as exc:
            raise StoreError(
                ErrorKind.TEMP, f"Cannot write {destination}: {exc.strerror}", detail=str(exc)
            ) from exc
    except BaseException:
        await asyncio.to_thread(stream.discard)
        raise
    return ExportSummary(
        account=summary.account,
        mailboxes=summary.mailboxes,
        messages=summary.messages,
        octets=summary.octets,
        archive_octets=size,
    )


# --- restore ---------------------------------------------------------------------------------


class _Records:
    """The account and message records of an extracted archive (format 2's JSON, or a
    format-1 ``index.db``), checked as ``storage/archive.py`` checks them."""

    def __init__(self, staging: Path, extracted: archive.Extracted, name: str) -> None:
        self._index: IndexRecords | None = None
        if extracted.has_records:
            self.account = archive.read_account(staging)
            self._messages: Iterator[ArchiveMessage] = archive.read_messages(staging)
        else:
            assert INDEX_FILE in extracted.files
            self._index = IndexRecords(staging / INDEX_FILE)
            # Through the JSON form, so that a format-1 index gets the same checks.
            self.account = archive.parse_account(archive.account_bytes(self._index.account(name)))
            self._messages = (
                archive.parse_message_line(archive.message_line(m), n)
                for n, m in enumerate(self._index.messages(), 1)
            )
        for box in self.account.mailboxes:
            parse_special_use(box.special_use)
            for ident, _ in box.acl:
                acl_identifier(ident)

    def take(self, n: int) -> list[ArchiveMessage]:
        return list(itertools.islice(self._messages, n))

    def close(self) -> None:
        if self._index is not None:
            self._index.close()


async def _replace_mailboxes(
    conn: Any, account: AccountId, records: ArchiveAccount
) -> dict[int, int]:
    """The archive's mailboxes instead of the account's (empty) ones; archive id -> id."""
    existing = {
        r["name"]: r["mailbox_id"]
        for r in await conn.fetch(
            "SELECT name, mailbox_id FROM mailboxes WHERE account_id = $1", account
        )
    }
    wanted = {b.name for b in records.mailboxes}
    gone = sorted(i for n, i in existing.items() if n not in wanted and n != INBOX)
    touched = sorted(existing[b.name] for b in records.mailboxes if b.name in existing)
    for table in ("acl", "mailbox_keywords", "expunged"):
        await conn.execute(
            f"DELETE FROM {table} WHERE account_id = $1 AND mailbox_id = ANY($2::bigint[])",
            account,
            gone + touched,
        )
    await conn.execute(
        "DELETE FROM mailboxes WHERE account_id = $1 AND mailbox_id = ANY($2::bigint[])",
        account,
        gone,
    )
    ids: dict[int, int] = {}
    for box in sorted(records.mailboxes, key=lambda b: b.name):
        values = (
            box.uidvalidity,
            box.uidnext,
            max(box.highestmodseq, 1),
            parse_special_use(box.special_use),
        )
        if box.name in existing:
            ident = existing[box.name]
            await conn.execute(
                "UPDATE mailboxes SET uidvalidity = $3, uidnext = $4, highestmodseq = $5, "
                "special_use = $6, recent_uid = $4, expunged_floor = 0 "
                "WHERE account_id = $1 AND mailbox_id = $2",
                account,
                ident,
                *values,
            )
        else:
            ident = await conn.fetchval(
                "INSERT INTO mailboxes(account_id, name, uidvalidity, uidnext, highestmodseq, "
                "special_use, recent_uid) VALUES ($1, $2, $3, $4, $5, $6, $4) "
                "RETURNING mailbox_id",
                account,
                box.name,
                *values,
            )
        ids[box.id] = ident
        for ident_raw, rights in box.acl:
            who, key = acl_identifier(ident_raw)
            await conn.execute(
                "INSERT INTO acl(account_id, mailbox_id, identifier_key, identifier, rights) "
                "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (account_id, mailbox_id, "
                "identifier_key) DO UPDATE SET rights = excluded.rights",
                account,
                ident,
                key,
                who,
                str(Rights.parse(rights)),
            )
        await conn.execute(
            "INSERT INTO mailbox_keywords(account_id, mailbox_id, keyword) "
            "SELECT $1, $2, k FROM unnest($3::text[]) AS k ON CONFLICT DO NOTHING",
            account,
            ident,
            list(box.keywords),
        )
    for box in records.mailboxes:  # parents the archive lacks
        await create_mailbox_rows(conn, account, MailboxName(box.name), "", exist_ok=True)
    await conn.execute("DELETE FROM subscriptions WHERE account_id = $1", account)
    await conn.execute(
        "INSERT INTO subscriptions(account_id, name) SELECT $1, n FROM unnest($2::text[]) AS n",
        account,
        list(records.subscriptions),
    )
    await conn.execute(
        "UPDATE account_state SET next_uidvalidity = greatest(next_uidvalidity, $2) "
        "WHERE account_id = $1",
        account,
        max(b.uidvalidity for b in records.mailboxes) + 1,
    )
    return ids


def _read_files(staging: Path, records: list[ArchiveMessage]) -> dict[int, bytes]:
    """The files of small messages, read in one go (keyed by ``id`` of the record); a file
    that is missing or longer than its record is left to ``_stage_file`` to refuse."""
    out: dict[int, bytes] = {}
    for m in records:
        path = staging / MAIL_DIR / str(m.mailbox) / str(m.uid)
        try:
            with open(path, "rb") as fh:
                data = fh.read(m.size + 1)
        except FileNotFoundError:
            continue
        out[id(m)] = data
    return out


async def _store_blobs(backend: PostgresBackend, conn: Any, staged: list[PgStagedMessage]) -> None:
    """One more reference per staged message to its content, storing the new ones: one
    statement for the contents held in memory (in hash order, the lock order), their chunks
    in one more; large (spilled) ones one at a time."""
    counts: dict[bytes, int] = {}
    first: dict[bytes, PgStagedMessage] = {}
    for item in staged:
        if not item.in_memory:
            await backend._store_blob(conn, item)
            continue
        counts[item.sha256] = counts.get(item.sha256, 0) + 1
        first.setdefault(item.sha256, item)
    if not counts:
        return
    keys = sorted(counts)
    metas = [first[k].meta() for k in keys]
    inserted = await conn.fetch(
        "INSERT INTO blobs(sha256, size, refcount, chunk_octets, meta_version, envelope, "
        "bodystructure, body, partmap, headers) SELECT * FROM unnest($1::bytea[], "
        "$2::bigint[], $3::bigint[], $4::integer[], $5::integer[], $6::bytea[], $7::bytea[], "
        "$8::bytea[], $9::bytea[], $10::text[]) ORDER BY 1 ON CONFLICT (sha256) DO UPDATE "
        "SET refcount = blobs.refcount + excluded.refcount RETURNING sha256, (xmax = 0) AS new",
        keys,
        [first[k].size for k in keys],
        [counts[k] for k in keys],
        [CHUNK_OCTETS] * len(keys),
        [m.meta_version for m in metas],
        [m.envelope for m in metas],
        [m.bodystructure for m in metas],
        [m.body for m in metas],
        [m.partmap for m in metas],
        [m.headers_json for m in metas],
    )
    chunks = [
        (bytes(r["sha256"]), seq, piece)
        for r in inserted
        if r["new"]
        for seq, piece in enumerate(first[bytes(r["sha256"])].chunks())
    ]
    if chunks:
        await conn.executemany(
            "INSERT INTO blob_chunks(sha256, seq, data) VALUES ($1, $2, $3)", chunks
        )


def _read_file(path: Path, member: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise StoreError(ErrorKind.PARAMS, f"The archive has no {member}") from None


async def _stage_file(
    backend: PostgresBackend, path: Path, m: ArchiveMessage, data: bytes | None
) -> PgStagedMessage:
    """The message file (``data`` if already read) as a staged message, checked against its
    record."""
    member = archive.mail_member(m.mailbox, m.uid)
    staged = PgStagedMessage(tmp_dir=backend._tmp_dir, max_octets=m.size)
    try:
        if data is not None:
            await staged.write(data)
        elif m.size <= READ_OCTETS:
            await staged.write(await asyncio.to_thread(_read_file, path, member))
        else:
            fh = await asyncio.to_thread(open, path, "rb")
            try:
                while piece := await asyncio.to_thread(fh.read, READ_OCTETS):
                    await staged.write(piece)
            finally:
                fh.close()
        await staged.finish()
    except StoreError as exc:
        staged.discard()
        if exc.kind is ErrorKind.TOO_BIG:
            raise StoreError(
                ErrorKind.PARAMS, f"The archive's {member} differs from its record"
            ) from None
        raise
    except FileNotFoundError:
        staged.discard()
        raise StoreError(ErrorKind.PARAMS, f"The archive has no {member}") from None
    except BaseException:
        staged.discard()
        raise
    if staged.size != m.size or staged.sha256 != m.sha256:
        staged.discard()
        raise StoreError(ErrorKind.PARAMS, f"The archive's {member} differs from its record")
    return staged


async def _load(
    backend: PostgresBackend,
    conn: Any,
    account: AccountId,
    name: str,
    staging: Path,
    records: _Records,
    expected: int,
    progress: Progress | None,
) -> int:
    await conn.execute(
        "SELECT 1 FROM mailboxes WHERE account_id = $1 ORDER BY mailbox_id FOR UPDATE", account
    )
    if (
        await conn.fetchval(
            "SELECT 1 FROM account_state WHERE account_id = $1 FOR UPDATE", account
        )
        is None
    ):
        raise not_found_account(f"#{account}")
    if await conn.fetchval("SELECT 1 FROM messages WHERE account_id = $1 LIMIT 1", account):
        raise StoreError(
            ErrorKind.NOT_POSSIBLE,
            f"Account {name!r} holds mail: restore only into a new or empty account",
        )
    ids = await _replace_mailboxes(conn, account, records.account)
    known: dict[int, dict[str, str]] = {}
    count = octets = 0
    if progress is not None:
        progress(0, expected)
    while batch := await asyncio.to_thread(records.take, BATCH):
        for m in batch:
            if m.mailbox not in ids:
                raise StoreError(
                    ErrorKind.PARAMS,
                    f"The archive's message {m.mailbox}/{m.uid} is in a mailbox "
                    f"{ACCOUNT_FILE} does not list",
                )
        small = [m for m in batch if m.size <= SMALL_OCTETS]
        contents = await asyncio.to_thread(_read_files, staging, small)
        pending: list[PgStagedMessage] = []
        held = 0
        try:
            for m in batch:
                path = staging / MAIL_DIR / str(m.mailbox) / str(m.uid)
                staged = await _stage_file(backend, path, m, contents.pop(id(m), None))
                pending.append(staged)
                held += staged.size
                if held >= PENDING_OCTETS:
                    await _store_blobs(backend, conn, pending)
                    for staged in pending:
                        staged.discard()
                    pending, held = [], 0
            await _store_blobs(backend, conn, pending)
        finally:
            for staged in pending:
                staged.discard()
        rows: list[tuple[Any, ...]] = []
        for m in batch:
            mailbox = ids[m.mailbox]
            kws = keywords_of(m.flags)
            spelled: tuple[str, ...] = ()
            if kws:
                if mailbox not in known:
                    known[mailbox] = await keyword_map(conn, account, mailbox)
                spelled = await store_keywords(conn, account, mailbox, known[mailbox], kws)
            seconds, offset = date_to_storage(m.internal_date)
            rows.append(
                (
                    account,
                    mailbox,
                    m.uid,
                    m.modseq,
                    sum(SYSTEM_BITS.get(f, 0) for f in m.flags),
                    " ".join(spelled) or None,
                    seconds,
                    offset,
                    m.size,
                    m.sha256,
                    m.uidl,
                )
            )
            octets += m.size
        try:
            await conn.executemany(
                "INSERT INTO messages(account_id, mailbox_id, uid, modseq, sysflags, keywords, "
                "internal_date, tz_offset, size, sha256, uidl) "
                "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
                rows,
            )
        except asyncpg.UniqueViolationError:
            raise StoreError(ErrorKind.PARAMS, "The archive lists a message twice") from None
        count += len(batch)
        if progress is not None:
            progress(count, expected)
    if count != expected:
        raise StoreError(
            ErrorKind.PARAMS,
            f"The archive has {expected - count} message files without a record",
        )
    await conn.execute(
        "UPDATE mailboxes b SET uidnext = greatest(b.uidnext, t.uid + 1), "
        "highestmodseq = greatest(b.highestmodseq, t.modseq), "
        "recent_uid = greatest(b.uidnext, t.uid + 1) "
        "FROM (SELECT mailbox_id, max(uid) AS uid, max(modseq) AS modseq FROM messages "
        "WHERE account_id = $1 GROUP BY mailbox_id) t "
        "WHERE b.account_id = $1 AND b.mailbox_id = t.mailbox_id",
        account,
    )
    await conn.execute(
        "UPDATE account_state SET storage_used_octets = $2, messages_used = $3 "
        "WHERE account_id = $1",
        account,
        octets,
        count,
    )
    return count


def _extract(source: Path, staging: Path) -> archive.Extracted:
    # No fsync: the staged files are read once into the database, whose commit is the
    # durable step.
    return archive.extract(source, staging, None, sync=False)


async def restore_account(
    backend: PostgresBackend, account: AccountId, source: Path, progress: Progress | None
) -> int:
    info = await backend.get_account_by_id(account)

    async def holds_mail(conn: Any) -> bool:
        found = await conn.fetchval(
            "SELECT 1 FROM messages WHERE account_id = $1 LIMIT 1", account
        )
        return found is not None

    if await backend._run(holds_mail, write=False):  # checked again under the locks
        raise StoreError(
            ErrorKind.NOT_POSSIBLE,
            f"Account {info.name!r} holds mail: restore only into a new or empty account",
        )
    staging = await asyncio.to_thread(new_staging, backend._tmp_dir, ".restore")
    try:
        extracted = await asyncio.to_thread(_extract, Path(source), staging)
        records = await asyncio.to_thread(_Records, staging, extracted, info.name)
        try:
            async with backend._db.acquire() as conn:
                try:
                    async with conn.transaction():
                        count = await _load(
                            backend,
                            conn,
                            account,
                            info.name,
                            staging,
                            records,
                            extracted.messages,
                            progress,
                        )
                except StoreError:
                    raise
                except Exception as exc:
                    if not is_store_failure(exc):
                        raise
                    raise store_error(exc) from exc
        finally:
            records.close()
    finally:
        await asyncio.to_thread(files.remove_tree_quietly, staging)
    backend._hub.publish_account(account)
    backend._notifier.changed(account)
    return count

# SQL here is assembled only from constant fragments, never from input:
# ruff: noqa: S608
"""``msgstore reconstruct`` on PostgreSQL (``SupportsReconstruct``): check, and with ``apply``
repair, what can drift in the rows of one account. Same report as the local backend's
(``ReconstructReport``, the same codes where the meaning is the same), so the CLI, the REST
API and the web pages work unchanged. Safe while servers run: nothing is stopped.

There are no index files to rebuild here: the database's own transactions keep rows whole.
What can drift is what one row says about others (a hand-made UPDATE, a restore of part of a
dump, a bug): those are the checks.

1. **Metadata** (per message content, shared by every copy): contents whose parsed metadata
   (ENVELOPE, BODY, BODYSTRUCTURE, part map, header index) is missing (``meta-missing``) or
   older than ``mime.METADATA_VERSION`` (``meta-stale``) are re-parsed from their chunks;
   each repair is its own short transaction on that ``blobs`` row only. ``--mailbox`` limits
   this check and the next to one mailbox.
2. **Contents**: a message whose content row is gone or whose chunks do not add up to its
   size (``file-missing``) is removed and recorded as expunged (sessions see EXPUNGE, as on
   the local backend); a message whose size differs from its content's (``size-wrong``) is
   corrected.
3. **Structure**, in one transaction holding the account's mailbox rows and quota row (the
   backend's lock order; deliveries to the account wait for it, briefly): messages of a
   mailbox whose row is gone are kept in ``lost+found/<id>`` with a new UIDVALIDITY
   (``mailbox-lost``); a missing INBOX or parent is created (``mailbox-missing``); UIDNEXT
   is raised above the highest UID (``uidnext-low``), HIGHESTMODSEQ to the highest modseq of
   a message or an expunge (``modseq-low``); keywords in use join the mailbox's keyword list
   (``keyword-list``); quota usage is recomputed from the rows and the limits mirrored from
   the account (``quota-wrong``); the next UIDVALIDITY is raised above every one in use
   (``meta``); every content this account's messages refer to has its reference count
   compared with the messages of all accounts referring to it and set to that number
   (``blob-refcount``: too low would let an expunge elsewhere delete a content still in use,
   too high would keep a content forever). Counting the references of one content is one
   probe of the index ``messages_by_sha256`` (schema version 3), so this costs the account's
   contents, not the store.
   ``new_uidvalidity`` gives every mailbox a new UIDVALIDITY and a new mailbox id
   (``uidvalidity-changed``; a session that has one selected is disconnected).
4. **Store-wide** contents, with the public folders' account (``reconstruct --all`` ends
   with it) and no ``--mailbox``: what no account's run can see, because no message refers
   to it: contents or chunks nobody refers to are deleted (``blob-orphan``), and every
   other reference count is compared once more (``blob-refcount``). This needs one scan of
   all messages and contents, which is why it runs once per ``--all`` and not per account.
   Each candidate is counted again under its row lock before it is changed.

A second run after a repair finds nothing. Contents are not re-hashed (the key is the hash
the content was stored under; chunks are checked for completeness, not for bit rot: that is
the database's own checksums' job).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from msgstore.core.errors import ErrorKind, StoreError
from msgstore.core.ids import AccountId
from msgstore.core.names import INBOX, MailboxName, mailbox_name, parents
from msgstore.mime.parse import METADATA_VERSION, parse_message
from msgstore.storage.base import Discrepancy, Progress, ReconstructReport
from msgstore.storage.postgres.queries import (
    create_mailbox_rows,
    drop_refs,
    next_uidvalidity,
    not_found_mailbox,
)
from msgstore.storage.postgres.staging import ParsedMeta, parsed_meta

if TYPE_CHECKING:
    from msgstore.storage.postgres.backend import PostgresBackend

LOST_FOUND: Final = "lost+found"
#: Contents re-parsed per progress step; octets of content read per statement.
_READ_OCTETS: Final = 4 * 1024 * 1024
#: Contents per statement of the per-account reference count check.
_REF_BATCH: Final = 5000
_META_MISSING: Final = (
    "b.envelope IS NULL OR b.bodystructure IS NULL OR b.body IS NULL OR b.partmap IS NULL "
    "OR b.headers IS NULL"
)


@dataclass(slots=True)
class _Found:
    notes: list[Discrepancy] = field(default_factory=list)
    mailboxes: int = 0
    messages: int = 0
    octets: int = 0

    def note(self, code: str, mailbox: str, uid: int | None, text: str) -> None:
        self.notes.append(Discrepancy(code=code, mailbox=mailbox, uid=uid, text=text))


# --- 1. metadata -----------------------------------------------------------------------------


async def _content(conn: Any, sha: bytes, size: int, step: int) -> bytes | None:
    """A content's octets, or None when its chunks do not add up (phase 2 reports it)."""
    parts: list[bytes] = []
    seq, per = 0, max(1, _READ_OCTETS // max(step, 1))
    got = 0
    while got < size:
        rows = await conn.fetch(
            "SELECT seq, data FROM blob_chunks WHERE sha256 = $1 AND seq >= $2 AND seq < $3 "
            "ORDER BY seq",
            sha,
            seq,
            seq + per,
        )
        if not rows or [r["seq"] for r in rows] != list(range(seq, seq + len(rows))):
            return None
        for r in rows:
            parts.append(bytes(r["data"]))
            got += len(r["data"])
        seq += len(rows)
    return b"".join(parts) if got == size else None


async def _metadata(
    backend: PostgresBackend,
    account: AccountId,
    only: int | None,
    names: dict[int, str],
    apply: bool,
    found: _Found,
    progress: Progress | None,
) -> None:
    async def scan(conn: Any) -> tuple[int, list[Any]]:
        total = await conn.fetchval(
            "SELECT count(*) FROM messages WHERE account_id = $1 "
            "AND ($2::bigint IS NULL OR mailbox_id = $2)",
            account,
            only,
        )
        rows = await conn.fetch(
            "SELECT m.mailbox_id, m.uid, m.sha256, b.size, b.chunk_octets, b.meta_version, "
            f"({_META_MISSING}) AS lost FROM messages m JOIN blobs b ON b.sha256 = m.sha256 "
            "WHERE m.account_id = $1 AND ($2::bigint IS NULL OR m.mailbox_id = $2) "
            f"AND (b.meta_version < $3 OR {_META_MISSING}) ORDER BY m.mailbox_id, m.uid",
            account,
            only,
            METADATA_VERSION,
        )
        return int(total), list(rows)

    total, rows = await backend._run(scan, write=False)
    if progress is not None:
        progress(0, total)
    by_sha: dict[bytes, list[Any]] = {}
    for r in rows:
        by_sha.setdefault(bytes(r["sha256"]), []).append(r)
    done = total - len(rows)
    for sha, refs in by_sha.items():
        first = refs[0]

        async def read(conn: Any, sha: bytes = sha, first: Any = first) -> bytes | None:
            return await _content(conn, sha, first["size"], first["chunk_octets"])

        data = await backend._run(read, write=False, isolation="repeatable_read")
        if data is None:
            continue  # the content is damaged: phase 2 removes its messages
        for r in refs:
            box = names.get(r["mailbox_id"], f"#{r['mailbox_id']}")
            if r["lost"]:
                found.note(
                    "meta-missing", box, r["uid"], f"UID {r['uid']}: metadata lost; re-parsed"
                )
            else:
                found.note(
                    "meta-stale",
                    box,
                    r["uid"],
                    f"UID {r['uid']}: metadata version {r['meta_version']} < "
                    f"{METADATA_VERSION}; re-parsed",
                )
        if apply:
            meta = await asyncio.to_thread(_parse, data)

            async def store(conn: Any, sha: bytes = sha, meta: Any = meta) -> None:
                await conn.execute(
                    "UPDATE blobs SET meta_version = $2, envelope = $3, bodystructure = $4, "
                    "body = $5, partmap = $6, headers = $7 WHERE sha256 = $1",
                    sha,
                    meta.meta_version,
                    meta.envelope,
                    meta.bodystructure,
                    meta.body,
                    meta.partmap,
                    meta.headers_json,
                )

            await backend._run(store)
        done += len(refs)
        if progress is not None:
            progress(done, total)
    if progress is not None:
        progress(total, total)


def _parse(data: bytes) -> ParsedMeta:
    return parsed_meta(parse_message(data))


# --- 2 and 3. contents and structure ---------------------------------------------------------


def _unique(name: str, taken: set[str]) -> str:
    candidate, n = name, 1
    while candidate in taken:
        n += 1
        candidate = f"{name}-{n}"
    taken.add(candidate)
    return candidate


async def _contents(
    conn: Any,
    account: AccountId,
    only: int | None,
    names: dict[int, str],
    apply: bool,
    found: _Found,
) -> None:
    rows = await conn.fetch(
        "SELECT m.mailbox_id, m.uid, m.size, m.sha256, b.size AS blob_size, b.chunk_octets, "
        "c.n, c.octets FROM messages m LEFT JOIN blobs b ON b.sha256 = m.sha256 "
        "LEFT JOIN LATERAL (SELECT count(*) AS n, coalesce(sum(octet_length(x.data)), 0) "
        "AS octets FROM blob_chunks x WHERE x.sha256 = m.sha256) c ON true "
        "WHERE m.account_id = $1 AND ($2::bigint IS NULL OR m.mailbox_id = $2) "
        "AND (b.sha256 IS NULL OR c.octets <> b.size OR m.size <> b.size "
        "OR (c.n <> (b.size + b.chunk_octets - 1) / b.chunk_octets "
        "AND NOT (b.size = 0 AND c.n = 1))) "
        "ORDER BY m.mailbox_id, m.uid",
        account,
        only,
    )
    gone: dict[int, list[Any]] = {}
    for r in rows:
        box = names.get(r["mailbox_id"], f"#{r['mailbox_id']}")
        whole = r["blob_size"] is not None and r["octets"] == r["blob_size"]
        if whole:
            chunks = (r["blob_size"] + r["chunk_octets"] - 1) // r["chunk_octets"]
            whole = r["n"] == chunks or (r["blob_size"] == 0 and r["n"] == 1)
        if not whole:
            found.note(
                "file-missing",
                box,
                r["uid"],
                f"UID {r['uid']}: message content missing; row removed",
            )
            gone.setdefault(r["mailbox_id"], []).append(r)
        else:
            found.note(
                "size-wrong",
                box,
                r["uid"],
                f"UID {r['uid']}: size {r['size']} -> {r['blob_size']}",
            )
            if apply:
                await conn.execute(
                    "UPDATE messages SET size = $4 WHERE account_id = $1 AND mailbox_id = $2 "
                    "AND uid = $3",
                    account,
                    r["mailbox_id"],
                    r["uid"],
                    r["blob_size"],
                )
    if not apply:
        return
    shas: list[bytes] = []
    for mailbox, lost in sorted(gone.items()):
        modseq = await conn.fetchval(
            "SELECT greatest(highestmodseq, coalesce((SELECT max(modseq) FROM messages "
            "WHERE account_id = $1 AND mailbox_id = $2), 0)) + 1 FROM mailboxes "
            "WHERE account_id = $1 AND mailbox_id = $2",
            account,
            mailbox,
        )
        uids = [r["uid"] for r in lost]
        await conn.execute(
            "DELETE FROM messages WHERE account_id = $1 AND mailbox_id = $2 "
            "AND uid = ANY($3::bigint[])",
            account,
            mailbox,
            uids,
        )
        if modseq is not None:  # the mailbox row exists (else: lost+found has no history)
            await conn.execute(
                "INSERT INTO expunged(account_id, mailbox_id, uid, modseq) "
                "SELECT $1, $2, u, $4 FROM unnest($3::bigint[]) AS u ON CONFLICT "
                "(account_id, mailbox_id, uid) DO UPDATE SET modseq = excluded.modseq",
                account,
                mailbox,
                uids,
                modseq,
            )
            await conn.execute(
                "UPDATE mailboxes SET highestmodseq = $3 WHERE account_id = $1 "
                "AND mailbox_id = $2",
                account,
                mailbox,
                modseq,
            )
        shas += [bytes(r["sha256"]) for r in lost if r["blob_size"] is not None]
    await drop_refs(conn, shas)


async def _structure(
    conn: Any,
    account: AccountId,
    only: int | None,
    *,
    apply: bool,
    new_uidvalidity: bool,
    store_wide: bool,
) -> _Found:
    found = _Found()
    if apply:
        await conn.execute(
            "SELECT 1 FROM mailboxes WHERE account_id = $1 ORDER BY mailbox_id FOR UPDATE",
            account,
        )
    state = await conn.fetchrow(
        "SELECT s.storage_used_octets, s.messages_used, s.storage_limit_octets, "
        "s.message_limit, a.storage_limit_kib, a.message_limit AS limit "
        "FROM account_state s JOIN accounts a ON a.account_id = s.account_id "
        "WHERE s.account_id = $1" + (" FOR UPDATE OF s" if apply else ""),
        account,
    )
    if state is None:
        raise StoreError(ErrorKind.NOT_FOUND, f"No such account: #{account}")
    boxes = {
        r["mailbox_id"]: r
        for r in await conn.fetch(
            "SELECT mailbox_id, name, uidvalidity, uidnext, highestmodseq FROM mailboxes "
            "WHERE account_id = $1",
            account,
        )
    }
    names = {i: r["name"] for i, r in boxes.items()}
    taken = set(names.values())

    # Messages of a mailbox whose row is gone: kept, in lost+found/<id>.
    for r in await conn.fetch(
        "SELECT mailbox_id, max(uid) AS uid, max(modseq) AS modseq FROM messages "
        "WHERE account_id = $1 GROUP BY mailbox_id ORDER BY mailbox_id",
        account,
    ):
        if r["mailbox_id"] in boxes:
            continue
        name = _unique(f"{LOST_FOUND}/{r['mailbox_id']}", taken)
        names[r["mailbox_id"]] = name
        found.note(
            "mailbox-lost",
            name,
            None,
            f"mailbox {r['mailbox_id']} has no mailbox row; restored as {name}",
        )
        if apply:
            await conn.execute(
                "INSERT INTO mailboxes(account_id, mailbox_id, name, uidvalidity, uidnext, "
                "highestmodseq, recent_uid) VALUES ($1, $2, $3, $4, $5, $6, $5)",
                account,
                r["mailbox_id"],
                name,
                await next_uidvalidity(conn, account),
                r["uid"] + 1,
                r["modseq"],
            )
    needed: set[str] = {INBOX}
    for name in list(taken):
        needed.update(parents(MailboxName(name)))
    for name in sorted(needed - taken):
        taken.add(name)
        found.note("mailbox-missing", name, None, f"{name} was missing; created")
        if apply:
            await create_mailbox_rows(conn, account, MailboxName(name), "", exist_ok=True)

    # UIDNEXT and HIGHESTMODSEQ against the rows (before removals, which need a modseq).
    for r in await conn.fetch(
        "SELECT b.mailbox_id, b.name, b.uidnext, b.highestmodseq, m.uid, "
        "greatest(m.modseq, e.modseq) AS modseq FROM mailboxes b "
        "LEFT JOIN (SELECT mailbox_id, max(uid) AS uid, max(modseq) AS modseq FROM messages "
        "WHERE account_id = $1 GROUP BY mailbox_id) m ON m.mailbox_id = b.mailbox_id "
        "LEFT JOIN (SELECT mailbox_id, max(modseq) AS modseq FROM expunged "
        "WHERE account_id = $1 GROUP BY mailbox_id) e ON e.mailbox_id = b.mailbox_id "
        "WHERE b.account_id = $1 ORDER BY b.name",
        account,
    ):
        if r["uid"] is not None and r["uidnext"] <= r["uid"]:
            found.note(
                "uidnext-low",
                r["name"],
                None,
                f"UIDNEXT was {r['uidnext']}, not above UID {r['uid']}; set to {r['uid'] + 1}",
            )
        if r["modseq"] is not None and r["highestmodseq"] < r["modseq"]:
            found.note(
                "modseq-low",
                r["name"],
                None,
                f"HIGHESTMODSEQ was {r['highestmodseq']}, below {r['modseq']}; raised",
            )
    if apply:
        await conn.execute(
            "UPDATE mailboxes b SET uidnext = greatest(b.uidnext, m.uid + 1), "
            "highestmodseq = greatest(b.highestmodseq, m.modseq) FROM (SELECT mailbox_id, "
            "max(uid) AS uid, max(modseq) AS modseq FROM (SELECT mailbox_id, uid, modseq "
            "FROM messages WHERE account_id = $1 UNION ALL SELECT mailbox_id, 0, modseq "
            "FROM expunged WHERE account_id = $1) x GROUP BY mailbox_id) m "
            "WHERE b.account_id = $1 AND b.mailbox_id = m.mailbox_id "
            "AND (b.uidnext <= m.uid OR b.highestmodseq < m.modseq)",
            account,
        )

    await _contents(conn, account, only, names, apply, found)

    # Keywords in use but missing from their mailbox's list.
    missing = await conn.fetch(
        "SELECT DISTINCT m.mailbox_id, k.keyword FROM messages m, "
        "unnest(string_to_array(m.keywords, ' ')) AS k(keyword) WHERE m.account_id = $1 "
        "AND m.keywords IS NOT NULL AND NOT EXISTS (SELECT 1 FROM mailbox_keywords x "
        "WHERE x.account_id = $1 AND x.mailbox_id = m.mailbox_id AND x.keyword = k.keyword) "
        "ORDER BY 1, 2",
        account,
    )
    for r in missing:
        box = names.get(r["mailbox_id"], f"#{r['mailbox_id']}")
        found.note("keyword-list", box, None, f"keyword {r['keyword']} added to the list")
        if apply:
            await conn.execute(
                "INSERT INTO mailbox_keywords(account_id, mailbox_id, keyword) "
                "VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                account,
                r["mailbox_id"],
                r["keyword"],
            )

    # Quota: usage from the rows, limits from the account.
    usage = await conn.fetchrow(
        "SELECT count(*) AS n, coalesce(sum(size), 0) AS octets FROM messages "
        "WHERE account_id = $1",
        account,
    )
    found.messages, found.octets = int(usage["n"]), int(usage["octets"])
    if (state["storage_used_octets"], state["messages_used"]) != (found.octets, found.messages):
        found.note(
            "quota-wrong",
            "",
            None,
            f"quota usage was {state['storage_used_octets']} octets, {state['messages_used']} "
            f"messages; is {found.octets} octets, {found.messages} messages",
        )
    kib = state["storage_limit_kib"]
    limits = (None if kib is None else kib * 1024, state["limit"])
    if (state["storage_limit_octets"], state["message_limit"]) != limits:
        found.note("quota-wrong", "", None, "quota limits differed from the account's")
    if apply:
        await conn.execute(
            "UPDATE account_state SET storage_used_octets = $2, messages_used = $3, "
            "storage_limit_octets = $4, message_limit = $5 WHERE account_id = $1",
            account,
            found.octets,
            found.messages,
            *limits,
        )

    # The next UIDVALIDITY must be above every one in use.
    highest = await conn.fetchval(
        "SELECT max(uidvalidity) FROM mailboxes WHERE account_id = $1", account
    )
    stored = await conn.fetchval(
        "SELECT next_uidvalidity FROM account_state WHERE account_id = $1", account
    )
    if highest is not None and stored <= highest:
        found.note("meta", "", None, "next UIDVALIDITY was below one already in use")
        if apply:
            await conn.execute(
                "UPDATE account_state SET next_uidvalidity = $2 WHERE account_id = $1",
                account,
                highest + 1,
            )

    await _refcounts_of_account(conn, account, apply, found)
    if store_wide:
        await _store_wide(conn, apply, found)

    if new_uidvalidity:
        await _rekey(conn, account, apply, found)
    found.mailboxes = int(
        await conn.fetchval("SELECT count(*) FROM mailboxes WHERE account_id = $1", account)
    )
    return found


async def _global_counts(conn: Any, shas: list[bytes]) -> dict[bytes, int]:
    return {
        bytes(r["sha256"]): int(r["n"])
        for r in await conn.fetch(
            "SELECT sha256, count(*) AS n FROM messages WHERE sha256 = ANY($1::bytea[]) "
            "GROUP BY sha256",
            shas,
        )
    }


def _short(sha: bytes) -> str:
    return sha.hex()[:16]


async def _refcounts_of_account(conn: Any, account: AccountId, apply: bool, found: _Found) -> None:
    """Every content the account refers to, against the references of every account: one
    index probe of ``messages_by_sha256`` per content, in batches. Three plain statements
    rather than one join, so that sharded by account (``messages``) and by hash (``blobs``)
    each is a query of one table (docs/storage-postgres.md, Citus)."""
    shas = [
        bytes(r["sha256"])
        for r in await conn.fetch(
            "SELECT DISTINCT sha256 FROM messages WHERE account_id = $1 ORDER BY 1", account
        )
    ]
    wrong: list[bytes] = []
    for start in range(0, len(shas), _REF_BATCH):
        batch = shas[start : start + _REF_BATCH]
        stored = {
            bytes(r["sha256"]): int(r["refcount"])
            for r in await conn.fetch(
                "SELECT sha256, refcount FROM blobs WHERE sha256 = ANY($1::bytea[])", batch
            )
        }
        counts = await _global_counts(conn, batch)
        wrong += [sha for sha in batch if sha in stored and stored[sha] != counts.get(sha, 0)]
    if wrong:
        await _fix_counts(conn, wrong, apply, found, orphans=False)


async def _fix_counts(
    conn: Any, shas: list[bytes], apply: bool, found: _Found, *, orphans: bool
) -> None:
    """Count the references of ``shas`` again (under their row locks when applying) and
    set each reference count; contents nobody refers to go when ``orphans``."""
    shas = sorted(shas)
    if apply:
        await conn.execute(
            "SELECT 1 FROM blobs WHERE sha256 = ANY($1::bytea[]) ORDER BY sha256 FOR UPDATE",
            shas,
        )
    counts = await _global_counts(conn, shas)
    stored = {
        bytes(r["sha256"]): int(r["refcount"])
        for r in await conn.fetch(
            "SELECT sha256, refcount FROM blobs WHERE sha256 = ANY($1::bytea[])", shas
        )
    }
    dead: list[bytes] = []
    for sha in shas:
        if sha not in stored:
            continue
        n = counts.get(sha, 0)
        if n == 0:
            if orphans:
                found.note(
                    "blob-orphan", "", None, f"content {_short(sha)} had no message; removed"
                )
                dead.append(sha)
            continue
        if stored[sha] == n:
            continue
        found.note(
            "blob-refcount",
            "",
            None,
            f"content {_short(sha)}: reference count {stored[sha]}, referred to by {n}",
        )
        if apply:
            await conn.execute("UPDATE blobs SET refcount = $2 WHERE sha256 = $1", sha, n)
    if apply and dead:
        await conn.execute("DELETE FROM blob_chunks WHERE sha256 = ANY($1::bytea[])", dead)
        await conn.execute("DELETE FROM blobs WHERE sha256 = ANY($1::bytea[])", dead)


async def _store_wide(conn: Any, apply: bool, found: _Found) -> None:
    wrong = [
        bytes(r["sha256"])
        for r in await conn.fetch(
            "SELECT b.sha256 FROM blobs b LEFT JOIN (SELECT sha256, count(*) AS n FROM messages "
            "GROUP BY sha256) t ON t.sha256 = b.sha256 WHERE b.refcount <> coalesce(t.n, 0) "
            "OR t.n IS NULL"
        )
    ]
    if wrong:
        await _fix_counts(conn, wrong, apply, found, orphans=True)
    loose = [
        bytes(r["sha256"])
        for r in await conn.fetch(
            "SELECT DISTINCT c.sha256 FROM blob_chunks c WHERE NOT EXISTS "
            "(SELECT 1 FROM blobs b WHERE b.sha256 = c.sha256) ORDER BY 1"
        )
    ]
    for sha in loose:
        found.note("blob-orphan", "", None, f"chunks of content {_short(sha)} had no content row")
    if apply and loose:
        await conn.execute(
            "DELETE FROM blob_chunks c WHERE c.sha256 = ANY($1::bytea[]) AND NOT EXISTS "
            "(SELECT 1 FROM blobs b WHERE b.sha256 = c.sha256)",
            loose,
        )


async def _rekey(conn: Any, account: AccountId, apply: bool, found: _Found) -> None:
    """A new UIDVALIDITY and a new mailbox id for every mailbox of the account."""
    for r in await conn.fetch(
        "SELECT mailbox_id, name, uidvalidity FROM mailboxes WHERE account_id = $1 ORDER BY name",
        account,
    ):
        if not apply:
            found.note("uidvalidity-changed", r["name"], None, "new UIDVALIDITY requested")
            continue
        validity = await next_uidvalidity(conn, account)
        new_id = await conn.fetchval("SELECT nextval('mailbox_ids')")
        await conn.execute(
            "UPDATE mailboxes SET mailbox_id = $3, uidvalidity = $4, expunged_floor = 0 "
            "WHERE account_id = $1 AND mailbox_id = $2",
            account,
            r["mailbox_id"],
            new_id,
            validity,
        )
        for table in ("messages", "mailbox_keywords", "acl"):
            await conn.execute(
                f"UPDATE {table} SET mailbox_id = $3 WHERE account_id = $1 AND mailbox_id = $2",
                account,
                r["mailbox_id"],
                new_id,
            )
        await conn.execute(
            "DELETE FROM expunged WHERE account_id = $1 AND mailbox_id = $2",
            account,
            r["mailbox_id"],
        )
        found.note(
            "uidvalidity-changed",
            r["name"],
            None,
            f"UIDVALIDITY {r['uidvalidity']} -> {validity}",
        )


# --- the entry point -------------------------------------------------------------------------


async def reconstruct_account(
    backend: PostgresBackend,
    account: AccountId,
    *,
    apply: bool,
    mailbox: MailboxName | None,
    new_uidvalidity: bool,
    progress: Progress | None = None,
) -> ReconstructReport:
    started = time.monotonic()
    info = await backend.get_account_by_id(account)
    public = (await backend.public_account()).id == account

    async def boxes(conn: Any) -> list[Any]:
        return list(
            await conn.fetch(
                "SELECT mailbox_id, name FROM mailboxes WHERE account_id = $1", account
            )
        )

    names = {r["mailbox_id"]: r["name"] for r in await backend._run(boxes, write=False)}
    only: int | None = None
    if mailbox is not None:
        wanted = mailbox_name(mailbox)
        matches = [i for i, n in names.items() if n == wanted]
        if not matches:
            raise not_found_mailbox(wanted)
        only = matches[0]
    found = _Found()
    await _metadata(backend, account, only, names, apply, found, progress)

    async def structure(conn: Any) -> _Found:
        return await _structure(
            conn,
            account,
            only,
            apply=apply,
            new_uidvalidity=new_uidvalidity,
            store_wide=public and only is None,
        )

    if apply:
        rest: _Found = await backend._run(structure)
    else:
        rest = await backend._run(structure, write=False, isolation="repeatable_read")
    notes = found.notes + rest.notes
    applied = apply and bool(notes)
    if applied:
        backend._hub.publish_account(account)
        backend._notifier.changed(account)
    return ReconstructReport(
        account=info.name,
        applied=applied,
        discrepancies=tuple(notes),
        mailboxes=rest.mailboxes,
        messages=rest.messages,
        octets=rest.octets,
        seconds=time.monotonic() - started,
    )

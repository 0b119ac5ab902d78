# SQL here is assembled only from constant fragments, never from input:
# ruff: noqa: S608
"""SQL helpers shared by the parts of ``PostgresBackend``: they run inside the caller's
transaction (``conn``) and keep the one lock order -- mailbox rows, then ``account_state``
rows, then ``blobs`` rows -- that makes concurrent writers safe."""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Iterable, Sequence
from typing import Any, Final

from msgstore.core.accounts import AccountInfo, AccountKind
from msgstore.core.errors import ErrorKind, StoreError
from msgstore.core.flags import SYSTEM_BITS, Flags
from msgstore.core.ids import MAX_UID, AccountId, ModSeq, Uid, UidSet
from msgstore.core.names import MailboxName
from msgstore.storage.base import (
    MessageMeta,
    Want,
)
from msgstore.storage.local.index import (
    default_uidl,
)

PUBLIC_QUOTA_ROOT: Final = "Public"
SEEN_BIT: Final = SYSTEM_BITS["\\Seen"]
DELETED_BIT: Final = SYSTEM_BITS["\\Deleted"]
#: Default of ``PostgresBackend.open(expunged_keep=...)`` (the same as the local backend).
EXPUNGED_KEEP: Final = 10_000

ACCOUNT_COLUMNS: Final = (
    "account_id, name, kind, manager, login_disabled, receive_disabled, storage_limit_kib, "
    "message_limit, created, public"
)
MSG_COLUMNS: Final = (
    "m.uid, m.modseq, m.sysflags, m.keywords, m.internal_date, m.tz_offset, m.size, "
    "m.sha256, m.uidl"
)
#: The UID filter: ranges as two arrays ($3 lows, $4 highs), joined to walk the primary key.
UID_JOIN: Final = (
    "JOIN unnest($3::bigint[], $4::bigint[]) AS r(lo, hi) ON m.uid BETWEEN r.lo AND r.hi"
)
META_COLUMNS: Final = (
    (Want.ENVELOPE, "envelope"),
    (Want.BODY, "body"),
    (Want.BODYSTRUCTURE, "bodystructure"),
    (Want.PARTMAP, "partmap"),
    (Want.HEADERS, "headers"),
)

TZ_CACHE: dict[int, dt.tzinfo] = {}


def tz(offset_min: int) -> dt.tzinfo:
    tz = TZ_CACHE.get(offset_min)
    if tz is None:
        tz = dt.UTC if offset_min == 0 else dt.timezone(dt.timedelta(minutes=offset_min))
        TZ_CACHE[offset_min] = tz
    return tz


def uid_ranges(uids: UidSet) -> tuple[list[int], list[int]]:
    return [lo for lo, _ in uids.ranges], [hi for _, hi in uids.ranges]


def flags_of(bits: int, keywords: str | None) -> Flags:
    found = {f for f, b in SYSTEM_BITS.items() if bits & b}
    if keywords:
        found.update(keywords.split(" "))
    return frozenset(found)


def account_info(row: Any) -> AccountInfo:
    return AccountInfo(
        id=AccountId(row["account_id"]),
        name=row["name"],
        kind=AccountKind(row["kind"]),
        manager=row["manager"],
        login_disabled=row["login_disabled"],
        receive_disabled=row["receive_disabled"],
        storage_limit_kib=row["storage_limit_kib"],
        message_limit=row["message_limit"],
        created=dt.datetime.fromtimestamp(row["created"], dt.UTC),
    )


def not_found_mailbox(what: object) -> StoreError:
    return StoreError(ErrorKind.NOT_FOUND, f"No such mailbox: {what}")


def not_found_account(what: object) -> StoreError:
    return StoreError(ErrorKind.NOT_FOUND, f"No such account: {what}")


def over_quota(which: str) -> StoreError:
    return StoreError(ErrorKind.OVER_QUOTA, f"Quota exceeded ({which})")


def check_limit(value: int | None, what: str) -> int | None:
    if value is not None and value < 0:
        raise StoreError(ErrorKind.PARAMS, f"{what} must not be negative")
    return value


def message_meta(row: Any, want: Want, blob: Any) -> MessageMeta:
    return MessageMeta(
        uid=Uid(row["uid"]),
        modseq=ModSeq(row["modseq"]),
        flags=flags_of(row["sysflags"], row["keywords"]),
        internal_date=dt.datetime.fromtimestamp(row["internal_date"], tz(row["tz_offset"])),
        size=row["size"],
        sha256=bytes(row["sha256"]),
        uidl=row["uidl"],
        envelope=blob["envelope"] if Want.ENVELOPE in want else None,
        body=blob["body"] if Want.BODY in want else None,
        bodystructure=blob["bodystructure"] if Want.BODYSTRUCTURE in want else None,
        partmap=blob["partmap"] if Want.PARTMAP in want else None,
        headers=(
            (json.loads(blob["headers"]) if blob["headers"] else {})
            if Want.HEADERS in want
            else None
        ),
    )


async def account_row(conn: Any, name: str, *, lock: bool = False) -> Any:
    return await conn.fetchrow(
        f"SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE name_key = $1"
        + (" FOR UPDATE" if lock else ""),
        name.casefold(),
    )


async def check_account(conn: Any, account: AccountId) -> None:
    if await conn.fetchval("SELECT 1 FROM account_state WHERE account_id = $1", account) is None:
        raise not_found_account(f"#{account}")


async def mailbox_row(conn: Any, account: AccountId, mailbox: int, *, lock: bool = False) -> Any:
    row = await conn.fetchrow(
        "SELECT mailbox_id, name, uidvalidity, uidnext, highestmodseq, recent_uid, "
        "expunged_floor FROM mailboxes WHERE account_id = $1 AND mailbox_id = $2"
        + (" FOR UPDATE" if lock else ""),
        account,
        mailbox,
    )
    if row is None:
        await check_account(conn, account)
        raise not_found_mailbox(f"#{mailbox}")
    return row


async def lock_mailboxes(conn: Any, pairs: Iterable[tuple[AccountId, int]]) -> dict[Any, Any]:
    """Lock mailbox rows in the global order; NOT_FOUND if one is missing."""
    out: dict[Any, Any] = {}
    for account, mailbox in sorted(set(pairs)):
        out[(account, mailbox)] = await mailbox_row(conn, account, mailbox, lock=True)
    return out


async def mailbox_by_name(conn: Any, account: AccountId, name: str) -> Any:
    return await conn.fetchrow(
        "SELECT mailbox_id, name, uidvalidity, special_use FROM mailboxes "
        "WHERE account_id = $1 AND name = $2",
        account,
        name,
    )


async def next_uidvalidity(conn: Any, account: AccountId) -> int:
    stored = await conn.fetchval(
        "SELECT next_uidvalidity FROM account_state WHERE account_id = $1 FOR UPDATE",
        account,
    )
    if stored is None:
        raise not_found_account(f"#{account}")
    value = max(int(stored), int(time.time()))
    if value > MAX_UID:
        value = 1 if stored > MAX_UID else int(stored)
    await conn.execute(
        "UPDATE account_state SET next_uidvalidity = $2 WHERE account_id = $1",
        account,
        value + 1,
    )
    return value


async def create_mailbox_rows(
    conn: Any, account: AccountId, name: MailboxName, special: str, *, exist_ok: bool
) -> None:
    levels = name.split("/")
    for depth in range(1, len(levels) + 1):
        current = "/".join(levels[:depth])
        exists = await conn.fetchval(
            "SELECT 1 FROM mailboxes WHERE account_id = $1 AND name = $2", account, current
        )
        if exists is not None:
            if depth == len(levels) and not exist_ok:
                raise StoreError(ErrorKind.EXISTS, f"Mailbox already exists: {current}")
            continue
        uidvalidity = await next_uidvalidity(conn, account)
        await conn.execute(
            "INSERT INTO mailboxes(account_id, name, uidvalidity, special_use) "
            "VALUES ($1, $2, $3, $4)",
            account,
            current,
            uidvalidity,
            special if depth == len(levels) else "",
        )


async def reserve(conn: Any, account: AccountId, octets: int, messages: int, check: bool) -> None:
    done = await conn.fetchval(
        "UPDATE account_state SET storage_used_octets = storage_used_octets + $2, "
        "messages_used = messages_used + $3 WHERE account_id = $1 AND ($4 OR ("
        "(storage_limit_octets IS NULL OR storage_used_octets + $2 <= storage_limit_octets)"
        " AND (message_limit IS NULL OR messages_used + $3 <= message_limit))) RETURNING 1",
        account,
        octets,
        messages,
        not check,
    )
    if done is not None:
        return
    row = await conn.fetchrow(
        "SELECT storage_used_octets, storage_limit_octets FROM account_state "
        "WHERE account_id = $1",
        account,
    )
    if row is None:
        raise not_found_account(f"#{account}")
    limit = row["storage_limit_octets"]
    if limit is not None and row["storage_used_octets"] + octets > limit:
        raise over_quota("storage")
    raise over_quota("messages")


async def release(conn: Any, account: AccountId, octets: int, messages: int) -> None:
    if octets == 0 and messages == 0:
        return
    await conn.execute(
        "UPDATE account_state SET "
        "storage_used_octets = greatest(0, storage_used_octets - $2), "
        "messages_used = greatest(0, messages_used - $3) WHERE account_id = $1",
        account,
        octets,
        messages,
    )


async def add_refs(conn: Any, shas: Sequence[bytes]) -> None:
    """One more reference per occurrence in ``shas`` (the blobs exist)."""
    counts: dict[bytes, int] = {}
    for sha in shas:
        counts[sha] = counts.get(sha, 0) + 1
    keys = sorted(counts)
    await conn.execute(
        "SELECT 1 FROM blobs WHERE sha256 = ANY($1::bytea[]) ORDER BY sha256 FOR UPDATE",
        keys,
    )
    await conn.execute(
        "UPDATE blobs b SET refcount = b.refcount + c.n FROM "
        "unnest($1::bytea[], $2::bigint[]) AS c(sha, n) WHERE b.sha256 = c.sha",
        keys,
        [counts[k] for k in keys],
    )


async def drop_refs(conn: Any, shas: Sequence[bytes]) -> None:
    """One reference less per occurrence; a blob nobody refers to goes with its chunks."""
    if not shas:
        return
    counts: dict[bytes, int] = {}
    for sha in shas:
        counts[bytes(sha)] = counts.get(bytes(sha), 0) + 1
    keys = sorted(counts)
    await conn.execute(
        "SELECT 1 FROM blobs WHERE sha256 = ANY($1::bytea[]) ORDER BY sha256 FOR UPDATE",
        keys,
    )
    gone = await conn.fetch(
        "UPDATE blobs b SET refcount = b.refcount - c.n FROM "
        "unnest($1::bytea[], $2::bigint[]) AS c(sha, n) WHERE b.sha256 = c.sha "
        "AND b.refcount - c.n <= 0 RETURNING b.sha256",
        keys,
        [counts[k] for k in keys],
    )
    await conn.execute(
        "UPDATE blobs b SET refcount = b.refcount - c.n FROM "
        "unnest($1::bytea[], $2::bigint[]) AS c(sha, n) WHERE b.sha256 = c.sha "
        "AND b.refcount - c.n > 0",
        keys,
        [counts[k] for k in keys],
    )
    dead = [bytes(r["sha256"]) for r in gone]
    if dead:
        await conn.execute("DELETE FROM blob_chunks WHERE sha256 = ANY($1::bytea[])", dead)
        await conn.execute("DELETE FROM blobs WHERE sha256 = ANY($1::bytea[])", dead)


async def keyword_map(conn: Any, account: AccountId, mailbox: int) -> dict[str, str]:
    rows = await conn.fetch(
        "SELECT keyword FROM mailbox_keywords WHERE account_id = $1 AND mailbox_id = $2",
        account,
        mailbox,
    )
    return {r["keyword"].lower(): r["keyword"] for r in rows}


async def store_keywords(
    conn: Any, account: AccountId, mailbox: int, known: dict[str, str], keywords: Iterable[str]
) -> tuple[str, ...]:
    out: set[str] = set()
    for kw in keywords:
        spelled = known.get(kw.lower())
        if spelled is None:
            spelled = kw
            known[kw.lower()] = kw
            await conn.execute(
                "INSERT INTO mailbox_keywords(account_id, mailbox_id, keyword) "
                "VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                account,
                mailbox,
                kw,
            )
        out.add(spelled)
    return tuple(sorted(out))


async def message_rows(
    conn: Any,
    columns: str,
    account: AccountId,
    mailbox: int,
    uids: UidSet | None,
    extra: str = "",
    join: str = "",
) -> list[Any]:
    """The rows of ``uids`` (all with None) in UID order; ``extra`` a further condition,
    ``join`` a further join (``m`` is the messages row)."""
    if uids is None:
        return list(
            await conn.fetch(
                f"SELECT {columns} FROM messages m {join} WHERE m.account_id = $1 "
                f"AND m.mailbox_id = $2 {extra} ORDER BY m.uid",
                account,
                mailbox,
            )
        )
    if not uids:
        return []
    lows, highs = uid_ranges(uids)
    return list(
        await conn.fetch(
            f"SELECT {columns} FROM messages m {UID_JOIN} {join} WHERE m.account_id = $1 "
            f"AND m.mailbox_id = $2 {extra} ORDER BY m.uid",
            account,
            mailbox,
            lows,
            highs,
        )
    )


async def expunge_rows(
    conn: Any, account: AccountId, mailbox: int, uids: list[int], modseq: int
) -> None:
    await conn.execute(
        "DELETE FROM messages WHERE account_id = $1 AND mailbox_id = $2 "
        "AND uid = ANY($3::bigint[])",
        account,
        mailbox,
        uids,
    )
    await conn.execute(
        "INSERT INTO expunged(account_id, mailbox_id, uid, modseq) "
        "SELECT $1, $2, u, $4 FROM unnest($3::bigint[]) AS u "
        "ON CONFLICT (account_id, mailbox_id, uid) DO UPDATE SET modseq = excluded.modseq",
        account,
        mailbox,
        uids,
        modseq,
    )
    await conn.execute(
        "UPDATE mailboxes SET highestmodseq = $3 WHERE account_id = $1 AND mailbox_id = $2",
        account,
        mailbox,
        modseq,
    )


async def prune_expunged(conn: Any, account: AccountId, mailbox: int, keep: int) -> None:
    """Keep the expunge log bounded to ``keep`` UIDs (``PostgresBackend.open(expunged_keep=)``;
    as the local backend: a floor modseq summarises what was pruned)."""
    over = await conn.fetchval(
        "SELECT 1 FROM expunged WHERE account_id = $1 AND mailbox_id = $2 "
        "ORDER BY modseq DESC LIMIT 1 OFFSET $3",
        account,
        mailbox,
        keep + keep // 4,
    )
    if over is None:
        return
    cutoff = await conn.fetchval(
        "SELECT modseq FROM expunged WHERE account_id = $1 AND mailbox_id = $2 "
        "ORDER BY modseq DESC LIMIT 1 OFFSET $3",
        account,
        mailbox,
        keep,
    )
    await conn.execute(
        "DELETE FROM expunged WHERE account_id = $1 AND mailbox_id = $2 AND modseq <= $3",
        account,
        mailbox,
        cutoff,
    )
    await conn.execute(
        "UPDATE mailboxes SET expunged_floor = greatest(expunged_floor, $3) "
        "WHERE account_id = $1 AND mailbox_id = $2",
        account,
        mailbox,
        cutoff,
    )


async def transfer(
    conn: Any,
    account: AccountId,
    source: int,
    uids: UidSet | None,
    dest_account: AccountId,
    dest: int,
    *,
    move: bool,
) -> tuple[int, list[tuple[Uid, Uid]]]:
    """Copy (or move) messages inside the caller's transaction; returns the destination's
    UIDVALIDITY and the (source, destination) UID pairs. Locks: both mailboxes, then the
    account states, then the blobs."""
    boxes = await lock_mailboxes(conn, [(account, source), (dest_account, dest)])
    dest_box = boxes[(dest_account, dest)]
    rows = await message_rows(
        conn,
        "m.uid, m.sysflags, m.keywords, m.internal_date, m.tz_offset, m.size, m.sha256, m.uidl",
        account,
        source,
        uids,
    )
    if not rows:
        return dest_box["uidvalidity"], []
    uidnext = dest_box["uidnext"]
    if uidnext + len(rows) - 1 > MAX_UID:
        raise StoreError(ErrorKind.LIMIT, "Mailbox has run out of UIDs")
    same_account = account == dest_account
    octets = sum(r["size"] for r in rows)
    for acc in sorted({account, dest_account}):
        if acc == dest_account and not (move and same_account):
            await reserve(conn, dest_account, octets, len(rows), True)
        elif acc == account and move and not same_account:
            await release(conn, account, octets, len(rows))
    if not move:
        await add_refs(conn, [bytes(r["sha256"]) for r in rows])
    known = await keyword_map(conn, dest_account, dest)
    new_modseq = dest_box["highestmodseq"] + 1
    pairs: list[tuple[Uid, Uid]] = []
    inserts: list[tuple[Any, ...]] = []
    for i, r in enumerate(rows):
        new_uid = uidnext + i
        kw = r["keywords"]
        keywords = await store_keywords(
            conn, dest_account, dest, known, kw.split(" ") if kw else ()
        )
        uidl = (
            r["uidl"] if move and same_account else default_uidl(dest_box["uidvalidity"], new_uid)
        )
        inserts.append(
            (
                dest_account,
                dest,
                new_uid,
                new_modseq,
                r["sysflags"],
                " ".join(keywords) or None,
                r["internal_date"],
                r["tz_offset"],
                r["size"],
                r["sha256"],
                uidl,
            )
        )
        pairs.append((Uid(r["uid"]), Uid(new_uid)))
    await conn.executemany(
        "INSERT INTO messages(account_id, mailbox_id, uid, modseq, sysflags, keywords, "
        "internal_date, tz_offset, size, sha256, uidl) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        inserts,
    )
    await conn.execute(
        "UPDATE mailboxes SET uidnext = $3, highestmodseq = $4 WHERE account_id = $1 "
        "AND mailbox_id = $2",
        dest_account,
        dest,
        uidnext + len(rows),
        new_modseq,
    )
    if move:
        moved = [r["uid"] for r in rows]
        source_box = await mailbox_row(conn, account, source)
        expunge_modseq = source_box["highestmodseq"] + 1
        await expunge_rows(conn, account, source, moved, expunge_modseq)
    return dest_box["uidvalidity"], pairs

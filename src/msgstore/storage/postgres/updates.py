"""Changes to messages in ``PostgresBackend``: flags, copy, move, expunge, the change feed,
and keeping a migration source's UIDs."""

from __future__ import annotations

import datetime as dt
from typing import Any

from msgstore.core.errors import ErrorKind, StoreError
from msgstore.core.flags import SYSTEM_BITS, FlagOp, Flags, keywords_of, normalize_flags
from msgstore.core.ids import MAX_UID, AccountId, MailboxId, ModSeq, Uid, UidSet, UidValidity
from msgstore.storage.base import (
    Changes,
    CopyResult,
    FlagUpdate,
    MessageMeta,
    StoreFlagsResult,
)
from msgstore.storage.postgres.mixin import PgBase
from msgstore.storage.postgres.queries import (
    check_account,
    drop_refs,
    expunge_rows,
    flags_of,
    keyword_map,
    mailbox_row,
    message_rows,
    not_found_mailbox,
    prune_expunged,
    release,
    store_keywords,
    transfer,
    tz,
)

#: A message's new flags: (uid, system flag bits, keywords).
_Update = tuple[int, int, str | None]
_FLAG_COLUMNS = "m.uid, m.modseq, m.sysflags, m.keywords"


class UpdatesMixin(PgBase):
    """STORE, COPY, MOVE, EXPUNGE, the change feed, UID import."""

    async def store_flags(
        self,
        account: AccountId,
        mailbox: MailboxId,
        uids: UidSet,
        op: FlagOp,
        flags: Flags,
        *,
        unchanged_since: ModSeq | None = None,
    ) -> StoreFlagsResult:
        given = normalize_flags(flags)
        given_bits = sum(SYSTEM_BITS.get(f, 0) for f in given)

        def plan(rows: list[Any], given_kw: set[str]) -> tuple[list[_Update], list[int]]:
            """The rows' new flags (only those that change) and the UIDs UNCHANGEDSINCE
            refuses."""
            updates: list[_Update] = []
            modified: list[int] = []
            for r in rows:
                uid, modseq, bits, kw_text = r["uid"], r["modseq"], r["sysflags"], r["keywords"]
                if unchanged_since is not None and modseq > unchanged_since:
                    modified.append(uid)
                    continue
                current = set(kw_text.split(" ")) if kw_text else set()
                if op is FlagOp.ADD:
                    new_bits, new_kw = bits | given_bits, current | given_kw
                elif op is FlagOp.REMOVE:
                    new_bits, new_kw = bits & ~given_bits, current - given_kw
                else:
                    new_bits, new_kw = given_bits, given_kw
                if new_bits == bits and new_kw == current:
                    continue
                updates.append((uid, new_bits, " ".join(sorted(new_kw)) or None))
            return updates, modified

        async def read(conn: Any) -> list[Any]:
            return await message_rows(conn, _FLAG_COLUMNS, account, mailbox, uids)

        async def update(conn: Any) -> tuple[list[_Update], list[int], int]:
            box = await mailbox_row(conn, account, mailbox, lock=True)
            given_kw: set[str] = set()
            if keywords_of(given):  # most STOREs set system flags only: no keyword look-up
                known = await keyword_map(conn, account, mailbox)
                given_kw = set(
                    await store_keywords(conn, account, mailbox, known, keywords_of(given))
                )
            updates, modified = plan(await read(conn), given_kw)
            new_modseq = box["highestmodseq"] + 1
            if updates:
                await conn.execute(
                    "WITH changed AS (UPDATE messages m SET modseq = $3, sysflags = u.bits, "
                    "keywords = u.kw FROM unnest($4::bigint[], $5::integer[], $6::text[]) "
                    "AS u(uid, bits, kw) WHERE m.account_id = $1 AND m.mailbox_id = $2 "
                    "AND m.uid = u.uid) "
                    "UPDATE mailboxes SET highestmodseq = $3 WHERE account_id = $1 "
                    "AND mailbox_id = $2",
                    account,
                    mailbox,
                    new_modseq,
                    [u[0] for u in updates],
                    [u[1] for u in updates],
                    [u[2] for u in updates],
                )
            return updates, modified, new_modseq

        if not keywords_of(given):
            # A STORE that changes nothing (a client setting \Seen again) is decided by one
            # plain read -- one statement, one snapshot -- without a transaction or a lock.
            # No rows: the transaction below tells an empty set from a missing mailbox.
            rows = await self._run(read, write=False)
            if rows:
                updates, modified = plan(rows, set())
                if not updates:
                    return StoreFlagsResult(updated=(), modified=UidSet.from_uids(modified))
        updates, modified, new_modseq = await self._run(update)
        if updates:
            self._changed(account, mailbox)
        return StoreFlagsResult(
            updated=tuple(
                FlagUpdate(Uid(u), ModSeq(new_modseq), flags_of(b, k)) for u, b, k in updates
            ),
            modified=UidSet.from_uids(modified),
        )

    async def copy(
        self,
        account: AccountId,
        mailbox: MailboxId,
        uids: UidSet,
        dest_account: AccountId,
        dest_mailbox: MailboxId,
    ) -> CopyResult:
        return await self._copy_or_move(account, mailbox, uids, dest_account, dest_mailbox, False)

    async def move(
        self,
        account: AccountId,
        mailbox: MailboxId,
        uids: UidSet,
        dest_account: AccountId,
        dest_mailbox: MailboxId,
    ) -> CopyResult:
        """One transaction, also across accounts: nothing is lost or duplicated."""
        return await self._copy_or_move(account, mailbox, uids, dest_account, dest_mailbox, True)

    async def _copy_or_move(
        self,
        account: AccountId,
        mailbox: MailboxId,
        uids: UidSet,
        dest_account: AccountId,
        dest_mailbox: MailboxId,
        move: bool,
    ) -> CopyResult:
        async def run(conn: Any) -> tuple[int, list[tuple[Uid, Uid]]]:
            return await transfer(
                conn, account, mailbox, uids, dest_account, dest_mailbox, move=move
            )

        validity, pairs = await self._run(run)
        if pairs:
            self._changed(dest_account, dest_mailbox)
            if move:
                self._changed(account, mailbox)
        return CopyResult(
            uidvalidity=UidValidity(validity),
            source_uids=tuple(p[0] for p in pairs),
            dest_uids=tuple(p[1] for p in pairs),
        )

    async def expunge(
        self,
        account: AccountId,
        mailbox: MailboxId,
        uids: UidSet | None = None,
        *,
        only_deleted: bool = True,
    ) -> list[Uid]:
        async def run(conn: Any) -> list[int]:
            box = await mailbox_row(conn, account, mailbox, lock=True)
            rows = await message_rows(
                conn,
                "m.uid, m.size, m.sha256",
                account,
                mailbox,
                uids,
                "AND m.sysflags & 8 <> 0" if only_deleted else "",
            )
            if not rows:
                return []
            gone = [r["uid"] for r in rows]
            await expunge_rows(conn, account, mailbox, gone, box["highestmodseq"] + 1)
            await release(conn, account, sum(r["size"] for r in rows), len(rows))
            await drop_refs(conn, [bytes(r["sha256"]) for r in rows])
            await prune_expunged(conn, account, mailbox, self._expunged_keep)
            return gone

        gone = await self._run(run)
        if gone:
            self._changed(account, mailbox)
        return [Uid(u) for u in gone]

    async def changes_since(
        self, account: AccountId, mailbox: MailboxId, modseq: ModSeq
    ) -> Changes:
        """One statement (one round trip, one snapshot): IMAP runs this after every command."""

        async def get(conn: Any) -> Any:
            return await conn.fetchrow(
                "SELECT b.uidnext, b.highestmodseq, b.expunged_floor, "
                "(SELECT coalesce(array_agg(e.uid ORDER BY e.uid), '{}') FROM expunged e "
                " WHERE e.account_id = $1 AND e.mailbox_id = $2 AND e.modseq > $3) AS gone, "
                "c.* FROM mailboxes b LEFT JOIN LATERAL (SELECT "
                " array_agg(m.uid ORDER BY m.uid) AS uids, "
                " array_agg(m.modseq ORDER BY m.uid) AS modseqs, "
                " array_agg(m.sysflags ORDER BY m.uid) AS sysflags, "
                " array_agg(m.keywords ORDER BY m.uid) AS keywords, "
                " array_agg(m.internal_date ORDER BY m.uid) AS dates, "
                " array_agg(m.tz_offset ORDER BY m.uid) AS zones, "
                " array_agg(m.size ORDER BY m.uid) AS sizes, "
                " array_agg(m.sha256 ORDER BY m.uid) AS shas, "
                " array_agg(m.uidl ORDER BY m.uid) AS uidls "
                " FROM messages m WHERE m.account_id = $1 AND m.mailbox_id = $2 "
                " AND m.modseq > $3) c ON true "
                "WHERE b.account_id = $1 AND b.mailbox_id = $2",
                account,
                mailbox,
                modseq,
            )

        async def present(conn: Any) -> set[int]:
            return set(
                await conn.fetchval(
                    "SELECT coalesce(array_agg(uid), '{}') FROM messages "
                    "WHERE account_id = $1 AND mailbox_id = $2",
                    account,
                    mailbox,
                )
            )

        row = await self._run(get, write=False)
        if row is None:
            await self._run(lambda conn: check_account(conn, account), write=False)
            raise not_found_mailbox(f"#{mailbox}")
        changed: list[MessageMeta] = []
        if row["uids"]:
            for uid, mseq, bits, kw, when, zone, size, sha, uidl in zip(
                row["uids"],
                row["modseqs"],
                row["sysflags"],
                row["keywords"],
                row["dates"],
                row["zones"],
                row["sizes"],
                row["shas"],
                row["uidls"],
                strict=True,
            ):
                changed.append(
                    MessageMeta(
                        uid=Uid(uid),
                        modseq=ModSeq(mseq),
                        flags=flags_of(bits, kw),
                        internal_date=dt.datetime.fromtimestamp(when, tz(zone)),
                        size=size,
                        sha256=bytes(sha),
                        uidl=uidl,
                    )
                )
        if modseq < row["expunged_floor"]:
            # Older than the pruned log: every UID below UIDNEXT without a message.
            have = await self._run(present, write=False)
            expunged = [Uid(u) for u in range(1, row["uidnext"]) if u not in have]
        else:
            expunged = [Uid(u) for u in row["gone"]]
        return Changes(
            highestmodseq=ModSeq(row["highestmodseq"]),
            uidnext=Uid(row["uidnext"]),
            changed=tuple(changed),
            expunged=tuple(expunged),
        )

    # --- migration: keeping the source's UIDs (SupportsUidImport) ------------------------------

    async def import_uid_state(
        self,
        account: AccountId,
        mailbox: MailboxId,
        *,
        uidvalidity: UidValidity | None,
        uidnext: Uid,
    ) -> None:
        """See ``storage.base.SupportsUidImport`` (the same rules as the local backend)."""
        if not 1 <= uidnext <= MAX_UID + 1:
            raise StoreError(ErrorKind.PARAMS, f"UIDNEXT out of range: {uidnext}")
        if uidvalidity is not None and not 1 <= uidvalidity <= MAX_UID:
            raise StoreError(ErrorKind.PARAMS, f"UIDVALIDITY out of range: {uidvalidity}")

        async def update(conn: Any) -> bool:
            box = await mailbox_row(conn, account, mailbox, lock=True)
            changed = False
            if uidvalidity is not None and uidvalidity != box["uidvalidity"]:
                if box["uidnext"] != 1:
                    raise StoreError(
                        ErrorKind.NOT_POSSIBLE,
                        "UIDVALIDITY can only be set on a mailbox that never held a message",
                    )
                await conn.execute(
                    "UPDATE mailboxes SET uidvalidity = $3 WHERE account_id = $1 "
                    "AND mailbox_id = $2",
                    account,
                    mailbox,
                    uidvalidity,
                )
                if uidvalidity < MAX_UID:
                    await conn.execute(
                        "UPDATE account_state SET next_uidvalidity = $2 WHERE account_id = $1 "
                        "AND next_uidvalidity <= $3",
                        account,
                        uidvalidity + 1,
                        uidvalidity,
                    )
                changed = True
            if uidnext > box["uidnext"]:
                await conn.execute(
                    "UPDATE mailboxes SET uidnext = $3 WHERE account_id = $1 AND mailbox_id = $2",
                    account,
                    mailbox,
                    uidnext,
                )
                changed = True
            return changed

        if await self._run(update):
            self._changed(account, mailbox)

"""Reference counts of shared contents on PostgreSQL: ``reconstruct`` of any one account
checks and repairs the count of every content that account refers to, in both directions
(not only the public folders' store-wide pass of ``--all``); the index that makes this cheap
(``messages_by_sha256``, schema version 3) is added by ``msgstore db upgrade`` to an existing
database, also ``CONCURRENTLY`` and also over an invalid index a failed build left behind."""

from __future__ import annotations

from pathlib import Path

import asyncpg  # type: ignore[import-untyped]  # noqa: TID251 -- the test damages the tables

from msgstore.core.flags import DELETED, FlagOp
from msgstore.core.ids import AccountId, MailboxId, Uid, UidSet
from msgstore.core.names import MailboxName
from msgstore.reconstruct import reconstruct
from msgstore.storage.postgres import PostgresBackend, schema
from tests.conversations.harness import message
from tests.storage.postgres.test_reconstruct import pg, refcounts_are_exact, sha, sql
from tests.storage.support import append, inbox_of, new_account, read_body

INDEX = "messages_by_sha256"


async def refcount(name: str, content: bytes) -> int | None:
    async with sql(name) as conn:
        value = await conn.fetchval("SELECT refcount FROM blobs WHERE sha256 = $1", sha(content))
    return None if value is None else int(value)


async def test_one_account_run_repairs_the_counts_of_its_contents(
    tmp_path: Path, pg_name: str
) -> None:
    shared = message("shared", "with bob\r\n")
    bobs = message("bob's", "twice in bob's store\r\n")
    carols = message("carol's", "only carol\r\n")
    async with pg(pg_name, tmp_path) as backend:
        alice = await new_account(backend, "alice")
        bob = await new_account(backend, "bob")
        carol = await new_account(backend, "carol")
        a_inbox = await inbox_of(backend, alice.id)
        b_inbox = await inbox_of(backend, bob.id)
        await append(backend, alice.id, a_inbox, shared)
        await backend.copy(alice.id, a_inbox, UidSet.from_uids([1]), bob.id, b_inbox)
        await append(backend, bob.id, b_inbox, bobs)
        archive = await backend.create_mailbox(bob.id, MailboxName("Archive"))
        await backend.copy(bob.id, b_inbox, UidSet.from_uids([2]), bob.id, archive.id)
        await append(backend, carol.id, await inbox_of(backend, carol.id), carols)
        assert (await refcount(pg_name, shared), await refcount(pg_name, bobs)) == (2, 2)

        async with sql(pg_name) as conn:
            # Too high (the content would never go) and too low (an expunge would delete
            # it while a message still refers to it); carol's is not bob's business.
            await conn.execute("UPDATE blobs SET refcount = 7 WHERE sha256 = $1", sha(shared))
            await conn.execute("UPDATE blobs SET refcount = 1 WHERE sha256 = $1", sha(bobs))
            await conn.execute("UPDATE blobs SET refcount = 5 WHERE sha256 = $1", sha(carols))

        (checked,) = await reconstruct(backend, ["bob"])
        assert not checked.applied
        assert sorted(d.text for d in checked.discrepancies) == sorted(
            [
                f"content {sha(shared).hex()[:16]}: reference count 7, referred to by 2",
                f"content {sha(bobs).hex()[:16]}: reference count 1, referred to by 2",
            ]
        ), checked.discrepancies
        assert {d.code for d in checked.discrepancies} == {"blob-refcount"}
        assert (await refcount(pg_name, shared), await refcount(pg_name, bobs)) == (7, 1)

        (repaired,) = await reconstruct(backend, ["bob"], apply=True)
        assert repaired.applied
        assert {d.code for d in repaired.discrepancies} == {"blob-refcount"}
        assert (await refcount(pg_name, shared), await refcount(pg_name, bobs)) == (2, 2)
        assert await refcount(pg_name, carols) == 5  # another account's content
        assert all(r.clean for r in await reconstruct(backend, ["bob", "alice"]))

        # The counts do their job again: one expunge leaves the other copy readable, the
        # last one removes the content.
        async def expunge(account: AccountId, mailbox: MailboxId) -> None:
            uids = UidSet.all()
            await backend.store_flags(account, mailbox, uids, FlagOp.ADD, frozenset({DELETED}))
            await backend.expunge(account, mailbox, uids)

        await expunge(bob.id, archive.id)
        assert await read_body(backend, bob.id, b_inbox, Uid(2)) == bobs
        await expunge(alice.id, a_inbox)
        assert await read_body(backend, bob.id, b_inbox, Uid(1)) == shared
        await expunge(bob.id, b_inbox)
        assert (await refcount(pg_name, shared), await refcount(pg_name, bobs)) == (None, None)

        (carol_run,) = await reconstruct(backend, ["carol"], apply=True)
        assert {d.code for d in carol_run.discrepancies} == {"blob-refcount"}
        await refcounts_are_exact(pg_name)


async def _version_2_database(dsn: str) -> asyncpg.Connection:
    """The schema as msgstore with schema version 2 left it, with a few messages."""
    conn = await asyncpg.connect(dsn)
    for version, ddl in schema.MIGRATIONS[:2]:
        await conn.execute(ddl)
        await conn.execute("INSERT INTO schema_version(version) VALUES ($1)", version)
    await conn.execute(
        "INSERT INTO messages(account_id, mailbox_id, uid, modseq, sysflags, internal_date, "
        "tz_offset, size, sha256, uidl) SELECT 1, 1, u, u, 0, 0, 0, 1, "
        "sha256(u::text::bytea), '' FROM generate_series(1, 50) AS u"
    )
    return conn


async def _index_state(conn: asyncpg.Connection) -> tuple[int, bool | None]:
    valid = await conn.fetchval(
        "SELECT i.indisvalid FROM pg_index i WHERE i.indexrelid = to_regclass($1)", INDEX
    )
    return await schema.current_version(conn), valid


async def _break_index(conn: asyncpg.Connection) -> None:
    """What a concurrent build that failed half-way leaves: an invalid index, version 2."""
    await conn.execute(
        "UPDATE pg_index SET indisvalid = false WHERE indexrelid = to_regclass($1)", INDEX
    )
    await conn.execute("DELETE FROM schema_version WHERE version = 3")


async def test_upgrade_adds_the_content_index_to_an_existing_database(
    tmp_path: Path, pg_own_database: str
) -> None:
    # A database of its own: a CONCURRENTLY build waits for every transaction in its database.
    conn = await _version_2_database(pg_own_database)
    try:
        assert await _index_state(conn) == (2, None)
        # A large table: built CONCURRENTLY, outside the migration's transaction.
        assert await schema.upgrade(conn, concurrent_rows=10) == [3]
        assert await _index_state(conn) == (3, True)
        assert await schema.upgrade(conn, concurrent_rows=10) == []

        # An invalid index left behind is dropped and built again, both ways.
        await _break_index(conn)
        assert await _index_state(conn) == (2, False)
        assert await schema.upgrade(conn, concurrent_rows=10) == [3]
        assert await _index_state(conn) == (3, True)
        await _break_index(conn)
        assert await schema.upgrade(conn) == [3]  # small: inside the transaction
        assert await _index_state(conn) == (3, True)
    finally:
        await conn.close()
    backend = await PostgresBackend.open(pg_own_database, tmp_path / "pgdata")
    await backend.close()

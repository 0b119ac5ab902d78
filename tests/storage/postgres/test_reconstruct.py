"""``msgstore reconstruct`` on PostgreSQL: rows damaged by hand (SQL UPDATEs and DELETEs) are
reported by ``--check`` without a change, repaired by a run, and a second run finds nothing;
a run while a server serves IMAP and LMTP needs no stop."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import smtplib
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]  # noqa: TID251 -- the test damages the tables
from imapclient import IMAPClient  # type: ignore[import-untyped]

from msgstore.core.ids import AccountId, ModSeq, Uid, UidSet
from msgstore.core.names import MailboxName
from msgstore.reconstruct import reconstruct, reconstruct_all
from msgstore.storage.base import Want
from msgstore.storage.postgres import PostgresBackend
from tests.conversations.harness import MsgstoreServer, message
from tests.storage.pg import schema_dsn
from tests.storage.postgres.conftest import pg_settings
from tests.storage.support import append, inbox_of, new_account, read_body

CLI = (sys.executable, "-m", "msgstore.cli")


@contextlib.asynccontextmanager
async def pg(name: str, tmp_path: Path) -> AsyncIterator[PostgresBackend]:
    backend = await PostgresBackend.open(schema_dsn(name), tmp_path / "pgdata")
    try:
        yield backend
    finally:
        await backend.close()


@contextlib.asynccontextmanager
async def sql(name: str) -> AsyncIterator[Any]:
    conn = await asyncpg.connect(schema_dsn(name))
    try:
        yield conn
    finally:
        await conn.close()


def sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


async def refcounts_are_exact(name: str) -> None:
    async with sql(name) as conn:
        wrong = await conn.fetch(
            "SELECT b.sha256, b.refcount, t.n FROM blobs b LEFT JOIN (SELECT sha256, count(*) "
            "AS n FROM messages GROUP BY sha256) t ON t.sha256 = b.sha256 "
            "WHERE b.refcount IS DISTINCT FROM t.n"
        )
    assert not wrong, wrong


async def test_damaged_rows_are_reported_repaired_then_clean(tmp_path: Path, pg_name: str) -> None:
    bodies = [message(f"m{i}", f"body {i}\r\n" * (i + 1)) for i in range(6)]
    async with pg(pg_name, tmp_path) as backend:
        alice = await new_account(backend, "alice")
        bob = await new_account(backend, "bob")
        inbox = await inbox_of(backend, alice.id)
        for body in bodies:
            await append(backend, alice.id, inbox, body, flags=frozenset({"$Label1"}))
        work = await backend.create_mailbox(alice.id, MailboxName("Work/Projects"))
        await backend.copy(alice.id, inbox, UidSet.from_uids([1, 2]), alice.id, work.id)
        bob_inbox = await inbox_of(backend, bob.id)
        await backend.copy(alice.id, inbox, UidSet.from_uids([3]), bob.id, bob_inbox)
        async with sql(pg_name) as conn:
            await conn.execute(
                "UPDATE account_state SET storage_used_octets = 5, messages_used = 99 "
                "WHERE account_id = $1",
                alice.id,
            )
            await conn.execute(
                "UPDATE mailboxes SET uidnext = 2, highestmodseq = 1 WHERE mailbox_id = $1",
                inbox,
            )
            await conn.execute("UPDATE blobs SET refcount = 1 WHERE sha256 = $1", sha(bodies[0]))
            await conn.execute("UPDATE blobs SET refcount = 9 WHERE sha256 = $1", sha(bodies[5]))
            await conn.execute(
                "UPDATE blobs SET envelope = NULL WHERE sha256 = $1", sha(bodies[1])
            )
            await conn.execute(
                "UPDATE blobs SET meta_version = 0 WHERE sha256 = $1", sha(bodies[2])
            )
            await conn.execute("DELETE FROM blob_chunks WHERE sha256 = $1", sha(bodies[4]))
            await conn.execute("DELETE FROM mailbox_keywords WHERE mailbox_id = $1", inbox)
            await conn.execute("DELETE FROM mailboxes WHERE mailbox_id = $1", work.id)
            orphan = sha(b"nobody's")
            await conn.execute(
                "INSERT INTO blobs(sha256, size, refcount, chunk_octets, meta_version) "
                "VALUES ($1, 8, 1, 262144, 1)",
                orphan,
            )
            await conn.execute(
                "INSERT INTO blob_chunks(sha256, seq, data) VALUES ($1, 0, 'nobody''s')", orphan
            )

        # --check: everything reported, nothing changed.
        checked = {r.account: r for r in await reconstruct_all(backend)}
        codes = {d.code for d in checked["alice"].discrepancies}
        assert codes == {
            "quota-wrong",
            "uidnext-low",
            "modseq-low",
            "blob-refcount",
            "meta-missing",
            "meta-stale",
            "file-missing",
            "keyword-list",
            "mailbox-lost",
            "mailbox-missing",
        }, checked["alice"].discrepancies
        assert not checked["alice"].applied
        public = checked[(await backend.public_account()).name]
        assert {d.code for d in public.discrepancies} == {"blob-refcount", "blob-orphan"}
        assert (await backend.get_quota(alice.id)).messages_used == 99

        # One account: its own damage, and the too-low count of a content it refers to.
        (first,) = await reconstruct(backend, ["alice"], apply=True)
        assert first.applied
        assert {d.code for d in first.discrepancies} == codes
        async with sql(pg_name) as conn:
            assert (
                await conn.fetchval("SELECT refcount FROM blobs WHERE sha256 = $1", sha(bodies[0]))
                == 2
            )
        # The store-wide part goes with --all (the public folders' run).
        repaired = await reconstruct_all(backend, apply=True)
        assert [r.account for r in repaired if not r.clean] == [public.account]
        assert all(r.clean for r in await reconstruct_all(backend))
        await refcounts_are_exact(pg_name)

        quota = await backend.get_quota(alice.id)
        snapshot = await backend.snapshot(alice.id, inbox)
        assert list(snapshot.uids) == [1, 2, 3, 4, 6]  # UID 5's content was lost
        metas = await backend.fetch_meta(alice.id, inbox, UidSet.all(), Want.ALL)
        assert all(m.envelope and m.bodystructure for m in metas)
        assert (quota.messages_used, quota.storage_used_octets) == (
            5 + 2,
            sum(len(bodies[i]) for i in (0, 1, 2, 3, 5)) + len(bodies[0]) + len(bodies[1]),
        )
        assert "$Label1" in snapshot.keywords
        lost = [b for b in await backend.list_mailboxes(alice.id) if b.name.startswith("lost+")]
        assert [b.name for b in lost] == ["lost+found", f"lost+found/{work.id}"]
        assert await read_body(backend, alice.id, lost[1].id, Uid(1)) == bodies[0]
        changes = await backend.changes_since(alice.id, inbox, ModSeq(snapshot.highestmodseq - 1))
        assert changes.expunged == (Uid(5),)
        new = await append(backend, alice.id, inbox, message("after"))
        assert new.uid == 7
        async with sql(pg_name) as conn:
            assert await conn.fetchval("SELECT count(*) FROM blobs WHERE sha256 = $1", orphan) == 0

        # --mailbox limits the message checks; --new-uidvalidity re-keys every mailbox.
        (scoped,) = await reconstruct(backend, ["bob"], apply=True, mailbox=MailboxName("INBOX"))
        assert scoped.clean
        before = await backend.mailbox_status(bob.id, bob_inbox)
        (rekeyed,) = await reconstruct(backend, ["bob"], apply=True, new_uidvalidity=True)
        assert {d.code for d in rekeyed.discrepancies} == {"uidvalidity-changed"}
        box = await backend.get_mailbox(bob.id, MailboxName("INBOX"))
        assert box.id != bob_inbox
        assert box.uidvalidity != before.uidvalidity
        assert await read_body(backend, bob.id, box.id, Uid(1)) == bodies[2]
        assert all(r.clean for r in await reconstruct_all(backend))


def cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MSGSTORE_")}
    return subprocess.run(
        [*CLI, "--config", str(config), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def damage(name: str, account: AccountId) -> None:
    async with sql(name) as conn:
        await conn.execute(
            "UPDATE account_state SET storage_used_octets = 0, messages_used = 0 "
            "WHERE account_id = $1",
            account,
        )
        await conn.execute(
            "UPDATE mailboxes SET uidnext = 3 WHERE account_id = $1 AND name = 'INBOX'", account
        )
        await conn.execute(
            "UPDATE blobs SET envelope = NULL, bodystructure = NULL WHERE sha256 IN "
            "(SELECT sha256 FROM messages WHERE account_id = $1)",
            account,
        )


def test_reconstruct_while_a_server_serves(tmp_path: Path, pg_name: str) -> None:
    root = tmp_path / "srv"
    srv = MsgstoreServer.start(root, services=("imap", "lmtp"), config=pg_settings(pg_name))
    try:
        user = srv.admin.add_user("live")
        lmtp = srv.port("lmtp.listen")
        with smtplib.LMTP("127.0.0.1", lmtp, timeout=10) as client:
            for i in range(5):
                client.sendmail("s@example.org", [user.name], message(f"live {i}"))
        imap = IMAPClient("127.0.0.1", port=srv.port("imap.listen"), ssl=False, timeout=10)
        imap.login(user.name, user.password)
        try:
            assert imap.select_folder("INBOX")[b"EXISTS"] == 5
            account = srv.admin.call(srv.admin.backend.get_account(user.name)).id
            asyncio.run(damage(pg_name, account))
            config = root / "msgstore.toml"
            checked = cli(config, "reconstruct", "--check", user.name)
            assert checked.returncode == 1, checked
            assert "[uidnext-low]" in checked.stdout
            done = cli(config, "reconstruct", user.name)
            assert done.returncode == 0, done
            assert "repaired" in done.stdout
            # The session goes on: same messages, metadata back, a new delivery gets UID 6.
            imap.noop()
            envelopes = imap.fetch([1, 2, 3, 4, 5], ["ENVELOPE"])
            assert sorted(e[b"ENVELOPE"].subject for e in envelopes.values()) == [
                f"live {i}".encode() for i in range(5)
            ]
            with smtplib.LMTP("127.0.0.1", lmtp, timeout=10) as client:
                client.sendmail("s@example.org", [user.name], message("after"))
            imap.noop()
            assert imap.search("ALL") == [1, 2, 3, 4, 5, 6]
            assert 6 in imap.fetch("6", ["UID"])
            (again,) = srv.admin.call(reconstruct(srv.admin.backend, [user.name]))
            assert again.clean, again.discrepancies
        finally:
            imap.logout()
    finally:
        srv.stop()

"""Faults of the postgres backend: the database restarting mid-session (RELIABILITY.md §7 case
39), an exhausted connection pool, a transaction failing half-way.

The restart uses a private PostgreSQL server (``cluster.PrivateCluster``): restarting the
shared one would disturb every other test.
"""

from __future__ import annotations

import asyncio
import contextlib
import smtplib
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]  # noqa: TID251 -- the tests set up PostgreSQL
import pytest
from imapclient import IMAPClient  # type: ignore[import-untyped]

from msgstore.core.errors import ErrorKind, StoreError
from msgstore.core.ids import UidSet
from msgstore.storage.postgres import PostgresBackend
from msgstore.storage.postgres.admin import upgrade_database
from tests.conversations.harness import MsgstoreServer, message
from tests.storage.pg import schema_dsn
from tests.storage.postgres.cluster import PrivateCluster
from tests.storage.postgres.test_servers import imap, lmtp_deliver, wait_for
from tests.storage.support import append, inbox_of, new_account


@pytest.fixture
def cluster() -> Iterator[PrivateCluster]:
    private = PrivateCluster()
    try:
        private.start()
        asyncio.run(upgrade_database(private.dsn))
        yield private
    finally:
        private.destroy()


def test_case_39_database_restart_mid_session(tmp_path: Path, cluster: PrivateCluster) -> None:
    """Commands get NO [UNAVAILABLE] and LMTP 451 4.3.0 while the database is down; nothing
    acknowledged is lost; after the restart the sessions go on, and an IDLE session sees the
    mail delivered while its server's LISTEN connection was still reconnecting."""
    settings = {
        "storage.backend": "postgres",
        "storage.dsn": cluster.dsn,
        "storage.pool_min": 1,
        "storage.pool_max": 4,
        "storage.pool_timeout": "3s",
    }
    srv = MsgstoreServer.start(tmp_path / "a", services=("imap", "lmtp"), config=settings)
    clients: list[IMAPClient] = []
    try:
        user = srv.admin.add_user("outage")
        for i in range(2):
            lmtp_deliver(srv, user.name, message(f"acknowledged {i}"))
        worker, idler = imap(srv, user), imap(srv, user)
        clients += [worker, idler]
        worker.select_folder("INBOX")
        idler.select_folder("INBOX")
        idler.idle()

        cluster.stop()
        with pytest.raises(IMAPClient.Error) as refused:
            worker.fetch([1], ["BODY.PEEK[]"])
        assert "UNAVAILABLE" in str(refused.value)
        with smtplib.LMTP("127.0.0.1", srv.port("lmtp.listen"), timeout=30) as lmtp:
            lmtp.ehlo("test")
            assert lmtp.mail("sender@example.org")[0] == 250
            code, text = lmtp.rcpt(user.name)
            assert (code, text[:5]) == (451, b"4.3.0"), (code, text)

        cluster.start()
        lmtp_deliver(srv, user.name, message("after the restart"))
        took = wait_for(idler, lambda r: r[1:] == (b"EXISTS",) and r[0] == 3, time.monotonic())
        assert took < 5.0, f"EXISTS after the restart took {took:.2f} s"
        idler.idle_done()
        fetched = worker.fetch(worker.search("ALL"), ["ENVELOPE"])
        subjects = sorted(v[b"ENVELOPE"].subject for v in fetched.values())
        assert subjects == [b"acknowledged 0", b"acknowledged 1", b"after the restart"]
    finally:
        for client in clients:
            with contextlib.suppress(Exception):
                client.logout()
        srv.stop()


def test_a_restart_under_load_loses_nothing_acknowledged(
    tmp_path: Path, cluster: PrivateCluster
) -> None:
    """LMTP deliveries go on while the database stops and starts again: each gets 250 (and
    is then stored) or a temporary 4xx (and the sender keeps it); none acknowledged is lost."""
    settings = {
        "storage.backend": "postgres",
        "storage.dsn": cluster.dsn,
        "storage.pool_min": 1,
        "storage.pool_max": 4,
        "storage.pool_timeout": "2s",
    }
    srv = MsgstoreServer.start(tmp_path / "a", services=("imap", "lmtp"), config=settings)
    acknowledged: list[str] = []
    refused: list[int] = []
    stop = threading.Event()

    def deliver() -> None:
        n = 0
        while not stop.is_set():
            try:
                with smtplib.LMTP("127.0.0.1", srv.port("lmtp.listen"), timeout=30) as lmtp:
                    while not stop.is_set():
                        subject = f"load {n}"
                        n += 1
                        try:
                            lmtp.sendmail("s@example.org", [user.name], message(subject))
                        except smtplib.SMTPResponseException as exc:
                            refused.append(exc.smtp_code)
                            continue
                        except smtplib.SMTPRecipientsRefused as exc:
                            refused.extend(code for code, _ in exc.recipients.values())
                            lmtp.rset()
                            continue
                        acknowledged.append(subject)
            except (OSError, smtplib.SMTPException):
                time.sleep(0.05)

    try:
        user = srv.admin.add_user("load")
        worker = threading.Thread(target=deliver)
        worker.start()
        try:
            time.sleep(1.0)
            cluster.stop()
            time.sleep(1.0)
            cluster.start()
            deadline = time.monotonic() + 30
            before = len(acknowledged)
            while len(acknowledged) < before + 5 and time.monotonic() < deadline:
                time.sleep(0.1)
        finally:
            stop.set()
            worker.join(60)
        assert refused, "the outage was not noticed"
        assert all(400 <= code < 500 for code in refused), refused
        assert len(acknowledged) > 5
        client = imap(srv, user)
        try:
            client.select_folder("INBOX")
            fetched = client.fetch(client.search("ALL"), ["ENVELOPE"])
        finally:
            client.logout()
        stored = {v[b"ENVELOPE"].subject.decode() for v in fetched.values()}
        assert set(acknowledged) <= stored
    finally:
        srv.stop()


@contextlib.asynccontextmanager
async def opened(name: str, tmp_path: Path, **options: Any) -> AsyncIterator[PostgresBackend]:
    backend = await PostgresBackend.open(schema_dsn(name), tmp_path / "data", **options)
    try:
        yield backend
    finally:
        await backend.close()


async def test_an_exhausted_pool_makes_requests_wait_then_fail_temp(
    tmp_path: Path, pg_name: str
) -> None:
    async with opened(pg_name, tmp_path, pool_min=1, pool_max=1, acquire_timeout=0.5) as backend:
        alice = await new_account(backend, "alice")
        async with backend._db.acquire():  # the only connection is busy
            started = time.monotonic()
            with pytest.raises(StoreError) as busy:
                await backend.get_account("alice")
            assert busy.value.kind is ErrorKind.TEMP
            assert 0.4 < time.monotonic() - started < 3.0
        async with backend._db.acquire():  # released in time: the request waits, then runs
            waiting = asyncio.ensure_future(backend.get_account_by_id(alice.id))
            await asyncio.sleep(0.2)
            assert not waiting.done()
        assert (await waiting).name == "alice"


async def test_a_transaction_failing_half_way_leaves_nothing_visible(
    tmp_path: Path, pg_name: str
) -> None:
    async with opened(pg_name, tmp_path) as backend:
        alice = await new_account(backend, "alice")
        inbox = await inbox_of(backend, alice.id)
        for i in range(5):
            await append(backend, alice.id, inbox, message(f"m{i}"))
        dest = await backend.create_mailbox(alice.id, "Dest")  # type: ignore[arg-type]
        quota = await backend.get_quota(alice.id)
        conn = await asyncpg.connect(schema_dsn(pg_name))
        try:
            refs = await conn.fetch("SELECT sha256, refcount FROM blobs ORDER BY sha256")
            # The third row inserted into Dest fails: the copy is one transaction.
            await conn.execute(
                "CREATE FUNCTION fail_third() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                "IF NEW.uid = 3 THEN RAISE EXCEPTION 'injected'; END IF; RETURN NEW; END $$"
            )
            await conn.execute(
                "CREATE TRIGGER fail_third BEFORE INSERT ON messages FOR EACH ROW "
                f"WHEN (NEW.mailbox_id = {int(dest.id)}) EXECUTE FUNCTION fail_third()"
            )
            with pytest.raises(StoreError) as failed:
                await backend.copy(alice.id, inbox, UidSet.all(), alice.id, dest.id)
            assert failed.value.kind is ErrorKind.INTERNAL
            assert await conn.fetch("SELECT sha256, refcount FROM blobs ORDER BY sha256") == refs
        finally:
            await conn.close()
        status = await backend.mailbox_status(alice.id, dest.id)
        assert (status.messages, status.uidnext, status.highestmodseq) == (0, 1, 1)
        assert await backend.get_quota(alice.id) == quota
        assert (await backend.snapshot(alice.id, dest.id)).keywords == frozenset()

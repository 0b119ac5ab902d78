"""The queue storage under the runner, on both backends: the runner lock
(``Backend.runner_lock``), and DSNs queued in the same durable step as the change they report
(``update_queued(..., dsn=...)``), so that a crash at any point sends exactly one DSN.

The runner runs in the test's process against a real SMTP sink (aiosmtpd) on loopback; a crash
is a commit failing under the local backend's fault plan (storage/local/faults.py) followed by
closing the store and opening it again, as a restart after kill -9 would."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import errno
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from msgstore.config import RelaySection
from msgstore.core.errors import ErrorKind, StoreError
from msgstore.delivery.relay import RelayRunner
from msgstore.storage.base import Backend, QueueEntry
from msgstore.storage.local.backend import LocalBackend
from msgstore.storage.local.faults import Fault, FaultPlan
from msgstore.storage.postgres.backend import PostgresBackend
from tests.conversations.harness import message
from tests.relay.sink import Sink
from tests.storage.pg import create_schema, drop_schema, schema_dsn

AUTHOR = "author@example.com"
FAR = "far@example.net"


@pytest.fixture(scope="module")
def sink() -> Iterator[Sink]:
    running = Sink().start()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(params=["local", "postgres"])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    if request.param == "local":
        local = await LocalBackend.open(tmp_path / "data")
        try:
            yield local
        finally:
            await local.close()
        return
    schema = await create_schema()
    try:
        pg = await PostgresBackend.open(schema_dsn(schema), tmp_path / "data")
        try:
            yield pg
        finally:
            await pg.close()
    finally:
        await drop_schema(schema)


def settings(sink: Sink, **extra: object) -> RelaySection:
    values: dict[str, object] = {
        "smarthost": f"127.0.0.1:{sink.port}",
        "helo": "relay.test",
        "timeout": "5s",
        "retry_first": "1s",
    }
    values.update(extra)
    return RelaySection.model_validate(values)


async def enqueue(
    backend: Backend, sender: str, recipients: list[str], subject: str
) -> QueueEntry:
    async with backend.stage(max_octets=1 << 20) as staged:
        await staged.write(message(subject, sender=sender or "a@example.org"))
        await staged.finish()
        return await backend.enqueue(staged, sender=sender, recipients=recipients)


def aged(entry: QueueEntry) -> QueueEntry:
    """The entry as the runner sees it once it is older than ``max_age`` (5 days)."""
    return dataclasses.replace(entry, created=entry.created - dt.timedelta(days=30))


async def drain(runner: RelayRunner, backend: Backend) -> None:
    """Run passes until the queue is empty (every entry here is due at once)."""
    for _ in range(10):
        await runner.run_once()
        if not await backend.list_queue():
            return
    raise AssertionError(f"queue not empty: {await backend.list_queue()}")


# --- the runner lock ---------------------------------------------------------------------------


async def test_one_holder_at_a_time(backend: Backend) -> None:
    async with backend.runner_lock("relay") as first:
        assert first is not None
        assert await first.held()
        async with backend.runner_lock("relay") as second:
            assert second is None
        async with backend.runner_lock("another-task") as other:
            assert other is not None  # locks of different names are independent
    async with backend.runner_lock("relay") as again:
        assert again is not None  # released on leaving the block


async def test_a_postgres_lock_whose_connection_dies_is_lost_and_taken_over(
    tmp_path: Path,
) -> None:
    schema = await create_schema()
    try:
        one = await PostgresBackend.open(schema_dsn(schema), tmp_path / "one")
        two = await PostgresBackend.open(schema_dsn(schema), tmp_path / "two")
        try:
            async with one.runner_lock("relay") as lock:
                assert lock is not None
                async with two.runner_lock("relay") as refused:
                    assert refused is None
                # The session holding the lock ends (a server restart, a network cut).
                killed = await _terminate_lock_session(two)
                assert killed == 1
                assert not await lock.held()
                async with two.runner_lock("relay") as taken:
                    assert taken is not None
        finally:
            await one.close()
            await two.close()
    finally:
        await drop_schema(schema)


async def _terminate_lock_session(backend: PostgresBackend) -> int:
    async def kill(conn: object) -> int:
        rows = await conn.fetch(  # type: ignore[attr-defined]
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = 'msgstore relay lock' AND datname = current_database() "
            "AND pid IN (SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted)"
        )
        return len(rows)

    killed = await backend._db.run(kill, write=False)
    assert isinstance(killed, int)
    await asyncio.sleep(0.1)
    return killed


# --- DSNs in the same durable step ------------------------------------------------------------


async def test_a_dsn_is_queued_with_the_update(backend: Backend) -> None:
    entry = await enqueue(backend, AUTHOR, [FAR, "other@example.net"], "original")
    async with backend.stage(max_octets=4096) as dsn:
        await dsn.write(message("the report", sender="MAILER-DAEMON@relay.test"))
        await dsn.finish()
        left = await backend.update_queued(entry.id, done=[FAR], dsn=dsn)
    assert left is not None
    assert left.recipients == ("other@example.net",)
    (report,) = [e for e in await backend.list_queue() if e.id != entry.id]
    assert (report.sender, report.recipients) == ("", (AUTHOR,))
    assert b"Subject: the report" in await backend.read_queued(report.id)


async def test_no_dsn_for_the_null_sender_and_nothing_changes(backend: Backend) -> None:
    entry = await enqueue(backend, "", [FAR], "from <>")
    async with backend.stage(max_octets=4096) as dsn:
        await dsn.write(message("the report"))
        await dsn.finish()
        with pytest.raises(StoreError) as refused:
            await backend.update_queued(entry.id, done=[FAR], dsn=dsn)
    assert refused.value.kind is ErrorKind.PARAMS
    assert [e.id for e in await backend.list_queue()] == [entry.id]


async def test_an_expired_entry_gets_exactly_one_dsn(backend: Backend, sink: Sink) -> None:
    sender = f"expired-{type(backend).__name__}@example.com"
    entry = await enqueue(backend, sender, [FAR], "too old")
    runner = RelayRunner(backend, settings(sink), lock_name=None)
    await runner.attempt(aged(entry))
    await drain(runner, backend)
    (dsn,) = sink.to(sender)
    assert b"Status: 4.4.7" in dsn.data
    assert not [a for a in sink.to(FAR) if b"too old" in a.data]


async def test_a_refused_recipient_gets_exactly_one_dsn(backend: Backend, sink: Sink) -> None:
    sender = f"refused-{type(backend).__name__}@example.com"
    refused = f"nobody-{type(backend).__name__}@example.net".lower()
    sink.rcpt_replies[refused] = "550 5.1.1 no such user"
    await enqueue(backend, sender, [refused], "refused")
    await drain(RelayRunner(backend, settings(sink), lock_name=None), backend)
    (dsn,) = sink.to(sender)
    assert b"Status: 5.1.1" in dsn.data


@pytest.mark.parametrize("crash_at_commit", [1, 2, 3])
async def test_a_crash_while_an_entry_expires_sends_one_dsn(
    tmp_path: Path, sink: Sink, crash_at_commit: int
) -> None:
    """The expiry is one commit (the DSN queued and the entry removed together). Whichever
    commit after the start of the expiry fails -- the first, or one after it -- and the store
    is then reopened: exactly one DSN reaches the sender, the message itself never."""
    data = tmp_path / "data"
    sender = f"crash{crash_at_commit}@example.com"
    plan = FaultPlan(())
    store = await LocalBackend.open(data, fault_plan=plan)
    try:
        entry = await enqueue(store, sender, [FAR], "crash")
        runner = RelayRunner(store, settings(sink), lock_name=None)
        plan.arm(Fault("commit", plan.count("commit") + crash_at_commit, errno.EIO))
        with contextlib.suppress(StoreError):
            await runner.attempt(aged(entry))
        # What a crash here leaves: the entry, or its DSN, never both.
        queued = await store.list_queue()
        assert [e.sender for e in queued] in ([sender], [""])
    finally:
        await store.close()
    store = await LocalBackend.open(data)
    try:
        runner = RelayRunner(store, settings(sink), lock_name=None)
        for left in await store.list_queue():  # still there: still too old after the restart
            if left.id == entry.id:
                await runner.attempt(aged(left))
        await drain(runner, store)
    finally:
        await store.close()
    assert len(sink.to(sender)) == 1
    assert not [a for a in sink.to(FAR) if a.sender == sender]

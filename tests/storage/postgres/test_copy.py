"""``msgstore store copy``: a local store into PostgreSQL and back, everything a client or an
administrator can see kept (UIDs, modseqs, UIDVALIDITY, flags, keywords, internal dates,
quotas, ACLs, public folders, forwards, the relay queue, API tokens, the audit log, last
logins, account creation times, web sessions), resumable -- also after a kill in the middle
of a copy."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]  # noqa: TID251 -- the test holds locks

from msgstore.core.accounts import AccountChanges, AccountKind
from msgstore.core.acl import Rights
from msgstore.core.flags import DELETED, SEEN, FlagOp
from msgstore.core.ids import AccountId, MailboxId, ModSeq, Uid, UidSet
from msgstore.core.names import MailboxName
from msgstore.storage.base import (
    AuditRecord,
    Backend,
    LoginRecord,
    NewApiToken,
    NewWebSession,
    SupportsStoreImport,
    Want,
)
from msgstore.storage.local import LocalBackend
from msgstore.storage.postgres import PostgresBackend
from tests.storage.pg import schema_dsn
from tests.storage.support import append, message, new_account, read_body

CLI = (sys.executable, "-m", "msgstore.cli")
WHEN = dt.datetime(2024, 5, 6, 7, 8, 9, tzinfo=dt.timezone(dt.timedelta(hours=2)))
T0 = dt.datetime(2025, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
TOKEN_HASH = hashlib.sha256(b"a bearer token").hexdigest()
#: Messages of bob's INBOX (the kill tests stop the copy there).
BOB_MESSAGES = 30
#: The application_name of the copies' database sessions in the kill tests.
COPY_APP = "msgstore-store-copy-test"


async def fill(data_dir: Path) -> None:
    """Several accounts (one POP-only, one disabled manager), public folders with ACLs,
    forwards, a queued relay message with a failed attempt, a token, an audit history, last
    logins and a web session."""
    backend = await LocalBackend.open(data_dir)
    try:
        alice = await new_account(backend, "alice", storage_limit_kib=5000)
        bob = await new_account(backend, "bob", message_limit=700, manager=True)
        carol = await new_account(backend, "carol", kind=AccountKind.POP)
        await backend.update_account("bob", AccountChanges(login_disabled=True))
        await backend.set_account_created(bob.id, T0)  # long before the copy
        inbox = (await backend.get_mailbox(alice.id, MailboxName("INBOX"))).id
        for i in range(6):
            await append(
                backend,
                alice.id,
                inbox,
                message(f"m{i}", body=f"body {i}\r\n" * (i * 500 + 1)),
                flags=frozenset({SEEN, "$Label1"} if i % 2 else set()),
                internal_date=WHEN,
                uidl=f"uidl-{i}" if i == 1 else None,
            )
        await backend.store_flags(
            alice.id, inbox, UidSet.from_uids([2, 4]), FlagOp.ADD, frozenset({DELETED})
        )
        await backend.expunge(alice.id, inbox, UidSet.from_uids([2]))
        # A keyword the mailbox knows although no message carries it any more.
        await backend.store_flags(
            alice.id, inbox, UidSet.from_uids([3]), FlagOp.ADD, frozenset({"$Temp"})
        )
        await backend.store_flags(
            alice.id, inbox, UidSet.from_uids([3]), FlagOp.REMOVE, frozenset({"$Temp"})
        )
        work = await backend.create_mailbox(alice.id, MailboxName("Work/Projects"))
        await backend.copy(alice.id, inbox, UidSet.all(), alice.id, work.id)
        await backend.set_subscribed(alice.id, MailboxName("Work/Projects"), True)
        await backend.set_acl(alice.id, work.id, "bob", Rights.parse("lr"))
        await backend.create_mailbox(alice.id, MailboxName("Sent"), special_use="\\Sent")
        bob_inbox = (await backend.get_mailbox(bob.id, MailboxName("INBOX"))).id
        for i in range(BOB_MESSAGES):
            await append(backend, bob.id, bob_inbox, message(f"bob {i}"), internal_date=T0)
        carol_inbox = (await backend.get_mailbox(carol.id, MailboxName("INBOX"))).id
        await append(backend, carol.id, carol_inbox, message("pop"), uidl="pop-uidl-1")
        public = await backend.public_account()
        news = await backend.create_mailbox(public.id, MailboxName("News"))
        await append(backend, public.id, news.id, message("public"))
        await backend.set_acl(public.id, news.id, "anyone", Rights.parse("lr"))
        await backend.set_acl(public.id, news.id, "alice", Rights.parse("lrswipte"))
        await backend.set_quota(public.id, storage_limit_kib=100_000, message_limit=None)

        await backend.put_forward(
            "info@example.org", ["alice", "x@example.net"], keep_copy=False, replace=False
        )
        await backend.put_forward("carol", ["ext@example.net"], keep_copy=True, replace=False)
        async with backend.stage(max_octets=1 << 20) as staged:
            await staged.write(message("outbound"))
            await staged.finish()
            queued = await backend.enqueue(
                staged, sender="alice@example.org", recipients=["r1@example.net", "r2@x.net"]
            )
        await backend.update_queued(
            queued.id, attempts=2, next_attempt=T0, last_error="451 4.4.1 try later"
        )
        await backend.create_api_token(
            NewApiToken(
                account=alice.id,
                token_hash=TOKEN_HASH,
                label="backup script",
                created=T0,
                expires=T0 + dt.timedelta(days=365),
            )
        )
        for i in range(5):
            await backend.append_audit(
                AuditRecord(
                    ts=T0 + dt.timedelta(seconds=i, microseconds=i),
                    actor="os:root",
                    origin="cli",
                    operation="account add" if i else "store init",
                    params=f'{{"n": {i}}}',
                    outcome="ok",
                    message="",
                )
            )
        await backend.record_logins(
            [
                LoginRecord(account=alice.id, protocol="imap", address="192.0.2.7", at=T0),
                LoginRecord(account=carol.id, protocol="pop3", address="192.0.2.8", at=T0),
            ]
        )
        await backend.create_web_session(
            NewWebSession(
                id_hash="ab" * 32, account=alice.id, csrf_token="c", created=T0, address="::1"
            )
        )
    finally:
        await backend.close()


async def _password(backend: Backend, name: str, public: bool) -> str:
    return "" if public else (await backend.get_password_hash(name))[1]


async def state(backend: Backend) -> dict[str, Any]:
    """Everything a client or an administrator can see, by name (ids left out)."""
    out: dict[str, Any] = {}
    public = await backend.public_account()
    for info in [public, *await backend.list_accounts()]:
        hidden = dataclasses.replace(info, id=AccountId(0))
        acc: dict[str, Any] = {
            "info": hidden,
            "password": await _password(backend, info.name, info.id == public.id),
            "quota": await backend.get_quota(info.id),
            "subscriptions": await backend.list_subscriptions(info.id),
            "logins": [(x.protocol, x.address, x.at) for x in await backend.last_logins(info.id)],
        }
        for box in await backend.list_mailboxes(info.id):
            status = await backend.mailbox_status(info.id, box.id)
            snap = await backend.snapshot(info.id, box.id)
            metas = await backend.fetch_meta(info.id, box.id, UidSet.all(), Want.ENVELOPE)
            acc[box.name] = {
                "status": dataclasses.replace(status, id=MailboxId(0), recent=0),
                "keywords": snap.keywords,
                "acl": await backend.get_acl(info.id, box.id),
                "special": box.special_use,
                "subscribed": box.subscribed,
                "messages": [
                    (
                        m.uid,
                        m.modseq,
                        m.flags,
                        m.internal_date,
                        m.uidl,
                        m.sha256,
                        m.envelope,
                        m.size,
                    )
                    for m in metas
                ],
                "bodies": [await read_body(backend, info.id, box.id, m.uid) for m in metas],
            }
        out["#public" if info.id == public.id else info.name] = acc
    assert isinstance(backend, SupportsStoreImport)
    out["#forwards"] = await backend.list_forwards()
    out["#queue"] = [(q, await backend.read_queued(q.id)) for q in await backend.list_queue()]
    out["#tokens"] = [
        (dataclasses.replace(t, account=AccountId(0)), h)
        for t, h in await backend.export_api_tokens()
    ]
    out["#audit"] = await backend.list_audit(limit=1000)
    out["#sessions"] = await backend.export_web_sessions()
    return out


def cli(config: Path, *args: str) -> str:
    done = subprocess.run(
        [*CLI, "--config", str(config), *args],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("MSGSTORE_")}


async def local_state(data_dir: Path) -> dict[str, Any]:
    backend = await LocalBackend.open(data_dir)
    try:
        return await state(backend)
    finally:
        await backend.close()


async def pg_state(name: str, tmp_path: Path) -> dict[str, Any]:
    backend = await PostgresBackend.open(schema_dsn(name), tmp_path / "pgtmp")
    try:
        return await state(backend)
    finally:
        await backend.close()


def configs(tmp_path: Path, source: Path, schema: str) -> tuple[Path, Path]:
    local_cfg = tmp_path / "local.toml"
    local_cfg.write_text(f'[store]\ndata_dir = "{source}"\n')
    pg_cfg = tmp_path / "pg.toml"
    pg_cfg.write_text(
        f'[store]\ndata_dir = "{tmp_path / "pgdata"}"\n'
        f'[storage]\nbackend = "postgres"\ndsn = "{copy_dsn(schema)}"\n'
    )
    return local_cfg, pg_cfg


def copy_dsn(schema: str) -> str:
    """The schema's DSN naming the copy's sessions, for :func:`_wait_blocked`."""
    return f"{schema_dsn(schema)}&application_name={COPY_APP}"


def test_copy_local_to_postgres_and_back(tmp_path: Path, pg_empty: str) -> None:
    source = tmp_path / "data"
    asyncio.run(fill(source))
    local_cfg, pg_cfg = configs(tmp_path, source, pg_empty)
    before = asyncio.run(local_state(source))
    assert before["#queue"]
    assert before["#tokens"]
    assert len(before["#audit"]) == 5

    out = cli(local_cfg, "store", "copy", "--to", "postgres", "--dsn", schema_dsn(pg_empty))
    assert "copied 4 accounts" in out, out
    assert "1 API tokens, 5 audit records, 1 web sessions" in out, out
    assert asyncio.run(pg_state(pg_empty, tmp_path)) == before

    # Resumable: a second run copies only what is new.
    async def one_more() -> None:
        backend = await LocalBackend.open(source)
        try:
            alice = await backend.get_account("alice")
            inbox = (await backend.get_mailbox(alice.id, MailboxName("INBOX"))).id
            await append(backend, alice.id, inbox, message("late"), internal_date=WHEN)
        finally:
            await backend.close()

    asyncio.run(one_more())
    out = cli(
        local_cfg,
        "store",
        "copy",
        "--to",
        "postgres",
        "--dsn",
        schema_dsn(pg_empty),
        "--no-progress",
    )
    assert ", 1 messages" in out, out
    assert "0 API tokens, 0 audit records, 0 web sessions" in out, out
    before = asyncio.run(local_state(source))
    assert asyncio.run(pg_state(pg_empty, tmp_path)) == before

    back = tmp_path / "back"
    out = cli(pg_cfg, "store", "copy", "--to", "local", "--to-data", str(back), "--no-progress")
    assert "copied 4 accounts" in out, out
    after = asyncio.run(local_state(back))
    assert after == before
    out = cli(pg_cfg, "store", "copy", "--to", "local", "--to-data", str(back), "--no-progress")
    assert ", 0 messages" in out, out
    assert "0 queued messages" in out, out
    assert asyncio.run(local_state(back)) == before

    async def qresync_and_tokens() -> None:
        backend = await LocalBackend.open(back)
        try:
            alice = await backend.get_account("alice")
            inbox = (await backend.get_mailbox(alice.id, MailboxName("INBOX"))).id
            # The expunge of UID 2 happened after modseq 2: a QRESYNC client hears of it.
            changes = await backend.changes_since(alice.id, inbox, ModSeq(2))
            assert Uid(2) in changes.expunged
            found = await backend.find_api_token(TOKEN_HASH)
            assert found is not None
            assert found[1].name == "alice"
            # The browser that was logged in stays logged in, as the same account.
            session = await backend.get_web_session("ab" * 32)
            assert session is not None
            assert (session.account.name, session.csrf_token, session.created) == (
                "alice",
                "c",
                T0,
            )
        finally:
            await backend.close()

    asyncio.run(qresync_and_tokens())


async def _blocker(schema: str) -> Any:
    conn = await asyncpg.connect(schema_dsn(schema))
    await conn.execute("BEGIN")
    return conn


async def _wait_blocked(
    conn: Any, proc: asyncio.subprocess.Process, schema: str, statement: str
) -> None:
    """Until a session of the copy (by its application_name) waits in ``statement`` (a LIKE
    pattern) for a lock ``conn`` holds. Asked on a connection of its own: statistics views
    are frozen for the length of a transaction."""
    mine = conn.get_server_pid()
    watcher = await asyncpg.connect(schema_dsn(schema))
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            waiting = await watcher.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid)) "
                "AND application_name = $2 AND query LIKE $3",
                mine,
                COPY_APP,
                statement,
            )
            if waiting:
                return
            assert proc.returncode is None, await proc.communicate()
            await asyncio.sleep(0.05)
    finally:
        await watcher.close()
    raise AssertionError("the copy never reached the lock")


async def _start(*args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        *CLI, *args, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )


async def _kill(proc: asyncio.subprocess.Process) -> None:
    proc.send_signal(signal.SIGKILL)
    await proc.communicate()
    assert proc.returncode == -signal.SIGKILL


def test_kill_half_way_into_postgres_and_resume(tmp_path: Path, pg_name: str) -> None:
    """Killed inside the transaction of bob's INBOX (public and alice committed before):
    nothing of it is left, and the second run ends with the same store."""
    source = tmp_path / "data"
    asyncio.run(fill(source))
    local_cfg, _ = configs(tmp_path, source, pg_name)
    before = asyncio.run(local_state(source))
    sha = before["bob"]["INBOX"]["messages"][BOB_MESSAGES // 2][5]

    async def run() -> None:
        conn = await _blocker(pg_name)
        # An uncommitted content row with the hash of one of bob's messages: the copy's
        # insert of that content waits for this transaction.
        await conn.execute(
            "INSERT INTO blobs(sha256, size, refcount, chunk_octets, meta_version, envelope, "
            "bodystructure, body, partmap, headers) VALUES ($1, 1, 1, 1, 1, '', '', '', '', "
            "'{}')",
            sha,
        )
        proc = await _start(
            "--config",
            str(local_cfg),
            "store",
            "copy",
            "--to",
            "postgres",
            "--dsn",
            copy_dsn(pg_name),
            "--no-progress",
        )
        try:
            await _wait_blocked(conn, proc, pg_name, "INSERT INTO blobs%")
        finally:
            await _kill(proc)
            await conn.execute("ROLLBACK")
            await conn.close()

    asyncio.run(run())
    partial = asyncio.run(pg_state(pg_name, tmp_path))
    assert partial["alice"]["INBOX"] == before["alice"]["INBOX"]
    assert partial["bob"]["INBOX"]["messages"] == []
    assert "carol" not in partial
    assert partial["#forwards"] == []

    out = cli(
        local_cfg,
        "store",
        "copy",
        "--to",
        "postgres",
        "--dsn",
        schema_dsn(pg_name),
        "--no-progress",
    )
    assert f", {BOB_MESSAGES + 1} messages" in out, out
    assert asyncio.run(pg_state(pg_name, tmp_path)) == before


def test_kill_half_way_into_local_and_resume(tmp_path: Path, pg_name: str) -> None:
    """Out of PostgreSQL: killed after alice (the copy waits to read her last logins), then
    resumed into the same directory; the result equals the source."""
    source = tmp_path / "data"
    asyncio.run(fill(source))
    local_cfg, pg_cfg = configs(tmp_path, source, pg_name)
    cli(
        local_cfg,
        "store",
        "copy",
        "--to",
        "postgres",
        "--dsn",
        schema_dsn(pg_name),
        "--no-progress",
    )
    before = asyncio.run(pg_state(pg_name, tmp_path))
    back = tmp_path / "back"

    async def run() -> None:
        conn = await _blocker(pg_name)
        await conn.execute("LOCK TABLE last_logins IN ACCESS EXCLUSIVE MODE")
        proc = await _start(
            "--config",
            str(pg_cfg),
            "store",
            "copy",
            "--to",
            "local",
            "--to-data",
            str(back),
            "--no-progress",
        )
        try:
            await _wait_blocked(conn, proc, pg_name, "%FROM last_logins%")
        finally:
            await _kill(proc)
            await conn.execute("ROLLBACK")
            await conn.close()

    asyncio.run(run())
    partial = asyncio.run(local_state(back))
    assert partial["alice"]["Work/Projects"] == before["alice"]["Work/Projects"]
    assert "bob" not in partial
    assert partial["#audit"] == []

    out = cli(pg_cfg, "store", "copy", "--to", "local", "--to-data", str(back), "--no-progress")
    assert f", {BOB_MESSAGES + 1} messages" in out, out
    assert asyncio.run(local_state(back)) == before

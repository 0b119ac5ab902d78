"""``msgstore store copy``: a local store into PostgreSQL and back, UIDs, UIDVALIDITY, flags,
internal dates and UIDLs kept (and modseqs and ids into PostgreSQL), resumable."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from msgstore.core.acl import Rights
from msgstore.core.flags import DELETED, SEEN, FlagOp
from msgstore.core.ids import Uid, UidSet
from msgstore.core.names import MailboxName
from msgstore.storage.base import Backend, Want
from msgstore.storage.local import LocalBackend
from msgstore.storage.postgres import PostgresBackend
from tests.storage.pg import schema_dsn
from tests.storage.support import append, message, new_account, read_body

CLI = (sys.executable, "-m", "msgstore.cli")
WHEN = dt.datetime(2024, 5, 6, 7, 8, 9, tzinfo=dt.timezone(dt.timedelta(hours=2)))


async def fill(data_dir: Path) -> None:
    backend = await LocalBackend.open(data_dir)
    try:
        alice = await new_account(backend, "alice", storage_limit_kib=5000)
        await new_account(backend, "bob", message_limit=7)
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
        work = await backend.create_mailbox(alice.id, MailboxName("Work/Projects"))
        await backend.copy(alice.id, inbox, UidSet.all(), alice.id, work.id)
        await backend.set_subscribed(alice.id, MailboxName("Work/Projects"), True)
        await backend.set_acl(alice.id, work.id, "bob", Rights.parse("lr"))
        public = await backend.public_account()
        news = await backend.create_mailbox(public.id, MailboxName("News"))
        await append(backend, public.id, news.id, message("public"))
    finally:
        await backend.close()


async def state(backend: Backend, *, modseqs: bool) -> dict[str, Any]:
    """Everything a client can see, by account and mailbox name."""
    out: dict[str, Any] = {}
    public = await backend.public_account()
    for info in [public, *await backend.list_accounts()]:
        quota = await backend.get_quota(info.id)
        acc: dict[str, Any] = {
            "limits": (quota.storage_limit_kib, quota.message_limit, quota.messages_used),
            "subscriptions": await backend.list_subscriptions(info.id),
        }
        for box in await backend.list_mailboxes(info.id):
            status = await backend.mailbox_status(info.id, box.id)
            metas = await backend.fetch_meta(info.id, box.id, UidSet.all(), Want.ENVELOPE)
            acc[box.name] = {
                "status": (status.uidvalidity, status.uidnext, status.messages)
                + ((status.highestmodseq,) if modseqs else ()),
                "acl": await backend.get_acl(info.id, box.id),
                "special": box.special_use,
                "messages": [
                    (m.uid, m.flags, m.internal_date, m.uidl, m.sha256, m.envelope, m.size)
                    + ((m.modseq,) if modseqs else ())
                    for m in metas
                ],
                "bodies": [await read_body(backend, info.id, box.id, m.uid) for m in metas],
            }
        out["#public" if info.id == public.id else info.name] = acc
    return out


def cli(config: Path, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MSGSTORE_")}
    done = subprocess.run(
        [*CLI, "--config", str(config), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


async def local_state(data_dir: Path, *, modseqs: bool) -> dict[str, Any]:
    backend = await LocalBackend.open(data_dir)
    try:
        return await state(backend, modseqs=modseqs)
    finally:
        await backend.close()


async def pg_state(name: str, tmp_path: Path, *, modseqs: bool) -> dict[str, Any]:
    backend = await PostgresBackend.open(schema_dsn(name), tmp_path / "pgtmp")
    try:
        return await state(backend, modseqs=modseqs)
    finally:
        await backend.close()


def test_copy_local_to_postgres_and_back(tmp_path: Path, pg_empty: str) -> None:
    source = tmp_path / "data"
    asyncio.run(fill(source))
    local_cfg = tmp_path / "local.toml"
    local_cfg.write_text(f'[store]\ndata_dir = "{source}"\n')
    pg_cfg = tmp_path / "pg.toml"
    pg_cfg.write_text(
        f'[store]\ndata_dir = "{tmp_path / "pgdata"}"\n'
        f'[storage]\nbackend = "postgres"\ndsn = "{schema_dsn(pg_empty)}"\n'
    )
    before = asyncio.run(local_state(source, modseqs=True))

    out = cli(local_cfg, "store", "copy", "--to", "postgres", "--dsn", schema_dsn(pg_empty))
    assert "copied 3 accounts" in out, out
    assert asyncio.run(pg_state(pg_empty, tmp_path, modseqs=True)) == before

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
    before = asyncio.run(local_state(source, modseqs=True))
    assert asyncio.run(pg_state(pg_empty, tmp_path, modseqs=True)) == before

    back = tmp_path / "back"
    out = cli(pg_cfg, "store", "copy", "--to", "local", "--to-data", str(back), "--no-progress")
    assert "copied 3 accounts" in out, out
    after = asyncio.run(local_state(back, modseqs=False))
    assert after == asyncio.run(local_state(source, modseqs=False))
    out = cli(pg_cfg, "store", "copy", "--to", "local", "--to-data", str(back), "--no-progress")
    assert ", 0 messages" in out, out
    assert Uid(1) in [m[0] for m in after["alice"]["INBOX"]["messages"]]

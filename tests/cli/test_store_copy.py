"""``msgstore store copy``: bad invocations and a destination that cannot take the copy get one
clear line and change nothing. (The copies themselves: tests/storage/postgres/test_copy.py.)"""

from __future__ import annotations

import asyncio
from pathlib import Path

from msgstore.cli.errors import EX_DATAERR, EX_UNAVAILABLE, EX_USAGE
from msgstore.core.names import INBOX
from msgstore.storage.local import LocalBackend
from tests.cli.conftest import Msgstore, assert_one_line_error
from tests.storage.pg import pg_schema, schema_dsn
from tests.storage.support import append, message, new_account


def test_bad_invocations(msgstore: Msgstore) -> None:
    result = msgstore.real("store", "copy", "--to", "local", "--to-data", str(msgstore.cwd / "x"))
    assert_one_line_error(result, EX_USAGE, "already is local")
    result = msgstore.real(
        "store", "copy", "--to", "postgres", "--dsn", "postgresql://postgres@127.0.0.1:1/test"
    )
    assert_one_line_error(result, EX_UNAVAILABLE, "unavailable")
    assert not (msgstore.cwd / "x").exists()


async def _store(data: Path, *names: str, text: str = "to") -> None:
    backend = await LocalBackend.open(data)
    try:
        for name in names:
            account = await new_account(backend, name)
            inbox = await backend.get_mailbox(account.id, INBOX)
            await append(backend, account.id, inbox.id, message(f"{text} {name}"))
    finally:
        await backend.close()


async def _look(data: Path) -> list[tuple[str, str, int, int]]:
    backend = await LocalBackend.open(data)
    try:
        out: list[tuple[str, str, int, int]] = []
        for account in await backend.list_accounts():
            for box in await backend.list_mailboxes(account.id):
                status = await backend.mailbox_status(account.id, box.id)
                out.append((account.name, box.name, status.uidvalidity, status.messages))
        return out
    finally:
        await backend.close()


def test_a_destination_with_other_mail_is_refused_untouched(
    msgstore: Msgstore, tmp_path: Path
) -> None:
    asyncio.run(_store(msgstore.data, "alice", "bob"))
    other = tmp_path / "other"
    # Other mail: made in the same second it may well have the same UIDVALIDITY and UIDs.
    asyncio.run(_store(other, "alice", text="other mail for"))
    before = asyncio.run(_look(other))
    with pg_schema(upgrade=False) as name:
        dsn = schema_dsn(name)
        msgstore.ok("store", "copy", "--to", "postgres", "--dsn", dsn, "--no-progress")
        source = msgstore.with_config(f'[storage]\nbackend = "postgres"\ndsn = "{dsn}"\n')
        result = source("store", "copy", "--to", "local", "--to-data", str(other))
        assert_one_line_error(result, EX_DATAERR, "alice: INBOX", "holds other mail")
    # Refused before anything was written: bob was not created, alice's mail is as it was.
    assert asyncio.run(_look(other)) == before

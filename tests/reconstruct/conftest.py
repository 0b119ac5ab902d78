"""Helpers for the reconstruct tests: a filled store, damage on disk, the real CLI."""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import subprocess
import sys
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, TypeVar

from msgstore.core.flags import Flags
from msgstore.core.ids import AccountId, UidSet
from msgstore.core.names import MailboxName
from msgstore.storage.base import Want
from tests.storage.helpers.store import (
    account_dir,
    add_message,
    inbox_of,
    make_message,
    new_account,
    open_local,
    read_body,
)

T = TypeVar("T")
INBOX_MESSAGES: Final = 30
ARCHIVE_MESSAGES: Final = 5


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


@dataclass(frozen=True)
class Cli:
    code: int
    out: str
    err: str


def msgstore(data: Path, *args: str) -> Cli:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MSGSTORE_")}
    proc = subprocess.run(
        [sys.executable, "-m", "msgstore.cli", "--data", str(data), *args],
        env=env,
        capture_output=True,
        timeout=120,
        check=False,
    )
    return Cli(proc.returncode, proc.stdout.decode(), proc.stderr.decode())


def flags_for(i: int) -> Flags:
    flags: set[str] = set()
    if i % 2 == 0:
        flags.add("\\Seen")
    if i % 3 == 0:
        flags |= {"\\Flagged", "$Label1"}
    return frozenset(flags)


#: (mailbox name, sha256 of the content) -> flags. Content is unique per message.
Contents = dict[tuple[str, bytes], Flags]


@dataclass(frozen=True)
class Filled:
    data: Path
    alice: AccountId
    bob: AccountId
    tree: Path
    contents: Contents
    bodies: dict[bytes, bytes]  # sha256 -> bytes


async def fill(data: Path) -> Filled:
    rng = random.Random(38)
    backend = await open_local(data)
    contents: Contents = {}
    bodies: dict[bytes, bytes] = {}
    try:
        alice = (await new_account(backend, "alice")).id
        bob = (await new_account(backend, "bob")).id
        inbox = await inbox_of(backend, alice)
        archive = (await backend.create_mailbox(alice, MailboxName("Archive"))).id
        for mailbox, name, count in (
            (inbox, "INBOX", INBOX_MESSAGES),
            (archive, "Archive", ARCHIVE_MESSAGES),
        ):
            for i in range(count):
                data_bytes = make_message(rng, f"{name}.{i}", body_octets=1500)
                await add_message(backend, alice, mailbox, data_bytes, flags=flags_for(i))
                sha = hashlib.sha256(data_bytes).digest()
                contents[(name, sha)] = flags_for(i)
                bodies[sha] = data_bytes
        bob_inbox = await inbox_of(backend, bob)
        for i in range(3):
            await add_message(backend, bob, bob_inbox, make_message(rng, f"bob.{i}"))
    finally:
        await backend.close()
    return Filled(data, alice, bob, account_dir(data, alice), contents, bodies)


async def read_all(data: Path, account: AccountId) -> dict[tuple[str, bytes], Flags]:
    """Every message of the account: (mailbox, sha) -> flags; bodies checked against sha."""
    backend = await open_local(data)
    out: dict[tuple[str, bytes], Flags] = {}
    try:
        for box in await backend.list_mailboxes(account):
            metas = await backend.fetch_meta(account, box.id, UidSet.all(), Want.ALL)
            snap = await backend.snapshot(account, box.id)
            assert [m.uid for m in metas] == list(snap.uids)
            for meta in metas:
                body = await read_body(backend, account, box.id, meta.uid)
                sha = hashlib.sha256(body).digest()
                assert sha == meta.sha256, (box.name, meta.uid)
                assert len(body) == meta.size, (box.name, meta.uid)
                assert meta.envelope, "metadata missing"
                assert meta.bodystructure, "metadata missing"
                assert (box.name, sha) not in out, f"{box.name}: message twice"
                out[(box.name, sha)] = meta.flags
        quota = await backend.get_quota(account)
        assert quota.messages_used == len(out)
    finally:
        await backend.close()
    return out

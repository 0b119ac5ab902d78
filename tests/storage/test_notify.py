"""Contract: watchers wake when their mailbox changes, whichever process changed it."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import Final

from msgstore.core.accounts import AccountInfo
from msgstore.core.flags import SEEN, FlagOp
from msgstore.core.ids import MailboxId, UidSet
from msgstore.core.names import MailboxName
from msgstore.storage.base import Backend, Want
from tests.storage.support import StoreSpec, append

REPO_ROOT: Final = Path(__file__).resolve().parents[2]
WAKE_S: Final = 1.0


async def peer(spec: StoreSpec, *args: str) -> asyncio.subprocess.Process:
    argv = [sys.executable, "-m", "tests.storage.peer", spec.name, str(spec.data_dir), *args]
    return await asyncio.create_subprocess_exec(
        *argv, cwd=REPO_ROOT, stdout=asyncio.subprocess.PIPE
    )


async def test_watcher_wakes_on_changes_in_this_process(
    backend: Backend, alice: AccountInfo, inbox: MailboxId
) -> None:
    """Append, STORE and EXPUNGE each wake a watcher of the mailbox."""
    async with backend.watch(alice.id, inbox) as watcher:
        await append(backend, alice.id, inbox)
        await asyncio.wait_for(watcher.wait(), WAKE_S)
        await backend.store_flags(alice.id, inbox, UidSet.all(), FlagOp.ADD, frozenset({SEEN}))
        await asyncio.wait_for(watcher.wait(), WAKE_S)
        await backend.expunge(alice.id, inbox, None, only_deleted=False)
        await asyncio.wait_for(watcher.wait(), WAKE_S)


async def test_change_before_wait_is_not_lost(
    backend: Backend, alice: AccountInfo, inbox: MailboxId
) -> None:
    """A change between two waits makes the next wait return at once."""
    async with backend.watch(alice.id, inbox) as watcher:
        await append(backend, alice.id, inbox)
        await asyncio.sleep(0.05)
        await asyncio.wait_for(watcher.wait(), WAKE_S)


async def test_every_watcher_of_the_mailbox_wakes(
    backend: Backend, alice: AccountInfo, inbox: MailboxId
) -> None:
    other = await backend.create_mailbox(alice.id, MailboxName("Other"))
    async with (
        backend.watch(alice.id, inbox) as first,
        backend.watch(alice.id, inbox) as second,
        backend.watch(alice.id, other.id) as third,
    ):
        await append(backend, alice.id, inbox)
        await asyncio.wait_for(asyncio.gather(first.wait(), second.wait()), WAKE_S)
        await append(backend, alice.id, other.id)
        await asyncio.wait_for(third.wait(), WAKE_S)


async def test_another_process_wakes_a_watcher_within_a_second(
    store_spec: StoreSpec, backend: Backend, alice: AccountInfo, inbox: MailboxId
) -> None:
    """A change committed by another process (another worker, the CLI) wakes a watcher
    here within 1 s of its commit: an append, then a flag change."""
    async with backend.watch(alice.id, inbox) as watcher:
        proc = await peer(store_spec, "append", "alice", "INBOX", "1", "remote")
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 30)
        committed = time.monotonic()
        assert line.startswith(b"UID "), line
        await asyncio.wait_for(watcher.wait(), WAKE_S)
        assert time.monotonic() - committed < WAKE_S
        await proc.communicate()
        assert proc.returncode == 0
        uid = line.split()[1].decode()

        proc = await peer(store_spec, "flag", "alice", "INBOX", uid)
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 30)
        assert line == b"FLAGGED\n"
        await asyncio.wait_for(watcher.wait(), WAKE_S)
        await proc.communicate()
        assert proc.returncode == 0
    (meta,) = await backend.fetch_meta(alice.id, inbox, UidSet.all(), Want.FLAGS)
    assert meta.flags == {SEEN}

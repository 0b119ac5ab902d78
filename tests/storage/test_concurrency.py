"""Contract: several writers at once -- processes and tasks -- and fan-out delivery."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Final

from msgstore.core.accounts import AccountInfo
from msgstore.core.ids import MailboxId, UidSet
from msgstore.storage.base import Backend, Want
from tests.storage.support import StoreSpec, append, inbox_of, message, new_account, read_body

REPO_ROOT: Final = Path(__file__).resolve().parents[2]
PER_PROCESS: Final = 40


async def test_two_processes_append_to_one_mailbox(
    store_spec: StoreSpec, backend: Backend, alice: AccountInfo, inbox: MailboxId
) -> None:
    """Two processes append to the same mailbox at once while this one does too: every
    message is stored, each under its own UID, and UIDNEXT is one past the highest."""
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.storage.peer",
            store_spec.name,
            str(store_spec.data_dir),
            "append",
            "alice",
            "INBOX",
            str(PER_PROCESS),
            f"proc{i}",
            cwd=REPO_ROOT,
            stdout=asyncio.subprocess.PIPE,
        )
        for i in range(2)
    ]
    local = [
        (await append(backend, alice.id, inbox, message(f"local-{i}"))).uid
        for i in range(PER_PROCESS)
    ]
    outputs = [await p.communicate() for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    remote = [int(line.split()[1]) for out, _ in outputs for line in out.splitlines()]
    every = remote + [int(u) for u in local]
    assert len(every) == 3 * PER_PROCESS
    assert len(set(every)) == len(every), "a UID was handed out twice"
    snap = await backend.snapshot(alice.id, inbox)
    assert sorted(every) == list(snap.uids)
    assert snap.uidnext == max(every) + 1
    metas = await backend.fetch_meta(alice.id, inbox, UidSet.all(), Want.ENVELOPE)
    subjects = {m.envelope for m in metas}
    assert len(subjects) == 3 * PER_PROCESS
    quota = await backend.get_quota(alice.id)
    assert quota.messages_used == 3 * PER_PROCESS


async def test_concurrent_tasks_on_several_accounts(backend: Backend) -> None:
    """Appends to several accounts interleave freely; each account numbers its own UIDs."""
    accounts = [await new_account(backend, f"user{i}") for i in range(4)]
    inboxes = [await inbox_of(backend, a.id) for a in accounts]

    async def fill(i: int) -> list[int]:
        return [
            int((await append(backend, accounts[i].id, inboxes[i], message(f"{i}-{n}"))).uid)
            for n in range(10)
        ]

    results = await asyncio.gather(*(fill(i) for i in range(4)))
    assert all(r == list(range(1, 11)) for r in results)


async def test_one_staged_message_goes_to_three_accounts(backend: Backend) -> None:
    """Fan-out: stage once, append to three accounts; each has the bytes and its own UID,
    flags and quota charge."""
    users = [await new_account(backend, name) for name in ("ann", "ben", "cat")]
    data = message("to many", body="shared body\r\n" * 100)
    async with backend.stage(max_octets=1 << 20) as staged:
        await staged.write(data)
        await staged.finish()
        results = [
            await backend.append(
                u.id, await inbox_of(backend, u.id), staged, flags=frozenset({f"$for{u.name}"})
            )
            for u in users
        ]
    for user, result in zip(users, results, strict=True):
        assert await read_body(backend, user.id, result.mailbox, result.uid) == data
        (meta,) = await backend.fetch_meta(user.id, result.mailbox, UidSet.all(), Want.FLAGS)
        assert meta.flags == {f"$for{user.name}"}
        assert (await backend.get_quota(user.id)).storage_used_octets == len(data)
    await backend.expunge(users[0].id, results[0].mailbox, None, only_deleted=False)
    assert await read_body(backend, users[1].id, results[1].mailbox, results[1].uid) == data


async def test_a_second_handle_sees_committed_changes(
    store_spec: StoreSpec, backend: Backend, alice: AccountInfo, inbox: MailboxId
) -> None:
    """Two open handles on one store (two workers): what one commits, the other reads."""
    other = await store_spec.open()
    try:
        result = await append(backend, alice.id, inbox, message("seen by both"))
        assert await read_body(other, alice.id, inbox, result.uid) == message("seen by both")
        bob = await new_account(other, "bob")
        assert (await backend.get_account("bob")).id == bob.id
    finally:
        await other.close()

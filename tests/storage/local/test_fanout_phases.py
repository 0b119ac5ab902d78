"""``LocalBackend.deliver_many`` to accounts whose index is not open: rounds of three phases
(link into every index, fsync every directory, commit every index). A failure in any phase
fails its own account only -- rolled back, its link removed -- and the others are stored."""

from __future__ import annotations

import asyncio
import errno
import sqlite3
import sys
from pathlib import Path

import pytest

from msgstore.core.accounts import AccountInfo
from msgstore.core.errors import ErrorKind, StoreError
from msgstore.core.ids import Uid
from msgstore.storage.base import AppendResult
from msgstore.storage.local import FaultPlan, LocalBackend
from msgstore.storage.local import backend as backend_module
from tests.storage.helpers.store import REPO_ROOT, check_account, open_local, read_body
from tests.storage.helpers.strace import parse, run_traced
from tests.storage.local.conftest import tree_of
from tests.storage.support import inbox_of, message, new_account

ACCOUNTS = 6


async def _fan_out(
    backend: LocalBackend,
    accounts: list[AccountInfo],
    data: bytes,
    plan: FaultPlan | None,
    op: str,
) -> list[AppendResult | StoreError]:
    """One message to every account, the next ``op`` (if a plan is given) failing with EIO
    once the message is staged (its own write and fsync are done)."""
    async with backend.stage(max_octets=1 << 20) as staged:
        await staged.write(data)
        await staged.finish()
        if plan is not None:
            plan.arm(plan.next_call(op, errno.EIO))
        return await backend.deliver_many(staged, [(a, None) for a in accounts])


@pytest.mark.parametrize("op", ["link", "fsync", "commit"])
async def test_a_failure_in_one_phase_fails_one_account_only(data_dir: Path, op: str) -> None:
    """The link (phase 1), the directory fsync (phase 2) or the commit (phase 3) of one
    account fails: that account gets a TEMP error and holds nothing (no row, no file, no
    quota charged); every other account has the message; the next fan-out reaches all."""
    plan = FaultPlan(())
    backend = await open_local(data_dir, plan)
    try:
        accounts = [await new_account(backend, f"user{i}") for i in range(ACCOUNTS)]
        data = message("phases", body=f"fail the {op}\r\n")
        results = await _fan_out(backend, accounts, data, plan, op)
        failed = [
            (a, r) for a, r in zip(accounts, results, strict=True) if isinstance(r, StoreError)
        ]
        assert len(failed) == 1, results
        ((loser, error),) = failed
        assert error.kind is ErrorKind.TEMP, error
        for account, result in zip(accounts, results, strict=True):
            state = await check_account(backend, data_dir, account.id)
            inbox = await inbox_of(backend, account.id)
            if account is loser:
                assert state[inbox].messages == {}
                continue
            assert isinstance(result, AppendResult), result
            assert await read_body(backend, account.id, inbox, result.uid) == data
        again = await _fan_out(backend, accounts, message("again"), None, op)
        uids = {
            a.id: r.uid
            for a, r in zip(accounts, again, strict=True)
            if isinstance(r, AppendResult)
        }
        assert len(uids) == ACCOUNTS, again
        assert uids[loser.id] == 1, "the failed account's UID was never committed"
        assert all(uid == 2 for account, uid in uids.items() if account != loser.id)
    finally:
        await backend.close()
    backend = await open_local(data_dir)  # full recovery: nothing stray anywhere
    try:
        for account in accounts:
            await check_account(backend, data_dir, account.id)
    finally:
        await backend.close()


async def test_a_fan_out_larger_than_a_round(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rounds of two accounts and one opener thread: five accounts take three rounds, each
    copy stored once (one inode) and readable, the indexes kept for the next fan-out."""
    monkeypatch.setattr(backend_module, "FANOUT_ROUND", 2)
    monkeypatch.setattr(backend_module, "FANOUT_OPENERS", 1)
    backend = await open_local(data_dir)
    try:
        accounts = [await new_account(backend, f"user{i}") for i in range(5)]
        data = message("rounds")
        for expected_uid in (1, 2):
            results = await _fan_out(backend, accounts, data, None, "link")
            assert [r.uid for r in results if isinstance(r, AppendResult)] == [expected_uid] * 5
        for account in accounts:
            inbox = await inbox_of(backend, account.id)
            assert await read_body(backend, account.id, inbox, Uid(2)) == data
            await check_account(backend, data_dir, account.id)
    finally:
        await backend.close()


def test_each_copy_is_linked_then_its_directory_synced_then_committed_before_the_reply(
    tmp_path: Path,
) -> None:
    """Under strace: for every account of a fan-out, the order is link -> fsync of its
    mailbox directory -> index commit (WAL frames written, then the WAL synced) -> reply,
    though the phases interleave the accounts."""
    data_dir = tmp_path / "data"
    names = [f"user{i}" for i in range(4)]

    async def prepare() -> dict[int, Path]:
        backend = await open_local(data_dir)
        try:
            made = [await new_account(backend, n) for n in names]
            return {a.id: tree_of(data_dir, a.id) for a in made}
        finally:
            await backend.close()

    trees = asyncio.run(prepare())
    log = tmp_path / "fanout.strace"
    argv = [sys.executable, "-m", "tests.storage.local.fanout_trace", str(data_dir), *names]
    done = run_traced(argv, log, cwd=REPO_ROOT, timeout_s=60.0)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    calls = parse(log.read_text(), REPO_ROOT)
    acks = [c for c in calls if c.name == "write" and c.fd == 1 and c.text.startswith("ACK ")]
    assert len(acks) == len(names)
    for ack in acks:
        _, account, uid = ack.text.removesuffix("\\n").split()  # as strace prints it
        tree = trees[int(account)]
        links = [
            c
            for c in calls
            if c.name in ("link", "linkat")
            and c.path2 is not None
            and Path(c.path2).parent.parent == tree / "mail"
            and Path(c.path2).name == uid
        ]
        assert len(links) == 1, links
        link = links[0]
        mailbox_dir = str(Path(link.path2 or "").parent)
        dir_syncs = [
            c
            for c in calls
            if c.name in ("fsync", "fdatasync") and c.path == mailbox_dir and c.start > link.end
        ]
        assert dir_syncs, f"{mailbox_dir} not fsynced after its link"
        dir_sync = dir_syncs[0]
        assert dir_sync.result == 0
        assert dir_sync.end < ack.start
        wal = str(tree / "index.db-wal")
        writes = [
            c
            for c in calls
            if c.name in ("write", "pwrite64")
            and c.path == wal
            and link.start < c.start < ack.start
        ]
        assert writes, f"no commit to {wal} before the reply"
        assert min(c.start for c in writes) > dir_sync.end, "index written before the dir fsync"
        last = max(c.end for c in writes)
        wal_syncs = [
            c
            for c in calls
            if c.name in ("fsync", "fdatasync") and c.path == wal and last < c.start
        ]
        assert wal_syncs, f"{wal} not synced after its frames"
        assert wal_syncs[0].result == 0
        assert wal_syncs[0].end < ack.start


async def test_an_account_locked_elsewhere_waits_without_holding_up_the_others(
    data_dir: Path,
) -> None:
    """Another connection holds one account's write lock: the fan-out links, syncs and
    commits every other account without waiting for it (a round never waits for a lock
    while holding others), then appends the locked one once the lock is released."""
    backend = await open_local(data_dir)
    try:
        accounts = [await new_account(backend, f"user{i}") for i in range(5)]
        locked = accounts[2]
        holder = sqlite3.connect(tree_of(data_dir, locked.id) / "index.db", isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        task = asyncio.create_task(_fan_out(backend, accounts, message("locked"), None, "link"))
        others = [a for a in accounts if a is not locked]
        # The others are committed while the lock is held, well within busy_timeout (10 s):
        # not after a phase-1 wait for the lock ran out.
        for _ in range(100):
            await asyncio.sleep(0.05)
            if all(_messages(data_dir, a) == 1 for a in others):
                break
        assert all(_messages(data_dir, a) == 1 for a in others)
        assert not task.done()
        holder.execute("ROLLBACK")
        holder.close()
        results = await asyncio.wait_for(task, 30)
        assert all(isinstance(r, AppendResult) and r.uid == 1 for r in results), results
        for account in accounts:
            await check_account(backend, data_dir, account.id)
    finally:
        await backend.close()


def _messages(data_dir: Path, account: AccountInfo) -> int:
    conn = sqlite3.connect(tree_of(data_dir, account.id) / "index.db")
    try:
        (count,) = conn.execute("SELECT count(*) FROM messages").fetchone()
        return int(count)
    finally:
        conn.close()

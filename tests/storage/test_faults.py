"""RELIABILITY.md §7 cases 35 and 36: I/O errors and a full disk fail only the operation hit.

Injected faults (case 36): a :class:`FaultPlan` makes the N-th call of one file operation
raise ``OSError(errno)``. A probe run with an empty plan counts how many calls of the operation
one append makes (staging included) and the test then fails *each* of them in turn, for EIO,
ENOSPC and EROFS. Every time: the append raises ``StoreError(TEMP)``, the store is exactly as
before (no row, no message file, no staging file, quota unchanged), another account's append
in the same process works, and the next append of the same account succeeds -- without
reopening the store. The operations are write, fsync, link, mkdir and ``commit`` (the index
transaction); appends never rename, so rename faults are checked where rename is used
(deleting an account), and unlink faults where a failed unlink matters (after an expunge).
Faults in account creation and the ``MSGSTORE_FAULTS`` route into a real process are here too.

A real full disk (case 35): a 2 MiB tmpfs in a private mount namespace (``unshare``), filled
up; see tests/storage/helpers/diskfull.py.
"""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import pytest

from msgstore.core.errors import ErrorKind, StoreError
from msgstore.core.ids import AccountId, MailboxId, Uid
from msgstore.core.names import MailboxName
from msgstore.storage.local import LocalBackend
from msgstore.storage.local.faults import Fault, FaultPlan
from msgstore.storage.open import FAULTS_ENV
from tests.storage.helpers.appender import REFUSED
from tests.storage.helpers.store import (
    REPO_ROOT,
    MailboxState,
    account_dir,
    add_message,
    check_account,
    inbox_of,
    make_message,
    new_account,
    open_local,
    read_body,
    tmp_files,
    tree,
)

#: ``commit`` fails the index transaction after the file is linked and its directory synced.
OPERATIONS: Final = ("write", "fsync", "rename", "link", "mkdir", "commit")
ERRNOS: Final = ("EIO", "ENOSPC", "EROFS")
#: An append to a mailbox that has no directory yet does every operation but ``rename``.
FRESH: Final = MailboxName("Fresh")
MESSAGE_OCTETS: Final = 10_000
TIMEOUT_S: Final = 60.0


@dataclass(frozen=True, slots=True)
class Prepared:
    data_dir: Path
    victim: AccountId
    bystander: AccountId
    fresh: MailboxId  # victim's mailbox that has no message (so no directory) yet


async def _prepare(data_dir: Path) -> Prepared:
    backend = await open_local(data_dir)
    try:
        victim = (await new_account(backend, "victim")).id
        bystander = (await new_account(backend, "bystander")).id
        rng = random.Random(36)
        for account in (victim, bystander):
            await add_message(backend, account, await inbox_of(backend, account), _msg(rng))
        fresh = (await backend.create_mailbox(victim, FRESH)).id
        return Prepared(data_dir, victim, bystander, fresh)
    finally:
        await backend.close()


def _msg(rng: random.Random) -> bytes:
    return make_message(rng, f"fault-{rng.getrandbits(32)}", body_octets=MESSAGE_OCTETS)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Prepared:
    return asyncio.run(_prepare(tmp_path_factory.mktemp("faults") / "data"))


async def _counts(prepared: Prepared, scratch: Path) -> dict[str, tuple[int, int]]:
    """For each operation: (calls before the append, calls after it), with an empty plan."""
    data_dir = scratch / "probe"
    shutil.copytree(prepared.data_dir, data_dir)
    plan = FaultPlan(())
    backend = await open_local(data_dir, plan)
    try:
        before = {op: plan.count(op) for op in OPERATIONS}
        await add_message(backend, prepared.victim, prepared.fresh, _msg(random.Random(0)))
        return {op: (before[op], plan.count(op)) for op in OPERATIONS}
    finally:
        await backend.close()


async def _everything(backend: LocalBackend, prepared: Prepared) -> dict[int, MailboxState]:
    state = await check_account(backend, prepared.data_dir, prepared.victim)
    assert not tmp_files(prepared.data_dir), f"staging files left: {tmp_files(prepared.data_dir)}"
    return state


async def _fail_once_then_recover(prepared: Prepared, data_dir: Path, fault: Fault) -> None:
    run = Prepared(data_dir, prepared.victim, prepared.bystander, prepared.fresh)
    shutil.copytree(prepared.data_dir, data_dir)
    backend = await open_local(data_dir, FaultPlan((fault,)))
    try:
        before = await _everything(backend, run)
        quota_before = await backend.get_quota(run.victim)
        with pytest.raises(StoreError) as caught:
            await add_message(backend, run.victim, run.fresh, _msg(random.Random(1)))
        assert caught.value.kind is ErrorKind.TEMP, f"{fault}: {caught.value!r}"
        assert await _everything(backend, run) == before, f"{fault}: the store changed"
        assert await backend.get_quota(run.victim) == quota_before

        other = _msg(random.Random(2))
        bystander_inbox = await inbox_of(backend, run.bystander)
        result = await add_message(backend, run.bystander, bystander_inbox, other)
        assert await read_body(backend, run.bystander, bystander_inbox, result.uid) == other

        again = _msg(random.Random(3))
        result = await add_message(backend, run.victim, run.fresh, again)
        assert await read_body(backend, run.victim, run.fresh, result.uid) == again
        after = await _everything(backend, run)
        assert sorted(after[int(run.fresh)].messages) == [int(result.uid)]
    finally:
        await backend.close()
    backend = await open_local(data_dir)
    try:
        await _everything(backend, run)
        await check_account(backend, data_dir, run.bystander)
    finally:
        await backend.close()


@pytest.mark.parametrize("errno_name", ERRNOS)
@pytest.mark.parametrize("op", OPERATIONS)
async def test_fault_at_each_call_fails_only_that_append(
    prepared: Prepared, tmp_path: Path, op: str, errno_name: str
) -> None:
    """Fail each call of ``op`` that one append makes with ``errno_name``, in turn."""
    before, after = (await _counts(prepared, tmp_path))[op]
    if op == "rename":
        # Appends place files with link(), never rename(); a rename fault must not touch them.
        assert after == before, "append started renaming: fail those renames here too"
        await _rename_fault_does_not_touch_appends(prepared, tmp_path / "run", errno_name)
        return
    assert after > before, f"one append made no {op} call; the fault would never fire"
    for nth in range(before + 1, after + 1):
        fault = FaultPlan.parse(f"{op}:{nth}:{errno_name}").faults[0]
        await _fail_once_then_recover(prepared, tmp_path / f"run-{nth}", fault)


async def _rename_fault_does_not_touch_appends(
    prepared: Prepared, data_dir: Path, errno_name: str
) -> None:
    shutil.copytree(prepared.data_dir, data_dir)
    backend = await open_local(data_dir, FaultPlan.parse(f"rename:1+:{errno_name}"))
    try:
        data = _msg(random.Random(4))
        result = await add_message(backend, prepared.victim, prepared.fresh, data)
        assert await read_body(backend, prepared.victim, prepared.fresh, result.uid) == data
        await check_account(backend, data_dir, prepared.victim)
    finally:
        await backend.close()


async def test_a_disk_that_stays_full_fails_every_append_and_reads_go_on(
    prepared: Prepared, tmp_path: Path
) -> None:
    """``write:N+:ENOSPC`` (every write from the next one on): appends fail with TEMP and
    leave nothing, reads of stored mail keep working, for both accounts."""
    data_dir = tmp_path / "data"
    shutil.copytree(prepared.data_dir, data_dir)
    run = Prepared(data_dir, prepared.victim, prepared.bystander, prepared.fresh)
    backend = await open_local(data_dir, FaultPlan.parse("write:1+:ENOSPC"))
    try:
        for account in (run.victim, run.bystander):
            before = await check_account(backend, data_dir, account)
            inbox = await inbox_of(backend, account)
            for _ in range(3):
                with pytest.raises(StoreError) as caught:
                    await add_message(backend, account, inbox, _msg(random.Random(5)))
                assert caught.value.kind is ErrorKind.TEMP
            assert await check_account(backend, data_dir, account) == before
            assert not tmp_files(data_dir)
            assert len(await read_body(backend, account, inbox, min_uid(before, inbox))) > 0
    finally:
        await backend.close()


def min_uid(state: dict[int, MailboxState], mailbox: MailboxId) -> Uid:
    return Uid(min(state[int(mailbox)].messages))


def test_real_full_disk_fails_cleanly_and_recovers_without_restart(tmp_path: Path) -> None:
    """Case 35 on a real file system: a 2 MiB tmpfs mounted in a private mount namespace
    (``unshare --mount --map-root-user``: root is not needed, and the mount dies with the
    process), filled to the last block. Appends fail with TEMP and leave no file, row or
    staging file; stored mail stays readable; once space is freed the same open store
    accepts mail again. The checks run in tests/storage/helpers/diskfull.py."""
    unshare = shutil.which("unshare")
    assert unshare, "unshare (util-linux) is required for this test"
    mount_point = tmp_path / "small"
    mount_point.mkdir()
    argv = [unshare, "--mount", "--map-root-user", "--propagation", "private"]
    argv += [sys.executable, "-m", "tests.storage.helpers.diskfull", str(mount_point)]
    done = subprocess.run(argv, cwd=REPO_ROOT, capture_output=True, timeout=TIMEOUT_S)
    report = done.stdout.decode() + done.stderr.decode()
    assert done.returncode == 0, report
    assert "disk full: append refused, store unchanged" in report
    assert "space freed: append stored" in report


# --- faults outside append -------------------------------------------------------------------

ACCOUNT_OPERATIONS: Final = ("mkdir", "fsync", "commit")


async def _account_counts(data_dir: Path) -> dict[str, tuple[int, int]]:
    plan = FaultPlan(())
    backend = await open_local(data_dir, plan)
    try:
        before = {op: plan.count(op) for op in ACCOUNT_OPERATIONS}
        await new_account(backend, "probe")
        return {op: (before[op], plan.count(op)) for op in ACCOUNT_OPERATIONS}
    finally:
        await backend.close()


def _account_trees(data_dir: Path) -> dict[str, str]:
    """Everything under ``users/`` except the fan-out directories ``users/<aa>`` themselves
    (shared by every account whose id falls in that bucket; an empty one is harmless)."""
    return {k: v for k, v in tree(data_dir / "users").items() if "/" in k}


@pytest.mark.parametrize("errno_name", ERRNOS)
async def test_fault_while_creating_an_account_leaves_no_account_and_no_tree(
    prepared: Prepared, tmp_path: Path, errno_name: str
) -> None:
    """Fail each mkdir, fsync and commit of create_account in turn: TEMP, no account, no
    account tree (nor anything in it) under users/, and the same name can be created right
    after, in the same open store."""
    probe = tmp_path / "probe"
    shutil.copytree(prepared.data_dir, probe)
    counts = await _account_counts(probe)
    for op, (before, after) in counts.items():
        assert after > before, f"create_account made no {op} call"
        for nth in range(before + 1, after + 1):
            data_dir = tmp_path / f"{op}-{nth}"
            shutil.copytree(prepared.data_dir, data_dir)
            users_before = _account_trees(data_dir)
            backend = await open_local(data_dir, FaultPlan.parse(f"{op}:{nth}:{errno_name}"))
            try:
                with pytest.raises(StoreError) as caught:
                    await new_account(backend, "newcomer")
                assert caught.value.kind is ErrorKind.TEMP, f"{op}:{nth}: {caught.value!r}"
                with pytest.raises(StoreError) as missing:
                    await backend.get_account("newcomer")
                assert missing.value.kind is ErrorKind.NOT_FOUND
                left = sorted(set(_account_trees(data_dir)) - set(users_before))
                assert not left, f"{op}:{nth}:{errno_name}: create_account left {left}"
                assert not tmp_files(data_dir)
                created = await new_account(backend, "newcomer")
                await check_account(backend, data_dir, created.id)
                await check_account(backend, data_dir, prepared.bystander)
            finally:
                await backend.close()


async def test_rename_fault_while_deleting_an_account_still_deletes_it(
    prepared: Prepared, tmp_path: Path
) -> None:
    """delete_account moves the tree aside with rename() before removing it; if that rename
    fails the tree is removed in place: the account and all its files are gone either way."""
    data_dir = tmp_path / "data"
    shutil.copytree(prepared.data_dir, data_dir)
    victim_tree = account_dir(data_dir, prepared.victim)
    backend = await open_local(data_dir, FaultPlan.parse("rename:1:EIO"))
    try:
        await backend.delete_account("victim")
        assert not victim_tree.exists(), "the deleted account's tree is still there"
        with pytest.raises(StoreError) as caught:
            await backend.get_account("victim")
        assert caught.value.kind is ErrorKind.NOT_FOUND
        await check_account(backend, data_dir, prepared.bystander)
    finally:
        await backend.close()


async def test_unlink_fault_after_expunge_leaves_an_orphan_that_recovery_removes(
    prepared: Prepared, tmp_path: Path
) -> None:
    """Expunge commits first and unlinks afterwards; a failed unlink does not undo the
    committed expunge. The file left behind is an orphan that the next open removes."""
    data_dir = tmp_path / "data"
    shutil.copytree(prepared.data_dir, data_dir)
    run = Prepared(data_dir, prepared.victim, prepared.bystander, prepared.fresh)
    backend = await open_local(data_dir, FaultPlan.parse("unlink:1+:EIO"))
    try:
        inbox = await inbox_of(backend, run.victim)
        uids = (await backend.snapshot(run.victim, inbox)).uids
        assert len(uids) == 1
        gone = await backend.expunge(run.victim, inbox, only_deleted=False)
        assert gone == [uids[0]]
        assert (await backend.snapshot(run.victim, inbox)).uids.tolist() == []
        quota = await backend.get_quota(run.victim)
        assert (quota.messages_used, quota.storage_used_octets) == (0, 0)
    finally:
        await backend.close()
    backend = await open_local(data_dir)
    try:
        await _everything(backend, run)  # no orphan file left after recovery
    finally:
        await backend.close()


def test_faults_from_the_environment_reach_a_real_process(
    prepared: Prepared, tmp_path: Path
) -> None:
    """``MSGSTORE_FAULTS`` is read by ``storage.open.open_backend``: a process started with
    ``link:1:EIO`` has its append refused with TEMP and leaves nothing; the same process
    started without it stores the message."""
    data_dir = tmp_path / "data"
    shutil.copytree(prepared.data_dir, data_dir)
    argv = [sys.executable, "-m", "tests.storage.helpers.appender", "once", str(data_dir)]
    argv += ["victim", "append"]
    env = {k: v for k, v in os.environ.items() if k != FAULTS_ENV}
    refused = subprocess.run(
        argv,
        cwd=REPO_ROOT,
        capture_output=True,
        timeout=TIMEOUT_S,
        env={**env, FAULTS_ENV: "link:1:EIO"},
    )
    assert refused.returncode == REFUSED, refused.stderr.decode(errors="replace")
    assert refused.stdout.decode("ascii").splitlines() == ["BEGIN", "ERROR TEMP"]

    async def unchanged() -> None:
        backend = await open_local(data_dir)
        try:
            state = await _everything(backend, prepared)
            inbox = await inbox_of(backend, prepared.victim)
            assert len(state[int(inbox)].messages) == 1
        finally:
            await backend.close()

    asyncio.run(unchanged())
    stored = subprocess.run(argv, cwd=REPO_ROOT, capture_output=True, timeout=TIMEOUT_S, env=env)
    assert stored.returncode == 0, stored.stderr.decode(errors="replace")
    assert stored.stdout.decode("ascii").splitlines()[1].startswith("ACK 2 ")

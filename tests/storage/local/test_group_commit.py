"""Group commit: appends to one index made at once share one transaction, one directory fsync
and one WAL commit, and each of them still succeeds or fails on its own."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from msgstore.core.errors import ErrorKind, StoreError
from msgstore.core.ids import AccountId, MailboxId
from msgstore.storage.base import AppendResult, StagedMessage
from msgstore.storage.local import FaultPlan, LocalBackend
from tests.storage.helpers.store import check_account, open_local, read_body, tmp_files
from tests.storage.support import append, inbox_of, message, new_account

AT_ONCE: Final = 16


async def _append_at_once(
    backend: LocalBackend, account: AccountId, mailbox: MailboxId, datas: Sequence[bytes]
) -> list[AppendResult | BaseException]:
    """Stage every message first, then start all appends in the same loop iteration."""
    async with contextlib.AsyncExitStack() as stack:
        staged: list[StagedMessage] = []
        for data in datas:
            one = await stack.enter_async_context(backend.stage(max_octets=1 << 20))
            await one.write(data)
            await one.finish()
            staged.append(one)
        return await asyncio.gather(
            *(backend.append(account, mailbox, one) for one in staged), return_exceptions=True
        )


def _datas(n: int, tag: str) -> list[bytes]:
    return [message(f"{tag} {i}", body=f"body {i}\r\n") for i in range(n)]


async def test_concurrent_appends_commit_together_and_each_is_stored(data_dir: Path) -> None:
    plan = FaultPlan(())
    backend = await open_local(data_dir, plan)
    try:
        account = (await new_account(backend, "gina")).id
        inbox = await inbox_of(backend, account)
        datas = _datas(AT_ONCE, "group")
        commits = plan.count("commit")
        results = await _append_at_once(backend, account, inbox, datas)
        commits = plan.count("commit") - commits
        ok = [r for r in results if isinstance(r, AppendResult)]
        assert len(ok) == AT_ONCE, results
        assert sorted(r.uid for r in ok) == list(range(1, AT_ONCE + 1))
        assert len({r.modseq for r in ok}) == AT_ONCE, "each append takes its own modseq"
        assert commits < AT_ONCE, f"{commits} commits for {AT_ONCE} appends made at once"
        for result, data in zip(ok, datas, strict=True):
            assert await read_body(backend, account, inbox, result.uid) == data
        await check_account(backend, data_dir, account)
        assert not tmp_files(data_dir)
    finally:
        await backend.close()


async def test_an_append_over_quota_fails_alone_in_its_batch(data_dir: Path) -> None:
    backend = await open_local(data_dir)
    try:
        account = (await new_account(backend, "quinn")).id
        await backend.set_quota(account, storage_limit_kib=None, message_limit=3)
        inbox = await inbox_of(backend, account)
        results = await _append_at_once(backend, account, inbox, _datas(5, "quota"))
        ok = [r for r in results if isinstance(r, AppendResult)]
        refused = [r for r in results if isinstance(r, StoreError)]
        assert len(ok) == 3, results
        assert [e.kind for e in refused] == [ErrorKind.OVER_QUOTA] * 2
        state = await check_account(backend, data_dir, account)
        assert sorted(state[int(inbox)].messages) == sorted(int(r.uid) for r in ok)
    finally:
        await backend.close()


async def test_a_failed_link_fails_only_that_append(data_dir: Path) -> None:
    """The second link of the batch fails with EIO: that append gets TEMP, the others are
    stored, and nothing of the failed one is left."""
    backend = await open_local(data_dir, FaultPlan.parse("link:2:EIO"))
    try:
        account = (await new_account(backend, "lina")).id
        inbox = await inbox_of(backend, account)
        results = await _append_at_once(backend, account, inbox, _datas(4, "link"))
        refused = [r for r in results if isinstance(r, StoreError)]
        assert [e.kind for e in refused] == [ErrorKind.TEMP], results
        state = await check_account(backend, data_dir, account)
        assert len(state[int(inbox)].messages) == 3
        assert not tmp_files(data_dir)
    finally:
        await backend.close()


async def test_a_failed_directory_fsync_fails_its_whole_batch_and_leaves_nothing(
    data_dir: Path,
) -> None:
    """Staging fsyncs come first (one per message); the next fsync is the first batch's
    directory fsync. Every append of that batch fails with TEMP and leaves no file and no
    row; appends in a later batch (if the loop split them) are stored whole."""
    backend = await open_local(data_dir)
    try:
        account = (await new_account(backend, "dora")).id
        inbox = await inbox_of(backend, account)
        await append(backend, account, inbox)  # mail/<inbox>/ exists: no mkdir fsync later
    finally:
        await backend.close()
    backend = await open_local(data_dir, FaultPlan.parse("fsync:5:EIO"))
    try:
        results = await _append_at_once(backend, account, inbox, _datas(4, "dir"))
        refused = [r for r in results if isinstance(r, StoreError)]
        ok = [r for r in results if isinstance(r, AppendResult)]
        assert len(refused) >= 1, results
        assert all(e.kind is ErrorKind.TEMP for e in refused), results
        state = await check_account(backend, data_dir, account)
        assert sorted(state[int(inbox)].messages) == [1, *sorted(int(r.uid) for r in ok)]
    finally:
        await backend.close()
    backend = await open_local(data_dir)
    try:
        await check_account(backend, data_dir, account)
    finally:
        await backend.close()

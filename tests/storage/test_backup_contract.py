"""Contract: per-account export/restore (optional ``SupportsBackup``) on every backend.

A backend that implements it must round-trip an account (messages byte for byte, flags);
one that does not must make the management operations answer NOT_POSSIBLE, changing nothing.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from msgstore.auth.passwords import hash_password
from msgstore.config import load_config
from msgstore.core.errors import ErrorKind, StoreError
from msgstore.core.ids import Uid, UidSet
from msgstore.management.backup import AccountExport, AccountRestore
from msgstore.management.operation import ManagementContext, run_operation
from msgstore.storage.base import Backend, SupportsBackup, SupportsReconstruct, Want
from tests.storage.support import append, inbox_of, message, new_account, read_body


async def test_export_restore_round_trip_or_not_possible(backend: Backend, tmp_path: Path) -> None:
    alice = await new_account(backend, "alice")
    inbox = await inbox_of(backend, alice.id)
    bodies = [message(f"m{n}") for n in range(3)]
    for body in bodies:
        await append(backend, alice.id, inbox, body, flags=frozenset({"\\Flagged"}))
    target = await new_account(backend, "restored")
    ctx = ManagementContext(backend, load_config(data_dir=tmp_path / "cfg"), hash_password)
    archive = tmp_path / "alice.tar"
    if not isinstance(backend, SupportsBackup):
        with pytest.raises(StoreError) as err:
            await run_operation(AccountExport(name="alice", output=str(archive)), ctx)
        assert err.value.kind is ErrorKind.NOT_POSSIBLE
        assert not archive.exists()
        return
    assert isinstance(backend, SupportsReconstruct)
    summary = await run_operation(AccountExport(name="alice", output=str(archive)), ctx)
    assert getattr(summary, "messages", None) == 3
    await run_operation(AccountRestore(name="restored", input=str(archive)), ctx)
    restored_inbox = await inbox_of(backend, target.id)
    snapshot = await backend.snapshot(target.id, restored_inbox)
    uids = [Uid(u) for u in snapshot.uids]
    assert len(uids) == 3
    got = [await read_body(backend, target.id, restored_inbox, uid) for uid in uids]
    assert sorted(got) == sorted(bodies)
    metas = await backend.fetch_meta(target.id, restored_inbox, UidSet.from_uids(uids), Want.FLAGS)
    assert all("\\Flagged" in m.flags for m in metas)

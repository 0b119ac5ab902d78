"""The expunge log stays bounded; a client older than the pruned part gets a full resync."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from msgstore.core.ids import ModSeq, UidSet
from msgstore.storage.local import LocalBackend
from tests.storage.local.conftest import tree_of
from tests.storage.support import append, inbox_of, new_account


async def test_the_log_is_pruned_and_old_modseqs_get_every_missing_uid(data_dir: Path) -> None:
    backend = await LocalBackend.open(data_dir, expunged_keep=4)
    try:
        account = (await new_account(backend, "eve")).id
        inbox = await inbox_of(backend, account)
        uids = [(await append(backend, account, inbox)).uid for _ in range(12)]
        start = (await backend.snapshot(account, inbox)).highestmodseq
        modseqs = []
        for uid in uids[:10]:  # one expunge (and one modseq) each
            await backend.expunge(account, inbox, UidSet.from_uids([uid]), only_deleted=False)
            modseqs.append((await backend.snapshot(account, inbox)).highestmodseq)
        with sqlite3.connect(tree_of(data_dir, account) / "index.db") as conn:
            (logged,) = conn.execute("SELECT count(*) FROM expunged").fetchone()
        assert 4 <= logged <= 5, f"{logged} expunges logged with expunged_keep=4"

        recent = await backend.changes_since(account, inbox, modseqs[-4])
        assert list(recent.expunged) == uids[7:10]  # exact: still in the log
        old = await backend.changes_since(account, inbox, ModSeq(start))
        assert list(old.expunged) == uids[:10]  # below the floor: every UID without a message
        assert not (tree_of(data_dir, account) / "mail" / str(inbox) / str(uids[0])).exists()
    finally:
        await backend.close()

"""RELIABILITY.md §7 case 37: damage an index every way we can, then ``msgstore reconstruct``.

Each case: fill two accounts (alice: INBOX 30 + Archive 5 messages with flags and a keyword;
bob: 3), close the store, damage alice's tree on disk, then with real CLI processes:
``reconstruct --check`` reports and exits 1; ``reconstruct`` repairs and exits 0; every message
is there byte for byte (hash and size of every body), flags are the original ones wherever the
damaged index still had the row (and never different ones: lost means empty), quota matches;
``--check`` then exits 0 and a second ``reconstruct`` reports clean and leaves index.db as it
is (same inode). Bob is never touched.

Duplicated UIDs: ``messages`` is a WITHOUT ROWID table keyed by ``(mailbox_id, uid)``, so two
rows with one UID cannot be written through SQL. The duplicate that can happen is a UID that is
both live and recorded as expunged (a client may have been told it is gone): that case is
made here, and reconstruct must give the message a new UID (keeping its flags).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3  # noqa: TID251 -- these tests damage index.db on purpose
from collections.abc import Callable
from pathlib import Path
from typing import Final

import pytest

from msgstore.core.errors import ErrorKind, StoreError
from msgstore.core.ids import ModSeq, Uid
from msgstore.core.names import INBOX
from msgstore.reconstruct import reconstruct
from msgstore.storage.base import ReconstructReport
from tests.reconstruct.conftest import Filled, fill, msgstore, read_all, run
from tests.storage.helpers.store import account_dir, inbox_of, open_local

PAGE_SIZE_OFFSET: Final = 16


def _index(f: Filled) -> Path:
    return f.tree / "index.db"


def _sql(f: Filled, *statements: str) -> None:
    conn = sqlite3.connect(_index(f), isolation_level=None)
    try:
        for statement in statements:
            conn.execute(statement)
    finally:
        conn.close()


def _page(index: Path) -> int:
    size = int.from_bytes(index.read_bytes()[PAGE_SIZE_OFFSET : PAGE_SIZE_OFFSET + 2], "big")
    return 65536 if size == 1 else size


def truncated(f: Filled) -> None:
    index = _index(f)
    with index.open("r+b") as fh:
        fh.truncate(index.stat().st_size // 2)


def zeroed_pages(f: Filled) -> None:
    index = _index(f)
    page = _page(index)
    pages = index.stat().st_size // page
    with index.open("r+b") as fh:
        for n in (pages // 2, pages // 2 + 1):
            fh.seek(n * page)
            fh.write(bytes(page))


def deleted_rows(f: Filled) -> None:
    _sql(f, "DELETE FROM messages WHERE mailbox_id = 1 AND uid IN (2, 5, 9)")


def duplicated_uid(f: Filled) -> None:
    _sql(f, "INSERT INTO expunged(mailbox_id, uid, modseq) VALUES (1, 4, 2)")


def wrong_quota(f: Filled) -> None:
    _sql(f, "UPDATE quota SET storage_used_octets = 7, messages_used = 1000")


def missing_files(f: Filled) -> None:
    for uid in (3, 7):
        (f.tree / "mail" / "1" / str(uid)).unlink()


def extra_files(f: Filled) -> None:
    source = next(iter(f.bodies.values()))
    (f.tree / "mail" / "1" / "1000").write_bytes(b"Subject: extra\r\n\r\nextra one\r\n")
    (f.tree / "mail" / "999").mkdir()
    (f.tree / "mail" / "999" / "1").write_bytes(
        source.replace(b"Subject:", b"X-Copy: 1\r\nSubject:")
    )


def missing_index(f: Filled) -> None:
    _index(f).unlink()


def zeroed_header(f: Filled) -> None:
    index = _index(f)
    with index.open("r+b") as fh:
        fh.write(bytes(_page(index)))


def stale_wal(f: Filled) -> None:
    """Another index's WAL (with frames) left beside alice's index.db."""
    bob_index = account_dir(f.data, f.bob) / "index.db"
    conn = sqlite3.connect(bob_index, isolation_level=None)
    try:
        conn.execute("PRAGMA wal_autocheckpoint = 0")
        conn.execute("UPDATE messages SET sysflags = 0")
        conn.execute("UPDATE quota SET messages_used = messages_used")
        shutil.copyfile(bob_index.with_name("index.db-wal"), f.tree / "index.db-wal")
    finally:
        conn.close()


def stale_metadata(f: Filled) -> None:
    _sql(f, "UPDATE message_meta SET meta_version = 0, envelope = NULL WHERE id % 4 = 0")


DAMAGE: Final[dict[str, Callable[[Filled], None]]] = {
    "truncated": truncated,
    "zeroed-pages": zeroed_pages,
    "deleted-rows": deleted_rows,
    "duplicated-uid": duplicated_uid,
    "wrong-quota": wrong_quota,
    "missing-files": missing_files,
    "extra-files": extra_files,
    "missing-index": missing_index,
    "zeroed-header": zeroed_header,
    "stale-wal": stale_wal,
    "stale-metadata": stale_metadata,
}
#: Damage that leaves every row readable: flags must come back exactly.
ROWS_INTACT: Final = {
    "duplicated-uid",
    "wrong-quota",
    "missing-files",
    "extra-files",
    "stale-metadata",
}


async def _check(f: Filled) -> ReconstructReport:
    """The engine in this process, dry run (the CLI's --check is run after the repair)."""
    backend = await open_local(f.data)
    try:
        (report,) = await reconstruct(backend, ["alice"])
    finally:
        await backend.close()
    return report


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_reconstruct_repairs(tmp_path: Path, damage: str) -> None:
    f = run(fill(tmp_path / "data"))
    bob_before = run(read_all(f.data, f.bob))
    removed: set[tuple[str, bytes]] = set()
    if damage == "missing-files":
        for uid in (3, 7):
            data = (f.tree / "mail" / "1" / str(uid)).read_bytes()
            removed.add((INBOX, hashlib.sha256(data).digest()))
    DAMAGE[damage](f)

    check = run(_check(f))
    assert not check.clean, check
    assert not check.applied, check

    repair = msgstore(f.data, "reconstruct", "alice")
    assert repair.code == 0, repair
    lines = [line for line in repair.out.splitlines() if "(repaired)" in line]
    assert lines, repair.out
    assert all(line in repair.err for line in lines), "every discrepancy is logged too"

    after = run(read_all(f.data, f.alice))
    expected = {k: v for k, v in f.contents.items() if k not in removed}
    by_sha = {sha: (box, flags) for (box, sha), flags in after.items()}
    for (box, sha), flags in expected.items():
        assert sha in by_sha, f"{box}: a message was lost"
        got_box, got_flags = by_sha[sha]
        if damage in ROWS_INTACT:
            assert (got_box, got_flags) == (box, flags), (box, got_box, flags, got_flags)
        elif got_flags:
            assert got_flags == flags, f"flags invented: {got_flags} for {flags}"
    if damage in ("truncated", "zeroed-pages", "deleted-rows", "stale-wal"):
        kept = sum(1 for (b, s), fl in expected.items() if fl and by_sha[s][1] == fl)
        assert kept > 0 or damage == "stale-wal", "no flags salvaged at all"
    if damage == "extra-files":
        assert len(after) == len(expected) + 2
        assert any(box.startswith("lost+found/") for box, _ in after)
    else:
        assert len(after) == len(expected)

    index = f.tree / "index.db"
    inode = index.stat().st_ino
    assert msgstore(f.data, "reconstruct", "alice", "--check").code == 0
    again = msgstore(f.data, "reconstruct", "alice", "--json")
    assert again.code == 0, again
    assert json.loads(again.out)[0]["clean"] is True, again.out
    assert index.stat().st_ino == inode, "a clean run rewrote index.db"
    assert run(read_all(f.data, f.bob)) == bob_before


def test_missing_files_seen_by_an_open_store(tmp_path: Path) -> None:
    """A store that has the index open before the repair sees the removed messages as
    expunged (changes_since) on its next operation, and the kept ones unchanged."""

    async def scenario() -> None:
        f = await fill(tmp_path / "data")
        backend = await open_local(f.data)
        try:
            inbox = await inbox_of(backend, f.alice)
            before = await backend.snapshot(f.alice, inbox)
            missing_files(f)
            result = msgstore(f.data, "reconstruct", "alice")
            assert result.code == 0, result
            changes = await backend.changes_since(f.alice, inbox, ModSeq(before.highestmodseq))
            assert set(changes.expunged) == {Uid(3), Uid(7)}
            after = await backend.snapshot(f.alice, inbox)
            assert after.uidvalidity == before.uidvalidity
            assert list(after.uids) == [u for u in before.uids if u not in (3, 7)]
        finally:
            await backend.close()

    run(scenario())


def test_uidvalidity_change_moves_the_mailbox(tmp_path: Path) -> None:
    """When UIDs cannot be kept (here: index.db lost, --new-uidvalidity likewise) the mailbox
    gets a new UIDVALIDITY and a new id: an open store asking about the old id is told
    NOT_FOUND, which makes IMAP sessions say BYE instead of showing other messages under UIDs
    they know."""

    async def scenario() -> None:
        f = await fill(tmp_path / "data")
        backend = await open_local(f.data)
        try:
            inbox = await inbox_of(backend, f.alice)
            before = await backend.snapshot(f.alice, inbox)
            result = msgstore(f.data, "reconstruct", "alice", "--new-uidvalidity")
            assert result.code == 0, result
            with pytest.raises(StoreError) as caught:
                await backend.changes_since(f.alice, inbox, ModSeq(before.highestmodseq))
            assert caught.value.kind is ErrorKind.NOT_FOUND
            moved = await backend.get_mailbox(f.alice, INBOX)
            assert moved.id != inbox
            assert moved.uidvalidity != before.uidvalidity
            assert len((await backend.snapshot(f.alice, moved.id)).uids) == len(before.uids)
        finally:
            await backend.close()

    run(scenario())

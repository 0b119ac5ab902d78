"""The local backend's file layout: ids on disk, one file per message, hard links."""

from __future__ import annotations

import os
import shutil
import sqlite3
from pathlib import Path

import pytest

from msgstore.core.accounts import AccountInfo
from msgstore.core.errors import ErrorKind, StoreError
from msgstore.core.ids import UidSet
from msgstore.core.names import MailboxName
from msgstore.storage.base import Feature
from msgstore.storage.local import LocalBackend
from tests.storage.local.conftest import tree_of
from tests.storage.support import append, inbox_of, message, new_account, read_body


def files_under(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


async def test_tree_is_named_by_ids(
    local: LocalBackend, data_dir: Path, alice: AccountInfo
) -> None:
    """users/<aa>/<id>/index.db and mail/<mailbox-id>/<uid>; no name reaches the disk."""
    box = await local.create_mailbox(alice.id, MailboxName("Secret Plans/2024"))
    result = await append(local, alice.id, box.id, message("x"))
    tree = tree_of(data_dir, alice.id)
    assert (tree / "index.db").is_file()
    path = tree / "mail" / str(box.id) / str(result.uid)
    assert path.read_bytes() == message("x")
    every = "\n".join(files_under(data_dir))
    assert "Secret" not in every
    assert "alice" not in every
    assert Feature.HARD_LINKS in local.features


async def test_public_tree_lives_in_data_public(local: LocalBackend, data_dir: Path) -> None:
    public = await local.public_account()
    result = await append(local, public.id, await inbox_of(local, public.id))
    inbox = await inbox_of(local, public.id)
    assert (data_dir / "public" / "mail" / str(inbox) / str(result.uid)).is_file()
    assert (data_dir / "public" / "index.db").is_file()


async def test_fan_out_stores_one_file_linked_per_recipient(
    local: LocalBackend, data_dir: Path
) -> None:
    """One staged message appended to three accounts is one inode with three links; the
    staging file is gone when the staging context ends."""
    users = [await new_account(local, n) for n in ("ann", "ben", "cat")]
    async with local.stage(max_octets=1 << 20) as staged:
        await staged.write(message("fan-out"))
        await staged.finish()
        results = [await local.append(u.id, await inbox_of(local, u.id), staged) for u in users]
    paths = [tree_of(data_dir, r.account) / "mail" / str(r.mailbox) / str(r.uid) for r in results]
    stats = [p.stat() for p in paths]
    assert len({(s.st_dev, s.st_ino) for s in stats}) == 1
    assert all(s.st_nlink == 3 for s in stats)
    assert list((data_dir / "tmp").iterdir()) == []


async def test_copy_hard_links_within_and_across_accounts(
    local: LocalBackend, data_dir: Path, alice: AccountInfo
) -> None:
    inbox = await inbox_of(local, alice.id)
    src = await append(local, alice.id, inbox, message("linked"))
    box = await local.create_mailbox(alice.id, MailboxName("Copy"))
    bob = await new_account(local, "bob")
    bob_inbox = await inbox_of(local, bob.id)
    mine = await local.copy(alice.id, inbox, UidSet.all(), alice.id, box.id)
    theirs = await local.copy(alice.id, inbox, UidSet.all(), bob.id, bob_inbox)
    paths = [
        tree_of(data_dir, alice.id) / "mail" / str(inbox) / str(src.uid),
        tree_of(data_dir, alice.id) / "mail" / str(box.id) / str(mine.dest_uids[0]),
        tree_of(data_dir, bob.id) / "mail" / str(bob_inbox) / str(theirs.dest_uids[0]),
    ]
    inodes = {p.stat().st_ino for p in paths}
    assert len(inodes) == 1
    assert paths[0].stat().st_nlink == 3


async def test_renames_move_no_file(
    local: LocalBackend, data_dir: Path, alice: AccountInfo
) -> None:
    """Renaming a mailbox or the account changes rows, never paths."""
    box = await local.create_mailbox(alice.id, MailboxName("Before"))
    await append(local, alice.id, box.id)
    before = files_under(data_dir / "users")
    await local.rename_mailbox(alice.id, MailboxName("Before"), MailboxName("After/Deeper"))
    await local.rename_account("alice", "alicia")
    after = files_under(data_dir / "users")
    assert [p for p in before if "/mail/" in p] == [p for p in after if "/mail/" in p]


async def test_expunge_and_delete_remove_files(
    local: LocalBackend, data_dir: Path, alice: AccountInfo
) -> None:
    inbox = await inbox_of(local, alice.id)
    gone = await append(local, alice.id, inbox)
    box = await local.create_mailbox(alice.id, MailboxName("Doomed"))
    await append(local, alice.id, box.id)
    await local.expunge(alice.id, inbox, None, only_deleted=False)
    tree = tree_of(data_dir, alice.id)
    # The files of an expunge go after its commit, before the next call on the account.
    await local.mailbox_status(alice.id, inbox)
    assert not (tree / "mail" / str(inbox) / str(gone.uid)).exists()
    await local.delete_mailbox(alice.id, MailboxName("Doomed"))
    assert not (tree / "mail" / str(box.id)).exists()
    await local.delete_account("alice")
    assert not tree.exists()
    assert list((data_dir / "tmp").iterdir()) == []


async def test_databases_use_wal_and_a_clean_close_leaves_no_frames(
    data_dir: Path, tmp_path: Path
) -> None:
    """WAL journal; a clean close checkpoints every frame into the database file, so
    nothing is left to recover: system.db keeps no -wal, an index an empty one (and an
    empty -shm) so that its next open creates no new inode."""
    backend = await LocalBackend.open(data_dir)
    try:
        alice = await new_account(backend, "alice")
        await append(backend, alice.id, await inbox_of(backend, alice.id))
    finally:
        await backend.close()
    index = tree_of(data_dir, alice.id) / "index.db"
    assert not (data_dir / "system.db-wal").exists()
    assert index.with_name("index.db-wal").stat().st_size == 0, "frames left in the WAL"
    assert index.with_name("index.db-shm").stat().st_size == 0
    # index.db alone (no -wal beside it) holds the appended message.
    alone = tmp_path / "alone.db"
    shutil.copyfile(index, alone)
    conn = sqlite3.connect(alone)
    try:
        assert conn.execute("SELECT count(*) FROM messages").fetchone() == (1,)
    finally:
        conn.close()
    for db in (index, data_dir / "system.db"):
        conn = sqlite3.connect(db)
        try:
            assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        finally:
            conn.close()


async def test_a_closed_backend_refuses_work(data_dir: Path) -> None:
    backend = await LocalBackend.open(data_dir)
    await backend.close()
    await backend.close()  # idempotent
    with pytest.raises(StoreError) as caught:
        await backend.list_accounts()
    assert caught.value.kind is ErrorKind.UNAVAILABLE


async def test_many_accounts_beyond_the_open_index_limit(data_dir: Path) -> None:
    """With room for two open indexes, five accounts still work: idle ones are closed."""
    local = await LocalBackend.open(data_dir, max_open_indexes=2)
    try:
        users = [await new_account(local, f"u{i}") for i in range(5)]
        for round_ in range(2):
            for user in users:
                result = await append(local, user.id, await inbox_of(local, user.id))
                assert result.uid == round_ + 1
        for user in users:
            inbox = await inbox_of(local, user.id)
            assert len(await read_body(local, user.id, inbox, result.uid)) > 0
        assert len(local._indexes) <= 2
    finally:
        await local.close()


async def test_message_files_are_private(
    local: LocalBackend, data_dir: Path, alice: AccountInfo
) -> None:
    result = await append(local, alice.id, await inbox_of(local, alice.id))
    path = tree_of(data_dir, alice.id) / "mail" / str(result.mailbox) / str(result.uid)
    assert os.stat(path).st_mode & 0o077 == 0
    assert os.stat(tree_of(data_dir, alice.id)).st_mode & 0o077 == 0


async def test_too_big_leaves_no_staging_file_even_before_the_context_ends(
    local: LocalBackend, data_dir: Path
) -> None:
    """A message that spilled to its temp file and then passed the limit: the file is gone
    as soon as TOO_BIG is raised."""
    async with local.stage(max_octets=600_000) as staged:
        await staged.write(b"Subject: big\r\n\r\n" + b"x" * 300_000)
        assert len(list((data_dir / "tmp").iterdir())) == 1
        with pytest.raises(StoreError) as caught:
            await staged.write(b"y" * 400_000)
        assert caught.value.kind is ErrorKind.TOO_BIG
        assert list((data_dir / "tmp").iterdir()) == []
        with pytest.raises(StoreError):
            await staged.finish()

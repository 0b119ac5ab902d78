"""What the local backend repairs when it opens, and what it must leave alone."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import sqlite3
import sys
from pathlib import Path

import pytest

from msgstore.core.errors import ErrorKind, StoreError
from msgstore.core.flags import DELETED, FlagOp
from msgstore.core.ids import AccountId, MailboxId, Uid, UidSet
from msgstore.core.names import MailboxName
from msgstore.storage.local import FaultPlan, LocalBackend
from msgstore.storage.local.files import temp_name
from tests.storage.local.conftest import tree_of
from tests.storage.support import append, inbox_of, message, new_account, read_body


def mail_files(data_dir: Path) -> list[str]:
    return sorted(str(p) for p in data_dir.rglob("mail/*/*"))


async def _seed(data_dir: Path) -> tuple[AccountId, MailboxId, Path]:
    """An account with two messages in INBOX; returns (account, inbox, inbox directory)."""
    backend = await LocalBackend.open(data_dir)
    try:
        alice = await new_account(backend, "alice")
        inbox = await inbox_of(backend, alice.id)
        await append(backend, alice.id, inbox, message("one"))
        await append(backend, alice.id, inbox, message("two"))
        return alice.id, inbox, tree_of(data_dir, alice.id) / "mail" / str(inbox)
    finally:
        await backend.close()


async def test_orphan_at_or_above_uidnext_is_removed(data_dir: Path) -> None:
    """A file linked by an append that never committed (UID >= UIDNEXT) goes; UIDNEXT stays."""
    account, inbox, box_dir = await _seed(data_dir)
    (box_dir / "3").write_bytes(b"torn")
    (box_dir / "7").write_bytes(b"copy that never committed")
    backend = await LocalBackend.open(data_dir)
    try:
        status = await backend.mailbox_status(account, inbox)  # opens the index: recovery
        assert status.uidnext == 3
        assert sorted(os.listdir(box_dir)) == ["1", "2"]
        result = await append(backend, account, inbox, message("three"))
        assert result.uid == 3
        assert await read_body(backend, account, inbox, result.uid) == message("three")
    finally:
        await backend.close()


async def test_orphan_of_an_expunged_uid_is_removed(data_dir: Path) -> None:
    """A crash after an expunge committed and before its unlink leaves the file: it goes."""
    account, inbox, box_dir = await _seed(data_dir)
    kept = (box_dir / "1").read_bytes()
    backend = await LocalBackend.open(data_dir, fault_plan=FaultPlan.parse("unlink:1+:EIO"))
    try:
        await backend.expunge(account, inbox, UidSet.from_uids([1]), only_deleted=False)
    finally:
        await backend.close()
    assert (box_dir / "1").read_bytes() == kept  # the unlink failed, the row is gone
    backend = await LocalBackend.open(data_dir)
    try:
        await backend.mailbox_status(account, inbox)
        assert sorted(os.listdir(box_dir)) == ["2"]
    finally:
        await backend.close()


async def test_unexplained_files_are_kept_and_logged(
    data_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The leftover of an expunged UID goes; an unknown mailbox directory and names that are
    not UIDs stay, and the unknown directory is logged (reconstruct decides about them)."""
    account, inbox, box_dir = await _seed(data_dir)
    backend = await LocalBackend.open(data_dir)
    try:
        await backend.store_flags(
            account, inbox, UidSet.from_uids([2]), FlagOp.ADD, frozenset({DELETED})
        )
        await backend.expunge(account, inbox)
    finally:
        await backend.close()
    mail = box_dir.parent
    (box_dir / "2").write_bytes(b"expunged, then restored from a backup")
    (box_dir / "notes").write_bytes(b"x")
    (mail / "4242").mkdir()
    (mail / "4242" / "1").write_bytes(b"y")
    caplog.set_level(logging.INFO, logger="msgstore")
    backend = await LocalBackend.open(data_dir)
    try:
        await backend.mailbox_status(account, inbox)
    finally:
        await backend.close()
    # UID 2 was expunged (recorded), so its file is an expunge leftover and goes.
    assert sorted(os.listdir(box_dir)) == ["1", "notes"]
    assert (mail / "4242" / "1").exists()
    assert any("4242" in r.getMessage() for r in caplog.records)


async def test_file_below_uidnext_never_expunged_is_kept(data_dir: Path) -> None:
    account, inbox, box_dir = await _seed(data_dir)
    backend = await LocalBackend.open(data_dir)
    try:
        await append(backend, account, inbox, message("three"))
    finally:
        await backend.close()
    # Simulate an index that lost the row of UID 3 (damage): remove it behind our back.
    conn = sqlite3.connect(box_dir.parent.parent / "index.db")
    try:
        conn.execute("DELETE FROM messages WHERE uid = 3")
        conn.commit()
    finally:
        conn.close()
    backend = await LocalBackend.open(data_dir)
    try:
        status = await backend.mailbox_status(account, inbox)
        assert status.messages == 2
        assert (box_dir / "3").exists(), "a file the index cannot explain was deleted"
    finally:
        await backend.close()


async def test_directory_of_a_deleted_mailbox_is_removed(data_dir: Path) -> None:
    """delete_mailbox commits, then removes the directory; a crash in between leaves it."""
    backend = await LocalBackend.open(data_dir)
    try:
        alice = await new_account(backend, "alice")
        box = await backend.create_mailbox(alice.id, MailboxName("Temp"))
        await append(backend, alice.id, box.id)
        box_dir = tree_of(data_dir, alice.id) / "mail" / str(box.id)
        saved = box_dir.with_name("saved")
        shutil.copytree(box_dir, saved)
        await backend.delete_mailbox(alice.id, MailboxName("Temp"))
        assert not box_dir.exists()
    finally:
        await backend.close()
    saved.rename(box_dir)  # as if the removal had not happened
    shutil.rmtree(box_dir.with_name("saved"), ignore_errors=True)
    backend = await LocalBackend.open(data_dir)
    try:
        await backend.list_mailboxes(alice.id)
        assert not box_dir.exists()
    finally:
        await backend.close()


async def test_stale_staging_files_are_removed_live_ones_kept(data_dir: Path) -> None:
    """Staging files of dead processes go at open; those of a live process stay."""
    backend = await LocalBackend.open(data_dir)
    await backend.close()
    tmp = data_dir / "tmp"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "import os; print(os.getpid())", stdout=asyncio.subprocess.PIPE
    )
    out, _ = await proc.communicate()
    dead_pid = int(out)
    stale = tmp / f"{dead_pid}-1-1-abcdef.msg"
    stale.write_bytes(b"partial")
    live = tmp / temp_name()
    live.write_bytes(b"being received")
    other = tmp / "not-ours.txt"
    other.write_bytes(b"?")
    backend = await LocalBackend.open(data_dir)
    try:
        assert not stale.exists()
        assert live.exists()
        assert other.exists()
    finally:
        await backend.close()


async def test_tree_of_a_deleted_account_is_removed(data_dir: Path) -> None:
    """delete_account commits, then removes the tree; a crash in between leaves it, and the
    next open removes it (its id was handed out, its row is gone)."""
    backend = await LocalBackend.open(data_dir)
    try:
        alice = await new_account(backend, "alice")
        bob = await new_account(backend, "bob")
        saved = data_dir / "saved-tree"
        shutil.copytree(tree_of(data_dir, bob.id), saved)
        await backend.delete_account("bob")
    finally:
        await backend.close()
    saved.rename(tree_of(data_dir, bob.id))
    backend = await LocalBackend.open(data_dir)
    try:
        assert not tree_of(data_dir, bob.id).exists()
        assert tree_of(data_dir, alice.id).exists()
    finally:
        await backend.close()


async def test_tree_with_an_unknown_id_is_kept_and_its_id_never_given_out(
    data_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A tree whose id system.db never handed out (system.db lost or restored from an older
    backup, or a crashed creation) may be a real account's mail: it is kept, logged, and no
    new account gets its id."""
    backend = await LocalBackend.open(data_dir)
    try:
        alice = await new_account(backend, "alice")
    finally:
        await backend.close()
    ghost = tree_of(data_dir, 999)
    shutil.copytree(tree_of(data_dir, alice.id), ghost)
    caplog.set_level(logging.WARNING, logger="msgstore")
    backend = await LocalBackend.open(data_dir)
    try:
        assert ghost.exists()
        assert any("999" in r.getMessage() for r in caplog.records)
        newcomer = await new_account(backend, "newcomer")
        assert newcomer.id > 999
        assert (ghost / "index.db").exists()
    finally:
        await backend.close()


async def test_lost_system_db_deletes_no_mail(data_dir: Path) -> None:
    """Without system.db the store opens empty but keeps every tree (for reconstruct),
    the public folders included."""
    backend = await LocalBackend.open(data_dir)
    try:
        alice = await new_account(backend, "alice")
        await append(backend, alice.id, await inbox_of(backend, alice.id), message("keep me"))
        public = await backend.public_account()
        await append(backend, public.id, await inbox_of(backend, public.id), message("public"))
    finally:
        await backend.close()
    before = mail_files(data_dir)
    for name in ("system.db", "system.db-wal", "system.db-shm"):
        (data_dir / name).unlink(missing_ok=True)
    backend = await LocalBackend.open(data_dir)
    try:
        assert await backend.list_accounts() == []
        public = await backend.public_account()
        inbox = await inbox_of(backend, public.id)
        assert await read_body(backend, public.id, inbox, Uid(1)) == message("public")
        assert (await new_account(backend, "someone")).id > alice.id
    finally:
        await backend.close()
    assert mail_files(data_dir) == before


async def test_replaced_index_is_picked_up_by_an_open_store(data_dir: Path) -> None:
    """reconstruct renames a rebuilt index.db into place while servers run: the next
    operation of an open store reads the new file."""
    account, inbox, _ = await _seed(data_dir)
    index = tree_of(data_dir, account) / "index.db"
    backend = await LocalBackend.open(data_dir)
    try:
        assert (await backend.mailbox_status(account, inbox)).messages == 2
        snapshot_copy = index.with_name("rebuilt.db")
        src = sqlite3.connect(index)
        dst = sqlite3.connect(snapshot_copy)
        try:
            src.backup(dst)
            dst.execute("DELETE FROM messages WHERE uid = 1")
            dst.commit()
        finally:
            src.close()
            dst.close()
        os.rename(snapshot_copy, index)
        assert (await backend.mailbox_status(account, inbox)).messages == 1
    finally:
        await backend.close()


async def test_missing_index_is_corrupted_and_never_recreated(data_dir: Path) -> None:
    account, inbox, box_dir = await _seed(data_dir)
    index = tree_of(data_dir, account) / "index.db"
    index.unlink()
    backend = await LocalBackend.open(data_dir)
    try:
        with pytest.raises(StoreError) as caught:
            await backend.snapshot(account, inbox)
        assert caught.value.kind is ErrorKind.CORRUPTED
        assert "reconstruct" in caught.value.public
    finally:
        await backend.close()
    assert not index.exists()
    assert sorted(os.listdir(box_dir)) == ["1", "2"]

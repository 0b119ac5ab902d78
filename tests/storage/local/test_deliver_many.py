"""``LocalBackend.deliver_many``: one staged message appended to many accounts in one call --
open indexes through their threads, the others through the fan-out threads and the idle
delivery indexes -- each destination with its own result, every copy durable and whole."""

from __future__ import annotations

from pathlib import Path

from msgstore.core.errors import ErrorKind, StoreError
from msgstore.core.names import INBOX, MailboxName
from msgstore.storage.base import AppendResult, SupportsDeliverMany
from msgstore.storage.local import FaultPlan
from tests.storage.helpers.store import check_account, open_local, read_body, tmp_files
from tests.storage.local.conftest import tree_of
from tests.storage.support import append, inbox_of, message, new_account


async def test_one_message_to_many_accounts_and_mailboxes(data_dir: Path) -> None:
    plan = FaultPlan(())
    backend = await open_local(data_dir, plan)
    try:
        assert isinstance(backend, SupportsDeliverMany)
        accounts = [await new_account(backend, f"user{i}") for i in range(12)]
        full = await new_account(backend, "full", message_limit=1)
        await append(backend, full.id, await inbox_of(backend, full.id))  # now at its limit
        warm = accounts[0]  # its index is open (a session would have it): the worker path
        lists = await backend.create_mailbox(warm.id, MailboxName("Lists"))
        data = message("fan-out", body="to everyone\r\n")
        destinations = [(a, None) for a in accounts] + [(warm, lists.id), (full, None)]
        async with backend.stage(max_octets=1 << 20) as staged:
            await staged.write(data)
            await staged.finish()
            results = await backend.deliver_many(staged, destinations, release=True)
            assert tmp_files(data_dir) != [], "several destinations: the temp file is kept"
        assert tmp_files(data_dir) == []
        assert isinstance(results[-1], StoreError)
        assert results[-1].kind is ErrorKind.OVER_QUOTA
        for (account, mailbox), result in zip(destinations[:-1], results[:-1], strict=True):
            assert isinstance(result, AppendResult), result
            assert result.account == account.id
            box = mailbox if mailbox is not None else await inbox_of(backend, account.id)
            assert result.mailbox == box
            assert await read_body(backend, account.id, box, result.uid) == data
            await check_account(backend, data_dir, account.id)
        # One file, hard-linked into every tree.
        inodes = {
            (tree_of(data_dir, r.account) / "mail" / str(r.mailbox) / str(r.uid)).stat().st_ino
            for r in results
            if isinstance(r, AppendResult)
        }
        assert len(inodes) == 1
        # Again: the idle delivery indexes are reused; UIDs go on.
        async with backend.stage(max_octets=1 << 20) as staged:
            await staged.write(data)
            await staged.finish()
            again = await backend.deliver_many(staged, [(a, None) for a in accounts[1:]])
        assert [r.uid for r in again if isinstance(r, AppendResult)] == [2] * 11
    finally:
        await backend.close()
    # Reopened (full recovery): nothing stray, everything there.
    backend = await open_local(data_dir)
    try:
        for account in accounts:
            await check_account(backend, data_dir, account.id)
    finally:
        await backend.close()


async def test_a_single_destination_releases_the_temp_file_and_fails_alone(
    data_dir: Path,
) -> None:
    backend = await open_local(data_dir)
    try:
        alice = await new_account(backend, "alice")
        bob = await new_account(backend, "bob")
        async with backend.stage(max_octets=1 << 20) as staged:
            await staged.write(message("one"))
            await staged.finish()
            (result,) = await backend.deliver_many(staged, [(alice, None)], release=True)
            assert isinstance(result, AppendResult)
            assert tmp_files(data_dir) == [], "released: removed right after the commit"
        assert result.mailbox == (await backend.get_mailbox(alice.id, INBOX)).id
        # A deleted account fails on its own; the others are stored.
        await backend.delete_account("bob")
        async with backend.stage(max_octets=1 << 20) as staged:
            await staged.write(message("two"))
            await staged.finish()
            results = await backend.deliver_many(staged, [(bob, None), (alice, None)])
        assert isinstance(results[0], StoreError)
        assert results[0].kind is ErrorKind.NOT_FOUND
        assert isinstance(results[1], AppendResult)
        assert results[1].uid == 2
        await check_account(backend, data_dir, alice.id)
    finally:
        await backend.close()


async def test_a_file_left_at_the_next_uid_is_moved_aside_not_replaced(data_dir: Path) -> None:
    """A delivery index is opened without recovery: a file already at the UID it takes (a
    crash between link and commit, or a tree restored with an older index) goes to
    orphans/ as recovery would move it, and the new message gets its own file."""
    backend = await open_local(data_dir)
    try:
        accounts = [await new_account(backend, f"user{i}") for i in range(2)]
        # Not through the backend: that would open the index for good (with recovery).
        (inbox_dir,) = (tree_of(data_dir, accounts[1].id) / "mail").iterdir()
        stray = inbox_dir / "1"
        stray.write_bytes(b"Subject: restored\r\n\r\nold\r\n")
        async with backend.stage(max_octets=1 << 20) as staged:
            await staged.write(message("new"))
            await staged.finish()
            results = await backend.deliver_many(staged, [(a, None) for a in accounts])
        assert all(isinstance(r, AppendResult) and r.uid == 1 for r in results)
        orphans = list((tree_of(data_dir, accounts[1].id) / "orphans").iterdir())
        assert [p.read_bytes() for p in orphans] == [b"Subject: restored\r\n\r\nold\r\n"]
        inbox = await inbox_of(backend, accounts[1].id)
        second = results[1]
        assert isinstance(second, AppendResult)
        assert await read_body(backend, accounts[1].id, inbox, second.uid) == message("new")
    finally:
        await backend.close()

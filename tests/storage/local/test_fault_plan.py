"""FaultPlan parsing and counting, and how the backend reports injected faults."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from msgstore.config import load_config
from msgstore.core.errors import ErrorKind, StoreError
from msgstore.core.ids import UidSet
from msgstore.core.names import MailboxName
from msgstore.storage.local import Fault, FaultPlan, LocalBackend
from msgstore.storage.open import FAULTS_ENV, open_backend
from tests.storage.local.conftest import tree_of
from tests.storage.support import append, inbox_of, message, new_account, read_body


def test_parse_items() -> None:
    plan = FaultPlan.parse("write:3:ENOSPC, fsync:1:EIO,rename:2+:EROFS")
    assert plan.faults == (
        Fault("write", 3, errno.ENOSPC),
        Fault("fsync", 1, errno.EIO),
        Fault("rename", 2, errno.EROFS, repeat=True),
    )
    assert "rename:2+:EROFS" in repr(plan)


@pytest.mark.parametrize(
    "text",
    ["write", "write:0:EIO", "write:x:EIO", "bogus:1:EIO", "write:1:ENOTANERRNO", "a:b:c:d"],
)
def test_parse_errors_are_params(text: str) -> None:
    with pytest.raises(StoreError) as caught:
        FaultPlan.parse(text)
    assert caught.value.kind is ErrorKind.PARAMS


def test_nth_call_fails_once_or_from_then_on() -> None:
    plan = FaultPlan.parse("write:2:EIO,fsync:2+:ENOSPC")
    plan.check("write")
    with pytest.raises(OSError, match="injected") as caught:
        plan.check("write")
    assert caught.value.errno == errno.EIO
    plan.check("write")
    plan.check("fsync")
    for _ in range(3):
        with pytest.raises(OSError, match="injected"):
            plan.check("fsync")
    assert (plan.count("write"), plan.count("fsync"), plan.count("link")) == (3, 4, 0)


def test_from_env_none_or_blank_is_no_plan() -> None:
    assert FaultPlan.from_env(None) is None
    assert FaultPlan.from_env("  ") is None
    plan = FaultPlan.from_env("link:1:EIO")
    assert plan is not None
    assert plan.faults == (Fault("link", 1, errno.EIO),)


async def test_open_backend_reads_msgstore_faults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """MSGSTORE_FAULTS reaches the backend: the first link fails an append with TEMP."""
    monkeypatch.setenv(FAULTS_ENV, "link:1:EIO")
    backend = await open_backend(load_config(data_dir=tmp_path / "data"))
    try:
        assert isinstance(backend, LocalBackend)
        alice = await new_account(backend, "alice")
        inbox = await inbox_of(backend, alice.id)
        with pytest.raises(StoreError) as caught:
            await append(backend, alice.id, inbox)
        assert caught.value.kind is ErrorKind.TEMP
        assert caught.value.detail is not None
        assert "injected" in caught.value.detail
        assert "injected" not in caught.value.public
        assert (await append(backend, alice.id, inbox)).uid == 1
    finally:
        await backend.close()


async def test_malformed_msgstore_faults_refuses_to_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(FAULTS_ENV, "write:first:EIO")
    with pytest.raises(StoreError) as caught:
        await open_backend(load_config(data_dir=tmp_path / "data"))
    assert caught.value.kind is ErrorKind.PARAMS


async def test_commit_fault_leaves_no_file_and_no_row(tmp_path: Path) -> None:
    """The index transaction fails after the file was linked: the file is removed again."""
    data_dir = tmp_path / "data"
    plan = FaultPlan(())
    backend = await LocalBackend.open(data_dir, fault_plan=plan)
    try:
        alice = await new_account(backend, "alice")
        inbox = await inbox_of(backend, alice.id)
        await append(backend, alice.id, inbox)
        plan.arm(plan.next_call("commit", errno.EIO))
        with pytest.raises(StoreError) as caught:
            await append(backend, alice.id, inbox, message("lost"))
        assert caught.value.kind is ErrorKind.TEMP
        box_dir = tree_of(data_dir, alice.id) / "mail" / str(inbox)
        assert sorted(p.name for p in box_dir.iterdir()) == ["1"]
        status = await backend.mailbox_status(alice.id, inbox)
        assert (status.messages, status.uidnext) == (1, 2)
        again = await append(backend, alice.id, inbox, message("kept"))
        assert again.uid == 2
        assert await read_body(backend, alice.id, inbox, again.uid) == message("kept")
    finally:
        await backend.close()


async def test_faults_in_copy_and_create_account_change_nothing(tmp_path: Path) -> None:
    """A failing link in COPY, a failing mkdir in account creation: TEMP, nothing half-done."""
    data_dir = tmp_path / "data"
    plan = FaultPlan(())
    backend = await LocalBackend.open(data_dir, fault_plan=plan)
    try:
        alice = await new_account(backend, "alice")
        inbox = await inbox_of(backend, alice.id)
        await append(backend, alice.id, inbox)
        box = await backend.create_mailbox(alice.id, MailboxName("Dest"))
        plan.arm(plan.next_call("link", errno.EIO))
        with pytest.raises(StoreError) as caught:
            await backend.copy(alice.id, inbox, UidSet.all(), alice.id, box.id)
        assert caught.value.kind is ErrorKind.TEMP
        assert (await backend.mailbox_status(alice.id, box.id)).messages == 0
        assert (await backend.get_quota(alice.id)).messages_used == 1
        plan.arm(Fault("mkdir", plan.count("mkdir") + 2, errno.EIO))  # 2nd mkdir of the tree
        with pytest.raises(StoreError) as caught2:
            await new_account(backend, "bob")
        assert caught2.value.kind is ErrorKind.TEMP
        with pytest.raises(StoreError) as caught3:
            await backend.get_account("bob")
        assert caught3.value.kind is ErrorKind.NOT_FOUND
        assert [a.name for a in await backend.list_accounts()] == ["alice"]
        bob = await new_account(backend, "bob")
        assert (await backend.list_mailboxes(bob.id))[0].name == "INBOX"
        trees = sorted(p.name for p in (data_dir / "users").glob("*/*"))
        assert trees == sorted([str(alice.id), str(bob.id)])
    finally:
        await backend.close()

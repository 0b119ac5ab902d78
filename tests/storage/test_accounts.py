"""Contract: accounts in the system database (create, look up, update, rename, delete)."""

from __future__ import annotations

import datetime as dt

import pytest

from msgstore.core.accounts import AccountChanges, AccountInfo, AccountKind
from msgstore.core.errors import ErrorKind, StoreError
from msgstore.core.ids import AccountId
from msgstore.core.names import INBOX, MailboxName
from msgstore.storage.base import Backend, NewAccount
from tests.storage.support import PASSWORD_HASH, append, inbox_of, new_account, read_body


async def test_create_account_has_inbox_and_given_mailboxes(backend: Backend) -> None:
    """A new account has INBOX plus the requested mailboxes with their special-use."""
    info = await backend.create_account(
        NewAccount(
            name="carol",
            password_hash=PASSWORD_HASH,
            mailboxes=[(MailboxName("Sent"), "\\Sent"), (MailboxName("Trash"), "\\Trash")],
        )
    )
    boxes = {m.name: m for m in await backend.list_mailboxes(info.id)}
    assert set(boxes) == {"INBOX", "Sent", "Trash"}
    assert boxes[MailboxName("Sent")].special_use == {"\\Sent"}
    assert boxes[MailboxName("Trash")].special_use == {"\\Trash"}
    assert boxes[INBOX].special_use == frozenset()


async def test_create_account_records_every_field(backend: Backend) -> None:
    """Kind, manager flag, limits and creation time round-trip; flags start enabled."""
    before = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=2)
    info = await new_account(
        backend, "Dave", kind=AccountKind.POP, manager=True, storage_limit_kib=10, message_limit=5
    )
    assert info.name == "Dave"
    assert info.kind is AccountKind.POP
    assert info.manager
    assert not info.login_disabled
    assert not info.receive_disabled
    assert (info.storage_limit_kib, info.message_limit) == (10, 5)
    assert before <= info.created <= dt.datetime.now(dt.UTC) + dt.timedelta(seconds=2)
    assert info.created.tzinfo is not None
    assert await backend.get_account_by_id(info.id) == info


async def test_duplicate_account_is_refused(backend: Backend, alice: AccountInfo) -> None:
    """A second account with the same name is EXISTS."""
    with pytest.raises(StoreError) as caught:
        await new_account(backend, "alice")
    assert caught.value.kind is ErrorKind.EXISTS


async def test_account_names_compare_case_insensitively(
    backend: Backend, alice: AccountInfo
) -> None:
    """``ALICE`` finds ``alice`` and cannot be created beside it; the stored case stays."""
    assert (await backend.get_account("ALICE")).id == alice.id
    assert (await backend.get_account("Alice")).name == "alice"
    with pytest.raises(StoreError) as caught:
        await new_account(backend, "ALICE")
    assert caught.value.kind is ErrorKind.EXISTS


@pytest.mark.parametrize(
    "name", ["", "has space", "a/b", "#hidden", "-neg", "anyone", "authenticated", "tab\there"]
)
async def test_invalid_account_names_are_params(backend: Backend, name: str) -> None:
    """Names that could collide with ACL identifiers or paths are refused with PARAMS."""
    with pytest.raises(StoreError) as caught:
        await new_account(backend, name)
    assert caught.value.kind is ErrorKind.PARAMS


async def test_unknown_account_is_not_found(backend: Backend) -> None:
    """get_account, get_account_by_id and get_password_hash of an unknown account: NOT_FOUND."""
    for call in (
        backend.get_account("nobody"),
        backend.get_password_hash("nobody"),
    ):
        with pytest.raises(StoreError) as caught:
            await call
        assert caught.value.kind is ErrorKind.NOT_FOUND
    with pytest.raises(StoreError) as caught2:
        await backend.get_account_by_id(AccountId(999_999))
    assert caught2.value.kind is ErrorKind.NOT_FOUND


async def test_list_accounts_is_sorted_and_hides_public(backend: Backend) -> None:
    """Accounts come sorted by name; the public pseudo-account is not listed."""
    for name in ("zed", "amy", "Bob"):
        await new_account(backend, name)
    names = [a.name for a in await backend.list_accounts()]
    assert names == ["amy", "Bob", "zed"]
    public = await backend.public_account()
    assert public.id not in {a.id for a in await backend.list_accounts()}


async def test_public_account_is_stable_and_has_an_inbox(backend: Backend) -> None:
    """The public pseudo-account exists from the start, always the same, with a tree."""
    first = await backend.public_account()
    assert (await backend.public_account()).id == first.id
    names = [m.name for m in await backend.list_mailboxes(first.id)]
    assert INBOX in names


async def test_update_account_changes_only_given_fields(
    backend: Backend, alice: AccountInfo
) -> None:
    """AccountChanges leaves None fields alone; -1 makes a limit unlimited."""
    info = await backend.update_account(
        "alice", AccountChanges(login_disabled=True, storage_limit_kib=100, message_limit=3)
    )
    assert info.login_disabled
    assert not info.receive_disabled
    assert (info.storage_limit_kib, info.message_limit) == (100, 3)
    info = await backend.update_account(
        "ALICE", AccountChanges(receive_disabled=True, kind=AccountKind.POP, manager=True)
    )
    assert info.login_disabled
    assert info.receive_disabled
    assert info.kind is AccountKind.POP
    assert info.manager
    assert info.storage_limit_kib == 100
    info = await backend.update_account("alice", AccountChanges(storage_limit_kib=-1))
    assert info.storage_limit_kib is None
    assert info.message_limit == 3
    quota = await backend.get_quota(alice.id)
    assert (quota.storage_limit_kib, quota.message_limit) == (None, 3)


async def test_update_unknown_account_is_not_found(backend: Backend) -> None:
    with pytest.raises(StoreError) as caught:
        await backend.update_account("ghost", AccountChanges(manager=True))
    assert caught.value.kind is ErrorKind.NOT_FOUND


async def test_password_hash_round_trips(backend: Backend, alice: AccountInfo) -> None:
    """The stored hash comes back with the account; set_password_hash replaces it."""
    info, stored = await backend.get_password_hash("Alice")
    assert info.id == alice.id
    assert stored == PASSWORD_HASH
    await backend.set_password_hash("alice", "$2b$12$newhash")
    assert (await backend.get_password_hash("alice"))[1] == "$2b$12$newhash"


async def test_rename_account_keeps_id_and_mail(backend: Backend, alice: AccountInfo) -> None:
    """A renamed account keeps its id, mailboxes and messages; the old name is free."""
    inbox = await inbox_of(backend, alice.id)
    sent = await append(backend, alice.id, inbox)
    renamed = await backend.rename_account("alice", "alicia")
    assert renamed.id == alice.id
    assert renamed.name == "alicia"
    assert (await backend.get_account("alicia")).id == alice.id
    with pytest.raises(StoreError) as caught:
        await backend.get_account("alice")
    assert caught.value.kind is ErrorKind.NOT_FOUND
    assert await read_body(backend, alice.id, inbox, sent.uid)
    assert (await backend.get_quota(alice.id)).root == "alicia"
    again = await new_account(backend, "alice")
    assert again.id != alice.id


async def test_rename_account_to_taken_name_is_exists(
    backend: Backend, alice: AccountInfo
) -> None:
    await new_account(backend, "bob")
    with pytest.raises(StoreError) as caught:
        await backend.rename_account("alice", "BOB")
    assert caught.value.kind is ErrorKind.EXISTS


async def test_rename_account_changing_only_case(backend: Backend, alice: AccountInfo) -> None:
    """Renaming to another case of the same name is allowed and changes the stored case."""
    renamed = await backend.rename_account("alice", "Alice")
    assert renamed.name == "Alice"
    assert renamed.id == alice.id


async def test_delete_account_removes_it_and_its_tree(
    backend: Backend, alice: AccountInfo
) -> None:
    """After delete, the name and id are unknown; a new account of that name is new."""
    await append(backend, alice.id, await inbox_of(backend, alice.id))
    await backend.delete_account("ALICE")
    with pytest.raises(StoreError) as caught:
        await backend.get_account("alice")
    assert caught.value.kind is ErrorKind.NOT_FOUND
    with pytest.raises(StoreError) as caught2:
        await backend.list_mailboxes(alice.id)
    assert caught2.value.kind is ErrorKind.NOT_FOUND
    fresh = await new_account(backend, "alice")
    assert fresh.id != alice.id
    assert (await backend.get_quota(fresh.id)).messages_used == 0


async def test_delete_unknown_account_is_not_found(backend: Backend) -> None:
    with pytest.raises(StoreError) as caught:
        await backend.delete_account("ghost")
    assert caught.value.kind is ErrorKind.NOT_FOUND


async def test_account_ids_are_never_reused(backend: Backend) -> None:
    """Ids name trees on disk: a deleted account's id is not given to the next one."""
    first = await new_account(backend, "first")
    await backend.delete_account("first")
    second = await new_account(backend, "second")
    assert second.id != first.id


async def test_public_account_cannot_be_deleted_or_renamed(backend: Backend) -> None:
    public = await backend.public_account()
    for call in (backend.delete_account(public.name), backend.rename_account(public.name, "x")):
        with pytest.raises(StoreError) as caught:
            await call
        assert caught.value.kind is ErrorKind.NOT_POSSIBLE
    assert (await backend.public_account()).id == public.id

"""Contract: ACL entries (RFC 4314), the shares directory, and rights via storage.access."""

from __future__ import annotations

import pytest

from msgstore.core.accounts import AccountInfo
from msgstore.core.acl import Rights
from msgstore.core.errors import ErrorKind, StoreError
from msgstore.core.ids import MailboxId
from msgstore.core.names import MailboxName
from msgstore.storage.access import listrights, myrights
from msgstore.storage.base import Backend
from tests.storage.support import new_account

R = Rights.parse


async def test_set_get_delete(backend: Backend, alice: AccountInfo, inbox: MailboxId) -> None:
    """Entries are stored per identifier; setting again replaces; delete removes."""
    assert await backend.get_acl(alice.id, inbox) == {}
    await backend.set_acl(alice.id, inbox, "bob", R("lr"))
    await backend.set_acl(alice.id, inbox, "anyone", R("l"))
    await backend.set_acl(alice.id, inbox, "bob", R("lrs"))
    assert await backend.get_acl(alice.id, inbox) == {"anyone": R("l"), "bob": R("lrs")}
    await backend.delete_acl(alice.id, inbox, "bob")
    assert await backend.get_acl(alice.id, inbox) == {"anyone": R("l")}
    await backend.set_acl(alice.id, inbox, "anyone", Rights())
    assert await backend.get_acl(alice.id, inbox) == {}


async def test_identifiers_compare_case_insensitively(
    backend: Backend, alice: AccountInfo, inbox: MailboxId
) -> None:
    """One entry per identifier whatever its case; ANYONE is the keyword anyone."""
    await backend.set_acl(alice.id, inbox, "Bob", R("l"))
    await backend.set_acl(alice.id, inbox, "BOB", R("lr"))
    await backend.set_acl(alice.id, inbox, "ANYONE", R("l"))
    acl = await backend.get_acl(alice.id, inbox)
    assert {k.casefold(): v for k, v in acl.items()} == {"bob": R("lr"), "anyone": R("l")}
    assert "anyone" in acl


async def test_negative_rights_are_stored(
    backend: Backend, alice: AccountInfo, inbox: MailboxId
) -> None:
    await backend.set_acl(alice.id, inbox, "anyone", R("lrs"))
    await backend.set_acl(alice.id, inbox, "-bob", R("s"))
    assert (await backend.get_acl(alice.id, inbox))["-bob"] == R("s")


async def test_bad_identifier_and_missing_mailbox(
    backend: Backend, alice: AccountInfo, inbox: MailboxId
) -> None:
    for bad in ("", "--x", "two words"):
        with pytest.raises(StoreError) as caught:
            await backend.set_acl(alice.id, inbox, bad, R("l"))
        assert caught.value.kind is ErrorKind.PARAMS, bad
    with pytest.raises(StoreError) as caught2:
        await backend.set_acl(alice.id, MailboxId(8080), "bob", R("l"))
    assert caught2.value.kind is ErrorKind.NOT_FOUND
    assert await backend.shared_with(["bob"]) == []


async def test_shared_with_finds_shares_of_other_trees(
    backend: Backend, alice: AccountInfo, inbox: MailboxId
) -> None:
    """The directory behind "Other Users/": which mailboxes name an identifier."""
    team = await backend.create_mailbox(alice.id, MailboxName("Team"))
    await backend.set_acl(alice.id, team.id, "bob", R("lr"))
    await backend.set_acl(alice.id, inbox, "anyone", R("l"))
    assert await backend.shared_with(["bob"]) == [(alice.id, team.id)]
    assert sorted(await backend.shared_with(["BOB", "anyone"])) == sorted(
        [(alice.id, inbox), (alice.id, team.id)]
    )
    await backend.delete_acl(alice.id, team.id, "bob")
    assert await backend.shared_with(["bob"]) == []


async def test_shares_go_with_the_mailbox_and_the_account(
    backend: Backend, alice: AccountInfo, inbox: MailboxId
) -> None:
    """Deleting a shared mailbox, or its owner, removes the directory entries; deleting the
    grantee removes the entries naming it."""
    team = await backend.create_mailbox(alice.id, MailboxName("Team"))
    await backend.set_acl(alice.id, team.id, "carol", R("lr"))
    await backend.delete_mailbox(alice.id, MailboxName("Team"))
    assert await backend.shared_with(["carol"]) == []
    bob = await new_account(backend, "bob")
    await backend.set_acl(alice.id, inbox, "bob", R("lr"))
    await backend.delete_account("bob")
    assert await backend.get_acl(alice.id, inbox) == {}
    assert await backend.shared_with(["bob"]) == []
    await backend.set_acl(alice.id, inbox, "dave", R("l"))
    await backend.delete_account("alice")
    assert await backend.shared_with(["dave"]) == []
    assert bob.id != alice.id


async def test_renamed_grantee_keeps_its_rights(
    backend: Backend, alice: AccountInfo, inbox: MailboxId
) -> None:
    """Renaming an account carries ACL entries naming it to the new name."""
    await new_account(backend, "bob")
    await backend.set_acl(alice.id, inbox, "bob", R("lr"))
    await backend.set_acl(alice.id, inbox, "-bob", R("r"))
    await backend.rename_account("bob", "robert")
    acl = await backend.get_acl(alice.id, inbox)
    assert acl == {"robert": R("lr"), "-robert": R("r")}
    assert await backend.shared_with(["robert"]) == [(alice.id, inbox)]
    assert await backend.shared_with(["bob"]) == []


async def test_myrights_owner_has_everything(
    backend: Backend, alice: AccountInfo, inbox: MailboxId
) -> None:
    await backend.set_acl(alice.id, inbox, "-alice", R("lrswipkxtea"))
    assert await myrights(backend, alice, alice.id, inbox) == Rights.all()


async def test_myrights_anyone_authenticated_and_negative(
    backend: Backend, alice: AccountInfo, inbox: MailboxId
) -> None:
    """anyone and authenticated apply to every logged-in account; -user removes rights."""
    bob = await new_account(backend, "bob")
    carol = await new_account(backend, "carol")
    assert await myrights(backend, bob, alice.id, inbox) == Rights()
    await backend.set_acl(alice.id, inbox, "anyone", R("l"))
    await backend.set_acl(alice.id, inbox, "authenticated", R("r"))
    await backend.set_acl(alice.id, inbox, "Bob", R("sw"))
    await backend.set_acl(alice.id, inbox, "-bob", R("r"))
    assert await myrights(backend, bob, alice.id, inbox) == R("lsw")
    assert await myrights(backend, carol, alice.id, inbox) == R("lr")


async def test_manager_holds_administer_everywhere(
    backend: Backend, alice: AccountInfo, inbox: MailboxId
) -> None:
    admin = await new_account(backend, "admin", manager=True)
    assert await myrights(backend, admin, alice.id, inbox) == R("a")
    await backend.set_acl(alice.id, inbox, "admin", R("lr"))
    assert await myrights(backend, admin, alice.id, inbox) == R("lra")


async def test_listrights(backend: Backend, alice: AccountInfo, inbox: MailboxId) -> None:
    """LISTRIGHTS: the owner always holds everything, a manager ``a``, others nothing."""
    await new_account(backend, "admin", manager=True)
    owner = await listrights(backend, alice.id, inbox, "ALICE")
    assert set(owner.required) >= set("lrswipkxtea")
    assert owner.optional == ()
    other = await listrights(backend, alice.id, inbox, "bob")
    assert other.required == ""
    assert "l" in other.optional
    assert "a" in (await listrights(backend, alice.id, inbox, "admin")).required
    with pytest.raises(StoreError) as caught:
        await listrights(backend, alice.id, MailboxId(4040), "bob")
    assert caught.value.kind is ErrorKind.NOT_FOUND

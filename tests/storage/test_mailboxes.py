"""Contract: mailboxes of one tree (create, delete, rename, list, subscribe, special-use,
status)."""

from __future__ import annotations

import pytest

from msgstore.core.accounts import AccountInfo
from msgstore.core.errors import ErrorKind, StoreError
from msgstore.core.flags import DELETED, SEEN
from msgstore.core.ids import MailboxId, Uid
from msgstore.core.names import INBOX, MailboxName
from msgstore.storage.base import Backend
from tests.storage.support import append, message, read_body

M = MailboxName


async def names(backend: Backend, alice: AccountInfo) -> list[str]:
    return [m.name for m in await backend.list_mailboxes(alice.id)]


async def test_create_makes_missing_parents(backend: Backend, alice: AccountInfo) -> None:
    """RFC 9051 §6.3.4: creating a/b/c creates a and a/b too; the list is sorted."""
    created = await backend.create_mailbox(alice.id, M("a/b/c"))
    assert created.name == "a/b/c"
    assert await names(backend, alice) == ["INBOX", "a", "a/b", "a/b/c"]
    await backend.create_mailbox(alice.id, M("a/d"))
    assert await names(backend, alice) == ["INBOX", "a", "a/b", "a/b/c", "a/d"]


async def test_create_existing_is_exists(backend: Backend, alice: AccountInfo) -> None:
    await backend.create_mailbox(alice.id, M("Work"))
    with pytest.raises(StoreError) as caught:
        await backend.create_mailbox(alice.id, M("Work"))
    assert caught.value.kind is ErrorKind.EXISTS


async def test_names_other_than_inbox_are_case_sensitive(
    backend: Backend, alice: AccountInfo
) -> None:
    """Only INBOX folds case: Work and work are two mailboxes."""
    await backend.create_mailbox(alice.id, M("Work"))
    await backend.create_mailbox(alice.id, M("work"))
    assert await names(backend, alice) == ["INBOX", "Work", "work"]


@pytest.mark.parametrize("spelling", ["inbox", "Inbox", "INBOX"])
async def test_inbox_in_any_case_exists(
    backend: Backend, alice: AccountInfo, spelling: str
) -> None:
    """Creating INBOX in any case is EXISTS; looking it up in any case finds it."""
    with pytest.raises(StoreError) as caught:
        await backend.create_mailbox(alice.id, M(spelling))
    assert caught.value.kind is ErrorKind.EXISTS
    assert (await backend.get_mailbox(alice.id, M(spelling))).name == INBOX


async def test_children_of_inbox_canonicalise(backend: Backend, alice: AccountInfo) -> None:
    """inbox/Sub is stored as INBOX/Sub and found by any case of its first level."""
    created = await backend.create_mailbox(alice.id, M("inbox/Sub"))
    assert created.name == "INBOX/Sub"
    assert (await backend.get_mailbox(alice.id, M("Inbox/Sub"))).id == created.id


async def test_invalid_names_are_params(backend: Backend, alice: AccountInfo) -> None:
    for bad in ("", "/a", "a/", "a//b", "../x", "a\x00b"):
        with pytest.raises(StoreError) as caught:
            await backend.create_mailbox(alice.id, M(bad))
        assert caught.value.kind is ErrorKind.PARAMS, bad


async def test_unknown_mailbox_is_not_found(backend: Backend, alice: AccountInfo) -> None:
    with pytest.raises(StoreError) as caught:
        await backend.get_mailbox(alice.id, M("Nope"))
    assert caught.value.kind is ErrorKind.NOT_FOUND
    with pytest.raises(StoreError) as caught2:
        await backend.mailbox_status(alice.id, MailboxId(987654))
    assert caught2.value.kind is ErrorKind.NOT_FOUND


async def test_delete_mailbox_removes_it_and_its_messages(
    backend: Backend, alice: AccountInfo
) -> None:
    """Deleting a mailbox drops its messages and their quota usage."""
    box = await backend.create_mailbox(alice.id, M("Old"))
    await append(backend, alice.id, box.id)
    await append(backend, alice.id, box.id)
    await backend.delete_mailbox(alice.id, M("Old"))
    assert await names(backend, alice) == ["INBOX"]
    quota = await backend.get_quota(alice.id)
    assert (quota.messages_used, quota.storage_used_octets) == (0, 0)
    with pytest.raises(StoreError) as caught:
        await backend.snapshot(alice.id, box.id)
    assert caught.value.kind is ErrorKind.NOT_FOUND


async def test_delete_with_children_is_has_children(backend: Backend, alice: AccountInfo) -> None:
    await backend.create_mailbox(alice.id, M("p/c"))
    with pytest.raises(StoreError) as caught:
        await backend.delete_mailbox(alice.id, M("p"))
    assert caught.value.kind is ErrorKind.HAS_CHILDREN
    await backend.delete_mailbox(alice.id, M("p/c"))
    await backend.delete_mailbox(alice.id, M("p"))
    assert await names(backend, alice) == ["INBOX"]


async def test_delete_sibling_with_common_prefix_is_allowed(
    backend: Backend, alice: AccountInfo
) -> None:
    """``ab`` is not a child of ``a``: deleting ``a`` is fine while ``ab`` exists."""
    await backend.create_mailbox(alice.id, M("a"))
    await backend.create_mailbox(alice.id, M("ab"))
    await backend.delete_mailbox(alice.id, M("a"))
    assert await names(backend, alice) == ["INBOX", "ab"]


async def test_delete_inbox_is_not_possible(backend: Backend, alice: AccountInfo) -> None:
    with pytest.raises(StoreError) as caught:
        await backend.delete_mailbox(alice.id, M("inbox"))
    assert caught.value.kind is ErrorKind.NOT_POSSIBLE


async def test_delete_unknown_is_not_found(backend: Backend, alice: AccountInfo) -> None:
    with pytest.raises(StoreError) as caught:
        await backend.delete_mailbox(alice.id, M("Ghost"))
    assert caught.value.kind is ErrorKind.NOT_FOUND


async def test_recreated_mailbox_gets_new_uidvalidity(
    backend: Backend, alice: AccountInfo
) -> None:
    """RFC 9051 §2.3.1.1: a name deleted and created again must not reuse UIDVALIDITY."""
    first = await backend.create_mailbox(alice.id, M("Again"))
    await backend.delete_mailbox(alice.id, M("Again"))
    second = await backend.create_mailbox(alice.id, M("Again"))
    assert second.uidvalidity != first.uidvalidity
    assert second.id != first.id
    status = await backend.mailbox_status(alice.id, second.id)
    assert (status.messages, status.uidnext) == (0, 1)


async def test_rename_moves_children_and_keeps_messages(
    backend: Backend, alice: AccountInfo
) -> None:
    """RFC 9051 §6.3.6: children follow; ids, UIDVALIDITY and messages stay."""
    parent = await backend.create_mailbox(alice.id, M("Projects"))
    child = await backend.create_mailbox(alice.id, M("Projects/2024"))
    sent = await append(backend, alice.id, child.id, message("kept"))
    await backend.rename_mailbox(alice.id, M("Projects"), M("Archive/Projects"))
    assert await names(backend, alice) == [
        "Archive",
        "Archive/Projects",
        "Archive/Projects/2024",
        "INBOX",
    ]
    moved = await backend.get_mailbox(alice.id, M("Archive/Projects/2024"))
    assert moved.id == child.id
    assert moved.uidvalidity == child.uidvalidity
    assert (await backend.get_mailbox(alice.id, M("Archive/Projects"))).id == parent.id
    assert await read_body(backend, alice.id, child.id, sent.uid) == message("kept")


async def test_rename_to_existing_is_exists(backend: Backend, alice: AccountInfo) -> None:
    await backend.create_mailbox(alice.id, M("A"))
    await backend.create_mailbox(alice.id, M("B"))
    for target in ("B", "INBOX", "inbox"):
        with pytest.raises(StoreError) as caught:
            await backend.rename_mailbox(alice.id, M("A"), M(target))
        assert caught.value.kind is ErrorKind.EXISTS, target


async def test_rename_under_itself_is_not_possible(backend: Backend, alice: AccountInfo) -> None:
    await backend.create_mailbox(alice.id, M("A"))
    with pytest.raises(StoreError) as caught:
        await backend.rename_mailbox(alice.id, M("A"), M("A/B"))
    assert caught.value.kind is ErrorKind.NOT_POSSIBLE
    assert await names(backend, alice) == ["A", "INBOX"]


async def test_rename_unknown_is_not_found(backend: Backend, alice: AccountInfo) -> None:
    with pytest.raises(StoreError) as caught:
        await backend.rename_mailbox(alice.id, M("Ghost"), M("Spirit"))
    assert caught.value.kind is ErrorKind.NOT_FOUND


async def test_rename_inbox_moves_messages_and_leaves_inbox_empty(
    backend: Backend, alice: AccountInfo, inbox: MailboxId
) -> None:
    """RFC 9051 §6.3.6: renaming INBOX moves its messages to a new mailbox; INBOX stays,
    empty, with the same id, and its children stay where they are."""
    bodies = [message(f"m{i}") for i in range(3)]
    for data in bodies:
        await append(backend, alice.id, inbox, data, flags=frozenset({SEEN}))
    await backend.create_mailbox(alice.id, M("INBOX/Child"))
    before = await backend.mailbox_status(alice.id, inbox)
    await backend.rename_mailbox(alice.id, M("INBOX"), M("Old Mail"))
    status = await backend.mailbox_status(alice.id, inbox)
    assert status.messages == 0
    assert status.uidnext == before.uidnext
    assert status.highestmodseq > before.highestmodseq
    old = await backend.get_mailbox(alice.id, M("Old Mail"))
    snap = await backend.snapshot(alice.id, old.id)
    assert len(snap.uids) == 3
    assert [await read_body(backend, alice.id, old.id, Uid(u)) for u in snap.uids] == bodies
    assert "INBOX/Child" in await names(backend, alice)
    changes = await backend.changes_since(alice.id, inbox, before.highestmodseq)
    assert len(changes.expunged) == 3
    quota = await backend.get_quota(alice.id)
    assert quota.messages_used == 3


async def test_subscriptions_may_name_missing_mailboxes(
    backend: Backend, alice: AccountInfo
) -> None:
    """RFC 9051 §6.3.7: subscribing needs no mailbox; list_mailboxes shows the flag."""
    await backend.create_mailbox(alice.id, M("Lists"))
    await backend.set_subscribed(alice.id, M("Lists"), True)
    await backend.set_subscribed(alice.id, M("Not/There"), True)
    await backend.set_subscribed(alice.id, M("inbox"), True)
    assert await backend.list_subscriptions(alice.id) == ["INBOX", "Lists", "Not/There"]
    flags = {m.name: m.subscribed for m in await backend.list_mailboxes(alice.id)}
    assert flags == {"INBOX": True, "Lists": True}
    await backend.set_subscribed(alice.id, M("Lists"), False)
    await backend.set_subscribed(alice.id, M("Lists"), False)
    assert await backend.list_subscriptions(alice.id) == ["INBOX", "Not/There"]
    assert not (await backend.get_mailbox(alice.id, M("Lists"))).subscribed


async def test_subscription_survives_delete(backend: Backend, alice: AccountInfo) -> None:
    """Deleting a mailbox does not unsubscribe it (RFC 9051 §6.3.9)."""
    await backend.create_mailbox(alice.id, M("Gone"))
    await backend.set_subscribed(alice.id, M("Gone"), True)
    await backend.delete_mailbox(alice.id, M("Gone"))
    assert await backend.list_subscriptions(alice.id) == ["Gone"]


async def test_special_use_set_and_clear(backend: Backend, alice: AccountInfo) -> None:
    """RFC 6154 attributes: set at create or later, canonical case, "" clears."""
    box = await backend.create_mailbox(alice.id, M("Junk"), special_use="\\junk")
    assert box.special_use == {"\\Junk"}
    await backend.set_special_use(alice.id, M("Junk"), "\\Trash")
    assert (await backend.get_mailbox(alice.id, M("Junk"))).special_use == {"\\Trash"}
    await backend.set_special_use(alice.id, M("Junk"), "")
    assert (await backend.get_mailbox(alice.id, M("Junk"))).special_use == frozenset()
    with pytest.raises(StoreError) as caught:
        await backend.set_special_use(alice.id, M("Junk"), "\\Bogus")
    assert caught.value.kind is ErrorKind.PARAMS
    with pytest.raises(StoreError) as caught2:
        await backend.set_special_use(alice.id, M("Ghost"), "\\Sent")
    assert caught2.value.kind is ErrorKind.NOT_FOUND


async def test_status_counts(backend: Backend, alice: AccountInfo, inbox: MailboxId) -> None:
    """STATUS: messages, unseen, deleted, size (RFC 8438), uidnext, recent."""
    empty = await backend.mailbox_status(alice.id, inbox)
    assert (empty.messages, empty.unseen, empty.deleted, empty.size_octets) == (0, 0, 0, 0)
    assert empty.uidnext == 1
    a = await append(backend, alice.id, inbox, message("a"), flags=frozenset({SEEN}))
    await append(backend, alice.id, inbox, message("bb"), flags=frozenset({DELETED}))
    await append(backend, alice.id, inbox, message("ccc"))
    status = await backend.mailbox_status(alice.id, inbox)
    assert status.messages == 3
    assert status.unseen == 2
    assert status.deleted == 1
    assert status.recent == 3
    assert status.uidnext == 4
    assert status.uidvalidity == a.uidvalidity
    assert status.size_octets == sum(len(message(s)) for s in ("a", "bb", "ccc"))
    assert status.highestmodseq >= 3


async def test_mailbox_ids_are_never_reused(backend: Backend, alice: AccountInfo) -> None:
    first = await backend.create_mailbox(alice.id, M("X"))
    await backend.delete_mailbox(alice.id, M("X"))
    second = await backend.create_mailbox(alice.id, M("Y"))
    assert second.id != first.id

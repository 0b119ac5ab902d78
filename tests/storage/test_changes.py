"""Contract: the change feed (``changes_since``) behind IDLE, NOOP and QRESYNC (RFC 7162)."""

from __future__ import annotations

import pytest

from msgstore.core.accounts import AccountInfo
from msgstore.core.errors import ErrorKind, StoreError
from msgstore.core.flags import DELETED, SEEN, FlagOp
from msgstore.core.ids import MailboxId, ModSeq, UidSet
from msgstore.core.names import MailboxName
from msgstore.storage.base import Backend
from tests.storage.support import append


async def test_nothing_changed_since_highestmodseq(
    backend: Backend, alice: AccountInfo, inbox: MailboxId
) -> None:
    await append(backend, alice.id, inbox)
    status = await backend.mailbox_status(alice.id, inbox)
    changes = await backend.changes_since(alice.id, inbox, status.highestmodseq)
    assert (changes.changed, changes.expunged) == ((), ())
    assert changes.highestmodseq == status.highestmodseq
    assert changes.uidnext == status.uidnext


async def test_new_messages_appear_with_flags(
    backend: Backend, alice: AccountInfo, inbox: MailboxId
) -> None:
    """Messages appended after the modseq are in ``changed``, in UID order, with flags."""
    await append(backend, alice.id, inbox)
    mark = (await backend.mailbox_status(alice.id, inbox)).highestmodseq
    await append(backend, alice.id, inbox, flags=frozenset({SEEN}))
    await append(backend, alice.id, inbox)
    changes = await backend.changes_since(alice.id, inbox, mark)
    assert [m.uid for m in changes.changed] == [2, 3]
    assert changes.changed[0].flags == {SEEN}
    assert changes.uidnext == 4
    assert changes.highestmodseq > mark


async def test_flag_changes_and_expunges_are_reported(
    backend: Backend, alice: AccountInfo, inbox: MailboxId
) -> None:
    """A STORE shows up in ``changed``, an EXPUNGE in ``expunged`` (QRESYNC VANISHED)."""
    for _ in range(4):
        await append(backend, alice.id, inbox)
    mark = (await backend.mailbox_status(alice.id, inbox)).highestmodseq
    await backend.store_flags(alice.id, inbox, UidSet.from_uids([1]), FlagOp.ADD, frozenset({"x"}))
    await backend.store_flags(
        alice.id, inbox, UidSet.from_uids([3, 4]), FlagOp.ADD, frozenset({DELETED})
    )
    await backend.expunge(alice.id, inbox, UidSet.from_uids([4]))
    changes = await backend.changes_since(alice.id, inbox, mark)
    assert [(m.uid, set(m.flags)) for m in changes.changed] == [(1, {"x"}), (3, {DELETED})]
    assert changes.expunged == (4,)
    assert all(m.modseq > mark for m in changes.changed)


async def test_changes_since_zero_is_everything(
    backend: Backend, alice: AccountInfo, inbox: MailboxId
) -> None:
    for _ in range(3):
        await append(backend, alice.id, inbox, flags=frozenset({DELETED}))
    await backend.expunge(alice.id, inbox, UidSet.from_uids([2]))
    changes = await backend.changes_since(alice.id, inbox, ModSeq(0))
    assert [m.uid for m in changes.changed] == [1, 3]
    assert changes.expunged == (2,)


async def test_changes_of_a_deleted_mailbox_is_not_found(
    backend: Backend, alice: AccountInfo
) -> None:
    box = await backend.create_mailbox(alice.id, MailboxName("Short-lived"))
    await backend.delete_mailbox(alice.id, MailboxName("Short-lived"))
    with pytest.raises(StoreError) as caught:
        await backend.changes_since(alice.id, box.id, ModSeq(0))
    assert caught.value.kind is ErrorKind.NOT_FOUND

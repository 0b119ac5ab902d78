"""Contract: COPY (RFC 4315 COPYUID) and MOVE (RFC 6851), within and across accounts."""

from __future__ import annotations

import datetime as dt

import pytest

from msgstore.core.accounts import AccountInfo
from msgstore.core.errors import ErrorKind, StoreError
from msgstore.core.flags import DELETED, FLAGGED, SEEN
from msgstore.core.ids import MailboxId, Uid, UidSet
from msgstore.core.names import MailboxName
from msgstore.storage.base import Backend, Want
from tests.storage.support import append, inbox_of, message, new_account, read_body

WHEN = dt.datetime(2020, 2, 29, 12, 0, 0, tzinfo=dt.timezone(dt.timedelta(hours=2)))


async def fill(backend: Backend, alice: AccountInfo, inbox: MailboxId) -> list[bytes]:
    bodies = [message(f"c{i}") for i in range(4)]
    for i, data in enumerate(bodies):
        flags = frozenset({SEEN, f"kw{i}"}) if i % 2 else frozenset({FLAGGED})
        await append(backend, alice.id, inbox, data, flags=flags, internal_date=WHEN)
    return bodies


async def test_copy_reports_uid_pairs_and_keeps_metadata(
    backend: Backend, alice: AccountInfo, inbox: MailboxId
) -> None:
    """COPYUID pairs in source order; flags, internal date, size and hash are copied."""
    bodies = await fill(backend, alice, inbox)
    dest = await backend.create_mailbox(alice.id, MailboxName("Copies"))
    await append(backend, alice.id, dest.id)  # dest UIDs start after this one
    result = await backend.copy(alice.id, inbox, UidSet.from_uids([2, 4, 9]), alice.id, dest.id)
    assert result.uidvalidity == dest.uidvalidity
    assert result.source_uids == (2, 4)
    assert result.dest_uids == (2, 3)
    src = await backend.fetch_meta(alice.id, inbox, UidSet.from_uids([2, 4]), Want.ALL)
    got = await backend.fetch_meta(alice.id, dest.id, UidSet.from_uids([2, 3]), Want.ALL)
    for a, b in zip(src, got, strict=True):
        assert (a.flags, a.internal_date, a.size, a.sha256) == (
            b.flags,
            b.internal_date,
            b.size,
            b.sha256,
        )
        assert (a.envelope, a.bodystructure, a.headers) == (b.envelope, b.bodystructure, b.headers)
    assert await read_body(backend, alice.id, dest.id, result.dest_uids[1]) == bodies[3]
    assert list((await backend.snapshot(alice.id, inbox)).uids) == [1, 2, 3, 4]


async def test_copy_charges_quota_and_messages_are_independent(
    backend: Backend, alice: AccountInfo, inbox: MailboxId
) -> None:
    """A copy counts against quota; expunging the source leaves the copy readable."""
    bodies = await fill(backend, alice, inbox)
    dest = await backend.create_mailbox(alice.id, MailboxName("Copies"))
    before = await backend.get_quota(alice.id)
    result = await backend.copy(alice.id, inbox, UidSet.all(), alice.id, dest.id)
    after = await backend.get_quota(alice.id)
    assert after.messages_used == before.messages_used * 2
    assert after.storage_used_octets == before.storage_used_octets * 2
    await backend.expunge(alice.id, inbox, None, only_deleted=False)
    for uid, data in zip(result.dest_uids, bodies, strict=True):
        assert await read_body(backend, alice.id, dest.id, uid) == data


async def test_copy_uidl_is_new_move_uidl_is_kept(
    backend: Backend, alice: AccountInfo, inbox: MailboxId
) -> None:
    """A copy is a new message (new UIDL, so POP3 sees distinct ones); a move is not."""
    await append(backend, alice.id, inbox, uidl="orig-1")
    await append(backend, alice.id, inbox, uidl="orig-2")
    await backend.copy(alice.id, inbox, UidSet.from_uids([1]), alice.id, inbox)
    metas = await backend.fetch_meta(alice.id, inbox, UidSet.all(), Want(0))
    assert metas[0].uidl == "orig-1"
    assert metas[2].uidl not in ("orig-1", "orig-2")
    dest = await backend.create_mailbox(alice.id, MailboxName("Moved"))
    await backend.move(alice.id, inbox, UidSet.from_uids([2]), alice.id, dest.id)
    (moved,) = await backend.fetch_meta(alice.id, dest.id, UidSet.all(), Want(0))
    assert moved.uidl == "orig-2"


async def test_copy_to_another_account(
    backend: Backend, alice: AccountInfo, inbox: MailboxId
) -> None:
    """Copies across trees keep bytes, flags and dates and charge the destination."""
    bodies = await fill(backend, alice, inbox)
    bob = await new_account(backend, "bob")
    bob_inbox = await inbox_of(backend, bob.id)
    result = await backend.copy(alice.id, inbox, UidSet.all(), bob.id, bob_inbox)
    assert result.dest_uids == (1, 2, 3, 4)
    assert [await read_body(backend, bob.id, bob_inbox, u) for u in result.dest_uids] == bodies
    src = await backend.fetch_meta(alice.id, inbox, UidSet.all(), Want.FLAGS)
    dst = await backend.fetch_meta(bob.id, bob_inbox, UidSet.all(), Want.FLAGS)
    assert [m.flags for m in src] == [m.flags for m in dst]
    assert [m.internal_date for m in dst] == [WHEN] * 4
    assert (await backend.get_quota(bob.id)).messages_used == 4
    assert (await backend.get_quota(alice.id)).messages_used == 4


async def test_move_within_account(backend: Backend, alice: AccountInfo, inbox: MailboxId) -> None:
    """MOVE: the messages leave the source (recorded as expunged) and arrive in the target;
    quota is unchanged."""
    bodies = await fill(backend, alice, inbox)
    dest = await backend.create_mailbox(alice.id, MailboxName("Moved"))
    before_quota = await backend.get_quota(alice.id)
    before = (await backend.mailbox_status(alice.id, inbox)).highestmodseq
    result = await backend.move(alice.id, inbox, UidSet.from_uids([1, 3]), alice.id, dest.id)
    assert result.source_uids == (1, 3)
    assert result.dest_uids == (1, 2)
    assert list((await backend.snapshot(alice.id, inbox)).uids) == [2, 4]
    assert await read_body(backend, alice.id, dest.id, Uid(2)) == bodies[2]
    changes = await backend.changes_since(alice.id, inbox, before)
    assert changes.expunged == (1, 3)
    assert await backend.get_quota(alice.id) == before_quota
    (meta,) = await backend.fetch_meta(alice.id, dest.id, UidSet.from_uids([1]), Want.FLAGS)
    assert meta.flags == {FLAGGED}


async def test_move_across_accounts(
    backend: Backend, alice: AccountInfo, inbox: MailboxId
) -> None:
    bodies = await fill(backend, alice, inbox)
    bob = await new_account(backend, "bob")
    bob_inbox = await inbox_of(backend, bob.id)
    result = await backend.move(alice.id, inbox, UidSet.from_uids([4]), bob.id, bob_inbox)
    assert (result.source_uids, result.dest_uids) == ((4,), (1,))
    assert await read_body(backend, bob.id, bob_inbox, result.dest_uids[0]) == bodies[3]
    assert list((await backend.snapshot(alice.id, inbox)).uids) == [1, 2, 3]
    assert (await backend.get_quota(alice.id)).messages_used == 3
    assert (await backend.get_quota(bob.id)).messages_used == 1


async def test_move_ignores_deleted_flag_of_other_messages(
    backend: Backend, alice: AccountInfo, inbox: MailboxId
) -> None:
    """MOVE expunges exactly the moved messages, not other \\Deleted ones (RFC 6851 §3.3)."""
    await append(backend, alice.id, inbox, flags=frozenset({DELETED}))
    await append(backend, alice.id, inbox)
    dest = await backend.create_mailbox(alice.id, MailboxName("T"))
    await backend.move(alice.id, inbox, UidSet.from_uids([2]), alice.id, dest.id)
    assert list((await backend.snapshot(alice.id, inbox)).uids) == [1]


async def test_copy_of_nothing_is_empty(
    backend: Backend, alice: AccountInfo, inbox: MailboxId
) -> None:
    dest = await backend.create_mailbox(alice.id, MailboxName("T"))
    result = await backend.copy(alice.id, inbox, UidSet.from_uids([5]), alice.id, dest.id)
    assert (result.source_uids, result.dest_uids) == ((), ())
    assert result.uidvalidity == dest.uidvalidity


async def test_copy_into_missing_mailbox_is_not_found(
    backend: Backend, alice: AccountInfo, inbox: MailboxId
) -> None:
    await append(backend, alice.id, inbox)
    with pytest.raises(StoreError) as caught:
        await backend.copy(alice.id, inbox, UidSet.all(), alice.id, MailboxId(5555))
    assert caught.value.kind is ErrorKind.NOT_FOUND
    assert (await backend.get_quota(alice.id)).messages_used == 1

"""Contract: quota (RFC 9208) -- limits, usage kept in the same transaction as each change,
and enforcement at exactly the limit, even under concurrency."""

from __future__ import annotations

import asyncio

import pytest

from msgstore.core.accounts import AccountInfo
from msgstore.core.errors import ErrorKind, StoreError
from msgstore.core.flags import DELETED
from msgstore.core.ids import MailboxId, UidSet
from msgstore.core.names import MailboxName
from msgstore.storage.base import Backend
from tests.storage.support import append, inbox_of, new_account


def octets(n: int) -> bytes:
    """A message of exactly ``n`` stored octets (CRLF-terminated)."""
    head = b"Subject: q\r\n\r\n"
    assert n >= len(head) + 2
    return head + b"x" * (n - len(head) - 2) + b"\r\n"


async def test_new_account_quota(backend: Backend) -> None:
    info = await new_account(backend, "q", storage_limit_kib=10, message_limit=5)
    quota = await backend.get_quota(info.id)
    assert quota.root == "q"
    assert (quota.storage_limit_kib, quota.message_limit) == (10, 5)
    assert (quota.storage_used_octets, quota.messages_used) == (0, 0)


async def test_set_quota_both_limits(backend: Backend, alice: AccountInfo) -> None:
    """set_quota sets both limits (None = unlimited) and the account shows them."""
    quota = await backend.set_quota(alice.id, storage_limit_kib=1, message_limit=None)
    assert (quota.storage_limit_kib, quota.message_limit) == (1, None)
    info = await backend.get_account("alice")
    assert (info.storage_limit_kib, info.message_limit) == (1, None)
    quota = await backend.set_quota(alice.id, storage_limit_kib=None, message_limit=7)
    assert (quota.storage_limit_kib, quota.message_limit) == (None, 7)
    with pytest.raises(StoreError) as caught:
        await backend.set_quota(alice.id, storage_limit_kib=-5, message_limit=None)
    assert caught.value.kind is ErrorKind.PARAMS


async def test_usage_follows_append_copy_expunge_delete(
    backend: Backend, alice: AccountInfo, inbox: MailboxId
) -> None:
    """Usage is the sum of stored sizes and the message count after every kind of change."""
    await append(backend, alice.id, inbox, octets(100))
    await append(backend, alice.id, inbox, octets(300), flags=frozenset({DELETED}))
    q = await backend.get_quota(alice.id)
    assert (q.storage_used_octets, q.messages_used) == (400, 2)
    box = await backend.create_mailbox(alice.id, MailboxName("Box"))
    await backend.copy(alice.id, inbox, UidSet.all(), alice.id, box.id)
    q = await backend.get_quota(alice.id)
    assert (q.storage_used_octets, q.messages_used) == (800, 4)
    await backend.expunge(alice.id, inbox)
    q = await backend.get_quota(alice.id)
    assert (q.storage_used_octets, q.messages_used) == (500, 3)
    await backend.delete_mailbox(alice.id, MailboxName("Box"))
    q = await backend.get_quota(alice.id)
    assert (q.storage_used_octets, q.messages_used) == (100, 1)
    assert q.storage_used_kib == 1


async def test_storage_limit_exactly_and_one_octet_over(
    backend: Backend, alice: AccountInfo, inbox: MailboxId
) -> None:
    """A message that fills the quota exactly is accepted; one more octet is OVER_QUOTA."""
    await backend.set_quota(alice.id, storage_limit_kib=1, message_limit=None)
    await append(backend, alice.id, inbox, octets(1000))
    with pytest.raises(StoreError) as caught:
        await append(backend, alice.id, inbox, octets(25))
    assert caught.value.kind is ErrorKind.OVER_QUOTA
    await append(backend, alice.id, inbox, octets(24))
    q = await backend.get_quota(alice.id)
    assert (q.storage_used_octets, q.messages_used) == (1024, 2)
    status = await backend.mailbox_status(alice.id, inbox)
    assert (status.messages, status.uidnext) == (2, 3)


async def test_message_limit_exactly_and_one_over(
    backend: Backend, alice: AccountInfo, inbox: MailboxId
) -> None:
    await backend.set_quota(alice.id, storage_limit_kib=None, message_limit=2)
    await append(backend, alice.id, inbox)
    await append(backend, alice.id, inbox)
    with pytest.raises(StoreError) as caught:
        await append(backend, alice.id, inbox)
    assert caught.value.kind is ErrorKind.OVER_QUOTA
    assert (await backend.get_quota(alice.id)).messages_used == 2


async def test_check_quota_false_stores_and_counts(
    backend: Backend, alice: AccountInfo, inbox: MailboxId
) -> None:
    """check_quota=False (e.g. a bounce to postmaster) stores over the limit and counts it."""
    await backend.set_quota(alice.id, storage_limit_kib=None, message_limit=0)
    async with backend.stage(max_octets=1000) as staged:
        await staged.write(octets(50))
        await staged.finish()
        await backend.append(alice.id, inbox, staged, check_quota=False)
    assert (await backend.get_quota(alice.id)).messages_used == 1


async def test_copy_checks_the_whole_set_first(
    backend: Backend, alice: AccountInfo, inbox: MailboxId
) -> None:
    """A copy that does not fit copies nothing (quota of the destination, for the set)."""
    for _ in range(3):
        await append(backend, alice.id, inbox, octets(100))
    box = await backend.create_mailbox(alice.id, MailboxName("Box"))
    await backend.set_quota(alice.id, storage_limit_kib=None, message_limit=5)
    with pytest.raises(StoreError) as caught:
        await backend.copy(alice.id, inbox, UidSet.all(), alice.id, box.id)
    assert caught.value.kind is ErrorKind.OVER_QUOTA
    assert (await backend.mailbox_status(alice.id, box.id)).messages == 0
    assert (await backend.get_quota(alice.id)).messages_used == 3


async def test_copy_to_another_account_checks_its_quota(
    backend: Backend, alice: AccountInfo, inbox: MailboxId
) -> None:
    await append(backend, alice.id, inbox, octets(2000))
    bob = await new_account(backend, "bob", storage_limit_kib=1)
    with pytest.raises(StoreError) as caught:
        await backend.copy(alice.id, inbox, UidSet.all(), bob.id, await inbox_of(backend, bob.id))
    assert caught.value.kind is ErrorKind.OVER_QUOTA
    assert (await backend.get_quota(bob.id)).messages_used == 0


async def test_concurrent_appends_never_overshoot(
    backend: Backend, alice: AccountInfo, inbox: MailboxId
) -> None:
    """20 appends race for room for 7: exactly 7 succeed, usage never passes the limit."""
    await backend.set_quota(alice.id, storage_limit_kib=7, message_limit=None)
    results = await asyncio.gather(
        *(append(backend, alice.id, inbox, octets(1024)) for _ in range(20)),
        return_exceptions=True,
    )
    stored = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, StoreError)]
    assert len(stored) == 7
    assert len(refused) == 13
    assert all(r.kind is ErrorKind.OVER_QUOTA for r in refused)
    q = await backend.get_quota(alice.id)
    assert (q.storage_used_octets, q.messages_used) == (7 * 1024, 7)
    assert (await backend.mailbox_status(alice.id, inbox)).messages == 7

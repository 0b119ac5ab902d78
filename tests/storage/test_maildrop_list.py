"""Contract: ``Backend.list_maildrop`` is ``fetch_meta(UidSet.all(), Want.FLAGS)`` projected
on what a POP3 maildrop keeps: (uid, size, uidl, seen, internal date in POSIX seconds)."""

from __future__ import annotations

import datetime as dt

import pytest

from msgstore.core.accounts import AccountInfo
from msgstore.core.errors import ErrorKind, StoreError
from msgstore.core.flags import FLAGGED, SEEN, FlagOp
from msgstore.core.ids import MailboxId, UidSet
from msgstore.core.names import MailboxName
from msgstore.storage.base import Backend, Want
from tests.storage.support import append, message


async def test_list_maildrop_matches_fetch_meta(
    backend: Backend, alice: AccountInfo, inbox: MailboxId
) -> None:
    when = dt.datetime(2024, 2, 29, 23, 59, 58, tzinfo=dt.timezone(dt.timedelta(hours=-5)))
    for n in range(10):
        await append(
            backend,
            alice.id,
            inbox,
            message(f"m{n}", body="x" * n + "\r\n"),
            flags=frozenset({SEEN}) if n % 3 == 0 else frozenset({FLAGGED, "$Work"}),
            internal_date=when + dt.timedelta(days=n),
            uidl="kept-from-migration" if n == 3 else None,
        )
    await backend.store_flags(
        alice.id, inbox, UidSet.from_uids([2]), FlagOp.ADD, frozenset({SEEN})
    )
    await backend.expunge(alice.id, inbox, UidSet.from_uids([5, 6]), only_deleted=False)

    rows = await backend.list_maildrop(alice.id, inbox)

    metas = await backend.fetch_meta(alice.id, inbox, UidSet.all(), Want.FLAGS)
    assert rows == [
        (m.uid, m.size, m.uidl, SEEN in m.flags, int(m.internal_date.timestamp())) for m in metas
    ]
    assert [r[0] for r in rows] == [1, 2, 3, 4, 7, 8, 9, 10]
    assert [r[3] for r in rows] == [True, True, False, True, True, False, False, True]
    assert rows[3][2] == "kept-from-migration"
    assert rows[0][4] == int(when.timestamp())
    assert all(type(r[3]) is bool for r in rows)


async def test_list_maildrop_of_empty_and_missing_mailboxes(
    backend: Backend, alice: AccountInfo, inbox: MailboxId
) -> None:
    assert await backend.list_maildrop(alice.id, inbox) == []
    other = await backend.create_mailbox(alice.id, MailboxName("Other"))
    await backend.delete_mailbox(alice.id, MailboxName("Other"))
    with pytest.raises(StoreError) as caught:
        await backend.list_maildrop(alice.id, other.id)
    assert caught.value.kind is ErrorKind.NOT_FOUND

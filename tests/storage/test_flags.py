"""Contract: STORE (RFC 9051 §6.4.6) with modseqs and UNCHANGEDSINCE (RFC 7162 §3.1.3)."""

from __future__ import annotations

import pytest

from msgstore.core.accounts import AccountInfo
from msgstore.core.errors import ErrorKind, StoreError
from msgstore.core.flags import ANSWERED, DELETED, FLAGGED, SEEN, FlagOp
from msgstore.core.ids import MailboxId, ModSeq, UidSet
from msgstore.storage.base import Backend, Want
from tests.storage.support import append


async def flags_of(backend: Backend, alice: AccountInfo, inbox: MailboxId) -> list[frozenset[str]]:
    return [m.flags for m in await backend.fetch_meta(alice.id, inbox, UidSet.all(), Want.FLAGS)]


async def test_add_remove_replace(backend: Backend, alice: AccountInfo, inbox: MailboxId) -> None:
    """+FLAGS adds, -FLAGS removes, FLAGS replaces, keywords included."""
    await append(backend, alice.id, inbox, flags=frozenset({SEEN}))
    one = UidSet.from_uids([1])
    await backend.store_flags(alice.id, inbox, one, FlagOp.ADD, frozenset({FLAGGED, "$Todo"}))
    assert await flags_of(backend, alice, inbox) == [{SEEN, FLAGGED, "$Todo"}]
    await backend.store_flags(alice.id, inbox, one, FlagOp.REMOVE, frozenset({SEEN, "$todo"}))
    assert await flags_of(backend, alice, inbox) == [{FLAGGED}]
    await backend.store_flags(alice.id, inbox, one, FlagOp.REPLACE, frozenset({ANSWERED, "x"}))
    assert await flags_of(backend, alice, inbox) == [{ANSWERED, "x"}]
    await backend.store_flags(alice.id, inbox, one, FlagOp.REPLACE, frozenset())
    assert await flags_of(backend, alice, inbox) == [frozenset()]


async def test_changed_messages_get_a_new_modseq(
    backend: Backend, alice: AccountInfo, inbox: MailboxId
) -> None:
    """Every changed message is reported with the new modseq, above the old HIGHESTMODSEQ."""
    for _ in range(3):
        await append(backend, alice.id, inbox)
    before = (await backend.mailbox_status(alice.id, inbox)).highestmodseq
    result = await backend.store_flags(
        alice.id, inbox, UidSet.from_uids([1, 3]), FlagOp.ADD, frozenset({SEEN})
    )
    assert [u.uid for u in result.updated] == [1, 3]
    assert all(u.modseq > before for u in result.updated)
    assert all(u.flags == {SEEN} for u in result.updated)
    assert not result.modified
    after = (await backend.mailbox_status(alice.id, inbox)).highestmodseq
    assert after == max(u.modseq for u in result.updated)
    metas = await backend.fetch_meta(alice.id, inbox, UidSet.all(), Want.FLAGS)
    assert metas[1].modseq < after


async def test_store_that_changes_nothing_does_not_bump(
    backend: Backend, alice: AccountInfo, inbox: MailboxId
) -> None:
    """Adding a flag already set (in any case) touches nothing: no update, same modseq."""
    await append(backend, alice.id, inbox, flags=frozenset({SEEN, "$Work"}))
    before = (await backend.mailbox_status(alice.id, inbox)).highestmodseq
    result = await backend.store_flags(
        alice.id, inbox, UidSet.all(), FlagOp.ADD, frozenset({"\\SEEN", "$WORK"})
    )
    assert result.updated == ()
    result = await backend.store_flags(
        alice.id, inbox, UidSet.all(), FlagOp.REMOVE, frozenset({DELETED})
    )
    assert result.updated == ()
    assert (await backend.mailbox_status(alice.id, inbox)).highestmodseq == before
    assert await flags_of(backend, alice, inbox) == [{SEEN, "$Work"}]


async def test_unchanged_since_reports_modified(
    backend: Backend, alice: AccountInfo, inbox: MailboxId
) -> None:
    """UNCHANGEDSINCE: messages changed after the given modseq are left alone and listed
    in MODIFIED; the others are stored."""
    first = await append(backend, alice.id, inbox)
    await append(backend, alice.id, inbox)
    mark = (await backend.mailbox_status(alice.id, inbox)).highestmodseq
    await backend.store_flags(alice.id, inbox, UidSet.from_uids([2]), FlagOp.ADD, frozenset({"a"}))
    result = await backend.store_flags(
        alice.id, inbox, UidSet.all(), FlagOp.ADD, frozenset({SEEN}), unchanged_since=mark
    )
    assert [u.uid for u in result.updated] == [first.uid]
    assert list(result.modified) == [2]
    assert await flags_of(backend, alice, inbox) == [{SEEN}, {"a"}]


async def test_unchanged_since_zero_modifies_nothing(
    backend: Backend, alice: AccountInfo, inbox: MailboxId
) -> None:
    """Every message has a modseq above 0, so UNCHANGEDSINCE 0 fails for all (RFC 7162)."""
    await append(backend, alice.id, inbox)
    result = await backend.store_flags(
        alice.id, inbox, UidSet.all(), FlagOp.ADD, frozenset({SEEN}), unchanged_since=ModSeq(0)
    )
    assert result.updated == ()
    assert list(result.modified) == [1]


async def test_store_on_missing_uids_is_silent(
    backend: Backend, alice: AccountInfo, inbox: MailboxId
) -> None:
    await append(backend, alice.id, inbox)
    result = await backend.store_flags(
        alice.id, inbox, UidSet.from_uids([5, 6]), FlagOp.ADD, frozenset({SEEN})
    )
    assert result.updated == ()
    assert not result.modified


async def test_invalid_flags_are_params(
    backend: Backend, alice: AccountInfo, inbox: MailboxId
) -> None:
    await append(backend, alice.id, inbox)
    for bad in ("\\Recent", "\\Bogus", "has space", "brace{"):
        with pytest.raises(StoreError) as caught:
            await backend.store_flags(alice.id, inbox, UidSet.all(), FlagOp.ADD, frozenset({bad}))
        assert caught.value.kind is ErrorKind.PARAMS, bad


async def test_keywords_keep_the_mailbox_spelling(
    backend: Backend, alice: AccountInfo, inbox: MailboxId
) -> None:
    """A keyword first used as $Work stays $Work when later given as $WORK on another
    message (keywords compare case-insensitively); the snapshot lists it once."""
    await append(backend, alice.id, inbox, flags=frozenset({"$Work"}))
    await append(backend, alice.id, inbox)
    await backend.store_flags(
        alice.id, inbox, UidSet.from_uids([2]), FlagOp.ADD, frozenset({"$WORK"})
    )
    assert await flags_of(backend, alice, inbox) == [{"$Work"}, {"$Work"}]
    assert {k.lower() for k in (await backend.snapshot(alice.id, inbox)).keywords} == {"$work"}


async def test_store_in_missing_mailbox_is_not_found(backend: Backend, alice: AccountInfo) -> None:
    with pytest.raises(StoreError) as caught:
        await backend.store_flags(
            alice.id, MailboxId(31337), UidSet.all(), FlagOp.ADD, frozenset({SEEN})
        )
    assert caught.value.kind is ErrorKind.NOT_FOUND

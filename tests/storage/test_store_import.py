"""Contract: ``SupportsStoreImport`` (optional; ``msgstore store copy`` fills a store with it).
Messages land at the given UIDs with the given modseqs, the mailbox state only ever rises,
the site-wide tables keep ids and timestamps, web sessions keep working, and accounts keep
their creation times; a repeated import changes nothing."""

from __future__ import annotations

import dataclasses
import datetime as dt
from contextlib import AsyncExitStack

import pytest

from msgstore.core.accounts import AccountInfo
from msgstore.core.errors import ErrorKind, StoreError
from msgstore.core.flags import SEEN
from msgstore.core.ids import AccountId, MailboxId, ModSeq, Uid, UidSet
from msgstore.storage.base import (
    AuditRecord,
    Backend,
    Feature,
    ForwardEntry,
    ImportedMessage,
    NewApiToken,
    NewWebSession,
    QueueEntry,
    SupportsStoreImport,
    Want,
)
from tests.storage.support import append, message, read_body

T0 = dt.datetime(2025, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
WHEN = dt.datetime(2024, 5, 6, 7, 8, 9, tzinfo=dt.timezone(dt.timedelta(hours=-5)))


def importer(backend: Backend) -> SupportsStoreImport | None:
    if Feature.STORE_IMPORT not in backend.features:
        return None
    assert isinstance(backend, SupportsStoreImport)
    return backend


async def put(
    backend: Backend, account: AccountInfo, mailbox: MailboxId, items: list[tuple[int, int]]
) -> None:
    """Import one message per (uid, modseq) in one call."""
    dest = importer(backend)
    assert dest is not None
    async with AsyncExitStack() as stack:
        batch = []
        for uid, modseq in items:
            staged = await stack.enter_async_context(backend.stage(max_octets=1 << 20))
            await staged.write(message(f"uid {uid}"))
            await staged.finish()
            batch.append(
                ImportedMessage(
                    staged=staged,
                    uid=Uid(uid),
                    modseq=ModSeq(modseq),
                    flags=frozenset({SEEN, "$Work"}) if uid % 2 else frozenset(),
                    internal_date=WHEN,
                    uidl=f"u{uid}",
                )
            )
        await dest.import_messages(account.id, mailbox, batch)


async def test_import_messages_keeps_uids_and_modseqs(
    backend: Backend, alice: AccountInfo, inbox: MailboxId
) -> None:
    dest = importer(backend)
    if dest is None:
        return  # optional: nothing to check
    await put(backend, alice, inbox, [(3, 40), (7, 12), (8, 55)])
    metas = await backend.fetch_meta(alice.id, inbox, UidSet.all(), Want.FLAGS)
    assert [(m.uid, m.modseq, m.uidl, m.internal_date) for m in metas] == [
        (3, 40, "u3", WHEN),
        (7, 12, "u7", WHEN),
        (8, 55, "u8", WHEN),
    ]
    assert metas[0].flags == {SEEN, "$Work"}
    assert await read_body(backend, alice.id, inbox, Uid(7)) == message("uid 7")
    status = await backend.mailbox_status(alice.id, inbox)
    assert (status.uidnext, status.highestmodseq, status.messages) == (9, 55, 3)
    assert (await backend.get_quota(alice.id)).messages_used == 3
    # A UID below UIDNEXT is refused and nothing of the batch stays.
    with pytest.raises(StoreError) as caught:
        await put(backend, alice, inbox, [(20, 60), (5, 61)])
    assert caught.value.kind is ErrorKind.NOT_POSSIBLE
    assert (await backend.mailbox_status(alice.id, inbox)).messages == 3
    with pytest.raises(StoreError) as caught:
        await put(backend, alice, inbox, [(30, 0)])
    assert caught.value.kind is ErrorKind.PARAMS
    # The next ordinary append continues above both.
    result = await append(backend, alice.id, inbox, message("after"))
    assert (result.uid, result.modseq) == (9, 56)


async def test_import_mailbox_state_rises_and_sets_the_expunge_floor(
    backend: Backend, alice: AccountInfo, inbox: MailboxId
) -> None:
    dest = importer(backend)
    if dest is None:
        return
    await put(backend, alice, inbox, [(2, 5), (4, 9)])
    await dest.import_mailbox_state(
        alice.id, inbox, uidnext=Uid(10), highestmodseq=ModSeq(30), keywords=frozenset({"$Old"})
    )
    await dest.import_mailbox_state(
        alice.id, inbox, uidnext=Uid(3), highestmodseq=ModSeq(2), keywords=frozenset()
    )
    status = await backend.mailbox_status(alice.id, inbox)
    assert (status.uidnext, status.highestmodseq) == (10, 30)  # never lowered
    snapshot = await backend.snapshot(alice.id, inbox)
    assert "$Old" in snapshot.keywords
    # Before the floor: every UID below UIDNEXT without a message counts as expunged.
    changes = await backend.changes_since(alice.id, inbox, ModSeq(6))
    assert set(changes.expunged) == {1, 3, 5, 6, 7, 8, 9}
    assert [m.uid for m in changes.changed] == [4]
    assert (await backend.changes_since(alice.id, inbox, ModSeq(30))).expunged == ()


async def test_site_tables_keep_ids_and_times(backend: Backend, alice: AccountInfo) -> None:
    dest = importer(backend)
    if dest is None:
        return
    entry = ForwardEntry("Info@Example.org", ("alice", "x@example.net"), False, T0)
    await dest.import_forward(entry)
    await dest.import_forward(entry)
    assert await backend.list_forwards() == [entry]

    queued = QueueEntry(
        id=41,
        sender="a@example.org",
        recipients=("r@example.net",),
        size=0,
        created=T0,
        next_attempt=T0 + dt.timedelta(minutes=5),
        attempts=3,
        last_error="451 later",
    )
    data = message("queued")
    assert await dest.import_queued(queued, data)
    assert not await dest.import_queued(queued, b"other")
    assert await backend.list_queue() == [dataclasses_replace_size(queued, len(data))]
    assert await backend.read_queued(41) == data
    async with backend.stage(max_octets=1 << 20) as staged:
        await staged.write(message("new"))
        await staged.finish()
        later = await backend.enqueue(staged, sender="", recipients=["s@example.net"])
    assert later.id > 41

    token = NewApiToken(alice.id, "ab" * 32, "script", T0, None)
    assert await dest.import_api_token(token, 17)
    assert not await dest.import_api_token(token, 18)
    assert await dest.import_api_token(NewApiToken(alice.id, "cd" * 32, "two", T0, T0), 17)
    exported = await dest.export_api_tokens()
    first, first_hash = exported[0]
    assert (first.id, first.account_name, first.label, first.created, first_hash) == (
        17,
        "alice",
        "script",
        T0,
        "ab" * 32,
    )
    assert exported[1][0].id > 17  # id 17 was taken: a new one
    assert exported[1][0].expires == T0

    records = [
        AuditRecord(T0 + dt.timedelta(microseconds=i), "os:root", "cli", f"op {i}", "{}", "ok", "")
        for i in range(3)
    ]
    await dest.import_audit(records)
    assert await backend.list_audit() == records[::-1]


def dataclasses_replace_size(entry: QueueEntry, size: int) -> QueueEntry:
    import dataclasses

    return dataclasses.replace(entry, size=size)


async def test_web_sessions_and_creation_times(backend: Backend, alice: AccountInfo) -> None:
    dest = importer(backend)
    if dest is None:
        return
    await dest.set_account_created(alice.id, T0)
    assert (await backend.get_account("alice")).created == T0
    assert (await backend.get_account_by_id(alice.id)).created == T0

    await backend.create_web_session(NewWebSession("aa" * 32, alice.id, "csrf", T0, "::1"))
    exported = await dest.export_web_sessions()
    assert [
        (s.id_hash, s.account_name, s.csrf_token, s.created, s.last_seen, s.address)
        for s in exported
    ] == [("aa" * 32, "alice", "csrf", T0, T0, "::1")]
    # A session moved from another store (same password hash, so the same fingerprint)
    # is a logged-in session here, with its times and CSRF token.
    hour = dt.timedelta(hours=1)
    moved = dataclasses.replace(exported[0], id_hash="bb" * 32, last_seen=T0 + hour)
    assert await dest.import_web_session(alice.id, moved)
    got = await backend.get_web_session("bb" * 32)
    assert got is not None
    assert (got.account.id, got.csrf_token, got.created, got.last_seen, got.address) == (
        alice.id,
        "csrf",
        T0,
        T0 + hour,
        "::1",
    )
    # Again: nothing new; last_seen only ever rises.
    assert not await dest.import_web_session(alice.id, dataclasses.replace(moved, last_seen=T0))
    got = await backend.get_web_session("bb" * 32)
    assert got is not None
    assert got.last_seen == T0 + hour
    assert not await dest.import_web_session(
        alice.id, dataclasses.replace(moved, last_seen=T0 + 2 * hour)
    )
    got = await backend.get_web_session("bb" * 32)
    assert got is not None
    assert got.last_seen == T0 + 2 * hour
    # A session that began under another password stays ended after the move.
    stale = dataclasses.replace(moved, id_hash="cc" * 32, credential="0" * 64)
    assert await dest.import_web_session(alice.id, stale)
    assert await backend.get_web_session("cc" * 32) is None
    assert {s.id_hash for s in await dest.export_web_sessions()} == {
        "aa" * 32,
        "bb" * 32,
        "cc" * 32,
    }
    # Ending the account's sessions ends the imported ones too.
    assert await backend.delete_web_sessions(alice.id) == 3

    nobody = AccountId(987654)
    for call in (
        dest.import_web_session(nobody, moved),
        dest.import_web_session((await backend.public_account()).id, moved),
        dest.set_account_created(nobody, T0),
    ):
        with pytest.raises(StoreError) as caught:
            await call
        assert caught.value.kind is ErrorKind.NOT_FOUND

"""Contract: staging and appending messages, snapshots, metadata, bodies, expunge."""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools

import pytest

from msgstore.core.accounts import AccountInfo
from msgstore.core.errors import ErrorKind, StoreError
from msgstore.core.flags import DELETED, FLAGGED, SEEN, FlagOp
from msgstore.core.ids import MailboxId, ModSeq, Uid, UidSet
from msgstore.core.names import MailboxName
from msgstore.storage.base import Backend, Want
from tests.storage.support import append, message, read_body

WANTS = [Want.ENVELOPE, Want.BODY, Want.BODYSTRUCTURE, Want.PARTMAP, Want.HEADERS]
FIELD = {
    Want.ENVELOPE: "envelope",
    Want.BODY: "body",
    Want.BODYSTRUCTURE: "bodystructure",
    Want.PARTMAP: "partmap",
    Want.HEADERS: "headers",
}


async def test_append_returns_appenduid_data(
    backend: Backend, alice: AccountInfo, inbox: MailboxId
) -> None:
    """APPENDUID (RFC 4315): the result names account, mailbox, UIDVALIDITY and UID."""
    first = await append(backend, alice.id, inbox)
    second = await append(backend, alice.id, inbox)
    info = await backend.get_mailbox(alice.id, MailboxName("INBOX"))
    assert (first.account, first.mailbox) == (alice.id, inbox)
    assert first.uidvalidity == info.uidvalidity
    assert (first.uid, second.uid) == (1, 2)
    assert second.modseq > first.modseq


async def test_body_is_stored_byte_exact(
    backend: Backend, alice: AccountInfo, inbox: MailboxId
) -> None:
    """What was appended (already CRLF) comes back identical, with its size and SHA-256."""
    data = message("exact", body="line one\r\nline two\r\n" * 500)
    result = await append(backend, alice.id, inbox, data)
    assert await read_body(backend, alice.id, inbox, result.uid) == data
    (meta,) = await backend.fetch_meta(alice.id, inbox, UidSet.from_uids([result.uid]), Want(0))
    assert meta.size == len(data)
    assert meta.sha256 == hashlib.sha256(data).digest()


@pytest.mark.parametrize(
    ("raw", "stored"),
    [
        (b"Subject: x\n\nbody\n", b"Subject: x\r\n\r\nbody\r\n"),
        (b"Subject: x\r\rbody", b"Subject: x\r\n\r\nbody\r\n"),
        (b"Subject: x\r\n\r\nno final newline", b"Subject: x\r\n\r\nno final newline\r\n"),
        (b"Subject: x\r\n\r\nmixed\nends\r\n", b"Subject: x\r\n\r\nmixed\r\nends\r\n"),
    ],
    ids=["lf", "cr", "no-final-crlf", "mixed"],
)
async def test_line_ends_are_normalised_to_crlf(
    backend: Backend, alice: AccountInfo, inbox: MailboxId, raw: bytes, stored: bytes
) -> None:
    """Bare LF and CR become CRLF and a final CRLF is added; the size is the stored size."""
    result = await append(backend, alice.id, inbox, raw)
    assert await read_body(backend, alice.id, inbox, result.uid) == stored
    status = await backend.mailbox_status(alice.id, inbox)
    assert status.size_octets == len(stored)


async def test_staged_message_written_in_pieces(
    backend: Backend, alice: AccountInfo, inbox: MailboxId
) -> None:
    """Chunks split anywhere (even between CR and LF) give the same stored bytes; size and
    sha256 of the staged message are those of the stored file. Large enough to spill."""
    data = message("pieces", body="0123456789abcdef\r\n" * 40_000)
    async with backend.stage(max_octets=len(data)) as staged:
        for i in range(0, len(data), 4097):
            await staged.write(data[i : i + 4097])
        await staged.finish()
        assert staged.size == len(data)
        assert staged.sha256 == hashlib.sha256(data).digest()
        result = await backend.append(alice.id, inbox, staged)
    assert await read_body(backend, alice.id, inbox, result.uid) == data


async def test_too_big_while_staging_stores_nothing(
    backend: Backend, alice: AccountInfo, inbox: MailboxId
) -> None:
    """TOO_BIG as soon as the normalised size passes max_octets; nothing is appended."""
    limit = 1000
    async with backend.stage(max_octets=limit) as staged:
        await staged.write(b"x" * 600)
        with pytest.raises(StoreError) as caught:
            await staged.write(b"y" * 600)
    assert caught.value.kind is ErrorKind.TOO_BIG
    status = await backend.mailbox_status(alice.id, inbox)
    assert (status.messages, status.uidnext) == (0, 1)


async def test_limit_counts_normalised_octets_and_final_crlf(
    backend: Backend, alice: AccountInfo, inbox: MailboxId
) -> None:
    """LF -> CRLF growth and the added final CRLF count against max_octets."""
    raw = b"a\n" * 10  # 20 octets raw, 30 normalised
    with pytest.raises(StoreError) as caught:
        await append(backend, alice.id, inbox, raw, max_octets=29)
    assert caught.value.kind is ErrorKind.TOO_BIG
    await append(backend, alice.id, inbox, raw, max_octets=30)
    with pytest.raises(StoreError) as caught2:
        await append(backend, alice.id, inbox, b"abc", max_octets=4)  # + CRLF = 5
    assert caught2.value.kind is ErrorKind.TOO_BIG


async def test_append_unfinished_message_is_params(
    backend: Backend, alice: AccountInfo, inbox: MailboxId
) -> None:
    async with backend.stage(max_octets=100) as staged:
        await staged.write(b"Subject: x\r\n\r\n")
        with pytest.raises(StoreError) as caught:
            await backend.append(alice.id, inbox, staged)
    assert caught.value.kind is ErrorKind.PARAMS


async def test_append_to_missing_mailbox_is_not_found(
    backend: Backend, alice: AccountInfo
) -> None:
    with pytest.raises(StoreError) as caught:
        await append(backend, alice.id, MailboxId(424242))
    assert caught.value.kind is ErrorKind.NOT_FOUND


@pytest.mark.parametrize("want", WANTS, ids=[FIELD[w] for w in WANTS])
async def test_fetch_meta_fills_exactly_the_wanted_field(
    backend: Backend, alice: AccountInfo, inbox: MailboxId, want: Want
) -> None:
    """Each Want flag fills its field; the others stay None. Flags, dates, size, hash and
    UIDL are always there."""
    await append(backend, alice.id, inbox, message("wanted"), flags=frozenset({SEEN}))
    (meta,) = await backend.fetch_meta(alice.id, inbox, UidSet.all(), want | Want.FLAGS)
    for flag, name in FIELD.items():
        value = getattr(meta, name)
        if flag == want:
            assert value, f"{name} was asked for but is empty"
        else:
            assert value is None, f"{name} was not asked for but is {value!r}"
    assert meta.flags == {SEEN}
    assert meta.uidl
    assert meta.internal_date.tzinfo is not None


async def test_fetch_meta_all_is_precomputed_metadata(
    backend: Backend, alice: AccountInfo, inbox: MailboxId
) -> None:
    """Want.ALL: ENVELOPE/BODYSTRUCTURE are ready-to-send parenthesised lists mentioning the
    subject and type; the header index knows the subject."""
    await append(backend, alice.id, inbox, message("Quarterly report"))
    (meta,) = await backend.fetch_meta(alice.id, inbox, UidSet.all(), Want.ALL)
    assert meta.envelope is not None
    assert meta.envelope.startswith(b"(")
    assert b"Quarterly report" in meta.envelope
    assert meta.bodystructure is not None
    assert meta.bodystructure.startswith(b"(")
    assert b"TEXT" in meta.bodystructure.upper()
    assert meta.body is not None
    assert meta.body.startswith(b"(")
    assert meta.partmap
    assert meta.headers is not None
    assert "quarterly report" in meta.headers.get("subject", "").lower()


async def test_fetch_meta_skips_missing_uids_and_keeps_order(
    backend: Backend, alice: AccountInfo, inbox: MailboxId
) -> None:
    """Ranges over expunged or never-used UIDs return only existing messages, ascending."""
    for i in range(6):
        await append(backend, alice.id, inbox, message(f"n{i}"), flags=frozenset())
    await backend.store_flags(
        alice.id, inbox, UidSet.from_uids([2, 4]), FlagOp.ADD, frozenset({DELETED})
    )
    await backend.expunge(alice.id, inbox)
    metas = await backend.fetch_meta(alice.id, inbox, UidSet.of([(1, 5), (9, 20)]), Want.FLAGS)
    assert [m.uid for m in metas] == [1, 3, 5]
    many = UidSet.from_uids(range(1, 400, 2))  # many ranges
    assert [m.uid for m in await backend.fetch_meta(alice.id, inbox, many, Want(0))] == [1, 3, 5]


async def test_internal_date_round_trips_with_its_zone(
    backend: Backend, alice: AccountInfo, inbox: MailboxId
) -> None:
    """INTERNALDATE keeps its UTC offset (seconds precision, as IMAP shows it)."""
    zone = dt.timezone(dt.timedelta(hours=5, minutes=30))
    when = dt.datetime(2021, 3, 4, 5, 6, 7, tzinfo=zone)
    west = dt.datetime(1999, 12, 31, 23, 59, 59, tzinfo=dt.timezone(dt.timedelta(hours=-8)))
    await append(backend, alice.id, inbox, internal_date=when)
    await append(backend, alice.id, inbox, internal_date=west)
    metas = await backend.fetch_meta(alice.id, inbox, UidSet.all(), Want.FLAGS)
    assert metas[0].internal_date == when
    assert metas[0].internal_date.utcoffset() == dt.timedelta(hours=5, minutes=30)
    assert metas[1].internal_date == west
    assert metas[1].internal_date.utcoffset() == dt.timedelta(hours=-8)


async def test_internal_date_defaults_to_now(
    backend: Backend, alice: AccountInfo, inbox: MailboxId
) -> None:
    before = dt.datetime.now(dt.UTC).replace(microsecond=0)
    await append(backend, alice.id, inbox)
    (meta,) = await backend.fetch_meta(alice.id, inbox, UidSet.all(), Want.FLAGS)
    assert before <= meta.internal_date <= dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1)


async def test_naive_internal_date_is_params(
    backend: Backend, alice: AccountInfo, inbox: MailboxId
) -> None:
    with pytest.raises(StoreError) as caught:
        await append(backend, alice.id, inbox, internal_date=dt.datetime(2020, 1, 1))
    assert caught.value.kind is ErrorKind.PARAMS


async def test_flags_and_keywords_round_trip(
    backend: Backend, alice: AccountInfo, inbox: MailboxId
) -> None:
    """System flags are canonicalised; keywords keep their case; \\Recent is refused."""
    await append(
        backend, alice.id, inbox, flags=frozenset({"\\seen", "\\FLAGGED", "$Work", "todo"})
    )
    (meta,) = await backend.fetch_meta(alice.id, inbox, UidSet.all(), Want.FLAGS)
    assert meta.flags == {SEEN, FLAGGED, "$Work", "todo"}
    with pytest.raises(StoreError) as caught:
        await append(backend, alice.id, inbox, flags=frozenset({"\\Recent"}))
    assert caught.value.kind is ErrorKind.PARAMS


async def test_uidl_given_or_derived(
    backend: Backend, alice: AccountInfo, inbox: MailboxId
) -> None:
    """A given UIDL (migration) is kept; otherwise each message gets a distinct one."""
    await append(backend, alice.id, inbox, uidl="legacy-0001")
    await append(backend, alice.id, inbox)
    await append(backend, alice.id, inbox)
    metas = await backend.fetch_meta(alice.id, inbox, UidSet.all(), Want(0))
    assert metas[0].uidl == "legacy-0001"
    assert len({m.uidl for m in metas}) == 3


async def test_snapshot_lists_uids_first_unseen_and_keywords(
    backend: Backend, alice: AccountInfo, inbox: MailboxId
) -> None:
    """SELECT data: sorted UIDs, lowest unseen UID, keywords, UIDNEXT, HIGHESTMODSEQ."""
    await append(backend, alice.id, inbox, flags=frozenset({SEEN}))
    await append(backend, alice.id, inbox, flags=frozenset({SEEN, "$Label1"}))
    await append(backend, alice.id, inbox, flags=frozenset({"Later"}))
    await append(backend, alice.id, inbox)
    snap = await backend.snapshot(alice.id, inbox)
    assert list(snap.uids) == [1, 2, 3, 4]
    assert snap.uids.typecode == "I"
    assert snap.first_unseen == 3
    assert snap.keywords >= {"$Label1", "Later"}
    assert snap.uidnext == 5
    status = await backend.mailbox_status(alice.id, inbox)
    assert snap.highestmodseq == status.highestmodseq
    assert snap.uidvalidity == status.uidvalidity
    assert snap.recent_uids == frozenset()


async def test_snapshot_of_empty_and_all_seen_mailbox(
    backend: Backend, alice: AccountInfo, inbox: MailboxId
) -> None:
    snap = await backend.snapshot(alice.id, inbox)
    assert (list(snap.uids), snap.first_unseen, snap.uidnext) == ([], None, 1)
    await append(backend, alice.id, inbox, flags=frozenset({SEEN}))
    assert (await backend.snapshot(alice.id, inbox)).first_unseen is None


async def test_recent_is_claimed_by_one_session_only(
    backend: Backend, alice: AccountInfo, inbox: MailboxId
) -> None:
    """IMAP4rev1 \\Recent: the first claiming snapshot gets new UIDs; the next gets none
    until more mail arrives; a non-claiming snapshot never takes them."""
    await append(backend, alice.id, inbox)
    await append(backend, alice.id, inbox)
    peek = await backend.snapshot(alice.id, inbox)
    assert peek.recent_uids == frozenset()
    first = await backend.snapshot(alice.id, inbox, claim_recent=True)
    assert first.recent_uids == {Uid(1), Uid(2)}
    second = await backend.snapshot(alice.id, inbox, claim_recent=True)
    assert second.recent_uids == frozenset()
    assert (await backend.mailbox_status(alice.id, inbox)).recent == 0
    await append(backend, alice.id, inbox)
    assert (await backend.mailbox_status(alice.id, inbox)).recent == 1
    third = await backend.snapshot(alice.id, inbox, claim_recent=True)
    assert third.recent_uids == {Uid(3)}


async def test_open_body_reads_ranges_and_chunks(
    backend: Backend, alice: AccountInfo, inbox: MailboxId
) -> None:
    """read(offset, length) and chunks() are byte-exact, clipped at the end."""
    data = message("ranges", body="".join(f"line {i:05d}\r\n" for i in range(20_000)))
    result = await append(backend, alice.id, inbox, data)
    async with backend.open_body(alice.id, inbox, result.uid) as reader:
        assert reader.size == len(data)
        assert await reader.read(0, 10) == data[:10]
        assert await reader.read(1000, 5000) == data[1000:6000]
        assert await reader.read(len(data) - 5, 100) == data[-5:]
        assert await reader.read(len(data), 10) == b""
        pieces = [p async for p in reader.chunks(7, len(data), chunk=4096)]
        assert b"".join(pieces) == data[7:]
        assert all(len(p) <= 4096 for p in pieces)
        part = [p async for p in reader.chunks(100, 50)]
        assert b"".join(part) == data[100:150]


async def test_open_body_of_unknown_uid(
    backend: Backend, alice: AccountInfo, inbox: MailboxId
) -> None:
    """An expunged UID is EXPUNGED; a UID never given out is NOT_FOUND."""
    result = await append(backend, alice.id, inbox, flags=frozenset({DELETED}))
    await backend.expunge(alice.id, inbox)
    with pytest.raises(StoreError) as caught:
        await read_body(backend, alice.id, inbox, result.uid)
    assert caught.value.kind in (ErrorKind.EXPUNGED, ErrorKind.NOT_FOUND)
    with pytest.raises(StoreError) as caught2:
        await read_body(backend, alice.id, inbox, Uid(99))
    assert caught2.value.kind is ErrorKind.NOT_FOUND


async def test_expunge_only_deleted(
    backend: Backend, alice: AccountInfo, inbox: MailboxId
) -> None:
    """IMAP EXPUNGE removes only \\Deleted messages, reported ascending; quota drops."""
    await append(backend, alice.id, inbox, message("keep"))
    await append(backend, alice.id, inbox, message("go1"), flags=frozenset({DELETED}))
    await append(backend, alice.id, inbox, message("keep2"))
    await append(backend, alice.id, inbox, message("go2"), flags=frozenset({DELETED}))
    assert await backend.expunge(alice.id, inbox) == [2, 4]
    assert list((await backend.snapshot(alice.id, inbox)).uids) == [1, 3]
    quota = await backend.get_quota(alice.id)
    assert quota.messages_used == 2
    assert quota.storage_used_octets == len(message("keep")) + len(message("keep2"))
    assert await backend.expunge(alice.id, inbox) == []


async def test_uid_expunge_limits_to_the_set(
    backend: Backend, alice: AccountInfo, inbox: MailboxId
) -> None:
    """UID EXPUNGE (RFC 4315): only \\Deleted messages inside the given UIDs go."""
    for _ in range(3):
        await append(backend, alice.id, inbox, flags=frozenset({DELETED}))
    assert await backend.expunge(alice.id, inbox, UidSet.from_uids([2, 3])) == [2, 3]
    assert list((await backend.snapshot(alice.id, inbox)).uids) == [1]


async def test_expunge_all_regardless_of_flags(
    backend: Backend, alice: AccountInfo, inbox: MailboxId
) -> None:
    """POP3 QUIT: only_deleted=False removes every message in the set."""
    for _ in range(3):
        await append(backend, alice.id, inbox)
    assert await backend.expunge(alice.id, inbox, UidSet.from_uids([1, 3]), only_deleted=False)
    assert list((await backend.snapshot(alice.id, inbox)).uids) == [2]
    assert await backend.expunge(alice.id, inbox, None, only_deleted=False) == [2]
    assert (await backend.get_quota(alice.id)).messages_used == 0


async def test_uids_are_never_reused_after_expunge(
    backend: Backend, alice: AccountInfo, inbox: MailboxId
) -> None:
    """After expunging the highest UID, the next append still gets a new one."""
    await append(backend, alice.id, inbox)
    await append(backend, alice.id, inbox, flags=frozenset({DELETED}))
    await backend.expunge(alice.id, inbox)
    result = await append(backend, alice.id, inbox)
    assert result.uid == 3


async def test_uidnext_and_highestmodseq_only_grow(
    backend: Backend, alice: AccountInfo, inbox: MailboxId
) -> None:
    """Every append, flag change and expunge raises HIGHESTMODSEQ; UIDNEXT never drops."""
    seen: list[tuple[int, int]] = []

    async def record() -> None:
        status = await backend.mailbox_status(alice.id, inbox)
        seen.append((status.uidnext, status.highestmodseq))

    await record()
    await append(backend, alice.id, inbox)
    await record()
    await backend.store_flags(alice.id, inbox, UidSet.all(), FlagOp.ADD, frozenset({DELETED}))
    await record()
    await backend.expunge(alice.id, inbox)
    await record()
    await append(backend, alice.id, inbox)
    await record()
    uidnexts = [u for u, _ in seen]
    modseqs = [m for _, m in seen]
    assert uidnexts == sorted(uidnexts)
    assert all(b > a for a, b in itertools.pairwise(modseqs))


async def test_fetch_meta_of_missing_mailbox_is_not_found(
    backend: Backend, alice: AccountInfo
) -> None:
    with pytest.raises(StoreError) as caught:
        await backend.fetch_meta(alice.id, MailboxId(777), UidSet.all(), Want.FLAGS)
    assert caught.value.kind is ErrorKind.NOT_FOUND


async def test_modseq_of_each_message_is_reported(
    backend: Backend, alice: AccountInfo, inbox: MailboxId
) -> None:
    first = await append(backend, alice.id, inbox)
    second = await append(backend, alice.id, inbox)
    metas = await backend.fetch_meta(alice.id, inbox, UidSet.all(), Want.FLAGS)
    assert [m.modseq for m in metas] == [first.modseq, second.modseq]
    assert all(isinstance(m.modseq, int) and m.modseq > ModSeq(0) for m in metas)

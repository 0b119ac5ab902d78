"""The delivery pipeline against a real local store: outcomes, staging once, streaming."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator, Iterable
from pathlib import Path

import pytest

from msgstore.auth.passwords import hash_password
from msgstore.config import Config, load_config
from msgstore.core.accounts import AccountChanges, AccountKind
from msgstore.core.errors import ErrorKind
from msgstore.core.ids import Uid, UidSet
from msgstore.core.names import INBOX, MailboxName
from msgstore.delivery.pipeline import Accepted, Deferred, DeliveryPipeline, Rejected, Target
from msgstore.management.accounts import AccountAdd
from msgstore.management.operation import UNLIMITED, Limit, ManagementContext, Secret
from msgstore.storage.base import Backend, Want
from msgstore.storage.open import open_backend

MESSAGE = b"From: a@example.org\r\nSubject: test\r\n\r\nhello\r\n"


@pytest.fixture
async def ctx(tmp_path: Path) -> AsyncIterator[ManagementContext]:
    config = load_config(data_dir=tmp_path / "data")
    backend = await open_backend(config)
    try:
        yield ManagementContext(backend=backend, config=config, hash_password=hash_password)
    finally:
        await backend.close()


async def add(
    ctx: ManagementContext,
    name: str,
    *,
    kind: AccountKind = AccountKind.IMAP,
    quota: Limit = UNLIMITED,
    messages: Limit = UNLIMITED,
) -> None:
    await AccountAdd(
        name=name, password=Secret("pw"), kind=kind, quota=quota, messages=messages
    ).run(ctx)


async def chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def stored(backend: Backend, account: str, mailbox: MailboxName = INBOX) -> list[bytes]:
    """The bytes of every message in a mailbox, in UID order."""
    info = await backend.get_account(account)
    box = await backend.get_mailbox(info.id, mailbox)
    snap = await backend.snapshot(info.id, box.id)
    out = []
    for uid in snap.uids:
        async with backend.open_body(info.id, box.id, Uid(uid)) as body:
            out.append(await body.read(0, body.size))
    return out


def pipeline(ctx: ManagementContext, *, over_quota_permanent: bool = False) -> DeliveryPipeline:
    config: Config = ctx.config
    return DeliveryPipeline(
        ctx.backend,
        max_message_octets=config.store.max_message_size,
        over_quota_permanent=over_quota_permanent,
    )


async def test_outcomes_come_in_recipient_order(ctx: ManagementContext) -> None:
    """Unknown -> Rejected(NOT_FOUND); receive disabled -> Rejected(DISABLED); the same
    account twice (by name and by address) -> one stored message, both Accepted."""
    await add(ctx, "bob")
    await add(ctx, "mute")
    await ctx.backend.update_account("mute", AccountChanges(receive_disabled=True))
    outcomes = await pipeline(ctx).deliver_message(
        ["ghost", "bob", "Bob@Example.org", "mute"], chunks(MESSAGE)
    )
    ghost, bob, bob_again, mute = outcomes
    assert isinstance(ghost, Rejected)
    assert ghost.kind is ErrorKind.NOT_FOUND
    assert isinstance(bob, Accepted)
    assert isinstance(bob_again, Accepted)
    assert bob.uid == bob_again.uid
    assert bob_again.recipient == "Bob@Example.org"
    assert isinstance(mute, Rejected)
    assert mute.kind is ErrorKind.DISABLED
    assert await stored(ctx.backend, "bob") == [MESSAGE]
    assert await stored(ctx.backend, "mute") == []


async def test_the_header_prefix_is_stored_once_for_every_recipient(
    ctx: ManagementContext,
) -> None:
    """The per-delivery prefix (trace fields) goes before the message, in the one file."""
    await add(ctx, "ann")
    await add(ctx, "bob")
    prefix = b"Received: from test by msgstore; Mon, 2 Jun 2025 10:00:00 +0000\r\n"
    outcomes = await pipeline(ctx).deliver_message(
        ["ann", "bob"], chunks(MESSAGE), header_prefix=prefix
    )
    assert all(isinstance(o, Accepted) for o in outcomes)
    assert await stored(ctx.backend, "ann") == [prefix + MESSAGE]
    assert await stored(ctx.backend, "bob") == [prefix + MESSAGE]


async def test_the_message_streams_in_small_chunks(ctx: ManagementContext) -> None:
    """Chunks of any size, even splitting a CR from its LF, give the same stored bytes."""
    await add(ctx, "bob")
    data = MESSAGE.replace(b"hello", b"line\nwith bare LF\r\nand CRLF")
    parts = [data[i : i + 3] for i in range(0, len(data), 3)]
    (outcome,) = await pipeline(ctx).deliver_message(["bob"], chunks(*parts))
    assert isinstance(outcome, Accepted)
    crlf = data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    assert await stored(ctx.backend, "bob") == [crlf]


async def test_too_big_stops_reading_and_stores_nothing(ctx: ManagementContext) -> None:
    """Past max_message_octets every recipient is Rejected(TOO_BIG), reading stops, and
    nothing is stored."""
    await add(ctx, "ann")
    await add(ctx, "bob")
    consumed = 0

    async def endless() -> AsyncIterator[bytes]:
        nonlocal consumed
        yield b"Subject: big\r\n\r\n"
        for _ in range(10_000):
            consumed += 1
            yield b"x" * 1022 + b"\r\n"

    small = DeliveryPipeline(ctx.backend, max_message_octets=4096)
    outcomes = await small.deliver_message(["ann", "bob"], endless())
    assert [(type(o), getattr(o, "kind", None)) for o in outcomes] == [
        (Rejected, ErrorKind.TOO_BIG),
        (Rejected, ErrorKind.TOO_BIG),
    ]
    assert consumed < 10
    for user in ("ann", "bob"):
        account = await ctx.backend.get_account(user)
        assert (await ctx.backend.get_quota(account.id)).messages_used == 0


async def test_an_empty_message_is_rejected(ctx: ManagementContext) -> None:
    await add(ctx, "bob")
    (outcome,) = await pipeline(ctx).deliver_message(["bob"], chunks(b"", b""))
    assert isinstance(outcome, Rejected)
    assert outcome.kind is ErrorKind.PARAMS


async def test_the_source_is_not_read_without_recipients(ctx: ManagementContext) -> None:
    read = False

    async def source() -> AsyncIterator[bytes]:
        nonlocal read
        read = True
        yield MESSAGE

    outcomes = await pipeline(ctx).deliver_message(["ghost"], source())
    assert isinstance(outcomes[0], Rejected)
    assert not read


async def test_over_quota_is_deferred_unless_configured_permanent(
    ctx: ManagementContext,
) -> None:
    """At RCPT (announced size) and after staging (real size): temporary by default."""
    await add(ctx, "bob", quota=Limit(1024))
    announced = await pipeline(ctx).check("bob", size_octets=2048)
    assert isinstance(announced, Deferred)
    assert announced.kind is ErrorKind.OVER_QUOTA
    strict = await pipeline(ctx, over_quota_permanent=True).check("bob", size_octets=2048)
    assert isinstance(strict, Rejected)
    assert strict.kind is ErrorKind.OVER_QUOTA

    target = await pipeline(ctx).check("bob")
    assert isinstance(target, Target)
    big = b"Subject: big\r\n\r\n" + b"z" * 2000 + b"\r\n"
    (late,) = await pipeline(ctx).deliver([target], chunks(big))
    assert isinstance(late, Deferred)
    assert late.kind is ErrorKind.OVER_QUOTA
    assert await stored(ctx.backend, "bob") == []


async def test_racing_deliveries_cannot_overshoot_the_quota(ctx: ManagementContext) -> None:
    """Both pass the early check; the append's atomic quota check lets only one in."""
    await add(ctx, "bob", messages=Limit(1))
    first = await pipeline(ctx).check("bob")
    second = await pipeline(ctx).check("bob")
    assert isinstance(first, Target)
    assert isinstance(second, Target)
    results = await asyncio.gather(
        pipeline(ctx).deliver([first], chunks(MESSAGE)),
        pipeline(ctx).deliver([second], chunks(MESSAGE)),
    )
    kinds = sorted(type(o).__name__ for (o,) in results)
    assert kinds == ["Accepted", "Deferred"]
    assert len(await stored(ctx.backend, "bob")) == 1


async def test_mailbox_choice_and_fallback(ctx: ManagementContext) -> None:
    """An existing mailbox is used; a missing or invalid one means INBOX; pop: INBOX."""
    await add(ctx, "bob")
    await add(ctx, "popper", kind=AccountKind.POP)
    bob = await ctx.backend.get_account("bob")
    await ctx.backend.create_mailbox(bob.id, MailboxName("Lists"))
    p = pipeline(ctx)
    targets: Iterable[tuple[str, str, str]] = [
        ("bob", "Lists", "Lists"),
        ("bob", "lists/none", "INBOX"),
        ("bob", "a//b", "INBOX"),
        ("popper", "Lists", "INBOX"),
    ]
    for user, requested, expected in targets:
        target = await p.check(user, mailbox=requested)
        assert isinstance(target, Target)
        assert target.mailbox_name == expected


async def test_internal_date_is_kept(ctx: ManagementContext) -> None:
    await add(ctx, "bob")
    when = dt.datetime(2020, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    (outcome,) = await pipeline(ctx).deliver_message(["bob"], chunks(MESSAGE), internal_date=when)
    assert isinstance(outcome, Accepted)
    bob = await ctx.backend.get_account("bob")
    inbox = await ctx.backend.get_mailbox(bob.id, INBOX)
    (meta,) = await ctx.backend.fetch_meta(
        bob.id, inbox.id, UidSet.from_uids([outcome.uid]), Want.FLAGS
    )
    assert meta.internal_date == when

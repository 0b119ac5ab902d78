"""The forwarding database through the management operations and the delivery pipeline,
against a real local store: expansion, loops, duplicates, public folders, Delivered-To."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from msgstore.auth.passwords import hash_password
from msgstore.config import load_config
from msgstore.core.errors import ErrorKind, StoreError
from msgstore.core.ids import UidSet
from msgstore.core.names import INBOX, MailboxName, mailbox_name
from msgstore.delivery.pipeline import Accepted, DeliveryPipeline, Rejected, Target
from msgstore.lmtp.envelope import return_path_octets
from msgstore.lmtp.errors import outcome_reply
from msgstore.management.accounts import AccountAdd
from msgstore.management.forwarding import (
    Destinations,
    ForwardAdd,
    ForwardDelete,
    ForwardList,
    ForwardShow,
)
from msgstore.management.operation import ManagementContext, Secret
from msgstore.storage.base import Backend, Want
from msgstore.storage.open import open_backend

MESSAGE = b"From: a@example.org\r\nSubject: fwd\r\n\r\nhello\r\n"


@pytest.fixture
async def ctx(tmp_path: Path) -> AsyncIterator[ManagementContext]:
    config = load_config(data_dir=tmp_path / "data")
    # Local domains must be listed for any address to be external.
    delivery = config.delivery.model_copy(update={"domains": ["example.org"]})
    config = config.model_copy(update={"delivery": delivery})
    backend = await open_backend(config)
    try:
        yield ManagementContext(backend=backend, config=config, hash_password=hash_password)
    finally:
        await backend.close()


async def users(ctx: ManagementContext, *names: str) -> None:
    for name in names:
        await AccountAdd(name=name, password=Secret("pw")).run(ctx)


async def forward(
    ctx: ManagementContext, address: str, destinations: str, *, keep: bool = False
) -> None:
    await ForwardAdd(address, Destinations.parse(destinations), keep_copy=keep).run(ctx)


async def source(data: bytes = MESSAGE) -> AsyncIterator[bytes]:
    yield data


async def inbox(backend: Backend, account: str, mailbox: MailboxName = INBOX) -> list[bytes]:
    info = await backend.get_account(account)
    box = await backend.get_mailbox(info.id, mailbox)
    metas = await backend.fetch_meta(info.id, box.id, UidSet.all(), Want.FLAGS)
    out = []
    for meta in metas:
        async with backend.open_body(info.id, box.id, meta.uid) as body:
            out.append(await body.read(0, body.size))
    return out


async def deliver(ctx: ManagementContext, *recipients: str, data: bytes = MESSAGE) -> list[object]:
    pipeline = DeliveryPipeline.from_config(ctx.backend, ctx.config)
    return list(await pipeline.deliver_message(recipients, source(data), sender="s@example.org"))


async def test_account_to_account_without_copy(ctx: ManagementContext) -> None:
    await users(ctx, "ann", "bob")
    await forward(ctx, "ann", "bob")
    (outcome,) = await deliver(ctx, "ann@example.org")
    assert isinstance(outcome, Accepted)
    assert await inbox(ctx.backend, "bob") == [MESSAGE]
    assert await inbox(ctx.backend, "ann") == []


async def test_keep_copy_delivers_to_the_account_too(ctx: ManagementContext) -> None:
    await users(ctx, "ann", "bob")
    await forward(ctx, "ann", "bob", keep=True)
    await deliver(ctx, "ann")
    assert await inbox(ctx.backend, "bob") == [MESSAGE]
    assert await inbox(ctx.backend, "ann") == [MESSAGE]


async def test_fictitious_list_to_public_folder_is_stored_once(ctx: ManagementContext) -> None:
    public = await ctx.backend.public_account()
    await ctx.backend.create_mailbox(public.id, mailbox_name("Lists"))
    await forward(ctx, "list@example.org", "public:Lists")
    (outcome,) = await deliver(ctx, "list@example.org")
    assert isinstance(outcome, Accepted)
    assert await inbox(ctx.backend, "#public", mailbox_name("Lists")) == [MESSAGE]


async def test_chain_and_duplicate_suppression(ctx: ManagementContext) -> None:
    await users(ctx, "ann", "bob", "cid")
    await forward(ctx, "team", "ann, bob")
    await forward(ctx, "all", "team, bob, cid, team")
    outcomes = await deliver(ctx, "all", "bob", "team")
    assert all(isinstance(o, Accepted) for o in outcomes)
    for name in ("ann", "bob", "cid"):
        assert await inbox(ctx.backend, name) == [MESSAGE], name


async def test_loops_are_refused_when_added(ctx: ManagementContext) -> None:
    await users(ctx, "ann")
    await forward(ctx, "a", "ann")
    await forward(ctx, "b", "a")
    with pytest.raises(StoreError) as exc:
        await ForwardAdd("a", Destinations.parse("b"), replace=True).run(ctx)
    assert exc.value.kind is ErrorKind.PARAMS
    assert "loop" in exc.value.public
    assert "a -> b -> a" in exc.value.public
    with pytest.raises(StoreError) as itself:
        await forward(ctx, "c", "c")
    assert itself.value.kind is ErrorKind.PARAMS


@pytest.mark.parametrize(
    ("destinations", "reason"),
    [
        ("nosuchuser", "Unknown local destination"),
        ("public:NoSuchFolder", "No public folder"),
        ("public:", "folder name"),
        ("ann@", "empty domain"),
        ("#x", "Invalid"),
    ],
)
async def test_bad_destinations_are_refused(
    ctx: ManagementContext, destinations: str, reason: str
) -> None:
    with pytest.raises(StoreError) as exc:
        await forward(ctx, "x", destinations)
    assert exc.value.kind is ErrorKind.PARAMS
    assert reason in exc.value.public


async def test_keep_copy_needs_an_account(ctx: ManagementContext) -> None:
    await users(ctx, "ann")
    with pytest.raises(StoreError) as exc:
        await forward(ctx, "ghost", "ann", keep=True)
    assert exc.value.kind is ErrorKind.PARAMS


async def test_add_list_show_delete(ctx: ManagementContext) -> None:
    await users(ctx, "ann")
    await forward(ctx, "Sales@Example.org", "ann ext@example.net")
    with pytest.raises(StoreError) as exists:
        await forward(ctx, "sales@example.org", "ann")
    assert exists.value.kind is ErrorKind.EXISTS
    shown = await ForwardShow("sales@EXAMPLE.org").run(ctx)
    assert shown.address == "Sales@example.org"
    assert shown.destinations == ("ann", "ext@example.net")
    assert [e.address for e in await ForwardList().run(ctx)] == ["Sales@example.org"]
    await ForwardDelete("sales@example.org").run(ctx)
    assert await ForwardList().run(ctx) == []
    with pytest.raises(StoreError) as gone:
        await ForwardShow("sales@example.org").run(ctx)
    assert gone.value.kind is ErrorKind.NOT_FOUND


async def test_delivered_to_loop_is_refused_at_delivery(ctx: ManagementContext) -> None:
    await users(ctx, "ann", "bob")
    await forward(ctx, "list", "ann")
    looped = b"Delivered-To: list@example.org\r\n" + MESSAGE
    outcomes = await deliver(ctx, "list", "bob", data=looped)
    first, second = outcomes
    assert isinstance(first, Rejected)
    assert first.loop
    assert outcome_reply(first).startswith(b"554 5.4.6 ")
    assert isinstance(second, Accepted)
    assert await inbox(ctx.backend, "ann") == []
    assert await inbox(ctx.backend, "bob") == [looped]


async def test_delivered_to_of_another_address_is_no_loop(ctx: ManagementContext) -> None:
    await users(ctx, "ann")
    await forward(ctx, "list", "ann")
    data = b"Delivered-To: other@example.org\r\n" + MESSAGE
    (outcome,) = await deliver(ctx, "list", data=data)
    assert isinstance(outcome, Accepted)


async def test_external_destination_is_queued_with_delivered_to(ctx: ManagementContext) -> None:
    await users(ctx, "ann")
    await forward(ctx, "inner", "far@example.net")
    await forward(ctx, "outer@example.org", "inner, ann")
    pipeline = DeliveryPipeline.from_config(ctx.backend, ctx.config)
    checked = await pipeline.check("outer@example.org")
    assert isinstance(checked, Target)
    trace = b"Return-Path: <s@example.org>\r\nReceived: from x by y; now\r\n"
    (outcome,) = await pipeline.deliver(
        [checked],
        source(),
        header_prefix=trace,
        sender="s@example.org",
        local_only_octets=return_path_octets(trace),
    )
    assert isinstance(outcome, Accepted)
    (entry,) = await ctx.backend.list_queue()
    assert entry.sender == "s@example.org"
    assert entry.recipients == ("far@example.net",)
    data = await ctx.backend.read_queued(entry.id)
    assert data == (
        b"Delivered-To: inner@example.org\r\nDelivered-To: outer@example.org\r\n"
        b"Received: from x by y; now\r\n" + MESSAGE
    )
    assert entry.size == len(data)
    (stored,) = await inbox(ctx.backend, "ann")
    assert stored == trace + MESSAGE


async def test_public_folder_file_is_shared_between_recipients(ctx: ManagementContext) -> None:
    """One file for a local account and the public folder (hard links)."""
    await users(ctx, "ann")
    public = await ctx.backend.public_account()
    await ctx.backend.create_mailbox(public.id, mailbox_name("Lists"))
    await forward(ctx, "list", "public:Lists, ann")
    await deliver(ctx, "list")
    data_dir = ctx.config.store.data_dir
    inodes = {
        os.stat(os.path.join(root, name)).st_ino
        for root, _, names in os.walk(data_dir)
        for name in names
        if name.isdigit() and "/mail/" in root + "/"
    }
    assert len(inodes) == 1, inodes


# --- RELIABILITY.md §7 case 31: long chains, huge fan-out -------------------------------------


async def test_100_hop_chain_delivers_and_a_longer_one_is_cut(ctx: ManagementContext) -> None:
    await users(ctx, "ann")
    backend = ctx.backend
    # Stored directly (each add would walk the whole chain again): f0 -> f1 -> ... -> ann.
    for n in range(150):
        target = "ann" if n in (99, 149) else f"f{n + 1}"
        await backend.put_forward(f"f{n}", [target], keep_copy=False, replace=False)
    (ok,) = await deliver(ctx, "f0")
    assert isinstance(ok, Accepted)
    assert len(await inbox(backend, "ann")) == 1
    # f100 .. f149 is 50 hops: fine; but starting at f0 after relinking f99 -> f100 is 150.
    await backend.put_forward("f99", ["f100"], keep_copy=False, replace=True)
    (cut,) = await deliver(ctx, "f0")
    assert isinstance(cut, Rejected)
    assert cut.kind is ErrorKind.NOT_FOUND
    assert len(await inbox(backend, "ann")) == 1


async def test_fan_out_limits(ctx: ManagementContext) -> None:
    many = ", ".join(f"r{n}@example.net" for n in range(10_000))
    with pytest.raises(StoreError) as too_many:
        await forward(ctx, "huge", many)
    assert too_many.value.kind is ErrorKind.PARAMS
    assert "1000" in too_many.value.public
    thousand = [f"r{n}@example.net" for n in range(1000)]
    await forward(ctx, "big", ", ".join(thousand))
    (outcome,) = await deliver(ctx, "big")
    assert isinstance(outcome, Accepted)
    (entry,) = await ctx.backend.list_queue()  # one queue entry, not 1,000
    assert entry.recipients == tuple(thousand)


async def test_cycle_stored_behind_the_checks_is_cut_at_delivery(ctx: ManagementContext) -> None:
    """a -> b -> a written directly (a race, a restore): delivery still ends."""
    await users(ctx, "ann")
    await ctx.backend.put_forward("a", ["b", "ann"], keep_copy=False, replace=False)
    await ctx.backend.put_forward("b", ["a", "ann"], keep_copy=False, replace=False)
    (outcome,) = await deliver(ctx, "a")
    assert isinstance(outcome, Accepted)
    assert len(await inbox(ctx.backend, "ann")) == 1

"""Contract: the forwarding database and the relay queue (issue #4), on every backend."""

from __future__ import annotations

import datetime as dt

import pytest

from msgstore.core.errors import ErrorKind, StoreError
from msgstore.storage.base import Backend
from tests.storage.support import StoreSpec

MESSAGE = b"Return-Path: <s@example.org>\r\nSubject: q\r\n\r\nbody\r\n"


async def test_forward_entries(backend: Backend) -> None:
    entry = await backend.put_forward(
        "List@Example.org", ["bob", "public:Lists"], keep_copy=False, replace=False
    )
    assert entry.address == "List@Example.org"
    assert entry.destinations == ("bob", "public:Lists")
    assert entry.keep_copy is False
    assert entry.created.tzinfo is not None
    with pytest.raises(StoreError) as exists:
        await backend.put_forward("list@example.ORG", ["ann"], keep_copy=False, replace=False)
    assert exists.value.kind is ErrorKind.EXISTS
    replaced = await backend.put_forward("list@example.org", ["ann"], keep_copy=True, replace=True)
    assert replaced.destinations == ("ann",)
    assert replaced.keep_copy is True
    assert (await backend.get_forward("LIST@example.org")).destinations == ("ann",)
    await backend.put_forward("alpha", ["ann"], keep_copy=False, replace=False)
    assert [e.address for e in await backend.list_forwards()] == ["alpha", "list@example.org"]
    await backend.delete_forward("List@example.org")
    with pytest.raises(StoreError) as gone:
        await backend.get_forward("list@example.org")
    assert gone.value.kind is ErrorKind.NOT_FOUND
    with pytest.raises(StoreError) as again:
        await backend.delete_forward("list@example.org")
    assert again.value.kind is ErrorKind.NOT_FOUND


async def test_queue_enqueue_read_update_delete(backend: Backend, store_spec: StoreSpec) -> None:
    async with backend.stage(max_octets=1 << 20) as staged:
        await staged.write(MESSAGE)
        await staged.finish()
        skip = len(b"Return-Path: <s@example.org>\r\n")
        entry = await backend.enqueue(
            staged,
            sender="s@example.org",
            recipients=["a@example.net", "b@example.net"],
            prefix=b"Delivered-To: x@example.org\r\n",
            skip_octets=skip,
        )
    expected = b"Delivered-To: x@example.org\r\n" + MESSAGE[skip:]
    assert entry.size == len(expected)
    assert entry.recipients == ("a@example.net", "b@example.net")
    assert entry.attempts == 0
    assert entry.last_error == ""
    assert entry.next_attempt <= dt.datetime.now(dt.UTC)
    # Durable and visible to another handle (another process).
    other = await store_spec.open()
    try:
        assert [e.id for e in await other.list_queue()] == [entry.id]
        assert await other.read_queued(entry.id) == expected
    finally:
        await other.close()
    later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    updated = await backend.update_queued(
        entry.id, done=["A@example.net"], attempts=1, next_attempt=later, last_error="451 x"
    )
    assert updated is not None
    assert updated.recipients == ("b@example.net",)
    assert (updated.attempts, updated.last_error) == (1, "451 x")
    assert abs((updated.next_attempt - later).total_seconds()) < 1
    assert (await backend.get_queued(entry.id)).recipients == ("b@example.net",)
    assert await backend.update_queued(entry.id, done=["b@example.net"]) is None
    with pytest.raises(StoreError) as gone:
        await backend.get_queued(entry.id)
    assert gone.value.kind is ErrorKind.NOT_FOUND
    assert await backend.list_queue() == []


async def test_queue_delete_and_order(backend: Backend) -> None:
    ids = []
    for n in range(3):
        async with backend.stage(max_octets=1 << 20) as staged:
            await staged.write(MESSAGE)
            await staged.finish()
            ids.append((await backend.enqueue(staged, sender="", recipients=[f"r{n}@x.net"])).id)
    soon = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    await backend.update_queued(ids[2], next_attempt=soon)
    assert next(e.id for e in await backend.list_queue()) == ids[2]
    await backend.delete_queued(ids[0])
    assert sorted(e.id for e in await backend.list_queue()) == sorted(ids[1:])
    with pytest.raises(StoreError) as gone:
        await backend.delete_queued(ids[0])
    assert gone.value.kind is ErrorKind.NOT_FOUND
    async with backend.stage(max_octets=1 << 20) as staged:
        await staged.write(MESSAGE)
        await staged.finish()
        with pytest.raises(StoreError) as empty:
            await backend.enqueue(staged, sender="", recipients=[])
    assert empty.value.kind is ErrorKind.PARAMS

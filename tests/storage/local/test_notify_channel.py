"""The cross-process notification channel (unix datagram sockets in DATA/run/notify)."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
from pathlib import Path

import pytest

from msgstore.core.ids import AccountId, MailboxId
from msgstore.core.names import MailboxName
from msgstore.storage.local import LocalBackend
from tests.storage.support import append, inbox_of, new_account


async def test_two_handles_notify_each_other_through_sockets(tmp_path: Path) -> None:
    """Two opened stores (as two processes would): a commit in one wakes a watcher of the
    other, even with a data directory whose socket paths exceed sun_path's 108 bytes."""
    deep = tmp_path / ("d" * 60) / ("e" * 60) / "data"
    first = await LocalBackend.open(deep)
    second = await LocalBackend.open(deep)
    try:
        alice = await new_account(first, "alice")
        inbox = await inbox_of(first, alice.id)
        async with first.watch(alice.id, inbox) as watcher:
            sockets = list((deep / "run" / "notify").iterdir())
            assert len(sockets) == 1
            assert len(str(sockets[0])) > 108
            await append(second, alice.id, inbox)
            await asyncio.wait_for(watcher.wait(), 1.0)
    finally:
        await second.close()
        await first.close()
    assert list((deep / "run" / "notify").iterdir()) == []


async def test_socket_of_a_dead_process_is_removed(tmp_path: Path) -> None:
    """A socket file nobody reads any more (its process died) is removed by the next
    writer that finds it refusing."""
    data_dir = tmp_path / "data"
    backend = await LocalBackend.open(data_dir)
    try:
        stale = data_dir / "run" / "notify" / "1234-dead.sock"
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(str(stale))
        sock.close()
        assert stale.exists()
        alice = await new_account(backend, "alice")
        await append(backend, alice.id, await inbox_of(backend, alice.id))
        for _ in range(100):
            if not stale.exists():
                break
            await asyncio.sleep(0.01)
        assert not stale.exists()
    finally:
        await backend.close()


@pytest.mark.parametrize("busy_s", [0.3, 1.5])
async def test_burst_to_a_busy_receiver_loses_no_wakeup(tmp_path: Path, busy_s: float) -> None:
    """More notifications than the kernel queues (net.unix.max_dgram_qlen, 10 by default)
    while the receiving loop is busy: every watcher still wakes once the loop runs. At 1.5 s
    the receiver is stopped for longer than the sender's timeout (10,000 IDLE sessions waking
    at once, RELIABILITY.md case 45): what could not be sent is kept and sent when the
    receiver reads again, so IDLE sessions, which send no command, still hear of the change."""
    data_dir = tmp_path / "data"
    receiver = await LocalBackend.open(data_dir)
    sender = await LocalBackend.open(data_dir)
    try:
        alice = await new_account(receiver, "alice")
        boxes = [
            (await receiver.create_mailbox(alice.id, MailboxName(f"b{i}"))).id for i in range(40)
        ]
        watchers = [receiver.watch(alice.id, b) for b in boxes]
        opened = [await w.__aenter__() for w in watchers]
        channel = sender._channel
        assert channel is not None

        def burst() -> None:
            for box in boxes:
                channel.send(alice.id, box)
                time.sleep(0.002)

        thread = threading.Thread(target=burst)
        thread.start()
        time.sleep(busy_s)  # noqa: ASYNC251 -- the receiver's loop is busy: nothing is read
        await asyncio.to_thread(thread.join)
        await asyncio.wait_for(asyncio.gather(*(w.wait() for w in opened)), 3.0)
        for w in reversed(watchers):
            await w.__aexit__(None, None, None)
    finally:
        await sender.close()
        await receiver.close()


async def test_malformed_datagrams_are_ignored(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    backend = await LocalBackend.open(data_dir)
    try:
        async with backend.watch(AccountId(5), MailboxId(6)) as watcher:
            (path,) = (data_dir / "run" / "notify").iterdir()
            out = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
            try:  # through the directory's fd: tmp_path may exceed sun_path's 108 bytes
                out.sendto(
                    b"garbage\n1 2 3\n\xff\xfe\n5 6\n", f"/proc/self/fd/{dir_fd}/{path.name}"
                )
            finally:
                os.close(dir_fd)
                out.close()
            await asyncio.wait_for(watcher.wait(), 1.0)
    finally:
        await backend.close()

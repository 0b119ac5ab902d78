"""IDLE (RFC 2177, RFC 9051 §6.3.13).

While idling, the session waits on two things at once: the client's next line (``DONE``, or
anything else, which ends IDLE with BAD) and ``backend.watch`` for the selected mailbox, which
wakes when any process -- another session, another worker, delivery, the CLI -- changed it.
On a wake the selected state syncs (EXPUNGE allowed) and the output is flushed, so a change
reaches the client within the notification latency (under a second). ``* OK Still here``
goes out every ``SessionLimits.idle_keepalive`` seconds so NAT boxes keep the connection.
An IDLE longer than ``[imap] idle_timeout`` ends with ``* BYE`` (RFC 2177 asks clients to
re-issue IDLE at least every 29 minutes).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from typing import TYPE_CHECKING

from msgstore.imap.framer import CommandReady, FramingError, discard_unit
from msgstore.imap.syntax.args import Command
from msgstore.imap.syntax.command import is_idle_done
from msgstore.imap.syntax.responses import Status, StatusResponse
from msgstore.storage.base import ChangeWatcher

if TYPE_CHECKING:
    from msgstore.imap.session import Session


async def idle(s: Session, cmd: Command) -> StatusResponse:
    s.out.write(b"+ idling\r\n")
    if s.selected is None:
        return await _idle(s, None)
    # Watch first, then sync: a change committed in between wakes the watcher instead of
    # waiting unseen for the next one.
    opened = s.selected.opened
    async with s.ctx.backend.watch(opened.owner, opened.id) as watcher:
        return await _idle(s, watcher)


async def _idle(s: Session, watcher: ChangeWatcher | None) -> StatusResponse:
    """The wait (module docstring). One future per wait, completed by the connection on
    input and by the watcher's task on a change: an idle session holds its own task, the
    watcher's, and nothing else (RSS per idle connection, docs/benchmarks.md)."""
    await s.sync(allow_expunge=True)
    await s.out.flush()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + s.ctx.limits.auth_timeout
    watch: asyncio.Task[None] | None = None
    try:
        while True:
            left = deadline - loop.time()
            if left <= 0:
                s.bye("Autologout; idle for too long")
                return StatusResponse(Status.OK, "IDLE terminated")
            if watch is None and watcher is not None:
                watch = loop.create_task(watcher.wait())
            wake: asyncio.Future[None] = loop.create_future()
            s.conn.notify_readable(wake)
            woken = functools.partial(_wake, wake)
            if watch is not None:
                watch.add_done_callback(woken)
            try:
                async with asyncio.timeout(min(s.ctx.limits.idle_keepalive, left)):
                    await wake
                timed_out = False
            except TimeoutError:
                timed_out = True
            finally:
                s.conn.forget_waiter(wake)
                if watch is not None:
                    watch.remove_done_callback(woken)
            if s.conn.readable:
                return await _end(s)
            if watch is not None and watch.done():
                watch.result()
                watch = None
                await s.sync(allow_expunge=True)
                if s.finished:
                    return StatusResponse(Status.OK, "IDLE terminated")
                await s.out.flush()
            elif timed_out and loop.time() < deadline:
                s.out.send(StatusResponse(Status.OK, "Still here"))
                await s.out.flush()
    finally:
        if watch is not None and not watch.done():
            watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watch


def _wake(wake: asyncio.Future[None], _: object) -> None:
    if not wake.done():
        wake.set_result(None)


async def _end(s: Session) -> StatusResponse:
    event = await s.conn.next_event(s.ctx.limits.auth_timeout)
    if isinstance(event, CommandReady):
        try:
            if is_idle_done(event.unit):
                return StatusResponse(Status.OK, "IDLE terminated")
        finally:
            discard_unit(event.unit)
        return StatusResponse(Status.BAD, "Expected DONE; IDLE terminated")
    if isinstance(event, FramingError) and event.fatal:
        s.bye("Closing connection after a protocol error")
    return StatusResponse(Status.BAD, "Expected DONE; IDLE terminated")

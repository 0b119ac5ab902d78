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
    async with contextlib.AsyncExitStack() as stack:
        watcher: ChangeWatcher | None = None
        if s.selected is not None:
            # Watch first, then sync: a change committed in between wakes the watcher instead
            # of waiting unseen for the next one.
            opened = s.selected.opened
            watcher = await stack.enter_async_context(s.ctx.backend.watch(opened.owner, opened.id))
        await s.sync(allow_expunge=True)
        await s.out.flush()
        read: asyncio.Task[None] | None = None
        watch: asyncio.Task[None] | None = None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + s.ctx.limits.auth_timeout
        try:
            while True:
                left = deadline - loop.time()
                if left <= 0:
                    s.bye("Autologout; idle for too long")
                    return StatusResponse(Status.OK, "IDLE terminated")
                if read is None:
                    read = asyncio.ensure_future(s.conn.wait_readable())
                if watch is None and watcher is not None:
                    watch = asyncio.ensure_future(watcher.wait())
                waiting = {t for t in (read, watch) if t is not None}
                done, _ = await asyncio.wait(
                    waiting,
                    timeout=min(s.ctx.limits.idle_keepalive, left),
                    return_when=asyncio.FIRST_COMPLETED,
                )
                if read in done:
                    read = None
                    return await _end(s)
                if watch is not None and watch in done:
                    watch.result()
                    watch = None
                    await s.sync(allow_expunge=True)
                    if s.finished:
                        return StatusResponse(Status.OK, "IDLE terminated")
                    await s.out.flush()
                if not done and loop.time() < deadline:
                    s.out.send(StatusResponse(Status.OK, "Still here"))
                    await s.out.flush()
        finally:
            for task in (read, watch):
                if task is not None and not task.done():
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task


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

"""Change notification across processes and machines: LISTEN/NOTIFY.

Sending: after a commit the backend calls :meth:`PgNotifier.changed`; watchers in this process
wake at once (``ChangeHub``), and the account id joins a pending set that is sent with one
``pg_notify`` about ``COALESCE_S`` later (one NOTIFY per process per interval, not one per
transaction: NOTIFY takes a global lock at commit). The payload is ``<sender>:<id>,<id>,...``.

Receiving: one dedicated connection per process (never a pooled one) LISTENs on the channel,
started by the first ``watch``. Every watcher of a notified account wakes (spurious wake-ups
are allowed, lost ones are not). When the listener connection is lost, it reconnects with
back-off and, once listening again, wakes every watcher: notifications sent meanwhile are gone,
so everyone re-reads its mailbox.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any, Final

from msgstore.core.ids import AccountId
from msgstore.storage.notify import ChangeHub

log = logging.getLogger("msgstore.storage.postgres")

#: Delay before the pending account ids go out in one NOTIFY.
COALESCE_S: Final = 0.05
#: NOTIFY payloads must stay below 8000 octets.
MAX_PAYLOAD: Final = 7000
_RECONNECT_MAX_S: Final = 2.0
#: The LISTEN connection is probed this often: a peer that vanished without closing the TCP
#: connection (a cut network, a crashed host) is noticed, and the listener reconnects.
PROBE_S: Final = 15.0
_PROBE_TIMEOUT_S: Final = 5.0


class PgNotifier:
    """One per backend instance: sends coalesced NOTIFYs and runs the LISTEN connection."""

    def __init__(
        self,
        hub: ChangeHub,
        channel: str,
        connect: Callable[[], Awaitable[Any]],
        send: Callable[[str, str], Awaitable[None]],
    ) -> None:
        self._hub = hub
        self._channel = channel
        self._connect = connect
        self._send = send
        self._sender = f"{os.getpid()}.{secrets.token_hex(4)}"
        self._pending: set[int] = set()
        self._flush_task: asyncio.Task[None] | None = None
        self._conn: Any = None
        self._listening: asyncio.Future[None] | None = None
        self._reconnect_task: asyncio.Task[None] | None = None
        self._probe_task: asyncio.Task[None] | None = None
        self._watched: Counter[int] = Counter()
        self._closed = False

    # --- sending -----------------------------------------------------------------------------

    def changed(self, account: AccountId) -> None:
        """After a commit, on the event loop: queue the account for the next NOTIFY."""
        if self._closed:
            return
        self._pending.add(account)
        if self._flush_task is None or self._flush_task.done():
            self._flush_task = asyncio.get_running_loop().create_task(self._flush_later())

    async def _flush_later(self) -> None:
        await asyncio.sleep(COALESCE_S)
        await self.flush()

    async def flush(self) -> None:
        """Send what is pending now (also at close, so nothing queued is lost)."""
        while self._pending:
            ids = sorted(self._pending)
            self._pending.clear()
            payloads: list[str] = []
            current: list[str] = []
            size = len(self._sender) + 1
            for ident in ids:
                text = str(ident)
                if current and size + len(text) + 1 > MAX_PAYLOAD:
                    payloads.append(f"{self._sender}:{','.join(current)}")
                    current, size = [], len(self._sender) + 1
                current.append(text)
                size += len(text) + 1
            payloads.append(f"{self._sender}:{','.join(current)}")
            for payload in payloads:
                try:
                    await self._send(self._channel, payload)
                except Exception as exc:  # the database is away: the others resync on reconnect
                    log.warning("could not send a change notification: %s", exc)

    # --- receiving ---------------------------------------------------------------------------

    def watching(self, account: AccountId, delta: int) -> None:
        self._watched[account] += delta
        if self._watched[account] <= 0:
            del self._watched[account]

    async def listen(self) -> None:
        """Make sure the LISTEN connection is up (the first watch starts it)."""
        if self._listening is None:
            self._listening = asyncio.get_running_loop().create_future()
            try:
                await self._start()
            except BaseException as exc:
                self._listening.set_exception(exc)
                fut, self._listening = self._listening, None
                fut.exception()
                raise
            self._listening.set_result(None)
            return
        await asyncio.shield(self._listening)

    async def _start(self) -> None:
        conn = await self._connect()
        try:
            await conn.add_listener(self._channel, self._on_notify)
        except BaseException:
            await conn.close()
            raise
        conn.add_termination_listener(self._on_lost)
        self._conn = conn
        if self._probe_task is None or self._probe_task.done():
            self._probe_task = asyncio.get_running_loop().create_task(self._probe())

    async def _probe(self) -> None:
        """Every ``PROBE_S``: a trivial query on the LISTEN connection; one that fails or
        hangs is terminated, which reconnects (``_on_lost``)."""
        while not self._closed:
            await asyncio.sleep(PROBE_S)
            conn = self._conn
            if conn is None or conn.is_closed():
                continue
            try:
                await asyncio.wait_for(conn.execute("SELECT 1"), _PROBE_TIMEOUT_S)
            except Exception as exc:
                log.warning("the LISTEN connection does not answer (%r); reconnecting", exc)
                conn.terminate()

    def _on_notify(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        sender, _, ids = payload.partition(":")
        if sender == self._sender:
            return  # our own: watchers here were woken at commit
        for text in ids.split(","):
            if text.isdigit():
                self._hub.publish_account(AccountId(int(text)))

    def _on_lost(self, _conn: Any) -> None:
        self._conn = None
        if self._closed:
            return
        log.warning("lost the LISTEN connection; reconnecting")
        if self._reconnect_task is None or self._reconnect_task.done():
            self._reconnect_task = asyncio.get_running_loop().create_task(self._reconnect())

    async def _reconnect(self) -> None:
        delay = 0.05
        while not self._closed:
            try:
                await self._start()
            except Exception as exc:
                log.debug("LISTEN reconnect failed: %s", exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, _RECONNECT_MAX_S)
                continue
            log.info("LISTEN connection re-established; waking every watcher")
            self.wake_all()
            return

    def wake_all(self) -> None:
        for account in list(self._watched):
            self._hub.publish_account(AccountId(account))

    async def close(self) -> None:
        if self._flush_task is not None and not self._flush_task.done():
            self._flush_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flush_task
        await self.flush()
        self._closed = True
        for task in (self._reconnect_task, self._probe_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.remove_termination_listener(self._on_lost)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), 2)

"""In-process change fan-out: one :class:`ChangeHub` per backend instance.

A backend calls :meth:`ChangeHub.publish` (on the event loop) or
:meth:`ChangeHub.publish_threadsafe` (from a worker thread, after a commit) with the account and
mailbox that changed; every :class:`Watcher` of that mailbox wakes. Changes made by other
processes arrive through the backend's own channel (local: unix datagram sockets, postgres:
LISTEN/NOTIFY), which calls ``publish`` too. Wake-ups are level-triggered and coalesced: a
watcher that was not waiting when a change happened returns at once from its next ``wait``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from msgstore.core.ids import AccountId, MailboxId

_Key = tuple[AccountId, MailboxId]


class Watcher:
    """Implements ``storage.base.ChangeWatcher`` for one mailbox."""

    __slots__ = ("_event", "key")

    def __init__(self, key: _Key) -> None:
        self.key = key
        self._event = asyncio.Event()

    def _wake(self) -> None:
        self._event.set()

    async def wait(self) -> None:
        """Return when the mailbox may have changed since the last return (or creation)."""
        await self._event.wait()
        self._event.clear()


class ChangeHub:
    """Watchers by mailbox; publish wakes them. Bound to the loop it was created on."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._watchers: dict[_Key, set[Watcher]] = {}
        self._closed = False

    def __len__(self) -> int:
        return sum(len(s) for s in self._watchers.values())

    @asynccontextmanager
    async def watch(self, account: AccountId, mailbox: MailboxId) -> AsyncIterator[Watcher]:
        key = (account, mailbox)
        watcher = Watcher(key)
        self._watchers.setdefault(key, set()).add(watcher)
        try:
            yield watcher
        finally:
            group = self._watchers.get(key)
            if group is not None:
                group.discard(watcher)
                if not group:
                    del self._watchers[key]

    def publish(self, account: AccountId, mailbox: MailboxId) -> None:
        """Wake the watchers of one mailbox (event loop thread only)."""
        for watcher in self._watchers.get((account, mailbox), ()):
            watcher._wake()

    def publish_account(self, account: AccountId) -> None:
        """Wake every watcher of an account (deleted account, rebuilt index)."""
        for (acc, _), group in self._watchers.items():
            if acc == account:
                for watcher in group:
                    watcher._wake()

    def publish_threadsafe(self, account: AccountId, mailbox: MailboxId) -> None:
        """``publish`` from any thread, after the change committed; a no-op once the loop or
        the hub is closed, and when nobody watches the mailbox (no wake-up of the loop)."""
        if self._closed or (account, mailbox) not in self._watchers:
            return  # a watcher added later reads the committed state after registering
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is left to wake
            self._loop.call_soon_threadsafe(self.publish, account, mailbox)

    def close(self) -> None:
        self._closed = True

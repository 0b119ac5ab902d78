"""RETR read-ahead: the bodies of the next messages, read in one store call.

fetchmail and getmail retrieve a maildrop in order, one command at a time (``RETR 1``,
``DELE 1``, ``RETR 2``, ...). Through ``open_body`` every RETR is a store call, and for the
local store that is a hop to the account's index thread, which costs more CPU than reading a
10 KB file. So when a RETR asks for message *n* and it is the session's first RETR or the
previous one asked for *n - 1*, the session reads *n* and the following live messages with
one :class:`~msgstore.storage.base.SupportsBodyBatch` call and serves the next RETRs from
memory, without a coroutine (:meth:`ReadAhead.take`). The window starts at
:data:`FIRST_WINDOW` octets (a client that fetches one or two messages reads little ahead)
and doubles with every refill in order, up to ``[pop3] read_ahead`` octets and
:data:`MAX_MESSAGES` messages (a store call costs about as much CPU as reading a dozen 10 KB
files, so a long download needs large batches).

The next batch is read when a RETR finds the held one used up, not in the background while
the client reads the replies: tried for issue #5, the reading thread and the event loop then
contend for the GIL, and RETR + DELE of 1,000 messages took 30-90 % more CPU and longer.

Bounds: at most ``read_ahead`` octets per session (a message larger than that is streamed
with ``open_body`` as before), held for at most :data:`MAX_AGE_S` seconds, dropped at the first
RETR out of order (which also shrinks the window back). A message expunged by an IMAP
session after it was read ahead can still be retrieved within that time, as it could be by a
RETR that had already opened it; one expunged before is not read (the store call skips it)
and its RETR gets ``-ERR`` through ``open_body``.
TOP, and backends without ``read_bodies``, always use ``open_body``.
"""

from __future__ import annotations

import time
from typing import Final

from msgstore.pop3.maildrop import Entry, Maildrop
from msgstore.storage.base import Backend, SupportsBodyBatch

#: Seconds a read-ahead body may wait for its RETR.
MAX_AGE_S: Final = 5.0
#: Messages read in one store call at most.
MAX_MESSAGES: Final = 256
#: Octets read ahead by the first store call of a download in order.
FIRST_WINDOW: Final = 64 * 1024


class ReadAhead:
    """One session's read-ahead buffer (see the module docstring)."""

    __slots__ = ("_batch", "_bodies", "_filled_at", "_next", "_window")

    def __init__(self, backend: Backend) -> None:
        self._batch = backend if isinstance(backend, SupportsBodyBatch) else None
        self._bodies: dict[int, bytes] = {}
        self._next = 0  # the number a RETR in order asks for next; 0 before the first RETR
        self._filled_at = 0.0
        self._window = FIRST_WINDOW

    @property
    def held_octets(self) -> int:
        return sum(len(b) for b in self._bodies.values())

    def take(self, number: int) -> bytes | None:
        """The whole stored message ``number`` if it is held (read ahead, and not too long
        ago); None: call :meth:`body`. No store call, so no coroutine: most RETRs of a
        download in order end here."""
        held = self._bodies.pop(number, None)
        if held is None or time.monotonic() - self._filled_at > MAX_AGE_S:
            return None
        self._next = number + 1
        return held

    async def body(self, drop: Maildrop, number: int, entry: Entry, limit: int) -> bytes | None:
        """The whole stored message ``number`` (``entry``), which :meth:`take` did not have,
        read now with the next ones; or None: stream it instead.

        Raises StoreError from the store call (nothing has been sent yet).
        """
        in_order = self._next in (0, number)
        self._next = number + 1
        now = time.monotonic()
        self._bodies.clear()
        batch = self._batch
        if batch is None or entry.size > limit:
            return None
        wanted = [(number, entry)]
        if in_order:
            window = min(self._window, limit)
            self._window = min(2 * self._window, limit)
            total = entry.size
            entries = drop.entries
            for n in range(number + 1, min(len(entries), number + MAX_MESSAGES - 1) + 1):
                following = entries[n - 1]
                if following.deleted:
                    continue
                if total + following.size > window:
                    break
                total += following.size
                wanted.append((n, following))
        else:
            self._window = FIRST_WINDOW
        bodies = await batch.read_bodies(
            drop.account.id, drop.mailbox.id, [e.uid for _, e in wanted]
        )
        self._filled_at = now
        for n, following in wanted[1:]:
            data = bodies.get(following.uid)
            if data is not None and len(data) == following.size:
                self._bodies[n] = data
        data = bodies.get(entry.uid)
        return data if data is not None and len(data) == entry.size else None

    def clear(self) -> None:
        self._bodies.clear()

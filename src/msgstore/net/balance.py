"""Balanced accepting for ``msgstore serve --workers N``: a worker takes a new connection only
while it holds no more than the least loaded of its peers, as Dovecot's processes stop
listening once they have their share.

Every worker accepts on the same inherited listening sockets, so every idle worker wakes for a
new connection. Left to the event loop, the first to wake accepts everything pending (uvloop
and asyncio accept up to the backlog per wake-up): four LMTP connections arriving together
often all land in one worker, which then delivers on one core while the other idles. Instead,
the supervisor makes a :class:`LoadTable` before forking: open connections per service and
worker, in an anonymous shared mapping, so each worker reads its peers' counts without a
message or a lock. Each slot has one writer at a time: its worker while the worker lives, the
supervisor once it has reaped it (:meth:`LoadTable.clear`: a dead worker's count neither repels
connections nor carries over to the worker restarted in its place).

A worker has one count per service, not one for all its connections: an idle IMAP session
costs next to nothing while an LMTP connection delivers message after message, so with one
count per worker a few hundred idle IMAP sessions would decide where the deliveries go. Counted
per service, each protocol is spread over the workers on its own (Dovecot runs a process pool
per service for the same reason). IMAP and IMAPS are one service.

:class:`Acceptor` accepts ONE connection per wake-up of a listening socket, and only when
:meth:`Share.my_turn`; a worker that declines takes the connection anyway once it has been
pending for the table's wait (``[server] accept_wait_ms``), so a stopped or busy least-loaded
worker delays a client by milliseconds, never strands it. In a single process nothing here is
used (``StreamService`` keeps the event loop's own server).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import mmap
import select
import socket
from collections.abc import Callable, Sequence
from typing import Final

log = logging.getLogger(__name__)

# The wait (``[server] accept_wait_ms``, 20 ms by default) is how long a connection a worker
# declined (a peer holds fewer) may stay pending before that worker takes it anyway. The peer
# whose turn it is may be stopped, dead but not yet reaped, or in a long CPU step (a big
# SEARCH). An awake peer accepts within microseconds, but one that is merely waiting for a CPU
# can take longer: on 2 cores at a load average of 7-9, 5 ms misplaced a connection in half of
# the bursts of tests/server/test_balanced_accept.py, 20 ms in none. 20 ms is still invisible
# to a mail client; while a peer is stuck it caps accepting at one connection per wait per
# worker.

#: How often a worker that declined looks whether the connection is still pending and whose
#: turn it is. Not watching the socket meanwhile saves it from waking for every pending
#: connection; looking often keeps a burst moving when the counts cross while it waits (a
#: peer that took the tie now holds more).
RECHECK_S: Final = 0.001
#: Pause after accept() fails for lack of descriptors or memory, as asyncio's server does:
#: retrying at once would spin on a socket that stays readable.
RESOURCE_PAUSE_S: Final = 1.0
#: accept() errors that mean "no descriptor or memory left" (the others are the client's).
_RESOURCE_ERRNOS: Final = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})

#: Integers per slot: open connections, and 1 while the worker accepts on the service.
_SLOT: Final = 2


#: The table and worker number of this process once :func:`join` ran (workers only).
_joined: tuple[LoadTable, int] | None = None


def join(table: LoadTable, worker: int) -> None:
    """Make this process worker ``worker`` of ``table`` (a worker, right after the fork)."""
    global _joined
    _joined = (table, worker)


def share(service: str) -> Share | None:
    """This worker's share of ``service``, or None outside ``--workers N`` (accept freely)."""
    if _joined is None:
        return None
    table, worker = _joined
    return table.share(service, worker)


class LoadTable:
    """Open connections per (service, worker), shared by the supervisor and its workers.

    Made by the supervisor before it forks (an anonymous ``MAP_SHARED`` mapping is inherited
    as the same memory); workers are numbered from 1 as the supervisor numbers them.
    """

    def __init__(self, services: Sequence[str], workers: int, wait_s: float) -> None:
        self._rows = {name: row for row, name in enumerate(services)}
        self._workers = workers
        self.wait_s = wait_s  # see the module docstring
        self._map = mmap.mmap(-1, max(1, len(services)) * workers * _SLOT * 8)
        self._slots = memoryview(self._map).cast("q")

    def share(self, service: str, worker: int) -> Share | None:
        """Worker ``worker``'s view of ``service`` (None: the service has no listener)."""
        row = self._rows.get(service)
        if row is None:
            return None
        return Share(
            self._slots, row * self._workers * _SLOT, self._workers, worker - 1, self.wait_s
        )

    def clear(self, worker: int) -> None:
        """Zero worker ``worker``'s slots: the supervisor calls it once the worker is reaped."""
        for row in self._rows.values():
            base = (row * self._workers + worker - 1) * _SLOT
            self._slots[base] = 0
            self._slots[base + 1] = 0

    def close(self) -> None:
        self._slots.release()
        self._map.close()


class Share:
    """One worker's slot for one service, beside its peers' slots."""

    def __init__(self, slots: memoryview, base: int, workers: int, me: int, wait_s: float) -> None:
        self.wait_s = wait_s  # how long a declined connection may wait for its peer
        self._slots = slots
        self._peers = [base + w * _SLOT for w in range(workers) if w != me]
        self._mine = base + me * _SLOT

    def opened(self) -> None:
        """Count a connection accepted by this worker."""
        self._slots[self._mine] += 1

    def closed(self) -> None:
        """Uncount a connection of this worker whose session ended (or never started)."""
        self._slots[self._mine] -= 1

    def accepting(self, on: bool) -> None:
        """Say whether this worker accepts on the service: peers compare only with those that
        do (not one still starting or already closing)."""
        self._slots[self._mine + 1] = int(on)

    def my_turn(self) -> bool:
        """True unless an accepting peer holds fewer connections than this worker (ties: take
        it)."""
        slots = self._slots
        mine = slots[self._mine]
        return not any(slots[p + 1] and slots[p] < mine for p in self._peers)


class Acceptor:
    """Accept on one listening socket, one connection per wake-up, when it is this worker's
    turn. ``on_accept`` gets each accepted non-blocking socket and must count it in the share
    (:meth:`Share.opened`) before returning: the next decision reads that count.

    A worker that declines stops watching the socket (it would wake again at once: readiness
    is level-triggered) and looks every :data:`RECHECK_S` whether a connection is still
    pending: if none, it watches again; if it has become its turn, or the connection has
    waited the share's ``wait_s`` since it declined, it takes it.
    """

    def __init__(
        self,
        sock: socket.socket,
        share: Share,
        on_accept: Callable[[socket.socket], None],
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self._sock = sock
        self._fd = sock.fileno()
        self._share = share
        self._on_accept = on_accept
        self._pending = select.poll()  # is a connection waiting? (without accepting it)
        self._pending.register(self._fd, select.POLLIN)
        self._declined_at = 0.0
        self._later: asyncio.TimerHandle | None = None
        self._loop.add_reader(self._fd, self._readable)

    def close(self) -> None:
        """Stop accepting (the socket stays open: it is the process's and the peers')."""
        if self._later is not None:
            self._later.cancel()
            self._later = None
        self._loop.remove_reader(self._fd)

    def _readable(self) -> None:
        if self._share.my_turn():
            self._accept()
        else:
            self._declined_at = self._loop.time()
            self._pause(RECHECK_S, self._recheck)

    def _recheck(self) -> None:
        self._later = None
        if not self._pending.poll(0):
            self._watch()  # a peer took it
        elif self._share.my_turn() or self._loop.time() - self._declined_at >= self._share.wait_s:
            self._watch()
            self._accept()
        else:
            self._later = self._loop.call_later(RECHECK_S, self._recheck)

    def _pause(self, delay: float, then: Callable[[], None]) -> None:
        self._loop.remove_reader(self._fd)
        self._later = self._loop.call_later(delay, then)

    def _watch(self) -> None:
        self._later = None
        self._loop.add_reader(self._fd, self._readable)

    def _accept(self) -> None:
        try:
            conn, _ = self._sock.accept()
        except (BlockingIOError, InterruptedError, ConnectionAbortedError):
            return  # a peer was quicker, or the client gave up while queued
        except OSError as exc:
            if exc.errno not in _RESOURCE_ERRNOS:
                log.info("accept on %s: %s", self._sock.getsockname(), exc)
                return
            log.error(
                "accept on %s: %s; pausing for %.0f s",
                self._sock.getsockname(),
                exc,
                RESOURCE_PAUSE_S,
            )
            self._pause(RESOURCE_PAUSE_S, self._watch)
            return
        conn.setblocking(False)
        self._on_accept(conn)

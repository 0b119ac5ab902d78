"""Cross-process change notification for the local backend: unix datagram sockets.

Every process that has watchers binds one socket in ``DATA/run/notify/`` named
``<pid>-<random>.sock``. After a commit, the writer (any process: a server worker, the CLI,
delivery) sends ``"<account-id> <mailbox-id>\\n"`` lines to every socket in that directory except
its own; a refused connection means the owner died, and its socket file is removed. Receivers
read the datagrams on the event loop and wake the matching watchers of their
:class:`~msgstore.storage.notify.ChangeHub`.

Sending runs on one small thread per process: writers only enqueue, so a commit never waits for
a slow or stopped receiver. The thread coalesces a burst into few datagrams and sends with a
short timeout (the kernel queues only ``net.unix.max_dgram_qlen`` datagrams per receiver, 10 by
default, so a non-blocking send would drop wake-ups under load). What a receiver stopped for
longer than the timeout could not take is kept, per receiver, merged with what comes next, and
sent again every :data:`_RETRY_S` until it is read or the receiver is gone: a wake-up is never
dropped, because an IDLE session sends no command that would make it look again. The backlog
is bounded by the number of distinct mailboxes changed, since lines coalesce.

Socket paths can exceed the 108-byte ``sun_path`` limit under deep data directories, so both
sides address sockets through ``/proc/self/fd/<dir-fd>/<name>``.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import queue
import secrets
import socket
import threading
import time
from pathlib import Path
from typing import Final

from msgstore.core.ids import AccountId, MailboxId
from msgstore.storage.notify import ChangeHub

log = logging.getLogger("msgstore.storage.local")

_SUFFIX: Final = ".sock"
_SEND_TIMEOUT_S: Final = 0.5
#: How often a backlog for a receiver that was not reading is sent again.
_RETRY_S: Final = 0.05
_MAX_DATAGRAM: Final = 8192
_RECV_SIZE: Final = 65536
_RELIST_NS: Final = 1_000_000_000
#: Mailbox id meaning "every mailbox of the account".
ALL_MAILBOXES: Final = -1


class NotifyChannel:
    """One process's end of the notification directory."""

    def __init__(self, notify_dir: Path, hub: ChangeHub) -> None:
        self._dir = notify_dir
        self._hub = hub
        self._dir_fd = os.open(notify_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        self._own_name: str | None = None
        self._recv: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: queue.SimpleQueue[tuple[int, int] | None] = queue.SimpleQueue()
        #: Receiver name -> lines it has not taken yet (sender thread only).
        self._backlog: dict[str, set[tuple[int, int]]] = {}
        self._sender: threading.Thread | None = None
        self._sender_lock = threading.Lock()
        self._closed = False
        self._targets_lock = threading.Lock()
        self._targets_mtime_ns = -1
        self._targets_unsure = True
        self._targets_cache: tuple[str, ...] = ()

    def _address(self, name: str) -> str:
        return f"/proc/self/fd/{self._dir_fd}/{name}"

    # receiving --------------------------------------------------------------------------------

    def listen(self, loop: asyncio.AbstractEventLoop) -> None:
        """Bind this process's socket (once) and start waking watchers from it."""
        if self._recv is not None or self._closed:
            return
        name = f"{os.getpid()}-{secrets.token_hex(8)}{_SUFFIX}"
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        try:
            sock.bind(self._address(name))
            sock.setblocking(False)
            loop.add_reader(sock.fileno(), self._on_readable)
        except BaseException:
            sock.close()
            raise
        self._recv, self._own_name, self._loop = sock, name, loop

    def _on_readable(self) -> None:
        sock = self._recv
        if sock is None:
            return
        while True:
            try:
                data = sock.recv(_RECV_SIZE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.warning("notification socket: %s", exc)
                return
            for line in data.split(b"\n"):
                parts = line.split()
                if len(parts) != 2 or not all(p.lstrip(b"-").isdigit() for p in parts):
                    continue
                account, mailbox = int(parts[0]), int(parts[1])
                if mailbox == ALL_MAILBOXES:
                    self._hub.publish_account(AccountId(account))
                else:
                    self._hub.publish(AccountId(account), MailboxId(mailbox))

    # sending ----------------------------------------------------------------------------------

    def _targets(self) -> tuple[str, ...]:
        """The other processes' sockets: the directory listing, cached while its mtime stays.

        File system timestamps are coarse (a clock tick), so a socket bound in the same tick
        as the listing would not change the mtime we saw: a listing taken less than
        ``_RELIST_S`` after the mtime is re-taken at the next call.
        """
        mtime_ns = os.fstat(self._dir_fd).st_mtime_ns
        with self._targets_lock:
            if mtime_ns == self._targets_mtime_ns and not self._targets_unsure:
                return self._targets_cache
            names = os.listdir(self._address(""))
            self._targets_cache = tuple(
                n for n in names if n.endswith(_SUFFIX) and n != self._own_name
            )
            self._targets_mtime_ns = mtime_ns
            self._targets_unsure = time.time_ns() - mtime_ns < _RELIST_NS
            return self._targets_cache

    def _forget_targets(self) -> None:
        with self._targets_lock:
            self._targets_unsure = True

    def send(self, account: int, mailbox: int) -> None:
        """Queue a notification for every other process (thread-safe, never blocks).

        Costs one ``fstat`` when no other process listens (the CLI, a single server).
        """
        if self._closed:
            return
        try:
            if not self._targets():
                return
        except OSError as exc:
            log.warning("notification directory %s: %s", self._dir, exc)
            return
        if self._sender is None:
            with self._sender_lock:
                if self._sender is None and not self._closed:
                    thread = threading.Thread(
                        target=self._send_loop, name="msgstore-notify", daemon=True
                    )
                    thread.start()
                    self._sender = thread
        self._queue.put((account, mailbox))

    def _send_loop(self) -> None:
        out = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        out.settimeout(_SEND_TIMEOUT_S)
        try:
            while True:
                pending: set[tuple[int, int]] = set()
                stop = False
                try:
                    item = self._queue.get(timeout=_RETRY_S if self._backlog else None)
                except queue.Empty:
                    pass  # only the backlog to send again
                else:
                    if item is None:
                        stop = True
                    else:
                        pending.add(item)
                while not stop:
                    try:
                        more = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if more is None:
                        stop = True
                    else:
                        pending.add(more)
                self._deliver(out, pending)
                if stop:
                    return
        finally:
            out.close()

    def _deliver(self, out: socket.socket, pending: set[tuple[int, int]]) -> None:
        try:
            names = self._targets()
        except OSError as exc:
            log.warning("notification directory %s: %s", self._dir, exc)
            return
        for gone in set(self._backlog) - set(names):
            del self._backlog[gone]
        for name in names:
            held = self._backlog.pop(name, None)
            lines = pending | held if held else pending
            if not lines:
                continue
            unsent = self._send_to(out, name, lines)
            if unsent:
                if held is None:
                    log.info("notification receiver %s is busy; will send again", name)
                self._backlog[name] = unsent

    def _send_to(
        self, out: socket.socket, name: str, lines: set[tuple[int, int]]
    ) -> set[tuple[int, int]]:
        """Send ``lines`` to one receiver; return the lines it did not take (busy receiver)."""
        address = self._address(name)
        ordered = sorted(lines)
        start = 0
        while start < len(ordered):
            datagram = bytearray()
            end = start
            while end < len(ordered):
                line = f"{ordered[end][0]} {ordered[end][1]}\n".encode()
                if datagram and len(datagram) + len(line) > _MAX_DATAGRAM:
                    break
                datagram += line
                end += 1
            try:
                out.sendto(datagram, address)
            except (FileNotFoundError, ConnectionRefusedError) as exc:
                if isinstance(exc, ConnectionRefusedError):
                    # The owner died without removing its socket.
                    with contextlib.suppress(OSError):
                        os.unlink(address)
                self._forget_targets()
                return set()
            except TimeoutError:
                return set(ordered[start:])
            except OSError as exc:
                if exc.errno != errno.ENOTSOCK:
                    log.warning("notification to %s failed: %s", name, exc)
                return set()
            start = end
        return set()

    # lifecycle --------------------------------------------------------------------------------

    async def close(self) -> None:
        """Stop the sender (after it sent what is queued), unbind, release the directory."""
        with self._sender_lock:
            if self._closed:
                return
            self._closed = True
            sender = self._sender
        if sender is not None:
            self._queue.put(None)
            await asyncio.to_thread(sender.join)
        if self._recv is not None:
            if self._loop is not None and not self._loop.is_closed():
                self._loop.remove_reader(self._recv.fileno())
            if self._own_name is not None:
                with contextlib.suppress(OSError):
                    os.unlink(self._address(self._own_name))
            self._recv.close()
            self._recv = None
        os.close(self._dir_fd)

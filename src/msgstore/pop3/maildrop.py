"""The maildrop of one POP3 session: INBOX as it was at login, DELE marks, and the lock.

RFC 1939 semantics, on the store:

- At login the session takes the account's **maildrop lock** and a snapshot of INBOX (the
  only mailbox of a ``pop`` account; the INBOX of an ``imap`` account). Message numbers are
  positions in that snapshot and never change during the session; mail delivered meanwhile
  shows up at the next login.
- ``DELE`` only marks, ``RSET`` unmarks. ``QUIT`` enters the UPDATE state: messages retrieved
  with RETR get ``\\Seen`` (so IMAP shows them as read), then every marked message is removed in
  **one** ``expunge(..., only_deleted=False)`` call. IMAP sessions on INBOX see those
  EXPUNGEs then, not before. A session that ends any other way (dropped connection, timeout,
  server shutdown) changes nothing.
- A message expunged by IMAP during the session is skipped by ``RETR`` with ``-ERR`` and
  simply absent from the final expunge.

The lock is an ``flock`` on ``DATA/run/pop3-locks/<account id>.lock``, held from login to the
end of the session: it works across the worker processes of one machine, and the kernel
releases it when a process dies, so a crash never leaves a maildrop locked. (A PostgreSQL
deployment with front ends on several machines needs a lock in the database instead.) The
file also records the time of the last login, which enforces ``[pop3] login_delay``
(RFC 2449 LOGIN-DELAY).
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import time
from dataclasses import dataclass
from itertools import starmap
from pathlib import Path

from msgstore.core.accounts import AccountInfo
from msgstore.core.errors import ErrorKind, StoreError
from msgstore.core.flags import SEEN, FlagOp
from msgstore.core.ids import Uid, UidSet
from msgstore.core.names import INBOX
from msgstore.pop3.errors import LOGIN_DELAY, Refusal
from msgstore.storage.base import Backend, MailboxInfo

LOCK_SUFFIX = ".lock"
SECONDS_PER_DAY = 86400


class MaildropLock:
    """The exclusive POP3 lock of one account (see the module docstring)."""

    def __init__(self, fd: int) -> None:
        self._fd = fd

    @classmethod
    async def acquire(
        cls, directory: Path, account: AccountInfo, *, login_delay_s: int
    ) -> MaildropLock:
        """Take the lock. Raises StoreError IN_USE, or Refusal [LOGIN-DELAY]."""
        fd, wait = await asyncio.to_thread(
            _acquire, directory / f"{int(account.id)}{LOCK_SUFFIX}", login_delay_s
        )
        if fd < 0:
            raise StoreError(ErrorKind.IN_USE, "Mailbox is locked by another POP3 session")
        if wait > 0:
            os.close(fd)
            raise Refusal(f"Wait {wait} seconds between logins", LOGIN_DELAY)
        return cls(fd)

    def release(self) -> None:
        """Drop the lock (idempotent)."""
        if self._fd >= 0:
            os.close(self._fd)  # closing the only descriptor releases the flock
            self._fd = -1


def _acquire(path: Path, login_delay_s: int) -> tuple[int, int]:
    """(fd, 0) when locked and recorded; (-1, 0) when in use; (fd, seconds) when too soon."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return -1, 0
    now = time.time()
    if login_delay_s > 0:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        try:
            last = float(text)
        except ValueError:
            last = 0.0
        if 0 <= now - last < login_delay_s:
            return fd, max(1, int(login_delay_s - (now - last) + 0.999))
    stamp = f"{now:.3f}\n".encode()
    os.ftruncate(fd, 0)
    os.pwrite(fd, stamp, 0)
    return fd, 0


@dataclass(slots=True)
class Entry:
    """One message of the maildrop: a ``storage.base.MaildropRow`` (the same fields, in the
    same order) and the session's marks."""

    uid: Uid
    size: int
    uidl: str
    seen: bool
    internal_date: int  # POSIX seconds
    deleted: bool = False
    retrieved: bool = False


@dataclass(frozen=True, slots=True)
class UpdateResult:
    removed: int
    missing: int  # marked messages that were already gone (expunged by another session)


class Maildrop:
    """INBOX as one POP3 session sees it."""

    def __init__(
        self, backend: Backend, account: AccountInfo, mailbox: MailboxInfo, entries: list[Entry]
    ) -> None:
        self.backend = backend
        self.account = account
        self.mailbox = mailbox
        self.entries = entries
        # STAT's answer, kept up to date by delete() and reset() instead of a walk over
        # every entry each time.
        live = [e.size for e in entries if not e.deleted]
        self._count = len(live)
        self._octets = sum(live)

    @classmethod
    async def open(cls, backend: Backend, account: AccountInfo) -> Maildrop:
        """Snapshot INBOX with each message's size, UIDL and \\Seen flag: one store call,
        whose single read transaction is the snapshot."""
        mailbox = await backend.get_mailbox(account.id, INBOX)
        rows = await backend.list_maildrop(account.id, mailbox.id)
        return cls(backend, account, mailbox, list(starmap(Entry, rows)))

    def get(self, number: int) -> Entry:
        """The message with this number. Raises Refusal for unknown or deleted ones."""
        if not 1 <= number <= len(self.entries):
            raise Refusal("No such message")
        entry = self.entries[number - 1]
        if entry.deleted:
            raise Refusal("Message is deleted")
        return entry

    def delete(self, number: int) -> None:
        """Mark the message with this number deleted (DELE). Raises Refusal like get()."""
        entry = self.get(number)
        entry.deleted = True
        self._count -= 1
        self._octets -= entry.size

    def live(self) -> list[tuple[int, Entry]]:
        """(number, entry) of every message not marked deleted."""
        return [(n, e) for n, e in enumerate(self.entries, 1) if not e.deleted]

    def stat(self) -> tuple[int, int]:
        """Count and total octets of the messages not marked deleted."""
        return self._count, self._octets

    def reset(self) -> None:
        """Unmark every message (RSET)."""
        for entry in self.entries:
            entry.deleted = False
        self._count = len(self.entries)
        self._octets = sum(e.size for e in self.entries)

    async def update(self, expire: str) -> UpdateResult:
        """The UPDATE state (RFC 1939 §6), with the EXPIRE policy (``[pop3] expire``)."""
        doomed = [e for e in self.entries if e.deleted or _expires(e, expire)]
        doomed_uids = {e.uid for e in doomed}
        newly_seen = [
            e.uid for e in self.entries if e.retrieved and not e.seen and e.uid not in doomed_uids
        ]
        if newly_seen:
            await self.backend.store_flags(
                self.account.id,
                self.mailbox.id,
                UidSet.from_uids(newly_seen),
                FlagOp.ADD,
                frozenset({SEEN}),
            )
        if not doomed_uids:
            return UpdateResult(0, 0)
        removed = await self.backend.expunge(
            self.account.id,
            self.mailbox.id,
            UidSet.from_uids(doomed_uids),
            only_deleted=False,
        )
        return UpdateResult(len(removed), len(doomed_uids) - len(removed))


def _expires(entry: Entry, expire: str) -> bool:
    if expire == "never":
        return False
    days = int(expire)
    if days == 0:
        return entry.retrieved
    if not (entry.seen or entry.retrieved):
        return False
    return time.time() - entry.internal_date >= days * SECONDS_PER_DAY

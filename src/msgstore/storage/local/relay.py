"""The forwarding database and the outbound relay queue of the local backend (issue #4).

Both live in system.db (tables ``forwards`` and ``relay_queue``, the named migration
``forwarding_and_relay_queue``); the queued messages are files in ``DATA/queue/``. The
functions taking a :class:`SystemDb` run on the system worker thread; the file functions run
on the file threads.

A message enters the queue with the same discipline as a message entering a mailbox
(``files.place_messages``): written to ``DATA/queue/tmp/<pid>-...`` and fsynced, hard-linked
to ``DATA/queue/<token>.msg``, the directory fsynced, and only then the row committed. A crash
before the commit leaves a file without a row (removed by :func:`remove_orphans` once it is
old enough not to belong to an enqueue in flight); after it, the message is queued. Leaving
the queue is the reverse: the row goes in one transaction, then the file is unlinked.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import fcntl
import json
import os
import secrets
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import IO, Final

from msgstore.core.accounts import AccountInfo
from msgstore.core.errors import ErrorKind, StoreError
from msgstore.storage.base import ForwardEntry, QueueEntry
from msgstore.storage.local import files
from msgstore.storage.local.db import write_transaction
from msgstore.storage.local.files import FileOps
from msgstore.storage.local.system import SystemDb

QUEUE_DIR: Final = "queue"
_SUFFIX: Final = ".msg"
#: A queue file without a row younger than this may belong to an enqueue in flight.
ORPHAN_AGE_S: Final = 600.0
_COPY_CHUNK: Final = 256 * 1024
_FILE_MODE: Final = 0o600

_SELECT_FORWARD: Final = "SELECT address, destinations, keep_copy, created FROM forwards "
_SELECT_QUEUED: Final = (
    "SELECT id, sender, recipients, size, created, next_attempt, attempts, last_error "
    "FROM relay_queue "
)


def _utc(seconds: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(seconds, dt.UTC)


def _forward(row: tuple[object, ...]) -> ForwardEntry:
    address, destinations, keep, created = row
    assert isinstance(address, str)
    assert isinstance(destinations, str)
    assert isinstance(created, int)
    return ForwardEntry(
        address=address,
        destinations=tuple(json.loads(destinations)),
        keep_copy=bool(keep),
        created=_utc(created),
    )


def _queued(row: tuple[object, ...]) -> QueueEntry:
    ident, sender, recipients, size, created, next_attempt, attempts, last_error = row
    assert isinstance(ident, int)
    assert isinstance(sender, str)
    assert isinstance(recipients, str)
    assert isinstance(size, int)
    assert isinstance(attempts, int)
    assert isinstance(last_error, str)
    assert isinstance(created, int | float)
    assert isinstance(next_attempt, int | float)
    return QueueEntry(
        id=ident,
        sender=sender,
        recipients=tuple(json.loads(recipients)),
        size=size,
        created=_utc(float(created)),
        next_attempt=_utc(float(next_attempt)),
        attempts=attempts,
        last_error=last_error,
    )


# --- forwarding (system worker thread) --------------------------------------------------------


def put_forward(
    db: SystemDb, address: str, destinations: Sequence[str], keep_copy: bool, replace: bool
) -> ForwardEntry:
    if not address or not destinations:
        raise StoreError(ErrorKind.PARAMS, "A forwarding entry needs an address and destinations")
    now = int(time.time())
    with write_transaction(db.conn, db.faults):
        key = address.casefold()
        exists = db.conn.execute("SELECT 1 FROM forwards WHERE address_key = ?", (key,)).fetchone()
        if exists is not None and not replace:
            raise StoreError(ErrorKind.EXISTS, f"Forwarding entry already exists: {address}")
        db.conn.execute(
            "INSERT OR REPLACE INTO forwards(address_key, address, destinations, keep_copy, "
            "created) VALUES (?, ?, ?, ?, ?)",
            (key, address, json.dumps(list(destinations)), int(keep_copy), now),
        )
    return get_forward(db, address)


def get_forward(db: SystemDb, address: str) -> ForwardEntry:
    row = db.conn.execute(
        _SELECT_FORWARD + "WHERE address_key = ?", (address.casefold(),)
    ).fetchone()
    if row is None:
        raise StoreError(ErrorKind.NOT_FOUND, f"No forwarding entry for {address}")
    return _forward(row)


def find_recipient(
    db: SystemDb, forward_keys: Sequence[str], account_names: Sequence[str]
) -> tuple[ForwardEntry | None, AccountInfo | None, int]:
    """One delivery recipient in one call (the RCPT check): the forwarding entry of the first
    of ``forward_keys`` that has one; else the first of ``account_names`` that is an account,
    and its position; else (None, None, -1). Forwarding comes first, as for ``get_forward``
    then ``get_account``."""
    for key in forward_keys:
        row = db.conn.execute(
            _SELECT_FORWARD + "WHERE address_key = ?", (key.casefold(),)
        ).fetchone()
        if row is not None:
            return _forward(row), None, -1
    for i, name in enumerate(account_names):
        try:
            return None, db.get_account(name), i
        except StoreError as exc:
            if exc.kind is not ErrorKind.NOT_FOUND:
                raise
    return None, None, -1


def list_forwards(db: SystemDb) -> list[ForwardEntry]:
    rows = db.conn.execute(_SELECT_FORWARD + "ORDER BY address_key").fetchall()
    return [_forward(r) for r in rows]


def delete_forward(db: SystemDb, address: str) -> None:
    with write_transaction(db.conn, db.faults):
        cur = db.conn.execute("DELETE FROM forwards WHERE address_key = ?", (address.casefold(),))
        if cur.rowcount == 0:
            raise StoreError(ErrorKind.NOT_FOUND, f"No forwarding entry for {address}")


# --- the queue rows (system worker thread) ----------------------------------------------------


def insert_queued(
    db: SystemDb, file: str, sender: str, recipients: Sequence[str], size: int
) -> QueueEntry:
    now = time.time()
    with write_transaction(db.conn, db.faults):
        cur = db.conn.execute(
            "INSERT INTO relay_queue(file, sender, recipients, size, created, next_attempt) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (file, sender, json.dumps(list(recipients)), size, now, now),
        )
        assert cur.lastrowid is not None
        ident = cur.lastrowid
    return get_queued(db, ident)


def list_queue(db: SystemDb) -> list[QueueEntry]:
    rows = db.conn.execute(_SELECT_QUEUED + "ORDER BY next_attempt, id").fetchall()
    return [_queued(r) for r in rows]


def get_queued(db: SystemDb, ident: int) -> QueueEntry:
    row = db.conn.execute(_SELECT_QUEUED + "WHERE id = ?", (ident,)).fetchone()
    if row is None:
        raise StoreError(ErrorKind.NOT_FOUND, f"No queued message {ident}")
    return _queued(row)


def queued_file(db: SystemDb, ident: int) -> str:
    row = db.conn.execute("SELECT file FROM relay_queue WHERE id = ?", (ident,)).fetchone()
    if row is None:
        raise StoreError(ErrorKind.NOT_FOUND, f"No queued message {ident}")
    return str(row[0])


def queued_files(db: SystemDb) -> set[str]:
    return {str(r[0]) for r in db.conn.execute("SELECT file FROM relay_queue")}


def update_queued(
    db: SystemDb,
    ident: int,
    done: Sequence[str],
    attempts: int | None,
    next_attempt: dt.datetime | None,
    last_error: str | None,
    dsn: tuple[str, int] | None = None,
) -> tuple[QueueEntry | None, str | None]:
    """Returns the entry after the update (None if it left the queue) and, when it left,
    the name of its file for the caller to unlink.

    ``dsn`` (the name and size of a queue file already written) is queued in the same
    transaction, from the null sender to the entry's sender: the DSN and the change it
    reports commit together or not at all."""
    with write_transaction(db.conn, db.faults):
        row = db.conn.execute(
            "SELECT file, recipients, sender FROM relay_queue WHERE id = ?", (ident,)
        ).fetchone()
        if row is None:
            raise StoreError(ErrorKind.NOT_FOUND, f"No queued message {ident}")
        file, recipients, sender = str(row[0]), json.loads(row[1]), str(row[2])
        if dsn is not None:
            if not sender:
                raise StoreError(ErrorKind.PARAMS, "No DSN for the null sender")
            now = time.time()
            db.conn.execute(
                "INSERT INTO relay_queue(file, sender, recipients, size, created, next_attempt) "
                "VALUES (?, '', ?, ?, ?, ?)",
                (dsn[0], json.dumps([sender]), dsn[1], now, now),
            )
        gone = {r.casefold() for r in done}
        left = [r for r in recipients if r.casefold() not in gone]
        if not left:
            db.conn.execute("DELETE FROM relay_queue WHERE id = ?", (ident,))
            return None, file
        sets = ["recipients = ?"]
        values: list[object] = [json.dumps(left)]
        if attempts is not None:
            sets.append("attempts = ?")
            values.append(attempts)
        if next_attempt is not None:
            sets.append("next_attempt = ?")
            values.append(next_attempt.timestamp())
        if last_error is not None:
            sets.append("last_error = ?")
            values.append(last_error)
        # The column names come from the fixed list above, never from input.
        sql = f"UPDATE relay_queue SET {', '.join(sets)} WHERE id = ?"  # noqa: S608
        db.conn.execute(sql, (*values, ident))
    return get_queued(db, ident), None


def delete_queued(db: SystemDb, ident: int) -> str:
    """Delete the row; returns the file name for the caller to unlink."""
    with write_transaction(db.conn, db.faults):
        file = queued_file(db, ident)
        db.conn.execute("DELETE FROM relay_queue WHERE id = ?", (ident,))
    return file


# --- the queue files (file threads) -----------------------------------------------------------


def write_queue_file(
    ops: FileOps, queue_dir: Path, source: Path, prefix: bytes, skip_octets: int
) -> tuple[str, int]:
    """Write ``prefix`` + ``source[skip_octets:]`` durably to a new file in ``queue_dir``;
    returns its name and size. Nothing is left behind on failure."""

    def fill(fd: int) -> int:
        size = 0
        if prefix:
            ops.write_all(fd, prefix)
            size += len(prefix)
        with open(source, "rb") as f:
            f.seek(skip_octets)
            while chunk := f.read(_COPY_CHUNK):
                ops.write_all(fd, chunk)
                size += len(chunk)
        return size

    return _write_durably(ops, queue_dir, fill)


def write_queue_bytes(ops: FileOps, queue_dir: Path, data: bytes) -> str:
    """Write ``data`` durably to a new file in ``queue_dir`` (a queue copied from another
    store); returns its name."""

    def fill(fd: int) -> int:
        ops.write_all(fd, data)
        return len(data)

    return _write_durably(ops, queue_dir, fill)[0]


def _write_durably(ops: FileOps, queue_dir: Path, fill: Callable[[int], int]) -> tuple[str, int]:
    """A new queue file: ``fill`` writes the temp file (returns the octets), then fsync, link
    into ``queue_dir``, directory fsync. Nothing is left behind on failure."""
    tmp_dir = queue_dir / "tmp"
    ops.ensure_dir(queue_dir)
    ops.ensure_dir(tmp_dir)
    tmp, fd = files.create_temp(ops, tmp_dir)
    name = secrets.token_hex(12) + _SUFFIX
    target = queue_dir / name
    try:
        try:
            size = fill(fd)
            ops.fsync(fd)
        finally:
            os.close(fd)
        files.link_or_copy(ops, tmp, target)
        ops.fsync_dir(queue_dir)
    except BaseException:
        ops.remove_quietly(target)
        raise
    finally:
        ops.remove_quietly(tmp)
    return name, size


def read_queue_file(queue_dir: Path, name: str) -> bytes:
    try:
        return (queue_dir / name).read_bytes()
    except FileNotFoundError as exc:
        raise StoreError(
            ErrorKind.CORRUPTED,
            "queued message file is missing",
            detail=f"{queue_dir / name}: {exc}",
        ) from exc


def remove_queue_file(ops: FileOps, queue_dir: Path, name: str) -> None:
    ops.remove_quietly(queue_dir / name)


def remove_orphans(ops: FileOps, queue_dir: Path, known: set[str]) -> int:
    """Remove queue files without a row (a crash between link and commit) that are older
    than :data:`ORPHAN_AGE_S`, and staging files of dead processes."""
    files.remove_stale_temp_files(ops, queue_dir / "tmp")
    removed = 0
    try:
        names = os.listdir(queue_dir)
    except FileNotFoundError:
        return 0
    now = time.time()
    for name in names:
        if not name.endswith(_SUFFIX) or name in known:
            continue
        try:
            age = now - os.stat(queue_dir / name).st_mtime
        except FileNotFoundError:
            continue
        if age >= ORPHAN_AGE_S:
            ops.remove_quietly(queue_dir / name)
            removed += 1
    return removed


# --- the runner lock (Backend.runner_lock) ----------------------------------------------------


class FileRunnerLock:
    """An flock held on an open file: it is only lost with the process."""

    async def held(self) -> bool:
        return True


def _try_flock(path: Path) -> tuple[IO[str], bool]:
    """Open ``path`` and try ``flock(LOCK_EX | LOCK_NB)``: (the open file, whether locked)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(path, "a+")  # noqa: SIM115 -- held until the block is left
    except OSError as exc:
        raise StoreError(
            ErrorKind.UNAVAILABLE, "Cannot open the runner lock", detail=f"{path}: {exc}"
        ) from exc
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return handle, False
    except OSError as exc:
        handle.close()
        raise StoreError(
            ErrorKind.UNAVAILABLE, "Cannot take the runner lock", detail=f"{path}: {exc}"
        ) from exc
    return handle, True


@asynccontextmanager
async def runner_lock(run_dir: Path, name: str) -> AsyncIterator[FileRunnerLock | None]:
    """``flock`` on ``run_dir/<name>.lock`` (see ``Backend.runner_lock``). The kernel drops
    it when the process dies, however it dies."""
    handle, got = await asyncio.to_thread(_try_flock, run_dir / f"{name}.lock")
    try:
        yield FileRunnerLock() if got else None
    finally:
        handle.close()

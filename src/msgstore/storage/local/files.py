"""Message files: staging, the durable placement into a mailbox, removal, recovery.

Every file operation of the local backend goes through :class:`FileOps`, which consults the
optional :class:`~msgstore.storage.local.faults.FaultPlan` (one ``if`` when there is none).
These functions block; callers run them on a worker thread, never on the event loop.

Paths (ids only, never names)::

    DATA/tmp/<pid>-<start>-<n>-<random>.msg      a staged message (creator pid + start time)
    <tree>/mail/<mailbox-id>/<uid>               one immutable CRLF file per message
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import logging
import os
import secrets
import shutil
import threading
from collections import deque
from concurrent.futures import Executor
from pathlib import Path
from typing import Final

from msgstore.storage.local.faults import FaultPlan

log = logging.getLogger("msgstore.storage.local")

_FILE_MODE: Final = 0o600
_DIR_MODE: Final = 0o700
_COPY_CHUNK: Final = 1 << 20
_TEMP_SUFFIX: Final = ".msg"
_temp_counter = itertools.count(1)
#: Sibling of ``DATA/tmp`` holding empty staging files created ahead of need (same file system).
POOL_DIR: Final = "tmp.pool"
#: Empty staging files kept ready; a refill starts when fewer than half are left.
POOL_SIZE: Final = 8


class FileOps:
    """The file operations of the store, each a fault-injection point."""

    __slots__ = ("faults",)

    def __init__(self, faults: FaultPlan | None) -> None:
        self.faults = faults

    def write_all(self, fd: int, data: bytes | memoryview) -> None:
        if self.faults is not None:
            self.faults.check("write")
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            view = view[n:]

    def fsync(self, fd: int) -> None:
        if self.faults is not None:
            self.faults.check("fsync")
        os.fsync(fd)

    def fsync_dir(self, path: Path) -> None:
        """Make the directory's entries (a new link, rename or child) durable."""
        if self.faults is not None:
            self.faults.check("fsync")
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def link(self, src: Path, dst: Path) -> None:
        if self.faults is not None:
            self.faults.check("link")
        os.link(src, dst)

    def rename(self, src: Path, dst: Path) -> None:
        if self.faults is not None:
            self.faults.check("rename")
        os.rename(src, dst)

    def mkdir(self, path: Path) -> None:
        if self.faults is not None:
            self.faults.check("mkdir")
        os.mkdir(path, _DIR_MODE)

    def unlink(self, path: Path) -> None:
        if self.faults is not None:
            self.faults.check("unlink")
        os.unlink(path)

    def ensure_dir(self, path: Path) -> bool:
        """Create ``path`` if missing and make its entry durable; True if it was created."""
        if path.is_dir():
            return False
        try:
            self.mkdir(path)
        except FileExistsError:
            return False
        self.fsync_dir(path.parent)
        return True

    def remove_quietly(self, path: Path) -> None:
        """Unlink; a missing file or a failure is logged, never raised (cleanup paths)."""
        try:
            self.unlink(path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.warning("could not remove %s: %s", path, exc)


# --- staging ---------------------------------------------------------------------------------


def _process_start_time(pid: int) -> int:
    """The process start time in clock ticks since boot (/proc/<pid>/stat field 22), or 0.

    Together with the pid it names a process uniquely, so a temp file from an earlier process
    that had the same pid (containers restart as pid 1) is still recognised as stale.
    """
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return 0
    fields = stat[stat.rfind(b")") + 2 :].split()
    try:
        return int(fields[19])
    except (IndexError, ValueError):
        return 0


_PROCESS_TOKEN: Final = (os.getpid(), _process_start_time(os.getpid()))


def _current_token() -> tuple[int, int]:
    pid = os.getpid()
    if pid == _PROCESS_TOKEN[0]:
        return _PROCESS_TOKEN
    return (pid, _process_start_time(pid))  # after fork


def temp_name() -> str:
    """A unique staging file name carrying the creator's pid and start time."""
    pid, start = _current_token()
    return f"{pid}-{start}-{next(_temp_counter)}-{secrets.token_hex(6)}{_TEMP_SUFFIX}"


def create_temp(ops: FileOps, tmp_dir: Path) -> tuple[Path, int]:
    """Create a new staging file (O_EXCL); returns its path and a write descriptor."""
    path = tmp_dir / temp_name()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, _FILE_MODE)
    return path, fd


class TempPool:
    """Empty staging files created ahead of need, so that receiving a message does not wait
    for the creation of its inode.

    Creating a file is by far the slowest step of staging on some systems (0.8 ms of CPU on
    the benchmark VM, against 0.2 ms for its fsync); a background refill on the file pool
    does it while the writers wait for their syncs (the first message after the store opens
    creates its own file and starts the first refill). :meth:`take` moves a ready file into
    ``DATA/tmp`` under its own name (a rename; like the ``O_EXCL`` open it replaces, not a
    fault-injection point) and opens it there, so a staged message lives in ``DATA/tmp``
    exactly as before and everything after -- write, fsync, link -- is unchanged.

    A refill creates its batch in one of two directories, ``tmp.pool/0`` and ``tmp.pool/1``,
    taking turns: a creation holds its directory's lock for its whole duration, and the
    files being taken meanwhile come from the other directory. Ready files are named like
    staging files (creator pid and start time), so those of a dead process are removed by
    :func:`remove_stale_temp_files` when the store next opens; :meth:`close` removes the
    process's own.
    """

    def __init__(self, tmp_dir: Path, pool_dir: Path, executor: Executor, size: int) -> None:
        self.tmp_dir = tmp_dir
        self.dirs = (pool_dir / "0", pool_dir / "1")
        self._executor = executor
        self._size = size
        self._ready: deque[Path] = deque()
        self._lock = threading.Lock()
        self._batch = 0
        self._refilling = False
        self._closed = False

    def take(self) -> tuple[Path, int]:
        """A new, empty staging file in ``DATA/tmp``: its path and a write descriptor.
        Blocks (a worker thread); creates one directly when none is ready."""
        with self._lock:
            ready = self._ready.popleft() if self._ready else None
            refill = not self._refilling and not self._closed and len(self._ready) * 2 < self._size
            if refill:
                self._refilling = True
        if refill:
            self._start_refill()
        if ready is not None:
            path = self.tmp_dir / ready.name
            try:
                os.rename(ready, path)
                return path, os.open(path, os.O_WRONLY | os.O_CLOEXEC)
            except OSError as exc:
                log.warning("staging file %s from the pool unusable: %s", ready, exc)
                for stale in (ready, path):
                    with contextlib.suppress(OSError):
                        os.unlink(stale)
        path = self.tmp_dir / temp_name()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, _FILE_MODE)
        return path, fd

    def _start_refill(self) -> None:
        try:
            self._executor.submit(self._refill)
        except RuntimeError:  # the executor is shut down: the store is closing
            with self._lock:
                self._refilling = False

    def _refill(self) -> None:
        directory = self.dirs[self._batch % 2]
        self._batch += 1
        try:
            while True:
                with self._lock:
                    if self._closed or len(self._ready) >= self._size:
                        return
                path = directory / temp_name()
                flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
                os.close(os.open(path, flags, _FILE_MODE))
                with self._lock:
                    if not self._closed:
                        self._ready.append(path)
                        continue
                with contextlib.suppress(OSError):
                    os.unlink(path)
                return
        except OSError as exc:
            log.warning("could not create staging files ahead in %s: %s", directory, exc)
        finally:
            with self._lock:
                self._refilling = False

    def close(self) -> None:
        """Remove the ready files (blocks; the store is closing)."""
        with self._lock:
            self._closed = True
            ready = list(self._ready)
            self._ready.clear()
        for path in ready:
            with contextlib.suppress(OSError):
                os.unlink(path)


def _creator_alive(name: str) -> bool:
    pid_text, _, rest = name.partition("-")
    start_text = rest.partition("-")[0]
    if not pid_text.isdigit() or not start_text.isdigit():
        return False
    pid = int(pid_text)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by another user
    start = int(start_text)
    return start == 0 or _process_start_time(pid) in (0, start)


def remove_stale_temp_files(ops: FileOps, tmp_dir: Path) -> int:
    """Remove staging files whose creating process is gone; returns how many were removed.

    Files of live processes are left alone: they are messages being received right now.
    """
    removed = 0
    try:
        names = os.listdir(tmp_dir)
    except FileNotFoundError:
        return 0
    for name in names:
        if not name.endswith(_TEMP_SUFFIX) or _creator_alive(name):
            continue
        ops.remove_quietly(tmp_dir / name)
        removed += 1
    if removed:
        log.info("removed %d stale staging file(s) from %s", removed, tmp_dir)
    return removed


# --- the durable write -----------------------------------------------------------------------


def place_messages(
    ops: FileOps, sources: list[tuple[Path, int]], mailbox_dir: Path, *, sync: bool = True
) -> list[Path]:
    """Put fsynced message files durably at ``mailbox_dir/<uid>``, one per ``(source, uid)``.

    This is the file half of the durable write; the caller holds the index's write transaction
    (``BEGIN IMMEDIATE``) around it and commits the rows afterwards. For an APPEND or a
    delivery the source is the staged temp file; for COPY and MOVE it is the source message's
    own file (a hard link: the bytes are never rewritten). The whole sequence, and the state a
    crash (kill -9 or power loss) at each point leaves behind:

    1. stage: ``open(DATA/tmp/<pid>-..., O_EXCL)`` and write, CRLF-normalised.
       Crash -> a partial temp file; removed at the next open of the store (creator is dead).
    2. stage: ``fsync(file)``, parse, hash. Crash -> a complete temp file; removed the same way.
    3. ``BEGIN IMMEDIATE``; reserve quota; ``uid = uidnext``. Crash -> SQLite rolls back.
    4. here: ``mkdir mail/<mailbox-id>`` + ``fsync(mail/)`` if it did not exist.
       Crash -> an empty mailbox directory (harmless, reused).
    5. here: ``link(source, mail/<mailbox-id>/<uid>)`` (a copy when the file system refuses
       the link: EMLINK, EXDEV). Crash -> a file without an index row: an orphan, removed by
       the recovery that runs when the index is next opened (under BEGIN IMMEDIATE, so it
       cannot race an append in flight in another process). Its UID was never committed nor
       shown to anyone, so the next append may take it again.
    6. here: ``fsync(mail/<mailbox-id>)`` (once for all files). Crash -> as 5. With
       ``sync=False`` the caller does it, once per directory for a whole group commit
       (``AccountIndex.append_batch``), still after every link and before the commit.
    7. caller: INSERT the rows, bump uidnext/highestmodseq, ``COMMIT`` (WAL,
       synchronous=FULL). Crash before the WAL fsync returns -> as 5; after it -> the message
       is stored but the client never saw OK: it may deliver again (a duplicate, never a loss).
    8. caller: notify watchers, then return (acknowledge). The temp file is unlinked when the
       staging context ends (after the last recipient); a crash leaves it to step 1's cleanup.

    A file already at a target name (an earlier attempt failed after its link and could not
    remove it) is an orphan -- no row can exist: the caller holds the write lock and the UID is
    at or above uidnext -- and is replaced.

    Returns the placed paths. On failure, removes what it placed and raises ``OSError``; the
    caller rolls back, and removes the returned paths itself if a later step fails.
    """
    ops.ensure_dir(mailbox_dir)
    placed: list[Path] = []
    try:
        for source, uid in sources:
            target = mailbox_dir / str(uid)
            try:
                link_or_copy(ops, source, target)
            except FileExistsError:
                ops.unlink(target)
                link_or_copy(ops, source, target)
            placed.append(target)
        if sync:
            ops.fsync_dir(mailbox_dir)
    except BaseException:
        for path in placed:
            ops.remove_quietly(path)
        raise
    return placed


def link_or_copy(ops: FileOps, src: Path, dst: Path) -> None:
    """Hard-link ``src`` to ``dst``; copy (and fsync) when the link count or device forbids."""
    try:
        ops.link(src, dst)
    except OSError as exc:
        if exc.errno not in (errno.EMLINK, errno.EXDEV, errno.EPERM):
            raise
        copy_file(ops, src, dst)


def copy_file(ops: FileOps, src: Path, dst: Path) -> None:
    """Copy ``src`` to a new file ``dst`` and fsync it; a partial ``dst`` is removed."""
    out = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, _FILE_MODE)
    try:
        with open(src, "rb") as f:
            while chunk := f.read(_COPY_CHUNK):
                ops.write_all(out, chunk)
        ops.fsync(out)
    except BaseException:
        os.close(out)
        ops.remove_quietly(dst)
        raise
    os.close(out)


def remove_tree_quietly(path: Path) -> None:
    """Remove a directory tree after its rows are gone; leftovers are found by recovery."""
    try:
        shutil.rmtree(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        log.warning("could not remove %s: %s", path, exc)


def message_uids_on_disk(mailbox_dir: Path) -> list[int]:
    """UIDs of the message files in a mailbox directory; other names are ignored."""
    try:
        names = os.listdir(mailbox_dir)
    except FileNotFoundError:
        return []
    return [int(n) for n in names if n.isdigit() and not n.startswith("0")]


def close_quietly(fd: int) -> None:
    with contextlib.suppress(OSError):
        os.close(fd)

"""Per-account backup: one account's tree as a tar archive, and back (``SupportsBackup``).

The archive holds exactly what reconstruct needs::

    msgstore-export.json        {"format": 1, "account": "bob", "exported": "...Z"}
    index.db                    a consistent copy of the account's index
    mail/<mailbox-id>/<uid>     every message file the copied index lists

**Export while mail arrives.** The copy is taken under the index's write lock (``BEGIN
IMMEDIATE`` on the account's own index connection, so no process can commit a row meanwhile):
a second, read-only connection copies the index with SQLite's backup API, then every message
file the copy lists is hard-linked into a staging directory under ``DATA/tmp``. Message files
are immutable and placed before their row commits, so every listed file exists; a file
expunged later keeps its staged link. The lock is held for the copy and the links only (no
message is read under it); the tar is written afterwards from the staged links, to a temporary
name next to the destination that is renamed into place when complete.

**Restore.** Every member is checked before anything is written: only ``msgstore-export.json``,
``index.db``, and directories and regular files under ``mail/<digits>/<digits>`` are accepted;
an absolute name, a ``..`` component, a symbolic or hard link, a device or FIFO, or anything
else is refused (PARAMS) with the member's name. A compressed archive (gzip, bzip2, xz) is
read too; the declared sizes of all members must fit in the free space (NOT_POSSIBLE
otherwise), and exactly that many octets are read per member, so no archive can fill the disk.
The members are extracted (by name, never ``extractall``) into a staging directory; the index
must be a msgstore index of this schema version. Then, under the live index's write lock, and
only if the account holds no message, the staged ``mail/`` replaces the tree's ``mail/`` and
the staged index replaces ``index.db`` the way reconstruct swaps an index in (old
``-wal``/``-shm`` unlinked first; if another process has the old file open the lock is kept
for the busy timeout). The caller runs
reconstruct with a new UIDVALIDITY afterwards, which re-keys the mailboxes, fixes the account
id, name, limits and quota usage inside the index, and registers the ACL shares.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import os
import shutil
import sqlite3
import tarfile
import time
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Final

from msgstore.core.errors import ErrorKind, StoreError
from msgstore.core.ids import AccountId
from msgstore.storage.base import ExportSummary, Progress
from msgstore.storage.local import files, schema
from msgstore.storage.local.db import BUSY_TIMEOUT_MS, connect, write_transaction
from msgstore.storage.local.index import INDEX_FILE, MAIL_DIR, AccountIndex
from msgstore.storage.local.system import SystemDb

if TYPE_CHECKING:
    from msgstore.storage.local.backend import LocalBackend

MANIFEST: Final = "msgstore-export.json"
FORMAT: Final = 1
#: Largest index.db or manifest accepted from an archive.
MAX_INDEX_OCTETS: Final = 4 * 1024**3
MAX_MANIFEST_OCTETS: Final = 64 * 1024
_CHUNK: Final = 1024 * 1024
#: Free space a restore leaves in the data directory's file system (beyond what it writes).
FREE_MARGIN: Final = 64 * 1024 * 1024


_STAGING_SUFFIXES: Final = (".export", ".restore")


def remove_stale_staging(tmp_dir: Path) -> None:
    """Remove export/restore staging directories left by processes that died (a crash during
    an export or a restore; the names carry the creator's pid and start time)."""
    try:
        names = os.listdir(tmp_dir)
    except FileNotFoundError:
        return
    for name in names:
        if name.endswith(_STAGING_SUFFIXES) and not files._creator_alive(name):
            files.remove_tree_quietly(tmp_dir / name)


def _new_staging(tmp_dir: Path, suffix: str) -> Path:
    remove_stale_staging(tmp_dir)
    staging = tmp_dir / (files.temp_name() + suffix)
    staging.mkdir(mode=0o700)
    return staging


# --- export ----------------------------------------------------------------------------------


def _snapshot(index: AccountIndex, staging: Path) -> list[tuple[int, int, int]]:
    """On the index thread: copy the index and link its files under the write lock.

    Returns (mailbox id, uid, size) of every message in the copy.
    """
    copy_path = staging / INDEX_FILE
    with write_transaction(index.conn, None):
        reader = connect(index.path, create=False)
        try:
            target = sqlite3.connect(copy_path)
            try:
                reader.backup(target)
                rows = [
                    (int(m), int(u), int(s))
                    for m, u, s in target.execute(
                        "SELECT mailbox_id, uid, size FROM messages ORDER BY mailbox_id, uid"
                    )
                ]
            finally:
                target.close()
        finally:
            reader.close()
        made: set[int] = set()
        for mailbox, uid, _ in rows:
            box = staging / MAIL_DIR / str(mailbox)
            if mailbox not in made:
                box.mkdir(parents=True, exist_ok=True)
                made.add(mailbox)
            source = index.mail_dir / str(mailbox) / str(uid)
            try:
                os.link(source, box / str(uid))
            except OSError:
                shutil.copyfile(source, box / str(uid))  # EXDEV/EMLINK: a copy will do
    return rows


def _tarinfo(name: str, size: int, mtime: float, *, directory: bool = False) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = 0 if directory else size
    info.mtime = int(mtime)
    info.mode = 0o700 if directory else 0o600
    info.type = tarfile.DIRTYPE if directory else tarfile.REGTYPE
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def _write_tar(
    staging: Path,
    rows: list[tuple[int, int, int]],
    destination: Path,
    manifest: bytes,
    progress: Progress | None,
) -> int:
    """Write the archive to a temporary name beside ``destination``, then rename it."""
    partial = destination.with_name(f".{destination.name}.{files.temp_name()}.part")
    now = time.time()
    try:
        with tarfile.open(partial, "w", format=tarfile.PAX_FORMAT) as tar:
            tar.addfile(_tarinfo(MANIFEST, len(manifest), now), _BytesReader(manifest))
            index_path = staging / INDEX_FILE
            with open(index_path, "rb") as fh:
                tar.addfile(_tarinfo(INDEX_FILE, index_path.stat().st_size, now), fh)
            tar.addfile(_tarinfo(MAIL_DIR, 0, now, directory=True))
            seen: set[int] = set()
            for done, (mailbox, uid, _) in enumerate(rows, 1):
                if mailbox not in seen:
                    seen.add(mailbox)
                    tar.addfile(_tarinfo(f"{MAIL_DIR}/{mailbox}", 0, now, directory=True))
                path = staging / MAIL_DIR / str(mailbox) / str(uid)
                st = path.stat()
                member = _tarinfo(f"{MAIL_DIR}/{mailbox}/{uid}", st.st_size, st.st_mtime)
                with open(path, "rb") as fh:
                    tar.addfile(member, fh)
                if progress is not None:
                    progress(done, len(rows))
        fd = os.open(partial, os.O_RDONLY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(partial, destination)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(partial)
        raise
    return destination.stat().st_size


class _BytesReader:
    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pos = 0

    def read(self, size: int = -1) -> bytes:
        end = len(self._data) if size < 0 else self._pos + size
        chunk = self._data[self._pos : end]
        self._pos += len(chunk)
        return chunk


def _check_destination(destination: Path) -> Path:
    destination = Path(os.path.abspath(destination))
    if not destination.parent.is_dir():
        raise StoreError(ErrorKind.PARAMS, f"No such directory: {destination.parent}")
    if destination.is_dir():
        raise StoreError(ErrorKind.PARAMS, f"{destination} is a directory")
    return destination


async def export_account(
    backend: LocalBackend,
    account: AccountId,
    destination: Path,
    progress: Progress | None,
) -> ExportSummary:
    info = await backend._sys(SystemDb.get_account_by_id, account)
    destination = await asyncio.to_thread(_check_destination, destination)
    staging = await asyncio.to_thread(_new_staging, backend._tmp_dir, ".export")
    try:
        rows = await backend._idx(account, _snapshot, staging)
        manifest = json.dumps(
            {
                "format": FORMAT,
                "account": info.name,
                "exported": dt.datetime.now(dt.UTC).isoformat(),
            }
        ).encode()
        try:
            size = await asyncio.to_thread(
                _write_tar, staging, rows, destination, manifest, progress
            )
        except OSError as exc:
            raise StoreError(
                ErrorKind.TEMP, f"Cannot write {destination}: {exc.strerror}", detail=str(exc)
            ) from exc
    finally:
        await asyncio.to_thread(files.remove_tree_quietly, staging)
    return ExportSummary(
        account=info.name,
        mailboxes=len({m for m, _, _ in rows}),
        messages=len(rows),
        octets=sum(s for _, _, s in rows),
        archive_octets=size,
    )


# --- restore ---------------------------------------------------------------------------------


def _refuse(member: str, why: str) -> StoreError:
    return StoreError(ErrorKind.PARAMS, f"Refusing archive member {member!r}: {why}")


def check_member(member: tarfile.TarInfo) -> tuple[str, ...]:
    """The member's path components if it is acceptable; PARAMS naming it otherwise."""
    name = member.name
    if name.startswith("/") or PurePosixPath(name).is_absolute():
        raise _refuse(name, "absolute path")
    parts = tuple(p for p in name.split("/") if p not in ("", "."))
    if ".." in parts:
        raise _refuse(name, "path with '..'")
    if member.issym() or member.islnk():
        raise _refuse(name, f"link to {member.linkname!r}")
    if member.isdev() or member.isfifo():
        raise _refuse(name, "device or FIFO")
    if not (member.isreg() or member.isdir()):
        raise _refuse(name, "not a regular file or directory")
    if member.isdir():
        ok = (
            len(parts) in (1, 2)
            and parts[0] == MAIL_DIR
            and all(p.isascii() and p.isdigit() for p in parts[1:])
        )
    elif len(parts) == 1:
        ok = parts[0] in (INDEX_FILE, MANIFEST)
    else:
        ok = (
            len(parts) == 3
            and parts[0] == MAIL_DIR
            and all(p.isascii() and p.isdigit() and not p.startswith("0") for p in parts[1:])
        )
    if not ok:
        raise _refuse(name, "not part of a msgstore account archive")
    return parts


def _extract(source: Path, staging: Path, progress: Progress | None) -> int:
    """Check every member, then extract into ``staging``; returns the number of messages."""
    try:
        tar = tarfile.open(source, "r:*")  # noqa: SIM115 (closed by the with below)
    except FileNotFoundError:
        raise StoreError(ErrorKind.NOT_FOUND, f"No such file: {source}") from None
    except (tarfile.TarError, OSError) as exc:
        raise StoreError(ErrorKind.PARAMS, f"{source} is not a tar archive: {exc}") from exc
    with tar:
        try:
            members = tar.getmembers()
        except (tarfile.TarError, OSError) as exc:
            raise StoreError(ErrorKind.PARAMS, f"{source} is a damaged tar archive") from exc
        checked = [(m, check_member(m)) for m in members]
        names = {parts for _, parts in checked}
        if (INDEX_FILE,) not in names:
            raise StoreError(ErrorKind.PARAMS, f"{source} has no {INDEX_FILE}: not an export")
        if len(names) != len(checked):
            raise StoreError(ErrorKind.PARAMS, f"{source} lists a member twice")
        messages = [m for m, parts in checked if m.isreg() and len(parts) == 3]
        needed = sum(m.size for m, _ in checked if m.isreg())
        free = shutil.disk_usage(staging).free
        if needed + FREE_MARGIN > free:
            raise StoreError(
                ErrorKind.NOT_POSSIBLE,
                f"{source} needs {needed} octets; only {free} are free in the data directory",
            )
        (staging / MAIL_DIR).mkdir(mode=0o700)
        done = 0
        for member, parts in checked:
            target = staging.joinpath(*parts)
            if member.isdir():
                target.mkdir(mode=0o700, exist_ok=True)
                continue
            if len(parts) == 1:
                limit = MAX_INDEX_OCTETS if parts[0] == INDEX_FILE else MAX_MANIFEST_OCTETS
                if member.size > limit:
                    raise _refuse(member.name, "too large")
            target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            reader = tar.extractfile(member)
            if reader is None:
                raise _refuse(member.name, "cannot be read")
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            try:
                remaining = member.size
                while remaining > 0:
                    chunk = reader.read(min(_CHUNK, remaining))
                    if not chunk:
                        raise _refuse(member.name, "truncated")
                    os.write(fd, chunk)
                    remaining -= len(chunk)
                os.fsync(fd)
            finally:
                os.close(fd)
            if len(parts) == 3:
                done += 1
                if progress is not None:
                    progress(done, len(messages))
    return len(messages)


def _check_index(path: Path, account: AccountId, name: str) -> None:
    """The staged index must be ours; point its meta at the target account."""
    try:
        conn = sqlite3.connect(path, isolation_level=None)
        try:
            if conn.execute("PRAGMA quick_check").fetchone() != ("ok",):
                raise StoreError(ErrorKind.PARAMS, "The archive's index.db is damaged")
            if schema.schema_version(conn) != schema.INDEX_SCHEMA_VERSION:
                raise StoreError(
                    ErrorKind.PARAMS, "The archive's index.db is not a msgstore index"
                )
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("UPDATE meta SET value = ? WHERE key = 'account_id'", (str(account),))
            conn.execute("UPDATE meta SET value = ? WHERE key = 'account_name'", (name,))
            conn.execute("COMMIT")
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        raise StoreError(ErrorKind.PARAMS, "The archive's index.db is not a database") from exc
    for suffix in ("-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(str(path) + suffix)


def _swap_in(tree: Path, staging: Path, account_name: str) -> None:
    """Replace the (empty) account's mail/ and index.db with the staged ones, under the lock."""
    from msgstore.storage.local.reconstruct import _open_elsewhere

    live = tree / INDEX_FILE
    ident = (live.stat().st_dev, live.stat().st_ino)
    old = connect(live, create=False)
    try:
        with write_transaction(old, None):
            (count,) = old.execute("SELECT count(*) FROM messages").fetchone()
            if count:
                raise StoreError(
                    ErrorKind.NOT_POSSIBLE,
                    f"Account {account_name!r} holds {count} messages: restore only into a "
                    "new or empty account",
                )
            os.rename(tree / MAIL_DIR, staging / "mail.replaced")
            os.rename(staging / MAIL_DIR, tree / MAIL_DIR)
            os.rename(live, staging / "index.replaced")
            for suffix in ("-wal", "-shm"):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tree / (INDEX_FILE + suffix))
            os.rename(staging / INDEX_FILE, live)
            fd = os.open(tree, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            # Writers of other processes may wait on the old file's lock: let them time out.
            if _open_elsewhere(ident):
                time.sleep(BUSY_TIMEOUT_MS / 1000 + 1)
    finally:
        old.close()


async def restore_account(
    backend: LocalBackend, account: AccountId, source: Path, progress: Progress | None
) -> int:
    info = await backend._sys(SystemDb.get_account_by_id, account)
    if await backend._idx(account, _message_count):
        raise StoreError(
            ErrorKind.NOT_POSSIBLE,
            f"Account {info.name!r} holds mail: restore only into a new or empty account",
        )
    staging = await asyncio.to_thread(_new_staging, backend._tmp_dir, ".restore")
    try:
        count = await asyncio.to_thread(_extract, Path(source), staging, progress)
        await asyncio.to_thread(_check_index, staging / INDEX_FILE, account, info.name)
        worker = backend._indexes.pop(account, None)
        if worker is not None:
            await worker.close()
        await asyncio.to_thread(_swap_in, backend._tree(account), staging, info.name)
    finally:
        await asyncio.to_thread(files.remove_tree_quietly, staging)
    return count


def _message_count(index: AccountIndex) -> int:
    (count,) = index.conn.execute("SELECT count(*) FROM messages").fetchone()
    return int(count)

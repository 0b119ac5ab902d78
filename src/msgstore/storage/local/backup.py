"""Per-account backup: one account's tree as a tar archive, and back (``SupportsBackup``).

The archive is the backend-neutral one of ``storage/archive.py`` (format 2: manifest,
``account.json``, ``messages.jsonl``, ``mail/<mailbox-id>/<uid>``), plus this backend's own
copy of the index as ``index.db``, which a local restore puts in place as it is. An archive
without ``index.db`` (written by the postgres backend) is restored by building an index from
the records; a format-1 archive (``index.db`` and ``mail/`` only) as before. The postgres
backend reads the rows of a format-1 ``index.db`` through :class:`IndexRecords`.

**Export while mail arrives.** The copy is taken under the index's write lock (``BEGIN
IMMEDIATE`` on the account's own index connection, so no process can commit a row meanwhile):
a second, read-only connection copies the index with SQLite's backup API, then every message
file the copy lists is hard-linked into a staging directory under ``DATA/tmp``. Message files
are immutable and placed before their row commits, so every listed file exists; a file
expunged later keeps its staged link. The lock is held for the copy and the links only (no
message is read under it); the records and the tar are written afterwards from the copy and
the staged links, to a temporary name next to the destination that is renamed into place when
complete.

**Restore.** Every member is checked before anything is written (``archive.check_member``):
only the manifest, ``index.db``, ``account.json``, ``messages.jsonl``, and directories and
regular files under ``mail/<digits>/<digits>`` are accepted; an absolute name, a ``..``
component, a symbolic or hard link, a device or FIFO, or anything else is refused (PARAMS)
with the member's name. A compressed archive (gzip, bzip2, xz) is read too; the declared sizes
of all members must fit in the free space (NOT_POSSIBLE otherwise), and exactly that many
octets are read per member, so no archive can fill the disk. The members are extracted (by
name, never ``extractall``) into a staging directory; the index must be a msgstore index of
this schema version (or is built from the records, every message file checked against its
record's size and SHA-256). Then, under the live index's write lock, and only if the account
holds no message, the staged ``mail/`` replaces the tree's ``mail/`` and the staged index
replaces ``index.db`` the way reconstruct swaps an index in (old ``-wal``/``-shm`` unlinked
first; if another process has the old file open the lock is kept for the busy timeout). The
caller runs reconstruct with a new UIDVALIDITY afterwards, which re-keys the mailboxes, fixes
the account id, name, limits and quota usage inside the index, and registers the ACL shares.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import shutil
import sqlite3
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Final

from msgstore.core.accounts import AccountInfo
from msgstore.core.errors import ErrorKind, StoreError
from msgstore.core.flags import SYSTEM_BITS, from_storage, keywords_of
from msgstore.core.ids import AccountId
from msgstore.core.names import INBOX
from msgstore.mime.parse import METADATA_VERSION, parse_message
from msgstore.storage import archive
from msgstore.storage.archive import (
    ACCOUNT_FILE,
    MANIFEST,
    MESSAGES_FILE,
    ArchiveAccount,
    ArchiveMailbox,
    ArchiveMessage,
)
from msgstore.storage.base import ExportSummary, Progress
from msgstore.storage.local import files, schema
from msgstore.storage.local.db import BUSY_TIMEOUT_MS, connect, write_transaction
from msgstore.storage.local.index import (
    INDEX_FILE,
    MAIL_DIR,
    AccountIndex,
    acl_identifier,
    date_from_storage,
    date_to_storage,
    parse_special_use,
)
from msgstore.storage.local.system import SystemDb

if TYPE_CHECKING:
    from msgstore.storage.local.backend import LocalBackend

#: Kept for callers of the local module; the rules live in ``storage/archive.py``.
check_member = archive.check_member
FORMAT: Final = archive.FORMAT

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


def new_staging(tmp_dir: Path, suffix: str) -> Path:
    tmp_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
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
            for name in (ACCOUNT_FILE, MESSAGES_FILE, INDEX_FILE):
                path = staging / name
                with open(path, "rb") as fh:
                    tar.addfile(_tarinfo(name, path.stat().st_size, now), fh)
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


class IndexRecords:
    """The archive records (``storage/archive.py``) of an index.db copy: the local export
    writes them beside its copy, the postgres backend restores format-1 archives from them.
    Blocking; the connection may be used from one thread after another."""

    def __init__(self, path: Path) -> None:
        try:
            self._conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
        except sqlite3.Error as exc:
            raise StoreError(ErrorKind.PARAMS, "The archive's index.db cannot be read") from exc
        try:
            _check_foreign_index(self._conn)
            if schema.schema_version(self._conn) != schema.INDEX_SCHEMA_VERSION:
                raise StoreError(
                    ErrorKind.PARAMS, "The archive's index.db is not a msgstore index"
                )
        except sqlite3.DatabaseError as exc:
            self._conn.close()
            raise StoreError(ErrorKind.PARAMS, "The archive's index.db is not a database") from exc
        except BaseException:
            self._conn.close()
            raise

    def close(self) -> None:
        self._conn.close()

    def account(self, name: str) -> ArchiveAccount:
        c = self._conn
        keywords: dict[int, list[str]] = {}
        for m, kw in c.execute("SELECT mailbox_id, keyword FROM mailbox_keywords ORDER BY 1, 2"):
            keywords.setdefault(int(m), []).append(str(kw))
        acl: dict[int, list[tuple[str, str]]] = {}
        for m, ident, rights in c.execute(
            "SELECT mailbox_id, identifier, rights FROM acl ORDER BY 1, identifier_key"
        ):
            acl.setdefault(int(m), []).append((str(ident), str(rights)))
        limits = c.execute("SELECT storage_limit_octets, message_limit FROM quota").fetchone()
        return ArchiveAccount(
            name=name,
            mailboxes=tuple(
                ArchiveMailbox(
                    id=int(i),
                    name=str(n),
                    uidvalidity=int(v),
                    uidnext=int(un),
                    highestmodseq=int(h),
                    special_use=str(su),
                    keywords=tuple(keywords.get(int(i), ())),
                    acl=tuple(acl.get(int(i), ())),
                )
                for i, n, v, un, h, su in c.execute(
                    "SELECT id, name, uidvalidity, uidnext, highestmodseq, special_use "
                    "FROM mailboxes ORDER BY id"
                )
            ),
            subscriptions=tuple(
                str(n) for (n,) in c.execute("SELECT name FROM subscriptions ORDER BY name")
            ),
            storage_limit_kib=(
                None if limits is None or limits[0] is None else int(limits[0]) // 1024
            ),
            message_limit=None if limits is None or limits[1] is None else int(limits[1]),
        )

    def messages(self) -> Iterator[ArchiveMessage]:
        for m, uid, modseq, bits, kws, seconds, offset, size, sha, uidl in self._conn.execute(
            "SELECT m.mailbox_id, m.uid, m.modseq, m.sysflags, m.keywords, m.internal_date, "
            "m.tz_offset, m.size, x.sha256, x.uidl FROM messages m "
            "JOIN message_meta x ON x.id = m.meta_id ORDER BY m.mailbox_id, m.uid"
        ):
            yield ArchiveMessage(
                mailbox=int(m),
                uid=int(uid),
                modseq=int(modseq),
                flags=from_storage(int(bits), kws),
                internal_date=date_from_storage(int(seconds), int(offset)),
                size=int(size),
                sha256=bytes(sha),
                uidl=str(uidl),
            )


def _write_records(staging: Path, name: str) -> None:
    """``account.json`` and ``messages.jsonl`` from the staged index copy (streamed)."""
    records = IndexRecords(staging / INDEX_FILE)
    try:
        (staging / ACCOUNT_FILE).write_bytes(archive.account_bytes(records.account(name)))
        with open(staging / MESSAGES_FILE, "wb") as fh:
            for message in records.messages():
                fh.write(archive.message_line(message))
    finally:
        records.close()


async def export_account(
    backend: LocalBackend,
    account: AccountId,
    destination: Path,
    progress: Progress | None,
) -> ExportSummary:
    info = await backend._sys(SystemDb.get_account_by_id, account)
    destination = await asyncio.to_thread(archive.check_destination, destination)
    staging = await asyncio.to_thread(new_staging, backend._tmp_dir, ".export")
    try:
        rows = await backend._idx(account, _snapshot, staging)
        await asyncio.to_thread(_write_records, staging, info.name)
        manifest = archive.manifest_bytes(info.name, "local")
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


def _check_foreign_index(conn: sqlite3.Connection) -> None:
    """An index.db from an archive: undamaged, and no trigger or view (SQL that would run
    inside the live index later); ``trusted_schema`` off while it is read."""
    conn.execute("PRAGMA trusted_schema = OFF")
    if conn.execute("PRAGMA quick_check").fetchone() != ("ok",):
        raise StoreError(ErrorKind.PARAMS, "The archive's index.db is damaged")
    extra = conn.execute(
        "SELECT type, name FROM sqlite_master WHERE type IN ('trigger', 'view') LIMIT 1"
    ).fetchone()
    if extra is not None:
        raise StoreError(
            ErrorKind.PARAMS, f"The archive's index.db has a {extra[0]} ({extra[1]!r}): refused"
        )


def _check_index(path: Path, account: AccountId, info: AccountInfo) -> None:
    """The staged index must be ours; point its meta and limits at the target account."""
    name = info.name
    try:
        conn = sqlite3.connect(path, isolation_level=None)
        try:
            _check_foreign_index(conn)
            if schema.schema_version(conn) != schema.INDEX_SCHEMA_VERSION:
                raise StoreError(
                    ErrorKind.PARAMS, "The archive's index.db is not a msgstore index"
                )
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("UPDATE meta SET value = ? WHERE key = 'account_id'", (str(account),))
            conn.execute("UPDATE meta SET value = ? WHERE key = 'account_name'", (name,))
            kib = info.storage_limit_kib
            conn.execute(
                "UPDATE quota SET storage_limit_octets = ?, message_limit = ?",
                (None if kib is None else kib * 1024, info.message_limit),
            )
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


def _renumber(staging: Path, account: ArchiveAccount) -> dict[int, int]:
    """Archive mailbox ids -> this tree's (INBOX is mailbox 1 in every tree); the staged
    ``mail/<id>`` directories are renamed to match. PARAMS for files of an unknown mailbox."""
    order = sorted(account.mailboxes, key=lambda b: (b.name != INBOX, b.id))
    ids = {b.id: n for n, b in enumerate(order, 1)}
    mail = staging / MAIL_DIR
    renumbered = staging / "mail.renumbered"
    renumbered.mkdir(mode=0o700)
    for old, new in ids.items():
        with contextlib.suppress(FileNotFoundError):
            os.rename(mail / str(old), renumbered / str(new))
    for left in sorted(mail.iterdir()):
        if any(left.iterdir()):
            raise StoreError(
                ErrorKind.PARAMS,
                f"The archive has messages in {MAIL_DIR}/{left.name}/, a mailbox "
                f"{ACCOUNT_FILE} does not list",
            )
    shutil.rmtree(mail)
    os.rename(renumbered, mail)
    return ids


def _index_from_records(staging: Path, account: AccountId, name: str, files_in: int) -> int:
    """Build ``staging/index.db`` from ``account.json`` and ``messages.jsonl`` (an archive of
    another backend). Every message file is read once: checked against its record's size and
    SHA-256, and parsed for its metadata. Returns the number of messages."""
    records = archive.read_account(staging)
    for box in records.mailboxes:
        parse_special_use(box.special_use)
        for ident, _ in box.acl:
            acl_identifier(ident)
    ids = _renumber(staging, records)
    conn = sqlite3.connect(staging / INDEX_FILE, isolation_level=None)
    try:
        conn.execute("BEGIN")
        schema.create_index_schema(
            conn,
            account_id=account,
            account_name=name,
            storage_limit_octets=None,
            message_limit=None,
            first_uidvalidity=max(b.uidvalidity for b in records.mailboxes) + 1,
        )
        for box in records.mailboxes:
            conn.execute(
                "INSERT INTO mailboxes(id, name, uidvalidity, uidnext, highestmodseq, "
                "special_use, recent_uid) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    ids[box.id],
                    box.name,
                    box.uidvalidity,
                    box.uidnext,
                    box.highestmodseq,
                    parse_special_use(box.special_use),
                    box.uidnext,
                ),
            )
            conn.executemany(
                "INSERT OR IGNORE INTO mailbox_keywords(mailbox_id, keyword) VALUES (?, ?)",
                [(ids[box.id], kw) for kw in box.keywords],
            )
            conn.executemany(
                "INSERT OR REPLACE INTO acl(mailbox_id, identifier_key, identifier, rights) "
                "VALUES (?, ?, ?, ?)",
                [(ids[box.id], *reversed(acl_identifier(i)), r) for i, r in box.acl],
            )
        conn.executemany(
            "INSERT INTO subscriptions(name) VALUES (?)", [(n,) for n in records.subscriptions]
        )
        count = octets = 0
        for m in archive.read_messages(staging):
            mailbox = ids.get(m.mailbox)
            if mailbox is None:
                raise StoreError(
                    ErrorKind.PARAMS,
                    f"The archive's message {m.mailbox}/{m.uid} is in a mailbox "
                    f"{ACCOUNT_FILE} does not list",
                )
            member = archive.mail_member(m.mailbox, m.uid)
            try:
                data = (staging / MAIL_DIR / str(mailbox) / str(m.uid)).read_bytes()
            except FileNotFoundError:
                raise StoreError(ErrorKind.PARAMS, f"The archive has no {member}") from None
            if len(data) != m.size or hashlib.sha256(data).digest() != m.sha256:
                raise StoreError(
                    ErrorKind.PARAMS, f"The archive's {member} differs from its record"
                )
            parsed = parse_message(data)
            cur = conn.execute(
                "INSERT INTO message_meta(sha256, uidl, meta_version, envelope, "
                "bodystructure, body, partmap, headers) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    m.sha256,
                    m.uidl,
                    METADATA_VERSION,
                    bytes(parsed.envelope),
                    bytes(parsed.bodystructure),
                    bytes(parsed.body),
                    bytes(parsed.partmap.to_bytes()),
                    json.dumps(dict(parsed.headers), ensure_ascii=False, separators=(",", ":")),
                ),
            )
            seconds, offset = date_to_storage(m.internal_date)
            kws = keywords_of(m.flags)
            conn.executemany(
                "INSERT OR IGNORE INTO mailbox_keywords(mailbox_id, keyword) VALUES (?, ?)",
                [(mailbox, kw) for kw in kws],
            )
            try:
                conn.execute(
                    "INSERT INTO messages(mailbox_id, uid, modseq, sysflags, keywords, "
                    "internal_date, tz_offset, size, meta_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        mailbox,
                        m.uid,
                        m.modseq,
                        sum(SYSTEM_BITS.get(f, 0) for f in m.flags),
                        " ".join(sorted(kws)) or None,
                        seconds,
                        offset,
                        m.size,
                        cur.lastrowid,
                    ),
                )
            except sqlite3.IntegrityError:
                raise StoreError(ErrorKind.PARAMS, f"The archive lists {member} twice") from None
            count += 1
            octets += m.size
        if count != files_in:
            raise StoreError(
                ErrorKind.PARAMS,
                f"The archive has {files_in - count} message files without a record",
            )
        conn.execute(
            "UPDATE mailboxes SET "
            "uidnext = max(uidnext, coalesce((SELECT max(uid) + 1 FROM messages m "
            "WHERE m.mailbox_id = mailboxes.id), 1)), "
            "highestmodseq = max(highestmodseq, coalesce((SELECT max(modseq) FROM messages m "
            "WHERE m.mailbox_id = mailboxes.id), 1))"
        )
        conn.execute(
            "UPDATE quota SET storage_used_octets = ?, messages_used = ?", (octets, count)
        )
        conn.execute("COMMIT")
    finally:
        conn.close()
    return count


def _stage_archive(
    source: Path, staging: Path, account: AccountId, info: AccountInfo, progress: Progress | None
) -> int:
    """Extract and check the archive; leave ``staging/index.db`` and ``staging/mail/``."""
    extracted = archive.extract(source, staging, progress)
    if INDEX_FILE in extracted.files:
        count = extracted.messages
    else:
        count = _index_from_records(staging, account, info.name, extracted.messages)
    _check_index(staging / INDEX_FILE, account, info)
    return count


async def restore_account(
    backend: LocalBackend, account: AccountId, source: Path, progress: Progress | None
) -> int:
    info = await backend._sys(SystemDb.get_account_by_id, account)
    if await backend._idx(account, _message_count):
        raise StoreError(
            ErrorKind.NOT_POSSIBLE,
            f"Account {info.name!r} holds mail: restore only into a new or empty account",
        )
    staging = await asyncio.to_thread(new_staging, backend._tmp_dir, ".restore")
    try:
        count = await asyncio.to_thread(
            _stage_archive, Path(source), staging, account, info, progress
        )
        worker = backend._indexes.pop(account, None)
        if worker is not None:
            await worker.close()
        await asyncio.to_thread(_swap_in, backend._tree(account), staging, info.name)
    finally:
        await asyncio.to_thread(files.remove_tree_quietly, staging)
    # The shares directory lists the restored ACL entries (reconstruct adds them only when
    # it rewrites the index; with the archive's UIDVALIDITY kept it may find nothing to do).
    for mailbox, key in await backend._idx(account, _acl_keys):
        await backend._sys(SystemDb.add_share, account, mailbox, key)
    return count


def _acl_keys(index: AccountIndex) -> list[tuple[int, str]]:
    return [
        (int(m), str(k))
        for m, k in index.conn.execute("SELECT mailbox_id, identifier_key FROM acl")
    ]


def _message_count(index: AccountIndex) -> int:
    (count,) = index.conn.execute("SELECT count(*) FROM messages").fetchone()
    return int(count)

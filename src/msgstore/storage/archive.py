"""The per-account archive, readable by every backend (``account export`` / ``account restore``).

A tar file (plain, or gzip/bzip2/xz-compressed when read)::

    msgstore-export.json   {"format": 2, "account": "bob", "exported": "...Z", "backend": "..."}
    account.json           mailboxes (archive id, name, UIDVALIDITY, UIDNEXT, HIGHESTMODSEQ,
                           special use, keyword list, ACL), subscriptions, quota limits
    messages.jsonl         one JSON object a line: mailbox (archive id), uid, modseq, flags,
                           internal_date (ISO 8601 with its offset), size, sha256 (hex), uidl
    mail/<mailbox>/<uid>   the message octets (CRLF, as stored)
    index.db               only in archives of the local backend: its own copy of the index,
                           which a local restore puts in place as it is

Format 1 (local exports before this module) has ``index.db`` and ``mail/`` only; it is still
restored by both backends (the postgres backend reads the rows out of the SQLite copy).

Both writers take the archive from one committed state of the account, so every record has its
message member and every message member its record. Both readers refuse, before anything is
written to the store: absolute names, ``..`` components, links of either kind, devices, FIFOs,
members outside the layout above (PARAMS, naming the member); a manifest, ``account.json`` or
``messages.jsonl`` line beyond its size limit; an archive needing more space than is free
(NOT_POSSIBLE). Members are extracted by name into a staging directory, never with
``extractall``, and exactly the declared number of octets is read per member.

This module knows no backend: it checks, extracts and parses; ``storage.local.backup`` and
``storage.postgres.backup`` turn records into rows.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import shutil
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any, BinaryIO, Final

from msgstore.core.acl import Rights
from msgstore.core.errors import ErrorKind, StoreError
from msgstore.core.flags import normalize_flags
from msgstore.core.ids import MAX_UID
from msgstore.core.names import INBOX, mailbox_name
from msgstore.storage.base import Progress

MANIFEST: Final = "msgstore-export.json"
ACCOUNT_FILE: Final = "account.json"
MESSAGES_FILE: Final = "messages.jsonl"
INDEX_FILE: Final = "index.db"
MAIL_DIR: Final = "mail"
#: The format written; ``READABLE`` are those restored.
FORMAT: Final = 2
READABLE: Final = (1, 2)

#: Largest members accepted (beyond these, the archive is refused before any write).
MAX_MANIFEST_OCTETS: Final = 64 * 1024
MAX_ACCOUNT_OCTETS: Final = 64 * 1024 * 1024
MAX_INDEX_OCTETS: Final = 4 * 1024**3  # index.db and messages.jsonl
MAX_LINE_OCTETS: Final = 1024 * 1024
_LIMITS: Final = {
    MANIFEST: MAX_MANIFEST_OCTETS,
    ACCOUNT_FILE: MAX_ACCOUNT_OCTETS,
    MESSAGES_FILE: MAX_INDEX_OCTETS,
    INDEX_FILE: MAX_INDEX_OCTETS,
}
#: Free space a restore leaves in the data directory's file system (beyond what it writes).
FREE_MARGIN: Final = 64 * 1024 * 1024
CHUNK: Final = 1024 * 1024


# --- records ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ArchiveMailbox:
    id: int  # the archive's id: names mail/<id>/
    name: str
    uidvalidity: int
    uidnext: int
    highestmodseq: int
    special_use: str
    keywords: tuple[str, ...]
    acl: tuple[tuple[str, str], ...]  # (identifier, rights)


@dataclass(frozen=True, slots=True)
class ArchiveAccount:
    name: str
    mailboxes: tuple[ArchiveMailbox, ...]
    subscriptions: tuple[str, ...]
    storage_limit_kib: int | None
    message_limit: int | None


@dataclass(frozen=True, slots=True)
class ArchiveMessage:
    mailbox: int
    uid: int
    modseq: int
    flags: frozenset[str]
    internal_date: dt.datetime  # timezone-aware
    size: int
    sha256: bytes
    uidl: str


def mail_member(mailbox: int, uid: int) -> str:
    return f"{MAIL_DIR}/{mailbox}/{uid}"


def manifest_bytes(account: str, backend: str) -> bytes:
    return json.dumps(
        {
            "format": FORMAT,
            "account": account,
            "exported": dt.datetime.now(dt.UTC).isoformat(),
            "backend": backend,
        }
    ).encode()


def account_bytes(account: ArchiveAccount) -> bytes:
    return json.dumps(
        {
            "account": account.name,
            "mailboxes": [
                {
                    "id": b.id,
                    "name": b.name,
                    "uidvalidity": b.uidvalidity,
                    "uidnext": b.uidnext,
                    "highestmodseq": b.highestmodseq,
                    "special_use": b.special_use,
                    "keywords": list(b.keywords),
                    "acl": [list(e) for e in b.acl],
                }
                for b in account.mailboxes
            ],
            "subscriptions": list(account.subscriptions),
            "storage_limit_kib": account.storage_limit_kib,
            "message_limit": account.message_limit,
        },
        ensure_ascii=False,
        indent=1,
    ).encode()


def message_line(m: ArchiveMessage) -> bytes:
    return (
        json.dumps(
            {
                "mailbox": m.mailbox,
                "uid": m.uid,
                "modseq": m.modseq,
                "flags": sorted(m.flags),
                "internal_date": m.internal_date.isoformat(),
                "size": m.size,
                "sha256": m.sha256.hex(),
                "uidl": m.uidl,
            },
            ensure_ascii=False,
            separators=(",", ":"),
        ).encode()
        + b"\n"
    )


# --- parsing (every field checked; PARAMS naming what is wrong) -------------------------------


def _bad(what: str, why: str) -> StoreError:
    return StoreError(ErrorKind.PARAMS, f"The archive's {what} {why}")


def _int(obj: dict[str, Any], key: str, what: str, lo: int, hi: int) -> int:
    value = obj.get(key)
    if type(value) is not int or not lo <= value <= hi:
        raise _bad(what, f"has a bad {key!r}")
    return value


def _text(obj: dict[str, Any], key: str, what: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or len(value) > 4096 or "\x00" in value:
        raise _bad(what, f"has a bad {key!r}")
    return value


def _limit(obj: dict[str, Any], key: str) -> int | None:
    value = obj.get(key)
    if value is None:
        return None
    if type(value) is not int or value < 0:
        raise _bad(ACCOUNT_FILE, f"has a bad {key!r}")
    return value


def _strings(value: object, what: str, key: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _bad(what, f"has a bad {key!r}")
    return list(value)


def parse_account(data: bytes) -> ArchiveAccount:
    """``account.json``: mailbox names valid and unique, ids unique, INBOX present."""
    try:
        obj = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _bad(ACCOUNT_FILE, "is not JSON") from exc
    if not isinstance(obj, dict) or not isinstance(obj.get("mailboxes"), list):
        raise _bad(ACCOUNT_FILE, "has no mailbox list")
    boxes: list[ArchiveMailbox] = []
    ids: set[int] = set()
    names: set[str] = set()
    for raw in obj["mailboxes"]:
        if not isinstance(raw, dict):
            raise _bad(ACCOUNT_FILE, "has a mailbox that is not an object")
        try:
            name = str(mailbox_name(_text(raw, "name", ACCOUNT_FILE)))
        except StoreError as exc:
            raise _bad(ACCOUNT_FILE, f"has a bad mailbox name: {exc.public}") from exc
        what = f"{ACCOUNT_FILE} (mailbox {name!r})"
        box_id = _int(raw, "id", what, 1, 2**62)
        if box_id in ids or name in names:
            raise _bad(what, "is listed twice")
        ids.add(box_id)
        names.add(name)
        acl: list[tuple[str, str]] = []
        for entry in raw.get("acl", []):
            if (
                not isinstance(entry, list)
                or len(entry) != 2
                or not all(isinstance(e, str) and 0 < len(e) <= 255 for e in entry)
            ):
                raise _bad(what, "has a bad ACL entry")
            try:
                rights = str(Rights.parse(entry[1]))
            except StoreError as exc:
                raise _bad(what, f"has bad ACL rights: {exc.public}") from exc
            acl.append((entry[0], rights))
        try:
            keywords = tuple(
                sorted(normalize_flags(_strings(raw.get("keywords", []), what, "keywords")))
            )
        except StoreError as exc:
            raise _bad(what, f"has a bad keyword: {exc.public}") from exc
        if any(k.startswith("\\") for k in keywords):
            raise _bad(what, "lists a system flag as a keyword")
        boxes.append(
            ArchiveMailbox(
                id=box_id,
                name=name,
                uidvalidity=_int(raw, "uidvalidity", what, 1, MAX_UID),
                uidnext=_int(raw, "uidnext", what, 1, MAX_UID + 1),
                highestmodseq=_int(raw, "highestmodseq", what, 0, 2**63 - 1),
                special_use=_text(raw, "special_use", what) if "special_use" in raw else "",
                keywords=keywords,
                acl=tuple(acl),
            )
        )
    if INBOX not in names:
        raise _bad(ACCOUNT_FILE, "has no INBOX")
    subscriptions: list[str] = []
    for sub in _strings(obj.get("subscriptions", []), ACCOUNT_FILE, "subscriptions"):
        try:
            subscriptions.append(str(mailbox_name(sub)))
        except StoreError as exc:
            raise _bad(ACCOUNT_FILE, f"has a bad subscription: {exc.public}") from exc
    return ArchiveAccount(
        name=str(obj["account"]) if isinstance(obj.get("account"), str) else "",
        mailboxes=tuple(boxes),
        subscriptions=tuple(sorted(set(subscriptions))),
        storage_limit_kib=_limit(obj, "storage_limit_kib"),
        message_limit=_limit(obj, "message_limit"),
    )


def parse_message_line(line: bytes, number: int) -> ArchiveMessage:
    what = f"{MESSAGES_FILE} line {number}"
    try:
        obj = json.loads(line)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _bad(what, "is not JSON") from exc
    if not isinstance(obj, dict):
        raise _bad(what, "is not an object")
    try:
        flags = normalize_flags(_strings(obj.get("flags", []), what, "flags"))
    except StoreError as exc:
        raise _bad(what, f"has a bad flag: {exc.public}") from exc
    try:
        when = dt.datetime.fromisoformat(_text(obj, "internal_date", what))
    except ValueError as exc:
        raise _bad(what, "has a bad 'internal_date'") from exc
    if when.utcoffset() is None:
        raise _bad(what, "has an 'internal_date' without a time zone")
    sha = _text(obj, "sha256", what)
    try:
        digest = bytes.fromhex(sha)
    except ValueError as exc:
        raise _bad(what, "has a bad 'sha256'") from exc
    if len(digest) != 32:
        raise _bad(what, "has a bad 'sha256'")
    uidl = _text(obj, "uidl", what)
    if not uidl or len(uidl) > 255 or not uidl.isascii() or not uidl.isprintable() or " " in uidl:
        raise _bad(what, "has a bad 'uidl'")
    return ArchiveMessage(
        mailbox=_int(obj, "mailbox", what, 1, 2**62),
        uid=_int(obj, "uid", what, 1, MAX_UID),
        modseq=_int(obj, "modseq", what, 1, 2**63 - 1),
        flags=flags,
        internal_date=when,
        size=_int(obj, "size", what, 0, 2**62),
        sha256=digest,
        uidl=uidl,
    )


def read_account(staging: Path) -> ArchiveAccount:
    return parse_account((staging / ACCOUNT_FILE).read_bytes())


def read_messages(staging: Path) -> Iterator[ArchiveMessage]:
    """The records of ``messages.jsonl``, one line at a time (blocking: run in a thread)."""
    with open(staging / MESSAGES_FILE, "rb") as fh:
        number = 0
        while True:
            line = fh.readline(MAX_LINE_OCTETS + 1)
            if not line:
                return
            number += 1
            if len(line) > MAX_LINE_OCTETS:
                raise _bad(f"{MESSAGES_FILE} line {number}", "is too long")
            if line.strip():
                yield parse_message_line(line, number)


def read_manifest(staging: Path) -> int:
    """The archive's format (1 when there is no manifest); PARAMS for one we cannot read."""
    path = staging / MANIFEST
    if not path.exists():
        return 1
    try:
        obj = json.loads(path.read_bytes())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _bad(MANIFEST, "is not JSON") from exc
    version = obj.get("format") if isinstance(obj, dict) else None
    if version not in READABLE:
        raise StoreError(
            ErrorKind.PARAMS,
            f"The archive has format {version!r}; this msgstore reads formats "
            f"{', '.join(map(str, READABLE))}",
        )
    return int(version)


# --- members: check and extract ---------------------------------------------------------------


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
        ok = parts[0] in _LIMITS
        if ok and member.size > _LIMITS[parts[0]]:
            raise _refuse(name, "too large")
    else:
        ok = (
            len(parts) == 3
            and parts[0] == MAIL_DIR
            and all(p.isascii() and p.isdigit() and not p.startswith("0") for p in parts[1:])
        )
    if not ok:
        raise _refuse(name, "not part of a msgstore account archive")
    return parts


@dataclass(frozen=True, slots=True)
class Extracted:
    """What :func:`extract` put in the staging directory."""

    format: int
    files: frozenset[str]  # the top-level files present (manifest, index.db, ...)
    messages: int  # message members

    @property
    def has_records(self) -> bool:
        return ACCOUNT_FILE in self.files and MESSAGES_FILE in self.files


def extract(
    source: Path, staging: Path, progress: Progress | None = None, *, sync: bool = True
) -> Extracted:
    """Check every member, then extract into ``staging`` (blocking: run in a thread).
    ``sync``: fsync every file (when the files become the store's own)."""
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
        tops = frozenset(p[0] for m, p in checked if m.isreg() and len(p) == 1)
        if INDEX_FILE not in tops and not {ACCOUNT_FILE, MESSAGES_FILE} <= tops:
            raise StoreError(
                ErrorKind.PARAMS,
                f"{source} has no index.db or {ACCOUNT_FILE} and {MESSAGES_FILE}: not an export",
            )
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
        (staging / MAIL_DIR).mkdir(mode=0o700, exist_ok=True)
        done = 0
        for member, parts in checked:
            target = staging.joinpath(*parts)
            if member.isdir():
                target.mkdir(mode=0o700, exist_ok=True)
                continue
            target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            reader = tar.extractfile(member)
            if reader is None:
                raise _refuse(member.name, "cannot be read")
            _copy_exactly(reader, target, member, sync=sync)
            if len(parts) == 3:
                done += 1
                if progress is not None:
                    progress(done, len(messages))
    return Extracted(format=read_manifest(staging), files=tops, messages=len(messages))


def _copy_exactly(reader: IO[bytes], target: Path, member: tarfile.TarInfo, *, sync: bool) -> None:
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        remaining = member.size
        while remaining > 0:
            chunk = reader.read(min(CHUNK, remaining))
            if not chunk:
                raise _refuse(member.name, "truncated")
            os.write(fd, chunk)
            remaining -= len(chunk)
        if sync:
            os.fsync(fd)
    finally:
        os.close(fd)


def check_destination(destination: Path) -> Path:
    destination = Path(os.path.abspath(destination))
    if not destination.parent.is_dir():
        raise StoreError(ErrorKind.PARAMS, f"No such directory: {destination.parent}")
    if destination.is_dir():
        raise StoreError(ErrorKind.PARAMS, f"{destination} is a directory")
    return destination


# --- writing a tar member by member (for writers that stream from a database) ----------------


def tar_header(name: str, size: int, mtime: float, *, directory: bool = False) -> bytes:
    info = tarfile.TarInfo(name)
    info.size = 0 if directory else size
    info.mtime = int(mtime)
    info.mode = 0o700 if directory else 0o600
    info.type = tarfile.DIRTYPE if directory else tarfile.REGTYPE
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


def tar_padding(size: int) -> bytes:
    return b"\0" * (-size % tarfile.BLOCKSIZE)


class TarStream:
    """A tar file written sequentially: the caller adds headers and data to an in-memory
    buffer (no I/O) and calls :meth:`flush` (blocking: from a thread) when ``buffered`` grows;
    so a coroutine can stream members of known size from a database, a bounded amount at a
    time. Written to a temporary name beside the destination, renamed by :meth:`commit`."""

    def __init__(self, destination: Path) -> None:
        self.destination = destination
        self.partial = destination.with_name(
            f".{destination.name}.{os.getpid()}.{time.monotonic_ns()}.part"
        )
        self._fh: BinaryIO | None = None
        self._buffer = bytearray()
        self._offset = 0
        self.now = time.time()

    def open(self) -> None:
        self._fh = open(self.partial, "xb")  # noqa: SIM115 (closed by commit/discard)

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def add_dir(self, name: str) -> None:
        self._put(tar_header(name, 0, self.now, directory=True))

    def begin(self, name: str, size: int) -> None:
        self._put(tar_header(name, size, self.now))

    def data(self, data: bytes) -> None:
        self._put(data)

    def end(self, size: int) -> None:
        self._put(tar_padding(size))

    def add_bytes(self, name: str, data: bytes) -> None:
        self.begin(name, len(data))
        self.data(data)
        self.end(len(data))

    def _put(self, data: bytes) -> None:
        self._buffer += data
        self._offset += len(data)

    def flush(self) -> None:
        assert self._fh is not None
        if self._buffer:
            self._fh.write(self._buffer)
            self._buffer.clear()

    def commit(self) -> int:
        """End the archive (two zero blocks, padded to a tar record), fsync, rename."""
        self._put(b"\0" * (2 * tarfile.BLOCKSIZE))
        self._put(b"\0" * (-self._offset % tarfile.RECORDSIZE))
        self.flush()
        assert self._fh is not None
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()
        self._fh = None
        os.replace(self.partial, self.destination)
        return self.destination.stat().st_size

    def discard(self) -> None:
        if self._fh is not None:
            with contextlib.suppress(OSError):
                self._fh.close()
            self._fh = None
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.partial)

"""Rebuild one account's index.db from its message files (``msgstore reconstruct``).

Shaped after Cyrus's ``mailbox_reconstruct``: salvage first, then compare, then (only when
asked) rebuild.

1. **Salvage** every readable row of the existing index: each table is read in key order; when
   SQLite reports damage the scan skips forward past the bad pages (probing ever larger key
   steps) and goes on, so one zeroed page costs the rows on it and nothing else.
   ``PRAGMA quick_check`` finds damage no table scan touches (secondary indexes, free list).
2. **Compare** the salvaged rows with the files under ``mail/<mailbox-id>/<uid>``: every file is
   read and hashed (SHA-256, the content hash stored per row), so "same message, metadata lost"
   and "a different file now sits at this UID" are told apart. The rules:

   - a row whose file matches (hash) keeps its UID, flags, keywords, modseq, internal date and
     UIDL; stale metadata (``meta_version`` below ``mime.METADATA_VERSION``) or lost metadata
     is re-parsed with ``mime.parse_message``;
   - a row whose file is gone is removed and recorded as expunged (sessions see EXPUNGE);
   - a file without a row (its row unreadable, or never written) gets a new UID at or above
     UIDNEXT, as does a file whose hash differs from its row or whose UID is recorded as
     expunged while the file still has a row: a UID a client may have seen never names
     different data (sessions see EXPUNGE of the old UID and EXISTS of the new one);
   - a mailbox whose row is lost gets a new UIDVALIDITY, is named ``lost+found/<id>`` (mailbox
     1 is always INBOX: it is created first and can be neither deleted nor renamed), and
     -- like every mailbox whose UIDVALIDITY changes -- moves to a new mailbox id, so a session
     that has the old one selected is disconnected (BYE) instead of being shown other messages
     under UIDs it knows;
   - files that index recovery moved to ``orphans/`` (no row, UID at or above UIDNEXT: a
     crash between link and commit, or an index older than its files after a restore) are
     adopted with new UIDs unless the mailbox already holds the same content; either way
     they leave ``orphans/``;
   - quota usage, UIDNEXT, HIGHESTMODSEQ and the keyword list are recomputed.

3. **Rebuild** (``apply``): the new index is written to a temporary file next to index.db,
   fsynced, and renamed into place while the old index's write lock is held (no writer is
   between its link and its commit). The old ``-wal``/``-shm`` are unlinked first, so the new
   file never pairs with them; open stores notice the new inode on their next operation. If
   another process still has the old file open, the lock is kept for the SQLite busy timeout
   so that a writer already waiting on it gives up (TEMP, the client retries on the new
   index) instead of committing into the replaced file.

A second run over a repaired tree finds nothing (the report is clean) and writes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import secrets
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import quote

from msgstore.core.errors import ErrorKind, StoreError
from msgstore.core.flags import SYSTEM_BITS
from msgstore.core.ids import MAX_UID, AccountId
from msgstore.core.names import INBOX, MailboxName, mailbox_name, parent_of
from msgstore.mime.parse import METADATA_VERSION, parse_message
from msgstore.storage.base import Discrepancy, Progress, ReconstructReport
from msgstore.storage.local import files, schema
from msgstore.storage.local.db import BUSY_TIMEOUT_MS, connect, write_transaction
from msgstore.storage.local.files import FileOps
from msgstore.storage.local.index import INDEX_FILE, MAIL_DIR, ORPHANS_DIR, default_uidl
from msgstore.storage.local.notify import ALL_MAILBOXES
from msgstore.storage.local.system import SystemDb

if TYPE_CHECKING:
    from msgstore.storage.local.backend import LocalBackend

log = logging.getLogger("msgstore.storage.local")

LOST_FOUND: Final = "lost+found"
#: Mailbox 1 is INBOX in every tree (AccountIndex.build creates it first; it cannot be
#: deleted, and RENAME INBOX keeps its row).
INBOX_ID: Final = 1
_QUICK_CHECK_LINES: Final = 20
_META_BATCH: Final = 500

Row = tuple[Any, ...]


# --- salvage ---------------------------------------------------------------------------------


@dataclass(slots=True)
class _Box:
    id: int
    name: str
    uidvalidity: int
    uidnext: int
    highestmodseq: int
    special_use: str
    recent_uid: int


@dataclass(slots=True)
class _Row:
    mailbox: int
    uid: int
    modseq: int
    sysflags: int
    keywords: str | None
    internal_date: int
    tz_offset: int
    size: int
    meta_id: int


@dataclass(slots=True)
class _Meta:
    id: int
    sha256: bytes
    uidl: str
    meta_version: int


@dataclass(slots=True)
class Salvage:
    """Everything readable in a (possibly damaged) index.db."""

    opened: bool = False
    damage: list[str] = field(default_factory=list)
    meta: dict[str, str] = field(default_factory=dict)
    boxes: dict[int, _Box] = field(default_factory=dict)
    rows: dict[tuple[int, int], list[_Row]] = field(default_factory=dict)
    metas: dict[int, _Meta] = field(default_factory=dict)
    expunged: dict[tuple[int, int], int] = field(default_factory=dict)
    keywords: dict[int, list[str]] = field(default_factory=dict)
    acl: list[tuple[int, str, str, str]] = field(default_factory=list)
    subscriptions: list[str] = field(default_factory=list)
    quota: tuple[int, int] | None = None
    mailbox_seq: int = 0


def _int(value: object) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise ValueError(f"not an integer: {value!r}")


def _text(value: object) -> str:
    if isinstance(value, str):
        return value
    raise ValueError(f"not text: {value!r}")


def _scan(
    conn: sqlite3.Connection, table: str, columns: str, keys: Sequence[str], damage: list[str]
) -> list[Row]:
    """Every readable row of ``table`` in key order (integer keys), skipping damaged pages.

    The first ``len(keys)`` selected columns must be the key. After an error the scan probes
    start keys further and further past the last good row until SQLite can seek there again.
    """
    width = len(keys)
    key = ", ".join(keys)
    marks = ", ".join("?" * width)
    base = f"SELECT {columns} FROM {table}"  # noqa: S608 -- constant names, not input
    out: list[Row] = []
    start: tuple[int, ...] | None = None  # rows with a key greater than this are next
    reported = False
    stuck: tuple[int, ...] | None = None
    while True:
        args: tuple[int, ...] = ()
        if start is None:
            sql = f"{base} ORDER BY {key}"
        else:
            sql, args = f"{base} WHERE ({key}) > ({marks}) ORDER BY {key}", start
        try:
            for row in conn.execute(sql, args):
                out.append(row)
                start = tuple(row[:width])
            return out
        except sqlite3.DatabaseError as exc:
            if not reported:
                damage.append(f"table {table} damaged: {exc}")
                reported = True
            origin = start
            if origin is not None and origin == stuck:  # no progress since the last skip
                origin = (*origin[:-1], origin[-1] + 1)
            start = stuck = _skip(conn, table, keys, origin)
            if start is None:
                return out


def _skip(
    conn: sqlite3.Connection, table: str, keys: Sequence[str], last: tuple[int, ...] | None
) -> tuple[int, ...] | None:
    """A key after ``last`` from which SQLite can read ``table`` again, or None (give up)."""
    width = len(keys)
    key = ", ".join(keys)
    marks = ", ".join("?" * width)
    origin = last if last is not None else (0,) * width
    sql = f"SELECT {key} FROM {table} WHERE ({key}) > ({marks}) ORDER BY {key} LIMIT 1"  # noqa: S608
    # Step the last key column, then (for two-column keys) the first one.
    for column in range(width - 1, -1, -1):
        step = 1
        while step <= MAX_UID * 2:
            probe = list(origin)
            probe[column] += step
            for later in range(column + 1, width):
                probe[later] = 0
            try:
                conn.execute(sql, probe).fetchone()
            except sqlite3.DatabaseError:
                step *= 2
                continue
            # Resume just before the probe point: the rows from here on are readable.
            probe[-1] -= 1
            return tuple(probe)
    return None


def _open_damaged(path: Path) -> sqlite3.Connection:
    """Open an index for salvage. ``writable_schema`` makes SQLite accept a file shorter than
    its header says (a truncated index) instead of refusing every read; nothing is written."""
    conn = sqlite3.connect(f"file:{quote(str(path))}?mode=rw", uri=True, isolation_level=None)
    try:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA writable_schema = ON")
    except BaseException:
        conn.close()
        raise
    return conn


def _read_small(conn: sqlite3.Connection, sql: str, what: str, damage: list[str]) -> list[Row]:
    try:
        return conn.execute(sql).fetchall()
    except sqlite3.DatabaseError as exc:
        damage.append(f"table {what} damaged: {exc}")
        return []


def salvage(conn: sqlite3.Connection, salvaged: Salvage) -> None:
    """Read every readable row of an open index into ``salvaged``."""
    damage = salvaged.damage
    try:
        problems = [str(r[0]) for r in conn.execute(f"PRAGMA quick_check({_QUICK_CHECK_LINES})")]
    except sqlite3.DatabaseError as exc:
        problems = [str(exc)]
    if problems != ["ok"]:
        damage.append("index.db fails its integrity check: " + "; ".join(problems[:3]))
    for k, v in _read_small(conn, "SELECT key, value FROM meta", "meta", damage):
        if isinstance(k, str) and isinstance(v, str):
            salvaged.meta[k] = v
    for r in _scan(
        conn,
        "mailboxes",
        "id, name, uidvalidity, uidnext, highestmodseq, special_use, recent_uid",
        ("id",),
        damage,
    ):
        try:
            box = _Box(
                _int(r[0]),
                _text(r[1]),
                _int(r[2]),
                _int(r[3]),
                _int(r[4]),
                _text(r[5]),
                _int(r[6]),
            )
        except ValueError as exc:
            damage.append(f"mailbox row {r[0]!r} unusable: {exc}")
            continue
        salvaged.boxes[box.id] = box
    for r in _read_small(
        conn, "SELECT seq FROM sqlite_sequence WHERE name = 'mailboxes'", "sqlite_sequence", damage
    ):
        if isinstance(r[0], int):
            salvaged.mailbox_seq = r[0]
    for r in _scan(
        conn,
        "messages",
        "mailbox_id, uid, modseq, sysflags, keywords, internal_date, tz_offset, size, meta_id",
        ("mailbox_id", "uid"),
        damage,
    ):
        try:
            kw = r[4]
            if kw is not None and not isinstance(kw, str):
                raise ValueError(f"keywords {kw!r}")
            row = _Row(
                _int(r[0]),
                _int(r[1]),
                _int(r[2]),
                _int(r[3]),
                kw,
                _int(r[5]),
                _int(r[6]),
                _int(r[7]),
                _int(r[8]),
            )
        except ValueError as exc:
            damage.append(f"message row {r[:2]!r} unusable: {exc}")
            continue
        salvaged.rows.setdefault((row.mailbox, row.uid), []).append(row)
    for r in _scan(conn, "message_meta", "id, sha256, uidl, meta_version", ("id",), damage):
        if isinstance(r[1], bytes) and isinstance(r[2], str) and isinstance(r[3], int):
            salvaged.metas[r[0]] = _Meta(r[0], r[1], r[2], r[3])
    for r in _scan(conn, "expunged", "mailbox_id, uid, modseq", ("mailbox_id", "uid"), damage):
        if isinstance(r[2], int):
            salvaged.expunged[(r[0], r[1])] = r[2]
    for r in _read_small(
        conn, "SELECT mailbox_id, keyword FROM mailbox_keywords", "mailbox_keywords", damage
    ):
        if isinstance(r[0], int) and isinstance(r[1], str):
            salvaged.keywords.setdefault(r[0], []).append(r[1])
    for r in _read_small(
        conn, "SELECT mailbox_id, identifier_key, identifier, rights FROM acl", "acl", damage
    ):
        if isinstance(r[0], int) and all(isinstance(x, str) for x in r[1:]):
            salvaged.acl.append((r[0], r[1], r[2], r[3]))
    for r in _read_small(conn, "SELECT name FROM subscriptions", "subscriptions", damage):
        if isinstance(r[0], str):
            salvaged.subscriptions.append(r[0])
    for r in _read_small(
        conn,
        "SELECT storage_used_octets, messages_used FROM quota WHERE id = 1",
        "quota",
        damage,
    ):
        if isinstance(r[0], int) and isinstance(r[1], int):
            salvaged.quota = (r[0], r[1])


# --- the plan --------------------------------------------------------------------------------


@dataclass(slots=True)
class _NewBox:
    id: int
    name: str
    uidvalidity: int
    uidnext: int
    highestmodseq: int
    special_use: str
    recent_uid: int
    source: int  # the mailbox id whose directory holds the files now
    keywords: dict[str, str] = field(default_factory=dict)  # lower -> spelling


@dataclass(slots=True)
class _NewMessage:
    mailbox: int
    uid: int
    modseq: int
    sysflags: int
    keywords: str | None
    internal_date: int
    tz_offset: int
    size: int
    sha256: bytes
    uidl: str
    source: Path  # where the file is now
    old_meta: int | None  # copy metadata blobs from this old message_meta row ...
    parsed: tuple[bytes, bytes, bytes, bytes, str] | None  # ... or these, freshly parsed


@dataclass(slots=True)
class Plan:
    discrepancies: list[Discrepancy] = field(default_factory=list)
    boxes: list[_NewBox] = field(default_factory=list)
    messages: list[_NewMessage] = field(default_factory=list)
    expunged: list[tuple[int, int, int]] = field(default_factory=list)
    acl: list[tuple[int, str, str, str]] = field(default_factory=list)
    subscriptions: list[str] = field(default_factory=list)
    next_uidvalidity: int = 0
    mailbox_seq: int = 0
    remove_after: list[Path] = field(default_factory=list)  # unlinked after the swap
    remove_dirs: list[Path] = field(default_factory=list)
    rekeyed: dict[int, int] = field(default_factory=dict)  # old mailbox id -> new id

    def note(self, code: str, mailbox: str, uid: int | None, text: str) -> None:
        self.discrepancies.append(Discrepancy(code, mailbox, uid, text))


def _internal_date(row: _Row | None, path: Path) -> tuple[int, int]:
    """The salvaged internal date (epoch, tz offset), else the file's mtime in UTC."""
    if row is not None:
        return (row.internal_date, row.tz_offset)
    return (int(os.stat(path).st_mtime), 0)


def _parsed(data: bytes) -> tuple[bytes, bytes, bytes, bytes, str]:
    p = parse_message(data)
    headers = json.dumps(dict(p.headers), ensure_ascii=False, separators=(",", ":"))
    return (
        bytes(p.envelope),
        bytes(p.body),
        bytes(p.bodystructure),
        bytes(p.partmap.to_bytes()),
        headers,
    )


def _read(path: Path) -> bytes | None:
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return None


def _valid_name(raw: str) -> str | None:
    try:
        return mailbox_name(raw)
    except StoreError:
        return None


class _Planner:
    """Compares a salvage with the files and decides the new index (no writes)."""

    def __init__(
        self,
        salvaged: Salvage,
        mail_dir: Path,
        *,
        only: MailboxName | None,
        new_uidvalidity: bool,
        progress: Progress | None = None,
    ) -> None:
        self.s = salvaged
        self.mail_dir = mail_dir
        self.progress = progress
        self.done = 0
        self.only = only
        self.force_new = new_uidvalidity
        self.plan = Plan()
        now = int(time.time())
        stored = salvaged.meta.get("next_uidvalidity", "")
        used = [b.uidvalidity for b in salvaged.boxes.values()]
        self.next_validity = max(
            [now, int(stored) if stored.isdigit() else 0, *[u + 1 for u in used]]
        )
        dirs = [int(n) for n in _listdir(mail_dir) if n.isdigit() and not n.startswith("0")]
        self.dirs = sorted(dirs)
        self.orphans = _orphans(mail_dir.parent / ORPHANS_DIR)
        self.total = sum(len(o) for o in self.orphans.values()) + sum(
            len(files.message_uids_on_disk(mail_dir / str(d))) for d in self.dirs
        )
        self.next_id = max([salvaged.mailbox_seq, *salvaged.boxes, *self.dirs, 0]) + 1
        self.names: set[str] = set()

    def _tick(self) -> None:
        """One message file checked: tell the progress callback (every 64 files and the last)."""
        self.done += 1
        if self.progress is not None and (self.done % 64 == 0 or self.done >= self.total):
            self.progress(self.done, max(self.total, self.done))

    def _take_validity(self) -> int:
        value = self.next_validity
        self.next_validity += 1
        if value > MAX_UID:
            value = 1
            self.next_validity = 2
        return value

    def _take_id(self) -> int:
        value = self.next_id
        self.next_id += 1
        return value

    def _unique(self, name: str) -> str:
        candidate, n = name, 1
        while candidate in self.names:
            n += 1
            candidate = f"{name}-{n}"
        self.names.add(candidate)
        return candidate

    def run(self) -> Plan:
        s, plan = self.s, self.plan
        for problem in s.damage:
            plan.note("index-damaged", "", None, problem)
        if not s.opened:
            plan.note(
                "index-unreadable", "", None, "index.db could not be read; rebuilt from files"
            )
        ids = sorted(set(s.boxes) | set(self.dirs) | {m for m, _ in s.rows})
        for mailbox in [m for m in self.orphans if m not in ids]:  # mailbox gone: to INBOX
            self.orphans.setdefault(INBOX_ID, []).extend(self.orphans.pop(mailbox))
        inbox_known = any(b.name == INBOX for b in s.boxes.values())
        if self.only is not None and not any(b.name == self.only for b in s.boxes.values()):
            raise StoreError(ErrorKind.NOT_FOUND, f"No such mailbox: {self.only}")
        # Names first, so that lost+found names cannot collide with surviving ones.
        for box in s.boxes.values():
            name = _valid_name(box.name)
            if name is not None:
                self.names.add(name)
        for mailbox in ids:
            self._mailbox(mailbox, inbox_known)
        self._parents()
        if s.meta.get("schema_version") not in (None, str(schema.INDEX_SCHEMA_VERSION)):
            plan.note("meta", "", None, f"schema_version was {s.meta.get('schema_version')}")
        octets = sum(m.size for m in plan.messages)
        count = len(plan.messages)
        if s.opened and s.quota != (octets, count):
            was = (
                "unreadable" if s.quota is None else f"{s.quota[0]} octets, {s.quota[1]} messages"
            )
            plan.note(
                "quota-wrong",
                "",
                None,
                f"quota usage was {was}; is {octets} octets, {count} messages",
            )
        known = {b.id: b for b in plan.boxes}
        for mailbox, key, ident, rights in s.acl:
            target = plan.rekeyed.get(mailbox, mailbox)
            if target in known:
                plan.acl.append((target, key, ident, rights))
        plan.subscriptions = sorted(set(s.subscriptions))
        plan.next_uidvalidity = self.next_validity
        plan.mailbox_seq = self.next_id - 1
        stored = s.meta.get("next_uidvalidity", "")
        if s.opened and (
            not stored.isdigit()
            or int(stored) < max([b.uidvalidity + 1 for b in plan.boxes], default=0)
        ):
            plan.note("meta", "", None, "next UIDVALIDITY was below one already in use")
        return plan

    def _parents(self) -> None:
        plan = self.plan
        have = {b.name for b in plan.boxes}
        if INBOX not in have:
            box = self._fresh_box(INBOX)
            plan.note("mailbox-missing", INBOX, None, "INBOX was missing; created")
            have.add(INBOX)
            plan.boxes.append(box)
        for name in sorted(have):
            parent = parent_of(MailboxName(name))
            while parent is not None and parent not in have:
                plan.boxes.append(self._fresh_box(parent))
                plan.note("mailbox-missing", parent, None, f"parent {parent} was missing; created")
                have.add(parent)
                parent = parent_of(parent)

    def _fresh_box(self, name: str) -> _NewBox:
        ident = self._take_id()
        self.names.add(name)
        return _NewBox(ident, name, self._take_validity(), 1, 1, "", 1, ident)

    def _mailbox(self, mailbox: int, inbox_known: bool) -> None:
        s, plan = self.s, self.plan
        old = s.boxes.get(mailbox)
        name = _valid_name(old.name) if old is not None else None
        on_disk = sorted(files.message_uids_on_disk(self.mail_dir / str(mailbox)))
        rows = {uid: cands for (m, uid), cands in s.rows.items() if m == mailbox}
        if old is None and not on_disk:
            for uid in sorted(rows):
                plan.note(
                    "file-missing",
                    f"#{mailbox}",
                    uid,
                    f"mailbox {mailbox} is gone (no row, no files); its UID {uid} row dropped",
                )
            return  # nothing left of it (an empty directory is removed by recovery)
        if name is None:
            if mailbox == INBOX_ID and not inbox_known:
                name = INBOX
            else:
                name = self._unique(f"{LOST_FOUND}/{mailbox}")
            plan.note(
                "mailbox-lost",
                name,
                None,
                f"mailbox {mailbox} has no readable mailbox row; restored as {name}",
            )
        checked = (
            self.only is None
            or name == self.only
            or any(c.meta_id not in s.metas for cands in rows.values() for c in cands)
        )
        keep = old is not None and _valid_name(old.name) is not None and not self.force_new
        if keep:
            assert old is not None
            box = _NewBox(
                mailbox,
                name,
                old.uidvalidity,
                old.uidnext,
                old.highestmodseq,
                old.special_use,
                old.recent_uid,
                mailbox,
            )
        else:
            ident = self._take_id()
            box = _NewBox(
                ident,
                name,
                self._take_validity(),
                1,
                1,
                old.special_use if old is not None else "",
                1,
                mailbox,
            )
            plan.rekeyed[mailbox] = ident
            plan.remove_dirs.append(self.mail_dir / str(mailbox))
            if old is not None:
                plan.note(
                    "uidvalidity-changed",
                    name,
                    None,
                    f"UIDVALIDITY {old.uidvalidity} -> {box.uidvalidity} (UIDs renumbered)",
                )
        for kw in s.keywords.get(mailbox, []):
            box.keywords.setdefault(kw.lower(), kw)
        kw_before = set(box.keywords)
        if checked:
            self._check_files(box, old, keep, on_disk, rows)
        else:
            self._carry(box, rows)
        for kw in sorted(set(box.keywords) - kw_before):
            plan.note("keyword-list", name, None, f"keyword {box.keywords[kw]} added to the list")
        plan.boxes.append(box)

    def _carry(self, box: _NewBox, rows: dict[int, list[_Row]]) -> None:
        """A mailbox outside ``--mailbox``: its rows are kept as they are."""
        for uid, cands in sorted(rows.items()):
            row = cands[0]
            meta = self.s.metas.get(row.meta_id)
            if meta is None:
                continue
            self._add(box, uid, row, meta.sha256, meta.uidl, row.meta_id, None, row.size)

    def _add(
        self,
        box: _NewBox,
        uid: int,
        row: _Row | None,
        sha: bytes,
        uidl: str,
        old_meta: int | None,
        parsed: tuple[bytes, bytes, bytes, bytes, str] | None,
        size: int,
        *,
        source_uid: int | None = None,
        modseq: int | None = None,
        internal: tuple[int, int] | None = None,
    ) -> None:
        keywords: str | None = None
        if row is not None and row.keywords:
            spelled = []
            for kw in row.keywords.split(" "):
                spelled.append(box.keywords.setdefault(kw.lower(), kw))
            keywords = " ".join(sorted(set(spelled)))
        if internal is None:
            assert row is not None
            internal = (row.internal_date, row.tz_offset)
        self.plan.messages.append(
            _NewMessage(
                mailbox=box.id,
                uid=uid,
                modseq=modseq if modseq is not None else (row.modseq if row else 1),
                sysflags=row.sysflags & sum(SYSTEM_BITS.values()) if row else 0,
                keywords=keywords,
                internal_date=internal[0],
                tz_offset=internal[1],
                size=size,
                sha256=sha,
                uidl=uidl,
                source=self.mail_dir
                / str(box.source)
                / str(uid if source_uid is None else source_uid),
                old_meta=old_meta,
                parsed=parsed,
            )
        )

    def _check_files(
        self,
        box: _NewBox,
        old: _Box | None,
        keep: bool,
        on_disk: list[int],
        rows: dict[int, list[_Row]],
    ) -> None:
        s, plan = self.s, self.plan
        name = box.name
        expunged = {uid: ms for (m, uid), ms in s.expunged.items() if m == box.source}
        max_seen = max([0, *on_disk, *rows, *expunged])
        row_modseqs = [r.modseq for c in rows.values() for r in c]
        base_modseq = max([box.highestmodseq, *row_modseqs, *expunged.values()])
        changed = False
        if keep and old is not None and old.highestmodseq < max(row_modseqs, default=0):
            plan.note("modseq", name, None, f"HIGHESTMODSEQ {old.highestmodseq} below a message's")
            changed = True
        new_modseq = base_modseq + 1
        adopt: list[tuple[int, bytes, bytes, _Row | None]] = []  # (old uid, data, sha, row)
        for uid in on_disk:
            self._tick()
            path = self.mail_dir / str(box.source) / str(uid)
            data = _read(path)
            if data is None:
                continue
            sha = hashlib.sha256(data).digest()
            cands = rows.pop(uid, [])
            match: _Row | None = None
            meta: _Meta | None = None
            for cand in cands:
                m = s.metas.get(cand.meta_id)
                if m is not None and m.sha256 == sha:
                    match, meta = cand, m
                    break
            if match is None:
                for cand in cands:
                    if cand.meta_id not in s.metas and cand.size == len(data):
                        match = cand
                        break
            if len(cands) > 1:
                plan.note(
                    "uid-duplicated", name, uid, f"UID {uid} had {len(cands)} rows; kept one"
                )
            if cands and match is None:
                plan.note(
                    "hash-mismatch",
                    name,
                    uid,
                    f"UID {uid}: the file is not the message of the row (content hash differs)",
                )
                adopt.append((uid, data, sha, None))
                continue
            if not keep:
                self._keep(box, uid, match, meta, data, sha, renumbered=True)
                continue
            if match is None:
                if uid in expunged:
                    plan.note("file-expunged", name, uid, f"UID {uid} was expunged; file removed")
                    plan.remove_after.append(path)
                    continue
                plan.note("file-without-row", name, uid, f"UID {uid}: file without an index row")
                adopt.append((uid, data, sha, None))
                continue
            if uid in expunged:
                plan.note(
                    "uid-duplicated",
                    name,
                    uid,
                    f"UID {uid} is both present and recorded as expunged",
                )
                adopt.append((uid, data, sha, match))
                continue
            self._keep(box, uid, match, meta, data, sha, renumbered=False)
        for uid in sorted(rows):  # rows whose file is gone
            plan.note("file-missing", name, uid, f"UID {uid}: message file missing; row removed")
            if keep:
                plan.expunged.append((box.id, uid, new_modseq))
                changed = True
        if keep:
            for uid, ms in expunged.items():
                plan.expunged.append((box.id, uid, ms))
            uidnext = max(box.uidnext, max_seen + 1)
            if uidnext != box.uidnext:
                plan.note("uidnext", name, None, f"UIDNEXT {box.uidnext} -> {uidnext}")
                changed = True
        else:
            uidnext = max_seen + 1
        for old_uid, data, sha, row in adopt:
            new_uid = uidnext
            uidnext += 1
            plan.note("uid-new", name, old_uid, f"UID {old_uid} -> new UID {new_uid}")
            if keep:
                plan.expunged.append((box.id, old_uid, new_modseq))
                plan.remove_after.append(self.mail_dir / str(box.source) / str(old_uid))
            meta = s.metas.get(row.meta_id) if row is not None else None
            internal = _internal_date(row, self.mail_dir / str(box.source) / str(old_uid))
            self._add(
                box,
                new_uid,
                row,
                sha,
                meta.uidl if meta is not None else default_uidl(box.uidvalidity, new_uid),
                None,
                _parsed(data),
                len(data),
                source_uid=old_uid,
                modseq=new_modseq if keep else 1,
                internal=internal,
            )
            changed = True
        after = self._orphans_of(box, uidnext, new_modseq if keep else 1)
        if after is not None and after != uidnext:
            uidnext, changed = after, True
        if uidnext > MAX_UID:
            raise StoreError(ErrorKind.LIMIT, f"Mailbox {name} has run out of UIDs")
        box.uidnext = uidnext
        if keep:
            box.highestmodseq = new_modseq if changed else base_modseq
        else:
            box.highestmodseq = max(
                [1, *(m.modseq for m in self.plan.messages if m.mailbox == box.id)]
            )
            box.recent_uid = uidnext
        box.recent_uid = min(box.recent_uid, box.uidnext)

    def _orphans_of(self, box: _NewBox, uidnext: int, modseq: int) -> int | None:
        """Adopt the files recovery moved to ``orphans/`` from this mailbox (new UIDs from
        ``uidnext``), unless the mailbox already holds the same content; returns the new
        UIDNEXT, or None if there were none."""
        found = self.orphans.pop(box.source, [])
        if not found:
            return None
        plan, name = self.plan, box.name
        present = {m.sha256 for m in plan.messages if m.mailbox == box.id}
        for old_uid, path in sorted(found):
            self._tick()
            data = _read(path)
            if data is None:
                continue
            sha = hashlib.sha256(data).digest()
            if sha in present:
                plan.note(
                    "orphan-duplicate",
                    name,
                    old_uid,
                    f"orphans/{path.name}: already in the mailbox; removed",
                )
                plan.remove_after.append(path)
                continue
            present.add(sha)
            plan.note(
                "orphan-adopted",
                name,
                old_uid,
                f"orphans/{path.name}: a file recovery moved aside; adopted as UID {uidnext}",
            )
            self._add(
                box,
                uidnext,
                None,
                sha,
                default_uidl(box.uidvalidity, uidnext),
                None,
                _parsed(data),
                len(data),
                modseq=modseq,
                internal=(int(os.stat(path).st_mtime), 0),
            )
            plan.messages[-1].source = path
            plan.remove_after.append(path)
            uidnext += 1
        return uidnext

    def _keep(
        self,
        box: _NewBox,
        uid: int,
        row: _Row | None,
        meta: _Meta | None,
        data: bytes,
        sha: bytes,
        *,
        renumbered: bool,
    ) -> None:
        plan, name = self.plan, box.name
        parsed = None
        old_meta = meta.id if meta is not None else None
        if row is not None and meta is None:
            plan.note("meta-missing", name, uid, f"UID {uid}: metadata lost; re-parsed")
            parsed = _parsed(data)
        elif meta is not None and meta.meta_version < METADATA_VERSION:
            plan.note(
                "meta-stale",
                name,
                uid,
                f"UID {uid}: metadata version {meta.meta_version} < {METADATA_VERSION}; re-parsed",
            )
            parsed, old_meta = _parsed(data), None
        elif row is None:
            parsed = _parsed(data)
        if parsed is not None:
            old_meta = None
        if row is not None and row.size != len(data):
            plan.note("size-wrong", name, uid, f"UID {uid}: size {row.size} -> {len(data)}")
        uidl = meta.uidl if meta is not None else default_uidl(box.uidvalidity, uid)
        internal = _internal_date(row, self.mail_dir / str(box.source) / str(uid))
        self._add(
            box,
            uid,
            row,
            sha,
            uidl,
            old_meta,
            parsed,
            len(data),
            modseq=1 if renumbered else None,
            internal=internal,
        )


def _orphans(directory: Path) -> dict[int, list[tuple[int, Path]]]:
    """``orphans/<mailbox>.<uid>.<time>`` files by mailbox id: (old UID, path)."""
    out: dict[int, list[tuple[int, Path]]] = {}
    for entry in _listdir(directory):
        parts = entry.split(".")
        if len(parts) == 3 and parts[0].isdigit() and parts[1].isdigit():
            out.setdefault(int(parts[0]), []).append((int(parts[1]), directory / entry))
    return out


def _listdir(path: Path) -> list[str]:
    try:
        return os.listdir(path)
    except FileNotFoundError:
        return []


# --- the rebuild -----------------------------------------------------------------------------


def _write_index(
    path: Path,
    plan: Plan,
    old: sqlite3.Connection | None,
    *,
    account: AccountId,
    name: str,
    storage_limit_kib: int | None,
    message_limit: int | None,
) -> None:
    conn = connect(path, create=True)
    try:
        with write_transaction(conn, None):
            schema.create_index_schema(
                conn,
                account_id=account,
                account_name=name,
                storage_limit_octets=None
                if storage_limit_kib is None
                else storage_limit_kib * 1024,
                message_limit=message_limit,
                first_uidvalidity=plan.next_uidvalidity,
            )
            conn.executemany(
                "INSERT INTO mailboxes(id, name, uidvalidity, uidnext, highestmodseq, "
                "special_use, recent_uid) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        b.id,
                        b.name,
                        b.uidvalidity,
                        b.uidnext,
                        b.highestmodseq,
                        b.special_use,
                        b.recent_uid,
                    )
                    for b in plan.boxes
                ],
            )
            conn.execute(
                "UPDATE sqlite_sequence SET seq = ? WHERE name = 'mailboxes'", (plan.mailbox_seq,)
            )
            conn.executemany(
                "INSERT INTO mailbox_keywords(mailbox_id, keyword) VALUES (?, ?)",
                [(b.id, kw) for b in plan.boxes for kw in b.keywords.values()],
            )
            conn.executemany(
                "INSERT OR IGNORE INTO subscriptions(name) VALUES (?)",
                [(n,) for n in plan.subscriptions],
            )
            conn.executemany(
                "INSERT OR REPLACE INTO acl(mailbox_id, identifier_key, identifier, rights) "
                "VALUES (?, ?, ?, ?)",
                plan.acl,
            )
            conn.executemany(
                "INSERT OR REPLACE INTO expunged(mailbox_id, uid, modseq) VALUES (?, ?, ?)",
                plan.expunged,
            )
            for start in range(0, len(plan.messages), _META_BATCH):
                _insert_messages(conn, old, plan.messages[start : start + _META_BATCH])
            conn.execute(
                "UPDATE quota SET storage_used_octets = ?, messages_used = ? WHERE id = 1",
                (sum(m.size for m in plan.messages), len(plan.messages)),
            )
    finally:
        conn.close()


def _old_blobs(old: sqlite3.Connection | None, meta_id: int) -> Row | None:
    if old is None:
        return None
    try:
        row: Row | None = old.execute(
            "SELECT envelope, body, bodystructure, partmap, headers FROM message_meta "
            "WHERE id = ?",
            (meta_id,),
        ).fetchone()
    except sqlite3.DatabaseError:
        return None
    return row


def _insert_messages(
    conn: sqlite3.Connection, old: sqlite3.Connection | None, batch: Sequence[_NewMessage]
) -> None:
    for m in batch:
        blobs: Row | tuple[bytes, bytes, bytes, bytes, str] | None = m.parsed
        version = METADATA_VERSION
        if blobs is None and m.old_meta is not None:
            blobs = _old_blobs(old, m.old_meta)
        if blobs is None:  # the salvaged row's blobs turned out unreadable: parse again
            data = _read(m.source)
            blobs = _parsed(data if data is not None else b"")
        cur = conn.execute(
            "INSERT INTO message_meta(envelope, body, bodystructure, partmap, headers, sha256, "
            "uidl, meta_version) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (*blobs, m.sha256, m.uidl, version),
        )
        conn.execute(
            "INSERT INTO messages(mailbox_id, uid, modseq, sysflags, keywords, internal_date, "
            "tz_offset, size, meta_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                m.mailbox,
                m.uid,
                m.modseq,
                m.sysflags,
                m.keywords,
                m.internal_date,
                m.tz_offset,
                m.size,
                cur.lastrowid,
            ),
        )


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _open_elsewhere(ident: tuple[int, int]) -> bool:
    """True if a process other than this one has the file ``(dev, ino)`` open."""
    me = os.getpid()
    try:
        pids = [int(p) for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return True  # cannot tell: assume so
    for pid in pids:
        if pid == me:
            continue
        fd_dir = f"/proc/{pid}/fd"
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue
        for fd in fds:
            try:
                st = os.stat(f"{fd_dir}/{fd}")
            except OSError:
                continue
            if (st.st_dev, st.st_ino) == ident:
                return True
    return False


@dataclass(frozen=True, slots=True)
class Outcome:
    """What :func:`reconstruct_tree` did: the report's content, before the report type."""

    discrepancies: tuple[Discrepancy, ...]
    applied: bool
    mailboxes: int
    messages: int
    octets: int
    rekeyed: dict[int, int]
    acl: tuple[tuple[int, str], ...]  # (new mailbox id, identifier key) of re-keyed mailboxes


def reconstruct_tree(
    tree: Path,
    ops: FileOps,
    *,
    account: AccountId,
    name: str,
    storage_limit_kib: int | None,
    message_limit: int | None,
    apply: bool,
    only: MailboxName | None,
    new_uidvalidity: bool,
    progress: Progress | None = None,
) -> Outcome:
    """Salvage, compare and (with ``apply``) rebuild one account tree. Blocks; run it on a
    thread. See the module docstring."""
    if not tree.is_dir():
        raise StoreError(ErrorKind.NOT_FOUND, f"No tree for account #{account}", detail=str(tree))
    path = tree / INDEX_FILE
    mail_dir = tree / MAIL_DIR
    salvaged = Salvage()
    old: sqlite3.Connection | None = None
    old_ident: tuple[int, int] | None = None
    try:
        if path.exists():
            old_ident = (path.stat().st_dev, path.stat().st_ino)
            try:
                old = _open_damaged(path)
                old.execute("BEGIN IMMEDIATE" if apply else "BEGIN")
                salvaged.opened = True
                try:
                    version = schema.schema_version(old)
                except sqlite3.DatabaseError as exc:
                    salvaged.damage.append(f"index.db schema unreadable: {exc}")
                else:
                    if version != schema.INDEX_SCHEMA_VERSION:
                        salvaged.damage.append(f"index.db schema version is {version}")
            except sqlite3.OperationalError as exc:
                if "locked" in str(exc) or "busy" in str(exc):
                    raise StoreError(
                        ErrorKind.TEMP, "The index is busy; try again", detail=str(exc)
                    ) from exc
                salvaged.damage.append(f"index.db cannot be opened: {exc}")
            except sqlite3.DatabaseError as exc:
                salvaged.damage.append(f"index.db cannot be read: {exc}")
            if salvaged.opened and old is not None:
                salvage(old, salvaged)
        planner = _Planner(
            salvaged, mail_dir, only=only, new_uidvalidity=new_uidvalidity, progress=progress
        )
        if progress is not None:
            progress(0, planner.total)
        plan = planner.run()
        if progress is not None:
            progress(planner.total, planner.total)
        if new_uidvalidity and not any(
            d.code == "uidvalidity-changed" for d in plan.discrepancies
        ):
            plan.note("uidvalidity-changed", "", None, "new UIDVALIDITY requested")
        applied = False
        if apply and plan.discrepancies:
            _install(
                tree,
                ops,
                plan,
                old,
                old_ident,
                account=account,
                name=name,
                storage_limit_kib=storage_limit_kib,
                message_limit=message_limit,
            )
            old = None
            applied = True
    finally:
        if old is not None:
            with contextlib.suppress(sqlite3.Error):
                if old.in_transaction:
                    old.execute("ROLLBACK")
            old.close()
    return Outcome(
        discrepancies=tuple(plan.discrepancies),
        applied=applied,
        mailboxes=len(plan.boxes),
        messages=len(plan.messages),
        octets=sum(m.size for m in plan.messages),
        rekeyed=dict(plan.rekeyed),
        acl=tuple((m, key) for m, key, _, _ in plan.acl if m in plan.rekeyed.values()),
    )


def _install(
    tree: Path,
    ops: FileOps,
    plan: Plan,
    old: sqlite3.Connection | None,
    old_ident: tuple[int, int] | None,
    *,
    account: AccountId,
    name: str,
    storage_limit_kib: int | None,
    message_limit: int | None,
) -> None:
    """Write the planned index and put it in place; closes ``old``."""
    path = tree / INDEX_FILE
    mail_dir = tree / MAIL_DIR
    fresh = tree / f"{INDEX_FILE}.rebuild-{secrets.token_hex(4)}"
    linked: list[Path] = []
    try:
        # Files first (a crash leaves extra links at unused UIDs, which recovery removes).
        by_dir: dict[int, list[tuple[Path, int]]] = {}
        for m in plan.messages:
            target = mail_dir / str(m.mailbox) / str(m.uid)
            if m.source != target:
                by_dir.setdefault(m.mailbox, []).append((m.source, m.uid))
        for mailbox, sources in by_dir.items():
            linked += files.place_messages(ops, sources, mail_dir / str(mailbox))
        for m in plan.messages:
            m.source = mail_dir / str(m.mailbox) / str(m.uid)
        _write_index(
            fresh,
            plan,
            old,
            account=account,
            name=name,
            storage_limit_kib=storage_limit_kib,
            message_limit=message_limit,
        )
        _fsync_file(fresh)
        replaced = tree / f"{INDEX_FILE}.replaced-{secrets.token_hex(4)}"
        if path.exists():
            ops.rename(path, replaced)
        for suffix in ("-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tree / (INDEX_FILE + suffix))
        ops.rename(fresh, path)
        ops.fsync_dir(tree)
    except BaseException:
        for p in linked:
            ops.remove_quietly(p)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(fresh)
        raise
    # Writers of other processes may be waiting for the old file's lock: let them time out.
    if old is not None and old_ident is not None and _open_elsewhere(old_ident):
        time.sleep(BUSY_TIMEOUT_MS / 1000 + 1)
    if old is not None:
        with contextlib.suppress(sqlite3.Error):
            old.execute("ROLLBACK")
        old.close()
    with contextlib.suppress(FileNotFoundError):
        os.unlink(replaced)
    for p in plan.remove_after:
        ops.remove_quietly(p)
    for d in plan.remove_dirs:
        files.remove_tree_quietly(d)


async def reconstruct_account(
    backend: LocalBackend,
    account: AccountId,
    *,
    apply: bool,
    mailbox: MailboxName | None,
    new_uidvalidity: bool,
    progress: Progress | None = None,
) -> ReconstructReport:
    """``LocalBackend.reconstruct``: one account, on a thread; then the shares directory and
    the watchers of every process are told."""
    started = time.monotonic()
    info = await backend._sys(SystemDb.get_account_by_id, account)
    only = mailbox_name(mailbox) if mailbox is not None else None
    # This process's own open index of the account is closed (it reopens on next use).
    worker = backend._indexes.pop(account, None)
    if worker is not None:
        await worker.close()
    outcome = await asyncio.to_thread(
        reconstruct_tree,
        backend._tree(account),
        backend._ops,
        account=account,
        name=info.name,
        storage_limit_kib=info.storage_limit_kib,
        message_limit=info.message_limit,
        apply=apply,
        only=only,
        new_uidvalidity=new_uidvalidity,
        progress=progress,
    )
    if outcome.applied:
        # Directory first: it may list a share the index lacks, never the reverse.
        for new_id, key in outcome.acl:
            await backend._sys(SystemDb.add_share, account, new_id, key)
        for old_id in outcome.rekeyed:
            await backend._sys(SystemDb.remove_shares, account, old_id, None)
        backend._hub.publish_account(account)
        if backend._channel is not None:
            backend._channel.send(account, ALL_MAILBOXES)
    return ReconstructReport(
        account=info.name,
        applied=outcome.applied,
        discrepancies=outcome.discrepancies,
        mailboxes=outcome.mailboxes,
        messages=outcome.messages,
        octets=outcome.octets,
        seconds=time.monotonic() - started,
    )

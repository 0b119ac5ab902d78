"""Maildir and Maildir++ trees (Dovecot, Courier, qmail) as a migration source.

Layout: the root's ``cur/`` and ``new/`` are INBOX; each ``.Name`` directory is a Maildir++
folder, ``.`` separating levels (``.Lists.python`` -> ``Lists/python``), each level in
modified UTF-7 as Dovecot writes it. Flags come from the ``:2,`` suffix of a file name
(D \\Draft, F \\Flagged, P $Forwarded, R \\Answered, S \\Seen, T \\Deleted) and lower-case
letters are keywords numbered in the folder's ``dovecot-keywords``. UIDs and UIDVALIDITY come
from ``dovecot-uidlist`` (versions 1 and 3) or Courier's ``courierimapuiddb``; a POP3 UIDL
Dovecot recorded there (``P`` field) is kept. The internal date is the file's mtime, as
Dovecot's received date is.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from msgstore.core.errors import StoreError
from msgstore.core.names import INBOX, MailboxName, decode_mutf7, mailbox_name
from msgstore.migrate.model import Known, Problem, Source, SourceFolder, SourceMessage

#: Maildir info letters -> IMAP flags (https://cr.yp.to/proto/maildir.html).
INFO_FLAGS: Final = {
    "D": "\\Draft",
    "F": "\\Flagged",
    "P": "$Forwarded",
    "R": "\\Answered",
    "S": "\\Seen",
    "T": "\\Deleted",
}
UIDLIST: Final = "dovecot-uidlist"
COURIER_UIDDB: Final = "courierimapuiddb"
KEYWORDS: Final = "dovecot-keywords"


@dataclass(frozen=True, slots=True)
class UidList:
    uidvalidity: int | None
    uidnext: int | None
    uids: dict[str, tuple[int, str | None]]  # base name -> (uid, POP3 UIDL or None)


def base_name(name: str) -> str:
    """A Maildir file name without its ``:2,flags`` info (the stable part)."""
    return name.split(":", 1)[0]


def read_uidlist(folder: Path) -> tuple[UidList, list[Problem]]:
    """``dovecot-uidlist`` (v1: ``1 UIDVALIDITY NEXTUID``; v3: ``3 V.. N.. G..``), else
    ``courierimapuiddb`` (``1 UIDVALIDITY NEXTUID``, then ``UID NAME`` lines)."""
    problems: list[Problem] = []
    for file_name in (UIDLIST, COURIER_UIDDB):
        path = folder / file_name
        try:
            text = path.read_bytes().decode("utf-8", "replace")
        except FileNotFoundError:
            continue
        except OSError as exc:
            problems.append(Problem(str(path), f"cannot read: {exc.strerror}"))
            continue
        lines = text.splitlines()
        if not lines:
            continue
        head = lines[0].split()
        validity: int | None = None
        nextuid: int | None = None
        try:
            if head and head[0] == "3":
                for field in head[1:]:
                    if field.startswith("V"):
                        validity = int(field[1:])
                    elif field.startswith("N"):
                        nextuid = int(field[1:])
            elif len(head) >= 3:
                validity, nextuid = int(head[1]), int(head[2])
        except ValueError:
            problems.append(Problem(str(path), "unreadable header line; UIDs not kept"))
            continue
        uids: dict[str, tuple[int, str | None]] = {}
        for line in lines[1:]:
            if not line.strip():
                continue
            uid_text, _, rest = line.partition(" ")
            if not uid_text.isdigit():
                continue
            uidl: str | None = None
            if head[0] == "3" and ":" in rest:
                fields, _, name = rest.partition(":")
                for field in fields.split():
                    if field.startswith("P") and len(field) > 1:
                        uidl = field[1:]
            else:
                name = rest.strip()
            uids[base_name(name)] = (int(uid_text), uidl)
        if uids:
            top = max(uid for uid, _ in uids.values())
            nextuid = max(nextuid or 1, top + 1)
        if validity is not None and not 1 <= validity <= 0xFFFFFFFF:
            validity = None
        return UidList(validity, nextuid, uids), problems
    return UidList(None, None, {}), problems


def read_keywords(folder: Path) -> dict[str, str]:
    """``dovecot-keywords``: ``N name`` lines; letter ``a`` + N names keyword N."""
    out: dict[str, str] = {}
    try:
        text = (folder / KEYWORDS).read_text("utf-8", "replace")
    except OSError:
        return out
    for line in text.splitlines():
        number, _, name = line.partition(" ")
        if number.isdigit() and int(number) < 26 and name:
            out[chr(ord("a") + int(number))] = name.strip()
    return out


def folder_name(entry: str) -> MailboxName:
    """``.Lists.python`` -> ``Lists/python`` (each level modified UTF-7). Raises PARAMS."""
    levels = [decode_mutf7(level.encode("ascii")) for level in entry[1:].split(".")]
    return mailbox_name("/".join(levels))


def _is_maildir(path: Path) -> bool:
    return (path / "cur").is_dir() or (path / "new").is_dir()


@dataclass(frozen=True, slots=True)
class _File:
    path: Path
    name: str


def _files(folder: Path, problems: list[Problem]) -> list[_File]:
    out: list[_File] = []
    for sub in ("new", "cur"):
        directory = folder / sub
        try:
            names = os.listdir(directory)
        except FileNotFoundError:
            continue
        except OSError as exc:
            problems.append(Problem(str(directory), f"cannot read: {exc.strerror}"))
            continue
        for name in names:
            if name.startswith("."):
                continue
            out.append(_File(directory / name, name))
    return out


def _flags(name: str, keywords: dict[str, str]) -> tuple[frozenset[str], str | None]:
    """Flags of a file name, and a complaint if the info part is broken."""
    if ":" not in name:
        return frozenset(), None
    info = name.split(":", 1)[1]
    if not info.startswith("2,"):
        return frozenset(), f"unknown Maildir info {info!r}: flags not read"
    flags: set[str] = set()
    unknown: list[str] = []
    for letter in info[2:]:
        if letter in INFO_FLAGS:
            flags.add(INFO_FLAGS[letter])
        elif letter in keywords:
            flags.add(keywords[letter])
        elif letter != ",":
            unknown.append(letter)
    complaint = f"unknown flag letter(s) {''.join(unknown)!r} dropped" if unknown else None
    return frozenset(flags), complaint


def _folder(path: Path, name: MailboxName, where: str) -> tuple[SourceFolder, list[Problem]]:
    problems: list[Problem] = []
    uidlist, found = read_uidlist(path)
    problems.extend(found)
    keywords = read_keywords(path)
    files = _files(path, problems)

    def order(f: _File) -> tuple[int, int, str]:
        known = uidlist.uids.get(base_name(f.name))
        return (0, known[0], f.name) if known else (1, 0, f.name)

    files.sort(key=order)
    octets = 0
    for f in files:
        with contextlib.suppress(OSError):
            octets += f.path.stat().st_size

    async def messages(known: Known) -> AsyncIterator[SourceMessage | Problem]:
        del known  # the content hash decides; reading a file is cheap
        for f in files:
            item = await asyncio.to_thread(_read, f, uidlist, keywords)
            if isinstance(item, list):
                for one in item:
                    yield one
            else:
                yield item

    folder = SourceFolder(
        name=name,
        where=where,
        messages=messages,
        count=len(files),
        octets=octets,
        uidvalidity=uidlist.uidvalidity,
        uidnext=uidlist.uidnext,
    )
    return folder, problems


def _read(
    f: _File, uidlist: UidList, keywords: dict[str, str]
) -> SourceMessage | Problem | list[SourceMessage | Problem]:
    try:
        st = f.path.stat()
        if not f.path.is_file():
            return Problem(str(f.path), "not a regular file: skipped")
        data = f.path.read_bytes()
    except OSError as exc:
        return Problem(str(f.path), f"cannot read: {exc.strerror}")
    if not data:
        return Problem(str(f.path), "empty file: skipped")
    flags, complaint = _flags(f.name, keywords)
    known = uidlist.uids.get(base_name(f.name))
    message = SourceMessage(
        data=data,
        flags=flags,
        internal_date=dt.datetime.fromtimestamp(st.st_mtime, dt.UTC),
        where=str(f.path),
        uid=known[0] if known else None,
        uidl=known[1] if known else None,
    )
    if complaint:
        return [Problem(str(f.path), complaint, skipped=False), message]
    return message


def open_maildir(root: Path) -> Source:
    """The folders of a Maildir++ tree (INBOX first)."""
    label = f"maildir {root}"
    if not root.exists():
        return Source(label, (), (Problem(str(root), "no such file or directory"),))
    if not root.is_dir():
        return Source(label, (), (Problem(str(root), "not a Maildir (not a directory)"),))
    if not os.access(root, os.R_OK | os.X_OK):
        return Source(label, (), (Problem(str(root), "cannot read: permission denied"),))
    if not _is_maildir(root):
        return Source(label, (), (Problem(str(root), "not a Maildir (no cur/ or new/)"),))
    folders: list[SourceFolder] = []
    problems: list[Problem] = []
    inbox, found = _folder(root, INBOX, str(root))
    folders.append(inbox)
    problems.extend(found)
    try:
        entries = sorted(os.listdir(root))
    except OSError as exc:
        entries = []
        problems.append(Problem(str(root), f"cannot list: {exc.strerror}"))
    for entry in entries:
        path = root / entry
        if not entry.startswith(".") or entry in (".", "..") or not path.is_dir():
            continue
        if not _is_maildir(path):
            continue
        try:
            name = folder_name(entry)
        except (StoreError, UnicodeEncodeError) as exc:
            reason = exc.public if isinstance(exc, StoreError) else "not ASCII"
            problems.append(Problem(str(path), f"folder name not usable: {reason}"))
            continue
        folder, found = _folder(path, name, str(path))
        folders.append(folder)
        problems.extend(found)
    return Source(label, tuple(folders), tuple(problems))

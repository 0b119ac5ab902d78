"""A remote IMAP account as a migration source (like imapsync), with the stdlib ``imaplib``.

Every selectable folder (LIST "" "*") is read with EXAMINE (nothing changes on the source):
UIDVALIDITY and UIDNEXT, then per message UID, FLAGS, INTERNALDATE, RFC822.SIZE and the
Message-ID, then the bodies (BODY.PEEK[]) in batches. A message whose Message-ID and size are
already in the target mailbox is not downloaded again, so a run after a dropped connection
resumes where the last one stopped; the content hash decides for the others. A connection lost
mid-folder is a problem for that folder; the next folder reconnects once.

imaplib is blocking: every exchange runs in a worker thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import imaplib
import re
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Final, Literal

from msgstore.core.errors import ErrorKind, StoreError
from msgstore.core.names import INBOX, MailboxName, decode_mutf7, mailbox_name
from msgstore.migrate.model import Known, Present, Problem, Source, SourceFolder, SourceMessage

Security = Literal["plain", "starttls", "tls"]
#: Bodies fetched per command: at most this many messages, and about this many octets (a
#: dropped connection costs at most one batch, which the next run fetches again).
BODY_BATCH: Final = 50
BATCH_OCTETS: Final = 256 * 1024
TIMEOUT: Final = 60.0
SPECIAL_USE: Final = frozenset(
    {"\\All", "\\Archive", "\\Drafts", "\\Flagged", "\\Junk", "\\Sent", "\\Trash"}
)
_LIST: Final = re.compile(rb'^\((?P<flags>[^)]*)\) (?P<delim>"(?:\\.|[^"])*"|NIL) (?P<name>.*)$')
_UID: Final = re.compile(rb"\bUID (\d+)")
_FLAGS: Final = re.compile(rb"\bFLAGS \(([^)]*)\)")
_DATE: Final = re.compile(rb'\bINTERNALDATE "([^"]+)"')
_SIZE: Final = re.compile(rb"\bRFC822\.SIZE (\d+)")
_MESSAGE_ID: Final = re.compile(rb"(?im)^message-id:\s*(.*(?:\r?\n[ \t].*)*)")


@dataclass(frozen=True, slots=True)
class ImapAccount:
    host: str
    port: int
    user: str
    password: str = field(repr=False)
    security: Security = "tls"
    verify: bool = True  # check the server's certificate
    ca_file: str | None = None  # trust these CA certificates instead of the system's


class LostError(Exception):
    """The connection to the source dropped (or the server said BYE)."""


def _unquote(raw: bytes) -> bytes:
    if raw.startswith(b'"') and raw.endswith(b'"') and len(raw) >= 2:
        return re.sub(rb"\\(.)", rb"\1", raw[1:-1])
    return raw


class _Conn:
    """One blocking imaplib connection; every method runs in a worker thread."""

    def __init__(self, account: ImapAccount) -> None:
        self.account = account
        self.imap: imaplib.IMAP4 | None = None

    def open(self) -> None:
        a = self.account
        context = ssl.create_default_context(cafile=a.ca_file)
        if not a.verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        try:
            if a.security == "tls":
                imap: imaplib.IMAP4 = imaplib.IMAP4_SSL(
                    a.host, a.port, ssl_context=context, timeout=TIMEOUT
                )
            else:
                imap = imaplib.IMAP4(a.host, a.port, timeout=TIMEOUT)
                if a.security == "starttls":
                    imap.starttls(context)
            imap.login(a.user, a.password)
        except imaplib.IMAP4.error as exc:
            raise PermissionError(f"login refused: {_text(exc)}") from exc
        except ssl.SSLError as exc:
            raise LostError(f"TLS failed: {exc.reason or exc}") from exc
        except (OSError, EOFError) as exc:
            raise LostError(str(exc) or type(exc).__name__) from exc
        self.imap = imap

    def close(self) -> None:
        if self.imap is not None:
            with contextlib.suppress(imaplib.IMAP4.error, OSError, EOFError):
                self.imap.logout()
            self.imap = None

    def _call(self, name: str, *args: object) -> list[object]:
        if self.imap is None:
            raise LostError("not connected")
        try:
            typ, data = getattr(self.imap, name)(*args)
        except imaplib.IMAP4.abort as exc:
            self.imap = None
            raise LostError(_text(exc)) from exc
        except (OSError, EOFError) as exc:
            self.imap = None
            raise LostError(str(exc) or type(exc).__name__) from exc
        if typ != "OK":
            raise imaplib.IMAP4.error(f"{name} failed: {_text(data)}")
        return list(data)

    def list_folders(self) -> list[tuple[bytes, str, frozenset[str]]]:
        """(raw name, delimiter, attributes) of every folder."""
        out: list[tuple[bytes, str, frozenset[str]]] = []
        for item in self._call("list", '""', "*"):
            if isinstance(item, tuple):  # name sent as a literal
                line = item[0] + item[1]
            elif isinstance(item, bytes):
                line = item
            else:
                continue
            match = _LIST.match(line)
            if match is None:
                continue
            attrs = frozenset(a.decode() for a in match["flags"].split())
            delim = match["delim"]
            delimiter = "" if delim == b"NIL" else _unquote(delim).decode()
            name = match["name"].strip()
            if isinstance(item, tuple):
                name = item[1]
            out.append((_unquote(name), delimiter, attrs))
        return out

    def examine(self, raw: bytes) -> tuple[int | None, int | None, int]:
        """EXAMINE a folder: (UIDVALIDITY, UIDNEXT, EXISTS)."""
        quoted = b'"' + raw.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'
        exists = self._call("select", quoted.decode("ascii", "replace"), True)
        assert self.imap is not None
        validity = self.imap.response("UIDVALIDITY")[1]
        nextuid = self.imap.response("UIDNEXT")[1]
        count = exists[0] if exists and isinstance(exists[0], bytes) else b"0"
        return _first_int(validity), _first_int(nextuid), int(count) if count.isdigit() else 0

    def list_messages(self) -> list[_Meta]:
        out: list[_Meta] = []
        for item in self._call(
            "uid",
            "FETCH",
            "1:*",
            "(UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])",
        ):
            if not isinstance(item, tuple):
                continue
            head, literal = item[0], item[1]
            uid = _UID.search(head)
            if uid is None:
                continue
            flags = _FLAGS.search(head)
            date = _DATE.search(head)
            size = _SIZE.search(head)
            mid = _MESSAGE_ID.search(literal)
            out.append(
                _Meta(
                    uid=int(uid[1]),
                    flags=frozenset(
                        f.decode() for f in (flags[1].split() if flags else []) if f != b"\\Recent"
                    ),
                    date=_internal_date(date[1]) if date else None,
                    size=int(size[1]) if size else 0,
                    message_id=re.sub(rb"\s+", b" ", mid[1]).strip().decode("utf-8", "replace")
                    if mid
                    else "",
                )
            )
        out.sort(key=lambda m: m.uid)
        return out

    def bodies(self, uids: list[int]) -> dict[int, bytes]:
        out: dict[int, bytes] = {}
        spec = ",".join(str(u) for u in uids)
        for item in self._call("uid", "FETCH", spec, "(UID BODY.PEEK[])"):
            if isinstance(item, tuple):
                uid = _UID.search(item[0])
                if uid is not None:
                    out[int(uid[1])] = item[1]
        return out


@dataclass(frozen=True, slots=True)
class _Meta:
    uid: int
    flags: frozenset[str]
    date: dt.datetime | None
    size: int
    message_id: str


def _batches(metas: list[_Meta]) -> list[list[_Meta]]:
    out: list[list[_Meta]] = []
    current: list[_Meta] = []
    octets = 0
    for meta in metas:
        if current and (len(current) >= BODY_BATCH or octets + meta.size > BATCH_OCTETS):
            out.append(current)
            current, octets = [], 0
        current.append(meta)
        octets += meta.size
    if current:
        out.append(current)
    return out


def _first_int(values: list[bytes | None] | list[bytes] | None) -> int | None:
    if not values or values[0] is None:
        return None
    text = values[0].strip()
    return int(text) if text.isdigit() else None


def _internal_date(raw: bytes) -> dt.datetime | None:
    try:
        return dt.datetime.strptime(raw.decode().strip(), "%d-%b-%Y %H:%M:%S %z")
    except ValueError:
        return None


def _text(data: object) -> str:
    if isinstance(data, list):
        data = b" ".join(x for x in data if isinstance(x, bytes))
    if isinstance(data, bytes):
        return data.decode("utf-8", "replace")
    return str(data)


def target_name(raw: bytes, delimiter: str) -> MailboxName:
    """A remote folder name (modified UTF-7, the server's delimiter) as a local name."""
    text = decode_mutf7(raw)
    if delimiter and delimiter != "/":
        if "/" in text:
            raise StoreError(ErrorKind.PARAMS, f"folder name {text!r} contains '/'")
        text = text.replace(delimiter, "/")
    return mailbox_name(text)


async def open_imap(account: ImapAccount) -> Source:
    """Log in, list the folders and EXAMINE each (UIDVALIDITY, UIDNEXT, count); the messages
    are read when the engine asks for them."""
    label = f"imap {account.user}@{account.host}:{account.port}"
    conn = _Conn(account)
    folders: list[SourceFolder] = []
    problems: list[Problem] = []
    try:
        await asyncio.to_thread(conn.open)
    except PermissionError as exc:
        return Source(label, (), (Problem(label, str(exc)),))
    except LostError as exc:
        return Source(label, (), (Problem(label, f"cannot connect: {exc}"),))
    try:
        listed = await asyncio.to_thread(conn.list_folders)
        for raw, delimiter, attrs in listed:
            lowered = {a.lower() for a in attrs}
            if "\\noselect" in lowered or "\\nonexistent" in lowered:
                continue
            where = raw.decode("utf-8", "replace")
            try:
                name = INBOX if raw.upper() == b"INBOX" else target_name(raw, delimiter)
            except StoreError as exc:
                problems.append(Problem(where, f"folder skipped: {exc.public}"))
                continue
            try:
                validity, nextuid, count = await asyncio.to_thread(conn.examine, raw)
            except imaplib.IMAP4.error as exc:
                problems.append(Problem(where, f"folder skipped: {_text(exc)}"))
                continue
            special = next((a for a in attrs if a in SPECIAL_USE), "")
            folders.append(_folder(conn, raw, name, special, validity, nextuid, count))
    except PermissionError as exc:
        return Source(label, (), (Problem(label, str(exc)),))
    except LostError as exc:
        await asyncio.to_thread(conn.close)
        return Source(label, (), (*problems, Problem(label, f"connection lost: {exc}")))
    except imaplib.IMAP4.error as exc:
        await asyncio.to_thread(conn.close)
        return Source(label, (), (*problems, Problem(label, _text(exc))))
    folders.sort(key=lambda f: (f.name != INBOX, f.name))

    async def close() -> None:
        await asyncio.to_thread(conn.close)

    return Source(label, tuple(folders), tuple(problems), close)


def _folder(
    conn: _Conn,
    raw: bytes,
    name: MailboxName,
    special: str,
    validity: int | None,
    nextuid: int | None,
    count: int,
) -> SourceFolder:
    where = raw.decode("utf-8", "replace")

    async def messages(known: Known) -> AsyncIterator[SourceMessage | Problem | Present]:
        done = 0
        try:
            if conn.imap is None:  # dropped in an earlier folder: reconnect once
                await asyncio.to_thread(conn.open)
            now_validity, _, exists = await asyncio.to_thread(conn.examine, raw)
            if now_validity != validity:
                yield Problem(
                    where, "UIDVALIDITY changed on the source during the run", skipped=False
                )
                return
            if exists == 0:
                return
            metas = await asyncio.to_thread(conn.list_messages)
            todo: list[_Meta] = []
            for meta in metas:
                if known.has_id(meta.message_id, meta.size):
                    yield Present(f"{where} UID {meta.uid}")
                else:
                    todo.append(meta)
            for batch in _batches(todo):
                bodies = await asyncio.to_thread(conn.bodies, [m.uid for m in batch])
                for meta in batch:
                    body = bodies.get(meta.uid)
                    if body is None:
                        yield Problem(f"{where} UID {meta.uid}", "vanished on the source")
                        continue
                    done += 1
                    yield SourceMessage(
                        data=body,
                        flags=meta.flags,
                        internal_date=meta.date,
                        where=f"{where} UID {meta.uid}",
                        uid=meta.uid,
                    )
        except LostError as exc:
            yield Problem(
                where,
                f"connection lost after {done} message(s) of this folder ({exc}); "
                "run again to resume",
                skipped=False,
            )
        except PermissionError as exc:
            yield Problem(where, str(exc), skipped=False)
        except imaplib.IMAP4.error as exc:
            yield Problem(where, _text(exc), skipped=False)

    return SourceFolder(
        name=name,
        where=where,
        messages=messages,
        count=count,
        uidvalidity=validity,
        uidnext=nextuid,
        special_use=special,
    )

"""mbox files (the login inbox in /var/mail/USER, mail clients' folders) as a source.

A message starts at a line ``From `` that is the first line of the file or follows an empty
line; the one empty line before it belongs to the separator, not to the message (as Python's
``mailbox`` and mutt read it). ``mboxo`` (the default: what Python's ``mailbox``, Dovecot and
most MTAs write) keeps ``>From `` lines as they are, since the quoting cannot be undone
unambiguously; ``mboxrd`` removes one ``>`` from every ``>+From `` line.

The mbox-internal header fields become metadata and are removed from the stored message, as
Dovecot's mbox driver hides them: ``Status`` (R \\Seen), ``X-Status`` (A \\Answered,
F \\Flagged, T \\Draft, D \\Deleted), ``X-Keywords``, ``X-UID`` and ``X-IMAPbase`` (UIDs and
UIDVALIDITY, kept), ``X-IMAP``, ``Content-Length``. The From_ line's date is the internal
date (UTC unless the line carries a numeric zone). UW-IMAP's "FOLDER INTERNAL DATA" pseudo
message is skipped.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Final, Literal

from msgstore.core.names import INBOX, MailboxName
from msgstore.migrate.model import Known, Problem, Source, SourceFolder, SourceMessage

MboxFormat = Literal["mboxo", "mboxrd"]
STATUS_FLAGS: Final = {"R": "\\Seen"}
X_STATUS_FLAGS: Final = {"A": "\\Answered", "F": "\\Flagged", "T": "\\Draft", "D": "\\Deleted"}
#: Header fields that are mbox bookkeeping, not message content.
INTERNAL_FIELDS: Final = frozenset(
    {b"status", b"x-status", b"x-keywords", b"x-uid", b"x-imapbase", b"x-imap", b"content-length"}
)
_QUOTED_FROM: Final = re.compile(rb"^>(>*From )")
_MONTHS: Final = {
    m: i
    for i, m in enumerate(
        ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1
    )
}
_ASCTIME: Final = re.compile(
    rb"(?P<mon>[A-Z][a-z]{2})\s+(?P<day>\d{1,2})\s+(?P<h>\d{1,2}):(?P<m>\d{2})(?::(?P<s>\d{2}))?"
    rb"(?:\s+(?P<zone1>[A-Z]{3,4}|[+-]\d{4}))?\s+(?P<year>\d{4})(?:\s+(?P<zone2>[+-]\d{4}))?"
)
_READ_CHUNK: Final = 1 << 20


@dataclass(frozen=True, slots=True)
class RawMessage:
    line: int  # line number of its From_ line
    from_line: bytes
    data: bytes


def from_line_date(line: bytes) -> dt.datetime | None:
    """The date of a From_ line (``From sender Thu Nov 29 08:35:32 2026 [+0100]``)."""
    match = _ASCTIME.search(line, 5)
    if match is None:
        return None
    try:
        month = _MONTHS[match["mon"].decode()]
        zone = match["zone2"] or match["zone1"]
        tz = dt.UTC
        if zone and zone[:1] in b"+-":
            minutes = int(zone[1:3]) * 60 + int(zone[3:5])
            tz = dt.timezone(dt.timedelta(minutes=-minutes if zone[:1] == b"-" else minutes))
        return dt.datetime(
            int(match["year"]),
            month,
            int(match["day"]),
            int(match["h"]),
            int(match["m"]),
            int(match["s"] or 0),
            tzinfo=tz,
        )
    except (KeyError, ValueError):
        return None


def split_mbox(stream: BinaryIO) -> Iterator[RawMessage]:
    """The messages of an mbox stream (raises ValueError if it does not start with From_)."""
    lines: list[bytes] = []
    from_line: bytes | None = None
    start = 0
    number = 0
    previous_blank = True
    for line in stream:
        number += 1
        if line.startswith(b"From ") and previous_blank:
            if from_line is not None:
                yield RawMessage(start, from_line, _strip_separator(lines))
            elif lines:
                raise ValueError("not an mbox file: text before the first 'From ' line")
            from_line, start, lines = line.rstrip(b"\r\n"), number, []
            previous_blank = False
            continue
        if from_line is None:
            raise ValueError("not an mbox file: it does not start with a 'From ' line")
        lines.append(line)
        previous_blank = line in (b"\n", b"\r\n")
    if from_line is not None:
        yield RawMessage(start, from_line, _strip_separator(lines))


def _strip_separator(lines: list[bytes]) -> bytes:
    if lines and lines[-1] in (b"\n", b"\r\n"):
        lines = lines[:-1]
    return b"".join(lines)


@dataclass(frozen=True, slots=True)
class Parsed:
    data: bytes
    flags: frozenset[str]
    uid: int | None
    imapbase: tuple[int, int] | None
    pseudo: bool


def parse_message(raw: bytes, fmt: MboxFormat) -> Parsed:
    """Take the mbox bookkeeping fields out of the header and turn them into flags/UIDs."""
    head_end = _header_end(raw)
    head, body = raw[:head_end], raw[head_end:]
    kept: list[bytes] = []
    fields: dict[bytes, bytes] = {}
    current: bytes | None = None
    for line in head.splitlines(keepends=True):
        if line[:1] in (b" ", b"\t") and current is not None:
            if current in INTERNAL_FIELDS:
                fields[current] += line
            else:
                kept.append(line)
            continue
        name, colon, value = line.partition(b":")
        key = name.strip().lower()
        current = key if colon else None
        if colon and key in INTERNAL_FIELDS:
            fields[key] = value
        else:
            kept.append(line)
    flags: set[str] = set()
    for letter in fields.get(b"status", b"").decode("ascii", "replace").strip():
        if letter in STATUS_FLAGS:
            flags.add(STATUS_FLAGS[letter])
    for letter in fields.get(b"x-status", b"").decode("ascii", "replace").strip():
        if letter in X_STATUS_FLAGS:
            flags.add(X_STATUS_FLAGS[letter])
    for keyword in re.split(r"[,\s]+", fields.get(b"x-keywords", b"").decode("utf-8", "replace")):
        if keyword:
            flags.add(keyword)
    uid = _int(fields.get(b"x-uid", b""))
    base = fields.get(b"x-imapbase", b"").split()
    imapbase = None
    if len(base) >= 2 and base[0].isdigit() and base[1].isdigit():
        imapbase = (int(base[0]), int(base[1]))
    pseudo = b"x-imap" in fields and b"FOLDER INTERNAL DATA" in head
    if fmt == "mboxrd":
        body = b"".join(_QUOTED_FROM.sub(rb"\1", line) for line in body.splitlines(keepends=True))
    return Parsed(b"".join(kept) + body, frozenset(flags), uid, imapbase, pseudo)


def _int(value: bytes) -> int | None:
    text = value.strip()
    return int(text) if text.isdigit() and 0 < int(text) <= 0xFFFFFFFF else None


def _header_end(raw: bytes) -> int:
    """Offset just past the empty line ending the header (or the end)."""
    ends = [(p, n) for p, n in ((raw.find(b"\r\n\r\n"), 4), (raw.find(b"\n\n"), 2)) if p >= 0]
    if not ends:
        return len(raw)
    pos, size = min(ends)
    return pos + size


def _looks_binary(path: Path) -> bool:
    with path.open("rb") as f:
        head = f.read(4096)
    return b"\0" in head or not head.startswith(b"From ")


def open_mbox(path: Path, *, mailbox: MailboxName = INBOX, fmt: MboxFormat = "mboxo") -> Source:
    """An mbox file as a one-folder source (``mailbox`` is the target)."""
    label = f"mbox {path}"
    try:
        st = path.stat()
        if not path.is_file():
            return Source(label, (), (Problem(str(path), "not a regular file"),))
        if st.st_size == 0:
            return Source(label, (), (Problem(str(path), "empty mbox: nothing to migrate"),))
        if not os.access(path, os.R_OK):
            return Source(label, (), (Problem(str(path), "cannot read: permission denied"),))
        if _looks_binary(path):
            return Source(
                label, (), (Problem(str(path), "not an mbox file (no 'From ' line at the start)"),)
            )
    except FileNotFoundError:
        return Source(label, (), (Problem(str(path), "no such file or directory"),))
    except OSError as exc:
        return Source(label, (), (Problem(str(path), f"cannot read: {exc.strerror}"),))
    uidvalidity: int | None = None
    uidnext: int | None = None
    count = 0
    try:
        with path.open("rb") as f:
            for raw in split_mbox(f):
                count += 1
                if count == 1:
                    first = parse_message(raw.data, fmt)
                    if first.imapbase is not None:
                        uidvalidity, uidnext = first.imapbase
                    if first.pseudo:
                        count -= 1
    except ValueError as exc:
        return Source(label, (), (Problem(str(path), str(exc)),))
    except OSError as exc:
        return Source(label, (), (Problem(str(path), f"cannot read: {exc.strerror}"),))

    async def messages(known: Known) -> AsyncIterator[SourceMessage | Problem]:
        del known
        queue: asyncio.Queue[SourceMessage | Problem | None] = asyncio.Queue(maxsize=64)
        loop = asyncio.get_running_loop()

        def produce() -> None:
            try:
                with path.open("rb") as f:
                    for raw in split_mbox(f):
                        item = _message(path, raw, fmt)
                        if item is not None:
                            asyncio.run_coroutine_threadsafe(queue.put(item), loop).result()
            except (OSError, ValueError) as exc:
                problem = Problem(str(path), f"cannot read further: {exc}", skipped=False)
                asyncio.run_coroutine_threadsafe(queue.put(problem), loop).result()
            finally:
                asyncio.run_coroutine_threadsafe(queue.put(None), loop).result()

        task = loop.run_in_executor(None, produce)
        try:
            while (item := await queue.get()) is not None:
                yield item
        finally:
            while not task.done():  # let the producer finish if the consumer stopped early
                try:
                    queue.get_nowait()
                except asyncio.QueueEmpty:
                    await asyncio.sleep(0.01)
            await task

    folder = SourceFolder(
        name=mailbox,
        where=str(path),
        messages=messages,
        count=count,
        octets=st.st_size,
        uidvalidity=uidvalidity if uidnext is not None else None,
        uidnext=uidnext,
    )
    return Source(label, (folder,))


def _message(path: Path, raw: RawMessage, fmt: MboxFormat) -> SourceMessage | Problem | None:
    where = f"{path} line {raw.line}"
    parsed = parse_message(raw.data, fmt)
    if parsed.pseudo:
        return None
    if not parsed.data.strip():
        return Problem(where, "empty message: skipped")
    return SourceMessage(
        data=parsed.data,
        flags=parsed.flags,
        internal_date=from_line_date(raw.from_line),
        where=where,
        uid=parsed.uid,
    )

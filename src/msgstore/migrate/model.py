"""What every migration source yields, and the summary a run ends with.

A source (mbox, Maildir, a remote IMAP account) is a list of :class:`SourceFolder`; each
folder yields :class:`SourceMessage` items, or :class:`Problem` items for what it could not
read (the run goes on). The engine (:mod:`.engine`) puts messages into the store.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

from msgstore.core.flags import Flags
from msgstore.core.names import MailboxName
from msgstore.mime.normalize import normalize


@dataclass(frozen=True, slots=True)
class SourceMessage:
    """One message read from a source, before it enters the store."""

    data: bytes  # as the source holds it (LF or CRLF line ends)
    flags: Flags
    internal_date: dt.datetime | None  # None: now
    where: str  # for messages in the summary: a file name, "mbox line N", "UID N"
    uid: int | None = None  # the source's UID, kept when the store can
    uidl: str | None = None  # the POP3 UIDL to keep (None: the store derives one)


@dataclass(frozen=True, slots=True)
class Problem:
    """Something a source could not read; the run records it and goes on."""

    where: str
    reason: str
    #: True when it stands for one source message that was not copied (the progress bar
    #: moves by one); False for a remark about a message that is still copied, or about a
    #: whole folder.
    skipped: bool = True


@dataclass(frozen=True, slots=True)
class Present:
    """A message a source found already in the target without reading it (Message-ID and
    size matched), so it was not downloaded again."""

    where: str


@dataclass(frozen=True, slots=True)
class Known:
    """What the target mailbox already holds: the test of "already migrated".

    A message is already there when a message with the same content (SHA-256 of the
    CRLF-normalised bytes) is; a remote source that has not downloaded a message yet may ask
    by Message-ID and size instead (:meth:`has_id`), so a resumed run does not fetch again.
    """

    hashes: frozenset[bytes]
    ids: frozenset[tuple[str, int]]  # (message-id, RFC822.SIZE)

    def has_id(self, message_id: str, size: int) -> bool:
        key = message_id_key(message_id)
        return bool(key) and (key, size) in self.ids


def message_id_key(value: str) -> str:
    """A Message-ID as the store's header index keeps it: unfolded, lower case."""
    return " ".join(value.split()).lower()


#: Messages of one folder; ``known`` lets a remote source skip downloads.
MessageStream = Callable[[Known], AsyncIterator[SourceMessage | Problem | Present]]


@dataclass(frozen=True, slots=True)
class SourceFolder:
    """One folder of a source and how to read its messages."""

    name: MailboxName  # the target mailbox name ("/"-separated, UTF-8)
    where: str  # the source's own name for it (a path, a remote folder name)
    messages: MessageStream
    count: int | None = None  # messages, for the progress bar (None: unknown)
    octets: int | None = None
    uidvalidity: int | None = None  # kept with the UIDs when the store can
    uidnext: int | None = None
    special_use: str = ""


@dataclass(frozen=True, slots=True)
class Source:
    """A source's folders, plus what listing it already found wrong."""

    label: str  # "maildir /home/bob/Maildir", "imap bob@mail.example.org"
    folders: tuple[SourceFolder, ...]
    problems: tuple[Problem, ...] = ()
    close: Callable[[], Awaitable[None]] | None = None  # release connections when done


def content_hash(data: bytes) -> tuple[bytes, bytes]:
    """The bytes the store will keep (CRLF-normalised) and their SHA-256."""
    stored = normalize(data)
    return stored, hashlib.sha256(stored).digest()


@dataclass
class Summary:
    """Totals of a run and every problem, per account and folder."""

    accounts: int = 0
    folders: int = 0
    messages: int = 0  # copied (or, in a dry run, that would be copied)
    octets: int = 0
    duplicates: int = 0  # already in the store: skipped
    uids_kept: int = 0
    uids_changed: int = 0
    problems: list[tuple[str, str, str]] = field(default_factory=list)  # account, where, why
    notes: list[str] = field(default_factory=list)  # things done besides copying
    aliases: list[str] = field(default_factory=list)  # /etc/aliases lines to add

    def problem(self, account: str, where: str, reason: str) -> None:
        self.problems.append((account, where, reason))

    @property
    def failed(self) -> bool:
        return bool(self.problems)

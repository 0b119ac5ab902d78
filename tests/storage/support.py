"""Helpers for the storage contract suite: written against ``storage.base`` only.

A test gets a :class:`StoreSpec` (which backend, where its data lives) and an open
``Backend``; everything else here builds messages and drives the interface the way the
servers do.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from msgstore.config import load_config
from msgstore.core.accounts import AccountInfo, AccountKind
from msgstore.core.flags import Flags
from msgstore.core.ids import AccountId, MailboxId, Uid
from msgstore.core.names import INBOX
from msgstore.storage.base import AppendResult, Backend, NewAccount
from msgstore.storage.open import open_backend

#: Stored as-is by the backend; these tests never verify a password.
PASSWORD_HASH: Final = "$argon2id$v=19$m=65536,t=3,p=4$c3VwcG9ydA$c3VwcG9ydHN1cHBvcnQ"
MAX_OCTETS: Final = 1024 * 1024
#: The backends the contract suite runs against. A listed backend that cannot be reached
#: fails its tests; it is never skipped (postgres: 127.0.0.1:5432, database ``test``).
BACKENDS: Final = ("local", "postgres")
#: Next to the data directory: the configuration of a store that is not the default one
#: (the postgres fixture writes it), so that a peer process given only the data directory
#: opens the same store.
CONFIG_NAME: Final = "msgstore.toml"


@dataclass(frozen=True, slots=True)
class StoreSpec:
    """Which backend, and the data directory of this test's store."""

    name: str
    data_dir: Path

    @property
    def config_path(self) -> Path | None:
        path = self.data_dir.parent / CONFIG_NAME
        return path if path.exists() else None

    async def open(self) -> Backend:
        """Open another handle on the same store (as another server worker would)."""
        config = load_config(self.config_path, data_dir=self.data_dir)
        assert config.storage.backend == self.name
        return await open_backend(config)


def message(
    subject: str = "hello", *, body: str = "Hello, world.\r\n", sender: str = "a@example.org"
) -> bytes:
    """A small well-formed CRLF message."""
    return (
        f"From: Sender <{sender}>\r\n"
        f"To: Someone <rcpt@example.org>\r\n"
        f"Subject: {subject}\r\n"
        f"Date: Mon, 02 Jun 2025 10:00:00 +0000\r\n"
        f"Message-ID: <{abs(hash(subject + body))}@example.org>\r\n"
        f"\r\n"
        f"{body}"
    ).encode()


async def new_account(
    backend: Backend,
    name: str,
    *,
    kind: AccountKind = AccountKind.IMAP,
    manager: bool = False,
    storage_limit_kib: int | None = None,
    message_limit: int | None = None,
) -> AccountInfo:
    return await backend.create_account(
        NewAccount(
            name=name,
            password_hash=PASSWORD_HASH,
            kind=kind,
            manager=manager,
            storage_limit_kib=storage_limit_kib,
            message_limit=message_limit,
        )
    )


async def inbox_of(backend: Backend, account: AccountId) -> MailboxId:
    return (await backend.get_mailbox(account, INBOX)).id


async def append(
    backend: Backend,
    account: AccountId,
    mailbox: MailboxId,
    data: bytes | None = None,
    *,
    flags: Flags = frozenset(),
    internal_date: dt.datetime | None = None,
    uidl: str | None = None,
    max_octets: int = MAX_OCTETS,
) -> AppendResult:
    """Stage ``data`` (one write) and append it: the path APPEND, LMTP and the CLI take."""
    async with backend.stage(max_octets=max_octets) as staged:
        await staged.write(message() if data is None else data)
        await staged.finish()
        return await backend.append(
            account, mailbox, staged, flags=flags, internal_date=internal_date, uidl=uidl
        )


async def read_body(backend: Backend, account: AccountId, mailbox: MailboxId, uid: Uid) -> bytes:
    async with backend.open_body(account, mailbox, uid) as reader:
        return await reader.read(0, reader.size)

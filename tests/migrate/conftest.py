"""Helpers for the migration tests: the real CLI, and reading back what the store holds."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from msgstore.core.flags import Flags
from msgstore.core.ids import UidSet
from msgstore.storage.base import Want
from msgstore.storage.local import LocalBackend
from tests.migrate.dovecot import Dovecot


@dataclass(frozen=True)
class Cli:
    code: int
    out: str
    err: str


def msgstore(data: Path, *args: str, env: dict[str, str] | None = None) -> Cli:
    base = {k: v for k, v in os.environ.items() if not k.startswith("MSGSTORE_")}
    proc = subprocess.run(
        [sys.executable, "-m", "msgstore.cli", "--data", str(data), *args],
        env={**base, **(env or {})},
        capture_output=True,
        timeout=120,
        check=False,
    )
    return Cli(proc.returncode, proc.stdout.decode(), proc.stderr.decode())


@dataclass(frozen=True)
class Stored:
    uid: int
    data: bytes
    flags: Flags
    internal_date: dt.datetime
    uidl: str


@dataclass(frozen=True)
class Box:
    uidvalidity: int
    uidnext: int
    messages: dict[int, Stored]


def read_store(data: Path, account: str) -> dict[str, Box]:
    """Every mailbox of ``account``: UIDVALIDITY and each message with its bytes and flags."""

    async def main() -> dict[str, Box]:
        backend = await LocalBackend.open(data)
        try:
            info = await backend.get_account(account)
            out: dict[str, Box] = {}
            for box in await backend.list_mailboxes(info.id):
                status = await backend.mailbox_status(info.id, box.id)
                metas = await backend.fetch_meta(info.id, box.id, UidSet.all(), Want.FLAGS)
                messages: dict[int, Stored] = {}
                for meta in metas:
                    async with backend.open_body(info.id, box.id, meta.uid) as reader:
                        body = await reader.read(0, reader.size)
                    messages[int(meta.uid)] = Stored(
                        int(meta.uid), body, meta.flags, meta.internal_date, meta.uidl
                    )
                out[box.name] = Box(int(box.uidvalidity), int(status.uidnext), messages)
            return out
        finally:
            await backend.close()

    return asyncio.run(main())


def stored_hash(data: Path, account: str) -> str:
    async def main() -> str:
        backend = await LocalBackend.open(data)
        try:
            return (await backend.get_password_hash(account))[1]
        finally:
            await backend.close()

    return asyncio.run(main())


@pytest.fixture
def dovecot() -> Iterator[Dovecot]:
    server = Dovecot.start({"alice": "secret", "bob": "hunter2"})
    try:
        yield server
    finally:
        server.stop(wait=False)
        server.cleanup()


def expect(cli: Cli, code: int, *texts: str) -> None:
    """The command exited with ``code`` and its standard output holds every text."""
    assert cli.code == code, cli
    for text in texts:
        assert text in cli.out, cli.out

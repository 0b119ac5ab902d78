"""The real-disk-full check (RELIABILITY.md §7 case 35), run by tests/storage/test_faults.py.

Must run in a private mount namespace (``unshare --mount --map-root-user python -m
tests.storage.helpers.diskfull DIR``): it mounts a 2 MiB tmpfs on DIR, which nobody outside
sees and which disappears with the process. On it: a store with stored mail, then a filler file
that takes every free block; appends must fail with TEMP and change nothing, reads must go on;
after the filler is removed the same open store must accept mail again. Any failed check raises
AssertionError (exit status 1).
"""

from __future__ import annotations

import asyncio
import errno
import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Final

from msgstore.core.errors import ErrorKind, StoreError
from msgstore.core.ids import AccountId, MailboxId, Uid
from msgstore.storage.base import Backend
from tests.storage.helpers.store import (
    add_message,
    check_account,
    inbox_of,
    make_message,
    new_account,
    open_local,
    read_body,
    tmp_files,
)

TMPFS_SIZE: Final = "2m"
MESSAGE_OCTETS: Final = 10_000
ATTEMPTS: Final = 3


def fill(path: Path) -> int:
    """Write to ``path`` until the file system has no block left; return the octets written."""
    written = 0
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        for chunk in (65536, 4096, 512, 1):
            block = bytes(chunk)
            while (n := _write_or_full(fd, block)) > 0:
                written += n
        os.fsync(fd)
    finally:
        os.close(fd)
    return written


def _write_or_full(fd: int, block: bytes) -> int:
    """Octets written, or 0 when the file system is full (any other error propagates)."""
    try:
        return os.write(fd, block)
    except OSError as exc:
        if exc.errno != errno.ENOSPC:
            raise
        return 0


async def _refused(backend: Backend, account: AccountId, mailbox: MailboxId, data: bytes) -> None:
    try:
        await add_message(backend, account, mailbox, data)
    except StoreError as exc:
        if exc.kind is not ErrorKind.TEMP:
            raise AssertionError(f"full disk: expected TEMP, got {exc!r}") from exc
        return
    raise AssertionError("append succeeded on a full file system")


async def scenario(root: Path) -> None:
    data_dir = root / "data"
    rng = random.Random(35)
    backend = await open_local(data_dir)
    try:
        account = (await new_account(backend, "full")).id
        inbox = await inbox_of(backend, account)
        stored = {}
        for i in range(3):
            data = make_message(rng, f"full-{i}", body_octets=MESSAGE_OCTETS)
            stored[(await add_message(backend, account, inbox, data)).uid] = data
        before = await check_account(backend, data_dir, account)

        filler = root / "filler"
        print(f"filled {fill(filler)} octets")
        for i in range(ATTEMPTS):
            data = make_message(rng, f"no-space-{i}", body_octets=MESSAGE_OCTETS)
            await _refused(backend, account, inbox, data)
        assert await check_account(backend, data_dir, account) == before
        assert not tmp_files(data_dir), tmp_files(data_dir)
        for uid, data in stored.items():
            assert await read_body(backend, account, inbox, Uid(uid)) == data
        print("disk full: append refused, store unchanged, reads work")

        filler.unlink()
        data = make_message(rng, "after-space", body_octets=MESSAGE_OCTETS)
        result = await add_message(backend, account, inbox, data)
        assert await read_body(backend, account, inbox, result.uid) == data
        await check_account(backend, data_dir, account)
        print("space freed: append stored")
    finally:
        await backend.close()


def main(argv: list[str]) -> None:
    if len(argv) != 1:
        raise SystemExit(__doc__)
    root = Path(argv[0])
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={TMPFS_SIZE}", "tmpfs", str(root)], check=True
    )
    asyncio.run(scenario(root))


if __name__ == "__main__":
    main(sys.argv[1:])

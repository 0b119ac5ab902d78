"""Disk full during delivery (RELIABILITY.md §7 case 35): LMTP answers 452 4.3.1 for every
recipient, nothing half-written appears, and the next delivery works again.

The server runs with the store's fault injection (``MSGSTORE_FAULTS``, see
``storage/local/faults.py``): the first file write of the server process fails with ENOSPC.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conversations.harness import STARTUP_S, MsgstoreServer
from tests.lmtp.wire import connect, message


class FaultyServer(MsgstoreServer):
    """A server whose process gets ``MSGSTORE_FAULTS`` (the harness clears MSGSTORE_*)."""

    faults = "write:1:ENOSPC"

    def _spawn(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MSGSTORE_")}
        env["MSGSTORE_FAULTS"] = self.faults
        pid_file = self.data_dir / "run" / "msgstore.pid"
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "msgstore.cli", "--config", str(self.config_path), "serve"],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        deadline = time.monotonic() + STARTUP_S
        while not pid_file.exists():
            assert self.proc.poll() is None, self.log
            assert time.monotonic() < deadline, self.log
            time.sleep(0.02)


@pytest.fixture
def faulty(tmp_path: Path) -> Iterator[MsgstoreServer]:
    srv = FaultyServer.start(tmp_path / "faulty", services=("lmtp",))
    try:
        yield srv
    finally:
        srv.stop()


def test_disk_full_is_452_4_3_1_and_delivery_resumes(faulty: MsgstoreServer) -> None:
    alice, bob = faulty.admin.add_user("alice"), faulty.admin.add_user("bob")
    with connect(faulty) as wire:
        for attempt in range(2):
            wire.command("MAIL FROM:<s@example.org>")
            wire.command(f"RCPT TO:<{alice.name}>")
            wire.command(f"RCPT TO:<{bob.name}>")
            assert wire.command("DATA").startswith(b"354")
            wire.send(message(f"attempt {attempt}") + b".\r\n")
            replies = wire.replies(2)
            if attempt == 0:
                assert all(r.startswith("452 4.3.1") for r in replies), replies
                assert faulty.admin.inbox(alice.name) == []
                assert faulty.admin.inbox(bob.name) == []
            else:
                assert all(r.startswith("250 2.0.0") for r in replies), replies
    assert len(faulty.admin.inbox(alice.name)) == 1
    # Nothing half-written is left in staging (pre-created staging files are empty).
    leftovers = [p for p in (faulty.data_dir / "tmp").rglob("*") if p.is_file()]
    assert all(p.stat().st_size == 0 for p in leftovers), leftovers

"""A private PostgreSQL server for the fault tests (restarting the shared one at
127.0.0.1:5432 would disturb every other test): ``initdb`` into a temporary directory, run as
the ``postgres`` system user when the tests run as root, on a free port.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Final

from tests.conversations.harness import free_ports

BIN: Final = (
    Path("/usr/lib/postgresql")
    / (
        sorted(os.listdir("/usr/lib/postgresql"))[-1]
        if Path("/usr/lib/postgresql").is_dir()
        else "0"
    )
    / "bin"
)


class PrivateCluster:
    """``start``/``stop`` a throw-away PostgreSQL server; ``dsn`` names its ``postgres``
    database (trust authentication)."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="msgstore-pg-"))
        self.port = free_ports(1)[0]
        self.data = self.root / "data"
        self._as_postgres = os.geteuid() == 0
        if self._as_postgres:
            shutil.chown(self.root, "postgres", "postgres")
        self._run(
            [str(BIN / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust", "-N"]
        )

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, argv: list[str]) -> None:
        if self._as_postgres:
            argv = ["runuser", "-u", "postgres", "--", *argv]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
        if done.returncode != 0:
            raise AssertionError(f"{argv}: {done.returncode}\n{done.stdout}\n{done.stderr}")

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c max_connections=40"
        )
        self._run(
            [
                str(BIN / "pg_ctl"),
                "-D",
                str(self.data),
                "-o",
                options,
                "-w",
                "-t",
                "60",
                "-l",
                str(self.root / "log"),
                "start",
            ]
        )

    def stop(self, mode: str = "fast") -> None:
        self._run([str(BIN / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop"])

    def destroy(self) -> None:
        with contextlib.suppress(AssertionError):  # not running
            self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)

"""A private PostgreSQL server for the fault tests (restarting the shared one at
127.0.0.1:5432 would disturb every other test): ``initdb`` into a temporary directory, run as
the ``postgres`` system user when the tests run as root, on a free port.

The port stays this process's from the first start to ``destroy``, outages included (clients
must find the server again at the same address after a restart). A socket bound with
``SO_REUSEADDR`` and never listening holds it: Linux lets another ``SO_REUSEADDR`` socket bind
the port beside it (PostgreSQL sets that option on its listener) as long as the holder does not
listen, but never hands the port to a ``bind`` to port 0 nor to a ``connect`` picking its
source port, which is how other processes come by a port; and a client connecting while the
server is down is refused, as by a stopped server. A holder without ``SO_REUSEADDR`` would
keep PostgreSQL out too, and could not even be bound after a stop while the server's closed
connections linger in TIME_WAIT on the port.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import Final

from tests.conversations.harness import PORT_ATTEMPTS, PortTakenError

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
        self._holder: socket.socket | None = None
        self.port = 0
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

    def _hold_new_port(self) -> None:
        """Hold a port the system picks (see the module docstring) in place of the last one."""
        self._release_port()
        holder = socket.socket()
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        holder.bind(("127.0.0.1", 0))
        self._holder = holder
        self.port = holder.getsockname()[1]

    def _release_port(self) -> None:
        if self._holder is not None:
            self._holder.close()
            self._holder = None

    def _run(self, argv: list[str]) -> None:
        if self._as_postgres:
            argv = ["runuser", "-u", "postgres", "--", *argv]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
        if done.returncode != 0:
            raise AssertionError(f"{argv}: {done.returncode}\n{done.stdout}\n{done.stderr}")

    def start(self) -> None:
        """The first start picks the port, and picks again if a process that chose it before
        it was held (the number was free, then) listens on it now; a restart uses the same."""
        if self._holder is not None:
            self._start()
            return
        for attempt in range(PORT_ATTEMPTS):
            self._hold_new_port()
            try:
                self._start()
            except PortTakenError:
                if attempt == PORT_ATTEMPTS - 1:
                    raise
                continue
            return

    def _start(self) -> None:
        log = self.root / "log"
        log_start = log.stat().st_size if log.exists() else 0
        try:
            self._pg_ctl_start()
        except AssertionError as failure:
            with contextlib.suppress(OSError), log.open("rb") as f:
                f.seek(log_start)
                if b"Address already in use" in f.read():
                    raise PortTakenError(str(failure)) from failure
            raise

    def _pg_ctl_start(self) -> None:
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
        self._release_port()
        shutil.rmtree(self.root, ignore_errors=True)

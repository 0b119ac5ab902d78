"""One ``msgstore serve --workers 3`` shared by the concurrency tests (RELIABILITY.md §7 F).

Each test creates its own account, so the tests do not see each other's mail. Sessions of one
test land in whichever worker accepts them first; :func:`worker_of` says which one serves a
connection (from /proc: the server's end of the TCP connection belongs to one worker's pid).
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conversations.harness import MsgstoreServer

WORKERS = 3


@pytest.fixture(scope="session")
def workers_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MsgstoreServer]:
    server = MsgstoreServer.start(
        tmp_path_factory.mktemp("workers"),
        services=("imap",),
        config={"server.workers": WORKERS, "imap.max_connections_per_user": 0},
    )
    try:
        yield server
    finally:
        server.stop()


def worker_pids(server: MsgstoreServer) -> dict[int, int]:
    """pid -> worker number of the workers running now (from the supervisor's log lines)."""
    assert server.proc is not None
    parent = server.proc.pid
    latest: dict[int, int] = {}
    for number, pid in re.findall(
        rf"^msgstore\(serve\)<{parent}>: Info: worker-(\d+) started \(pid (\d+)\)$",
        server.log,
        re.MULTILINE,
    ):
        latest[int(number)] = int(pid)
    return {pid: number for number, pid in latest.items() if Path(f"/proc/{pid}").exists()}


def _socket_inode(server_port: int, client_port: int) -> int | None:
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local, remote, inode = fields[1], fields[2], int(fields[9])
            if (
                int(local.rpartition(":")[2], 16) == server_port
                and int(remote.rpartition(":")[2], 16) == client_port
                and inode
            ):
                return inode
    return None


def worker_of(server: MsgstoreServer, sock: socket.socket) -> int:
    """The worker number serving the client connection ``sock``."""
    server_port = sock.getpeername()[1]
    inode = _socket_inode(server_port, sock.getsockname()[1])
    assert inode is not None, "the server's end of the connection is not in /proc/net/tcp"
    target = f"socket:[{inode}]"
    for pid, number in worker_pids(server).items():
        fd_dir = Path(f"/proc/{pid}/fd")
        for fd in os.listdir(fd_dir):
            try:
                if os.readlink(fd_dir / fd) == target:
                    return number
            except OSError:
                continue
    raise AssertionError(f"no worker holds {target}")

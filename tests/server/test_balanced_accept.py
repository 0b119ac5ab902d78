"""``msgstore serve --workers 2`` spreads new connections evenly over its workers.

A worker accepts a connection only while it holds no more of that service's connections than
the other worker (net/balance.py), so a burst of simultaneous connections is split evenly, a
worker that is stopped does not strand connections (the other takes them within milliseconds),
and a restarted worker starts with none. Which worker serves a session is what the
administrator sees: ``msgstore session list --json`` gives each session's pid.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conversations.harness import MsgstoreServer

CLI = (sys.executable, "-m", "msgstore.cli")
#: Plenty for a greeting even on a loaded machine; a stranded connection would never get one.
GREETING_S = 10.0
#: A restarted worker is forked again after 0.5 s and must open the store and listen.
RESTART_S = 30.0


@pytest.fixture
def servers() -> Iterator[list[MsgstoreServer]]:
    started: list[MsgstoreServer] = []
    yield started
    for server in started:
        server.stop()


#: ``[server] accept_wait_ms`` of the servers here: longer than the default 20 ms, so that on a
#: loaded test machine a worker waiting for a CPU still gets its turn and every split is exact.
ACCEPT_WAIT_MS = 250


def _start(
    servers: list[MsgstoreServer], root: Path, config: dict[str, object] | None = None
) -> tuple[MsgstoreServer, dict[int, int]]:
    """A server with two workers, IMAP and LMTP; its worker numbers -> pids."""
    settings = {"server.workers": 2, "server.accept_wait_ms": ACCEPT_WAIT_MS, **(config or {})}
    server = MsgstoreServer.start(root, services=("imap", "lmtp"), config=settings)
    servers.append(server)
    return server, _workers(server)


def _workers(server: MsgstoreServer) -> dict[int, int]:
    """Worker number -> pid of its latest start."""
    found = re.findall(r"worker-(\d+) started \(pid (\d+)\)$", server.log, re.MULTILINE)
    return {int(number): int(pid) for number, pid in found}


def _sessions(server: MsgstoreServer, protocol: str = "imap") -> Counter[int]:
    """Open sessions of ``protocol`` per worker pid, as ``msgstore session list`` shows them."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MSGSTORE_")}
    out = subprocess.run(
        [*CLI, "--config", str(server.config_path), "session", "list", "--json"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return Counter(s["pid"] for s in json.loads(out.stdout) if s["protocol"] == protocol)


def _wait_sessions(server: MsgstoreServer, expected: dict[int, int]) -> None:
    """Wait until the open IMAP sessions per pid are ``expected`` (closing takes a moment)."""
    deadline = time.monotonic() + GREETING_S
    while (found := _sessions(server)) != Counter(expected):
        assert time.monotonic() < deadline, found
        time.sleep(0.1)


def _burst(
    address: tuple[str, int] | str, count: int, *, tls: ssl.SSLContext | None = None
) -> list[socket.socket]:
    """``count`` connections started at the same moment, each once it has its greeting."""
    family = socket.AF_UNIX if isinstance(address, str) else socket.AF_INET
    socks = [socket.socket(family) for _ in range(count)]
    for sock in socks:
        sock.setblocking(False)
        with contextlib.suppress(BlockingIOError):  # in progress: the kernel completes it
            sock.connect(address)
    ready = []
    for sock in socks:
        sock.settimeout(GREETING_S)
        conn = tls.wrap_socket(sock, server_hostname="localhost") if tls else sock
        assert conn.recv(200)[:1] in (b"*", b"2"), "no greeting"
        ready.append(conn)
    return ready


def _one(port: int) -> socket.socket:
    return _burst(("127.0.0.1", port), 1)[0]


def _close(socks: list[socket.socket]) -> None:
    for sock in socks:
        sock.close()


@pytest.mark.parametrize("event_loop", ["uvloop", "asyncio"])
def test_a_burst_is_split_evenly_also_over_tls_and_unix_sockets(
    tmp_path: Path, servers: list[MsgstoreServer], event_loop: str
) -> None:
    lmtp_path = str(tmp_path / "lmtp.sock")
    server, workers = _start(
        servers,
        tmp_path / "srv",
        {"server.event_loop": event_loop, "lmtp.listen": f"unix:{lmtp_path}"},
    )
    pids = sorted(workers.values())
    imap = server.port("imap.listen")
    # The first session of a fresh worker is slow (imports, caches): one each, one after the
    # other. The second goes to the worker that has none.
    warm = [_one(imap), _one(imap)]
    assert _sessions(server) == Counter(pids)
    _close(warm)
    _wait_sessions(server, {})

    plain = _burst(("127.0.0.1", imap), 8)
    assert _sessions(server) == Counter(dict.fromkeys(pids, 4))
    # IMAPS counts with IMAP: the same service.
    tls = _burst(("127.0.0.1", server.port("imap.tls_listen")), 4, tls=server.client_tls())
    assert _sessions(server) == Counter(dict.fromkeys(pids, 6))
    lmtp = _burst(lmtp_path, 4)
    assert _sessions(server, "lmtp") == Counter(dict.fromkeys(pids, 2))
    _close(plain + tls + lmtp)
    assert "Traceback" not in server.log, server.log


def test_a_stopped_worker_does_not_strand_connections(
    tmp_path: Path, servers: list[MsgstoreServer]
) -> None:
    server, workers = _start(servers, tmp_path)
    imap = server.port("imap.listen")
    held = [_one(imap), _one(imap)]
    assert _sessions(server) == Counter({workers[1]: 1, workers[2]: 1})

    os.kill(workers[2], signal.SIGSTOP)
    try:
        started = time.monotonic()
        held += _burst(("127.0.0.1", imap), 4)
        # Worker 1 takes the first at once (1/1: a tie); worker 2 then holds fewer but cannot
        # take the others, so worker 1 does, each after the wait (a connection stranded until
        # SIGCONT would get no greeting in GREETING_S and fail in _burst).
        waited = time.monotonic() - started
        assert 3 * ACCEPT_WAIT_MS / 1000 <= waited < 3 * ACCEPT_WAIT_MS / 1000 + 3.0
    finally:
        os.kill(workers[2], signal.SIGCONT)
    assert _sessions(server) == Counter({workers[1]: 5, workers[2]: 1})
    # Connections are counted per service: four LMTP connections are split evenly whatever
    # the IMAP sessions.
    held += _burst(("127.0.0.1", server.port("lmtp.listen")), 4)
    assert _sessions(server, "lmtp") == Counter({workers[1]: 2, workers[2]: 2})
    # Awake again, worker 2 holds fewer IMAP sessions: the next ones are its.
    held += _burst(("127.0.0.1", imap), 4)
    assert _sessions(server) == Counter({workers[1]: 5, workers[2]: 5})
    _close(held)


def test_a_restarted_worker_starts_with_no_connections(
    tmp_path: Path, servers: list[MsgstoreServer]
) -> None:
    server, workers = _start(servers, tmp_path)
    imap = server.port("imap.listen")
    warm = [_one(imap), _one(imap)]
    _close(warm)
    _wait_sessions(server, {})
    held = _burst(("127.0.0.1", imap), 8)
    assert _sessions(server) == Counter({workers[1]: 4, workers[2]: 4})

    os.kill(workers[2], signal.SIGKILL)  # its four sessions die with it
    deadline = time.monotonic() + RESTART_S
    while (restarted := _workers(server)[2]) == workers[2] or (
        f"msgstore(worker-2)<{restarted}>: Info: msgstore " not in server.log
    ):
        assert time.monotonic() < deadline, server.log
        time.sleep(0.05)
    # Worker 1 holds 4, the new worker 2 none (not the 4 of the worker it replaces): the next
    # four are all its (the first alone: a fresh worker's first session is slow).
    held.append(_one(imap))
    held += _burst(("127.0.0.1", imap), 3)
    assert _sessions(server) == Counter({workers[1]: 4, restarted: 4})
    _close(held)

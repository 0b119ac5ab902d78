"""``msgstore serve --workers N``: a supervisor and N workers on the same sockets."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conversations.harness import PORT_ATTEMPTS
from tests.server.conftest import config_text, free_ports

STARTUP_S = 30.0


def _spawn(cwd: Path, *args: str) -> tuple[subprocess.Popen[bytes], Path]:
    log = cwd / f"serve-{time.monotonic_ns()}.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MSGSTORE_")}
    with log.open("wb") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "msgstore.cli", "--config", "msgstore.toml", "serve", *args],
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    return proc, log


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _spawn_on_free_port(
    procs: list[subprocess.Popen[bytes]], cwd: Path, config: Callable[[int], str], *args: str
) -> tuple[subprocess.Popen[bytes], Path, int]:
    """``msgstore serve`` with ``config(imap_port)`` on a free port, once it is ready or has
    exited, and the port. Another process can take the port between its pick and the bind
    (many test processes share the machine): then it starts again on a new port, as
    ``tests.server.test_serve.serve_on_free_ports`` does."""
    pid_file = cwd / "data" / "run" / "msgstore.pid"
    for attempt in range(PORT_ATTEMPTS):
        (imap,) = free_ports(1)
        (cwd / "msgstore.toml").write_text(config(imap))
        proc, log = _spawn(cwd, *args)
        procs.append(proc)
        deadline = time.monotonic() + STARTUP_S
        while not pid_file.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        taken = proc.poll() == 71 and "Address already in use" in log.read_text()
        if not taken or attempt == PORT_ATTEMPTS - 1:
            return proc, log, imap
    raise AssertionError("unreachable")


def _wait_ready(proc: subprocess.Popen[bytes], pid_file: Path, log: Path) -> None:
    deadline = time.monotonic() + STARTUP_S
    while not pid_file.exists():
        assert proc.poll() is None, f"serve exited with {proc.poll()}:\n{log.read_text()}"
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.05)


def _workers(log: Path, parent: int) -> dict[int, int]:
    """worker number -> pid of its latest start."""
    found = re.findall(
        rf"^msgstore\(serve\)<{parent}>: Info: worker-(\d+) started \(pid (\d+)\)$",
        log.read_text(),
        re.MULTILINE,
    )
    return {int(n): int(pid) for n, pid in found}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _greeting(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        return sock.recv(200)


def test_workers_share_the_port_are_restarted_and_stop_with_the_supervisor(
    tmp_path: Path, procs: list[subprocess.Popen[bytes]]
) -> None:
    data = tmp_path / "data"
    proc, log, imap = _spawn_on_free_port(
        procs, tmp_path, lambda port: config_text({"imap.listen": port}, data), "--workers", "3"
    )
    pid_file = data / "run" / "msgstore.pid"
    _wait_ready(proc, pid_file, log)

    assert pid_file.read_text() == f"{proc.pid}\n"  # one pid file: the supervisor's
    workers = _workers(log, proc.pid)
    assert sorted(workers) == [1, 2, 3]
    text = log.read_text()
    for number, pid in workers.items():
        assert (
            f"msgstore(worker-{number})<{pid}>: Info: imap: listening on 127.0.0.1:{imap}" in text
        )
    assert f"msgstore(serve)<{proc.pid}>: Info: msgstore " in text
    assert "with 3 workers" in text
    for _ in range(6):
        assert _greeting(imap).startswith(b"* OK ")

    # A worker that dies is started again (same number, new pid); the port keeps answering.
    os.kill(workers[2], signal.SIGKILL)
    deadline = time.monotonic() + 20
    while _workers(log, proc.pid)[2] == workers[2]:
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.05)
    assert f"worker-2 (pid {workers[2]}) killed by SIGKILL; restarting it in" in log.read_text()
    # Serving again once the new worker says so (before that, SIGTERM finds it still starting,
    # with no signal handler and no sessions yet, and it ends without a goodbye line).
    current = _workers(log, proc.pid)
    serving = f"msgstore(worker-2)<{current[2]}>: Info: msgstore "
    while serving not in log.read_text():
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.05)
    assert _greeting(imap).startswith(b"* OK ")

    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
    assert not pid_file.exists()
    assert not any(_alive(pid) for pid in current.values())
    lines = log.read_text().splitlines()
    assert lines[-1] == f"msgstore(serve)<{proc.pid}>: Info: stopped"
    for number, pid in current.items():
        assert f"msgstore(worker-{number})<{pid}>: Info: stopped" in lines
    with pytest.raises(ConnectionRefusedError):
        _greeting(imap)


def test_config_workers_and_a_worker_failing_at_startup_stops_the_server(
    tmp_path: Path, procs: list[subprocess.Popen[bytes]]
) -> None:
    """``[server] workers = 2``; a store no worker can open: exit 69 like one process."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "system.db").write_bytes(b"this is not an SQLite database" * 100)
    proc, log, _ = _spawn_on_free_port(
        procs,
        tmp_path,
        lambda port: config_text({"imap.listen": port}, data) + "[server]\nworkers = 2\n",
    )
    assert proc.wait(timeout=STARTUP_S) == 69
    lines = log.read_text().splitlines()
    assert sorted(_workers(log, proc.pid)) == [1, 2]
    assert any(
        re.fullmatch(
            rf"msgstore\(serve\)<{proc.pid}>: Fatal: worker-\d \(pid \d+\) exited with 69 "
            r"while starting; stopping",
            line,
        )
        for line in lines
    ), lines
    assert lines[-1] == f"msgstore(serve)<{proc.pid}>: Info: stopped"
    assert not (data / "run" / "msgstore.pid").exists()


def test_workers_option_is_validated(tmp_path: Path) -> None:
    (tmp_path / "msgstore.toml").write_text(config_text({}, tmp_path / "data"))
    proc, log = _spawn(tmp_path, "--workers", "-1")
    assert proc.wait(timeout=STARTUP_S) == 2
    assert "--workers" in log.read_text()

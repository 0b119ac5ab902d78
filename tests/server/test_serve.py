"""``msgstore serve`` as a real process: start, be ready, stop cleanly on a signal."""

from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conversations.harness import PORT_ATTEMPTS, PortTakenError
from tests.server.conftest import config_text, free_ports, free_ports_by_key

STARTUP_S = 30.0
SHUTDOWN_S = 10.0


class Serve:
    """One ``msgstore serve`` subprocess with its stderr in a file."""

    def __init__(self, cwd: Path, *args: str) -> None:
        self.stderr_path = cwd / f"serve-{time.monotonic_ns()}.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("MSGSTORE_")}
        with self.stderr_path.open("wb") as stderr:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "msgstore.cli", *args, "serve"],
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
            )

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text()

    def wait_ready(self, pid_file: Path) -> None:
        """Wait for the pid file; raises ``PortTakenError`` if a port could not be bound."""
        deadline = time.monotonic() + STARTUP_S
        while not pid_file.exists():
            code = self.proc.poll()
            if code == 71 and "Address already in use" in self.stderr:
                raise PortTakenError(self.stderr)
            assert code is None, f"serve exited with {code} before it was ready:\n{self.stderr}"
            assert time.monotonic() < deadline, f"no {pid_file} after {STARTUP_S}s:\n{self.stderr}"
            time.sleep(0.05)

    def stop(self, signum: int = signal.SIGTERM) -> int:
        self.proc.send_signal(signum)
        return self.proc.wait(timeout=SHUTDOWN_S)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def servers() -> Iterator[list[Serve]]:
    """Every server a test starts is killed at the end, whatever happened."""
    started: list[Serve] = []
    yield started
    for serve in started:
        serve.kill()


def start(servers: list[Serve], cwd: Path, *args: str) -> Serve:
    serve = Serve(cwd, *args)
    servers.append(serve)
    return serve


def serve_on_free_ports(servers: list[Serve], cwd: Path, data: Path) -> Serve:
    """``msgstore serve`` with ``cwd/msgstore.toml`` giving every listen key a free port, ready.

    Another process can take a port between its pick and the server's bind (many test
    processes share the machine): then the whole start is tried again on new ports, as the
    shared harness does (``tests.conversations.harness.MsgstoreServer.start``).
    """
    for attempt in range(PORT_ATTEMPTS):
        (cwd / "msgstore.toml").write_text(config_text(free_ports_by_key(), data))
        serve = start(servers, cwd, "--config", "msgstore.toml")
        try:
            serve.wait_ready(data / "run" / "msgstore.pid")
        except PortTakenError:
            if attempt == PORT_ATTEMPTS - 1:
                raise
            continue
        return serve
    raise AssertionError("unreachable")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_serve_runs_until_a_signal_and_exits_0(
    tmp_path: Path, servers: list[Serve], signum: int
) -> None:
    """Ready means: data dir, TLS pair and pid file exist; a signal removes the pid file."""
    data = tmp_path / "data"
    serve = serve_on_free_ports(servers, tmp_path, data)
    pid_file = data / "run" / "msgstore.pid"

    assert pid_file.read_text() == f"{serve.proc.pid}\n"
    assert (data / "tls" / "cert.pem").is_file()
    assert stat.S_IMODE((data / "tls" / "key.pem").stat().st_mode) == 0o600
    prefix = f"msgstore(serve)<{serve.proc.pid}>: Info: "
    lines = serve.stderr.splitlines()
    for service in ("imap", "pop3", "lmtp", "smtp", "poppassd", "web"):
        assert any(line.startswith(f"{prefix}{service}: ") for line in lines), lines

    assert serve.stop(signum) == 0
    assert not pid_file.exists()
    lines = serve.stderr.splitlines()
    assert lines[-1] == f"{prefix}stopped"
    assert f"{prefix}received {signal.Signals(signum).name}, shutting down" in lines


def test_second_start_reuses_the_certificate(tmp_path: Path, servers: list[Serve]) -> None:
    """The TLS pair from the first start is kept (clients that trusted it keep trusting it)."""
    first = serve_on_free_ports(servers, tmp_path, tmp_path / "data")
    cert = (tmp_path / "data" / "tls" / "cert.pem").read_bytes()
    assert first.stop() == 0
    second = serve_on_free_ports(servers, tmp_path, tmp_path / "data")
    assert (tmp_path / "data" / "tls" / "cert.pem").read_bytes() == cert
    assert second.stop() == 0


def test_services_with_no_address_are_off_and_data_flag_wins(
    tmp_path: Path, servers: list[Serve]
) -> None:
    """Every listen key empty: nothing is bound, each service says it is off; --data is used."""
    (tmp_path / "msgstore.toml").write_text(config_text({}, tmp_path / "ignored"))
    serve = start(servers, tmp_path, "--config", "msgstore.toml", "--data", "elsewhere")
    serve.wait_ready(tmp_path / "elsewhere" / "run" / "msgstore.pid")
    assert not (tmp_path / "ignored").exists()
    prefix = f"msgstore(serve)<{serve.proc.pid}>: Info: "
    for service in ("imap", "pop3", "lmtp", "smtp", "poppassd", "web"):
        assert f"{prefix}{service}: off (no listen address)" in serve.stderr.splitlines()
    assert serve.stop() == 0


def test_port_already_bound_is_one_line_and_no_start(tmp_path: Path, servers: list[Serve]) -> None:
    """A taken port stops startup with one line naming key and address; exit 71 (EX_OSERR)."""
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))  # the system's pick: taken from the start, by us only
    holder.listen()
    taken = holder.getsockname()[1]
    try:
        for _ in range(PORT_ATTEMPTS):  # again on a new port if another process took imap's
            (free,) = free_ports(1)
            (tmp_path / "msgstore.toml").write_text(
                config_text({"imap.listen": free, "pop3.tls_listen": taken}, tmp_path / "data")
            )
            serve = start(servers, tmp_path, "--config", "msgstore.toml")
            assert serve.proc.wait(timeout=STARTUP_S) == 71
            if "imap.listen" not in serve.stderr:
                break
    finally:
        holder.close()
    assert serve.stderr.splitlines() == [
        f"msgstore(serve)<{serve.proc.pid}>: Fatal: pop3.tls_listen: "
        f"cannot listen on 127.0.0.1:{taken}: Address already in use"
    ]
    assert not (tmp_path / "data" / "tls").exists()
    assert not (tmp_path / "data" / "run" / "msgstore.pid").exists()


def test_second_server_on_the_same_data_dir_is_refused(
    tmp_path: Path, servers: list[Serve]
) -> None:
    """One server per data directory: the second says which pid holds it; exit 75."""
    first = serve_on_free_ports(servers, tmp_path, tmp_path / "data")
    second = start(servers, tmp_path, "--config", "msgstore.toml")
    assert second.proc.wait(timeout=STARTUP_S) == 75
    assert second.stderr.splitlines() == [
        f"msgstore(serve)<{second.proc.pid}>: Fatal: another msgstore serve "
        f"(pid {first.proc.pid}) is running on {tmp_path / 'data'}"
    ]
    assert first.proc.poll() is None
    assert first.stop() == 0


def test_missing_config_file_is_one_line_and_exit_78(tmp_path: Path, servers: list[Serve]) -> None:
    """``msgstore --config missing.toml serve`` fails before creating anything."""
    serve = start(servers, tmp_path, "--config", "missing.toml")
    assert serve.proc.wait(timeout=STARTUP_S) == 78
    assert serve.stderr == "msgstore: missing.toml: configuration file not found\n"
    assert not (tmp_path / "data").exists()


def test_invalid_config_is_refused_with_exit_78(tmp_path: Path, servers: list[Serve]) -> None:
    """A typo in the file: the line names file and key, and nothing starts."""
    (tmp_path / "msgstore.toml").write_text('[imap]\nlisten = "127.0.0.1:1143"\nlistn = []\n')
    serve = start(servers, tmp_path, "--config", "msgstore.toml")
    assert serve.proc.wait(timeout=STARTUP_S) == 78
    assert serve.stderr == (
        "msgstore: msgstore.toml: unknown key imap.listn (did you mean imap.listen?)\n"
    )
    assert not (tmp_path / "data").exists()

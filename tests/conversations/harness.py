"""A real ``msgstore serve`` for protocol tests, and a store admin beside it.

    server = MsgstoreServer.start(tmp_dir, services=("pop3", "poppassd"), config={...})
    alice = server.admin.add_user("alice", kind="pop")        # unique real name + password
    server.admin.deliver(alice.name, b"Subject: hi\\r\\n\\r\\nbody\\r\\n")
    sock = socket.create_connection(("127.0.0.1", server.port("pop3.listen")))
    ...
    server.stop()

The server is a subprocess on free loopback ports with a generated TOML configuration and a
temporary data directory; its TLS certificate is the self-signed pair it generates, which
clients trust through ``server.cafile``. The admin opens the same store in this process (as
the CLI does while a server runs) on an event loop of its own thread, and goes through the
management layer and the delivery pipeline, the same code as ``msgstore account add`` and
``msgstore deliver``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, TypeVar

from msgstore.auth.passwords import hash_password
from msgstore.config import Config, load_config
from msgstore.core.accounts import AccountKind
from msgstore.core.ids import UidSet
from msgstore.core.names import INBOX
from msgstore.delivery.pipeline import Accepted, DeliveryPipeline, Target
from msgstore.management import ManagementContext, Secret
from msgstore.management.accounts import AccountAdd, AccountModify
from msgstore.storage.base import Backend, MessageMeta, Want
from msgstore.storage.open import open_backend

T = TypeVar("T")

#: Generous: a start takes ~1.5 s on a quiet machine, but over 30 s was seen on a loaded one.
STARTUP_S: Final = 60.0
SHUTDOWN_S: Final = 15.0

#: Every listen key, in config order.
LISTEN_KEYS: Final = (
    "imap.listen",
    "imap.tls_listen",
    "pop3.listen",
    "pop3.tls_listen",
    "lmtp.listen",
    "smtp.listen",
    "poppassd.listen",
    "web.listen",
)

#: Settings every test server gets unless overridden: short login delays, so that the many
#: deliberate failures of a test run do not slow each other down (the throttle tests set
#: their own numbers on a dedicated server).
TEST_DEFAULTS: Final[Mapping[str, object]] = {
    "auth.failure_delay_ms": 10,
    "auth.failure_delay_max_ms": 50,
    "auth.max_failures_per_connection": 3,
    # MSGSTORE_TEST_EVENT_LOOP=asyncio runs a suite on asyncio's loop instead of uvloop.
    "server.event_loop": os.environ.get("MSGSTORE_TEST_EVENT_LOOP", "auto"),
}


#: Starts tried with new free ports when one was taken meanwhile (see ``PortTakenError``).
PORT_ATTEMPTS: Final = 3


class PortTakenError(RuntimeError):
    """The server could not bind a port that was free a moment before."""


def free_ports(count: int) -> list[int]:
    socks = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            socks.append(sock)
        return [s.getsockname()[1] for s in socks]
    finally:
        for sock in socks:
            sock.close()


def on_free_ports(count: int, start: Callable[[list[int]], T]) -> T:
    """``start(ports)`` with ``count`` free ports; again with new ones when it raises
    :class:`PortTakenError` (another process bound one of them between the pick and the
    server's bind: many test processes share the machine), at most :data:`PORT_ATTEMPTS`
    times."""
    for _ in range(PORT_ATTEMPTS - 1):
        with contextlib.suppress(PortTakenError):
            return start(free_ports(count))
    return start(free_ports(count))


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"no TOML form for {value!r}")


def config_toml(settings: Mapping[str, object]) -> str:
    """A msgstore.toml from dotted keys: ``{"pop3.listen": "127.0.0.1:1110", ...}``."""
    sections: dict[str, list[str]] = {}
    for key, value in settings.items():
        section, _, name = key.partition(".")
        sections.setdefault(section, []).append(f"{name} = {_toml_value(value)}")
    return "".join(f"[{s}]\n" + "\n".join(lines) + "\n\n" for s, lines in sections.items())


@dataclass(frozen=True, slots=True)
class User:
    """A test account: its unique real name and its password."""

    label: str  # the name a script uses ("alice")
    name: str  # the real account name ("alice-k3j2x9")
    password: str
    kind: str


class StoreAdmin:
    """The store of a running server, opened in this process on a thread of its own."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self.backend: Backend = self.call(open_backend(config))
        self.ctx = ManagementContext(self.backend, config, hash_password)

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        future: Future[T] = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return future.result(timeout=60)

    def close(self) -> None:
        try:
            self.call(self.backend.close())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
            self._loop.close()

    # --- accounts -----------------------------------------------------------------------------

    def add_user(self, label: str, *, kind: str = "imap", password: str | None = None) -> User:
        name = f"{label}-{secrets.token_hex(4)}"
        password = password or f"{label}-Pw-{secrets.token_hex(4)}"
        op = AccountAdd(name=name, password=Secret(password), kind=AccountKind(kind))
        self.call(op.run(self.ctx))
        return User(label, name, password, kind)

    def set_kind(self, name: str, kind: str) -> None:
        self.call(AccountModify(name=name, kind=AccountKind(kind)).run(self.ctx))

    def set_password_hash(self, name: str, stored: str) -> None:
        self.call(self.backend.set_password_hash(name, stored))

    def password_hash(self, name: str) -> str:
        return self.call(self.backend.get_password_hash(name))[1]

    # --- mail ---------------------------------------------------------------------------------

    def deliver(self, recipients: str | Iterable[str], message: bytes) -> list[Accepted]:
        """Deliver one message to each recipient's INBOX through the delivery pipeline."""
        names = [recipients] if isinstance(recipients, str) else list(recipients)
        return self.call(self._deliver(names, message))

    async def _deliver(self, names: list[str], message: bytes) -> list[Accepted]:
        pipeline = DeliveryPipeline.from_config(self.backend, self.config)
        targets = []
        for name in names:
            target = await pipeline.check(name)
            assert isinstance(target, Target), target
            targets.append(target)

        async def source() -> AsyncIterator[bytes]:
            yield message

        outcomes = await pipeline.deliver(targets, source())
        assert all(isinstance(o, Accepted) for o in outcomes), outcomes
        return [o for o in outcomes if isinstance(o, Accepted)]

    def deliver_many(self, name: str, messages: Iterable[bytes], *, at_once: int = 32) -> None:
        """Deliver each message to the account's INBOX, ``at_once`` of them concurrently: the
        store's group commit makes a large fill several times faster than one ``deliver``
        after another. The UIDs do not follow the order of ``messages``."""
        self.call(self._deliver_many(name, list(messages), at_once))

    async def _deliver_many(self, name: str, messages: list[bytes], at_once: int) -> None:
        gate = asyncio.Semaphore(at_once)

        async def one(message: bytes) -> None:
            async with gate:
                await self._deliver([name], message)

        await asyncio.gather(*(one(m) for m in messages))

    def inbox(self, name: str) -> list[MessageMeta]:
        """Every message of the account's INBOX, in UID order, with flags."""
        return self.call(self._inbox(name))

    async def _inbox(self, name: str) -> list[MessageMeta]:
        account = await self.backend.get_account(name)
        mailbox = await self.backend.get_mailbox(account.id, INBOX)
        return await self.backend.fetch_meta(account.id, mailbox.id, UidSet.all(), Want.FLAGS)

    def body(self, name: str, uid: int) -> bytes:
        return self.call(self._body(name, uid))

    async def _body(self, name: str, uid: int) -> bytes:
        from msgstore.core.ids import Uid

        account = await self.backend.get_account(name)
        mailbox = await self.backend.get_mailbox(account.id, INBOX)
        async with self.backend.open_body(account.id, mailbox.id, Uid(uid)) as body:
            return await body.read(0, body.size)


class MsgstoreServer:
    """One ``msgstore serve`` subprocess (see the module docstring)."""

    def __init__(self, root: Path, settings: Mapping[str, object]) -> None:
        self.root = root
        self.settings = dict(settings)
        self.data_dir = root / "data"
        self.config_path = root / "msgstore.toml"
        self.log_path = root / "serve.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._admin: StoreAdmin | None = None

    @classmethod
    def start(
        cls,
        root: Path,
        *,
        services: Iterable[str] = ("pop3", "poppassd"),
        config: Mapping[str, object] | None = None,
    ) -> MsgstoreServer:
        """Start a server with a free port for every listen key of ``services``."""
        root.mkdir(parents=True, exist_ok=True)
        keys = [k for k in LISTEN_KEYS if k.partition(".")[0] in set(services)]

        def start(ports: list[int]) -> MsgstoreServer:
            settings: dict[str, object] = {key: [] for key in LISTEN_KEYS}
            settings.update({k: f"127.0.0.1:{p}" for k, p in zip(keys, ports, strict=True)})
            settings["store.data_dir"] = str(root / "data")
            settings.update(TEST_DEFAULTS)
            settings.update(config or {})
            server = cls(root, settings)
            server.config_path.write_text(config_toml(settings))
            server._spawn()
            return server

        return on_free_ports(len(keys), start)

    def _spawn(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MSGSTORE_")}
        pid_file = self.data_dir / "run" / "msgstore.pid"
        log_start = self.log_path.stat().st_size if self.log_path.exists() else 0
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
            code = self.proc.poll()
            if code is not None:
                failure = RuntimeError(f"msgstore serve exited with {code}:\n{self.log}")
                if b"Address already in use" in self.log_path.read_bytes()[log_start:]:
                    raise PortTakenError(str(failure))
                raise failure
            if time.monotonic() > deadline:
                raise RuntimeError(f"msgstore serve not ready after {STARTUP_S}s:\n{self.log}")
            time.sleep(0.02)

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    @property
    def admin(self) -> StoreAdmin:
        if self._admin is None:
            self._admin = StoreAdmin(load_config(self.config_path))
        return self._admin

    @property
    def cafile(self) -> Path:
        return self.data_dir / "tls" / "cert.pem"

    def client_tls(self) -> ssl.SSLContext:
        """A client context that trusts this server's certificate."""
        return ssl.create_default_context(cafile=str(self.cafile))

    def port(self, key: str) -> int:
        value = self.settings[key]
        assert isinstance(value, str), f"{key} is not configured"
        return int(value.rpartition(":")[2])

    def restart(self) -> None:
        self.stop()
        self._spawn()

    def stop(self) -> None:
        if self._admin is not None:
            self._admin.close()
            self._admin = None
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=SHUTDOWN_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


def message(subject: str, body: str = "Hello.\r\n", *, sender: str = "a@example.org") -> bytes:
    """A small RFC 5322 message."""
    return (
        f"From: {sender}\r\nTo: someone@example.org\r\nSubject: {subject}\r\n"
        f"Message-ID: <{secrets.token_hex(8)}@example.org>\r\n\r\n{body}"
    ).encode()


class LineClient:
    """A blocking line client over one socket, with optional TLS (for scripts and tests)."""

    def __init__(
        self,
        port: int,
        *,
        tls: ssl.SSLContext | None = None,
        timeout: float = 10.0,
        source: str | None = None,
    ) -> None:
        sock = socket.create_connection(
            ("127.0.0.1", port), timeout=timeout, source_address=(source, 0) if source else None
        )
        self.sock: socket.socket = (
            tls.wrap_socket(sock, server_hostname="localhost") if tls is not None else sock
        )
        self.buffer = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send_line(self, line: str | bytes) -> None:
        self.send((line.encode() if isinstance(line, str) else line) + b"\r\n")

    def read_line(self) -> bytes | None:
        """The next line without CRLF, or None at end of stream."""
        while b"\n" not in self.buffer:
            try:
                data = self.sock.recv(65536)
            except ConnectionResetError:
                data = b""
            if not data:
                if self.buffer:
                    line, self.buffer = self.buffer, b""
                    return line
                return None
            self.buffer += data
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line.removesuffix(b"\r")

    def command(self, line: str | bytes) -> bytes:
        self.send_line(line)
        reply = self.read_line()
        assert reply is not None, "connection closed"
        return reply

    def multiline(self) -> list[bytes]:
        """Lines of a multi-line reply up to the ``.``, un-stuffed."""
        lines: list[bytes] = []
        while True:
            line = self.read_line()
            assert line is not None, "connection closed inside a multi-line reply"
            if line == b".":
                return lines
            lines.append(line[1:] if line.startswith(b".") else line)

    def start_tls(self, context: ssl.SSLContext) -> None:
        assert not self.buffer, "data buffered before the TLS handshake"
        self.sock = context.wrap_socket(self.sock, server_hostname="localhost")

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> LineClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

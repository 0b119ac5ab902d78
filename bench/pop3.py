"""POP3 download benchmark: a 1,000-message maildrop of 10 KB messages, RETR + DELE each, QUIT.

    python -m bench.pop3                       # a fresh msgstore serve on free loopback ports
    python -m bench.pop3 --messages 100        # smaller
    python -m bench.pop3 --host H --port P --user U --password W   # any POP3 server whose
                                               # maildrop is already filled (e.g. Dovecot)

Against its own server the benchmark creates a temporary data directory, a POP-only account
and the messages (through the delivery pipeline, each durable), starts ``msgstore serve`` as a
subprocess, and times the client from USER to the reply to QUIT (which includes the UPDATE
state's expunge of every message). The client is a raw socket that sends one command and
reads its whole reply before the next, as fetchmail and getmail do; it checks each message's
size against LIST. Prints seconds, messages/s and MB/s (10^6 octets of message data).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

#: One 10 KB message body line pattern (72 characters + CRLF, like ordinary mail).
LINE = b"The quick brown fox jumps over the lazy dog while the POP3 server sends it.\r\n"


def make_message(i: int, size: int) -> bytes:
    head = (
        f"From: bench@example.org\r\nTo: pop@example.org\r\nSubject: message {i}\r\n"
        f"Message-ID: <{i}.bench@example.org>\r\n\r\n"
    ).encode()
    body = LINE * max(1, (size - len(head)) // len(LINE))
    return head + body


class Client:
    def __init__(self, host: str, port: int) -> None:
        self.sock = socket.create_connection((host, port), timeout=60)
        self.buf = bytearray()

    def line(self) -> bytes:
        while True:
            i = self.buf.find(b"\r\n")
            if i >= 0:
                out = bytes(self.buf[:i])
                del self.buf[: i + 2]
                return out
            data = self.sock.recv(262144)
            if not data:
                raise ConnectionError("server closed the connection")
            self.buf += data

    def command(self, text: str) -> bytes:
        self.sock.sendall(text.encode() + b"\r\n")
        reply = self.line()
        if not reply.startswith(b"+OK"):
            raise RuntimeError(f"{text.split()[0]}: {reply!r}")
        return reply

    def multiline(self) -> int:
        """Read up to the terminating dot; return the octets of the (stuffed) text."""
        total = 0
        while True:
            i = self.buf.find(b"\r\n.\r\n")
            if i >= 0:
                total += i + 2
                del self.buf[: i + 5]
                return total
            if len(self.buf) > 5:
                keep = 5
                total += len(self.buf) - keep
                del self.buf[:-keep]
            data = self.sock.recv(262144)
            if not data:
                raise ConnectionError("server closed the connection")
            self.buf += data


def download(host: str, port: int, user: str, password: str) -> tuple[float, int, int]:
    """RETR + DELE every message; returns (seconds, messages, octets)."""
    client = Client(host, port)
    client.line()
    start = time.perf_counter()
    client.command(f"USER {user}")
    client.command(f"PASS {password}")
    count = int(client.command("STAT").split()[1])
    octets = 0
    for n in range(1, count + 1):
        size = int(client.command(f"RETR {n}").split()[1])
        got = client.multiline()
        if got < size:
            raise RuntimeError(f"message {n}: {got} octets, LIST said {size}")
        octets += size
        client.command(f"DELE {n}")
    client.command("QUIT")
    elapsed = time.perf_counter() - start
    client.sock.close()
    return elapsed, count, octets


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def fill(config_path: Path, user: str, password: str, messages: int, size: int) -> None:
    from msgstore.auth.passwords import hash_password
    from msgstore.config import load_config
    from msgstore.core.accounts import AccountKind
    from msgstore.delivery.pipeline import DeliveryPipeline, Target
    from msgstore.management import ManagementContext, Secret
    from msgstore.management.accounts import AccountAdd
    from msgstore.storage.open import open_backend

    config = load_config(config_path)
    backend = await open_backend(config)
    try:
        ctx = ManagementContext(backend, config, hash_password)
        await AccountAdd(name=user, password=Secret(password), kind=AccountKind.POP).run(ctx)
        pipeline = DeliveryPipeline.from_config(backend, config)
        for i in range(messages):
            target = await pipeline.check(user)
            assert isinstance(target, Target)

            async def source(i: int = i) -> AsyncIterator[bytes]:
                yield make_message(i, size)

            await pipeline.deliver([target], source())
    finally:
        await backend.close()


def own_server(messages: int, size: int) -> tuple[subprocess.Popen[bytes], int, Path]:
    root = Path(tempfile.mkdtemp(prefix="msgstore-bench-pop3-"))
    port = free_port()
    config = root / "msgstore.toml"
    sections = ["imap", "lmtp", "smtp", "poppassd", "web"]
    text = "".join(f"[{s}]\nlisten = []\n" for s in sections)
    text = text.replace("[imap]\nlisten = []\n", "[imap]\nlisten = []\ntls_listen = []\n")
    text += f'[pop3]\nlisten = "127.0.0.1:{port}"\ntls_listen = []\n'
    text += f'[store]\ndata_dir = "{root / "data"}"\n'
    config.write_text(text)
    asyncio.run(fill(config, "bench", "bench-password", messages, size))
    env = {k: v for k, v in os.environ.items() if not k.startswith("MSGSTORE_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "msgstore.cli", "--config", str(config), "serve"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    pid_file = root / "data" / "run" / "msgstore.pid"
    deadline = time.monotonic() + 30
    while not pid_file.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("msgstore serve did not start")
        time.sleep(0.05)
    return proc, port, root


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--size", type=int, default=10 * 1024)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int)
    parser.add_argument("--user")
    parser.add_argument("--password")
    args = parser.parse_args(argv)
    proc = root = None
    if args.port is None:
        proc, port, root = own_server(args.messages, args.size)
        user, password, label = "bench", "bench-password", "msgstore"
    else:
        port, user, password, label = (
            args.port,
            args.user,
            args.password,
            f"{args.host}:{args.port}",
        )
    try:
        elapsed, count, octets = download(args.host, port, user, password)
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=30)
        if root is not None:
            shutil.rmtree(root, ignore_errors=True)
    print(
        f"{label}: {count} messages, {octets / 1e6:.1f} MB in {elapsed:.3f} s: "
        f"{count / elapsed:.0f} msg/s, {octets / 1e6 / elapsed:.1f} MB/s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

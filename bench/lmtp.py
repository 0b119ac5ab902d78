"""LMTP delivery benchmark: throughput of 10 KB messages and one message to 1,000 recipients.

    python -m bench.lmtp                          # a fresh msgstore serve on a free port
    python -m bench.lmtp --messages 500           # smaller
    python -m bench.lmtp --workers 2              # msgstore serve --workers 2 (one per core)
    python -m bench.lmtp --fanout-runs 2          # a warm fan-out after the cold one
    python -m bench.lmtp --host H --port P --user-prefix rcpt   # any LMTP server (Dovecot's
                                                  # lmtp) whose accounts rcpt0..rcptN-1 exist
    python -m bench.lmtp --dovecot                # a throw-away Dovecot lmtp (Debian
                                                  # dovecot-lmtpd), Maildir, fsync as shipped

Against its own server the benchmark creates a temporary data directory and the accounts
``rcpt0`` .. ``rcpt{N-1}`` (N = --fanout, at least --connections), starts ``msgstore serve``
(fsync on, as always) and runs:

1. **throughput**: --connections concurrent LMTP connections deliver --messages messages of
   --size octets in total, each connection to its own recipient; each transaction is
   pipelined (MAIL, RCPT, DATA in one write, then the data), as Postfix's LMTP client does.
   Reports messages/s from the first MAIL to the last reply.
2. **fan-out**: one message to --fanout recipients in one transaction (RCPTs pipelined);
   reports the time from MAIL to the last per-recipient reply (RFC 2033 §4.2), i.e. until
   every recipient's copy is durable, and the part of it until the 354 (the RCPT checks).
   The first fan-out is *cold* (no recipient's index was opened by the server yet);
   ``--fanout-runs 2`` repeats it warm.

For a server it started (its own, or ``--dovecot``) it also reports the server's CPU time
per message (user and system, from ``/proc/PID/stat`` of the server process and all its
descendants, reaped children included): on a machine shared with other work the wall-clock
figures vary with the load, the CPU per message much less.
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
from pathlib import Path


def tree_cpu(root: int) -> tuple[float, float]:
    """(user, system) seconds of ``root`` and its descendants (reaped children included)."""
    tick = os.sysconf("SC_CLK_TCK")
    pids, todo = [], [root]
    while todo:
        pid = todo.pop()
        pids.append(pid)
        try:
            for tid in os.listdir(f"/proc/{pid}/task"):
                children = Path(f"/proc/{pid}/task/{tid}/children").read_text().split()
                todo.extend(int(c) for c in children)
        except OSError:
            continue
    user = system = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        user += int(fields[11]) + int(fields[13])
        system += int(fields[12]) + int(fields[14])
    return user / tick, system / tick


class Cpu:
    """CPU of a server process tree over a measurement (nothing without a pid)."""

    def __init__(self, pid: int | None) -> None:
        self.pid = pid
        self.start = tree_cpu(pid) if pid is not None else (0.0, 0.0)

    def per(self, count: int, unit: str) -> str:
        if self.pid is None:
            return ""
        user, system = tree_cpu(self.pid)
        scale = 1000 / count if unit == "ms" else 1.0
        what = " per message" if unit == "ms" else ""
        return (
            f" (server CPU user {(user - self.start[0]) * scale:.2f} {unit}, "
            f"system {(system - self.start[1]) * scale:.2f} {unit}{what})"
        )


LINE = b"The quick brown fox jumps over the lazy dog while the LMTP server stores it.\r\n"


def make_message(i: int, size: int) -> bytes:
    head = (
        f"From: bench@example.org\r\nTo: rcpt@example.org\r\nSubject: message {i}\r\n"
        f"Message-ID: <{i}.{time.time_ns()}.bench@example.org>\r\n\r\n"
    ).encode()
    return head + LINE * max(1, (size - len(head)) // len(LINE))


def dot_stuffed(message: bytes) -> bytes:
    return message.replace(b"\r\n.", b"\r\n..") + b".\r\n"


class Lmtp:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(cls, host: str, port: int) -> Lmtp:
        reader, writer = await asyncio.open_connection(host, port, limit=1 << 20)
        client = cls(reader, writer)
        await client.reply()
        writer.write(b"LHLO bench.example\r\n")
        while (await reader.readline())[3:4] == b"-":
            pass
        return client

    async def reply(self) -> bytes:
        line = await self.reader.readline()
        if not line:
            raise ConnectionError("server closed the connection")
        return line

    async def expect(self, count: int, prefix: bytes) -> None:
        for _ in range(count):
            line = await self.reply()
            if not line.startswith(prefix):
                raise RuntimeError(f"unexpected reply {line!r}")

    async def deliver(self, recipients: list[str], message: bytes) -> float:
        """One pipelined transaction; returns when the 354 came (perf_counter)."""
        head = [b"MAIL FROM:<bench@example.org>\r\n"]
        head += [f"RCPT TO:<{r}>\r\n".encode() for r in recipients]
        self.writer.write(b"".join(head) + b"DATA\r\n")
        await self.expect(1 + len(recipients), b"250")
        await self.expect(1, b"354")
        go_ahead = time.perf_counter()
        self.writer.write(dot_stuffed(message))
        await self.expect(len(recipients), b"250")
        return go_ahead

    async def close(self) -> None:
        self.writer.write(b"QUIT\r\n")
        await self.reader.read()
        self.writer.close()


async def throughput(host: str, port: int, users: list[str], total: int, size: int) -> float:
    clients = [await Lmtp.connect(host, port) for _ in users]
    per = total // len(clients)
    messages = [make_message(i, size) for i in range(per)]

    async def run(client: Lmtp, user: str) -> None:
        for message in messages:
            await client.deliver([user], message)

    started = time.perf_counter()
    await asyncio.gather(*(run(c, u) for c, u in zip(clients, users, strict=True)))
    elapsed = time.perf_counter() - started
    for client in clients:
        await client.close()
    return per * len(clients) / elapsed


async def fanout(host: str, port: int, users: list[str], size: int) -> tuple[float, float]:
    """(seconds from MAIL to the last reply, of which until the 354: the RCPTs)."""
    client = await Lmtp.connect(host, port)
    message = make_message(0, size)
    started = time.perf_counter()
    go_ahead = await client.deliver(users, message)
    elapsed = time.perf_counter() - started
    await client.close()
    return elapsed, go_ahead - started


async def create_accounts(config_path: Path, names: list[str]) -> None:
    from msgstore.auth.passwords import hash_password
    from msgstore.config import load_config
    from msgstore.management import ManagementContext, Secret
    from msgstore.management.accounts import AccountAdd
    from msgstore.storage.open import open_backend

    config = load_config(config_path)
    backend = await open_backend(config)
    stored = hash_password("bench-password")  # one hash for all: creating 1,000 is quick
    try:
        ctx = ManagementContext(backend, config, lambda _: stored)
        for name in names:
            await AccountAdd(name=name, password=Secret("bench-password")).run(ctx)
    finally:
        await backend.close()


def own_server(names: list[str], workers: int = 1) -> tuple[subprocess.Popen[bytes], int, Path]:
    root = Path(tempfile.mkdtemp(prefix="msgstore-bench-lmtp-"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    config = root / "msgstore.toml"
    sections = ["imap", "pop3", "smtp", "poppassd", "web"]
    text = "".join(f"[{s}]\nlisten = []\n\n" for s in sections)
    text = text.replace("[imap]\nlisten = []\n", "[imap]\nlisten = []\ntls_listen = []\n")
    text = text.replace("[pop3]\nlisten = []\n", "[pop3]\nlisten = []\ntls_listen = []\n")
    text += f'[lmtp]\nlisten = "127.0.0.1:{port}"\nmax_recipients = {max(len(names), 1)}\n\n'
    text += f"[server]\nworkers = {workers}\n\n"
    text += f'[store]\ndata_dir = "{root / "data"}"\n'
    config.write_text(text)
    asyncio.run(create_accounts(config, names))
    proc = subprocess.Popen(
        [sys.executable, "-m", "msgstore.cli", "--config", str(config), "serve"],
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


def dovecot_server() -> tuple[subprocess.Popen[bytes], int, Path]:
    """Dovecot's lmtp as shipped (``mail_fsync = optimized``: fsync before the reply), Maildir,
    every user accepted (static userdb), everything under a temp directory; run as root
    (bench/dovecot.py)."""
    from bench.dovecot import DovecotServer

    root = Path(tempfile.mkdtemp(prefix="dovecot-bench-lmtp-"))
    try:
        server = DovecotServer.start(root, {}, protocol="lmtp")
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise
    return server.proc, server.port, root


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--size", type=int, default=10 * 1024)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--fanout", type=int, default=1000)
    parser.add_argument(
        "--fanout-runs", type=int, default=1, help="fan-outs to run (the first is cold)"
    )
    parser.add_argument("--host")
    parser.add_argument("--port", type=int)
    parser.add_argument("--user-prefix", default="rcpt")
    parser.add_argument("--dovecot", action="store_true", help="measure Dovecot's lmtp")
    parser.add_argument(
        "--workers", type=int, default=1, help="msgstore serve --workers N (own server only)"
    )
    args = parser.parse_args(argv)
    names = [f"{args.user_prefix}{i}" for i in range(max(args.fanout, args.connections))]
    proc: subprocess.Popen[bytes] | None = None
    root: Path | None = None
    if args.dovecot:
        proc, port, root = dovecot_server()
        host, label = "127.0.0.1", "dovecot"
    elif args.host is None:
        proc, port, root = own_server(names, args.workers)
        host, label = "127.0.0.1", f"msgstore (workers={args.workers})"
    else:
        host, port, label = args.host, args.port, f"{args.host}:{args.port}"
    server = None if proc is None else proc.pid
    try:
        cpu = Cpu(server)
        rate = asyncio.run(
            throughput(host, port, names[: args.connections], args.messages, args.size)
        )
        print(f"{label}: {args.messages} x {args.size} octets over {args.connections} "
              f"connections: {rate:.0f} messages/s{cpu.per(args.messages, 'ms')}")  # fmt: skip
        for run in range(args.fanout_runs):
            cpu = Cpu(server)
            seconds, rcpts = asyncio.run(fanout(host, port, names[: args.fanout], args.size))
            cold = " (cold)" if run == 0 else ""
            print(f"{label}: one message to {args.fanout} recipients{cold}: "
                  f"{seconds:.2f} s, RCPTs {rcpts:.2f} s{cpu.per(1, 's')}")  # fmt: skip
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=30)
        if root is not None:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Front-end scaling: LMTP and IMAP throughput, local vs postgres, 1/2/4 server processes.

    python -m bench.scaleout                              # both backends, 1, 2 and 4 processes
    python -m bench.scaleout --backends postgres --procs 1,2 --messages 400 --seconds 5
    python -m bench.scaleout --quick                      # tiny sizes (checks the bench)

For each backend and process count N it starts ``msgstore serve --workers N`` (N processes
sharing the listening sockets; on postgres each has its own connection pool and LISTEN
connection, which is what "N front ends" means; on local they share one data directory) on
free ports, creates --connections accounts, then measures:

1. **LMTP**: --connections connections deliver --messages messages of --size octets in total
   (each connection to its own recipient, pipelined as Postfix does): messages/s.
2. **IMAP**: --connections sessions (one per account, each on its INBOX filled by step 1) run
   for --seconds a loop of ``UID FETCH n (FLAGS BODY.PEEK[])``, ``UID STORE n +FLAGS.SILENT
   (\\Seen)``, ``STATUS INBOX (MESSAGES UNSEEN)`` and ``NOOP``: commands/s.

PostgreSQL: the server at --dsn (default 127.0.0.1:5432, database ``test``), a fresh schema
per run, dropped afterwards. The load generator is one Python process: on a small machine it
competes with the servers for the CPU, so read the numbers as a curve, not as capacity.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.lmtp import create_accounts, throughput

PASSWORD = "bench-password"  # noqa: S105 -- the password of bench.lmtp.create_accounts
DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/test"


def free_ports(count: int) -> list[int]:
    socks = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


class Server:
    """``msgstore serve --workers N`` on a temporary directory, local or postgres."""

    def __init__(self, backend: str, workers: int, names: list[str], dsn: str) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="msgstore-bench-scaleout-"))
        self.imap_port, self.lmtp_port = free_ports(2)
        self.schema: str | None = None
        self.dsn = dsn
        text = "".join(f"[{s}]\nlisten = []\n\n" for s in ("pop3", "smtp", "poppassd", "web"))
        text = text.replace("[pop3]\nlisten = []\n", "[pop3]\nlisten = []\ntls_listen = []\n")
        text += f'[imap]\nlisten = "127.0.0.1:{self.imap_port}"\ntls_listen = []\n\n'
        text += f'[lmtp]\nlisten = "127.0.0.1:{self.lmtp_port}"\n\n'
        text += f'[store]\ndata_dir = "{self.root / "data"}"\n\n'
        text += f"[server]\nworkers = {workers}\n\n"
        text += "[auth]\nfailure_delay_ms = 10\n\n"
        if backend == "postgres":
            self.schema = "bench_" + secrets.token_hex(4)
            asyncio.run(self._create_schema())
            text += (
                f'[storage]\nbackend = "postgres"\ndsn = "{dsn}?search_path={self.schema}"\n'
                "pool_min = 2\npool_max = 10\n"
            )
        self.config = self.root / "msgstore.toml"
        self.config.write_text(text)
        asyncio.run(create_accounts(self.config, names))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "msgstore.cli", "--config", str(self.config), "serve"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while not self._listening():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("msgstore serve did not start")
            time.sleep(0.1)

    async def _create_schema(self) -> None:
        from msgstore.storage.postgres.admin import create_schema, upgrade_database

        assert self.schema is not None
        await create_schema(self.dsn, self.schema)
        await upgrade_database(f"{self.dsn}?search_path={self.schema}")

    def _listening(self) -> bool:
        try:
            socket.create_connection(("127.0.0.1", self.imap_port), 1).close()
        except OSError:
            return False
        return True

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=60)
        if self.schema is not None:
            from msgstore.storage.postgres.admin import drop_schema

            asyncio.run(drop_schema(self.dsn, self.schema))
        shutil.rmtree(self.root, ignore_errors=True)


class Imap:
    """A minimal IMAP client: one command at a time, literals read and dropped."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer, self.n = reader, writer, 0

    @classmethod
    async def login(cls, port: int, user: str) -> Imap:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 22)
        client = cls(reader, writer)
        await reader.readline()
        await client.command(f'LOGIN {user} "{PASSWORD}"')
        await client.command("SELECT INBOX")
        return client

    async def command(self, text: str) -> None:
        self.n += 1
        tag = f"b{self.n}".encode()
        self.writer.write(tag + b" " + text.encode() + b"\r\n")
        while True:
            line = await self.reader.readline()
            if not line:
                raise ConnectionError("server closed the connection")
            while line.endswith(b"}\r\n"):
                size = int(line[line.rindex(b"{") + 1 : -3])
                await self.reader.readexactly(size)
                line = await self.reader.readline()
            if line.startswith(tag + b" "):
                if not line.startswith(tag + b" OK"):
                    raise RuntimeError(f"{text}: {line!r}")
                return

    async def close(self) -> None:
        self.writer.write(b"z LOGOUT\r\n")
        self.writer.close()


async def imap_load(port: int, users: list[str], seconds: float, fill: int) -> float:
    clients = [await Imap.login(port, u) for u in users]
    done = 0
    deadline = time.monotonic() + seconds

    async def run(client: Imap, k: int) -> None:
        nonlocal done
        i = k
        while time.monotonic() < deadline:
            uid = i % fill + 1
            match i % 4:
                case 0:
                    await client.command(f"UID FETCH {uid} (FLAGS BODY.PEEK[])")
                case 1:
                    await client.command(f"UID STORE {uid} +FLAGS.SILENT (\\Seen)")
                case 2:
                    await client.command("STATUS INBOX (MESSAGES UNSEEN)")
                case _:
                    await client.command("NOOP")
            done += 1
            i += 1

    started = time.monotonic()
    await asyncio.gather(*(run(c, k) for k, c in enumerate(clients)))
    elapsed = time.monotonic() - started
    for client in clients:
        await client.close()
    return done / elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").partition("\n")[0])
    parser.add_argument("--backends", default="local,postgres")
    parser.add_argument("--procs", default="1,2,4", help="server processes to try")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--messages", type=int, default=1600)
    parser.add_argument("--size", type=int, default=10 * 1024)
    parser.add_argument("--seconds", type=float, default=10.0, help="IMAP load per run")
    parser.add_argument("--dsn", default=DEFAULT_DSN)
    parser.add_argument("--quick", action="store_true", help="tiny sizes (checks the bench)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    if args.quick:
        args.messages, args.seconds, args.connections = 40, 1.0, 2
    names = [f"rcpt{i}" for i in range(args.connections)]
    results: list[dict[str, Any]] = []
    for backend in args.backends.split(","):
        for procs in [int(p) for p in args.procs.split(",")]:
            server = Server(backend, procs, names, args.dsn)
            try:
                lmtp = asyncio.run(
                    throughput("127.0.0.1", server.lmtp_port, names, args.messages, args.size)
                )
                fill = args.messages // args.connections
                imap = asyncio.run(imap_load(server.imap_port, names, args.seconds, fill))
            finally:
                server.close()
            row = {"backend": backend, "procs": procs, "lmtp_msgs_s": lmtp, "imap_cmds_s": imap}
            results.append(row)
            print(
                f"{backend:8} procs={procs}: LMTP {lmtp:7.0f} messages/s   "
                f"IMAP {imap:7.0f} commands/s",
                flush=True,
            )
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

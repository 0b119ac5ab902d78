"""POP3 download benchmark: a 1,000-message maildrop of 10 KB messages, RETR + DELE each, QUIT.

    python -m bench.pop3                       # a fresh msgstore serve on free loopback ports
    python -m bench.pop3 --messages 100        # smaller
    python -m bench.pop3 --event-loop asyncio  # [server] event_loop (default auto: uvloop)
    python -m bench.pop3 --read-ahead 0        # [pop3] read_ahead (default 1M)
    python -m bench.pop3 --phases [--dovecot]  # server CPU per command type, one pass each
    python -m bench.pop3 --host H --port P --user U --password W   # any POP3 server whose
                                               # maildrop is already filled
    python -m bench.pop3 --dovecot             # a throw-away Dovecot pop3 (Debian
                                               # dovecot-pop3d), the same messages in a Maildir
    python -m bench.pop3 --dovecot --maildir cur   # ... already moved to cur/, sizes in names
    python -m bench.pop3 --dovecot --dovecot-hash plain   # {PLAIN} password, no argon2id
    python -m bench.pop3 --dovecot --dovecot-synced       # Maildir fsynced before the start

Against its own server the benchmark creates a temporary data directory, a POP-only account
and the messages (through the delivery pipeline, each durable), starts ``msgstore serve`` as a
subprocess, and times the client from USER to the reply to QUIT (which includes the UPDATE
state's expunge of every message). The client is a raw socket that sends one command and
reads its whole reply before the next, as fetchmail and getmail do; it checks each message's
size against LIST. Prints seconds, messages/s and MB/s (10^6 octets of message data), and
the server's CPU time (user + system of its processes, to the nanosecond from each
process's CPU-time clock, and of their reaped children, in clock ticks) from USER
until it is idle again after QUIT.

With ``--dovecot`` the same messages are written into ``new/`` of a Maildir under a temporary
directory (as an MTA would leave them) and Dovecot's pop3 runs as shipped with only what a
throw-away instance needs (bench/dovecot.py): passwd-file with the same argon2id hash msgstore
stores (``--dovecot-hash plain``: a ``{PLAIN}`` password), ``ssl = no``,
``mail_location = maildir:~/Maildir``, one free loopback port (run as root; the mail belongs
to ``nobody``). The files are not fsynced (``--dovecot-synced``: they are, before the start,
as msgstore's delivery fsyncs each message). Its CPU time is that of the Dovecot master and
all its processes (``pop3``, ``pop3-login``, ``auth``), like msgstore's whole ``serve``
process.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

from bench import dovecot
from bench.dovecot import DovecotServer

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


def phases(host: str, port: int, user: str, password: str, pid: int) -> list[str]:
    """Server CPU per command, one command type at a time: USER/PASS/STAT, RETR 1..N,
    DELE 1..N, NOOP x N, QUIT (and the work after it). One line per phase."""
    client = Client(host, port)
    client.line()
    marks: list[tuple[str, float]] = [("", cpu_seconds(pid))]
    client.command(f"USER {user}")
    client.command(f"PASS {password}")
    count = int(client.command("STAT").split()[1])
    marks.append(("login (per message)", cpu_seconds(pid)))
    for n in range(1, count + 1):
        client.command(f"RETR {n}")
        client.multiline()
    marks.append(("RETR", cpu_seconds(pid)))
    for n in range(1, count + 1):
        client.command(f"DELE {n}")
    marks.append(("DELE", cpu_seconds(pid)))
    for _ in range(count):
        client.command("NOOP")
    marks.append(("NOOP", cpu_seconds(pid)))
    client.command("QUIT")
    marks.append(("QUIT (per message)", cpu_seconds(pid)))
    client.sock.close()
    marks.append(("after QUIT (per message)", settled_cpu(pid)))
    return [
        f"{name}: {(cpu - before) / max(count, 1) * 1e6:.0f} us CPU"
        for (_, before), (name, cpu) in itertools.pairwise(marks)
    ]


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


def own_server(
    messages: int, size: int, read_ahead: str | None = None, event_loop: str | None = None
) -> tuple[subprocess.Popen[bytes], int, Path]:
    root = Path(tempfile.mkdtemp(prefix="msgstore-bench-pop3-"))
    port = free_port()
    config = root / "msgstore.toml"
    sections = ["imap", "lmtp", "smtp", "poppassd", "web"]
    text = "".join(f"[{s}]\nlisten = []\n" for s in sections)
    text = text.replace("[imap]\nlisten = []\n", "[imap]\nlisten = []\ntls_listen = []\n")
    text += f'[pop3]\nlisten = "127.0.0.1:{port}"\ntls_listen = []\n'
    if read_ahead is not None:
        text += f'read_ahead = "{read_ahead}"\n'
    if event_loop is not None:
        text += f'[server]\nevent_loop = "{event_loop}"\n'
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


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (from /proc/*/stat)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rpartition(")")[2].split()
            except OSError:
                continue
            children.setdefault(int(fields[1]), []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def cpu_seconds(pid: int) -> float:
    """User + system CPU of ``pid``'s process tree, with the reaped children's
    (``cutime``/``cstime``), so a process that ends during the run still counts.

    Each process is read from its CPU-time clock (``clock_gettime`` of
    ``MAKE_PROCESS_CPUCLOCK(pid, CPUCLOCK_SCHED)``): to the nanosecond and including its
    threads that have ended. Clock ticks (10 ms) would make a phase of 1,000 NOOPs, ~30 ms, a
    matter of rounding; and summing the ticks of each thread to find those of ended ones
    drifts by a tick per thread (the kernel rounds each separately), tens of ms between two
    readings. Reaped children are known in ticks only."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for p in process_tree(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rpartition(")")[2].split()
            own = time.clock_gettime(_process_cpu_clock(p))
        except OSError:
            continue
        total += own + sum(int(f) for f in fields[13:15]) / tick  # cutime cstime
    return total


def _process_cpu_clock(pid: int) -> int:
    """The clock id of a process's CPU time (glibc's ``clock_getcpuclockid``)."""
    return ((~pid) << 3) | 2  # CPUCLOCK_SCHED


def event_loop_of(pid: int) -> str:
    """Which event loop a ``msgstore serve`` process runs: uvloop if it has loaded it."""
    maps = Path(f"/proc/{pid}/maps").read_text()
    return "uvloop" if "uvloop" in maps else "asyncio"


def settled_cpu(pid: int, timeout: float = 10.0) -> float:
    """``cpu_seconds(pid)`` once it stops growing: work the server does after its reply to
    QUIT (msgstore's file removals, a Dovecot process ending and being reaped) counts too."""
    last = cpu_seconds(pid)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(0.2)
        now = cpu_seconds(pid)
        if now - last < 0.001:  # idle: timers and housekeeping only
            break
        last = now
    return last


def dovecot_server(
    messages: int, size: int, password: str, subdir: str, scheme: str, *, synced: bool = False
) -> DovecotServer:
    """Dovecot's pop3 as shipped (bench/dovecot.py), Maildir, one passwd-file user ``bench``,
    everything under a temp directory; run as root (the mail belongs to ``nobody``).
    ``subdir`` ``new``: plain file names, as an MTA leaves them (Dovecot renames them into
    ``cur/`` at the first login); ``cur``: already seen by a mail reader, ``,S=<size>`` in the
    name (no stat needed), not flagged ``\\Seen``. ``scheme`` ``argon2id``: the password hash
    msgstore stores (so both servers verify the same argon2id hash at login); ``plain``:
    ``{PLAIN}``, no hashing at all. ``synced``: every file and directory fsynced before the
    start, as a delivery agent (dovecot-lda, Postfix ``local``) leaves mail and as msgstore's
    own delivery does; unsynced, the files are still dirty in the page cache with no blocks
    allocated (ext4 delayed allocation), and unlinking them at QUIT frees nothing on disk."""
    from msgstore.auth.passwords import hash_password

    if not dovecot.available("pop3"):
        raise RuntimeError("Dovecot's pop3 is missing: apt-get install dovecot-pop3d")
    root = Path(tempfile.mkdtemp(prefix="dovecot-bench-pop3-"))
    try:
        dovecot.write_maildir(
            root / "mail" / "bench",
            (make_message(i, size) for i in range(messages)),
            subdir=subdir,
            flags="",
        )
        if synced:
            sync_tree(root / "mail")
        stored = hash_password(password) if scheme == "argon2id" else f"{{PLAIN}}{password}"
        return DovecotServer.start(root, {"bench": stored}, protocol="pop3")
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise


def sync_tree(top: Path) -> None:
    """fsync every file and directory under ``top`` (and ``top``)."""
    for directory, _, names in os.walk(top):
        for name in [*names, "."]:
            fd = os.open(os.path.join(directory, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--size", type=int, default=10 * 1024)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int)
    parser.add_argument("--user")
    parser.add_argument("--password")
    parser.add_argument("--dovecot", action="store_true", help="measure Dovecot's pop3")
    parser.add_argument(
        "--phases",
        action="store_true",
        help="server CPU per command type instead (RETR all, DELE all, NOOP, QUIT)",
    )
    parser.add_argument(
        "--read-ahead", help="own server: [pop3] read_ahead (default: the default, 1M)"
    )
    parser.add_argument(
        "--event-loop",
        choices=("auto", "uvloop", "asyncio"),
        help="own server: [server] event_loop (default: the default, auto)",
    )
    parser.add_argument(
        "--dovecot-hash",
        choices=("argon2id", "plain"),
        default="argon2id",
        help="with --dovecot: the stored password, msgstore's argon2id hash (default, the same "
        "verification work at login) or {PLAIN}",
    )
    parser.add_argument(
        "--dovecot-synced",
        action="store_true",
        help="with --dovecot: fsync the Maildir before the start, as a delivery agent leaves "
        "it (msgstore's mail is always fsynced at delivery); by default the files are still "
        "dirty in the page cache",
    )
    parser.add_argument(
        "--maildir",
        choices=("new", "cur"),
        default="new",
        help="with --dovecot: where the messages are written (default new/, as delivered)",
    )
    args = parser.parse_args(argv)
    proc: subprocess.Popen[bytes] | None = None
    root: Path | None = None
    host = args.host
    if args.dovecot:
        host, user, password = "127.0.0.1", "bench", "bench-password"
        server = dovecot_server(
            args.messages,
            args.size,
            password,
            args.maildir,
            args.dovecot_hash,
            synced=args.dovecot_synced,
        )
        proc, port, root = server.proc, server.port, server.root
        label = f"dovecot (Maildir {args.maildir}/, {args.dovecot_hash})"
    elif args.port is None:
        proc, port, root = own_server(args.messages, args.size, args.read_ahead, args.event_loop)
        host, user, password = "127.0.0.1", "bench", "bench-password"
        label = f"msgstore ({event_loop_of(proc.pid)})"
    else:
        port, user, password, label = args.port, args.user, args.password, f"{host}:{port}"
    if args.phases:
        if proc is None:
            parser.error("--phases needs a server of its own (no --port)")
        try:
            print(f"{label}: " + "; ".join(phases(host, port, user, password, proc.pid)))
        finally:
            proc.terminate()
            proc.wait(timeout=30)
            if root is not None:
                shutil.rmtree(root, ignore_errors=True)
        return 0
    try:
        cpu_before = cpu_seconds(proc.pid) if proc is not None else 0.0
        elapsed, count, octets = download(host, port, user, password)
        if proc is not None:
            cpu = settled_cpu(proc.pid) - cpu_before
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=30)
        if root is not None:
            shutil.rmtree(root, ignore_errors=True)
    print(
        f"{label}: {count} messages, {octets / 1e6:.1f} MB in {elapsed:.3f} s: "
        f"{count / elapsed:.0f} msg/s, {octets / 1e6 / elapsed:.1f} MB/s"
        + (f"; server CPU {cpu:.3f} s ({cpu / max(count, 1) * 1e6:.0f} us/message)"
           if proc is not None else "")
    )  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""IMAP load generator: the same run against msgstore, Dovecot or any IMAP server.

    python -m bench.imap                       # a fresh msgstore serve on free loopback ports
    python -m bench.imap --compare-dovecot     # msgstore and a throw-away Dovecot, back to back
    python -m bench.imap --quick               # tiny sizes, to check the benchmark itself
    python -m bench.imap --host H --port P --user 'bench{n}' --password W [--tls] [--pid PID]
                                               # any server (users bench0..benchN-1 exist)

Three measurements, each reported per server:

1. **Mixed load.** N clients (asyncio, one connection each, N = 10 and 50 by default), each in
   a loop of sessions: connect, LOGIN, SELECT INBOX, ``--session-ops`` operations drawn from
   the mix, LOGOUT. The default mix is what a mail client does: FETCH (FLAGS ENVELOPE
   BODYSTRUCTURE) over a window of 20 messages, FETCH BODY[] of 3 messages, STORE +FLAGS,
   SEARCH (flags, FROM, SUBJECT, SINCE), APPEND of a 10 KB message, and STORE \\Deleted +
   EXPUNGE of one message (APPEND and EXPUNGE keep the mailbox near its filled size). Every
   tagged command is one op; ops/s counts commands answered OK, latency is from sending the
   command to its tagged reply, per command name (p50/p99). Client i logs in as user i, whose
   INBOX is first filled to ``--fill`` messages by APPEND. Several ``--runs`` (median).
2. **Idle connections.** ``--idle`` connections (spread over ``--idle-users`` accounts) each
   LOGIN, SELECT INBOX and IDLE; the server's memory is read from /proc before and after
   (the process and all its descendants: Dovecot runs one imap process per connection). RSS
   summed over processes counts shared pages once per process, so the proportional set size
   (PSS, /proc/PID/smaps_rollup) is printed too: it is the real total.
3. **Big mailbox.** SELECT and ``FETCH 1:* (FLAGS)`` of a ``--big``-message INBOX: the first
   time after the server started (cold), then the median of 3 more, each on a new connection.

The own msgstore server gets its accounts, the idle accounts and the big mailbox through the
store API before it starts (the big one: 1,000 distinct messages COPYed 100 times, as
bench/store.py does); Dovecot (bench/dovecot.py) gets the same accounts with the *same stored
argon2id hash* (so LOGIN costs the same) and the big mailbox as a Maildir written before it
starts. Traffic goes to 127.0.0.1 only; every loop is bounded in count and time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import random
import resource
import shutil
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

from bench import dovecot
from bench.store import message

PASSWORD: Final = "bench-Pw-7Qx"  # noqa: S105 -- a throw-away local account
COMMAND_TIMEOUT_S: Final = 120.0
CONNECT_TIMEOUT_S: Final = 60.0
#: Upper bound of sessions one client runs in one measurement (the deadline ends it first).
MAX_SESSIONS: Final = 1_000_000
#: Distinct messages used for APPEND (and for filling).
APPEND_BODIES: Final = 64
DEFAULT_MIX: Final = "fetch_meta=25,fetch_body=20,store=20,search=10,append=10,expunge=10"
SEARCHES: Final = (
    b"SEARCH UNSEEN",
    b"SEARCH FLAGGED",
    b'SEARCH FROM "sender7@"',
    b'SEARCH SUBJECT "envelope"',
    b"SEARCH SINCE 1-Jan-2025 NOT DELETED",
)


class ImapError(Exception):
    """A server reply we cannot go on from (BYE, a NO to LOGIN/SELECT, a broken response)."""


def raise_nofile() -> tuple[int, int]:
    """Raise this process's open-files soft limit to the hard limit (children inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


# --- a small IMAP client ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Target:
    name: str
    host: str
    port: int
    tls: bool = False
    pid: int | None = None  # the server process (its descendants are counted too)


def _quote(text: str) -> bytes:
    return b'"' + text.replace("\\", "\\\\").replace('"', '\\"').encode() + b'"'


class Imap:
    """One connection: commands in, tagged status out; tracks EXISTS/EXPUNGE."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.buf = bytearray()
        self.tag = 0
        self.exists = 0
        self.fetches = 0  # untagged FETCH responses of the last command
        self.literal_octets = 0  # literal octets of the last command

    @classmethod
    async def open(cls, target: Target) -> Imap:
        context = None
        if target.tls:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE  # loopback benchmark, self-signed certificates
        async with asyncio.timeout(CONNECT_TIMEOUT_S):
            reader, writer = await asyncio.open_connection(
                target.host, target.port, ssl=context, limit=1 << 20
            )
            imap = cls(reader, writer)
            greeting = await imap._line()
        if not greeting.startswith(b"* OK"):
            imap.close()
            raise ImapError(f"greeting: {greeting[:100]!r}")
        return imap

    def close(self) -> None:
        self.writer.transport.abort()

    async def _fill(self) -> None:
        data = await self.reader.read(1 << 18)
        if not data:
            raise ImapError("connection closed by the server")
        self.buf += data

    async def _line(self) -> bytes:
        """One response line; a literal's octets are consumed and counted, not returned."""
        out = b""
        while True:
            i = self.buf.find(b"\r\n")
            while i < 0:
                await self._fill()
                i = self.buf.find(b"\r\n")
            part = bytes(self.buf[:i])
            del self.buf[: i + 2]
            out += part
            if not part.endswith(b"}"):
                return out
            start = part.rfind(b"{")
            size = int(part[start + 1 : -1].rstrip(b"+"))
            while len(self.buf) < size:
                await self._fill()
            del self.buf[:size]
            self.literal_octets += size

    def _untagged(self, line: bytes) -> None:
        if line.endswith(b" EXISTS"):
            self.exists = int(line.split()[1])
        elif line.endswith(b" EXPUNGE"):
            self.exists -= 1
        elif b" FETCH (" in line[:24]:
            self.fetches += 1

    async def command(self, text: bytes, literal: bytes | None = None) -> bytes:
        """Send one command (with a synchronizing literal, if any); return the tagged line."""
        self.tag += 1
        tag = b"a%d" % self.tag
        self.fetches = 0
        self.literal_octets = 0
        async with asyncio.timeout(COMMAND_TIMEOUT_S):
            if literal is None:
                self.writer.write(tag + b" " + text + b"\r\n")
            else:
                self.writer.write(tag + b" " + text + b" {%d}\r\n" % len(literal))
                while True:
                    line = await self._line()
                    if line.startswith(b"+"):
                        break
                    if line.startswith(tag + b" "):
                        return line
                    self._untagged(line)
                self.writer.write(literal + b"\r\n")
            while True:
                line = await self._line()
                if line.startswith(tag + b" "):
                    return line
                if line.startswith(b"* "):
                    self._untagged(line)

    async def bulk(self, text: bytes) -> tuple[bytes, int]:
        """A command with a huge literal-free reply: count its lines in C, not one by one."""
        self.tag += 1
        tag = b"a%d" % self.tag
        end = b"\r\n" + tag + b" "
        lines = 0
        async with asyncio.timeout(COMMAND_TIMEOUT_S):
            self.writer.write(tag + b" " + text + b"\r\n")
            self.buf[0:0] = b"\r\n"
            while True:
                i = self.buf.find(end)
                if i >= 0:
                    lines += self.buf.count(b"\r\n", 0, i)
                    del self.buf[: i + 2]
                    return await self._line(), lines
                # keep the last line break (and what follows): the tag may come next
                cut = self.buf.rfind(b"\r\n")
                if cut > 0:
                    lines += self.buf.count(b"\r\n", 0, cut)
                    del self.buf[:cut]
                await self._fill()

    async def login(self, user: str, password: str) -> None:
        reply = await self.command(b"LOGIN " + _quote(user) + b" " + _quote(password))
        if not ok(reply):
            raise ImapError(f"LOGIN {user}: {reply!r}")

    async def select(self, mailbox: str = "INBOX") -> None:
        reply = await self.command(b"SELECT " + _quote(mailbox))
        if not ok(reply):
            raise ImapError(f"SELECT: {reply!r}")


def ok(tagged: bytes) -> bool:
    return tagged.split(b" ", 2)[1:2] == [b"OK"]


# --- the mixed load --------------------------------------------------------------------------


@dataclass
class Stats:
    latencies: dict[str, list[float]] = field(default_factory=dict)
    errors: Counter[str] = field(default_factory=Counter)
    failures: Counter[str] = field(default_factory=Counter)  # lost sessions, by cause

    def add(self, name: str, seconds: float) -> None:
        self.latencies.setdefault(name, []).append(seconds)

    @property
    def ops(self) -> int:
        return sum(len(v) for v in self.latencies.values())


@dataclass(frozen=True, slots=True)
class Profile:
    mix: tuple[tuple[str, int], ...]
    session_ops: int = 50
    fetch_range: int = 20
    body_count: int = 3
    fill: int = 100

    @staticmethod
    def parse_mix(text: str) -> tuple[tuple[str, int], ...]:
        out = []
        for item in text.split(","):
            name, _, weight = item.partition("=")
            if name.strip() not in OPS:
                raise ValueError(f"unknown operation {name!r}; known: {', '.join(OPS)}")
            out.append((name.strip(), int(weight)))
        return tuple(out)


async def timed(
    imap: Imap, stats: Stats, name: str, text: bytes, lit: bytes | None = None
) -> bool:
    start = time.perf_counter()
    reply = await imap.command(text, lit)
    if ok(reply):
        stats.add(name, time.perf_counter() - start)
        return True
    stats.errors[f"{name}: {reply.split(b' ', 1)[1][:60].decode(errors='replace')}"] += 1
    return False


async def op_fetch_meta(imap: Imap, rng: random.Random, p: Profile, st: Stats, _: Any) -> None:
    n = imap.exists
    if n == 0:
        return
    width = min(p.fetch_range, n)
    first = rng.randint(1, n - width + 1)
    text = b"FETCH %d:%d (FLAGS ENVELOPE BODYSTRUCTURE)" % (first, first + width - 1)
    if await timed(imap, st, "FETCH meta", text) and imap.fetches < width:
        st.errors[f"FETCH meta: {imap.fetches} of {width} messages"] += 1


async def op_fetch_body(imap: Imap, rng: random.Random, p: Profile, st: Stats, _: Any) -> None:
    n = imap.exists
    if n == 0:
        return
    seqs = sorted({rng.randint(1, n) for _ in range(p.body_count)})
    text = b"FETCH " + b",".join(b"%d" % s for s in seqs) + b" BODY[]"
    if await timed(imap, st, "FETCH BODY[]", text) and imap.literal_octets < 100 * len(seqs):
        st.errors[f"FETCH BODY[]: {imap.literal_octets} octets for {len(seqs)} messages"] += 1


async def op_store(imap: Imap, rng: random.Random, p: Profile, st: Stats, _: Any) -> None:
    if imap.exists:
        flag = rng.choice((b"\\Seen", b"\\Flagged", b"\\Answered"))
        await timed(
            imap, st, "STORE", b"STORE %d +FLAGS (%s)" % (rng.randint(1, imap.exists), flag)
        )


async def op_search(imap: Imap, rng: random.Random, p: Profile, st: Stats, _: Any) -> None:
    await timed(imap, st, "SEARCH", rng.choice(SEARCHES))


async def op_append(imap: Imap, rng: random.Random, p: Profile, st: Stats, bodies: Any) -> None:
    if imap.exists >= 2 * p.fill:
        return await op_expunge(imap, rng, p, st, bodies)
    body = rng.choice(bodies)
    await timed(imap, st, "APPEND", b"APPEND INBOX (\\Seen)", body)
    return None


async def op_expunge(imap: Imap, rng: random.Random, p: Profile, st: Stats, bodies: Any) -> None:
    if imap.exists <= max(p.fill // 2, 1):
        return await op_append(imap, rng, p, st, bodies)
    text = b"STORE %d +FLAGS.SILENT (\\Deleted)" % rng.randint(1, imap.exists)
    if await timed(imap, st, "STORE", text):
        await timed(imap, st, "EXPUNGE", b"EXPUNGE")
    return None


Op = Callable[[Imap, random.Random, Profile, Stats, Any], Awaitable[None]]
OPS: Final[dict[str, Op]] = {
    "fetch_meta": op_fetch_meta,
    "fetch_body": op_fetch_body,
    "store": op_store,
    "search": op_search,
    "append": op_append,
    "expunge": op_expunge,
}


async def client_loop(
    target: Target,
    user: str,
    password: str,
    profile: Profile,
    deadline: float,
    rng: random.Random,
    stats: Stats,
    bodies: Sequence[bytes],
) -> None:
    names = [name for name, _ in profile.mix]
    weights = [w for _, w in profile.mix]
    for _ in range(MAX_SESSIONS):
        if time.monotonic() >= deadline:
            return
        imap: Imap | None = None
        try:
            start = time.perf_counter()
            imap = await Imap.open(target)
            stats.add("connect", time.perf_counter() - start)
            if not await timed(
                imap, stats, "LOGIN", b"LOGIN %s %s" % (_quote(user), _quote(password))
            ):
                raise ImapError("LOGIN failed")
            if not await timed(imap, stats, "SELECT", b"SELECT INBOX"):
                raise ImapError("SELECT failed")
            for _ in range(profile.session_ops):
                if time.monotonic() >= deadline:
                    break
                name = rng.choices(names, weights)[0]
                await OPS[name](imap, rng, profile, stats, bodies)
            await timed(imap, stats, "LOGOUT", b"LOGOUT")
        except (OSError, TimeoutError, ImapError, ValueError, IndexError) as exc:
            stats.failures[f"{type(exc).__name__}: {str(exc)[:80]}"] += 1
            await asyncio.sleep(0.05)
        finally:
            if imap is not None:
                imap.close()


def bodies_for(count: int = APPEND_BODIES, seed: int = 11) -> list[bytes]:
    rng = random.Random(seed)
    return [message(rng, n) for n in range(count)]


async def fill_users(
    target: Target, users: Sequence[str], password: str, count: int, parallel: int = 10
) -> int:
    """APPEND until every user's INBOX holds ``count`` messages; returns messages added."""
    bodies = bodies_for()
    sem = asyncio.Semaphore(parallel)
    added = 0

    async def one(user: str) -> None:
        nonlocal added
        async with sem:
            imap = await Imap.open(target)
            try:
                await imap.login(user, password)
                await imap.select()
                for i in range(max(count - imap.exists, 0)):
                    reply = await imap.command(b"APPEND INBOX", bodies[i % len(bodies)])
                    if not ok(reply):
                        raise ImapError(f"APPEND: {reply!r}")
                    added += 1
                await imap.command(b"LOGOUT")
            finally:
                imap.close()

    async with asyncio.TaskGroup() as tg:
        for user in users:
            tg.create_task(one(user))
    return added


@dataclass
class LoadResult:
    server: str
    clients: int
    seconds: float
    ops: int
    ops_per_s: float
    latency_ms: dict[str, tuple[int, float, float]]  # name -> (count, p50, p99)
    errors: dict[str, int]
    failures: dict[str, int]
    server_cpu_s: float | None
    client_cpu_s: float


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def run_load(
    target: Target,
    users: Sequence[str],
    password: str,
    clients: int,
    seconds: float,
    profile: Profile,
    seed: int = 1,
) -> LoadResult:
    """``clients`` concurrent clients for ``seconds``; client i logs in as users[i % len]."""
    bodies = bodies_for()
    stats = Stats()
    cpu0 = tree_cpu(target.pid)
    rusage0 = resource.getrusage(resource.RUSAGE_SELF)
    start = time.perf_counter()
    deadline = time.monotonic() + seconds
    async with asyncio.TaskGroup() as tg:
        for i in range(clients):
            rng = random.Random(seed * 100_003 + i)
            user = users[i % len(users)]
            tg.create_task(
                client_loop(target, user, password, profile, deadline, rng, stats, bodies)
            )
    elapsed = time.perf_counter() - start
    cpu1 = tree_cpu(target.pid)
    rusage1 = resource.getrusage(resource.RUSAGE_SELF)
    lat = {
        name: (len(v), percentile(v, 0.5) * 1000, percentile(v, 0.99) * 1000)
        for name, v in sorted(stats.latencies.items())
    }
    ops = stats.ops - len(stats.latencies.get("connect", []))
    return LoadResult(
        server=target.name,
        clients=clients,
        seconds=elapsed,
        ops=ops,
        ops_per_s=ops / elapsed,
        latency_ms=lat,
        errors=dict(stats.errors),
        failures=dict(stats.failures),
        server_cpu_s=None if cpu0 is None or cpu1 is None else cpu1 - cpu0,
        client_cpu_s=(rusage1.ru_utime + rusage1.ru_stime) - (rusage0.ru_utime + rusage0.ru_stime),
    )


# --- /proc: memory and CPU of a process tree -------------------------------------------------


def tree_pids(root: int) -> list[int]:
    """``root`` and all its descendants."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry.name}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    out = [root]
    for pid in out:  # grows while walking; bounded by the process table
        out.extend(children.get(pid, ()))
    return out


def tree_cpu(root: int | None) -> float | None:
    """CPU seconds of ``root`` (with its reaped children) and its living descendants."""
    if root is None:
        return None
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in tree_pids(root):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        total += sum(int(x) for x in fields[11:15])  # utime stime cutime cstime
    return total / tick


@dataclass(frozen=True, slots=True)
class Memory:
    processes: int
    rss_kib: int
    pss_kib: int
    fds: int


def _kib(path: str, key: str) -> int:
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(key):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def tree_memory(root: int) -> Memory:
    pids = tree_pids(root)
    rss = pss = fds = 0
    for pid in pids:
        rss += _kib(f"/proc/{pid}/status", "VmRSS:")
        pss += _kib(f"/proc/{pid}/smaps_rollup", "Pss:")
        with contextlib.suppress(OSError):
            fds += len(os.listdir(f"/proc/{pid}/fd"))
    return Memory(len(pids), rss, pss, fds)


# --- idle connections ------------------------------------------------------------------------


@dataclass
class IdleResult:
    server: str
    connections: int
    held: int
    seconds_to_open: float
    before: Memory
    after: Memory
    closed: Memory
    failures: dict[str, int]

    @property
    def rss_kib_per_conn(self) -> float:
        return (self.after.rss_kib - self.before.rss_kib) / max(self.held, 1)

    @property
    def pss_kib_per_conn(self) -> float:
        return (self.after.pss_kib - self.before.pss_kib) / max(self.held, 1)


async def _idle_one(target: Target, user: str, password: str) -> Imap:
    imap = await Imap.open(target)
    try:
        await imap.login(user, password)
        await imap.select()
        imap.tag += 1
        imap.writer.write(b"a%d IDLE\r\n" % imap.tag)
        async with asyncio.timeout(COMMAND_TIMEOUT_S):
            for _ in range(100):
                line = await imap._line()
                if line.startswith(b"+"):
                    return imap
        raise ImapError("no continuation for IDLE")
    except BaseException:
        imap.close()
        raise


async def run_idle(
    target: Target,
    users: Sequence[str],
    password: str,
    connections: int,
    parallel: int = 64,
    settle_s: float = 3.0,
) -> IdleResult:
    """Hold ``connections`` authenticated IDLE connections; server memory before and after."""
    assert target.pid is not None, "idle memory needs the server's pid"
    # Warm up with one batch of parallel logins first, so that the baseline already holds
    # what the password hashing of ``parallel`` concurrent logins leaves behind (argon2id:
    # 19 MiB per hash in progress; the heap keeps it) and every code path has been run.
    warm = await asyncio.gather(
        *(_idle_one(target, users[i % len(users)], password) for i in range(parallel)),
        return_exceptions=True,
    )
    for imap in warm:
        if isinstance(imap, Imap):
            imap.close()
    await asyncio.sleep(settle_s)
    before = tree_memory(target.pid)
    held: list[Imap] = []
    failures: Counter[str] = Counter()
    sem = asyncio.Semaphore(parallel)
    start = time.perf_counter()

    async def one(i: int) -> None:
        async with sem:
            try:
                held.append(await _idle_one(target, users[i % len(users)], password))
            except (OSError, TimeoutError, ImapError, ValueError) as exc:
                failures[f"{type(exc).__name__}: {str(exc)[:80]}"] += 1

    try:
        async with asyncio.TaskGroup() as tg:
            for i in range(connections):
                tg.create_task(one(i))
        opened = time.perf_counter() - start
        await asyncio.sleep(settle_s)
        after = tree_memory(target.pid)
    finally:
        for imap in held:
            with contextlib.suppress(OSError):
                imap.writer.write(b"DONE\r\n")
        await asyncio.sleep(0.5)
        for imap in held:
            imap.close()
    await asyncio.sleep(settle_s)
    closed = tree_memory(target.pid)
    return IdleResult(
        target.name, connections, len(held), opened, before, after, closed, dict(failures)
    )


# --- the big mailbox -------------------------------------------------------------------------


@dataclass
class BigResult:
    server: str
    messages: int
    select_first_ms: float
    fetch_first_ms: float
    select_ms: float
    fetch_ms: float


async def run_big(
    target: Target, user: str, password: str, expect: int, repeats: int = 3
) -> BigResult:
    selects: list[float] = []
    fetches: list[float] = []
    for _ in range(1 + repeats):
        imap = await Imap.open(target)
        try:
            await imap.login(user, password)
            start = time.perf_counter()
            await imap.select()
            selects.append(time.perf_counter() - start)
            if imap.exists != expect:
                raise ImapError(f"big mailbox: {imap.exists} messages, not {expect}")
            start = time.perf_counter()
            reply, lines = await imap.bulk(b"FETCH 1:* (FLAGS)")
            fetches.append(time.perf_counter() - start)
            if not ok(reply) or lines < expect:
                raise ImapError(f"FETCH 1:*: {lines} lines, {reply!r}")
            await imap.command(b"LOGOUT")
        finally:
            imap.close()
    return BigResult(
        target.name,
        expect,
        selects[0] * 1000,
        fetches[0] * 1000,
        statistics.median(selects[1:]) * 1000,
        statistics.median(fetches[1:]) * 1000,
    )


# --- servers we start ourselves --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Sizes:
    clients: tuple[int, ...]
    seconds: float
    runs: int
    users: int
    fill: int
    idle: int
    idle_users: int
    big: int
    big_distinct: int


FULL: Final = Sizes((10, 50), 20.0, 3, 50, 100, 10_000, 100, 100_000, 1000)
QUICK: Final = Sizes((2,), 2.0, 1, 2, 10, 20, 2, 2_000, 100)


def user_names(sizes: Sizes) -> tuple[list[str], list[str], str]:
    return (
        [f"bench{i}" for i in range(sizes.users)],
        [f"idle{i}" for i in range(sizes.idle_users)],
        "big",
    )


def big_messages(distinct: int) -> Iterator[bytes]:
    rng = random.Random(3)
    return (message(rng, n) for n in range(distinct))


class MsgstoreServer:
    """``msgstore serve`` on a fresh data directory, IMAP on two free loopback ports."""

    def __init__(self, root: Path, sizes: Sizes, workers: int | None = None) -> None:
        self.root = root
        self.sizes = sizes
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = dovecot.free_port()
        self.tls_port = dovecot.free_port()
        self.config = root / "msgstore.toml"
        text = (
            "".join(f"[{s}]\nlisten = []\n" for s in ("lmtp", "smtp", "poppassd", "web"))
            + "[pop3]\nlisten = []\ntls_listen = []\n"
        )
        text += (
            f'[imap]\nlisten = "127.0.0.1:{self.port}"\n'
            f'tls_listen = "127.0.0.1:{self.tls_port}"\n'
            f'[store]\ndata_dir = "{root / "data"}"\n'
        )
        text = text.replace("[imap]\n", "[imap]\n" + self._limits_off())
        if workers is not None:
            text += f"[server]\nworkers = {workers}\n"
        self.config.write_text(text)

    @staticmethod
    def _limits_off() -> str:
        """Per-user and per-address connection limits off (the bench holds thousands of
        connections of a few users from 127.0.0.1), where this version has them."""
        from msgstore.config import ImapSection

        keys = ("max_connections_per_user", "max_connections_per_ip")
        return "".join(f"{k} = 0\n" for k in keys if k in ImapSection.model_fields)

    async def prepare(self) -> str:
        """Accounts and the big mailbox, through the store API; returns the stored hash."""
        from msgstore.auth.passwords import hash_password
        from msgstore.config import load_config
        from msgstore.core.ids import UidSet
        from msgstore.core.names import INBOX, MailboxName
        from msgstore.storage.base import NewAccount
        from msgstore.storage.open import open_backend

        stored = hash_password(PASSWORD)
        backend = await open_backend(load_config(self.config))
        try:
            bench, idle, big = user_names(self.sizes)
            for name in [*bench, *idle, big]:
                await backend.create_account(NewAccount(name=name, password_hash=stored))
            account = (await backend.get_account(big)).id
            seed = (await backend.create_mailbox(account, MailboxName("Seed"))).id
            inbox = (await backend.get_mailbox(account, INBOX)).id
            for data in big_messages(self.sizes.big_distinct):
                async with backend.stage(max_octets=1 << 20) as staged:
                    await staged.write(data)
                    await staged.finish()
                    await backend.append(account, seed, staged)
            for _ in range(self.sizes.big // self.sizes.big_distinct):
                await backend.copy(account, seed, UidSet.all(), account, inbox)
        finally:
            await backend.close()
        return stored

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MSGSTORE_")}
        pid_file = self.root / "data" / "run" / "msgstore.pid"
        with (self.root / "serve.log").open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "msgstore.cli", "--config", str(self.config), "serve"],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        deadline = time.monotonic() + 60
        while not pid_file.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"msgstore serve did not start; see {self.root}/serve.log")
            time.sleep(0.05)

    def target(self, tls: bool = False) -> Target:
        assert self.proc is not None
        port = self.tls_port if tls else self.port
        return Target("msgstore", "127.0.0.1", port, tls, self.proc.pid)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)
        self.proc = None


def start_dovecot(root: Path, sizes: Sizes, stored: str) -> dovecot.DovecotServer:
    bench, idle, big = user_names(sizes)
    copies = sizes.big // sizes.big_distinct
    dovecot.write_maildir(root / "mail" / big, big_messages(sizes.big_distinct), copies=copies)
    users = dict.fromkeys([*bench, *idle, big], stored)
    return dovecot.DovecotServer.start(root, users, max_connections=sizes.idle + 100)


# --- reporting -------------------------------------------------------------------------------


def machine() -> str:
    cpu = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = _kib("/proc/meminfo", "MemTotal:") // (1024 * 1024)
    load = os.getloadavg()
    return (
        f"{os.cpu_count()} CPUs ({cpu}), {mem} GiB RAM, Linux {platform.release()}, "
        f"Python {platform.python_version()}; load average at start "
        f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )


def print_load(r: LoadResult, out: Callable[[str], None]) -> None:
    cpu = f"{r.server_cpu_s:.1f}" if r.server_cpu_s is not None else "?"
    out(
        f"{r.server} {r.clients} clients: {r.ops} ops in {r.seconds:.1f} s = "
        f"{r.ops_per_s:,.0f} ops/s; server CPU {cpu} s, load generator CPU {r.client_cpu_s:.1f} s"
    )
    for name, (count, p50, p99) in r.latency_ms.items():
        out(f"    {name:<14} {count:>7}  p50 {p50:8.2f} ms  p99 {p99:8.2f} ms")
    for what, n in {**r.errors, **r.failures}.items():
        out(f"    !! {n} x {what}")


def print_idle(r: IdleResult, out: Callable[[str], None]) -> None:
    out(
        f"{r.server} idle: {r.held}/{r.connections} IDLE connections "
        f"in {r.seconds_to_open:.1f} s; "
        f"{r.before.processes} -> {r.after.processes} processes; "
        f"RSS {r.before.rss_kib:,} -> {r.after.rss_kib:,} KiB "
        f"({r.rss_kib_per_conn:.1f} KiB/conn); "
        f"PSS {r.before.pss_kib:,} -> {r.after.pss_kib:,} KiB "
        f"({r.pss_kib_per_conn:.1f} KiB/conn); after closing: RSS {r.closed.rss_kib:,} KiB, "
        f"{r.closed.processes} processes, {r.before.fds} -> {r.after.fds} -> {r.closed.fds} fds"
    )
    for what, n in r.failures.items():
        out(f"    !! {n} x {what}")


def print_big(r: BigResult, out: Callable[[str], None]) -> None:
    out(
        f"{r.server} {r.messages:,} messages: SELECT {r.select_ms:.1f} ms "
        f"(first {r.select_first_ms:.1f}), FETCH 1:* (FLAGS) {r.fetch_ms:.1f} ms "
        f"(first {r.fetch_first_ms:.1f})"
    )


def summary(loads: list[LoadResult], out: Callable[[str], None]) -> None:
    by: dict[tuple[str, int], list[LoadResult]] = {}
    for r in loads:
        by.setdefault((r.server, r.clients), []).append(r)
    out("median over runs:")
    for (server, clients), rs in by.items():
        rates = sorted(r.ops_per_s for r in rs)
        med = statistics.median(rates)
        runs = ", ".join(f"{x:,.0f}" for x in (r.ops_per_s for r in rs))
        out(f"  {server:<9} {clients:>3} clients: {med:,.0f} ops/s ({runs})")
        names = sorted({n for r in rs for n in r.latency_ms})
        for name in names:
            p50 = statistics.median(r.latency_ms[name][1] for r in rs if name in r.latency_ms)
            p99 = statistics.median(r.latency_ms[name][2] for r in rs if name in r.latency_ms)
            out(f"      {name:<14} p50 {p50:8.2f} ms  p99 {p99:8.2f} ms")


# --- main ------------------------------------------------------------------------------------


async def measure_loads(
    targets: list[tuple[Target, list[str]]],
    sizes: Sizes,
    profile: Profile,
    out: Callable[[str], None],
) -> list[LoadResult]:
    """Runs interleaved (server A then B for each client count, run after run)."""
    results = []
    for run in range(sizes.runs):
        for clients in sizes.clients:
            for target, users in targets:
                r = await run_load(
                    target, users, PASSWORD, clients, sizes.seconds, profile, seed=run + 1
                )
                print_load(r, out)
                results.append(r)
    return results


async def own_servers(args: argparse.Namespace, sizes: Sizes, profile: Profile) -> dict[str, Any]:
    out: Callable[[str], None] = lambda s: print(s, flush=True)  # noqa: E731
    root = Path(tempfile.mkdtemp(prefix="msgstore-bench-imap-"))
    # Dovecot's auth and mail processes (other users) must look inside.
    os.chmod(root, 0o755)  # noqa: S103
    report: dict[str, Any] = {"machine": machine(), "sizes": asdict(sizes)}
    (root / "msgstore").mkdir()
    ms = MsgstoreServer(root / "msgstore", sizes, args.workers)
    dv: dovecot.DovecotServer | None = None
    bench, idle, big = user_names(sizes)
    try:
        t0 = time.perf_counter()
        stored = await ms.prepare()
        out(
            f"msgstore: accounts and {sizes.big:,}-message mailbox "
            f"in {time.perf_counter() - t0:.1f} s"
        )
        ms.start()
        targets = [(ms.target(args.tls), bench)]
        if args.compare_dovecot:
            t0 = time.perf_counter()
            dv = start_dovecot(root / "dovecot", sizes, stored)
            out(f"dovecot: Maildirs written and started in {time.perf_counter() - t0:.1f} s")
            targets.append((Target("dovecot", "127.0.0.1", dv.port, False, dv.pid), bench))
        for target, users in targets:
            t0 = time.perf_counter()
            n = await fill_users(target, users, PASSWORD, sizes.fill)
            out(f"{target.name}: {n} messages APPENDed in {time.perf_counter() - t0:.1f} s")
        # The big mailbox first, while both servers are fresh (cold = first SELECT after start).
        bigs = []
        for target, _ in targets:
            r = await run_big(target, big, PASSWORD, sizes.big)
            print_big(r, out)
            bigs.append(r)
        report["big"] = [asdict(r) for r in bigs]
        loads = await measure_loads(targets, sizes, profile, out)
        report["load"] = [asdict(r) for r in loads]
        summary(loads, out)
        idles: list[IdleResult] = []
        if sizes.idle:
            # a fresh server process for each idle measurement: a clean baseline
            ms.stop()
            ms.start()
            targets[0] = (ms.target(args.tls), bench)
            if dv is not None:
                dv.stop()
                dv = dovecot.DovecotServer.start(
                    root / "dovecot",
                    dict.fromkeys([*bench, *idle, big], stored),
                    max_connections=sizes.idle + 100,
                )
                targets[1] = (Target("dovecot", "127.0.0.1", dv.port, False, dv.pid), bench)
            for target, _ in targets:
                ri = await run_idle(target, idle, PASSWORD, sizes.idle)
                print_idle(ri, out)
                idles.append(ri)
        report["idle"] = [
            {
                **asdict(r),
                "rss_kib_per_conn": r.rss_kib_per_conn,
                "pss_kib_per_conn": r.pss_kib_per_conn,
            }
            for r in idles
        ]
        report["load_average_at_end"] = os.getloadavg()
        return report
    finally:
        ms.stop()
        if dv is not None:
            dv.stop()
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
        else:
            out(f"kept {root}")


async def external(args: argparse.Namespace, sizes: Sizes, profile: Profile) -> dict[str, Any]:
    out: Callable[[str], None] = lambda s: print(s, flush=True)  # noqa: E731
    target = Target(f"{args.host}:{args.port}", args.host, args.port, args.tls, args.pid)
    if "{n}" in args.user:
        users = [args.user.replace("{n}", str(i)) for i in range(max(sizes.clients))]
    else:
        users = [args.user]
    report: dict[str, Any] = {"machine": machine()}
    if sizes.fill:
        await fill_users(target, users, args.password, sizes.fill)
    loads = await measure_loads([(target, users)], sizes, profile, out)
    summary(loads, out)
    report["load"] = [asdict(r) for r in loads]
    if args.big_user:
        r = await run_big(target, args.big_user, args.password, sizes.big)
        print_big(r, out)
        report["big"] = [asdict(r)]
    if args.pid and sizes.idle:
        ri = await run_idle(target, users, args.password, sizes.idle)
        print_idle(ri, out)
        report["idle"] = [asdict(ri)]
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (checks the bench)")
    parser.add_argument("--compare-dovecot", action="store_true")
    parser.add_argument("--clients", help="comma-separated client counts (default 10,50)")
    parser.add_argument("--duration", type=float, help="seconds per load run (default 20)")
    parser.add_argument("--runs", type=int, help="load runs per client count (default 3)")
    parser.add_argument("--mix", default=DEFAULT_MIX, help=f"default {DEFAULT_MIX}")
    parser.add_argument("--session-ops", type=int, default=50)
    parser.add_argument("--fill", type=int, help="messages per user INBOX (default 100)")
    parser.add_argument("--idle", type=int, help="IDLE connections held (default 10000; 0: skip)")
    parser.add_argument("--big", type=int, help="messages in the big mailbox (default 100000)")
    parser.add_argument("--workers", type=int, help="msgstore: [server] workers (0: per CPU)")
    parser.add_argument("--tls", action="store_true", help="implicit TLS (msgstore/external)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, help="an external server instead of our own")
    parser.add_argument("--user", help="external: user name, '{n}' = client number")
    parser.add_argument("--password")
    parser.add_argument("--pid", type=int, help="external: server pid, for memory and CPU")
    parser.add_argument("--big-user", help="external: user whose INBOX is the big mailbox")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args(argv)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        parser.error("loopback only: this benchmark sends load to 127.0.0.1")
    base = QUICK if args.quick else FULL
    sizes = Sizes(
        clients=tuple(int(c) for c in args.clients.split(",")) if args.clients else base.clients,
        seconds=args.duration if args.duration is not None else base.seconds,
        runs=args.runs if args.runs is not None else base.runs,
        users=base.users,
        fill=args.fill if args.fill is not None else base.fill,
        idle=args.idle if args.idle is not None else base.idle,
        idle_users=base.idle_users,
        big=args.big if args.big is not None else base.big,
        big_distinct=min(base.big_distinct, args.big or base.big_distinct),
    )
    sizes = Sizes(**{**asdict(sizes), "users": max(sizes.users, *sizes.clients)})
    profile = Profile(Profile.parse_mix(args.mix), session_ops=args.session_ops, fill=sizes.fill)
    if args.compare_dovecot and not dovecot.available():
        parser.error("--compare-dovecot needs dovecot-imapd (apt-get install -y dovecot-imapd)")
    soft, _ = raise_nofile()
    if soft < sizes.idle + 200:
        print(f"warning: open-files limit {soft} < {sizes.idle + 200}", file=sys.stderr)
    if args.port is not None:
        if not args.user or args.password is None:
            parser.error("--port needs --user and --password")
        report = asyncio.run(external(args, sizes, profile))
    else:
        report = asyncio.run(own_servers(args, sizes, profile))
    if args.json:
        args.json.write_text(json.dumps(report, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

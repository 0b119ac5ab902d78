"""Store benchmark: the numbers behind docs/benchmarks.md.

    python -m bench.store [--quick] [--data DIR] [--keep]

Measures, through the public Backend interface only (the way the servers use it):

- append: 10 KB messages, each durable (staged file fsynced, linked, directory fsynced, index
  committed with synchronous=FULL) -- one writer into one mailbox, and one writer per
  account for several accounts at once (what LMTP delivery to many users does), and several
  writers into one mailbox (the group commit case); the median of a few rounds, as the disk
  is noisy;
- snapshot: SELECT of a 100,000-message mailbox (``Backend.snapshot``);
- fetch_meta: FLAGS, ENVELOPE and BODYSTRUCTURE of all 100,000 messages (``FETCH 1:*``);
- fan-out: one message delivered to 1,000 accounts (staged once, appended to each), one
  append at a time and 16 at a time.

The big mailbox is built through the public API too: 1,000 distinct messages are appended to
a seed mailbox, then the seed is COPYed into the big mailbox until it holds 100,000 (a copy
hard-links the files and commits once per call, so building takes seconds, not minutes).

``--quick`` runs everything at a tenth of the size, to check the benchmark itself.
The functions below are also run at a tiny size by tests/storage/test_bench_smoke.py.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import platform
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from msgstore.config import load_config
from msgstore.core.ids import AccountId, MailboxId, UidSet
from msgstore.core.names import INBOX, MailboxName
from msgstore.storage.base import Backend, NewAccount, StagedMessage, Want
from msgstore.storage.open import open_backend

MESSAGE_OCTETS: Final = 10_000
#: Stored as-is; the benchmark never logs in.
PASSWORD_HASH: Final = "$argon2id$v=19$m=65536,t=3,p=4$YmVuY2hzYWx0$YmVuY2hiZW5jaGJlbmNo"  # noqa: S105
MAX_OCTETS: Final = 1 << 20
FETCH_WANT: Final = Want.FLAGS | Want.ENVELOPE | Want.BODYSTRUCTURE
_WORDS: Final = (
    "the",
    "quick",
    "brown",
    "fox",
    "jumps",
    "over",
    "lazy",
    "dog",
    "mail",
    "store",
    "index",
    "message",
    "fetch",
    "select",
    "envelope",
    "structure",
    "quota",
    "append",
    "durable",
    "commit",
)


@dataclass(frozen=True, slots=True)
class Sizes:
    appends: int  # one writer, one mailbox
    parallel_accounts: int  # writers in parallel, one account each
    parallel_appends: int  # per writer
    seed_messages: int  # distinct messages copied into the big mailbox
    big_mailbox: int
    fanout_accounts: int
    repeats: int  # timed repetitions of snapshot and fetch_meta (median reported)
    rounds: int  # timed rounds of each append measurement (median reported)


FULL: Final = Sizes(2000, 8, 250, 1000, 100_000, 1000, 5, 3)
QUICK: Final = Sizes(200, 4, 50, 100, 10_000, 100, 3, 1)
#: Appends in flight in the concurrent fan-out (as a delivery agent with a worker pool would).
FANOUT_AT_ONCE: Final = 16


@dataclass(frozen=True, slots=True)
class Result:
    name: str
    value: float
    unit: str
    target: str
    met: bool | None  # None: no target
    note: str = ""

    def line(self) -> str:
        verdict = {True: "ok", False: "SHORTFALL", None: ""}[self.met]
        return f"{self.name:<50} {self.value:>10,.1f} {self.unit:<6} {self.target:<12} {verdict}"


# --- messages --------------------------------------------------------------------------------


def message(rng: random.Random, n: int, octets: int = MESSAGE_OCTETS) -> bytes:
    """A plausible message of about ``octets``: multipart/alternative every third message so
    BODYSTRUCTURE is not always trivial."""
    when = dt.datetime(2025, 1, 1, tzinfo=dt.UTC) + dt.timedelta(minutes=n)
    head = (
        f"From: Sender {n % 97} <sender{n % 97}@example.org>\r\n"
        f"To: Bench <bench@example.org>\r\n"
        f"Subject: benchmark message {n} {' '.join(rng.choices(_WORDS, k=5))}\r\n"
        f"Date: {when.strftime('%a, %d %b %Y %H:%M:%S +0000')}\r\n"
        f"Message-ID: <bench.{n}.{rng.getrandbits(40):x}@example.org>\r\n"
        f"MIME-Version: 1.0\r\n"
    )
    text_octets = max(octets - len(head) - 400, 100)
    lines = []
    size = 0
    while size < text_octets:
        line = " ".join(rng.choices(_WORDS, k=12)) + "\r\n"
        lines.append(line)
        size += len(line)
    text = "".join(lines)
    if n % 3:
        body = f"Content-Type: text/plain; charset=us-ascii\r\n\r\n{text}"
    else:
        half = text[: len(text) // 2]
        body = (
            'Content-Type: multipart/alternative; boundary="b1"\r\n\r\n'
            "--b1\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"
            f"{half}\r\n"
            "--b1\r\nContent-Type: text/html; charset=us-ascii\r\n\r\n"
            f"<p>{half}</p>\r\n--b1--\r\n"
        )
    return (head + body).encode("ascii")


async def add(backend: Backend, account: AccountId, mailbox: MailboxId, data: bytes) -> None:
    async with backend.stage(max_octets=MAX_OCTETS) as staged:
        await staged.write(data)
        await staged.finish()
        await backend.append(account, mailbox, staged)


async def make_accounts(backend: Backend, prefix: str, count: int) -> list[AccountId]:
    out = []
    for i in range(count):
        spec = NewAccount(name=f"{prefix}{i:05d}", password_hash=PASSWORD_HASH)
        out.append((await backend.create_account(spec)).id)
    return out


async def inbox(backend: Backend, account: AccountId) -> MailboxId:
    return (await backend.get_mailbox(account, INBOX)).id


# --- measurements ----------------------------------------------------------------------------


def _rate(name: str, rates: list[float]) -> Result:
    """The median of several rounds, with the spread in the note (the disk is noisy)."""
    rate = statistics.median(rates)
    spread = f"{len(rates)} rounds: " + ", ".join(f"{r:,.0f}" for r in rates)
    return Result(name, rate, "msg/s", ">= 1,000", rate >= 1000, spread)


async def bench_append(backend: Backend, count: int, rounds: int) -> Result:
    """One writer appends ``count`` messages to one INBOX, each durable before the next."""
    (account,) = await make_accounts(backend, "append", 1)
    box = await inbox(backend, account)
    rng = random.Random(1)
    rates = []
    for _ in range(rounds):
        bodies = [message(rng, n) for n in range(count)]
        start = time.perf_counter()
        for data in bodies:
            await add(backend, account, box, data)
        rates.append(count / (time.perf_counter() - start))
    return _rate("append 10 KB, 1 writer", rates)


async def bench_append_parallel(backend: Backend, writers: int, each: int, rounds: int) -> Result:
    """``writers`` accounts, one writer each, appending at the same time."""
    accounts = await make_accounts(backend, f"parallel{writers}-", writers)
    boxes = [await inbox(backend, a) for a in accounts]
    rng = random.Random(2)
    rates = []
    for _ in range(rounds):
        bodies = [[message(rng, w * each + n) for n in range(each)] for w in range(writers)]

        async def writer(w: int, bodies: list[list[bytes]] = bodies) -> None:
            for data in bodies[w]:
                await add(backend, accounts[w], boxes[w], data)

        start = time.perf_counter()
        await asyncio.gather(*(writer(w) for w in range(writers)))
        rates.append(writers * each / (time.perf_counter() - start))
    return _rate(f"append 10 KB, {writers} writers", rates)


async def bench_append_one_account(
    backend: Backend, writers: int, each: int, rounds: int
) -> Result:
    """``writers`` writers appending to the same INBOX at once (LMTP delivering several
    messages to one user, parallel APPENDs): the index's group commit takes them together."""
    (account,) = await make_accounts(backend, f"shared{writers}-", 1)
    box = await inbox(backend, account)
    rng = random.Random(5)
    rates = []
    for _ in range(rounds):
        bodies = [[message(rng, w * each + n) for n in range(each)] for w in range(writers)]

        async def writer(w: int, bodies: list[list[bytes]] = bodies) -> None:
            for data in bodies[w]:
                await add(backend, account, box, data)

        start = time.perf_counter()
        await asyncio.gather(*(writer(w) for w in range(writers)))
        rates.append(writers * each / (time.perf_counter() - start))
    return _rate(f"append 10 KB, {writers} writers, 1 account", rates)


async def build_big_mailbox(
    backend: Backend, total: int, distinct: int
) -> tuple[AccountId, MailboxId, float]:
    """A mailbox of ``total`` messages; returns the account, the mailbox and seconds taken."""
    assert total % distinct == 0, "total must be a multiple of distinct"
    start = time.perf_counter()
    (account,) = await make_accounts(backend, "big", 1)
    seed = (await backend.create_mailbox(account, MailboxName("Seed"))).id
    big = (await backend.create_mailbox(account, MailboxName("Big"))).id
    rng = random.Random(3)
    for n in range(distinct):
        await add(backend, account, seed, message(rng, n))
    for _ in range(total // distinct):
        await backend.copy(account, seed, UidSet.all(), account, big)
    return account, big, time.perf_counter() - start


async def _timed(fn: Callable[[], Awaitable[object]], repeats: int) -> tuple[float, float]:
    """(first run, median of the following ``repeats``) in seconds."""
    start = time.perf_counter()
    await fn()
    first = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        await fn()
        times.append(time.perf_counter() - start)
    return first, statistics.median(times)


async def bench_snapshot(
    backend: Backend, account: AccountId, mailbox: MailboxId, expect: int, repeats: int
) -> Result:
    async def select() -> None:
        snap = await backend.snapshot(account, mailbox)
        assert len(snap.uids) == expect, f"snapshot has {len(snap.uids)} messages, not {expect}"

    first, median = await _timed(select, repeats)
    ms = median * 1000
    return Result(
        f"snapshot (SELECT) of {expect:,} messages",
        ms,
        "ms",
        "<= 150 ms",
        ms <= 150,
        f"first call {first * 1000:.1f} ms",
    )


async def bench_fetch_meta(
    backend: Backend, account: AccountId, mailbox: MailboxId, expect: int, repeats: int
) -> Result:
    async def fetch() -> None:
        metas = await backend.fetch_meta(account, mailbox, UidSet.all(), FETCH_WANT)
        assert len(metas) == expect, f"fetch_meta returned {len(metas)}, not {expect}"
        assert metas[-1].envelope, "ENVELOPE missing"
        assert metas[-1].bodystructure, "BODYSTRUCTURE missing"

    first, median = await _timed(fetch, repeats)
    ms = median * 1000
    return Result(
        f"fetch_meta FLAGS ENVELOPE BODYSTRUCTURE x{expect:,}",
        ms,
        "ms",
        "<= 1,000 ms",
        ms <= 1000,
        f"first call {first * 1000:.0f} ms",
    )


async def bench_fanout(
    backend: Backend, accounts: list[AccountId], data_dir: Path, *, at_once: int = 1
) -> Result:
    """Stage once, append to every account's INBOX, ``at_once`` appends in flight; checks
    that the recipients share one file."""
    boxes = [await inbox(backend, a) for a in accounts]
    data = message(random.Random(4), 0)
    gate = asyncio.Semaphore(at_once)

    async def deliver(staged: StagedMessage, account: AccountId, box: MailboxId) -> None:
        async with gate:
            await backend.append(account, box, staged)

    start = time.perf_counter()
    async with backend.stage(max_octets=MAX_OCTETS) as staged:
        await staged.write(data)
        await staged.finish()
        await asyncio.gather(
            *(deliver(staged, a, b) for a, b in zip(accounts, boxes, strict=True))
        )
    seconds = time.perf_counter() - start
    links = _link_count(data_dir, accounts[0], boxes[0])
    how = "one at a time" if at_once == 1 else f"{at_once} at a time"
    return Result(
        f"fan-out to {len(accounts):,} accounts, {how}",
        seconds,
        "s",
        "",
        None,
        f"{len(accounts) / seconds:,.0f} recipients/s; first file has {links} links",
    )


def _link_count(data_dir: Path, account: AccountId, mailbox: MailboxId) -> int:
    for tree in (data_dir / "users").glob(f"*/{int(account)}"):
        for path in (tree / "mail" / str(int(mailbox))).iterdir():
            return path.stat().st_nlink
    return 0


# --- running ---------------------------------------------------------------------------------


async def run(data_dir: Path, sizes: Sizes, report: Callable[[str], None] = print) -> list[Result]:
    backend = await open_backend(load_config(data_dir=data_dir))
    results: list[Result] = []

    def done(result: Result) -> None:
        results.append(result)
        report(result.line() + (f"   ({result.note})" if result.note else ""))

    try:
        done(await bench_append(backend, sizes.appends, sizes.rounds))
        done(
            await bench_append_parallel(
                backend, sizes.parallel_accounts, sizes.parallel_appends, sizes.rounds
            )
        )
        done(
            await bench_append_one_account(
                backend, sizes.parallel_accounts, sizes.parallel_appends, sizes.rounds
            )
        )
        account, big, seconds = await build_big_mailbox(
            backend, sizes.big_mailbox, sizes.seed_messages
        )
        report(f"(built a {sizes.big_mailbox:,}-message mailbox in {seconds:.1f} s)")
        done(await bench_snapshot(backend, account, big, sizes.big_mailbox, sizes.repeats))
        done(await bench_fetch_meta(backend, account, big, sizes.big_mailbox, sizes.repeats))
        for at_once in (1, FANOUT_AT_ONCE):
            fanout = await make_accounts(backend, f"fan{at_once}-", sizes.fanout_accounts)
            done(await bench_fanout(backend, fanout, data_dir, at_once=at_once))
    finally:
        await backend.close()
    return results


def machine() -> str:
    cpu = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{os.cpu_count()} CPUs ({cpu}), Python {platform.python_version()}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.store", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a tenth of the sizes")
    parser.add_argument("--data", type=Path, help="data directory (default: a fresh temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the data directory")
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    data_dir = args.data or Path(tempfile.mkdtemp(prefix="msgstore-bench-")) / "data"
    print(f"machine: {machine()}")
    print(f"data:    {data_dir}")
    try:
        results = asyncio.run(run(data_dir, sizes))
    finally:
        if not args.keep and args.data is None:
            shutil.rmtree(data_dir.parent, ignore_errors=True)
    missed = [r.name for r in results if r.met is False]
    print(f"targets missed: {', '.join(missed)}" if missed else "all targets met")
    return 0


if __name__ == "__main__":
    sys.exit(main())

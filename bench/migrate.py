"""Migration benchmark: messages/s for a 50,000-message Maildir (docs/benchmarks.md).

    python -m bench.migrate [--messages N] [--folders F] [--data DIR] [--keep] [--progress]

A Maildir++ tree is written as Dovecot would leave it (``cur/`` files named
``<time>.M<n>P<pid>.bench,S=<size>:2,<flags>`` with LF line ends, a ``dovecot-uidlist`` and a
``dovecot-keywords``; about 4 KB per message, all different, spread over INBOX and F-1
subfolders), then migrated into a fresh store through the engine ``msgstore migrate maildir``
uses (stage + append per message: CRLF normalisation, fsync, one parse, the index commit).
Two runs are timed: the migration, and a second run that finds everything already present
(the cost of "safe to run twice"). ``--progress`` shows the per-mailbox bars on stderr; either
way the reporter's count is checked against the number of messages written.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from msgstore.auth.passwords import hash_password
from msgstore.config import load_config
from msgstore.management.operation import ManagementContext
from msgstore.migrate import Job, Options, Quiet, Reporter, Source, Summary, run_jobs
from msgstore.migrate.maildir import open_maildir
from msgstore.storage.local import LocalBackend

WORDS = ("alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa")
FLAGS = ("", "S", "RS", "FS", "Sa", "")


def message(i: int, rng: random.Random) -> bytes:
    body = "\n".join(" ".join(rng.choices(WORDS, k=12)) for _ in range(50))
    return (
        f"From: Sender {i} <s{i}@example.org>\nTo: user@example.org\n"
        f"Subject: message {i}\nMessage-ID: <{i}.bench@example.org>\n"
        f"Date: Mon, 1 Jan 2024 00:00:00 +0000\n\n{body}\n"
    ).encode()


def write_maildir(root: Path, count: int, folders: int) -> None:
    rng = random.Random(50)
    dirs = [root] + [root / f".Folder{n}" for n in range(1, folders)]
    per: dict[Path, list[str]] = {d: [] for d in dirs}
    for d in dirs:
        for sub in ("cur", "new", "tmp"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        (d / "dovecot-keywords").write_text("0 $Label1\n")
    for i in range(count):
        d = dirs[i % len(dirs)]
        data = message(i, rng)
        base = f"{1_700_000_000 + i}.M{i}P4242.bench,S={len(data)}"
        (d / "cur" / f"{base}:2,{FLAGS[i % len(FLAGS)]}").write_bytes(data)
        per[d].append(base)
    for n, (d, bases) in enumerate(per.items()):
        lines = [f"3 V{1_600_000_000 + n} N{len(bases) + 1} Gbench"]
        lines += [f"{uid} :{base}" for uid, base in enumerate(bases, 1)]
        (d / "dovecot-uidlist").write_text("\n".join(lines) + "\n")


class BarReporter:
    """A rich progress bar per mailbox (``--progress``: what the CLI draws)."""

    def __init__(self, progress: Any) -> None:
        self.progress = progress
        self.task: Any = None

    def folder(self, account: str, name: str, total: int | None) -> None:
        self.task = self.progress.add_task(f"{account}: {name}", total=total)

    def advance(self, octets: int) -> None:
        if self.task is not None:
            self.progress.advance(self.task, 1)

    def done(self) -> None:
        if self.task is not None:
            self.progress.update(self.task, total=self.progress.tasks[-1].completed)
            self.task = None


class Counting:
    """Wraps a reporter and counts what it was told (the bar must end where the work did)."""

    def __init__(self, inner: Reporter) -> None:
        self.inner = inner
        self.totals = 0
        self.advanced = 0

    def folder(self, account: str, name: str, total: int | None) -> None:
        self.totals += total or 0
        self.inner.folder(account, name, total)

    def advance(self, octets: int) -> None:
        self.advanced += 1
        self.inner.advance(octets)

    def done(self) -> None:
        self.inner.done()


async def migrate_once(data: Path, maildir: Path, reporter: Reporter) -> Summary:
    config = load_config(None, data_dir=data)
    backend = await LocalBackend.open(data)
    try:
        ctx = ManagementContext(backend=backend, config=config, hash_password=hash_password)

        async def source() -> Source:
            return await asyncio.to_thread(open_maildir, maildir)

        return await run_jobs(
            ctx,
            [Job("bench", source, password_hash="{PLAIN}unused")],  # noqa: S106
            options=Options(max_octets=config.store.max_message_size),
            create=True,
            reporter=reporter,
        )
    finally:
        await backend.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.migrate", description=__doc__)
    parser.add_argument("--messages", type=int, default=50_000)
    parser.add_argument("--folders", type=int, default=5)
    parser.add_argument("--data", type=Path, help="work directory (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("--progress", action="store_true", help="show the progress bars")
    args = parser.parse_args(argv)
    work = args.data or Path(tempfile.mkdtemp(prefix="msgstore-bench-migrate-"))
    maildir, data = work / "Maildir", work / "data"
    try:
        start = time.perf_counter()
        write_maildir(maildir, args.messages, args.folders)
        print(
            f"migrate maildir: {args.messages} messages in {args.folders} folders "
            f"(written in {time.perf_counter() - start:.1f} s), work {work}",
            flush=True,
        )
        for label in ("migrate", "second run (all present)"):
            if args.progress:
                from rich.progress import Progress

                with Progress(transient=False) as bars:
                    counting = Counting(BarReporter(bars))
                    start = time.perf_counter()
                    summary = asyncio.run(migrate_once(data, maildir, counting))
            else:
                counting = Counting(Quiet())
                start = time.perf_counter()
                summary = asyncio.run(migrate_once(data, maildir, counting))
            seconds = time.perf_counter() - start
            assert counting.totals == counting.advanced == args.messages, (
                counting.totals,
                counting.advanced,
            )
            print(
                f"{label:26} {seconds:7.2f} s  {args.messages / seconds:8.0f} messages/s  "
                f"copied {summary.messages}, present {summary.duplicates}, "
                f"UIDs kept {summary.uids_kept}, problems {len(summary.problems)}",
                flush=True,
            )
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

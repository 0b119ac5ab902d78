"""Reconstruct benchmark: seconds for a 100,000-message account (docs/benchmarks.md).

    python -m bench.reconstruct [--messages N] [--data DIR] [--keep] [--progress]

An account is created through the Backend interface; its INBOX is then filled by writing
N message files (about 4 KB each, all different) straight into ``mail/<inbox-id>/`` -- what a
tree restored from a backup without its index looks like -- and three runs are timed:

1. ``rebuild``: reconstruct with index.db deleted: every file read, hashed and parsed
   (``mime.parse_message``), a new index written, fsynced and renamed into place;
2. ``check (clean)``: reconstruct --check over the healthy result: every row salvaged, every
   file read and hashed, nothing written;
3. ``repair, 1% damage``: 1% of the files removed and 1% of new files added, then a repair
   that keeps every other row as it is.

Each run's progress callback is recorded and checked: it must end at (files, files), the number
of message files on disk; ``--progress`` also draws the bar the CLI draws.
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

from msgstore.core.names import INBOX
from msgstore.reconstruct import reconstruct
from msgstore.storage.base import NewAccount
from msgstore.storage.local import LocalBackend

WORDS = ("alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa")


def message(i: int, rng: random.Random) -> bytes:
    body = "\r\n".join(" ".join(rng.choices(WORDS, k=12)) for _ in range(50))
    return (
        f"From: Sender {i} <s{i}@example.org>\r\nTo: user@example.org\r\n"
        f"Subject: message {i}\r\nMessage-ID: <{i}.bench@example.org>\r\n"
        f"Date: Mon, 1 Jan 2024 00:00:00 +0000\r\n\r\n{body}\r\n"
    ).encode()


async def run(data: Path, count: int, *, bars: bool = False) -> dict[str, float]:
    rng = random.Random(100)
    backend = await LocalBackend.open(data)
    try:
        spec = NewAccount(name="bench", password_hash="{PLAIN}unused")  # noqa: S106
        info = await backend.create_account(spec)
        inbox = (await backend.get_mailbox(info.id, INBOX)).id
    finally:
        await backend.close()
    (tree,) = (data / "users").glob(f"*/{int(info.id)}")
    box_dir = tree / "mail" / str(inbox)
    box_dir.mkdir(exist_ok=True)
    for uid in range(1, count + 1):
        (box_dir / str(uid)).write_bytes(message(uid, rng))
    (tree / "index.db").unlink()
    results: dict[str, float] = {}

    async def timed(label: str, *, apply: bool) -> None:
        backend = await LocalBackend.open(data)
        try:
            seen: list[tuple[int, int]] = []
            progress = None
            if bars:
                from rich.progress import Progress

                progress = Progress(transient=True)
                progress.start()
                task = progress.add_task(label, total=None)

            def record(done: int, total: int) -> None:
                seen.append((done, total))
                if progress is not None:
                    progress.update(task, completed=done, total=total)

            start = time.perf_counter()
            try:
                (report,) = await reconstruct(
                    backend, ["bench"], apply=apply, progress=lambda _: record
                )
            finally:
                if progress is not None:
                    progress.stop()
            results[label] = time.perf_counter() - start
            files_now = sum(1 for p in (tree / "mail").glob("*/*") if p.name.isdigit())
            assert seen, "no progress reported"
            assert seen[-1][0] == seen[-1][1], seen[-1]
            print(
                f"{label:22} {results[label]:7.2f} s  {report.messages} messages, "
                f"{len(report.discrepancies)} discrepancies; progress ended at "
                f"{seen[-1][0]}/{seen[-1][1]} (files on disk now: {files_now})",
                flush=True,
            )
        finally:
            await backend.close()

    await timed("rebuild", apply=True)
    await timed("check (clean)", apply=False)
    # The rebuild gave INBOX a new UIDVALIDITY, hence a new mailbox id and directory.
    (box_dir,) = (p for p in (tree / "mail").iterdir() if p.is_dir())
    damaged = max(1, count // 100)
    for uid in rng.sample(range(1, count + 1), damaged):  # the rebuild kept the file UIDs
        (box_dir / str(uid)).unlink()
    for extra in range(damaged):
        (box_dir / str(count + 10 + extra)).write_bytes(message(count + 10 + extra, rng))
    await timed("repair, 1% damage", apply=True)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.reconstruct", description=__doc__)
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--data", type=Path, help="data directory (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the data directory")
    parser.add_argument("--progress", action="store_true", help="draw the progress bar")
    args = parser.parse_args(argv)
    data = args.data or Path(tempfile.mkdtemp(prefix="msgstore-bench-reconstruct-"))
    try:
        print(f"reconstruct, {args.messages} messages, data {data}", flush=True)
        asyncio.run(run(data, args.messages, bars=args.progress))
    finally:
        if not args.keep:
            shutil.rmtree(data, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The migration engine in-process: the progress it reports matches what it did, a dry run
writes nothing, and UIDs are kept or honestly renumbered."""

from __future__ import annotations

import asyncio
from pathlib import Path

from msgstore.auth.passwords import hash_password
from msgstore.config import load_config
from msgstore.management.operation import ManagementContext
from msgstore.migrate import Job, Options, Source, Summary, run_jobs
from msgstore.migrate.maildir import open_maildir
from msgstore.storage.local import LocalBackend
from tests.migrate.conftest import read_store


class Recorder:
    def __init__(self) -> None:
        self.folders: list[tuple[str, int | None]] = []
        self.advanced: list[int] = []

    def folder(self, account: str, name: str, total: int | None) -> None:
        self.folders.append((name, total))
        self.advanced.append(0)

    def advance(self, octets: int) -> None:
        self.advanced[-1] += 1

    def done(self) -> None:
        pass


def _maildir(root: Path) -> None:
    for sub in ("cur", "new", "tmp"):
        (root / sub).mkdir(parents=True)
    (root / "dovecot-uidlist").write_text(
        "3 V1234567 N20 Gabc\n5 :1700000000.a.host\n9 P0042 :1700000000.b.host\n"
    )
    (root / "cur" / "1700000000.a.host:2,S").write_bytes(b"Subject: a\n\na\n")
    (root / "cur" / "1700000000.b.host:2,RF").write_bytes(b"Subject: b\n\nb\n")
    (root / "new" / "1700000000.c.host").write_bytes(b"Subject: c\n\nc\n")


def _run(data: Path, root: Path, *, dry_run: bool, reporter: Recorder) -> Summary:
    async def main() -> Summary:
        config = load_config(None, data_dir=data)
        backend = await LocalBackend.open(data)
        try:
            ctx = ManagementContext(backend=backend, config=config, hash_password=hash_password)

            async def source() -> Source:
                return open_maildir(root)

            return await run_jobs(
                ctx,
                [Job("gina", source, password_hash="{PLAIN}pw")],
                options=Options(dry_run=dry_run),
                create=True,
                reporter=reporter,
            )
        finally:
            await backend.close()

    return asyncio.run(main())


def test_dry_run_then_real_run(tmp_path: Path) -> None:
    root = tmp_path / "Maildir"
    _maildir(root)
    data = tmp_path / "data"
    dry = Recorder()
    summary = _run(data, root, dry_run=True, reporter=dry)
    assert (summary.messages, summary.uids_kept, summary.failed) == (3, 2, False), summary
    assert any("would create" in n for n in summary.notes)
    assert dry.folders == [("INBOX", 3)]
    assert dry.advanced == [3]
    real = Recorder()
    summary = _run(data, root, dry_run=False, reporter=real)
    assert (summary.messages, summary.uids_kept, summary.failed) == (3, 2, False), summary
    assert real.advanced == [3]
    box = read_store(data, "gina")["INBOX"]
    assert box.uidvalidity == 1234567
    assert sorted(box.messages) == [5, 9, 20]  # kept, kept, after the source's UIDNEXT
    assert box.messages[9].uidl == "0042"  # the UIDL Dovecot recorded
    assert box.messages[5].uidl == f"{5:08X}{1234567:08X}"
    assert set(box.messages[9].flags) == {"\\Answered", "\\Flagged"}
    assert box.uidnext == 21

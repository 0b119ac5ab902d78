"""``account export`` / ``account restore``: consistent archives while mail arrives, and
archives that try to escape (``..``, absolute paths, links, devices) refused before any
write."""

from __future__ import annotations

import asyncio
import io
import sqlite3  # noqa: TID251 (reads the archive's copy of index.db, not the store)
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

from msgstore.api import Store
from msgstore.core.errors import ErrorKind, StoreError
from tests.management.conftest import deliver

#: A child process that delivers (and expunges every third message of) an account in a loop
#: until killed: another process writing the index while the test exports.
WRITER = r"""
import asyncio, sys
from msgstore.api import Store
from msgstore.core.ids import UidSet
from msgstore.core.names import INBOX
from msgstore.delivery.pipeline import DeliveryPipeline

async def main(data, user):
    async with Store.open(data) as store:
        pipeline = DeliveryPipeline.from_config(store.backend, store.config)
        account = await store.backend.get_account(user)
        inbox = await store.backend.get_mailbox(account.id, INBOX)
        n = 0
        print("ready", flush=True)
        while True:
            n += 1
            data_ = f"Subject: loop {n}\r\n\r\n{'x' * (n % 700)}\r\n".encode()
            async def one(d=data_):
                yield d
            await pipeline.deliver_message([user], one())
            if n % 3 == 0:
                uids = (await store.backend.snapshot(account.id, inbox.id)).uids
                if uids:
                    await store.backend.expunge(
                        account.id, inbox.id, UidSet.from_uids([uids[0]]), only_deleted=False
                    )

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


def archive_rows(tar_path: Path, tmp: Path) -> tuple[set[str], set[str]]:
    """(mail/<mailbox>/<uid> of every row in the archive's index, message members)."""
    with tarfile.open(tar_path) as tar:
        members = {m.name for m in tar.getmembers() if m.isreg() and m.name.startswith("mail/")}
        index = tar.extractfile("index.db")
        assert index is not None
        copy = tmp / f"{tar_path.name}.index.db"
        copy.write_bytes(index.read())
    conn = sqlite3.connect(copy)
    try:
        rows = {f"mail/{m}/{u}" for m, u in conn.execute("SELECT mailbox_id, uid FROM messages")}
    finally:
        conn.close()
    return rows, members


async def test_export_then_restore_round_trip(store: Store, tmp_path: Path) -> None:
    await store.accounts.add("bob", password="pw")
    await store.accounts.add("carol", password="pw")
    await deliver(store, "bob", count=4)
    await store.mailboxes.create("bob", "Work/2026")
    await store.acl.set("bob", "Work/2026", "carol", "lr")
    seen: list[tuple[str, int, int]] = []
    summary = await store.with_progress(lambda *a: seen.append(a)).accounts.export(
        "bob", tmp_path / "bob.tar"
    )
    assert (summary.account, summary.messages) == ("bob", 4)
    assert seen[-1] == ("export", 4, 4)
    rows, members = archive_rows(tmp_path / "bob.tar", tmp_path)
    assert rows == members
    assert len(rows) == 4
    await store.accounts.add("bob2", password="pw")
    report = await store.accounts.restore("bob2", tmp_path / "bob.tar")
    assert report.messages == 4
    assert report.reconstruct.applied
    boxes = {str(m.name): m.messages for m in await store.mailboxes.list("bob2")}
    assert boxes["INBOX"] == 4
    assert "Work/2026" in boxes
    assert [(e.identifier, e.rights) for e in await store.acl.show("bob2", "Work/2026")] == [
        ("carol", "lr")
    ]
    assert (await store.quotas.show("bob2")).messages_used == 4
    # The source is untouched, and a restore into an account with mail is refused.
    assert (await store.mailboxes.status("bob", "INBOX")).messages == 4
    with pytest.raises(StoreError) as err:
        await store.accounts.restore("bob", tmp_path / "bob.tar")
    assert err.value.kind is ErrorKind.NOT_POSSIBLE


async def test_export_while_another_process_delivers_and_expunges(
    store: Store, tmp_path: Path
) -> None:
    await store.accounts.add("bob", password="pw")
    await deliver(store, "bob", count=5)
    data = store.config.store.data_dir
    child = subprocess.Popen(  # noqa: ASYNC220 (started once; the test then awaits)
        [sys.executable, "-c", WRITER, str(data), "bob"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert child.stdout is not None
        assert (await asyncio.to_thread(child.stdout.readline)).strip() == b"ready"
        counts: list[int] = []
        deadline = time.monotonic() + 30
        # At least four exports, and on until one saw mail arrive (a loaded machine can stall
        # the writer for a while).
        while len(counts) < 4 or len(set(counts)) == 1:
            assert time.monotonic() < deadline, f"no mail arrived during the exports: {counts}"
            await asyncio.sleep(0.3)
            path = tmp_path / f"bob-{len(counts)}.tar"
            summary = await store.accounts.export("bob", path)
            rows, members = archive_rows(path, tmp_path)
            assert rows == members, rows ^ members
            assert len(rows) == summary.messages
            counts.append(summary.messages)
        assert child.poll() is None, child.stderr.read() if child.stderr else ""
    finally:
        child.kill()
        child.communicate()
    assert len(set(counts)) > 1, counts  # mail really was arriving meanwhile


def _tar(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]]) -> Path:
    with tarfile.open(path, "w") as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                tar.addfile(info)
    return path


def _info(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    return info


Members = list[tuple[tarfile.TarInfo, bytes | None]]
BAD_ARCHIVES: dict[str, tuple[Members, str]] = {
    "dotdot": ([(_info("mail/1/../../../../evil"), b"x")], "path with '..'"),
    "absolute": ([(_info("/tmp/evil"), b"x")], "absolute path"),
    "symlink": ([(_info("mail/1/1", tarfile.SYMTYPE, "/etc/passwd"), None)], "link to"),
    "hardlink": ([(_info("mail/1/1", tarfile.LNKTYPE, "../../../etc/passwd"), None)], "link to"),
    "device": ([(_info("mail/1/1", tarfile.CHRTYPE), None)], "device"),
    "fifo": ([(_info("mail/1/1", tarfile.FIFOTYPE), None)], "device or FIFO"),
    "stranger": ([(_info("notes.txt"), b"x")], "not part of a msgstore account archive"),
    "no-index": ([(_info("mail/1/1"), b"Subject: x\r\n\r\nx\r\n")], "no index.db"),
    "bad-index": ([(_info("index.db"), b"not sqlite at all" * 100)], "index.db"),
}


@pytest.mark.parametrize("case", sorted(BAD_ARCHIVES))
async def test_unsafe_or_malformed_archives_change_nothing(
    store: Store, tmp_path: Path, case: str
) -> None:
    members, message = BAD_ARCHIVES[case]
    # A valid index first, so that only the bad member can be the reason.
    await store.accounts.add("donor", password="pw")
    await store.accounts.export("donor", tmp_path / "donor.tar")
    with tarfile.open(tmp_path / "donor.tar") as donor:
        index = donor.extractfile("index.db")
        assert index is not None
        index_bytes = index.read()
    if case not in ("no-index", "bad-index"):
        members = [(_info("index.db"), index_bytes), *members]
    path = _tar(tmp_path / f"{case}.tar", members)
    await store.accounts.add("bob", password="pw")
    before = await store.mailboxes.list("bob")
    with pytest.raises(StoreError) as err:
        await store.accounts.restore("bob", path)
    assert err.value.kind is ErrorKind.PARAMS
    assert message in err.value.public
    assert "\n" not in err.value.public
    assert await store.mailboxes.list("bob") == before
    assert not (tmp_path / "evil").exists()
    tmp_dir = store.config.store.data_dir / "tmp"
    assert not [p for p in tmp_dir.iterdir() if p.name.endswith(".restore")]


async def test_staging_left_by_a_dead_process_is_removed(store: Store, tmp_path: Path) -> None:
    """A crash during export or restore leaves a staging directory in DATA/tmp; the next
    export removes it (its name carries the dead creator's pid)."""
    await store.accounts.add("bob", password="pw")
    dead = subprocess.run(  # noqa: ASYNC221 (a short-lived child, to get a dead pid)
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    tmp_dir = store.config.store.data_dir / "tmp"
    stale = tmp_dir / f"{dead.stdout.strip()}-1-0-abc.export"
    (stale / "mail" / "1").mkdir(parents=True)
    (stale / "mail" / "1" / "1").write_bytes(b"x")
    await store.accounts.export("bob", tmp_path / "bob.tar")
    assert not stale.exists()

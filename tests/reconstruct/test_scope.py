"""``msgstore reconstruct --all``, ``--mailbox`` and the public folder tree, and the index that
is older than its files (a restored backup): recovery moves such files aside instead of
deleting them, and reconstruct adopts them, so nothing restored is lost."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

from msgstore.core.ids import UidSet
from msgstore.core.names import MailboxName
from msgstore.storage.base import Want
from tests.reconstruct.conftest import fill, msgstore, read_all, run
from tests.storage.helpers.store import account_dir, add_message, inbox_of, open_local


def _delete_rows(index: Path, mailbox: int, uids: tuple[int, ...]) -> None:
    import sqlite3  # noqa: TID251 -- this test damages index.db on purpose

    conn = sqlite3.connect(index, isolation_level=None)
    try:
        marks = ",".join("?" * len(uids))
        conn.execute(
            f"DELETE FROM messages WHERE mailbox_id = ? AND uid IN ({marks})",  # noqa: S608
            (mailbox, *uids),
        )
    finally:
        conn.close()


async def _public_with_mail(data: Path) -> tuple[Path, int]:
    backend = await open_local(data)
    try:
        public = await backend.public_account()
        box = await backend.create_mailbox(public.id, MailboxName("Lists"))
        for i in range(4):
            await add_message(backend, public.id, box.id, f"Subject: p{i}\r\n\r\nx\r\n".encode())
        return backend.account_path(public.id), int(box.id)
    finally:
        await backend.close()


def test_all_repairs_every_account_and_the_public_tree(tmp_path: Path) -> None:
    f = run(fill(tmp_path / "data"))
    public_tree, lists = run(_public_with_mail(f.data))
    _delete_rows(f.tree / "index.db", 1, (2,))
    _delete_rows(account_dir(f.data, f.bob) / "index.db", 1, (1,))
    _delete_rows(public_tree / "index.db", lists, (3,))
    check = msgstore(f.data, "reconstruct", "--all", "--check", "--json")
    assert check.code == 1, check
    reports = {r["account"]: r for r in json.loads(check.out)}
    assert len(reports) == 3, reports  # alice, bob and the public pseudo-account
    assert all(not r["clean"] for r in reports.values()), reports
    repair = msgstore(f.data, "reconstruct", "--all")
    assert repair.code == 0, repair
    assert msgstore(f.data, "reconstruct", "--all", "--check").code == 0
    assert len(run(read_all(f.data, f.alice))) == len(f.contents)
    assert len(run(read_all(f.data, f.bob))) == 3

    async def public_count() -> int:
        backend = await open_local(f.data)
        try:
            public = await backend.public_account()
            box = await backend.get_mailbox(public.id, MailboxName("Lists"))
            return len(await backend.fetch_meta(public.id, box.id, UidSet.all(), Want.FLAGS))
        finally:
            await backend.close()

    assert run(public_count()) == 4


def test_mailbox_limits_the_file_checks(tmp_path: Path) -> None:
    f = run(fill(tmp_path / "data"))
    os.unlink(f.tree / "mail" / "1" / "4")  # INBOX
    archive = next(p for p in (f.tree / "mail").iterdir() if p.name != "1")
    os.unlink(archive / "2")
    only = msgstore(f.data, "reconstruct", "alice", "--mailbox", "Archive", "--json")
    assert only.code == 0, only
    (report,) = json.loads(only.out)
    assert {d["mailbox"] for d in report["discrepancies"]} <= {"Archive", ""}, report
    assert any(d["code"] == "file-missing" for d in report["discrepancies"]), report
    rest = msgstore(f.data, "reconstruct", "alice", "--check", "--json")
    assert rest.code == 1, rest
    codes = {(d["mailbox"], d["code"]) for d in json.loads(rest.out)[0]["discrepancies"]}
    assert ("INBOX", "file-missing") in codes, codes
    assert not any(box == "Archive" for box, _ in codes), codes
    unknown = msgstore(f.data, "reconstruct", "alice", "--mailbox", "Nope")
    assert unknown.code != 0, unknown


def test_index_older_than_its_files_loses_nothing(tmp_path: Path) -> None:
    """A backup whose index.db was copied before the last deliveries: the store opening it
    must not delete the newer files (recovery moves them to orphans/), and reconstruct
    adopts them; a second reconstruct changes nothing."""

    async def deliver(data: Path, count: int, tag: str) -> list[bytes]:
        backend = await open_local(data)
        out = []
        try:
            alice = await backend.get_account("alice")
            inbox = await inbox_of(backend, alice.id)
            for i in range(count):
                body = f"Subject: {tag} {i}\r\n\r\n{tag}\r\n".encode()
                await add_message(backend, alice.id, inbox, body)
                out.append(body)
        finally:
            await backend.close()
        return out

    f = run(fill(tmp_path / "data"))
    old_index = tmp_path / "index.db.old"
    shutil.copy2(f.tree / "index.db", old_index)
    newer = run(deliver(f.data, 3, "newer"))
    # The restore: the older index comes back beside the newer files.
    for suffix in ("-wal", "-shm"):
        (f.tree / f"index.db{suffix}").unlink(missing_ok=True)
    shutil.copy2(old_index, f.tree / "index.db")

    async def touch() -> None:
        backend = await open_local(f.data)
        try:
            await backend.mailbox_status(f.alice, await inbox_of(backend, f.alice))
        finally:
            await backend.close()

    run(touch())  # the index opens: recovery runs
    orphans = sorted((f.tree / "orphans").iterdir())
    assert len(orphans) == 3, orphans
    check = msgstore(f.data, "reconstruct", "alice", "--check")
    assert check.code == 1, check
    assert "orphan-adopted" in check.out, check.out
    repair = msgstore(f.data, "reconstruct", "alice")
    assert repair.code == 0, repair
    after = run(read_all(f.data, f.alice))
    shas = {sha for _, sha in after}
    for body in newer:
        assert hashlib.sha256(body).digest() in shas, "a restored message was lost"
    assert len(after) == len(f.contents) + 3
    assert not list((f.tree / "orphans").iterdir())
    again = msgstore(f.data, "reconstruct", "alice", "--json")
    assert json.loads(again.out)[0]["clean"] is True, again.out


def test_progress_tells_the_truth(tmp_path: Path) -> None:
    """The progress callback counts every message file once, ends at its total, and the
    total is the number of files on disk."""
    from msgstore.reconstruct import reconstruct

    f = run(fill(tmp_path / "data"))
    on_disk = sum(1 for p in (f.tree / "mail").glob("*/*") if p.name.isdigit())
    calls: dict[str, list[tuple[int, int]]] = {}

    async def scenario() -> None:
        backend = await open_local(f.data)
        try:

            def progress_for(name: str):  # type: ignore[no-untyped-def]
                return lambda done, total: calls.setdefault(name, []).append((done, total))

            await reconstruct(backend, ["alice", "bob"], progress=progress_for)
        finally:
            await backend.close()

    run(scenario())
    alice = calls["alice"]
    assert alice[0] == (0, on_disk)
    assert alice[-1] == (on_disk, on_disk)
    assert [d for d, _ in alice] == sorted(d for d, _ in alice)
    assert calls["bob"][-1] == (3, 3)

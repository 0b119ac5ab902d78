"""RELIABILITY.md §7 case 34: the durable-write order, read off the system calls.

Each test runs the appender helper for one operation (APPEND, COPY, MOVE, EXPUNGE) under
``strace -f`` and checks the order of the calls between its ``BEGIN`` and ``ACK`` lines on
stdout; the strace log's fds are mapped to paths from its ``openat`` lines. This catches
what a kill -9 loop cannot: a missing directory fsync, or a reply sent before the index
commit, loses mail only on power loss.

A SQLite commit in WAL mode with ``synchronous=FULL`` is a write of frames to ``index.db-wal``
followed by an fsync/fdatasync of that file; that pair is what "the index commit" means below.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Final

import pytest

from msgstore.core.ids import AccountId
from tests.storage.helpers.appender import BATCH
from tests.storage.helpers.store import REPO_ROOT, account_dir, new_account, open_local
from tests.storage.helpers.strace import Call, parse, run_traced

ACCOUNT: Final = "tracy"
TIMEOUT_S: Final = 60.0
_SYNC: Final = ("fsync", "fdatasync")
_PLACE: Final = ("link", "linkat", "rename", "renameat", "renameat2")


async def _prepare(data_dir: Path) -> AccountId:
    backend = await open_local(data_dir)
    try:
        return (await new_account(backend, ACCOUNT)).id
    finally:
        await backend.close()


def _trace(tmp_path: Path, op: str) -> tuple[list[Call], list[str], Path]:
    """Run ``appender once`` for ``op``; return the calls, the stdout lines and the tree."""
    data_dir = tmp_path / "data"
    account = asyncio.run(_prepare(data_dir))
    log = tmp_path / f"{op}.strace"
    argv = [sys.executable, "-m", "tests.storage.helpers.appender", "once", str(data_dir)]
    done = run_traced([*argv, ACCOUNT, op], log, cwd=REPO_ROOT, timeout_s=TIMEOUT_S)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    lines = done.stdout.decode("ascii").splitlines()
    assert lines[:1] == ["BEGIN"], lines
    assert len(lines) > 1, lines
    assert all(line.startswith("ACK ") for line in lines[1:]), lines
    return parse(log.read_text(), REPO_ROOT), lines, account_dir(data_dir, account)


def _marker(calls: list[Call], prefix: str) -> Call:
    found = [c for c in calls if c.name == "write" and c.fd == 1 and c.text.startswith(prefix)]
    assert len(found) == 1, f"expected one write of {prefix!r} to stdout, found {len(found)}"
    return found[0]


def _first(calls: list[Call], what: str, after: int, match: list[Call]) -> Call:
    """The first call of ``match`` that starts after log line ``after``."""
    for call in match:
        if call.start > after:
            return call
    context = "\n".join(f"  {c.start}: {c.name}({c.args}" for c in calls[-60:])
    raise AssertionError(f"no {what} after log line {after}; the last calls were:\n{context}")


def _commit_between(calls: list[Call], index_wal: str, after: int, before: int) -> None:
    """Assert an index commit lies between log lines ``after`` and ``before``: frames written
    to ``index.db-wal`` after ``after``, and an fsync/fdatasync of it that starts after the last
    of those writes completed and completes before ``before``."""
    writes = [
        c
        for c in calls
        if c.name in ("write", "pwrite64") and c.path == index_wal and after < c.start < before
    ]
    assert writes, f"no write to {index_wal} between log lines {after} and {before}"
    assert all(c.result is not None and c.result > 0 for c in writes)
    last = max(c.end for c in writes)
    syncs = [
        c
        for c in calls
        if c.name in _SYNC and c.path == index_wal and c.start > last and c.end < before
    ]
    assert syncs, f"the frames written to {index_wal} were not synced before line {before}"
    assert syncs[0].result == 0


def _no_commit_between(calls: list[Call], index_wal: str, after: int, before: int) -> None:
    early = [
        c
        for c in calls
        if c.name in ("write", "pwrite64") and c.path == index_wal and after < c.start < before
    ]
    assert not early, f"index written before the message file was durable: {early}"


def _check_durable_append(calls: list[Call], tree: Path, uid: str, begin: Call, ack: Call) -> None:
    """The durable-write order for one appended message acknowledged by ``ack``: fsync of its
    staged file -> link/rename into mail/<mailbox>/<uid> -> fsync of that directory -> index
    commit (WAL write + sync) -> ``ack``; and nothing written to the index in between."""
    window = [c for c in calls if begin.end < c.start < ack.start]
    placed = [
        c
        for c in window
        if c.name in _PLACE
        and c.path2 is not None
        and Path(c.path2).parent.parent == tree / "mail"
        and Path(c.path2).name == uid
    ]
    assert len(placed) == 1, f"expected one link/rename into mail/*/{uid}, got {placed}"
    place = placed[0]
    assert place.result == 0
    assert place.path2 is not None
    staged = place.path
    file_syncs = [c for c in calls if c.name in _SYNC and c.path == staged and c.result == 0]
    assert file_syncs, f"the staged file {staged} was never fsynced before it was placed"
    assert file_syncs[0].end < place.start, "staged file placed before its fsync completed"
    final_writes = [c for c in calls if c.name in ("write", "pwrite64") and c.path == place.path2]
    assert not final_writes, "a message file was written after it was placed"

    mailbox_dir = str(Path(place.path2).parent)
    dir_syncs = [c for c in window if c.name in _SYNC and c.path == mailbox_dir]
    dir_sync = _first(calls, f"fsync of {mailbox_dir}", place.end, dir_syncs)
    assert dir_sync.result == 0

    wal = str(tree / "index.db-wal")
    _no_commit_between(calls, wal, place.start, dir_sync.end)
    _commit_between(calls, wal, dir_sync.end, ack.start)


def test_append_syncs_file_then_places_it_then_syncs_dir_then_commits_then_acks(
    tmp_path: Path,
) -> None:
    """An append is acknowledged only after: fsync of the staged file -> link/rename into
    mail/<mailbox>/<uid> -> fsync of that directory -> index commit (WAL write + sync)."""
    calls, lines, tree = _trace(tmp_path, "append")
    _, uid, _ = lines[1].split()
    _check_durable_append(calls, tree, uid, _marker(calls, "BEGIN"), _marker(calls, "ACK "))


def test_delivery_finishing_and_appending_in_one_hop_keeps_the_order(tmp_path: Path) -> None:
    """A delivery to one recipient (the LMTP path, ``finish_and_deliver``) hands the append
    from the thread that fsynced the staged file straight to the index thread; the order is
    the same as an append's: fsync(file) -> link -> fsync(dir) -> commit -> acknowledge."""
    calls, lines, tree = _trace(tmp_path, "deliver")
    _, uid, _ = lines[1].split()
    _check_durable_append(calls, tree, uid, _marker(calls, "BEGIN"), _marker(calls, "ACK "))


def test_group_commit_keeps_the_order_for_every_message_of_the_batch(tmp_path: Path) -> None:
    """Appends made at once share one index transaction (group commit): each message's staged
    file is still fsynced before its link, the directory fsynced after every link of the
    batch, and each caller acknowledged only after the commit that holds its row."""
    calls, lines, tree = _trace(tmp_path, "batch")
    acks = [c for c in calls if c.name == "write" and c.fd == 1 and c.text.startswith("ACK ")]
    assert len(acks) == len(lines) - 1 == BATCH, lines
    begin = _marker(calls, "BEGIN")
    uids = set()
    for ack in acks:
        _, uid, _ = ack.text.split()
        uids.add(uid)
        _check_durable_append(calls, tree, uid, begin, ack)
    assert len(uids) == BATCH, f"UIDs handed out twice: {lines}"


@pytest.mark.parametrize("op", ["copy", "move"])
def test_copy_and_move_link_then_sync_dir_then_commit_then_ack(tmp_path: Path, op: str) -> None:
    """COPY and MOVE (inside one account) hard-link the source file into the target mailbox,
    fsync the target directory, commit the index, and only then return; MOVE unlinks the
    source file only after that commit."""
    calls, lines, tree = _trace(tmp_path, op)
    _, dest_uid, source_uid = lines[1].split()
    begin, ack = _marker(calls, "BEGIN"), _marker(calls, "ACK ")
    window = [c for c in calls if begin.end < c.start < ack.start]

    links = [
        c
        for c in window
        if c.name in ("link", "linkat") and c.path2 is not None and Path(c.path2).name == dest_uid
    ]
    assert len(links) == 1, f"expected one link to mail/*/{dest_uid}, got {links}"
    link = links[0]
    assert link.result == 0
    assert link.path is not None
    assert link.path2 is not None
    source = Path(link.path)
    assert source.parent.parent == tree / "mail", f"{op} linked from {source}"
    assert source.name == source_uid
    assert Path(link.path2).parent.parent == tree / "mail"
    assert source.parent != Path(link.path2).parent

    target_dir = str(Path(link.path2).parent)
    dir_syncs = [c for c in window if c.name in _SYNC and c.path == target_dir]
    dir_sync = _first(calls, f"fsync of {target_dir}", link.end, dir_syncs)
    assert dir_sync.result == 0

    wal = str(tree / "index.db-wal")
    _no_commit_between(calls, wal, link.start, dir_sync.end)
    _commit_between(calls, wal, dir_sync.end, ack.start)

    unlinks = [c for c in calls if c.name in ("unlink", "unlinkat") and c.path == str(source)]
    if op == "copy":
        assert not unlinks, "copy removed its source file"
    else:
        assert len(unlinks) == 1, f"move did not unlink its source {source}: {unlinks}"
        _commit_between(calls, wal, dir_sync.end, unlinks[0].start)
        assert not source.exists()


def test_expunge_commits_the_index_before_unlinking_the_file(tmp_path: Path) -> None:
    """Expunge removes the row first and the file afterwards: a crash in between leaves an
    orphan file for recovery to remove, never a row whose file is gone."""
    calls, lines, tree = _trace(tmp_path, "expunge")
    uids = lines[1].split()[1:]
    assert len(uids) == 1, f"expunge reported {uids}"
    begin = _marker(calls, "BEGIN")

    unlinks = [
        c
        for c in calls
        if c.name in ("unlink", "unlinkat")
        and c.path is not None
        and Path(c.path).parent.parent == tree / "mail"
        and Path(c.path).name == uids[0]
        and c.start > begin.end
    ]
    assert len(unlinks) == 1, f"expected one unlink of mail/*/{uids[0]}, got {unlinks}"
    unlink = unlinks[0]
    assert unlink.result == 0
    _commit_between(calls, str(tree / "index.db-wal"), begin.end, unlink.start)
    assert not os.path.exists(unlink.path or "")

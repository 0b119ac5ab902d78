"""files.py, crash point by crash point: what each failing step leaves behind."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from msgstore.storage.local.faults import FaultPlan
from msgstore.storage.local.files import (
    FileOps,
    create_temp,
    message_uids_on_disk,
    place_messages,
    remove_stale_temp_files,
    temp_name,
)


def staged(tmp_path: Path, data: bytes = b"Subject: x\r\n\r\nbody\r\n") -> Path:
    tmp = tmp_path / "tmp"
    tmp.mkdir(exist_ok=True)
    path, fd = create_temp(FileOps(None), tmp)
    os.write(fd, data)
    os.fsync(fd)
    os.close(fd)
    return path


def test_place_creates_the_directory_links_and_keeps_the_source(tmp_path: Path) -> None:
    source = staged(tmp_path)
    plan = FaultPlan(())
    box = tmp_path / "mail" / "7"
    (tmp_path / "mail").mkdir()
    placed = place_messages(FileOps(plan), [(source, 1)], box)
    assert placed == [box / "1"]
    assert (box / "1").read_bytes() == source.read_bytes()
    assert os.stat(box / "1").st_ino == os.stat(source).st_ino
    # mkdir + fsync(mail/), link, fsync(mail/7)
    assert (plan.count("mkdir"), plan.count("link"), plan.count("fsync")) == (1, 1, 2)


def test_second_place_into_existing_directory_syncs_it_once(tmp_path: Path) -> None:
    plan = FaultPlan(())
    box = tmp_path / "box"
    box.mkdir()
    sources = [(staged(tmp_path, bytes([65 + i]) * 10), i + 1) for i in range(3)]
    place_messages(FileOps(plan), sources, box)
    assert sorted(message_uids_on_disk(box)) == [1, 2, 3]
    assert (plan.count("mkdir"), plan.count("link"), plan.count("fsync")) == (0, 3, 1)


@pytest.mark.parametrize("fault", ["link:2:EIO", "fsync:1:EIO"])
def test_failure_removes_what_was_placed(tmp_path: Path, fault: str) -> None:
    """Crash points 5 and 6 as errors: the second link fails, or the directory fsync after
    the links: nothing stays in the mailbox directory, the sources stay."""
    box = tmp_path / "box"
    box.mkdir()
    sources = [(staged(tmp_path), 1), (staged(tmp_path), 2)]
    with pytest.raises(OSError, match="injected"):
        place_messages(FileOps(FaultPlan.parse(fault)), sources, box)
    assert os.listdir(box) == []
    assert all(s.exists() for s, _ in sources)


def test_mkdir_failure_leaves_nothing(tmp_path: Path) -> None:
    (tmp_path / "mail").mkdir()
    with pytest.raises(OSError, match="injected") as caught:
        place_messages(
            FileOps(FaultPlan.parse("mkdir:1:EROFS")), [(staged(tmp_path), 1)], tmp_path / "mail/1"
        )
    assert caught.value.errno == errno.EROFS
    assert os.listdir(tmp_path / "mail") == []


def test_leftover_at_the_target_is_replaced(tmp_path: Path) -> None:
    """An orphan from an earlier failed attempt at the same UID is replaced, not kept."""
    box = tmp_path / "box"
    box.mkdir()
    (box / "5").write_bytes(b"torn leftover")
    source = staged(tmp_path, b"the real message\r\n")
    place_messages(FileOps(None), [(source, 5)], box)
    assert (box / "5").read_bytes() == b"the real message\r\n"


@pytest.mark.parametrize("code", ["EMLINK", "EXDEV"])
def test_link_refused_falls_back_to_a_synced_copy(tmp_path: Path, code: str) -> None:
    """Too many links (EMLINK) or another file system (EXDEV): the file is copied."""
    box = tmp_path / "box"
    box.mkdir()
    source = staged(tmp_path, b"copied bytes\r\n" * 1000)
    plan = FaultPlan.parse(f"link:1:{code}")
    place_messages(FileOps(plan), [(source, 1)], box)
    assert (box / "1").read_bytes() == source.read_bytes()
    assert os.stat(box / "1").st_ino != os.stat(source).st_ino
    assert plan.count("fsync") == 2  # the copy, then the directory


def test_failed_copy_fallback_leaves_no_partial_file(tmp_path: Path) -> None:
    box = tmp_path / "box"
    box.mkdir()
    source = staged(tmp_path)
    with pytest.raises(OSError, match="injected"):
        place_messages(
            FileOps(FaultPlan.parse("link:1:EMLINK,write:1:ENOSPC")), [(source, 1)], box
        )
    assert os.listdir(box) == []


def test_temp_names_are_unique_and_carry_the_pid() -> None:
    names = {temp_name() for _ in range(1000)}
    assert len(names) == 1000
    assert all(n.startswith(f"{os.getpid()}-") and n.endswith(".msg") for n in names)


def test_stale_cleanup_spares_live_processes(tmp_path: Path) -> None:
    (tmp_path / temp_name()).write_bytes(b"mine")
    (tmp_path / "1-0-1-x.msg").write_bytes(b"pid 1 (init) is alive")
    (tmp_path / "999999999-5-1-x.msg").write_bytes(b"no such pid")
    (tmp_path / "garbage.msg").write_bytes(b"unparsable name: stale")
    removed = remove_stale_temp_files(FileOps(None), tmp_path)
    assert removed == 2
    assert len(os.listdir(tmp_path)) == 2


def test_uids_on_disk_ignore_other_names(tmp_path: Path) -> None:
    for name in ("1", "22", "007", "x", "3.tmp", "0"):
        (tmp_path / name).write_bytes(b"")
    assert sorted(message_uids_on_disk(tmp_path)) == [1, 22]
    assert message_uids_on_disk(tmp_path / "missing") == []

"""Bad input (issue #8): each problem is one clear line in the summary, the rest of the run
goes on, the exit code is 1, and nothing already migrated is lost or doubled."""

from __future__ import annotations

import json
import os
from pathlib import Path

import crypt_r

from msgstore.auth.passwords import verify_password
from tests.migrate.conftest import expect, msgstore, read_store, stored_hash


def _maildir(root: Path) -> Path:
    for sub in ("cur", "new", "tmp"):
        (root / sub).mkdir(parents=True)
    return root


def test_missing_paths_and_garbage(tmp_path: Path) -> None:
    data = tmp_path / "data"
    missing = msgstore(
        data, "migrate", "maildir", str(tmp_path / "nope"), "--account", "erin", "--create",
        "--quiet",
    )  # fmt: skip
    expect(missing, 1, "no such file or directory")
    as_json = msgstore(
        data, "migrate", "maildir", str(tmp_path / "nope"), "--account", "erin", "--json"
    )
    assert as_json.code == 1, as_json
    report = json.loads(as_json.out)
    assert report["failed"] is True
    assert report["problems"] == [
        {"account": "erin", "where": str(tmp_path / "nope"), "reason": "no such file or directory"}
    ]
    garbage = tmp_path / "garbage.mbox"
    garbage.write_bytes(os.urandom(3000) + b"\0")
    result = msgstore(data, "migrate", "mbox", str(garbage), "--account", "erin", "--quiet")
    assert result.code == 1, result
    assert "not an mbox file" in result.out, result.out
    directory = msgstore(data, "migrate", "mbox", str(tmp_path), "--account", "erin", "--quiet")
    expect(directory, 1, "not a regular file")
    not_maildir = msgstore(
        data, "migrate", "maildir", str(garbage), "--account", "erin", "--quiet"
    )
    expect(not_maildir, 1, "not a Maildir")


def test_invalid_account_name(tmp_path: Path) -> None:
    spool = tmp_path / ".hidden"
    spool.write_bytes(b"From a@b Sat Jan  1 00:00:00 2000\nSubject: x\n\nx\n")
    data = tmp_path / "data"
    result = msgstore(data, "migrate", "mbox", str(spool), "--create", "--quiet")
    assert result.code == 1, result
    assert "invalid account name here" in result.out, result.out
    passwd = tmp_path / "passwd"
    passwd.write_text(
        "root:x:0:0:root:/root:/bin/bash\n"
        f"good:x:1000:1000::{tmp_path}/home-good:/bin/bash\n"
        "anyone:x:1001:1001::/nonexistent:/bin/bash\n"
        "svc:x:1002:1002::/:/usr/sbin/nologin\n"
    )
    spools = tmp_path / "spool"
    spools.mkdir()
    for user in ("good", "anyone", "svc", "root"):
        (spools / user).write_bytes(
            f"From a@b Sat Jan  1 00:00:00 2000\nSubject: for {user}\n\nhi\n".encode()
        )
    (tmp_path / "home-good").mkdir()
    shadow = tmp_path / "shadow"
    shadow.write_text(
        f"good:{crypt_r.crypt('g00d', '$6$saltsalt$')}:19000:0:99999:7:::\nanyone:!:19000::::::\n"
    )
    run = msgstore(
        data, "migrate", "mbox", "--all-from-passwd", str(passwd), "--spool-dir", str(spools),
        "--create", "--quiet", "--forward-to", "{user}@store.example.org",
        "--passwd-file", str(shadow),
    )  # fmt: skip
    assert run.code == 1, run  # "anyone" is reserved here
    expect(run, 1, "anyone", "reserved")
    assert len(read_store(data, "good")["INBOX"].messages) == 1
    assert verify_password("g00d", stored_hash(data, "good")).ok  # the shadow hash came along
    assert (tmp_path / "home-good" / ".forward").read_text() == "good@store.example.org\n"
    assert "svc" not in run.out
    assert "root:" not in run.out


def test_broken_maildir_names(tmp_path: Path) -> None:
    root = _maildir(tmp_path / "Maildir")
    good = b"Subject: fine\n\nfine\n"
    (root / "cur" / "1700000000.1.host:2,S").write_bytes(good)
    (root / "cur" / "1700000000.2.host:2,Sz").write_bytes(b"Subject: unknown keyword\n\nx\n")
    (root / "cur" / "1700000000.3.host:1,experimental").write_bytes(b"Subject: old info\n\nx\n")
    (root / "cur" / "1700000000.4.host:2,").write_bytes(b"")
    (root / "cur" / "a-directory").mkdir()
    (root / "new" / "no-info-at-all").write_bytes(b"Subject: new one\n\nx\n")
    (root / "new" / b"bad-\xff-name".decode("utf-8", "surrogateescape")).write_bytes(
        b"Subject: bad name\n\nx\n"
    )
    _maildir(root / ".Bad&Name")  # not valid modified UTF-7
    _maildir(root / ".Archive")
    (root / ".Archive" / "cur" / "1700000000.5.host:2,F").write_bytes(b"Subject: archived\n\nx\n")
    data = tmp_path / "data"
    first = msgstore(
        data, "migrate", "maildir", str(root), "--account", "frank", "--create", "--quiet"
    )
    assert first.code == 1, first
    out = first.out
    assert "unknown flag letter(s) 'z'" in out, out
    assert "unknown Maildir info" in out, out
    assert "empty file" in out, out
    assert "not a regular file" in out, out
    assert "folder name not usable" in out, out
    store = read_store(data, "frank")
    subjects = sorted(m.data.split(b"\r\n")[0] for m in store["INBOX"].messages.values())
    assert subjects == [
        b"Subject: bad name",
        b"Subject: fine",
        b"Subject: new one",
        b"Subject: old info",
        b"Subject: unknown keyword",
    ]
    assert len(store["Archive"].messages) == 1
    second = msgstore(data, "migrate", "maildir", str(root), "--account", "frank", "--quiet")
    assert "copied 0 message(s)" in second.out, second.out
    assert sum(len(b.messages) for b in read_store(data, "frank").values()) == 6

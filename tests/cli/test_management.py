"""``msgstore`` as a postmaster uses it: the management commands of issue #6 on a real data
directory -- bad input is one line and changes nothing, the audit log, completion,
export/restore, and remote mode against a real ``msgstore serve``. Most commands run in this
process (tests/cli/conftest.py); each command group here runs at least once as a real process.
"""

from __future__ import annotations

import io
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from msgstore.api import SyncStore
from msgstore.management.jsonable import to_json
from tests.cli.conftest import Msgstore, Result, assert_one_line_error, run_cli
from tests.conversations.harness import MsgstoreServer


def state(msgstore: Msgstore) -> object:
    """What bad input must not change: accounts, bob's quota, mailboxes and INBOX ACL, the
    public folders (read in this process, through the Python API)."""
    with SyncStore.open(msgstore.data) as store:
        return to_json(
            (
                store.accounts.list(),
                store.quotas.show("bob"),
                store.mailboxes.list("bob"),
                store.acl.show("bob", "INBOX"),
                store.public.list(),
            )
        )


BAD_INPUT = [
    (("account", "show", "ghost"), 67, "No such account 'ghost'"),
    (("account", "rename", "ghost", "casper"), 67, "ghost"),
    (("account", "rename", "bob", "carol"), 73, "already exists"),
    (("account", "rename", "bob", "a/b"), 65, "'/'"),
    (("quota", "set", "bob", "--storage", "-5"), 65, "-5"),
    (("quota", "set", "bob", "--storage", "12 parsecs"), 65, "12 parsecs"),
    (("quota", "set", "ghost", "--storage", "1M"), 67, "ghost"),
    (("acl", "set", "bob", "INBOX", "ghost", "lr"), 65, "Unknown ACL identifier 'ghost'"),
    (("acl", "set", "bob", "INBOX", "carol", "lrQ"), 65, "Unknown access right 'Q'"),
    (("acl", "set", "bob", "INBOX", "--", "-nobody", "lr"), 65, "'-nobody'"),
    (("acl", "set", "bob", "Nope", "carol", "lr"), 67, ""),
    (("acl", "delete", "bob", "INBOX", "anyone"), 67, "no ACL entry"),
    (("mailbox", "status", "bob", "Nope"), 67, ""),
    (("public", "acl", "set", "Nope", "anyone", "lr"), 67, ""),
    (("audit", "list", "--since", "last tuesday"), 65, "ISO 8601"),
    (("account", "list", "--limit", "ten"), 65, "limit"),
]


def test_bad_input_is_one_line_and_changes_nothing(msgstore: Msgstore) -> None:
    msgstore.add("bob")
    msgstore.add("carol")
    before = state(msgstore)
    for args, code, fragment in BAD_INPUT:
        assert_one_line_error(msgstore(*args), code, fragment)
        assert state(msgstore) == before, args


def test_duplicate_and_invalid_account_names(msgstore: Msgstore) -> None:
    msgstore.add("bob")
    before = msgstore.json("account", "list")
    for name, code in (("BOB", 73), ("a/b", 65), ("anyone", 65), ("#x", 65)):
        result = msgstore("account", "add", name, "--password-stdin", stdin="secret\n")
        assert result.code == code, result
        assert len(result.err.splitlines()) == 1
    assert msgstore.json("account", "list") == before


def test_new_commands_and_the_audit_log(msgstore: Msgstore) -> None:
    msgstore.add("bob")
    msgstore.add("carol", "--kind", "pop")
    assert [a["name"] for a in msgstore.json("account", "list", "--kind", "pop")] == ["carol"]
    assert [a["name"] for a in msgstore.json("account", "search", "AR")] == ["carol"]
    msgstore.ok("account", "rename", "carol", "caroline")
    msgstore.real.ok("acl", "set", "bob", "INBOX", "caroline", "lr")
    assert msgstore.json("acl", "show", "bob", "INBOX") == [
        {"mailbox": "INBOX", "identifier": "caroline", "rights": "lr"}
    ]
    reset = msgstore.real.json("password", "reset", "bob")
    assert len(reset["password"]) >= 20
    msgstore.real.ok("public", "create", "News")
    msgstore.ok("public", "acl", "set", "News", "anyone", "lr")
    msgstore.ok("public", "quota", "set", "--storage", "1G")
    assert msgstore.json("public", "quota", "show")["storage_limit_kib"] == 1024 * 1024
    msgstore.ok("public", "delete", "News", "--yes")
    assert msgstore.real.json("stats", "show")["accounts"] == 2
    audit = msgstore.real.json("audit", "list")
    operations = [e["operation"] for e in audit]
    assert operations[:3] == ["public delete", "public quota set", "public acl set"]
    assert {e["origin"] for e in audit} == {"cli"}
    assert all(e["actor"].startswith("os:") for e in audit)
    added = [e for e in audit if e["operation"] == "account add"]
    assert [e["params"]["password"] for e in added] == ["<redacted>", "<redacted>"]
    assert reset["password"] not in str(audit)
    assert msgstore.json("audit", "list", "--operation", "account rename", "--limit", "5")[0][
        "params"
    ] == {"name": "carol", "new": "caroline"}


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_scripts(msgstore: Msgstore, shell: str) -> None:
    script = msgstore.ok("completion", shell).out
    assert "_MSGSTORE_COMPLETE" in script


def test_completion_completes_commands(tmp_path: Path) -> None:
    """A real process: the shell drives completion through the environment."""
    env = {"_MSGSTORE_COMPLETE": "bash_complete", "COMP_WORDS": "msgstore acc", "COMP_CWORD": "1"}
    out = run_cli([], cwd=tmp_path, env=env, process=True).out
    assert "plain,account" in out


def test_export_and_restore(msgstore: Msgstore, tmp_path: Path) -> None:
    msgstore.add("bob")
    for n in range(3):
        assert msgstore.deliver("bob", message=f"Subject: {n}\r\n\r\nx\r\n".encode()).code == 0
    summary = msgstore.real.json("account", "export", "bob", "--output", str(tmp_path / "bob.tar"))
    assert summary["messages"] == 3
    msgstore.add("copy")
    report = msgstore.json("account", "restore", "copy", "--input", str(tmp_path / "bob.tar"))
    assert report["messages"] == 3
    assert msgstore.json("mailbox", "status", "copy", "INBOX")["messages"] == 3
    # Into an account with mail: refused, one line.
    result = msgstore("account", "restore", "bob", "--input", str(tmp_path / "bob.tar"))
    assert_one_line_error(result, 65, "new or empty account")


def test_restore_refuses_escaping_archives(msgstore: Msgstore, tmp_path: Path) -> None:
    msgstore.add("bob")
    msgstore.ok("account", "export", "bob", "--output", str(tmp_path / "ok.tar"))
    with tarfile.open(tmp_path / "ok.tar") as tar:
        index = tar.extractfile("index.db")
        assert index is not None
        index_bytes = index.read()
    for name, member, fragment in (
        ("dotdot", "mail/1/../../../escaped", "'..'"),
        ("link", "mail/1/1", "link to"),
    ):
        path = tmp_path / f"{name}.tar"
        with tarfile.open(path, "w") as tar:
            info = tarfile.TarInfo("index.db")
            info.size = len(index_bytes)
            tar.addfile(info, io.BytesIO(index_bytes))
            bad = tarfile.TarInfo(member)
            if name == "link":
                bad.type = tarfile.SYMTYPE
                bad.linkname = "../../../../../etc/passwd"
                tar.addfile(bad)
            else:
                bad.size = 1
                tar.addfile(bad, io.BytesIO(b"x"))
        msgstore.add(f"target-{name}")
        before = msgstore.json("mailbox", "list", f"target-{name}")
        result = msgstore("account", "restore", f"target-{name}", "--input", str(path))
        assert_one_line_error(result, 65, fragment)
        assert msgstore.json("mailbox", "list", f"target-{name}") == before
    assert not (tmp_path / "escaped").exists()


# --- remote mode --------------------------------------------------------------------------------


@pytest.fixture
def server(tmp_path: Path) -> Iterator[MsgstoreServer]:
    srv = MsgstoreServer.start(tmp_path / "srv", services=("web",))
    try:
        yield srv
    finally:
        srv.stop()


def remote(
    server: MsgstoreServer,
    user: str,
    password: str,
    *args: str,
    stdin: str = "",
    process: bool = False,
) -> Result:
    """``MSGSTORE_PASSWORD=password msgstore --url URL --user user ARGS`` (in this process
    unless ``process``)."""
    url = f"http://{server.settings['web.listen']}"
    return run_cli(
        ["--url", url, "--user", user, *args],
        stdin=stdin,
        cwd=server.root,
        env={"MSGSTORE_PASSWORD": password},
        process=process,
    )


def test_remote_mode_runs_the_same_operations(server: MsgstoreServer, tmp_path: Path) -> None:
    local = Msgstore(data=server.data_dir, cwd=tmp_path, config=server.config_path)
    local.add("boss", "--manager", password="Boss-password-1")
    local.add("bob", password="bob-password")
    listed = remote(server, "boss", "Boss-password-1", "account", "list", "--json", process=True)
    assert (listed.code, listed.err) == (0, ""), listed
    assert listed.json == local.json("account", "list")
    added = remote(
        server,
        "boss",
        "Boss-password-1",
        "account",
        "add",
        "carol",
        "--password-stdin",
        stdin="Carol-password-1\n",
    )
    assert added.code == 0, added
    assert (
        remote(server, "boss", "Boss-password-1", "quota", "set", "carol", "--storage", "5M").code
        == 0
    )
    assert local.json("quota", "show", "carol")["storage_limit_kib"] == 5 * 1024
    # The same reads give the same JSON remotely, locally, and from the Python API.
    local.ok("mailbox", "create", "carol", "Work")
    local.ok("acl", "set", "carol", "Work", "bob", "lr")
    local.ok("public", "create", "News")
    reads = [
        ("quota", "show", "carol"),
        ("mailbox", "list", "carol"),
        ("mailbox", "status", "carol", "Work"),
        ("acl", "show", "carol", "Work"),
        ("public", "list"),
        ("account", "list", "--match", "o", "--limit", "2"),
    ]
    for args in reads:
        got = remote(server, "boss", "Boss-password-1", *args, "--json")
        assert (got.code, got.err) == (0, ""), (args, got)
        assert got.json == local.json(*args), args
    with SyncStore.open(server.config_path) as store:
        assert to_json(store.mailboxes.list("carol")) == local.json("mailbox", "list", "carol")
    # The same one-line errors and exit codes as locally.
    assert_one_line_error(
        remote(server, "boss", "Boss-password-1", "acl", "set", "bob", "INBOX", "ghost", "lr"),
        65,
        "Unknown ACL identifier 'ghost'",
    )
    assert_one_line_error(
        remote(server, "boss", "Boss-password-1", "account", "show", "ghost"), 67, "ghost"
    )
    # A non-manager may see its own usage, nothing else; a wrong password gets nowhere.
    assert remote(server, "bob", "bob-password", "quota", "show", "bob").code == 0
    assert_one_line_error(remote(server, "bob", "bob-password", "account", "list"), 77)
    assert_one_line_error(remote(server, "boss", "wrong", "account", "list"), 77)
    # Export streams the archive here (GET /accounts/{name}/export).
    archive = tmp_path / "bob.tar"
    exported = remote(
        server, "boss", "Boss-password-1", "account", "export", "bob", "--output", str(archive)
    )
    assert exported.code == 0, exported
    assert archive.stat().st_size > 0
    audit = local.json("audit", "list", "--actor", "boss")
    assert {e["origin"] for e in audit} == {"rest 127.0.0.1"}
    assert [(e["operation"], e["outcome"]) for e in audit] == [
        ("account export", "ok"),
        ("acl set", "params"),
        ("quota set", "ok"),
        ("account add", "ok"),
    ]


def test_remote_mode_refuses_local_only_commands(msgstore: Msgstore) -> None:
    result = msgstore("--url", "http://127.0.0.1:9", "--user", "boss", "reconstruct", "bob")
    assert result.code == 2
    assert "not in remote mode" in result.err
    result = msgstore("--url", "http://127.0.0.1:9", "account", "list")
    assert result.code == 2
    assert "--url and --user go together" in result.err
    unreachable = msgstore(
        "--url",
        "http://127.0.0.1:9",
        "--user",
        "boss",
        "--password-stdin",
        "account",
        "list",
        stdin="pw\n",
    )
    assert_one_line_error(unreachable, 69, "cannot reach")

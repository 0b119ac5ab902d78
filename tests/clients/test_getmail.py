"""Debian's getmail6 downloads over loopback into a Maildir, keep and delete modes, message by
message (UIDL, RETR, DELE).

getmail refuses to deliver as root (ECOSYSTEM.md §18), so the Maildir belongs to ``nobody``
and the destination says ``user = nobody``. getmail prepends Delivered-To/Return-Path headers
and writes LF line ends. Needs the Debian package ``getmail6``: missing, these tests fail.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.clients.test_fetchmail import check_delivered
from tests.conversations.harness import MsgstoreServer, User, message


@pytest.fixture
def work() -> Iterator[Path]:
    """A directory ``nobody`` can reach (pytest's temporary directories are root-only)."""
    path = Path(tempfile.mkdtemp(prefix="msgstore-getmail-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path)


def getmail(server: MsgstoreServer, user: User, work: Path, *, delete: bool) -> int:
    binary = shutil.which("getmail")
    assert binary is not None, "getmail is not installed (apt-get install getmail6)"
    nobody = pwd.getpwnam("nobody")
    maildir = work / "Maildir"
    for sub in ("", "cur", "new", "tmp"):
        (maildir / sub).mkdir(parents=True, exist_ok=True)
        os.chown(maildir / sub, nobody.pw_uid, nobody.pw_gid)
    state = work / "state"
    state.mkdir(exist_ok=True)
    rc = work / "getmailrc"
    rc.write_text(
        "[retriever]\n"
        "type = SimplePOP3Retriever\n"
        "server = 127.0.0.1\n"
        f"port = {server.port('pop3.listen')}\n"
        f"username = {user.name}\n"
        f"password = {user.password}\n"
        "[destination]\n"
        "type = Maildir\n"
        f"path = {maildir}/\n"
        "user = nobody\n"
        "[options]\n"
        "read_all = false\n"
        f"delete = {'true' if delete else 'false'}\n"
        "verbose = 2\n"
    )
    proc = subprocess.run(
        [binary, "--getmaildir", str(state), "--rcfile", str(rc)],
        capture_output=True,
        timeout=60,
        check=False,
    )
    (work / "getmail.log").write_bytes(proc.stdout + proc.stderr)
    return proc.returncode


def maildir_messages(work: Path) -> list[bytes]:
    return [p.read_bytes() for p in sorted((work / "Maildir" / "new").iterdir())]


def test_getmail_keep_mode_downloads_each_message_once(server: MsgstoreServer, work: Path) -> None:
    alice = server.admin.add_user("alice", kind="pop")
    sent = [message(f"g{i}", f"getmail body {i}\r\n.dot\r\n" * 20) for i in range(3)]
    for msg in sent:
        server.admin.deliver(alice.name, msg)
    assert getmail(server, alice, work, delete=False) == 0, (work / "getmail.log").read_text()
    check_delivered(sent, maildir_messages(work))
    assert len(server.admin.inbox(alice.name)) == 3
    later = message("later")
    server.admin.deliver(alice.name, later)
    assert getmail(server, alice, work, delete=False) == 0
    check_delivered([*sent, later], maildir_messages(work))


def test_getmail_delete_mode_empties_the_maildrop(server: MsgstoreServer, work: Path) -> None:
    bob = server.admin.add_user("bob")
    sent = [message(f"d{i}", "y" * 5000 + "\r\n") for i in range(3)]
    for msg in sent:
        server.admin.deliver(bob.name, msg)
    assert getmail(server, bob, work, delete=True) == 0, (work / "getmail.log").read_text()
    check_delivered(sent, maildir_messages(work))
    assert server.admin.inbox(bob.name) == []

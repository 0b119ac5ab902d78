"""Debian's fetchmail downloads over loopback, keep and delete modes, message by message.

fetchmail speaks USER/PASS, STAT, UIDL, LIST n, and ``TOP n 99999999`` as its RETR, then DELE
unless ``keep`` (ECOSYSTEM.md §18). Its rcfile must be mode 0600. It prepends a Received:
header and hands each message (LF line ends) to the MDA, here one file per message.
Needs the Debian package ``fetchmail``: missing, these tests fail.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from tests.conversations.harness import MsgstoreServer, User, message


def fetchmail(server: MsgstoreServer, user: User, work: Path, *, keep: bool, tls: bool) -> int:
    binary = shutil.which("fetchmail")
    assert binary is not None, "fetchmail is not installed (apt-get install fetchmail)"
    out = work / "out"
    out.mkdir(exist_ok=True)
    tls_options = (
        f"sslproto 'tls1.2+' sslcertck sslcertfile '{server.cafile}' sslcommonname localhost"
        if tls
        else "sslproto ''"
    )
    rc = work / "fetchmailrc"
    rc.write_text(
        "set no syslog\n"
        f"poll 127.0.0.1 service {server.port('pop3.listen')} protocol POP3 uidl "
        "auth password\n"
        f'  user "{user.name}" password "{user.password}" is "root" here\n'
        f"  {'keep' if keep else 'nokeep'}\n"
        f"  {tls_options}\n"
        f"  mda \"/bin/sh -c 'cat > {out}/msg.$$'\"\n"
    )
    rc.chmod(0o600)
    env = {**os.environ, "FETCHMAILHOME": str(work), "HOME": str(work)}
    proc = subprocess.run(
        [binary, "-f", str(rc), "-v", "--nosyslog", "-i", str(work / "ids")],
        env=env,
        capture_output=True,
        timeout=60,
        check=False,
    )
    (work / "fetchmail.log").write_bytes(proc.stdout + proc.stderr)
    return proc.returncode


def received(work: Path) -> list[bytes]:
    return [p.read_bytes() for p in sorted((work / "out").iterdir())]


def check_delivered(sent: list[bytes], got: list[bytes]) -> None:
    """Every sent message arrived once, byte-exact apart from LF line ends and the Received:
    header fetchmail prepends."""
    assert len(got) == len(sent)
    remaining = [m.replace(b"\r\n", b"\n") for m in sent]
    for data in got:
        match = [m for m in remaining if data.endswith(b"\n" + m)]
        assert len(match) == 1, data[:300]
        remaining.remove(match[0])
    assert remaining == []


def test_fetchmail_keep_mode_downloads_once(server: MsgstoreServer, tmp_path: Path) -> None:
    alice = server.admin.add_user("alice", kind="pop")
    sent = [message(f"keep {i}", "x" * 3000 + f"\r\n.line {i}\r\n") for i in range(4)]
    for msg in sent:
        server.admin.deliver(alice.name, msg)
    assert fetchmail(server, alice, tmp_path, keep=True, tls=True) == 0, (
        tmp_path / "fetchmail.log"
    ).read_text()
    check_delivered(sent, received(tmp_path))
    assert len(server.admin.inbox(alice.name)) == 4
    # The second run knows every UIDL: nothing new, exit code 1.
    assert fetchmail(server, alice, tmp_path, keep=True, tls=True) == 1
    assert len(received(tmp_path)) == 4


def test_fetchmail_delete_mode_empties_the_maildrop(
    server: MsgstoreServer, tmp_path: Path
) -> None:
    bob = server.admin.add_user("bob")
    sent = [message(f"del {i}", f"Body {i}\r\n" * (i + 1)) for i in range(5)]
    for msg in sent:
        server.admin.deliver(bob.name, msg)
    assert fetchmail(server, bob, tmp_path, keep=False, tls=False) == 0, (
        tmp_path / "fetchmail.log"
    ).read_text()
    check_delivered(sent, received(tmp_path))
    assert server.admin.inbox(bob.name) == []

"""POP3 and the rest of the store on one mailbox (RELIABILITY.md §7 case 44 and issue 5).

- DELE + QUIT removes the messages in one expunge, visible to every other reader of the store
  (what an IMAP session on INBOX sees as EXPUNGE) only when the POP3 session ends;
- the maildrop lock is exclusive across processes (a lock held by another process gives
  [IN-USE]);
- UIDLs stay the same across a server restart and across a change of account kind, for mail
  delivered before and after it;
- a message sent to many POP-only accounts is stored once.
"""

from __future__ import annotations

import subprocess
import sys

from msgstore.core.ids import ModSeq
from msgstore.core.names import INBOX
from msgstore.storage.base import Changes
from tests.conversations.harness import LineClient, MsgstoreServer, StoreAdmin, message


def login(server: MsgstoreServer, name: str, password: str) -> LineClient:
    client = LineClient(server.port("pop3.listen"))
    client.read_line()
    client.command(f"USER {name}")
    reply = client.command(f"PASS {password}")
    assert reply.startswith(b"+OK Logged in"), reply
    return client


def uidls(client: LineClient) -> list[str]:
    assert client.command("UIDL").startswith(b"+OK")
    return [line.split()[1].decode() for line in client.multiline()]


def changes(admin: StoreAdmin, name: str, since: int) -> Changes:
    async def run() -> Changes:
        account = await admin.backend.get_account(name)
        mailbox = await admin.backend.get_mailbox(account.id, INBOX)
        return await admin.backend.changes_since(account.id, mailbox.id, ModSeq(since))

    return admin.call(run())


def test_deletions_become_visible_to_other_readers_only_at_quit(server: MsgstoreServer) -> None:
    alice = server.admin.add_user("alice")
    for i in range(3):
        server.admin.deliver(alice.name, message(f"m{i}"))
    uids = [m.uid for m in server.admin.inbox(alice.name)]
    before = changes(server.admin, alice.name, 0).highestmodseq
    with login(server, alice.name, alice.password) as client:
        assert client.command("DELE 1").startswith(b"+OK")
        assert client.command("DELE 3").startswith(b"+OK")
        assert client.command("RETR 2").startswith(b"+OK")
        client.multiline()
        assert changes(server.admin, alice.name, before).expunged == ()
        assert client.command("QUIT") == b"+OK Logging out (2 deleted, 1 left)"
    after = changes(server.admin, alice.name, before)
    assert sorted(after.expunged) == [uids[0], uids[2]]
    (left,) = server.admin.inbox(alice.name)
    assert left.uid == uids[1]
    assert "\\Seen" in left.flags, "RETR marks the message read for IMAP"


HOLD_LOCK = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)
fcntl.flock(fd, fcntl.LOCK_EX)
print("locked", flush=True)
sys.stdin.read()
"""


def test_lock_held_by_another_process_gives_in_use(server: MsgstoreServer) -> None:
    bob = server.admin.add_user("bob", kind="pop")
    account = server.admin.call(server.admin.backend.get_account(bob.name))
    lock_dir = server.data_dir / "run" / "pop3-locks"
    lock_dir.mkdir(parents=True, exist_ok=True)
    path = lock_dir / f"{int(account.id)}.lock"
    # Another process, as another worker of `msgstore serve --workers N` would be.
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline() == b"locked\n"
        with LineClient(server.port("pop3.listen")) as client:
            client.read_line()
            client.command(f"USER {bob.name}")
            reply = client.command(f"PASS {bob.password}")
        assert reply == b"-ERR [IN-USE] Mailbox is locked by another POP3 session"
    finally:
        holder.communicate(b"", timeout=10)
    with login(server, bob.name, bob.password) as client:
        assert client.command("QUIT").startswith(b"+OK")


def test_uidls_survive_restart_and_kind_changes(server: MsgstoreServer) -> None:
    carol = server.admin.add_user("carol", kind="pop")
    server.admin.deliver(carol.name, message("before"))
    with login(server, carol.name, carol.password) as client:
        first = uidls(client)
        client.command("QUIT")
    server.restart()
    with login(server, carol.name, carol.password) as client:
        assert uidls(client) == first
        client.command("QUIT")
    server.admin.set_kind(carol.name, "imap")
    server.admin.deliver(carol.name, message("after"))
    with login(server, carol.name, carol.password) as client:
        second = uidls(client)
        client.command("QUIT")
    assert second[0] == first[0]
    assert len(set(second)) == 2
    server.admin.set_kind(carol.name, "pop")
    with login(server, carol.name, carol.password) as client:
        assert uidls(client) == second
        client.command("QUIT")


def test_fan_out_to_pop_accounts_stores_one_file(server: MsgstoreServer) -> None:
    users = [server.admin.add_user(f"list{i}", kind="pop") for i in range(3)]
    body = message("to everyone", "One copy for all.\r\n" * 50)
    server.admin.deliver([u.name for u in users], body)
    stored = [
        p
        for p in (server.data_dir / "users").rglob("*")
        if p.is_file() and p.stat().st_size == len(body)
    ]
    assert len(stored) == len(users), stored
    assert len({(p.stat().st_dev, p.stat().st_ino) for p in stored}) == 1, "one file, linked"
    for user in users:
        with login(server, user.name, user.password) as client:
            assert client.command("RETR 1") == f"+OK {len(body)} octets".encode()
            assert b"\r\n".join(client.multiline()) + b"\r\n" == body
            client.command("QUIT")

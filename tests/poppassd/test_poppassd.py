"""poppassd changes the password for every protocol at once (issue 5): scripted dialogue,
then the new password over POP3 right away, the old one refused. (IMAP joins this test when
the IMAP server exists.)"""

from __future__ import annotations

from msgstore.auth.passwords import scheme_of
from tests.conversations.harness import LineClient, MsgstoreServer


def pop3_login(server: MsgstoreServer, name: str, password: str) -> bytes:
    with LineClient(server.port("pop3.listen")) as client:
        client.read_line()
        client.command(f"USER {name}")
        reply = client.command(f"PASS {password}")
        if reply.startswith(b"+OK"):
            client.command("QUIT")
        return reply


def test_new_password_works_at_once_for_pop3(server: MsgstoreServer) -> None:
    alice = server.admin.add_user("alice", kind="pop")
    new = "a brand new passphrase"
    with LineClient(server.port("poppassd.listen")) as client:
        assert client.read_line() is not None
        assert client.command(f"user {alice.name}") == b"200 Your password please."
        assert client.command(f"pass {alice.password}") == b"200 Your new password please."
        assert client.command(f"newpass {new}") == b"200 Password changed, thank-you."
        assert client.command("quit") == b"200 Bye."
    assert pop3_login(server, alice.name, new).startswith(b"+OK Logged in")
    assert pop3_login(server, alice.name, alice.password) == b"-ERR [AUTH] Authentication failed"
    assert scheme_of(server.admin.password_hash(alice.name)) == "ARGON2ID"


def test_disabled_account_cannot_change_its_password(server: MsgstoreServer) -> None:
    from msgstore.management.accounts import AccountModify

    bob = server.admin.add_user("bob")
    server.admin.call(AccountModify(name=bob.name, login_disabled=True).run(server.admin.ctx))
    with LineClient(server.port("poppassd.listen")) as client:
        client.read_line()
        client.command(f"user {bob.name}")
        reply = client.command(f"pass {bob.password}")
    assert reply == b"500 Password changes are disabled for this account."
    assert pop3_login(server, bob.name, bob.password) == (
        b"-ERR [SYS/PERM] Logins are disabled for this account"
    )

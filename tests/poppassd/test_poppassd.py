"""poppassd changes the password for every protocol at once (issue 5): scripted dialogue,
then the new password over POP3 right away, the old one refused. (IMAP joins this test when
the IMAP server exists.)"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from msgstore.auth.passwords import scheme_of
from msgstore.config import ConfigError, load_config
from msgstore.core.errors import StoreError
from msgstore.management.passwords import check_policy
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


@pytest.fixture(scope="module")
def strict(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MsgstoreServer]:
    """A server whose [auth] policy is stricter than the defaults."""
    srv = MsgstoreServer.start(
        tmp_path_factory.mktemp("poppassd-policy"),
        config={"auth.password_min_length": 12, "auth.password_classes": 3},
    )
    try:
        yield srv
    finally:
        srv.stop()


def test_the_auth_policy_refusal_reaches_the_client_as_a_500_line(strict: MsgstoreServer) -> None:
    """poppassd has no policy of its own: each refusal is the [auth] policy's own text."""
    carol = strict.admin.add_user("carol")
    config = strict.admin.config
    refused = ["Short-1", "only lower case letters", carol.name]
    with LineClient(strict.port("poppassd.listen")) as client:
        client.read_line()
        client.command(f"user {carol.name}")
        assert client.command(f"pass {carol.password}") == b"200 Your new password please."
        for new in refused:
            with pytest.raises(StoreError) as refusal:
                check_policy(config, carol.name, new)
            assert client.command(f"newpass {new}") == f"500 {refusal.value.public}.".encode()
        assert client.command("newpass Twelve chars 1") == b"200 Password changed, thank-you."
    assert pop3_login(strict, carol.name, "Twelve chars 1").startswith(b"+OK Logged in")


def test_a_config_with_the_old_poppassd_min_length_is_told_what_replaced_it(
    tmp_path: Path,
) -> None:
    path = tmp_path / "msgstore.toml"
    path.write_text("[poppassd]\nmin_length = 10\n")
    with pytest.raises(ConfigError) as refusal:
        load_config(path)
    assert str(refusal.value) == (
        f"{path}: poppassd.min_length was removed: poppassd now applies the [auth] password "
        "policy (auth.password_min_length, password_max_length, password_classes): move the "
        "value there or delete the key"
    )

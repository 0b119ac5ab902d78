"""``msgstore account add|del|list|show|modify`` and ``msgstore passwd``."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from msgstore.auth.passwords import scheme_of, verify_password
from msgstore.config import load_config
from msgstore.management.accounts import TreePaths
from msgstore.storage.local import LocalBackend
from msgstore.storage.open import open_backend
from tests.cli.conftest import Msgstore, assert_one_line_error, tree_of


def tree_paths_exposed() -> bool:
    """True if the local backend says where account trees are (the optional ``TreePaths``
    capability; ``account show`` reports ``path: null`` on backends without it)."""
    return issubclass(LocalBackend, TreePaths)


def stored_hash(data: Path, name: str) -> str:
    """The password hash the store keeps for ``name`` (read in this process)."""

    async def read() -> str:
        backend = await open_backend(load_config(data_dir=data))
        try:
            return (await backend.get_password_hash(name))[1]
        finally:
            await backend.close()

    return asyncio.run(read())


def test_account_add_then_list_and_show(msgstore: Msgstore) -> None:
    """An added account appears in ``account list --json`` and ``account show --json``."""
    msgstore.add("bob", "--quota", "100M", "--messages", "500")
    listed = msgstore.json("account", "list")
    assert [a["name"] for a in listed] == ["bob"]
    shown = msgstore.json("account", "show", "bob")
    assert shown["name"] == "bob"
    assert shown["kind"] == "imap"
    assert shown["manager"] is False
    assert shown["storage_limit_kib"] == 100 * 1024
    assert shown["message_limit"] == 500
    assert shown["storage_used_kib"] == 0
    assert shown["messages_used"] == 0
    assert shown["mailboxes"] == 5  # INBOX + the default autocreate: Drafts Sent Trash Junk
    assert shown["path"] == (str(tree_of(msgstore, "bob")) if tree_paths_exposed() else None)


def test_account_list_and_show_print_text(msgstore: Msgstore) -> None:
    """Without --json: a table with a header row, and ``key: value`` lines."""
    msgstore.add("bob")
    msgstore.add("carol", "--kind", "pop")
    table = msgstore.ok("account", "list").out.splitlines()
    assert table[0].split()[:2] == ["name", "kind"]
    assert [line.split()[:2] for line in table[1:]] == [["bob", "imap"], ["carol", "pop"]]
    shown = msgstore.ok("account", "show", "carol").out
    assert "kind:" in shown
    assert "pop" in shown


def test_new_imap_account_gets_inbox_and_autocreate_mailboxes(msgstore: Msgstore) -> None:
    """INBOX plus each [store] autocreate mailbox with its special-use attribute, all
    subscribed."""
    store = msgstore.with_config(
        '[store.autocreate]\nSent = "\\\\Sent"\nArchive = "\\\\Archive"\n'
    )
    store.add("bob")
    listed = store.json("mailbox", "list", "bob")
    mailboxes = {m["name"]: m["special_use"] for m in listed}
    assert mailboxes == {"INBOX": [], "Sent": ["\\Sent"], "Archive": ["\\Archive"]}
    assert all(m["subscribed"] for m in listed)


def test_new_pop_account_gets_inbox_only(msgstore: Msgstore) -> None:
    msgstore.add("popper", "--kind", "pop")
    assert [m["name"] for m in msgstore.json("mailbox", "list", "popper")] == ["INBOX"]
    assert msgstore.json("account", "show", "popper")["kind"] == "pop"


def test_account_add_stores_an_argon2id_hash_of_the_first_line(msgstore: Msgstore) -> None:
    """The password is the first line of stdin without its line ending; later lines are
    ignored; the store keeps an argon2id hash of it. (A real process: its stdin is a pipe.)"""
    msgstore.real.ok(
        "account", "add", "bob", "--password-stdin", stdin=b"correct horse\r\nignored\n"
    )
    stored = stored_hash(msgstore.data, "bob")
    assert scheme_of(stored) == "ARGON2ID"
    assert verify_password("correct horse", stored).ok
    assert not verify_password("correct horse\r", stored).ok


def test_account_add_without_password_stdin_refuses(msgstore: Msgstore) -> None:
    """Not a terminal and no --password-stdin: a usage error (64), no prompt, no account.
    (A real process, whose stdin is a pipe.)"""
    result = msgstore.real("account", "add", "bob", stdin="secret\n")
    assert_one_line_error(result, 64, "--password-stdin")
    assert msgstore.json("account", "list") == []


def test_account_add_refuses_an_empty_password(msgstore: Msgstore) -> None:
    result = msgstore("account", "add", "bob", "--password-stdin", stdin="\n")
    assert_one_line_error(result, 65, "Password is empty")
    assert msgstore.json("account", "list") == []


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("a/b", "'/'"),
        ("..", "not an account name"),
        (".hidden", "may not start with"),
        ("#shared", "may not start with"),
        ("-bob", "may not start with"),
        ("x" * 300, "longer than 255 octets"),
        ("a\x01b", "control character"),
        ("a b", "space"),
        ("anyone", "reserved"),
    ],
)
def test_account_add_refuses_bad_names(msgstore: Msgstore, name: str, reason: str) -> None:
    """A bad name is one line naming the reason, EX_DATAERR, and the store is unchanged.

    A NUL cannot reach a process through argv at all; tests/management checks that the
    validator refuses it for the other faces.
    """
    msgstore.add("existing")
    before = msgstore.json("account", "list")
    result = msgstore("account", "add", "--password-stdin", "--", name, stdin="secret\n")
    assert_one_line_error(result, 65, reason)
    assert msgstore.json("account", "list") == before


def test_account_add_twice_is_exists(msgstore: Msgstore) -> None:
    """Names compare case-insensitively; EXISTS is EX_CANTCREAT (73)."""
    msgstore.add("bob")
    result = msgstore("account", "add", "BOB", "--password-stdin", stdin="other\n")
    assert_one_line_error(result, 73, "already exists")
    assert [a["name"] for a in msgstore.json("account", "list")] == ["bob"]


def test_account_add_refuses_a_bad_quota(msgstore: Msgstore) -> None:
    result = msgstore(
        "account", "add", "bob", "--password-stdin", "--quota", "12X", stdin="secret\n"
    )
    assert_one_line_error(result, 65, "12X")
    assert msgstore.json("account", "list") == []


def test_account_del_needs_yes_without_a_terminal(msgstore: Msgstore) -> None:
    """Deleting destroys mail: without a terminal to ask on, --yes is required (64). (A real
    process, whose stdin is a pipe.)"""
    msgstore.add("bob")
    assert_one_line_error(msgstore.real("account", "del", "bob"), 64, "--yes")
    assert [a["name"] for a in msgstore.json("account", "list")] == ["bob"]
    msgstore.ok("account", "del", "bob", "--yes")
    assert msgstore.json("account", "list") == []


def test_account_del_of_an_unknown_account_is_nouser(msgstore: Msgstore) -> None:
    assert_one_line_error(msgstore("account", "del", "ghost", "--yes"), 67, "ghost")


def test_account_modify_changes_are_shown(msgstore: Msgstore) -> None:
    """Each modify option is reflected by ``account show``; options not given stay."""
    msgstore.add("bob", "--quota", "1M")
    info = msgstore.json(
        "account",
        "modify",
        "bob",
        "--manager",
        "--disable-login",
        "--disable-receive",
        "--messages",
        "10",
        "--kind",
        "pop",
    )
    assert info["manager"] is True
    shown = msgstore.json("account", "show", "bob")
    assert shown["manager"] is True
    assert shown["login_disabled"] is True
    assert shown["receive_disabled"] is True
    assert shown["message_limit"] == 10
    assert shown["storage_limit_kib"] == 1024  # unchanged
    assert shown["kind"] == "pop"

    msgstore.ok(
        "account",
        "modify",
        "bob",
        "--no-manager",
        "--enable-login",
        "--enable-receive",
        "--quota",
        "unlimited",
        "--kind",
        "imap",
    )
    shown = msgstore.json("account", "show", "bob")
    assert (shown["manager"], shown["login_disabled"], shown["receive_disabled"]) == (
        False,
        False,
        False,
    )
    assert shown["storage_limit_kib"] is None
    assert shown["message_limit"] == 10
    assert shown["kind"] == "imap"


def test_pop_account_turned_imap_gets_the_autocreate_mailboxes(msgstore: Msgstore) -> None:
    msgstore.add("bob", "--kind", "pop")
    msgstore.ok("account", "modify", "bob", "--kind", "imap")
    names = [m["name"] for m in msgstore.json("mailbox", "list", "bob")]
    assert sorted(names) == ["Drafts", "INBOX", "Junk", "Sent", "Trash"]


def test_account_modify_without_options_is_an_error(msgstore: Msgstore) -> None:
    msgstore.add("bob")
    assert_one_line_error(msgstore("account", "modify", "bob"), 65, "Nothing to change")


def test_passwd_replaces_the_password(msgstore: Msgstore) -> None:
    msgstore.add("bob", password="old password")
    msgstore.real.ok("passwd", "bob", "--password-stdin", stdin="new password\n")
    stored = stored_hash(msgstore.data, "bob")
    assert verify_password("new password", stored).ok
    assert not verify_password("old password", stored).ok


def test_passwd_needs_password_stdin(msgstore: Msgstore) -> None:
    msgstore.add("bob", password="old password")
    assert_one_line_error(msgstore("passwd", "bob", stdin="x\n"), 64, "--password-stdin")
    assert verify_password("old password", stored_hash(msgstore.data, "bob")).ok


@pytest.mark.parametrize(
    "args",
    [
        ("account", "show", "ghost"),
        ("account", "modify", "ghost", "--manager"),
        ("mailbox", "list", "ghost"),
        ("mailbox", "create", "ghost", "Work"),
        ("quota", "show", "ghost"),
        ("quota", "set", "ghost", "--storage", "1M"),
    ],
)
def test_unknown_account_is_nouser(msgstore: Msgstore, args: tuple[str, ...]) -> None:
    """Every command naming an account that does not exist exits 67 and names it."""
    assert_one_line_error(msgstore(*args), 67, "'ghost'")


def test_passwd_for_unknown_account_is_nouser(msgstore: Msgstore) -> None:
    result = msgstore("passwd", "ghost", "--password-stdin", stdin="pw\n")
    assert_one_line_error(result, 67, "'ghost'")

"""``msgstore mailbox list|create|delete|rename``."""

from __future__ import annotations

import pytest

from tests.cli.conftest import Msgstore, assert_one_line_error


@pytest.fixture
def bob(msgstore: Msgstore) -> Msgstore:
    msgstore.with_config("[store.autocreate]\n").add("bob")
    return msgstore


def names(msgstore: Msgstore, *pattern: str) -> list[str]:
    return [m["name"] for m in msgstore.json("mailbox", "list", "bob", *pattern)]


def test_mailbox_list_json_has_counters(bob: Msgstore) -> None:
    """Each mailbox with its special-use, subscription and message counters."""
    bob.ok("deliver", "--to", "bob", stdin=b"Subject: x\r\n\r\nbody\r\n")
    (inbox,) = bob.real.json("mailbox", "list", "bob")
    assert inbox["name"] == "INBOX"
    assert inbox["messages"] == 1
    assert inbox["unseen"] == 1
    assert inbox["size_octets"] == len(b"Subject: x\r\n\r\nbody\r\n")


def test_mailbox_create_with_parents_and_special_use(bob: Msgstore) -> None:
    """Missing parents are created too (RFC 9051 §6.3.4); the attribute is canonicalised."""
    created = bob.json("mailbox", "create", "bob", "Archive/2025", "--special-use", "archive")
    assert created["name"] == "Archive/2025"
    assert created["special_use"] == ["\\Archive"]
    assert names(bob) == ["Archive", "Archive/2025", "INBOX"]


def test_mailbox_list_pattern(bob: Msgstore) -> None:
    """``*`` crosses the delimiter, ``%`` does not (RFC 9051 §6.3.9)."""
    for name in ("Work", "Work/A", "Work/A/Deep", "Private"):
        bob.ok("mailbox", "create", "bob", name)
    assert names(bob, "Work/*") == ["Work/A", "Work/A/Deep"]
    assert names(bob, "Work/%") == ["Work/A"]
    assert names(bob, "%") == ["INBOX", "Private", "Work"]
    assert names(bob, "inbox") == ["INBOX"]


def test_mailbox_list_prints_a_table(bob: Msgstore) -> None:
    bob.ok("mailbox", "create", "bob", "Sent", "--special-use", "\\Sent")
    lines = bob.ok("mailbox", "list", "bob").out.splitlines()
    assert lines[0].split()[0] == "name"
    assert [line.split()[0] for line in lines[1:]] == ["INBOX", "Sent"]
    assert "\\Sent" in lines[2]


def test_mailbox_rename_moves_children(bob: Msgstore) -> None:
    bob.ok("mailbox", "create", "bob", "Work/A")
    bob.ok("mailbox", "rename", "bob", "Work", "Job")
    assert names(bob) == ["INBOX", "Job", "Job/A"]


def test_mailbox_delete(bob: Msgstore) -> None:
    bob.ok("mailbox", "create", "bob", "Old")
    bob.ok("mailbox", "delete", "bob", "Old")
    assert names(bob) == ["INBOX"]


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("../x", "'.' or '..'"),
        ("/x", "starts with the hierarchy delimiter"),
        ("a//b", "empty hierarchy level"),
        ("x/", "ends with the hierarchy delimiter"),
        ("a\x01b", "control character"),
        ("x" * 300, "longer than 255 octets"),
    ],
)
def test_mailbox_create_refuses_bad_names(bob: Msgstore, name: str, reason: str) -> None:
    """A bad name is one line with the reason, EX_DATAERR, and no mailbox appears."""
    assert_one_line_error(bob("mailbox", "create", "bob", name), 65, reason)
    assert names(bob) == ["INBOX"]


def test_mailbox_create_refuses_an_unknown_special_use(bob: Msgstore) -> None:
    result = bob("mailbox", "create", "bob", "X", "--special-use", "\\Spam")
    assert_one_line_error(result, 65, "special-use")
    assert names(bob) == ["INBOX"]


def test_mailbox_create_existing_is_cantcreat(bob: Msgstore) -> None:
    bob.ok("mailbox", "create", "bob", "Work")
    assert bob("mailbox", "create", "bob", "Work").code == 73


def test_mailbox_delete_inbox_and_parents_are_refused(bob: Msgstore) -> None:
    """INBOX cannot go (NOT_POSSIBLE); a mailbox with children cannot go (HAS_CHILDREN)."""
    bob.ok("mailbox", "create", "bob", "Work/A")
    assert bob("mailbox", "delete", "bob", "INBOX").code == 65
    assert bob("mailbox", "delete", "bob", "Work").code == 65
    assert names(bob) == ["INBOX", "Work", "Work/A"]


def test_mailbox_delete_or_rename_of_a_missing_mailbox_is_67(bob: Msgstore) -> None:
    assert bob("mailbox", "delete", "bob", "Nope").code == 67
    assert bob("mailbox", "rename", "bob", "Nope", "Other").code == 67


def test_pop_account_has_inbox_only(msgstore: Msgstore) -> None:
    """Creating a folder in a pop account is refused (NOT_POSSIBLE -> 65)."""
    msgstore.add("popper", "--kind", "pop")
    result = msgstore("mailbox", "create", "popper", "Work")
    assert_one_line_error(result, 65, "pop account")
    assert [m["name"] for m in msgstore.json("mailbox", "list", "popper")] == ["INBOX"]

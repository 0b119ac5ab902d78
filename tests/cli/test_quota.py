"""``msgstore quota set|show``."""

from __future__ import annotations

from tests.cli.conftest import MESSAGE, Msgstore, assert_one_line_error


def test_quota_show_reports_limits_and_usage(msgstore: Msgstore) -> None:
    msgstore.add("bob", "--quota", "1M", "--messages", "100")
    msgstore.ok("deliver", "--to", "bob", stdin=MESSAGE)
    quota = msgstore.real.json("quota", "show", "bob")
    assert quota == {
        "account": "bob",
        "storage_limit_kib": 1024,
        "storage_used_kib": 1,
        "storage_used_octets": len(MESSAGE),
        "message_limit": 100,
        "messages_used": 1,
    }
    text = msgstore.ok("quota", "show", "bob").out.splitlines()
    assert text[0].split() == ["account:", "bob"]
    assert text[1].split() == ["storage_limit_kib:", "1024"]


def test_quota_set_changes_only_what_is_given(msgstore: Msgstore) -> None:
    """--storage alone keeps the message limit and vice versa; sizes are binary units."""
    msgstore.add("bob", "--messages", "7")
    quota = msgstore.json("quota", "set", "bob", "--storage", "1G")
    assert (quota["storage_limit_kib"], quota["message_limit"]) == (1024 * 1024, 7)
    quota = msgstore.json("quota", "set", "bob", "--messages", "50")
    assert (quota["storage_limit_kib"], quota["message_limit"]) == (1024 * 1024, 50)
    shown = msgstore.json("quota", "show", "bob")
    assert (shown["storage_limit_kib"], shown["message_limit"]) == (1024 * 1024, 50)


def test_quota_set_unlimited_and_zero_clear_a_limit(msgstore: Msgstore) -> None:
    msgstore.add("bob", "--quota", "10M", "--messages", "10")
    msgstore.ok("quota", "set", "bob", "--storage", "unlimited", "--messages", "0")
    shown = msgstore.json("quota", "show", "bob")
    assert (shown["storage_limit_kib"], shown["message_limit"]) == (None, None)


def test_quota_set_rounds_octets_up_to_kib(msgstore: Msgstore) -> None:
    """RFC 9208 STORAGE is in KiB; 1500 octets becomes 2 KiB, never less than asked."""
    msgstore.add("bob")
    assert msgstore.json("quota", "set", "bob", "--storage", "1500")["storage_limit_kib"] == 2


def test_quota_set_refuses_bad_values(msgstore: Msgstore) -> None:
    """A bad size or count is one line (65) and the limits stay as they were."""
    msgstore.add("bob", "--quota", "5M", "--messages", "5")
    assert_one_line_error(msgstore("quota", "set", "bob", "--storage", "12X"), 65, "12X")
    assert_one_line_error(msgstore("quota", "set", "bob", "--messages", "-3"), 65, "-3")
    assert_one_line_error(msgstore("quota", "set", "bob"), 65, "Nothing to change")
    shown = msgstore.json("quota", "show", "bob")
    assert (shown["storage_limit_kib"], shown["message_limit"]) == (5 * 1024, 5)

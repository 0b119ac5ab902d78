"""``msgstore demo``: what ``make run`` calls on every start."""

from __future__ import annotations

import re

from msgstore.auth.passwords import verify_password
from tests.cli.conftest import Msgstore
from tests.cli.test_account import stored_hash


def test_demo_creates_the_store_account_and_welcome_message(msgstore: Msgstore) -> None:
    """On a new data directory: the store, account "demo" with a printed random password,
    and one welcome message in its INBOX."""
    assert not msgstore.data.exists()
    result = msgstore.real.ok("demo")
    match = re.fullmatch(r"demo account: demo / (\S+)\n", result.out)
    assert match is not None, result
    assert verify_password(match.group(1), stored_hash(msgstore.data, "demo")).ok
    (inbox,) = msgstore.json("mailbox", "list", "demo", "INBOX")
    assert inbox["messages"] == 1


def test_demo_is_idempotent(msgstore: Msgstore) -> None:
    """A second run says the account exists and changes nothing: same password, one
    message."""
    first = msgstore.ok("demo").out
    password = first.rsplit(" / ", 1)[1].strip()
    before = stored_hash(msgstore.data, "demo")
    second = msgstore.ok("demo")
    assert second.out == "demo account: demo exists (password unchanged)\n"
    assert stored_hash(msgstore.data, "demo") == before
    assert verify_password(password, before).ok
    (inbox,) = msgstore.json("mailbox", "list", "demo", "INBOX")
    assert inbox["messages"] == 1


def test_demo_passwords_differ_between_stores(msgstore: Msgstore) -> None:
    other = Msgstore(data=msgstore.cwd / "other", cwd=msgstore.cwd)
    assert msgstore.ok("demo").out != other.ok("demo").out

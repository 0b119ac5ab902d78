"""``msgstore deliver``: the local delivery agent and its sysexits codes."""

from __future__ import annotations

from pathlib import Path

from tests.cli.conftest import MESSAGE, Msgstore, assert_one_line_error, tree_of


def message_files(msgstore: Msgstore, account: str) -> list[Path]:
    """Every stored message file of an account (``<tree>/mail/<mailbox-id>/<uid>``)."""
    tree = tree_of(msgstore, account)
    assert tree.is_dir()
    return sorted(p for p in (tree / "mail").rglob("*") if p.is_file())


def inbox_count(msgstore: Msgstore, account: str) -> int:
    (inbox,) = msgstore.json("mailbox", "list", account, "INBOX")
    return int(inbox["messages"])


def test_deliver_stores_the_message_in_inbox(msgstore: Msgstore) -> None:
    """Exit 0, nothing printed, the bytes stored exactly (already CRLF). A real process, as
    the MTA runs it."""
    msgstore.add("bob")
    result = msgstore.real.deliver("bob")
    assert (result.code, result.out, result.err) == (0, "", "")
    (stored,) = message_files(msgstore, "bob")
    assert stored.read_bytes() == MESSAGE


def test_deliver_normalises_line_endings(msgstore: Msgstore) -> None:
    msgstore.add("bob")
    assert msgstore.deliver("bob", message=b"Subject: lf\n\nbare LF\n").code == 0
    (stored,) = message_files(msgstore, "bob")
    assert stored.read_bytes() == b"Subject: lf\r\n\r\nbare LF\r\n"


def test_deliver_accepts_an_address_by_its_local_part(msgstore: Msgstore) -> None:
    msgstore.add("bob")
    assert msgstore.deliver("bob@example.org").code == 0
    assert inbox_count(msgstore, "bob") == 1


def test_deliver_into_an_existing_mailbox(msgstore: Msgstore) -> None:
    msgstore.add("bob")
    msgstore.ok("mailbox", "create", "bob", "Lists")
    assert msgstore.deliver("bob", options=["--mailbox", "Lists"]).code == 0
    counts = {m["name"]: m["messages"] for m in msgstore.json("mailbox", "list", "bob")}
    assert counts["Lists"] == 1
    assert counts["INBOX"] == 0


def test_deliver_to_a_missing_mailbox_falls_back_to_inbox(msgstore: Msgstore) -> None:
    """Like Dovecot's lda_mailbox_autocreate=no: mail is never refused for a folder."""
    msgstore.add("bob")
    assert msgstore.deliver("bob", options=["--mailbox", "Nope"]).code == 0
    assert msgstore.deliver("bob", options=["--mailbox", "../bad"]).code == 0
    assert inbox_count(msgstore, "bob") == 2
    assert "Nope" not in [m["name"] for m in msgstore.json("mailbox", "list", "bob")]


def test_deliver_to_an_unknown_user_is_67(msgstore: Msgstore) -> None:
    assert_one_line_error(msgstore.deliver("ghost"), 67, "ghost")


def test_deliver_to_an_account_that_does_not_receive_is_77(msgstore: Msgstore) -> None:
    msgstore.add("bob")
    msgstore.ok("account", "modify", "bob", "--disable-receive")
    assert_one_line_error(msgstore.deliver("bob"), 77, "bob")
    assert inbox_count(msgstore, "bob") == 0
    msgstore.ok("account", "modify", "bob", "--enable-receive")
    assert msgstore.deliver("bob").code == 0


def test_deliver_over_quota_is_73_and_usage_is_unchanged(msgstore: Msgstore) -> None:
    """A message that would pass the storage limit is refused; usage stays as it was."""
    msgstore.add("bob", "--quota", "1K")
    assert msgstore.deliver("bob", message=b"Subject: small\r\n\r\nfits\r\n").code == 0
    before = msgstore.json("quota", "show", "bob")
    big = b"Subject: big\r\n\r\n" + b"x" * 1000 + b"\r\n"
    assert_one_line_error(msgstore.deliver("bob", message=big), 73, "bob", "Quota exceeded")
    assert msgstore.json("quota", "show", "bob") == before


def test_deliver_over_message_limit_is_73(msgstore: Msgstore) -> None:
    msgstore.add("bob", "--messages", "1")
    assert msgstore.deliver("bob").code == 0
    assert_one_line_error(msgstore.deliver("bob"), 73, "message count")
    assert inbox_count(msgstore, "bob") == 1


def test_deliver_bigger_than_max_message_size_is_65(msgstore: Msgstore) -> None:
    """[store] max_message_size caps a message: EX_DATAERR, nothing stored, no temp file."""
    store = msgstore.with_config('[store]\nmax_message_size = "1K"\n')
    store.add("bob")
    big = b"Subject: big\r\n\r\n" + b"y" * 2000 + b"\r\n"
    assert_one_line_error(store.deliver("bob", message=big), 65, "bob")
    assert message_files(store, "bob") == []
    assert store.json("quota", "show", "bob")["messages_used"] == 0
    tmp = store.data / "tmp"
    assert not tmp.exists() or not [p for p in tmp.rglob("*") if p.is_file()]


def test_deliver_an_empty_message_is_65(msgstore: Msgstore) -> None:
    msgstore.add("bob")
    assert_one_line_error(msgstore.deliver("bob", message=b""), 65, "empty")
    assert inbox_count(msgstore, "bob") == 0


def test_deliver_to_three_users_stores_one_file(msgstore: Msgstore) -> None:
    """Fan-out: one file hard-linked into each tree (same inode, link count 3)."""
    for user in ("ann", "bob", "cat"):
        msgstore.add(user)
    assert msgstore.deliver("ann", "bob", "cat").code == 0
    files = [f for user in ("ann", "bob", "cat") for f in message_files(msgstore, user)]
    assert len(files) == 3
    inodes = {(f.stat().st_dev, f.stat().st_ino) for f in files}
    assert len(inodes) == 1
    assert files[0].stat().st_nlink == 3


def test_deliver_to_the_same_user_twice_stores_once(msgstore: Msgstore) -> None:
    msgstore.add("bob")
    assert msgstore.deliver("bob", "BOB", "bob@example.org").code == 0
    assert inbox_count(msgstore, "bob") == 1


def test_deliver_with_several_recipients_the_worst_outcome_decides(msgstore: Msgstore) -> None:
    """Good recipients get the message; each failure is one stderr line naming its
    recipient; over quota (73) outranks unknown user (67)."""
    msgstore.add("ann")
    msgstore.add("full", "--messages", "1")
    assert msgstore.deliver("full").code == 0
    result = msgstore.deliver("ann", "ghost", "full")
    assert result.code == 73
    lines = result.err.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("msgstore: ghost: ")
    assert lines[1].startswith("msgstore: full: ")
    assert inbox_count(msgstore, "ann") == 1


def test_deliver_with_an_unknown_and_a_good_recipient_is_67(msgstore: Msgstore) -> None:
    msgstore.add("ann")
    result = msgstore.deliver("ghost", "ann")
    assert_one_line_error(result, 67, "ghost")
    assert inbox_count(msgstore, "ann") == 1


def test_deliver_streams_a_large_message(msgstore: Msgstore) -> None:
    """Several MiB arrive through a pipe in many chunks and are stored whole."""
    msgstore.add("bob")
    line = b"0123456789" * 7 + b"\r\n"
    body = line * (6 * 1024 * 1024 // len(line))
    message = b"Subject: large\r\n\r\n" + body
    assert msgstore.real.deliver("bob", message=message).code == 0
    (stored,) = message_files(msgstore, "bob")
    assert stored.stat().st_size == len(message)


def test_deliver_when_the_store_cannot_be_opened_is_75(msgstore: Msgstore) -> None:
    """A store that cannot be opened is a temporary failure: the MTA keeps the message.

    (The tests run as root, so a read-only directory would not stop the store; a file where
    the store needs a directory does.)
    """
    msgstore.data.mkdir()
    (msgstore.data / "users").write_text("a file where the store needs a directory\n")
    assert_one_line_error(msgstore.real.deliver("bob"), 75, "temporary failure")


def test_deliver_with_a_broken_configuration_is_75(msgstore: Msgstore) -> None:
    """A configuration error must not bounce mail (Postfix treats 78 as permanent)."""
    store = msgstore.with_config('[store]\nmax_message_size = "5X"\n')
    assert_one_line_error(store.real.deliver("bob"), 75, "configuration")


def test_deliver_needs_a_recipient(msgstore: Msgstore) -> None:
    """--to is required: a click usage error (2)."""
    assert msgstore("deliver", stdin=MESSAGE).code == 2


def test_deliver_twice_gives_increasing_uids(msgstore: Msgstore) -> None:
    msgstore.add("bob")
    assert msgstore.deliver("bob").code == 0
    assert msgstore.deliver("bob").code == 0
    assert [f.name for f in message_files(msgstore, "bob")] == ["1", "2"]


# --- the envelope sender (--from / -f) ---------------------------------------------------------


def test_deliver_from_is_the_return_path_of_the_stored_copy(msgstore: Msgstore) -> None:
    msgstore.add("bob")
    result = msgstore.deliver("bob", options=["--from", "Alice@Example.ORG"])
    assert (result.code, result.out, result.err) == (0, "", "")
    assert msgstore.deliver("bob", options=["-f", "MAILER-DAEMON"]).code == 0
    assert msgstore.deliver("bob", options=["-f", ""]).code == 0
    stored = [p.read_bytes() for p in message_files(msgstore, "bob")]
    assert sorted(stored) == sorted(
        [
            b"Return-Path: <Alice@example.org>\r\n" + MESSAGE,  # the domain in lower case
            b"Return-Path: <>\r\n" + MESSAGE,
            b"Return-Path: <>\r\n" + MESSAGE,
        ]
    )


def test_deliver_from_that_is_not_an_address_is_64_and_stores_nothing(msgstore: Msgstore) -> None:
    msgstore.add("bob")
    for bad in ("not an address", "root"):
        assert_one_line_error(msgstore.deliver("bob", options=["--from", bad]), 64, "--from")
    assert inbox_count(msgstore, "bob") == 0


def test_deliver_from_is_the_sender_of_forwarded_copies(msgstore: Msgstore) -> None:
    """The queued copy has the --from sender and no Return-Path (a final-delivery field)."""
    store = msgstore.with_config('[delivery]\ndomains = ["example.org"]\n')
    store.add("bob")
    store.ok("forward", "add", "bob", "bob@elsewhere.example.net", "--keep-copy")
    assert store.deliver("bob", options=["-f", "origin@example.com"]).code == 0
    (entry,) = store.json("queue", "list")
    assert entry["sender"] == "origin@example.com"
    shown = store.json("queue", "show", str(entry["queue_id"]))
    assert shown["headers"].startswith("Delivered-To: bob@example.org\r\n")
    assert "Return-Path" not in shown["headers"]
    (stored,) = message_files(store, "bob")
    assert stored.read_bytes().startswith(b"Return-Path: <origin@example.com>\r\n")

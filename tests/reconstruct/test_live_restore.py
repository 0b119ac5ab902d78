"""RELIABILITY.md §7 case 38: restore an old copy of a user's tree while ``msgstore serve``
runs, then ``msgstore reconstruct --new-uidvalidity`` while it still runs.

A client that had the mailbox selected must never be shown other messages under UIDs it
knows: it is disconnected (BYE) or told EXPUNGE/EXISTS. A new connection sees exactly the
restored messages, byte for byte, under a new UIDVALIDITY.
"""

from __future__ import annotations

import contextlib
import imaplib
import shutil
from pathlib import Path

from tests.conversations.harness import MsgstoreServer, message
from tests.imap_server.conftest import connect
from tests.reconstruct.conftest import msgstore
from tests.storage.helpers.store import account_dir


def _uidvalidity(client: imaplib.IMAP4) -> int:
    typ, data = client.response("UIDVALIDITY")
    assert typ == "UIDVALIDITY"
    assert data[0] is not None
    return int(data[0])


def test_restored_tree_reintegrated_while_serving(tmp_path: Path) -> None:
    server = MsgstoreServer.start(tmp_path / "srv", services=("imap",))
    try:
        user = server.admin.add_user("alice")
        old = [message(f"old {i}") for i in range(3)]
        for data in old:
            server.admin.deliver(user.name, data)
        account = server.admin.call(server.admin.backend.get_account(user.name))
        tree = account_dir(server.data_dir, account.id)
        # The backup: a copy of the tree taken now (index checkpointed by a fresh reconstruct
        # check, which also shows the copy is consistent).
        backup = tmp_path / "backup"
        assert msgstore(server.data_dir, "reconstruct", user.name, "--check").code == 0
        shutil.copytree(tree, backup)
        for i in range(3):
            server.admin.deliver(user.name, message(f"new {i}"))

        client = connect(server, user)
        typ, exists = client.select("INBOX")
        assert typ == "OK"
        assert exists == [b"6"]
        before = _uidvalidity(client)
        client.store("1", "+FLAGS", "(\\Flagged)")

        # Restore: the old copy replaces the tree (copied beside it, renamed into place).
        staging = tree.with_name(tree.name + ".restore")
        shutil.copytree(backup, staging)
        tree.rename(tree.with_name(tree.name + ".gone"))
        staging.rename(tree)
        result = msgstore(server.data_dir, "reconstruct", user.name, "--new-uidvalidity")
        assert result.code == 0, result

        # The connected client: BYE, never the restored messages under the UIDs it knows.
        try:
            client.noop()
            untagged = client.untagged_responses
            assert "BYE" in untagged or "EXPUNGE" in untagged, untagged
        except imaplib.IMAP4.abort:
            pass
        with contextlib.suppress(imaplib.IMAP4.error, OSError):
            client.logout()

        fresh = connect(server, user)
        typ, exists = fresh.select("INBOX")
        assert typ == "OK"
        assert exists == [b"3"]
        assert _uidvalidity(fresh) != before
        typ, fetched = fresh.uid("FETCH", "1:*", "(BODY.PEEK[])")
        assert typ == "OK"
        bodies = [part[1] for part in fetched if isinstance(part, tuple)]
        assert bodies == old
        fresh.logout()
        assert msgstore(server.data_dir, "reconstruct", user.name, "--check").code == 0
    finally:
        server.stop()


def test_backup_with_an_older_index_restored_while_serving(tmp_path: Path) -> None:
    """A backup copied while mail arrived: its index.db is older than its files. The running
    server reopens the restored index (recovery) before anyone runs reconstruct; the newer
    files must survive that, and reconstruct brings them back."""
    server = MsgstoreServer.start(tmp_path / "srv", services=("imap",))
    try:
        user = server.admin.add_user("alice")
        first = [message(f"first {i}") for i in range(3)]
        for data in first:
            server.admin.deliver(user.name, data)
        account = server.admin.call(server.admin.backend.get_account(user.name))
        tree = account_dir(server.data_dir, account.id)
        assert msgstore(server.data_dir, "reconstruct", user.name, "--check").code == 0
        backup = tmp_path / "backup"
        backup.mkdir()
        shutil.copy2(tree / "index.db", backup / "index.db")  # the index first ...
        later = [message(f"later {i}") for i in range(2)]
        for data in later:
            server.admin.deliver(user.name, data)
        shutil.copytree(tree / "mail", backup / "mail")  # ... the files after more mail came
        server.admin.deliver(user.name, message("after the backup"))

        client = connect(server, user)
        assert client.select("INBOX") == ("OK", [b"6"])
        staging = tree.with_name(tree.name + ".restore")
        shutil.copytree(backup, staging)
        tree.rename(tree.with_name(tree.name + ".gone"))
        staging.rename(tree)
        # The server notices the new index and reopens it: recovery runs before reconstruct.
        with contextlib.suppress(imaplib.IMAP4.error, imaplib.IMAP4.abort, OSError):
            client.noop()
        # At least the two later files are above the copied index's UIDNEXT (more if the copy
        # missed commits still in the WAL): moved aside, not deleted.
        assert len(list((tree / "orphans").iterdir())) >= 2, "newer files were not kept"

        result = msgstore(server.data_dir, "reconstruct", user.name, "--new-uidvalidity")
        assert result.code == 0, result
        with contextlib.suppress(imaplib.IMAP4.error, imaplib.IMAP4.abort, OSError):
            client.noop()
            client.logout()
        with contextlib.suppress(OSError):
            client.shutdown()
        fresh = connect(server, user)
        typ, exists = fresh.select("INBOX")
        assert (typ, exists) == ("OK", [b"5"])
        typ, fetched = fresh.uid("FETCH", "1:*", "(BODY.PEEK[])")
        assert typ == "OK"
        bodies = [part[1] for part in fetched if isinstance(part, tuple)]
        assert sorted(bodies) == sorted(first + later)
        fresh.logout()
        assert msgstore(server.data_dir, "reconstruct", user.name, "--check").code == 0
    finally:
        server.stop()

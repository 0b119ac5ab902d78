"""ACL enforcement, the sharing policy, shared and public folders (RELIABILITY.md §7 cases
23 and 24; issue 3 "Public folders").

The matrix: for every right of RFC 4314 (``l r s w i p k x t e a``) a user holds every right
on an owner's folder except that one, and each command needing it is answered NO [NOPERM]
(or, for STORE, changes nothing, as RFC 4314 §4 asks); without ``l`` the folder answers
exactly like a missing one everywhere. ``p`` (post) has no IMAP command.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from msgstore.management.accounts import AccountModify
from tests.conversations.harness import LineClient, MsgstoreServer, User, message
from tests.imap_clients.conftest import client, exchange, raw

ALL_RIGHTS = "lrswipkxtea"


def reply(conn: LineClient, command: bytes) -> bytes:
    """The tagged reply of ``command``, from its status word on (``NO [NOPERM] ...``)."""
    return exchange(conn, b"t", command)[-1].removeprefix(b"t ")


def literal(text: bytes) -> bytes:
    return b"{%d+}\r\n" % len(text) + text


@dataclass
class Share:
    owner: User
    victim: User
    owner_conn: LineClient
    conn: LineClient

    def folder(self, name: str, rights: str) -> bytes:
        """Create ``name`` with two messages, grant the victim ``rights``; the victim's name
        for it."""
        assert reply(self.owner_conn, b"CREATE " + name.encode()).startswith(b"OK")
        for n in range(2):
            body = message(f"m{n}")
            cmd = b"APPEND " + name.encode() + b" " + literal(body)
            assert reply(self.owner_conn, cmd).startswith(b"OK")
        cmd = f'SETACL {name} {self.victim.name} "{rights}"'.encode()
        assert reply(self.owner_conn, cmd).startswith(b"OK")
        return f'"Other Users/{self.owner.name}/{name}"'.encode()

    def owner_flags(self, name: str) -> list[bytes]:
        exchange(self.owner_conn, b"x", b"EXAMINE " + name.encode())
        lines = exchange(self.owner_conn, b"f", b"FETCH 1:* (FLAGS)")
        exchange(self.owner_conn, b"u", b"UNSELECT")
        return [line.replace(b" \\Recent", b"").replace(b"\\Recent", b"") for line in lines]


@pytest.fixture
def share(clients_server: MsgstoreServer) -> Iterator[Share]:
    owner = clients_server.admin.add_user("owner")
    victim = clients_server.admin.add_user("victim")
    with raw(clients_server, owner) as oc, raw(clients_server, victim) as vc:
        yield Share(owner, victim, oc, vc)


NOPERM = b"NO [NOPERM]"


def check_r(s: Share, box: bytes) -> None:
    for cmd in (b"SELECT ", b"EXAMINE ", b"STATUS "):
        tail = b" (MESSAGES)" if cmd == b"STATUS " else b""
        assert reply(s.conn, cmd + box + tail).startswith(NOPERM), cmd


def _store_unchanged(flag: bytes) -> Callable[[Share, bytes], None]:
    def check(s: Share, box: bytes) -> None:
        name = box.decode().strip('"').rsplit("/", 1)[1]
        before = s.owner_flags(name)
        assert reply(s.conn, b"SELECT " + box).startswith(b"OK")
        assert reply(s.conn, b"STORE 1:* +FLAGS (" + flag + b")").startswith(b"OK")
        if flag == b"\\Seen":
            exchange(s.conn, b"b", b"FETCH 1 BODY[]")  # would set \Seen with "s"
        assert s.owner_flags(name) == before
        exchange(s.conn, b"u", b"UNSELECT")

    return check


def check_i(s: Share, box: bytes) -> None:
    assert reply(s.conn, b"APPEND " + box + b" " + literal(message("x"))).startswith(NOPERM)
    assert reply(s.conn, b"SELECT INBOX").startswith(b"OK")
    exchange(s.conn, b"a", b"APPEND INBOX " + literal(message("mine")))
    exchange(s.conn, b"n", b"NOOP")
    assert reply(s.conn, b"COPY 1 " + box).startswith(NOPERM)
    assert reply(s.conn, b"MOVE 1 " + box).startswith(NOPERM)
    exchange(s.conn, b"u", b"UNSELECT")


def check_k(s: Share, box: bytes) -> None:
    child = box[:-1] + b'/child"'
    assert reply(s.conn, b"CREATE " + child).startswith(NOPERM)


def check_x(s: Share, box: bytes) -> None:
    assert reply(s.conn, b"DELETE " + box).startswith(NOPERM)
    assert reply(s.conn, b"RENAME " + box + b" " + box[:-1] + b'2"').startswith(NOPERM)


def check_t(s: Share, box: bytes) -> None:
    _store_unchanged(b"\\Deleted")(s, box)
    assert reply(s.conn, b"SELECT " + box).startswith(b"OK")
    assert reply(s.conn, b"MOVE 1 INBOX").startswith(NOPERM)
    exchange(s.conn, b"u", b"UNSELECT")


def check_e(s: Share, box: bytes) -> None:
    assert reply(s.conn, b"SELECT " + box).startswith(b"OK")
    assert reply(s.conn, b"STORE 1 +FLAGS (\\Deleted)").startswith(b"OK")
    assert reply(s.conn, b"EXPUNGE").startswith(NOPERM)
    assert reply(s.conn, b"UID EXPUNGE 1").startswith(NOPERM)
    assert reply(s.conn, b"MOVE 1 INBOX").startswith(NOPERM)
    assert reply(s.conn, b"CLOSE").startswith(b"OK")  # CLOSE expunges silently, or not
    status = exchange(s.conn, b"s", b"STATUS " + box + b" (MESSAGES)")
    assert b"(MESSAGES 2)" in status[0]


def check_a(s: Share, box: bytes) -> None:
    for cmd in (
        b"GETACL " + box,
        b"SETACL " + box + b" " + s.victim.name.encode() + b" +a",
        b"DELETEACL " + box + b" " + s.victim.name.encode(),
        b"LISTRIGHTS " + box + b" anyone",
    ):
        assert reply(s.conn, cmd).startswith(NOPERM), cmd
    myrights = exchange(s.conn, b"m", b"MYRIGHTS " + box)
    assert myrights[0].split()[-1].startswith(b"lrswipkxte"), myrights  # + obsolete "cd"


def check_p(s: Share, box: bytes) -> None:
    """``p`` (post to the submission address) has no IMAP command: everything works."""
    assert reply(s.conn, b"SELECT " + box).startswith(b"OK")
    assert reply(s.conn, b"APPEND " + box + b" " + literal(message("ok"))).startswith(b"OK")
    exchange(s.conn, b"u", b"UNSELECT")


def invisible(s: Share, box: bytes, missing: bytes) -> None:
    """Without ``l`` the folder answers exactly like ``missing`` (which does not exist)."""

    def answers(name: bytes) -> list[bytes]:
        return [
            reply(s.conn, b"SELECT " + name),
            reply(s.conn, b"EXAMINE " + name),
            reply(s.conn, b"STATUS " + name + b" (MESSAGES)"),
            reply(s.conn, b"GETQUOTAROOT " + name),
            reply(s.conn, b"MYRIGHTS " + name),
            reply(s.conn, b"GETACL " + name),
            reply(s.conn, b"DELETE " + name),
            reply(s.conn, b"APPEND " + name + b" " + literal(message("x"))),
            reply(s.conn, b"SUBSCRIBE " + name),
        ]

    assert answers(box) == answers(missing)
    # APPEND says TRYCREATE for a missing mailbox (RFC 9051 §6.3.12): the same for both.
    bad = [a for a in answers(box) if not a.startswith((b"NO [NONEXISTENT]", b"NO [TRYCREATE]"))]
    assert not bad, bad
    owner = s.owner.name.encode()
    for cmd in (b'LIST "" *', b'LIST "" "Other Users/*"', b'LIST "Other Users/" %', b'LSUB "" *'):
        assert not any(owner in line for line in exchange(s.conn, b"l", cmd)), cmd
    namespace = exchange(s.conn, b"n", b"NAMESPACE")
    assert not any(owner in line for line in namespace)


CHECKS: dict[str, Callable[[Share, bytes], None]] = {
    "r": check_r,
    "s": _store_unchanged(b"\\Seen"),
    "w": _store_unchanged(b"$Work \\Flagged"),
    "i": check_i,
    "p": check_p,
    "k": check_k,
    "x": check_x,
    "t": check_t,
    "e": check_e,
    "a": check_a,
}


@pytest.mark.parametrize("right", list(ALL_RIGHTS))
def test_acl_matrix_lacking_one_right(share: Share, right: str) -> None:
    rights = ALL_RIGHTS.replace(right, "")
    box = share.folder(f"lacks-{right}", rights)
    if right == "l":
        missing = f'"Other Users/{share.owner.name}/no-such-folder"'.encode()
        invisible(share, box, missing)
        return
    CHECKS[right](share, box)
    # The owner's right to do the same is never in question (RFC 4314 §2: the owner keeps a).
    owner_rights = exchange(share.owner_conn, b"m", f"MYRIGHTS lacks-{right}".encode())
    assert owner_rights[0].split()[-1].startswith(ALL_RIGHTS.encode()), owner_rights


def test_lsub_of_a_folder_that_lost_l_looks_like_a_deleted_one(share: Share) -> None:
    """A subscription is the subscriber's own data; after ``l`` is revoked LSUB shows the
    same ``\\Noselect`` entry it shows for a subscribed folder that was deleted."""
    box = share.folder("was-visible", "lr")
    gone = share.folder("was-deleted", "lr")
    assert reply(share.conn, b"SUBSCRIBE " + box).startswith(b"OK")
    assert reply(share.conn, b"SUBSCRIBE " + gone).startswith(b"OK")
    assert reply(share.owner_conn, b"DELETE was-deleted").startswith(b"OK")
    cmd = f"SETACL was-visible {share.victim.name} r".encode()
    assert reply(share.owner_conn, cmd).startswith(b"OK")
    lines = exchange(share.conn, b"l", b'LSUB "" "Other Users/*"')[:-1]
    attrs = sorted(line.split(b")")[0] for line in lines)
    assert len(lines) == 2, lines
    assert attrs[0] == attrs[1], lines


def test_negative_rights_override_anyone(share: Share) -> None:
    """``-victim lr`` removes what ``anyone lr`` grants, for the victim only."""
    box = share.folder("neg", "")
    for cmd in (b"SETACL neg anyone lr", b"SETACL neg -" + share.victim.name.encode() + b" l"):
        assert reply(share.owner_conn, cmd).startswith(b"OK")
    assert reply(share.conn, b"STATUS " + box + b" (MESSAGES)").startswith(b"NO [NONEXISTENT]")


@pytest.fixture(scope="module")
def no_anyone_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MsgstoreServer]:
    server = MsgstoreServer.start(
        tmp_path_factory.mktemp("no-anyone"),
        services=("imap",),
        config={"acl.allow_anyone": False},
    )
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.parametrize(
    "identifier",
    [b"anyone", b"ANYONE", b'"Anyone"', b"{6+}\r\nanyone", b"-anyone", b"authenticated"],
)
def test_sharing_with_anyone_can_be_disabled(
    no_anyone_server: MsgstoreServer, identifier: bytes
) -> None:
    """RELIABILITY.md §7 case 24 (Dovecot CVE-2026-40020): with ``[acl] allow_anyone =
    false`` no spelling of ``anyone`` gets through SETACL; sharing with a named user still
    does, and nothing was stored for ``anyone``."""
    user = no_anyone_server.admin.add_user("sharer")
    friend = no_anyone_server.admin.add_user("friend")
    with raw(no_anyone_server, user) as conn:
        assert reply(conn, b"CREATE project").startswith(b"OK")
        assert reply(conn, b"SETACL project " + identifier + b" lr").startswith(NOPERM)
        assert reply(conn, b"SETACL project " + friend.name.encode() + b" lr").startswith(b"OK")
        acl = exchange(conn, b"g", b"GETACL project")[0].lower()
        assert b"anyone" not in acl, acl
        assert b"authenticated" not in acl, acl


def make_manager(server: MsgstoreServer, user: User) -> None:
    server.admin.call(AccountModify(name=user.name, manager=True).run(server.admin.ctx))


def cli_deliver(server: MsgstoreServer, to: str, mailbox: str, body: bytes) -> None:
    config = Path(server.config_path)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "msgstore.cli",
            "--config",
            str(config),
            "deliver",
            "--to",
            to,
            "--mailbox",
            mailbox,
        ],
        input=body,
        capture_output=True,
        timeout=30,
    )
    assert proc.returncode == 0, proc.stderr


def test_public_folder_read_by_many(clients_server: MsgstoreServer) -> None:
    """A manager creates Public/lists/python over IMAP and grants ``anyone lrs``; the list
    is delivered once into it with ``msgstore deliver --to '#public'``; two users read it
    under "Public/". \\Seen is shared: the public folder keeps one set of flags, so what one
    reader marks seen is seen for the other (Dovecot's default without per-user seen)."""
    server = clients_server
    admin = server.admin.add_user("listadmin")
    make_manager(server, admin)
    ann, ben = server.admin.add_user("ann"), server.admin.add_user("ben")
    with client(server, admin) as c:
        c.create_folder("Public/lists/python")
        c.setacl("Public/lists/python", "anyone", "lrs")
        assert (b"anyone", b"lrs") in c.getacl("Public/lists/python")
    for n in range(3):
        cli_deliver(server, "#public", "lists/python", message(f"python-dev digest {n}"))
    with client(server, ann) as a, client(server, ben) as b:
        for c in (a, b):
            names = [name for _, _, name in c.list_folders()]
            assert "Public/lists/python" in names
            assert "Public/lists" in names
            assert c.folder_status("Public/lists/python", ["MESSAGES"])[b"MESSAGES"] == 3
        a.select_folder("Public/lists/python")
        b.select_folder("Public/lists/python")
        subjects = [e[b"ENVELOPE"].subject for e in a.fetch([1, 2, 3], ["ENVELOPE"]).values()]
        assert subjects == [b"python-dev digest 0", b"python-dev digest 1", b"python-dev digest 2"]
        a.fetch([1], ["BODY[]"])  # reading sets \Seen ("s" granted)
        assert b"\\Seen" in a.get_flags([1])[1]
        b.noop()
        assert b"\\Seen" in b.get_flags([1])[1]  # shared \Seen
        a.add_flags([2], [b"\\Flagged"])  # no "w": silently not stored
        assert b"\\Flagged" not in b.get_flags([2])[2]
        with pytest.raises(a.Error, match="NOPERM"):
            a.append("Public/lists/python", message("not allowed"))
        with pytest.raises(a.Error, match="NOPERM"):
            a.create_folder("Public/lists/python/mine")
    with client(server, ann) as a, pytest.raises(a.Error, match="NOPERM"):
        a.create_folder("Public/new-list")


def test_folder_shared_with_one_user(clients_server: MsgstoreServer) -> None:
    """An owner shares one folder with a colleague, who sees it (and its parents as
    \\Noselect) under "Other Users/<owner>/", reads and writes it with the rights granted,
    and loses it again on DELETEACL; a third user sees nothing of it."""
    server = clients_server
    owner, colleague, third = (server.admin.add_user(n) for n in ("boss", "colleague", "third"))
    shared = f"Other Users/{owner.name}/Projects/acme"
    with client(server, owner) as o:
        o.create_folder("Projects/acme")
        o.create_folder("Projects/secret")
        o.append("Projects/acme", message("kick-off"))
        o.setacl("Projects/acme", colleague.name, "lrswi")
    with client(server, colleague) as c, client(server, third) as t:
        listed = {name: flags for flags, _, name in c.list_folders()}
        assert shared in listed
        assert f"Other Users/{owner.name}/Projects/secret" not in listed
        assert b"\\Noselect" in listed[f"Other Users/{owner.name}/Projects"]
        c.select_folder(shared)
        assert c.fetch([1], ["ENVELOPE"])[1][b"ENVELOPE"].subject == b"kick-off"
        c.add_flags([1], [b"\\Answered"])
        c.append(shared, message("reply from colleague"))
        assert c.folder_status(shared, ["MESSAGES"])[b"MESSAGES"] == 2
        assert not any(owner.name in name for _, _, name in t.list_folders())
    with client(server, owner) as o:
        o.select_folder("Projects/acme")
        assert b"\\Answered" in o.get_flags([1])[1]
        assert o._imap.deleteacl("Projects/acme", colleague.name)[0] == "OK"
    with client(server, colleague) as c:
        assert not any(owner.name in name for _, _, name in c.list_folders())
        with pytest.raises(c.Error, match="NONEXISTENT"):
            c.select_folder(shared)

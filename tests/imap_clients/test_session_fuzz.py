"""Session-level fuzzing over a real connection (issue 3 "Bad input", RELIABILITY.md §7 A).

Hypothesis draws short sequences of non-mutating IMAP commands from a grammar-ish strategy
(every state-preserving command with random but plausible arguments) and then byte-mutates
some of them (flips, NUL/CR/LF/8-bit/syntax-character insertions, deletions, truncation,
duplicated spans). After each sequence a ``NOOP`` must get its tagged reply: the session is
alive, or the server said BYE and closed (then the test reconnects). A second, read-only
session compares the account before and after -- STATUS of every mailbox, the UID and flags
of every message, the mailbox list -- which must be unchanged, since nothing sent could
legitimately change it.

Literal announcements (``{``) are left out of the mutations: a framed literal swallowing the
following ``NOOP`` is correct behaviour that would look like a hang; literals have their own
session tests (tests/imap/test_reliability.py and the conversation scripts).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conversations.harness import LineClient, MsgstoreServer, User, message
from tests.imap_clients.conftest import exchange, raw

MAILBOXES = [b"INBOX", b"Keep", b'"Keep/Sub"', b"Nope", b'"Other Users/x/y"', b'"Public/z"', b'""']
SEQS = [b"1", b"1:*", b"*", b"2:3", b"1,3:4", b"$", b"0", b"4294967296", b"*:1"]
FETCH_ITEMS = [
    b"FLAGS",
    b"UID",
    b"(FLAGS UID RFC822.SIZE)",
    b"ENVELOPE",
    b"BODYSTRUCTURE",
    b"BODY.PEEK[]",
    b"BODY.PEEK[HEADER.FIELDS (SUBJECT FROM)]",
    b"BODY.PEEK[1]<0.5>",
    b"BINARY.PEEK[1]",
    b"(INTERNALDATE MODSEQ)",
    b"FAST",
    b"ALL",
]
SEARCH_KEYS = [
    b"ALL",
    b"SEEN",
    b'SUBJECT "hello"',
    b"OR FROM a TO b",
    b"NOT (LARGER 10 SMALLER 5000)",
    b"SINCE 1-Jan-2020",
    b'TEXT "x"',
    b"UID 1:*",
    b"MODSEQ 1",
    b"RETURN (MIN MAX COUNT) ALL",
    b"CHARSET UTF-8 BODY y",
]
STATUS_ITEMS = [b"(MESSAGES)", b"(MESSAGES UIDNEXT UNSEEN)", b"(SIZE HIGHESTMODSEQ)", b"()"]


def _choice(options: list[bytes]) -> st.SearchStrategy[bytes]:
    return st.sampled_from(options)


def _cmd(*parts: st.SearchStrategy[bytes] | bytes) -> st.SearchStrategy[bytes]:
    strategies = [st.just(p) if isinstance(p, bytes) else p for p in parts]
    return st.tuples(*strategies).map(lambda ps: b" ".join(ps))


#: Commands that never change the store (SELECT claims \Recent, which STATUS RECENT would
#: show, so the comparison leaves RECENT out).
commands = st.one_of(
    st.sampled_from(
        [
            b"NOOP",
            b"CAPABILITY",
            b"NAMESPACE",
            b"CHECK",
            b"UNSELECT",
            b"ID NIL",
            b'ID ("name" "fuzz")',
            b"ENABLE CONDSTORE",
            b"ENABLE QRESYNC",
            b"ENABLE IMAP4rev2",
            b'LIST "" *',
            b'LIST "" %',
            b'LIST (SPECIAL-USE) "" *',
            b'LIST "" * RETURN (CHILDREN STATUS (MESSAGES))',
            b'LSUB "" *',
            b"GETQUOTAROOT INBOX",
            b"GETQUOTA Public",
            b"STARTTLS",
            b"DONE",
            b"SEARCH",
        ]
    ),
    _cmd(_choice([b"SELECT", b"EXAMINE"]), _choice(MAILBOXES)),
    _cmd(b"STATUS", _choice(MAILBOXES), _choice(STATUS_ITEMS)),
    _cmd(_choice([b"MYRIGHTS", b"GETACL"]), _choice(MAILBOXES)),
    _cmd(_choice([b"FETCH", b"UID FETCH"]), _choice(SEQS), _choice(FETCH_ITEMS)),
    _cmd(_choice([b"SEARCH", b"UID SEARCH"]), _choice(SEARCH_KEYS)),
    _cmd(b"UID SORT (SUBJECT) UTF-8", _choice(SEARCH_KEYS)),
    _cmd(b"THREAD REFERENCES UTF-8", _choice(SEARCH_KEYS)),
)

INSERTS = [
    b"\x00",
    b"\r",
    b"\n",
    b"\xff",
    b"\xc3",
    b"(",
    b")",
    b'"',
    b"\\",
    b"*",
    b"%",
    b" ",
    b"]",
]


@st.composite
def mutated(draw: st.DrawFn, command: bytes) -> bytes:
    data = bytearray(command)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "insert", "delete", "truncate", "dup"]))
        pos = draw(st.integers(0, len(data)))
        if op == "flip" and pos < len(data):
            data[pos] = draw(st.integers(1, 255))
        elif op == "insert":
            data[pos:pos] = draw(st.sampled_from(INSERTS))
        elif op == "delete" and pos < len(data):
            del data[pos]
        elif op == "truncate":
            del data[pos:]
        elif op == "dup":
            data[pos:pos] = data[max(0, pos - 6) : pos] * draw(st.integers(1, 50))
    return bytes(data).replace(b"{", b"(")


@st.composite
def sessions(draw: st.DrawFn) -> list[bytes]:
    out = []
    for n, command in enumerate(draw(st.lists(commands, min_size=1, max_size=8))):
        line = b"f%d " % n + command
        if draw(st.booleans()):
            line = draw(mutated(line))
        out.append(line)
    return out


class Fuzzed:
    """The fuzzed session (reconnected after a BYE) and the read-only observer."""

    def __init__(self, server: MsgstoreServer, user: User) -> None:
        self.server = server
        self.user = user
        self.conn = raw(server, user)
        self.observer = raw(server, user)
        self.byes = 0

    def __repr__(self) -> str:
        return f"<fuzzed session of {self.user.name}>"

    def reconnect(self) -> None:
        self.conn.close()
        self.conn = raw(self.server, self.user)
        self.byes += 1

    def snapshot(self) -> list[bytes]:
        lines = exchange(self.observer, b"o1", b'LIST "" *')
        for name in (b"INBOX", b"Keep", b"Keep/Sub"):
            lines += exchange(
                self.observer,
                b"o2",
                b"STATUS "
                + name
                + b" (MESSAGES UIDNEXT UIDVALIDITY UNSEEN DELETED SIZE HIGHESTMODSEQ)",
            )
            lines += [
                line
                for line in exchange(self.observer, b"o3", b"EXAMINE " + name)
                if b"RECENT" not in line
            ]
            lines += exchange(self.observer, b"o4", b"FETCH 1:* (UID FLAGS MODSEQ)")
            exchange(self.observer, b"o5", b"UNSELECT")
        # \Recent belongs to whichever session selected first (RFC 3501 §2.3.2): not state.
        return [line.replace(b" \\Recent", b"").replace(b"\\Recent ", b"") for line in lines]

    def close(self) -> None:
        self.conn.close()
        self.observer.close()


@pytest.fixture(scope="module")
def fuzzed(clients_server: MsgstoreServer) -> Iterator[Fuzzed]:
    user = clients_server.admin.add_user("fuzzed")
    for n in range(4):
        clients_server.admin.deliver(user.name, message(f"hello {n}", f"x y body {n}\r\n"))
    session = Fuzzed(clients_server, user)
    exchange(session.conn, b"c1", b"CREATE Keep/Sub")
    exchange(session.conn, b"c2", b"STORE 1 +FLAGS (\\Seen)")  # BAD: nothing selected yet
    try:
        yield session
    finally:
        session.close()


def alive(f: Fuzzed, lines_sent: int = 0) -> bool:
    """NOOP answered (True), or the server closed after BYE (False). Fails on a hang.

    After ``[imap] max_bad_commands`` (10) BAD lines the server says BYE and closes with our
    NOOP unread, so the kernel may send RST and the BYE be lost: a close without BYE is
    accepted only when at least that many lines were sent."""
    f.conn.send(b"zz NOOP\r\n")
    saw_bye = False
    while True:
        try:
            line = f.conn.read_line()
        except TimeoutError:
            raise AssertionError("session hung: no reply to NOOP within the timeout") from None
        if line is None:
            assert saw_bye or lines_sent >= 10, "connection closed without BYE"
            return False
        assert not line.startswith(b"+ "), line  # nothing may wait for a continuation
        assert b"Traceback" not in line, line
        assert b"Internal" not in line, line
        if line.startswith(b"* BYE"):
            saw_bye = True
        if line.startswith(b"zz "):
            assert line.startswith(b"zz OK"), line
            return True


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(lines=sessions())
def test_fuzzed_session_stays_alive_and_store_unchanged(
    fuzzed: Fuzzed, lines: list[bytes]
) -> None:
    before = fuzzed.snapshot()
    data = b"".join(line + b"\r\n" for line in lines)
    fuzzed.conn.send(data)
    if not alive(fuzzed, data.count(b"\n") + data.count(b"\r")):
        fuzzed.reconnect()
        assert alive(fuzzed)
    assert fuzzed.snapshot() == before


def test_server_still_serves_other_sessions(clients_server: MsgstoreServer) -> None:
    """Run after the fuzzing: a fresh session works normally."""
    user = clients_server.admin.add_user("after")
    conn: LineClient = raw(clients_server, user)
    with conn:
        assert exchange(conn, b"a", b"SELECT INBOX")[-1].startswith(b"a OK")

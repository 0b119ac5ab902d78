"""PIPELINING (RFC 2449 §6.6): a whole session sent in one write gets every reply, in order.

A POP3 session hands its replies to the transport when it waits for the next command or for
the store (``Connection.flush_on_read``), so a batch mixes replies written from memory (NOOP,
DELE, STAT), replies after store calls (PASS, RETR, QUIT) and multi-line ones (CAPA, LIST,
UIDL, RETR); none may be lost, duplicated or reordered, and QUIT's UPDATE must still run.
"""

from __future__ import annotations

from tests.conversations.harness import LineClient, MsgstoreServer, message


def test_a_pipelined_session_gets_every_reply_in_order(server: MsgstoreServer) -> None:
    user = server.admin.add_user("pipelined", kind="pop")
    bodies = [message(f"pipelined {i}", f".dot line {i}\r\nline {i}\r\n" * 40) for i in range(3)]
    for body in bodies:
        server.admin.deliver(user.name, body)
    stored = [server.admin.body(user.name, m.uid) for m in server.admin.inbox(user.name)]
    client = LineClient(server.port("pop3.listen"))
    try:
        assert client.read_line() is not None  # greeting
        batch = [
            "CAPA",
            f"USER {user.name}",
            f"PASS {user.password}",
            "STAT",
            "LIST",
            "UIDL 2",
            "RETR 1",
            "DELE 1",
            "NOOP",
            "RETR 3",
            "DELE 3",
            "DELE 3",
            "STAT",
            "QUIT",
        ]
        client.send(b"".join(line.encode() + b"\r\n" for line in batch))

        assert client.read_line() == b"+OK Capability list follows"
        assert b"PIPELINING" in client.multiline()
        assert client.read_line() == b"+OK Send your password"
        assert (client.read_line() or b"").startswith(b"+OK Logged in, 3 messages")
        total = sum(len(s) for s in stored)
        assert client.read_line() == f"+OK 3 {total}".encode()
        assert (client.read_line() or b"").startswith(b"+OK 3 messages")
        assert client.multiline() == [f"{n} {len(s)}".encode() for n, s in enumerate(stored, 1)]
        assert (client.read_line() or b"").startswith(b"+OK 2 ")
        for n in (1, 3):
            assert client.read_line() == f"+OK {len(stored[n - 1])} octets".encode()
            assert b"\r\n".join(client.multiline()) + b"\r\n" == stored[n - 1]
            assert client.read_line() == f"+OK Message {n} deleted".encode()
            if n == 1:
                assert client.read_line() == b"+OK"
        assert client.read_line() == b"-ERR Message is deleted"
        assert client.read_line() == f"+OK 1 {len(stored[1])}".encode()
        assert client.read_line() == b"+OK Logging out (2 deleted, 1 left)"
        assert client.read_line() is None
    finally:
        client.sock.close()
    assert [m.uid for m in server.admin.inbox(user.name)] == [2]

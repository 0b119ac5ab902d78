"""Python's poplib against the server, message by message (issue 5, STYLE.md §14.5).

poplib refuses lines over 2,048 octets (ECOSYSTEM.md §17), so the messages here keep short
lines; byte-exactness of long lines is covered by the fetchmail and getmail tests.
"""

from __future__ import annotations

import poplib

from tests.conversations.harness import MsgstoreServer, message


def test_poplib_downloads_every_message_exactly_then_deletes(server: MsgstoreServer) -> None:
    alice = server.admin.add_user("alice", kind="pop")
    sent = [message(f"n{i}", f"Line {i}.\r\n.dotted {i}\r\n" * (i + 1)) for i in range(5)]
    for msg in sent:
        server.admin.deliver(alice.name, msg)
    pop = poplib.POP3("127.0.0.1", server.port("pop3.listen"), timeout=10)
    try:
        pop.stls(server.client_tls())
        pop.user(alice.name)
        pop.pass_(alice.password)
        count, octets = pop.stat()
        assert (count, octets) == (5, sum(len(m) for m in sent))
        _, uidl_lines, _ = pop.uidl()
        stored = server.admin.inbox(alice.name)
        assert [line.split()[1].decode() for line in uidl_lines] == [m.uidl for m in stored]
        for number, msg in enumerate(sent, 1):
            _, lines, _ = pop.retr(number)
            assert b"\r\n".join(lines) + b"\r\n" == msg
            pop.dele(number)
        pop.quit()
    finally:
        pop.close()
    assert server.admin.inbox(alice.name) == []


def test_poplib_over_pop3s_keeps_mail_without_dele(server: MsgstoreServer) -> None:
    bob = server.admin.add_user("bob")
    server.admin.deliver(bob.name, message("kept"))
    pop = poplib.POP3_SSL(
        "127.0.0.1", server.port("pop3.tls_listen"), context=server.client_tls(), timeout=10
    )
    try:
        pop.user(bob.name)
        pop.pass_(bob.password)
        assert pop.stat()[0] == 1
        _, lines, _ = pop.top(1, 0)
        assert b"Subject: kept" in lines
        pop.quit()
    finally:
        pop.close()
    assert len(server.admin.inbox(bob.name)) == 1

"""STLS plaintext injection (RELIABILITY.md §7 case 20; CVE-2011-0411 class, CVE-2021-38084).

Octets the client sends after ``STLS`` before its TLS handshake must never be executed as if
they had arrived over TLS: the server refuses and closes when they are already buffered, and a
command arriving just before the ClientHello breaks the handshake instead of running.
"""

from __future__ import annotations

import ssl

import pytest

from tests.conversations.harness import LineClient, MsgstoreServer


def test_command_pipelined_behind_stls_is_refused_and_never_run(server: MsgstoreServer) -> None:
    alice = server.admin.add_user("alice")
    with LineClient(server.port("pop3.listen")) as client:
        assert client.read_line() is not None
        client.send(f"STLS\r\nUSER {alice.name}\r\nPASS {alice.password}\r\n".encode())
        reply = client.read_line()
        assert reply == b"-ERR Unexpected data after STLS"
        assert client.read_line() is None, "the connection must close; USER/PASS not answered"
    assert "plaintext received after STLS" in server.log


def test_injection_just_before_the_client_hello_breaks_the_handshake(
    server: MsgstoreServer,
) -> None:
    alice = server.admin.add_user("alice")
    with LineClient(server.port("pop3.listen")) as client:
        assert client.read_line() is not None
        client.send(b"STLS\r\n")
        assert client.read_line() == b"+OK Begin TLS negotiation now"
        # The injected line arrives after the switch to TLS, right before the ClientHello.
        client.send(f"USER {alice.name}\r\n".encode())
        with pytest.raises((ssl.SSLError, OSError)):  # noqa: PT012
            client.start_tls(server.client_tls())
            client.send(b"CAPA\r\n")
            client.read_line()


def test_stls_then_tls_session_works(server: MsgstoreServer) -> None:
    alice = server.admin.add_user("alice")
    with LineClient(server.port("pop3.listen")) as client:
        client.read_line()
        assert client.command("STLS").startswith(b"+OK")
        client.start_tls(server.client_tls())
        assert client.command(f"USER {alice.name}").startswith(b"+OK")
        assert client.command(f"PASS {alice.password}").startswith(b"+OK Logged in")
        assert client.command("QUIT").startswith(b"+OK")

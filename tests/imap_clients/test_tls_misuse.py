"""TLS misuse (RELIABILITY.md §7 case 22): plaintext to the implicit-TLS port, a ClientHello
to the plain port, a garbage handshake, an unknown SNI name. Each gets a clean refusal or
close within the handshake deadline, and the server keeps serving both ports."""

from __future__ import annotations

import socket
import ssl

import pytest

from tests.conversations.harness import LineClient, MsgstoreServer
from tests.imap_clients.conftest import exchange, raw


def tls_port(server: MsgstoreServer) -> int:
    return server.port("imap.tls_listen")


def still_serving(server: MsgstoreServer) -> None:
    with raw(server) as plain:
        assert exchange(plain, b"n", b"NOOP")[-1].startswith(b"n OK")
    with LineClient(tls_port(server), tls=server.client_tls()) as tls:
        greeting = tls.read_line()
        assert greeting is not None
        assert greeting.startswith(b"* OK")


def read_until_closed(sock: socket.socket) -> bytes:
    data = b""
    while True:
        try:
            chunk = sock.recv(4096)
        except (ConnectionResetError, ssl.SSLError):
            return data
        if not chunk:
            return data
        data += chunk


def test_plaintext_to_the_implicit_tls_port(clients_server: MsgstoreServer) -> None:
    """An IMAP command where a ClientHello belongs: the server closes, answering nothing in
    plain text (and certainly not executing LOGIN)."""
    with socket.create_connection(("127.0.0.1", tls_port(clients_server)), timeout=10) as sock:
        sock.sendall(b"a1 CAPABILITY\r\na2 LOGIN x y\r\n")
        answer = read_until_closed(sock)
    assert b"OK" not in answer, answer
    assert b"CAPABILITY" not in answer, answer
    still_serving(clients_server)


def test_client_hello_to_the_plain_port(clients_server: MsgstoreServer) -> None:
    """A client that thinks the plain port is IMAPS: its handshake fails on the plain-text
    greeting; the server answers the ClientHello bytes as bad input, never as a command."""
    context = clients_server.client_tls()
    sock = socket.create_connection(("127.0.0.1", clients_server.port("imap.listen")), timeout=10)
    with pytest.raises((ssl.SSLError, ConnectionResetError, OSError)):
        context.wrap_socket(sock, server_hostname="localhost")
    sock.close()
    still_serving(clients_server)


@pytest.mark.parametrize(
    "garbage",
    [
        b"\x16\x03\x01\x00\x05hello",  # a handshake record holding no ClientHello
        b"\x16\x03\x01\xff\xff" + b"\x00" * 64,  # a record announcing 64 KiB, then silence
        b"\x80\x80\x01\x03\x01" + b"\xff" * 200,  # SSLv2-style hello
        bytes(range(256)) * 4,
    ],
)
def test_garbage_handshake(clients_server: MsgstoreServer, garbage: bytes) -> None:
    with socket.create_connection(("127.0.0.1", tls_port(clients_server)), timeout=10) as sock:
        sock.sendall(garbage)
        if garbage[3:5] != b"\xff\xff":
            read_until_closed(sock)
    still_serving(clients_server)


def test_unknown_sni_gets_the_default_certificate(clients_server: MsgstoreServer) -> None:
    """A name the server has no certificate for still completes with the default one."""
    context = ssl.create_default_context(cafile=str(clients_server.cafile))
    context.check_hostname = False
    sock = socket.create_connection(("127.0.0.1", tls_port(clients_server)), timeout=10)
    with context.wrap_socket(sock, server_hostname="mail.unknown.example") as tls:
        assert tls.getpeercert() is not None
        assert tls.recv(100).startswith(b"* OK")


def test_starttls_after_tls_and_before_greeting_data(clients_server: MsgstoreServer) -> None:
    """STARTTLS on an implicit-TLS connection is refused (already encrypted)."""
    with LineClient(tls_port(clients_server), tls=clients_server.client_tls()) as tls:
        assert tls.read_line() is not None
        assert not exchange(tls, b"s", b"STARTTLS")[-1].startswith(b"s OK")
        assert exchange(tls, b"n", b"NOOP")[-1].startswith(b"n OK")

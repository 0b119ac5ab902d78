"""AUTHENTICATE SCRAM-SHA-256 (RFC 7677 over RFC 9051 AUTHENTICATE) with scramp as the
client, and the SASL failure cases of RELIABILITY.md §7 case 17: nonce tampering, a wrong
proof, invalid base64, ``*`` cancel and a 1 MB response -- each a tagged NO or BAD, never a
crash, and the session still answers afterwards."""

from __future__ import annotations

import base64

from scramp import ScramClient  # type: ignore[import-untyped]

from msgstore.auth.sasl import ScramSecret
from tests.conversations.harness import LineClient, MsgstoreServer, User
from tests.imap_server.test_session import raw


def b64(text: str) -> bytes:
    return base64.b64encode(text.encode())


def unb64(line: bytes) -> str:
    assert line.startswith(b"+ "), line
    return base64.b64decode(line[2:]).decode()


def scram_user(server: MsgstoreServer, password: str) -> User:
    user = server.admin.add_user("scram")
    server.admin.set_password_hash(user.name, ScramSecret.make(password).format())
    return user


def scram_exchange(
    client: LineClient, name: str, password: str, *, tamper: str = "", sasl_ir: bool = True
) -> bytes:
    """Run AUTHENTICATE SCRAM-SHA-256; the tagged reply."""
    scram = ScramClient(["SCRAM-SHA-256"], name, password)
    first = b64(scram.get_client_first())
    if sasl_ir:
        server_first = unb64(client.command(b"s1 AUTHENTICATE SCRAM-SHA-256 " + first))
    else:
        assert client.command(b"s1 AUTHENTICATE SCRAM-SHA-256") == b"+ "
        server_first = unb64(client.command(first))
    scram.set_server_first(server_first)
    client_final = scram.get_client_final()
    if tamper == "proof":
        head, _, proof = client_final.rpartition(",p=")
        raw_proof = bytearray(base64.b64decode(proof))
        raw_proof[0] ^= 0xFF
        client_final = f"{head},p={base64.b64encode(bytes(raw_proof)).decode()}"
    elif tamper == "nonce":
        client_final = client_final.replace(",r=", ",r=x", 1)
    reply = client.command(b64(client_final))
    if not reply.startswith(b"+ "):
        return reply
    scram.set_server_final(unb64(reply))  # verifies the server's signature
    return client.command(b"")


def test_scram_login(imap_server: MsgstoreServer) -> None:
    user = scram_user(imap_server, "scram-pencil")
    with raw(imap_server) as c:
        caps = c.command(b"c1 CAPABILITY")
        assert b"AUTH=SCRAM-SHA-256" in caps
        assert c.read_line() is not None
        assert scram_exchange(c, user.name, "scram-pencil").startswith(b"s1 OK")
        assert c.command(b"c2 SELECT INBOX").startswith(b"* ")
    with raw(imap_server) as c:  # without SASL-IR: an empty challenge first
        reply = scram_exchange(c, user.name, "scram-pencil", sasl_ir=False)
        assert reply.startswith(b"s1 OK"), reply


def test_scram_failures(imap_server: MsgstoreServer) -> None:
    user = scram_user(imap_server, "right")
    for password, tamper in (("wrong", ""), ("right", "proof"), ("right", "nonce")):
        with raw(imap_server) as c:
            reply = scram_exchange(c, user.name, password, tamper=tamper)
            assert reply.startswith((b"s1 NO", b"s1 BAD")), (tamper, reply)
            assert c.command(b"n1 NOOP").startswith(b"n1 OK")
    # an argon2id account cannot do SCRAM: it fails like a wrong password
    plain = imap_server.admin.add_user("argon")
    with raw(imap_server) as c:
        assert scram_exchange(c, plain.name, plain.password).startswith(b"s1 NO")


def test_sasl_bad_input(imap_server: MsgstoreServer) -> None:
    user = scram_user(imap_server, "right")
    with raw(imap_server) as c:
        # invalid base64 as the initial response and as an answer
        assert c.command(b"b1 AUTHENTICATE SCRAM-SHA-256 !!notbase64!!").startswith(b"b1 BAD")
        assert c.command(b"b2 AUTHENTICATE SCRAM-SHA-256") == b"+ "
        assert c.command(b"%%%").startswith(b"b2 BAD")
        # "*" cancels, at the first and at the second step
        assert c.command(b"b3 AUTHENTICATE SCRAM-SHA-256") == b"+ "
        assert c.command(b"*").startswith(b"b3 BAD")
        scram = ScramClient(["SCRAM-SHA-256"], user.name, "right")
        reply = c.command(b"b4 AUTHENTICATE SCRAM-SHA-256 " + b64(scram.get_client_first()))
        assert reply.startswith(b"+ ")
        assert c.command(b"*").startswith(b"b4 BAD")
        # garbage that is valid base64 but not SCRAM
        reply = c.command(b"b5 AUTHENTICATE SCRAM-SHA-256 " + b64("hello"))
        assert reply.startswith((b"b5 NO", b"b5 BAD")), reply
        assert c.command(b"b6 NOOP").startswith(b"b6 OK")
    with raw(imap_server) as c:
        # a 1 MB response: refused (by the line limit), never buffered into a crash
        c.send(b"b7 AUTHENTICATE SCRAM-SHA-256 " + b"QUFB" * (256 * 1024) + b"\r\n")
        lines = []
        while (line := c.read_line()) is not None:
            lines.append(line)
            if line.startswith(b"b7 "):
                break
        assert lines, "no reply to a 1 MB response"
        assert any(x.startswith((b"b7 BAD", b"b7 NO", b"* BAD", b"* BYE")) for x in lines)
    # the server still serves new connections
    with raw(imap_server) as c:
        assert scram_exchange(c, user.name, "right").startswith(b"s1 OK")

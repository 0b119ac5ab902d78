"""AUTH SCRAM-SHA-256 (RFC 5034 + RFC 7677) with scramp as the client.

SCRAM works for accounts whose stored hash is a ``{SCRAM-SHA-256}`` secret (Dovecot's form);
such an account can also use USER/PASS. An argon2id account fails SCRAM with the same reply as
a wrong password, and so does an unknown name. Tampered proofs and nonces fail.
"""

from __future__ import annotations

import base64

from scramp import ScramClient  # type: ignore[import-untyped]

from msgstore.auth.sasl import ScramSecret
from tests.conversations.harness import LineClient, MsgstoreServer


def b64(data: str) -> str:
    return base64.b64encode(data.encode()).decode()


def unb64(line: bytes) -> str:
    assert line.startswith(b"+ "), line
    return base64.b64decode(line[2:]).decode()


def scram_login(
    server: MsgstoreServer, name: str, password: str, *, tamper: str = ""
) -> tuple[bytes, LineClient]:
    client = LineClient(server.port("pop3.listen"))
    client.read_line()
    scram = ScramClient(["SCRAM-SHA-256"], name, password)
    server_first = unb64(client.command(f"AUTH SCRAM-SHA-256 {b64(scram.get_client_first())}"))
    scram.set_server_first(server_first)
    client_final = scram.get_client_final()
    if tamper == "proof":
        client_final = client_final[:-6] + (
            "AAAA==" if not client_final.endswith("AAAA==") else "BBBB=="
        )
    elif tamper == "nonce":
        client_final = client_final.replace(",r=", ",r=x", 1)
    reply = client.command(b64(client_final))
    if not reply.startswith(b"+ "):
        return reply, client
    scram.set_server_final(unb64(reply))
    return client.command(""), client


def test_scram_login_with_a_stored_scram_secret(server: MsgstoreServer) -> None:
    alice = server.admin.add_user("alice", kind="pop")
    server.admin.set_password_hash(alice.name, ScramSecret.make("scram-pencil").format())
    reply, client = scram_login(server, alice.name, "scram-pencil")
    with client:
        assert reply.startswith(b"+OK Logged in"), reply
        assert client.command("QUIT").startswith(b"+OK")
    with LineClient(server.port("pop3.listen")) as client:
        client.read_line()
        client.command(f"USER {alice.name}")
        assert client.command("PASS scram-pencil").startswith(b"+OK Logged in")
        client.command("QUIT")


def test_scram_failures_all_look_alike(server: MsgstoreServer) -> None:
    bob = server.admin.add_user("bob")
    server.admin.set_password_hash(bob.name, ScramSecret.make("right").format())
    argon = server.admin.add_user("argon")
    cases = [
        (bob.name, "wrong", ""),
        (bob.name, "right", "proof"),
        (argon.name, argon.password, ""),
        ("no-such-user-anywhere", "whatever", ""),
    ]
    for name, password, tamper in cases:
        reply, client = scram_login(server, name, password, tamper=tamper)
        client.close()
        assert reply == b"-ERR [AUTH] Authentication failed", (name, tamper, reply)
    reply, client = scram_login(server, bob.name, "right", tamper="nonce")
    client.close()
    assert reply.startswith(b"-ERR"), reply

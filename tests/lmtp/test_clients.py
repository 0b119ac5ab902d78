"""Real clients: Python's smtplib (SMTP, and LMTP with one recipient: smtplib.LMTP reads
one reply after DATA, python/cpython#76984) and Debian's swaks for multi-recipient LMTP.

swaks is required (Debian package ``swaks``): these tests fail, not skip, without it.
"""

from __future__ import annotations

import shutil
import smtplib
import subprocess

import pytest

from tests.conversations.harness import MsgstoreServer
from tests.lmtp.wire import message


def test_smtplib_smtp_with_starttls(server: MsgstoreServer) -> None:
    alice, bob = server.admin.add_user("alice"), server.admin.add_user("bob")
    with smtplib.SMTP("127.0.0.1", server.port("smtp.listen"), timeout=10) as client:
        client.ehlo("client.example")
        assert client.has_extn("starttls")
        assert client.has_extn("pipelining")
        client.starttls(context=server.client_tls())
        client.ehlo("client.example")
        assert not client.has_extn("starttls")
        refused = client.sendmail(
            "sender@example.org",
            [f"{alice.name}@example.org", "nobody@example.org", bob.name],
            message("smtplib"),
        )
    assert list(refused) == ["nobody@example.org"]
    assert refused["nobody@example.org"][0] == 550
    for user in (alice, bob):
        (meta,) = server.admin.inbox(user.name)
        body = server.admin.body(user.name, meta.uid)
        assert b"with ESMTPS id" in body
        assert body.endswith(message("smtplib"))


def test_smtplib_lmtp_single_recipient(server: MsgstoreServer) -> None:
    alice = server.admin.add_user("alice")
    with smtplib.LMTP("127.0.0.1", server.port("lmtp.listen"), timeout=10) as client:
        assert client.sendmail("", [alice.name], message("lmtp via smtplib")) == {}
        with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
            client.sendmail("s@example.org", ["nobody"], message("x"))
    assert refused.value.recipients["nobody"][0] == 550
    (meta,) = server.admin.inbox(alice.name)
    assert server.admin.body(alice.name, meta.uid).startswith(b"Return-Path: <>\r\n")


def test_swaks_multi_recipient_lmtp(server: MsgstoreServer) -> None:
    swaks = shutil.which("swaks")
    assert swaks is not None, "swaks is required: apt-get install swaks"
    alice, bob = server.admin.add_user("alice"), server.admin.add_user("bob")
    to = f"{alice.name}@example.org,nosuch@example.org,{bob.name}@example.org"
    result = subprocess.run(
        [swaks, "--protocol", "LMTP", "--server", "127.0.0.1", "--port",
         str(server.port("lmtp.listen")), "--from", "s@example.org", "--to", to,
         "--header", "Subject: swaks", "--body", "hi\n.leading dot\n", "--pipeline"],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "550 5.1.1 <nosuch@example.org>" in out
    assert f"250 2.0.0 <{alice.name}@example.org>" in out
    assert f"250 2.0.0 <{bob.name}@example.org>" in out
    assert out.index(alice.name + "@example.org> Delivered") < out.index(
        bob.name + "@example.org> Delivered"
    )
    for user in (alice, bob):
        (meta,) = server.admin.inbox(user.name)
        assert b"\r\n.leading dot\r\n" in server.admin.body(user.name, meta.uid)

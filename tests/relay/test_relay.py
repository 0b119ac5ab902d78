"""The relay queue end to end: a real server forwards to external addresses through a real
SMTP sink (the smarthost); retries, DSNs, restarts and kill -9; forwarding over LMTP and SMTP
with smtplib and swaks; public folders read over IMAP by several users."""

from __future__ import annotations

import email
import email.policy
import imaplib
import json
import secrets
import shutil
import signal
import smtplib
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest
import trustme
from aiosmtpd.smtp import AuthResult, LoginPassword

from msgstore.core.acl import Rights
from msgstore.core.names import mailbox_name
from msgstore.management.forwarding import Destinations, ForwardAdd
from msgstore.management.queue import QueueFlush, QueueRetry
from msgstore.storage.base import QueueEntry
from tests.conversations.harness import MsgstoreServer, message
from tests.relay.conftest import start_server
from tests.relay.sink import Sink


def token() -> str:
    return secrets.token_hex(3)


def forward(server: MsgstoreServer, address: str, destinations: str, **kw: bool) -> None:
    admin = server.admin
    admin.call(ForwardAdd(address, Destinations.parse(destinations), **kw).run(admin.ctx))


def queue(server: MsgstoreServer) -> list[QueueEntry]:
    return server.admin.call(server.admin.backend.list_queue())


def wait_until(predicate: object, timeout: float = 20.0) -> None:
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("condition not reached in time")


def lmtp_send(server: MsgstoreServer, sender: str, rcpt: str, data: bytes) -> dict[str, object]:
    with smtplib.LMTP("127.0.0.1", server.port("lmtp.listen"), timeout=10) as client:
        return dict(client.sendmail(sender, [rcpt], data))


def test_forward_to_external_address_arrives_once_with_delivered_to(
    server: MsgstoreServer, sink: Sink
) -> None:
    t = token()
    forward(server, f"team-{t}", f"ext-{t}@example.net")
    forward(server, f"list-{t}@example.org", f"team-{t}")
    data = message(f"relayed {t}")
    assert lmtp_send(server, f"author-{t}@example.com", f"list-{t}@example.org", data) == {}
    (arrived,) = sink.wait_for(f"ext-{t}@example.net")
    assert arrived.sender == f"author-{t}@example.com"
    head = arrived.data.partition(b"\r\n\r\n")[0]
    lines = head.split(b"\r\n")
    assert lines[0] == f"Delivered-To: team-{t}@example.org".encode()
    assert lines[1] == f"Delivered-To: list-{t}@example.org".encode()
    assert lines[2].startswith(b"Received: from ")
    assert b"Return-Path" not in head
    assert arrived.data.endswith(data.partition(b"\r\n\r\n")[2])
    wait_until(lambda: not queue(server))
    time.sleep(1.5)  # a second pass of the runner must not send it again
    assert len(sink.to(f"ext-{t}@example.net")) == 1


def test_smtp_relays_only_for_forwarding_addresses(server: MsgstoreServer, sink: Sink) -> None:
    t = token()
    forward(server, f"alias-{t}@partner.net", f"dest-{t}@example.net")
    with smtplib.SMTP("127.0.0.1", server.port("smtp.listen"), timeout=10) as client:
        client.ehlo("client.example")
        refused = client.sendmail(
            f"s-{t}@example.com",
            [f"alias-{t}@partner.net", f"stranger-{t}@elsewhere.net"],
            message("relay test"),
        )
    assert list(refused) == [f"stranger-{t}@elsewhere.net"]
    code, text = refused[f"stranger-{t}@elsewhere.net"]
    assert code == 550
    assert text.startswith(b"5.7.1")
    (arrived,) = sink.wait_for(f"dest-{t}@example.net")
    assert arrived.data.startswith(f"Delivered-To: alias-{t}@partner.net\r\n".encode())


def test_swaks_over_smtp_to_a_forwarding_address(server: MsgstoreServer, sink: Sink) -> None:
    swaks = shutil.which("swaks")
    assert swaks is not None, "swaks is required: apt-get install swaks"
    t = token()
    user = server.admin.add_user("keeper")
    forward(server, user.name, f"copy-{t}@example.net", keep_copy=True)
    result = subprocess.run(
        [swaks, "--server", "127.0.0.1", "--port", str(server.port("smtp.listen")),
         "--from", f"s-{t}@example.com", "--to", f"{user.name}@example.org",
         "--header", f"Subject: swaks {t}"],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    (arrived,) = sink.wait_for(f"copy-{t}@example.net")
    assert f"Subject: swaks {t}".encode() in arrived.data
    assert arrived.data.startswith(f"Delivered-To: {user.name}@example.org\r\n".encode())
    (meta,) = server.admin.inbox(user.name)
    assert f"Subject: swaks {t}".encode() in server.admin.body(user.name, meta.uid)


def test_temporary_refusal_is_retried(server: MsgstoreServer, sink: Sink) -> None:
    t = token()
    rcpt = f"busy-{t}@example.net"
    sink.rcpt_replies[rcpt] = "451 4.3.0 try again later"
    forward(server, f"busy-{t}", rcpt)
    assert lmtp_send(server, f"s-{t}@example.com", f"busy-{t}", message("retry")) == {}
    wait_until(lambda: sink.rcpt_attempts.get(rcpt, 0) >= 2)
    (entry,) = [e for e in queue(server) if rcpt in e.recipients]
    assert entry.attempts >= 1
    assert "451" in entry.last_error
    del sink.rcpt_replies[rcpt]
    sink.wait_for(rcpt)
    wait_until(lambda: not [e for e in queue(server) if rcpt in e.recipients])
    assert len(sink.to(rcpt)) == 1
    assert not sink.to(f"s-{t}@example.com")  # no DSN for a temporary failure


def test_permanent_refusal_returns_a_dsn(server: MsgstoreServer, sink: Sink) -> None:
    t = token()
    rcpt, sender = f"gone-{t}@example.net", f"author-{t}@example.com"
    sink.rcpt_replies[rcpt] = "550 5.1.1 no such user"
    forward(server, f"gone-{t}", rcpt)
    assert lmtp_send(server, sender, f"gone-{t}", message(f"bounce {t}")) == {}
    (dsn,) = sink.wait_for(sender)
    assert dsn.sender in ("", "<>")  # aiosmtpd keeps the brackets of <>
    parsed = email.message_from_bytes(dsn.data, policy=email.policy.default)
    assert parsed.get_content_type() == "multipart/report"
    assert parsed.get_param("report-type") == "delivery-status"
    parts = [p.get_content_type() for p in parsed.iter_parts()]
    assert parts == ["text/plain", "message/delivery-status", "text/rfc822-headers"]
    assert f"Final-Recipient: rfc822; {rcpt}".encode() in dsn.data
    assert b"Action: failed" in dsn.data
    assert b"Status: 5.1.1" in dsn.data
    assert b"Diagnostic-Code: smtp; 550 5.1.1 no such user" in dsn.data
    assert f"Subject: bounce {t}".encode() in dsn.data
    wait_until(lambda: not [e for e in queue(server) if rcpt in e.recipients])


def test_null_sender_gets_no_dsn(server: MsgstoreServer, sink: Sink) -> None:
    t = token()
    rcpt = f"gone-{t}@example.net"
    sink.rcpt_replies[rcpt] = "550 5.1.1 no such user"
    forward(server, f"null-{t}", rcpt)
    assert lmtp_send(server, "", f"null-{t}", message("null sender")) == {}
    wait_until(lambda: sink.rcpt_attempts.get(rcpt, 0) >= 1)
    wait_until(lambda: not queue(server))
    assert "no DSN for the null sender" in server.log


def test_delivered_to_loop_is_refused_over_lmtp(server: MsgstoreServer) -> None:
    t = token()
    user = server.admin.add_user("looped")
    forward(server, f"loop-{t}@example.org", user.name)
    data = f"Delivered-To: loop-{t}@example.org\r\n".encode() + message("loop")
    with pytest.raises(smtplib.SMTPDataError) as refused:
        lmtp_send(server, "s@example.com", f"loop-{t}@example.org", data)
    assert refused.value.smtp_code == 554
    error: object = refused.value.smtp_error  # bytes at run time
    assert isinstance(error, bytes)
    assert error.startswith(b"5.4.6")
    assert server.admin.inbox(user.name) == []


def test_public_folder_list_is_stored_once_and_read_by_several_users(
    server: MsgstoreServer,
) -> None:
    t = token()
    admin = server.admin
    public = admin.call(admin.backend.public_account())
    box = admin.call(admin.backend.create_mailbox(public.id, mailbox_name(f"list-{t}")))
    admin.call(admin.backend.set_acl(public.id, box.id, "anyone", Rights.parse("lrs")))
    forward(server, f"python-dev-{t}@example.org", f"public:list-{t}")
    for n in range(2):
        data = message(f"digest {n}")
        assert lmtp_send(server, "l@example.com", f"python-dev-{t}@example.org", data) == {}
    readers = [admin.add_user("reader") for _ in range(2)]
    for reader in readers:
        imap = imaplib.IMAP4("127.0.0.1", server.port("imap.listen"))
        try:
            imap.login(reader.name, reader.password)
            typ, exists = imap.select(f'"Public/list-{t}"', readonly=True)
            assert typ == "OK", exists
            assert exists == [b"2"]
            typ, fetched = imap.fetch("1:*", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
            assert typ == "OK"
            subjects = [part[1] for part in fetched if isinstance(part, tuple)]
            assert subjects == [b"Subject: digest 0\r\n\r\n", b"Subject: digest 1\r\n\r\n"]
        finally:
            imap.logout()
    # Stored once: the public tree holds two message files, nobody else got a copy.
    files = [
        p for p in (server.data_dir / "public").rglob("*") if p.is_file() and p.name.isdigit()
    ]
    assert len(files) >= 2


def run_cli(server: MsgstoreServer, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "msgstore.cli", "--config", str(server.config_path), *args],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def test_queue_commands(server: MsgstoreServer, sink: Sink) -> None:
    t = token()
    rcpt = f"held-{t}@example.net"
    sink.rcpt_replies[rcpt] = "452 4.2.2 mailbox full"
    forward(server, f"held-{t}", rcpt)
    assert lmtp_send(server, f"s-{t}@example.com", f"held-{t}", message(f"held {t}")) == {}
    wait_until(lambda: sink.rcpt_attempts.get(rcpt, 0) >= 1)
    listed = run_cli(server, "queue", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    (entry,) = [e for e in json.loads(listed.stdout) if rcpt in e["recipients"]]
    assert entry["sender"] == f"s-{t}@example.com"
    shown = run_cli(server, "queue", "show", str(entry["queue_id"]), "--json")
    assert shown.returncode == 0, shown.stderr
    detail = json.loads(shown.stdout)
    assert f"Subject: held {t}" in detail["headers"]
    assert detail["headers"].startswith(f"Delivered-To: held-{t}@example.org")
    admin = server.admin  # flush and retry in-process: each CLI start costs a second
    assert admin.call(QueueFlush().run(admin.ctx)).scheduled >= 1
    retried = admin.call(QueueRetry(entry["queue_id"]).run(admin.ctx))
    assert retried.queue_id == entry["queue_id"]
    deleted = run_cli(server, "queue", "delete", str(entry["queue_id"]), "--yes")
    assert deleted.returncode == 0, deleted.stderr
    assert not [e for e in queue(server) if e.id == entry["queue_id"]]
    missing = run_cli(server, "queue", "show", str(entry["queue_id"]))
    assert missing.returncode != 0
    del sink.rcpt_replies[rcpt]
    time.sleep(1.5)
    assert sink.to(rcpt) == []


def test_deliver_from_is_the_sender_at_the_smarthost(server: MsgstoreServer, sink: Sink) -> None:
    """``msgstore deliver -f`` (a pipe transport): the relayed copy has that envelope sender
    and no Return-Path; the stored copy starts with it."""
    t = token()
    user = server.admin.add_user("piped")
    forward(server, user.name, f"piped-{t}@example.net", keep_copy=True)
    done = subprocess.run(
        [sys.executable, "-m", "msgstore.cli", "--config", str(server.config_path),
         "deliver", "--to", user.name, "-f", f"origin-{t}@example.com"],
        input=message(f"piped {t}"), capture_output=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    (arrived,) = sink.wait_for(f"piped-{t}@example.net")
    assert arrived.sender == f"origin-{t}@example.com"
    assert arrived.data.startswith(f"Delivered-To: {user.name}@example.org\r\n".encode())
    assert b"Return-Path" not in arrived.data.partition(b"\r\n\r\n")[0]
    (meta,) = server.admin.inbox(user.name)
    stored = server.admin.body(user.name, meta.uid)
    assert stored.startswith(f"Return-Path: <origin-{t}@example.com>\r\n".encode())


def test_forward_commands(server: MsgstoreServer) -> None:
    t = token()
    user = server.admin.add_user("fwd")
    added = run_cli(server, "forward", "add", f"f-{t}", f"{user.name}, x-{t}@example.net")
    assert added.returncode == 0, added.stderr
    looped = run_cli(server, "forward", "add", user.name, f"f-{t}")
    assert looped.returncode == 65, looped.stdout + looped.stderr
    assert f"Forwarding loop: {user.name} -> f-{t} -> {user.name}" in looped.stderr
    shown = run_cli(server, "forward", "show", f"f-{t}", "--json")
    assert json.loads(shown.stdout)["destinations"] == [user.name, f"x-{t}@example.net"]
    assert run_cli(server, "forward", "del", f"f-{t}").returncode == 0
    listed = run_cli(server, "forward", "list", "--json")
    assert f"f-{t}" not in [e["address"] for e in json.loads(listed.stdout)]


# --- separate servers: the smarthost down, kill -9, max_age ------------------------------------


def test_smarthost_down_then_up(tmp_path: Path) -> None:
    sink = Sink()  # not started: connection refused
    srv = start_server(tmp_path, sink)
    try:
        forward(srv, "out", "far@example.net")
        assert lmtp_send(srv, "s@example.com", "out", message("while down")) == {}
        wait_until(lambda: any(e.attempts >= 1 for e in queue(srv)))
        (entry,) = queue(srv)
        assert "Connect" in entry.last_error or "refused" in entry.last_error.lower()
        sink.start()
        try:
            (arrived,) = sink.wait_for("far@example.net")
            wait_until(lambda: not queue(srv))
            assert b"Subject: while down" in arrived.data
        finally:
            sink.stop()
    finally:
        srv.stop()


def test_kill_9_with_messages_queued_delivers_each_exactly_once(tmp_path: Path) -> None:
    sink = Sink()  # down while the messages are queued
    srv = start_server(tmp_path, sink)
    try:
        forward(srv, "out", "far@example.net")
        for n in range(3):
            assert lmtp_send(srv, "s@example.com", "out", message(f"queued {n}")) == {}
        assert len(queue(srv)) == 3
        srv.admin.close()
        srv._admin = None
        assert srv.proc is not None
        srv.proc.send_signal(signal.SIGKILL)
        srv.proc.wait()
        (srv.data_dir / "run" / "msgstore.pid").unlink()
        sink.start()
        try:
            srv._spawn()
            got = sink.wait_for("far@example.net", 3)
            wait_until(lambda: not queue(srv))
            time.sleep(2.0)  # more runner passes: nothing is sent again
            got = sink.to("far@example.net")
            subjects = sorted(a.data.split(b"Subject: ")[1].split(b"\r\n")[0] for a in got)
            assert subjects == [b"queued 0", b"queued 1", b"queued 2"]
            leftovers = [p for p in (srv.data_dir / "queue").iterdir() if p.is_file()]
            assert leftovers == []
        finally:
            sink.stop()
    finally:
        srv.stop()


def test_dsn_after_max_age(tmp_path: Path) -> None:
    sink = Sink().start()
    srv = start_server(tmp_path, sink, relay__max_age="3s")
    try:
        sink.rcpt_replies["slow@example.net"] = "450 4.2.1 come back later"
        forward(srv, "out", "slow@example.net")
        assert lmtp_send(srv, "author@example.com", "out", message("expires")) == {}
        (dsn,) = sink.wait_for("author@example.com", timeout=30)
        assert dsn.sender in ("", "<>")  # aiosmtpd keeps the brackets of <>
        assert b"Status: 4.4.7" in dsn.data
        assert b"Final-Recipient: rfc822; slow@example.net" in dsn.data
        assert b"450 4.2.1 come back later" in dsn.data
        wait_until(lambda: not queue(srv))
        assert sink.to("slow@example.net") == []
    finally:
        srv.stop()
        sink.stop()


def test_only_one_worker_runs_the_queue(tmp_path: Path) -> None:
    sink = Sink().start()
    srv = start_server(tmp_path, sink, server__workers=2)
    try:
        forward(srv, "out", "far@example.net")
        for n in range(4):
            assert lmtp_send(srv, "s@example.com", "out", message(f"w{n}")) == {}
        sink.wait_for("far@example.net", 4)
        wait_until(lambda: not queue(srv))
        time.sleep(1.5)
        assert len(sink.to("far@example.net")) == 4
        assert srv.log.count("relay: this process runs the queue") == 1
    finally:
        srv.stop()
        sink.stop()


def test_starttls_and_auth_with_the_smarthost(tmp_path: Path) -> None:
    """The smarthost requires STARTTLS (a certificate from a test CA) and AUTH."""
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server_tls)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    logins: list[tuple[bytes, bytes]] = []

    def authenticator(
        server: object, session: object, envelope: object, mechanism: str, data: object
    ) -> AuthResult:
        assert isinstance(data, LoginPassword)
        logins.append((data.login, data.password))
        return AuthResult(success=data.password == b"s3cret")

    sink = Sink(
        tls_context=server_tls,
        require_starttls=True,
        auth_required=True,
        authenticator=authenticator,
    ).start()
    srv = start_server(
        tmp_path / "srv",
        sink,
        relay__starttls=True,
        relay__tls_ca=str(ca_file),
        relay__auth_user="relayuser",
        relay__auth_password="s3cret",
    )
    try:
        forward(srv, "out", "far@example.net")
        assert lmtp_send(srv, "s@example.com", "out", message("over tls")) == {}
        (arrived,) = sink.wait_for("far@example.net")
        assert b"Subject: over tls" in arrived.data
        assert logins == [(b"relayuser", b"s3cret")]
        wait_until(lambda: not queue(srv))
    finally:
        srv.stop()
        sink.stop()


def test_an_untrusted_smarthost_certificate_is_not_used(tmp_path: Path) -> None:
    ca = trustme.CA()
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_tls)
    sink = Sink(tls_context=server_tls, require_starttls=True).start()
    srv = start_server(tmp_path, sink, relay__starttls=True)  # system CAs: not trusted
    try:
        forward(srv, "out", "far@example.net")
        assert lmtp_send(srv, "s@example.com", "out", message("not sent")) == {}
        wait_until(lambda: any(e.attempts >= 1 for e in queue(srv)))
        (entry,) = queue(srv)
        assert "certificate" in entry.last_error.lower() or "ssl" in entry.last_error.lower()
        assert sink.to("far@example.net") == []
    finally:
        srv.stop()
        sink.stop()


def test_a_refused_login_at_the_smarthost_defers_instead_of_bouncing(tmp_path: Path) -> None:
    ca = trustme.CA()
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_tls)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))

    def refuse(*args: object) -> AuthResult:
        # handled=False with a message: aiosmtpd answers it at once (535).
        return AuthResult(success=False, handled=False, message="535 5.7.8 bad credentials")

    sink = Sink(tls_context=server_tls, auth_required=True, authenticator=refuse).start()
    srv = start_server(
        tmp_path / "srv",
        sink,
        relay__starttls=True,
        relay__tls_ca=str(ca_file),
        relay__auth_user="relayuser",
        relay__auth_password="wrong",
    )
    try:
        forward(srv, "out", "far@example.net")
        assert lmtp_send(srv, "author@example.com", "out", message("kept")) == {}
        wait_until(lambda: any(e.attempts >= 2 for e in queue(srv)))
        (entry,) = queue(srv)
        assert "authentication failed" in entry.last_error
        assert sink.arrived == []  # neither the message nor a DSN
    finally:
        srv.stop()
        sink.stop()

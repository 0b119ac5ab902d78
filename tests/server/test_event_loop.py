"""``[server] event_loop``: ``msgstore serve`` on uvloop and on asyncio's own loop.

The same round trips run on both loops, over real sockets with real clients: an LMTP delivery,
IMAP (plain, STARTTLS, IMAPS, COMPRESS=DEFLATE, IDLE woken by a delivery), POP3 (plain and
STLS) reading and deleting the delivered messages, and poppassd. The rest of the protocol
suites run on whatever ``auto`` picks (uvloop, a dependency), or on the loop that
``MSGSTORE_TEST_EVENT_LOOP`` names (tests/conversations/harness.py).
"""

from __future__ import annotations

import imaplib
import os
import re
import socket
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

from msgstore.config import Config, ConfigError
from msgstore.server import loop_factory
from tests.conversations.harness import LineClient, MsgstoreServer, User, message


def _loop_in_log(server: MsgstoreServer) -> str:
    found = re.search(r"serving .* \(pid \d+, (\w+)\)", server.log)
    assert found is not None, server.log
    return found.group(1)


def _lmtp_deliver(server: MsgstoreServer, user: User, subject: str) -> None:
    with LineClient(server.port("lmtp.listen")) as wire:
        assert wire.read_line() is not None  # 220 greeting
        wire.send_line("LHLO mta.example")
        while (line := wire.read_line()) is not None and line.startswith(b"250-"):
            pass
        assert line is not None
        assert line.startswith(b"250 ")
        assert wire.command("MAIL FROM:<s@example.org>").startswith(b"250")
        assert wire.command(f"RCPT TO:<{user.name}>").startswith(b"250")
        assert wire.command("DATA").startswith(b"354")
        wire.send(message(subject) + b".\r\n")
        reply = wire.read_line()
        assert reply is not None
        assert reply.startswith(b"250"), reply
        assert wire.command("QUIT").startswith(b"221")


def _imap_checks(server: MsgstoreServer, user: User) -> None:
    tls = server.client_tls()
    # STARTTLS, then a delivery wakes an IDLE.
    with imaplib.IMAP4("127.0.0.1", server.port("imap.listen"), timeout=10) as client:
        client.starttls(tls)
        client.login(user.name, user.password)
        assert client.select("INBOX") == ("OK", [b"1"])
        tag = client._new_tag().decode()
        client.send(f"{tag} IDLE\r\n".encode())
        assert client.readline().startswith(b"+ ")
        _lmtp_deliver(server, user, "while idling")
        assert b"2 EXISTS" in client.readline()
        client.send(b"DONE\r\n")
        while (line := client.readline()).startswith(b"* "):
            pass
        assert line.startswith(f"{tag} OK".encode()), line
        typ, data = client.fetch("1:2", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        assert typ == "OK"
        subjects = b"".join(part[1] for part in data if isinstance(part, tuple))
        assert b"Subject: first" in subjects
        assert b"Subject: while idling" in subjects
    # IMAPS.
    with imaplib.IMAP4_SSL(
        "127.0.0.1", server.port("imap.tls_listen"), ssl_context=tls, timeout=10
    ) as secure:
        secure.login(user.name, user.password)
        assert secure.status("INBOX", "(MESSAGES)")[1] == [b"INBOX (MESSAGES 2)"]
    # COMPRESS=DEFLATE on the plain port: a raw client, both directions deflated.
    with socket.create_connection(("127.0.0.1", server.port("imap.listen")), timeout=10) as sock:
        reader = sock.makefile("rb")
        assert reader.readline().startswith(b"* OK")
        sock.sendall(f"a LOGIN {user.name} {user.password}\r\n".encode())
        while not (line := reader.readline()).startswith(b"a "):
            pass
        assert line.startswith(b"a OK"), line
        sock.sendall(b"b COMPRESS DEFLATE\r\n")
        assert reader.readline().startswith(b"b OK")
        deflate = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -15)
        inflate = zlib.decompressobj(-15)
        sock.sendall(deflate.compress(b"c NOOP\r\n") + deflate.flush(zlib.Z_SYNC_FLUSH))
        received = b""
        while b"c OK" not in received:
            chunk = sock.recv(4096)
            assert chunk, "closed after COMPRESS"
            received += inflate.decompress(chunk)


def _pop3_checks(server: MsgstoreServer, user: User) -> None:
    with LineClient(server.port("pop3.listen")) as pop:
        assert pop.read_line() is not None
        assert pop.command("STLS").startswith(b"+OK")
        pop.start_tls(server.client_tls())
        assert pop.command(f"USER {user.name}").startswith(b"+OK")
        assert pop.command(f"PASS {user.password}").startswith(b"+OK")
        assert pop.command("STAT").startswith(b"+OK 2 ")
        assert pop.command("RETR 1").startswith(b"+OK")
        assert b"Subject: first" in pop.multiline()
        assert pop.command("DELE 1").startswith(b"+OK")
        assert pop.command("QUIT").startswith(b"+OK")
    with LineClient(server.port("pop3.listen")) as pop:
        assert pop.read_line() is not None
        assert pop.command(f"USER {user.name}").startswith(b"+OK")
        assert pop.command(f"PASS {user.password}").startswith(b"+OK")
        assert pop.command("STAT").startswith(b"+OK 1 ")
        assert pop.command("QUIT").startswith(b"+OK")


def _poppassd_checks(server: MsgstoreServer, user: User) -> str:
    new_password = user.password + "-new"
    with LineClient(server.port("poppassd.listen")) as wire:
        assert wire.read_line() is not None
        assert wire.command(f"user {user.name}").startswith(b"200")
        assert wire.command(f"pass {user.password}").startswith(b"200")
        assert wire.command(f"newpass {new_password}").startswith(b"200")
        assert wire.command("quit").startswith(b"200")
    return new_password


@pytest.mark.parametrize("event_loop", ["uvloop", "asyncio"])
def test_every_line_protocol_works_on_the_configured_loop(tmp_path: Path, event_loop: str) -> None:
    server = MsgstoreServer.start(
        tmp_path,
        services=("imap", "pop3", "lmtp", "poppassd"),
        config={"server.event_loop": event_loop},
    )
    try:
        assert _loop_in_log(server) == event_loop
        user = server.admin.add_user("loop")
        _lmtp_deliver(server, user, "first")
        _imap_checks(server, user)
        _pop3_checks(server, user)
        new_password = _poppassd_checks(server, user)
        with imaplib.IMAP4("127.0.0.1", server.port("imap.listen"), timeout=10) as client:
            assert client.login(user.name, new_password)[0] == "OK"
    finally:
        server.stop()
    assert "Traceback" not in server.log, server.log


def test_auto_is_uvloop_where_it_is_a_dependency() -> None:
    factory = loop_factory(Config())
    assert factory is not None
    loop = factory()
    try:
        assert type(loop).__module__.partition(".")[0] == "uvloop"
    finally:
        loop.close()
    assert loop_factory(Config.model_validate({"server": {"event_loop": "asyncio"}})) is None


def test_uvloop_configured_but_not_importable_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # import uvloop -> ImportError
    with pytest.raises(ConfigError, match=r"server\.event_loop: uvloop cannot be imported"):
        loop_factory(Config.model_validate({"server": {"event_loop": "uvloop"}}))
    assert loop_factory(Config()) is None  # auto: asyncio


def test_uvloop_configured_but_not_importable_stops_serve_with_78(tmp_path: Path) -> None:
    """``event_loop = "uvloop"`` is a promise: without uvloop the server does not start on
    another loop, and says why in one line."""
    shadow = tmp_path / "shadow"
    shadow.mkdir()
    (shadow / "uvloop.py").write_text("raise ImportError('uvloop is not installed here')\n")
    sections = ("imap", "pop3", "lmtp", "smtp", "poppassd", "web")
    text = "".join(f"[{s}]\nlisten = []\n" for s in sections)
    text = text.replace("[imap]\n", "[imap]\ntls_listen = []\n").replace(
        "[pop3]\n", "[pop3]\ntls_listen = []\n"
    )
    text += f'[store]\ndata_dir = "{tmp_path / "data"}"\n[server]\nevent_loop = "uvloop"\n'
    config = tmp_path / "msgstore.toml"
    config.write_text(text)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MSGSTORE_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(shadow), env.get("PYTHONPATH")]))
    done = subprocess.run(
        [sys.executable, "-m", "msgstore.cli", "--config", str(config), "serve"],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=60,
        check=False,
    )
    stderr = done.stderr.decode()
    assert done.returncode == 78, stderr
    assert "server.event_loop: uvloop cannot be imported" in stderr
    assert not (tmp_path / "data" / "run").exists()  # nothing started

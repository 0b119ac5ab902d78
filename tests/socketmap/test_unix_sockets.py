"""Unix-domain listen addresses (``unix:/path`` in any listen key): configuration, binding with
mode and owner, stale socket files, and a real server delivering over LMTP on one.

(These test net/listener.py and config.py; they live here beside the socketmap service, the
first user of Unix sockets besides LMTP.)
"""

from __future__ import annotations

import dataclasses
import os
import smtplib
import socket
import stat
import time
from pathlib import Path

import pytest

from msgstore.config import Config, ConfigError, UnixSocket, dump_toml, load_config
from msgstore.net.listener import ListenError, bind_listeners, close_listeners
from tests.conversations.harness import MsgstoreServer, message
from tests.socketmap.conftest import NO_LISTENERS


def _config(tmp: Path, listen: object) -> Config:
    return Config.model_validate(
        {**NO_LISTENERS, "lmtp": {"listen": listen}, "store": {"data_dir": str(tmp / "data")}}
    )


def _load(tmp: Path, toml: str) -> Config:
    path = tmp / "msgstore.toml"
    path.write_text(toml)
    return load_config(path)


# --- configuration --------------------------------------------------------------------------


def test_the_string_form_is_an_absolute_path_with_mode_0660(
    short_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(short_dir)
    config = _config(short_dir, ["127.0.0.1:0", "unix:run/lmtp.sock"])
    assert config.lmtp.listen[1] == UnixSocket(short_dir / "run" / "lmtp.sock", 0o660)
    assert str(config.lmtp.listen[1]) == f"unix:{short_dir}/run/lmtp.sock"


def test_the_table_form_keeps_mode_owner_and_group_through_dump_and_load(
    short_dir: Path,
) -> None:
    config = _load(
        short_dir,
        '[lmtp]\nlisten = [{ unix = "/run/x/lmtp.sock", mode = "0600", owner = "postfix", '
        'group = "123" }, "unix:/run/x/other.sock"]\n',
    )
    assert config.lmtp.listen == [
        UnixSocket(Path("/run/x/lmtp.sock"), 0o600, "postfix", "123"),
        UnixSocket(Path("/run/x/other.sock")),
    ]
    again = _load(short_dir, dump_toml(config))
    assert again.lmtp.listen == config.lmtp.listen


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ('[{ unix = "/x.sock", perms = "0600" }]', "unknown key 'perms'"),
        ('[{ mode = "0600" }]', "needs unix ="),
        ('[{ unix = "/x.sock", mode = "0999" }]', "mode must be octal digits"),
        ('[{ unix = "/x.sock", mode = 384 }]', "mode must be octal digits"),
        ('[{ unix = "/x.sock", owner = "a b" }]', "owner must be a user or group name"),
        ('"unix:"', "expected a socket path"),
        ('"unix:/' + "d" * 120 + '"', "longer than 107 octets"),
        ('["unix:/x.sock", "unix:/x.sock"]', "also configured as lmtp.listen"),
        ('["unix:/x.sock", { unix = "/x.sock", mode = "0600" }]', "also configured as"),
    ],
)
def test_bad_unix_addresses_are_refused_naming_the_key(
    short_dir: Path, value: str, reason: str
) -> None:
    with pytest.raises(ConfigError, match=r"lmtp\.listen") as info:
        _load(short_dir, f"[lmtp]\nlisten = {value}\n")
    assert reason in str(info.value)


# --- binding --------------------------------------------------------------------------------


def test_a_socket_is_bound_with_its_mode_and_owner_and_removed_when_closed(
    short_dir: Path,
) -> None:
    path = short_dir / "a.sock"
    config = _config(short_dir, [{"unix": str(path), "mode": "0640", "owner": "65534"}])
    listeners = bind_listeners(config)
    try:
        st = os.lstat(path)
        assert stat.S_ISSOCK(st.st_mode)
        assert stat.S_IMODE(st.st_mode) == 0o640
        if os.geteuid() == 0:
            assert st.st_uid == 65534
        with socket.socket(socket.AF_UNIX) as client:
            client.connect(str(path))  # listening
        assert str(listeners[0].bound) == f"unix:{path}"
    finally:
        close_listeners(listeners)
    assert not path.exists()


def test_an_unknown_owner_is_a_listen_error(short_dir: Path) -> None:
    config = _config(short_dir, [{"unix": str(short_dir / "a.sock"), "owner": "no-such-user-x"}])
    with pytest.raises(ListenError, match="no such user 'no-such-user-x'"):
        bind_listeners(config)
    assert not (short_dir / "a.sock").exists()


def test_a_stale_socket_left_by_a_dead_server_is_replaced(short_dir: Path) -> None:
    path = short_dir / "a.sock"
    dead = socket.socket(socket.AF_UNIX)
    dead.bind(str(path))
    dead.listen()
    dead.close()  # the file stays, nobody accepts: what kill -9 leaves behind
    listeners = bind_listeners(_config(short_dir, [f"unix:{path}"]))
    try:
        with socket.socket(socket.AF_UNIX) as client:
            client.connect(str(path))
    finally:
        close_listeners(listeners)


def test_a_socket_another_process_accepts_on_is_left_alone(short_dir: Path) -> None:
    path = short_dir / "a.sock"
    with socket.socket(socket.AF_UNIX) as live:
        live.bind(str(path))
        live.listen()
        with pytest.raises(ListenError, match="Address already in use"):
            bind_listeners(_config(short_dir, [f"unix:{path}"]))
        with socket.socket(socket.AF_UNIX) as client:
            client.connect(str(path))  # still the other process's socket


@pytest.mark.parametrize("kind", ["file", "directory", "symlink to a socket", "fifo"])
def test_anything_but_a_socket_at_the_path_is_never_removed(short_dir: Path, kind: str) -> None:
    path = short_dir / "a.sock"
    if kind == "file":
        path.write_text("precious")
    elif kind == "directory":
        path.mkdir()
    elif kind == "fifo":
        os.mkfifo(path)
    else:
        target = short_dir / "real.sock"
        dead = socket.socket(socket.AF_UNIX)
        dead.bind(str(target))
        dead.close()
        path.symlink_to(target)
    with pytest.raises(ListenError, match="exists and is not a socket"):
        bind_listeners(_config(short_dir, [f"unix:{path}"]))
    assert path.exists() or path.is_symlink()
    if kind == "file":
        assert path.read_text() == "precious"
    if kind == "symlink to a socket":
        assert path.is_symlink()
        assert (short_dir / "real.sock").exists()


def test_only_the_binding_process_removes_the_file_and_only_if_it_is_the_same(
    short_dir: Path,
) -> None:
    path = short_dir / "a.sock"
    listeners = bind_listeners(_config(short_dir, [f"unix:{path}"]))
    # A worker inherited it: closing there leaves the file for the supervisor.
    inherited = [dataclasses.replace(lst, owner_pid=os.getpid() + 1) for lst in listeners]
    close_listeners(inherited)
    assert path.exists()
    # Someone else's socket now sits at the path: not ours to remove.
    path.unlink()
    other = socket.socket(socket.AF_UNIX)
    other.bind(str(path))
    try:
        close_listeners(listeners)
        assert path.exists()
    finally:
        other.close()


# --- a real server --------------------------------------------------------------------------


@pytest.mark.parametrize("workers", [1, 2])
def test_lmtp_on_a_unix_socket_delivers_and_the_socket_goes_at_stop(
    short_dir: Path, workers: int
) -> None:
    path = short_dir / "lmtp.sock"
    # A stale socket from a crashed run is in the way at start.
    dead = socket.socket(socket.AF_UNIX)
    dead.bind(str(path))
    dead.close()
    server = MsgstoreServer.start(
        short_dir / "srv",
        services=(),
        config={"lmtp.listen": [f"unix:{path}"], "server.workers": workers},
    )
    try:
        alice = server.admin.add_user("alice")
        with smtplib.LMTP(str(path)) as lmtp:
            lmtp.ehlo_or_helo_if_needed()
            refused = lmtp.sendmail("a@example.org", [alice.name], message("over a unix socket"))
            assert refused == {}
        inbox = server.admin.inbox(alice.name)
        assert len(inbox) == 1
        stored = server.admin.body(alice.name, int(inbox[0].uid))
        assert b"Subject: over a unix socket" in stored
        received = stored.split(b"\r\n")[1]
        assert received.startswith(b"Received: from "), stored[:300]
        assert b"([])" not in received  # no empty address literal for a socket peer
    finally:
        server.stop()
    deadline = time.monotonic() + 5
    while path.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not path.exists()

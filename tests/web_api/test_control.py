"""The control-socket client (net/control.py) on its own: stale sockets of dead processes are
removed, odd session ids are refused without touching the file system, and a live control
socket of this process answers."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from msgstore.config import Config
from msgstore.net.control import ControlDirectory, start_control


async def test_a_stale_socket_is_removed(tmp_path: Path) -> None:
    directory = tmp_path / "control"
    directory.mkdir()
    stale = directory / "999999.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(stale))
    sock.close()  # bound, never listening, left behind: like a killed process
    found = ControlDirectory(directory)
    assert await found.sessions() == []
    assert not stale.exists()
    assert await found.stats() == []


async def test_odd_ids_are_refused(tmp_path: Path) -> None:
    found = ControlDirectory(tmp_path)
    for ident in ("", ".", "1", "a.b", "../../x.1", "1.x", "9" * 11 + ".1", "1." + "9" * 19):
        assert await found.kill(ident) is False


async def test_this_process_answers(tmp_path: Path) -> None:
    config = Config.model_validate({"store": {"data_dir": str(tmp_path / "data")}})
    server = await start_control(config)
    assert server is not None
    try:
        found = ControlDirectory.for_config(config)
        assert server.path == found.directory / f"{os.getpid()}.sock"
        assert oct(server.path.stat().st_mode & 0o777) == "0o600"
        assert await found.sessions() == []
        stats = await found.stats()
        assert [s["pid"] for s in stats] == [os.getpid()]
        minutes = stats[0]["minutes"]
        assert isinstance(minutes, list)
        assert len(minutes) == 60
        assert await found.kill(f"{os.getpid()}.12345") is False
    finally:
        await server.close()
    assert not server.path.exists()

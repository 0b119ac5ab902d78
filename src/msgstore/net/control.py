"""Each server process's control socket, and the client that asks all of them.

``msgstore serve`` (every worker of ``--workers N``) listens on the Unix socket
``DATA/run/control/<pid>.sock`` (mode 0600 in a 0700 directory: whoever may read the data
directory may use it). A request is one JSON object on one line, the answer one JSON object on
one line, then the connection closes::

    {"op": "sessions"}            -> {"pid": 123, "sessions": [{"id": "123.4", ...}, ...]}
    {"op": "kill", "id": "123.4"} -> {"pid": 123, "killed": true}
    {"op": "stats"}               -> {"pid": 123, "minutes": [[29123456, {"logins": 2, ...}],
                                                               ...]}

:class:`ControlDirectory` is the client: it asks every socket in the directory (a socket
nobody listens on any more is a worker that died: it is removed) and is what the faces hand
the management layer as its ``SessionDirectory`` (``management/sessions.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from pathlib import Path
from typing import Final

from msgstore import metrics
from msgstore.config import Config
from msgstore.net.sessions import REGISTRY

log = logging.getLogger(__name__)

#: Longest request or answer line, in octets.
MAX_MESSAGE_OCTETS: Final = 4 * 1024 * 1024
#: Seconds a peer of the control socket gets for its request, and a client for an answer.
CONTROL_TIMEOUT_S: Final = 5.0


def control_dir(config: Config) -> Path:
    """DATA/run/control: one socket per server process."""
    return config.store.data_dir / "run" / "control"


def prepare_control_dir(path: Path) -> None:
    """Create the directory and remove sockets left by processes that are gone (the caller
    holds the server lock, so none of them is alive)."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path, 0o700)
    for old in path.glob("*.sock"):
        with contextlib.suppress(OSError):
            old.unlink()


def _answer(request: object) -> dict[str, object]:
    pid = os.getpid()
    if not isinstance(request, dict):
        return {"pid": pid, "error": "expected a JSON object"}
    op = request.get("op")
    if op == "sessions":
        return {"pid": pid, "sessions": [s.as_json() for s in REGISTRY.sessions()]}
    if op == "kill":
        ident = request.get("id")
        killed = isinstance(ident, str) and REGISTRY.kill(ident)
        return {"pid": pid, "killed": killed}
    if op == "stats":
        minutes = [[m.minute, dict(m.counts)] for m in metrics.LIVE.snapshot()]
        return {"pid": pid, "minutes": minutes}
    return {"pid": pid, "error": f"unknown op {op!r}"}


class ControlServer:
    """The control socket of this process."""

    def __init__(self, server: asyncio.Server, path: Path) -> None:
        self._server = server
        self.path = path

    async def close(self) -> None:
        self._server.close()
        with contextlib.suppress(Exception):
            await self._server.wait_closed()
        with contextlib.suppress(OSError):
            self.path.unlink()


async def _handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        async with asyncio.timeout(CONTROL_TIMEOUT_S):
            line = await reader.readline()
            try:
                answer = _answer(json.loads(line))
            except ValueError:
                answer = {"pid": os.getpid(), "error": "expected one JSON object on one line"}
            writer.write(json.dumps(answer).encode() + b"\n")
            await writer.drain()
    except (TimeoutError, OSError, asyncio.LimitOverrunError, asyncio.IncompleteReadError):
        pass
    except Exception:
        log.error("control socket: request failed", exc_info=True)
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


async def start_control(config: Config) -> ControlServer | None:
    """Listen on DATA/run/control/<pid>.sock; None (logged) if that is impossible, which
    costs ``session list`` this process but nothing else."""
    directory = control_dir(config)
    path = directory / f"{os.getpid()}.sock"
    try:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        server = await asyncio.start_unix_server(_handle, path, limit=MAX_MESSAGE_OCTETS)
        os.chmod(path, 0o600)
    except OSError as exc:
        log.warning("control socket %s: %s; session list will not see this process", path, exc)
        return None
    return ControlServer(server, path)


class ControlDirectory:
    """Every server process of one data directory, through their control sockets.

    Implements ``msgstore.management.sessions.SessionDirectory``.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    @classmethod
    def for_config(cls, config: Config) -> ControlDirectory:
        return cls(control_dir(config))

    async def _ask(self, path: Path, request: dict[str, object]) -> dict[str, object] | None:
        try:
            async with asyncio.timeout(CONTROL_TIMEOUT_S):
                reader, writer = await asyncio.open_unix_connection(path, limit=MAX_MESSAGE_OCTETS)
                try:
                    writer.write(json.dumps(request).encode() + b"\n")
                    await writer.drain()
                    line = await reader.readline()
                finally:
                    writer.close()
                    with contextlib.suppress(Exception):
                        await writer.wait_closed()
        except ConnectionRefusedError:
            # Nobody listens: the process died without removing its socket.
            with contextlib.suppress(OSError):
                os.unlink(path)
            return None
        except (OSError, TimeoutError, ValueError) as exc:
            log.warning("control socket %s: %s", path, exc)
            return None
        try:
            answer = json.loads(line)
        except ValueError:
            return None
        return answer if isinstance(answer, dict) else None

    def _sockets(self) -> list[Path]:
        try:
            return sorted(self.directory.glob("*.sock"))
        except OSError:
            return []

    async def _ask_all(self, request: dict[str, object]) -> list[dict[str, object]]:
        answers = await asyncio.gather(*(self._ask(p, request) for p in self._sockets()))
        return [a for a in answers if a is not None]

    async def sessions(self) -> list[dict[str, object]]:
        """Every live session of every process, as the control sockets describe them."""
        out: list[dict[str, object]] = []
        for answer in await self._ask_all({"op": "sessions"}):
            found = answer.get("sessions")
            if isinstance(found, list):
                out.extend(s for s in found if isinstance(s, dict))
        return out

    async def kill(self, ident: str) -> bool:
        """End the session ``ident`` ("<pid>.<n>"); False if no process has it."""
        pid, _, number = ident.partition(".")
        digits = pid.isascii() and pid.isdigit() and number.isascii() and number.isdigit()
        if not digits or len(pid) > 10 or len(number) > 18:
            return False
        path = self.directory / f"{int(pid)}.sock"
        if not path.exists():
            return False
        answer = await self._ask(path, {"op": "kill", "id": ident})
        return bool(answer and answer.get("killed") is True)

    async def stats(self) -> list[dict[str, object]]:
        """Every process's per-minute counts: ``{"pid": ..., "minutes": [[minute, {...}]]}``."""
        return await self._ask_all({"op": "stats"})

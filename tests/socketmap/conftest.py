"""A real socketmap service in this process, on real sockets (TCP and Unix), over a real store.

In-process rather than a ``msgstore serve`` subprocess, so that a test can close the store
under the running service (storage unavailable -> TEMP) and start it with its own settings.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from msgstore.auth.passwords import hash_password
from msgstore.config import Config
from msgstore.core.accounts import AccountKind
from msgstore.delivery.pipeline import Accepted, DeliveryPipeline
from msgstore.management import ManagementContext, Secret
from msgstore.management.accounts import AccountAdd, AccountModify
from msgstore.net.connection import LineService
from msgstore.net.listener import Listener, bind_listeners, close_listeners
from msgstore.socketmap.netstring import NetstringDecoder, encode
from msgstore.socketmap.service import start
from msgstore.storage.base import Backend
from msgstore.storage.open import open_backend

#: Every listen key off, except the ones a test turns on.
NO_LISTENERS: Mapping[str, Any] = {
    "imap": {"listen": [], "tls_listen": []},
    "pop3": {"listen": [], "tls_listen": []},
    "lmtp": {"listen": []},
    "smtp": {"listen": []},
    "poppassd": {"listen": []},
    "web": {"listen": []},
}


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A directory with a short path (a Unix socket path has at most 107 octets)."""
    path = Path(tempfile.mkdtemp(prefix="ms-sm-", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


class Client:
    """One socketmap client connection."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.decoder = NetstringDecoder(200_000)

    @classmethod
    async def connect(cls, address: int | Path) -> Client:
        if isinstance(address, Path):
            reader, writer = await asyncio.open_unix_connection(str(address))
        else:
            reader, writer = await asyncio.open_connection("127.0.0.1", address)
        return cls(reader, writer)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def reply(self) -> bytes | None:
        """The next reply payload, or None when the server closed the connection."""
        async with asyncio.timeout(10):
            while (item := self.decoder.next()) is None:
                data = await self.reader.read(65536)
                if not data:
                    return None
                self.decoder.feed(data)
        return item

    async def lookup(self, name: str, key: str) -> str:
        await self.send(encode(f"{name} {key}".encode()))
        reply = await self.reply()
        assert reply is not None, "connection closed"
        return reply.decode()

    async def closed(self) -> bool:
        """True when the server closes the connection (EOF) within 10 s."""
        async with asyncio.timeout(10):
            return await self.reader.read(1) == b""

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()


@dataclass
class Socketmap:
    """The running service and its store."""

    config: Config
    backend: Backend
    listeners: list[Listener]
    service: LineService
    unix_path: Path
    ctx: ManagementContext
    clients: list[Client]

    @property
    def port(self) -> int:
        for listener in self.listeners:
            if not listener.is_unix:
                return int(listener.sock.getsockname()[1])
        raise AssertionError("no TCP listener")

    async def client(self, unix: bool = False) -> Client:
        client = await Client.connect(self.unix_path if unix else self.port)
        self.clients.append(client)
        return client

    async def add_account(self, label: str) -> str:
        op = AccountAdd(name=label, password=Secret("Pw-123456789"), kind=AccountKind.IMAP)
        await op.run(self.ctx)
        return label

    async def disable_receive(self, name: str) -> None:
        await AccountModify(name=name, receive_disabled=True).run(self.ctx)

    async def fill_quota(self, name: str) -> None:
        """Limit the account to one message and deliver one."""
        account = await self.backend.get_account(name)
        await self.backend.set_quota(account.id, storage_limit_kib=None, message_limit=1)

        async def source() -> AsyncIterator[bytes]:
            yield b"Subject: fill\r\n\r\nbody\r\n"

        pipeline = DeliveryPipeline(self.backend, max_message_octets=1 << 20)
        outcomes = await pipeline.deliver_message([name], source())
        assert all(isinstance(o, Accepted) for o in outcomes), outcomes


async def start_socketmap(root: Path, delivery: Mapping[str, Any]) -> Socketmap:
    unix_path = root / "socketmap.sock"
    config = Config.model_validate(
        {
            **NO_LISTENERS,
            "store": {"data_dir": str(root / "data")},
            "delivery": {
                "socketmap_listen": ["127.0.0.1:0", f"unix:{unix_path}"],
                **delivery,
            },
        }
    )
    listeners = bind_listeners(config)
    backend = await open_backend(config)
    service = await start(config, backend, listeners)
    ctx = ManagementContext(backend, config, hash_password)
    return Socketmap(config, backend, listeners, service, unix_path, ctx, [])


async def stop_socketmap(sm: Socketmap) -> None:
    for client in sm.clients:
        client.writer.close()
    await sm.service.close()
    close_listeners(sm.listeners)
    await sm.backend.close()


@pytest.fixture
async def socketmap(short_dir: Path) -> AsyncIterator[Socketmap]:
    """``[delivery] domains = ["example.test"]``, over-quota refusals permanent (default)."""
    sm = await start_socketmap(short_dir, {"domains": ["example.test"]})
    try:
        yield sm
    finally:
        await stop_socketmap(sm)

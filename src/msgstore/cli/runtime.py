"""Opening the store for one command: configuration, backend, management context.

Heavy modules (the configuration model, the backend, password hashing, the server's control
sockets) are imported here, inside the functions, when a command needs them: so
``msgstore --help`` and the command table stay cheap to load, and a command that hashes no
password and asks the server nothing does not import those.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, TypeVar

import click

from msgstore.cli.context import CliContext

if TYPE_CHECKING:
    from msgstore.config import Config
    from msgstore.management.operation import ManagementContext
    from msgstore.management.sessions import SessionDirectory

T = TypeVar("T")


def cli_context() -> CliContext:
    """The global options of the current invocation."""
    obj = click.get_current_context().find_object(CliContext)
    return obj if obj is not None else CliContext(config_path=None, data_dir=None)


def load(cli: CliContext) -> Config:
    """The configuration, from ``--config``/``--data`` (raises ConfigError)."""
    from msgstore.config import load_config

    return load_config(cli.config_path, data_dir=cli.data_dir)


def _hash_password(password: str) -> str:
    """``msgstore.auth.passwords.hash_password``, imported when an operation hashes one."""
    from msgstore.auth.passwords import hash_password

    return hash_password(password)


class _ServerSessions:
    """The running server's sessions (``msgstore.net.control.ControlDirectory``), imported
    when an operation asks for them (``session list``, ``session kill``, ``stats live``)."""

    def __init__(self, config: Config) -> None:
        self._config = config
        self._directory: SessionDirectory | None = None

    def _get(self) -> SessionDirectory:
        if self._directory is None:
            from msgstore.net.control import ControlDirectory

            self._directory = ControlDirectory.for_config(self._config)
        return self._directory

    async def sessions(self) -> list[dict[str, object]]:
        return await self._get().sessions()

    async def kill(self, ident: str) -> bool:
        return await self._get().kill(ident)

    async def stats(self) -> list[dict[str, object]]:
        return await self._get().stats()


@asynccontextmanager
async def management_context(cli: CliContext) -> AsyncIterator[ManagementContext]:
    """Open the store (creating it if new) and close it when the command is done."""
    from msgstore.management.operation import ManagementContext
    from msgstore.storage.open import open_backend

    config = load(cli)
    backend = await open_backend(config)
    try:
        yield ManagementContext(
            backend=backend,
            config=config,
            hash_password=_hash_password,
            sessions=_ServerSessions(config),
        )
    finally:
        await backend.close()


def run_with_store(cli: CliContext, work: Callable[[ManagementContext], Awaitable[T]]) -> T:
    """Run ``work`` against an open store, on a fresh event loop."""

    async def main() -> T:
        async with management_context(cli) as ctx:
            return await work(ctx)

    return asyncio.run(main())

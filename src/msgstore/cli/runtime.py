"""Opening the store for one command: configuration, backend, management context.

Heavy modules (the configuration model, the backend, password hashing) are imported here,
inside the functions, so ``msgstore --help`` and the command table stay cheap to load.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, TypeVar

import click

from msgstore.cli.context import CliContext
from msgstore.management.operation import ManagementContext

if TYPE_CHECKING:
    from msgstore.config import Config

T = TypeVar("T")


def cli_context() -> CliContext:
    """The global options of the current invocation."""
    obj = click.get_current_context().find_object(CliContext)
    return obj if obj is not None else CliContext(config_path=None, data_dir=None)


def load(cli: CliContext) -> Config:
    """The configuration, from ``--config``/``--data`` (raises ConfigError)."""
    from msgstore.config import load_config

    return load_config(cli.config_path, data_dir=cli.data_dir)


@asynccontextmanager
async def management_context(cli: CliContext) -> AsyncIterator[ManagementContext]:
    """Open the store (creating it if new) and close it when the command is done."""
    from msgstore.auth.passwords import hash_password
    from msgstore.storage.open import open_backend

    config = load(cli)
    backend = await open_backend(config)
    try:
        from msgstore.net.control import ControlDirectory

        yield ManagementContext(
            backend=backend,
            config=config,
            hash_password=hash_password,
            sessions=ControlDirectory.for_config(config),
        )
    finally:
        await backend.close()


def run_with_store(cli: CliContext, work: Callable[[ManagementContext], Awaitable[T]]) -> T:
    """Run ``work`` against an open store, on a fresh event loop."""

    async def main() -> T:
        async with management_context(cli) as ctx:
            return await work(ctx)

    return asyncio.run(main())

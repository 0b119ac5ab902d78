"""What every part of the web application shares: one :class:`WebContext` per process."""

from __future__ import annotations

from dataclasses import dataclass

from msgstore.auth.passwords import hash_password
from msgstore.auth.sasl import Authenticator
from msgstore.config import Config
from msgstore.management import ManagementContext
from msgstore.management.operation import Operation
from msgstore.net.control import ControlDirectory
from msgstore.storage.base import Backend


@dataclass(frozen=True, slots=True)
class WebContext:
    """The store, the configuration and the process's authenticator (whose login throttle is
    the one IMAP, POP3 and poppassd use, so web failures slow those down too)."""

    config: Config
    backend: Backend
    auth: Authenticator

    def management(self) -> ManagementContext:
        """The context management operations run in (set its ``actor`` before running one);
        live sessions and statistics come from the server's control sockets."""
        return ManagementContext(
            backend=self.backend,
            config=self.config,
            hash_password=hash_password,
            sessions=ControlDirectory.for_config(self.config),
            migrator=_migrator,
        )


async def _migrator(op: Operation, ctx: ManagementContext) -> object:
    """The migration engine (``ManagementContext.migrator``), imported when a run starts."""
    from msgstore.migrate.service import run_migration

    return await run_migration(op, ctx)

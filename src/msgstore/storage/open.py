"""Open the configured storage backend: the one place that picks an implementation.

Everything above the storage layer receives a ``storage.base.Backend`` from here (servers, the
CLI, tools) and never imports a backend package itself.
"""

from __future__ import annotations

import os
from typing import Final

from msgstore.config import Config
from msgstore.core.errors import ErrorKind, StoreError
from msgstore.storage.base import Backend

#: Fault injection for the fault tests (RELIABILITY.md §7 case 36), e.g. ``fsync:2:EIO``;
#: see ``storage.local.faults``. Unset in production: no plan, no cost.
FAULTS_ENV: Final = "MSGSTORE_FAULTS"


async def open_backend(config: Config) -> Backend:
    """Open the backend named by ``[storage] backend``: local on ``[store] data_dir``, or
    postgres on ``[storage] dsn`` (its temporary files in ``data_dir/tmp``).

    Reads ``MSGSTORE_FAULTS`` once, here, to build the fault plan of the local backend.
    asyncpg is imported only when the postgres backend is configured.

    Raises:
        StoreError: PARAMS for an unknown backend or a malformed fault plan; whatever opening
            the store raises (TEMP, CORRUPTED; UNAVAILABLE when PostgreSQL cannot be reached;
            NOT_POSSIBLE when its schema is older than the code: run ``msgstore db upgrade``).
    """
    store, storage = config.store, config.storage
    if storage.backend == "local":
        from msgstore.storage.local import FaultPlan, LocalBackend

        plan = FaultPlan.from_env(os.environ.get(FAULTS_ENV))
        return await LocalBackend.open(store.data_dir, fault_plan=plan)
    if storage.backend == "postgres":
        from msgstore.storage.postgres import PostgresBackend

        return await PostgresBackend.open(
            storage.dsn,
            store.data_dir,
            pool_min=storage.pool_min,
            pool_max=storage.pool_max,
            acquire_timeout=float(storage.pool_timeout),
        )
    raise StoreError(ErrorKind.PARAMS, f"Unknown storage backend {storage.backend!r}")

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
    """Open the backend named by ``config.store.backend`` on ``config.store.data_dir``.

    Reads ``MSGSTORE_FAULTS`` once, here, to build the fault plan of the local backend.

    Raises:
        StoreError: PARAMS for an unknown backend or a malformed fault plan; whatever opening
            the store raises (TEMP, CORRUPTED).
    """
    store = config.store
    if store.backend == "local":
        from msgstore.storage.local import FaultPlan, LocalBackend

        plan = FaultPlan.from_env(os.environ.get(FAULTS_ENV))
        return await LocalBackend.open(store.data_dir, fault_plan=plan)
    raise StoreError(ErrorKind.PARAMS, f"Unknown storage backend {store.backend!r}")

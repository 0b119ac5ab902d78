"""The management layer: every admin operation, declared once (STYLE.md §7).

The admin CLI, the REST API, the web admin and the Python API are faces of these operations,
never separate implementations. An operation is a frozen dataclass registered with
:func:`~msgstore.management.operation.operation`; its fields are its parameters and its
``async run(ctx)`` does the work against a :class:`ManagementContext` (a Backend, the
configuration, a password hasher). ``OPERATIONS`` lists them all once the modules below are
imported (:func:`load_operations`).

    accounts.py    account add | delete | list | show | modify, password set
    mailboxes.py   mailbox list | create | delete | rename
    quotas.py      quota set | show
    operation.py   the declaration machinery, Secret, Limit, ManagementContext

Management imports only core, config and the storage interface (storage.base,
storage.access): the caller opens the backend and passes it in.
"""

from __future__ import annotations

from msgstore.management.operation import (
    OPERATIONS,
    ManagementContext,
    OperationSpec,
    Secret,
)

__all__ = ["OPERATIONS", "ManagementContext", "OperationSpec", "Secret", "load_operations"]


def load_operations() -> dict[str, OperationSpec]:
    """Import every operation module and return the registry, by name."""
    from msgstore.management import accounts, mailboxes, quotas  # noqa: F401

    return OPERATIONS

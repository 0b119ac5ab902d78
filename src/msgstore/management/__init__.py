"""The management layer: every admin operation, declared once (STYLE.md §7).

The admin CLI, the REST API, the web admin and the Python API are faces of these operations,
never separate implementations. An operation is a frozen dataclass registered with
:func:`~msgstore.management.operation.operation`; its fields are its parameters and its
``async run(ctx)`` does the work against a :class:`ManagementContext` (a Backend, the
configuration, a password hasher). ``OPERATIONS`` lists them all once the modules below are
imported (:func:`load_operations`).

    accounts.py    account add | delete | list | search | show | modify | rename,
                   password set | reset
    passwords.py   the password policy ([auth] password_*) and generated passwords
    mailboxes.py   mailbox list | create | delete | rename | status
    quotas.py      quota set | show
    acl.py         acl show | set | delete (any account's mailbox)
    public.py      public list | create | delete | owner, public acl ..., public quota ...
    stats.py       stats show (store totals)
    audit.py       audit list (run_operation writes the records)
    backup.py      account reconstruct | export | restore (backend capabilities)
    migration.py   migrate mbox | maildir | imap | pop (the engine, msgstore.migrate, is
                   passed in as ManagementContext.migrator)
    tokens.py      token create | list | revoke (REST API bearer tokens)
    sessions.py    session list | kill (live sessions of the running server)
    stats_live.py  stats live (per-minute events of the last hour)
    forwarding.py  forward add | delete | list | show
    queue.py       queue list | show | flush | retry | delete
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
    from msgstore.management import (  # noqa: F401
        accounts,
        acl,
        audit,
        backup,
        forwarding,
        mailboxes,
        migration,
        public,
        queue,
        quotas,
        sessions,
        stats,
        stats_live,
        tokens,
    )

    return OPERATIONS

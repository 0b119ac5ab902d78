"""The reconstruct engine: which accounts, check or repair, and logging every discrepancy.

Dry run by default (``apply=False``), as Cyrus's ``mailbox_reconstruct`` without
``make_changes``: the backend salvages and compares, and reports; only ``apply=True`` writes.
Every discrepancy is logged (logger ``msgstore.reconstruct``, WARNING) as well as returned.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from msgstore.core.errors import ErrorKind, StoreError
from msgstore.core.names import MailboxName
from msgstore.reconstruct.report import discrepancy_line
from msgstore.storage.base import (
    Backend,
    Feature,
    Progress,
    ReconstructReport,
    SupportsReconstruct,
)

log = logging.getLogger("msgstore.reconstruct")

#: Given an account name, the progress callback for its run (or None for no progress).
ProgressFor = Callable[[str], Progress | None]


def _capable(backend: Backend) -> SupportsReconstruct:
    if Feature.RECONSTRUCT not in backend.features or not isinstance(backend, SupportsReconstruct):
        raise StoreError(ErrorKind.NOT_POSSIBLE, "This storage backend cannot reconstruct")
    return backend


async def reconstruct(
    backend: Backend,
    names: Sequence[str],
    *,
    apply: bool = False,
    mailbox: MailboxName | None = None,
    new_uidvalidity: bool = False,
    progress: ProgressFor | None = None,
) -> list[ReconstructReport]:
    """Check (or, with ``apply``, repair) the named accounts, in order; ``progress(name)``
    gives each account's ``(done, total)`` callback (message files checked).

    Raises:
        StoreError: NOT_FOUND for an unknown account (before anything is done), NOT_POSSIBLE
            if the backend cannot reconstruct, TEMP if an index stays busy.
    """
    target = _capable(backend)
    accounts = [await backend.get_account(name) for name in names]
    reports: list[ReconstructReport] = []
    for info in accounts:
        callback = progress(info.name) if progress is not None else None
        if callback is None:
            report = await target.reconstruct(
                info.id, apply=apply, mailbox=mailbox, new_uidvalidity=new_uidvalidity
            )
        else:
            report = await target.reconstruct(
                info.id,
                apply=apply,
                mailbox=mailbox,
                new_uidvalidity=new_uidvalidity,
                progress=callback,
            )
        for item in report.discrepancies:
            log.warning("%s", discrepancy_line(report.account, item, applied=report.applied))
        if report.clean:
            log.info("%s: clean (%d messages)", report.account, report.messages)
        reports.append(report)
    return reports


async def reconstruct_all(
    backend: Backend,
    *,
    apply: bool = False,
    new_uidvalidity: bool = False,
    progress: ProgressFor | None = None,
) -> list[ReconstructReport]:
    """Every account, then the public folder tree."""
    _capable(backend)
    names = [a.name for a in await backend.list_accounts()]
    names.append((await backend.public_account()).name)
    return await reconstruct(
        backend, names, apply=apply, new_uidvalidity=new_uidvalidity, progress=progress
    )

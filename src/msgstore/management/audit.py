"""``audit list``: the record of management changes (written by ``run_operation``).

Every operation that changes something (all but list/show/status/search) is recorded with
who ran it (``os:<user>`` for the operating-system administrator, else the account name),
from where (``cli``, ``python``, ``rest 192.0.2.7``, ``poppassd 192.0.2.7``...), its
parameters (passwords replaced by ``<redacted>``) and its outcome (``ok`` or the error kind);
refused attempts (``no_perm``) are recorded for reads too.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field

from msgstore.core.errors import ErrorKind, StoreError
from msgstore.management.operation import ManagementContext, operation, param

#: Most records one ``audit list`` returns.
MAX_LIMIT = 10_000


def parse_since(text: str) -> dt.datetime:
    """ISO 8601 date or date-time (UTC when no offset is given): ``2026-11-29``,
    ``2026-11-29T10:00``, ``2026-11-29T10:00:00+01:00``."""
    try:
        value = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise StoreError(
            ErrorKind.PARAMS,
            f"Invalid time {text!r}: expected an ISO 8601 date such as 2026-11-29T10:00",
        ) from None
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One record of the audit log."""

    ts: dt.datetime
    actor: str
    origin: str
    operation: str
    outcome: str
    params: dict[str, object]
    message: str


@operation("audit list", http=("GET", "/audit"))
@dataclass(frozen=True, slots=True)
class AuditList:
    """List audit records, newest first, optionally filtered."""

    since: dt.datetime | None = field(
        default=None,
        metadata=param(
            "Only records at or after this ISO 8601 time.", parse=parse_since, metavar="TIME"
        ),
    )
    actor: str = field(
        default="", metadata=param("Only this actor: an account name, or os:<user>.")
    )
    operation: str = field(default="", metadata=param("Only this operation, e.g. 'account add'."))
    limit: int = field(default=100, metadata=param("At most N records.", metavar="N"))
    offset: int = field(default=0, metadata=param("Skip the newest N records.", metavar="N"))

    def __post_init__(self) -> None:
        if not 0 < self.limit <= MAX_LIMIT:
            raise StoreError(ErrorKind.PARAMS, f"--limit must be 1 to {MAX_LIMIT}")

    async def run(self, ctx: ManagementContext) -> list[AuditEntry]:
        records = await ctx.backend.list_audit(
            since=self.since,
            actor=self.actor or None,
            operation=self.operation or None,
            limit=self.limit,
            offset=self.offset,
        )
        out: list[AuditEntry] = []
        for r in records:
            try:
                params = json.loads(r.params)
            except ValueError:
                params = {"_raw": r.params}
            out.append(
                AuditEntry(
                    ts=r.ts,
                    actor=r.actor,
                    origin=r.origin,
                    operation=r.operation,
                    outcome=r.outcome,
                    params=params if isinstance(params, dict) else {"_raw": params},
                    message=r.message,
                )
            )
        return out

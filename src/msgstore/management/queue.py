"""Relay queue operations: ``queue list | show | flush | retry | delete`` (docs/delivery.md).

The queue holds forwarded mail for external addresses until the smarthost takes it (the
runner is ``delivery/relay.py``, a task of ``msgstore serve``). ``flush`` and ``retry`` make
messages due now; the runner sees that within ``[relay] poll_interval``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from msgstore.management.operation import ManagementContext, operation, param
from msgstore.storage.base import QueueEntry


@dataclass(frozen=True, slots=True)
class QueueReport:
    """One queued message."""

    queue_id: int
    sender: str  # "" for the null sender <>
    recipients: tuple[str, ...]
    size: int
    created: dt.datetime
    next_attempt: dt.datetime
    attempts: int
    last_error: str

    @classmethod
    def of(cls, entry: QueueEntry) -> QueueReport:
        return cls(
            queue_id=entry.id,
            sender=entry.sender,
            recipients=entry.recipients,
            size=entry.size,
            created=entry.created,
            next_attempt=entry.next_attempt,
            attempts=entry.attempts,
            last_error=entry.last_error,
        )


@dataclass(frozen=True, slots=True)
class QueueMessage:
    """A queued message with its header section."""

    queue_id: int
    sender: str
    recipients: tuple[str, ...]
    size: int
    created: dt.datetime
    next_attempt: dt.datetime
    attempts: int
    last_error: str
    headers: str


@dataclass(frozen=True, slots=True)
class FlushReport:
    """How many queued messages were made due now."""

    scheduled: int


@operation("queue list", http=("GET", "/queue"))
@dataclass(frozen=True, slots=True)
class QueueList:
    """List the messages waiting on the relay queue, next attempt first."""

    async def run(self, ctx: ManagementContext) -> list[QueueReport]:
        return [QueueReport.of(e) for e in await ctx.backend.list_queue()]


@operation("queue show", http=("GET", "/queue/{id}"))
@dataclass(frozen=True, slots=True)
class QueueShow:
    """Show one queued message: its envelope, attempts and header section."""

    id: int = field(metadata=param("Queue id (from queue list).", positional=True))

    async def run(self, ctx: ManagementContext) -> QueueMessage:
        entry = await ctx.backend.get_queued(self.id)
        data = await ctx.backend.read_queued(self.id)
        end = data.find(b"\r\n\r\n")
        head = data[: end + 2] if end >= 0 else data[:65536]
        return QueueMessage(
            queue_id=entry.id,
            sender=entry.sender,
            recipients=entry.recipients,
            size=entry.size,
            created=entry.created,
            next_attempt=entry.next_attempt,
            attempts=entry.attempts,
            last_error=entry.last_error,
            headers=head.decode("utf-8", "replace"),
        )


@operation("queue flush", http=("POST", "/queue/flush"))
@dataclass(frozen=True, slots=True)
class QueueFlush:
    """Make every queued message due now (the runner retries it at once)."""

    async def run(self, ctx: ManagementContext) -> FlushReport:
        now = dt.datetime.now(dt.UTC)
        entries = await ctx.backend.list_queue()
        for entry in entries:
            await ctx.backend.update_queued(entry.id, next_attempt=now)
        return FlushReport(len(entries))


@operation("queue retry", http=("POST", "/queue/{id}/retry"))
@dataclass(frozen=True, slots=True)
class QueueRetry:
    """Make one queued message due now."""

    id: int = field(metadata=param("Queue id (from queue list).", positional=True))

    async def run(self, ctx: ManagementContext) -> QueueReport:
        entry = await ctx.backend.update_queued(self.id, next_attempt=dt.datetime.now(dt.UTC))
        assert entry is not None  # no recipient was removed
        return QueueReport.of(entry)


@operation("queue delete", confirm=True, http=("DELETE", "/queue/{id}"))
@dataclass(frozen=True, slots=True)
class QueueDelete:
    """Remove a message from the relay queue without sending it (no DSN is sent)."""

    id: int = field(metadata=param("Queue id (from queue list).", positional=True))

    async def run(self, ctx: ManagementContext) -> None:
        await ctx.backend.delete_queued(self.id)

"""Live sessions: list the IMAP, POP3, poppassd, LMTP and SMTP connections of a running server
(every worker of ``msgstore serve --workers N``) and disconnect one.

The sessions live in the server processes, not in the store, so the operations reach them
through a :class:`SessionDirectory` on the :class:`ManagementContext` (``ctx.sessions``) that
the face provides: the REST API and the local CLI hand in ``msgstore.net.control``'s client,
which asks each process's control socket. Without one (a face that cannot reach the server)
the operations fail with UNAVAILABLE.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from msgstore.core.errors import ErrorKind, StoreError
from msgstore.management.operation import ManagementContext, operation, param


class SessionDirectory(Protocol):
    """The server processes' live sessions and statistics (``msgstore.net.control``)."""

    async def sessions(self) -> list[dict[str, object]]:
        """Every session of every process: id, protocol, account, remote, since (epoch
        seconds), commands, pid."""
        ...

    async def kill(self, ident: str) -> bool:
        """Disconnect one session; False if no process has it."""
        ...

    async def stats(self) -> list[dict[str, object]]:
        """Per process: ``{"pid": n, "minutes": [[epoch_minute, {event: count}], ...]}``."""
        ...


def directory(ctx: ManagementContext) -> SessionDirectory:
    """The context's session directory, or UNAVAILABLE."""
    found = ctx.sessions
    if found is None:
        raise StoreError(
            ErrorKind.UNAVAILABLE,
            "Live sessions are known only to the running server; this face cannot reach it",
        )
    return found


@dataclass(frozen=True, slots=True)
class LiveSessionReport:
    """One connection of a running server."""

    session_id: str  # "<pid>.<n>": what ``session kill`` takes
    protocol: str  # imap, pop3, poppassd, lmtp, smtp
    account: str  # "" before login (and for LMTP/SMTP)
    remote: str  # the client address ("" for a Unix socket)
    since: dt.datetime  # UTC
    commands: int
    pid: int  # the server process that holds it

    @classmethod
    def of(cls, raw: Mapping[str, object]) -> LiveSessionReport:
        since = raw.get("since")
        commands = raw.get("commands")
        pid = raw.get("pid")
        return cls(
            session_id=str(raw.get("id", "")),
            protocol=str(raw.get("protocol", "")),
            account=str(raw.get("account", "")),
            remote=str(raw.get("remote", "")),
            since=dt.datetime.fromtimestamp(
                float(since) if isinstance(since, int | float) else 0.0, dt.UTC
            ).replace(microsecond=0),
            commands=commands if isinstance(commands, int) else 0,
            pid=pid if isinstance(pid, int) else 0,
        )


@operation("session list", http=("GET", "/sessions"))
@dataclass(frozen=True, slots=True)
class SessionList:
    """List the open IMAP, POP3, poppassd, LMTP and SMTP sessions of the running server.

    Each shows its protocol, account (once logged in), client address, start time, commands
    so far and the server process holding it; oldest first.
    """

    protocol: str | None = field(
        default=None, metadata=param("Only sessions of this protocol (imap, pop3, lmtp, ...).")
    )
    account: str | None = field(
        default=None, metadata=param("Only sessions logged in as this account.")
    )

    async def run(self, ctx: ManagementContext) -> list[LiveSessionReport]:
        found = [LiveSessionReport.of(raw) for raw in await directory(ctx).sessions()]
        if self.protocol is not None:
            found = [s for s in found if s.protocol == self.protocol.lower()]
        if self.account is not None:
            key = self.account.casefold()
            found = [s for s in found if s.account.casefold() == key]
        return sorted(found, key=lambda s: (s.since, s.pid, s.session_id))


@operation("session kill", http=("DELETE", "/sessions/{id}"))
@dataclass(frozen=True, slots=True)
class SessionKill:
    """Disconnect one session (IMAP says ``* BYE``, POP3 ``-ERR``, LMTP/SMTP ``421``).

    POP3 deletions not yet committed with QUIT are not made; a message being received is not
    stored. The client may connect again (disable its login to keep it out).
    """

    id: str = field(metadata=param("Session id, as session list shows it.", positional=True))

    async def run(self, ctx: ManagementContext) -> None:
        if not await directory(ctx).kill(self.id):
            raise StoreError(ErrorKind.NOT_FOUND, f"No such session {self.id!r}")

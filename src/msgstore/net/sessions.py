"""The live sessions of this process: who is connected, over what, since when.

Every connection a :class:`~msgstore.net.stream.StreamService` accepts (IMAP, POP3, poppassd,
LMTP, SMTP) carries a :class:`LiveSession` (``conn.live``) that the service registers in
:data:`REGISTRY` when the session starts and removes when it ends, however it ends. Protocol
code adds what only it knows, one call each::

    conn.live.command()              # a command was read (also counts msgstore_commands_total)
    conn.live.logged_in("alice")     # the session is now alice's

:meth:`Registry.kill` ends a session the way a server shutdown does (its reads raise
ServiceClosingError, so IMAP says ``* BYE``, POP3 ``-ERR``, LMTP ``421``), and aborts the
connection if it has not closed after :data:`KILL_GRACE_S` (a client that does not read).
The registry is served to the other processes on the worker's control socket
(``net/control.py``).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from msgstore import metrics

#: Seconds a killed session gets to say goodbye before its connection is aborted.
KILL_GRACE_S: Final = 5.0
#: What a killed IMAP session reads in its ``* BYE``.
KILL_REASON: Final = "Disconnected by an administrator"


@dataclass(eq=False, slots=True)
class LiveSession:
    """One client connection as ``session list`` shows it."""

    protocol: str = ""
    remote: str = ""
    #: "<pid>.<n>": unique among the processes of one server (the pid routes a kill).
    id: str = ""
    since: float = field(default_factory=time.time)  # epoch seconds
    account: str = ""
    commands: int = 0
    #: Ends the session (set by the registry); None while not registered.
    _kill: Callable[[str], None] | None = None

    def command(self) -> None:
        """Count one command read (here and in ``msgstore_commands_total``)."""
        self.commands += 1
        if self.protocol:
            metrics.command(self.protocol)

    def logged_in(self, account: str) -> None:
        self.account = account

    def as_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "protocol": self.protocol,
            "account": self.account,
            "remote": self.remote,
            "since": self.since,
            "commands": self.commands,
            "pid": os.getpid(),
        }


class Registry:
    """The live sessions of this process, by id."""

    def __init__(self) -> None:
        self._sessions: dict[str, LiveSession] = {}
        self._numbers = itertools.count(1)

    def register(
        self, live: LiveSession, protocol: str, remote: str, kill: Callable[[str], None]
    ) -> None:
        live.protocol = protocol
        live.remote = remote
        live.id = f"{os.getpid()}.{next(self._numbers)}"
        live.since = time.time()
        live._kill = kill
        self._sessions[live.id] = live
        metrics.connection_opened(protocol)

    def unregister(self, live: LiveSession) -> None:
        if self._sessions.pop(live.id, None) is not None:
            live._kill = None
            metrics.connection_closed(live.protocol)

    def sessions(self) -> list[LiveSession]:
        return sorted(self._sessions.values(), key=lambda s: (s.since, s.id))

    def kill(self, ident: str, reason: str = KILL_REASON) -> bool:
        """End the session ``ident``; False if there is none."""
        live = self._sessions.get(ident)
        if live is None or live._kill is None:
            return False
        live._kill(reason)
        return True

    def __len__(self) -> int:
        return len(self._sessions)


#: This process's sessions.
REGISTRY: Final = Registry()


def killer(notify: Callable[[str], None], abort: Callable[[], None]) -> Callable[[str], None]:
    """A kill function: ``notify(reason)`` now, ``abort()`` after :data:`KILL_GRACE_S`."""

    def kill(reason: str) -> None:
        notify(reason)
        try:
            asyncio.get_running_loop().call_later(KILL_GRACE_S, abort)
        except RuntimeError:
            abort()

    return kill

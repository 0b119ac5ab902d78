"""``start(config, backend, listeners)``: the POP3 entry of ``msgstore serve``'s SERVICES.

The running service is a :class:`~msgstore.net.connection.LineService`: closing it stops
accepting, open sessions get ``-ERR [SYS/TEMP] Server shutting down`` and delete nothing, and
then the authenticator is closed.
"""

from __future__ import annotations

from collections.abc import Sequence

from msgstore.auth.sasl import Authenticator
from msgstore.auth.throttle import ThrottlePolicy, process_throttle
from msgstore.config import Config
from msgstore.net.connection import Connection, ConnectionLimits, LineService
from msgstore.net.listener import Listener
from msgstore.net.tls import server_context
from msgstore.pop3.commands import TABLE
from msgstore.pop3.session import Pop3Context, Session
from msgstore.storage.base import Backend

#: Where the maildrop locks live, below the data directory (see maildrop.py).
LOCK_DIR = ("run", "pop3-locks")


async def start(config: Config, backend: Backend, listeners: Sequence[Listener]) -> LineService:
    tls = None
    if config.tls.cert is not None and config.tls.key is not None:
        tls = server_context(config.tls.cert, config.tls.key, alpn=["pop3"])
    auth = Authenticator(backend, process_throttle(ThrottlePolicy.from_config(config)))
    context = Pop3Context(
        config=config,
        backend=backend,
        auth=auth,
        tls=tls,
        lock_dir=config.store.data_dir.joinpath(*LOCK_DIR),
        commands=TABLE,
    )

    async def handle(conn: Connection) -> None:
        await Session(context, conn).run()

    limits = ConnectionLimits(
        max_line_octets=config.pop3.max_line,
        tls_handshake_timeout=float(max(config.pop3.auth_timeout, 1)),
    )
    return await LineService.start(
        "pop3", listeners, handle, limits=limits, tls=tls, on_close=auth.close
    )

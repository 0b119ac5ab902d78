"""``start(config, backend, listeners)``: the IMAP entry of ``msgstore serve``'s SERVICES.

One :class:`~msgstore.imap.connection.ImapConnection` (with its own framer) per client, one
session task per connection. ``tls_listen`` sockets do the TLS handshake first (IMAPS);
``listen`` sockets offer STARTTLS. Closing the service stops accepting, sends ``* BYE`` to
every session and waits a short grace period before cutting the rest off.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Sequence
from typing import Final

from msgstore.auth.sasl import Authenticator
from msgstore.auth.throttle import ThrottlePolicy, process_throttle
from msgstore.config import Config
from msgstore.imap.connection import ImapConnection
from msgstore.imap.framer import Framer, FramerLimits
from msgstore.imap.session import ImapContext, Session, SessionLimits
from msgstore.net.listener import Listener
from msgstore.net.tls import server_context
from msgstore.storage.base import Backend

log = logging.getLogger(__name__)

#: Seconds sessions get to say goodbye when the server stops.
CLOSE_GRACE_S: Final = 5.0


def framer_limits(config: Config) -> FramerLimits:
    """The framer's limits from ``[imap]``; APPEND literals are capped by ``[imap]
    append_limit`` and ``[store] max_message_size``."""
    base = FramerLimits()
    imap = config.imap
    store_max = config.store.max_message_size
    size = min(imap.append_limit or store_max, store_max)
    return FramerLimits(
        max_line_octets=imap.max_line,
        max_literal_octets=imap.max_literal,
        max_append_literal_octets=size,
        max_nonsync_literal_octets=imap.literal_minus_max or None,
        max_literals=max(imap.max_literals, 1),
        max_command_octets=max(base.max_command_octets, imap.max_line + imap.max_literal),
        max_append_command_octets=max(base.max_append_command_octets, size),
    )


class ImapService:
    """The running IMAP service: its listeners and sessions."""

    def __init__(self, ctx: ImapContext) -> None:
        self.ctx = ctx
        self._servers: list[asyncio.Server] = []
        self._sessions: dict[ImapConnection, asyncio.Task[None]] = {}

    @property
    def session_count(self) -> int:
        return len(self._sessions)

    def _accept(self, implicit: bool) -> ImapConnection:
        config = self.ctx.config

        def made(conn: ImapConnection) -> None:
            task = asyncio.get_running_loop().create_task(self._run(conn))
            self._sessions[conn] = task

        framer = Framer(framer_limits(config))
        return ImapConnection(
            framer,
            implicit_tls=implicit,
            tls_handshake_timeout=self.ctx.limits.tls_handshake_timeout,
            command_timeout=self.ctx.limits.command_timeout,
            on_made=made,
        )

    async def _run(self, conn: ImapConnection) -> None:
        try:
            await Session(self.ctx, conn).run()
        except Exception:
            log.error("imap: session failed", exc_info=True)
        finally:
            conn.close()
            self._sessions.pop(conn, None)

    async def listen(self, listeners: Sequence[Listener]) -> None:
        loop = asyncio.get_running_loop()
        for listener in listeners:
            implicit = listener.implicit_tls
            if implicit and self.ctx.tls is None:
                raise ValueError(f"{listener.key}: implicit TLS needs a certificate")

            def factory(implicit: bool = implicit) -> ImapConnection:
                return self._accept(implicit)

            server = await loop.create_server(
                factory,
                sock=listener.sock,
                ssl=self.ctx.tls if implicit else None,
                ssl_handshake_timeout=self.ctx.limits.tls_handshake_timeout if implicit else None,
            )
            self._servers.append(server)

    async def close(self) -> None:
        """Stop accepting; sessions get ``* BYE Server shutting down``."""
        for server in self._servers:
            server.close()
        for conn in list(self._sessions):
            conn.notify_closing()
        tasks = list(self._sessions.values())
        if tasks:
            _, still = await asyncio.wait(tasks, timeout=CLOSE_GRACE_S)
            for conn, task in list(self._sessions.items()):
                if task in still:
                    conn.abort()
                    task.cancel()
            for task in still:
                with contextlib.suppress(BaseException):
                    await task
        for server in self._servers:
            with contextlib.suppress(Exception):
                await server.wait_closed()
        self._servers.clear()
        self.ctx.auth.close()


async def start(config: Config, backend: Backend, listeners: Sequence[Listener]) -> ImapService:
    tls: ssl.SSLContext | None = None
    if config.tls.cert is not None and config.tls.key is not None:
        tls = server_context(config.tls.cert, config.tls.key, alpn=["imap"])
    auth = Authenticator(backend, process_throttle(ThrottlePolicy.from_config(config)))
    service = ImapService(
        ImapContext(config, backend, auth, tls, SessionLimits.from_config(config))
    )
    try:
        await service.listen(listeners)
    except BaseException:
        await service.close()
        raise
    return service

"""``start(config, backend, listeners)``: the IMAP entry of ``msgstore serve``'s SERVICES.

One :class:`~msgstore.imap.connection.ImapConnection` (with its own framer) per client, one
session task per connection. ``tls_listen`` sockets do the TLS handshake first (IMAPS);
``listen`` sockets offer STARTTLS. Closing the service stops accepting, sends ``* BYE`` to
every session and waits a short grace period before cutting the rest off.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable, Sequence

from msgstore.auth.sasl import Authenticator
from msgstore.auth.throttle import ThrottlePolicy, process_throttle
from msgstore.config import Config
from msgstore.imap.connection import ImapConnection
from msgstore.imap.framer import Framer, FramerLimits

# The command table and every command module it imports: loaded with the service (before the
# fork of --workers N), not by the first session, which would pay ~30 ms of imports.
from msgstore.imap.registry import REGISTRY as _COMMANDS  # noqa: F401
from msgstore.imap.session import ImapContext, Session, SessionLimits
from msgstore.net.listener import Listener
from msgstore.net.stream import StreamService
from msgstore.net.tls import server_context
from msgstore.storage.base import Backend


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


class ImapService(StreamService[ImapConnection]):
    """The running IMAP service: its listeners and sessions. :meth:`close` gives sessions
    ``* BYE Server shutting down``, then closes the authenticator."""

    def __init__(self, ctx: ImapContext) -> None:
        super().__init__("imap", on_close=ctx.auth.close)
        self.ctx = ctx

    def _connection(
        self, implicit_tls: bool, on_made: Callable[[ImapConnection], None]
    ) -> ImapConnection:
        return ImapConnection(
            Framer(framer_limits(self.ctx.config)),
            implicit_tls=implicit_tls,
            tls_handshake_timeout=self.ctx.limits.tls_handshake_timeout,
            command_timeout=self.ctx.limits.command_timeout,
            output_timeout=self.ctx.limits.output_timeout,
            on_made=on_made,
        )

    async def _serve(self, conn: ImapConnection) -> None:
        await Session(self.ctx, conn).run()


async def start(config: Config, backend: Backend, listeners: Sequence[Listener]) -> ImapService:
    tls: ssl.SSLContext | None = None
    if config.tls.cert is not None and config.tls.key is not None:
        tls = server_context(config.tls.cert, config.tls.key, alpn=["imap"])
    auth = Authenticator(backend, process_throttle(ThrottlePolicy.from_config(config)))
    service = ImapService(
        ImapContext(config, backend, auth, tls, SessionLimits.from_config(config))
    )
    try:
        await service.listen(
            listeners, tls=tls, tls_handshake_timeout=service.ctx.limits.tls_handshake_timeout
        )
    except BaseException:
        await service.close()
        raise
    return service

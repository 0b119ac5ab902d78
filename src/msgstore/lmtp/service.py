"""``start_lmtp`` / ``start_smtp``: the delivery channel entries of ``msgstore serve``'s SERVICES.

Both run the same session code (``session.py``) on ``[lmtp] listen`` and ``[smtp] listen``;
they differ in the greeting verb (LHLO vs EHLO/HELO), the replies after the data (one per
recipient vs one), STARTTLS (SMTP only) and relaying (SMTP refuses recipients outside
``[delivery] domains`` with 550 5.7.1).
"""

from __future__ import annotations

import socket
from collections.abc import Sequence

from msgstore.config import Config
from msgstore.delivery.pipeline import DeliveryPipeline
from msgstore.lmtp.connection import ChannelConnection, ChannelService
from msgstore.lmtp.protocol import Protocol
from msgstore.lmtp.session import ChannelContext, Session
from msgstore.net.connection import Connection, ConnectionLimits
from msgstore.net.listener import Listener
from msgstore.net.tls import server_context
from msgstore.storage.base import Backend


class ChannelServer:
    """A running LMTP or SMTP service."""

    def __init__(self, lines: ChannelService) -> None:
        self._lines = lines

    @property
    def session_count(self) -> int:
        return self._lines.session_count

    async def close(self) -> None:
        """Stop accepting; open sessions get ``421 4.3.2`` and store nothing half-received."""
        await self._lines.close()


async def _start(
    protocol: Protocol, config: Config, backend: Backend, listeners: Sequence[Listener]
) -> ChannelServer:
    limits = config.lmtp if protocol is Protocol.LMTP else config.smtp
    tls = None
    if protocol is Protocol.SMTP and config.tls.cert is not None and config.tls.key is not None:
        tls = server_context(config.tls.cert, config.tls.key, alpn=["smtp"])
    context = ChannelContext(
        protocol=protocol,
        limits=limits,
        pipeline=DeliveryPipeline.from_config(backend, config),
        hostname=socket.gethostname() or "localhost",
        tls=tls,
    )

    async def handle(conn: Connection) -> None:
        assert isinstance(conn, ChannelConnection)
        await Session(context, conn).run()

    connection_limits = ConnectionLimits(
        max_line_octets=limits.max_line,
        max_buffered_octets=256 * 1024,
        tls_handshake_timeout=float(max(limits.command_timeout, 1)),
    )
    lines = await ChannelService.start(
        protocol.value, listeners, handle, limits=connection_limits, tls=tls
    )
    assert isinstance(lines, ChannelService)
    return ChannelServer(lines)


async def start_lmtp(
    config: Config, backend: Backend, listeners: Sequence[Listener]
) -> ChannelServer:
    return await _start(Protocol.LMTP, config, backend, listeners)


async def start_smtp(
    config: Config, backend: Backend, listeners: Sequence[Listener]
) -> ChannelServer:
    return await _start(Protocol.SMTP, config, backend, listeners)

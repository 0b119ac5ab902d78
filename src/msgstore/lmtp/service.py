"""``start_lmtp`` / ``start_smtp``: the delivery channel entries of ``msgstore serve``'s SERVICES.

Both run the same session code (``session.py``) on ``[lmtp] listen`` and ``[smtp] listen``;
they differ in the greeting verb (LHLO vs EHLO/HELO), the replies after the data (one per
recipient vs one), STARTTLS (SMTP only) and relaying (SMTP refuses recipients outside
``[delivery] domains`` with 550 5.7.1).

The running service is a :class:`~msgstore.net.connection.LineService`: closing it stops
accepting, and open sessions get ``421 4.3.2`` and store nothing half-received.
"""

from __future__ import annotations

import socket
from collections.abc import Sequence

from msgstore.config import Config
from msgstore.delivery.pipeline import DeliveryPipeline
from msgstore.lmtp.protocol import Protocol
from msgstore.lmtp.session import ChannelContext, Session
from msgstore.net.connection import Connection, ConnectionLimits, LineService
from msgstore.net.listener import Listener
from msgstore.net.tls import server_context
from msgstore.storage.base import Backend


async def _start(
    protocol: Protocol, config: Config, backend: Backend, listeners: Sequence[Listener]
) -> LineService:
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
        await Session(context, conn).run()

    connection_limits = ConnectionLimits(
        max_line_octets=limits.max_line,
        max_buffered_octets=256 * 1024,
        tls_handshake_timeout=float(max(limits.command_timeout, 1)),
    )
    return await LineService.start(
        protocol.value, listeners, handle, limits=connection_limits, tls=tls
    )


async def start_lmtp(
    config: Config, backend: Backend, listeners: Sequence[Listener]
) -> LineService:
    return await _start(Protocol.LMTP, config, backend, listeners)


async def start_smtp(
    config: Config, backend: Backend, listeners: Sequence[Listener]
) -> LineService:
    return await _start(Protocol.SMTP, config, backend, listeners)

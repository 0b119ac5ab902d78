"""``start(config, backend, listeners)``: the poppassd entry of ``msgstore serve``'s SERVICES.

poppassd has no TLS (its clients never had it): a ``tls_listen``-style key does not exist for
it, and the service refuses to start on an implicit-TLS listener.
"""

from __future__ import annotations

from collections.abc import Sequence

from msgstore.auth.sasl import Authenticator
from msgstore.auth.throttle import ThrottlePolicy, process_throttle
from msgstore.config import Config
from msgstore.net.connection import Connection, ConnectionLimits, LineService
from msgstore.net.listener import Listener
from msgstore.poppassd.session import MAX_LINE_OCTETS, PoppassdSession
from msgstore.storage.base import Backend


async def start(config: Config, backend: Backend, listeners: Sequence[Listener]) -> LineService:
    auth = Authenticator(backend, process_throttle(ThrottlePolicy.from_config(config)))

    async def handle(conn: Connection) -> None:
        await PoppassdSession(config, backend, auth, conn).run()

    limits = ConnectionLimits(max_line_octets=MAX_LINE_OCTETS)
    return await LineService.start(
        "poppassd", listeners, handle, limits=limits, tls=None, on_close=auth.close
    )

"""``start(config, backend, listeners)``: the socketmap entry of ``msgstore serve``'s SERVICES
(``[delivery] socketmap_listen``).

One session per connection answers requests in order, as long as the client keeps the
connection (Postfix reuses one for many lookups and closes it after 10 s idle). Limits, each
closing the connection:

- a request over :data:`MAX_REQUEST_OCTETS`, a malformed netstring, a request that is not UTF-8
  or has no ``name key`` shape: ``PERM <reason>``, then close -- the stream cannot be trusted
  to be in step any more;
- an unknown map name: ``PERM``, then close (a configuration error on the client side);
- a lookup that takes longer than :data:`LOOKUP_TIMEOUT_S`: ``TIMEOUT``, the session goes on;
- the store failing: ``TEMP <reason>`` (from the pipeline's Deferred outcome, or a store error
  raised while looking up), the session goes on;
- no request for :data:`IDLE_TIMEOUT_S`, or a started request not complete within
  :data:`REQUEST_TIMEOUT_S`: closed without a reply.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Sequence
from typing import Final

from msgstore.config import Config
from msgstore.core.errors import StoreError
from msgstore.delivery.pipeline import DeliveryPipeline
from msgstore.net.connection import Connection, ConnectionLimits, LineService
from msgstore.net.listener import Listener
from msgstore.net.logs import log_context
from msgstore.socketmap.maps import MAPS, Answer, Status, Tables
from msgstore.socketmap.netstring import NetstringDecoder, NetstringError, encode
from msgstore.storage.base import Backend

log = logging.getLogger(__name__)

#: Longest request payload (``name key``): a map name and an address of at most 256 octets
#: (RFC 5321 §4.5.3.1.3) fit many times over.
MAX_REQUEST_OCTETS: Final = 2048
#: Time between two requests before an idle connection is closed.
IDLE_TIMEOUT_S: Final = 60.0
#: Time to receive the rest of a request once its first octet arrived.
REQUEST_TIMEOUT_S: Final = 10.0
#: Time one lookup may take before it is answered TIMEOUT (Postfix waits 100 s).
LOOKUP_TIMEOUT_S: Final = 10.0


class SocketmapSession:
    """One client connection: netstring requests in, netstring replies out."""

    def __init__(self, tables: Tables, conn: Connection) -> None:
        self.tables = tables
        self.conn = conn
        self.decoder = NetstringDecoder(MAX_REQUEST_OCTETS)

    async def run(self) -> None:
        with log_context(
            service="socketmap",
            ident=self.conn.peer_host or "unix",  # a Unix-socket peer has no address
            session=secrets.token_urlsafe(6),
        ):
            while True:
                try:
                    request = self.decoder.next()
                except NetstringError as exc:
                    await self._refuse(str(exc))
                    return
                if request is None:
                    within = REQUEST_TIMEOUT_S if self.decoder.pending() else IDLE_TIMEOUT_S
                    try:
                        self.decoder.feed(await self.conn.read_chunk(within))
                    except TimeoutError:
                        if self.decoder.pending():
                            log.info("request not complete within %gs; closing", within)
                        return
                    continue
                if not await self._answer(request):
                    return

    async def _answer(self, request: bytes) -> bool:
        """Answer one request; False when the connection must close."""
        try:
            text = request.decode("utf-8")
        except UnicodeDecodeError:
            await self._refuse("request is not UTF-8")
            return False
        name, space, key = text.partition(" ")
        if not space or not name:
            await self._refuse("malformed request: expected 'name key'")
            return False
        if name not in MAPS:
            await self._refuse(f"unknown map {name!r} (maps: {', '.join(MAPS)})")
            return False
        try:
            async with asyncio.timeout(LOOKUP_TIMEOUT_S):
                answer = await self.tables.lookup(name, key)
        except TimeoutError:
            log.warning("%s lookup of %r took over %gs", name, key, LOOKUP_TIMEOUT_S)
            answer = Answer(Status.TIMEOUT, f"lookup took over {LOOKUP_TIMEOUT_S:g}s")
        except StoreError as exc:
            log.warning("%s lookup of %r failed: %s", name, key, exc.detail or exc.public)
            answer = Answer(Status.TEMP, exc.public)
        log.debug("%s %r: %s %s", name, key, answer.status.value, answer.text)
        self.conn.write(encode(answer.payload()))
        await self.conn.drain()
        return True

    async def _refuse(self, reason: str) -> None:
        log.info("refused: %s; closing", reason)
        self.conn.write(encode(Answer(Status.PERM, reason).payload()))
        await self.conn.drain()


async def start(config: Config, backend: Backend, listeners: Sequence[Listener]) -> LineService:
    """Answer socketmap lookups on ``listeners`` until the service is closed."""
    tables = Tables(DeliveryPipeline.from_config(backend, config))

    async def handle(conn: Connection) -> None:
        await SocketmapSession(tables, conn).run()

    limits = ConnectionLimits(
        max_line_octets=MAX_REQUEST_OCTETS + 16, max_buffered_octets=4 * MAX_REQUEST_OCTETS
    )
    return await LineService.start("socketmap", listeners, handle, limits=limits, tls=None)

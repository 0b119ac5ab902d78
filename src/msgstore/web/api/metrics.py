"""``/metrics``: the Prometheus text format (metrics.py), plus gauges read from the store.

Who may read it is ``[web] metrics_access`` (default ``loopback``: local scrapers need no
credentials, anyone else needs a manager's). The store gauges cost a pass over the accounts,
so they are computed at most every :data:`STORE_GAUGES_TTL_S` seconds per process:

    msgstore_accounts                 accounts (without the public-folder pseudo-account)
    msgstore_store_octets             octets of mail in the accounts' trees
    msgstore_store_messages           messages in the accounts' trees
    msgstore_relay_queue_messages     messages waiting on the outbound relay queue
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from typing import Final

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from msgstore import metrics
from msgstore.core.errors import StoreError
from msgstore.web.api.auth import authenticate, client_host
from msgstore.web.api.errors import error_response, unauthorized
from msgstore.web.context import WebContext

log = logging.getLogger(__name__)

#: Seconds the store gauges are reused before they are read again.
STORE_GAUGES_TTL_S: Final = 30.0


def is_local(host: str) -> bool:
    """A loopback address, or "" (a Unix socket)."""
    if not host:
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback  # ::ffff:127.0.0.1 on a dual-stack socket
    return address.is_loopback


class StoreGauges:
    """The store gauges of one process, cached (see the module docstring)."""

    def __init__(self, ctx: WebContext) -> None:
        self._ctx = ctx
        self._at = -STORE_GAUGES_TTL_S
        self._values: list[tuple[str, str, float]] = []
        self._lock = asyncio.Lock()

    async def values(self) -> list[tuple[str, str, float]]:
        async with self._lock:
            if time.monotonic() - self._at >= STORE_GAUGES_TTL_S:
                self._values = await self._read()
                self._at = time.monotonic()
            return self._values

    async def _read(self) -> list[tuple[str, str, float]]:
        backend = self._ctx.backend
        out: list[tuple[str, str, float]] = []
        try:
            accounts = await backend.list_accounts()
            octets = messages = 0
            for account in accounts:
                quota = await backend.get_quota(account.id)
                octets += quota.storage_used_octets
                messages += quota.messages_used
            out += [
                ("msgstore_accounts", "Accounts in the store.", float(len(accounts))),
                ("msgstore_store_octets", "Octets of mail in the accounts.", float(octets)),
                ("msgstore_store_messages", "Messages in the accounts.", float(messages)),
            ]
        except StoreError as exc:
            log.warning("metrics: cannot read the store totals: %s", exc.public)
        try:
            queued = await backend.list_queue()
            out.append(
                (
                    "msgstore_relay_queue_messages",
                    "Messages waiting on the outbound relay queue.",
                    float(len(queued)),
                )
            )
        except StoreError as exc:
            log.warning("metrics: cannot read the relay queue: %s", exc.public)
        return out


def metrics_route(ctx: WebContext) -> Route:
    """The ``GET /metrics`` route."""
    gauges = StoreGauges(ctx)
    access = ctx.config.web.metrics_access

    async def endpoint(request: Request) -> Response:
        if access == "off":
            return error_response(404, "not_found", "Not Found")
        open_to_all = access == "public" or (
            access == "loopback" and is_local(client_host(request))
        )
        if not open_to_all:
            account = await authenticate(ctx, request.headers, client_host(request))
            if account is None:
                return unauthorized()
            if not account.manager:
                return error_response(403, "no_perm", "Permission denied: metrics need a manager")
        extra = await gauges.values()
        body = await asyncio.to_thread(metrics.exposition, extra)
        return Response(body, media_type=metrics.CONTENT_TYPE)

    return Route("/metrics", endpoint, methods=["GET"])

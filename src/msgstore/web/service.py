"""``start(config, backend, listeners)``: the web entry of ``msgstore serve``'s SERVICES.

uvicorn serves the application on the sockets the server bound, on the server's own event
loop (ECOSYSTEM.md §9): no thread, no second process. Its signal handling is switched off;
``msgstore serve`` owns SIGTERM and stops the web service through :meth:`WebService.close`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Generator, Sequence
from typing import Final

import uvicorn

from msgstore.auth.sasl import Authenticator
from msgstore.auth.throttle import ThrottlePolicy, process_throttle
from msgstore.config import Config
from msgstore.core.errors import ErrorKind, StoreError
from msgstore.net.listener import Listener
from msgstore.storage.base import Backend
from msgstore.web.app import create_app
from msgstore.web.context import WebContext

log = logging.getLogger(__name__)

#: Seconds open requests get to finish when the server stops.
STOP_GRACE_S: Final = 5.0


class _EmbeddedServer(uvicorn.Server):
    """uvicorn without its own signal handlers (the serve loop has them)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


class WebService:
    """The running web listener(s)."""

    def __init__(self, server: _EmbeddedServer, task: asyncio.Task[None], auth: Authenticator):
        self._server = server
        self._task = task
        self._auth = auth

    async def close(self) -> None:
        self._server.should_exit = True
        try:
            await asyncio.wait_for(asyncio.shield(self._task), STOP_GRACE_S)
        except TimeoutError:
            self._server.force_exit = True
            await self._task
        finally:
            await self._auth.logins.flush()  # before the store closes
            self._auth.close()


async def start(config: Config, backend: Backend, listeners: Sequence[Listener]) -> WebService:
    for listener in listeners:
        if listener.implicit_tls:
            raise StoreError(ErrorKind.PARAMS, f"{listener.key}: the web listener has no TLS")
    auth = Authenticator(backend, process_throttle(ThrottlePolicy.from_config(config)))
    ctx = WebContext(config=config, backend=backend, auth=auth)
    server = _EmbeddedServer(
        uvicorn.Config(
            create_app(ctx),
            lifespan="off",
            log_config=None,
            access_log=False,
            http="httptools",
            ws="none",
            server_header=False,
            proxy_headers=False,
        )
    )
    task = asyncio.create_task(server.serve(sockets=[lst.sock for lst in listeners]))
    while not server.started:
        if task.done():
            task.result()  # raises what stopped it
            raise StoreError(ErrorKind.INTERNAL, "the web server stopped while starting")
        await asyncio.sleep(0.01)
    return WebService(server, task, auth)

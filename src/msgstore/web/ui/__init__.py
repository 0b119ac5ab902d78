"""The user pages and the management pages (Jinja2 templates, server-side sessions, CSRF)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from msgstore.web.context import WebContext


def build_ui(ctx: WebContext) -> list[BaseRoute]:
    """The routes of the pages, static files and metrics, mounted at ``/``."""

    async def index(request: Request) -> Response:
        return PlainTextResponse("msgstore\n")

    return [Route("/", index, methods=["GET"])]

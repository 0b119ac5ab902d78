"""The ASGI application: one Starlette app with the REST API, metrics and the pages mounted."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.routing import Mount

from msgstore.web.api import build_api
from msgstore.web.context import WebContext
from msgstore.web.ui import build_ui


def create_app(ctx: WebContext) -> Starlette:
    """Build the whole web application for ``ctx``.

    The REST API is its own FastAPI application (so that its OpenAPI document lists only API
    routes) mounted under ``/api/v1``; the user and management pages, static files and
    ``/metrics`` come from :func:`msgstore.web.ui.build_ui`.
    """
    return Starlette(routes=[Mount("/api/v1", app=build_api(ctx)), *build_ui(ctx)])

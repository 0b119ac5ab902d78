"""The ASGI application: one Starlette app with the REST API, metrics and the pages mounted."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.routing import Mount

from msgstore.web.api import PREFIX, build_api
from msgstore.web.api.metrics import metrics_route
from msgstore.web.context import WebContext
from msgstore.web.ui import build_ui


def create_app(ctx: WebContext) -> Starlette:
    """Build the whole web application for ``ctx``.

    The REST API is its own FastAPI application (so that its OpenAPI document lists only API
    routes) mounted under ``/api/v1``; ``/metrics`` is web/api/metrics.py; the user and
    management pages and static files come from :func:`msgstore.web.ui.build_ui`.
    """
    return Starlette(
        routes=[Mount(PREFIX, app=build_api(ctx)), metrics_route(ctx), *build_ui(ctx)]
    )

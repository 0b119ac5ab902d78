"""The REST API under ``/api/v1``: the management operations as JSON (FastAPI + OpenAPI)."""

from __future__ import annotations

from fastapi import FastAPI

from msgstore import __version__
from msgstore.web.context import WebContext


def build_api(ctx: WebContext) -> FastAPI:
    """The FastAPI application mounted at ``/api/v1``."""
    api = FastAPI(
        title="msgstore REST API",
        version=__version__,
        openapi_url="/openapi.json",
        docs_url="/docs",
        redoc_url=None,
    )
    api.state.ctx = ctx
    return api

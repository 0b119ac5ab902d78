"""The REST API under ``/api/v1``: the management operations as JSON (FastAPI + OpenAPI).

    __init__.py   build_api: the FastAPI application, its error handlers, its documents
    routes.py     one route per operation, generated from the operation registry
    auth.py       HTTP Basic (store accounts) and bearer tokens; 401 before anything else
    errors.py     ErrorKind -> HTTP status, the error JSON
    streams.py    export and restore: the archive as the response or request body
    docs.py       /api/v1/docs: the OpenAPI document as a script-free HTML page
    metrics.py    /metrics (mounted by web/app.py, not under /api/v1)

docs/rest.md is the manual (a test checks it lists every route).
"""

from __future__ import annotations

import re
from typing import Any, Final

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from msgstore import __version__
from msgstore.core.errors import StoreError
from msgstore.management import load_operations
from msgstore.web.api import docs
from msgstore.web.api.auth import ApiAuth
from msgstore.web.api.errors import error_response, internal_error, store_error_response
from msgstore.web.api.routes import add_routes
from msgstore.web.context import WebContext

#: Where the API is mounted (web/app.py).
PREFIX: Final = "/api/v1"
#: The documents anyone may read (they describe the routes, not the data).
PUBLIC_PATHS: Final = frozenset({"/openapi.json", "/docs"})

_STATUS_KIND: Final = {
    400: "params",
    401: "auth_failed",
    403: "no_perm",
    404: "not_found",
    405: "not_possible",
    413: "too_big",
    415: "params",
}


def _location(loc: tuple[Any, ...]) -> str:
    """A validation error's field: ("body", "quota") -> "quota"; ("query", "x") -> "x"."""
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


def _route_pattern(path: str) -> re.Pattern[str]:
    """``/accounts/{name}/restore`` -> a pattern matching ``/accounts/bob/restore``."""
    parts = ("[^/]+" if p.startswith("{") else re.escape(p) for p in path.split("/"))
    return re.compile("/".join(parts))


def build_api(ctx: WebContext) -> FastAPI:
    """The FastAPI application mounted at ``/api/v1``."""
    api = FastAPI(
        title="msgstore REST API",
        version=__version__,
        description="The management operations of msgstore (docs/rest.md).",
        openapi_url="/openapi.json",
        docs_url=None,
        redoc_url=None,
        servers=[{"url": PREFIX}],
    )
    api.state.ctx = ctx
    result_schemas = add_routes(api, load_operations(), ctx)

    @api.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Response:
        fields: dict[str, str] = {}
        for err in exc.errors():
            fields.setdefault(_location(tuple(err.get("loc", ()))), str(err.get("msg", "invalid")))
        first = next(iter(fields.items()), ("body", "invalid request"))
        return error_response(422, "params", f"{first[0]}: {first[1]}", fields=fields)

    @api.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        kind = _STATUS_KIND.get(exc.status_code, "params" if exc.status_code < 500 else "internal")
        return error_response(exc.status_code, kind, str(exc.detail), headers=exc.headers)

    @api.exception_handler(StoreError)
    async def store_error(request: Request, exc: StoreError) -> Response:
        return store_error_response(exc)

    @api.exception_handler(Exception)
    async def crashed(request: Request, exc: Exception) -> Response:
        return internal_error(exc)

    generate = api.openapi

    def openapi() -> dict[str, Any]:
        """FastAPI's document (regenerated when routes change), completed: the schemas of
        the results, and the two ways to authenticate."""
        schema = generate()
        components = schema.setdefault("components", {})
        known = components.setdefault("schemas", {})
        for name, definition in result_schemas.items():
            known.setdefault(name, definition)
        components["securitySchemes"] = {
            "basic": {"type": "http", "scheme": "basic", "description": "A store account."},
            "bearer": {
                "type": "http",
                "scheme": "bearer",
                "description": "A token from msgstore token create.",
            },
        }
        schema["security"] = [{"basic": []}, {"bearer": []}]
        return schema

    api.openapi = openapi  # type: ignore[method-assign]
    page: list[str] = []

    @api.get("/docs", include_in_schema=False)
    async def documentation() -> Response:
        if not page:
            page.append(docs.render(api.openapi(), PREFIX))
        return HTMLResponse(page[0], headers={"Content-Security-Policy": docs.CSP})

    uploads = [
        (spec.http[0].upper(), _route_pattern(spec.http[1]))
        for spec in load_operations().values()
        if spec.http is not None and any(p.stream == "in" for p in spec.params)
    ]
    api.add_middleware(ApiAuth, ctx=ctx, public=PUBLIC_PATHS, uploads=uploads)
    return api


__all__ = ["PREFIX", "build_api"]

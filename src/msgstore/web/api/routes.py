"""One route per management operation, generated from its declaration (never written by hand).

For an operation declared with ``http=(METHOD, PATH)`` (management/operation.py) the route is
``METHOD /api/v1PATH``; the wire contract (shared with the remote CLI and the web pages):

- path variables are fields of the operation; the other fields come from the query string
  for GET and DELETE, and from a JSON object body for POST, PUT and PATCH;
- body values: JSON booleans for bool fields, a JSON integer or a string for int fields,
  otherwise strings in the text form the CLI accepts (parsed by the field's ``Param.parse``),
  ``null`` or absent for "the default" / "unchanged"; passwords (Secret fields) are strings
  and never accepted in a URL;
- success: 200 with the result as JSON (``management.jsonable.to_json``), 204 when the
  operation returns nothing;
- an operation with a stream field (``param(stream=...)``: account export and restore) takes
  its other fields from the query string, and its file is the request or response body
  (streams.py);
- a ``long`` operation (migration runs) runs with ``[web] api_migrate_timeout`` as its
  ``ManagementContext.time_limit``;
- errors: errors.py.

The request models are pydantic models built from the operation's parameters
(``pydantic.create_model``), so the OpenAPI document names every parameter with its type,
whether it is required, its choices and its help text; their validation errors and the text
parsers' PARAMS errors both become 422 with ``fields``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import inspect
import json
import logging
import re
import typing
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Final, Literal

from fastapi import Body, Depends, FastAPI, Path, Query
from pydantic import ConfigDict, Field, StrictBool, TypeAdapter, create_model
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from msgstore.core.accounts import AccountInfo
from msgstore.core.errors import ErrorKind, StoreError
from msgstore.management.jsonable import to_json
from msgstore.management.operation import (
    Access,
    Actor,
    OperationSpec,
    Param,
    Secret,
    actor_label,
    name_fields,
    run_operation,
)
from msgstore.storage.base import AuditRecord
from msgstore.web.api import streams
from msgstore.web.api.auth import ACCOUNT_KEY, client_host
from msgstore.web.api.errors import ErrorBody, error_response, store_error_response
from msgstore.web.context import WebContext

log = logging.getLogger(__name__)

#: Methods whose parameters travel in the query string.
QUERY_METHODS: Final = frozenset({"GET", "DELETE"})
_REQUEST: Final = "msgstore_request"
_BODY: Final = "msgstore_body"


def path_variables(path: str) -> list[str]:
    return re.findall(r"\{([A-Za-z_][A-Za-z0-9_]*)\}", path)


def _camel(name: str) -> str:
    return "".join(word.capitalize() for word in re.split(r"[^A-Za-z0-9]+", name) if word)


def _wire_type(p: Param, *, where: Literal["path", "query", "body"]) -> Any:
    """The type a parameter has on the wire (before ``Param.parse``)."""
    if p.type is bool:
        return StrictBool if where == "body" else bool
    if p.type is Secret:
        return str
    if p.choices is not None:
        return Literal[p.choices]
    if p.type is int:
        return int | str if where == "body" else int
    if p.type is not str and where == "body":
        return int | str  # a limit or size: 1000 or "1000" or "10M"
    return str


def _field_info(p: Param, required: bool, where: Literal["path", "query", "body"]) -> Any:
    extra: dict[str, Any] = {}
    if p.type is Secret:
        extra["format"] = "password"
    if p.metavar:
        extra["x-metavar"] = p.metavar
    default: Any = ... if required else None
    if where == "path":
        return Path(description=p.help, json_schema_extra=extra or None)
    if where == "query":
        return Query(description=p.help, json_schema_extra=extra or None)
    return Field(default, description=p.help, json_schema_extra=extra or None)


def _annotated(kind: Any, info: Any) -> Any:
    """``Annotated[kind, info]`` for a type known only at run time."""
    return Annotated[kind, info]


def _wire_value(p: Param, value: object) -> object:
    """What the operation gets for a wire value (raises StoreError PARAMS)."""
    if p.type is bool:
        return bool(value)
    if p.type is Secret:
        return Secret(str(value))
    return p.parse(str(value))


def _result_schema(spec: OperationSpec, defs: dict[str, Any]) -> dict[str, Any] | None:
    """The JSON schema of the operation's result, or None if pydantic cannot describe it.

    The schemas it refers to are added to ``defs`` (they go to ``components/schemas``).
    """
    if spec.result is None or spec.result is type(None):
        return None
    try:
        schema = TypeAdapter(typing.cast(Any, spec.result)).json_schema(
            mode="serialization", ref_template="#/components/schemas/{model}"
        )
    except Exception:
        return None
    defs.update(schema.pop("$defs", {}))
    return schema


def add_route(api: FastAPI, spec: OperationSpec, ctx: WebContext, defs: dict[str, Any]) -> None:
    """Register the route of one operation; the result's schemas go to ``defs``."""
    assert spec.http is not None
    method, path = spec.http
    method = method.upper()
    in_path = set(path_variables(path))
    stream = stream_of(spec)
    in_query = method in QUERY_METHODS or stream is not None  # a stream is the body
    signature: list[inspect.Parameter] = [
        inspect.Parameter(_REQUEST, inspect.Parameter.KEYWORD_ONLY, annotation=Request)
    ]
    body_fields: dict[str, Any] = {}
    for p in spec.params:
        if p is stream:
            continue
        if p.name in in_path:
            annotation = _annotated(_wire_type(p, where="path"), _field_info(p, True, "path"))
            signature.append(
                inspect.Parameter(p.name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation)
            )
        elif in_query:
            if p.type is Secret:
                raise TypeError(f"{spec.name}: a password cannot travel in a {method} URL")
            wire = _wire_type(p, where="query")
            annotation = _annotated(
                wire if p.required else wire | None, _field_info(p, p.required, "query")
            )
            signature.append(
                inspect.Parameter(
                    p.name,
                    inspect.Parameter.KEYWORD_ONLY,
                    annotation=annotation,
                    default=inspect.Parameter.empty if p.required else None,
                )
            )
        else:
            wire = _wire_type(p, where="body")
            body_fields[p.name] = (
                wire if p.required else wire | None,
                _field_info(p, p.required, "body"),
            )
    if body_fields:
        model = create_model(
            f"{_camel(spec.name)}Body",
            __config__=ConfigDict(extra="forbid"),
            __doc__=f"The parameters of {spec.name}.",
            **body_fields,
        )
        required = any(p.required for p in spec.params if p.name in body_fields)
        signature.append(
            inspect.Parameter(
                _BODY,
                inspect.Parameter.KEYWORD_ONLY,
                annotation=_annotated(model if required else model | None, Body()),
                default=inspect.Parameter.empty if required else None,
            )
        )

    endpoint = _endpoint(spec, ctx) if stream is None else _stream_endpoint(spec, ctx, stream)
    endpoint.__signature__ = inspect.Signature(signature)  # type: ignore[attr-defined]
    endpoint.__name__ = spec.name.replace(" ", "_")

    responses: dict[int | str, dict[str, Any]] = {
        401: {"model": ErrorBody, "description": "No or wrong credentials."},
        403: {"model": ErrorBody, "description": "The account may not run this operation."},
        404: {"model": ErrorBody, "description": "Something named does not exist."},
        409: {"model": ErrorBody, "description": "A conflict: it exists, is in use, ..."},
        422: {"model": ErrorBody, "description": "Invalid parameters (see fields)."},
        503: {"model": ErrorBody, "description": "Temporarily unavailable; retry."},
    }
    schema = _result_schema(spec, defs)
    no_result = spec.result is None or spec.result is type(None)
    status = 204 if no_result else 200
    if schema is not None:
        responses[200] = {
            "description": "The result.",
            "content": {"application/json": {"schema": schema}},
        }
    openapi_extra: dict[str, Any] | None = None
    binary = {"type": "string", "format": "binary"}
    if stream is not None and stream.stream == "out":
        status = 200
        responses[200] = {
            "description": f"The file, streamed; the result ({_camel(spec.name)} as JSON) "
            f"is in the {streams.RESULT_HEADER} header.",
            "content": {stream.media_type: {"schema": binary}},
            "headers": {streams.RESULT_HEADER: {"schema": {"type": "string"}}},
        }
    elif stream is not None:
        openapi_extra = {  # the body is taken as it comes, whatever its Content-Type
            "requestBody": {
                "required": True,
                "description": stream.help,
                "content": {
                    stream.media_type: {"schema": binary},
                    "application/octet-stream": {"schema": binary},
                },
            }
        }
        responses[413] = {"model": ErrorBody, "description": "The body is too large."}
    who = (
        "managers"
        if spec.access is Access.MANAGER
        else f"managers, and the account named by {spec.self_field}"
    )
    api.add_api_route(
        path,
        endpoint,
        methods=[method],
        name=spec.name,
        summary=spec.summary,
        description=f"{spec.doc}\n\nOperation `{spec.name}`; allowed to {who}.",
        operation_id=spec.name.replace(" ", "_"),
        tags=[spec.name.split(" ")[0]],
        status_code=status,
        responses=responses,
        response_class=JSONResponse,
        openapi_extra=openapi_extra,
        dependencies=[Depends(_manager_only(spec, ctx))]
        if spec.access is Access.MANAGER
        else None,
    )


def _actor(request: Request) -> Actor:
    account: AccountInfo = getattr(request.state, ACCOUNT_KEY)
    return Actor(name=account.name, account=account, origin=f"rest {client_host(request)}")


def _manager_only(spec: OperationSpec, ctx: WebContext) -> Callable[[Request], Awaitable[None]]:
    """Refuse a non-manager before the parameters are validated, so that a non-manager gets
    403 whatever it sends (and cannot probe the validation). The refusal is audited like
    ``run_operation``'s (with the path's parameters, the only ones known yet), and
    ``run_operation`` still checks every request that gets through: it stays the one check
    every face passes through."""

    async def check(request: Request) -> None:
        actor = _actor(request)
        if actor.is_manager:
            return
        refusal = StoreError(ErrorKind.NO_PERM, f"Permission denied: {spec.name} needs a manager")
        record = AuditRecord(
            ts=dt.datetime.now(dt.UTC),
            actor=actor_label(actor),
            origin=actor.origin,
            operation=spec.name,
            params=json.dumps(dict(request.path_params), ensure_ascii=False, sort_keys=True),
            outcome=ErrorKind.NO_PERM.name.lower(),
            message=refusal.public,
        )
        try:
            await ctx.backend.append_audit(record)
        except Exception as exc:
            log.error("audit log: could not record %s by %s: %s", spec.name, actor.name, exc)
        raise refusal

    return check


def _values(spec: OperationSpec, kwargs: dict[str, Any]) -> dict[str, object] | Response:
    """The operation's values from the endpoint's arguments, or the 422 answer."""
    by_name = {p.name: p for p in spec.params}
    body = kwargs.pop(_BODY, None)
    raw: dict[str, object] = {k: v for k, v in kwargs.items() if v is not None}
    if body is not None:
        for name in type(body).model_fields:
            value = getattr(body, name)
            if value is not None:
                raw[name] = value
    values: dict[str, object] = {}
    fields: dict[str, str] = {}
    for name, value in raw.items():
        try:
            values[name] = _wire_value(by_name[name], value)
        except StoreError as exc:
            if exc.kind is not ErrorKind.PARAMS:
                raise
            fields[name] = exc.public
    if fields:
        first = next(iter(fields.values()))
        return error_response(422, "params", first, fields=fields)
    return values


async def _run(
    spec: OperationSpec, ctx: WebContext, request: Request, values: dict[str, object]
) -> object:
    """Build and run the operation as the caller (raises StoreError, fields named)."""
    try:
        op = spec.build(values)
    except StoreError as exc:
        name_fields(exc, spec, values)
        raise
    mctx = dataclasses.replace(ctx.management(), actor=_actor(request))
    if spec.long:  # a synchronous call: bounded (docs/rest.md)
        mctx = dataclasses.replace(mctx, time_limit=ctx.config.web.api_migrate_timeout)
    return await run_operation(op, mctx)


def _endpoint(spec: OperationSpec, ctx: WebContext) -> Callable[..., Awaitable[Response]]:
    async def endpoint(**kwargs: Any) -> Response:
        request: Request = kwargs.pop(_REQUEST)
        values = _values(spec, kwargs)
        if isinstance(values, Response):
            return values
        try:
            result = await _run(spec, ctx, request, values)
        except StoreError as exc:
            return store_error_response(exc)
        if result is None:
            return Response(status_code=204)
        return JSONResponse(to_json(result))

    return endpoint


def stream_of(spec: OperationSpec) -> Param | None:
    """The operation's stream field (``param(stream=...)``), if it has one."""
    return next((p for p in spec.params if p.stream is not None), None)


def _stream_endpoint(
    spec: OperationSpec, ctx: WebContext, stream: Param
) -> Callable[..., Awaitable[Response]]:
    """The endpoint of an operation whose file is the response or request body
    (web/api/streams.py)."""

    async def endpoint(**kwargs: Any) -> Response:
        request: Request = kwargs.pop(_REQUEST)
        values = _values(spec, kwargs)
        if isinstance(values, Response):
            return values
        spool = await asyncio.to_thread(streams.spool_dir, ctx.config)
        cleanup = streams.remover(spool)
        try:
            values[stream.name] = str(spool / "archive.tar")
            if stream.stream == "in":
                await streams.receive_body(
                    request, spool / "archive.tar", ctx.config.web.api_max_restore_size
                )
            result = await _run(spec, ctx, request, values)
            if stream.stream == "out":
                target = " ".join(str(values[p.name]) for p in spec.params if p.positional)
                response = await streams.send_file(
                    spool / "archive.tar",
                    media_type=stream.media_type,
                    filename=f"{target or 'archive'}.tar",
                    result=result,
                    cleanup=cleanup,
                )
                cleanup = _nothing
                return response
        except StoreError as exc:
            return store_error_response(exc)
        finally:
            await asyncio.to_thread(cleanup)
        if result is None:
            return Response(status_code=204)
        return JSONResponse(to_json(result))

    return endpoint


def _nothing() -> None:
    return None


def add_routes(
    api: FastAPI, operations: typing.Mapping[str, OperationSpec], ctx: WebContext
) -> dict[str, Any]:
    """Register a route for every operation that declares one; returns the schemas their
    results refer to (for the document's ``components/schemas``)."""
    defs: dict[str, Any] = {}
    offered = [spec for spec in operations.values() if spec.http is not None]
    for spec in offered:
        add_route(api, spec, ctx, defs)
    return defs

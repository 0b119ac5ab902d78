"""Errors as the REST API reports them: one status table and one JSON shape.

Every error is ``{"error": "<ErrorKind name in lower case>", "message": "<public text>"}``
with the status of :data:`HTTP_STATUS`; a 422 also carries ``"fields": {name: reason}``: the
parameters a :class:`~msgstore.management.operation.ParamError` names (an operation's own
checks: an unknown ACL identifier, a password the policy refuses, ...), or those whose value
failed to parse; empty only when the operation refused the combination of values rather than
one of them ("Nothing to change"). Internal
errors say only ``Internal error [incident]``; the traceback goes to the log with the same id.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Mapping
from typing import Final

from pydantic import BaseModel, Field
from starlette.responses import JSONResponse

from msgstore import metrics
from msgstore.core.errors import ErrorKind, StoreError
from msgstore.management.operation import ParamError

log = logging.getLogger(__name__)

#: ErrorKind -> HTTP status (the wire contract); kinds not listed are 500.
HTTP_STATUS: Final[Mapping[ErrorKind, int]] = {
    ErrorKind.PARAMS: 422,
    ErrorKind.NOT_FOUND: 404,
    ErrorKind.EXISTS: 409,
    ErrorKind.IN_USE: 409,
    ErrorKind.HAS_CHILDREN: 409,
    ErrorKind.NOT_POSSIBLE: 409,
    ErrorKind.NO_PERM: 403,
    ErrorKind.AUTH_FAILED: 401,
    ErrorKind.OVER_QUOTA: 507,
    ErrorKind.TOO_BIG: 413,
    ErrorKind.LIMIT: 413,
    ErrorKind.TEMP: 503,
    ErrorKind.UNAVAILABLE: 503,
}

#: The challenges of a 401: HTTP Basic (RFC 7617) and bearer tokens (RFC 6750).
CHALLENGES: Final = ('Basic realm="msgstore", charset="UTF-8"', 'Bearer realm="msgstore"')


class ErrorBody(BaseModel):
    """The body of every error response."""

    error: str = Field(description="The error kind: params, not_found, exists, no_perm, ...")
    message: str = Field(description="What went wrong, for people.")
    fields: dict[str, str] | None = Field(
        default=None, description="422 only: the reason for each invalid parameter."
    )


def status_of(kind: ErrorKind) -> int:
    return HTTP_STATUS.get(kind, 500)


def error_response(
    status: int,
    kind: str,
    message: str,
    *,
    fields: Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    body: dict[str, object] = {"error": kind, "message": message}
    if fields is not None or status == 422:
        body["fields"] = dict(fields or {})
    return JSONResponse(body, status_code=status, headers=dict(headers or {}))


def store_error_response(
    exc: StoreError, *, fields: Mapping[str, str] | None = None
) -> JSONResponse:
    status = status_of(exc.kind)
    if status == 500:
        return internal_error(exc)
    if exc.detail:
        log.info("%s: %s", exc.public, exc.detail)
    if fields is None and isinstance(exc, ParamError):
        fields = exc.fields
    return error_response(status, exc.kind.name.lower(), exc.public, fields=fields)


def internal_error(exc: BaseException) -> JSONResponse:
    incident = secrets.token_hex(4)
    log.error("internal error [%s] in a REST request", incident, exc_info=exc)
    metrics.error("web")
    return error_response(500, ErrorKind.INTERNAL.name.lower(), f"Internal error [{incident}]")


def unauthorized(message: str = "Authentication required") -> JSONResponse:
    response = error_response(401, ErrorKind.AUTH_FAILED.name.lower(), message)
    for challenge in CHALLENGES:
        response.headers.append("WWW-Authenticate", challenge)
    return response

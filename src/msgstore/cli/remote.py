"""Remote mode: the same operation, sent to a running server's REST API (``--url --user``).

The request follows the wire contract every face shares (docs/api.md, "REST"): the route is
the operation's declared ``http`` under ``/api/v1``; path variables are fields; the other
fields go in the query string (GET, DELETE) or a JSON object body (POST, PUT, PATCH), as the
same text the command line took (bools as JSON booleans, secrets as strings). Only the
options given are sent: the server applies the defaults. The answer is ``to_json`` of the
result (204: nothing), or ``{"error": kind, "message": text}``, which becomes the same
one-line error and exit code as a local failure.

Authentication is HTTP Basic as a store account; the server's permission check decides (a
non-manager may only run the self-service operations on itself). The standard library's
``urllib.request`` is enough (no new dependency); HTTPS is verified against the system's CA
store (``SSL_CERT_FILE`` points it elsewhere).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Final

import click

from msgstore.cli.context import CliContext
from msgstore.cli.errors import EX_USAGE, fail
from msgstore.core.errors import ErrorKind, StoreError
from msgstore.management.jsonable import JsonValue
from msgstore.management.operation import OperationSpec, Param, Secret

API_PREFIX: Final = "/api/v1"
TIMEOUT_S: Final = 300.0
#: Status -> kind, for error answers without a usable body.
_STATUS_KIND: Final = {
    401: ErrorKind.AUTH_FAILED,
    403: ErrorKind.NO_PERM,
    404: ErrorKind.NOT_FOUND,
    409: ErrorKind.EXISTS,
    413: ErrorKind.TOO_BIG,
    422: ErrorKind.PARAMS,
    503: ErrorKind.UNAVAILABLE,
    507: ErrorKind.OVER_QUOTA,
}


def password_of(cli: CliContext) -> str:
    """The remote account's password: stdin's first line, MSGSTORE_PASSWORD, or a prompt."""
    if cli.password_stdin:
        line = sys.stdin.buffer.readline()
        try:
            return line.decode("utf-8").removesuffix("\n").removesuffix("\r")
        except UnicodeDecodeError:
            raise StoreError(ErrorKind.PARAMS, "the password is not valid UTF-8") from None
    env = os.environ.get("MSGSTORE_PASSWORD")
    if env is not None:
        return env
    if sys.stdin.isatty():
        return str(click.prompt(f"Password for {cli.user}", hide_input=True))
    fail("no password: use --password-stdin, MSGSTORE_PASSWORD, or a terminal", EX_USAGE)


def wire_value(value: object) -> JsonValue:
    """A given value in its wire form: bools and ints as JSON, secrets revealed, else text."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, Secret):
        return value.reveal()
    if isinstance(value, int):
        return value
    return str(value)


def build_request(
    spec: OperationSpec, given: Mapping[str, object], base_url: str
) -> tuple[str, str, bytes | None]:
    """(method, url, body) for running ``spec`` with the ``given`` values (raw text forms)."""
    if spec.http is None:
        raise StoreError(
            ErrorKind.NOT_POSSIBLE,
            f"'{spec.name}' is not offered over the REST API: run it on the server's machine",
        )
    method, template = spec.http
    stream = next((p for p in spec.params if p.stream is not None), None)
    rest = {k: v for k, v in given.items() if stream is None or k != stream.name}
    parts = []
    for part in template.split("/"):
        if part.startswith("{") and part.endswith("}"):
            name = part[1:-1]
            value = rest.pop(name, None)
            if value is None:
                raise StoreError(ErrorKind.PARAMS, f"missing {name}")
            parts.append(urllib.parse.quote(str(wire_value(value)), safe=""))
        else:
            parts.append(part)
    url = base_url.rstrip("/") + API_PREFIX + "/".join(parts)
    body: bytes | None = None
    if method in ("GET", "DELETE") or stream is not None:  # a stream is the body
        query = []
        for name, value in rest.items():
            wire = wire_value(value)
            text = ("true" if wire else "false") if isinstance(wire, bool) else str(wire)
            query.append((name, text))
        if query:
            url += "?" + urllib.parse.urlencode(query)
    else:
        body = json.dumps({k: wire_value(v) for k, v in rest.items()}).encode()
    return method, url, body


def call(
    cli: CliContext, spec: OperationSpec, given: Mapping[str, object], password: str
) -> JsonValue:
    """Run the operation on the server; the JSON result, or raise the StoreError it answered."""
    assert cli.url is not None
    assert cli.user is not None
    method, url, body = build_request(spec, given, cli.url)
    token = base64.b64encode(f"{cli.user}:{password}".encode()).decode("ascii")
    headers = {"Authorization": f"Basic {token}", "Accept": "application/json"}
    stream = next((p for p in spec.params if p.stream is not None), None)
    if stream is not None:
        return _call_streaming(cli, method, url, headers, stream, str(given[stream.name]))
    if body is not None:
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(url, data=body, method=method, headers=headers)  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:  # noqa: S310
            data = response.read()
            if response.status == 204 or not data:
                return None
            result: JsonValue = json.loads(data)
            return result
    except urllib.error.HTTPError as exc:
        raise _error(exc.code, exc.read()) from None
    except urllib.error.URLError as exc:
        raise StoreError(ErrorKind.UNAVAILABLE, f"cannot reach {cli.url}: {exc.reason}") from None
    except (OSError, ValueError) as exc:
        raise StoreError(ErrorKind.UNAVAILABLE, f"{cli.url}: {exc}") from None


def _error(status: int, payload: bytes) -> StoreError:
    kind = _STATUS_KIND.get(status, ErrorKind.INTERNAL if status >= 500 else ErrorKind.PARAMS)
    message = f"HTTP {status}"
    try:
        data = json.loads(payload)
    except ValueError:
        data = None
    if isinstance(data, dict):
        name = str(data.get("error", "")).upper()
        kind = ErrorKind.__members__.get(name, kind)
        message = str(data.get("message") or message)
        fields = data.get("fields")
        if isinstance(fields, dict) and fields:
            message += " (" + "; ".join(f"{k}: {v}" for k, v in fields.items()) + ")"
    return StoreError(kind, message)


#: The header of a streamed response that carries the operation's JSON result
#: (web/api/streams.py).
RESULT_HEADER: Final = "X-Msgstore-Result"
_CHUNK: Final = 256 * 1024


def _call_streaming(
    cli: CliContext,
    method: str,
    url: str,
    headers: dict[str, str],
    stream: Param,
    local: str,
) -> JsonValue:
    """An operation whose file travels as the body: ``stream="in"`` sends the local file
    ``local`` as the request body; ``stream="out"`` writes the response body to ``local``
    (under a temporary name, renamed when complete) and returns the result from
    :data:`RESULT_HEADER`."""
    path = Path(local)
    try:
        if stream.stream == "in":
            return _upload(method, url, headers, stream, path)
        return _download(method, url, headers, path)
    except urllib.error.HTTPError as exc:
        raise _error(exc.code, exc.read()) from None
    except urllib.error.URLError as exc:
        raise StoreError(ErrorKind.UNAVAILABLE, f"cannot reach {cli.url}: {exc.reason}") from None
    except (OSError, ValueError) as exc:
        raise StoreError(ErrorKind.UNAVAILABLE, f"{cli.url}: {exc}") from None


def _upload(
    method: str, url: str, headers: dict[str, str], stream: Param, path: Path
) -> JsonValue:
    try:
        source = path.open("rb")
    except FileNotFoundError:
        raise StoreError(ErrorKind.NOT_FOUND, f"No such file: {path}") from None
    except OSError as exc:
        raise StoreError(ErrorKind.PARAMS, f"Cannot read {path}: {exc.strerror}") from None
    with source:
        size = os.fstat(source.fileno()).st_size
        sent = dict(headers, **{"Content-Type": stream.media_type, "Content-Length": str(size)})
        request = urllib.request.Request(url, data=source, method=method, headers=sent)  # noqa: S310
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:  # noqa: S310
            data = response.read()
    if not data:
        return None
    result: JsonValue = json.loads(data)
    return result


def _download(method: str, url: str, headers: dict[str, str], path: Path) -> JsonValue:
    destination = Path(os.path.abspath(path))
    if not destination.parent.is_dir():
        raise StoreError(ErrorKind.PARAMS, f"No such directory: {destination.parent}")
    if destination.is_dir():
        raise StoreError(ErrorKind.PARAMS, f"{destination} is a directory")
    request = urllib.request.Request(url, method=method, headers=headers)  # noqa: S310
    with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:  # noqa: S310
        fd, partial = tempfile.mkstemp(
            prefix=f".{destination.name}.", suffix=".part", dir=destination.parent
        )
        try:
            with os.fdopen(fd, "wb") as out:
                while chunk := response.read(_CHUNK):
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            os.replace(partial, destination)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(partial)
            raise
        header = response.headers.get(RESULT_HEADER)
    if not header:
        return None
    result: JsonValue = json.loads(header)
    return result

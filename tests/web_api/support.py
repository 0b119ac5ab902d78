"""A small HTTP client for the REST API tests (urllib: nothing between the test and the wire)."""

from __future__ import annotations

import base64
import http.client
import json
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from email.message import Message
from typing import Any, Final

from msgstore.management import load_operations
from msgstore.management.operation import OperationSpec, Param, Secret

PREFIX: Final = "/api/v1"
BODY_METHODS: Final = frozenset({"POST", "PUT", "PATCH"})


@dataclass(frozen=True)
class Reply:
    status: int
    headers: Message
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def __str__(self) -> str:
        return f"{self.status} {self.body[:500]!r}"


def basic(name: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{name}:{password}".encode()).decode()


def bearer(token: str) -> str:
    return f"Bearer {token}"


class Api:
    """Requests to one server's web listener."""

    def __init__(self, port: int, auth: str | None = None) -> None:
        self.port = port
        self.auth = auth

    def as_(self, auth: str | None) -> Api:
        return Api(self.port, auth)

    def call(
        self,
        method: str,
        path: str,
        *,
        body: object = None,
        query: Mapping[str, object] | None = None,
        raw_body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        prefix: str = PREFIX,
    ) -> Reply:
        target = prefix + path
        if query:
            target += "?" + urllib.parse.urlencode({k: _q(v) for k, v in query.items()})
        data = raw_body
        sent = dict(headers or {})
        if body is not None:
            data = json.dumps(body).encode()
            sent.setdefault("Content-Type", "application/json")
        if self.auth is not None:
            sent.setdefault("Authorization", self.auth)
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request(method, target, body=data, headers=sent)
            resp = conn.getresponse()
            return Reply(resp.status, resp.headers, resp.read())
        finally:
            conn.close()

    def get(self, path: str, **query: object) -> Reply:
        return self.call("GET", path, query=query)


def _q(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def routes() -> list[OperationSpec]:
    """Every operation the REST API offers."""
    return [spec for spec in load_operations().values() if spec.http is not None]


def quote(value: object) -> str:
    return urllib.parse.quote(str(value), safe="")


def dummy(p: Param) -> object:
    """A plausible value for a required parameter (to get past validation)."""
    if p.type is bool:
        return False
    if p.type is Secret:
        return "Dummy-Pw-1234"
    if p.choices:
        return p.choices[0]
    if p.type is int:
        return 1
    return "x"


def request_for(spec: OperationSpec, values: Mapping[str, object]) -> tuple[str, str, Any, Any]:
    """(method, path, body, query) for ``spec`` with ``values`` (missing required ones get
    :func:`dummy` values), following the wire contract."""
    assert spec.http is not None
    method, path = spec.http
    filled = dict(values)
    for p in spec.params:
        if p.required and p.name not in filled:
            filled[p.name] = dummy(p)
    for name in list(filled):
        token = "{" + name + "}"
        if token in path:
            path = path.replace(token, quote(filled.pop(name)))
    if method in BODY_METHODS:
        return method, path, filled, None
    return method, path, None, filled

"""docs/rest.md lists every route (its table is generated from the registry and must be
current: ``python -m msgstore.web.api.routedoc --update docs/rest.md``), and every metric the
server exposes is described there."""

from __future__ import annotations

from pathlib import Path

from msgstore.web.api import routedoc
from tests.web_api.support import routes

REST_MD = Path(__file__).resolve().parents[2] / "docs" / "rest.md"


def test_the_route_table_is_current() -> None:
    text = REST_MD.read_text()
    assert routedoc.update(text) == text, (
        "docs/rest.md is out of date: python -m msgstore.web.api.routedoc --update docs/rest.md"
    )


def test_every_route_is_in_the_manual() -> None:
    text = REST_MD.read_text()
    for spec in routes():
        assert spec.http is not None
        method, path = spec.http
        assert f"| {method} | `/api/v1{path}` | `{spec.name}` |" in text, spec.name


def test_every_metric_is_in_the_manual() -> None:
    text = REST_MD.read_text()
    for name in (
        "msgstore_connections",
        "msgstore_commands_total",
        "msgstore_logins_total",
        "msgstore_login_failures_total",
        "msgstore_deliveries_total",
        "msgstore_rejections_total",
        "msgstore_errors_total",
        "msgstore_accounts",
        "msgstore_store_octets",
        "msgstore_store_messages",
        "msgstore_relay_queue_messages",
    ):
        assert f"`{name}`" in text, name

"""Every route, generated from the operation registry: 401 without (or with wrong)
credentials, 403 for an account without the manager privilege; SELF operations work for the
account itself and are refused for another one. A new operation is covered by being declared."""

from __future__ import annotations

import html

import pytest

from msgstore.management.operation import Access, OperationSpec
from tests.web_api.conftest import Site
from tests.web_api.support import Api, basic, bearer, request_for, routes

ROUTES = routes()
SELF_ROUTES = [s for s in ROUTES if s.access is Access.SELF]
CHALLENGES = {'Basic realm="msgstore", charset="UTF-8"', 'Bearer realm="msgstore"'}


def _ids(spec: OperationSpec) -> str:
    return spec.name.replace(" ", "-")


def test_the_registry_offers_routes() -> None:
    assert len(ROUTES) >= 20
    assert {"account add", "token create", "session list", "stats live"} <= {
        s.name for s in ROUTES
    }


@pytest.mark.parametrize("spec", ROUTES, ids=_ids)
def test_a_route_needs_credentials(site: Site, spec: OperationSpec) -> None:
    method, path, body, query = request_for(spec, {})
    wrong = basic(site.carol.name, "not-the-password")
    for api in (site.anonymous, Api(site.port, wrong), Api(site.port, bearer("msgstore_nope"))):
        reply = api.call(method, path, body=body, query=query)
        assert reply.status == 401, reply
        assert reply.json()["error"] == "auth_failed"
        assert set(reply.headers.get_all("WWW-Authenticate") or []) == CHALLENGES


@pytest.mark.parametrize("spec", ROUTES, ids=_ids)
def test_a_route_refuses_a_non_manager(site: Site, spec: OperationSpec) -> None:
    """Manager routes say 403 whatever the parameters; SELF routes when they name another
    account."""
    values = {spec.self_field: site.boss.name} if spec.access is Access.SELF else {}
    method, path, body, query = request_for(spec, values)
    reply = site.as_carol.call(method, path, body=body, query=query)
    assert reply.status == 403, reply
    assert reply.json()["error"] == "no_perm"
    if spec.access is Access.MANAGER:  # even with nonsense parameters
        reply = site.as_carol.call(method, path, body={"no such field": 1}, query=query)
        assert reply.status == 403, reply


@pytest.mark.parametrize("spec", SELF_ROUTES, ids=_ids)
def test_a_self_route_reaches_the_operation_for_the_account_itself(
    site: Site, spec: OperationSpec
) -> None:
    values: dict[str, object] = {spec.self_field: site.carol.name}
    if spec.name == "password set":
        values["password"] = site.carol.password  # the same: later tests log in with it
    method, path, body, query = request_for(spec, values)
    reply = site.as_carol.call(method, path, body=body, query=query)
    # Past the permission check: success, or the operation's own verdict on dummy values.
    assert reply.status in (200, 204, 404), reply
    if spec.name in ("account show", "quota show", "mailbox list", "token list"):
        assert reply.status == 200, reply


def test_self_routes_of_an_ordinary_account(site: Site) -> None:
    carol = site.as_carol
    shown = carol.get(f"/accounts/{site.carol.name}")
    assert shown.status == 200, shown
    assert shown.json()["name"] == site.carol.name
    assert carol.get(f"/accounts/{site.carol.name}/quota").status == 200
    names = [m["name"] for m in carol.get(f"/accounts/{site.carol.name}/mailboxes").json()]
    assert "INBOX" in names
    assert carol.get(f"/accounts/{site.boss.name}/quota").status == 403
    assert carol.get("/accounts").status == 403
    # Names compare case-insensitively, also in the permission check.
    assert carol.get(f"/accounts/{site.carol.name.upper()}").status == 200


def test_a_manager_may_run_everything(site: Site) -> None:
    boss = site.as_boss
    assert boss.get("/accounts").status == 200
    assert boss.get(f"/accounts/{site.carol.name}/quota").status == 200
    assert boss.get("/sessions").status == 200
    assert boss.get("/stats/live").status == 200
    assert boss.get("/tokens").status == 200


def test_the_documents_are_public(site: Site) -> None:
    doc = site.anonymous.get("/openapi.json")
    assert doc.status == 200
    paths = doc.json()["paths"]
    for spec in ROUTES:
        assert spec.http is not None
        method, path = spec.http
        assert method.lower() in paths[path], spec.name
    page = site.anonymous.get("/docs")
    assert page.status == 200
    assert page.headers["Content-Type"].startswith("text/html")
    assert "script" not in page.body.decode().lower()
    text = page.body.decode()
    for spec in ROUTES:
        assert spec.http is not None
        assert html.escape(f"/api/v1{spec.http[1]}") in text, spec.name

"""Bearer tokens: made by ``msgstore token create`` (CLI) or the API, used, listed, revoked;
refused when expired, revoked, or when the account is login-disabled or deleted; the
account's privileges are the ones it has at each request."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import subprocess
import sys

from msgstore.core.accounts import AccountChanges
from msgstore.storage.base import NewApiToken
from tests.web_api.conftest import Site
from tests.web_api.support import Api, bearer


def _cli(site: Site, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "msgstore.cli", "--config", str(site.server.config_path), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_token_from_the_cli_acts_as_its_account(site: Site) -> None:
    made = _cli(site, "token", "create", site.boss.name, "--label", "ci", "--json")
    assert made.returncode == 0, made.stderr
    created = json.loads(made.stdout)
    token = created["token"]
    assert token.startswith("msgstore_")
    assert created["expires"] is None
    api = Api(site.port, bearer(token))
    assert api.get("/accounts").status == 200
    # The store keeps only the hash.
    listed = site.as_boss.get("/tokens", account=site.boss.name).json()
    assert [t["token_id"] for t in listed] == [created["token_id"]]
    assert "token" not in listed[0]
    assert listed[0]["label"] == "ci"
    db = (site.server.data_dir / "system.db").read_bytes()
    assert token.encode() not in db
    # Revoked: 401 from then on.
    revoked = _cli(site, "token", "revoke", site.boss.name, str(created["token_id"]))
    assert revoked.returncode == 0, revoked.stderr
    reply = api.get("/accounts")
    assert reply.status == 401, reply
    assert site.as_boss.get("/tokens", account=site.boss.name).json() == []


def test_a_token_made_over_the_api(site: Site) -> None:
    made = site.as_carol.call(
        "POST", f"/accounts/{site.carol.name}/tokens", body={"label": "phone", "expires": "30d"}
    )
    assert made.status == 200, made
    body = made.json()
    expires = dt.datetime.fromisoformat(body["expires"])
    assert dt.timedelta(days=29) < expires - dt.datetime.now(dt.UTC) <= dt.timedelta(days=30)
    api = Api(site.port, bearer(body["token"]))
    assert api.get(f"/accounts/{site.carol.name}/quota").status == 200
    assert api.get("/accounts").status == 403  # carol is no manager
    # carol may not make tokens for someone else, nor list theirs.
    other = site.as_carol.call("POST", f"/accounts/{site.boss.name}/tokens", body={})
    assert other.status == 403
    assert site.as_carol.get("/tokens").status == 403
    assert len(site.as_carol.get("/tokens", account=site.carol.name).json()) == 1
    bad = site.as_carol.call(
        "POST", f"/accounts/{site.carol.name}/tokens", body={"expires": "soon"}
    )
    assert bad.status == 422
    assert "expires" in bad.json()["fields"]
    gone = site.as_carol.call("DELETE", f"/accounts/{site.carol.name}/tokens/{body['token_id']}")
    assert gone.status == 204, gone
    assert api.get(f"/accounts/{site.carol.name}/quota").status == 401
    again = site.as_carol.call("DELETE", f"/accounts/{site.carol.name}/tokens/{body['token_id']}")
    assert again.status == 404


def _token_for(site: Site, name: str, **kw: object) -> str:
    made = site.as_boss.call("POST", f"/accounts/{name}/tokens", body=dict(kw))
    assert made.status == 200, made
    return str(made.json()["token"])


def test_expired_tokens_are_refused(site: Site) -> None:
    admin = site.server.admin
    account = admin.call(admin.backend.get_account(site.carol.name))
    token = "msgstore_expired-token-for-the-test"
    now = dt.datetime.now(dt.UTC)
    admin.call(
        admin.backend.create_api_token(
            NewApiToken(
                account=account.id,
                token_hash=hashlib.sha256(token.encode()).hexdigest(),
                label="old",
                created=now - dt.timedelta(days=2),
                expires=now - dt.timedelta(seconds=1),
            )
        )
    )
    assert Api(site.port, bearer(token)).get(f"/accounts/{site.carol.name}").status == 401
    listed = site.as_boss.get("/tokens", account=site.carol.name).json()
    assert [t["expired"] for t in listed if t["label"] == "old"] == [True]


def test_privileges_are_the_accounts_at_each_request(site: Site) -> None:
    admin = site.server.admin
    made = site.as_boss.call(
        "POST", "/accounts", body={"name": "deputy-x1", "password": "Deputy-Pw-1", "manager": True}
    )
    assert made.status == 200, made
    api = Api(site.port, bearer(_token_for(site, "deputy-x1")))
    assert api.get("/accounts").status == 200
    admin.call(admin.backend.update_account("deputy-x1", AccountChanges(manager=False)))
    assert api.get("/accounts").status == 403
    assert api.get("/accounts/deputy-x1").status == 200  # still itself
    admin.call(admin.backend.update_account("deputy-x1", AccountChanges(login_disabled=True)))
    assert api.get("/accounts/deputy-x1").status == 401
    admin.call(admin.backend.update_account("deputy-x1", AccountChanges(login_disabled=False)))
    assert api.get("/accounts/deputy-x1").status == 200
    assert site.as_boss.call("DELETE", "/accounts/deputy-x1").status == 204
    assert api.get("/accounts/deputy-x1").status == 401


def test_malformed_authorization_headers(site: Site) -> None:
    for value in (
        "Bearer",
        "Bearer ",
        "Basic !!!",
        "Basic " + "YQ==",  # "a": no colon
        "Digest abc",
        "Bearer msgstore_" + "x" * 5000,
    ):
        reply = Api(site.port, value).get("/accounts")
        assert reply.status == 401, (value, reply)

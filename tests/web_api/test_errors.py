"""The wire contract on real requests: success bodies, 204, and the error statuses with their
JSON (404, 409, 422 with fields, 405, 413), for bad input of issue #6."""

from __future__ import annotations

import secrets

from tests.web_api.conftest import Site


def _name() -> str:
    return f"acct-{secrets.token_hex(4)}"


def test_an_account_lifecycle(site: Site) -> None:
    boss = site.as_boss
    name = _name()
    made = boss.call(
        "POST", "/accounts", body={"name": name, "password": "Pw-1-lifecycle", "quota": "10M"}
    )
    assert made.status == 200, made
    assert made.json()["name"] == name
    assert made.json()["storage_limit_kib"] == 10 * 1024
    assert boss.get(f"/accounts/{name}").json()["storage_limit_kib"] == 10 * 1024
    changed = boss.call("PATCH", f"/accounts/{name}", body={"login_disabled": True, "quota": 2048})
    assert changed.status == 200, changed
    assert changed.json()["login_disabled"] is True
    assert changed.json()["storage_limit_kib"] == 2
    gone = boss.call("DELETE", f"/accounts/{name}")
    assert gone.status == 204, gone
    assert gone.body == b""
    missing = boss.get(f"/accounts/{name}")
    assert missing.status == 404
    assert missing.json() == {"error": "not_found", "message": f"No such account {name!r}"}


def test_a_duplicate_account_is_a_conflict(site: Site) -> None:
    reply = site.as_boss.call(
        "POST", "/accounts", body={"name": site.carol.name.upper(), "password": "Pw-dup-123"}
    )
    assert reply.status == 409, reply
    assert reply.json()["error"] == "exists"


def _fields(reply_json: dict[str, object]) -> dict[str, str]:
    fields = reply_json["fields"]
    assert isinstance(fields, dict)
    return fields


def test_invalid_input_is_422_with_the_field(site: Site) -> None:
    boss = site.as_boss
    cases: list[tuple[dict[str, object], str]] = [
        ({"name": _name(), "password": "Pw-12345", "quota": "12 parsecs"}, "quota"),
        ({"name": _name(), "password": "Pw-12345", "quota": "-5"}, "quota"),
        ({"name": _name(), "password": "Pw-12345", "messages": -5}, "messages"),
        ({"name": _name(), "password": "Pw-12345", "kind": "weird"}, "kind"),
        ({"name": _name(), "password": "Pw-12345", "manager": "yes"}, "manager"),
        ({"name": _name(), "password": "Pw-12345", "colour": "blue"}, "colour"),
        ({"name": _name()}, "password"),
        ({"name": "../etc", "password": "Pw-12345"}, "name"),
        ({"name": "anyone", "password": "Pw-12345"}, "name"),
    ]
    for body, field in cases:
        reply = boss.call("POST", "/accounts", body=body)
        assert reply.status == 422, (body, reply)
        data = reply.json()
        assert data["error"] == "params"
        assert field in _fields(data), (body, data)
        assert data["message"]
    # Nothing was created by any of them.
    names = {a["name"] for a in boss.get("/accounts").json()}
    assert "../etc" not in names


def test_a_refused_combination_is_422_without_a_field(site: Site) -> None:
    reply = site.as_boss.call("PATCH", f"/accounts/{site.carol.name}", body={})
    assert reply.status == 422, reply
    assert reply.json()["error"] == "params"
    assert reply.json()["fields"] == {}
    assert "Nothing to change" in reply.json()["message"]


def test_malformed_requests(site: Site) -> None:
    boss = site.as_boss
    bad_json = boss.call(
        "POST", "/accounts", raw_body=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert bad_json.status == 422, bad_json
    assert bad_json.json()["error"] == "params"
    not_object = boss.call("POST", "/accounts", body=["a", "b"])
    assert not_object.status == 422, not_object
    wrong_method = boss.call("PUT", "/accounts")
    assert wrong_method.status == 405, wrong_method
    assert "error" in wrong_method.json()
    unknown = boss.get("/no/such/route")
    assert unknown.status == 404
    assert unknown.json()["error"] == "not_found"
    huge = boss.call(
        "POST",
        "/accounts",
        raw_body=b"{" + b" " * (2 * 1024 * 1024) + b"}",
        headers={"Content-Type": "application/json"},
    )
    assert huge.status == 413, huge
    bad_int = boss.get("/queue/not-a-number")
    assert bad_int.status == 422, bad_int
    assert "id" in bad_int.json()["fields"]


def test_mailbox_operations_and_their_errors(site: Site) -> None:
    boss = site.as_boss
    user = site.carol.name
    made = boss.call(
        "POST", f"/accounts/{user}/mailboxes", body={"name": "Projects/2026", "special_use": ""}
    )
    assert made.status == 200, made
    again = boss.call("POST", f"/accounts/{user}/mailboxes", body={"name": "Projects/2026"})
    assert again.status == 409, again
    parent = boss.call("DELETE", f"/accounts/{user}/mailboxes", query={"name": "Projects"})
    assert parent.status in (204, 409), parent  # a parent with children: the store decides
    bad = boss.call("POST", f"/accounts/{user}/mailboxes", body={"name": "a", "special_use": "x"})
    assert bad.status == 422
    assert "special_use" in bad.json()["fields"]
    listed = boss.get(f"/accounts/{user}/mailboxes", pattern="Projects/*")
    assert [m["name"] for m in listed.json()] == ["Projects/2026"]
    gone = boss.call("DELETE", f"/accounts/{user}/mailboxes", query={"name": "Projects/2026"})
    assert gone.status == 204, gone
    inbox = boss.call("DELETE", f"/accounts/{user}/mailboxes", query={"name": "INBOX"})
    assert inbox.status == 409, inbox
    nobody = boss.get("/accounts/nobody-here/mailboxes")
    assert nobody.status == 404


def test_quota_bad_input(site: Site) -> None:
    boss = site.as_boss
    path = f"/accounts/{site.carol.name}/quota"
    for value in ("-5", "12 parsecs", "1e9", ""):
        reply = boss.call("PUT", path, body={"storage": value})
        assert reply.status == 422, (value, reply)
    ok = boss.call("PUT", path, body={"storage": "1G", "messages": 1000})
    assert ok.status == 200, ok
    assert ok.json()["storage_limit_kib"] == 1024 * 1024
    assert ok.json()["message_limit"] == 1000
    reset = boss.call("PUT", path, body={"storage": "unlimited", "messages": "unlimited"})
    assert reset.json()["storage_limit_kib"] is None


def test_a_huge_chunked_body_is_refused(site: Site) -> None:
    import http.client

    from tests.web_api.support import basic

    conn = http.client.HTTPConnection("127.0.0.1", site.port, timeout=30)
    try:
        chunks = (b"[" + b"1," * 100_000 + b"1]" for _ in range(8))
        conn.request(
            "POST",
            "/api/v1/accounts",
            body=chunks,
            headers={
                "Authorization": basic(site.boss.name, site.boss.password),
                "Content-Type": "application/json",
                "Transfer-Encoding": "chunked",
            },
            encode_chunked=True,
        )
        reply = conn.getresponse()
        assert reply.status in (400, 413, 422), reply.status
        reply.read()
    finally:
        conn.close()


def test_a_change_over_rest_is_audited_with_its_account_and_address(site: Site) -> None:
    name = _name()
    made = site.as_boss.call("POST", "/accounts", body={"name": name, "password": "Pw-audit-1"})
    assert made.status == 200, made
    refused = site.as_carol.call("DELETE", f"/accounts/{name}")
    assert refused.status == 403
    records = site.as_boss.get("/audit", operation="account add", limit=50).json()
    mine = [r for r in records if r["params"].get("name") == name]
    assert len(mine) == 1, records
    assert mine[0]["actor"] == site.boss.name
    assert mine[0]["origin"] == "rest 127.0.0.1"
    assert mine[0]["outcome"] == "ok"
    assert mine[0]["params"]["password"] != "Pw-audit-1"


def test_a_refusal_over_rest_is_audited(site: Site) -> None:
    name = _name()
    assert site.as_carol.call("DELETE", f"/accounts/{name}").status == 403
    # Also when the body would not even validate.
    assert site.as_carol.call("POST", "/accounts", body={"bogus": 1}).status == 403
    records = site.as_boss.get("/audit", actor=site.carol.name, limit=100).json()
    deletes = [r for r in records if r["operation"] == "account delete"]
    assert any(r["params"] == {"name": name} for r in deletes), records
    assert all(r["outcome"] == "no_perm" and r["origin"] == "rest 127.0.0.1" for r in deletes)
    assert any(r["operation"] == "account add" and r["outcome"] == "no_perm" for r in records)


def test_an_operations_own_checks_name_their_field(site: Site) -> None:
    """Refusals from the operation itself (not from parsing one value) fill ``fields`` too."""
    boss = site.as_boss
    user = site.carol.name
    acl = f"/accounts/{user}/acl"
    cases: list[tuple[str, str, dict[str, object], str]] = [
        (
            "PUT",
            acl,
            {"mailbox": "INBOX", "identifier": "no-such-acct", "rights": "lr"},
            "identifier",
        ),
        (
            "PUT",
            acl,
            {"mailbox": "INBOX", "identifier": "-no-such-acct", "rights": "lr"},
            "identifier",
        ),
        ("PUT", acl, {"mailbox": "INBOX", "identifier": "anyone", "rights": "lrz"}, "rights"),
        ("PUT", acl, {"mailbox": "INBOX", "identifier": "anyone", "rights": "+Q"}, "rights"),
        ("PUT", f"/accounts/{user}/quota", {"storage": "-5"}, "storage"),
        ("PUT", f"/accounts/{user}/quota", {"storage": "12 parsecs"}, "storage"),
        ("PATCH", f"/accounts/{user}", {"quota": "-5"}, "quota"),
        ("PATCH", f"/accounts/{user}", {"quota": "12 parsecs"}, "quota"),
        ("POST", f"/accounts/{user}/rename", {"new": "anyone"}, "new"),
        ("POST", f"/accounts/{user}/rename", {"new": "-x"}, "new"),
        ("PUT", f"/accounts/{user}/password", {"password": "a"}, "password"),
    ]
    before = boss.get(acl, mailbox="INBOX").json()
    for method, path, body, field in cases:
        reply = boss.call(method, path, body=body)
        assert reply.status == 422, (body, reply)
        data = reply.json()
        assert data["error"] == "params", data
        assert field in _fields(data), (body, data)
        assert _fields(data)[field] == data["message"] or data["message"].startswith(field)
    # Nothing changed.
    assert boss.get(acl, mailbox="INBOX").json() == before
    assert boss.get(f"/accounts/{user}").status == 200
    deleted = boss.call("DELETE", acl, query={"mailbox": "INBOX", "identifier": "no-such-acct"})
    assert deleted.status == 422, deleted
    assert "identifier" in _fields(deleted.json())


def test_a_python_caller_sees_the_field_too(site: Site) -> None:
    import asyncio

    from msgstore import Store
    from msgstore.management.operation import ParamError

    async def run() -> ParamError:
        async with Store.open(site.server.config_path) as store:
            try:
                await store.run(
                    "acl set",
                    user=site.carol.name,
                    mailbox="INBOX",
                    identifier="no-such-acct",
                    rights="lr",
                )
            except ParamError as exc:
                return exc
        raise AssertionError("no error")

    exc = asyncio.run(run())
    assert set(exc.fields) == {"identifier"}

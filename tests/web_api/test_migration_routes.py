"""Migration runs as operations: ``POST /api/v1/migrate/mbox|maildir|imap|pop``, the Python
API and the CLI (local and remote) start the same run and get the same report; paths are
confined to ``[web] api_migrate_dir`` for store accounts; the IMAP source password never
reaches the audit log or the server's log."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from msgstore.core.errors import StoreError
from msgstore.management.jsonable import to_json
from msgstore.management.migration import _is_host
from tests.web_api.conftest import Site, start_site

MESSAGES = 5


def _mbox(path: Path, count: int = MESSAGES) -> Path:
    lines = []
    for n in range(count):
        lines.append(f"From sender@example.org Sat Jan  1 00:00:{n:02d} 2000")
        lines.append(f"Subject: old {n}\nMessage-ID: <old-{n}@example.org>\n\nbody {n}\n")
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def spool(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("spool")
    _mbox(root / "old.mbox")
    return root


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, spool: Path) -> Iterator[Site]:
    s = start_site(
        tmp_path_factory.mktemp("migrate-routes"), **{"web.api_migrate_dir": str(spool)}
    )
    try:
        yield s
    finally:
        s.server.stop()


def _name(label: str) -> str:
    return f"{label}-{secrets.token_hex(3)}"


def _inbox(site: Site, name: str) -> int:
    reply = site.as_boss.get(f"/accounts/{name}/mailboxes/status", name="INBOX")
    assert reply.status == 200, reply
    return int(reply.json()["messages"])


def test_an_mbox_run_over_rest_and_its_rerun(site: Site) -> None:
    name = _name("mb")
    body = {"path": "old.mbox", "account": name, "create": True}
    dry = site.as_boss.call("POST", "/migrate/mbox", body={**body, "dry_run": True})
    assert dry.status == 200, dry
    assert dry.json()["dry_run"] is True
    assert dry.json()["messages"] == MESSAGES
    assert site.as_boss.get(f"/accounts/{name}").status == 404  # a dry run changes nothing
    first = site.as_boss.call("POST", "/migrate/mbox", body=body)
    assert first.status == 200, first
    report = first.json()
    assert (report["failed"], report["accounts"], report["messages"]) == (False, 1, MESSAGES)
    assert _inbox(site, name) == MESSAGES
    again = site.as_boss.call("POST", "/migrate/mbox", body=body).json()
    assert (again["messages"], again["duplicates"]) == (
        0,
        MESSAGES,
    )  # resumes, copies nothing twice
    assert _inbox(site, name) == MESSAGES
    records = site.as_boss.get("/audit", operation="migrate mbox", limit=20).json()
    assert any(r["params"]["account"] == name and r["outcome"] == "ok" for r in records)


def test_paths_are_confined_for_store_accounts(site: Site, spool: Path) -> None:
    cases = [
        ({"path": "../outside.mbox", "account": _name("x")}, "path"),
        ({"path": "/etc/passwd", "account": _name("x")}, "path"),
        ({"path": "old.mbox", "account": _name("x"), "passwd_file": "/etc/shadow"}, "passwd_file"),
    ]
    (spool.parent / "outside.mbox").write_text("From a Sat Jan  1 00:00:00 2000\n\nx\n")
    for body, field in cases:
        reply = site.as_boss.call("POST", "/migrate/mbox", body={**body, "create": True})
        assert reply.status == 422, (body, reply)
        assert field in reply.json()["fields"], reply.json()
        assert site.as_boss.get(f"/accounts/{body['account']}").status == 404
    os.symlink("/etc", spool / "escape")
    link = site.as_boss.call(
        "POST", "/migrate/maildir", body={"path": "escape", "account": _name("y"), "create": True}
    )
    assert link.status == 422, link
    assert "path" in link.json()["fields"], link
    forward = site.as_boss.call(
        "POST",
        "/migrate/mbox",
        body={"path": "old.mbox", "account": _name("z"), "forward_to": "x@example.org"},
    )
    assert forward.status == 403, forward  # .forward files: the OS administrator only
    bad = site.as_boss.call("POST", "/migrate/mbox", body={"account": _name("z")})
    assert bad.status == 422, bad
    assert "path" in bad.json()["fields"], bad
    pop = site.as_boss.call("POST", "/migrate/pop", body={})
    assert pop.status == 422, pop
    assert "accounts" in pop.json()["fields"], pop


def test_an_imap_run_keeps_its_password_secret(site: Site) -> None:
    """The store's own IMAP server is the source: carol's mail into a new account."""
    for n in range(3):
        site.server.admin.deliver(site.carol.name, f"Subject: imap {n}\r\n\r\nb {n}\r\n".encode())
    target = _name("im")
    body = {
        "host": "127.0.0.1",
        "port": site.server.port("imap.listen"),
        "security": "plain",
        "user": site.carol.name,
        "password": site.carol.password,
        "account": target,
        "create": True,
    }
    reply = site.as_boss.call("POST", "/migrate/imap", body=body)
    assert reply.status == 200, reply
    assert reply.json()["failed"] is False, reply.json()
    assert reply.json()["messages"] >= 3
    assert _inbox(site, target) >= 3
    wrong = site.as_boss.call("POST", "/migrate/imap", body={**body, "password": "Not-It-123"})
    assert wrong.status == 200, wrong
    assert wrong.json()["failed"] is True, wrong
    records = site.as_boss.get("/audit", operation="migrate imap", limit=20).json()
    assert records
    assert all(r["params"]["password"] == "<redacted>" for r in records)
    assert site.carol.password not in json.dumps(records)
    assert site.carol.password not in site.server.log
    assert "Not-It-123" not in site.server.log


def test_a_host_the_resolver_would_refuse_is_a_field_error(site: Site) -> None:
    """Control characters, a label over 63 octets, a character IDNA cannot encode (found by
    schemathesis: getaddrinfo raised UnicodeError, a 500): each a 422 on ``host``."""
    body = {"user": "someone", "password": "Secret-123", "security": "plain", "create": True}
    bad_hosts = ["mail\x07.example.org", "a" * 64 + ".example.org", "\U000fe79c.example.org"]
    for host in bad_hosts:
        reply = site.as_boss.call("POST", "/migrate/imap", body={**body, "host": host})
        assert reply.status == 422, (host, reply)
        assert "host" in reply.json()["fields"], (host, reply.json())
    for host in ["::1", "[::1]", "127.0.0.1"]:  # IP literals: no resolver needed
        reply = site.as_boss.call("POST", "/migrate/imap", body={**body, "host": host, "port": 1})
        assert reply.status == 200, (host, reply)  # accepted; the connection itself fails
        assert reply.json()["failed"] is True, reply.json()
    assert _is_host("b\u00fccher.example")  # an IDN name is a host (resolved as xn--...)


def test_a_pop_account_becomes_a_full_one(site: Site) -> None:
    name = _name("pop")
    made = site.as_boss.call(
        "POST", "/accounts", body={"name": name, "password": "Pw-pop-1234", "kind": "pop"}
    )
    assert made.status == 200, made
    reply = site.as_boss.call("POST", "/migrate/pop", body={"accounts": name})
    assert reply.status == 200, reply
    assert reply.json()["failed"] is False
    assert site.as_boss.get(f"/accounts/{name}").json()["kind"] == "imap"


def _cli(site: Site, *args: str, remote: bool = False) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MSGSTORE_")}
    if remote:
        env["MSGSTORE_PASSWORD"] = site.boss.password
        head = [
            str(Path(sys.executable).with_name("msgstore")),
            "--url",
            f"http://127.0.0.1:{site.port}",
            "--user",
            site.boss.name,
        ]
    else:
        head = [sys.executable, "-m", "msgstore.cli", "--config", str(site.server.config_path)]
    run = subprocess.run(
        [*head, *args], capture_output=True, text=True, timeout=120, env=env, check=False
    )
    return run.returncode, run.stdout, run.stderr


def _python(site: Site, name: str, **values: object) -> tuple[str, Any]:
    from msgstore import Store

    async def run() -> tuple[str, Any]:
        async with Store.open(site.server.config_path) as store:
            try:
                return "ok", to_json(await store.run(name, **values))
            except StoreError as exc:
                return "error", exc.public

    return asyncio.run(run())


def test_every_face_gives_the_same_report(site: Site, spool: Path) -> None:
    existing = _name("faces")
    assert (
        site.as_boss.call(
            "POST", "/accounts", body={"name": existing, "password": "Pw-faces-12"}
        ).status
        == 200
    )
    path = str(spool / "old.mbox")
    code, out, err = _cli(
        site, "migrate", "mbox", path, "--account", existing, "--dry-run", "--json"
    )
    assert code == 0, err
    cli = json.loads(out)
    rest = site.as_boss.call(
        "POST", "/migrate/mbox", body={"path": "old.mbox", "account": existing, "dry_run": True}
    ).json()
    python = _python(site, "migrate mbox", path=path, account=existing, dry_run=True)
    assert python == ("ok", cli)
    assert rest == cli
    assert cli["messages"] == MESSAGES
    assert cli["dry_run"] is True
    # the same refusal
    code, out, err = _cli(site, "migrate", "pop", "--json")
    assert code == 65, (code, err)
    answer = site.as_boss.call("POST", "/migrate/pop", body={}).json()["message"]
    assert _python(site, "migrate pop") == ("error", answer)
    assert answer in err


def test_the_remote_cli_runs_a_migration_on_the_server(site: Site) -> None:
    name = _name("remote")
    code, out, err = _cli(
        site, "migrate", "mbox", "old.mbox", "--account", name, "--create", "--json",
        remote=True,
    )  # fmt: skip
    assert code == 0, err
    assert json.loads(out)["messages"] == MESSAGES
    assert _inbox(site, name) == MESSAGES
    code, out, err = _cli(site, "migrate", "mbox", "old.mbox", "--account", name, remote=True)
    assert code == 0, err
    assert "0 message(s)" in out
    assert f"{MESSAGES} already present" in out
    # A failed run exits 1 remotely too (the mbox is not there).
    code, out, err = _cli(site, "migrate", "mbox", "missing.mbox", "--account", name, remote=True)
    assert code == 1, (out, err)
    assert "problem:" in out

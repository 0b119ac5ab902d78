"""``GET /accounts/{name}/export`` and ``POST /accounts/{name}/restore``: the archive is the
body, streamed both ways; hostile archives are 422 and change nothing; the size limit is
``[web] api_max_restore_size``; an export taken while LMTP delivers is consistent; and the
remote CLI (the real executable) exports and restores through these routes."""

from __future__ import annotations

import http.client
import io
import json
import os
import smtplib
import subprocess
import sys
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.management.test_backup import BAD_ARCHIVES, _info, _tar, archive_rows
from tests.web_api.conftest import Site, start_site
from tests.web_api.support import basic

LIMIT = 3 * 1024 * 1024


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    s = start_site(tmp_path_factory.mktemp("backup-routes"), **{"web.api_max_restore_size": "3M"})
    try:
        yield s
    finally:
        s.server.stop()


def _lmtp(site: Site, user: str, count: int, start: int = 0) -> None:
    with smtplib.LMTP("127.0.0.1", site.server.port("lmtp.listen"), timeout=30) as client:
        for n in range(start, start + count):
            body = f"Subject: m{n}\r\nMessage-ID: <m{n}@t>\r\n\r\n{'x' * (n % 900)}\r\n"
            client.sendmail("a@example.org", [user], body.encode())


def _new_account(site: Site, label: str) -> str:
    import secrets

    name = f"{label}-{secrets.token_hex(3)}"
    made = site.as_boss.call("POST", "/accounts", body={"name": name, "password": "Pw-x-12345"})
    assert made.status == 200, made
    return name


def _inbox_count(site: Site, name: str) -> int:
    reply = site.as_boss.get(f"/accounts/{name}/mailboxes/status", name="INBOX")
    assert reply.status == 200, reply
    return int(reply.json()["messages"])


def _restore(site: Site, name: str, data: bytes, **query: object) -> tuple[int, object]:
    reply = site.as_boss.call(
        "POST",
        f"/accounts/{name}/restore",
        raw_body=data,
        query=query or None,
        headers={"Content-Type": "application/x-tar"},
    )
    return reply.status, reply.json()


def test_export_streams_a_tar_and_restore_loads_it(site: Site, tmp_path: Path) -> None:
    source = _new_account(site, "src")
    _lmtp(site, source, 6)
    made = site.as_boss.call("POST", f"/accounts/{source}/mailboxes", body={"name": "Work"})
    assert made.status == 200, made
    reply = site.as_boss.get(f"/accounts/{source}/export")
    assert reply.status == 200, reply
    assert reply.headers["Content-Type"] == "application/x-tar"
    assert int(reply.headers["Content-Length"]) == len(reply.body)
    assert f'filename="{source}.tar"' in reply.headers["Content-Disposition"]
    summary = json.loads(reply.headers["X-Msgstore-Result"])
    assert summary["account"] == source
    assert summary["messages"] == 6
    assert summary["archive_octets"] == len(reply.body)
    path = tmp_path / "src.tar"
    path.write_bytes(reply.body)
    rows, members = archive_rows(path, tmp_path)
    assert rows == members
    assert len(rows) == 6
    target = _new_account(site, "dst")
    status, report = _restore(site, target, reply.body)
    assert status == 200, report
    assert isinstance(report, dict)
    assert report["account"] == target
    assert report["messages"] == 6
    assert report["reconstruct"]["applied"] is True
    assert _inbox_count(site, target) == 6
    names = {m["name"] for m in site.as_boss.get(f"/accounts/{target}/mailboxes").json()}
    assert "Work" in names
    # Into an account that holds mail: refused, nothing changes.
    status, error = _restore(site, target, reply.body)
    assert status == 409, error
    assert _inbox_count(site, target) == 6
    # No spool file stays behind.
    assert not list((site.server.data_dir / "tmp").glob("api-*"))
    # Unknown account: 404 both ways.
    assert site.as_boss.get("/accounts/nobody-here/export").status == 404
    assert _restore(site, "nobody-here", reply.body)[0] == 404


@pytest.mark.parametrize("case", sorted(BAD_ARCHIVES))
def test_hostile_archives_are_422_and_change_nothing(
    site: Site, tmp_path: Path, case: str
) -> None:
    members, message = BAD_ARCHIVES[case]
    donor = _new_account(site, "donor")
    exported = site.as_boss.get(f"/accounts/{donor}/export")
    with tarfile.open(fileobj=io.BytesIO(exported.body)) as tar:
        index = tar.extractfile("index.db")
        assert index is not None
        index_bytes = index.read()
    if case not in ("no-index", "bad-index"):
        members = [(_info("index.db"), index_bytes), *members]
    data = _tar(tmp_path / f"{case}.tar", members).read_bytes()
    target = _new_account(site, "victim")
    before = site.as_boss.get(f"/accounts/{target}/mailboxes").json()
    status, error = _restore(site, target, data)
    assert status == 422, error
    assert isinstance(error, dict)
    assert error["error"] == "params"
    assert message in str(error["message"])
    assert site.as_boss.get(f"/accounts/{target}/mailboxes").json() == before
    assert not (site.server.root / "evil").exists()
    assert not list((site.server.data_dir / "tmp").glob("api-*"))


def test_not_a_tar_and_an_empty_body_are_422(site: Site) -> None:
    target = _new_account(site, "junk")
    for data in (b"", b"\x00" * 10_000, os.urandom(5000)):
        status, error = _restore(site, target, data)
        assert status == 422, (data[:20], error)


def test_the_restore_size_limit(site: Site) -> None:
    target = _new_account(site, "big")
    status, error = _restore(site, target, b"\x00" * (LIMIT + 1))
    assert status == 413, error
    # Chunked, no Content-Length: refused while it arrives.
    conn = http.client.HTTPConnection("127.0.0.1", site.port, timeout=30)
    try:
        chunks = (b"\x00" * (512 * 1024) for _ in range(8))
        conn.request(
            "POST",
            f"/api/v1/accounts/{target}/restore",
            body=chunks,
            headers={
                "Authorization": basic(site.boss.name, site.boss.password),
                "Content-Type": "application/x-tar",
                "Transfer-Encoding": "chunked",
            },
            encode_chunked=True,
        )
        reply = conn.getresponse()
        assert reply.status == 413, reply.status
        reply.read()
    except (BrokenPipeError, ConnectionResetError):
        pass  # the server may close before the last chunk is sent: refused too
    finally:
        conn.close()
    assert not list((site.server.data_dir / "tmp").glob("api-*"))
    # Other routes keep the 1 MiB cap.
    huge = site.as_boss.call(
        "POST",
        "/accounts",
        raw_body=b"{" + b" " * (2 * 1024 * 1024) + b"}",
        headers={"Content-Type": "application/json"},
    )
    assert huge.status == 413


def test_an_export_while_lmtp_delivers_is_consistent(site: Site, tmp_path: Path) -> None:
    user = _new_account(site, "busy")
    _lmtp(site, user, 3)
    stop = threading.Event()
    failures: list[BaseException] = []

    def deliver() -> None:
        n = 1000
        try:
            while not stop.is_set():
                _lmtp(site, user, 5, start=n)
                n += 5
        except BaseException as exc:  # reported by the test
            failures.append(exc)

    writer = threading.Thread(target=deliver)
    writer.start()
    counts = []
    try:
        for n in range(4):
            reply = site.as_boss.get(f"/accounts/{user}/export")
            assert reply.status == 200, reply
            path = tmp_path / f"busy-{n}.tar"
            path.write_bytes(reply.body)
            rows, members = archive_rows(path, tmp_path)
            assert rows == members, rows ^ members
            summary = json.loads(reply.headers["X-Msgstore-Result"])
            assert summary["messages"] == len(rows)
            counts.append(len(rows))
    finally:
        stop.set()
        writer.join(timeout=60)
    assert not failures, failures
    assert counts == sorted(counts), counts
    assert counts[-1] > counts[0], counts  # mail kept arriving
    # The last archive restores to exactly what it lists.
    target = _new_account(site, "copy")
    status, report = _restore(site, target, (tmp_path / "busy-3.tar").read_bytes())
    assert status == 200, report
    assert _inbox_count(site, target) == counts[-1]


def _cli(site: Site, *args: str, password: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MSGSTORE_")}
    env["MSGSTORE_PASSWORD"] = password or site.boss.password
    msgstore = Path(sys.executable).with_name("msgstore")
    argv = [str(msgstore), "--url", f"http://127.0.0.1:{site.port}", "--user", site.boss.name]
    return subprocess.run(
        [*argv, *args], capture_output=True, text=True, timeout=120, env=env, check=False
    )


def test_the_remote_cli_exports_and_restores_through_rest(site: Site, tmp_path: Path) -> None:
    source = _new_account(site, "rsrc")
    _lmtp(site, source, 4)
    archive = tmp_path / "remote.tar"
    run = _cli(site, "account", "export", source, "--output", str(archive), "--json")
    assert run.returncode == 0, run.stderr
    summary = json.loads(run.stdout)
    assert summary["messages"] == 4
    assert summary["archive_octets"] == archive.stat().st_size
    rows, members = archive_rows(archive, tmp_path)
    assert rows == members
    assert len(rows) == 4
    assert not list(tmp_path.glob("*.part"))
    target = _new_account(site, "rdst")
    run = _cli(site, "account", "restore", target, "--input", str(archive), "--json")
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["messages"] == 4
    assert _inbox_count(site, target) == 4
    # Errors come back as the local ones do.
    run = _cli(site, "account", "restore", target, "--input", str(tmp_path / "none.tar"))
    assert run.returncode != 0
    assert "No such file" in run.stderr
    run = _cli(site, "account", "export", "nobody-here", "--output", str(tmp_path / "x.tar"))
    assert run.returncode != 0
    assert "No such account" in run.stderr
    assert not (tmp_path / "x.tar").exists()
    hostile = _tar(tmp_path / "evil.tar", [(_info("../evil"), b"x")])
    run = _cli(site, "account", "restore", _new_account(site, "rv"), "--input", str(hostile))
    assert run.returncode == 65, run.stderr  # EX_DATAERR: PARAMS, as locally
    assert "path with '..'" in run.stderr
    # A non-manager is refused.
    run = _cli(site, "account", "export", source, "--output", str(tmp_path / "c.tar"))
    assert run.returncode == 0
    carol = subprocess.run(
        [
            str(Path(sys.executable).with_name("msgstore")),
            "--url",
            f"http://127.0.0.1:{site.port}",
            "--user",
            site.carol.name,
            "account",
            "export",
            source,
            "--output",
            str(tmp_path / "d.tar"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "MSGSTORE_PASSWORD": site.carol.password},
        check=False,
    )
    assert carol.returncode != 0
    assert "Permission denied" in carol.stderr
    assert not (tmp_path / "d.tar").exists()

"""Live sessions and live statistics of a running server: ``session list`` shows an open IMAP
session, ``session kill`` ends it with ``* BYE``; with ``--workers 2`` both workers answer
(sessions, statistics and multiprocess metrics)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import pytest

from tests.conversations.harness import LineClient
from tests.web_api.conftest import Site, start_site
from tests.web_api.test_metrics import imap_login, lmtp_deliver, read_tagged, scrape, value


def _sessions(site: Site, **query: object) -> list[dict[str, object]]:
    reply = site.as_boss.get("/sessions", **query)
    assert reply.status == 200, reply
    found = reply.json()
    assert isinstance(found, list)
    return found


def _login(site: Site) -> LineClient:
    client = imap_login(site, site.carol.name, site.carol.password)
    assert read_tagged(client, b"a1").startswith(b"a1 OK")
    return client


def _read_to_end(client: LineClient) -> list[bytes]:
    lines = []
    while (line := client.read_line()) is not None:
        lines.append(line)
    return lines


def test_an_imap_session_is_listed_and_killed(site: Site) -> None:
    client = _login(site)
    try:
        client.send_line("a2 NOOP")
        assert read_tagged(client, b"a2").startswith(b"a2 OK")
        mine = [s for s in _sessions(site, protocol="imap") if s["account"] == site.carol.name]
        assert len(mine) == 1, mine
        session = mine[0]
        assert session["remote"] == "127.0.0.1"
        assert isinstance(session["commands"], int)
        assert session["commands"] >= 2
        assert site.server.proc is not None
        assert session["pid"] == site.server.proc.pid
        assert _sessions(site, account=site.carol.name.upper()) == mine
        killed = site.as_boss.call("DELETE", f"/sessions/{session['session_id']}")
        assert killed.status == 204, killed
        rest = _read_to_end(client)
        assert rest == [b"* BYE Disconnected by an administrator"], rest
    finally:
        client.close()
    deadline = time.monotonic() + 15
    while any(s["session_id"] == session["session_id"] for s in _sessions(site)):
        assert time.monotonic() < deadline, "the killed session is still listed"
        time.sleep(0.05)


def test_killing_what_does_not_exist(site: Site) -> None:
    for ident in ("1.1", f"{os.getpid()}.99999", "nonsense", "9" * 30 + ".1"):
        reply = site.as_boss.call("DELETE", f"/sessions/{ident}")
        assert reply.status == 404, (ident, reply)
        assert reply.json()["error"] == "not_found"


def test_an_lmtp_session_is_listed_while_open(site: Site) -> None:
    with LineClient(site.server.port("lmtp.listen")) as c:
        assert c.read_line() is not None
        c.send_line("LHLO test")
        while (line := c.read_line()) is not None and line.startswith(b"250-"):
            pass
        found = _sessions(site, protocol="lmtp")
        assert len(found) == 1
        assert found[0]["account"] == ""


def test_live_statistics_count_this_minute(site: Site) -> None:
    before = site.as_boss.get("/stats/live").json()
    client = imap_login(site, site.carol.name, "wrong")
    read_tagged(client, b"a1")
    client.close()
    lmtp_deliver(site, [site.carol.name])
    after = site.as_boss.get("/stats/live").json()
    assert after["processes"] == 1
    assert len(after["minutes"]) == 60

    def total(report: dict[str, list[dict[str, int]]], key: str) -> int:
        return sum(m[key] for m in report["minutes"])

    assert total(after, "login_failures") >= total(before, "login_failures") + 1
    assert total(after, "deliveries") >= total(before, "deliveries") + 1
    assert set(after["minutes"][-1]) == {
        "minute",
        "deliveries",
        "logins",
        "login_failures",
        "errors",
    }


@pytest.fixture(scope="module")
def workers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    s = start_site(tmp_path_factory.mktemp("workers"), **{"server.workers": 2})
    try:
        yield s
    finally:
        s.server.stop()


def test_sessions_and_statistics_across_two_workers(workers: Site) -> None:
    control = workers.server.data_dir / "run" / "control"
    deadline = time.monotonic() + 10
    while len(list(control.glob("*.sock"))) < 2:
        assert time.monotonic() < deadline, list(control.iterdir())
        time.sleep(0.05)
    clients = [_login(workers) for _ in range(6)]
    try:
        found = _sessions(workers, protocol="imap")
        assert len(found) == 6, found
        pids = {s["pid"] for s in found}
        worker_pids = {int(p.stem) for p in control.glob("*.sock")}
        assert pids <= worker_pids
        stats = workers.as_boss.get("/stats/live").json()
        assert stats["processes"] == 2
        assert sum(m["logins"] for m in stats["minutes"]) >= 6
        text = scrape(workers).body.decode()
        assert value(text, "msgstore_connections", {"protocol": "imap"}) == 6
        assert value(text, "msgstore_logins_total", {"protocol": "imap"}) >= 6
        for session in found:
            assert (
                workers.as_boss.call("DELETE", f"/sessions/{session['session_id']}").status == 204
            )
        for client in clients:
            assert _read_to_end(client)[-1].startswith(b"* BYE")
    finally:
        for client in clients:
            client.close()


def test_a_killed_idle_session_gets_bye(site: Site) -> None:
    client = _login(site)
    try:
        client.send_line("a2 SELECT INBOX")
        assert read_tagged(client, b"a2").startswith(b"a2 OK")
        client.send_line("a3 IDLE")
        assert client.read_line() == b"+ idling"
        mine = [s for s in _sessions(site, protocol="imap") if s["account"] == site.carol.name]
        assert len(mine) == 1
        killed = site.as_boss.call("DELETE", f"/sessions/{mine[0]['session_id']}")
        assert killed.status == 204
        rest = _read_to_end(client)
        assert rest[-1:] == [b"* BYE Disconnected by an administrator"], rest
    finally:
        client.close()


def test_a_dead_worker_leaves_nothing_behind(workers: Site) -> None:
    import signal

    control = workers.server.data_dir / "run" / "control"
    pids = {int(p.stem) for p in control.glob("*.sock")}
    assert len(pids) == 2
    client = _login(workers)  # held by one of the workers
    try:
        held = {s["pid"] for s in _sessions(workers, protocol="imap")}
        assert len(held) == 1
        victim = held.pop()
        assert isinstance(victim, int)
        logins = value(
            scrape(workers).body.decode(), "msgstore_logins_total", {"protocol": "imap"}
        )
        assert logins >= 1
        os.kill(victim, signal.SIGKILL)
        assert _read_to_end(client) == []  # killed: no goodbye
        deadline = time.monotonic() + 20
        while True:
            now = {int(p.stem) for p in control.glob("*.sock")}
            if victim not in now and len(now) == 2:
                break
            assert time.monotonic() < deadline, now
            time.sleep(0.1)
    finally:
        client.close()
    assert _sessions(workers, protocol="imap") == []
    text = scrape(workers).body.decode()
    assert value(text, "msgstore_connections", {"protocol": "imap"}) == 0
    # Kept, the dead worker's too (whichever tests of this module ran before on this server).
    assert value(text, "msgstore_logins_total", {"protocol": "imap"}) >= logins
    assert workers.as_boss.get("/stats/live").json()["processes"] == 2


def test_a_pop3_session_is_listed_and_killed(site: Site) -> None:
    with LineClient(site.server.port("pop3.listen")) as client:
        assert client.read_line() is not None
        assert client.command(f"USER {site.carol.name}").startswith(b"+OK")
        assert client.command(f"PASS {site.carol.password}").startswith(b"+OK")
        mine = [s for s in _sessions(site, protocol="pop3") if s["account"] == site.carol.name]
        assert len(mine) == 1, mine
        assert mine[0]["commands"] == 2
        killed = site.as_boss.call("DELETE", f"/sessions/{mine[0]['session_id']}")
        assert killed.status == 204
        rest = _read_to_end(client)
        assert len(rest) == 1
        assert rest[0].startswith(b"-ERR [SYS/TEMP]"), rest

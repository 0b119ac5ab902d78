"""``/metrics``: Prometheus text that parses, counters that move with real IMAP logins and
LMTP deliveries, the store gauges, and who may read it (``[web] metrics_access``)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conversations.harness import LineClient, message
from tests.web_api.conftest import Site, start_site
from tests.web_api.support import Reply


def scrape(site: Site) -> Reply:
    reply = site.anonymous.call("GET", "/metrics", prefix="")
    assert reply.status == 200, reply
    assert reply.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    return reply


def value(text: str, name: str, labels: Mapping[str, str] | None = None) -> float:
    """The sample ``name{labels}`` (0 when absent)."""
    want = dict(labels or {})
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in want.items()):
                total += sample.value
    return total


def imap_login(site: Site, name: str, password: str) -> LineClient:
    client = LineClient(site.server.port("imap.listen"))
    assert client.read_line() is not None  # greeting
    client.send_line(f'a1 LOGIN "{name}" "{password}"')
    return client


def read_tagged(client: LineClient, tag: bytes) -> bytes:
    while True:
        line = client.read_line()
        assert line is not None
        if line.startswith(tag + b" "):
            return line


def lmtp_deliver(site: Site, recipients: list[str]) -> list[bytes]:
    with LineClient(site.server.port("lmtp.listen")) as c:
        assert c.read_line() is not None
        c.send_line("LHLO test")
        while (line := c.read_line()) is not None and line.startswith(b"250-"):
            pass
        assert c.command("MAIL FROM:<a@example.org>").startswith(b"250")
        accepted = []
        for rcpt in recipients:
            reply = c.command(f"RCPT TO:<{rcpt}>")
            if reply.startswith(b"250"):
                accepted.append(rcpt)
        replies: list[bytes] = []
        if accepted:
            assert c.command("DATA").startswith(b"354")
            c.send(message("metrics test") + b".\r\n")
            for _ in accepted:
                line = c.read_line()
                assert line is not None
                replies.append(line)
        c.command("QUIT")
        return replies


def test_metrics_parse_and_count(site: Site) -> None:
    before = scrape(site).body.decode()
    names = {f.name for f in text_string_to_metric_families(before)}
    assert {"msgstore_store_octets", "msgstore_accounts", "msgstore_relay_queue_messages"} <= names

    client = imap_login(site, site.carol.name, "wrong-password")
    assert read_tagged(client, b"a1").startswith(b"a1 NO")
    client.close()
    replies = lmtp_deliver(site, [site.carol.name, "nobody-at-all"])
    assert [r[:3] for r in replies] == [b"250"]

    after = scrape(site).body.decode()
    imap = {"protocol": "imap"}
    assert value(after, "msgstore_login_failures_total", imap) == (
        value(before, "msgstore_login_failures_total", imap) + 1
    )
    assert value(after, "msgstore_commands_total", imap) >= (
        value(before, "msgstore_commands_total", imap) + 1
    )
    delivered = {"protocol": "lmtp", "result": "delivered"}
    assert value(after, "msgstore_deliveries_total", delivered) == (
        value(before, "msgstore_deliveries_total", delivered) + 1
    )
    unknown = {"protocol": "lmtp", "reason": "not-found"}
    assert value(after, "msgstore_rejections_total", unknown) == (
        value(before, "msgstore_rejections_total", unknown) + 1
    )
    assert value(after, "msgstore_commands_total", {"protocol": "lmtp"}) >= 6


def test_the_connection_gauge_follows_open_sessions(site: Site) -> None:
    base = value(scrape(site).body.decode(), "msgstore_connections", {"protocol": "imap"})
    client = imap_login(site, site.carol.name, site.carol.password)
    try:
        assert read_tagged(client, b"a1").startswith(b"a1 OK")
        now = value(scrape(site).body.decode(), "msgstore_connections", {"protocol": "imap"})
        assert now == base + 1
        logins = value(scrape(site).body.decode(), "msgstore_logins_total", {"protocol": "imap"})
        assert logins >= 1
    finally:
        client.close()


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    s = start_site(tmp_path_factory.mktemp("metrics-manager"), **{"web.metrics_access": "manager"})
    try:
        yield s
    finally:
        s.server.stop()


def test_metrics_for_managers_only(guarded: Site) -> None:
    anonymous = guarded.anonymous.call("GET", "/metrics", prefix="")
    assert anonymous.status == 401
    assert anonymous.headers.get_all("WWW-Authenticate")
    assert guarded.as_carol.call("GET", "/metrics", prefix="").status == 403
    ok = guarded.as_boss.call("GET", "/metrics", prefix="")
    assert ok.status == 200
    assert value(ok.body.decode(), "msgstore_accounts") >= 2


def test_every_exposed_metric_is_documented(site: Site) -> None:
    from tests.web_api.test_docs import REST_MD

    manual = REST_MD.read_text()
    for family in text_string_to_metric_families(scrape(site).body.decode()):
        if family.name.startswith("msgstore_"):
            name = family.name + ("_total" if family.type == "counter" else "")
            assert f"`{name}`" in manual, name

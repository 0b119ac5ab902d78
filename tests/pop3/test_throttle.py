"""Login throttling over POP3 and poppassd (RELIABILITY.md §7 cases 15 and 16).

A dedicated server with the delays compressed (200 ms doubling to a 800 ms cap instead of
2 s to 15 s). Clients bind to different loopback addresses (127.0.0.x) to act as different
sources.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator

import pytest

from tests.conversations.harness import LineClient, MsgstoreServer

BASE = 0.2
CAP = 0.8
TRUSTED = "127.0.0.99"


@pytest.fixture(scope="module")
def throttled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MsgstoreServer]:
    srv = MsgstoreServer.start(
        tmp_path_factory.mktemp("throttle"),
        config={
            "auth.failure_delay_ms": int(BASE * 1000),
            "auth.failure_delay_max_ms": int(CAP * 1000),
            "auth.trusted_networks": [TRUSTED],
        },
    )
    try:
        yield srv
    finally:
        srv.stop()


def attempt(server: MsgstoreServer, name: str, password: str, source: str) -> tuple[float, bytes]:
    """One USER/PASS on a fresh connection: (seconds PASS took, its reply)."""
    with LineClient(server.port("pop3.listen"), source=source) as client:
        client.read_line()
        client.command(f"USER {name}")
        start = time.monotonic()
        reply = client.command(f"PASS {password}")
        elapsed = time.monotonic() - start
        if reply.startswith(b"+OK"):
            client.command("QUIT")
    return elapsed, reply


def test_delay_doubles_per_failure_of_a_source_up_to_the_cap(throttled: MsgstoreServer) -> None:
    source = "127.0.0.2"
    delays = [attempt(throttled, f"nobody{i}", f"guess{i}", source)[0] for i in range(6)]
    expected = [0, BASE, 2 * BASE, 4 * BASE, CAP, CAP]
    for got, want in zip(delays, expected, strict=True):
        # Never early; late by the password check and scheduling on a loaded machine, but the
        # capped ones below the uncapped 2 * CAP.
        assert want - 0.02 <= got < want + 0.9 * CAP, (delays, expected)


def test_the_same_wrong_password_again_does_not_escalate(throttled: MsgstoreServer) -> None:
    alice = throttled.admin.add_user("alice")
    source = "127.0.0.3"
    delays = [attempt(throttled, alice.name, "stale-saved-password", source)[0] for _ in range(4)]
    # Escalating, the fourth would wait 4 * BASE; it waits BASE plus the password check.
    assert delays[3] < 4 * BASE - 0.05, delays
    assert delays[1] >= BASE - 0.02, "the first failure still counts once"


def test_failures_of_an_account_from_many_sources_slow_the_account(
    throttled: MsgstoreServer,
) -> None:
    bob = throttled.admin.add_user("bob")
    for i in range(3):
        attempt(throttled, bob.name, f"guess{i}", f"127.0.1.{i + 1}")
    elapsed, reply = attempt(throttled, bob.name, "guess-from-elsewhere", "127.0.1.50")
    assert reply == b"-ERR [AUTH] Authentication failed"
    assert elapsed >= 4 * BASE - 0.02
    # The real user still gets in from another address, after at most the capped delay...
    elapsed, reply = attempt(throttled, bob.name, bob.password, "127.0.1.60")
    assert reply.startswith(b"+OK Logged in")
    assert elapsed < CAP + 0.3
    # ...and that success clears the account's counter (not cleared: at least the cap).
    elapsed, _ = attempt(throttled, bob.name, "one-more-guess", "127.0.1.70")
    assert elapsed < CAP - 0.05


def test_poppassd_shares_the_throttle(throttled: MsgstoreServer) -> None:
    carol = throttled.admin.add_user("carol")
    source = "127.0.0.4"
    for i in range(2):
        attempt(throttled, carol.name, f"guess{i}", source)
    with LineClient(throttled.port("poppassd.listen"), source=source) as client:
        client.read_line()
        client.command(f"user {carol.name}")
        start = time.monotonic()
        reply = client.command(f"pass {carol.password}")
        elapsed = time.monotonic() - start
    assert reply == b"200 Your new password please."
    assert elapsed >= 2 * BASE - 0.02


def test_trusted_networks_are_not_throttled(throttled: MsgstoreServer) -> None:
    delays = [attempt(throttled, f"ghost{i}", "x", TRUSTED)[0] for i in range(4)]
    # Throttled, the last three would wait BASE, 2*BASE and 4*BASE on top of the password
    # check (7*BASE together); unthrottled they cost only the check, which a loaded machine
    # stretches to ~BASE each, so the bound sits halfway.
    assert sum(delays[1:]) < 5 * BASE, delays
    assert delays[3] < 4 * BASE - 0.05, delays


def test_unknown_user_and_wrong_password_look_the_same(throttled: MsgstoreServer) -> None:
    """Same reply text; timing within noise (dummy argon2id check for unknown names)."""
    dave = throttled.admin.add_user("dave")
    unknown, wrong = [], []
    for i in range(8):
        t, r1 = attempt(throttled, f"no-such-user-{i}", "wrong-password", TRUSTED)
        unknown.append(t)
        t, r2 = attempt(throttled, dave.name, f"wrong-password-{i}", TRUSTED)
        wrong.append(t)
        assert r1 == r2 == b"-ERR [AUTH] Authentication failed"
    a, b = statistics.median(unknown), statistics.median(wrong)
    assert abs(a - b) < max(0.5 * max(a, b), 0.01), (unknown, wrong)

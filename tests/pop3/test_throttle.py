"""Login throttling over POP3 and poppassd (RELIABILITY.md §7 cases 15 and 16).

A dedicated server with the delays compressed (400 ms doubling to a 1.6 s cap instead of
2 s to 15 s; no shorter: scheduling noise on a loaded machine reaches ~0.3 s, and the bounds
must tell a delay from twice that delay). Clients bind to different loopback addresses
(127.0.0.x) to act as different sources.
"""

from __future__ import annotations

import itertools
import statistics
import time
from collections.abc import Iterator

import pytest

from tests.conversations.harness import LineClient, MsgstoreServer

BASE = 0.4
CAP = 1.6
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


_unseen = itertools.count(1)


def undelayed(server: MsgstoreServer, *, succeed: bool = False) -> float:
    """Seconds an attempt with no delay takes now: a name and a source (127.0.2.x) nothing was
    counted against, failing (or, ``succeed``, a new account logging in). A loaded machine
    stretches the password check (argon2id) past BASE, so the upper bounds below are on what
    an attempt takes beyond this, measured just before and just after it."""
    n = next(_unseen)
    assert n < 255, "out of fresh sources"
    if succeed:
        user = server.admin.add_user(f"fresh{n}")
        elapsed, reply = attempt(server, user.name, user.password, f"127.0.2.{n}")
        assert reply.startswith(b"+OK"), reply
        return elapsed
    return attempt(server, f"unseen{n}", "guess", f"127.0.2.{n}")[0]


def beyond_undelayed(
    server: MsgstoreServer, name: str, password: str, source: str, *, succeed: bool = False
) -> tuple[float, float, bytes]:
    """One :func:`attempt`: (seconds it took, seconds beyond :func:`undelayed`, its reply)."""
    before = undelayed(server, succeed=succeed)
    elapsed, reply = attempt(server, name, password, source)
    after = undelayed(server, succeed=succeed)
    return elapsed, elapsed - max(before, after), reply


def test_delay_doubles_per_failure_of_a_source_up_to_the_cap(throttled: MsgstoreServer) -> None:
    source = "127.0.0.2"
    measured = [beyond_undelayed(throttled, f"nobody{i}", f"guess{i}", source) for i in range(6)]
    expected = [0, BASE, 2 * BASE, 4 * BASE, CAP, CAP]
    for (got, beyond, _), want in zip(measured, expected, strict=True):
        # Never early; beyond an undelayed attempt by scheduling noise at most, the capped ones
        # below the uncapped 2 * CAP.
        assert want - 0.02 <= got, (measured, expected)
        assert beyond < want + 0.9 * CAP, (measured, expected)


def test_the_same_wrong_password_again_does_not_escalate(throttled: MsgstoreServer) -> None:
    alice = throttled.admin.add_user("alice")
    source = "127.0.0.3"
    delays = [attempt(throttled, alice.name, "stale-saved-password", source)[0] for _ in range(3)]
    _, beyond, _ = beyond_undelayed(throttled, alice.name, "stale-saved-password", source)
    # Escalating, the fourth would wait 4 * BASE; it waits BASE beyond an undelayed attempt.
    assert beyond < 4 * BASE - 0.05, (delays, beyond)
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
    _, beyond, reply = beyond_undelayed(
        throttled, bob.name, bob.password, "127.0.1.60", succeed=True
    )
    assert reply.startswith(b"+OK Logged in")
    assert beyond < 1.5 * CAP  # halfway to the uncapped 2 * CAP
    # ...and that success clears the account's counter (not cleared: at least the cap).
    _, beyond, _ = beyond_undelayed(throttled, bob.name, "one-more-guess", "127.0.1.70")
    assert beyond < CAP - 0.05


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
    delays = [beyond_undelayed(throttled, f"ghost{i}", "x", TRUSTED)[1] for i in range(4)]
    # Throttled, the last three would wait BASE, 2*BASE and 4*BASE beyond an undelayed
    # attempt (7*BASE together); unthrottled, nothing but scheduling noise.
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

"""Case 18 and case 15 across processes: ``msgstore serve --workers 2`` with IMAP and POP3.

Connection limits and the login throttle are counted once per server (the supervisor's anvil,
``auth/anvil.py``), not once per worker: every check below knows which worker serves each
connection (``worker_of``) and arranges the connections so that a per-worker count would
have let the refused attempt through, or would have delayed it less. Each part uses its own
loopback source address (127.0.x.y), so the parts do not share address counts.
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from collections.abc import Iterator

import pytest

from tests.conversations.harness import LineClient, MsgstoreServer, User
from tests.imap_stress.conftest import worker_of, worker_pids

LIMIT_USER = 4
LIMIT_IP = 4
BASE = 0.2
CAP = 3.2


@pytest.fixture(scope="module")
def two_workers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MsgstoreServer]:
    server = MsgstoreServer.start(
        tmp_path_factory.mktemp("anvil"),
        services=("imap", "pop3"),
        config={
            "server.workers": 2,
            "imap.max_connections_per_user": LIMIT_USER,
            "pop3.max_connections_per_user": LIMIT_USER,
            "imap.max_connections_per_ip": LIMIT_IP,
            "pop3.max_connections_per_ip": LIMIT_IP,
            "auth.failure_delay_ms": int(BASE * 1000),
            "auth.failure_delay_max_ms": int(CAP * 1000),
        },
    )
    try:
        yield server
    finally:
        server.stop()


def imap(server: MsgstoreServer, source: str) -> LineClient:
    c = LineClient(server.port("imap.listen"), source=source)
    greeting = c.read_line()
    assert greeting is not None
    assert greeting.startswith(b"* OK"), greeting
    return c


def imap_login(c: LineClient, user: User | tuple[str, str], tag: str = "a1") -> bytes:
    name, password = (user.name, user.password) if isinstance(user, User) else user
    c.send_line(f"{tag} LOGIN {name} {password}")
    while True:
        line = c.read_line()
        assert line is not None, "closed during LOGIN"
        if line.startswith(tag.encode() + b" "):
            return line


def pop3(server: MsgstoreServer, source: str) -> tuple[LineClient, bytes]:
    c = LineClient(server.port("pop3.listen"), source=source)
    greeting = c.read_line()
    assert greeting is not None
    return c, greeting


def pop3_login(c: LineClient, name: str, password: str) -> bytes:
    assert c.command(f"USER {name}").startswith(b"+OK")
    return c.command(f"PASS {password}")


def spread_logins(
    server: MsgstoreServer, user: User, source: str, count: int
) -> list[tuple[LineClient, int]]:
    """``count`` logged-in IMAP connections of ``user`` that reach both workers."""
    held: list[tuple[LineClient, int]] = []
    for _ in range(80):
        if len(held) == count:
            break
        c = imap(server, source)
        worker = worker_of(server, c.sock)
        workers = Counter(w for _, w in held)
        missing = {1, 2} - set(workers)
        if len(held) == count - 1 and missing and worker not in missing:
            c.close()  # the last one must go to the worker that has none yet
            continue
        assert imap_login(c, user).startswith(b"a1 OK"), "login below the limit refused"
        held.append((c, worker))
    assert len(held) == count
    assert {w for _, w in held} == {1, 2}, "both workers must hold some of the connections"
    return held


def refused_in_both_workers(server: MsgstoreServer, user: User, source: str) -> None:
    """An IMAP login over the limit is refused whichever worker takes it."""
    seen: set[int] = set()
    for _ in range(80):
        c = imap(server, source)
        worker = worker_of(server, c.sock)
        if worker in seen:
            c.close()
            continue
        reply = imap_login(c, user)
        c.close()
        assert reply.startswith(b"a1 NO [LIMIT]"), (worker, reply)
        seen.add(worker)
        if seen == {1, 2}:
            return
    raise AssertionError(f"never reached both workers: {seen}")


def test_account_limit_holds_across_workers_and_imap_pop3(two_workers: MsgstoreServer) -> None:
    source = "127.0.3.1"
    user = two_workers.admin.add_user("limited")
    held = spread_logins(two_workers, user, source, LIMIT_USER - 1)
    # The 4th slot goes to POP3; then neither IMAP (in any worker) nor POP3 gets a 5th.
    p, greeting = pop3(two_workers, source)
    assert greeting.startswith(b"+OK")
    assert pop3_login(p, user.name, user.password).startswith(b"+OK")
    refused_in_both_workers(two_workers, user, source)
    held[0][0].close()  # an IMAP connection ends: its slot frees, POP3 now gets refused
    # One slot is free once the server has seen the close, but the maildrop lock holds the
    # second POP3 session off.
    deadline = time.monotonic() + 10
    while True:
        q, _ = pop3(two_workers, source)
        reply = pop3_login(q, user.name, user.password)
        q.close()
        if b"Too many connections" not in reply or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert reply.startswith(b"-ERR [IN-USE]"), reply
    assert b"Too many connections" not in reply, reply
    c = imap(two_workers, source)
    assert imap_login(c, user).startswith(b"a1 OK")  # the freed slot
    d = imap(two_workers, source)
    assert imap_login(d, user).startswith(b"a1 NO [LIMIT]")
    d.close()
    # A POP3 login past the limit is refused by the count (not by the maildrop lock).
    p.send_line("QUIT")
    p.read_line()
    p.close()
    held.append((c, worker_of(two_workers, c.sock)))
    e = imap(two_workers, source)
    assert imap_login(e, user).startswith(b"a1 OK")  # the POP3 slot went back at QUIT
    q, _ = pop3(two_workers, source)
    reply = pop3_login(q, user.name, user.password)
    assert reply.startswith(b"-ERR [IN-USE] Too many connections"), reply
    q.close()
    for c, _ in held:
        c.close()
    e.close()


def test_a_killed_worker_gives_its_slots_back(two_workers: MsgstoreServer) -> None:
    source = "127.0.3.2"
    user = two_workers.admin.add_user("killed")
    held = spread_logins(two_workers, user, source, LIMIT_USER)
    refused_in_both_workers(two_workers, user, source)
    victim = held[0][1]
    pid = next(p for p, n in worker_pids(two_workers).items() if n == victim)
    os.kill(pid, signal.SIGKILL)
    lost = sum(1 for _, w in held if w == victim)
    deadline = time.monotonic() + 10
    again: list[LineClient] = []
    while len(again) < lost and time.monotonic() < deadline:
        c = imap(two_workers, source)  # the surviving worker accepts while the other restarts
        reply = imap_login(c, user)
        if reply.startswith(b"a1 OK"):
            again.append(c)
        else:
            assert reply.startswith(b"a1 NO [LIMIT]"), reply
            c.close()
            time.sleep(0.1)
    assert len(again) == lost, "the killed worker's slots were not given back"
    d = imap(two_workers, source)
    assert imap_login(d, user).startswith(b"a1 NO [LIMIT]")
    for c in [d, *again, *(c for c, _ in held)]:
        c.close()


def test_address_limit_before_login_counts_imap_and_pop3(two_workers: MsgstoreServer) -> None:
    source = "127.0.3.3"
    waiting: list[LineClient] = []
    workers: set[int] = set()
    for n in range(LIMIT_IP):
        if n % 2:
            c, greeting = pop3(two_workers, source)
            assert greeting.startswith(b"+OK"), greeting
        else:
            c = imap(two_workers, source)
        workers.add(worker_of(two_workers, c.sock))
        waiting.append(c)
    # Whatever worker takes it, the next connection from this address is turned away.
    for _ in range(3):
        c = LineClient(two_workers.port("imap.listen"), source=source)
        assert c.read_line() == b"* BYE [LIMIT] Too many connections from your address"
        c.close()
        p, greeting = pop3(two_workers, source)
        assert greeting.startswith(b"-ERR [SYS/TEMP] Too many connections"), greeting
        p.close()
    waiting.pop().close()
    # A slot is free again once the server has seen the close.
    deadline = time.monotonic() + 10
    while True:
        c = LineClient(two_workers.port("imap.listen"), source=source)
        greeting = c.read_line() or b""
        if greeting.startswith(b"* OK") or time.monotonic() > deadline:
            break
        c.close()
        time.sleep(0.05)
    assert greeting.startswith(b"* OK"), greeting
    waiting.append(c)
    for c in waiting:
        c.close()


def test_throttle_counts_failures_of_every_worker_and_protocol(
    two_workers: MsgstoreServer,
) -> None:
    source = "127.0.3.4"
    failures_in: Counter[int] = Counter()
    for i in range(4):  # four wrong passwords over POP3: shared delay 0, .2, .4, .8 s
        c, _ = pop3(two_workers, source)
        failures_in[worker_of(two_workers, c.sock)] += 1
        assert pop3_login(c, "nobody-here", f"guess-{i}").startswith(b"-ERR [AUTH]")
        c.close()
    # IMAP, in the worker that saw the fewest of those failures (none, or at most two).
    target = min((1, 2), key=lambda w: failures_in[w])
    for _ in range(80):
        c = imap(two_workers, source)
        if worker_of(two_workers, c.sock) == target:
            break
        c.close()
    else:
        raise AssertionError(f"no connection reached worker {target}")
    local = failures_in[target]
    per_worker_delay = 0.0 if local == 0 else BASE * 2 ** (local - 1)
    start = time.monotonic()
    reply = imap_login(c, ("nobody-here", "guess-5"))
    elapsed = time.monotonic() - start
    c.close()
    assert reply.startswith(b"a1 NO"), reply
    shared_delay = BASE * 2 ** (4 - 1)
    assert per_worker_delay < shared_delay
    assert elapsed >= shared_delay - 0.02, (elapsed, dict(failures_in))

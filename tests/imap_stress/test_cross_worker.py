"""Case 42: a change made anywhere reaches an IDLE session in another worker within 1 s.

``msgstore serve --workers 3``; an imapclient session IDLEs in worker A while ``msgstore
deliver`` (its own process), a STORE in worker B, a flag change by another process (the
store opened in this test process, as any tool does) and an EXPUNGE in worker C happen. Then
a worker is killed with SIGKILL (its notification socket stays behind): it is restarted, and
changes still reach the IDLE session without delay.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from imapclient import IMAPClient  # type: ignore[import-untyped]

from msgstore.core.flags import FlagOp
from msgstore.core.ids import UidSet
from msgstore.core.names import INBOX
from tests.conversations.harness import MsgstoreServer, User, message
from tests.imap_stress.conftest import WORKERS, worker_of, worker_pids

#: RELIABILITY.md §7 case 42 and ARCHITECTURE.md: IDLE sees a change within a second.
BOUND_S = 1.0

Response = tuple[Any, ...]
CLI = (sys.executable, "-m", "msgstore.cli")


def one_per_worker(server: MsgstoreServer, user: User) -> dict[int, IMAPClient]:
    """A logged-in client in every worker: connect until each worker has accepted one."""
    found: dict[int, IMAPClient] = {}
    spare: list[IMAPClient] = []
    try:
        for _ in range(60):
            client = IMAPClient(
                "127.0.0.1", port=server.port("imap.listen"), ssl=False, timeout=10
            )
            client.login(user.name, user.password)
            worker = worker_of(server, client._imap.sock)
            if worker in found:
                spare.append(client)
            else:
                found[worker] = client
            if len(found) == WORKERS:
                break
    finally:
        for client in spare:
            client.logout()
    assert len(found) == WORKERS, f"60 connections reached workers {sorted(found)} only"
    return found


def wait_for(idler: IMAPClient, wanted: Callable[[Response], bool], since: float) -> float:
    """Seconds from ``since`` until the IDLE session received a response ``wanted`` accepts."""
    seen: list[Response] = []
    deadline = since + 10.0
    while time.monotonic() < deadline:
        for response in idler.idle_check(timeout=max(0.05, deadline - time.monotonic())):
            seen.append(response)
            if wanted(response):
                return time.monotonic() - since
    raise AssertionError(f"not seen within 10 s; got {seen}")


def is_fetch_with(uid: int, flag: bytes) -> Callable[[Response], bool]:
    def check(r: Response) -> bool:
        if len(r) < 3 or r[1] != b"FETCH":
            return False
        items = list(r[2])
        pairs = dict(zip(items[::2], items[1::2], strict=False))
        return pairs.get(b"UID") == uid and flag in pairs.get(b"FLAGS", ())

    return check


def cli_deliver(server: MsgstoreServer, user: User, body: bytes) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MSGSTORE_")}
    subprocess.run(
        [*CLI, "--config", str(server.config_path), "deliver", "--to", user.name],
        input=body,
        env=env,
        check=True,
        timeout=60,
    )


def flag_from_other_process(server: MsgstoreServer, user: User, uid: int, flag: str) -> None:
    admin = server.admin

    async def change() -> None:
        account = await admin.backend.get_account(user.name)
        mailbox = await admin.backend.get_mailbox(account.id, INBOX)
        await admin.backend.store_flags(
            account.id, mailbox.id, UidSet.from_uids([uid]), FlagOp.ADD, frozenset({flag})
        )

    admin.call(change())


def test_idle_in_one_worker_sees_changes_from_everywhere(workers_server: MsgstoreServer) -> None:
    server = workers_server
    user = server.admin.add_user("idler")
    for i in range(3):
        server.admin.deliver(user.name, message(f"before {i}"))
    clients = one_per_worker(server, user)
    idle_worker, store_worker, expunge_worker = sorted(clients)
    idler, storer, expunger = (clients[w] for w in (idle_worker, store_worker, expunge_worker))
    try:
        for client in clients.values():
            client.select_folder("INBOX")
        idler.idle()

        cli_deliver(server, user, message("delivered by msgstore deliver"))
        took = wait_for(idler, lambda r: r[1:] == (b"EXISTS",) and r[0] == 4, time.monotonic())
        assert took < BOUND_S, f"EXISTS after {took:.2f} s"

        storer.add_flags([1], [b"\\Flagged"])
        took = wait_for(idler, is_fetch_with(1, b"\\Flagged"), time.monotonic())
        assert took < BOUND_S, f"FETCH FLAGS from worker-{store_worker} after {took:.2f} s"

        flag_from_other_process(server, user, 3, "$FromTool")
        took = wait_for(idler, is_fetch_with(3, b"$FromTool"), time.monotonic())
        assert took < BOUND_S, f"FETCH FLAGS from another process after {took:.2f} s"

        expunger.delete_messages([2])
        expunger.expunge()
        took = wait_for(idler, lambda r: r[1:] == (b"EXPUNGE",) and r[0] == 2, time.monotonic())
        assert took < BOUND_S, f"EXPUNGE from worker-{expunge_worker} after {took:.2f} s"

        # A worker dies without cleaning up: its socket file stays; the others go on, and
        # the supervisor starts a new worker-N.
        storer.logout()
        expunger.logout()
        victim = next(pid for pid, n in worker_pids(server).items() if n == expunge_worker)
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while victim in worker_pids(server) or expunge_worker not in worker_pids(server).values():
            assert time.monotonic() < deadline, f"worker-{expunge_worker} not restarted"
            time.sleep(0.1)

        server.admin.deliver(user.name, message("after the crash"))
        took = wait_for(idler, lambda r: r[1:] == (b"EXISTS",) and r[0] == 4, time.monotonic())
        assert took < BOUND_S, f"EXISTS after a worker crash took {took:.2f} s"

        idler.idle_done()
        assert idler.search("ALL") == [1, 3, 4, 5]
    finally:
        for client in (idler, storer, expunger):
            with contextlib.suppress(Exception):  # already logged out, or cut off by the kill
                client.logout()
    assert f"worker-{expunge_worker} (pid {victim}) killed by SIGKILL; restarting" in server.log

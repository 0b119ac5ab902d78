"""The relay queue runner across machines: two ``msgstore serve`` processes with data
directories of their own (as on two hosts) over one PostgreSQL database. Exactly one runs the
queue (the advisory lock of ``Backend.runner_lock``); after a kill -9 of that one the other
takes over within the bound of docs/delivery.md, and a queued message reaches the smarthost
(a real aiosmtpd sink) exactly once."""

from __future__ import annotations

import signal
import time
from pathlib import Path

from tests.conversations.harness import MsgstoreServer, message
from tests.relay.conftest import RELAY_SETTINGS
from tests.relay.sink import Sink
from tests.relay.test_relay import forward, lmtp_send, queue, wait_until
from tests.storage.pg import pg_schema
from tests.storage.postgres.conftest import pg_settings

RUNS: str = "relay: this process runs the queue"
POLL_S = 1.0  # RELAY_SETTINGS' poll_interval
#: docs/delivery.md: the survivor takes the lock within poll_interval of the holder's death
#: (plus connecting to PostgreSQL); the rest is slack for a loaded test machine.
TAKEOVER_BOUND_S = POLL_S + 4.0


def start(root: Path, sink: Sink, schema: str) -> MsgstoreServer:
    settings: dict[str, object] = {**RELAY_SETTINGS, **pg_settings(schema)}
    settings["relay.smarthost"] = f"127.0.0.1:{sink.port}"
    return MsgstoreServer.start(root, services=("lmtp",), config=settings)


def runners(*servers: MsgstoreServer) -> list[MsgstoreServer]:
    return [s for s in servers if RUNS in s.log]


def test_one_runner_across_hosts_and_takeover_after_kill_9(tmp_path: Path) -> None:
    sink = Sink()  # down at first: the queued message stays queued until the takeover
    with pg_schema() as schema:
        one = start(tmp_path / "one", sink, schema)
        two = start(tmp_path / "two", sink, schema)
        try:
            wait_until(lambda: len(runners(one, two)) >= 1)
            time.sleep(3 * POLL_S)  # the other has tried the lock several times by now
            (holder,) = runners(one, two)
            other = two if holder is one else one
            assert holder.log.count(RUNS) == 1

            # Queued through the other server: the holder sees it in the shared database.
            forward(other, "out", "far@example.net")
            assert lmtp_send(other, "s@example.com", "out", message("once")) == {}
            wait_until(lambda: any(e.attempts >= 1 for e in queue(other)))
            assert "far@example.net deferred" in holder.log
            assert "deferred" not in other.log

            holder.admin.close()
            holder._admin = None
            assert holder.proc is not None
            holder.proc.send_signal(signal.SIGKILL)
            killed = time.monotonic()
            holder.proc.wait()
            sink.start()
            try:
                wait_until(lambda: RUNS in other.log, timeout=30)
                took = time.monotonic() - killed
                assert took <= TAKEOVER_BOUND_S, f"takeover after {took:.1f} s"
                (arrived,) = sink.wait_for("far@example.net")
                assert b"Subject: once" in arrived.data
                assert arrived.sender == "s@example.com"
                wait_until(lambda: not queue(other))
                time.sleep(3 * POLL_S)  # more passes of the new runner: nothing is sent again
                assert len(sink.to("far@example.net")) == 1
                assert other.log.count(RUNS) == 1
            finally:
                sink.stop()
        finally:
            one.stop()
            two.stop()

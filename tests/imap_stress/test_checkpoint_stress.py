"""Case 41: the imaptest-style checkpoint stress (bench/imap_stress.py), bounded.

20 clients on one mailbox, spread over three workers, run random SELECT, FETCH, STORE, COPY,
MOVE, EXPUNGE, APPEND and IDLE for 20 s with a checkpoint every 3 s; every check of the
harness must hold (see its docstring). ``python -m bench.imap_stress --duration 300`` is the
long run.
"""

from __future__ import annotations

import asyncio

from bench.imap_stress import Stress, Target
from tests.conversations.harness import MsgstoreServer


def test_twenty_clients_agree_at_every_checkpoint(workers_server: MsgstoreServer) -> None:
    server = workers_server
    user = server.admin.add_user("stress")
    target = Target("127.0.0.1", server.port("imap.listen"), user.name, user.password)
    stress = Stress(target, clients=20, duration=20.0, checkpoint=3.0, seed=41, strict_recent=True)
    report = asyncio.run(stress.run())
    assert report.errors == []
    assert report.checkpoints >= 3
    assert report.ops > 200, "the clients hardly ran"
    assert "Traceback" not in server.log

"""Case 40: two sessions EXPUNGE one mailbox while a third works by sequence number.

Sessions A and B (spread over the workers) mark overlapping sets ``\\Deleted`` and EXPUNGE,
again and again, while session C loops FETCH, STORE and SEARCH by sequence number. The
harness session (bench/imap_stress.py) checks every response as it arrives: no EXPUNGE during
FETCH/STORE/SEARCH (RFC 9051 §7.5.1), no FETCH past EXISTS or with another UID than the
session was told. Afterwards C's numbering must match a fresh SELECT, and UID FETCH of an
expunged UID returns nothing.
"""

from __future__ import annotations

import asyncio
import random
import time

from bench.imap_stress import Session, Target
from tests.conversations.harness import MsgstoreServer, message

RUN_S = 6.0


async def _expunger(s: Session, rng: random.Random, end: float, doomed: set[int]) -> None:
    while time.monotonic() < end:
        if len(s.model) < 10:
            for _ in range(10):
                await s.command("APPEND INBOX ()", literal=message("refill"))
        else:
            lo = rng.randint(1, len(s.model) - 3)
            marked = [m.uid for m in s.model[lo - 1 : lo + 2] if m.uid is not None]
            await s.command(f"STORE {lo}:{lo + 2} +FLAGS (\\Deleted)")
            reply = await s.command("EXPUNGE")
            if reply.status == b"OK":
                doomed.update(marked)
        await s.learn_uids()


async def _reader(
    s: Session, rng: random.Random, end: float, doomed: set[int], checked: list[int]
) -> int:
    commands = 0
    while time.monotonic() < end:
        n = len(s.model)
        roll = rng.random()
        stale = [m.uid for m in s.model if m.uid in doomed]
        if stale and roll < 0.15:
            # Expunged by A or B, still numbered here: UID FETCH returns no data for it.
            uid = rng.choice(stale)
            assert uid is not None
            reply = await s.command(f"UID FETCH {uid} (FLAGS)")
            if reply.status != b"OK" or any(b"(UID %d " % uid in line for line in reply.untagged):
                s.error(f"UID FETCH {uid} (expunged) answered {reply.untagged} {reply.text!r}")
            checked.append(uid)
        elif roll < 0.25:
            await s.command("NOOP")  # the EXPUNGEs held back so far arrive here
        elif n:
            lo = rng.randint(1, n)
            hi = min(n, lo + rng.randint(0, 8))
            if roll < 0.5:
                await s.command(f"FETCH {lo}:{hi} (UID FLAGS)")
            elif roll < 0.75:
                await s.command(f"STORE {lo}:{hi} {rng.choice('+-')}FLAGS (\\Seen)")
            else:
                await s.command(rng.choice(["SEARCH ALL", "SEARCH UNSEEN", f"SEARCH {lo}:{hi}"]))
        commands += 1
        await s.learn_uids()
    return commands


async def _race(target: Target) -> tuple[list[str], int, list[int], Session]:
    errors: list[str] = []
    sessions = [Session(target, name, errors) for name in ("A", "B", "C")]
    for s in sessions:
        await s.connect()
        await s.select("INBOX")
    a, b, c = sessions
    end = time.monotonic() + RUN_S
    doomed: set[int] = set()
    checked: list[int] = []
    results = await asyncio.gather(
        _expunger(a, random.Random(1), end, doomed),
        _expunger(b, random.Random(2), end, doomed),
        _reader(c, random.Random(3), end, doomed, checked),
    )
    await c.command("NOOP")
    await c.learn_uids()
    for s in (a, b):
        await s.close()
    return errors, int(results[2]), checked, c


async def _check(target: Target, c: Session, expunged: list[int]) -> list[str]:
    errors = c.errors
    fresh = Session(target, "fresh", errors)
    await fresh.connect()
    await fresh.select("INBOX", examine=True)
    if c.known_uids() != fresh.known_uids():
        errors.append(f"C has {c.known_uids()}, a fresh EXAMINE {fresh.known_uids()}")
    await fresh.close()
    await c.close()
    return errors


def test_expunges_in_two_sessions_while_a_third_uses_sequence_numbers(
    workers_server: MsgstoreServer,
) -> None:
    server = workers_server
    user = server.admin.add_user("race")
    server.admin.deliver_many(user.name, (message(f"race {i}") for i in range(40)))
    target = Target("127.0.0.1", server.port("imap.listen"), user.name, user.password)

    async def run() -> tuple[list[str], int, int]:
        errors, commands, expunged, c = await _race(target)
        errors += await _check(target, c, expunged)
        return errors, commands, len(expunged)

    errors, commands, expunged = asyncio.run(run())
    assert errors == []
    assert commands > 20, "the reader hardly ran"
    assert expunged > 0, "the reader never held an expunged message"
    assert "Traceback" not in server.log

"""ESORT (RFC 5267 §3.2) as a webmail's message list uses it, driven with imapclient.

Roundcube asks ``UID SORT RETURN (ALL COUNT)`` when the server advertises ESORT: one compact
line instead of one number per message. The order the ESEARCH reply encodes must be the
classic SORT order of the same criteria, MIN/MAX its first and last entries, and COUNT its
length; the classic order itself is checked against a reference computed here.
"""

from __future__ import annotations

import random
import re
from typing import Any

from tests.conversations.harness import MsgstoreServer
from tests.imap_clients.conftest import client

_ITEM_RE = re.compile(rb"\b(MIN|MAX|COUNT|ALL) ([0-9:,]+)")


def _expand(sequence_set: bytes) -> list[int]:
    """An ordered sequence-set (ESORT ALL) as the list of numbers it names, in order."""
    out: list[int] = []
    for part in sequence_set.split(b","):
        lo, _, hi = part.partition(b":")
        a, b = int(lo), int(hi or lo)
        out.extend(range(a, b + 1) if a <= b else range(a, b - 1, -1))
    return out


def _esort(c: Any, criteria: bytes, returns: bytes, search: bytes = b"ALL") -> dict[str, bytes]:
    data = c._raw_command_untagged(
        b"SORT", [b"RETURN", returns, criteria, b"UTF-8", search], response_name="ESEARCH"
    )
    assert len(data) == 1, data
    line = data[0]
    assert line.startswith(b"(TAG "), line
    assert b" UID " in line, line
    return {k.decode(): v for k, v in _ITEM_RE.findall(line)}


def test_webmail_message_list_uses_esort(clients_server: MsgstoreServer) -> None:
    user = clients_server.admin.add_user("esort")
    rng = random.Random(5267)
    subjects = [f"topic {rng.randrange(8)}" for _ in range(40)]
    sizes = [rng.randrange(1, 2000) for _ in range(40)]
    with client(clients_server, user) as c:
        assert c.has_capability("ESORT")
        c.select_folder("INBOX")
        for subject, pad in zip(subjects, sizes, strict=True):
            c.append("INBOX", f"Subject: {subject}\r\n\r\n{'x' * pad}\r\n".encode())
        c.select_folder("INBOX")
        c.delete_messages([5, 6, 7])  # gaps in the UIDs
        c.expunge()
        uids = [u for u in range(1, 41) if u not in (5, 6, 7)]
        # The reference: subject descending, then size ascending, then mailbox order.
        by_uid = {u: (subjects[u - 1], sizes[u - 1]) for u in uids}
        expected = sorted(uids, key=lambda u: by_uid[u][1])
        expected.sort(key=lambda u: by_uid[u][0], reverse=True)
        assert c.sort(["REVERSE SUBJECT", "SIZE"]) == expected

        got = _esort(c, b"(REVERSE SUBJECT SIZE)", b"(ALL COUNT MIN MAX)")
        assert _expand(got["ALL"]) == expected
        assert int(got["COUNT"]) == len(expected)
        assert int(got["MIN"]) == expected[0]
        assert int(got["MAX"]) == expected[-1]

        # A filtered list (one topic), and a search that matches nothing.
        topic = subjects[0]
        matching = [u for u in expected if by_uid[u][0] == topic]
        got = _esort(c, b"(SIZE)", b"(ALL)", f'SUBJECT "{topic}"'.encode())
        assert _expand(got["ALL"]) == sorted(matching, key=lambda u: by_uid[u][1])
        got = _esort(c, b"(ARRIVAL)", b"(COUNT ALL)", b"SUBJECT absent")
        assert got == {"COUNT": b"0"}

"""Contract: ``SupportsFlagScan.fetch_flags`` (optional) is ``fetch_meta(Want.FLAGS)`` projected
on (uid, modseq, flags), for every UID set shape; a backend without it is left alone (IMAP
falls back to ``fetch_meta``), so the test checks only what a backend offers."""

from __future__ import annotations

from msgstore.core.accounts import AccountInfo
from msgstore.core.flags import FLAGGED, SEEN, FlagOp
from msgstore.core.ids import MailboxId, UidSet
from msgstore.storage.base import Backend, SupportsFlagScan, Want
from tests.storage.support import append


async def test_fetch_flags_matches_fetch_meta(
    backend: Backend, alice: AccountInfo, inbox: MailboxId
) -> None:
    if not isinstance(backend, SupportsFlagScan):
        return  # optional: nothing to check
    for n in range(12):
        await append(backend, alice.id, inbox, flags=frozenset({SEEN}) if n % 3 else frozenset())
    await backend.store_flags(
        alice.id, inbox, UidSet.from_uids([2, 5, 9]), FlagOp.ADD, frozenset({FLAGGED, "$Work"})
    )
    await backend.expunge(alice.id, inbox, UidSet.from_uids([4]), only_deleted=False)
    for uids in (
        UidSet.all(),
        UidSet.from_uids([1, 4, 5, 12, 99]),
        UidSet(tuple((u, u) for u in range(1, 200, 2))),  # more ranges than queries
        UidSet(((20, 30),)),
    ):
        metas = await backend.fetch_meta(alice.id, inbox, uids, Want.FLAGS)
        rows = await backend.fetch_flags(alice.id, inbox, uids)
        assert rows == [(int(m.uid), int(m.modseq), m.flags) for m in metas], uids

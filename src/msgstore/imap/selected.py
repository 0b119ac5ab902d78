"""The selected mailbox of one session: sequence numbers, and what changed since we last said.

Sequence numbers are positions in :attr:`SelectedMailbox.uids`, a sorted ``array('I')`` of
the UIDs the client knows; ``uids[n - 1]`` is message n, and :func:`bisect.bisect_left` goes
back. :meth:`SelectedMailbox.uid_for` and :meth:`SelectedMailbox.seq_for` are the only ways
across (STYLE.md §2.1).

Changes come from ``backend.changes_since(modseq)`` -- one indexed query per command, never a
diff of whole snapshots (STYLE.md §4.4). :meth:`SelectedMailbox.sync` turns them into untagged
responses, in this order:

1. expunged messages: ``* n EXPUNGE`` from the highest sequence number down (so no number
   needs adjusting while they go out), or ``* VANISHED uids`` once QRESYNC is enabled. During
   FETCH, STORE and SEARCH by sequence number (command flag ``USES_SEQS``) they are *held*
   (RFC 9051 §7.5.1): the UIDs stay in the array, keep their numbers, and are reported by the
   next command that may report them;
2. new messages: ``* n EXISTS`` (and ``* n RECENT`` for IMAP4rev1 clients). A read-write
   selection claims ``\\Recent`` for messages that arrive while it is selected, through the
   same atomic claim SELECT uses (``snapshot(claim_recent=True)``), so exactly one session
   sees each new message as ``\\Recent`` (RFC 3501 §2.3.2). The claim reads the mailbox's
   UID list, so it runs only when new messages arrived, never on an unchanged mailbox;
3. flag changes of known messages: ``* n FETCH (UID u FLAGS (...) [MODSEQ (m)])``, except
   those the session's own command already reported (STORE's own FETCH responses).
"""

from __future__ import annotations

import bisect
from array import array
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from msgstore.core.errors import ErrorKind, StoreError
from msgstore.core.flags import SYSTEM_FLAGS
from msgstore.core.ids import ModSeq, SeqNum, Uid, UidSet
from msgstore.imap.syntax.errors import BadCommandError
from msgstore.imap.syntax.grammar import SeqSet
from msgstore.imap.syntax.responses import (
    Code,
    Exists,
    Expunge,
    FlagsData,
    ResponseCode,
    Status,
    StatusResponse,
    Vanished,
    encode_flag_list,
    permanentflags,
)
from msgstore.storage.access import OpenedMailbox
from msgstore.storage.base import Backend, Snapshot

if TYPE_CHECKING:
    from msgstore.imap.session import Session


def ranges_of(values: Iterable[int]) -> tuple[tuple[int, int], ...]:
    """Sorted values as ``(lo, hi)`` runs."""
    out: list[tuple[int, int]] = []
    for v in sorted(values):
        if out and v == out[-1][1] + 1:
            out[-1] = (out[-1][0], v)
        elif not out or v > out[-1][1]:
            out.append((v, v))
    return tuple(out)


class SelectedMailbox:
    """See the module docstring."""

    __slots__ = (
        "backend",
        "keywords",
        "modseq",
        "opened",
        "pending_expunge",
        "readonly",
        "recent",
        "reported",
        "uidnext",
        "uids",
        "uidvalidity",
    )

    def __init__(
        self,
        opened: OpenedMailbox,
        snapshot: Snapshot,
        *,
        readonly: bool,
        backend: Backend,
    ) -> None:
        self.opened = opened
        self.backend = backend
        self.readonly = readonly
        self.uids: array[int] = array("I", snapshot.uids)
        self.uidvalidity = snapshot.uidvalidity
        self.uidnext = snapshot.uidnext
        self.modseq: ModSeq = snapshot.highestmodseq
        self.recent: set[int] = set(snapshot.recent_uids)
        self.keywords: set[str] = set(snapshot.keywords)
        self.pending_expunge: set[int] = set()
        #: (uid -> modseq) of flag changes the current command reported itself.
        self.reported: dict[int, int] = {}

    # --- numbers ------------------------------------------------------------------------------

    @property
    def exists(self) -> int:
        return len(self.uids)

    def uid_for(self, seq: SeqNum) -> Uid:
        return Uid(self.uids[seq - 1])

    def seq_for(self, uid: Uid | int) -> SeqNum | None:
        i = bisect.bisect_left(self.uids, uid)
        if i < len(self.uids) and self.uids[i] == uid:
            return SeqNum(i + 1)
        return None

    def flags_list(self) -> tuple[str, ...]:
        return (*SYSTEM_FLAGS, *sorted(self.keywords))

    def flag_responses(self, session: Session) -> None:
        """``* FLAGS`` and ``* OK [PERMANENTFLAGS]`` for SELECT and new keywords."""
        session.out.send(FlagsData(self.flags_list()))
        perm: Sequence[str] = () if self.readonly else self.flags_list()
        session.out.send(
            StatusResponse(
                Status.OK,
                "Flags permitted" if perm else "No permanent flags permitted",
                permanentflags(perm, new_keywords=not self.readonly and "w" in self.opened.rights),
            )
        )

    def resolve(
        self, seqs: SeqSet, *, uid: bool, saved: Sequence[tuple[int, int]] | None
    ) -> list[tuple[int, int]]:
        """``(seq, uid)`` of the messages a sequence set (or UID set) names, ascending.

        ``saved`` is the SEARCHRES result (UID ranges) for ``$``. Sequence numbers above
        EXISTS are an error (``BAD``); UIDs that do not exist are ignored (RFC 9051 §6.4.8).
        """
        if seqs.saved and saved is None:
            raise BadCommandError("No saved search result ($) yet")
        out: list[tuple[int, int]] = []
        if uid:
            star = self.uids[-1] if self.uids else 0
            ranges = seqs.resolve(star, saved or ())
            for lo, hi in ranges:
                i = bisect.bisect_left(self.uids, lo)
                j = bisect.bisect_right(self.uids, hi)
                out.extend(zip(range(i + 1, j + 1), self.uids[i:j], strict=True))
            return out
        saved_seqs: list[tuple[int, int]] = []
        if seqs.saved and saved:
            saved_seqs = [(s, s) for lo, hi in saved for s in self._seqs_in(lo, hi)]
        n = len(self.uids)
        for lo, hi in seqs.resolve(n, saved_seqs):
            if lo > n:
                raise BadCommandError("Invalid message sequence number")
            top = min(hi, n)
            out.extend(zip(range(lo, top + 1), self.uids[lo - 1 : top], strict=True))
        return out

    def _seqs_in(self, lo: int, hi: int) -> range:
        i = bisect.bisect_left(self.uids, lo)
        j = bisect.bisect_right(self.uids, hi)
        return range(i + 1, j + 1)

    def uid_set(self, pairs: Iterable[tuple[int, int]]) -> UidSet:
        return UidSet(ranges_of(u for _, u in pairs))

    # --- changes ------------------------------------------------------------------------------

    async def sync(self, session: Session, *, allow_expunge: bool) -> None:
        """Report what changed since the last sync (module docstring)."""
        owner, mailbox = self.opened.owner, self.opened.id
        try:
            changes = await self.backend.changes_since(owner, mailbox, self.modseq)
        except StoreError as exc:
            if exc.kind is ErrorKind.NOT_FOUND:
                session.bye("The selected mailbox was deleted")
                return
            raise
        gone = set(changes.expunged)
        known_max = self.uids[-1] if self.uids else 0
        for uid in gone:
            if uid <= known_max and self.seq_for(uid) is not None:
                self.pending_expunge.add(uid)
        out = session.out
        if allow_expunge and self.pending_expunge:
            doomed = sorted(self.pending_expunge)
            if session.qresync:
                out.send(Vanished(ranges_of(doomed)))
                for gone_uid in doomed:
                    seq = self.seq_for(gone_uid)
                    if seq is not None:
                        del self.uids[seq - 1]
            else:
                for gone_uid in reversed(doomed):
                    seq = self.seq_for(gone_uid)
                    if seq is not None:
                        out.send(Expunge(seq))
                        del self.uids[seq - 1]
            self.recent.difference_update(doomed)
            self.pending_expunge.clear()
        new_keywords: set[str] = set()
        added = 0
        updates = []
        for meta in changes.changed:
            for f in meta.flags:
                if f not in SYSTEM_FLAGS and f not in self.keywords:
                    new_keywords.add(f)
            if meta.uid in gone:
                continue
            if meta.uid > known_max:
                if not self.uids or meta.uid > self.uids[-1]:
                    self.uids.append(meta.uid)
                    added += 1
            elif meta.uid not in self.pending_expunge:
                if self.reported.get(meta.uid) == meta.modseq:
                    continue
                updates.append(meta)
        if new_keywords:
            self.keywords |= new_keywords
            self.flag_responses(session)
        if added and not self.readonly:
            claimed = await self.backend.snapshot(owner, mailbox, claim_recent=True)
            self.recent |= set(claimed.recent_uids)
        if added:
            out.send(Exists(len(self.uids)))
            if not session.rev2:
                out.write(b"* %d RECENT\r\n" % len(self.recent))
        for meta in updates:
            seq = self.seq_for(meta.uid)
            if seq is None:
                continue
            out.write(self.flags_fetch(session, seq, meta.uid, meta.flags, meta.modseq))
        if changes.uidnext > self.uidnext:
            self.uidnext = changes.uidnext
        if changes.highestmodseq > self.modseq:
            self.modseq = changes.highestmodseq
        self.reported.clear()

    def flags_fetch(
        self, session: Session, seq: int, uid: int, flags: Iterable[str], modseq: int
    ) -> bytes:
        """``* seq FETCH (UID u FLAGS (...) [MODSEQ (m)])``."""
        listed = sorted(flags)
        if uid in self.recent and not session.rev2:
            listed.append("\\Recent")
        line = b"* %d FETCH (UID %d FLAGS " % (seq, uid) + encode_flag_list(listed)
        if session.condstore:
            line += b" MODSEQ (%d)" % modseq
        return line + b")\r\n"

    def closed_code(self) -> StatusResponse:
        """``* OK [CLOSED]`` (RFC 7162 §3.2.11) when a new SELECT replaces this one."""
        return StatusResponse(Status.OK, "Previous mailbox closed", ResponseCode(Code.CLOSED))

    async def close(self) -> None:
        """Release what the selection holds (nothing beyond memory for now)."""
        self.uids = array("I")
        self.pending_expunge.clear()

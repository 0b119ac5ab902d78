"""The one table from the error family to SMTP replies (RFC 5321 §4.2, RFC 3463 codes), for
every door that answers a delivery outcome in SMTP terms: the LMTP/SMTP server
(lmtp/errors.py) and the Postfix socketmap service (socketmap/maps.py, whose
``recipient_access`` answers are the replies Postfix then gives at RCPT).

:func:`kind_reply` gives the *permanent* form of each kind where a kind can be permanent.
Two kinds read differently by :class:`Phase`, the moment the reply answers:

- PARAMS: at RCPT the recipient address is unusable, ``553 5.1.3`` (bad destination mailbox
  address syntax); after the data it is the message, ``550 5.6.0`` (e.g. empty);
- AUTH_FAILED (never an outcome of delivery itself): ``550 5.7.1`` (delivery not authorized)
  at RCPT; after the data the SMTP door's AUTH reply, ``535 5.7.8``.

:func:`refusal` turns a refused recipient into its reply: ``Rejected`` -> the table entry (a
mail loop: ``554 5.4.6``); ``Deferred`` -> the entry made temporary (``552 5.2.2`` ->
``452 4.2.2``: same subject and detail, class 4), or ``452 4.3.1`` when the disk was full.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final, assert_never

from msgstore.core.errors import ErrorKind
from msgstore.delivery.pipeline import Deferred, Rejected


class Phase(enum.Enum):
    """What the reply answers."""

    RCPT = "rcpt"  # the RCPT command (or a lookup Postfix makes at RCPT)
    DATA = "data"  # a recipient's outcome after the message (LMTP: one reply per recipient)


@dataclass(frozen=True, slots=True)
class Reply:
    """A reply code and its enhanced status code (RFC 2034), without text."""

    code: int
    enhanced: str

    def line(self, text: str) -> bytes:
        """``code enhanced text`` with CRLF; the text is made one printable line."""
        clean = "".join(ch if ch.isprintable() else "?" for ch in text)
        return f"{self.code} {self.enhanced} {clean}\r\n".encode("utf-8", "replace")

    def temporary(self) -> Reply:
        """The class-4 form of a class-5 reply (unchanged when already temporary)."""
        if self.code < 500:
            return self
        return Reply(self.code - 100, "4" + self.enhanced[1:])


STORAGE_FULL: Final = Reply(452, "4.3.1")  # insufficient system storage
MAIL_LOOP: Final = Reply(554, "5.4.6")  # routing loop detected (Delivered-To)


def kind_reply(kind: ErrorKind, phase: Phase = Phase.DATA) -> Reply:
    """The reply of an error kind (see the module docstring)."""
    match kind:
        case ErrorKind.NOT_FOUND:
            return Reply(550, "5.1.1")  # bad destination mailbox address
        case ErrorKind.DISABLED:
            return Reply(550, "5.2.1")  # mailbox disabled, not accepting messages
        case ErrorKind.OVER_QUOTA:
            return Reply(552, "5.2.2")  # mailbox full
        case ErrorKind.TOO_BIG:
            return Reply(552, "5.3.4")  # message too big for system
        case ErrorKind.NO_PERM:
            return Reply(550, "5.7.1")  # delivery not authorized
        case ErrorKind.PARAMS if phase is Phase.RCPT:
            return Reply(553, "5.1.3")  # bad destination mailbox address syntax
        case ErrorKind.PARAMS:
            return Reply(550, "5.6.0")  # the message itself is unusable (e.g. empty)
        case ErrorKind.NOT_POSSIBLE | ErrorKind.EXISTS | ErrorKind.HAS_CHILDREN:
            return Reply(550, "5.2.0")  # other mailbox status
        case ErrorKind.IN_USE:
            return Reply(451, "4.2.0")
        case ErrorKind.LIMIT:
            return Reply(451, "4.3.2")  # system not accepting messages now
        case ErrorKind.AUTH_FAILED if phase is Phase.RCPT:
            return Reply(550, "5.7.1")
        case ErrorKind.AUTH_FAILED:
            return Reply(535, "5.7.8")
        case (
            ErrorKind.TEMP
            | ErrorKind.UNAVAILABLE
            | ErrorKind.EXPUNGED
            | ErrorKind.CORRUPTED
            | ErrorKind.INTERNAL
        ):
            return Reply(451, "4.3.0")  # mail system: other or undefined status
        case _:
            assert_never(kind)


#: Every kind's reply in each phase, for documentation and the coverage tests.
REPLIES: Final = {phase: {kind: kind_reply(kind, phase) for kind in ErrorKind} for phase in Phase}
#: The replies after the data (the LMTP server's table).
KIND_REPLY: Final = REPLIES[Phase.DATA]


def refusal(outcome: Rejected | Deferred, phase: Phase) -> Reply:
    """The reply for a recipient that was refused (see the module docstring)."""
    if isinstance(outcome, Rejected):
        return MAIL_LOOP if outcome.loop else kind_reply(outcome.kind, phase)
    if outcome.storage_full:
        return STORAGE_FULL
    return kind_reply(outcome.kind, phase).temporary()

"""The one table from the error family to LMTP/SMTP replies (RFC 5321 §4.2, RFC 3463 codes).

:data:`KIND_REPLY` gives the *permanent* form of each kind where a kind can be permanent;
:func:`outcome_reply` turns a delivery outcome into the reply for its recipient:

- ``Accepted`` -> ``250 2.0.0``;
- ``Rejected`` -> the table entry (5xx); a mail loop (Delivered-To) -> ``554 5.4.6``;
- ``Deferred`` -> the table entry made temporary (``552 5.2.2`` -> ``452 4.2.2``: same
  subject and detail, class 4), and ``452 4.3.1`` when the disk was full.

Protocol-level refusals (syntax, sequence, limits) are written by the session directly with
the constants below; they are not store errors.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, assert_never

from msgstore.core.errors import ErrorKind
from msgstore.delivery.pipeline import Accepted, Deferred, Outcome, Rejected


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


def kind_reply(kind: ErrorKind) -> Reply:
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
        case ErrorKind.PARAMS:
            return Reply(550, "5.6.0")  # the message itself is unusable (e.g. empty)
        case ErrorKind.NOT_POSSIBLE | ErrorKind.EXISTS | ErrorKind.HAS_CHILDREN:
            return Reply(550, "5.2.0")  # other mailbox status
        case ErrorKind.IN_USE:
            return Reply(451, "4.2.0")
        case ErrorKind.LIMIT:
            return Reply(451, "4.3.2")  # system not accepting messages now
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


#: Every kind's reply, for documentation and the coverage test.
KIND_REPLY: Final = {kind: kind_reply(kind) for kind in ErrorKind}

OK: Final = Reply(250, "2.0.0")
SENDER_OK: Final = Reply(250, "2.1.0")
RECIPIENT_OK: Final = Reply(250, "2.1.5")
START_DATA: Final = 354
STORAGE_FULL: Final = Reply(452, "4.3.1")  # insufficient system storage
TOO_MANY_RECIPIENTS: Final = Reply(452, "4.5.3")
SYNTAX: Final = Reply(500, "5.5.2")  # command unrecognised / line too long
BAD_ARGUMENTS: Final = Reply(501, "5.5.4")
BAD_SENDER: Final = Reply(501, "5.1.7")
BAD_RECIPIENT: Final = Reply(501, "5.1.3")
BAD_SEQUENCE: Final = Reply(503, "5.5.1")
NOT_IMPLEMENTED: Final = Reply(502, "5.5.1")
PARAM_UNKNOWN: Final = Reply(555, "5.5.4")
NO_RELAY: Final = Reply(550, "5.7.1")
NEEDS_SMTPUTF8: Final = Reply(553, "5.6.7")
BARE_NEWLINE: Final = Reply(550, "5.6.0")
MESSAGE_TOO_BIG: Final = Reply(552, "5.3.4")
CLOSING: Final = Reply(421, "4.3.2")
TIMEOUT: Final = Reply(421, "4.4.2")
TOO_MANY_ERRORS: Final = Reply(421, "4.7.0")
TLS_NOT_AVAILABLE: Final = Reply(454, "4.7.0")
MAIL_LOOP: Final = Reply(554, "5.4.6")  # routing loop detected (Delivered-To)


def outcome_reply(outcome: Outcome) -> bytes:
    """The reply line for one recipient's delivery outcome."""
    if isinstance(outcome, Accepted):
        return OK.line(f"<{outcome.recipient}> Delivered")
    if isinstance(outcome, Rejected):
        reply = MAIL_LOOP if outcome.loop else kind_reply(outcome.kind)
        return reply.line(f"<{outcome.recipient}> {outcome.text}")
    if isinstance(outcome, Deferred):
        reply = STORAGE_FULL if outcome.storage_full else kind_reply(outcome.kind).temporary()
        return reply.line(f"<{outcome.recipient}> {outcome.text}")
    assert_never(outcome)

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

from typing import Final, assert_never

from msgstore.delivery.pipeline import Accepted, Deferred, Outcome, Rejected
from msgstore.delivery.replies import KIND_REPLY as KIND_REPLY  # the table shared with socketmap
from msgstore.delivery.replies import Reply as Reply
from msgstore.delivery.replies import kind_reply as kind_reply

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

"""The socketmap tables: Postfix lookups answered by the delivery pipeline.

Every recipient answer comes from :meth:`DeliveryPipeline.check`, the function behind the
LMTP/SMTP RCPT command (unknown address, receiving disabled, over quota, storage unavailable),
so the MTA in front and the store never disagree. Three maps (the ``name`` of a request):

``recipients`` -- for Postfix ``virtual_mailbox_maps`` (or ``relay_recipient_maps``):
    ``OK <address>`` when the address is deliverable now, ``NOTFOUND`` when it never will be
    (unknown, receiving disabled, over quota with permanent over-quota refusals), ``TEMP``
    when the answer may change by retrying (storage unavailable; over quota when
    ``[delivery] over_quota_temporary`` is on). Postfix turns NOTFOUND into
    ``550 5.1.1 ... User unknown in virtual mailbox table`` at RCPT and TEMP into
    ``451 4.3.0``.

``recipient_access`` -- for ``check_recipient_access`` (access(5) actions):
    ``OK DUNNO`` for a deliverable address (no opinion: the other restrictions decide),
    otherwise the exact reply the LMTP server would give at RCPT, as an action:
    ``OK 550 5.2.1 Account does not receive mail``, ``OK 552 5.2.2 Mailbox is full``,
    ``OK 452 4.2.2 ...`` (the table shared with LMTP, ``delivery/replies.py``, phase RCPT).
    Keys that are not a full address (Postfix also looks up the domain and ``user@``) get
    NOTFOUND, so they never override the full-address answer.

``domains`` -- for ``virtual_mailbox_domains``:
    ``OK <domain>`` for a domain of ``[delivery] domains`` (every domain when the list is
    empty), NOTFOUND otherwise.

A key that is not an address gets NOTFOUND; an unknown map name gets ``PERM``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final

from msgstore.core.address import parse_address
from msgstore.core.errors import StoreError
from msgstore.delivery.pipeline import Deferred, DeliveryPipeline, Rejected
from msgstore.delivery.replies import Phase, refusal

#: The longest reply value Postfix accepts (socketmap_table(5): 100000 characters).
MAX_VALUE_OCTETS: Final = 100_000


class Status(enum.Enum):
    """The first word of a socketmap reply."""

    OK = "OK"
    NOTFOUND = "NOTFOUND"
    TEMP = "TEMP"
    TIMEOUT = "TIMEOUT"
    PERM = "PERM"


@dataclass(frozen=True, slots=True)
class Answer:
    """One socketmap reply: ``status`` and its value or reason."""

    status: Status
    text: str = ""

    def payload(self) -> bytes:
        """The reply as a netstring payload (the caller frames it)."""
        clean = "".join(ch if ch.isprintable() else "?" for ch in self.text)
        data = f"{self.status.value} {clean}".encode("utf-8", "replace")
        return data[: MAX_VALUE_OCTETS + len(self.status.value) + 1]


NOT_FOUND: Final = Answer(Status.NOTFOUND)


#: The map names this service answers.
MAPS: Final = ("recipients", "recipient_access", "domains")


class Tables:
    """Answer lookups from the delivery pipeline (see the module docstring)."""

    def __init__(self, pipeline: DeliveryPipeline) -> None:
        self._pipeline = pipeline

    async def lookup(self, name: str, key: str) -> Answer:
        """The answer for ``key`` in map ``name`` (PERM for an unknown map)."""
        if name == "recipients":
            return await self._recipients(key)
        if name == "recipient_access":
            return await self._recipient_access(key)
        if name == "domains":
            return self._domains(key)
        return Answer(Status.PERM, f"unknown map {name!r} (maps: {', '.join(MAPS)})")

    async def _recipients(self, key: str) -> Answer:
        recipient = _recipient(key)
        if recipient is None:
            return NOT_FOUND
        checked = await self._pipeline.check(recipient)
        if isinstance(checked, Rejected):
            return NOT_FOUND
        if isinstance(checked, Deferred):
            return Answer(Status.TEMP, checked.text)
        return Answer(Status.OK, recipient)

    async def _recipient_access(self, key: str) -> Answer:
        if "@" not in key.strip("@"):
            return NOT_FOUND  # a domain or "user@": only the full address has an answer
        recipient = _recipient(key)
        if recipient is None:
            return NOT_FOUND
        checked = await self._pipeline.check(recipient)
        if not isinstance(checked, Rejected | Deferred):
            return Answer(Status.OK, "DUNNO")
        reply = refusal(checked, Phase.RCPT)
        return Answer(Status.OK, f"{reply.code} {reply.enhanced} {checked.text}")

    def _domains(self, key: str) -> Answer:
        domain = key.strip().lower()
        if not domain or "@" in domain or not self._pipeline.is_local_domain(domain):
            return NOT_FOUND
        return Answer(Status.OK, domain)


def _recipient(key: str) -> str | None:
    """The recipient as the RCPT command would pass it to the pipeline: ``local@domain``
    normalised, or a bare account name; None when the key is not an address at all."""
    text = key.strip()
    if not text:
        return None
    try:
        if "@" in text:
            return str(parse_address(text, smtputf8=not text.isascii()))
        return parse_address(f"{text}@localhost", smtputf8=not text.isascii()).local
    except StoreError:
        return None

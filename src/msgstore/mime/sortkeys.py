"""Search and sort keys of the header index (RFC 5256 §2.1-2.2, RFC 9051 §6.4.4).

* :func:`base_subject` — the RFC 5256 §2.1 base subject ("Re:", "Fwd:", "[list]" leaders and
  "(fwd)" trailers removed, whitespace collapsed), lower-cased for i;unicode-casemap-like
  comparison.
* :func:`sent_date` — the Date header as ``YYYY-MM-DDTHH:MM:SSZ`` in UTC (sortable as text),
  or ``""`` when it cannot be parsed (the IMAP layer then uses the internal date, RFC 5256 §2.2).
"""

from __future__ import annotations

import datetime as dt
import re
from email.utils import parsedate_tz
from typing import Final

__all__ = ["base_subject", "sent_date"]

_WS_RE: Final = re.compile(r"\s+")
# subj-trailer = "(fwd)" / WSP
_TRAILER_RE: Final = re.compile(r"(?:\s|\(fwd\))+$", re.IGNORECASE)
# subj-blob = "[" *BLOBCHAR "]" *WSP
_BLOB: Final = r"\[[^\[\]]*\]\s*"
# subj-leader = (*subj-blob subj-refwd) / WSP
# subj-refwd  = ("re" / ("fw" ["d"])) *WSP [subj-blob] ":"
_LEADER_RE: Final = re.compile(rf"^(?:(?:{_BLOB})*(?:re|fwd?)\s*(?:{_BLOB})?:|\s+)", re.IGNORECASE)
_BLOB_RE: Final = re.compile(rf"^{_BLOB}")
_FWD_WRAP_RE: Final = re.compile(r"^\[fwd:(.*)\]$", re.IGNORECASE | re.DOTALL)


def base_subject(subject: str) -> str:
    """The RFC 5256 §2.1 base subject of a decoded subject, lower-cased."""
    text = _WS_RE.sub(" ", subject).strip()
    while True:
        # (2) remove trailers
        text = _TRAILER_RE.sub("", text)
        # (3)-(5) remove leaders and leading blobs until nothing changes
        while True:
            before = text
            m = _LEADER_RE.match(text)
            while m is not None and m.end() > 0:
                text = text[m.end() :]
                m = _LEADER_RE.match(text)
            m = _BLOB_RE.match(text)
            if m is not None and text[m.end() :].strip():
                text = text[m.end() :]
            if text == before:
                break
        # (6) "[fwd:" ... "]" wrapper
        m = _FWD_WRAP_RE.match(text)
        if m is None:
            break
        text = m.group(1).strip()
    return text.lower()


def sent_date(raw: str) -> str:
    """The Date header as ISO 8601 UTC (``2024-05-01T12:00:00Z``), ``""`` if unparsable."""
    try:
        parsed = parsedate_tz(raw[:256])
        if parsed is None:
            return ""
        year, month, day, hour, minute, second = parsed[:6]
        offset = parsed[9] or 0
        when = dt.datetime(year, month, day, hour, minute, second, tzinfo=dt.UTC)
        when -= dt.timedelta(seconds=offset)
    except (ValueError, IndexError, TypeError, OverflowError):
        return ""
    return when.replace(tzinfo=None).isoformat() + "Z"

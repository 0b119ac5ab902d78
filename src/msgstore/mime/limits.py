"""Parsing budgets: every number that keeps parsing one message linear in its size.

A message is untrusted input parsed at delivery, so each dimension an attacker can inflate has
a cap (RELIABILITY.md §3 "MIME budgets", §7 tests 26-27). Beyond a cap the parser never fails:
it stops looking deeper, records a defect, and the message is still stored byte-exact.
"""

from __future__ import annotations

from typing import Final

MAX_NESTING: Final[int] = 100
"""Deepest MIME nesting that is parsed (multipart and message/rfc822 levels together).

Dovecot's ``MESSAGE_PARSER_DEFAULT_MAX_NESTED_MIME_PARTS`` (100), hard-coded since
CVE-2020-12100. A part deeper than this is an opaque leaf: its bytes belong to it, its inside
is not scanned for boundaries or headers.
"""

MAX_PARTS: Final[int] = 10_000
"""Most MIME parts recorded per message (the message itself included).

Dovecot's ``MESSAGE_PARSER_DEFAULT_MAX_TOTAL_MIME_PARTS`` (10,000), the fix for
CVE-2020-25275. Once reached, further body parts of a multipart are not created; their bytes
stay inside the multipart's body (BODYSTRUCTURE is truncated, offsets stay exact).
"""

MAX_HEADER_BYTES: Final[int] = 1024 * 1024
"""Octets of one header block that are read for metadata (ENVELOPE, MIME fields, index).

Dovecot CVE-2024-23185 (very large headers) is the class. The header block is still found
exactly and stored byte-exact; fields beyond the first MiB are ignored.
"""

MAX_PARAMETERS: Final[int] = 128
"""Content-Type / Content-Disposition parameters read per header, RFC 2231 sections included.

Dovecot CVE-2026-27859 (10,000 RFC 2231 continuations burn CPU) is the class. Real mail uses
under ten; a long RFC 2231 file name split into 78-column sections needs a few dozen.
"""

MAX_ADDRESSES: Final[int] = 1_000
"""Addresses (and group markers) read per address header for ENVELOPE and the index.

Dovecot CVE-2024-23184 (many address headers, quadratic CPU) is the class. Large mailing-list
fan-outs carry a few hundred visible recipients at most.
"""

MAX_BOUNDARY: Final[int] = 998
"""Longest multipart boundary that is honoured, in octets.

RFC 2046 §5.1.1 allows 70; 998 is RFC 5322's line limit, so a boundary line of a conforming
message always fits. A longer boundary makes the multipart an empty one (defect recorded),
which keeps the per-line boundary check bounded (RELIABILITY.md §7 test 27, "1 MB boundary").
"""

MAX_FIELD_VALUE: Final[int] = 64 * 1024
"""Longest header value (unfolded) kept in the search/sort index and in ENVELOPE strings.

Longer values are cut at this many octets (defect ``header-value-truncated``); the stored
message keeps them in full for BODY[HEADER].
"""

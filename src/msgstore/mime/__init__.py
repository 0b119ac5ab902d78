"""Parse once, at delivery: ENVELOPE, BODY, BODYSTRUCTURE, the part map and the search header
index, computed from the raw bytes and stored beside the message. Nothing on a read path parses
MIME again.

Modules
-------
normalize      CRLF normalisation of incoming bytes (streaming and one-shot)
parse          :func:`parse_message` -> :class:`ParsedMessage` (the entry point)
partmap        :class:`PartMap` / :class:`PartInfo`: offsets per IMAP section, serialised;
               its docstring says how each BODY[...] / BINARY[...] item is read by offsets
scan           the iterative, offset-tracking scanner (budgets in ``limits``)
headers        header fields, RFC 2047 words, RFC 2045/2231 parameters
address        RFC 5322 address lists for ENVELOPE (groups, routes, quoting)
envelope, bodystructure, wire   the ready-to-send IMAP texts
sortkeys       RFC 5256 base subject and sent date
limits         the parsing budgets, each with its origin
"""

from msgstore.mime.normalize import CrlfNormalizer, normalize
from msgstore.mime.parse import METADATA_VERSION, ParsedMessage, parse_message
from msgstore.mime.partmap import PartInfo, PartMap

__all__ = [
    "METADATA_VERSION",
    "CrlfNormalizer",
    "ParsedMessage",
    "PartInfo",
    "PartMap",
    "normalize",
    "parse_message",
]

"""BODY and BODYSTRUCTURE responses, ready to send (RFC 9051 §7.5.2, RFC 3501 §7.4.2).

Written iteratively from the scanner's depth-first node list: each node emits its opening
text when it is reached and leaves its closing text on a stack, popped when the walk leaves
its subtree. No recursion, linear in the number of parts.

Choices within the RFC:

* media type, subtype, parameter names, encoding and disposition type are sent lower-case;
  parameter values as found (RFC 2231 values decoded to UTF-8, see headers.py);
* a missing Content-Type is ``("text" "plain" ("charset" "us-ascii") ...)`` (RFC 2045 §5.2),
  or message/rfc822 inside multipart/digest (RFC 2046 §5.1.5);
* a multipart without any body part (no boundary found, or nested too deep) is sent with one
  empty text/plain part, since the grammar needs ``1*body`` (Dovecot does the same);
* a message/rfc822 part whose inside is not parsed (too deep, or base64/quoted-printable) is
  sent with an all-NIL envelope and an empty text/plain body;
* body-fld-lang is always a parenthesised list; the four extension fields are always present.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from msgstore.mime.headers import parse_language, parse_parameters
from msgstore.mime.scan import MESSAGE, MULTIPART, Node
from msgstore.mime.wire import NIL, astring_list, nstring, string

__all__ = ["EMPTY_BODY", "EMPTY_BODYSTRUCTURE", "EMPTY_ENVELOPE", "build_body_structures"]

EMPTY_BODY: Final[bytes] = b'("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 0 0)'
EMPTY_BODYSTRUCTURE: Final[bytes] = (
    b'("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 0 0 NIL NIL NIL NIL)'
)
EMPTY_ENVELOPE: Final[bytes] = b"(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)"


def params_bytes(params: list[tuple[bytes, bytes]]) -> bytes:
    """body-fld-param: ``("name" "value" ...)`` or NIL."""
    if not params:
        return NIL
    return b"(" + b" ".join(string(k) + b" " + string(v) for k, v in params) + b")"


def _disposition(node: Node, defects: list[str]) -> bytes:
    raw = node.fields.get("content-disposition")
    if raw is None:
        return NIL
    main, params, problems = parse_parameters(raw)
    defects.extend(p for p in problems if p not in defects)
    if not main:
        return NIL
    return b"(" + string(main) + b" " + params_bytes(params) + b")"


def _extension(node: Node, defects: list[str], *, multipart: bool) -> bytes:
    """body-ext-1part (md5 dsp lang loc) or body-ext-mpart (param dsp lang loc)."""
    fields = node.fields
    lang = fields.get("content-language")
    first = params_bytes(node.params) if multipart else nstring(fields.get("content-md5"))
    return b" ".join(
        (
            first,
            _disposition(node, defects),
            NIL if lang is None else astring_list(parse_language(lang)),
            nstring(fields.get("content-location")),
        )
    )


def _body_fields(node: Node, size: int) -> bytes:
    """body-fields: param id desc enc octets."""
    fields = node.fields
    return b" ".join(
        (
            params_bytes(node.params),
            nstring(fields.get("content-id")),
            nstring(fields.get("content-description")),
            string(node.encoding.encode("ascii", "replace")),
            b"%d" % size,
        )
    )


def build_body_structures(
    nodes: list[Node],
    lines: Callable[[Node], int],
    envelope: Callable[[Node], bytes],
    defects: list[str],
) -> tuple[bytes, bytes]:
    """Return ``(BODY, BODYSTRUCTURE)`` for the scanned message ``nodes``.

    ``lines(node)`` gives body-fld-lines, ``envelope(node)`` the ENVELOPE of a message root.
    """
    body: list[bytes] = []
    ext: list[bytes] = []
    closers: list[tuple[int, bytes, bytes]] = []  # (depth, BODY closer, BODYSTRUCTURE closer)
    for node in nodes:
        while closers and closers[-1][0] >= node.depth:
            _, close_body, close_ext = closers.pop()
            body.append(close_body)
            ext.append(close_ext)
        media = string(node.type.encode()) + b" " + string(node.subtype.encode())
        if node.kind == MULTIPART:
            sub = b" " + string(node.subtype.encode())
            body.append(b"(")
            ext.append(b"(")
            if not node.children:
                body.append(EMPTY_BODY)
                ext.append(EMPTY_BODYSTRUCTURE)
            closers.append(
                (
                    node.depth,
                    sub + b")",
                    sub + b" " + _extension(node, defects, multipart=True) + b")",
                )
            )
            continue
        size = node.body_end - node.header_end
        head = b"(" + media + b" " + _body_fields(node, size)
        tail_lines = b" %d" % lines(node)
        tail_ext = b" " + _extension(node, defects, multipart=False) + b")"
        if node.kind == MESSAGE:
            if node.children:
                inner = nodes[node.children[0]]
                head += b" " + envelope(inner) + b" "
                body.append(head)
                ext.append(head)
                closers.append((node.depth, tail_lines + b")", tail_lines + tail_ext))
            else:
                head += b" " + EMPTY_ENVELOPE + b" "
                body.append(head + EMPTY_BODY + tail_lines + b")")
                ext.append(head + EMPTY_BODYSTRUCTURE + tail_lines + tail_ext)
            continue
        if node.type == "text":
            head += tail_lines
        body.append(head + b")")
        ext.append(head + tail_ext)
    while closers:
        _, close_body, close_ext = closers.pop()
        body.append(close_body)
        ext.append(close_ext)
    return b"".join(body), b"".join(ext)

"""The offset-tracking MIME scanner: one forward pass, no recursion, linear time.

The scanner walks the CRLF-normalised message once and builds a flat list of :class:`Node`
objects in depth-first (section) order. State is explicit: ``chain`` holds the open nodes from
the root to the current one, ``frames`` the multiparts whose boundaries are being looked for.

* A header block ends at the first empty line (RFC 5322 §2.1), or at a boundary line of an
  enclosing multipart (the part then has no body), or at the end of the data.
* Boundary lines (RFC 2046 §5.1.1) are found with ``bytes.find`` for ``CRLF "--"`` and checked
  against every open multipart: first an exact match (boundary, optional ``--``, transport
  padding), then the RFC's prefix rule, innermost multipart first. A boundary line of an outer
  multipart ends every part nested inside it (RFC 2046: boundaries must not occur inside
  encapsulated parts), which is how a missing close-delimiter is survived.
* The CRLF before a boundary line belongs to the boundary: a part's body ends before it. A
  header line keeps its CRLF, though: a part whose header runs into a boundary line (no blank
  line, or the blank line right before it) ends two octets into that CRLF, like Dovecot.
* Finder results are cached while the scan moves forward, so a part without a blank line does
  not make every later part search to the end of the message again.

Budgets (:mod:`msgstore.mime.limits`): nesting depth, part count, header bytes, boundary
length. Beyond them parts are opaque, never an error.
"""

from __future__ import annotations

import mmap
import re
from bisect import bisect_left, insort
from typing import Final

from msgstore.mime.headers import HeaderFields, parse_parameters, read_fields
from msgstore.mime.limits import MAX_BOUNDARY, MAX_HEADER_BYTES, MAX_NESTING, MAX_PARTS

__all__ = ["LEAF", "MESSAGE", "MULTIPART", "Buffer", "Node", "scan"]

Buffer = bytes | bytearray | mmap.mmap

LEAF: Final[int] = 0
MULTIPART: Final[int] = 1
MESSAGE: Final[int] = 2

_TOKEN_RE: Final = re.compile(rb"^[!#$%&'*+\-.^_`|~0-9a-z]+/[!#$%&'*+\-.^_`|~0-9a-z]+$")
_IDENTITY: Final = frozenset({"7bit", "8bit", "binary"})
_DEFAULT_TEXT: Final[list[tuple[bytes, bytes]]] = [(b"charset", b"us-ascii")]


class Node:
    """One header+body unit found by the scanner (a body part or an encapsulated message)."""

    __slots__ = (
        "body_end",
        "child_base",
        "children",
        "depth",
        "encoding",
        "fields",
        "header_end",
        "header_start",
        "index",
        "kind",
        "opaque",
        "params",
        "parent",
        "section",
        "subtype",
        "type",
    )

    def __init__(self, index: int, parent: int, depth: int, header_start: int) -> None:
        self.index = index
        self.parent = parent
        self.depth = depth
        self.header_start = header_start
        self.header_end = header_start
        self.body_end = -1
        self.kind = LEAF
        self.opaque = False
        """A part whose inside is not parsed (nesting or part budget, encoded message)."""
        self.type = "text"
        self.subtype = "plain"
        self.params: list[tuple[bytes, bytes]] = []
        self.encoding = "7bit"
        self.fields = HeaderFields({}, [])
        self.children: list[int] = []
        self.section: tuple[int, ...] | None = None
        """IMAP section of this node as a body part; None for a multipart message root."""
        self.child_base: tuple[int, ...] = ()

    def param(self, name: bytes) -> bytes | None:
        """The first parameter of Content-Type called ``name`` (lower-case), or None."""
        for key, value in self.params:
            if key == name:
                return value
        return None


class _Scanner:
    def __init__(self, buf: Buffer) -> None:
        self.buf = buf
        self.size = len(buf)
        self.nodes: list[Node] = []
        self.defects: list[str] = []
        self.chain: list[int] = []
        # Active multipart frames, outermost first: (boundary, node index).
        self.frames: list[tuple[bytes, int]] = []
        # boundary -> positions in self.frames (several multiparts may share a boundary).
        self.bmap: dict[bytes, list[int]] = {}
        self.blens: dict[int, int] = {}  # boundary length -> number of active frames
        self.lengths: list[int] = []  # distinct active boundary lengths, ascending
        self.sorted_bounds: list[bytes] = []  # active boundaries, sorted
        self.blank_cache = (-1, -2)
        self.cand_cache = (-1, -2)

    def defect(self, name: str) -> None:
        if name not in self.defects:
            self.defects.append(name)

    # -- finders with forward caches ---------------------------------------------------------

    def find_blank(self, pos: int) -> int:
        """Index of the first CRLF CRLF at or after ``pos``, or -1."""
        start, found = self.blank_cache
        if start != -1 and start <= pos and (found == -1 or pos <= found):
            return found
        found = self.buf.find(b"\r\n\r\n", pos)
        self.blank_cache = (pos, found)
        return found

    def find_candidate(self, pos: int) -> int:
        """Index of the first CRLF "--" at or after ``pos``, or -1."""
        start, found = self.cand_cache
        if start != -1 and start <= pos and (found == -1 or pos <= found):
            return found
        found = self.buf.find(b"\r\n--", pos)
        self.cand_cache = (pos, found)
        return found

    # -- boundaries ---------------------------------------------------------------------------

    def push_frame(self, boundary: bytes, node: int) -> None:
        self.bmap.setdefault(boundary, []).append(len(self.frames))
        insort(self.sorted_bounds, boundary)
        length = len(boundary)
        count = self.blens.get(length, 0)
        if not count:
            insort(self.lengths, length)
        self.blens[length] = count + 1
        self.frames.append((boundary, node))

    def pop_frame(self) -> None:
        boundary, _ = self.frames.pop()
        positions = self.bmap[boundary]
        positions.pop()
        if not positions:
            del self.bmap[boundary]
        del self.sorted_bounds[bisect_left(self.sorted_bounds, boundary)]
        length = len(boundary)
        left = self.blens[length] - 1
        if left:
            self.blens[length] = left
        else:
            del self.blens[length]
            self.lengths.remove(length)

    def match(self, cand: int) -> tuple[int, bool, int] | None:
        """Check the line after the CRLF at ``cand``: (frame position, is close, line end)."""
        buf = self.buf
        start = cand + 4  # after CRLF "--"
        window = start + MAX_BOUNDARY + 64
        eol = buf.find(b"\r\n", start, window)
        text = bytes(buf[start : eol if eol != -1 else min(window, self.size)])
        bmap = self.bmap
        frame = -1
        close = False
        stripped = text.rstrip(b" \t")
        hit = bmap.get(stripped)
        if hit is not None:
            frame = hit[-1]
        elif stripped[-2:] == b"--" and (hit := bmap.get(stripped[:-2])) is not None:
            frame, close = hit[-1], True
        else:
            # RFC 2046 §5.1.1: the boundary need only appear in its entirety at the line start.
            # Try the active boundary lengths in ascending order while the line start is still
            # a prefix of some boundary (bisection in the sorted list), keeping the innermost.
            bounds = self.sorted_bounds
            for length in self.lengths:
                head = text[:length]
                if len(head) < length:
                    break
                k = bisect_left(bounds, head)
                if k == len(bounds) or bounds[k][:length] != head:
                    break
                hit = bmap.get(head)
                if hit is not None and hit[-1] > frame:
                    frame = hit[-1]
                    close = text[length : length + 2] == b"--"
            if frame == -1:
                return None
        if eol == -1:
            eol = buf.find(b"\r\n", window)
        line_end = self.size if eol == -1 else eol + 2
        return frame, close, line_end

    def next_delimiter(self, pos: int, limit: int) -> tuple[int, int, bool, int] | None:
        """First boundary line whose CRLF lies in [pos, limit]: (CRLF index, frame, close, end)."""
        if not self.frames:
            return None
        while True:
            cand = self.find_candidate(pos)
            if cand == -1 or cand > limit:
                return None
            hit = self.match(cand)
            if hit is not None:
                return cand, hit[0], hit[1], hit[2]
            pos = cand + 2

    # -- parts ---------------------------------------------------------------------------------

    def start(
        self, parent: int, header_start: int, msg_base: tuple[int, ...] | None
    ) -> tuple[Node, tuple[int, int, bool, int] | None]:
        """Create a node at ``header_start`` and read its header (``msg_base``: message roots).

        Returns the node and, when a boundary line of an enclosing multipart cuts the header
        short, that boundary event (the part then has no body).
        """
        nodes = self.nodes
        depth = 0 if parent == -1 else nodes[parent].depth + 1
        node = Node(len(nodes), parent, depth, header_start)
        nodes.append(node)
        self.chain.append(node.index)
        buf = self.buf
        size = self.size
        cut: tuple[int, int, bool, int] | None = None
        if buf[header_start : header_start + 2] == b"\r\n":
            block_end = header_start
            header_end = header_start + 2
        else:
            blank = self.find_blank(header_start)
            # A boundary line before the blank line ends the part inside its header.
            cut = self.next_delimiter(max(header_start - 2, 0), size if blank == -1 else blank - 2)
            if cut is not None:
                # The header ends with the line before the boundary line. That line keeps its
                # CRLF, although RFC 2046 lends it to the boundary: header lines are whole
                # lines (Dovecot counts the same way). The body is empty.
                self.defect("part-without-body")
                block_end = max(cut[0], header_start)
                header_end = cut[0] + 2 if cut[0] >= header_start else header_start
            elif blank == -1:
                block_end = header_end = size
                if header_start < size:
                    self.defect("no-header-body-separator")
            else:
                block_end = blank + 2
                header_end = blank + 4
        node.header_end = header_end
        fields_end = min(block_end, header_start + MAX_HEADER_BYTES + 1)
        node.fields = read_fields(bytes(buf[header_start:fields_end]))
        for name in node.fields.defects:
            self.defect(name)
        self.classify(node, parent)
        self.assign_sections(node, parent, msg_base)
        return node, cut

    def classify(self, node: Node, parent: int) -> None:
        """Content-Type, encoding and kind (RFC 2045 §5.2 defaults, RFC 2046 §5.1.5 digest)."""
        fields = node.fields
        raw_type = fields.get("content-type")
        in_digest = parent != -1 and self.nodes[parent].subtype == "digest"
        in_digest = in_digest and self.nodes[parent].kind == MULTIPART
        if raw_type is None:
            if in_digest:
                node.type, node.subtype, node.params = "message", "rfc822", []
            else:
                node.params = list(_DEFAULT_TEXT)
        else:
            main, params, problems = parse_parameters(raw_type)
            for name in problems:
                self.defect(name)
            if _TOKEN_RE.match(main):
                text = main.decode("ascii")
                node.type, _, node.subtype = text.partition("/")
                node.params = params
                if node.type == "text" and node.param(b"charset") is None:
                    # RFC 2046 §4.1.2: the default charset of text/* is US-ASCII; say so, as
                    # Dovecot does, so a client need not know the default.
                    node.params.append((b"charset", b"us-ascii"))
            else:
                self.defect("invalid-content-type")
                node.params = list(_DEFAULT_TEXT)
        raw_enc = fields.get("content-transfer-encoding")
        if raw_enc is not None:
            main, _, _ = parse_parameters(raw_enc)
            node.encoding = main.decode("ascii", "replace") or "7bit"
        if node.type == "multipart":
            node.kind = MULTIPART
        elif node.type == "message" and node.subtype in ("rfc822", "global"):
            node.kind = MESSAGE
            if node.encoding not in _IDENTITY:
                self.defect("encoded-message-part")
                node.opaque = True
        if node.kind != LEAF and node.depth + 1 >= MAX_NESTING:
            # Too deep to look inside: an opaque application/octet-stream leaf with its
            # parameters kept, as Dovecot presents it (limits.MAX_NESTING).
            self.defect("nesting-too-deep")
            node.kind = LEAF
            node.type, node.subtype = "application", "octet-stream"
            node.opaque = True

    def assign_sections(self, node: Node, parent: int, msg_base: tuple[int, ...] | None) -> None:
        if msg_base is None:
            # A body part of the multipart ``parent``.
            mp = self.nodes[parent]
            node.section = (*mp.child_base, len(mp.children) + 1)
            mp.children.append(node.index)
            node.child_base = node.section
        else:
            # The root of a message: the whole message (parent == -1) or one encapsulated in
            # the message/rfc822 part ``parent`` whose section is ``msg_base``.
            if parent != -1:
                self.nodes[parent].children.append(node.index)
            if node.kind == MULTIPART:
                node.section = () if parent == -1 else None
                node.child_base = msg_base
            else:
                node.section = (*msg_base, 1)
                node.child_base = node.section

    def close_to(self, keep: int, end: int) -> None:
        """Close the open nodes deeper than chain position ``keep`` at offset ``end``.

        Innermost first; an outer node never ends before a node it contains (an empty header
        may reach two octets past ``end``, into the CRLF that belongs to the boundary).
        """
        chain = self.chain
        nodes = self.nodes
        running = end
        while len(chain) > keep + 1:
            node = nodes[chain.pop()]
            running = node.body_end = max(running, node.header_end)
        frames = self.frames
        while frames and nodes[frames[-1][1]].depth > keep:
            self.defect("missing-final-boundary")
            self.pop_frame()

    def run(self) -> None:
        """The main loop: read a header, decide where the body ends, repeat."""
        size = self.size
        node, event = self.start(-1, 0, ())
        pending: Node | None = node
        search = 0
        while True:
            if pending is not None:
                current = pending
                pending = None
                if event is None:
                    if current.kind == MESSAGE and not current.opaque:
                        if len(self.nodes) < MAX_PARTS:
                            assert current.section is not None
                            pending, event = self.start(
                                current.index, current.header_end, current.section
                            )
                            continue
                        self.defect("too-many-parts")
                        current.opaque = True
                    if current.kind == MULTIPART and not current.opaque:
                        boundary = current.param(b"boundary")
                        if not boundary:
                            self.defect("multipart-without-boundary")
                        elif len(boundary) > MAX_BOUNDARY:
                            self.defect("boundary-too-long")
                        else:
                            self.push_frame(boundary, current.index)
                    event = self.next_delimiter(max(current.header_end - 2, 0), size)
            else:
                event = self.next_delimiter(search, size)
            if event is None:
                self.close_to(-1, size)
                return
            at, frame, close, line_end = event
            event = None
            owner = self.nodes[self.frames[frame][1]]
            self.close_to(owner.depth, at)
            search = line_end - 2
            if close:
                self.pop_frame()
            elif len(self.nodes) >= MAX_PARTS:
                self.defect("too-many-parts")
            else:
                pending, event = self.start(owner.index, line_end, None)


def scan(buf: Buffer) -> tuple[list[Node], list[str]]:
    """Scan one message; return its nodes (root first, depth-first order) and defects."""
    scanner = _Scanner(buf)
    scanner.run()
    return scanner.nodes, scanner.defects

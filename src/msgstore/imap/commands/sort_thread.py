"""SORT, THREAD and their UID forms (RFC 5256; DISPLAYFROM/DISPLAYTO of RFC 5957; ESORT
return options of RFC 5267).

Both first run the search program (``search.matching``), then order or thread the matching
messages using only what was computed at delivery: the header index (``sort-subject`` is the
RFC 5256 §2.1 base subject, ``sort-from``/``sort-to``/``sort-cc`` the first address's mailbox,
``sent-date`` the Date header in UTC, ``message-id``/``in-reply-to``/``references``) and the
index row (internal date, size). No message file is opened unless the search program itself
needs one.

SORT keys (RFC 5256 §3): ARRIVAL is the internal date; DATE is the sent date, or the
internal date when the Date header is missing or unparsable (§2.2); FROM, TO and CC compare
the first address's local part; SUBJECT the base subject; SIZE the RFC822.SIZE;
DISPLAYFROM/DISPLAYTO the first address's display name, or its addr-spec when it has none.
Strings compare after lower-casing (the index holds them lower-cased; an approximation of
i;unicode-casemap). REVERSE applies to the key after it; messages equal on every key keep
their mailbox order (§3: "the order in which they appear in the mailbox").

THREAD=ORDEREDSUBJECT groups by base subject, orders each group by sent date, and makes the
first message the parent of the rest; threads are ordered by their first message's date.
THREAD=REFERENCES is the algorithm of RFC 5256 §4 (JWZ's): containers by Message-ID linked
along References (or the first In-Reply-To id), loops refused, empty containers pruned,
roots merged by base subject, and siblings ordered by sent date. Every traversal uses an
explicit stack: a crafted mailbox cannot make it recurse. Ties on dates go by sequence number.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from msgstore.imap.commands.search import matching
from msgstore.imap.selected import ranges_of
from msgstore.imap.syntax.args import (
    Command,
    SearchReturn,
    SortArgs,
    SortCriterion,
    SortKey,
    ThreadAlgorithm,
    ThreadArgs,
)
from msgstore.imap.syntax.responses import ESearchData, Status, StatusResponse
from msgstore.mime.address import is_group_marker, parse_address_list
from msgstore.storage.base import MessageMeta

if TYPE_CHECKING:
    from msgstore.imap.session import Session

_MSGID_RE: Final = re.compile(r"<[^<>\s]+>")
#: A subject that base-subject extraction shortens by a reply/forward marker (RFC 5256 §2.1
#: subj-refwd, "(fwd)" trailer, "[fwd: ...]" wrapper): REFERENCES step 5 needs to know.
_REPLY_RE: Final = re.compile(
    r"^\s*(?:\[[^\[\]]*\]\s*)*(?:re|fwd?)\s*(?:\[[^\[\]]*\]\s*)?:|\(fwd\)\s*$|^\s*\[fwd:",
    re.IGNORECASE,
)
#: References followed per message; a longer header keeps its last ids (the nearest parents).
MAX_REFERENCES: Final = 500


@dataclass(slots=True)
class _Msg:
    """What SORT and THREAD need of one message, taken from its metadata."""

    seq: int
    uid: int
    modseq: int
    arrival: str
    date: str
    size: int
    headers: dict[str, str]

    def number(self, uid: bool) -> int:
        return self.uid if uid else self.seq


def _iso(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).replace(tzinfo=None).isoformat(timespec="seconds") + "Z"


_WANTED_HEADERS: Final = (
    "sort-subject",
    "sort-from",
    "sort-to",
    "sort-cc",
    "from",
    "to",
    "subject",
    "message-id",
    "in-reply-to",
    "references",
)


def _keep(meta: MessageMeta) -> _Msg:
    headers = meta.headers or {}
    arrival = _iso(meta.internal_date)
    return _Msg(
        0,
        int(meta.uid),
        int(meta.modseq),
        arrival,
        headers.get("sent-date") or arrival,
        meta.size,
        {k: headers[k] for k in _WANTED_HEADERS if k in headers},
    )


async def _messages(s: Session, args: SortArgs | ThreadArgs) -> tuple[list[_Msg], bool]:
    hits, uses_modseq = await matching(s, args.key, _keep)
    out = []
    for seq, m in hits:
        m.seq = seq
        out.append(m)
    return out, uses_modseq


def _display(value: str) -> str:
    """RFC 5957: the first address's display name, else its addr-spec."""
    addresses, _ = parse_address_list(value.encode("utf-8"))
    for name, _adl, mailbox, host in addresses:
        if is_group_marker((name, _adl, mailbox, host)):
            continue
        if name:
            return name.decode("utf-8", "replace").strip().lower()
        spec = (mailbox or b"") + (b"@" + host if host else b"")
        return spec.decode("utf-8", "replace").lower()
    return ""


def _sort_key(m: _Msg, key: SortKey) -> str | int:
    h = m.headers
    if key is SortKey.ARRIVAL:
        return m.arrival
    if key is SortKey.DATE:
        return m.date
    if key is SortKey.SIZE:
        return m.size
    if key is SortKey.SUBJECT:
        return h.get("sort-subject", "")
    if key is SortKey.FROM:
        return h.get("sort-from", "")
    if key is SortKey.TO:
        return h.get("sort-to", "")
    if key is SortKey.CC:
        return h.get("sort-cc", "")
    if key is SortKey.DISPLAYFROM:
        return _display(h.get("from", ""))
    return _display(h.get("to", ""))


def _key_of(key: SortKey, m: _Msg) -> str | int:
    return _sort_key(m, key)


def sort_messages(msgs: list[_Msg], criteria: Iterable[SortCriterion]) -> list[_Msg]:
    """Stable passes from the last criterion to the first; mailbox order breaks ties."""
    out = sorted(msgs, key=lambda m: m.seq)
    for crit in reversed(tuple(criteria)):
        out.sort(key=functools.partial(_key_of, crit.key), reverse=crit.reverse)
    return out


def ordered_runs(numbers: Iterable[int]) -> tuple[tuple[int, int], ...]:
    """ESORT ``ALL`` (RFC 5267 §3.2): the numbers in sort order as a sequence-set. Only
    ascending consecutive runs become ranges (``3:5`` = 3,4,5); a descending step is written
    out, so a client reading ranges either way rebuilds the same order."""
    out: list[tuple[int, int]] = []
    for n in numbers:
        if out and n == out[-1][1] + 1:
            out[-1] = (out[-1][0], n)
        else:
            out.append((n, n))
    return tuple(out)


async def sort(s: Session, cmd: Command) -> StatusResponse:
    args = cmd.args
    assert isinstance(args, SortArgs)
    msgs, uses_modseq = await _messages(s, args)
    ordered = sort_messages(msgs, args.criteria)
    done = StatusResponse(Status.OK, f"{cmd.name.decode()} completed")
    top_modseq = max(m.modseq for m in ordered) if uses_modseq and ordered else None
    if args.returns is None:
        line = b"* SORT" + b"".join(b" %d" % m.number(cmd.uid) for m in ordered)
        if top_modseq is not None:
            line += b" (MODSEQ %d)" % top_modseq
        s.out.write(line + b"\r\n")
        return done
    # ESORT (RFC 5267 §3.2): MIN/MAX are the first/last message in sort order, ALL keeps
    # the order; an empty RETURN () means ALL, as for ESEARCH (RFC 4731 §3.1).
    wanted = args.returns or frozenset({SearchReturn.ALL})
    if SearchReturn.SAVE in wanted:
        s.saved_search = ranges_of(m.uid for m in ordered)
        if wanted == {SearchReturn.SAVE}:
            return done
    numbers = [m.number(cmd.uid) for m in ordered]
    s.out.send(
        ESearchData(
            cmd.tag,
            uid=cmd.uid,
            min=numbers[0] if numbers and SearchReturn.MIN in wanted else None,
            max=numbers[-1] if numbers and SearchReturn.MAX in wanted else None,
            all=ordered_runs(numbers) if numbers and SearchReturn.ALL in wanted else None,
            count=len(numbers) if SearchReturn.COUNT in wanted else None,
            modseq=top_modseq,
        )
    )
    return done


# --- THREAD -----------------------------------------------------------------------------------


@dataclass(eq=False, slots=True)
class _Node:
    """A thread container (RFC 5256 §4): a message, or a dummy (``msg is None``)."""

    msg: _Msg | None = None
    parent: _Node | None = None
    children: list[_Node] = field(default_factory=list)

    def add(self, child: _Node) -> None:
        if child.parent is not None:
            child.parent.children.remove(child)
        child.parent = self
        self.children.append(child)

    def is_ancestor_of(self, other: _Node) -> bool:
        node: _Node | None = other
        while node is not None:
            if node is self:
                return True
            node = node.parent
        return False

    def first(self) -> _Msg | None:
        """The node's message, or for a dummy its first child's (after sorting)."""
        node = self
        while node.msg is None and node.children:
            node = node.children[0]
        return node.msg


def _date_key(node: _Node) -> tuple[str, int]:
    m = node.first()
    return (m.date, m.seq) if m is not None else ("", 0)


def _ids(text: str) -> list[str]:
    return _MSGID_RE.findall(text)


def _ordered_subject(msgs: list[_Msg]) -> list[_Node]:
    groups: dict[str, list[_Msg]] = {}
    for m in sorted(msgs, key=lambda m: (m.headers.get("sort-subject", ""), m.date, m.seq)):
        groups.setdefault(m.headers.get("sort-subject", ""), []).append(m)
    roots = []
    for members in groups.values():
        root = _Node(members[0])
        for m in members[1:]:
            root.add(_Node(m))
        roots.append(root)
    roots.sort(key=_date_key)
    return roots


def _link_references(msgs: list[_Msg]) -> dict[str, _Node]:
    """Steps 1 (A-C): one container per Message-ID, linked along the references."""
    table: dict[str, _Node] = {}
    for m in sorted(msgs, key=lambda m: m.seq):
        ids = _ids(m.headers.get("message-id", ""))
        own_id = ids[0] if ids else ""
        node = table.get(own_id) if own_id else None
        if node is None or node.msg is not None:
            node = _Node(m)
            # A missing or duplicate Message-ID gets a unique one (step 1.A).
            table[own_id if own_id and own_id not in table else f"\0{m.seq}"] = node
        else:
            node.msg = m
        refs = _ids(m.headers.get("references", ""))
        if not refs:
            refs = _ids(m.headers.get("in-reply-to", ""))[:1]
        refs = refs[-MAX_REFERENCES:]
        prev: _Node | None = None
        for ref in refs:
            container = table.get(ref)
            if container is None:
                container = table[ref] = _Node()
            if (
                prev is not None
                and container.parent is None
                and container is not prev
                and not container.is_ancestor_of(prev)
            ):
                prev.add(container)
            prev = container
        # Step 1.C: the last reference is the parent, replacing any earlier guess.
        if prev is not None and prev is not node and not node.is_ancestor_of(prev):
            prev.add(node)
        elif prev is None and node.parent is not None:
            node.parent.children.remove(node)
            node.parent = None
    return table


def _prune(roots: list[_Node]) -> list[_Node]:
    """Step 3: drop empty dummies, promote the children of dummies (not at the root when
    that would put several children there)."""
    out: list[_Node] = []
    # Work list of (container, parent-or-None); children are re-examined after promotion.
    stack: list[tuple[_Node, _Node | None]] = [(r, None) for r in reversed(roots)]
    while stack:
        node, parent = stack.pop()
        if node.msg is None and not node.children:
            if parent is not None:
                parent.children.remove(node)
            continue
        if node.msg is None and (parent is not None or len(node.children) == 1):
            kids = list(node.children)
            if parent is not None:
                i = parent.children.index(node)
                parent.children[i : i + 1] = kids
                for k in kids:
                    k.parent = parent
            else:
                for k in kids:
                    k.parent = None
            node.children = []
            stack.extend((k, parent) for k in reversed(kids))
            continue
        if parent is None:
            out.append(node)
        stack.extend((k, node) for k in reversed(list(node.children)))
    return out


def _sort_siblings(roots: list[_Node]) -> list[_Node]:
    """Step 6: siblings by sent date, deepest first (a dummy sorts by its first child)."""
    order: list[_Node] = []
    stack = list(roots)
    while stack:
        node = stack.pop()
        order.append(node)
        stack.extend(node.children)
    for node in reversed(order):
        node.children.sort(key=_date_key)
    return sorted(roots, key=_date_key)


def _is_reply(m: _Msg | None) -> bool:
    return m is not None and _REPLY_RE.search(m.headers.get("subject", "")) is not None


def _merge_subjects(roots: list[_Node]) -> list[_Node]:
    """Step 5: roots with the same base subject become one thread."""
    table: dict[str, _Node] = {}
    for node in roots:
        first = node.first()
        subject = first.headers.get("sort-subject", "") if first is not None else ""
        if not subject:
            continue
        old = table.get(subject)
        if (
            old is None
            or (node.msg is None and old.msg is not None)
            or (_is_reply(old.msg) and not _is_reply(node.msg) and node.msg is not None)
        ):
            table[subject] = node
    out: list[_Node] = []
    for node in roots:
        if node.parent is not None:
            continue  # merged below an earlier root already
        first = node.first()
        subject = first.headers.get("sort-subject", "") if first is not None else ""
        holder = table.get(subject) if subject else None
        if holder is None or holder is node:
            out.append(node)
            continue
        if holder.msg is None and node.msg is None:
            for kid in list(node.children):
                holder.add(kid)
        elif holder.msg is None or (not _is_reply(holder.msg) and _is_reply(node.msg)):
            holder.add(node)
        elif _is_reply(holder.msg) and not _is_reply(node.msg):
            # Misordered: the holder becomes a child of this one, which takes its place.
            index = out.index(holder) if holder in out else -1
            node.add(holder)
            table[subject] = node
            if index >= 0:
                out[index] = node
            else:
                out.append(node)
        else:
            dummy = _Node()
            index = out.index(holder) if holder in out else -1
            dummy.add(holder)
            dummy.add(node)
            table[subject] = dummy
            if index >= 0:
                out[index] = dummy
            else:
                out.append(dummy)
    return out


def _references(msgs: list[_Msg]) -> list[_Node]:
    table = _link_references(msgs)
    roots = [n for n in table.values() if n.parent is None]
    roots = _prune(roots)
    roots = _sort_siblings(roots)
    roots = _merge_subjects(roots)
    return _sort_siblings(roots)


def format_threads(roots: Iterable[_Node], uid: bool) -> bytes:
    """The thread-list grammar of RFC 5256 §5: a chain of single children is written inline
    (``(1 2 3)``), several children as nested lists (``(1 (2)(3))``), a dummy parent as
    nothing (``((2)(3))``). The stack holds octets to write and containers to expand."""
    out = bytearray()
    for root in roots:
        out += b"("
        stack: list[bytes | _Node] = [b")", root]
        while stack:
            item = stack.pop()
            if isinstance(item, bytes):
                out += item
                continue
            node = item
            parts: list[bytes] = []
            while True:
                if node.msg is not None:
                    parts.append(b"%d" % node.msg.number(uid))
                if len(node.children) != 1:
                    break
                node = node.children[0]
            out += b" ".join(parts)
            if node.children:
                if parts:
                    out += b" "
                for kid in reversed(node.children):
                    stack += [b")", kid, b"("]
    return bytes(out)


async def thread(s: Session, cmd: Command) -> StatusResponse:
    args = cmd.args
    assert isinstance(args, ThreadArgs)
    msgs, _ = await _messages(s, args)
    if args.algorithm is ThreadAlgorithm.ORDEREDSUBJECT:
        roots = _ordered_subject(msgs)
    else:
        roots = _references(msgs)
    body = format_threads(roots, cmd.uid)
    s.out.write(b"* THREAD" + (b" " + body if body else b"") + b"\r\n")
    return StatusResponse(Status.OK, f"{cmd.name.decode()} completed")

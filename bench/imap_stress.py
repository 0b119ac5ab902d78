"""imaptest-style checkpoint stress for any IMAP server (RELIABILITY.md §7 case 41).

    python -m bench.imap_stress                         # a fresh msgstore serve --workers 2
    python -m bench.imap_stress --duration 300 --clients 50 --workers 3
    python -m bench.imap_stress --host H --port P --user U --password W   # any server (Dovecot)

N clients log in to one account and SELECT its INBOX, then each runs random commands --
FETCH, UID FETCH, STORE, UID STORE, SEARCH, COPY, MOVE, EXPUNGE, UID EXPUNGE, APPEND, IDLE,
NOOP, re-SELECT and a round trip through a second mailbox -- for a bounded time. Every client
keeps a model of its session (sequence number -> UID, flags, \\Recent, MODSEQ) built only from
the server's responses, and checks each response against it as it arrives:

* EXISTS never shrinks; EXPUNGE numbers are in range; no EXPUNGE or VANISHED while a FETCH,
  STORE or SEARCH by sequence number runs (RFC 9051 §7.5.1), nor EXPUNGE once QRESYNC is on;
* a FETCH never names a number past EXISTS nor a different UID than the session knows there;
* SEARCH results are within 1..EXISTS; MODSEQ of a message never goes down.

Every ``--checkpoint`` seconds all clients stop after their current command, each sends NOOP
and then ``FETCH 1:* (UID FLAGS)`` (which must agree with what its model learnt from untagged
updates), and the sessions are compared: the same count, the same UID at each sequence number,
the same flags and keywords; ``\\Recent`` in at most one session for each message (and, with
``--strict-recent``, in exactly one for messages that arrived while every session had the
mailbox selected, as RFC 3501 asks); HIGHESTMODSEQ from STATUS never goes down and is at least
every MODSEQ a session saw. A QRESYNC client then reconnects (EXAMINE with QRESYNC from the
previous checkpoint's state) and must arrive at the same UIDs and flags from VANISHED (EARLIER)
and the FETCH responses it got. Exit status 1 when any check failed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import re
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, TypeAlias

Token: TypeAlias = bytes | list["Token"]

FLAGS: Final = (b"\\Seen", b"\\Flagged", b"\\Answered", b"\\Draft", b"$Stress1", b"$Stress2")
#: Commands during which the server must not send EXPUNGE/VANISHED (RFC 9051 §7.5.1).
NO_EXPUNGE_DURING: Final = frozenset({b"FETCH", b"STORE", b"SEARCH"})
LITERAL_AT_END: Final = re.compile(rb"\{(\d+)\+?\}\r\n$")
READ_LIMIT: Final = 4 * 1024 * 1024
COMMAND_TIMEOUT_S: Final = 60.0


class ProtocolError(Exception):
    """The server answered something the harness cannot go on from."""


# --- responses --------------------------------------------------------------------------------


def tokenize(data: bytes) -> list[Token]:
    """IMAP response tokens: atoms (``BODY[...]`` kept whole), strings, literals, lists."""
    out, _ = _tokens(data, 0, top=True)
    return out


def _tokens(data: bytes, pos: int, *, top: bool) -> tuple[list[Token], int]:
    out: list[Token] = []
    n = len(data)
    while pos < n:
        c = data[pos]
        if c == 0x20:
            pos += 1
        elif c == 0x28:  # (
            inner, pos = _tokens(data, pos + 1, top=False)
            out.append(inner)
        elif c == 0x29:  # )
            if top:
                raise ProtocolError(f"unbalanced ) in {data[:200]!r}")
            return out, pos + 1
        elif c == 0x22:  # "
            buf = bytearray()
            pos += 1
            while pos < n and data[pos] != 0x22:
                if data[pos] == 0x5C:
                    pos += 1
                buf.append(data[pos])
                pos += 1
            out.append(bytes(buf))
            pos += 1
        elif c == 0x7B:  # {
            end = data.index(b"}", pos)
            size = int(data[pos + 1 : end].rstrip(b"+"))
            start = end + 3  # "}\r\n"
            out.append(data[start : start + size])
            pos = start + size
        else:
            start = pos
            depth = 0
            while pos < n:
                ch = data[pos]
                if ch == 0x5B:
                    depth += 1
                elif ch == 0x5D:
                    depth -= 1
                elif depth == 0 and ch in (0x20, 0x28, 0x29):
                    break
                pos += 1
            out.append(data[start:pos])
    if not top:
        raise ProtocolError(f"unterminated list in {data[:200]!r}")
    return out, pos


def parse_uid_set(text: bytes) -> list[int]:
    uids: list[int] = []
    for part in text.split(b","):
        lo, _, hi = part.partition(b":")
        a, b = int(lo), int(hi or lo)
        uids.extend(range(min(a, b), max(a, b) + 1))
    return uids


def uid_set(uids: Sequence[int]) -> str:
    """``1:3,7`` from UIDs."""
    runs: list[list[int]] = []
    for u in sorted(set(uids)):
        if runs and u == runs[-1][1] + 1:
            runs[-1][1] = u
        else:
            runs.append([u, u])
    return ",".join(str(a) if a == b else f"{a}:{b}" for a, b in runs)


@dataclass(slots=True)
class Msg:
    """What a session knows about one message."""

    uid: int | None = None
    flags: frozenset[bytes] | None = None  # without \Recent
    recent: bool = False


@dataclass(slots=True)
class Reply:
    status: bytes
    text: bytes
    untagged: list[bytes]


# --- one connection ---------------------------------------------------------------------------


@dataclass
class Target:
    host: str
    port: int
    user: str
    password: str
    tls: bool = False
    mailbox: str = "INBOX"
    other: str = "stress-other"


class Session:
    """One IMAP connection with its model of the selected mailbox (module docstring)."""

    def __init__(self, target: Target, name: str, errors: list[str]) -> None:
        self.target = target
        self.name = name
        self.errors = errors
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.tag_n = 0
        self.caps: set[bytes] = set()
        self.condstore = False
        self.qresync = False
        self.model: list[Msg] = []
        self.selected: str | None = None
        self.readonly = False
        self.uidvalidity = 0
        self.uidnext = 0
        self.select_uidnext = 0  # UIDNEXT when the current selection began
        self.highestmodseq = 0
        self.select_modseqs: dict[str, int] = {}
        self.modseq_of: dict[int, int] = {}
        self.max_modseq = 0
        self.running: bytes = b""  # name of the command in progress ("UID FETCH" -> b"UID")
        self.verify_flags = False
        self.vanished_earlier: list[int] = []
        self.fetched: dict[int, Msg] = {}  # uid -> Msg from FETCH responses of this command
        self.search: list[int] | None = None
        self.status: dict[bytes, int] = {}
        self.ops = 0
        self.lost_track = False
        self.resyncs = 0

    def error(self, text: str) -> None:
        self.errors.append(f"{self.name}: {text}")

    # wire ----------------------------------------------------------------------------------------

    async def connect(self) -> None:
        context: ssl.SSLContext | None = None
        if self.target.tls:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        self.reader, self.writer = await asyncio.open_connection(
            self.target.host, self.target.port, ssl=context, limit=READ_LIMIT
        )
        greeting = await self._read()
        if not greeting.startswith(b"* OK"):
            raise ProtocolError(f"greeting: {greeting[:200]!r}")
        reply = await self.command(
            f"LOGIN {_quote(self.target.user)} {_quote(self.target.password)}"
        )
        if reply.status != b"OK":
            raise ProtocolError(f"LOGIN: {reply.text!r}")
        if not self.caps:
            await self.command("CAPABILITY")

    @property
    def sock(self) -> socket.socket | None:
        if self.writer is None:
            return None
        sock = self.writer.get_extra_info("socket")
        return sock if isinstance(sock, socket.socket) else None

    async def close(self) -> None:
        if self.writer is None:
            return
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.command("LOGOUT"), 10)
        self.writer.close()
        with contextlib.suppress(Exception):
            await self.writer.wait_closed()
        self.writer = None

    async def _read(self) -> bytes:
        assert self.reader is not None
        line = await self.reader.readuntil(b"\r\n")
        out = bytearray(line)
        while (m := LITERAL_AT_END.search(out)) is not None:
            out += await self.reader.readexactly(int(m.group(1)))
            out += await self.reader.readuntil(b"\r\n")
        return bytes(out[:-2])

    def _send(self, data: bytes) -> None:
        assert self.writer is not None
        self.writer.write(data)

    def _tag(self) -> bytes:
        self.tag_n += 1
        return b"S%d" % self.tag_n

    async def command(
        self, text: str, *, literal: bytes | None = None, idle_for: float | None = None
    ) -> Reply:
        """Send one command, handle every untagged response, return the tagged status."""
        async with asyncio.timeout(COMMAND_TIMEOUT_S):
            return await self._command(text, literal, idle_for)

    async def _command(self, text: str, literal: bytes | None, idle_for: float | None) -> Reply:
        tag = self._tag()
        words = text.split(" ", 2)
        name = words[0].upper().encode()
        self.running = name + (b" " + words[1].upper().encode() if name == b"UID" else b"")
        self.fetched = {}
        self.search = None
        untagged: list[bytes] = []
        if literal is not None:
            self._send(tag + b" " + text.encode() + b" {%d}\r\n" % len(literal))
            while True:
                line = await self._read()
                if line.startswith(b"+"):
                    break
                if line.startswith(tag + b" "):
                    return self._tagged(line, untagged)
                self._untagged(line)
                untagged.append(line)
            self._send(literal + b"\r\n")
        else:
            self._send(tag + b" " + text.encode() + b"\r\n")
        if idle_for is not None:
            line = await self._read()
            if not line.startswith(b"+"):
                return self._tagged(line, untagged)
            end = time.monotonic() + idle_for
            while (left := end - time.monotonic()) > 0:
                try:
                    line = await asyncio.wait_for(self._read(), left)
                except TimeoutError:
                    break
                self._untagged(line)
                untagged.append(line)
            self._send(b"DONE\r\n")
        while True:
            line = await self._read()
            if line.startswith(tag + b" "):
                return self._tagged(line, untagged)
            if line.startswith(b"+"):
                raise ProtocolError(f"unexpected continuation after {text[:60]!r}")
            self._untagged(line)
            untagged.append(line)

    def _tagged(self, line: bytes, untagged: list[bytes]) -> Reply:
        _, status, rest = [*line.split(b" ", 2), b"", b""][:3]
        self._codes(rest)
        self.running = b""
        self.verify_flags = False
        return Reply(status.upper(), rest, untagged)

    # the model ---------------------------------------------------------------------------------

    def _codes(self, text: bytes) -> None:
        if not text.startswith(b"["):
            return
        code = text[1 : text.find(b"]")].split(b" ", 1)
        key = code[0].upper()
        arg = code[1] if len(code) > 1 else b""
        if key == b"CAPABILITY":
            self.caps = {c.upper() for c in arg.split()}
        elif key == b"UIDVALIDITY":
            self.uidvalidity = int(arg)
        elif key == b"UIDNEXT":
            self.uidnext = int(arg)
        elif key == b"HIGHESTMODSEQ":
            self.highestmodseq = int(arg)

    def _untagged(self, line: bytes) -> None:
        if not line.startswith(b"* "):
            self.error(f"not a response: {line[:120]!r}")
            return
        body = line[2:]
        head, _, rest = body.partition(b" ")
        if self.lost_track:
            return  # numbers are unknown until the session selects again (_vanished)
        if head.isdigit():
            n = int(head)
            kind, _, rest = rest.partition(b" ")
            kind = kind.upper()
            if kind == b"EXISTS":
                if n < len(self.model):
                    self.error(f"EXISTS went from {len(self.model)} down to {n}")
                    del self.model[n:]
                self.model.extend(Msg() for _ in range(n - len(self.model)))
            elif kind == b"EXPUNGE":
                self._expunge(n)
            elif kind == b"FETCH":
                self._fetch(n, rest)
            return
        key = head.upper()
        if key == b"OK" or key == b"NO" or key == b"BAD":
            self._codes(rest)
            if key == b"BAD":
                self.error(f"untagged BAD: {line[:160]!r}")
        elif key == b"CAPABILITY":
            self.caps = {c.upper() for c in rest.split()}
        elif key == b"VANISHED":
            self._vanished(rest)
        elif key == b"SEARCH":
            nums = [int(x) for x in rest.split() if x.isdigit()]
            self.search = nums
            if self.running == b"SEARCH":
                for x in nums:
                    if not 1 <= x <= len(self.model):
                        self.error(f"SEARCH returned {x} with EXISTS {len(self.model)}")
        elif key == b"STATUS":
            toks = tokenize(rest)
            if len(toks) >= 2 and isinstance(toks[1], list):
                items = toks[1]
                for i in range(0, len(items) - 1, 2):
                    k, v = items[i], items[i + 1]
                    if isinstance(k, bytes) and isinstance(v, bytes) and v.isdigit():
                        self.status[k.upper()] = int(v)
        elif key == b"BYE" and self.running != b"LOGOUT":
            self.error(f"unexpected BYE: {line[:160]!r}")

    def _expunge(self, n: int) -> None:
        if self.running in NO_EXPUNGE_DURING:
            self.error(f"EXPUNGE {n} during {self.running.decode()}")
        if self.qresync:
            self.error("EXPUNGE after QRESYNC was enabled")
        if not 1 <= n <= len(self.model):
            self.error(f"EXPUNGE {n} with EXISTS {len(self.model)}")
            return
        del self.model[n - 1]

    def _vanished(self, rest: bytes) -> None:
        earlier = rest.upper().startswith(b"(EARLIER)")
        uids = parse_uid_set(rest.split()[-1])
        if earlier:
            self.vanished_earlier.extend(uids)
            return
        if self.running in NO_EXPUNGE_DURING:
            self.error(f"VANISHED during {self.running.decode()}")
        gone = set(uids)
        kept = [m for m in self.model if m.uid not in gone]
        if len(self.model) - len(kept) < len(gone) and any(m.uid is None for m in kept):
            # Some of these UIDs may be messages whose UID the session has not fetched yet
            # (right after SELECT, or EXISTS): it cannot tell which numbers went, and must
            # select again, as a real client would.
            self.lost_track = True
        self.model = kept

    def _fetch(self, n: int, rest: bytes) -> None:
        toks = tokenize(rest)
        if not toks or not isinstance(toks[0], list):
            self.error(f"malformed FETCH: {rest[:160]!r}")
            return
        items = toks[0]
        data: dict[bytes, Token] = {}
        for i in range(0, len(items) - 1, 2):
            k = items[i]
            if isinstance(k, bytes):
                data[k.upper()] = items[i + 1]
        if not 1 <= n <= len(self.model):
            self.error(f"FETCH for {n} with EXISTS {len(self.model)}")
            return
        msg = self.model[n - 1]
        uid_tok = data.get(b"UID")
        if isinstance(uid_tok, bytes):
            uid = int(uid_tok)
            if msg.uid is not None and msg.uid != uid:
                self.error(f"FETCH {n} says UID {uid}, the session knows UID {msg.uid} there")
            msg.uid = uid
        flags_tok = data.get(b"FLAGS")
        if isinstance(flags_tok, list):
            names = [f for f in flags_tok if isinstance(f, bytes)]
            flags = frozenset(_flag(f) for f in names if f.upper() != b"\\RECENT")
            if self.verify_flags and msg.flags is not None and msg.flags != flags:
                self.error(
                    f"UID {msg.uid}: flags {_show(flags)}, but untagged updates said "
                    f"{_show(msg.flags)}"
                )
            msg.flags = flags
            msg.recent = any(f.upper() == b"\\RECENT" for f in names)
        modseq_tok = data.get(b"MODSEQ")
        if isinstance(modseq_tok, list) and modseq_tok and isinstance(modseq_tok[0], bytes):
            modseq = int(modseq_tok[0])
            if msg.uid is not None:
                before = self.modseq_of.get(msg.uid, 0)
                if modseq < before:
                    self.error(f"UID {msg.uid}: MODSEQ went from {before} down to {modseq}")
                self.modseq_of[msg.uid] = modseq
            if self.selected == self.target.mailbox:
                self.max_modseq = max(self.max_modseq, modseq)
        if msg.uid is not None:
            self.fetched[msg.uid] = msg

    # commands ----------------------------------------------------------------------------------

    async def enable(self) -> None:
        if b"QRESYNC" in self.caps:
            await self.command("ENABLE QRESYNC")
            self.condstore = self.qresync = True
        elif b"CONDSTORE" in self.caps:
            await self.command("ENABLE CONDSTORE")
            self.condstore = True

    async def select(
        self, mailbox: str, *, examine: bool = False, extra: str = "", learn: bool = True
    ) -> Reply:
        self.model = []
        self.modseq_of = {}
        self.selected = None
        self.lost_track = False
        self.highestmodseq = 0
        verb = "EXAMINE" if examine else "SELECT"
        reply = await self.command(f"{verb} {_quote(mailbox)}{extra}")
        if reply.status != b"OK":
            raise ProtocolError(f"{verb} {mailbox}: {reply.text!r}")
        self.selected = mailbox
        self.readonly = examine
        self.select_uidnext = self.uidnext
        if self.condstore and self.highestmodseq:
            before = self.select_modseqs.get(mailbox, 0)
            if self.highestmodseq < before:
                self.error(f"{mailbox}: HIGHESTMODSEQ went from {before} to {self.highestmodseq}")
            self.select_modseqs[mailbox] = self.highestmodseq
        if learn:
            await self.learn_uids()
        return reply

    async def learn_uids(self) -> None:
        """FETCH UID and FLAGS of the messages the session has not seen yet."""
        if self.lost_track and self.selected is not None:
            self.lost_track = False
            self.resyncs += 1
            await self.select(self.selected, examine=self.readonly)
            return
        unknown = [i for i, m in enumerate(self.model) if m.uid is None or m.flags is None]
        if unknown:
            items = "UID FLAGS MODSEQ" if self.condstore else "UID FLAGS"
            await self.command(f"FETCH {unknown[0] + 1}:* ({items})")

    def seq_range(self, rng: random.Random) -> str | None:
        n = len(self.model)
        if n == 0:
            return None
        a = rng.randint(1, n)
        b = min(n, a + rng.randint(0, 5))
        return f"{a}:{b}" if rng.random() < 0.9 else f"{a}:*"

    def known_uids(self) -> list[int]:
        return [m.uid for m in self.model if m.uid is not None]


def _flag(f: bytes) -> bytes:
    return b"\\" + f[1:].capitalize() if f.startswith(b"\\") else f


def _show(flags: frozenset[bytes]) -> str:
    return "(" + " ".join(sorted(f.decode() for f in flags)) + ")"


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def make_message(i: int) -> bytes:
    return (
        f"From: stress@example.org\r\nTo: stress@example.org\r\nSubject: stress {i}\r\n"
        f"Message-ID: <{i}.{time.time_ns()}@stress.example.org>\r\n\r\nbody {i}\r\n"
    ).encode()


# --- the run ----------------------------------------------------------------------------------


@dataclass
class Report:
    ops: int = 0
    resyncs: int = 0
    checkpoints: int = 0
    messages: int = 0
    errors: list[str] = field(default_factory=list)
    elapsed: float = 0.0


class Stress:
    """Clients, checkpoints and the checks between them (module docstring)."""

    def __init__(
        self,
        target: Target,
        *,
        clients: int = 20,
        duration: float = 20.0,
        checkpoint: float = 3.0,
        seed: int = 0,
        target_count: int = 40,
        strict_recent: bool = False,
    ) -> None:
        self.target = target
        self.clients = clients
        self.duration = duration
        self.checkpoint_every = checkpoint
        self.rng = random.Random(seed)
        self.target_count = target_count
        self.strict_recent = strict_recent
        self.report = Report()
        self.sessions: list[Session] = []
        self._pause = False
        self._parked = 0
        self._exited = 0
        self._resume = asyncio.Event()
        self._all_parked = asyncio.Event()
        self._stop = False
        self._status_modseq = 0
        self._qresync_state: tuple[int, int, dict[int, frozenset[bytes]]] | None = None
        self._appended = 0

    @property
    def errors(self) -> list[str]:
        return self.report.errors

    async def run(self) -> Report:
        start = time.monotonic()
        setup = Session(self.target, "setup", self.errors)
        await setup.connect()
        reply = await setup.command(f"CREATE {_quote(self.target.other)}")
        if reply.status != b"OK" and b"ALREADYEXISTS" not in reply.text.upper():
            raise ProtocolError(f"CREATE {self.target.other}: {reply.text!r}")
        await setup.select(self.target.mailbox)
        while len(setup.model) < self.target_count // 2:
            await self._append(setup)
        await setup.close()
        for i in range(self.clients):
            s = Session(self.target, f"client{i + 1}", self.errors)
            await s.connect()
            if i % 3 == 0:
                await s.enable()
            elif i % 3 == 1 and b"CONDSTORE" in s.caps:
                await s.command("ENABLE CONDSTORE")
                s.condstore = True
            await s.select(self.target.mailbox)
            self.sessions.append(s)
        try:
            tasks = [
                asyncio.create_task(self._client(s, random.Random(self.rng.random())))
                for s in self.sessions
            ]
            # The duration counts from when every session is up, not from the set-up's appends
            # and logins (slow on a loaded machine), so the checkpoints it promises still fit.
            end = time.monotonic() + self.duration
            while time.monotonic() < end and not self.errors:
                await asyncio.sleep(min(self.checkpoint_every, max(0.0, end - time.monotonic())))
                await self._checkpoint()
            self._stop = True
            self._resume.set()
            for result in await asyncio.gather(*tasks, return_exceptions=True):
                if isinstance(result, BaseException):
                    self.errors.append(f"client failed: {result!r}")
            if not self.errors:
                await self._compare()
                self.report.checkpoints += 1
        finally:
            for s in self.sessions:
                await s.close()
        self.report.elapsed = time.monotonic() - start
        self.report.ops = sum(s.ops for s in self.sessions)
        self.report.resyncs = sum(s.resyncs for s in self.sessions)
        return self.report

    # clients ----------------------------------------------------------------------------------

    async def _client(self, s: Session, rng: random.Random) -> None:
        try:
            while not self._stop and not self.errors:
                if self._pause:
                    self._parked += 1
                    self._check_parked()
                    await self._resume.wait()
                    continue
                await self._random_op(s, rng)
                await s.learn_uids()
                s.ops += 1
        finally:
            self._exited += 1
            self._check_parked()

    def _check_parked(self) -> None:
        if self._parked + self._exited >= len(self.sessions):
            self._all_parked.set()

    async def _random_op(self, s: Session, rng: random.Random) -> None:
        n = len(s.model)
        seqs = s.seq_range(rng)
        flag = rng.choice(FLAGS).decode()
        sign = rng.choice("+-")
        roll = rng.random()
        if n < self.target_count // 2 and roll < 0.5:
            await self._append(s)
        elif roll < 0.15 and seqs:
            items = rng.choice(
                ["UID FLAGS", "FLAGS", "UID FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)]"]
            )
            if s.condstore:
                items += " MODSEQ"
            await s.command(f"FETCH {seqs} ({items})")
        elif roll < 0.25 and s.known_uids():
            uids = rng.sample(s.known_uids(), min(3, len(s.known_uids())))
            await s.command(f"UID FETCH {uid_set(uids)} (FLAGS)")
        elif roll < 0.40 and seqs:
            await s.command(f"STORE {seqs} {sign}FLAGS ({flag})")
        elif roll < 0.48 and s.known_uids():
            uids = rng.sample(s.known_uids(), min(4, len(s.known_uids())))
            await s.command(f"UID STORE {uid_set(uids)} {sign}FLAGS ({flag})")
        elif roll < 0.55:
            key = rng.choice(["ALL", "FLAGGED", "UNSEEN", "KEYWORD $Stress1", "DELETED"])
            await s.command(f"SEARCH {key}")
        elif roll < 0.60 and seqs:
            await s.command(f"COPY {seqs} {_quote(self.target.other)}")
        elif roll < 0.64 and seqs and b"MOVE" in s.caps:
            await s.command(f"MOVE {seqs} {_quote(self.target.other)}")
        elif roll < 0.72 and n > self.target_count // 2:
            if seqs:
                await s.command(f"STORE {seqs} +FLAGS (\\Deleted)")
            if b"UIDPLUS" in s.caps and rng.random() < 0.5 and s.known_uids():
                uids = rng.sample(s.known_uids(), min(6, len(s.known_uids())))
                await s.command(f"UID EXPUNGE {uid_set(uids)}")
            else:
                await s.command("EXPUNGE")
        elif roll < 0.82:
            await self._append(s)
        elif roll < 0.88 and b"IDLE" in s.caps:
            await s.command("IDLE", idle_for=rng.uniform(0.05, 0.6))
        elif roll < 0.91:
            await s.select(self.target.mailbox)
        elif roll < 0.93:
            await self._round_trip(s, rng)
        else:
            await s.command(rng.choice(["NOOP", "CHECK"]))

    async def _append(self, s: Session) -> None:
        self._appended += 1
        flags = self.rng.choice([f.decode() for f in FLAGS if f != b"\\Draft"])
        reply = await s.command(
            f"APPEND {_quote(self.target.mailbox)} ({flags})",
            literal=make_message(self._appended),
        )
        if reply.status != b"OK":
            self.errors.append(f"{s.name}: APPEND failed: {reply.text!r}")

    async def _round_trip(self, s: Session, rng: random.Random) -> None:
        """Messages come back from the other mailbox: MOVE (or COPY) 1:k there, then clean it."""
        other = self.target.other
        await s.select(other)
        if s.model:
            k = rng.randint(1, min(3, len(s.model)))
            verb = "MOVE" if b"MOVE" in s.caps else "COPY"
            await s.command(f"{verb} 1:{k} {_quote(self.target.mailbox)}")
            if len(s.model) > 20:
                await s.command("STORE 1:* +FLAGS.SILENT (\\Deleted)")
                await s.command("EXPUNGE")
        await s.select(self.target.mailbox)

    # checkpoints ------------------------------------------------------------------------------

    async def _checkpoint(self) -> None:
        self._pause = True
        self._resume.clear()
        self._all_parked.clear()
        self._parked = 0
        self._check_parked()
        await self._all_parked.wait()
        try:
            if not self.errors:
                await self._compare()
            self.report.checkpoints += 1
        finally:
            self._pause = False
            self._parked = 0
            self._resume.set()

    async def _compare(self) -> None:
        for s in self.sessions:
            await s.command("NOOP")
            await s.learn_uids()  # a re-SELECT if VANISHED named UIDs it had not fetched
        for s in self.sessions:
            s.verify_flags = True
            items = "UID FLAGS MODSEQ" if s.condstore else "UID FLAGS"
            if s.model:
                await s.command(f"FETCH 1:* ({items})")
        first = self.sessions[0]
        uids = first.known_uids()
        flags = {m.uid: m.flags for m in first.model}
        for s in self.sessions[1:]:
            if len(s.model) != len(first.model):
                self.errors.append(
                    f"{s.name} has {len(s.model)} messages, {first.name} {len(first.model)}"
                )
                return
            if s.known_uids() != uids:
                diff = next(
                    i for i, (a, b) in enumerate(zip(s.known_uids(), uids, strict=False)) if a != b
                )
                self.errors.append(
                    f"{s.name} and {first.name} disagree on the UID of message {diff + 1}"
                )
                return
            for m in s.model:
                if m.flags != flags.get(m.uid):
                    self.errors.append(
                        f"UID {m.uid}: {s.name} has flags {_show(m.flags or frozenset())}, "
                        f"{first.name} {_show(flags.get(m.uid) or frozenset())}"
                    )
        self._check_recent()
        await self._check_status(uids)
        await self._check_qresync(uids, {u: f for u, f in flags.items() if u and f is not None})
        self.report.messages = len(uids)

    def _check_recent(self) -> None:
        holders: dict[int, list[str]] = {}
        for s in self.sessions:
            for m in s.model:
                if m.recent and m.uid is not None:
                    holders.setdefault(m.uid, []).append(s.name)
        for uid, names in holders.items():
            if len(names) > 1:
                self.errors.append(f"UID {uid} is \\Recent in {len(names)} sessions: {names}")
        if self.strict_recent:
            floor = max(s.select_uidnext for s in self.sessions)
            for uid in self.sessions[0].known_uids():
                if uid >= floor and uid not in holders:
                    self.errors.append(f"UID {uid} arrived during the selection; \\Recent nowhere")

    async def _check_status(self, uids: list[int]) -> None:
        probe = Session(self.target, "status", self.errors)
        await probe.connect()
        try:
            items = "MESSAGES UIDNEXT" + (" HIGHESTMODSEQ" if b"CONDSTORE" in probe.caps else "")
            await probe.command(f"STATUS {_quote(self.target.mailbox)} ({items})")
        finally:
            await probe.close()
        if probe.status.get(b"MESSAGES") != len(uids):
            self.errors.append(
                f"STATUS MESSAGES {probe.status.get(b'MESSAGES')}, EXISTS {len(uids)}"
            )
        if uids and probe.status.get(b"UIDNEXT", 0) <= uids[-1]:
            self.errors.append(f"STATUS UIDNEXT {probe.status.get(b'UIDNEXT')} <= UID {uids[-1]}")
        modseq = probe.status.get(b"HIGHESTMODSEQ")
        if modseq is not None:
            if modseq < self._status_modseq:
                self.errors.append(f"HIGHESTMODSEQ went from {self._status_modseq} to {modseq}")
            seen = max(s.max_modseq for s in self.sessions)
            if modseq < seen:
                self.errors.append(f"HIGHESTMODSEQ {modseq} below a MODSEQ a session saw ({seen})")
            self._status_modseq = modseq

    async def _check_qresync(self, uids: list[int], flags: dict[int, frozenset[bytes]]) -> None:
        q = Session(self.target, "qresync", self.errors)
        await q.connect()
        try:
            if b"QRESYNC" not in q.caps:
                return
            await q.command("ENABLE QRESYNC")
            q.condstore = q.qresync = True
            state = self._qresync_state
            if state is None or state[0] == 0:
                await q.select(self.target.mailbox, examine=True)
            else:
                uidvalidity, modseq, cached = state
                known = uid_set(list(cached)) if cached else ""
                extra = f" (QRESYNC ({uidvalidity} {modseq}" + (f" {known}))" if known else "))")
                await q.select(self.target.mailbox, examine=True, extra=extra, learn=False)
                if q.uidvalidity == uidvalidity:
                    rebuilt = dict(cached)
                    for gone in q.vanished_earlier:
                        rebuilt.pop(gone, None)
                    for m in q.model:
                        if m.uid is not None:
                            rebuilt[m.uid] = m.flags or frozenset()
                    self._compare_qresync(rebuilt, uids, flags)
                await q.learn_uids()
            final = {m.uid: m.flags or frozenset() for m in q.model if m.uid is not None}
            self._qresync_state = (q.uidvalidity, q.highestmodseq, final)
        finally:
            await q.close()

    def _compare_qresync(
        self,
        rebuilt: dict[int, frozenset[bytes]],
        uids: list[int],
        flags: dict[int, frozenset[bytes]],
    ) -> None:
        """The previous checkpoint's state + VANISHED (EARLIER) + the FETCHes of the QRESYNC
        EXAMINE must equal this checkpoint's state."""
        if sorted(rebuilt) != uids:
            missing = sorted(set(uids) - set(rebuilt))[:10]
            extra = sorted(set(rebuilt) - set(uids))[:10]
            self.errors.append(
                f"QRESYNC resync: UIDs differ (missing {missing}, not expunged {extra})"
            )
            return
        for uid, f in rebuilt.items():
            if flags.get(uid) != f:
                self.errors.append(
                    f"QRESYNC resync: UID {uid} has {_show(f)}, sessions see "
                    f"{_show(flags.get(uid) or frozenset())}"
                )


# --- own server -------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def own_server(workers: int) -> tuple[subprocess.Popen[bytes], Target, Path]:
    """A fresh ``msgstore serve --workers N`` on a free port with one account."""
    root = Path(tempfile.mkdtemp(prefix="msgstore-stress-"))
    port = free_port()
    listen = "\n".join(
        f"[{s}]\nlisten = []" + ("\ntls_listen = []" if s in ("pop3",) else "")
        for s in ("pop3", "lmtp", "smtp", "poppassd", "web")
    )
    config = root / "msgstore.toml"
    config.write_text(
        f'[imap]\nlisten = "127.0.0.1:{port}"\ntls_listen = []\nmax_connections_per_user = 0\n'
        f"{listen}\n"
        f'[store]\ndata_dir = "{root / "data"}"\n'
    )
    cli = [sys.executable, "-m", "msgstore.cli", "--config", str(config)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MSGSTORE_")}
    password = "stress-Password-1"  # noqa: S105 -- a throwaway test account
    subprocess.run(
        [*cli, "account", "add", "stress", "--password-stdin"],
        input=password.encode(),
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    proc = subprocess.Popen(
        [*cli, "serve", "--workers", str(workers)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=(root / "serve.log").open("wb"),
    )
    deadline = time.monotonic() + 30
    while not (root / "data" / "run" / "msgstore.pid").exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"msgstore serve did not start; see {root / 'serve.log'}")
        time.sleep(0.05)
    return proc, Target("127.0.0.1", port, "stress", password), root


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host")
    parser.add_argument("--port", type=int, default=143)
    parser.add_argument("--user")
    parser.add_argument("--password")
    parser.add_argument("--tls", action="store_true", help="implicit TLS (certificate unchecked)")
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds")
    parser.add_argument("--checkpoint", type=float, default=3.0, help="seconds between checks")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2, help="own server only")
    parser.add_argument(
        "--strict-recent",
        action="store_true",
        help="\\Recent must be in exactly one session for messages that arrived meanwhile",
    )
    args = parser.parse_args(argv)
    proc: subprocess.Popen[bytes] | None = None
    root: Path | None = None
    if args.host is None:
        proc, target, root = own_server(args.workers)
    else:
        if args.user is None or args.password is None:
            parser.error("--host needs --user and --password")
        target = Target(args.host, args.port, args.user, args.password, tls=args.tls)
    try:
        stress = Stress(
            target,
            clients=args.clients,
            duration=args.duration,
            checkpoint=args.checkpoint,
            seed=args.seed,
            strict_recent=args.strict_recent,
        )
        report = asyncio.run(stress.run())
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=30)
        if root is not None:
            shutil.rmtree(root, ignore_errors=True)
    print(
        f"{report.ops} commands by {args.clients} clients in {report.elapsed:.1f} s "
        f"({report.ops / max(report.elapsed, 1e-9):.0f}/s), {report.checkpoints} checkpoints, "
        f"{report.messages} messages at the end, {report.resyncs} re-SELECTs after VANISHED "
        "of unfetched UIDs"
    )
    for error in report.errors[:50]:
        print("FAIL", error)
    return 1 if report.errors else 0


if __name__ == "__main__":
    sys.exit(main())

"""One LMTP or SMTP connection: greeting, the command loop, the transaction, the replies.

States (``protocol.State``): START until LHLO (LMTP) or EHLO/HELO (SMTP), READY between
transactions, MAIL once MAIL FROM was accepted. Recipients are checked at RCPT through the
delivery pipeline (``pipeline.check``: unknown 550 5.1.1, receive disabled 550 5.2.1, over
quota 552 5.2.2 / 452 4.2.2, storage down 451 4.3.0), so an MTA in front refuses bad
recipients before it accepts the message. After the data the message is staged once and
linked to every accepted recipient (``pipeline.deliver``); LMTP then answers once per accepted
RCPT, in RCPT order (RFC 2033 §4.2), duplicates included; SMTP answers once.

SMTP's single reply after DATA is 250 when every recipient got the message; otherwise the
reply of the first recipient that did not (recipients that did keep it: a retry by the sender
may duplicate it for them, which we prefer to losing it for the others).

Replies are collected and written when no further command is waiting in the input buffer
(PIPELINING, RFC 2920): a pipelined batch gets its replies in one write.

Limits (``[lmtp]``/``[smtp]``): ``max_line`` (500 5.5.2), ``max_recipients`` (452 4.5.3),
``max_errors`` syntax/sequence errors per connection (then 421 and close; the ALPACA
defence), ``max_unknown_recipients`` per connection (then 421 and close; address harvesting),
``command_timeout`` per command line and ``data_timeout`` for a message or a BDAT chunk (then
421 4.4.2 and close; nothing is stored).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import ssl
from dataclasses import dataclass, field
from typing import Final

from msgstore import __version__, metrics
from msgstore.config import LmtpSection, SmtpSection
from msgstore.core.address import parse_address, parse_reverse_path
from msgstore.core.errors import ErrorKind, StoreError
from msgstore.delivery.pipeline import Accepted, DeliveryPipeline, Outcome, Rejected, Target
from msgstore.lmtp import errors as e
from msgstore.lmtp.data import Abort, BdatSource, DataSource
from msgstore.lmtp.envelope import Envelope, Peer, return_path_octets, trace_fields
from msgstore.lmtp.protocol import (
    BodyType,
    Command,
    Protocol,
    State,
    SyntaxProblem,
    UnknownParameter,
    clean_helo,
    parse_bdat,
    parse_command,
    parse_mail,
    parse_rcpt,
)
from msgstore.net.connection import Connection, ConnectionClosedError, ServiceClosingError
from msgstore.net.linereader import TOO_LONG
from msgstore.net.logs import log_context

log = logging.getLogger(__name__)

#: Octets of replies collected before they are written even while commands are waiting.
_FLUSH_OCTETS: Final = 16 * 1024


@dataclass(frozen=True, slots=True)
class ChannelContext:
    """What every session of one LMTP or SMTP service shares."""

    protocol: Protocol
    limits: LmtpSection | SmtpSection
    pipeline: DeliveryPipeline
    hostname: str
    tls: ssl.SSLContext | None  # STARTTLS (SMTP only)


class _Close(Exception):  # noqa: N818 -- control flow
    """Write this reply, then close the connection."""

    def __init__(self, reply: bytes) -> None:
        super().__init__(reply)
        self.reply = reply


@dataclass(slots=True, eq=False)
class Session:
    ctx: ChannelContext
    conn: Connection
    state: State = State.START
    helo: str = ""
    extended: bool = False
    envelope: Envelope | None = None
    errors: int = 0
    unknown: int = 0
    finished: bool = False
    session_id: str = field(default_factory=lambda: secrets.token_urlsafe(9))
    _out: list[bytes] = field(default_factory=list)
    _out_octets: int = 0

    # --- output -------------------------------------------------------------------------------

    def send(self, line: bytes) -> None:
        self._out.append(line)
        self._out_octets += len(line)

    async def flush(self) -> None:
        if self._out:
            self.conn.write(b"".join(self._out))
            self._out.clear()
            self._out_octets = 0
        await self.conn.drain()

    # --- the loop -----------------------------------------------------------------------------

    async def run(self) -> None:
        name = self.ctx.protocol.value
        with log_context(service=name, ident=self.conn.peer_host, session=self.session_id):
            try:
                await self._loop()
            except _Close as exc:
                self.send(exc.reply)
            finally:
                if not self.conn.is_closing:
                    self.conn.write(b"".join(self._out))

    async def _loop(self) -> None:
        ctx = self.ctx
        banner = "LMTP" if ctx.protocol is Protocol.LMTP else "ESMTP"
        self.send(f"220 {ctx.hostname} {banner} msgstore {__version__} ready\r\n".encode())
        await self.flush()
        while not self.finished:
            try:
                line = await self.conn.read_line(max(ctx.limits.command_timeout, 1))
            except TimeoutError:
                log.info("disconnected for inactivity")
                raise _Close(e.TIMEOUT.line(f"{ctx.hostname} Timeout; closing")) from None
            except ServiceClosingError:
                raise _Close(e.CLOSING.line(f"{ctx.hostname} Server shutting down")) from None
            if line is TOO_LONG:
                self.fail(e.SYNTAX, f"Line too long (limit {self.conn.max_line_octets} octets)")
            else:
                assert isinstance(line, bytes)
                await self._command(line)
            if self._out_octets >= _FLUSH_OCTETS or not self.conn.pending_input():
                await self.flush()

    def fail(self, reply: e.Reply, text: str) -> None:
        """A syntax or sequence error: reply, count it, close at ``max_errors``."""
        self.errors += 1
        limit = self.ctx.limits.max_errors
        if limit and self.errors >= limit:
            self.send(reply.line(text))
            raise _Close(e.TOO_MANY_ERRORS.line("Too many errors; closing"))
        self.send(reply.line(text))

    async def _command(self, line: bytes) -> None:
        try:
            cmd = parse_command(line)
        except SyntaxProblem as exc:
            self.fail(e.SYNTAX, str(exc))
            return
        handler = _HANDLERS.get(cmd.verb)
        greeting = "LHLO" if self.ctx.protocol is Protocol.LMTP else "EHLO"
        if handler is None or (cmd.verb in ("EHLO", "HELO", "STARTTLS") and greeting == "LHLO"):
            self.fail(e.SYNTAX, "Command unrecognized")
            return
        if cmd.verb == "LHLO" and greeting != "LHLO":
            self.fail(e.SYNTAX, "Command unrecognized")
            return
        try:
            await handler(self, cmd)
        except UnknownParameter as exc:
            self.fail(e.PARAM_UNKNOWN, str(exc))
        except SyntaxProblem as exc:
            self.fail(e.BAD_ARGUMENTS, str(exc))

    def need_greeting(self) -> bool:
        if self.state is State.START:
            verb = "LHLO" if self.ctx.protocol is Protocol.LMTP else "EHLO/HELO"
            self.fail(e.BAD_SEQUENCE, f"Send {verb} first")
            return True
        return False

    def reset(self) -> None:
        self.envelope = None
        if self.state is not State.START:
            self.state = State.READY

    # --- delivery -----------------------------------------------------------------------------

    def trace(self, envelope: Envelope) -> bytes:
        peer = Peer(self.helo, self.conn.peer_host, self.extended, self.conn.tls_active)
        return trace_fields(
            envelope,
            protocol=self.ctx.protocol,
            peer=peer,
            hostname=self.ctx.hostname,
            session_id=self.session_id,
        )

    def reply_outcomes(self, replies: list[bytes], outcomes: list[Outcome]) -> None:
        """LMTP: every reply, in RCPT order. SMTP: 250, or the first failure's reply."""
        metrics.deliveries(self.ctx.protocol.value, replies)
        if self.ctx.protocol is Protocol.LMTP:
            for reply in replies:
                self.send(reply)
            return
        for reply, outcome in zip(replies, outcomes, strict=True):
            if not isinstance(outcome, Accepted):
                self.send(reply)
                return
        self.send(e.OK.line(f"Message accepted (id {self.session_id})"))

    async def deliver(self, source: DataSource | BdatSource) -> list[Outcome]:
        envelope = self.envelope
        assert envelope is not None
        trace = self.trace(envelope)
        try:
            return await self.ctx.pipeline.deliver(
                envelope.recipients,
                source,
                header_prefix=trace,
                sender="" if envelope.sender is None else str(envelope.sender),
                local_only_octets=return_path_octets(trace),
            )
        except (TimeoutError, Abort, ServiceClosingError, ConnectionClosedError, OSError):
            raise
        except Exception:
            incident = secrets.token_hex(4)
            log.error("internal error during delivery [%s]", incident, exc_info=True)
            metrics.error(self.ctx.protocol.value)
            text = f"Internal error [{incident}]"
            return [Rejected(t.recipient, ErrorKind.INTERNAL, text) for t in envelope.recipients]


# --- handlers ---------------------------------------------------------------------------------


async def hello(session: Session, cmd: Command) -> None:
    if not cmd.argument.strip():
        session.fail(e.BAD_ARGUMENTS, f"Syntax: {cmd.verb} hostname")
        return
    session.envelope = None
    session.helo = clean_helo(cmd.argument)
    session.state = State.READY
    session.extended = cmd.verb != "HELO"
    ctx = session.ctx
    if not session.extended:
        session.send(f"250 {ctx.hostname}\r\n".encode())
        return
    lines = [
        ctx.hostname,
        "PIPELINING",
        "ENHANCEDSTATUSCODES",
        "8BITMIME",
        "BINARYMIME",
        "CHUNKING",
        "SMTPUTF8",
        f"SIZE {ctx.pipeline.max_message_octets}",
    ]
    if ctx.tls is not None and not session.conn.tls_active:
        lines.append("STARTTLS")
    out = [f"250-{text}\r\n" for text in lines[:-1]] + [f"250 {lines[-1]}\r\n"]
    session.send("".join(out).encode())


async def mail(session: Session, cmd: Command) -> None:
    if session.need_greeting():
        return
    if session.state is not State.READY:
        session.fail(e.BAD_SEQUENCE, "Nested MAIL command")
        return
    args = parse_mail(cmd.argument, extended=session.extended)
    limit = session.ctx.pipeline.max_message_octets
    if args.size is not None and args.size > limit:
        session.send(e.MESSAGE_TOO_BIG.line(f"Message size exceeds the limit of {limit} octets"))
        return
    if not args.path.isascii() and not args.smtputf8:
        session.send(e.NEEDS_SMTPUTF8.line("Non-ASCII address needs SMTPUTF8"))
        return
    try:
        sender = parse_reverse_path(args.path, smtputf8=args.smtputf8)
    except StoreError as exc:
        session.fail(e.BAD_SENDER, exc.public)
        return
    session.envelope = Envelope(sender, args)
    session.state = State.MAIL
    session.send(e.SENDER_OK.line("Sender OK"))


async def rcpt(session: Session, cmd: Command) -> None:
    if session.need_greeting():
        return
    envelope = session.envelope
    if envelope is None:
        session.fail(e.BAD_SEQUENCE, "Need MAIL before RCPT")
        return
    args = parse_rcpt(cmd.argument, extended=session.extended)
    ctx = session.ctx
    if len(envelope.recipients) >= ctx.limits.max_recipients:
        session.send(e.TOO_MANY_RECIPIENTS.line("Too many recipients"))
        return
    smtputf8 = envelope.mail.smtputf8
    if not args.path.isascii() and not smtputf8:
        session.send(e.NEEDS_SMTPUTF8.line("Non-ASCII address needs SMTPUTF8"))
        return
    inner = args.path[1:-1]
    try:
        if "@" in inner.rpartition(":")[2] or inner.startswith("@"):
            address = parse_address(args.path, smtputf8=smtputf8)
            recipient = str(address)
            if (
                ctx.protocol is Protocol.SMTP
                and not ctx.pipeline.is_local_domain(address.domain)
                and not await ctx.pipeline.is_forward(recipient)
            ):
                # Relaying only for addresses of the forwarding database (docs/delivery.md).
                session.send(reply := e.NO_RELAY.line("Relaying denied"))
                metrics.rejection(ctx.protocol.value, "relay-denied", reply)
                return
        else:
            # A bare user name (<alice>, <Postmaster>): valid over LMTP and SMTP here.
            recipient = parse_address(f"{inner}@localhost", smtputf8=smtputf8).local
    except StoreError as exc:
        session.fail(e.BAD_RECIPIENT, exc.public)
        return
    checked = await ctx.pipeline.check(recipient, size_octets=envelope.mail.size)
    if isinstance(checked, Target):
        envelope.recipients.append(checked)
        session.send(e.RECIPIENT_OK.line(f"<{recipient}> OK"))
        return
    session.send(reply := e.outcome_reply(checked))
    metrics.rejection(ctx.protocol.value, checked.kind.value, reply)
    if checked.kind is ErrorKind.NOT_FOUND:
        session.unknown += 1
        limit = ctx.limits.max_unknown_recipients
        if limit and session.unknown >= limit:
            log.warning("%d unknown recipients; closing", session.unknown)
            raise _Close(e.TOO_MANY_ERRORS.line("Too many unknown recipients; closing"))


async def data(session: Session, cmd: Command) -> None:
    if session.need_greeting():
        return
    envelope = session.envelope
    if cmd.argument:
        session.fail(e.BAD_ARGUMENTS, "DATA takes no arguments")
        return
    if envelope is None:
        session.fail(e.BAD_SEQUENCE, "Need MAIL before DATA")
        return
    if not envelope.recipients:
        session.fail(e.BAD_SEQUENCE, "No valid recipients")
        return
    if envelope.mail.body is BodyType.BINARY:
        session.fail(e.BAD_SEQUENCE, "BODY=BINARYMIME needs BDAT")
        return
    session.send(b"354 Start mail input; end with <CRLF>.<CRLF>\r\n")
    await session.flush()
    loop = asyncio.get_running_loop()
    source = DataSource(session.conn, loop.time() + max(session.ctx.limits.data_timeout, 1))
    try:
        outcomes = await session.deliver(source)
        await source.drain()
    except TimeoutError:
        log.info("message data not complete within data_timeout; closing")
        raise _Close(e.TIMEOUT.line("Message data timeout; closing")) from None
    problem = source.decoder.problem
    if problem is not None:
        replies = [
            e.BARE_NEWLINE.line(f"<{t.recipient}> {problem.value}") for t in envelope.recipients
        ]
    else:
        replies = [e.outcome_reply(o) for o in outcomes]
    log.info(
        "message of %d octets: %d of %d recipients accepted",
        source.decoder.octets,
        sum(isinstance(o, Accepted) for o in outcomes),
        len(outcomes),
    )
    session.reply_outcomes(replies, outcomes)
    session.reset()


async def bdat(session: Session, cmd: Command) -> None:
    size, last = parse_bdat(cmd.argument)
    ctx = session.ctx
    timeout = max(ctx.limits.data_timeout, 1)
    envelope = session.envelope
    if session.state is State.START or envelope is None or not envelope.recipients:
        # RFC 3030 §2: the chunk is read even when it is refused.
        source = BdatSource(session.conn, size, True, timeout=timeout, next_chunk=_no_next)
        await _drop_chunk(source)
        session.fail(
            e.BAD_SEQUENCE,
            "Need MAIL before BDAT" if envelope is None else "No valid recipients",
        )
        return

    async def next_chunk() -> tuple[int, bool]:
        session.send(e.OK.line(f"{source.octets} octets received"))
        await session.flush()
        while True:
            line = await session.conn.read_line(max(ctx.limits.command_timeout, 1))
            if line is TOO_LONG:
                session.fail(e.SYNTAX, "Line too long")
                await session.flush()
                continue
            assert isinstance(line, bytes)
            try:
                command = parse_command(line)
                if command.verb == "BDAT":
                    return parse_bdat(command.argument)
            except SyntaxProblem as exc:
                session.fail(e.BAD_ARGUMENTS, str(exc))
                await session.flush()
                continue
            if command.verb in ("RSET", "QUIT"):
                raise Abort(command.verb)
            if command.verb == "NOOP":
                session.send(e.OK.line("OK"))
            else:
                session.fail(e.BAD_SEQUENCE, "Only BDAT, RSET, NOOP or QUIT during BDAT")
            await session.flush()

    source = BdatSource(session.conn, size, last, timeout=timeout, next_chunk=next_chunk)
    try:
        outcomes = await session.deliver(source)
    except TimeoutError:
        raise _Close(e.TIMEOUT.line("BDAT data timeout; closing")) from None
    except Abort as abort:
        session.reset()
        if abort.verb == "QUIT":
            await quit_(session, Command("QUIT", ""))
        else:
            session.send(e.OK.line("Reset"))
        return
    if not source.finished:
        # The pipeline stopped reading (too big, storage failure): refuse this chunk once.
        try:
            await source.drain_chunk()
        except TimeoutError:
            raise _Close(e.TIMEOUT.line("BDAT data timeout; closing")) from None
        failed = next((o for o in outcomes if not isinstance(o, Accepted)), None)
        reply = e.outcome_reply(failed) if failed else e.MESSAGE_TOO_BIG.line("Refused")
        session.send(reply)
        session.reset()
        return
    session.reply_outcomes([e.outcome_reply(o) for o in outcomes], outcomes)
    session.reset()


async def _no_next() -> tuple[int, bool]:
    return 0, True


async def _drop_chunk(source: BdatSource) -> None:
    try:
        await source.drain_chunk()
    except TimeoutError:
        raise _Close(e.TIMEOUT.line("BDAT data timeout; closing")) from None


async def rset(session: Session, cmd: Command) -> None:
    session.reset()
    session.send(e.OK.line("Reset"))


async def noop(session: Session, cmd: Command) -> None:
    session.send(e.OK.line("OK"))


async def quit_(session: Session, cmd: Command) -> None:
    session.send(f"221 2.0.0 {session.ctx.hostname} Bye\r\n".encode())
    session.finished = True


async def vrfy(session: Session, cmd: Command) -> None:
    session.send(b"252 2.5.0 Cannot VRFY; send RCPT to find out\r\n")


async def help_(session: Session, cmd: Command) -> None:
    session.send(b"214 2.0.0 See RFC 5321 and RFC 2033\r\n")


async def starttls(session: Session, cmd: Command) -> None:
    tls = session.ctx.tls
    if cmd.argument:
        session.fail(e.BAD_ARGUMENTS, "STARTTLS takes no arguments")
        return
    if session.conn.tls_active:
        session.fail(e.BAD_SEQUENCE, "TLS already active")
        return
    if tls is None:
        session.send(e.TLS_NOT_AVAILABLE.line("TLS not available"))
        return
    if session.conn.pending_input():
        # Anything pipelined behind STARTTLS would be taken as sent over TLS (CVE-2011-0411,
        # CVE-2024-34083): refuse and close (RELIABILITY.md §7 case 20).
        log.warning("plaintext received after STARTTLS before the TLS handshake; closing")
        raise _Close(e.BAD_SEQUENCE.line("Unexpected data after STARTTLS; closing"))
    session.send(b"220 2.0.0 Ready to start TLS\r\n")
    await session.flush()
    await session.conn.start_tls(tls)
    # RFC 3207 §4.2: forget everything learnt before TLS; the client greets again.
    session.state = State.START
    session.envelope = None
    session.helo = ""


_HANDLERS: Final = {
    "LHLO": hello,
    "EHLO": hello,
    "HELO": hello,
    "MAIL": mail,
    "RCPT": rcpt,
    "DATA": data,
    "BDAT": bdat,
    "RSET": rset,
    "NOOP": noop,
    "QUIT": quit_,
    "VRFY": vrfy,
    "HELP": help_,
    "STARTTLS": starttls,
}

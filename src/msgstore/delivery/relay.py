"""The outbound relay queue runner: forwarded mail for external addresses, to the smarthost.

The delivery pipeline puts a message on the queue (``Backend.enqueue``, durable before the
inbound side answers 250); :class:`RelayRunner` -- a task of ``msgstore serve`` -- sends it
with aiosmtplib to ``[relay] smarthost`` (STARTTLS and AUTH when configured) and records the
outcome in one durable step right after the smarthost's reply:

- recipients the smarthost accepted (250) leave the entry (``Backend.update_queued``); the
  entry and its file go when none is left;
- recipients refused permanently (5xx) leave it too, and the envelope sender gets a delivery
  status notification (RFC 3464) -- never for the null sender ``<>``;
- on a temporary failure (4xx, connection refused, timeout) the entry stays, with
  ``next_attempt`` pushed back: ``retry_first``, doubling per attempt, at most ``retry_max``;
- an entry older than ``max_age`` is given up: a DSN for every recipient left (Status 4.4.7).

A DSN is queued in the same durable step as the change it reports (``update_queued(...,
dsn=...)``): a crash leaves either both or neither, so it is sent exactly once.

Exactly once, as far as a mail system can: a message is never lost (queued before 250,
removed only after the smarthost's 250), and never sent twice once its acknowledgement is
committed. The one window -- a crash between the smarthost's 250 and our commit -- sends it
again after the restart (at-least-once, as in every MTA; RFC 5321 §6.1 prefers a duplicate to
a loss).

One runner per store: every ``msgstore serve`` process (every worker, on every machine of a
PostgreSQL installation) starts one, and only the one holding the store's runner lock
(``Backend.runner_lock``: flock on ``DATA/run/relay.lock`` locally, an advisory lock in
PostgreSQL) works the queue; the others try again every ``poll_interval`` and take over once
the holder's process dies. The holder checks that it still holds the lock before each pass.
Messages queued in the runner's own process wake it at once (:func:`wake_runners`); others are
seen within ``poll_interval``.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import email.utils
import logging
import secrets
import socket
import ssl
import weakref
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from msgstore.core.errors import StoreError
from msgstore.storage.base import Backend, QueueEntry, RunnerLock, StagedMessage

if TYPE_CHECKING:
    from msgstore.config import Config, RelaySection

log = logging.getLogger(__name__)

#: The runner lock's name (``Backend.runner_lock``; locally ``DATA/run/relay.lock``).
LOCK_NAME: Final = "relay"
#: Time in-flight sends get to finish when the runner stops, before they are cancelled.
STOP_GRACE_S: Final = 10.0
#: Header octets of the original message quoted in a DSN.
DSN_HEADER_OCTETS: Final = 64 * 1024

_RUNNERS: Final[weakref.WeakSet[RelayRunner]] = weakref.WeakSet()


def wake_runners() -> None:
    """Tell the queue runners of this process that a message was queued (any thread)."""
    for runner in list(_RUNNERS):
        runner.wake()


@dataclass(frozen=True, slots=True)
class Failure:
    """One recipient the smarthost did not take."""

    recipient: str
    code: int  # SMTP reply code; 0 when no reply (connection failure)
    text: str

    @property
    def permanent(self) -> bool:
        return 500 <= self.code < 600

    @property
    def status(self) -> str:
        """The RFC 3463 status: the reply's enhanced code if it has one."""
        first = self.text.split(" ", 1)[0]
        parts = first.split(".")
        if len(parts) == 3 and all(p.isdigit() for p in parts) and parts[0] in "245":
            return first
        return "5.0.0" if self.permanent else "4.0.0"

    @property
    def diagnostic(self) -> str:
        return f"{self.code} {self.text}" if self.code else self.text


def backoff(settings: RelaySection, attempts: int) -> float:
    """Seconds before attempt ``attempts + 1``: retry_first doubling, at most retry_max."""
    first = max(settings.retry_first, 1)
    return float(min(first * 2 ** max(attempts - 1, 0), max(settings.retry_max, first)))


class RelayRunner:
    """Works the relay queue of one store (see the module docstring)."""

    def __init__(
        self,
        backend: Backend,
        settings: RelaySection,
        *,
        lock_name: str | None = LOCK_NAME,
        hostname: str | None = None,
    ) -> None:
        self._backend = backend
        self._settings = settings
        self._lock_name = lock_name  # None: no lock (a runner of its own, for tests)
        self._hostname = settings.helo or hostname or socket.getfqdn() or "localhost"
        self._event = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._in_flight: set[int] = set()
        self._warned_no_smarthost = False

    # --- life cycle ---------------------------------------------------------------------------

    async def start(self) -> RelayRunner:
        self._loop = asyncio.get_running_loop()
        _RUNNERS.add(self)
        self._task = self._loop.create_task(self._main(), name="relay-queue")
        return self

    async def close(self) -> None:
        self._stopping = True
        _RUNNERS.discard(self)
        self.wake()
        task = self._task
        if task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(task), STOP_GRACE_S)
            except TimeoutError:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    def wake(self) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._event.set()
        else:
            loop.call_soon_threadsafe(self._event.set)

    async def _main(self) -> None:
        poll = float(max(self._settings.poll_interval, 1))
        while not self._stopping:
            if self._lock_name is None:
                await self._work(None, poll)
                break
            try:
                async with self._backend.runner_lock(self._lock_name) as lock:
                    if lock is not None:
                        log.info("relay: this process runs the queue")
                        await self._work(lock, poll)
                        if not self._stopping:
                            log.warning("relay: the queue lock was lost; trying to take it again")
            except StoreError as exc:
                log.error("relay: cannot take the queue lock: %s", exc.public)
            except Exception:
                log.error("relay: cannot take the queue lock", exc_info=True)
            if not self._stopping:
                # Not woken by mail queued here: the holder (another process) will see it.
                await self._sleep(poll, woken=False)

    async def _work(self, lock: RunnerLock | None, poll: float) -> None:
        """Run the queue while this process holds the lock (and is not stopping)."""
        while not self._stopping:
            if lock is not None and not await lock.held():
                return
            delay = poll
            try:
                delay = min(poll, await self.run_once())
            except StoreError as exc:
                log.error("relay: queue unavailable: %s", exc.public)
            except Exception:
                log.error("relay: queue run failed", exc_info=True)
            if self._stopping:
                return
            await self._sleep(delay)

    async def _sleep(self, delay: float, *, woken: bool = True) -> None:
        """Wait ``delay`` seconds, or less when stopping or (``woken``) when a message was
        queued in this process."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(delay, 0.05)
        while not self._stopping:
            left = deadline - loop.time()
            if left <= 0:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._event.wait(), left)
            self._event.clear()
            if woken:
                return

    # --- one pass -----------------------------------------------------------------------------

    async def run_once(self) -> float:
        """Attempt every due entry (at most ``concurrency`` at a time); returns the seconds
        until the next entry is due (``poll_interval`` if none)."""
        now = dt.datetime.now(dt.UTC)
        entries = await self._backend.list_queue()
        due = [e for e in entries if e.next_attempt <= now and e.id not in self._in_flight]
        gate = asyncio.Semaphore(max(self._settings.concurrency, 1))

        async def one(entry: QueueEntry) -> None:
            async with gate:
                if self._stopping:
                    return
                self._in_flight.add(entry.id)
                try:
                    await self.attempt(entry)
                except StoreError as exc:
                    log.error("relay: queue id %d: %s", entry.id, exc.public)
                except Exception:
                    log.error("relay: queue id %d: attempt failed", entry.id, exc_info=True)
                finally:
                    self._in_flight.discard(entry.id)

        await asyncio.gather(*(one(e) for e in due))
        later = [e.next_attempt for e in entries if e.next_attempt > now]
        if not later:
            return float(max(self._settings.poll_interval, 1))
        return max((min(later) - dt.datetime.now(dt.UTC)).total_seconds(), 0.0)

    async def attempt(self, entry: QueueEntry) -> None:
        """One delivery attempt of one entry, and its durable outcome."""
        settings = self._settings
        now = dt.datetime.now(dt.UTC)
        if (now - entry.created).total_seconds() >= settings.max_age:
            reason = entry.last_error or "no delivery attempt succeeded"
            failures = [Failure(r, 0, reason) for r in entry.recipients]
            log.warning(
                "relay: queue id %d expired after %d attempts; returned to <%s>",
                entry.id,
                entry.attempts,
                entry.sender,
            )
            # The DSN and the entry's removal are one durable step: exactly one DSN.
            async with self._dsn(entry, failures, expired=True) as dsn:
                await self._backend.update_queued(entry.id, done=entry.recipients, dsn=dsn)
            return
        if not settings.smarthost:
            if not self._warned_no_smarthost:
                log.warning("relay: messages are queued but [relay] smarthost is not set")
                self._warned_no_smarthost = True
            await self._backend.update_queued(
                entry.id,
                next_attempt=now + dt.timedelta(seconds=backoff(settings, 1)),
                last_error="no smarthost configured",
            )
            return
        data = await self._backend.read_queued(entry.id)
        accepted, failures = await self._send(entry, data)
        permanent = [f for f in failures if f.permanent]
        temporary = [f for f in failures if not f.permanent]
        attempts = entry.attempts + 1
        # The durable step right after the smarthost's reply (see the module docstring), with
        # the DSN for the permanent failures.
        async with self._dsn(entry, permanent, expired=False, data=data) as dsn:
            left = await self._backend.update_queued(
                entry.id,
                done=[*accepted, *(f.recipient for f in permanent)],
                attempts=attempts,
                next_attempt=now + dt.timedelta(seconds=backoff(settings, attempts)),
                last_error=temporary[0].diagnostic if temporary else "",
                dsn=dsn,
            )
        if accepted:
            log.info(
                "relay: queue id %d: %s accepted by %s",
                entry.id,
                ", ".join(accepted),
                settings.smarthost,
            )
        for f in temporary:
            log.info("relay: queue id %d: %s deferred: %s", entry.id, f.recipient, f.diagnostic)
        for f in permanent:
            log.warning("relay: queue id %d: %s refused: %s", entry.id, f.recipient, f.diagnostic)
        if left is None:
            log.info("relay: queue id %d done", entry.id)

    async def _send(self, entry: QueueEntry, data: bytes) -> tuple[list[str], list[Failure]]:
        """Hand the message to the smarthost: (accepted recipients, failures)."""
        import aiosmtplib  # here: 0.3 s to import, and `msgstore deliver` never sends

        settings = self._settings
        host, _, port = settings.smarthost.rpartition(":")
        host = host.strip("[]")
        client = aiosmtplib.SMTP(
            hostname=host,
            port=int(port),
            local_hostname=self._hostname,
            timeout=float(max(settings.timeout, 1)),
            start_tls=settings.starttls,
            tls_context=self._tls_context() if settings.starttls else None,
            validate_certs=settings.tls_verify,
            username=settings.auth_user or None,
            password=settings.auth_password or None,
        )
        recipients = list(entry.recipients)
        try:
            await client.connect()
            try:
                options = []
                if not data.isascii() and client.supports_extension("8bitmime"):
                    options.append("BODY=8BITMIME")
                addresses = [entry.sender, *recipients]
                if not all(a.isascii() for a in addresses) and client.supports_extension(
                    "smtputf8"
                ):
                    options.append("SMTPUTF8")
                errors, _ = await client.sendmail(
                    entry.sender, recipients, data, mail_options=options
                )
            finally:
                with contextlib.suppress(aiosmtplib.SMTPException, OSError):
                    await client.quit()
        except aiosmtplib.SMTPRecipientsRefused as exc:
            return [], [Failure(r.recipient, r.code, r.message) for r in exc.recipients]
        except aiosmtplib.SMTPAuthenticationError as exc:
            # Our configuration, not the message: retry (like Postfix's
            # smtp_sasl_auth_soft_bounce) rather than bounce every queued message.
            text = f"{settings.smarthost}: authentication failed: {exc.code} {exc.message}"
            return [], [Failure(r, 0, text) for r in recipients]
        except aiosmtplib.SMTPResponseException as exc:
            return [], [Failure(r, exc.code, exc.message) for r in recipients]
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            text = f"{settings.smarthost}: {type(exc).__name__}: {exc}"
            return [], [Failure(r, 0, text) for r in recipients]
        failures = [Failure(r, resp.code, resp.message) for r, resp in errors.items()]
        refused = {r.casefold() for r in errors}
        return [r for r in recipients if r.casefold() not in refused], failures

    def _tls_context(self) -> ssl.SSLContext:
        settings = self._settings
        cafile = str(settings.tls_ca) if settings.tls_ca is not None else None
        context = ssl.create_default_context(cafile=cafile)
        if not settings.tls_verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    # --- delivery status notifications ---------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _dsn(
        self,
        entry: QueueEntry,
        failures: Sequence[Failure],
        *,
        expired: bool,
        data: bytes | None = None,
    ) -> AsyncIterator[StagedMessage | None]:
        """The staged DSN for ``failures`` (None when there are none, or for the null
        sender), for ``update_queued`` to queue with the change it reports."""
        if not failures:
            yield None
            return
        if not entry.sender:
            log.info("relay: queue id %d: no DSN for the null sender", entry.id)
            yield None
            return
        if data is None:
            try:
                data = await self._backend.read_queued(entry.id)
            except StoreError:
                data = b""
        message = build_dsn(
            entry,
            failures,
            original=data,
            reporting_mta=self._hostname,
            postmaster=self._settings.postmaster or f"MAILER-DAEMON@{self._hostname}",
            expired=expired,
        )
        async with self._backend.stage(max_octets=len(message) + 1024) as staged:
            await staged.write(message)
            await staged.finish()
            yield staged
        log.info("relay: queue id %d: DSN to <%s> queued", entry.id, entry.sender)
        self.wake()


def build_dsn(
    entry: QueueEntry,
    failures: Sequence[Failure],
    *,
    original: bytes,
    reporting_mta: str,
    postmaster: str,
    expired: bool,
    now: dt.datetime | None = None,
) -> bytes:
    """An RFC 3464 delivery status notification (multipart/report) for ``failures``."""
    when = email.utils.format_datetime(now or dt.datetime.now(dt.UTC))
    boundary = f"=_dsn_{secrets.token_hex(12)}"
    lines = [
        f"This is the mail system at {reporting_mta}.",
        "",
        "Your message could not be delivered to the following recipient(s)"
        + (" within the time allowed:" if expired else ":"),
        "",
    ]
    for f in failures:
        lines.append(f"<{f.recipient}>: {f.diagnostic}")
    human = "\r\n".join(lines) + "\r\n"
    per_message = (
        f"Reporting-MTA: dns; {reporting_mta}\r\n"
        f"Arrival-Date: {email.utils.format_datetime(entry.created)}\r\n"
    )
    per_recipient = []
    for f in failures:
        status = "4.4.7" if expired else f.status
        block = (
            f"Final-Recipient: rfc822; {f.recipient}\r\n"
            f"Action: failed\r\n"
            f"Status: {status}\r\n"
            f"Last-Attempt-Date: {when}\r\n"
        )
        if f.code:
            block += f"Remote-MTA: dns; {reporting_mta}\r\n"
            block += f"Diagnostic-Code: smtp; {_one_line(f.diagnostic)}\r\n"
        per_recipient.append(block)
    status_part = per_message + "\r\n" + "\r\n".join(per_recipient)
    headers = _header_section(original)
    head = (
        f"From: Mail Delivery System <{postmaster}>\r\n"
        f"To: <{entry.sender}>\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\n"
        f"Date: {when}\r\n"
        f"Message-ID: <{secrets.token_hex(12)}@{reporting_mta}>\r\n"
        "Auto-Submitted: auto-replied\r\n"
        "MIME-Version: 1.0\r\n"
        f'Content-Type: multipart/report; report-type=delivery-status; boundary="{boundary}"\r\n'
        "\r\n"
    ).encode()
    body = (
        f"--{boundary}\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        "Content-Transfer-Encoding: 8bit\r\n"
        "\r\n"
        f"{human}\r\n"
        f"--{boundary}\r\n"
        "Content-Type: message/delivery-status\r\n"
        "\r\n"
        f"{status_part}\r\n"
        f"--{boundary}\r\n"
        "Content-Type: text/rfc822-headers\r\n"
        "\r\n"
    ).encode()
    return head + body + headers + f"\r\n--{boundary}--\r\n".encode()


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _header_section(message: bytes) -> bytes:
    """The header section of ``message`` (at most DSN_HEADER_OCTETS), CRLF-terminated."""
    end = message.find(b"\r\n\r\n")
    head = message[: end + 2] if end >= 0 else message[:DSN_HEADER_OCTETS]
    head = head[:DSN_HEADER_OCTETS]
    if not head.endswith(b"\r\n"):
        head = head.rsplit(b"\r\n", 1)[0] + b"\r\n" if b"\r\n" in head else b""
    return head


async def start_relay(config: Config, backend: Backend) -> RelayRunner:
    """The queue runner of ``msgstore serve`` (one per process; the lock picks who works)."""
    return await RelayRunner(backend, config.relay).start()


__all__ = [
    "Failure",
    "RelayRunner",
    "backoff",
    "build_dsn",
    "start_relay",
    "wake_runners",
]

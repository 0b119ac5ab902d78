"""A real SMTP server on loopback (aiosmtpd) standing in for the smarthost: it records what
arrives and answers RCPT or DATA with the replies a test asks for."""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass
from typing import Any

from aiosmtpd.controller import Controller


@dataclass(frozen=True, slots=True)
class Arrived:
    sender: str
    recipients: tuple[str, ...]
    data: bytes


class Sink:
    """``rcpt_replies`` maps a recipient (lower case) to the reply for its RCPT ("451 4.3.0
    later"); recipients not in it get 250."""

    def __init__(self, **smtp_options: Any) -> None:
        # Bound but not listening until ``start``: connections are refused as by a host that
        # is down, and no other process can take the port the server was configured with
        # (a port picked free and released can be handed to anyone meanwhile).
        self._reserved: socket.socket | None = socket.socket()
        self._reserved.bind(("127.0.0.1", 0))
        self.port: int = self._reserved.getsockname()[1]
        #: aiosmtpd.smtp.SMTP options: tls_context, require_starttls, authenticator, ...
        self.smtp_options = smtp_options
        self.arrived: list[Arrived] = []
        self.rcpt_replies: dict[str, str] = {}
        self.rcpt_attempts: dict[str, int] = {}
        self._lock = threading.Lock()
        self._controller: Controller | None = None

    # aiosmtpd handler hooks
    async def handle_RCPT(  # noqa: N802 -- aiosmtpd's name
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        with self._lock:
            self.rcpt_attempts[address.lower()] = self.rcpt_attempts.get(address.lower(), 0) + 1
            reply = self.rcpt_replies.get(address.lower())
        if reply is not None:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        data = envelope.original_content or envelope.content
        assert isinstance(data, bytes)
        with self._lock:
            self.arrived.append(Arrived(envelope.mail_from or "", tuple(envelope.rcpt_tos), data))
        return "250 2.0.0 queued"

    def start(self) -> Sink:
        if self._reserved is not None:
            self._reserved.close()
            self._reserved = None
        self._controller = Controller(
            self, hostname="127.0.0.1", port=self.port, **self.smtp_options
        )
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._reserved is not None:
            self._reserved.close()
            self._reserved = None
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def to(self, recipient: str) -> list[Arrived]:
        with self._lock:
            return [a for a in self.arrived if recipient.lower() in map(str.lower, a.recipients)]

    def wait_for(self, recipient: str, count: int = 1, timeout: float = 20.0) -> list[Arrived]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.to(recipient)
            if len(got) >= count:
                return got
            time.sleep(0.05)
        raise AssertionError(
            f"{count} message(s) for {recipient} not arrived: {self.to(recipient)}"
        )

"""A raw LMTP/SMTP client for the tests: send exact octets, read reply lines."""

from __future__ import annotations

from tests.conversations.harness import LineClient, MsgstoreServer


class Wire(LineClient):
    """A :class:`LineClient` that knows SMTP replies."""

    def __enter__(self) -> Wire:
        return self

    def reply(self) -> str:
        """One reply line (of a multi-line reply: every line, joined by newlines)."""
        lines: list[str] = []
        while True:
            line = self.read_line()
            assert line is not None, f"connection closed after {lines!r}"
            text = line.decode("utf-8", "replace")
            lines.append(text)
            if text[3:4] != "-":
                return "\n".join(lines)

    def replies(self, count: int) -> list[str]:
        return [self.reply() for _ in range(count)]

    def closed(self) -> bool:
        """True if the server closed the connection (nothing more arrives)."""
        return self.read_line() is None


def connect(server: MsgstoreServer, protocol: str = "lmtp") -> Wire:
    wire = Wire(server.port(f"{protocol}.listen"))
    assert wire.reply().startswith("220 ")
    greeting = wire.command("LHLO client.example" if protocol == "lmtp" else "EHLO client.example")
    while greeting.startswith(b"250-"):
        line = wire.read_line()
        assert line is not None
        greeting = line
    return wire


def message(subject: str, body: str = "Hello.\r\n") -> bytes:
    return (
        f"From: a@example.org\r\nTo: b@example.org\r\nSubject: {subject}\r\n\r\n{body}"
    ).encode()

"""Log lines as postmasters grep for them, with the session they belong to.

Text (``[log] format = "text"``), Dovecot's shape::

    msgstore(serve)<4711>: Info: imap: listening on 127.0.0.1:1143
    imap(alice)<4711><Kx3hQ2>: Info: Logged out in=120 out=5634

JSON: one object per line with ``time``, ``level``, ``service``, ``ident``, ``pid``,
``session`` (when inside one), ``logger``, ``message`` and ``exception``.

Code that serves a connection wraps it in ``with log_context(service="imap", ident=peer):``
and narrows ``ident`` to the user after login; every record logged inside, by any module,
carries that context (a ``contextvars`` variable, so each asyncio task has its own).
Never log passwords or SASL payloads.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Final, TextIO

from msgstore.config import LogSection


@dataclass(frozen=True, slots=True)
class LogContext:
    """Who a log line is about: ``service(ident)<pid><session>``."""

    service: str = "msgstore"
    ident: str = "serve"  # the user once known; the peer address or the command before
    session: str | None = None


_process_context = LogContext()
_current: contextvars.ContextVar[LogContext | None] = contextvars.ContextVar(
    "msgstore_log_context", default=None
)

_LEVEL_NAMES: Final = {
    logging.DEBUG: "Debug",
    logging.INFO: "Info",
    logging.WARNING: "Warning",
    logging.ERROR: "Error",
    logging.CRITICAL: "Fatal",
}


def current_context() -> LogContext:
    """The context of the running task, or the process-wide one."""
    return _current.get() or _process_context


@contextmanager
def log_context(
    *, service: str | None = None, ident: str | None = None, session: str | None = None
) -> Iterator[LogContext]:
    """Narrow the log context for the code inside the block (and tasks it starts)."""
    base = current_context()
    context = replace(
        base,
        service=base.service if service is None else service,
        ident=base.ident if ident is None else ident,
        session=base.session if session is None else session,
    )
    token = _current.set(context)
    try:
        yield context
    finally:
        _current.reset(token)


class _ContextFilter(logging.Filter):
    # Captures the context when the record is made, not when (or in which task) it is written.
    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "log_context"):
            record.log_context = current_context()
        return True


def _context_of(record: logging.LogRecord) -> LogContext:
    context = getattr(record, "log_context", None)
    return context if isinstance(context, LogContext) else current_context()


def _one_line(text: str) -> str:
    # A client-controlled string must not be able to forge a second log line.
    return text.replace("\r", "\\r").replace("\n", "\\n")


class TextFormatter(logging.Formatter):
    """``service(ident)<pid><session>: Level: message``."""

    def format(self, record: logging.LogRecord) -> str:
        context = _context_of(record)
        session = f"<{context.session}>" if context.session else ""
        level = _LEVEL_NAMES.get(record.levelno, record.levelname.title())
        line = (
            f"{context.service}({context.ident})<{record.process}>{session}: "
            f"{level}: {_one_line(record.getMessage())}"
        )
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line."""

    def format(self, record: logging.LogRecord) -> str:
        context = _context_of(record)
        event: dict[str, object] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": _LEVEL_NAMES.get(record.levelno, record.levelname).lower(),
            "service": context.service,
            "ident": context.ident,
            "pid": record.process,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if context.session:
            event["session"] = context.session
        if record.exc_info:
            event["exception"] = self.formatException(record.exc_info)
        return json.dumps(event, ensure_ascii=False)


class _Handler(logging.StreamHandler[TextIO]):
    """Ours, so that configuring twice replaces it instead of doubling every line."""


def configure_logging(
    section: LogSection,
    *,
    service: str = "msgstore",
    ident: str = "serve",
    stream: TextIO | None = None,
) -> None:
    """Send every log record of the process to ``stream`` (standard error) as ``section`` says.

    ``service`` and ``ident`` name the process in lines logged outside any session:
    ``msgstore(serve)<pid>: ...``.
    """
    global _process_context
    _process_context = LogContext(service=service, ident=ident)
    handler = _Handler(stream if stream is not None else sys.stderr)
    handler.addFilter(_ContextFilter())
    handler.setFormatter(JsonFormatter() if section.format == "json" else TextFormatter())
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _Handler)]:
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(section.level.upper())

"""Process metrics (Prometheus), defined once for every service; served at ``/metrics``.

Sits below the services so that protocols, delivery and auth can all count; imports nothing
of ours. Every hook is one call from the code that knows the event::

    metrics.command("imap")                      # a command was read
    metrics.login("pop3") / metrics.login_failed("imap")
    metrics.deliveries("lmtp", replies)          # the per-recipient replies after DATA
    metrics.rejection("smtp", "not-found", reply)   # a RCPT refused, by reason
    metrics.error("imap")                        # an internal error (incident id logged)
    metrics.connection_opened("imap") / metrics.connection_closed("imap")   (net/sessions.py)

Two views are kept of the same events:

- Prometheus counters and gauges (prometheus_client), exposed by :func:`exposition`:

      msgstore_connections{protocol}                 gauge   open connections
      msgstore_commands_total{protocol}              counter commands read (rate = commands/s)
      msgstore_logins_total{protocol}                counter successful logins
      msgstore_login_failures_total{protocol}        counter failed logins (wrong password,
                                                             unknown user)
      msgstore_deliveries_total{protocol,result}     counter recipients after DATA/BDAT:
                                                             delivered, deferred, rejected
      msgstore_rejections_total{protocol,reason,class} counter recipients refused at RCPT
      msgstore_errors_total{where}                   counter internal errors

  plus whatever gauges the caller computes at scrape time (store bytes, queue size: the web
  face reads them from the backend, :func:`exposition`'s ``extra``).

- :class:`LiveStats`: per-minute totals of the last hour in this process (deliveries,
  logins, login failures, errors), for ``stats live`` and the dashboard; the control socket of
  each worker hands them out (net/control.py) and the management layer sums the workers.

With ``msgstore serve --workers N`` the counters live in prometheus_client's multiprocess
mode (ECOSYSTEM.md §15): the supervisor empties DATA/run/prometheus before it forks
(:func:`prepare_multiprocess_dir`), each worker switches to it right after the fork
(:func:`use_multiprocess`) before it counts anything, and the supervisor calls
:func:`worker_exited` for a dead worker so that its live gauges go. Counters of dead workers
stay (a counter never goes down). The metric objects are therefore created lazily, on first
use, never at import.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
    multiprocess,
    values,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

#: Content type of :func:`exposition` (Prometheus text format 0.0.4).
CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
#: Minutes :class:`LiveStats` keeps.
LIVE_MINUTES: Final = 60
#: The events :class:`LiveStats` counts per minute.
LIVE_EVENTS: Final = ("deliveries", "logins", "login_failures", "errors")


# The ``*_created`` series (a timestamp per counter) double the series count for nothing a
# dashboard uses; multiprocess mode never has them, so one process should not either.
disable_created_metrics()  # type: ignore[no-untyped-call]


class _Metrics:
    """The metric objects of this process (created by :func:`_metrics` on first use)."""

    def __init__(self, registry: CollectorRegistry | None) -> None:
        self.registry = registry
        self.connections = Gauge(
            "msgstore_connections",
            "Open client connections, by protocol.",
            ["protocol"],
            multiprocess_mode="livesum",
            registry=registry,
        )
        self.commands = Counter(
            "msgstore_commands",
            "Commands read from clients, by protocol.",
            ["protocol"],
            registry=registry,
        )
        self.logins = Counter(
            "msgstore_logins", "Successful logins, by protocol.", ["protocol"], registry=registry
        )
        self.login_failures = Counter(
            "msgstore_login_failures",
            "Failed logins (wrong password or unknown user), by protocol.",
            ["protocol"],
            registry=registry,
        )
        self.deliveries = Counter(
            "msgstore_deliveries",
            "Recipients after the message data: delivered (2xx), deferred (4xx), rejected (5xx).",
            ["protocol", "result"],
            registry=registry,
        )
        self.rejections = Counter(
            "msgstore_rejections",
            "Recipients refused at RCPT, by reason and reply class (4xx, 5xx).",
            ["protocol", "reason", "class"],
            registry=registry,
        )
        #: The commands counter of each protocol (the hot path: one per command).
        self.command_counters: dict[str, Counter] = {}
        self.errors = Counter(
            "msgstore_errors",
            "Internal errors (logged with an incident id).",
            ["where"],
            registry=registry,
        )


_lock = threading.Lock()
_state: _Metrics | None = None
_multiproc_dir: Path | None = None


def _metrics() -> _Metrics:
    global _state
    state = _state
    if state is None:
        with _lock:
            if _state is None:
                if _multiproc_dir is not None:
                    # Multiprocess mode: values go to mmap files, the collector reads them all.
                    _state = _Metrics(None)
                else:
                    registry = CollectorRegistry(auto_describe=True)
                    for collector in (ProcessCollector, PlatformCollector, GCCollector):
                        collector(registry=registry)
                    _state = _Metrics(registry)
            state = _state
    return state


# --- the hooks ---------------------------------------------------------------------------------


def connection_opened(protocol: str) -> None:
    _metrics().connections.labels(protocol).inc()


def connection_closed(protocol: str) -> None:
    _metrics().connections.labels(protocol).dec()


def command(protocol: str) -> None:
    """One command read from a client."""
    m = _metrics()
    counter = m.command_counters.get(protocol)
    if counter is None:
        counter = m.command_counters[protocol] = m.commands.labels(protocol)
    counter.inc()


def login(protocol: str) -> None:
    """A successful login (the password was right and the account may log in)."""
    _metrics().logins.labels(protocol).inc()
    LIVE.add("logins")


def login_failed(protocol: str) -> None:
    """A failed login: wrong password or unknown user."""
    _metrics().login_failures.labels(protocol).inc()
    LIVE.add("login_failures")


def deliveries(protocol: str, replies: Sequence[bytes]) -> None:
    """The per-recipient replies after the message data, counted by reply class."""
    m = _metrics()
    delivered = 0
    for reply in replies:
        result = {b"2": "delivered", b"4": "deferred"}.get(reply[:1], "rejected")
        m.deliveries.labels(protocol, result).inc()
        delivered += result == "delivered"
    LIVE.add("deliveries", delivered)


def rejection(protocol: str, reason: str, reply: bytes) -> None:
    """A recipient refused at RCPT; ``reason`` is short and from a fixed set (an error kind
    such as ``not-found`` or ``over-quota``, or ``relay-denied``)."""
    klass = "4xx" if reply[:1] == b"4" else "5xx"
    _metrics().rejections.labels(protocol, reason, klass).inc()


def error(where: str) -> None:
    """An internal error in ``where`` (a protocol or "web")."""
    _metrics().errors.labels(where).inc()
    LIVE.add("errors")


# --- the last hour, per minute ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Minute:
    """The events of one minute (``minute`` is the epoch minute: seconds // 60)."""

    minute: int
    counts: Mapping[str, int]


class LiveStats:
    """Per-minute event counts of the last :data:`LIVE_MINUTES` minutes in this process.

    A ring of minute buckets: adding is O(1); a bucket older than an hour is reused.
    """

    def __init__(self, minutes: int = LIVE_MINUTES) -> None:
        self._size = minutes
        self._minutes = [-1] * minutes
        self._counts: list[dict[str, int]] = [{} for _ in range(minutes)]

    def add(self, event: str, n: int = 1, *, now: float | None = None) -> None:
        if n <= 0:
            return
        minute = int((time.time() if now is None else now) // 60)
        slot = minute % self._size
        if self._minutes[slot] != minute:
            self._minutes[slot] = minute
            self._counts[slot] = {}
        counts = self._counts[slot]
        counts[event] = counts.get(event, 0) + n

    def snapshot(self, *, now: float | None = None) -> list[Minute]:
        """The last :data:`LIVE_MINUTES` minutes, oldest first, the current one included;
        minutes without events have zero counts."""
        current = int((time.time() if now is None else now) // 60)
        out: list[Minute] = []
        for minute in range(current - self._size + 1, current + 1):
            slot = minute % self._size
            counts = self._counts[slot] if self._minutes[slot] == minute else {}
            out.append(Minute(minute, {e: counts.get(e, 0) for e in LIVE_EVENTS}))
        return out

    def reset(self) -> None:
        self._minutes = [-1] * self._size
        self._counts = [{} for _ in range(self._size)]


#: This process's live statistics.
LIVE: Final = LiveStats()


# --- exposition ---------------------------------------------------------------------------------


class _Gauges(Collector):
    """Gauges whose values the caller computed (store bytes, queue size)."""

    def __init__(self, gauges: Iterable[tuple[str, str, float]]) -> None:
        self._gauges = list(gauges)

    def collect(self) -> Iterable[GaugeMetricFamily]:
        for name, help_text, value in self._gauges:
            yield GaugeMetricFamily(name, help_text, value=value)


def exposition(extra: Iterable[tuple[str, str, float]] = ()) -> bytes:
    """Every metric in the Prometheus text format: this process's (or, in multiprocess mode,
    every worker's) counters, then the ``extra`` gauges (name, help, value)."""
    m = _metrics()
    if _multiproc_dir is not None:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=str(_multiproc_dir))  # type: ignore[no-untyped-call]
        text = generate_latest(registry)
    else:
        assert m.registry is not None
        text = generate_latest(m.registry)
    extra = list(extra)
    if extra:
        registry = CollectorRegistry()
        registry.register(_Gauges(extra))
        text += generate_latest(registry)
    return text


# --- multiprocess mode (msgstore serve --workers N) --------------------------------------------


def prepare_multiprocess_dir(path: Path) -> None:
    """Empty (or create) the directory the workers' metric files go to; the supervisor calls
    it once before it forks the first worker."""
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True, mode=0o700)


def use_multiprocess(path: Path) -> None:
    """Count into ``path`` from now on (a worker, right after the fork, before any count)."""
    global _multiproc_dir, _state
    with _lock:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(path)
        # prometheus_client picks its value class when it is imported; we are past that.
        values.ValueClass = values.MultiProcessValue()  # type: ignore[no-untyped-call]
        _multiproc_dir = path
        _state = None
    LIVE.reset()


def worker_exited(path: Path, pid: int) -> None:
    """Drop the live gauges of a worker that ended (the supervisor, after reaping it)."""
    with contextlib.suppress(OSError):
        multiprocess.mark_process_dead(pid, str(path))  # type: ignore[no-untyped-call]

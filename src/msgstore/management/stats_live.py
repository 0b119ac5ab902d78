"""Live statistics: deliveries, logins, login failures and internal errors per minute over the
last hour, summed over every process of the running server (``stats live``).

Each server process counts the events in memory (``msgstore.metrics.LiveStats``); the numbers
come through the same :class:`~msgstore.management.sessions.SessionDirectory` as the live
sessions, so they start at zero when the server starts and a restarted worker's minutes are
lost. Long-term numbers belong to Prometheus (``/metrics``).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from msgstore.management.operation import ManagementContext, operation
from msgstore.management.sessions import directory

#: The events of each minute, in the order the result lists them.
EVENTS = ("deliveries", "logins", "login_failures", "errors")


@dataclass(frozen=True, slots=True)
class MinuteStats:
    """What happened in one minute (``minute`` is its start, UTC)."""

    minute: dt.datetime
    deliveries: int  # recipients a message was delivered to (LMTP, SMTP)
    logins: int  # successful logins (IMAP, POP3, poppassd, web, REST)
    login_failures: int
    errors: int  # internal errors


@dataclass(frozen=True, slots=True)
class LiveStats:
    """The last hour, oldest minute first, and how many server processes answered."""

    processes: int
    minutes: list[MinuteStats]


@operation("stats live", http=("GET", "/stats/live"))
@dataclass(frozen=True, slots=True)
class StatsLive:
    """Deliveries, logins, login failures and errors per minute over the last hour.

    Summed over every process of the running server; counted since the server started.
    """

    async def run(self, ctx: ManagementContext) -> LiveStats:
        answers = await directory(ctx).stats()
        totals: dict[int, dict[str, int]] = {}
        for answer in answers:
            minutes = answer.get("minutes")
            if not isinstance(minutes, list):
                continue
            for entry in minutes:
                if not (isinstance(entry, list) and len(entry) == 2):
                    continue
                minute, counts = entry
                if not isinstance(minute, int) or not isinstance(counts, dict):
                    continue
                bucket = totals.setdefault(minute, dict.fromkeys(EVENTS, 0))
                for event in EVENTS:
                    value = counts.get(event)
                    if isinstance(value, int):
                        bucket[event] += value
        rows = [
            MinuteStats(
                minute=dt.datetime.fromtimestamp(minute * 60, dt.UTC),
                deliveries=counts["deliveries"],
                logins=counts["logins"],
                login_failures=counts["login_failures"],
                errors=counts["errors"],
            )
            for minute, counts in sorted(totals.items())
        ]
        return LiveStats(processes=len(answers), minutes=rows[-60:])

"""Dates in the reader's locale: ``Accept-Language`` -> a Babel ``Locale`` -> text.

The server cannot know the browser's time zone, so it writes UTC, marked as such, in the
locale's own medium date and short time ("29.11.2026, 11:41 UTC" for German, "Nov 29, 2026,
11:41 AM UTC" for American English), inside ``<time datetime="ISO">``. That reads well
without JavaScript; static/app.js then rewrites the text in the browser's time zone with the
same locale, keeping the server's text as the tooltip.

Locale data is CLDR's, through Babel (docs/architecture.md, dependencies). The header is the
client's: at most :data:`MAX_HEADER` characters and :data:`MAX_TAGS` language tags are read,
a tag Babel does not know is skipped, and nothing usable means :data:`DEFAULT_LOCALE`.
"""

from __future__ import annotations

import datetime as dt
import functools
from typing import Final

from babel import Locale, UnknownLocaleError
from babel.dates import format_date, format_time

#: The locale of a request without a usable Accept-Language.
DEFAULT_LOCALE: Final = "en"
MAX_HEADER: Final = 512
MAX_TAGS: Final = 12


def _tags(header: str) -> list[str]:
    """Language tags of an Accept-Language value by preference (q), best first; ``*`` and
    q=0 left out (RFC 9110 §12.5.4)."""
    weighted: list[tuple[float, int, str]] = []
    for position, item in enumerate(header.split(",")[:MAX_TAGS]):
        tag, _, params = item.strip().partition(";")
        tag = tag.strip()
        quality = 1.0
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key.strip().lower() == "q":
                try:
                    quality = float(value.strip()[:5])
                except ValueError:
                    quality = 0.0
        if tag and tag != "*" and quality > 0 and all(c.isalnum() or c == "-" for c in tag):
            weighted.append((-quality, position, tag))
    return [tag for _, _, tag in sorted(weighted)]


def negotiate(header: str | None) -> Locale:
    """The first locale of ``header`` Babel has data for; :data:`DEFAULT_LOCALE` otherwise."""
    return _negotiate((header or "")[:MAX_HEADER])


@functools.lru_cache(maxsize=256)
def _negotiate(header: str) -> Locale:
    for tag in _tags(header):
        try:
            return Locale.parse(tag, sep="-")
        except (UnknownLocaleError, ValueError, TypeError):
            continue
    return Locale.parse(DEFAULT_LOCALE)


def format_utc(value: dt.datetime, locale: Locale) -> str:
    """``value`` in UTC as the locale writes a medium date and a short time, plus "UTC"."""
    utc = value.astimezone(dt.UTC)
    date = format_date(utc, "medium", locale=locale)
    time = format_time(utc, "short", tzinfo=dt.UTC, locale=locale)
    pattern = locale.datetime_formats.get("medium", "{1} {0}")
    return f"{str(pattern).format(time, date)} UTC"


def language_tag(locale: Locale) -> str:
    """``de_DE`` -> ``de-DE`` (BCP 47, for the browser's Intl API)."""
    return "-".join(part for part in (locale.language, locale.script, locale.territory) if part)

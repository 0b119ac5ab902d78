"""Templates: one Jinja2 environment per process, site templates before the built-in ones.

A site re-shapes a page by putting a file of the same name in ``[web] templates_dir``
(a ``usage.html`` there replaces the built-in ``usage.html``); a site template can extend the
built-in one it replaces as ``builtin/usage.html`` and override only a block. Autoescape is on
for every template, so every value a page shows is HTML-escaped unless a template says
otherwise (none of the built-in ones do).

Filters the templates use:

    size        octets in human units: 1.5 MB, 12 KB (powers of 1024, as quotas are set)
    kib         the same for a value in KiB (quota)
    when        a datetime as <time datetime="ISO">text</time>, the text in the request's
                locale (``locale`` in the template context, from Accept-Language: dates.py);
                static/app.js rewrites it in the browser's time zone
    count       1234567 -> 1,234,567
    cell        any value of a result table in human form (sizes by field name, dates, lists)
    heading     a field name as a column heading
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Mapping
from pathlib import Path
from typing import Final

import jinja2
from babel import Locale
from markupsafe import Markup, escape

from msgstore.config import Config
from msgstore.web.ui.dates import format_utc, negotiate

BUILTIN_TEMPLATES: Final = Path(__file__).parent / "templates"
BUILTIN_STATIC: Final = Path(__file__).parent / "static"

_UNITS: Final = ("bytes", "KB", "MB", "GB", "TB", "PB")


def human_size(octets: int | None) -> str:
    """``1572864`` -> ``"1.5 MB"``; None -> ``"unlimited"``.

    Units of 1024, as quotas are set (``10M`` is 10 MB here, not 10.5).
    """
    if octets is None:
        return "unlimited"
    value = float(octets)
    for unit in _UNITS:
        if abs(value) < 1024 or unit == _UNITS[-1]:
            if unit == "bytes":
                return f"{int(value)} bytes"
            return f"{value:.1f} {unit}" if value < 100 else f"{value:.0f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def human_kib(kib: int | None) -> str:
    return human_size(None if kib is None else kib * 1024)


def when(value: dt.datetime | None, locale: Locale | None = None) -> Markup:
    """A ``<time>`` element: ISO 8601 (UTC) in ``datetime``, the text in ``locale``."""
    if value is None:
        return Markup("—")
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    utc = value.astimezone(dt.UTC)
    machine = utc.isoformat(timespec="seconds").replace("+00:00", "Z")
    text = format_utc(utc, locale or negotiate(None))
    return Markup('<time datetime="{}">{}</time>').format(machine, text)


def count(value: int) -> str:
    return f"{value:,}"


def percent(used: int, limit: int | None) -> int:
    """Usage as a whole percentage for a bar (0 with no limit, at most 100)."""
    if not limit:
        return 0
    return max(0, min(100, round(100 * used / limit)))


def cell(value: object, name: str = "", locale: Locale | None = None) -> Markup:
    """One value of a result table, in human form (escaped); dates in ``locale``."""
    if value is None:
        return Markup("unlimited") if "limit" in name else Markup("—")
    if isinstance(value, dt.datetime):
        return when(value, locale)
    if isinstance(value, bool):
        return escape("yes" if value else "no")
    if isinstance(value, enum.Enum):
        return escape(str(value.value))
    if isinstance(value, int) and (name in ("size", "octets") or name.endswith("_octets")):
        return escape(human_size(value))
    if isinstance(value, int) and name.endswith("_kib"):
        return escape(human_kib(value))
    if isinstance(value, int) and (name in ("id", "pid", "uid") or name.endswith("_id")):
        return escape(str(value))
    if isinstance(value, int):
        return escape(count(value))
    if isinstance(value, Mapping):
        return Markup(", ").join(
            Markup("{}: {}").format(k, cell(v, locale=locale)) for k, v in value.items()
        )
    if isinstance(value, list | tuple | frozenset | set):
        items = sorted(value, key=str) if isinstance(value, frozenset | set) else value
        return Markup(", ").join(cell(v, locale=locale) for v in items)
    return escape(str(value))


_HEADINGS: Final = {"ts": "Time", "id": "Id", "pid": "Process", "acl": "Rights"}


def heading(name: str) -> str:
    """A field name as a column heading: ``storage_used_kib`` -> ``Storage used``."""
    if name in _HEADINGS:
        return _HEADINGS[name]
    words = name.split("_")
    if len(words) > 1 and words[-1] in ("kib", "octets"):
        words = words[:-1]
    return " ".join(words).capitalize()


def make_environment(config: Config) -> jinja2.Environment:
    """The environment of this process: site templates first, then the built-in ones."""
    builtin = jinja2.FileSystemLoader(str(BUILTIN_TEMPLATES))
    loaders: list[jinja2.BaseLoader] = []
    if config.web.templates_dir is not None:
        loaders.append(jinja2.FileSystemLoader(str(config.web.templates_dir)))
    loaders.append(builtin)
    env = jinja2.Environment(
        loader=jinja2.ChoiceLoader(
            [jinja2.PrefixLoader({"builtin": builtin}), *loaders],
        ),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
        auto_reload=False,
    )
    env.filters.update(
        size=human_size,
        kib=human_kib,
        when=_when_filter,
        count=count,
        cell=_cell_filter,
        heading=heading,
    )
    env.globals.update(percent=percent, escape=escape)
    return env


def _locale_of(context: jinja2.runtime.Context) -> Locale | None:
    locale = context.get("locale")
    return locale if isinstance(locale, Locale) else None


@jinja2.pass_context
def _when_filter(context: jinja2.runtime.Context, value: dt.datetime | None) -> Markup:
    return when(value, _locale_of(context))


@jinja2.pass_context
def _cell_filter(context: jinja2.runtime.Context, value: object, name: str = "") -> Markup:
    return cell(value, name, _locale_of(context))

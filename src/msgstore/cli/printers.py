"""Two printers of the same results: ``--json`` for scripts, text for people.

Results are the dataclasses the management operations return (or lists of them); neither
printer knows any operation. JSON keeps every field with its exact value (limits in KiB,
``null`` for unlimited); text shows a single result as ``key: value`` lines and a list as a
table with one column per field.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import json
from typing import Final

import click

from msgstore.management.jsonable import to_json

#: Fields a table leaves out because they are long or rarely wanted; ``--json`` has them all.
_TABLE_OMITS: Final = frozenset({"id", "created"})


def print_json(value: object) -> None:
    click.echo(json.dumps(to_json(value), indent=2, ensure_ascii=False))


def _text(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, enum.Enum):
        return str(value.value)
    if isinstance(value, dt.datetime):
        return value.isoformat(timespec="seconds")
    if isinstance(value, frozenset | set):
        return " ".join(sorted(str(v) for v in value)) or "-"
    return str(value)


def _row(value: object) -> dict[str, str]:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _text(getattr(value, f.name)) for f in dataclasses.fields(value)}
    return {"value": _text(value)}


def print_text(value: object) -> None:
    """``key: value`` lines for one result; a table for a list; nothing for None."""
    if value is None:
        return
    if isinstance(value, list | tuple):
        rows = [{k: v for k, v in _row(item).items() if k not in _TABLE_OMITS} for item in value]
        if not rows:
            return
        columns = list(rows[0])
        widths = {c: max(len(c), *(len(r[c]) for r in rows)) for c in columns}
        click.echo("  ".join(c.ljust(widths[c]) for c in columns).rstrip())
        for r in rows:
            click.echo("  ".join(r[c].ljust(widths[c]) for c in columns).rstrip())
        return
    row = _row(value)
    width = max(len(k) for k in row)
    for key, text in row.items():
        click.echo(f"{key + ':':<{width + 1}} {text}")


def print_result(value: object, *, as_json: bool) -> None:
    if as_json:
        print_json(value)
    else:
        print_text(value)

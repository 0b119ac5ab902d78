"""Two printers of the same results: ``--json`` for scripts, text for people.

Every result is first turned into JSON values (``management.jsonable.to_json``), whether it
came from a local operation or from the REST API (remote mode), so both modes print the
same. JSON keeps every field with its exact value (limits in KiB, ``null`` for unlimited);
text shows a single result as ``key: value`` lines and a list as a table with one column per
field -- a rich table when standard output is a terminal, plain aligned columns otherwise
(stable for ``grep``/``awk``). rich is imported only when a terminal is there to draw on.
"""

from __future__ import annotations

import json
import re
import sys
from typing import Final

import click

from msgstore.management.jsonable import JsonValue, to_json

#: Fields a table leaves out because they are long or rarely wanted; ``--json`` has them all.
_TABLE_OMITS: Final = frozenset({"id", "created"})
_ISO_TIME: Final = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(\+00:00|Z)?$")


def print_json(value: object) -> None:
    click.echo(json.dumps(to_json(value), indent=2, ensure_ascii=False))


def _text(value: JsonValue) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, str):
        if _ISO_TIME.match(value):  # datetimes: to the second, "T" kept (ISO 8601)
            return value[:19]
        return value
    if isinstance(value, list):
        return " ".join(_text(v) for v in value) or "-"
    if isinstance(value, dict):
        return " ".join(f"{k}={_text(v)}" for k, v in value.items()) or "-"
    return str(value)


def _row(value: JsonValue) -> dict[str, str]:
    if isinstance(value, dict):
        return {k: _text(v) for k, v in value.items()}
    return {"value": _text(value)}


def _table(rows: list[dict[str, str]]) -> None:
    columns = list(rows[0])
    if sys.stdout.isatty():
        from rich.console import Console
        from rich.table import Table

        table = Table(box=None, header_style="bold", pad_edge=False)
        for column in columns:
            table.add_column(column, overflow="fold")
        for r in rows:
            table.add_row(*(r.get(c, "") for c in columns))
        Console().print(table)
        return
    widths = {c: max(len(c), *(len(r.get(c, "")) for r in rows)) for c in columns}
    click.echo("  ".join(c.ljust(widths[c]) for c in columns).rstrip())
    for r in rows:
        click.echo("  ".join(r.get(c, "").ljust(widths[c]) for c in columns).rstrip())


def print_text(value: object) -> None:
    """``key: value`` lines for one result; a table for a list; nothing for None."""
    data = to_json(value)
    if data is None:
        return
    if isinstance(data, list):
        rows = [{k: v for k, v in _row(item).items() if k not in _TABLE_OMITS} for item in data]
        if rows:
            _table(rows)
        return
    if isinstance(data, dict):
        _lines(data, "")
        return
    click.echo(_text(data))


def _lines(data: dict[str, JsonValue], indent: str) -> None:
    """``key: value`` lines; a nested object or a list of objects indented below its key."""
    width = max((len(k) for k in data), default=0)
    for key, item in data.items():
        if isinstance(item, dict) and item:
            click.echo(f"{indent}{key}:")
            _lines(item, indent + "  ")
        elif isinstance(item, list) and item and all(isinstance(i, dict) for i in item):
            click.echo(f"{indent}{key}:")
            for line in item:
                click.echo(f"{indent}  - {_text(line)}")
        else:
            click.echo(f"{indent}{key + ':':<{width + 1}} {_text(item)}")


def print_result(value: object, *, as_json: bool) -> None:
    if as_json:
        print_json(value)
    else:
        print_text(value)

"""Results as plain JSON values: one conversion for ``--json``, the REST API and the web.

Results are the dataclasses the management operations return (or lists of them); JSON keeps
every field with its exact value (limits in KiB, ``null`` for unlimited, datetimes in ISO 8601).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
from collections.abc import Mapping, Sequence
from pathlib import PurePath

JsonValue = None | bool | int | float | str | list["JsonValue"] | dict[str, "JsonValue"]


def to_json(value: object) -> JsonValue:
    """Convert a result into plain JSON values."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, enum.Enum):
        return to_json(value.value)
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, PurePath):
        return str(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_json(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, frozenset | set):
        return [to_json(v) for v in sorted(value, key=str)]
    if isinstance(value, Sequence):
        return [to_json(v) for v in value]
    return str(value)

"""Sizes and durations as people write them: ``100M``, ``64K``, ``30m``, ``2h``.

Sizes use binary units (K = KiB, M = MiB, G = GiB), as Dovecot and Cyrus do.
"""

from __future__ import annotations

import re
from typing import Final

from msgstore.core.errors import ErrorKind, StoreError

_SIZE_UNITS: Final = {"": 1, "B": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}
_DURATION_UNITS: Final = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
_SIZE_RE: Final = re.compile(r"\s*(\d{1,15})\s*([KMGTB]?)(?:i?B)?\s*", re.IGNORECASE)
_DURATION_RE: Final = re.compile(r"\s*(\d{1,12})\s*([smhd]?)\s*")


def parse_size(text: str | int) -> int:
    """``"100M"`` -> 104857600. Plain integers are octets. Raises PARAMS."""
    if isinstance(text, int):
        if text < 0:
            raise StoreError(ErrorKind.PARAMS, f"size must not be negative: {text}")
        return text
    m = _SIZE_RE.fullmatch(text)
    if m is None:
        raise StoreError(
            ErrorKind.PARAMS, f"invalid size {text!r}: use a number with K, M or G (e.g. 100M)"
        )
    return int(m.group(1)) * _SIZE_UNITS[m.group(2).upper()]


def format_size(octets: int) -> str:
    """The largest exact binary unit: 104857600 -> ``100M``; 1500 -> ``1500``."""
    for unit in ("T", "G", "M", "K"):
        factor = _SIZE_UNITS[unit]
        if octets and octets % factor == 0:
            return f"{octets // factor}{unit}"
    return str(octets)


def parse_duration(text: str | int) -> int:
    """``"30m"`` -> 1800 seconds. Plain integers are seconds. Raises PARAMS."""
    if isinstance(text, int):
        if text < 0:
            raise StoreError(ErrorKind.PARAMS, f"duration must not be negative: {text}")
        return text
    m = _DURATION_RE.fullmatch(text)
    if m is None:
        raise StoreError(
            ErrorKind.PARAMS, f"invalid duration {text!r}: use a number with s, m, h or d"
        )
    return int(m.group(1)) * _DURATION_UNITS[m.group(2)]

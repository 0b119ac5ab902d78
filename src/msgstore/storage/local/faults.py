"""Deterministic fault injection for the local backend (RELIABILITY.md §7 case 36).

A :class:`FaultPlan` makes the N-th call of a file operation raise ``OSError(errno)``, so a test
can fail exactly the fsync of the third delivery without a broken disk. The plan is parsed from a
short string, usually the ``MSGSTORE_FAULTS`` environment variable read by
``msgstore.storage.open``::

    write:3:ENOSPC          the 3rd write fails with ENOSPC, later ones succeed
    fsync:1:EIO,rename:2:EROFS
    write:5+:ENOSPC         the 5th and every later write fail (a disk that stays full)

Operations: ``write``, ``fsync``, ``rename``, ``link``, ``mkdir``, ``unlink`` (the file
operations of ``files.py``) and ``commit`` (just before an index transaction commits). Counting
is per operation name, across every thread of the process, starting at 1.

Production runs without a plan: every call site is ``if faults is not None: faults.check(op)``.
"""

from __future__ import annotations

import errno
import os
import threading
from dataclasses import dataclass
from typing import Final

from msgstore.core.errors import ErrorKind, StoreError

#: The operations a plan may name.
OPERATIONS: Final = frozenset({"write", "fsync", "rename", "link", "mkdir", "unlink", "commit"})


@dataclass(frozen=True, slots=True)
class Fault:
    """Fail the ``nth`` call of ``op`` (and every later one if ``repeat``) with ``errno``."""

    op: str
    nth: int
    errno: int
    repeat: bool = False


class FaultPlan:
    """A set of injected faults with per-operation call counters (thread-safe)."""

    def __init__(self, faults: tuple[Fault, ...]) -> None:
        self.faults = faults
        self._by_op: dict[str, list[Fault]] = {}
        for fault in faults:
            self._by_op.setdefault(fault.op, []).append(fault)
        self._counts: dict[str, int] = dict.fromkeys(OPERATIONS, 0)
        self._lock = threading.Lock()

    @classmethod
    def parse(cls, text: str) -> FaultPlan:
        """Parse ``"op:N:ERRNO[,op:N+:ERRNO...]"``.

        Raises:
            StoreError: PARAMS naming the bad item.
        """
        faults: list[Fault] = []
        for item in text.split(","):
            item = item.strip()
            if not item:
                continue
            parts = item.split(":")
            if len(parts) != 3:
                raise StoreError(ErrorKind.PARAMS, f"fault {item!r}: expected op:N:ERRNO")
            op, nth_text, errno_name = parts
            if op not in OPERATIONS:
                raise StoreError(
                    ErrorKind.PARAMS,
                    f"fault {item!r}: unknown operation (one of {', '.join(sorted(OPERATIONS))})",
                )
            repeat = nth_text.endswith("+")
            nth_digits = nth_text.removesuffix("+")
            if not nth_digits.isdigit() or len(nth_digits) > 9 or int(nth_digits) < 1:
                raise StoreError(ErrorKind.PARAMS, f"fault {item!r}: N must be 1 or more")
            code = getattr(errno, errno_name, None)
            if not isinstance(code, int) or not errno_name.startswith("E"):
                raise StoreError(ErrorKind.PARAMS, f"fault {item!r}: unknown errno {errno_name}")
            faults.append(Fault(op, int(nth_digits), code, repeat))
        return cls(tuple(faults))

    @classmethod
    def from_env(cls, value: str | None) -> FaultPlan | None:
        """The plan for an environment value; None (no plan at all) when unset or empty."""
        if value is None or not value.strip():
            return None
        return cls.parse(value)

    def check(self, op: str) -> None:
        """Count one call of ``op``; raise the planned ``OSError`` if this call must fail."""
        with self._lock:
            self._counts[op] += 1
            count = self._counts[op]
        for fault in self._by_op.get(op, ()):
            if count == fault.nth or (fault.repeat and count > fault.nth):
                raise OSError(fault.errno, f"injected fault: {os.strerror(fault.errno)} ({op})")

    def arm(self, fault: Fault) -> None:
        """Add a fault while the plan is in use (a test sets up, then arms the next call)."""
        if fault.op not in OPERATIONS:
            raise StoreError(ErrorKind.PARAMS, f"unknown fault operation {fault.op!r}")
        with self._lock:
            self.faults = (*self.faults, fault)
            self._by_op.setdefault(fault.op, []).append(fault)

    def next_call(self, op: str, code: int) -> Fault:
        """A fault for the next call of ``op`` (to pass to :meth:`arm`)."""
        return Fault(op, self.count(op) + 1, code)

    def count(self, op: str) -> int:
        """How many calls of ``op`` the plan has seen (for tests)."""
        with self._lock:
            return self._counts[op]

    def __repr__(self) -> str:
        items = ",".join(
            f"{f.op}:{f.nth}{'+' if f.repeat else ''}:{errno.errorcode.get(f.errno, f.errno)}"
            for f in self.faults
        )
        return f"FaultPlan({items!r})"

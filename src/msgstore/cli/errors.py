"""CLI exit codes: one table from ``ErrorKind`` to sysexits(3) codes, and the one-line report.

Every failure of a command is one line on stderr, ``msgstore: <reason>``, and an exit code
from :data:`EXIT_CODE`. A test checks that the table covers every ``ErrorKind``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Final, NoReturn

import click

from msgstore.core.errors import ErrorKind

# sysexits(3); the values are fixed by BSD and used by every MTA that runs a delivery agent.
EX_OK: Final = 0
EX_USAGE: Final = 64  # command line usage error
EX_DATAERR: Final = 65  # input data incorrect (bad name, bad size, message too big)
EX_NOUSER: Final = 67  # addressee (account) unknown
EX_UNAVAILABLE: Final = 69  # service unavailable
EX_SOFTWARE: Final = 70  # internal software error
EX_CANTCREAT: Final = 73  # can't create: exists already, over quota
EX_IOERR: Final = 74  # input/output error, damaged data
EX_TEMPFAIL: Final = 75  # temporary failure; try again later
EX_NOPERM: Final = 77  # permission denied, account disabled
EX_CONFIG: Final = 78  # configuration error

#: The exit code for each kind of error.
EXIT_CODE: Final[Mapping[ErrorKind, int]] = {
    ErrorKind.TEMP: EX_TEMPFAIL,
    ErrorKind.UNAVAILABLE: EX_UNAVAILABLE,
    ErrorKind.PARAMS: EX_DATAERR,
    ErrorKind.NOT_FOUND: EX_NOUSER,
    ErrorKind.EXISTS: EX_CANTCREAT,
    ErrorKind.NO_PERM: EX_NOPERM,
    ErrorKind.OVER_QUOTA: EX_CANTCREAT,
    ErrorKind.TOO_BIG: EX_DATAERR,
    ErrorKind.NOT_POSSIBLE: EX_DATAERR,
    ErrorKind.HAS_CHILDREN: EX_DATAERR,
    ErrorKind.EXPUNGED: EX_TEMPFAIL,
    ErrorKind.IN_USE: EX_TEMPFAIL,
    ErrorKind.LIMIT: EX_CANTCREAT,
    ErrorKind.DISABLED: EX_NOPERM,
    ErrorKind.AUTH_FAILED: EX_NOPERM,
    ErrorKind.CORRUPTED: EX_IOERR,
    ErrorKind.INTERNAL: EX_SOFTWARE,
}

#: For ``deliver`` with several recipients: the exit code that decides, worst first.
#: A temporary failure outranks every permanent one: the MTA then retries the whole message,
#: which may duplicate it for recipients that already have it but never bounces mail that
#: could still be delivered. Among the others, problems of the store come first, then
#: problems of one recipient (quota, permission, unknown), then problems of the message.
DELIVER_SEVERITY: Final[tuple[int, ...]] = (
    EX_TEMPFAIL,
    EX_SOFTWARE,
    EX_UNAVAILABLE,
    EX_IOERR,
    EX_CONFIG,
    EX_CANTCREAT,
    EX_NOPERM,
    EX_NOUSER,
    EX_DATAERR,
    EX_USAGE,
    EX_OK,
)


def worst(codes: Iterable[int]) -> int:
    """The exit code that decides among several outcomes (see :data:`DELIVER_SEVERITY`)."""
    rank = {code: i for i, code in enumerate(DELIVER_SEVERITY)}
    return min(codes, key=lambda c: rank.get(c, 0), default=EX_OK)


def report(reason: str) -> None:
    """Write one error line on stderr: newlines in ``reason`` are flattened."""
    line = " ".join(reason.split())
    click.echo(f"msgstore: {line}", err=True)


def fail(reason: str, code: int) -> NoReturn:
    """Report ``reason`` and leave with ``code``."""
    report(reason)
    raise click.exceptions.Exit(code)

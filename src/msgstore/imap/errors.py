"""The one table from :class:`~msgstore.core.errors.ErrorKind` to IMAP replies.

Handlers never catch :class:`~msgstore.core.errors.StoreError`; the session loop maps it here
(STYLE.md §2.4) to a tagged ``NO`` with the RFC 5530 (or RFC 4314, RFC 9208, RFC 7162)
response code. The ``public`` text of the error goes to the client, its ``detail`` only to the
log. Anything that is not a StoreError is an internal error: :func:`internal_error` gives the
reply with a short incident id that the log line carries too (Dovecot's
``MAIL_ERRSTR_CRITICAL_MSG_STAMP``), never details.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import Final

from msgstore.core.errors import ErrorKind, StoreError
from msgstore.imap.syntax.responses import Code, ResponseCode, Status, StatusResponse

#: ErrorKind -> (status, response code). Every kind has an entry (tests/imap_server checks).
IMAP_CODE: Final[Mapping[ErrorKind, tuple[Status, Code | None]]] = {
    ErrorKind.TEMP: (Status.NO, Code.UNAVAILABLE),
    ErrorKind.UNAVAILABLE: (Status.NO, Code.UNAVAILABLE),
    ErrorKind.PARAMS: (Status.NO, Code.CANNOT),
    ErrorKind.NOT_FOUND: (Status.NO, Code.NONEXISTENT),
    ErrorKind.EXISTS: (Status.NO, Code.ALREADYEXISTS),
    ErrorKind.NO_PERM: (Status.NO, Code.NOPERM),
    ErrorKind.OVER_QUOTA: (Status.NO, Code.OVERQUOTA),
    ErrorKind.TOO_BIG: (Status.NO, Code.TOOBIG),
    ErrorKind.NOT_POSSIBLE: (Status.NO, Code.CANNOT),
    ErrorKind.HAS_CHILDREN: (Status.NO, Code.HASCHILDREN),
    ErrorKind.EXPUNGED: (Status.NO, Code.EXPUNGEISSUED),
    ErrorKind.IN_USE: (Status.NO, Code.INUSE),
    ErrorKind.LIMIT: (Status.NO, Code.LIMIT),
    ErrorKind.DISABLED: (Status.NO, Code.CONTACTADMIN),
    ErrorKind.AUTH_FAILED: (Status.NO, Code.AUTHENTICATIONFAILED),
    ErrorKind.CORRUPTED: (Status.NO, Code.CORRUPTION),
    ErrorKind.INTERNAL: (Status.NO, Code.SERVERBUG),
}


def reply_for(exc: StoreError) -> StatusResponse:
    """The tagged reply (tag added by the session) for a store error."""
    status, code = IMAP_CODE[exc.kind]
    return StatusResponse(status, exc.public, ResponseCode(code) if code is not None else None)


def incident_id() -> str:
    """A short random id that ties a client's error reply to one log entry."""
    return secrets.token_hex(4)


def internal_error(incident: str) -> StatusResponse:
    """The reply for an unexpected failure; the traceback is logged with ``incident``."""
    return StatusResponse(
        Status.NO,
        f"Internal error occurred. Refer to server log for more information. [{incident}]",
        ResponseCode(Code.SERVERBUG),
    )

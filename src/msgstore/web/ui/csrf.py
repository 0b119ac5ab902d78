"""Cross-site request forgery: two independent checks on every POST.

1. **Where the request came from.** A browser sends ``Sec-Fetch-Site`` (Fetch Metadata) and
   ``Origin`` with every POST; anything other than ``same-origin`` (or ``none``: typed by the
   user) and an ``Origin`` other than our own scheme and host is refused.
2. **The synchronizer token.** Every form carries the session's token in a hidden field
   ``csrf``; before login, the login form carries a random token that is also in a short-lived
   cookie (``msgstore_login``; double submit). The comparison refuses a missing or empty token
   on *either* side before comparing: ``compare_digest("", "")`` is true, so a naive check
   would let a POST without a token through from a session that has none
   (RELIABILITY.md §4 item 9).
"""

from __future__ import annotations

import hmac
import secrets
from typing import Final

from starlette.requests import Request

LOGIN_COOKIE: Final = "msgstore_login"
FIELD: Final = "csrf"
#: Longest token accepted (ours are 43 characters).
MAX_TOKEN: Final = 200


def new_token() -> str:
    return secrets.token_urlsafe(32)


def tokens_match(expected: str | None, given: str | None) -> bool:
    """True only for two equal, non-empty tokens."""
    if not expected or not given or len(given) > MAX_TOKEN:
        return False
    return hmac.compare_digest(expected.encode(), given.encode())


def same_origin(request: Request) -> bool:
    """False when the browser says the request came from another site."""
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        return False
    origin = request.headers.get("origin")
    if origin is not None:
        host = request.headers.get("host", "")
        if origin in ("null", "") or origin.split("://", 1)[-1] != host:
            return False
    return True

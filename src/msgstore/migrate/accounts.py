"""Where accounts and their password hashes come from: passwd-style files.

- ``--passwd-file``: Dovecot's passwd-file (``user:{SCHEME}hash:uid:gid:gecos:home:shell``)
  or a shadow-style file (``user:$6$...:lastchange:...``); the second field is the hash. A
  locked or empty shadow entry (``*``, ``!...``, empty) carries no hash.
- ``--all-from-passwd``: /etc/passwd-style lines (``user:x:uid:gid:gecos:home:shell``): every
  login account (uid 1000 and up, not ``nobody``, a shell that allows logins) that has a mail
  spool file becomes one job.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Final

from msgstore.auth.passwords import KNOWN_SCHEMES, scheme_of

NO_LOGIN_SHELLS: Final = frozenset(
    {"/usr/sbin/nologin", "/sbin/nologin", "/bin/false", "/usr/bin/false", ""}
)
FIRST_LOGIN_UID: Final = 1000
NOBODY_UID: Final = 65534


@dataclass(frozen=True, slots=True)
class PasswdEntry:
    name: str
    password_hash: str | None  # usable hash, or None
    uid: int | None
    home: Path | None
    shell: str


def usable_hash(value: str) -> str | None:
    """The stored form of a hash we can verify, or None (locked, empty, unknown scheme)."""
    value = value.strip()
    if not value or value in ("x", "*") or value.startswith("!"):
        return None
    scheme = scheme_of(value)
    return value if scheme in KNOWN_SCHEMES else None


def read_passwd(path: Path) -> tuple[dict[str, PasswdEntry], list[str]]:
    """Entries by name, and one complaint per line that could not be read."""
    entries: dict[str, PasswdEntry] = {}
    complaints: list[str] = []
    text = path.read_bytes().decode("utf-8", "replace")
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        fields = line.split(":")
        if len(fields) < 2 or not fields[0]:
            complaints.append(f"{path} line {number}: not 'user:hash...'")
            continue
        # A hash value may itself contain ':' only in schemes we do not take; Dovecot's
        # passwd-file forbids it too.
        uid = int(fields[2]) if len(fields) > 2 and fields[2].isdigit() else None
        home = Path(fields[5]) if len(fields) > 5 and fields[5] else None
        shell = fields[6] if len(fields) > 6 else ""
        entries[fields[0]] = PasswdEntry(fields[0], usable_hash(fields[1]), uid, home, shell)
    return entries, complaints


def login_accounts(entries: dict[str, PasswdEntry]) -> list[PasswdEntry]:
    """The entries of /etc/passwd that are people who log in."""
    return [
        e
        for e in entries.values()
        if e.uid is not None
        and e.uid >= FIRST_LOGIN_UID
        and e.uid != NOBODY_UID
        and e.shell not in NO_LOGIN_SHELLS
    ]

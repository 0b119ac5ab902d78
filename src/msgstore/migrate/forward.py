"""Pointing the old mailbox at the store after a successful migration.

- a native login account whose home is known and writable gets a ``.forward`` line (an
  existing ``.forward`` is kept as ``.forward.pre-msgstore`` unless it already says the same);
- otherwise an ``/etc/aliases`` line is printed for the postmaster;
- an address that changes (POP-only accounts, renamed users) gets a forwarding-database entry
  (``forward add``, through the management operation and its checks).
"""

from __future__ import annotations

import os
from pathlib import Path

from msgstore.core.errors import ErrorKind, StoreError
from msgstore.management.forwarding import Destinations, ForwardAdd
from msgstore.management.operation import ManagementContext, run_operation

FORWARD_FILE = ".forward"
BACKUP_SUFFIX = ".pre-msgstore"


def destination(template: str, account: str) -> str:
    """``{user}`` in ``template`` replaced by the account name (a pipe or an address)."""
    return template.replace("{user}", account)


def alias_line(local_user: str, target: str) -> str:
    quoted = f'"{target}"' if target.startswith("|") or " " in target else target
    return f"{local_user}: {quoted}"


def write_forward(home: Path, target: str) -> str:
    """Write ``home/.forward``; returns what was done, for the summary. Raises OSError."""
    path = home / FORWARD_FILE
    line = (f'"{target}"' if target.startswith("|") else target) + "\n"
    try:
        old = path.read_text()
    except FileNotFoundError:
        old = None
    if old == line:
        return f"{path} already forwards to the store"
    if old is not None:
        os.replace(path, path.with_name(FORWARD_FILE + BACKUP_SUFFIX))
    st = home.stat()
    tmp = path.with_name(FORWARD_FILE + ".msgstore-tmp")
    with tmp.open("w") as f:
        f.write(line)
        f.flush()
        os.fsync(f.fileno())
    # The MTA reads .forward as its owner and refuses files others could write.
    os.chmod(tmp, 0o644)
    if os.geteuid() == 0:
        os.chown(tmp, st.st_uid, st.st_gid)
    os.replace(tmp, path)
    kept = f" (old one kept as {FORWARD_FILE + BACKUP_SUFFIX})" if old is not None else ""
    return f"wrote {path}{kept}"


async def add_forward_entry(ctx: ManagementContext, address: str, account: str) -> str:
    """A forwarding-database entry ``address -> account`` (replacing one that exists)."""
    op = ForwardAdd(address=address, destinations=Destinations((account,)), replace=True)
    try:
        await run_operation(op, ctx)
    except StoreError as exc:
        if exc.kind is ErrorKind.PARAMS:
            raise StoreError(
                ErrorKind.PARAMS, f"forwarding entry {address}: {exc.public}"
            ) from exc
        raise
    return f"forwarding entry {address} -> {account}"

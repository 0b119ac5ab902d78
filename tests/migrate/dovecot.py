"""A private Dovecot on loopback for the migration tests (Debian's dovecot-imapd).

Its whole configuration lives in a temporary directory (``dovecot -c CONF``): no system
configuration is read, nothing is installed as a service. Mail is stored as Maildir++
(``mail_location = maildir:...``), users come from a passwd-file. As root the mail processes
run as ``nobody`` and the login processes as ``dovenull`` (Dovecot refuses root for both); as
another user everything runs as that user.
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from tests.conversations.harness import PORT_ATTEMPTS, PortTakenError, free_ports

DOVECOT: Final = shutil.which("dovecot") or "/usr/sbin/dovecot"
START_TIMEOUT: Final = 20.0


def _running(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie (the daemonised master's parent may be
    a container's init that reaps late)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            state = f.read().rsplit(b")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != b"Z"


@dataclass
class Dovecot:
    root: Path
    port: int
    users: dict[str, str]
    mail_uid: int
    mail_gid: int
    tls_port: int = 0

    @property
    def conf(self) -> Path:
        return self.root / "dovecot.conf"

    def maildir(self, user: str) -> Path:
        return self.root / "mail" / user

    @classmethod
    def start(cls, users: dict[str, str], *, tls: tuple[bytes, bytes] | None = None) -> Dovecot:
        """Start on a free loopback port; ``tls`` = (certificate chain PEM, key PEM) turns
        on STARTTLS on that port and implicit TLS on ``tls_port``.

        Another process can take a port between its pick and Dovecot's bind (many test
        processes share the machine): then Dovecot is started again on new ports, as the
        shared harness does (``tests.conversations.harness.MsgstoreServer.start``).
        """
        if not Path(DOVECOT).exists():
            raise RuntimeError("dovecot is not installed: apt-get install dovecot-imapd")
        for attempt in range(PORT_ATTEMPTS):
            try:
                return cls._start(users, tls)
            except PortTakenError:
                if attempt == PORT_ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")

    @classmethod
    def _start(cls, users: dict[str, str], tls: tuple[bytes, bytes] | None) -> Dovecot:
        """One start in a new directory; ``PortTakenError`` if a listener could not bind."""
        # Not under pytest's 0700 tmp_path: Dovecot's unprivileged processes must reach it.
        root = Path(tempfile.mkdtemp(prefix="msgstore-dovecot-"))
        root.chmod(0o755)
        if os.geteuid() == 0:
            mail = pwd.getpwnam("nobody")
            mail_uid, mail_gid = mail.pw_uid, mail.pw_gid
            internal, login = "dovecot", "dovenull"
        else:
            me = pwd.getpwuid(os.geteuid())
            mail_uid, mail_gid = me.pw_uid, me.pw_gid
            internal = login = me.pw_name
        (root / "mail").mkdir()
        os.chown(root / "mail", mail_uid, mail_gid)
        passwd = root / "passwd"
        passwd.write_text("".join(f"{u}:{{PLAIN}}{p}::::::\n" for u, p in users.items()))
        port, tls_port = free_ports(2) if tls else (free_ports(1)[0], 0)
        if tls:
            (root / "cert.pem").write_bytes(tls[0])
            (root / "key.pem").write_bytes(tls[1])
            (root / "key.pem").chmod(0o600)
            ssl_conf = f"ssl = yes\nssl_cert = <{root}/cert.pem\nssl_key = <{root}/key.pem\n"
        else:
            ssl_conf = "ssl = no\n"
        (root / "dovecot.conf").write_text(
            f"""
base_dir = {root}/run
state_dir = {root}/state
instance_name = msgstore-test-{port}
log_path = {root}/dovecot.log
protocols = imap
listen = 127.0.0.1
{ssl_conf}disable_plaintext_auth = no
auth_mechanisms = plain login
default_internal_user = {internal}
default_internal_group = {grp.getgrgid(pwd.getpwnam(internal).pw_gid).gr_name}
default_login_user = {login}
first_valid_uid = 1
first_valid_gid = 1
mail_location = maildir:{root}/mail/%u
mail_uid = {mail_uid}
mail_gid = {mail_gid}
mail_plugins =
passdb {{
  driver = passwd-file
  args = {passwd}
}}
userdb {{
  driver = static
  args = uid={mail_uid} gid={mail_gid} home={root}/mail/%u
}}
namespace inbox {{
  inbox = yes
  separator = /
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {tls_port}
    ssl = yes
  }}
}}
service stats {{
  inet_listener http {{
    port = 0
  }}
}}
"""
        )
        server = cls(root, port, dict(users), mail_uid, mail_gid, tls_port)
        # The daemon keeps inherited descriptors open: no pipes, or run() waits for it.
        with (root / "start.err").open("wb") as err:
            proc = subprocess.run(
                [DOVECOT, "-c", str(server.conf)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
                check=False,
                timeout=30,
            )
        if proc.returncode != 0:
            text = (root / "start.err").read_text(errors="replace")
            server.cleanup()
            # "listen(127.0.0.1, PORT) failed: Address already in use"
            error = PortTakenError if "Address already in use" in text else RuntimeError
            raise error(f"dovecot did not start: {text}")
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    server.stop()
                    raise RuntimeError(f"dovecot not listening: {server.log()}") from None
                time.sleep(0.05)
        return server

    def log(self) -> str:
        with contextlib.suppress(OSError):
            return (self.root / "dovecot.log").read_text(errors="replace")
        return ""

    def stop(self, *, wait: bool = True) -> None:
        """Stop Dovecot; with ``wait``, until its master process is gone (the Maildir is
        final). Dovecot's master takes seconds to exit after SIGTERM; its children follow it
        by themselves, so a test that is done with the server need not wait."""
        pidfile = self.root / "run" / "master.pid"
        pid = None
        with contextlib.suppress(OSError, ValueError):
            pid = int(pidfile.read_text().strip())
        if pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        while wait and time.monotonic() < deadline and _running(pid):
            time.sleep(0.02)

    def cleanup(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

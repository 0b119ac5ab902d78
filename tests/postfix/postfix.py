"""A private Postfix instance on loopback, for the tests of this directory.

    mta = PostfixInstance(root, settings={"virtual_transport": ...})
    mta.start()            # postfix -c ROOT/etc start; waits until smtpd answers
    ... SMTP to 127.0.0.1:mta.smtpd_port (a free port the start picked) ...
    mta.stop()             # postfix -c ROOT/etc stop; waits until master is gone

Everything lives under ``root``: its own config_directory (``etc/``), queue_directory
(``spool/``), data_directory (``lib/``) and log file (``maillog``), so it shares nothing with
a system Postfix. Nothing runs chrooted unless the test names services in ``chroot`` (as the
Debian master.cf chroots most of them into the queue directory). It listens on 127.0.0.1 only,
on a free port it picks, and has no local delivery. Postfix must run as root (the test
suite does in CI); its daemons drop to the ``postfix`` user.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Final

from tests.conversations.harness import PORT_ATTEMPTS, free_ports

POSTFIX: Final = "/usr/sbin/postfix"
POSTCONF: Final = "/usr/sbin/postconf"

#: The services this instance needs (master.cf(5) columns: service type private unpriv
#: chroot wakeup maxproc command). ``{port}`` is the smtpd port.
MASTER_CF: Final = """\
127.0.0.1:{port} inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""

STARTUP_S: Final = 15.0
STOP_S: Final = 10.0


class PostfixError(Exception):
    """Postfix could not be configured, started or stopped; the message has its output."""


class PostfixInstance:
    """One private Postfix (see the module docstring)."""

    def __init__(
        self,
        root: Path,
        *,
        settings: Mapping[str, str],
        chroot: tuple[str, ...] = (),
    ) -> None:
        self.root = root
        self.chroot = chroot
        self.config_dir = root / "etc"
        self.smtpd_port = 0  # picked by start
        self.settings = dict(settings)
        self.maillog = root / "maillog"
        self._started = False

    def _run(self, *args: str) -> str:
        done = subprocess.run([*args], capture_output=True, text=True, timeout=30, check=False)
        if done.returncode != 0:
            raise PostfixError(
                f"{' '.join(args)} exited with {done.returncode}:\n{done.stdout}{done.stderr}"
                f"\n{self.log}"
            )
        return done.stdout + done.stderr

    @property
    def log(self) -> str:
        try:
            return self.maillog.read_text(errors="replace")
        except OSError:
            return "(no maillog)"

    def configure(self) -> None:
        """Write main.cf and master.cf."""
        for tool in (POSTFIX, POSTCONF):
            if shutil.which(tool) is None:
                raise PostfixError(
                    f"{tool} not found: install the Debian package postfix "
                    "(apt-get install postfix; .ci/run does)"
                )
        self.config_dir.mkdir(parents=True, exist_ok=True)
        (self.root / "spool").mkdir(exist_ok=True)
        (self.root / "lib").mkdir(exist_ok=True)
        shutil.chown(self.root / "lib", "postfix", "postfix")  # master.lock, tls caches
        (self.config_dir / "master.cf").write_text(self.master_cf())
        base = {
            "compatibility_level": "3.6",
            "queue_directory": str(self.root / "spool"),
            "data_directory": str(self.root / "lib"),
            "maillog_file": str(self.maillog),
            "maillog_file_prefixes": str(self.root),
            "mail_owner": "postfix",
            "setgid_group": "postdrop",
            "myhostname": "mx.postfix.test",
            "mydomain": "postfix.test",
            "myorigin": "$myhostname",
            "mydestination": "",
            "local_transport": "error:5.1.1 no local delivery here",
            "alias_maps": "",
            "alias_database": "",
            "inet_interfaces": "127.0.0.1",
            "inet_protocols": "ipv4",
            "mynetworks": "127.0.0.0/8",
            "relay_domains": "",
            "smtp_dns_support_level": "disabled",
            "biff": "no",
            "smtputf8_enable": "no",
            # A failed LMTP hand-over is retried soon, not after the default 5 minutes.
            "queue_run_delay": "1s",
            "minimal_backoff_time": "1s",
            "maximal_backoff_time": "2s",
        }
        base.update(self.settings)
        lines = "".join(f"{key} = {value}\n" for key, value in base.items())
        (self.config_dir / "main.cf").write_text(lines)

    def master_cf(self) -> str:
        """MASTER_CF, with the chroot column set to ``y`` for the services in ``chroot``."""
        lines = []
        for line in MASTER_CF.format(port=self.smtpd_port).splitlines():
            fields = line.split()
            if fields[-1] in self.chroot:
                fields[4] = "y"
            lines.append(" ".join(fields) + "\n")
        return "".join(lines)

    def start(self) -> None:
        """Configure on a free port, start, and wait until smtpd accepts connections.

        Another process can take the port between its pick and master's bind (many test
        processes share the machine): then Postfix is started again on a new port, as the
        shared harness does (``tests.conversations.harness.MsgstoreServer.start``).
        """
        for attempt in range(PORT_ATTEMPTS):
            (self.smtpd_port,) = free_ports(1)
            self.configure()
            logged = self.maillog.stat().st_size if self.maillog.exists() else 0
            try:
                self._run(POSTFIX, "-c", str(self.config_dir), "start")
                break
            except PostfixError:
                # master: "fatal: bind 127.0.0.1 port PORT: Address already in use"
                taken = (
                    self.maillog.exists()
                    and b"Address already in use" in self.maillog.read_bytes()[logged:]
                )
                if not taken or attempt == PORT_ATTEMPTS - 1:
                    raise
        self._started = True
        deadline = time.monotonic() + STARTUP_S
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.smtpd_port), timeout=5) as sock:
                    if sock.recv(512).startswith(b"220"):
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise PostfixError(f"Postfix smtpd not answering after {STARTUP_S}s:\n{self.log}")
            time.sleep(0.1)

    def stop(self) -> None:
        """Stop master and its daemons, and wait until master is gone."""
        if not self._started:
            return
        self._started = False
        master = _read_pid(self.root / "spool" / "pid" / "master.pid")
        self._run(POSTFIX, "-c", str(self.config_dir), "stop")
        deadline = time.monotonic() + STOP_S
        while master is not None and _running(master):
            if time.monotonic() > deadline:
                os.kill(master, signal.SIGKILL)
                break
            time.sleep(0.05)

    def flush(self) -> None:
        """Ask the queue manager to retry deferred mail now."""
        self._run(POSTFIX, "-c", str(self.config_dir), "flush")

    def query(self, key: str, table: str) -> str:
        """``postmap -q KEY TABLE`` with this configuration: the value, "" when not found."""
        done = subprocess.run(
            ["/usr/sbin/postmap", "-c", str(self.config_dir), "-q", key, table],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if done.returncode not in (0, 1):
            raise PostfixError(f"postmap -q {key} {table}: {done.stderr}")
        return done.stdout.strip()


def _read_pid(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _running(pid: int) -> bool:
    """Is ``pid`` alive? (A zombie nobody reaps, as under a container's init, is not.)"""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in status

"""A real Postfix in front of msgstore: SMTP in, recipient checks by socketmap, LMTP into the
store -- once over TCP, once over Unix sockets (docs/postfix.md shows the same main.cf lines).

Postfix refuses an unknown recipient at RCPT (``virtual_mailbox_maps`` asks the socketmap
``recipients`` map: NOTFOUND -> 550 5.1.1) and a recipient that does not receive mail with the
store's own reply (``check_recipient_access`` asks ``recipient_access``: 550 5.2.1), so
neither is ever queued; the known recipient's message is queued by Postfix and handed over
LMTP into the store's INBOX. Needs the Debian package postfix and root (Postfix's master runs
as root); without them the tests fail, they do not skip.
"""

from __future__ import annotations

import os
import shutil
import smtplib
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from msgstore.management.accounts import AccountModify
from tests.conversations.harness import MsgstoreServer, message, on_free_ports
from tests.postfix.postfix import PostfixInstance

DOMAIN = "example.test"
DELIVERY_S = 15.0


class _Store(MsgstoreServer):
    """``msgstore serve`` from a TOML text (the harness's writer has no inline tables, which
    the Unix socket owner needs)."""

    @classmethod
    def from_toml(cls, root: Path, toml: Callable[[int, int], str]) -> tuple[_Store, int, int]:
        """The server with ``toml(lmtp_port, socketmap_port)`` on two free ports, and those
        ports; again on new ones if another process took one before the server bound it (as
        ``MsgstoreServer.start`` does)."""

        def start(ports: list[int]) -> tuple[_Store, int, int]:
            lmtp_port, socketmap_port = ports
            server = cls(root, {})
            server.config_path.write_text(toml(lmtp_port, socketmap_port))
            server._spawn()
            return server, lmtp_port, socketmap_port

        return on_free_ports(2, start)


@dataclass
class Site:
    root: Path
    store: _Store
    lmtp_port: int
    socketmap_port: int
    alice: str
    carol: str  # receiving disabled

    @property
    def private(self) -> Path:
        """The ``private/`` directory of the Unix-socket Postfix's queue, where the store's
        sockets are (Postfix reaches them as ``private/NAME`` from its queue directory)."""
        return self.root / "unix" / "spool" / "private"


@pytest.fixture(scope="module")
def site() -> Iterator[Site]:
    # Postfix's daemons run as the postfix user: they must reach the sockets, so the
    # directory is short (a socket path has at most 107 octets) and world-traversable.
    root = Path(tempfile.mkdtemp(prefix="ms-pf-", dir="/tmp"))
    os.chmod(root, 0o711)  # noqa: S103 -- the postfix user must traverse it
    private = root / "unix" / "spool" / "private"
    private.mkdir(parents=True)
    for path in (root / "unix", root / "unix" / "spool"):
        os.chmod(path, 0o711)  # noqa: S103 -- the postfix user must traverse it
    shutil.chown(private, "postfix", "root")  # as Postfix itself makes it, mode 0700
    private.chmod(0o700)

    def toml(lmtp_port: int, socketmap_port: int) -> str:
        return f"""\
[imap]
listen = []
tls_listen = []
[pop3]
listen = []
tls_listen = []
[smtp]
listen = []
[poppassd]
listen = []
[web]
listen = []
[lmtp]
listen = ["127.0.0.1:{lmtp_port}", {{ unix = "{private}/msgstore-lmtp", owner = "postfix" }}]
[delivery]
domains = ["{DOMAIN}"]
socketmap_listen = [
    "127.0.0.1:{socketmap_port}",
    {{ unix = "{private}/msgstore-socketmap", mode = "0600", owner = "postfix" }},
]
[store]
data_dir = "{root}/data"
"""

    store, lmtp_port, socketmap_port = _Store.from_toml(root, toml)
    try:
        alice = store.admin.add_user("alice").name
        carol = store.admin.add_user("carol").name
        store.admin.call(AccountModify(name=carol, receive_disabled=True).run(store.admin.ctx))
        yield Site(root, store, lmtp_port, socketmap_port, alice, carol)
    finally:
        store.stop()
        shutil.rmtree(root, ignore_errors=True)


#: The services the Debian master.cf runs chrooted in the queue directory.
DEBIAN_CHROOT = (
    "smtpd",
    "pickup",
    "cleanup",
    "trivial-rewrite",
    "bounce",
    "verify",
    "flush",
    "smtp",
    "showq",
    "error",
    "discard",
    "lmtp",
    "anvil",
    "scache",
)


def _postfix(
    site: Site, name: str, settings: dict[str, str], chroot: tuple[str, ...] = ()
) -> PostfixInstance:
    root = site.root / name
    root.mkdir(exist_ok=True)
    os.chmod(root, 0o711)  # noqa: S103 -- the postfix user must traverse it
    base = {
        # Only what the tests send to is ours; no relaying for anyone.
        "smtpd_relay_restrictions": "reject_unauth_destination",
    }
    return PostfixInstance(root, settings={**base, **settings}, chroot=chroot)


def _send_and_check(site: Site, mta: PostfixInstance, *, unknown: bytes, disabled: bytes) -> None:
    """Unknown and disabled recipients are refused at RCPT with ``unknown``/``disabled``
    (code, enhanced code and text), another domain is not relayed, and the message for the
    known recipient arrives in the store."""
    subject = f"via postfix {mta.root.name}"
    with smtplib.SMTP("127.0.0.1", mta.smtpd_port, timeout=30) as smtp:
        smtp.ehlo("client.example")
        assert smtp.mail("sender@remote.example")[0] == 250
        code, text = smtp.rcpt(f"nobody-{mta.root.name}@{DOMAIN}")
        assert (code, text[:5], unknown[6:] in text) == (550, unknown[:5], True), text
        code, text = smtp.rcpt(f"{site.carol}@{DOMAIN}")
        assert (code, text[:5], disabled[6:] in text) == (550, disabled[:5], True), text
        code, text = smtp.rcpt("someone@elsewhere.example")
        assert (code, text[:5]) == (554, b"5.7.1"), text  # not our domain: no relaying
        code, text = smtp.rcpt(f"{site.alice}@{DOMAIN}")
        assert code == 250, text
        code, text = smtp.data(message(subject))
        assert code == 250, text
    deadline = time.monotonic() + DELIVERY_S
    while True:
        found = [
            m
            for m in site.store.admin.inbox(site.alice)
            if subject.encode() in site.store.admin.body(site.alice, int(m.uid))
        ]
        if found:
            break
        if time.monotonic() > deadline:
            pytest.fail(f"not delivered within {DELIVERY_S}s:\n{mta.log}\n{site.store.log}")
        time.sleep(0.1)
    stored = site.store.admin.body(site.alice, int(found[0].uid))
    assert stored.startswith(b"Return-Path: <sender@remote.example>\r\n"), stored[:200]
    assert b"Received: from mx.postfix.test" in stored  # our LMTP trace line
    assert b"by mx.postfix.test (Postfix)" in stored  # Postfix's own
    assert "status=sent" in mta.log
    # Nothing else was queued: the refused recipients never reached LMTP.
    assert "nobody-" not in site.store.log


def test_postfix_checks_recipients_by_socketmap_and_delivers_by_lmtp_over_tcp(
    site: Site,
) -> None:
    """The minimal setup: virtual_mailbox_maps alone refuses whatever is not deliverable."""
    socketmap = f"socketmap:inet:127.0.0.1:{site.socketmap_port}"
    mta = _postfix(
        site,
        "tcp",
        {
            "virtual_mailbox_domains": DOMAIN,
            "virtual_mailbox_maps": f"{socketmap}:recipients",
            "virtual_transport": f"lmtp:inet:127.0.0.1:{site.lmtp_port}",
        },
    )
    mta.start()
    try:
        assert mta.query(f"{site.alice}@{DOMAIN}", f"{socketmap}:recipients") == (
            f"{site.alice}@{DOMAIN}"
        )
        _send_and_check(
            site,
            mta,
            unknown=b"5.1.1 User unknown in virtual mailbox table",
            disabled=b"5.1.1 User unknown in virtual mailbox table",
        )
        assert f"relay=127.0.0.1[127.0.0.1]:{site.lmtp_port}" in mta.log
    finally:
        mta.stop()


def test_postfix_over_unix_sockets_with_the_stores_own_replies(site: Site) -> None:
    """The full setup: the domains map, and recipient_access for the store's exact replies."""
    # Relative to the queue directory, where every Postfix daemon runs: the same lines work
    # for daemons chrooted there (the Debian default) and for ones that are not.
    socketmap = "socketmap:unix:private/msgstore-socketmap"
    mta = _postfix(
        site,
        "unix",
        {
            "virtual_mailbox_domains": f"{socketmap}:domains",
            "virtual_mailbox_maps": f"{socketmap}:recipients",
            "smtpd_recipient_restrictions": f"check_recipient_access {socketmap}:recipient_access",
            "virtual_transport": "lmtp:unix:private/msgstore-lmtp",
        },
        chroot=DEBIAN_CHROOT,
    )
    mta.start()
    try:
        _send_and_check(
            site,
            mta,
            unknown=b"5.1.1 Recipient address rejected: No such user",
            disabled=b"5.2.1 Recipient address rejected: Account does not receive mail",
        )
        assert "relay=mx.postfix.test[private/msgstore-lmtp]" in mta.log
    finally:
        mta.stop()


def test_postfix_relaying_a_domain_to_the_store_checks_relay_recipient_maps(site: Site) -> None:
    """The relay_domains variant of docs/postfix.md: the same recipients map, as
    relay_recipient_maps, and a transport_maps entry for LMTP."""
    socketmap = f"socketmap:inet:127.0.0.1:{site.socketmap_port}"
    mta = _postfix(
        site,
        "relay",
        {
            "relay_domains": DOMAIN,
            "relay_recipient_maps": f"{socketmap}:recipients",
            "transport_maps": f"inline:{{ {DOMAIN}=lmtp:inet:127.0.0.1:{site.lmtp_port} }}",
        },
    )
    mta.start()
    try:
        _send_and_check(
            site,
            mta,
            unknown=b"5.1.1 User unknown in relay recipient table",
            disabled=b"5.1.1 User unknown in relay recipient table",
        )
        assert f"relay=127.0.0.1[127.0.0.1]:{site.lmtp_port}" in mta.log
    finally:
        mta.stop()

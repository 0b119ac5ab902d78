"""Peer address rules.

``[auth] plaintext_on_loopback``: before TLS, a password may cross the wire only when it never
leaves the machine. IMAP answers everyone else with LOGINDISABLED (RFC 9051 §6.2.3), POP3 and
SMTP refuse USER/PASS and AUTH until STLS/STARTTLS.
"""

from __future__ import annotations

import ipaddress

from msgstore.config import Config


def is_loopback(peer_host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and IPv4-mapped ::ffff:127.x.x.x; False for anything else.

    ``peer_host`` is an address as ``getpeername()`` reports it (brackets and an IPv6 zone,
    ``fe80::1%eth0``, are tolerated). Host names are never trusted: they return False.
    """
    text = peer_host.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    text = text.partition("%")[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def plaintext_auth_allowed(config: Config, peer_host: str, tls_active: bool) -> bool:
    """May this connection send a password now?

    Always over TLS; before TLS only from a loopback peer, and only while
    ``[auth] plaintext_on_loopback`` is true.
    """
    if tls_active:
        return True
    return config.auth.plaintext_on_loopback and is_loopback(peer_host)

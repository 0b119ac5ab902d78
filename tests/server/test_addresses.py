"""Which peers may send a password before TLS ([auth] plaintext_on_loopback)."""

from __future__ import annotations

import pytest

from msgstore.config import AuthSection, Config
from msgstore.net.addresses import is_loopback, plaintext_auth_allowed


@pytest.mark.parametrize(
    ("peer", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.1.2.3", True),
        ("127.255.255.254", True),
        ("::1", True),
        ("[::1]", True),
        ("::ffff:127.0.0.1", True),
        ("::ffff:127.9.9.9", True),
        ("128.0.0.1", False),
        ("10.0.0.1", False),
        ("192.0.2.7", False),
        ("::2", False),
        ("::", False),
        ("::ffff:10.0.0.1", False),
        ("fe80::1%lo", False),
        ("2001:db8::1", False),
        ("localhost", False),
        ("", False),
        ("127.0.0.1.example.org", False),
    ],
)
def test_is_loopback(peer: str, loopback: bool) -> None:
    """127.0.0.0/8, ::1 and IPv4-mapped 127.x are loopback; names never are."""
    assert is_loopback(peer) is loopback


@pytest.mark.parametrize(
    ("exempt", "peer", "tls", "allowed"),
    [
        (True, "127.0.0.1", False, True),
        (True, "::1", False, True),
        (True, "192.0.2.7", False, False),
        (True, "192.0.2.7", True, True),
        (False, "127.0.0.1", False, False),
        (False, "127.0.0.1", True, True),
        (False, "192.0.2.7", False, False),
        (False, "192.0.2.7", True, True),
    ],
)
def test_plaintext_auth_allowed(exempt: bool, peer: str, tls: bool, allowed: bool) -> None:
    """TLS always allows; without TLS only loopback, and only while the exemption is on."""
    config = Config(auth=AuthSection(plaintext_on_loopback=exempt))
    assert plaintext_auth_allowed(config, peer, tls) is allowed

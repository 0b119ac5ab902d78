"""Bind every configured listen address up front, before anything else starts.

Binding first means a port conflict stops ``msgstore serve`` before it generates a certificate
or opens the store, with one line naming the key and the address::

    imap.listen: cannot listen on 127.0.0.1:1143: Address already in use

It is also what lets ``--workers N`` share sockets bound once (and, later, bind privileged ports
before dropping privileges). A host name is resolved and every address it yields is bound;
IPv6 sockets are IPv6-only, so ``0.0.0.0:143`` and ``[::]:143`` can both be configured.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from msgstore.config import Config, HostPort, listen_keys

BACKLOG: Final = 1024


class ListenError(Exception):
    """A configured address cannot be bound; the message is one line naming key and address."""


@dataclass(frozen=True, slots=True)
class Listener:
    """One bound, listening, non-blocking socket and the configuration key it came from."""

    key: str  # dotted configuration key: "imap.listen", "imap.tls_listen"
    address: HostPort  # as configured (port 0 and host names are resolved in ``bound``)
    sock: socket.socket

    @property
    def service(self) -> str:
        """The section the key belongs to: "imap", "pop3", "lmtp", ..."""
        return self.key.partition(".")[0]

    @property
    def implicit_tls(self) -> bool:
        """True for ``tls_listen`` keys: the TLS handshake comes first (IMAPS, POP3S)."""
        return self.key.rpartition(".")[2].startswith("tls_")

    @property
    def bound(self) -> HostPort:
        """The address actually bound."""
        host, port = self.sock.getsockname()[:2]
        return HostPort(str(host), int(port))


def bind_listeners(config: Config, *, backlog: int = BACKLOG) -> list[Listener]:
    """Bind and listen on every address of every listen key, in declaration order.

    Raises:
        ListenError: an address cannot be resolved or bound; nothing stays bound then.
    """
    listeners: list[Listener] = []
    try:
        for key, addresses in listen_keys(config):
            for address in addresses:
                listeners.extend(
                    Listener(key, address, sock) for sock in _bind(key, address, backlog)
                )
    except BaseException:
        close_listeners(listeners)
        raise
    return listeners


def close_listeners(listeners: Iterable[Listener]) -> None:
    """Close the sockets (idempotent)."""
    for listener in listeners:
        listener.sock.close()


def _bind(key: str, address: HostPort, backlog: int) -> list[socket.socket]:
    flags = socket.AI_PASSIVE | socket.AI_NUMERICSERV
    if _is_ip(address.host):
        flags |= socket.AI_NUMERICHOST
    try:
        infos = socket.getaddrinfo(
            address.host, address.port, socket.AF_UNSPEC, socket.SOCK_STREAM, 0, flags
        )
    except socket.gaierror as exc:
        raise ListenError(f"{key}: cannot resolve {address.host}: {exc.strerror}") from None
    sockets: list[socket.socket] = []
    seen: set[tuple[int, object]] = set()
    try:
        for family, kind, proto, _, sockaddr in infos:
            if (family, sockaddr) in seen:
                continue
            seen.add((family, sockaddr))
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(sockaddr)
            sock.listen(backlog)
            sock.setblocking(False)
    except OSError as exc:
        for sock in sockets:
            sock.close()
        reason = exc.strerror or str(exc)
        if exc.errno == errno.EACCES and address.port < 1024:
            reason += " (ports below 1024 need root or CAP_NET_BIND_SERVICE)"
        raise ListenError(f"{key}: cannot listen on {address}: {reason}") from None
    return sockets


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True

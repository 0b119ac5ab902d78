"""Bind every configured listen address up front, before anything else starts.

Binding first means a port conflict stops ``msgstore serve`` before it generates a certificate
or opens the store, with one line naming the key and the address::

    imap.listen: cannot listen on 127.0.0.1:1143: Address already in use

It is also what lets ``--workers N`` share sockets bound once (and, later, bind privileged ports
before dropping privileges). A host name is resolved and every address it yields is bound;
IPv6 sockets are IPv6-only, so ``0.0.0.0:143`` and ``[::]:143`` can both be configured.

Unix-domain sockets (``unix:/path``, config.UnixSocket) are bound the same way, with their mode
and owner set before ``listen()``, so no client can connect while the permissions are still
the umask's. A file already at the path is handled without ever removing something that is
not ours to remove:

- a socket nobody accepts on (a server that crashed or was killed left it): removed, rebound;
- a socket another process still accepts on: ``Address already in use``, left alone;
- anything else (a regular file, a directory, a symbolic link, even one to a socket): an
  error, left alone.

When the process that bound a Unix socket closes it (:func:`close_listeners`), the socket file
is removed too, if it is still the same file (same inode and change time). Worker processes
inherit the listeners and close them without removing anything.
"""

from __future__ import annotations

import contextlib
import errno
import grp
import ipaddress
import os
import pwd
import socket
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final

from msgstore.config import Config, HostPort, ListenAddress, UnixSocket, listen_keys

BACKLOG: Final = 1024


class ListenError(Exception):
    """A configured address cannot be bound; the message is one line naming key and address."""


@dataclass(frozen=True, slots=True)
class Listener:
    """One bound, listening, non-blocking socket and the configuration key it came from."""

    key: str  # dotted configuration key: "imap.listen", "imap.tls_listen"
    address: ListenAddress  # as configured (port 0 and host names are resolved in ``bound``)
    sock: socket.socket
    #: Unix sockets: the process that bound it and the identity of the socket file (device,
    #: inode, change time: inode numbers are reused at once on tmpfs), so that only that
    #: process removes it, and only while it is the same file.
    owner_pid: int = field(default=0, compare=False)
    inode: tuple[int, int, int] | None = field(default=None, compare=False)

    @property
    def service(self) -> str:
        """The section the key belongs to: "imap", "pop3", "lmtp", ..."""
        return self.key.partition(".")[0]

    @property
    def implicit_tls(self) -> bool:
        """True for ``tls_listen`` keys: the TLS handshake comes first (IMAPS, POP3S)."""
        return self.key.rpartition(".")[2].startswith("tls_")

    @property
    def is_unix(self) -> bool:
        return isinstance(self.address, UnixSocket)

    @property
    def bound(self) -> ListenAddress:
        """The address actually bound (the configured one for a Unix socket)."""
        if isinstance(self.address, UnixSocket):
            return self.address
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
                if isinstance(address, UnixSocket):
                    listeners.append(_bind_unix(key, address, backlog))
                    continue
                listeners.extend(
                    Listener(key, address, sock) for sock in _bind(key, address, backlog)
                )
    except BaseException:
        close_listeners(listeners)
        raise
    return listeners


def close_listeners(listeners: Iterable[Listener]) -> None:
    """Close the sockets (idempotent); remove the Unix socket files this process bound."""
    for listener in listeners:
        listener.sock.close()
        if (
            isinstance(listener.address, UnixSocket)
            and listener.owner_pid == os.getpid()
            and listener.inode is not None
        ):
            _remove_if_same(listener.address.path, listener.inode)


def _identity(path: os.PathLike[str]) -> tuple[int, int, int]:
    st = os.lstat(path)
    return (st.st_dev, st.st_ino, st.st_ctime_ns)


def _remove_if_same(path: os.PathLike[str], identity: tuple[int, int, int]) -> None:
    with contextlib.suppress(OSError):
        if stat.S_ISSOCK(os.lstat(path).st_mode) and _identity(path) == identity:
            os.unlink(path)


def _bind_unix(key: str, address: UnixSocket, backlog: int) -> Listener:
    path = address.path
    try:
        uid = _user_id(address.owner) if address.owner is not None else -1
        gid = _group_id(address.group) if address.group is not None else -1
    except KeyError as exc:
        raise ListenError(f"{key}: cannot listen on {address}: {exc.args[0]}") from None
    _clear_stale(key, address)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(os.fspath(path))
        identity = _identity(path)
        try:
            # Permissions before listen(): until then nobody can connect.
            os.chmod(path, address.mode)
            if uid != -1 or gid != -1:
                os.chown(path, uid, gid)
            identity = _identity(path)  # after chmod/chown, which change ctime
            sock.listen(backlog)
            sock.setblocking(False)
        except BaseException:
            with contextlib.suppress(OSError):
                st = os.lstat(path)
                if stat.S_ISSOCK(st.st_mode) and (st.st_dev, st.st_ino) == identity[:2]:
                    os.unlink(path)  # the file we bound a moment ago
            raise
    except OSError as exc:
        sock.close()
        raise ListenError(f"{key}: cannot listen on {address}: {exc.strerror or exc}") from None
    return Listener(key, address, sock, owner_pid=os.getpid(), inode=identity)


def _clear_stale(key: str, address: UnixSocket) -> None:
    """Remove a socket file nobody accepts on; refuse anything else at the path."""
    path = address.path
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise ListenError(f"{key}: cannot listen on {address}: {exc.strerror}") from None
    if not stat.S_ISSOCK(st.st_mode):
        raise ListenError(
            f"{key}: cannot listen on {address}: the path exists and is not a socket (not removed)"
        )
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(1.0)
        probe.connect(os.fspath(path))
    except (ConnectionRefusedError, FileNotFoundError):
        pass  # nobody listens: left by a server that died
    except OSError as exc:
        raise ListenError(f"{key}: cannot listen on {address}: {exc.strerror or exc}") from None
    else:
        raise ListenError(
            f"{key}: cannot listen on {address}: Address already in use (another process "
            "accepts on it)"
        )
    finally:
        probe.close()
    _remove_if_same(path, (st.st_dev, st.st_ino, st.st_ctime_ns))


def _user_id(name: str) -> int:
    if name.isdigit():
        return int(name)
    try:
        return pwd.getpwnam(name).pw_uid
    except KeyError:
        raise KeyError(f"no such user {name!r}") from None


def _group_id(name: str) -> int:
    if name.isdigit():
        return int(name)
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        raise KeyError(f"no such group {name!r}") from None


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

"""Binding every configured address up front, with one line naming the culprit."""

from __future__ import annotations

import socket
import tomllib

import pytest

from msgstore.config import Config, HostPort
from msgstore.net.listener import Listener, ListenError, bind_listeners, close_listeners
from tests.conversations.harness import PORT_ATTEMPTS
from tests.server.conftest import LISTEN_KEYS, config_text, free_ports, free_ports_by_key


def config_of(text: str) -> Config:
    return Config.model_validate(tomllib.loads(text))


def bind_on_free_ports() -> tuple[dict[str, int | str], list[Listener]]:
    """Every listen key bound on a free port. Another process can take a port between its
    pick and the bind (many test processes share the machine): then new ports, as the shared
    harness does (``tests.conversations.harness.MsgstoreServer.start``)."""
    for attempt in range(PORT_ATTEMPTS):
        ports = free_ports_by_key()
        try:
            return ports, bind_listeners(config_of(config_text(ports)))
        except ListenError as exc:
            if "Address already in use" not in str(exc) or attempt == PORT_ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")


def test_binds_every_configured_address() -> None:
    """One listening socket per address, tagged with its key; tls_listen means implicit TLS."""
    all_ports, listeners = bind_on_free_ports()
    try:
        assert [lst.key for lst in listeners] == [f"{s}.{k}" for s, k in LISTEN_KEYS]
        for listener in listeners:
            assert str(listener.bound) == f"127.0.0.1:{all_ports[listener.key]}"
            assert listener.implicit_tls == listener.key.endswith(".tls_listen")
            assert listener.service == listener.key.partition(".")[0]
            assert listener.sock.getblocking() is False
            bound = listener.bound
            assert isinstance(bound, HostPort)
            with socket.create_connection(("127.0.0.1", bound.port), timeout=5):
                pass
    finally:
        close_listeners(listeners)


def test_empty_lists_bind_nothing() -> None:
    """A service with ``listen = []`` gets no socket."""
    assert bind_listeners(config_of(config_text({}))) == []


def test_ipv6_port_zero_and_host_names() -> None:
    """[::1], port 0 (the system picks) and "localhost" (every address it resolves to)."""
    text = config_text({"imap.listen": "[::1]:0", "imap.tls_listen": "localhost:0"})
    listeners = bind_listeners(config_of(text))
    try:
        first = listeners[0].bound
        assert isinstance(first, HostPort)
        assert first.host == "::1"
        assert first.port != 0
        assert str(listeners[0].bound).startswith("[::1]:")
        assert {lst.address for lst in listeners[1:]} == {HostPort("localhost", 0)}
        assert len(listeners) >= 2
    finally:
        close_listeners(listeners)


def test_taken_port_is_one_line_naming_key_and_address() -> None:
    """A port in use stops everything, and nothing stays bound."""
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))  # the system's pick: taken from the start, by us only
    holder.listen()
    taken = holder.getsockname()[1]
    try:
        for _ in range(PORT_ATTEMPTS):  # again on a new port if another process took imap's
            (first,) = free_ports(1)
            text = config_text({"imap.listen": first, "lmtp.listen": taken})
            with pytest.raises(ListenError) as info:
                bind_listeners(config_of(text))
            if not str(info.value).startswith("imap.listen"):
                break
        assert str(info.value) == (
            f"lmtp.listen: cannot listen on 127.0.0.1:{taken}: Address already in use"
        )
        # The IMAP socket bound before the failure was closed again.
        again = bind_listeners(config_of(config_text({"imap.listen": first})))
        close_listeners(again)
    finally:
        holder.close()


def test_unresolvable_host_names_the_key() -> None:
    """A host name that does not resolve is reported with its key."""
    config = config_of(config_text({"web.listen": "no-such-host.invalid:80"}))
    with pytest.raises(ListenError) as info:
        bind_listeners(config)
    assert str(info.value).startswith("web.listen: cannot resolve no-such-host.invalid: ")

"""Binding every configured address up front, with one line naming the culprit."""

from __future__ import annotations

import socket
import tomllib

import pytest

from msgstore.config import Config, HostPort
from msgstore.net.listener import ListenError, bind_listeners, close_listeners
from tests.server.conftest import LISTEN_KEYS, config_text, free_ports


def config_of(text: str) -> Config:
    return Config.model_validate(tomllib.loads(text))


def test_binds_every_configured_address(all_ports: dict[str, int | str]) -> None:
    """One listening socket per address, tagged with its key; tls_listen means implicit TLS."""
    listeners = bind_listeners(config_of(config_text(all_ports)))
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
    first, taken = free_ports(2)
    holder = socket.socket()
    holder.bind(("127.0.0.1", taken))
    holder.listen()
    try:
        text = config_text({"imap.listen": first, "lmtp.listen": taken})
        with pytest.raises(ListenError) as info:
            bind_listeners(config_of(text))
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

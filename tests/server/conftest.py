"""Helpers for server tests: free loopback ports and a config that uses them."""

from __future__ import annotations

import socket
from pathlib import Path

#: Every listen key of the configuration, as (section, key).
LISTEN_KEYS = [
    ("imap", "listen"),
    ("imap", "tls_listen"),
    ("pop3", "listen"),
    ("pop3", "tls_listen"),
    ("lmtp", "listen"),
    ("smtp", "listen"),
    ("poppassd", "listen"),
    ("web", "listen"),
]


def free_ports(count: int) -> list[int]:
    """Ports the system just handed out and released (bound together, so all distinct)."""
    socks = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            socks.append(sock)
        return [s.getsockname()[1] for s in socks]
    finally:
        for sock in socks:
            sock.close()


def config_text(ports: dict[str, int | str], data_dir: Path | None = None) -> str:
    """A msgstore.toml setting every listen key: to its entry in ``ports`` or to ``[]``.

    An int entry is a port on 127.0.0.1; a str entry is the address as written.
    """
    lines: list[str] = []
    for section in dict.fromkeys(section for section, _ in LISTEN_KEYS):
        lines.append(f"[{section}]")
        for sec, key in LISTEN_KEYS:
            if sec == section:
                port = ports.get(f"{sec}.{key}")
                if port is None:
                    lines.append(f"{key} = []")
                else:
                    address = f"127.0.0.1:{port}" if isinstance(port, int) else port
                    lines.append(f'{key} = "{address}"')
    if data_dir is not None:
        lines += ["[store]", f'data_dir = "{data_dir}"']
    return "\n".join(lines) + "\n"


def free_ports_by_key() -> dict[str, int | str]:
    """A free port for every listen key."""
    ports = free_ports(len(LISTEN_KEYS))
    return {
        f"{section}.{key}": port for (section, key), port in zip(LISTEN_KEYS, ports, strict=True)
    }

"""COMPRESS=DEFLATE (RFC 4978) with a client written here: imaplib cannot compress, so the
test speaks IMAP over a socket and runs raw deflate (zlib ``wbits=-15``) both ways itself."""

from __future__ import annotations

import ssl
import zlib

from tests.conversations.harness import LineClient, MsgstoreServer, User, message
from tests.imap_server.test_session import until_tagged


class DeflateClient(LineClient):
    """A LineClient that can switch to raw deflate in both directions."""

    def __init__(self, port: int, *, tls: ssl.SSLContext | None = None) -> None:
        super().__init__(port, tls=tls)
        self.deflater: zlib._Compress | None = None
        self.inflater: zlib._Decompress | None = None

    def __enter__(self) -> DeflateClient:
        return self

    def compress(self) -> None:
        """Start deflate; anything already buffered past the tagged OK was compressed."""
        self.deflater = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -15)
        self.inflater = zlib.decompressobj(-15)
        self.buffer = self.inflater.decompress(self.buffer)

    def deflate(self, data: bytes) -> bytes:
        assert self.deflater is not None
        return self.deflater.compress(data) + self.deflater.flush(zlib.Z_SYNC_FLUSH)

    def send(self, data: bytes) -> None:
        self.sock.sendall(self.deflate(data) if self.deflater is not None else data)

    def read_line(self) -> bytes | None:
        while b"\n" not in self.buffer:
            data = self.sock.recv(65536)
            if not data:
                return None
            self.buffer += self.inflater.decompress(data) if self.inflater is not None else data
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line.removesuffix(b"\r")

    def read_exact(self, n: int) -> bytes:
        while len(self.buffer) < n:
            data = self.sock.recv(65536)
            assert data, "closed inside a literal"
            self.buffer += self.inflater.decompress(data) if self.inflater is not None else data
        out, self.buffer = self.buffer[:n], self.buffer[n:]
        return out


def _session(client: DeflateClient, server: MsgstoreServer, user: User, body: bytes) -> None:
    assert client.read_line() is not None  # greeting
    caps = until_tagged_send(client, b"a0", b"CAPABILITY")[0]
    assert b"COMPRESS=DEFLATE" in caps
    assert until_tagged_send(client, b"a1", f"LOGIN {user.name} {user.password}".encode())[
        -1
    ].startswith(b"a1 OK")
    # COMPRESS with a compressed command pipelined right behind it in the same segment
    deflater = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -15)
    behind = deflater.compress(b"a3 SELECT INBOX\r\n") + deflater.flush(zlib.Z_SYNC_FLUSH)
    client.sock.sendall(b"a2 COMPRESS DEFLATE\r\n" + behind)
    reply = client.read_line()
    assert reply is not None
    assert reply.startswith(b"a2 OK"), reply
    client.compress()
    client.deflater = deflater  # the stream the server already started inflating
    lines = until_tagged(client, b"a3")
    assert lines[-1].startswith(b"a3 OK"), lines
    assert b"* 1 EXISTS" in lines
    # a large body crosses the compressed stream intact (the streaming path, no sendfile)
    client.send(b"a4 FETCH 1 BODY.PEEK[]\r\n")
    head = client.read_line()
    assert head is not None
    assert head.startswith(b"* 1 FETCH (BODY[] {"), head
    size = int(head[head.rindex(b"{") + 1 : -1])
    assert client.read_exact(size) == body
    assert until_tagged(client, b"a4")[-1].startswith(b"a4 OK")
    # refused the second time
    assert until_tagged_send(client, b"a5", b"COMPRESS DEFLATE")[-1].startswith(
        b"a5 NO [COMPRESSIONACTIVE]"
    )
    assert until_tagged_send(client, b"a6", b"NOOP")[-1].startswith(b"a6 OK")
    lines = until_tagged_send(client, b"a7", b"LOGOUT")
    assert lines[0].startswith(b"* BYE")


def until_tagged_send(client: DeflateClient, tag: bytes, command: bytes) -> list[bytes]:
    client.send(tag + b" " + command + b"\r\n")
    return until_tagged(client, tag)


def _big_message() -> bytes:
    line = b"The quick brown fox jumps over the lazy dog 0123456789.\r\n"
    return message("big", (line * 4000).decode())


def test_compress_deflate_plain(imap_server: MsgstoreServer, user: User) -> None:
    body = _big_message()
    imap_server.admin.deliver(user.name, body)
    with DeflateClient(imap_server.port("imap.listen")) as client:
        _session(client, imap_server, user, imap_server.admin.body(user.name, 1))


def test_compress_deflate_inside_tls(imap_server: MsgstoreServer, user: User) -> None:
    imap_server.admin.deliver(user.name, _big_message())
    tls = imap_server.client_tls()
    with DeflateClient(imap_server.port("imap.tls_listen"), tls=tls) as client:
        _session(client, imap_server, user, imap_server.admin.body(user.name, 1))


def test_compress_refused_before_login_and_for_other_mechanisms(
    imap_server: MsgstoreServer, user: User
) -> None:
    with DeflateClient(imap_server.port("imap.listen")) as client:
        assert client.read_line() is not None
        assert until_tagged_send(client, b"a1", b"COMPRESS DEFLATE")[-1].startswith(b"a1 BAD")
        assert until_tagged_send(client, b"a2", f"LOGIN {user.name} {user.password}".encode())[
            -1
        ].startswith(b"a2 OK")
        assert until_tagged_send(client, b"a3", b"COMPRESS LZ4")[-1].startswith(b"a3 BAD")
        # the session is still plain text and usable
        assert until_tagged_send(client, b"a4", b"NOOP")[-1].startswith(b"a4 OK")

"""The TLS bootstrap: a self-signed certificate generated once into DATA/tls/, and the context."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import ssl
import stat
from pathlib import Path

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from msgstore.config import Config, ConfigError, StoreSection, TlsSection
from msgstore.net.tls import ensure_tls_files, generate_self_signed, server_context


def config_in(data_dir: Path) -> Config:
    return Config(store=StoreSection(data_dir=data_dir))


async def handshake(
    context: ssl.SSLContext, client: ssl.SSLContext, name: str
) -> tuple[str, str | None]:
    """Serve one TLS connection on loopback; return the protocol version and ALPN agreed."""

    async def greet(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"* OK\r\n")
        await writer.drain()
        writer.close()
        await writer.wait_closed()

    server = await asyncio.start_server(greet, "127.0.0.1", 0, ssl=context)
    port = server.sockets[0].getsockname()[1]
    try:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=client, server_hostname=name
        )
        assert await reader.readline() == b"* OK\r\n"
        ssl_object = writer.get_extra_info("ssl_object")
        agreed = (str(ssl_object.version()), ssl_object.selected_alpn_protocol())
        writer.close()
        await writer.wait_closed()
        return agreed
    finally:
        server.close()
        await server.wait_closed()


def test_generates_a_self_signed_pair_into_the_data_dir(tmp_path: Path) -> None:
    """No [tls] keys: cert.pem and a 0600 key.pem appear under DATA/tls/."""
    cert, key = ensure_tls_files(config_in(tmp_path / "data"))
    assert cert == tmp_path / "data" / "tls" / "cert.pem"
    assert key == tmp_path / "data" / "tls" / "key.pem"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE(key.parent.stat().st_mode) == 0o700
    assert not [p.name for p in key.parent.iterdir() if p.name.endswith(".tmp")]
    certificate = x509.load_pem_x509_certificate(cert.read_bytes())
    assert certificate.issuer == certificate.subject
    assert isinstance(certificate.public_key(), ec.EllipticCurvePublicKey)


def test_certificate_names_loopback_and_lasts_ten_years(tmp_path: Path) -> None:
    """SANs: localhost, 127.0.0.1 and ::1 (plus the host name); valid for about 3650 days."""
    cert, _ = ensure_tls_files(config_in(tmp_path))
    certificate = x509.load_pem_x509_certificate(cert.read_bytes())
    san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert ipaddress.ip_address("127.0.0.1") in san.get_values_for_type(x509.IPAddress)
    assert ipaddress.ip_address("::1") in san.get_values_for_type(x509.IPAddress)
    assert "localhost" in san.get_values_for_type(x509.DNSName)
    lifetime = certificate.not_valid_after_utc - dt.datetime.now(dt.UTC)
    assert dt.timedelta(days=3649) < lifetime <= dt.timedelta(days=3650)


def test_host_name_goes_into_the_certificate() -> None:
    """The machine's name is the subject and the first SAN; odd names are left out."""
    cert_pem, _ = generate_self_signed("mail.example.org")
    certificate = x509.load_pem_x509_certificate(cert_pem)
    san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["mail.example.org", "localhost"]
    cn = certificate.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value
    assert cn == "mail.example.org"
    odd_pem, _ = generate_self_signed("under_score.local")
    odd = x509.load_pem_x509_certificate(odd_pem)
    odd_san = odd.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert odd_san.get_values_for_type(x509.DNSName) == ["localhost"]


def test_second_start_reuses_the_pair(tmp_path: Path) -> None:
    """The files are generated once; clients that trusted them keep trusting them."""
    config = config_in(tmp_path)
    cert, key = ensure_tls_files(config)
    before = (cert.read_bytes(), key.read_bytes(), cert.stat().st_mtime_ns)
    assert ensure_tls_files(config) == (cert, key)
    assert (cert.read_bytes(), key.read_bytes(), cert.stat().st_mtime_ns) == before


def test_half_a_generated_pair_is_replaced(tmp_path: Path) -> None:
    """A crash between the two writes leaves a key alone; the next start makes a new pair."""
    config = config_in(tmp_path)
    cert, key = ensure_tls_files(config)
    old_key = key.read_bytes()
    cert.unlink()
    assert ensure_tls_files(config) == (cert, key)
    assert cert.is_file()
    assert key.read_bytes() != old_key
    server_context(cert, key)


async def test_generated_pair_serves_tls_to_a_client_trusting_it(tmp_path: Path) -> None:
    """A client with cafile=cert.pem verifies the server as 127.0.0.1 and as localhost."""
    cert, key = ensure_tls_files(config_in(tmp_path))
    context = server_context(cert, key)
    for name in ("127.0.0.1", "localhost"):
        client = ssl.create_default_context(cafile=str(cert))
        client.verify_flags |= ssl.VERIFY_X509_STRICT
        version, _ = await handshake(context, client, name)
        assert version in ("TLSv1.2", "TLSv1.3")


async def test_configured_certificate_is_used_as_is(tmp_path: Path) -> None:
    """[tls] cert and key from a real CA: nothing is generated, clients verify against the CA."""
    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1", "mail.example.org")
    cert, key = tmp_path / "chain.pem", tmp_path / "leaf.key"
    leaf.private_key_pem.write_to_path(str(key))
    cert.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    config = Config(
        store=StoreSection(data_dir=tmp_path / "data"), tls=TlsSection(cert=cert, key=key)
    )
    assert ensure_tls_files(config) == (cert, key)
    assert not (tmp_path / "data").exists()
    client = ssl.create_default_context()
    ca.configure_trust(client)
    version, _ = await handshake(server_context(cert, key), client, "127.0.0.1")
    assert version in ("TLSv1.2", "TLSv1.3")


def test_configured_file_that_is_missing_is_a_config_error(tmp_path: Path) -> None:
    """The error names the key and the path."""
    cert, _ = ensure_tls_files(config_in(tmp_path))
    missing = tmp_path / "nope.key"
    config = Config(tls=TlsSection(cert=cert, key=missing))
    with pytest.raises(ConfigError) as info:
        ensure_tls_files(config)
    assert str(info.value) == f"tls.key: {missing}: no such file"


def test_mismatched_key_is_refused_when_loading(tmp_path: Path) -> None:
    """A key that does not belong to the certificate fails at startup, not at the first client."""
    cert, _ = ensure_tls_files(config_in(tmp_path / "a"))
    _, other_key = ensure_tls_files(config_in(tmp_path / "b"))
    with pytest.raises(ConfigError) as info:
        server_context(cert, other_key)
    assert str(info.value).startswith(f"tls.cert: cannot load {cert} with key {other_key}: ")


async def test_context_requires_tls_1_2_and_speaks_alpn(tmp_path: Path) -> None:
    """TLS 1.0/1.1 are off, no client certificate is asked for; ALPN ids are negotiated."""
    cert, key = ensure_tls_files(config_in(tmp_path))
    context = server_context(cert, key, alpn=["imap"])
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert context.options & ssl.OP_NO_COMPRESSION
    assert context.verify_mode == ssl.CERT_NONE
    client = ssl.create_default_context(cafile=str(cert))
    client.set_alpn_protocols(["imap", "pop3"])
    assert (await handshake(context, client, "localhost"))[1] == "imap"

"""The server certificate and the TLS context every listener shares.

With neither ``[tls] cert`` nor ``[tls] key`` configured, the first start generates a
self-signed ECDSA P-256 certificate into DATA/tls/ (cert.pem, key.pem with mode 0600), valid ten
years, for this host's name, "localhost", 127.0.0.1 and ::1; later starts reuse it. A client
connecting to a test or development server can trust exactly that file (``cafile=cert.pem``).

    ensure_tls_files(config) -> (cert, key)     configured paths, or the generated pair
    server_context(cert, key) -> SSLContext     TLS >= 1.2, server cipher preference
    limit_tls_read_buffer()                     asyncio's loop: 32 KiB per TLS connection

The context is built once and handed to every listener; a SIGHUP reload builds a new one and
uses it for *new* connections only (ECOSYSTEM.md §13).
"""

from __future__ import annotations

import datetime as dt
import fcntl
import ipaddress
import logging
import os
import socket
import ssl
import tempfile
from asyncio import sslproto
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from msgstore.config import Config, ConfigError

log = logging.getLogger(__name__)

CERT_FILE: Final = "cert.pem"
KEY_FILE: Final = "key.pem"
VALID_DAYS: Final = 3650

#: TLS 1.2 suites with forward secrecy and AEAD (Mozilla "intermediate"); TLS 1.3 suites are
#: not affected by set_ciphers and keep OpenSSL's defaults.
_TLS12_CIPHERS: Final = "ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM:DHE+CHACHA20"


def generated_paths(config: Config) -> tuple[Path, Path]:
    """Where the self-signed pair lives: DATA/tls/cert.pem and DATA/tls/key.pem."""
    directory = config.store.data_dir / "tls"
    return directory / CERT_FILE, directory / KEY_FILE


def ensure_tls_files(config: Config) -> tuple[Path, Path]:
    """Return the certificate and key files, generating a self-signed pair if none is configured.

    Raises:
        ConfigError: a configured file does not exist.
        OSError: DATA/tls/ cannot be written.
    """
    if config.tls.cert is not None and config.tls.key is not None:
        for name, path in (("tls.cert", config.tls.cert), ("tls.key", config.tls.key)):
            if not path.is_file():
                raise ConfigError(f"{name}: {path}: no such file")
        return config.tls.cert, config.tls.key
    cert, key = generated_paths(config)
    cert.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    # Two processes starting at once must not end up with one's cert and the other's key.
    with open(cert.parent / ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (cert.is_file() and key.is_file()):
            hostname = socket.getfqdn()
            cert_pem, key_pem = generate_self_signed(hostname)
            # The key first: a crash in between leaves no cert, so the next start regenerates.
            _write_atomic(key, key_pem, 0o600)
            _write_atomic(cert, cert_pem, 0o644)
            _fsync_dir(cert.parent)
            log.info("generated a self-signed certificate for %s in %s", hostname, cert.parent)
    return cert, key


def generate_self_signed(hostname: str, *, days: int = VALID_DAYS) -> tuple[bytes, bytes]:
    """A self-signed ECDSA P-256 certificate and its key, both PEM.

    Subject alternative names: ``hostname`` (when it is a usable DNS name), "localhost",
    127.0.0.1 and ::1.
    """
    names = [hostname] if _usable_dns_name(hostname) and hostname != "localhost" else []
    names.append("localhost")
    common_name = names[0] if len(names[0]) <= 64 else "localhost"
    private_key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "msgstore self-signed"),
        ]
    )
    now = dt.datetime.now(dt.UTC)
    sans: list[x509.GeneralName] = [x509.DNSName(name) for name in names]
    sans += [
        x509.IPAddress(ipaddress.IPv4Address("127.0.0.1")),
        x509.IPAddress(ipaddress.IPv6Address("::1")),
    ]
    public_key = private_key.public_key()
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        # An hour back: a client whose clock is a little behind still accepts it.
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(public_key), critical=False
        )
        .sign(private_key, hashes.SHA256())
    )
    cert_pem = certificate.public_bytes(serialization.Encoding.PEM)
    key_pem = private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert_pem, key_pem


def server_context(cert: Path, key: Path, *, alpn: Sequence[str] = ()) -> ssl.SSLContext:
    """A server-side context: TLS 1.2 or later, forward-secret AEAD suites, no compression.

    Args:
        alpn: protocol ids to advertise (RFC 7301), e.g. ``["imap"]``.

    Raises:
        ConfigError: the certificate or key cannot be loaded, or they do not match.
    """
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
    context.options |= ssl.OP_NO_RENEGOTIATION
    context.set_ciphers(_TLS12_CIPHERS)
    try:
        context.load_cert_chain(cert, key)
    except (ssl.SSLError, OSError) as exc:
        reason = exc.strerror or str(exc)
        raise ConfigError(f"tls.cert: cannot load {cert} with key {key}: {reason}") from None
    if alpn:
        context.set_alpn_protocols(list(alpn))
    return context


#: Read buffer of asyncio's TLS transport per connection. asyncio allocates
#: ``SSLProtocol.max_size`` (256 KiB) for every TLS connection up front, which made an idle
#: IMAPS session cost about 270 KiB (docs/benchmarks.md); a TLS record holds at most 16 KiB
#: of data, so 32 KiB still takes a whole record (and more) per read. uvloop has its own TLS
#: layer (about 50 KiB per idle connection, ECOSYSTEM.md §1) and ignores this.
TLS_READ_BUFFER_OCTETS: Final = 32 * 1024


def limit_tls_read_buffer() -> None:
    """Lower asyncio's per-connection TLS read buffer to :data:`TLS_READ_BUFFER_OCTETS`.

    Process-wide (a class attribute of ``asyncio.sslproto``): ``msgstore serve`` calls it once
    per process, before any service starts, so every TLS listener and STARTTLS upgrade on
    asyncio's loop benefits. Harmless under uvloop.
    """
    if sslproto.SSLProtocol.max_size > TLS_READ_BUFFER_OCTETS:
        sslproto.SSLProtocol.max_size = TLS_READ_BUFFER_OCTETS


def _usable_dns_name(name: str) -> bool:
    labels = name.split(".")
    return (
        name.isascii()
        and len(name) <= 253
        and all(
            0 < len(label) <= 63
            and label[0] != "-"
            and label[-1] != "-"
            and all(ch.isalnum() or ch == "-" for ch in label)
            for label in labels
        )
    )


def _write_atomic(path: Path, data: bytes, mode: int) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

"""Password hashes: argon2id for new ones, verifiers for every legacy scheme we import.

Stored hashes use Dovecot's notation, ``{SCHEME}data`` (ECOSYSTEM.md §11), so hashes exported
from Dovecot (``doveadm pw``, passdb files), LDAP (``{SSHA}``) or /etc/shadow (``$6$...``,
recognised without a prefix) can be imported as they are. New hashes are always
``{ARGON2ID}`` + an argon2-cffi PHC string.

The flow at login::

    verdict = verify_password(password, stored)      # in the blocking-work pool
    if verdict.ok and verdict.rehash:
        store verdict.rehash                         # legacy scheme or old argon2 parameters
    unknown user -> dummy_verify(password)           # same cost as a real argon2id check

Schemes verified (``{SCHEME.HEX}`` / ``{SCHEME.B64}`` select the data encoding as in
Dovecot; unsalted SHA digests are also accepted in hex without the suffix):

======================================  ===============================  ====================
scheme                                  stored data                      verified with
======================================  ===============================  ====================
``ARGON2ID``, ``ARGON2I``               ``$argon2id$v=19$m=...``         argon2-cffi
``BLF-CRYPT``                           ``$2y$``/``$2b$``/``$2a$``       bcrypt (72 octets)
``SHA512-CRYPT`` ``SHA256-CRYPT``       ``$6$`` ``$5$``                  crypt_r (libxcrypt)
``MD5-CRYPT`` ``CRYPT``                 ``$1$``, DES, any ``$id$``       crypt_r (libxcrypt)
``SSHA512`` ``SSHA256`` ``SSHA``        base64(digest + salt)            hashlib
``SHA512`` ``SHA256`` ``SHA``/``SHA1``  base64(digest), unsalted         hashlib
``PLAIN``, ``CLEAR``                    the password itself              compare
======================================  ===============================  ====================

Every comparison is constant-time (``hmac.compare_digest``). A stored value that is damaged,
of an unknown scheme, or asks for absurd argon2 costs never verifies: ``verify_password``
returns not-ok and never raises for bad stored data; callers log :func:`scheme_of` to find
such accounts. Passwords are UTF-8; the empty password never verifies.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from dataclasses import dataclass
from typing import Final

import argon2
import bcrypt
import crypt_r
from argon2.exceptions import InvalidHashError, VerificationError
from argon2.low_level import Type, hash_secret_raw

#: argon2id parameters for new hashes: the first configuration of the OWASP Password Storage
#: Cheat Sheet (19 MiB, 2 passes, 1 lane). About 15-20 ms per hash on the development
#: machine, and 19 MiB per concurrent login, so a burst of logins in the blocking-work pool
#: stays within memory. Changing any of them makes every login with an older hash return a
#: ``rehash``.
ARGON2_TIME_COST: Final = 2
#: Memory per hash, in KiB (argon2's ``m``).
ARGON2_MEMORY_KIB: Final = 19 * 1024
ARGON2_PARALLELISM: Final = 1
ARGON2_HASH_OCTETS: Final = 32
ARGON2_SALT_OCTETS: Final = 16
#: Stored argon2 hashes asking for more than this are refused rather than computed: a damaged
#: or hostile import must not make one login take gigabytes or minutes.
MAX_ARGON2_MEMORY_KIB: Final = 1024 * 1024
MAX_ARGON2_TIME_COST: Final = 32
MAX_ARGON2_PARALLELISM: Final = 16
#: bcrypt uses only the first 72 octets of a password; the implementations that made the
#: hashes we import (crypt_blowfish, OpenBSD) silently truncate, and so do we.
BCRYPT_MAX_OCTETS: Final = 72

ARGON2ID_PREFIX: Final = "{ARGON2ID}"

#: Every scheme :func:`verify_password` can check (what :func:`scheme_of` may return besides
#: an unknown name or "").
KNOWN_SCHEMES: Final = frozenset(
    {
        "ARGON2ID",
        "ARGON2I",
        "BLF-CRYPT",
        "SHA512-CRYPT",
        "SHA256-CRYPT",
        "MD5-CRYPT",
        "CRYPT",
        "SSHA512",
        "SSHA256",
        "SSHA",
        "SHA512",
        "SHA256",
        "SHA",
        "SHA1",
        "PLAIN",
        "CLEAR",
    }
)

_HASHER: Final = argon2.PasswordHasher(
    time_cost=ARGON2_TIME_COST,
    memory_cost=ARGON2_MEMORY_KIB,
    parallelism=ARGON2_PARALLELISM,
    hash_len=ARGON2_HASH_OCTETS,
    salt_len=ARGON2_SALT_OCTETS,
    type=Type.ID,
)
_DUMMY_SALT: Final = b"msgstore-dummy-salt"[:ARGON2_SALT_OCTETS]
_DUMMY_DIGEST: Final = bytes(ARGON2_HASH_OCTETS)

#: Unsalted and salted digest schemes: hashlib algorithm and digest size in octets.
_DIGESTS: Final[dict[str, tuple[str, int]]] = {
    "SHA": ("sha1", 20),
    "SHA1": ("sha1", 20),
    "SHA256": ("sha256", 32),
    "SHA512": ("sha512", 64),
}
_SALTED: Final[dict[str, tuple[str, int]]] = {
    "SSHA": ("sha1", 20),
    "SSHA256": ("sha256", 32),
    "SSHA512": ("sha512", 64),
}
#: Scheme of a stored value without a {SCHEME} prefix, by its crypt(3) ``$id$``.
_CRYPT_IDS: Final[dict[str, str]] = {
    "argon2id": "ARGON2ID",
    "argon2i": "ARGON2I",
    "2a": "BLF-CRYPT",
    "2b": "BLF-CRYPT",
    "2y": "BLF-CRYPT",
    "6": "SHA512-CRYPT",
    "5": "SHA256-CRYPT",
    "1": "MD5-CRYPT",
}


@dataclass(frozen=True, slots=True)
class Verdict:
    """The outcome of :func:`verify_password`.

    Attributes:
        ok: the password matches.
        rehash: when ``ok`` and the stored hash is of a legacy scheme or has outdated argon2
            parameters, a fresh ``{ARGON2ID}`` hash of the password to store instead;
            otherwise None.
    """

    ok: bool
    rehash: str | None


_FAIL: Final = Verdict(False, None)


def hash_password(password: str) -> str:
    """Hash a password for storage: ``{ARGON2ID}$argon2id$v=19$m=...``.

    Costs one argon2id computation (see ``ARGON2_*``); run it off the event loop.

    Raises:
        ValueError: if the password is empty or is not Unicode text (a lone surrogate).
    """
    if not password:
        raise ValueError("the empty password cannot be stored")
    return ARGON2ID_PREFIX + _HASHER.hash(password.encode("utf-8"))


def scheme_of(stored: str) -> str:
    """The scheme of a stored hash, upper case without an encoding suffix.

    ``{SSHA.b64}...`` -> ``SSHA``; ``$6$salt$...`` -> ``SHA512-CRYPT``; another ``$id$``
    form (yescrypt ``$y$``, ...) -> ``CRYPT``. An unknown ``{NAME}`` returns ``NAME`` (check
    it against ``KNOWN_SCHEMES``); a value with neither form returns ``""``.
    """
    return _split(stored)[0]


def verify_password(password: str, stored: str) -> Verdict:
    """Check ``password`` against a stored hash of any scheme in ``KNOWN_SCHEMES``.

    Costs what the stored scheme costs (one argon2id computation for current hashes, plus
    one more to build ``rehash`` after a legacy match); run it off the event loop. Never
    raises for a damaged or unknown stored value: that is a not-ok verdict.
    """
    scheme, encoding, data = _split(stored)
    if not password:
        return _FAIL
    try:
        secret = password.encode("utf-8")
    except UnicodeEncodeError:
        return _FAIL
    if not _matches(scheme, encoding, secret, password, data):
        return _FAIL
    if scheme == "ARGON2ID" and _is_current_argon2id(data):
        return Verdict(True, None)
    return Verdict(True, hash_password(password))


def dummy_verify(password: str) -> None:
    """Spend what verifying a current argon2id hash costs, and find nothing.

    Called for an unknown user so that the reply comes after the same delay as a wrong
    password for a real one (RELIABILITY.md §7 B16): one argon2id computation with the
    current parameters, as :func:`verify_password` does for an up-to-date hash.
    """
    secret = password.encode("utf-8", "surrogatepass")
    digest = hash_secret_raw(
        secret,
        _DUMMY_SALT,
        time_cost=ARGON2_TIME_COST,
        memory_cost=ARGON2_MEMORY_KIB,
        parallelism=ARGON2_PARALLELISM,
        hash_len=ARGON2_HASH_OCTETS,
        type=Type.ID,
    )
    hmac.compare_digest(digest, _DUMMY_DIGEST)


def _split(stored: str) -> tuple[str, str, str]:
    """``(scheme, encoding, data)`` of a stored value; scheme ``""`` if unrecognised."""
    if stored.startswith("{"):
        close = stored.find("}")
        if close > 1:
            scheme, _, encoding = stored[1:close].upper().partition(".")
            return scheme, encoding, stored[close + 1 :]
        return "", "", stored
    if stored.startswith("$"):
        end = stored.find("$", 1)
        ident = stored[1:end]
        if end > 1 and len(ident) <= 8 and ident.isascii() and ident.isalnum():
            return _CRYPT_IDS.get(ident, "CRYPT"), "", stored
    return "", "", stored


def _matches(scheme: str, encoding: str, secret: bytes, password: str, data: str) -> bool:
    if scheme in ("ARGON2ID", "ARGON2I"):
        return _argon2_matches(secret, data)
    if scheme == "BLF-CRYPT" and data[:4] in ("$2a$", "$2b$", "$2y$"):
        return _bcrypt_matches(secret, data)
    if scheme in ("BLF-CRYPT", "SHA512-CRYPT", "SHA256-CRYPT", "MD5-CRYPT", "CRYPT"):
        return _crypt_matches(password, data)
    if scheme in _SALTED:
        algorithm, size = _SALTED[scheme]
        raw = _decode(data, encoding, hex_size=None)
        if raw is None or len(raw) <= size:  # Dovecot also requires a non-empty salt
            return False
        digest = hashlib.new(algorithm, secret + raw[size:]).digest()
        return hmac.compare_digest(digest, raw[:size])
    if scheme in _DIGESTS:
        algorithm, size = _DIGESTS[scheme]
        raw = _decode(data, encoding, hex_size=size)
        return raw is not None and hmac.compare_digest(
            hashlib.new(algorithm, secret).digest(), raw
        )
    if scheme in ("PLAIN", "CLEAR"):
        raw = _decode(data, encoding, hex_size=None) if encoding else data.encode("utf-8")
        return raw is not None and hmac.compare_digest(secret, raw)
    return False


def _decode(data: str, encoding: str, *, hex_size: int | None) -> bytes | None:
    """Decode hash data per the scheme suffix; without one, base64 (or hex of ``hex_size``)."""
    try:
        if encoding == "HEX" or (not encoding and hex_size and len(data) == 2 * hex_size):
            return binascii.unhexlify(data)
        if encoding in ("", "B64", "BASE64"):
            return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        return None
    return None


def _argon2_matches(secret: bytes, data: str) -> bool:
    try:
        params = argon2.extract_parameters(data)
    except InvalidHashError:
        return False
    if (
        params.memory_cost > MAX_ARGON2_MEMORY_KIB
        or params.time_cost > MAX_ARGON2_TIME_COST
        or params.parallelism > MAX_ARGON2_PARALLELISM
    ):
        return False
    try:
        return _HASHER.verify(data, secret)
    except (VerificationError, InvalidHashError):
        return False


def _is_current_argon2id(data: str) -> bool:
    return data.startswith("$argon2id$") and not _HASHER.check_needs_rehash(data)


def _bcrypt_matches(secret: bytes, data: str) -> bool:
    try:
        return bcrypt.checkpw(secret[:BCRYPT_MAX_OCTETS], data.encode("ascii"))
    except ValueError:  # malformed hash or salt; UnicodeEncodeError is a ValueError
        return False


def _crypt_matches(password: str, data: str) -> bool:
    # "*" and "!" prefixes are the conventional locked-account markers of shadow files;
    # libxcrypt returns "*0"/"*1" for a setting it cannot use, which must never match.
    if not data or data[0] in "*!":
        return False
    try:
        out = crypt_r.crypt(password, data)
    except ValueError:  # a NUL in the password
        return False
    if not isinstance(out, str) or not out or out.startswith("*"):
        return False
    return hmac.compare_digest(out.encode("utf-8"), data.encode("utf-8"))

"""Password hashing and legacy verification (ECOSYSTEM.md §11), with real generated hashes."""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import Callable

import argon2
import bcrypt
import crypt_r
import pytest

from msgstore.auth.passwords import (
    ARGON2_MEMORY_KIB,
    ARGON2_PARALLELISM,
    ARGON2_TIME_COST,
    ARGON2ID_PREFIX,
    KNOWN_SCHEMES,
    Verdict,
    dummy_verify,
    hash_password,
    scheme_of,
    verify_password,
)

PASSWORD = "correct horse ☃ battery"
WRONG = "correct horse ☃ battery!"


def _assert_legacy(stored: str) -> None:
    """The right password verifies and asks for an argon2id rehash; a wrong one fails."""
    verdict = verify_password(PASSWORD, stored)
    assert verdict.ok
    assert verdict.rehash is not None
    assert verdict.rehash.startswith(ARGON2ID_PREFIX + "$argon2id$")
    assert verify_password(PASSWORD, verdict.rehash) == Verdict(True, None)
    assert verify_password(WRONG, stored) == Verdict(False, None)


# --- argon2id, the scheme for new hashes --------------------------------------------------


def test_new_hashes_are_argon2id_with_the_documented_parameters() -> None:
    """hash_password gives {ARGON2ID} + a PHC string carrying the module's parameters."""
    stored = hash_password(PASSWORD)
    assert stored.startswith("{ARGON2ID}$argon2id$v=19$")
    params = argon2.extract_parameters(stored.removeprefix(ARGON2ID_PREFIX))
    assert (params.memory_cost, params.time_cost, params.parallelism) == (
        ARGON2_MEMORY_KIB,
        ARGON2_TIME_COST,
        ARGON2_PARALLELISM,
    )
    assert verify_password(PASSWORD, stored) == Verdict(True, None)
    assert verify_password(WRONG, stored) == Verdict(False, None)
    assert hash_password(PASSWORD) != stored  # a fresh salt each time


def test_argon2id_without_prefix_is_recognised() -> None:
    """A bare ``$argon2id$`` PHC string verifies like the prefixed form, with no rehash."""
    bare = hash_password(PASSWORD).removeprefix(ARGON2ID_PREFIX)
    assert scheme_of(bare) == "ARGON2ID"
    assert verify_password(PASSWORD, bare) == Verdict(True, None)


def test_outdated_argon2_parameters_ask_for_a_rehash() -> None:
    """An argon2id hash made with other parameters verifies and returns a current hash."""
    old = argon2.PasswordHasher(time_cost=1, memory_cost=8192, parallelism=2)
    _assert_legacy(ARGON2ID_PREFIX + old.hash(PASSWORD))


def test_argon2i_is_verified_and_upgraded() -> None:
    """Dovecot's {ARGON2I} hashes verify and are replaced by argon2id."""
    old = argon2.PasswordHasher(time_cost=1, memory_cost=8192, type=argon2.Type.I)
    stored = "{ARGON2I}" + old.hash(PASSWORD)
    assert scheme_of(stored) == "ARGON2I"
    _assert_legacy(stored)


def test_argon2_hashes_with_absurd_costs_are_refused_unverified() -> None:
    """A stored hash asking for 4 GiB or 1000 passes never verifies (and is never computed)."""
    real = argon2.PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash(PASSWORD)
    huge_memory = real.replace("m=8192", "m=4194304")
    many_passes = real.replace("t=1", "t=1000")
    start = time.process_time()  # CPU time: other test workers share the cores
    assert not verify_password(PASSWORD, ARGON2ID_PREFIX + huge_memory).ok
    assert not verify_password(PASSWORD, ARGON2ID_PREFIX + many_passes).ok
    assert time.process_time() - start < 1.0


# --- crypt(3) family via crypt_r --------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "scheme", "prefix"),
    [
        (crypt_r.METHOD_SHA512, "SHA512-CRYPT", "$6$"),
        (crypt_r.METHOD_SHA256, "SHA256-CRYPT", "$5$"),
        (crypt_r.METHOD_MD5, "MD5-CRYPT", "$1$"),
    ],
)
def test_crypt_hashes_verify_with_and_without_prefix(
    method: object, scheme: str, prefix: str
) -> None:
    """SHA512/SHA256/MD5-CRYPT verify as {SCHEME}$id$... and as bare $id$... (shadow file)."""
    bare = crypt_r.crypt(PASSWORD, crypt_r.mksalt(method))
    assert bare.startswith(prefix)
    assert scheme_of(bare) == scheme
    _assert_legacy("{" + scheme + "}" + bare)
    assert verify_password(PASSWORD, bare).ok


def test_des_crypt_verifies_under_crypt() -> None:
    """Traditional DES crypt ({CRYPT}) verifies; like crypt(3) it reads 8 characters only."""
    stored = "{CRYPT}" + crypt_r.crypt("password", crypt_r.mksalt(crypt_r.METHOD_CRYPT))
    assert verify_password("password", stored).ok
    assert verify_password("password-and-more", stored).ok
    assert not verify_password("passwore", stored).ok


def test_locked_and_damaged_crypt_values_never_verify() -> None:
    """Shadow-file lock markers and settings libxcrypt cannot use fail closed."""
    for stored in ["{CRYPT}*", "{CRYPT}!", "{CRYPT}!$6$abc$def", "{CRYPT}", "{SHA512-CRYPT}junk"]:
        assert verify_password(PASSWORD, stored) == Verdict(False, None), stored
    assert verify_password("*0", "{CRYPT}*0") == Verdict(False, None)


def test_nul_in_password_does_not_raise() -> None:
    """crypt(3) cannot take a NUL; the password simply does not verify."""
    stored = "{SHA512-CRYPT}" + crypt_r.crypt("a", crypt_r.mksalt(crypt_r.METHOD_SHA512))
    assert verify_password("a\x00b", stored) == Verdict(False, None)


# --- bcrypt -----------------------------------------------------------------------------


def test_bcrypt_2b_and_2y_verify() -> None:
    """{BLF-CRYPT} verifies $2b$ (bcrypt) and $2y$ (PHP/Dovecot) hashes."""
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
    assert hashed.startswith("$2b$")
    _assert_legacy("{BLF-CRYPT}" + hashed)
    as_2y = "$2y$" + hashed[4:]
    assert scheme_of(as_2y) == "BLF-CRYPT"
    _assert_legacy("{BLF-CRYPT}" + as_2y)
    assert verify_password(PASSWORD, "{CRYPT}" + as_2y).ok  # crypt_r knows bcrypt too


def test_bcrypt_uses_the_first_72_octets_like_the_hashing_side() -> None:
    """Longer passwords compare on their first 72 octets, as the original hashers did."""
    long_password = "x" * 72 + "tail"
    hashed = bcrypt.hashpw(b"x" * 72, bcrypt.gensalt(rounds=4)).decode()
    assert verify_password(long_password, "{BLF-CRYPT}" + hashed).ok
    assert not verify_password("x" * 71, "{BLF-CRYPT}" + hashed).ok


def test_damaged_bcrypt_never_verifies() -> None:
    """A malformed bcrypt string is a not-ok verdict, not an exception."""
    assert verify_password(PASSWORD, "{BLF-CRYPT}$2y$04$short") == Verdict(False, None)
    assert verify_password(PASSWORD, "{BLF-CRYPT}$2y$04$" + "é" * 53) == Verdict(False, None)


# --- LDAP-style digests -------------------------------------------------------------------


def _salted(algorithm: str, salt: bytes) -> bytes:
    return hashlib.new(algorithm, PASSWORD.encode() + salt).digest() + salt


@pytest.mark.parametrize(
    ("scheme", "algorithm"), [("SSHA", "sha1"), ("SSHA256", "sha256"), ("SSHA512", "sha512")]
)
def test_salted_sha_verifies_in_base64_and_hex(scheme: str, algorithm: str) -> None:
    """{SSHA*} is base64(digest + salt); ``.HEX`` selects hex data as in Dovecot."""
    raw = _salted(algorithm, b"\x00salt\xff\x10")
    _assert_legacy("{" + scheme + "}" + base64.b64encode(raw).decode())
    assert verify_password(PASSWORD, "{" + scheme + ".HEX}" + raw.hex()).ok
    assert verify_password(
        PASSWORD, "{" + scheme.lower() + ".b64}" + base64.b64encode(raw).decode()
    ).ok


@pytest.mark.parametrize(
    ("scheme", "algorithm"),
    [("SHA", "sha1"), ("SHA1", "sha1"), ("SHA256", "sha256"), ("SHA512", "sha512")],
)
def test_unsalted_sha_verifies_in_base64_and_hex(scheme: str, algorithm: str) -> None:
    """{SHA*} is an unsalted digest, base64 by default; hex of the right length also works."""
    digest = hashlib.new(algorithm, PASSWORD.encode()).digest()
    _assert_legacy("{" + scheme + "}" + base64.b64encode(digest).decode())
    assert verify_password(PASSWORD, "{" + scheme + "}" + digest.hex()).ok
    assert verify_password(PASSWORD, "{" + scheme + "}" + digest.hex().upper()).ok


@pytest.mark.parametrize(
    "stored",
    [
        "{SSHA}",
        "{SSHA}!!!!",
        "{SSHA}" + base64.b64encode(_salted("sha1", b"")).decode(),
        "{SSHA.HEX}zz",
        "{SHA256}" + "A" * 10,
        "{SHA}é",
        "{SSHA.ROT13}abcd",
    ],
    ids=["empty", "bad-base64", "no-salt", "bad-hex", "wrong-length", "non-ascii", "bad-encoding"],
)
def test_damaged_digests_never_verify(stored: str) -> None:
    """Undecodable or truncated digest data is a not-ok verdict."""
    assert verify_password(PASSWORD, stored) == Verdict(False, None)


# --- cleartext --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "stored",
    [
        "{PLAIN}" + PASSWORD,
        "{CLEAR}" + PASSWORD,
        "{plain}" + PASSWORD,
        "{PLAIN.B64}" + base64.b64encode(PASSWORD.encode()).decode(),
    ],
)
def test_cleartext_verifies_and_is_always_rehashed(stored: str) -> None:
    """{PLAIN}/{CLEAR} compare the text itself and are replaced by argon2id at first login."""
    _assert_legacy(stored)


# --- scheme recognition and edge cases ----------------------------------------------------


@pytest.mark.parametrize(
    ("stored", "scheme"),
    [
        ("{SHA512-CRYPT}$6$x$y", "SHA512-CRYPT"),
        ("{ssha.b64}abc", "SSHA"),
        ("{SHA256.HEX}00", "SHA256"),
        ("$argon2i$v=19$...", "ARGON2I"),
        ("$2a$10$...", "BLF-CRYPT"),
        ("$5$salt$hash", "SHA256-CRYPT"),
        ("$1$salt$hash", "MD5-CRYPT"),
        ("$y$j9T$salt$hash", "CRYPT"),
        ("$gy$j9T$salt$hash", "CRYPT"),
        ("{FOO}bar", "FOO"),
        ("plaintext", ""),
        ("", ""),
        ("{}x", ""),
        ("{unclosed", ""),
        ("$$x", ""),
        ("$not a crypt id$x", ""),
    ],
)
def test_scheme_of(stored: str, scheme: str) -> None:
    """The scheme comes from {SCHEME[.ENC]} or the crypt $id$; unknown forms give ""."""
    assert scheme_of(stored) == scheme


def test_unknown_or_unprefixed_values_never_verify() -> None:
    """An unknown scheme, or a string with no recognisable form, is simply not-ok."""
    assert "FOO" not in KNOWN_SCHEMES
    assert verify_password("bar", "{FOO}bar") == Verdict(False, None)
    assert verify_password("plaintext", "plaintext") == Verdict(False, None)
    assert verify_password("x", "") == Verdict(False, None)


def test_yescrypt_from_a_shadow_file_verifies() -> None:
    """Debian's default $y$ (yescrypt) verifies through libxcrypt under {CRYPT}."""
    setting = "$y$j9T$F5Jx5fExrKuPp53xLKQ..1$"
    hashed = crypt_r.crypt(PASSWORD, setting)
    assert hashed.startswith(setting)
    _assert_legacy(hashed)


def test_empty_password_never_verifies_and_cannot_be_hashed() -> None:
    """Even a stored empty cleartext does not let the empty password in."""
    assert verify_password("", "{PLAIN}") == Verdict(False, None)
    with pytest.raises(ValueError, match="empty password"):
        hash_password("")


def test_non_unicode_passwords() -> None:
    """A lone surrogate cannot be UTF-8: not-ok for verify, ValueError for hash."""
    assert verify_password("a\udc80", "{PLAIN}a\udc80") == Verdict(False, None)
    with pytest.raises(ValueError, match="surrogates"):
        hash_password("a\udc80")


# --- timing -----------------------------------------------------------------------------


def _best_of(runs: int, func: Callable[[], object]) -> float:
    best = float("inf")
    for _ in range(runs):
        start = time.process_time()  # CPU time: other test workers share the cores
        func()
        best = min(best, time.process_time() - start)
    return best


def test_dummy_verify_costs_what_a_real_verification_costs() -> None:
    """Unknown users cost one current argon2id computation, like a wrong password does."""
    stored = hash_password(PASSWORD)
    real = _best_of(5, lambda: verify_password(WRONG, stored))
    dummy = _best_of(5, lambda: dummy_verify(WRONG))
    assert 0.5 < dummy / real < 2.0, (dummy, real)
    dummy_verify("a\udc80")  # any str, even one that cannot be a password

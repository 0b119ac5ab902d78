"""The password policy, in one place, and the passwords ``password reset`` generates.

Two layers of rules:

- **hard limits** (:func:`msgstore.management.accounts.check_password`), for everyone: not
  empty, valid UTF-8, no NUL/CR/LF, at most 1024 octets -- what any login can carry;
- **the policy** of ``[auth]`` (``password_min_length``, ``password_max_length``,
  ``password_classes``) and "not the account name", for every password chosen through a face
  where a *store account* acts: the REST API, the web pages, poppassd (``account add`` and
  ``password set`` call :func:`enforce_policy`). The operating-system administrator (the
  local CLI, the Python API) can read the data directory and is trusted with any password
  the hard limits allow -- importing accounts, test stores -- and generated passwords always
  satisfy the policy.
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Final

from msgstore.core.errors import ErrorKind, StoreError
from msgstore.management.operation import Actor, Secret

if TYPE_CHECKING:
    from msgstore.config import Config

HARD_MAX_OCTETS: Final = 1024
#: Characters of generated passwords: no look-alikes (0 O 1 l I), nothing a shell or a URL
#: would mangle.
_LOWER: Final = "abcdefghijkmnopqrstuvwxyz"
_UPPER: Final = "ABCDEFGHJKLMNPQRSTUVWXYZ"
_DIGITS: Final = "23456789"
_OTHER: Final = "-_.+=%"
GENERATED_LENGTH: Final = 20

_CLASS_NAMES: Final = ("lower case", "upper case", "digits", "other characters")


def classes_of(password: str) -> int:
    """How many of the four character classes ``password`` uses."""
    lower = any(c.islower() for c in password)
    upper = any(c.isupper() for c in password)
    digit = any(c.isdigit() for c in password)
    other = any(not (c.islower() or c.isupper() or c.isdigit()) for c in password)
    return sum((lower, upper, digit, other))


def check_policy(config: Config, name: str, password: str) -> None:
    """Raise PARAMS with the first rule of ``[auth]`` that ``password`` breaks."""
    auth = config.auth
    if len(password) < auth.password_min_length:
        raise StoreError(
            ErrorKind.PARAMS,
            f"The new password must have at least {auth.password_min_length} characters",
        )
    maximum = min(auth.password_max_length or HARD_MAX_OCTETS, HARD_MAX_OCTETS)
    if len(password.encode("utf-8", "surrogatepass")) > maximum:
        raise StoreError(ErrorKind.PARAMS, f"The new password must have at most {maximum} octets")
    wanted = max(1, min(4, auth.password_classes))
    if classes_of(password) < wanted:
        raise StoreError(
            ErrorKind.PARAMS,
            f"The new password must mix at least {wanted} of: {', '.join(_CLASS_NAMES)}",
        )
    if password.casefold() == name.casefold():
        raise StoreError(ErrorKind.PARAMS, "The new password may not be the user name")


def enforce_policy(config: Config, actor: Actor, name: str, password: Secret) -> None:
    """Apply the policy when a store account acts (see the module docstring)."""
    if actor.account is not None:
        check_policy(config, name, password.reveal())


def generate_password(config: Config, name: str = "") -> str:
    """A random password that satisfies the policy: 20 or more characters from every class
    (about 6 bits each: well over 100 bits)."""
    maximum = min(config.auth.password_max_length or HARD_MAX_OCTETS, HARD_MAX_OCTETS)
    length = max(GENERATED_LENGTH, config.auth.password_min_length)
    if length > maximum or length < 4:
        raise StoreError(
            ErrorKind.NOT_POSSIBLE,
            "[auth] password_min_length and password_max_length leave no valid password",
        )
    alphabet = _LOWER + _UPPER + _DIGITS + _OTHER
    while True:
        chars = [secrets.choice(alphabet) for _ in range(length)]
        # One of each class at random positions, so every policy of 1 to 4 classes holds.
        for pool in (_LOWER, _UPPER, _DIGITS, _OTHER):
            chars[secrets.randbelow(length)] = secrets.choice(pool)
        password = "".join(chars)
        if classes_of(password) == 4 and password.casefold() != name.casefold():
            try:
                check_policy(config, name, password)
            except StoreError:
                continue
            return password

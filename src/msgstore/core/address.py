"""SMTP envelope addresses (RFC 5321 §4.1.2 Mailbox), parsed strictly for delivery decisions.

This is our own parser for ``MAIL FROM``/``RCPT TO`` paths, forwarding targets and account
addresses. It never uses ``email.utils.parseaddr``, which parses RFC 5322 header syntax and
has returned the wrong address for crafted input (CVE-2023-27043, CVE-2019-16056). It is a
single left-to-right scan with no regular expressions and no recursion, and it refuses input
longer than a path may be (256 octets) before looking at it.

Accepted syntax (RFC 5321 §4.1.2, RFC 6531 §3.3 for SMTPUTF8)::

    Path       = "<" [ A-d-l ":" ] Mailbox ">"       (the brackets are optional here)
    Mailbox    = Local-part "@" ( Domain / address-literal )
    Local-part = Dot-string / Quoted-string

Decisions:

- **Source routes** (``<@relay1,@relay2:user@example.org>``) are checked for syntax and then
  ignored, as RFC 5321 §4.1.1.3 and Appendix C tell a server to do; only the final mailbox is
  kept. A route is only recognised inside ``<...>``.
- **Quoted local parts** are equivalent to their unquoted form (``"john"@x`` is
  ``john@x``); :attr:`Address.local` holds the value without quotes or backslashes and
  ``str()`` quotes it again only if it is not a valid Dot-string. The empty local part
  (``""@x``) is refused.
- **Case**: the domain is case-insensitive and stored in lower case; the local part is kept
  as given (RFC 5321 §2.4 makes it case-sensitive) and :attr:`Address.lower_local` is the
  key for case-insensitive mailbox lookups.
- **Limits** (RFC 5321 §4.5.3.1): local part 64 octets, domain 255 octets, each domain label
  63 octets (RFC 1035), path 256 octets including ``<``, ``>`` and any route.
- **Address literals**: ``[192.0.2.1]`` and ``[IPv6:2001:db8::1]``, normalised
  (``[IPv6:2001:DB8:0::1]`` -> ``[IPv6:2001:db8::1]``). General literals with another tag
  are refused: none is standardised.
- **UTF-8** is accepted only with ``smtputf8=True`` (the client sent ``SMTPUTF8``, RFC 6531):
  then the local part and domain labels may contain non-ASCII characters, and a UTF-8 domain
  is NFC-normalised and lower-cased. No IDNA conversion is done, so ``bücher.example`` and
  ``xn--bcher-kva.example`` are different domains here.
- ``<>`` (the null reverse-path) is not an address: :func:`parse_reverse_path` returns None
  for it. ``<Postmaster>`` without a domain (RFC 5321 §4.1.1.3) is also not an address; the
  RCPT handler maps it to the local postmaster before calling :func:`parse_address`.
"""

from __future__ import annotations

import ipaddress
import string
import unicodedata
from dataclasses import dataclass
from typing import Final

from msgstore.core.errors import ErrorKind, StoreError

MAX_LOCAL_OCTETS: Final = 64
MAX_DOMAIN_OCTETS: Final = 255
MAX_LABEL_OCTETS: Final = 63
MAX_PATH_OCTETS: Final = 256

#: RFC 5321 atext (RFC 5322 §3.2.3) in ASCII; with SMTPUTF8 every non-ASCII character joins.
_ATEXT: Final = frozenset(string.ascii_letters + string.digits + "!#$%&'*+-/=?^_`{|}~")
_LDH: Final = frozenset(string.ascii_letters + string.digits + "-")


def _params(reason: str) -> StoreError:
    return StoreError(ErrorKind.PARAMS, reason)


@dataclass(frozen=True, slots=True)
class Address:
    """A mailbox ``local@domain`` in canonical form; build it with :func:`parse_address`.

    Attributes:
        local: the local part's value (quotes and quoting backslashes removed), case kept.
        domain: the domain in lower case, or a normalised address literal with its brackets.
    """

    local: str
    domain: str

    def __str__(self) -> str:
        return f"{_format_local(self.local)}@{self.domain}"

    @property
    def lower_local(self) -> str:
        """The local part for case-insensitive lookups: NFC, then lower case."""
        if self.local.isascii():
            return self.local.lower()
        return unicodedata.normalize("NFC", self.local).lower()

    @property
    def is_literal(self) -> bool:
        """True if the domain is an address literal (``[192.0.2.1]``)."""
        return self.domain.startswith("[")

    @property
    def needs_smtputf8(self) -> bool:
        """True if relaying this address needs the SMTPUTF8 extension (RFC 6531)."""
        return not (self.local.isascii() and self.domain.isascii())


def parse_address(text: str, *, smtputf8: bool = False) -> Address:
    """Parse an envelope address, with or without ``<...>``, into its canonical form.

    Args:
        text: ``user@example.org``, ``<user@example.org>``, ``<"a b"@[192.0.2.1]>``,
            ``<@relay:user@example.org>``; no surrounding spaces, no ESMTP parameters.
        smtputf8: allow UTF-8 in the local part and domain (RFC 6531).

    Raises:
        StoreError: PARAMS with the reason, e.g. "Address has an empty local part".
    """
    if not text:
        raise _params("Address is empty")
    # A code point is at least one octet: this bounds all later work by MAX_PATH_OCTETS.
    if len(text) > MAX_PATH_OCTETS:
        raise _params(f"Address is longer than {MAX_PATH_OCTETS} octets")
    try:
        path_octets = len(text.encode("utf-8"))
    except UnicodeEncodeError:
        raise _params("Address is not valid UTF-8") from None
    for ch in text:
        if unicodedata.category(ch) == "Cc":
            raise _params(f"Address contains the control character U+{ord(ch):04X}")
        if not smtputf8 and not ch.isascii():
            raise _params("Address contains non-ASCII characters, which need SMTPUTF8")
    bracketed = text.startswith("<")
    if bracketed:
        if len(text) < 2 or not text.endswith(">"):
            raise _params("Address has '<' without a closing '>'")
        inner = text[1:-1]
    else:
        if text.endswith(">"):
            raise _params("Address has '>' without an opening '<'")
        inner = text
        path_octets += 2
    if path_octets > MAX_PATH_OCTETS:
        raise _params(f"Address is longer than {MAX_PATH_OCTETS} octets")
    if not inner:
        raise _params("Address is empty (the null reverse-path <> is not a mailbox)")
    if inner.startswith("@"):
        if not bracketed:
            raise _params("Address starts with '@' (a source route is only allowed in '<...>')")
        inner = _skip_route(inner)
    local, rest = _split_local(inner, smtputf8)
    if not rest:
        raise _params("Address has no '@' and domain")
    return Address(local, _parse_domain_or_literal(rest[1:]))


def parse_reverse_path(text: str, *, smtputf8: bool = False) -> Address | None:
    """Parse a ``MAIL FROM`` reverse-path: None for the null path ``<>``, else an address.

    Raises:
        StoreError: PARAMS as :func:`parse_address`.
    """
    if text == "<>":
        return None
    return parse_address(text, smtputf8=smtputf8)


def _skip_route(inner: str) -> str:
    """Check ``@a,@b:`` (A-d-l) and return what follows the ``:``."""
    colon = inner.find(":")
    if colon < 0:
        raise _params("Address has a source route without the closing ':'")
    for hop in inner[:colon].split(","):
        if not hop.startswith("@"):
            raise _params("Address source route has an element that does not start with '@'")
        if hop[1:].startswith("["):
            raise _params("Address source route may name domains only, not address literals")
        _parse_domain(hop[1:])
    return inner[colon + 1 :]


def _split_local(inner: str, smtputf8: bool) -> tuple[str, str]:
    """Split ``local@rest`` into the local part's value and ``@rest`` (or "" if no ``@``)."""
    if inner.startswith('"'):
        chars: list[str] = []
        i = 1
        n = len(inner)
        while True:
            if i >= n:
                raise _params("Address has a quoted local part without the closing '\"'")
            ch = inner[i]
            if ch == '"':
                break
            if ch == "\\":
                i += 1
                if i >= n:
                    raise _params("Address has a quoted local part without the closing '\"'")
                ch = inner[i]
            chars.append(ch)
            i += 1
        # quoted-pairSMTP and qtextSMTP allow every printable ASCII character and space
        # (controls were refused above); non-ASCII only with SMTPUTF8 (checked above).
        if len(inner[: i + 1].encode("utf-8")) > MAX_LOCAL_OCTETS:
            raise _params(f"Address local part is longer than {MAX_LOCAL_OCTETS} octets")
        rest = inner[i + 1 :]
        if rest and not rest.startswith("@"):
            raise _params("Address has characters between the closing '\"' and the '@'")
        local = "".join(chars)
        if not local:
            raise _params("Address has an empty local part")
        return local, rest
    at = inner.find("@")
    local = inner if at < 0 else inner[:at]
    if not local:
        raise _params("Address has an empty local part")
    if len(local.encode("utf-8")) > MAX_LOCAL_OCTETS:
        raise _params(f"Address local part is longer than {MAX_LOCAL_OCTETS} octets")
    _check_dot_string(local, smtputf8)
    return local, "" if at < 0 else inner[at:]


def _check_dot_string(local: str, smtputf8: bool) -> None:
    for atom in local.split("."):
        if not atom:
            raise _params(
                "Address local part has an empty part between dots "
                "('..', or a leading or trailing '.'); such a local part must be quoted"
            )
        for ch in atom:
            if ch not in _ATEXT and not (smtputf8 and not ch.isascii()):
                raise _params(
                    f"Address local part contains {ch!r}, which is only allowed when quoted"
                )


def _format_local(local: str) -> str:
    """The shortest RFC 5321 spelling of a local part: a Dot-string if possible, else quoted."""
    if local and all(
        atom and all(ch in _ATEXT or not ch.isascii() for ch in atom) for atom in local.split(".")
    ):
        return local
    return '"' + local.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _parse_domain_or_literal(text: str) -> str:
    if not text:
        raise _params("Address has an empty domain")
    if text.startswith("["):
        if not text.endswith("]"):
            raise _params("Address literal has '[' without a closing ']'")
        return _parse_literal(text[1:-1])
    return _parse_domain(text)


def _parse_domain(text: str) -> str:
    """Validate a Domain (RFC 5321 §4.1.2; U-labels allowed when non-ASCII got this far)."""
    if not text:
        raise _params("Address has an empty domain")
    if len(text.encode("utf-8")) > MAX_DOMAIN_OCTETS:
        raise _params(f"Address domain is longer than {MAX_DOMAIN_OCTETS} octets")
    for label in text.split("."):
        if not label:
            raise _params("Address domain has an empty label ('..', or a leading or trailing '.')")
        if len(label.encode("utf-8")) > MAX_LABEL_OCTETS:
            raise _params(f"Address domain has a label longer than {MAX_LABEL_OCTETS} octets")
        if label.startswith("-") or label.endswith("-"):
            raise _params("Address domain has a label that starts or ends with '-'")
        for ch in label:
            # Non-ASCII (only reachable with SMTPUTF8): letters, marks and digits, roughly
            # what IDNA2008 lets into a U-label; no spaces, symbols or punctuation.
            if ch in _LDH or (not ch.isascii() and unicodedata.category(ch)[0] in "LMN"):
                continue
            raise _params(
                f"Address domain contains {ch!r}; a domain has letters, digits, '-' and '.'"
            )
    if text.isascii():
        return text.lower()
    return unicodedata.normalize("NFC", text).lower()


def _parse_literal(content: str) -> str:
    """Validate and normalise the inside of an address literal ``[...]``."""
    if content[:5].lower() == "ipv6:":
        addr = content[5:]
        if "%" in addr:
            raise _params("Address IPv6 literal may not have a zone ('%')")
        try:
            return f"[IPv6:{ipaddress.IPv6Address(addr).compressed}]"
        except ValueError:
            raise _params("Address literal is not a valid IPv6 address") from None
    if ":" in content:
        raise _params(
            "Address literal has an unsupported tag (only IPv4 and 'IPv6:' literals are known)"
        )
    parts = content.split(".")
    if len(parts) != 4 or not all(
        1 <= len(p) <= 3 and p.isascii() and p.isdigit() and int(p) <= 255 for p in parts
    ):
        raise _params("Address literal is not a valid IPv4 address")
    return "[" + ".".join(str(int(p)) for p in parts) + "]"

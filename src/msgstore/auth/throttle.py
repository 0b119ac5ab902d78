"""Login throttling, shared by every protocol that takes a password (RELIABILITY.md §3).

Every failed login makes the next attempts slower, counted twice: per client source (an IPv4
address, or the IPv6 prefix of ``ipv6_prefix`` bits, since one host holds a whole /64 or more)
and per account name, whoever tries it. The delay before an attempt is checked is::

    n = max(failures of this source, failures of this account name)
    delay = 0 if n == 0 else min(base * 2 ** (n - 1), cap)        # 2, 4, 8, 15, 15 ... s

with ``base`` and ``cap`` from ``[auth] failure_delay_ms`` / ``failure_delay_max_ms``
(Dovecot's auth penalty caps at 15 s too). More rules:

- The same wrong password tried again for the same account from the same source does not
  escalate (a client retrying a stale saved password is not an attack). Only a keyed digest
  of the password is kept, never the password.
- Unknown and existing account names are counted the same way, so the delay tells nothing
  about whether a name exists (RELIABILITY.md §7 case 16).
- A successful login clears the counters of its source and of its account: the real user,
  from anywhere, can always log in, at worst after one capped delay. There is no lockout.
- Sources in ``[auth] trusted_networks`` are neither delayed nor counted.
- Counters are forgotten :data:`FORGET_AFTER_S` after their last failure, and at most
  :data:`MAX_ENTRIES` are kept (least recently failed go first), so memory is bounded.

Disconnecting after ``[auth] max_failures_per_connection`` failures is the sessions' part.
The counters live in one place per server: in the process itself when it serves alone, and in
the supervisor's anvil (``auth/anvil.py``) with ``--workers N``, so every worker and every
protocol sees the same counts; :func:`process_throttle` returns the right kind.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import os
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, TypeVar

if TYPE_CHECKING:
    from msgstore.config import Config

#: Counters untouched for this long are dropped.
FORGET_AFTER_S: Final = 15 * 60
#: Most counters kept per table (sources, accounts); about 200 octets each.
MAX_ENTRIES: Final = 100_000
#: Distinct wrong passwords remembered per (source, account) for the no-escalation rule.
REMEMBERED_PASSWORDS: Final = 4

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_K = TypeVar("_K")


@dataclass(frozen=True, slots=True)
class ThrottlePolicy:
    """The numbers of the throttle (see the module docstring)."""

    base_delay_s: float = 2.0
    max_delay_s: float = 15.0
    trusted: tuple[Network, ...] = ()
    ipv6_prefix: int = 56

    @classmethod
    def from_config(cls, config: Config) -> ThrottlePolicy:
        auth = config.auth
        return cls(
            base_delay_s=auth.failure_delay_ms / 1000,
            max_delay_s=auth.failure_delay_max_ms / 1000,
            trusted=parse_networks(auth.trusted_networks),
        )

    def delay_after(self, failures: int) -> float:
        """Seconds to wait before the next attempt after ``failures`` failures."""
        if failures <= 0 or self.base_delay_s <= 0:
            return 0.0
        # 2 ** 30 is far past any sensible cap; avoid huge floats for long failure runs.
        factor: int = 1 << min(failures - 1, 30)
        return min(self.base_delay_s * factor, self.max_delay_s)


@dataclass(slots=True)
class _Counter:
    failures: int = 0
    last: float = 0.0
    digests: list[bytes] = field(default_factory=list)


class LoginThrottle:
    """Per-process failure counters; one instance is shared by every service."""

    def __init__(
        self,
        policy: ThrottlePolicy,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_entries: int = MAX_ENTRIES,
        key: bytes | None = None,
    ) -> None:
        self.policy = policy
        self._clock = clock
        self._max_entries = max_entries
        self._sources: OrderedDict[str, _Counter] = OrderedDict()
        self._accounts: OrderedDict[str, _Counter] = OrderedDict()
        self._pairs: OrderedDict[tuple[str, str], _Counter] = OrderedDict()
        #: Keys the password digests of the no-escalation rule; the anvil's workers share it.
        self.key = key if key is not None else os.urandom(32)

    # --- keys ---------------------------------------------------------------------------------

    def source_key(self, peer_host: str) -> str:
        """The counting unit of a peer: the IPv4 address, or its IPv6 prefix."""
        text = peer_host.partition("%")[0].strip("[]")
        try:
            address = ipaddress.ip_address(text)
        except ValueError:
            return peer_host
        if isinstance(address, ipaddress.IPv6Address):
            if address.ipv4_mapped is not None:
                return str(address.ipv4_mapped)
            return str(ipaddress.IPv6Network((address, self.policy.ipv6_prefix), strict=False))
        return str(address)

    def is_trusted(self, peer_host: str) -> bool:
        text = peer_host.partition("%")[0].strip("[]")
        try:
            address = ipaddress.ip_address(text)
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in network for network in self.policy.trusted)

    @staticmethod
    def account_key(name: str) -> str:
        return name.casefold()

    # --- the three calls a login makes --------------------------------------------------------

    def delay(self, account: str, peer_host: str) -> float:
        """Seconds the next attempt of ``account`` from ``peer_host`` must wait."""
        if self.is_trusted(peer_host):
            return 0.0
        now = self._clock()
        failures = max(
            self._live(self._sources, self.source_key(peer_host), now),
            self._live(self._accounts, self.account_key(account), now),
        )
        return self.policy.delay_after(failures)

    async def wait(self, account: str, peer_host: str) -> None:
        """Sleep the delay of :meth:`delay` (call it before checking the password)."""
        seconds = self.delay(account, peer_host)
        if seconds > 0:
            await asyncio.sleep(seconds)

    def failed(self, account: str, peer_host: str, secret: bytes | str | None = None) -> None:
        """Count a failure; ``secret`` (the wrong password) enables the no-escalation rule."""
        if self.is_trusted(peer_host):
            return
        self.record_failure(account, peer_host, None if secret is None else self.digest(secret))

    def digest(self, secret: bytes | str) -> bytes:
        """The keyed digest kept instead of a wrong password."""
        raw = secret.encode("utf-8", "surrogatepass") if isinstance(secret, str) else secret
        return hmac.digest(self.key, raw, hashlib.sha256)[:16]

    def record_failure(self, account: str, peer_host: str, digest: bytes | None) -> None:
        """:meth:`failed` with the password already digested (the anvil's entry point)."""
        if self.is_trusted(peer_host):
            return
        now = self._clock()
        source = self.source_key(peer_host)
        name = self.account_key(account)
        if digest is not None:
            pair = self._touch(self._pairs, (source, name), now)
            if digest in pair.digests:
                return
            pair.digests.append(digest)
            del pair.digests[:-REMEMBERED_PASSWORDS]
        for table, key in ((self._sources, source), (self._accounts, name)):
            counter = self._touch(table, key, now)
            counter.failures += 1

    def succeeded(self, account: str, peer_host: str) -> None:
        """Clear the counters of the source and of the account."""
        source = self.source_key(peer_host)
        name = self.account_key(account)
        self._sources.pop(source, None)
        self._accounts.pop(name, None)
        self._pairs.pop((source, name), None)

    # --- tables -------------------------------------------------------------------------------

    def _live(self, table: OrderedDict[str, _Counter], key: str, now: float) -> int:
        counter = table.get(key)
        if counter is None:
            return 0
        if now - counter.last > FORGET_AFTER_S:
            del table[key]
            return 0
        return counter.failures

    def _touch(self, table: OrderedDict[_K, _Counter], key: _K, now: float) -> _Counter:
        counter = table.get(key)
        if counter is None or now - counter.last > FORGET_AFTER_S:
            counter = _Counter()
            table[key] = counter
        counter.last = now
        table.move_to_end(key)
        while len(table) > self._max_entries:
            table.popitem(last=False)
        return counter


_process_throttle: LoginThrottle | None = None
#: Makes the throttle of a worker whose counters live in the supervisor's anvil
#: (``anvil.WorkerAnvil.install``); None: counters in this process.
_shared_factory: Callable[[ThrottlePolicy], LoginThrottle] | None = None


def use_shared_counters(factory: Callable[[ThrottlePolicy], LoginThrottle] | None) -> None:
    """From now on :func:`process_throttle` makes its throttle with ``factory``."""
    global _shared_factory, _process_throttle
    _shared_factory = factory
    _process_throttle = None


def process_throttle(policy: ThrottlePolicy) -> LoginThrottle:
    """The one throttle of this process, shared by every service that checks passwords (a
    failure over POP3 slows IMAP and poppassd down too; with ``--workers N`` every worker's
    throttle counts in the supervisor's anvil). Created with ``policy`` on first use; a later
    call with another policy replaces it (a reloaded configuration)."""
    global _process_throttle
    if _process_throttle is None or _process_throttle.policy != policy:
        _process_throttle = (_shared_factory or LoginThrottle)(policy)
    return _process_throttle


def parse_networks(texts: Sequence[str]) -> tuple[Network, ...]:
    """``["10.0.0.0/8", "::1"]`` -> networks. Raises ValueError naming the bad entry."""
    out: list[Network] = []
    for text in texts:
        try:
            out.append(ipaddress.ip_network(text, strict=False))
        except ValueError:
            raise ValueError(f"{text!r} is not an IP network such as 10.0.0.0/8") from None
    return tuple(out)

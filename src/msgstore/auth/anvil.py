"""The anvil: one place per server that counts connections and login failures for every
protocol and every worker process (Dovecot's ``anvil`` service does the same job).

What it counts (RELIABILITY.md §3, §7 cases 15 and 18):

- connection slots by *kind* and *key*: ``ip`` = a client address that has not logged in yet,
  ``user`` = one account from one address after login. IMAP and POP3 take their slots from the
  same table, so ten IMAP connections of an account from one address leave no room for an
  eleventh connection of that account over POP3, and the other way round. Each protocol
  compares the shared count with its own limit (``[imap]``/``[pop3]``
  ``max_connections_per_user``/``_per_ip``);
- the login throttle's failure counters (``auth/throttle.py``): per source, per account name,
  and the wrong-password digests of the no-escalation rule.

Where the state lives:

- ``msgstore serve`` in one process: in the process (:class:`LocalAnvil`, and the plain
  :class:`~msgstore.auth.throttle.LoginThrottle` of :func:`throttle.process_throttle`);
- ``msgstore serve --workers N``: in the supervisor (:class:`AnvilHub`), which is single
  threaded and never opens the store. Before forking a worker it makes a ``SOCK_SEQPACKET``
  socket pair; the worker keeps one end (:class:`WorkerAnvil`), the supervisor's ``select``
  loop serves the other. Every slot is owned by the channel that took it: when a worker dies,
  however it dies, the end of its channel reads EOF and the hub gives back every slot that
  worker held, so counts never leak. The password digests are keyed by a secret made before
  the fork, the same in every worker, so the same wrong password retried through two workers
  does not escalate either.

Messages are JSON arrays, one per datagram: ``[id, op, args...]``; an ``id`` of 0 asks for no
reply (``leave``, ``failed``, ``ok``); ``enter`` and ``delay`` are answered ``[id, value]``.
A worker whose anvil does not answer within :data:`ANSWER_WITHIN_S` (it cannot happen while
the supervisor lives: it only ever waits in ``select``) logs it and admits the connection: a
limit must not take the whole service down.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import json
import logging
import socket
from abc import ABC, abstractmethod
from typing import Any, Final

from msgstore.auth import throttle as throttle_mod
from msgstore.auth.throttle import LoginThrottle, ThrottlePolicy

log = logging.getLogger(__name__)

#: Connection slot kinds.
IP: Final = "ip"
USER: Final = "user"
#: A worker waits this long for the anvil before it gives up and admits.
ANSWER_WITHIN_S: Final = 5.0
#: Longest key or account name sent as is; longer ones are sent as a digest (a 64 KiB LOGIN
#: name must not make a datagram too big).
MAX_KEY_CHARS: Final = 256
_DATAGRAM: Final = 65536


def user_slot_key(account_id: int, peer_host: str) -> str:
    """The ``user`` slot of one account from one client address (every protocol uses it)."""
    return f"{account_id} {peer_host}"


def _short(text: str) -> str:
    if len(text) <= MAX_KEY_CHARS:
        return text
    return "#" + hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


class AnvilState:
    """The counts themselves (module docstring); pure and synchronous. ``owner`` is whoever
    took a slot (a worker's channel, or the process itself) and gives them all back at once
    with :meth:`drop_owner`. A limit of 0 means no limit."""

    def __init__(self, login_throttle: LoginThrottle | None = None) -> None:
        self.throttle = login_throttle or LoginThrottle(ThrottlePolicy())
        self.counts: collections.Counter[tuple[str, str]] = collections.Counter()
        self._owned: dict[object, collections.Counter[tuple[str, str]]] = {}

    def enter(self, owner: object, kind: str, key: str, limit: int) -> bool:
        slot = (kind, key)
        if limit and self.counts[slot] >= limit:
            return False
        self.counts[slot] += 1
        self._owned.setdefault(owner, collections.Counter())[slot] += 1
        return True

    def leave(self, owner: object, kind: str, key: str) -> None:
        slot = (kind, key)
        held = self._owned.get(owner)
        if held is None or held[slot] <= 0:
            return  # not this owner's: never let one worker release another's slot
        held[slot] -= 1
        if held[slot] <= 0:
            del held[slot]
        self.counts[slot] -= 1
        if self.counts[slot] <= 0:
            del self.counts[slot]

    def drop_owner(self, owner: object) -> int:
        """Give back every slot ``owner`` holds; returns how many there were."""
        held = self._owned.pop(owner, None)
        if not held:
            return 0
        for slot, n in held.items():
            self.counts[slot] -= n
            if self.counts[slot] <= 0:
                del self.counts[slot]
        return sum(held.values())

    def handle(self, owner: object, message: list[Any]) -> Any:
        """Run one request; returns the reply value (None for one-way messages)."""
        op = message[1]
        if op == "enter":
            _, _, kind, key, limit = message
            return self.enter(owner, str(kind), str(key), int(limit))
        if op == "leave":
            self.leave(owner, str(message[2]), str(message[3]))
        elif op == "delay":
            return self.throttle.delay(str(message[2]), str(message[3]))
        elif op == "failed":
            digest = message[4]
            self.throttle.record_failure(
                str(message[2]), str(message[3]), bytes.fromhex(digest) if digest else None
            )
        elif op == "ok":
            self.throttle.succeeded(str(message[2]), str(message[3]))
        else:
            raise ValueError(f"unknown anvil request {op!r}")
        return None


class Anvil(ABC):
    """What sessions use: take a slot (``await enter``, False when the limit is reached) and
    give it back (``leave``, never blocks)."""

    @abstractmethod
    async def enter(self, kind: str, key: str, limit: int) -> bool: ...

    @abstractmethod
    def leave(self, kind: str, key: str) -> None: ...


class LocalAnvil(Anvil):
    """The anvil of a server that runs in one process."""

    def __init__(self) -> None:
        # The throttle of a single process stays throttle.process_throttle's; this one only
        # counts connections.
        self.state = AnvilState()

    async def enter(self, kind: str, key: str, limit: int) -> bool:
        return self.state.enter(self, kind, _short(key), limit)

    def leave(self, kind: str, key: str) -> None:
        self.state.leave(self, kind, _short(key))


class WorkerAnvil(Anvil):
    """A worker's end of its channel to the supervisor's :class:`AnvilHub`."""

    def __init__(self, sock: socket.socket, key: bytes) -> None:
        sock.setblocking(False)
        self._sock = sock
        self.key = key
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._next_id = 1
        self._outbox: collections.deque[bytes] = collections.deque()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._broken = False

    def install(self) -> None:
        """Make this the process's anvil, and its throttle count in the hub."""
        global _process_anvil
        _process_anvil = self
        throttle_mod.use_shared_counters(lambda policy: WorkerThrottle(policy, self))

    # --- the session side ---------------------------------------------------------------------

    async def enter(self, kind: str, key: str, limit: int) -> bool:
        answer = await self.request(["enter", kind, _short(key), limit], fallback=True)
        return bool(answer)

    def leave(self, kind: str, key: str) -> None:
        self.send(["leave", kind, _short(key)])

    # --- the channel --------------------------------------------------------------------------

    def send(self, message: list[Any]) -> None:
        """A one-way message (id 0)."""
        self._put(json.dumps([0, *message]).encode())

    async def request(self, message: list[Any], *, fallback: Any) -> Any:
        """Send ``message`` and wait for its answer; ``fallback`` when the anvil is gone."""
        self._attach()
        if self._broken:
            return fallback
        assert self._loop is not None
        rid = self._next_id
        self._next_id = rid + 1 if rid < 2**31 else 1
        future: asyncio.Future[Any] = self._loop.create_future()
        self._pending[rid] = future
        self._put(json.dumps([rid, *message]).encode())
        try:
            return await asyncio.wait_for(future, ANSWER_WITHIN_S)
        except TimeoutError:
            log.warning("the anvil did not answer within %.0f s; admitting", ANSWER_WITHIN_S)
            return fallback
        finally:
            self._pending.pop(rid, None)

    def _attach(self) -> None:
        loop = asyncio.get_running_loop()
        if self._loop is loop or self._broken:
            return
        self._loop = loop
        loop.add_reader(self._sock.fileno(), self._on_readable)

    def _put(self, data: bytes) -> None:
        if self._broken:
            return
        if not self._outbox:
            try:
                self._sock.send(data)
                return
            except BlockingIOError:
                pass
            except OSError as exc:
                self._break(exc)
                return
        self._outbox.append(data)
        if len(self._outbox) == 1 and self._loop is not None:
            self._loop.add_writer(self._sock.fileno(), self._flush)

    def _flush(self) -> None:
        while self._outbox:
            try:
                self._sock.send(self._outbox[0])
            except BlockingIOError:
                return
            except OSError as exc:
                self._break(exc)
                return
            self._outbox.popleft()
        if self._loop is not None:
            self._loop.remove_writer(self._sock.fileno())

    def _on_readable(self) -> None:
        while True:
            try:
                data = self._sock.recv(_DATAGRAM)
            except BlockingIOError:
                return
            except OSError as exc:
                self._break(exc)
                return
            if not data:
                self._break(None)
                return
            rid, value = json.loads(data)
            future = self._pending.pop(rid, None)
            if future is not None and not future.done():
                future.set_result(value)

    def _break(self, exc: OSError | None) -> None:
        if self._broken:
            return
        self._broken = True
        log.error("lost the channel to the anvil (%s); limits are not enforced", exc or "EOF")
        if self._loop is not None:
            with contextlib.suppress(Exception):
                self._loop.remove_reader(self._sock.fileno())
                self._loop.remove_writer(self._sock.fileno())
        for future in self._pending.values():
            if not future.done():
                future.cancel()
        self._outbox.clear()


class WorkerThrottle(LoginThrottle):
    """A worker's login throttle: the counters are the hub's; only the policy's arithmetic on
    the source key and the password digest (with the key shared by every worker) run here."""

    def __init__(self, policy: ThrottlePolicy, anvil: WorkerAnvil) -> None:
        super().__init__(policy, key=anvil.key)
        self._anvil = anvil

    async def wait(self, account: str, peer_host: str) -> None:
        if self.is_trusted(peer_host):
            return
        seconds = await self._anvil.request(["delay", _short(account), peer_host], fallback=0)
        if seconds:
            await asyncio.sleep(float(seconds))

    def record_failure(self, account: str, peer_host: str, digest: bytes | None) -> None:
        if self.is_trusted(peer_host):
            return
        self._anvil.send(
            ["failed", _short(account), peer_host, digest.hex() if digest is not None else None]
        )

    def succeeded(self, account: str, peer_host: str) -> None:
        self._anvil.send(["ok", _short(account), peer_host])


class AnvilHub:
    """The supervisor's side (module docstring): one channel per worker, served from the
    supervisor's ``select`` loop through :meth:`fds` and :meth:`on_readable`. No threads."""

    def __init__(self, policy: ThrottlePolicy) -> None:
        self.state = AnvilState(LoginThrottle(policy))
        self._channels: dict[int, socket.socket] = {}

    def open_channel(self) -> socket.socket:
        """Before forking a worker: a new channel; the worker gets the returned end (the
        supervisor closes its copy after the fork)."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        ours.setblocking(False)
        self._channels[ours.fileno()] = ours
        return theirs

    def fds(self) -> list[int]:
        return list(self._channels)

    def on_readable(self, fd: int) -> None:
        sock = self._channels.get(fd)
        if sock is None:
            return
        while True:
            try:
                data = sock.recv(_DATAGRAM)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                released = self.state.drop_owner(fd)
                if released:
                    log.info("a worker left; released its %d connection slots", released)
                del self._channels[fd]
                sock.close()
                return
            try:
                message = json.loads(data)
                value = self.state.handle(fd, message)
            except (ValueError, TypeError, IndexError, KeyError):
                log.error("bad anvil request %r", data[:200])
                continue
            rid = message[0]
            if rid:
                try:
                    sock.send(json.dumps([rid, value]).encode())
                except OSError as exc:  # a worker that stopped reading; it will time out
                    log.warning("cannot answer a worker: %s", exc)

    def in_worker(self, sock: socket.socket) -> WorkerAnvil:
        """In a newly forked worker: close the supervisor's ends, install ``sock`` as the
        process's anvil."""
        for ours in self._channels.values():
            ours.close()
        self._channels.clear()
        anvil = WorkerAnvil(sock, self.state.throttle.key)
        anvil.install()
        return anvil

    def close(self) -> None:
        for sock in self._channels.values():
            sock.close()
        self._channels.clear()


_process_anvil: Anvil | None = None


def process_anvil() -> Anvil:
    """The anvil of this process: the worker's channel to the hub, or a local one."""
    global _process_anvil
    if _process_anvil is None:
        _process_anvil = LocalAnvil()
    return _process_anvil

"""``msgstore serve``: every configured service, in one process or in N worker processes.

Startup, in this order, each step failing with one log line and a sysexits code:

1. create the data directory and take DATA/run/serve.lock (one server per data directory);
2. bind every listen address of the configuration (net/listener.py), before writing anything;
3. make sure the TLS certificate exists (net/tls.py) and loads;
4. open the store (``storage.open.open_backend``);
5. start each service of :data:`SERVICES` with its sockets; a configured service that is not
   in the table yet is logged and its sockets are closed again;
6. write DATA/run/msgstore.pid -- from then on the server is ready.

Every process runs its services on the event loop ``[server] event_loop`` names
(:func:`loop_factory`: uvloop by default, asyncio's own loop as the fallback); ``uvloop``
configured but not importable stops the server before step 1 (exit 78).

SIGTERM or SIGINT stops it: services close (each says goodbye to its sessions), then the store,
then the pid file goes; the exit code is 0.

With ``--workers N`` (``[server] workers``), steps 1-3 run once in this process, which then
forks N workers (:class:`Supervisor`). Each worker runs steps 4-5 on its own event loop with
its own store connections, on the sockets bound in step 2 (inherited by every worker; a worker
accepts a new connection only while it holds no more of that service's connections than the
others, net/balance.py). Once every worker is ready the supervisor writes the pid file (its own
pid). A worker that dies is restarted with a growing delay; a worker that fails before the
server was ever ready stops the server with the worker's exit code. SIGTERM/SIGINT to the
supervisor stop every worker, then the supervisor exits 0. Log lines of the workers say
``msgstore(worker-2)<pid>``, sessions carry the pid.

Adding a protocol server is one entry in :data:`SERVICES`: the section name of its listen keys
and where its async start function ``start(config, backend, listeners) -> RunningService`` is
(``"module:function"``; only services with a listen address are imported, before any fork).
It gets the effective configuration (``config.tls.cert``/``key`` are always set, to the
generated pair if none was configured), the open backend, and its bound sockets
(``Listener.implicit_tls`` tells ``tls_listen`` sockets from plain ones). It returns once it
accepts connections.

Exit codes: 0 stopped by a signal; 69 the store cannot be opened; 70 a service failed to
start; 71 an address cannot be bound; 73 the data directory or TLS files cannot be written;
75 another server runs on the same data directory; 78 the configuration is unusable.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import fcntl
import gc
import importlib
import logging
import os
import resource
import select
import signal
import tempfile
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, Final, NoReturn, Protocol

from msgstore import __version__, metrics
from msgstore.auth.anvil import AnvilHub
from msgstore.auth.throttle import ThrottlePolicy
from msgstore.config import Config, ConfigError, TlsSection, listen_keys
from msgstore.core.errors import StoreError
from msgstore.delivery.relay import start_relay
from msgstore.net import balance
from msgstore.net.control import control_dir, prepare_control_dir, start_control
from msgstore.net.listener import Listener, ListenError, bind_listeners, close_listeners
from msgstore.net.logs import configure_logging
from msgstore.net.tls import ensure_tls_files, limit_tls_read_buffer, server_context
from msgstore.storage.base import Backend
from msgstore.storage.open import open_backend

log = logging.getLogger(__name__)

EX_OK: Final = 0
EX_UNAVAILABLE: Final = 69
EX_SOFTWARE: Final = 70
EX_OSERR: Final = 71
EX_CANTCREAT: Final = 73
EX_TEMPFAIL: Final = 75
EX_CONFIG: Final = 78

PID_FILE: Final = "msgstore.pid"
LOCK_FILE: Final = "serve.lock"

#: First delay before a dead worker is started again; it doubles with each death of a worker
#: that ran less than :data:`STABLE_S`, up to :data:`RESTART_MAX_S`.
RESTART_FIRST_S: Final = 0.5
RESTART_MAX_S: Final = 30.0
STABLE_S: Final = 60.0
#: Time workers get to stop after SIGTERM before they are killed (sessions get 5 s of it).
WORKER_STOP_S: Final = 20.0


class RunningService(Protocol):
    """What a started service hands back so that shutdown can stop it."""

    async def close(self) -> None:
        """Stop accepting, end every session politely (IMAP ``* BYE``), return when done."""
        ...


ServiceStart = Callable[[Config, Backend, Sequence[Listener]], Awaitable[RunningService]]

#: The protocol servers, by the section name of their listen keys: "module:function" of each
#: start function. Each protocol adds its entry. A service is imported only when it has a
#: listen address (:func:`service_start`): a server without a web listener never loads FastAPI.
SERVICES: Final[dict[str, str]] = {
    "imap": "msgstore.imap.server:start",
    "pop3": "msgstore.pop3.service:start",
    "poppassd": "msgstore.poppassd.service:start",
    "lmtp": "msgstore.lmtp.service:start_lmtp",
    "smtp": "msgstore.lmtp.service:start_smtp",
    "web": "msgstore.web.service:start",
    "delivery": "msgstore.socketmap.service:start",  # [delivery] socketmap_listen
}


def service_start(name: str) -> ServiceStart | None:
    """The start function of service ``name`` (importing its module), or None if unknown."""
    spec = SERVICES.get(name)
    if spec is None:
        return None
    module, _, function = spec.partition(":")
    start: ServiceStart = getattr(importlib.import_module(module), function)
    return start


def _preload_services(config: Config) -> None:
    """Import the configured services now, so that forked workers share the loaded modules."""
    for name, addresses in listen_keys(config):
        if addresses:
            service_start(name.partition(".")[0])


def run_dir(config: Config) -> Path:
    """DATA/run: the pid file and the lock that keeps a second server off the same data."""
    return config.store.data_dir / "run"


def metrics_dir(config: Config) -> Path:
    """DATA/run/prometheus: the workers' metric files (``--workers N``; metrics.py)."""
    return run_dir(config) / "prometheus"


def worker_count(config: Config, workers: int | None = None) -> int:
    """Processes to run: ``workers`` (``--workers``) or ``[server] workers``; 0 is one per CPU."""
    count = config.server.workers if workers is None else workers
    return count if count > 0 else (os.cpu_count() or 1)


def serve(config: Config, *, workers: int | None = None) -> int:
    """Run every configured service until SIGTERM/SIGINT; return the process exit code.

    ``workers`` overrides ``[server] workers`` (see :func:`worker_count`).
    """
    configure_logging(config.log, service="msgstore", ident="serve")
    try:
        loop_factory(config)  # a configured loop that cannot run stops us before anything
    except ConfigError as exc:
        log.critical("%s", exc)
        return EX_CONFIG
    _raise_open_files_limit()
    _fix_malloc_mmap_threshold()
    data_dir = config.store.data_dir
    try:
        run_dir(config).mkdir(parents=True, exist_ok=True)
        lock = open(run_dir(config) / LOCK_FILE, "a+")  # noqa: SIM115 -- held for the whole run
    except OSError as exc:
        log.critical("store.data_dir: cannot create %s: %s", data_dir, exc.strerror)
        return EX_CANTCREAT
    try:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = _read_pid(run_dir(config) / PID_FILE)
            log.critical(
                "another msgstore serve%s is running on %s",
                f" (pid {other})" if other else "",
                data_dir,
            )
            return EX_TEMPFAIL
        # Left by a server that was killed: it must not make anyone think we are ready.
        (run_dir(config) / PID_FILE).unlink(missing_ok=True)
        _preload_services(config)
        return _serve_locked(config, worker_count(config, workers))
    finally:
        lock.close()


#: glibc ``mallopt`` parameter number of M_MMAP_THRESHOLD, and the value we fix it at.
_M_MMAP_THRESHOLD: Final = -3
_MMAP_THRESHOLD_OCTETS: Final = 1 << 20


def _fix_malloc_mmap_threshold() -> None:
    """Fix glibc's mmap threshold at 1 MiB (workers inherit it). Left dynamic, it rises to
    the size of the largest block freed -- an argon2id hash at login takes 19 MiB -- after
    which such blocks come from the heaps and stay resident when freed: with thousands of
    logins that doubled the memory per idle IMAP connection (docs/benchmarks.md)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        if not libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_OCTETS):
            log.debug("mallopt(M_MMAP_THRESHOLD) refused")


def _raise_open_files_limit() -> None:
    """Lift the soft RLIMIT_NOFILE to the hard limit: every connection is a descriptor, and a
    service manager's default soft limit (1,024 under systemd) would cap a worker at about a
    thousand clients. The hard limit stays the administrator's to set."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError) as exc:
            log.warning(
                "could not raise the open-files limit from %d to %d: %s", soft, target, exc
            )
            return
        log.debug("open-files limit raised from %d to %d", soft, target)


def _serve_locked(config: Config, workers: int) -> int:
    try:
        listeners = bind_listeners(config)
    except ListenError as exc:
        log.critical("%s", exc)
        return EX_OSERR
    try:
        try:
            cert, key = ensure_tls_files(config)
            server_context(cert, key)  # a broken certificate stops us now, not at the 1st client
        except ConfigError as exc:
            log.critical("%s", exc)
            return EX_CONFIG
        except OSError as exc:
            log.critical(
                "cannot write the TLS certificate into %s: %s", exc.filename, exc.strerror
            )
            return EX_CANTCREAT
        effective = config.model_copy(update={"tls": TlsSection(cert=cert, key=key)})
        try:  # sockets of the processes of the last run (net/control.py)
            prepare_control_dir(control_dir(config))
        except OSError as exc:
            log.warning("cannot prepare %s: %s", control_dir(config), exc.strerror)
        pid_path = run_dir(config) / PID_FILE
        if workers > 1:
            return Supervisor(effective, listeners, workers).run()
        try:
            return _run(config, _main(effective, listeners, ready=lambda: _write_pid(pid_path)))
        finally:
            pid_path.unlink(missing_ok=True)
    finally:
        close_listeners(listeners)


LoopFactory = Callable[[], asyncio.AbstractEventLoop]


def loop_factory(config: Config) -> LoopFactory | None:
    """The event loop ``[server] event_loop`` asks for: uvloop's factory, or None for asyncio's
    default loop. ``auto`` is uvloop when it can be imported (docs/architecture.md: processes
    and concurrency).

    Raises:
        ConfigError: ``uvloop`` is configured and cannot be imported.
    """
    choice = config.server.event_loop
    if choice == "asyncio":
        return None
    try:
        uvloop = importlib.import_module("uvloop")
    except ImportError as exc:
        if choice == "uvloop":
            raise ConfigError(f"server.event_loop: uvloop cannot be imported: {exc}") from None
        return None
    factory: LoopFactory = uvloop.new_event_loop
    return factory


def _run(config: Config, main: Coroutine[Any, Any, int]) -> int:
    with asyncio.Runner(loop_factory=loop_factory(config)) as runner:
        return runner.run(main)


async def _main(config: Config, listeners: list[Listener], *, ready: Callable[[], None]) -> int:
    loop = asyncio.get_running_loop()
    limit_tls_read_buffer()  # asyncio's TLS transports (net/tls.py); uvloop has its own
    stop = asyncio.Event()

    def on_signal(signum: int) -> None:
        if stop.is_set():
            log.info("received %s again; still shutting down", signal.Signals(signum).name)
        else:
            log.info("received %s, shutting down", signal.Signals(signum).name)
            stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
    try:
        try:
            backend = await open_backend(config)
        except StoreError as exc:
            log.critical("store: cannot open %s: %s", config.store.data_dir, exc.public)
            if exc.detail:
                log.error("store: %s", exc.detail)
            return EX_UNAVAILABLE
        except OSError as exc:
            log.critical("store: cannot open %s: %s", config.store.data_dir, exc.strerror or exc)
            return EX_UNAVAILABLE
        try:
            code = await _serve_with(config, backend, listeners, stop, ready)
        finally:
            await backend.close()
        log.info("stopped")
        return code
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)


async def _serve_with(
    config: Config,
    backend: Backend,
    listeners: list[Listener],
    stop: asyncio.Event,
    ready: Callable[[], None],
) -> int:
    running: list[tuple[str, RunningService]] = []
    control = await start_control(config)  # session list / kill, live statistics
    if control is not None:
        running.append(("control", control))
    try:
        for name, own in _by_service(config, listeners):
            addresses = ", ".join(_describe(listener) for listener in own)
            start = service_start(name) if own else None
            if not own:
                log.info("%s: off (no listen address)", name)
            elif start is None:
                log.info("%s: not built yet; closing %s", name, addresses)
                close_listeners(own)
            else:
                try:
                    running.append((name, await start(config, backend, own)))
                except StoreError as exc:
                    log.critical("%s: cannot start: %s", name, exc.public)
                    return EX_SOFTWARE
                except Exception:
                    log.critical("%s: cannot start", name, exc_info=True)
                    return EX_SOFTWARE
                log.info("%s: listening on %s", name, addresses)
        # The outbound relay queue runner (delivery/relay.py; one process works the queue).
        running.append(("relay", await start_relay(config, backend)))
        log.info(
            "msgstore %s serving %s (pid %d, %s)",
            __version__,
            config.store.data_dir,
            os.getpid(),
            type(asyncio.get_running_loop()).__module__.partition(".")[0],
        )
        # What start-up built (modules, config, listeners: ~50,000 objects) lives as long as
        # the process; kept out of every later collection, the first logins do not pay a
        # full collection of it (~25 ms).
        gc.freeze()
        ready()
        await stop.wait()
    finally:
        for name, service in reversed(running):
            try:
                await service.close()
            except Exception:
                log.error("%s: error while stopping", name, exc_info=True)
    return EX_OK


def _by_service(config: Config, listeners: list[Listener]) -> list[tuple[str, list[Listener]]]:
    # Every section with a listen key, in declaration order, with its sockets (maybe none).
    names = dict.fromkeys(key.partition(".")[0] for key, _ in listen_keys(config))
    return [(name, [lst for lst in listeners if lst.service == name]) for name in names]


def _describe(listener: Listener) -> str:
    return f"{listener.bound} (TLS)" if listener.implicit_tls else str(listener.bound)


def _write_pid(path: Path) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o644)
        with os.fdopen(fd, "w") as f:
            f.write(f"{os.getpid()}\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _read_pid(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


# --- workers -----------------------------------------------------------------------------------


@dataclass(slots=True)
class _Worker:
    number: int
    pid: int = 0  # 0: not running
    ready_fd: int = -1  # read end of its readiness pipe until it said "ready"
    ready: bool = False
    started: float = 0.0
    quick_deaths: int = 0  # consecutive deaths after less than STABLE_S
    restart_at: float | None = None


class Supervisor:
    """The first process of ``msgstore serve --workers N``: forks, watches and stops workers.

    It never touches the store and starts no thread before forking (a forked child inherits
    only the calling thread); it holds the lock of the data directory, the listening sockets
    (so a restarted worker gets the same ones) and the pid file. Signals reach it through
    ``signal.set_wakeup_fd``, readiness through one pipe per worker; in between it sleeps in
    ``select``.
    """

    def __init__(self, config: Config, listeners: list[Listener], count: int) -> None:
        self.config = config
        self.listeners = listeners
        self.workers = [_Worker(n) for n in range(1, count + 1)]
        self._signals: list[int] = []
        self._wake_r = -1
        self._wake_w = -1
        self._stopping = False
        self._kill_at: float | None = None
        self._announced = False
        self._code = EX_OK
        # Connection and login-failure counts of every worker (auth/anvil.py).
        self.anvil = AnvilHub(ThrottlePolicy.from_config(config))
        # Open connections per service and worker, for balanced accepting (net/balance.py).
        services = sorted({listener.service for listener in listeners})
        self.load = balance.LoadTable(services, count, config.server.accept_wait_ms / 1000)

    # parent side ------------------------------------------------------------------------------

    def run(self) -> int:
        metrics.prepare_multiprocess_dir(metrics_dir(self.config))
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        old_wakeup = signal.set_wakeup_fd(self._wake_w, warn_on_full_buffer=False)
        handled = (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD)
        old = {signum: signal.signal(signum, self._on_signal) for signum in handled}
        try:
            for worker in self.workers:
                self._spawn(worker)
            self._loop()
        finally:
            for worker in self.workers:  # only after an unexpected error in the loop
                if worker.pid:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(worker.pid, signal.SIGKILL)
                    with contextlib.suppress(ChildProcessError):
                        os.waitpid(worker.pid, 0)
                    worker.pid = 0
                self._close_ready(worker)
            for signum, handler in old.items():
                signal.signal(signum, handler)
            signal.set_wakeup_fd(old_wakeup)
            os.close(self._wake_r)
            os.close(self._wake_w)
            self.anvil.close()
            self.load.close()
            (run_dir(self.config) / PID_FILE).unlink(missing_ok=True)
        log.info("stopped")
        return self._code

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._signals.append(signum)

    def _loop(self) -> None:
        while True:
            self._handle_signals()
            self._reap()
            now = time.monotonic()
            if self._stopping:
                if not any(w.pid for w in self.workers):
                    return
                if self._kill_at is not None and now >= self._kill_at:
                    for worker in self.workers:
                        if worker.pid:
                            log.warning("worker-%d did not stop; killing it", worker.number)
                            with contextlib.suppress(ProcessLookupError):
                                os.kill(worker.pid, signal.SIGKILL)
                    self._kill_at = None
            else:
                self._start_due(now)
                if not self._announced and all(w.ready for w in self.workers):
                    self._announced = True
                    _write_pid(run_dir(self.config) / PID_FILE)
                    log.info(
                        "msgstore %s serving %s with %d workers (pid %d)",
                        __version__,
                        self.config.store.data_dir,
                        len(self.workers),
                        os.getpid(),
                    )
            self._wait(self._timeout(now))

    def _timeout(self, now: float) -> float | None:
        times = [w.restart_at for w in self.workers if w.restart_at is not None]
        if self._kill_at is not None:
            times.append(self._kill_at)
        return max(0.0, min(times) - now) if times else None

    def _wait(self, timeout: float | None) -> None:
        fds = [self._wake_r] + [w.ready_fd for w in self.workers if w.ready_fd >= 0]
        readable, _, _ = select.select(fds + self.anvil.fds(), [], [], timeout)
        for fd in readable:
            self.anvil.on_readable(fd)  # ignores descriptors that are not its own
        if self._wake_r in readable:
            with contextlib.suppress(BlockingIOError):
                while os.read(self._wake_r, 512):
                    pass
        for worker in self.workers:
            if worker.ready_fd >= 0 and worker.ready_fd in readable:
                if os.read(worker.ready_fd, 16):
                    worker.ready = True
                self._close_ready(worker)  # "ready" or EOF (it died first: _reap says why)

    def _handle_signals(self) -> None:
        while self._signals:
            signum = self._signals.pop(0)
            if signum == signal.SIGCHLD:
                continue
            name = signal.Signals(signum).name
            if self._stopping:
                log.info("received %s again; still shutting down", name)
            else:
                log.info("received %s, shutting down", name)
                self._stop()

    def _stop(self) -> None:
        self._stopping = True
        self._kill_at = time.monotonic() + WORKER_STOP_S
        for worker in self.workers:
            worker.restart_at = None
            if worker.pid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(worker.pid, signal.SIGTERM)

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            worker = next((w for w in self.workers if w.pid == pid), None)
            if worker is None:
                continue
            self._close_ready(worker)
            worker.pid = 0
            self.load.clear(worker.number)
            metrics.worker_exited(metrics_dir(self.config), pid)
            (control_dir(self.config) / f"{pid}.sock").unlink(missing_ok=True)
            code = os.waitstatus_to_exitcode(status)
            how = f"exited with {code}" if code >= 0 else f"killed by {signal.Signals(-code).name}"
            if self._stopping:
                if code != 0:
                    log.warning("worker-%d (pid %d) %s", worker.number, pid, how)
                continue
            if not self._announced and not worker.ready:
                # Failing before the server was ever ready: configuration, store or ports.
                log.critical(
                    "worker-%d (pid %d) %s while starting; stopping", worker.number, pid, how
                )
                self._code = code if code > 0 else EX_SOFTWARE
                self._stop()
                continue
            lived = time.monotonic() - worker.started
            worker.quick_deaths = worker.quick_deaths + 1 if lived < STABLE_S else 0
            delay = min(RESTART_MAX_S, RESTART_FIRST_S * 2 ** max(0, worker.quick_deaths - 1))
            worker.restart_at = time.monotonic() + delay
            log.error(
                "worker-%d (pid %d) %s; restarting it in %.1f s", worker.number, pid, how, delay
            )

    def _start_due(self, now: float) -> None:
        for worker in self.workers:
            if worker.restart_at is not None and now >= worker.restart_at and not worker.pid:
                worker.restart_at = None
                self._spawn(worker)

    def _close_ready(self, worker: _Worker) -> None:
        if worker.ready_fd >= 0:
            os.close(worker.ready_fd)
            worker.ready_fd = -1

    def _spawn(self, worker: _Worker) -> None:
        ready_r, ready_w = os.pipe2(os.O_CLOEXEC)
        channel = self.anvil.open_channel()
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:
            os.close(ready_r)
            self.anvil.in_worker(channel)
            self._child(worker, ready_w, parent)
        os.close(ready_w)
        channel.close()
        worker.pid, worker.ready_fd, worker.ready = pid, ready_r, False
        worker.started = time.monotonic()
        log.info("worker-%d started (pid %d)", worker.number, pid)

    # child side -------------------------------------------------------------------------------

    def _child(self, worker: _Worker, ready_w: int, parent: int) -> NoReturn:
        code = EX_SOFTWARE
        try:
            signal.set_wakeup_fd(-1)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.default_int_handler)
            os.close(self._wake_r)
            os.close(self._wake_w)
            for other in self.workers:
                if other.ready_fd >= 0:
                    os.close(other.ready_fd)
            _die_with_parent(parent)
            balance.join(self.load, worker.number)
            configure_logging(self.config.log, service="msgstore", ident=f"worker-{worker.number}")
            metrics.use_multiprocess(metrics_dir(self.config))

            def ready() -> None:
                os.write(ready_w, b"R")
                os.close(ready_w)

            code = _run(self.config, _main(self.config, self.listeners, ready=ready))
        except BaseException:
            with contextlib.suppress(BaseException):
                log.critical("worker-%d failed", worker.number, exc_info=True)
        finally:
            with contextlib.suppress(BaseException):
                logging.shutdown()
            os._exit(code)


def _die_with_parent(parent: int) -> None:
    """SIGTERM this process when the supervisor dies (Linux ``PR_SET_PDEATHSIG``), so a killed
    supervisor does not leave workers serving without anyone to restart or stop them."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, int(signal.SIGTERM), 0, 0, 0)
    if os.getppid() != parent:  # it died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)

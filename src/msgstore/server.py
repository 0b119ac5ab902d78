"""``msgstore serve``: one process, one asyncio loop, every configured service.

Startup, in this order, each step failing with one log line and a sysexits code:

1. create the data directory and take DATA/run/serve.lock (one server per data directory);
2. bind every listen address of the configuration (net/listener.py), before writing anything;
3. make sure the TLS certificate exists (net/tls.py) and loads;
4. open the store (``storage.open.open_backend``);
5. start each service of :data:`SERVICES` with its sockets; a configured service that is not
   in the table yet is logged and its sockets are closed again;
6. write DATA/run/msgstore.pid -- from then on the server is ready.

SIGTERM or SIGINT stops it: services close (each says goodbye to its sessions), then the store,
then the pid file goes; the exit code is 0.

Adding a protocol server is one entry in :data:`SERVICES`: the section name of its listen keys
and an async start function ``start(config, backend, listeners) -> RunningService``. It gets the
effective configuration (``config.tls.cert``/``key`` are always set, to the generated pair if
none was configured), the open backend, and its bound sockets (``Listener.implicit_tls`` tells
``tls_listen`` sockets from plain ones). It returns once it accepts connections.

Exit codes: 0 stopped by a signal; 69 the store cannot be opened; 70 a service failed to
start; 71 an address cannot be bound; 73 the data directory or TLS files cannot be written;
75 another server runs on the same data directory; 78 the configuration is unusable.
"""

from __future__ import annotations

import asyncio
import fcntl
import importlib
import logging
import os
import signal
import tempfile
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any, Final, Protocol

from msgstore import __version__
from msgstore.config import Config, ConfigError, TlsSection, listen_keys
from msgstore.core.errors import StoreError
from msgstore.imap.server import start as start_imap
from msgstore.net.listener import Listener, ListenError, bind_listeners, close_listeners
from msgstore.net.logs import configure_logging
from msgstore.net.tls import ensure_tls_files, server_context
from msgstore.pop3.service import start as start_pop3
from msgstore.poppassd.service import start as start_poppassd
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


class RunningService(Protocol):
    """What a started service hands back so that shutdown can stop it."""

    async def close(self) -> None:
        """Stop accepting, end every session politely (IMAP ``* BYE``), return when done."""
        ...


ServiceStart = Callable[[Config, Backend, Sequence[Listener]], Awaitable[RunningService]]

#: The protocol servers, by the section name of their listen keys. Each protocol adds its entry.
SERVICES: Final[dict[str, ServiceStart]] = {
    "imap": start_imap,
    "pop3": start_pop3,
    "poppassd": start_poppassd,
}


def run_dir(config: Config) -> Path:
    """DATA/run: the pid file and the lock that keeps a second server off the same data."""
    return config.store.data_dir / "run"


def serve(config: Config) -> int:
    """Run every configured service until SIGTERM/SIGINT; return the process exit code."""
    configure_logging(config.log, service="msgstore", ident="serve")
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
        return _serve_locked(config)
    finally:
        lock.close()


def _serve_locked(config: Config) -> int:
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
        return _run(_main(effective, listeners))
    finally:
        close_listeners(listeners)


def _run(main: Coroutine[Any, Any, int]) -> int:
    # uvloop when installed (ARCHITECTURE.md: processes and concurrency); asyncio otherwise.
    loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    try:
        loop_factory = importlib.import_module("uvloop").new_event_loop
    except ImportError:
        loop_factory = None
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        return runner.run(main)


async def _main(config: Config, listeners: list[Listener]) -> int:
    loop = asyncio.get_running_loop()
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
            code = await _serve_with(config, backend, listeners, stop)
        finally:
            await backend.close()
            (run_dir(config) / PID_FILE).unlink(missing_ok=True)
        log.info("stopped")
        return code
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)


async def _serve_with(
    config: Config, backend: Backend, listeners: list[Listener], stop: asyncio.Event
) -> int:
    pid_path = run_dir(config) / PID_FILE
    running: list[tuple[str, RunningService]] = []
    try:
        for name, own in _by_service(config, listeners):
            addresses = ", ".join(_describe(listener) for listener in own)
            start = SERVICES.get(name)
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
        _write_pid(pid_path)
        log.info(
            "msgstore %s serving %s (pid %d, %s)",
            __version__,
            config.store.data_dir,
            os.getpid(),
            type(asyncio.get_running_loop()).__module__.partition(".")[0],
        )
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

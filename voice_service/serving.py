"""`voice-service serve`: the process model. One process is one core; `--workers N` runs N on one port.

With one worker the service runs in this process, as it always has. With N > 1 this process becomes a small
supervisor and does the once-per-host work itself before any worker starts:

* the database: with no DATABASE_URL the embedded PostgreSQL is started here, once, and every worker is handed its
  URL (no worker opens the data directory itself), and it is stopped here after the last worker has exited;
* the migrations (under their advisory lock anyway) and the first-start bootstrap tenant;
* the listening sockets: one per worker, each bound with SO_REUSEPORT to the same host and port, so the kernel
  spreads new connections over the workers. A connection stays on the worker that accepted it: a media
  WebSocket lives and ends in one process, with that process's conversation engine.

Each worker is a whole service instance (its own pool, HTTP clients, conversation engine, job workers, live-call
registry, and its own `Runtime.instance_id`), started with the `spawn` method so it shares no state with the
others. SIGTERM (or Ctrl-C) to the supervisor is passed once to every worker; each drains its own live calls
(DRAIN_TIMEOUT_SECONDS) and exits; the supervisor then stops the embedded database. A worker that dies on its own is
started again on the same socket (connections the kernel queued for it wait there meanwhile); five deaths within a
minute stop the whole service, as a configuration error would otherwise restart forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import multiprocessing as mp
import os
import signal
import socket
import sys
import time
from multiprocessing.process import BaseProcess
from typing import Any

from voice_service.runtime import WORKER_ENV
from voice_service.settings import Settings, load_settings

log = logging.getLogger(__name__)

_RESTARTS_PER_MINUTE = 5


def default_workers() -> int:
    """The cores this process may run on (what `taskset` allows), not the machine's count."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def serve(settings: Settings, workers: int) -> int:
    if workers <= 1:
        _run_server(settings, sockets=None, migrate=True, bootstrap=True)
        return 0
    return Supervisor(settings, workers).run()


def _run_server(settings: Settings, *, sockets: list[socket.socket] | None, migrate: bool, bootstrap: bool) -> None:
    import uvicorn

    from voice_service.app import create_app
    from voice_service.calls.live import DrainingServer

    app = create_app(settings, bootstrap=bootstrap)
    app.state.apply_migrations = migrate
    # access_log=False: uvicorn's access lines were never written (configure_logging keeps `uvicorn.access` at
    # WARNING, they are INFO), yet uvicorn still built each one (client address, quoted path) for every request.
    # Requests are counted and timed per route on /metrics; errors are logged with their request id.
    config = uvicorn.Config(app, host=settings.host, port=settings.port, log_config=None, lifespan="on",
                            timeout_graceful_shutdown=int(settings.drain_timeout_seconds) + 1, ws_max_size=1 << 20,
                            backlog=2048, access_log=False)
    # DrainingServer lets live calls finish (up to DRAIN_TIMEOUT_SECONDS) before uvicorn closes WebSockets.
    DrainingServer(config, drain_timeout=settings.drain_timeout_seconds).run(sockets=sockets)


def bind_reuseport(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _worker_main(overrides: dict[str, Any], sock: socket.socket, index: int) -> None:
    """A worker process: its own service on its own SO_REUSEPORT socket."""
    # Its own process group: a terminal's Ctrl-C reaches the supervisor only, which passes SIGTERM on once (a second
    # signal would make uvicorn skip the drain). And it dies with the supervisor, even a SIGKILLed one.
    os.setpgid(0, 0)
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    os.environ[WORKER_ENV] = str(index)
    settings = load_settings(**overrides)
    _run_server(settings, sockets=[sock], migrate=False, bootstrap=False)


class Supervisor:
    def __init__(self, settings: Settings, workers: int) -> None:
        self.settings = settings
        self.workers = workers
        self.stopping = False
        self.procs: list[BaseProcess | None] = [None] * workers
        self.sockets: list[socket.socket] = []
        self.overrides: dict[str, Any] = {}
        self._deaths: list[float] = []

    def run(self) -> int:
        from voice_service.db import resolve_database_url
        from voice_service.observability import configure_logging

        configure_logging(self.settings.log_level, self.settings.log_json)
        dsn, embedded = resolve_database_url(self.settings)
        try:
            asyncio.run(self._prepare(dsn))
            self.overrides = {"database_url": dsn, "host": self.settings.host, "port": self.settings.port}
            self.sockets = [bind_reuseport(self.settings.host, self.settings.port) for _ in range(self.workers)]
            log.info("serving", extra={"workers": self.workers, "host": self.settings.host,
                                        "port": self.settings.port})
            for i in range(self.workers):
                self._start(i)
            signal.signal(signal.SIGTERM, self._on_signal)
            signal.signal(signal.SIGINT, self._on_signal)
            return self._watch()
        finally:
            self._on_signal(signal.SIGTERM, None)
            self._stop_all()
            if embedded is not None:
                embedded.stop()

    async def _prepare(self, dsn: str) -> None:
        from voice_service import bootstrap
        from voice_service.composition import AFTER_BOOTSTRAP
        from voice_service.migrations import migrate

        applied = await migrate(dsn)
        if applied:
            log.info("migrations applied", extra={"count": len(applied)})
        await bootstrap.bootstrap(dsn, self.settings, after=AFTER_BOOTSTRAP)

    def _start(self, index: int) -> None:
        proc = mp.get_context("spawn").Process(target=_worker_main, args=(self.overrides, self.sockets[index], index),
                                               name=f"voice-service-worker-{index}")
        proc.start()
        self.procs[index] = proc

    def _on_signal(self, signum: int, _frame: Any) -> None:
        if self.stopping:
            return
        self.stopping = True
        if _frame is not None:
            log.info("stopping: draining every worker", extra={"signal": signal.Signals(signum).name})
        # The workers keep their own copies of the sockets while they drain; the kernel must stop queueing
        # connections on a socket once its worker has closed it, so this process lets go of them now.
        for sock in self.sockets:
            sock.close()
        for proc in self.procs:
            if proc is not None and proc.pid is not None and proc.is_alive():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGTERM)

    def _watch(self) -> int:
        while not self.stopping:
            time.sleep(0.2)
            for i, proc in enumerate(self.procs):
                if self.stopping or proc is None or proc.is_alive():
                    continue
                now = time.monotonic()
                self._deaths = [t for t in self._deaths if now - t < 60] + [now]
                log.error("worker exited; starting it again", extra={"worker": i, "exitcode": proc.exitcode})
                if len(self._deaths) >= _RESTARTS_PER_MINUTE:
                    log.error("workers keep exiting: stopping the service")
                    self._on_signal(signal.SIGTERM, None)
                    return 1
                self._start(i)
        return 0

    def _stop_all(self) -> None:
        """Wait for every worker's drain; whatever outlives it by far is killed."""
        deadline = time.monotonic() + self.settings.drain_timeout_seconds + 15
        for proc in self.procs:
            if proc is None:
                continue
            proc.join(max(0.0, deadline - time.monotonic()))
            if proc.is_alive():
                log.error("worker did not stop in time: killed", extra={"pid": proc.pid})
                proc.kill()
                proc.join(5)
        sys.stdout.flush()

"""Background jobs on pgqueuer: registration, enqueueing inside the caller's transaction, and the worker loop.

Domains register handlers with `@job("name", concurrency_limit=N)`; a handler gets the process Runtime and the
decoded payload. Limits are enforced by pgqueuer in the database, so they hold across every worker process.
Jobs are enqueued on the caller's connection, so a job exists exactly when the rows that need it were committed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import logging
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import asyncpg
import msgspec
from pgqueuer import AsyncpgDriver, AsyncpgPoolDriver, Job, Queries, QueueManager

from voice_service.runtime import Runtime, open_runtime
from voice_service.settings import Settings

log = logging.getLogger(__name__)

Handler = Callable[[Runtime, dict[str, Any]], Awaitable[None]]
_registry: dict[str, tuple[Handler, int]] = {}
# Modules whose import registers jobs (missing ones are skipped while a domain is not built yet).
JOB_MODULES = ["voice_service.batches.jobs", "voice_service.billing.jobs", "voice_service.events.jobs",
               "voice_service.calls.jobs"]
_payload_encoder = msgspec.json.Encoder()
_payload_decoder = msgspec.json.Decoder()


def job(name: str, *, concurrency_limit: int = 0) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        _registry[name] = (fn, concurrency_limit)
        return fn

    return register


def load_job_modules() -> dict[str, tuple[Handler, int]]:
    for module in JOB_MODULES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name is None or not module.startswith(exc.name):
                raise
    return _registry


async def enqueue(conn: asyncpg.Connection, entrypoint: str, payload: dict[str, Any], *,
                  dedupe_key: str | None = None, delay: timedelta | None = None, priority: int = 0) -> int | None:
    """Enqueue on `conn` (inside its transaction). With a dedupe_key, a job already queued/picked is kept."""
    queries = Queries(AsyncpgDriver(conn))
    ids = await queries.enqueue(entrypoint, _payload_encoder.encode(payload), priority=priority,
                                execute_after=delay, dedupe_key=dedupe_key, on_conflict="skip")
    return int(ids[0]) if ids and ids[0] is not None else None


async def enqueue_many(conn: asyncpg.Connection, entrypoint: str, payloads: list[dict[str, Any]], *,
                       delays: list[timedelta | None] | None = None) -> None:
    if not payloads:
        return
    queries = Queries(AsyncpgDriver(conn))
    await queries.enqueue([entrypoint] * len(payloads), [_payload_encoder.encode(p) for p in payloads],
                          [0] * len(payloads), execute_after=delays)


def build_queue_manager(runtime: Runtime) -> QueueManager:
    qm = QueueManager(Queries(AsyncpgPoolDriver(runtime.pool)))
    for name, (handler, limit) in load_job_modules().items():
        def make(h: Handler, n: str) -> Callable[[Job], Awaitable[None]]:
            async def run(j: Job) -> None:
                payload = _payload_decoder.decode(j.payload) if j.payload else {}
                await h(runtime, payload)

            run.__name__ = f"job_{n}"
            return run

        qm.entrypoint(name, concurrency_limit=limit)(make(handler, name))
    return qm


MAINTENANCE_INTERVAL_SECONDS = 6 * 3600


async def maintenance_once(runtime: Runtime) -> list[str]:
    """Create the coming months' call-log partitions (the function is idempotent and safe on every instance)."""
    created = await runtime.pool.fetchval("SELECT ensure_call_log_partitions(3)")
    return list(created or [])


MEDIA_TOKEN_GRACE = timedelta(hours=1)


async def purge_media_tokens(runtime: Runtime, grace: timedelta = MEDIA_TOKEN_GRACE) -> int:
    """Delete one-time media tokens expired or used more than `grace` ago (every tenant); returns how many."""
    deleted = await runtime.pool.fetchval("SELECT purge_media_tokens($1)", grace)
    return int(deleted or 0)


async def _maintenance_loop(runtime: Runtime, stop: asyncio.Event) -> None:
    while not stop.is_set():
        try:
            created = await maintenance_once(runtime)
            if created:
                log.info("call-log partitions created", extra={"partitions": created})
        except (asyncpg.PostgresError, OSError) as exc:
            log.warning("maintenance failed; retrying later", extra={"error": str(exc)})
        try:
            purged = await purge_media_tokens(runtime)
            if purged:
                log.info("spent media tokens purged", extra={"count": purged})
        except (asyncpg.PostgresError, OSError) as exc:
            log.warning("media token purge failed; retrying later", extra={"error": str(exc)})
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=MAINTENANCE_INTERVAL_SECONDS)


@asynccontextmanager
async def running_workers(runtime: Runtime) -> AsyncIterator[QueueManager]:
    qm = build_queue_manager(runtime)
    task = asyncio.create_task(qm.run(dequeue_timeout=timedelta(seconds=5), batch_size=10,
                                      heartbeat_timeout=timedelta(seconds=30)), name="pgqueuer")
    stop_maintenance = asyncio.Event()
    maintenance = asyncio.create_task(_maintenance_loop(runtime, stop_maintenance), name="maintenance")
    try:
        yield qm
    finally:
        stop_maintenance.set()
        await maintenance
        qm.shutdown.set()
        try:
            await asyncio.wait_for(task, timeout=runtime.settings.drain_timeout_seconds)
        except TimeoutError:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def _worker(args: argparse.Namespace, settings: Settings) -> int:
    async def run() -> int:
        async with open_runtime(settings) as runtime, running_workers(runtime):
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, stop.set)
            log.info("worker running", extra={"entrypoints": sorted(_registry)})
            await stop.wait()
        return 0

    return asyncio.run(run())


def _configure(parser: argparse.ArgumentParser) -> None:
    parser.description = "run job workers only (scale-out)"


from voice_service import cli as _cli  # noqa: E402  (registers the sub-command)

_cli.extra_commands["worker"] = (_configure, _worker)

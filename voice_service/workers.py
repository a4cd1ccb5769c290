"""The job runner: a pgqueuer QueueManager serving every domain's jobs, and the maintenance loop beside it.

The job modules are listed here by name, in code (`JOB_MODULES`); each exposes `JOBS: list[JobSpec]`. Limits are
enforced by pgqueuer in the database, so they hold across every worker process. Enqueueing is not done here but
in `voice_service.enqueue`, a leaf every domain imports. The API server's lifespan runs `running_workers`;
`voice-service worker` runs `run_worker` (workers only, for scale-out).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import timedelta

import asyncpg
from pgqueuer import AsyncpgPoolDriver, Job, Queries, QueueManager

from voice_service.batches import jobs as batch_jobs
from voice_service.billing import jobs as billing_jobs
from voice_service.billing import recovery as billing_recovery
from voice_service.call_analysis import jobs as call_analysis_jobs
from voice_service.composition import open_runtime
from voice_service.db import WORKER_ROLE, create_pool
from voice_service.dbroles import check_login
from voice_service.enqueue import decode_payload
from voice_service.events import jobs as event_jobs
from voice_service.jobs import Handler, JobSpec
from voice_service.recordings import jobs as recording_jobs
from voice_service.runtime import Runtime
from voice_service.settings import Settings
from voice_service.webcalls import jobs as web_call_jobs

log = logging.getLogger(__name__)

JOB_MODULES = (batch_jobs, billing_jobs, call_analysis_jobs, event_jobs, recording_jobs, web_call_jobs)
# pgqueuer's listener holds one connection; dequeues, heartbeats and each finished job's log take the others.
QUEUE_POOL_SIZE = 6


def job_registry() -> dict[str, JobSpec]:
    """Every job this service runs, by entrypoint name."""
    registry: dict[str, JobSpec] = {}
    for module in JOB_MODULES:
        for spec in module.JOBS:
            if spec.name in registry:
                raise RuntimeError(f"job {spec.name!r} is declared twice ({module.__name__})")
            registry[spec.name] = spec
    return registry


async def queue_pool(runtime: Runtime) -> asyncpg.Pool:
    """The worker login's pool (opened on first use, closed with the Runtime): pgqueuer dequeues every tenant's jobs
    through it. It reaches the job tables and nothing else; the handlers work through the app's pool."""
    if runtime.queue_pool is not None:
        return runtime.queue_pool
    async with runtime.queue_pool_lock:
        if runtime.queue_pool is None:
            pool = await create_pool(runtime.worker_dsn, min_size=1, max_size=QUEUE_POOL_SIZE, role=WORKER_ROLE,
                                     application_name="voice-service queue")
            runtime.exit_stack.push_async_callback(pool.close)
            async with pool.acquire() as conn:
                await check_login(conn, WORKER_ROLE)
            runtime.queue_pool = pool
    return runtime.queue_pool


def build_queue_manager(runtime: Runtime, pool: asyncpg.Pool) -> QueueManager:
    qm = QueueManager(Queries(AsyncpgPoolDriver(pool)))
    for name, spec in job_registry().items():
        def make(h: Handler, n: str) -> Callable[[Job], Awaitable[None]]:
            async def run(j: Job) -> None:
                await h(runtime, decode_payload(j.payload))

            run.__name__ = f"job_{n}"
            return run

        qm.entrypoint(name, concurrency_limit=spec.concurrency)(make(spec.handler, name))
    return qm


MAINTENANCE_INTERVAL_SECONDS = 6 * 3600


async def maintenance_once(runtime: Runtime, *, starting: bool = False) -> list[str]:
    """Create the coming months' call-log partitions (the function is idempotent and safe on every instance), and
    re-enqueue the billing of final calls left unbilled (at start-up, those whose billing gave up too)."""
    created = await runtime.pool.fetchval("SELECT ensure_call_log_partitions(3)")
    await billing_recovery.sweep_unbilled(runtime, include_given_up=starting)
    return list(created or [])


MEDIA_TOKEN_GRACE = timedelta(hours=1)


async def purge_media_tokens(runtime: Runtime, grace: timedelta = MEDIA_TOKEN_GRACE) -> int:
    """Delete one-time media tokens expired or used more than `grace` ago (every tenant); returns how many."""
    deleted = await runtime.pool.fetchval("SELECT purge_media_tokens($1)", grace)
    return int(deleted or 0)


async def maintenance_loop(runtime: Runtime, stop: asyncio.Event) -> None:
    starting = True
    while not stop.is_set():
        try:
            created = await maintenance_once(runtime, starting=starting)
            starting = False
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
    qm = build_queue_manager(runtime, await queue_pool(runtime))
    task = asyncio.create_task(qm.run(dequeue_timeout=timedelta(seconds=5), batch_size=10,
                                      heartbeat_timeout=timedelta(seconds=30)), name="pgqueuer")
    stop_maintenance = asyncio.Event()
    maintenance = asyncio.create_task(maintenance_loop(runtime, stop_maintenance), name="maintenance")
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


def run_worker(settings: Settings) -> int:
    """`voice-service worker`: serve the jobs until SIGTERM / SIGINT."""

    async def run() -> int:
        async with open_runtime(settings) as runtime, running_workers(runtime):
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, stop.set)
            log.info("worker running", extra={"entrypoints": sorted(job_registry())})
            await stop.wait()
        return 0

    return asyncio.run(run())

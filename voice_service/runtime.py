"""The process's shared resources: settings, database pool, HTTP client, provider clients, the domains' wiring.

The API server's lifespan and `voice-service worker` both open one Runtime (through the composition root,
`voice_service.composition.open_runtime`, which supplies the listeners), so jobs and request handlers see the same
things. Nothing here runs at import time.

The fields typed with other modules' classes name them under TYPE_CHECKING only: this module sits below every
domain, and the domains that own those types import it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import asyncpg
import httpx

from providers.http import pooled_client
from voice_service.db import APP_ROLE, create_pool, resolve_database_url
from voice_service.dbroles import check_login, service_logins
from voice_service.migrations import migrate
from voice_service.observability import call_id_var
from voice_service.settings import Settings

if TYPE_CHECKING:
    from providers.llm.base import LlmProvider
    from providers.stt.base import SttProvider
    from providers.telephony.base import TelephonyProvider
    from providers.tts.base import TtsProvider
    from voice_service.batches.dispatcher import DispatchLease, Placer
    from voice_service.billing.listeners import BillingListeners
    from voice_service.billing.recovery import BillingRetryPolicy
    from voice_service.call_analysis.service import AnalysisPolicy
    from voice_service.calls.listeners import CallListeners
    from voice_service.calls.live import LiveCalls
    from voice_service.events.delivery import DeliveryPolicy
    from voice_service.recordings.service import RecordingPolicy
    from voice_service.recordings.storage import RecordingStorage

log = logging.getLogger(__name__)

WORKER_ENV = "VOICE_SERVICE_WORKER"  # set by `serve --workers N` in each worker process: its index, 0..N-1


def worker_index() -> int | None:
    """This process's index among `serve --workers N`; None when it is not one of them."""
    raw = os.environ.get(WORKER_ENV)
    return int(raw) if raw and raw.isdigit() else None


@dataclass
class Runtime:
    settings: Settings
    dsn: str  # the app login's (the pool's): no superuser, a member of voice_app only (dbroles.py)
    pool: asyncpg.Pool
    http: httpx.AsyncClient
    exit_stack: AsyncExitStack
    # How the other domains react to a call's and a bill's changes (assembled by the composition root).
    call_listeners: CallListeners
    billing_listeners: BillingListeners
    owner_dsn: str = ""  # DATABASE_URL's (or the embedded server's): migrations and bootstrap only
    worker_dsn: str = ""  # the worker login's: pgqueuer's queue manager (workers.queue_pool)

    # Swappable by tests and deployments; None means the owning domain's default.
    batch_placer: Placer | None = None  # places a claimed batch call (default: calls.service.place_call)
    webhook_policy: DeliveryPolicy | None = None  # webhook retry/backoff (default: events.delivery.DEFAULT_POLICY)
    analysis_policy: AnalysisPolicy | None = None  # analysis retry/backoff (default: AnalysisPolicy())
    billing_retry: BillingRetryPolicy | None = None  # post-call billing retry/backoff (default: recovery.DEFAULT_POLICY)
    analysis_llm: LlmProvider | None = None  # the analyses' LLM (default: built from settings on first use)
    recording_policy: RecordingPolicy | None = None  # upload/encode retries (default: RecordingPolicy())
    recording_storage: RecordingStorage | None = None  # default: built from RECORDINGS_URL on first use

    # Per-process clients and state, built on first use and closed with the Runtime.
    webhook_client: httpx.AsyncClient | None = None  # events.delivery.webhook_client
    dispatch_lease: DispatchLease | None = None  # batches.dispatcher.lease_id
    dispatch_lease_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    stt_clients: dict[str, SttProvider] = field(default_factory=dict)  # conversation: by STT model
    conversation_llm: LlmProvider | None = None  # conversation: the turn LLM
    tts_clients: dict[tuple[str, str], TtsProvider] = field(default_factory=dict)  # conversation: (provider, model)
    live_calls: LiveCalls | None = None  # calls.live.registry_of: this app's media sessions
    carrier_clients: dict[str, TelephonyProvider] = field(default_factory=dict)  # carriers.clients: by carrier
    carrier_clients_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    recording_storage_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    queue_pool: asyncpg.Pool | None = None  # workers.queue_pool: the worker login's pool, opened on first use
    queue_pool_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    # This instance among all that share the database: one per process (each `serve --workers` process is one),
    # fresh at every start. What addresses one instance (LISTEN/NOTIFY channels, leases, logs) uses it.
    instance_id: str = field(default_factory=lambda: uuid.uuid4().hex)


@asynccontextmanager
async def open_runtime(
    settings: Settings,
    *,
    call_listeners: CallListeners,
    billing_listeners: BillingListeners,
    apply_migrations: bool = True,
) -> AsyncIterator[Runtime]:
    """The Runtime over `settings`, wired with the given listeners. Applications open it through the composition
    root (`voice_service.composition.open_runtime`), which passes the domains' listeners."""
    async with AsyncExitStack() as stack:
        dsn, embedded = resolve_database_url(settings)
        if embedded is not None:
            stack.callback(embedded.stop)
        if apply_migrations:
            applied = await migrate(dsn)
            if applied:
                log.info("migrations applied", extra={"count": len(applied)})
        logins = await service_logins(dsn, settings)
        pool = await create_pool(logins.app, min_size=settings.pool_min_size, max_size=settings.pool_max_size,
                                 read_lane=settings.pool_read_lane)
        stack.push_async_callback(pool.close)
        async with pool.acquire() as conn:
            await check_login(conn, APP_ROLE)
        # Every live call streams an LLM reply and TTS audio each turn through this one client: the pool must
        # hold a few connections per concurrent call, and keep them alive between turns (a new TLS handshake to
        # the provider would land on the caller's wait). Spread over small pools: see providers/http.py.
        http = pooled_client(timeout=httpx.Timeout(10.0, connect=5.0),
                             limits=httpx.Limits(max_connections=2000, max_keepalive_connections=1000,
                                                 keepalive_expiry=60.0),
                             shards=settings.http_pool_shards, affinity=call_id_var.get)
        stack.push_async_callback(http.aclose)
        yield Runtime(settings=settings, dsn=logins.app, pool=pool, http=http, exit_stack=stack,
                      call_listeners=call_listeners, billing_listeners=billing_listeners, owner_dsn=dsn,
                      worker_dsn=logins.worker)

"""The process's shared resources: settings, database pool, HTTP client, provider clients.

The API server's lifespan and `voice-service worker` both open one Runtime, so jobs and request handlers see the
same things. Nothing here runs at import time.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import httpx

from voice_service.db import create_pool, resolve_database_url
from voice_service.migrations import migrate
from voice_service.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    settings: Settings
    dsn: str
    pool: asyncpg.Pool
    http: httpx.AsyncClient
    exit_stack: AsyncExitStack
    # Lazily built per-process clients keyed by name (telephony providers, LLM/TTS clients, …).
    extras: dict[str, Any] = field(default_factory=dict)


@asynccontextmanager
async def open_runtime(settings: Settings, *, apply_migrations: bool = True) -> AsyncIterator[Runtime]:
    async with AsyncExitStack() as stack:
        dsn, embedded = resolve_database_url(settings)
        if embedded is not None:
            stack.callback(embedded.stop)
        if apply_migrations:
            applied = await migrate(dsn)
            if applied:
                log.info("migrations applied", extra={"count": len(applied)})
        pool = await create_pool(dsn, min_size=settings.pool_min_size, max_size=settings.pool_max_size)
        stack.push_async_callback(pool.close)
        # Every live call streams an LLM reply and TTS audio each turn through this one client: the pool must
        # hold a few connections per concurrent call, and keep them alive between turns (a new TLS handshake to
        # the provider would land on the caller's wait).
        http = httpx.AsyncClient(timeout=httpx.Timeout(10.0, connect=5.0),
                                 limits=httpx.Limits(max_connections=2000, max_keepalive_connections=1000,
                                                     keepalive_expiry=60.0))
        stack.push_async_callback(http.aclose)
        yield Runtime(settings=settings, dsn=dsn, pool=pool, http=http, exit_stack=stack)

"""First start: create a bootstrap tenant with an owner API key, printed once.

What else a new deployment's first tenant gets (billing: the demo credit) is passed in by the composition root
(`voice_service.composition.AFTER_BOOTSTRAP`), run on the same connection right after the tenant is created.
"""

from __future__ import annotations

import logging
import sys
import uuid
from collections.abc import Awaitable, Callable, Sequence

import asyncpg

from voice_service.settings import Settings
from voice_service.tenancy import repository as tenancy_repo
from voice_service.tenancy import service as tenancy_service

log = logging.getLogger(__name__)

# Every process bootstrapping the same database takes this lock, so only one tenant is created.
BOOTSTRAP_LOCK_KEY = 7_305_114_290_002

# Called with the admin connection, the new tenant's id and the settings.
AfterBootstrap = Callable[[asyncpg.Connection, uuid.UUID, Settings], Awaitable[None]]


async def bootstrap(dsn: str, settings: Settings, *, after: Sequence[AfterBootstrap] = ()) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", BOOTSTRAP_LOCK_KEY)
        try:
            if await tenancy_repo.count_tenants(conn) > 0:
                return
            tenant_id, key = await tenancy_service.create_tenant(conn, settings.bootstrap_tenant_name)
            for step in after:
                await step(conn, tenant_id, settings)
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", BOOTSTRAP_LOCK_KEY)
    finally:
        await conn.close()
    # Printed on stdout, never logged: the key is shown once and never stored in clear.
    sys.stdout.write(
        "\n=== voice-service: bootstrap tenant created ===\n"
        f"tenant id: {tenant_id}\n"
        f"owner API key (shown once, store it now): {key}\n"
        f"try: curl -H 'Authorization: Bearer {key}' http://127.0.0.1:{settings.port}/v1/agents\n\n"
    )
    sys.stdout.flush()


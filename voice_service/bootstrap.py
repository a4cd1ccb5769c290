"""First start: create a bootstrap tenant with an owner API key, printed once."""

from __future__ import annotations

import logging
import sys

import asyncpg

from voice_service.settings import Settings
from voice_service.tenancy import repository as tenancy_repo
from voice_service.tenancy import service as tenancy_service

log = logging.getLogger(__name__)

# Every process bootstrapping the same database takes this lock, so only one tenant is created.
BOOTSTRAP_LOCK_KEY = 7_305_114_290_002


async def bootstrap(dsn: str, settings: Settings) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", BOOTSTRAP_LOCK_KEY)
        try:
            if await tenancy_repo.count_tenants(conn) > 0:
                return
            tenant_id, key = await tenancy_service.create_tenant(conn, settings.bootstrap_tenant_name)
            hooks = list(after_bootstrap)
            for hook in hooks:
                await hook(conn, tenant_id, settings)
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


# Other domains (billing: the demo credit) register coroutines run right after the tenant is created.
after_bootstrap: list = []

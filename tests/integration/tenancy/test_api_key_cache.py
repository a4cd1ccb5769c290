"""The API key cache: a key already seen is resolved without the database; a revocation or a lowered role made
anywhere (another instance, the CLI, SQL) reaches every instance's cache through PostgreSQL NOTIFY at once, well
before the cache's own TTL; expiry still counts on every request."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from tests.support.tenants import Tenant
from voice_service.auth import KeyCache, listen_for_revocations, resolve_api_key
from voice_service.db import create_pool
from voice_service.errors import Unauthorized


class _NoDatabase:
    """A pool that fails the test if the key lookup reaches it."""

    async def fetchrow(self, *_: Any) -> None:
        raise AssertionError("the key lookup went to the database")


async def _eventually(check: Callable[[], Awaitable[bool]], within: float = 3.0) -> None:
    """`within` is below the 5 s TTL the cache falls back to when it does not listen: passing proves the NOTIFY."""
    deadline = time.monotonic() + within
    while not await check():
        assert time.monotonic() < deadline, "the change did not reach the cache"
        await asyncio.sleep(0.05)


async def _listening(cache: KeyCache) -> None:
    deadline = time.monotonic() + 10
    while not cache.listening:
        assert time.monotonic() < deadline, "the key cache never started listening"
        await asyncio.sleep(0.05)


async def test_a_key_already_seen_costs_no_database_round_trip(pg_dsn: str, tenant: Tenant) -> None:
    pool = await create_pool(pg_dsn, min_size=1, max_size=2)
    cache = KeyCache()
    try:
        first = await resolve_api_key(pool, cache, tenant.key)
        again = await resolve_api_key(_NoDatabase(), cache, tenant.key)  # type: ignore[arg-type]
        assert again == first and again.tenant_id == tenant.id
        with pytest.raises(Unauthorized):  # an unknown key is never cached as valid
            await resolve_api_key(pool, cache, "vsk_" + "x" * 43)
    finally:
        await pool.close()


async def test_revocation_elsewhere_reaches_another_instance_cache(
    pg_dsn: str, tenant: Tenant, admin_conn: asyncpg.Connection
) -> None:
    pool = await create_pool(pg_dsn, min_size=1, max_size=2)
    cache = KeyCache()  # this "instance"; the revocation below comes from elsewhere
    try:
        async with listen_for_revocations(pg_dsn, cache):
            await _listening(cache)
            principal = await resolve_api_key(pool, cache, tenant.key)
            await admin_conn.execute("UPDATE api_keys SET revoked_at = now() WHERE id = $1", principal.key_id)

            async def refused() -> bool:
                try:
                    await resolve_api_key(pool, cache, tenant.key)
                except Unauthorized:
                    return True
                return False

            await _eventually(refused)
    finally:
        await pool.close()


async def test_revoked_key_is_refused_by_the_running_service(client: Any, tenant: Tenant,
                                                             admin_conn: asyncpg.Connection) -> None:
    await _listening(client.app.state.key_cache)
    assert (await client.get("/v1/agents", headers=tenant.headers)).status_code == 200  # now cached
    # Not through this app's DELETE route (which evicts its own cache): as another instance or the CLI would.
    await admin_conn.execute("UPDATE api_keys SET revoked_at = now() WHERE tenant_id = $1", tenant.id)

    async def refused() -> bool:
        return (await client.get("/v1/agents", headers=tenant.headers)).status_code == 401

    await _eventually(refused)


async def test_a_lowered_membership_role_caps_a_cached_user_key(client: Any, tenant: Tenant,
                                                                admin_conn: asyncpg.Connection) -> None:
    await _listening(client.app.state.key_cache)
    email = f"ops-{uuid.uuid4().hex[:8]}@example.com"
    created = await client.post("/v1/api-keys", headers=tenant.headers,
                                json={"name": "ops", "role": "admin", "user_email": email})
    assert created.status_code == 201, created.text
    user_key = {"Authorization": f"Bearer {created.json()['key']}"}
    user_id = uuid.UUID(created.json()["user_id"])
    await admin_conn.execute("UPDATE memberships SET role = 'admin' WHERE user_id = $1 AND tenant_id = $2",
                             user_id, tenant.id)
    made = await client.post("/v1/agents", headers=user_key, json={"name": "Before"})
    assert made.status_code == 201, made.text  # the key is cached as admin
    await admin_conn.execute("UPDATE memberships SET role = 'viewer' WHERE user_id = $1 AND tenant_id = $2",
                             user_id, tenant.id)

    async def capped() -> bool:
        return (await client.post("/v1/agents", headers=user_key, json={"name": "After"})).status_code == 403

    await _eventually(capped)


async def test_expiry_counts_for_a_cached_key(pg_dsn: str, tenant: Tenant, admin_conn: asyncpg.Connection) -> None:
    pool = await create_pool(pg_dsn, min_size=1, max_size=2)
    cache = KeyCache()
    try:
        principal = await resolve_api_key(pool, cache, tenant.key)
        # Cached with an expiry in the past (as if it had passed since): refused without asking the database.
        soon = datetime.now(UTC) - timedelta(seconds=1)
        cache.put(next(iter(cache._items)), type(principal)(**{**_fields(principal), "expires_at": soon}))
        with pytest.raises(Unauthorized, match="expired"):
            await resolve_api_key(_NoDatabase(), cache, tenant.key)  # type: ignore[arg-type]
    finally:
        await pool.close()


def _fields(principal: Any) -> dict[str, Any]:
    return {name: getattr(principal, name) for name in principal.__struct_fields__}

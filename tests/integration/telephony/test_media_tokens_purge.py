"""The workers' maintenance loop purges spent one-time media tokens (expired or used over an hour ago), in every
tenant, and keeps the ones that can still be claimed."""

from __future__ import annotations

import asyncio
import hashlib
import os
import uuid
from datetime import timedelta
from typing import Any

import asyncpg

from tests.support.pipeline import insert_call, wait_for
from voice_service.runtime import Runtime
from voice_service.workers import maintenance_loop, purge_media_tokens


async def _token(
    admin: asyncpg.Connection,
    tenant_id: uuid.UUID,
    *,
    expires_in: timedelta,
    used_ago: timedelta | None = None,
) -> uuid.UUID:
    call_id, created_at = await insert_call(admin, tenant_id, status="ongoing")
    await admin.execute(
        "INSERT INTO voice_call_media_tokens (call_id, call_created_at, tenant_id, token_hash, expires_at, used_at) "
        "VALUES ($1, $2, $3, $4, now() + $5, now() - $6::interval)",
        call_id,
        created_at,
        tenant_id,
        hashlib.sha256(os.urandom(16)).digest(),
        expires_in,
        used_ago,
    )
    return call_id


async def _left(admin: asyncpg.Connection, ids: list[uuid.UUID]) -> set[uuid.UUID]:
    rows = await admin.fetch("SELECT call_id FROM voice_call_media_tokens WHERE call_id = ANY ($1)", ids)
    return {r["call_id"] for r in rows}


async def test_expired_and_used_tokens_older_than_an_hour_are_purged(
    make_tenant: Any, admin_conn: asyncpg.Connection, runtime: Runtime
) -> None:
    a, b = await make_tenant(), await make_tenant()
    h = timedelta(hours=1)
    expired_long_ago = await _token(admin_conn, a.id, expires_in=-2 * h)
    expired_in_other_tenant = await _token(admin_conn, b.id, expires_in=-3 * h)
    used_long_ago = await _token(admin_conn, a.id, expires_in=h, used_ago=2 * h)
    expired_recently = await _token(admin_conn, a.id, expires_in=-timedelta(minutes=20))
    used_recently = await _token(admin_conn, a.id, expires_in=h, used_ago=timedelta(minutes=5))
    live = await _token(admin_conn, b.id, expires_in=timedelta(minutes=10))
    ids = [expired_long_ago, expired_in_other_tenant, used_long_ago, expired_recently, used_recently, live]

    assert await purge_media_tokens(runtime) >= 3
    assert await _left(admin_conn, ids) == {expired_recently, used_recently, live}
    assert await purge_media_tokens(runtime, grace=timedelta(minutes=1)) >= 2
    assert await _left(admin_conn, ids) == {live}
    # The call rows themselves are untouched.
    assert await admin_conn.fetchval("SELECT count(*) FROM voice_call_logs WHERE id = ANY ($1)", ids) == 6


async def test_the_maintenance_loop_runs_the_purge(
    tenant: Any, admin_conn: asyncpg.Connection, runtime: Runtime
) -> None:
    spent = await _token(admin_conn, tenant.id, expires_in=-timedelta(hours=2))
    live = await _token(admin_conn, tenant.id, expires_in=timedelta(minutes=10))
    stop = asyncio.Event()
    loop_task = asyncio.create_task(maintenance_loop(runtime, stop))
    try:

        async def purged() -> bool:
            return await _left(admin_conn, [spent, live]) == {live}

        await wait_for(purged, within=10)
    finally:
        stop.set()
        await asyncio.wait_for(loop_task, 10)

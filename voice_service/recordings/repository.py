"""SQL of the recordings domain: the tenant's recording settings (retention) and the purge's cross-tenant start.

The call log itself belongs to voice_service/calls/repository.py (recording_state, set_recording, …).
"""

from __future__ import annotations

import uuid

import asyncpg

from voice_service.db import fetch_one

__all__ = ["get_settings", "put_settings", "retention_tenants"]


async def get_settings(conn: asyncpg.Connection, tenant_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT retention_days, updated_at FROM recording_settings WHERE tenant_id = $1", tenant_id
    )


async def put_settings(
    conn: asyncpg.Connection, tenant_id: uuid.UUID, retention_days: int | None
) -> asyncpg.Record:
    return await fetch_one(
        conn,
        """INSERT INTO recording_settings (tenant_id, retention_days) VALUES ($1, $2)
           ON CONFLICT (tenant_id) DO UPDATE SET retention_days = EXCLUDED.retention_days
           RETURNING retention_days, updated_at""",
        tenant_id,
        retention_days,
    )


async def retention_tenants(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    """(tenant_id, retention_days) of every tenant that set a retention period (SECURITY DEFINER read)."""
    return await conn.fetch("SELECT tenant_id, retention_days FROM recording_retention_tenants()")

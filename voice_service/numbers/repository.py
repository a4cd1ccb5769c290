"""SQL for voice_agent_numbers."""

from __future__ import annotations

import uuid

import asyncpg

from voice_service.repository import Table

numbers = Table(
    "voice_agent_numbers",
    ["id", "e164 AS phone_number", "country_code", "base_number", "provider", "status", "default_agent_id",
     "metadata", "created_at", "updated_at"],
)


async def tenant_exists(conn: asyncpg.Connection, tenant_id: uuid.UUID) -> bool:
    """Whether the tenant is alive (inside its own transaction: row-level security shows only it)."""
    return bool(await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM tenants WHERE id = $1 AND deleted_at IS NULL)", tenant_id))

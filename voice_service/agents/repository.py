"""SQL for voice_agents."""

from __future__ import annotations

import uuid
from datetime import datetime

import asyncpg

from voice_service.db import read_once
from voice_service.repository import Table

agents = Table(
    "voice_agents",
    ["id", "name", "agent_instructions", "system_instructions", "outbound_starter_prompt", "inbound_starter_prompt",
     "voice_id", "gender", "language", "analysis_schema", "config", "metadata", "created_at", "updated_at"],
    id_cast="bigint",
)


# --- reads in one round trip (sql/0096; no transaction: see db.read_once) ---


async def read_agent_json(pool: asyncpg.Pool, tenant_id: uuid.UUID, agent_id: int) -> str | None:
    """The agent's API JSON as the row stores it (sql/0097), or None (no such agent in the tenant)."""
    rows = await read_once(pool, "SELECT coalesce(a.api_json, agent_api_json(a)) FROM agent_read($1, $2) a",
                           tenant_id, agent_id)
    return rows[0][0] if rows else None


async def read_page_json(pool: asyncpg.Pool, tenant_id: uuid.UUID, *, limit: int,
                         after: tuple[datetime, str] | None) -> tuple[bytes, tuple[datetime, str] | None]:
    """One page of agents as the API's JSON array, encoded by PostgreSQL (decoding 50 rows into objects and
    encoding them again cost the service most of a list request), and the last item's (created_at, id) when another
    page exists."""
    rows = await read_once(pool, "SELECT agents_page_json($1, $2, $3, $4) AS page", tenant_id, limit,
                           after[0] if after else None, int(after[1]) if after else None)
    items, found, last_at, last_id = rows[0]["page"]
    more = int(found) > limit and last_at is not None and last_id is not None
    return items.encode(), (datetime.fromisoformat(last_at), last_id) if more else None

"""SQL for the call analysis: the voice_call_analysis rows (the only module that writes them), and the agent
context an analysis reads.

An analysis row is keyed by its call (call_log_id, unique) and carries the call's partition key (call_created_at).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import asyncpg

from voice_service.db import fetch_one

ANALYSIS_COLUMNS = (
    "id, call_log_id, call_created_at, lead_id, status, summary, sentiment, lead_category, "
    "lead_extraction, success_evaluation, error, model, cost, metadata, created_at, updated_at"
)


async def ensure_analysis(
    conn: asyncpg.Connection,
    tenant_id: uuid.UUID,
    call_id: uuid.UUID,
    created_at: datetime,
    lead_id: uuid.UUID | None,
) -> asyncpg.Record:
    """The call's analysis row, created `pending` if there is none yet."""
    await conn.execute(
        "INSERT INTO voice_call_analysis (tenant_id, call_log_id, call_created_at, lead_id) VALUES ($1, $2, $3, $4) "
        "ON CONFLICT (call_log_id) DO NOTHING",
        tenant_id,
        call_id,
        created_at,
        lead_id,
    )
    row = await get_analysis(conn, tenant_id, call_id)
    assert row is not None
    return row


async def get_analysis(
    conn: asyncpg.Connection, tenant_id: uuid.UUID, call_id: uuid.UUID, *, for_update: bool = False
) -> asyncpg.Record | None:
    lock = "FOR UPDATE" if for_update else ""
    return await conn.fetchrow(
        f"SELECT {ANALYSIS_COLUMNS} FROM voice_call_analysis WHERE tenant_id = $1 AND call_log_id = $2 {lock}",
        tenant_id,
        call_id,
    )


async def save_analysis(
    conn: asyncpg.Connection, tenant_id: uuid.UUID, analysis_id: uuid.UUID, fields: dict[str, Any]
) -> asyncpg.Record:
    sets = ", ".join(f"{name} = ${i}" for i, name in enumerate(fields, start=3))
    return await fetch_one(
        conn,
        f"UPDATE voice_call_analysis SET {sets} WHERE tenant_id = $1 AND id = $2 RETURNING {ANALYSIS_COLUMNS}",
        tenant_id,
        analysis_id,
        *fields.values(),
    )


async def get_agent(conn: asyncpg.Connection, tenant_id: uuid.UUID, agent_id: int) -> asyncpg.Record | None:
    """The agent's context for the prompt and its extraction schema (soft-deleted agents included: the call
    was made with it)."""
    return await conn.fetchrow(
        "SELECT id, name, agent_instructions, language, analysis_schema, config FROM voice_agents "
        "WHERE tenant_id = $1 AND id = $2",
        tenant_id,
        agent_id,
    )

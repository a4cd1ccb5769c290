"""SQL for the conversation engine: what a call needs to start (agent, voice, lead) and its records at the end.

Runs inside a tenant transaction (RLS applies). Rows soft-deleted while a call is live are still read: the call
was set up with them.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import asyncpg


async def get_agent(conn: asyncpg.Connection, tenant_id: uuid.UUID, agent_id: int) -> asyncpg.Record | None:
    return await conn.fetchrow(
        """SELECT id, name, agent_instructions, system_instructions, outbound_starter_prompt,
                  inbound_starter_prompt, voice_id, language, config
           FROM voice_agents WHERE tenant_id = $1 AND id = $2""",
        tenant_id,
        agent_id,
    )


async def get_voice(
    conn: asyncpg.Connection, tenant_id: uuid.UUID, voice_id: uuid.UUID
) -> asyncpg.Record | None:
    return await conn.fetchrow(
        """SELECT id, provider, provider_voice_id, language, metadata
           FROM voice_agent_voices WHERE tenant_id = $1 AND id = $2""",
        tenant_id,
        voice_id,
    )


async def get_lead(
    conn: asyncpg.Connection, tenant_id: uuid.UUID, lead_id: uuid.UUID
) -> asyncpg.Record | None:
    return await conn.fetchrow(
        """SELECT first_name, last_name, email, phone, company_name, title, timezone, custom_fields
           FROM leads WHERE tenant_id = $1 AND id = $2""",
        tenant_id,
        lead_id,
    )


async def save_conversation(
    conn: asyncpg.Connection,
    tenant_id: uuid.UUID,
    call_id: uuid.UUID,
    created_at: datetime,
    transcripts: list[dict[str, Any]],
    metadata_patch: Mapping[str, Any],
) -> bool:
    """Replace the transcript and merge `metadata_patch` (top-level keys) into the call's metadata."""
    result = await conn.execute(
        """UPDATE voice_call_logs SET transcripts = $4, metadata = metadata || $5::jsonb
           WHERE tenant_id = $1 AND id = $2 AND created_at = $3""",
        tenant_id,
        call_id,
        created_at,
        transcripts,
        dict(metadata_patch),
    )
    return result.endswith(" 1")

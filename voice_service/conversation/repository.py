"""SQL for the conversation engine: what a call needs to start (agent, voice, lead). Its records at the end
(transcript, usage) go through the calls repository, the one writer of the call log.

Runs inside a tenant transaction (RLS applies). Rows soft-deleted while a call is live are still read: the call
was set up with them.
"""

from __future__ import annotations

import uuid

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

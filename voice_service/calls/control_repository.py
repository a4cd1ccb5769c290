"""SQL of live call control: the call's state as commands see it, a batch's live calls, and listen tokens.

The call log itself is written through voice_service/calls/repository.py; this module reads it, and owns the
`call_listen_tokens` table (sql/0080_live_control.sql).
"""

from __future__ import annotations

import uuid
from datetime import datetime

import asyncpg

__all__ = ["batch_live_calls", "claim_listen_token", "live_state", "store_listen_token"]

# By id alone: the partition comes from the UUIDv7's timestamp (as calls/repository.py reads a call).
_BY_ID_ONLY = (
    "tenant_id = $1 AND id = $2 AND created_at >= uuid_v7_time($2) "
    "AND created_at < uuid_v7_time($2) + interval '1 millisecond'"
)


async def live_state(conn: asyncpg.Connection, tenant_id: uuid.UUID, call_id: uuid.UUID) -> asyncpg.Record | None:
    """What a live command needs to know of a call before it is routed."""
    return await conn.fetchrow(
        "SELECT id, created_at, tenant_id, status, provider, provider_call_id, started_at, media_ended_at, "
        "metadata->>'end_reason' AS end_reason, metadata ? 'media_stream_id' AS media_started "
        f"FROM voice_call_logs WHERE {_BY_ID_ONLY}",
        tenant_id,
        call_id,
    )


async def batch_live_calls(conn: asyncpg.Connection, tenant_id: uuid.UUID, batch_id: uuid.UUID) -> list[uuid.UUID]:
    """The batch's calls that have not ended (placing, ringing or talking)."""
    rows = await conn.fetch(
        "SELECT id FROM voice_call_logs WHERE tenant_id = $1 AND batch_id = $2 "
        "AND status IN ('pending', 'ringing', 'ongoing')",
        tenant_id,
        batch_id,
    )
    return [row["id"] for row in rows]


async def store_listen_token(
    conn: asyncpg.Connection,
    tenant_id: uuid.UUID,
    call_id: uuid.UUID,
    token_hash: bytes,
    expires_at: datetime,
    *,
    api_key_id: uuid.UUID | None,
    user_id: uuid.UUID | None,
) -> None:
    # Spent and expired tokens of the tenant go as new ones come (kept an hour for the audit trail).
    await conn.execute(
        "DELETE FROM call_listen_tokens WHERE tenant_id = $1 AND expires_at < now() - interval '1 hour'",
        tenant_id,
    )
    await conn.execute(
        "INSERT INTO call_listen_tokens (token_hash, tenant_id, call_id, api_key_id, user_id, expires_at) "
        "VALUES ($1, $2, $3, $4, $5, $6)",
        token_hash,
        tenant_id,
        call_id,
        api_key_id,
        user_id,
        expires_at,
    )


async def claim_listen_token(conn: asyncpg.Connection, call_id: uuid.UUID, token_hash: bytes) -> asyncpg.Record | None:
    """Consume the token (tenant_id, api_key_id, user_id), or None: wrong, reused, expired or another call's."""
    return await conn.fetchrow("SELECT * FROM claim_listen_token($1, $2)", call_id, token_hash)

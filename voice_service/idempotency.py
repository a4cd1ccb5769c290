"""Idempotency-Key storage shared by the create endpoints (POST /v1/calls, POST /v1/batches).

The first request with a key inserts the row (a concurrent one with the same key waits on the row lock and then
sees it); its response is stored, so a retry with the same key and body gets the same answer.
"""

from __future__ import annotations

import uuid

import asyncpg


async def claim_idempotency_key(
    conn: asyncpg.Connection, tenant_id: uuid.UUID, key: str, method: str, path: str, request_hash: bytes
) -> asyncpg.Record | None:
    """Insert the key; None when it is new, else the stored row (request_hash, status_code, response_body)."""
    inserted = await conn.fetchval(
        """INSERT INTO idempotency_keys (tenant_id, key, method, path, request_hash) VALUES ($1, $2, $3, $4, $5)
           ON CONFLICT (tenant_id, key, method, path) DO NOTHING RETURNING true""",
        tenant_id,
        key,
        method,
        path,
        request_hash,
    )
    if inserted:
        return None
    return await conn.fetchrow(
        """SELECT request_hash, status_code, response_body FROM idempotency_keys
           WHERE tenant_id = $1 AND key = $2 AND method = $3 AND path = $4""",
        tenant_id,
        key,
        method,
        path,
    )


async def save_idempotent_response(
    conn: asyncpg.Connection,
    tenant_id: uuid.UUID,
    key: str,
    method: str,
    path: str,
    status_code: int,
    body: bytes,
) -> None:
    await conn.execute(
        """UPDATE idempotency_keys SET status_code = $5, response_body = $6
           WHERE tenant_id = $1 AND key = $2 AND method = $3 AND path = $4""",
        tenant_id,
        key,
        method,
        path,
        status_code,
        body,
    )


async def release_idempotency_key(
    conn: asyncpg.Connection, tenant_id: uuid.UUID, key: str, method: str, path: str
) -> None:
    await conn.execute(
        "DELETE FROM idempotency_keys WHERE tenant_id = $1 AND key = $2 AND method = $3 AND path = $4 "
        "AND status_code IS NULL",
        tenant_id,
        key,
        method,
        path,
    )

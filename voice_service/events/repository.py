"""SQL for the outbox (domain_events), webhook endpoints, deliveries and the delivery log."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from voice_service.db import fetch_one
from voice_service.repository import Table

_EVENT_COLUMNS = "id, seq, txid::text AS txid, event_type, aggregate_type, aggregate_id, payload, created_at"
ENDPOINT_COLUMNS = (
    "id",
    "url",
    "description",
    "event_types",
    "status",
    "consecutive_failures",
    "disabled_at",
    "disabled_reason",
    "created_at",
    "updated_at",
)
endpoints = Table("webhook_endpoints", ENDPOINT_COLUMNS)


async def insert_event(
    conn: asyncpg.Connection,
    tenant_id: uuid.UUID,
    event_type: str,
    aggregate_type: str,
    aggregate_id: uuid.UUID | None,
    payload: dict[str, Any],
) -> asyncpg.Record:
    return await fetch_one(
        conn,
        f"INSERT INTO domain_events (tenant_id, event_type, aggregate_type, aggregate_id, payload) "
        f"VALUES ($1, $2, $3, $4, $5) RETURNING {_EVENT_COLUMNS}",
        tenant_id,
        event_type,
        aggregate_type,
        aggregate_id,
        payload,
    )


async def fan_out(
    conn: asyncpg.Connection, tenant_id: uuid.UUID, event_id: uuid.UUID, event_type: str
) -> list[uuid.UUID]:
    """One pending delivery per active endpoint subscribed to `event_type`; returns the delivery ids."""
    rows = await conn.fetch(
        """
        INSERT INTO webhook_deliveries (tenant_id, endpoint_id, event_id, event_type)
        SELECT $1, e.id, $2, $3
        FROM webhook_endpoints e
        WHERE e.tenant_id = $1 AND e.status = 'active' AND e.deleted_at IS NULL
          AND (e.event_types = '{}' OR $3 = ANY (e.event_types))
        ON CONFLICT (endpoint_id, event_id) DO NOTHING
        RETURNING id
        """,
        tenant_id,
        event_id,
        event_type,
    )
    return [r["id"] for r in rows]


async def page_events(
    conn: asyncpg.Connection,
    tenant_id: uuid.UUID,
    *,
    after: tuple[int, int] | None,
    types: list[str] | None,
    limit: int,
) -> list[asyncpg.Record]:
    """Oldest first by (txid, seq), only rows of transactions older than every one still running."""
    args: list[Any] = [tenant_id, limit + 1]
    conds = ["tenant_id = $1", "txid < pg_snapshot_xmin(pg_current_snapshot())"]
    if after is not None:
        args += [after[0], after[1]]
        conds.append(f"(txid, seq) > (${len(args) - 1}::xid8, ${len(args)})")
    if types:
        args.append(types)
        conds.append(f"event_type = ANY (${len(args)})")
    return await conn.fetch(
        # domain_events.txid, not the text the select list names txid: as text, 1021 would sort before 977.
        f"SELECT {_EVENT_COLUMNS} FROM domain_events WHERE {' AND '.join(conds)} "
        "ORDER BY domain_events.txid, seq LIMIT $2",
        *args,
    )


async def insert_endpoint(
    conn: asyncpg.Connection,
    tenant_id: uuid.UUID,
    *,
    endpoint_id: uuid.UUID,
    url: str,
    description: str | None,
    event_types: list[str],
    secret_ciphertext: str,
) -> asyncpg.Record:
    return await endpoints.insert(
        conn,
        tenant_id,
        {
            "id": endpoint_id,
            "url": url,
            "description": description,
            "event_types": event_types,
            "secret_ciphertext": secret_ciphertext,
        },
    )


async def encrypt_legacy_secret(
    conn: asyncpg.Connection, tenant_id: uuid.UUID, endpoint_id: uuid.UUID, secret_ciphertext: str
) -> None:
    """Replaces a plaintext secret (stored before 0033) with its ciphertext."""
    await conn.execute(
        "UPDATE webhook_endpoints SET secret_ciphertext = $3, secret = NULL "
        "WHERE tenant_id = $1 AND id = $2 AND secret_ciphertext IS NULL",
        tenant_id,
        endpoint_id,
        secret_ciphertext,
    )


async def delete_endpoint(conn: asyncpg.Connection, tenant_id: uuid.UUID, endpoint_id: uuid.UUID) -> bool:
    deleted = await endpoints.soft_delete(conn, tenant_id, endpoint_id)
    if deleted:
        await abandon_pending(conn, tenant_id, endpoint_id, "endpoint deleted")
    return deleted


async def abandon_pending(
    conn: asyncpg.Connection, tenant_id: uuid.UUID, endpoint_id: uuid.UUID, reason: str
) -> None:
    await conn.execute(
        "UPDATE webhook_deliveries SET status = 'abandoned', last_error = $3 "
        "WHERE tenant_id = $1 AND endpoint_id = $2 AND status = 'pending'",
        tenant_id,
        endpoint_id,
        reason,
    )


async def delivery_for_attempt(
    conn: asyncpg.Connection, tenant_id: uuid.UUID, delivery_id: uuid.UUID
) -> asyncpg.Record | None:
    return await conn.fetchrow(
        """
        SELECT d.id, d.status, d.attempts, d.event_id, d.endpoint_id, (d.next_attempt_at > now()) AS not_due,
               e.url, e.secret, e.secret_ciphertext, e.status AS endpoint_status, e.deleted_at AS endpoint_deleted_at,
               ev.seq, ev.event_type, ev.aggregate_type, ev.aggregate_id, ev.payload, ev.created_at AS event_created_at
        FROM webhook_deliveries d
        JOIN webhook_endpoints e ON e.id = d.endpoint_id
        JOIN domain_events ev ON ev.id = d.event_id
        WHERE d.tenant_id = $1 AND d.id = $2
        """,
        tenant_id,
        delivery_id,
    )


async def lock_delivery(
    conn: asyncpg.Connection, tenant_id: uuid.UUID, delivery_id: uuid.UUID
) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT id, status, attempts, endpoint_id FROM webhook_deliveries WHERE tenant_id = $1 AND id = $2 "
        "FOR UPDATE",
        tenant_id,
        delivery_id,
    )


async def insert_attempt(
    conn: asyncpg.Connection,
    tenant_id: uuid.UUID,
    delivery_id: uuid.UUID,
    attempt: int,
    *,
    status_code: int | None,
    error: str | None,
    response_body: str | None,
    duration_ms: int,
) -> None:
    await conn.execute(
        "INSERT INTO webhook_delivery_attempts (tenant_id, delivery_id, attempt, status_code, error, response_body, "
        "duration_ms) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (delivery_id, attempt) DO NOTHING",
        tenant_id,
        delivery_id,
        attempt,
        status_code,
        error,
        response_body,
        duration_ms,
    )


async def mark_delivery(
    conn: asyncpg.Connection,
    tenant_id: uuid.UUID,
    delivery_id: uuid.UUID,
    *,
    status: str,
    attempts: int,
    status_code: int | None,
    error: str | None,
    retry_in: timedelta | None,
) -> None:
    await conn.execute(
        """
        UPDATE webhook_deliveries
        SET status = $3, attempts = $4, last_status_code = $5, last_error = $6,
            next_attempt_at = coalesce(now() + $7, next_attempt_at),
            delivered_at = CASE WHEN $3 = 'succeeded' THEN now() ELSE delivered_at END
        WHERE tenant_id = $1 AND id = $2
        """,
        tenant_id,
        delivery_id,
        status,
        attempts,
        status_code,
        error,
        retry_in,
    )


async def endpoint_succeeded(conn: asyncpg.Connection, tenant_id: uuid.UUID, endpoint_id: uuid.UUID) -> None:
    await conn.execute(
        "UPDATE webhook_endpoints SET consecutive_failures = 0 "
        "WHERE tenant_id = $1 AND id = $2 AND consecutive_failures <> 0",
        tenant_id,
        endpoint_id,
    )


async def endpoint_failed(
    conn: asyncpg.Connection, tenant_id: uuid.UUID, endpoint_id: uuid.UUID, disable_after: int, reason: str
) -> bool:
    """Counts one failed attempt; disables the endpoint at `disable_after`. Returns True if it was disabled now."""
    row = await conn.fetchrow(
        """
        UPDATE webhook_endpoints
        SET consecutive_failures = consecutive_failures + 1,
            status = CASE WHEN consecutive_failures + 1 >= $3 THEN 'disabled' ELSE status END,
            disabled_at = CASE WHEN consecutive_failures + 1 >= $3 AND status = 'active' THEN now()
                               ELSE disabled_at END,
            disabled_reason = CASE WHEN consecutive_failures + 1 >= $3 AND status = 'active' THEN $4
                                   ELSE disabled_reason END
        WHERE tenant_id = $1 AND id = $2
        RETURNING status, (consecutive_failures = $3) AS just_disabled
        """,
        tenant_id,
        endpoint_id,
        disable_after,
        reason,
    )
    return bool(row and row["status"] == "disabled" and row["just_disabled"])


async def reenable_endpoint(
    conn: asyncpg.Connection, tenant_id: uuid.UUID, endpoint_id: uuid.UUID
) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"UPDATE webhook_endpoints SET status = 'active', consecutive_failures = 0, disabled_at = NULL, "
        f"disabled_reason = NULL WHERE tenant_id = $1 AND id = $2 AND deleted_at IS NULL "
        f"RETURNING {endpoints.select}",
        tenant_id,
        endpoint_id,
    )


async def page_deliveries(
    conn: asyncpg.Connection,
    tenant_id: uuid.UUID,
    endpoint_id: uuid.UUID,
    *,
    limit: int,
    after: tuple[datetime, str] | None,
) -> list[asyncpg.Record]:
    args: list[Any] = [tenant_id, endpoint_id, limit + 1]
    cond = ""
    if after is not None:
        args += [after[0], after[1]]
        cond = "AND (d.created_at, d.id) < ($4, $5::uuid)"
    return await conn.fetch(
        f"""
        SELECT d.id, d.event_id, d.event_type, d.status, d.attempts, d.next_attempt_at, d.last_status_code,
               d.last_error, d.delivered_at, d.created_at,
               coalesce((SELECT jsonb_agg(jsonb_build_object(
                            'attempt', a.attempt, 'status_code', a.status_code, 'error', a.error,
                            'duration_ms', a.duration_ms, 'at', a.created_at) ORDER BY a.attempt)
                         FROM webhook_delivery_attempts a WHERE a.delivery_id = d.id), '[]') AS log
        FROM webhook_deliveries d
        WHERE d.tenant_id = $1 AND d.endpoint_id = $2 {cond}
        ORDER BY d.created_at DESC, d.id DESC LIMIT $3
        """,
        *args,
    )

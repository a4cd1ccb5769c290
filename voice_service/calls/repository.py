"""SQL for calls: the partitioned call log, provider-id lookups, media tokens, replay guard, idempotency keys.

This is the only module that writes `voice_call_logs`: billing's cost, the conversation's transcript and the
batches' end of an unplaced call come through the functions below, so the call log's rules hold in one place.

A call is addressed by (id, created_at), its partition key: every statement here finds the row by both
(`_BY_ID`), or by the id alone with created_at bounded by the UUIDv7's timestamp (`BY_ID_ONLY`), which also prunes
to one partition. Webhooks and media sockets arrive before the tenant is known; they go through the
SECURITY DEFINER functions (find_call_by_id, find_call_by_provider_id, claim_media_token) and then work inside a
tenant transaction like everything else.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

import asyncpg

from voice_service import idempotency
from voice_service.db import fetch_one
from voice_service.repository import Table

# The shared Idempotency-Key SQL (voice_service/idempotency.py), re-exported for the routes and services.
claim_idempotency_key = idempotency.claim_idempotency_key
release_idempotency_key = idempotency.release_idempotency_key
save_idempotent_response = idempotency.save_idempotent_response

COLUMNS = (
    "id",
    "status",
    "direction",
    "agent_id",
    "voice_id",
    "lead_id",
    "from_number_id",
    "from_e164",
    "to_e164",
    "batch_id",
    "batch_entry_id",
    "attempt",
    "provider",
    "provider_call_id",
    "answered_by",
    "metadata->>'end_reason' AS end_reason",
    "metadata->>'end_reason_detail' AS end_reason_detail",
    "metadata->'billing'->'carrier_price' AS carrier_price",
    "started_at",
    "ended_at",
    "duration_seconds",
    "cost",
    "currency",
    "initiated_by_user_id",
    "metadata",
    "recording_url",
    "created_at",
    "updated_at",
)
calls = Table("voice_call_logs", COLUMNS, soft_delete=False)
# One call's whole record adds the heavy columns the lists leave out.
_DETAIL = f"{calls.select}, transcripts, cost_breakdown"

# The state the status/media logic works on (read FOR UPDATE).
_STATE = (
    "id, tenant_id, created_at, status, direction, provider, provider_call_id, status_sequence, started_at, "
    "ended_at, duration_seconds, media_ended_at, provider_final_at, answered_by, metadata, agent_id, voice_id, "
    "lead_id, from_e164, to_e164, batch_id, batch_entry_id, cost"
)
_BY_ID = "tenant_id = $1 AND id = $2 AND created_at = $3"
# A call by its id alone: ids are UUIDv7, so the id names the partition (created_at within its millisecond).
BY_ID_ONLY = (
    "tenant_id = $1 AND id = $2 AND created_at >= uuid_v7_time($2) "
    "AND created_at < uuid_v7_time($2) + interval '1 millisecond'"
)


async def insert_call(
    conn: asyncpg.Connection, tenant_id: uuid.UUID, fields: Mapping[str, Any]
) -> asyncpg.Record:
    names = ["tenant_id", *fields.keys()]
    params = ", ".join(f"${i}" for i in range(1, len(names) + 1))
    return await fetch_one(
        conn,
        f"INSERT INTO voice_call_logs ({', '.join(names)}) VALUES ({params}) RETURNING id, created_at",
        tenant_id,
        *fields.values(),
    )


async def get_call(
    conn: asyncpg.Connection, tenant_id: uuid.UUID, call_id: uuid.UUID, *, detail: bool = False
) -> asyncpg.Record | None:
    """By id alone (the partition comes from the UUIDv7's timestamp); `detail` adds transcripts and cost_breakdown."""
    return await conn.fetchrow(
        f"SELECT {_DETAIL if detail else calls.select} FROM voice_call_logs WHERE {BY_ID_ONLY}", tenant_id, call_id
    )


async def list_calls(
    conn: asyncpg.Connection,
    tenant_id: uuid.UUID,
    *,
    limit: int,
    after: tuple[datetime, str] | None,
    filters: Mapping[str, Any],
    created_after: datetime | None = None,
    created_before: datetime | None = None,
) -> list[asyncpg.Record]:
    return await calls.page(conn, tenant_id, limit=limit, after=after, filters=filters,
                            created_after=created_after, created_before=created_before)


async def lock_state(
    conn: asyncpg.Connection, tenant_id: uuid.UUID, call_id: uuid.UUID, created_at: datetime
) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"SELECT {_STATE} FROM voice_call_logs WHERE {_BY_ID} FOR UPDATE", tenant_id, call_id, created_at
    )


async def place_info(
    conn: asyncpg.Connection, tenant_id: uuid.UUID, call_id: uuid.UUID, created_at: datetime
) -> asyncpg.Record | None:
    """The call with what placing it needs from its agent, locked against a concurrent place/hang-up."""
    return await conn.fetchrow(
        """SELECT c.id, c.status, c.provider, c.provider_call_id, c.from_e164, c.to_e164, a.config AS agent_config
            FROM voice_call_logs c
            LEFT JOIN voice_agents a ON a.tenant_id = c.tenant_id AND a.id = c.agent_id
            WHERE c.tenant_id = $1 AND c.id = $2 AND c.created_at = $3
            FOR UPDATE OF c""",
        tenant_id,
        call_id,
        created_at,
    )


async def update_call(
    conn: asyncpg.Connection,
    tenant_id: uuid.UUID,
    call_id: uuid.UUID,
    created_at: datetime,
    fields: Mapping[str, Any],
    metadata_patch: Mapping[str, Any] | None = None,
) -> None:
    """Set columns; `metadata_patch` is merged into metadata (top-level keys)."""
    sets = [f"{name} = ${i}" for i, name in enumerate(fields.keys(), start=4)]
    args: list[Any] = [tenant_id, call_id, created_at, *fields.values()]
    if metadata_patch:
        args.append(dict(metadata_patch))
        sets.append(f"metadata = metadata || ${len(args)}::jsonb")
    if not sets:
        return
    await conn.execute(f"UPDATE voice_call_logs SET {', '.join(sets)} WHERE {_BY_ID}", *args)


async def record_provider_id(
    conn: asyncpg.Connection,
    tenant_id: uuid.UUID,
    call_id: uuid.UUID,
    created_at: datetime,
    provider: str,
    provider_call_id: str,
) -> None:
    """Store the provider's call id on the call (once) and in the lookup table (idempotent)."""
    await conn.execute(
        f"UPDATE voice_call_logs SET provider_call_id = $4 WHERE {_BY_ID} AND provider_call_id IS NULL",
        tenant_id,
        call_id,
        created_at,
        provider_call_id,
    )
    await conn.execute(
        """INSERT INTO voice_call_provider_ids (provider, provider_call_id, call_id, call_created_at, tenant_id)
           VALUES ($1, $2, $3, $4, $5) ON CONFLICT (provider, provider_call_id) DO NOTHING""",
        provider,
        provider_call_id,
        call_id,
        created_at,
        tenant_id,
    )


async def locate(conn: asyncpg.Connection, tenant_id: uuid.UUID, call_id: uuid.UUID) -> asyncpg.Record | None:
    """(id, created_at) of the tenant's call, by id alone."""
    return await conn.fetchrow(
        f"SELECT id, created_at FROM voice_call_logs WHERE {BY_ID_ONLY}", tenant_id, call_id
    )


# --- what the post-call pipeline (billing, analysis) reads and writes ---

PIPELINE_COLUMNS = (
    "id, created_at, tenant_id, initiated_by_user_id, lead_id, agent_id, batch_id, batch_entry_id, "
    "provider, status, direction, answered_by, started_at, ended_at, duration_seconds, media_ended_at, "
    "provider_final_at, transcripts, cost, currency, cost_breakdown, metadata, from_e164, to_e164"
)


async def get_for_pipeline(
    conn: asyncpg.Connection,
    tenant_id: uuid.UUID,
    call_id: uuid.UUID,
    created_at: datetime,
    *,
    lock: bool = False,
) -> asyncpg.Record | None:
    """The call as billing and analysis see it (PIPELINE_COLUMNS); `lock` takes the row lock for the transaction."""
    return await conn.fetchrow(
        f"SELECT {PIPELINE_COLUMNS} FROM voice_call_logs WHERE {_BY_ID}" + (" FOR UPDATE" if lock else ""),
        tenant_id,
        call_id,
        created_at,
    )


async def pipeline_progress(
    conn: asyncpg.Connection, tenant_id: uuid.UUID, call_id: uuid.UUID, created_at: datetime
) -> asyncpg.Record | None:
    """Which ends of the call are in, and whether it was billed (and has a provider price)."""
    return await conn.fetchrow(
        f"SELECT status, started_at, media_ended_at, provider_final_at, (cost IS NOT NULL) AS billed, "
        f"(metadata ? 'provider_price') AS has_provider_price "
        f"FROM voice_call_logs WHERE {_BY_ID}",
        tenant_id,
        call_id,
        created_at,
    )


async def set_cost(
    conn: asyncpg.Connection,
    tenant_id: uuid.UUID,
    call_id: uuid.UUID,
    created_at: datetime,
    *,
    breakdown: list[dict[str, Any]],
    cost: Decimal,
    currency: str,
    billing: dict[str, Any],
) -> None:
    """The call's priced breakdown and total; `billing` is merged into metadata.billing, and a billing_error left
    by a failed attempt is removed (the call is billed now)."""
    await conn.execute(
        f"UPDATE voice_call_logs SET cost_breakdown = $4, cost = $5, currency = $6, "
        f"metadata = jsonb_set(metadata - 'billing_error', '{{billing}}', "
        f"coalesce(metadata -> 'billing', '{{}}') || $7::jsonb) "
        f"WHERE {_BY_ID}",
        tenant_id,
        call_id,
        created_at,
        breakdown,
        cost,
        currency,
        billing,
    )


async def merge_billing(
    conn: asyncpg.Connection, tenant_id: uuid.UUID, call_id: uuid.UUID, created_at: datetime, billing: dict[str, Any]
) -> None:
    """Merge `billing` into metadata.billing (the bill itself unchanged)."""
    await conn.execute(
        f"UPDATE voice_call_logs SET metadata = jsonb_set(metadata, '{{billing}}', "
        f"coalesce(metadata -> 'billing', '{{}}') || $4::jsonb) WHERE {_BY_ID}",
        tenant_id,
        call_id,
        created_at,
        billing,
    )


async def unbilled_final_calls(
    conn: asyncpg.Connection,
    *,
    settled_before: datetime,
    include_given_up: bool,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> list[asyncpg.Record]:
    """A page of final calls without a bill, every tenant (SECURITY DEFINER `unbilled_final_calls`, sql/0070),
    in (created_at, id) order after `after`."""
    return await conn.fetch(
        "SELECT tenant_id, call_id, call_created_at FROM unbilled_final_calls($1, $2, $3, $4, $5)",
        settled_before,
        include_given_up,
        after[0] if after else None,
        after[1] if after else None,
        limit,
    )


# --- what the conversation engine writes at the end of a call ---


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
        f"UPDATE voice_call_logs SET transcripts = $4, metadata = metadata || $5::jsonb WHERE {_BY_ID}",
        tenant_id,
        call_id,
        created_at,
        transcripts,
        dict(metadata_patch),
    )
    return result.endswith(" 1")


async def lifecycle_state(
    conn: asyncpg.Connection, tenant_id: uuid.UUID, call_id: uuid.UUID, created_at: datetime
) -> asyncpg.Record | None:
    """What the call's lifecycle events (calls/call_events.py) say about it, as this transaction sees it."""
    return await conn.fetchrow(
        f"SELECT {_STATE}, attempt FROM voice_call_logs WHERE {_BY_ID}", tenant_id, call_id, created_at
    )


# --- what the batch dispatcher reads and writes ---


async def attempt_state(
    conn: asyncpg.Connection,
    tenant_id: uuid.UUID,
    call_id: uuid.UUID,
    created_at: datetime,
    *,
    lock: bool = False,
) -> asyncpg.Record | None:
    """What a batch attempt's outcome is decided from: status, answered_by, end reason (and its detail), whether
    the agent said anything, the batch entry."""
    return await conn.fetchrow(
        f"""SELECT id, created_at, status, provider_call_id, answered_by, metadata->>'end_reason' AS end_reason,
                  metadata->>'end_reason_detail' AS end_reason_detail,
                  coalesce(jsonb_path_exists(transcripts, '$[*] ? (@.role == "agent")'), false) AS agent_spoke,
                  batch_id, batch_entry_id, attempt
           FROM voice_call_logs WHERE {_BY_ID}"""
        + (" FOR UPDATE" if lock else ""),
        tenant_id,
        call_id,
        created_at,
    )


async def end_unplaced(
    conn: asyncpg.Connection,
    tenant_id: uuid.UUID,
    call_id: uuid.UUID,
    created_at: datetime,
    status: str,
    end_reason: str,
) -> bool:
    """End a call that was never placed (no provider call id, still pending) with a terminal `status`; False if it
    has moved on (the status only moves forward: from pending)."""
    return (
        await conn.fetchval(
            f"""UPDATE voice_call_logs
           SET status = $4, ended_at = now(), metadata = metadata || jsonb_build_object('end_reason', $5::text)
           WHERE {_BY_ID} AND status = 'pending' AND provider_call_id IS NULL
           RETURNING true""",
            tenant_id,
            call_id,
            created_at,
            status,
            end_reason,
        )
        is not None
    )


async def find_by_id(conn: asyncpg.Connection, call_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT * FROM find_call_by_id($1)", call_id)


async def find_by_provider_id(
    conn: asyncpg.Connection, provider: str, provider_call_id: str
) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT * FROM find_call_by_provider_id($1, $2)", provider, provider_call_id)


async def store_media_token(
    conn: asyncpg.Connection,
    tenant_id: uuid.UUID,
    call_id: uuid.UUID,
    created_at: datetime,
    token_hash: bytes,
    expires_at: datetime,
) -> None:
    """A fresh token for the call (placing again after a crash replaces an unused one)."""
    await conn.execute(
        """INSERT INTO voice_call_media_tokens (call_id, call_created_at, tenant_id, token_hash, expires_at)
           VALUES ($1, $2, $3, $4, $5)
           ON CONFLICT (call_id) DO UPDATE SET token_hash = EXCLUDED.token_hash, expires_at = EXCLUDED.expires_at,
                                              used_at = NULL""",
        call_id,
        created_at,
        tenant_id,
        token_hash,
        expires_at,
    )


async def claim_media_token(
    conn: asyncpg.Connection, call_id: uuid.UUID, token_hash: bytes
) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT * FROM claim_media_token($1, $2)", call_id, token_hash)


# --- recordings (voice_service/recordings keeps the files; the call row says where and why not) ---


async def recording_state(
    conn: asyncpg.Connection, tenant_id: uuid.UUID, call_id: uuid.UUID, *, for_update: bool = False
) -> asyncpg.Record | None:
    """What the recordings domain needs of a call (by id alone), optionally locked."""
    lock = " FOR UPDATE" if for_update else ""
    return await conn.fetchrow(
        "SELECT id, created_at, status, agent_id, provider, recording_url, metadata "
        f"FROM voice_call_logs WHERE {BY_ID_ONLY}{lock}",
        tenant_id,
        call_id,
    )


async def set_recording(
    conn: asyncpg.Connection,
    tenant_id: uuid.UUID,
    call_id: uuid.UUID,
    created_at: datetime,
    recording_url: str | None,
    metadata_patch: Mapping[str, Any] | None = None,
    remove_keys: Sequence[str] = (),
) -> None:
    """Set (or clear, with None) recording_url; merge `metadata_patch` and drop `remove_keys` from metadata."""
    await conn.execute(
        "UPDATE voice_call_logs SET recording_url = $4, metadata = (metadata - $5::text[]) || $6::jsonb "
        f"WHERE {_BY_ID}",
        tenant_id,
        call_id,
        created_at,
        recording_url,
        list(remove_keys),
        dict(metadata_patch or {}),
    )


async def patch_metadata(
    conn: asyncpg.Connection,
    tenant_id: uuid.UUID,
    call_id: uuid.UUID,
    created_at: datetime,
    patch: Mapping[str, Any] | None = None,
    remove_keys: Sequence[str] = (),
) -> None:
    """Merge `patch` into metadata (top-level keys) and drop `remove_keys`."""
    await conn.execute(
        f"UPDATE voice_call_logs SET metadata = (metadata - $4::text[]) || $5::jsonb WHERE {_BY_ID}",
        tenant_id,
        call_id,
        created_at,
        list(remove_keys),
        dict(patch or {}),
    )


async def calls_with_recording_before(
    conn: asyncpg.Connection, tenant_id: uuid.UUID, before: datetime, limit: int
) -> list[asyncpg.Record]:
    """Calls created before `before` that still have a recording, oldest first."""
    return await conn.fetch(
        "SELECT id, created_at FROM voice_call_logs "
        "WHERE tenant_id = $1 AND recording_url IS NOT NULL AND created_at < $2 ORDER BY created_at LIMIT $3",
        tenant_id,
        before,
        limit,
    )


# --- idempotency keys (POST /v1/calls): shared SQL in voice_service/idempotency.py ---

# --- what creating a call checks ---


async def get_number(
    conn: asyncpg.Connection, tenant_id: uuid.UUID, number_id: uuid.UUID
) -> asyncpg.Record | None:
    return await conn.fetchrow(
        """SELECT id, e164, provider, status, default_agent_id FROM voice_agent_numbers
           WHERE tenant_id = $1 AND id = $2 AND deleted_at IS NULL""",
        tenant_id,
        number_id,
    )


async def get_agent(conn: asyncpg.Connection, tenant_id: uuid.UUID, agent_id: int) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT id, voice_id, config FROM voice_agents WHERE tenant_id = $1 AND id = $2 AND deleted_at IS NULL",
        tenant_id,
        agent_id,
    )


async def voice_exists(conn: asyncpg.Connection, tenant_id: uuid.UUID, voice_id: uuid.UUID) -> bool:
    return bool(
        await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM voice_agent_voices WHERE tenant_id = $1 AND id = $2 AND deleted_at IS NULL)",
            tenant_id,
            voice_id,
        )
    )


async def get_lead(
    conn: asyncpg.Connection, tenant_id: uuid.UUID, lead_id: uuid.UUID
) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT id, phone, do_not_call FROM leads WHERE tenant_id = $1 AND id = $2 AND deleted_at IS NULL",
        tenant_id,
        lead_id,
    )

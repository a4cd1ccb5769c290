"""SQL for batches: creation in bulk, listing, controls, and the dispatcher's claim / finish statements.

The only module that writes voice_call_batches, voice_call_batch_entries and dispatch_pacing. Leads and call rows
are written through their own repositories (leads, calls); reads that need them join them here.

Every statement filters on tenant_id (row-level security applies as well). Lock order, everywhere: the batch row
first, then its entries; a call row is locked before its batch only on the telephony side (call → batch), so the
dispatcher locks call rows it does not own with SKIP LOCKED while it holds a batch row.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg

from voice_service.idempotency import (  # noqa: F401 - re-exported for the routes and services
    claim_idempotency_key,
    release_idempotency_key,
    save_idempotent_response,
)

BATCH_COLUMNS = (
    "id, name, status, agent_id, voice_id, from_number_id, from_number_ids, start_at, timezone, calling_window, "
    "max_concurrency, calls_per_second::float8 AS calls_per_second, retry_policy, variables, total_calls, "
    "queued_calls, in_progress_calls, retrying_calls, completed_calls, failed_calls, skipped_calls, "
    "cancelled_calls, initiated_by_user_id, metadata, created_at, updated_at, started_at, completed_at, "
    "timezones, rotation, next_position, wake_at, swept_at"
)
ENTRY_COLUMNS = (
    "id, batch_id, position, lead_id, phone, status, outcome, error_message, attempts, last_call_id, "
    "next_attempt_at, timezone, variables, created_at, updated_at"
)
LIVE_CALL_STATUSES = ("pending", "ringing", "ongoing")
# The namespace (first key) of the dispatcher leases' session advisory locks.
LEASE_LOCK_CLASS = 0x56424454


# --- references checked on create ---


async def numbers_by_ids(
    conn: asyncpg.Connection, tenant_id: uuid.UUID, ids: Sequence[uuid.UUID]
) -> list[asyncpg.Record]:
    return await conn.fetch(
        """SELECT id, e164, e164 AS phone_number, country_code, base_number, provider, status
           FROM voice_agent_numbers WHERE tenant_id = $1 AND id = ANY($2::uuid[]) AND deleted_at IS NULL""",
        tenant_id,
        list(ids),
    )


async def leads_by_ids(
    conn: asyncpg.Connection, tenant_id: uuid.UUID, ids: Sequence[uuid.UUID]
) -> list[asyncpg.Record]:
    return await conn.fetch(
        """SELECT id, phone, timezone, do_not_call, first_name, last_name, email, company_name
           FROM leads WHERE tenant_id = $1 AND id = ANY($2::uuid[]) AND deleted_at IS NULL""",
        tenant_id,
        list(ids),
    )


# --- batches and entries ---


async def insert_batch(
    conn: asyncpg.Connection, tenant_id: uuid.UUID, fields: dict[str, Any]
) -> asyncpg.Record:
    names = ["tenant_id", *fields.keys()]
    params = ", ".join(f"${i}" for i in range(1, len(names) + 1))
    return await conn.fetchrow(  # type: ignore[no-any-return]
        f"INSERT INTO voice_call_batches ({', '.join(names)}) VALUES ({params}) RETURNING {BATCH_COLUMNS}",
        tenant_id,
        *fields.values(),
    )


_INSERT_ENTRIES = """
INSERT INTO voice_call_batch_entries (tenant_id, batch_id, position, lead_id, phone, variables, status, outcome,
                                      error_message, next_attempt_at, timezone)
SELECT $1, $2, u.position, u.lead_id, u.phone, u.variables::jsonb, u.status, u.outcome, u.error_message,
       CASE WHEN u.status = 'queued' THEN $3::timestamptz END, u.timezone
FROM unnest($4::int[], $5::uuid[], $6::text[], $7::text[], $8::text[], $9::text[], $10::text[], $11::text[])
     AS u (position, lead_id, phone, variables, status, outcome, error_message, timezone)
"""


async def insert_entries(
    conn: asyncpg.Connection,
    tenant_id: uuid.UUID,
    batch_id: uuid.UUID,
    due_at: datetime,
    columns: Sequence[Sequence[Any]],
) -> None:
    """One multi-row statement; `columns` = positions, lead_ids, phones, variables (JSON text), statuses,
    outcomes, error_messages, timezones."""
    await conn.execute(_INSERT_ENTRIES, tenant_id, batch_id, due_at, *[list(c) for c in columns])


async def phones_in_batch(
    conn: asyncpg.Connection, tenant_id: uuid.UUID, batch_id: uuid.UUID, phones: Sequence[str]
) -> set[str]:
    rows = await conn.fetch(
        """SELECT phone FROM voice_call_batch_entries
           WHERE tenant_id = $1 AND batch_id = $2 AND phone = ANY($3::text[]) AND status <> 'skipped'""",
        tenant_id,
        batch_id,
        list(phones),
    )
    return {r["phone"] for r in rows}


async def after_entries_added(
    conn: asyncpg.Connection,
    tenant_id: uuid.UUID,
    batch_id: uuid.UUID,
    zones: Sequence[str],
    next_position: int,
) -> asyncpg.Record:
    return await conn.fetchrow(  # type: ignore[no-any-return]
        f"""UPDATE voice_call_batches
            SET timezones = ARRAY(SELECT DISTINCT z FROM unnest(timezones || $3::text[]) AS z ORDER BY z),
                next_position = $4
            WHERE tenant_id = $1 AND id = $2 RETURNING {BATCH_COLUMNS}""",
        tenant_id,
        batch_id,
        list(zones),
        next_position,
    )


async def get_batch(
    conn: asyncpg.Connection, tenant_id: uuid.UUID, batch_id: uuid.UUID, *, lock: bool = False
) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"SELECT {BATCH_COLUMNS} FROM voice_call_batches WHERE tenant_id = $1 AND id = $2 AND deleted_at IS NULL"
        + (" FOR UPDATE" if lock else ""),
        tenant_id,
        batch_id,
    )


async def list_batches(
    conn: asyncpg.Connection,
    tenant_id: uuid.UUID,
    *,
    limit: int,
    after: tuple[datetime, str] | None,
    status: str | None,
) -> list[asyncpg.Record]:
    args: list[Any] = [tenant_id, limit + 1]
    conds = ["tenant_id = $1", "deleted_at IS NULL"]
    if status is not None:
        args.append(status)
        conds.append(f"status = ${len(args)}")
    if after is not None:
        args += [after[0], after[1]]
        conds.append(f"(created_at, id) < (${len(args) - 1}, ${len(args)}::uuid)")
    return await conn.fetch(
        f"SELECT {BATCH_COLUMNS} FROM voice_call_batches WHERE {' AND '.join(conds)} "
        "ORDER BY created_at DESC, id DESC LIMIT $2",
        *args,
    )


async def list_entries(
    conn: asyncpg.Connection,
    tenant_id: uuid.UUID,
    batch_id: uuid.UUID,
    *,
    limit: int,
    after_position: int | None,
    status: str | None,
) -> list[asyncpg.Record]:
    args: list[Any] = [tenant_id, batch_id, limit + 1]
    conds = ["tenant_id = $1", "batch_id = $2"]
    if status is not None:
        args.append(status)
        conds.append(f"status = ${len(args)}")
    if after_position is not None:
        args.append(after_position)
        conds.append(f"position > ${len(args)}")
    return await conn.fetch(
        f"SELECT {ENTRY_COLUMNS} FROM voice_call_batch_entries WHERE {' AND '.join(conds)} "
        "ORDER BY position LIMIT $3",
        *args,
    )


async def set_status(
    conn: asyncpg.Connection,
    tenant_id: uuid.UUID,
    batch_id: uuid.UUID,
    status: str,
    *,
    finished: bool = False,
) -> asyncpg.Record:
    return await conn.fetchrow(  # type: ignore[no-any-return]
        f"""UPDATE voice_call_batches SET status = $3,
                   completed_at = CASE WHEN $4 THEN COALESCE(completed_at, now()) ELSE completed_at END
            WHERE tenant_id = $1 AND id = $2 RETURNING {BATCH_COLUMNS}""",
        tenant_id,
        batch_id,
        status,
        finished,
    )


async def cancel_waiting_entries(conn: asyncpg.Connection, tenant_id: uuid.UUID, batch_id: uuid.UUID) -> int:
    result = await conn.execute(
        """UPDATE voice_call_batch_entries SET status = 'cancelled', next_attempt_at = NULL
           WHERE tenant_id = $1 AND batch_id = $2 AND status IN ('queued', 'retrying')""",
        tenant_id,
        batch_id,
    )
    return int(result.split()[-1])


# --- idempotency keys (POST /v1/batches): shared SQL in voice_service/idempotency.py ---

# --- dispatch: limits ---


async def lock_tenant_dispatch(conn: asyncpg.Connection, tenant_id: uuid.UUID) -> None:
    """Serialises claims of one tenant's batches (transaction-scoped), so the tenant cap holds. Count live calls
    in a statement after this one: a statement's snapshot is taken when it starts."""
    await conn.execute(
        "SELECT pg_advisory_xact_lock($1, hashtext($2::uuid::text))", LEASE_LOCK_CLASS + 1, tenant_id
    )


async def tenant_load(conn: asyncpg.Connection, tenant_id: uuid.UUID) -> asyncpg.Record:
    """The tenant's concurrent-call entitlement (billing_feature_entitlements 'voice-agent' metadata; NULL =
    the default) and its live calls: batch entries dialing or talking, plus calls outside batches (inbound,
    one-off) not over yet; such a call row older than six hours is not counted (a lost final webhook must not
    block dialling for good)."""
    return await conn.fetchrow(  # type: ignore[no-any-return]
        """SELECT (SELECT (metadata->>'max_concurrent_calls')::int FROM billing_feature_entitlements
                   WHERE tenant_id = $1 AND feature_key = 'voice-agent' AND enabled) AS max_concurrent_calls,
                  (SELECT (metadata->>'reserved_concurrency')::int FROM billing_feature_entitlements
                   WHERE tenant_id = $1 AND feature_key = 'voice-agent' AND enabled) AS reserved_concurrency,
                  (SELECT COALESCE(sum(in_progress_calls), 0) FROM voice_call_batches
                   WHERE tenant_id = $1 AND status IN ('scheduled', 'running', 'paused', 'cancelled')
                     AND in_progress_calls > 0)
                + (SELECT count(*) FROM voice_call_logs
                   WHERE tenant_id = $1 AND batch_id IS NULL AND status IN ('pending', 'ringing', 'ongoing')
                     AND created_at > now() - interval '6 hours') AS live_calls""",
        tenant_id,
    )


async def lock_pacing(conn: asyncpg.Connection, keys: Sequence[str]) -> dict[str, datetime]:
    """Locks the pacing rows (created on first use) in key order; returns key -> next free start time."""
    if not keys:
        return {}
    keys = sorted(set(keys))
    await conn.execute(
        "INSERT INTO dispatch_pacing (key) SELECT unnest($1::text[]) ON CONFLICT (key) DO NOTHING", keys
    )
    rows = await conn.fetch(
        "SELECT key, next_slot_at FROM dispatch_pacing WHERE key = ANY($1::text[]) ORDER BY key FOR UPDATE",
        keys,
    )
    return {r["key"]: r["next_slot_at"] for r in rows}


async def update_pacing(conn: asyncpg.Connection, slots: dict[str, datetime]) -> None:
    if not slots:
        return
    await conn.execute(
        """UPDATE dispatch_pacing p SET next_slot_at = u.at, updated_at = now()
           FROM unnest($1::text[], $2::timestamptz[]) AS u (key, at) WHERE p.key = u.key""",
        list(slots.keys()),
        list(slots.values()),
    )


# --- dispatch: claiming ---

# An entry is not called when its lead opted out, nor when any live lead with the number it dials did (the entry's
# lead may have moved to another number since the batch was made, and the number's new lead opted out).
_DO_NOT_CALL = """(COALESCE(l.do_not_call, false) OR EXISTS (
    SELECT 1 FROM leads d WHERE d.tenant_id = e.tenant_id AND d.phone = e.phone AND d.deleted_at IS NULL
      AND d.do_not_call))"""


async def claim_entries(
    conn: asyncpg.Connection,
    tenant_id: uuid.UUID,
    batch_id: uuid.UUID,
    now: datetime,
    zones: Sequence[str] | None,
    limit: int,
    exclude: Sequence[uuid.UUID] = (),
) -> list[asyncpg.Record]:
    """Due entries in order, locked (SKIP LOCKED: concurrent dispatchers take different ones); `zones` None = any
    time zone."""
    return await conn.fetch(
        """SELECT e.id, e.lead_id, e.phone, e.variables, e.attempts, """ + _DO_NOT_CALL + """ AS do_not_call
           FROM voice_call_batch_entries e
           LEFT JOIN leads l ON l.tenant_id = e.tenant_id AND l.id = e.lead_id
           WHERE e.tenant_id = $1 AND e.batch_id = $2 AND e.status IN ('queued', 'retrying')
             AND e.next_attempt_at <= $3 AND ($4::text[] IS NULL OR e.timezone = ANY($4::text[]))
             AND e.id <> ALL($6::uuid[])
           ORDER BY e.next_attempt_at, e.position
           LIMIT $5
           FOR UPDATE OF e SKIP LOCKED""",
        tenant_id,
        batch_id,
        now,
        None if zones is None else list(zones),
        limit,
        list(exclude),
    )


async def skip_entries(
    conn: asyncpg.Connection, tenant_id: uuid.UUID, ids: Sequence[uuid.UUID], outcome: str, message: str
) -> None:
    await conn.execute(
        """UPDATE voice_call_batch_entries SET status = 'skipped', outcome = $3, error_message = $4,
                  next_attempt_at = NULL
           WHERE tenant_id = $1 AND id = ANY($2::uuid[])""",
        tenant_id,
        list(ids),
        outcome,
        message,
    )


async def mark_dialing(
    conn: asyncpg.Connection,
    tenant_id: uuid.UUID,
    entry_ids: Sequence[uuid.UUID],
    call_ids: Sequence[uuid.UUID],
    lease: int,
) -> None:
    await conn.execute(
        """UPDATE voice_call_batch_entries e
           SET status = 'dialing', attempts = e.attempts + 1, last_call_id = u.call_id, claimed_at = now(),
               claimed_by = $4, outcome = NULL, error_message = NULL, next_attempt_at = NULL
           FROM unnest($2::uuid[], $3::uuid[]) AS u (id, call_id)
           WHERE e.tenant_id = $1 AND e.id = u.id""",
        tenant_id,
        list(entry_ids),
        list(call_ids),
        lease,
    )


async def after_claim(conn: asyncpg.Connection, tenant_id: uuid.UUID, batch_id: uuid.UUID, used: int) -> None:
    await conn.execute(
        """UPDATE voice_call_batches
           SET rotation = rotation + $3,
               status = CASE WHEN status = 'scheduled' THEN 'running' ELSE status END,
               started_at = COALESCE(started_at, now())
           WHERE tenant_id = $1 AND id = $2""",
        tenant_id,
        batch_id,
        used,
    )


async def start_batch(conn: asyncpg.Connection, tenant_id: uuid.UUID, batch_id: uuid.UUID) -> None:
    await conn.execute(
        "UPDATE voice_call_batches SET status = 'running' WHERE tenant_id = $1 AND id = $2 AND status = 'scheduled'",
        tenant_id,
        batch_id,
    )


async def next_due(
    conn: asyncpg.Connection, tenant_id: uuid.UUID, batch_id: uuid.UUID, after: datetime
) -> datetime | None:
    """The earliest next_attempt_at after `after` among waiting entries (start times, retry backoffs)."""
    return await conn.fetchval(  # type: ignore[no-any-return]
        """SELECT min(next_attempt_at) FROM voice_call_batch_entries
           WHERE tenant_id = $1 AND batch_id = $2 AND status IN ('queued', 'retrying') AND next_attempt_at > $3""",
        tenant_id,
        batch_id,
        after,
    )


async def set_swept(conn: asyncpg.Connection, tenant_id: uuid.UUID, batch_id: uuid.UUID) -> None:
    await conn.execute(
        "UPDATE voice_call_batches SET swept_at = now() WHERE tenant_id = $1 AND id = $2", tenant_id, batch_id
    )


async def set_wake(
    conn: asyncpg.Connection, tenant_id: uuid.UUID, batch_id: uuid.UUID, at: datetime | None
) -> None:
    await conn.execute(
        "UPDATE voice_call_batches SET wake_at = $3 WHERE tenant_id = $1 AND id = $2", tenant_id, batch_id, at
    )


# --- dispatch: recovery of claims left by a dead process ---


async def interrupted_claims(
    conn: asyncpg.Connection,
    tenant_id: uuid.UUID,
    batch_id: uuid.UUID,
    *,
    grace_seconds: float,
    stuck_seconds: float,
) -> list[asyncpg.Record]:
    """Dialing entries whose call was never recorded as placed (no provider call id, still pending), claimed by a
    dispatcher whose lease (session advisory lock) is gone — or claimed longer ago than `stuck_seconds`. The
    entries are locked; call rows being changed right now (a webhook) are skipped."""
    return await conn.fetch(
        """SELECT e.id AS entry_id, e.attempts, e.lead_id, c.id AS call_id, c.created_at AS call_created_at
           FROM voice_call_batch_entries e
           JOIN voice_call_logs c
             ON c.tenant_id = e.tenant_id AND c.id = e.last_call_id
            AND c.created_at >= uuid_v7_time(e.last_call_id)
            AND c.created_at < uuid_v7_time(e.last_call_id) + interval '1 millisecond'
           WHERE e.tenant_id = $1 AND e.batch_id = $2 AND e.status = 'dialing'
             AND e.claimed_at < now() - make_interval(secs => $3)
             AND c.provider_call_id IS NULL AND c.status = 'pending'
             AND (e.claimed_at < now() - make_interval(secs => $4)
                  OR NOT EXISTS (SELECT 1 FROM pg_locks k
                                 WHERE k.locktype = 'advisory' AND k.classid = $5::int::oid
                                   AND k.objid = e.claimed_by::oid AND k.objsubid = 2 AND k.granted))
           FOR UPDATE OF e, c SKIP LOCKED""",
        tenant_id,
        batch_id,
        grace_seconds,
        stuck_seconds,
        LEASE_LOCK_CLASS,
    )


async def oldest_unplaced_claim(
    conn: asyncpg.Connection, tenant_id: uuid.UUID, batch_id: uuid.UUID
) -> datetime | None:
    """When the oldest claim whose call is still pending without a provider call id was made."""
    return await conn.fetchval(  # type: ignore[no-any-return]
        """SELECT min(e.claimed_at)
           FROM voice_call_batch_entries e
           JOIN voice_call_logs c
             ON c.tenant_id = e.tenant_id AND c.id = e.last_call_id
            AND c.created_at >= uuid_v7_time(e.last_call_id)
            AND c.created_at < uuid_v7_time(e.last_call_id) + interval '1 millisecond'
           WHERE e.tenant_id = $1 AND e.batch_id = $2 AND e.status = 'dialing'
             AND c.provider_call_id IS NULL AND c.status = 'pending'""",
        tenant_id,
        batch_id,
    )


# --- attempt results ---


async def lock_entry(
    conn: asyncpg.Connection, tenant_id: uuid.UUID, entry_id: uuid.UUID
) -> asyncpg.Record | None:
    return await conn.fetchrow(
        """SELECT e.id, e.batch_id, e.status, e.attempts, e.last_call_id, e.lead_id,
                  """ + _DO_NOT_CALL + """ AS do_not_call
           FROM voice_call_batch_entries e
           LEFT JOIN leads l ON l.tenant_id = e.tenant_id AND l.id = e.lead_id
           WHERE e.tenant_id = $1 AND e.id = $2
           FOR UPDATE OF e""",
        tenant_id,
        entry_id,
    )


async def finish_attempt(
    conn: asyncpg.Connection,
    tenant_id: uuid.UUID,
    entry_id: uuid.UUID,
    *,
    status: str,
    outcome: str,
    next_attempt_at: datetime | None,
    error_message: str | None,
) -> None:
    await conn.execute(
        """UPDATE voice_call_batch_entries
           SET status = $3, outcome = $4, next_attempt_at = $5, error_message = $6
           WHERE tenant_id = $1 AND id = $2""",
        tenant_id,
        entry_id,
        status,
        outcome,
        next_attempt_at,
        error_message,
    )


async def mark_in_progress(
    conn: asyncpg.Connection, tenant_id: uuid.UUID, entry_id: uuid.UUID, call_id: uuid.UUID
) -> None:
    await conn.execute(
        """UPDATE voice_call_batch_entries SET status = 'in_progress'
           WHERE tenant_id = $1 AND id = $2 AND last_call_id = $3 AND status = 'dialing'""",
        tenant_id,
        entry_id,
        call_id,
    )


# --- the call analysis's outcome ---


async def record_analysis_outcome(
    conn: asyncpg.Connection,
    tenant_id: uuid.UUID,
    batch_id: uuid.UUID,
    entry_id: uuid.UUID,
    call_id: uuid.UUID,
    outcome: dict[str, Any],
) -> None:
    """The analysis outcome on the batch entry (metadata.analysis) and per-category counts on the batch
    (metadata.analysis_counts): each entry counts once, under its latest call's latest category."""
    prev = await conn.fetchrow(
        "SELECT metadata -> 'analysis' AS analysis FROM voice_call_batch_entries "
        "WHERE tenant_id = $1 AND id = $2 AND batch_id = $3 FOR UPDATE",
        tenant_id,
        entry_id,
        batch_id,
    )
    if prev is None:
        return
    await conn.execute(
        "UPDATE voice_call_batch_entries SET metadata = jsonb_set(metadata, '{analysis}', $3::jsonb) "
        "WHERE tenant_id = $1 AND id = $2",
        tenant_id,
        entry_id,
        {**outcome, "call_id": str(call_id)},
    )
    new = outcome.get("lead_category") or "none"
    old = None
    if isinstance(prev["analysis"], dict):
        old = prev["analysis"].get("lead_category") or "none"
    if old == new:
        return
    await conn.execute(
        """
        UPDATE voice_call_batches
        SET metadata = jsonb_set(metadata, '{analysis_counts}',
            coalesce(metadata -> 'analysis_counts', '{}')
            || jsonb_build_object($3::text, coalesce((metadata -> 'analysis_counts' ->> $3)::int, 0) + 1)
            || CASE WHEN $4::text IS NULL THEN '{}'::jsonb
                    ELSE jsonb_build_object($4::text,
                                            greatest(coalesce((metadata -> 'analysis_counts' ->> $4)::int, 0) - 1, 0))
               END)
        WHERE tenant_id = $1 AND id = $2
        """,
        tenant_id,
        batch_id,
        new,
        old,
    )

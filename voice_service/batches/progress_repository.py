"""SQL for watching a batch (the operator console): its progress in one statement, and why entries were skipped.

Reads only; the batch tables are written in repository.py.
"""

from __future__ import annotations

import uuid

import asyncpg

# --- the operator console's live progress view and launch preview ---

# One statement a refresh (the console's live view of a batch costs at most one a second, however many watch it):
# the batch's counters and its calls under way (the entries dialing or talking, with their call rows; each call row
# is found by id within its UUIDv7's millisecond, so one partition is read).
_PROGRESS = """
SELECT b.id, b.name, b.status, b.total_calls, b.queued_calls, b.in_progress_calls, b.retrying_calls,
       b.completed_calls, b.failed_calls, b.skipped_calls, b.cancelled_calls, b.created_at, b.started_at,
       b.completed_at, b.updated_at, now() AS read_at,
       COALESCE((
           SELECT jsonb_agg(jsonb_build_object(
                      'entry_id', e.id, 'position', e.position, 'phone', e.phone, 'entry_status', e.status,
                      'attempts', e.attempts, 'call_id', e.last_call_id, 'call_status', c.status,
                      'started_at', c.started_at, 'created_at', c.created_at) ORDER BY e.position)
           FROM (SELECT id, position, phone, status, attempts, last_call_id FROM voice_call_batch_entries
                 WHERE tenant_id = $1 AND batch_id = $2 AND status IN ('dialing', 'in_progress')
                 ORDER BY position LIMIT $3) e
           LEFT JOIN LATERAL (
               SELECT status, started_at, created_at FROM voice_call_logs
               WHERE tenant_id = $1 AND id = e.last_call_id AND created_at >= uuid_v7_time(e.last_call_id)
                 AND created_at < uuid_v7_time(e.last_call_id) + interval '1 millisecond'
           ) c ON true), '[]'::jsonb) AS live_calls
FROM voice_call_batches b
WHERE b.tenant_id = $1 AND b.id = $2 AND b.deleted_at IS NULL
"""


async def progress(
    conn: asyncpg.Connection, tenant_id: uuid.UUID, batch_id: uuid.UUID, *, live_limit: int
) -> asyncpg.Record | None:
    return await conn.fetchrow(_PROGRESS, tenant_id, batch_id, live_limit)


async def skipped_reasons(
    conn: asyncpg.Connection, tenant_id: uuid.UUID, batch_id: uuid.UUID
) -> list[asyncpg.Record]:
    """Why entries were skipped: each outcome with its count and one of its messages."""
    return await conn.fetch(
        """SELECT outcome, min(error_message) AS message, count(*) AS entries FROM voice_call_batch_entries
           WHERE tenant_id = $1 AND batch_id = $2 AND status = 'skipped'
           GROUP BY outcome ORDER BY count(*) DESC, outcome""",
        tenant_id,
        batch_id,
    )

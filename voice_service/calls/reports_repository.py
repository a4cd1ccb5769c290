"""Reports over the call log, read-only (SELECT only; the writes stay in calls/repository.py): the CSV exports, the
console overview's figures, a call's conversation for its page, and the call list filtered by the analysis."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import asyncpg

from voice_service.calls.repository import BY_ID_ONLY, COLUMNS

# The CSV export's columns: the call log, its cost per category and its analysis (one row per call).
_EXPORT = """
    SELECT c.id, c.created_at, c.direction, c.status, c.metadata->>'end_reason' AS end_reason, c.from_e164,
           c.to_e164, c.agent_id, c.lead_id, c.batch_id, c.attempt, c.provider, c.answered_by, c.started_at,
           c.ended_at, c.duration_seconds, c.cost, c.currency,
           (SELECT jsonb_object_agg(k, v) FROM (
                SELECT i->>'category' AS k, sum((i->>'cost')::numeric)::text AS v
                FROM jsonb_array_elements(c.cost_breakdown) i GROUP BY 1) per) AS cost_by_category,
           a.status AS analysis_status, a.summary, a.sentiment, a.lead_category,
           a.success_evaluation->>'success' AS success, a.lead_extraction
    FROM voice_call_logs c
    LEFT JOIN voice_call_analysis a ON a.tenant_id = c.tenant_id AND a.call_log_id = c.id
"""


async def export_page(
    conn: asyncpg.Connection,
    tenant_id: uuid.UUID,
    *,
    filters: Mapping[str, Any],
    created_after: datetime | None,
    created_before: datetime | None,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> list[asyncpg.Record]:
    """One page of the export, newest first, after the keyset position `after`."""
    args: list[Any] = [tenant_id, limit]
    conds = ["c.tenant_id = $1"]
    for column, value in filters.items():
        if value is not None:
            args.append(value)
            conds.append(f"c.{column} = ${len(args)}")
    for op, bound in ((">=", created_after), ("<", created_before)):
        if bound is not None:
            args.append(bound)
            conds.append(f"c.created_at {op} ${len(args)}")
    if after is not None:
        args += [after[0], after[1]]
        conds.append(f"(c.created_at, c.id) < (${len(args) - 1}, ${len(args)})")
    return await conn.fetch(
        f"{_EXPORT} WHERE {' AND '.join(conds)} ORDER BY c.created_at DESC, c.id DESC LIMIT $2", *args
    )


# --- figures for the operator console's overview (one indexed range scan on (tenant_id, created_at)) ---


async def stats_since(conn: asyncpg.Connection, tenant_id: uuid.UUID, since: datetime) -> asyncpg.Record:
    """Counts over the calls created since `since`, and the calls live now. A live call is at most a few hours
    old (agents' max_call_seconds ≤ 2 h, plus ringing), so the scan starts a day back at the earliest."""
    row = await conn.fetchrow(
        """SELECT
             count(*) FILTER (WHERE status IN ('ringing', 'ongoing')) AS live,
             count(*) FILTER (WHERE created_at >= $2) AS total,
             count(*) FILTER (WHERE created_at >= $2 AND started_at IS NOT NULL
                              AND status IN ('ended', 'declined', 'cancelled', 'failed')) AS answered,
             count(*) FILTER (WHERE created_at >= $2 AND started_at IS NULL AND status = 'declined') AS unanswered,
             avg(duration_seconds) FILTER (WHERE created_at >= $2 AND started_at IS NOT NULL
                                           AND status = 'ended') AS avg_duration
           FROM voice_call_logs
           WHERE tenant_id = $1 AND created_at >= least($2, now() - interval '1 day')""",
        tenant_id,
        since,
    )
    assert row is not None
    return row


# --- exports (the operator console's CSV files): a date range's calls, or their cost items, oldest first ---

_EXPORT_CALLS = """
SELECT c.id, c.created_at, c.direction, c.status, c.metadata->>'end_reason' AS end_reason, c.from_e164, c.to_e164,
       c.agent_id, a.name AS agent_name, c.batch_id, c.lead_id, c.started_at, c.ended_at, c.duration_seconds, c.cost,
       c.currency
FROM voice_call_logs c
LEFT JOIN voice_agents a ON a.tenant_id = c.tenant_id AND a.id = c.agent_id
WHERE c.tenant_id = $1 AND c.created_at >= $2 AND c.created_at < $3
ORDER BY c.created_at, c.id
"""

_EXPORT_COSTS = """
SELECT c.id, c.created_at, c.currency, i.item->>'category' AS category, i.item->>'provider' AS provider,
       i.item->>'model' AS model, i.item->>'unit' AS unit, i.item->>'quantity' AS quantity,
       i.item->>'unit_price' AS unit_price, i.item->>'cost' AS cost
FROM voice_call_logs c
CROSS JOIN LATERAL jsonb_array_elements(c.cost_breakdown) WITH ORDINALITY AS i (item, n)
WHERE c.tenant_id = $1 AND c.created_at >= $2 AND c.created_at < $3
ORDER BY c.created_at, c.id, i.n
"""


def export_cursor(
    conn: asyncpg.Connection, tenant_id: uuid.UUID, since: datetime, until: datetime, *, costs: bool
) -> Any:
    """A server-side cursor over the calls created in [since, until) (or their cost items), oldest first; iterate
    it inside the connection's transaction."""
    return conn.cursor(_EXPORT_COSTS if costs else _EXPORT_CALLS, tenant_id, since, until, prefetch=500)


async def conversation_of(
    conn: asyncpg.Connection, tenant_id: uuid.UUID, call_id: uuid.UUID
) -> asyncpg.Record | None:
    """The call's transcript and cost breakdown (by id alone, one partition)."""
    return await conn.fetchrow(
        f"SELECT transcripts, cost_breakdown, currency FROM voice_call_logs WHERE {BY_ID_ONLY}", tenant_id, call_id
    )


# --- the call list filtered by the analysis (the console): sentiment and/or lead category ---

_PREFIXED = ", ".join(f"c.{column}" for column in COLUMNS)  # "c.metadata->>'end_reason' AS end_reason" too


async def page_by_analysis(
    conn: asyncpg.Connection,
    tenant_id: uuid.UUID,
    *,
    limit: int,
    after: tuple[datetime, str] | None,
    filters: Mapping[str, Any],
    sentiment: str | None,
    category: str | None,
) -> list[asyncpg.Record]:
    """Calls whose completed analysis has this sentiment and/or lead category, newest first; `filters` as in
    `list_calls`. The analysis index is walked in the list's order (sql/0062) and each call row is looked up by its
    key: `OFFSET 0` keeps the lookup a per-row subquery (the planner cannot see that an analysis row has exactly
    one call, and would otherwise join every call of the tenant and sort them)."""
    args: list[Any] = [tenant_id, limit + 1]
    conds = ["a.tenant_id = $1", "a.status = 'completed'"]
    for column, value in (("sentiment", sentiment), ("lead_category", category)):
        if value is not None:
            args.append(value)
            conds.append(f"a.{column} = ${len(args)}")
    call_conds = ["c.tenant_id = a.tenant_id", "c.id = a.call_log_id", "c.created_at = a.call_created_at"]
    for column, value in filters.items():
        if value is not None:
            args.append(value)
            call_conds.append(f"c.{column} = ${len(args)}")
    if after is not None:
        args += [after[0], after[1]]
        conds.append(f"(a.call_created_at, a.call_log_id) < (${len(args) - 1}, ${len(args)}::uuid)")
    return await conn.fetch(
        f"""SELECT call.* FROM voice_call_analysis a
            CROSS JOIN LATERAL (SELECT {_PREFIXED} FROM voice_call_logs c WHERE {' AND '.join(call_conds)}
                                OFFSET 0) call
            WHERE {' AND '.join(conds)} ORDER BY a.call_created_at DESC, a.call_log_id DESC LIMIT $2""",
        *args,
    )

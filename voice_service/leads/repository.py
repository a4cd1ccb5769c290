"""SQL for leads: the plain CRUD through `Table`, the do-not-call aware update, the bulk import upsert, and the
writes other domains make on leads (a batch launch's upsert by phone, the analysis's do-not-call flag).

The only module that writes the leads table."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import asyncpg

from voice_service.db import fetch_one
from voice_service.repository import Table

leads = Table(
    "leads",
    [
        "id",
        "first_name",
        "last_name",
        "email",
        "phone",
        "company_name",
        "title",
        "linkedin_url",
        "stage",
        "status",
        "priority",
        "estimated_value",
        "currency",
        "custom_fields",
        "notes",
        "timezone",
        "do_not_call",
        "do_not_call_at",
        "do_not_call_reason",
        "created_at",
        "updated_at",
    ],
)


async def phone_opted_out(conn: asyncpg.Connection, tenant_id: uuid.UUID, e164: str) -> bool:
    """Whether a live lead of the tenant with this number asked not to be called (leads are unique by phone)."""
    return bool(
        await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM leads WHERE tenant_id = $1 AND phone = $2 AND deleted_at IS NULL "
            "AND do_not_call)",
            tenant_id,
            e164,
        )
    )


async def update(
    conn: asyncpg.Connection, tenant_id: uuid.UUID, lead_id: uuid.UUID, fields: Mapping[str, Any]
) -> asyncpg.Record | None:
    """Like `Table.update`; setting do_not_call true keeps an earlier do_not_call_at, false clears it."""
    if not fields:
        return await leads.get(conn, tenant_id, lead_id)
    names = list(fields.keys())
    sets = [f"{name} = ${i}" for i, name in enumerate(names, start=3)]
    if "do_not_call" in fields:
        p = names.index("do_not_call") + 3
        sets.append(f"do_not_call_at = CASE WHEN ${p}::boolean THEN COALESCE(do_not_call_at, now()) END")
    return await conn.fetchrow(
        f"UPDATE leads SET {', '.join(sets)} WHERE tenant_id = $1 AND id = $2 AND deleted_at IS NULL "
        f"RETURNING {leads.select}",
        tenant_id,
        lead_id,
        *fields.values(),
    )


# A search first tests the newest rows in order (cheap when the words are common: a page fills at once), and, when
# they do not fill a page, takes every match from the full-text index and sorts those (cheap when the words are
# rare, and never a walk through a whole tenant's leads for a word nobody has). The index is used through
# lead_search_page (sql/0061): under row-level security the planner cannot use it for `@@` directly.
SEARCH_WINDOW = 1000


async def search_page(
    conn: asyncpg.Connection,
    tenant_id: uuid.UUID,
    *,
    query: str | None,
    do_not_call: bool | None,
    limit: int,
    after: tuple[datetime, str] | None,
) -> list[asyncpg.Record]:
    """Newest first, like `leads.page`; `query` is a tsquery text (prefix terms joined with &) matched against
    `search_document`, the stored tsvector of the name, e-mail, company and phone (sql/0061)."""
    args: list[Any] = [tenant_id, limit + 1]
    conds = ["tenant_id = $1", "deleted_at IS NULL"]
    if do_not_call is not None:
        args.append(do_not_call)
        conds.append(f"do_not_call = ${len(args)}")
    if after is not None:
        args += [after[0], after[1]]
        conds.append(f"(created_at, id) < (${len(args) - 1}, ${len(args)}::uuid)")
    where = " AND ".join(conds)
    order = "ORDER BY created_at DESC, id DESC"
    if not query:
        return await conn.fetch(f"SELECT {leads.select} FROM leads WHERE {where} {order} LIMIT $2", *args)
    args.append(query)
    rows = await conn.fetch(
        f"SELECT {leads.select} FROM (SELECT {leads.select}, search_document FROM leads WHERE {where} {order} "
        f"LIMIT {SEARCH_WINDOW}) recent WHERE search_document @@ to_tsquery('simple'::regconfig, ${len(args)}) "
        f"{order} LIMIT $2",
        *args,
    )
    if len(rows) > limit:
        return rows
    return await conn.fetch(
        f"""SELECT {', '.join('l.' + c for c in leads.columns)}
            FROM lead_search_page(to_tsquery('simple'::regconfig, $2), $3, $4, $5, $6::uuid) page
            JOIN leads l ON l.tenant_id = $1 AND l.id = page.id
            ORDER BY l.created_at DESC, l.id DESC""",
        tenant_id, query, limit + 1, do_not_call, after[0] if after else None, after[1] if after else None,
    )


# The columns an import row carries, in the order of the records the importer builds.
IMPORT_COLUMNS = (
    "first_name",
    "last_name",
    "email",
    "phone",
    "company_name",
    "title",
    "linkedin_url",
    "stage",
    "status",
    "priority",
    "estimated_value",
    "currency",
    "custom_fields",
    "notes",
    "timezone",
    "do_not_call",
    "do_not_call_reason",
)

# custom_fields travels as JSON text: binary COPY would otherwise need a binary jsonb codec.
_CREATE_STAGING = """
CREATE TEMP TABLE lead_import (
    first_name text, last_name text, email text, phone text NOT NULL, company_name text, title text,
    linkedin_url text, stage text, status text, priority int, estimated_value numeric(18, 6), currency text,
    custom_fields text, notes text, timezone text, do_not_call boolean, do_not_call_reason text
) ON COMMIT DROP
"""

_PLAIN = (
    "first_name",
    "last_name",
    "email",
    "company_name",
    "title",
    "linkedin_url",
    "stage",
    "status",
    "priority",
    "estimated_value",
    "currency",
    "notes",
    "timezone",
)

# A NULL in the staging table means "not in the file": an import fills and overwrites fields, never blanks them,
# merges custom_fields key by key, and never clears do_not_call (an opt-out is withdrawn only by an explicit PATCH).
# The conflict target repeats the partial unique index's predicate so PostgreSQL can infer that index.
_UPSERT = f"""
WITH up AS (
    INSERT INTO leads AS l (tenant_id, phone, {", ".join(_PLAIN)}, custom_fields, do_not_call, do_not_call_at,
                            do_not_call_reason)
    SELECT $1, s.phone, {", ".join(f"s.{c}" for c in _PLAIN)}, COALESCE(s.custom_fields::jsonb, '{{}}'),
           COALESCE(s.do_not_call, false), CASE WHEN s.do_not_call THEN now() END,
           CASE WHEN s.do_not_call THEN s.do_not_call_reason END
    FROM lead_import s
    ON CONFLICT (tenant_id, phone) WHERE deleted_at IS NULL AND phone IS NOT NULL DO UPDATE SET
        {", ".join(f"{c} = COALESCE(EXCLUDED.{c}, l.{c})" for c in _PLAIN)},
        custom_fields = l.custom_fields || EXCLUDED.custom_fields,
        do_not_call = l.do_not_call OR EXCLUDED.do_not_call,
        do_not_call_at = CASE WHEN l.do_not_call THEN l.do_not_call_at WHEN EXCLUDED.do_not_call THEN now() END,
        do_not_call_reason = CASE WHEN EXCLUDED.do_not_call
                                  THEN COALESCE(EXCLUDED.do_not_call_reason, l.do_not_call_reason)
                                  ELSE l.do_not_call_reason END
    RETURNING (xmax = 0) AS inserted
)
SELECT count(*) FILTER (WHERE inserted) AS inserted, count(*) FILTER (WHERE NOT inserted) AS updated FROM up
"""


async def bulk_upsert(
    conn: asyncpg.Connection, tenant_id: uuid.UUID, records: Sequence[tuple[Any, ...]]
) -> tuple[int, int]:
    """Upserts by (tenant, phone); records follow IMPORT_COLUMNS, phones unique. Returns (inserted, updated)."""
    if not records:
        return 0, 0
    await conn.execute(_CREATE_STAGING)
    await conn.copy_records_to_table("lead_import", records=records, columns=IMPORT_COLUMNS)
    row = await fetch_one(conn, _UPSERT, tenant_id)
    await conn.execute("DROP TABLE lead_import")
    return row["inserted"], row["updated"]


# --- batch launches: leads from the batch's phone rows ---

# Fields given in the batch row fill or overwrite the lead's; fields not given keep the lead's values. An
# existing opt-out (do_not_call) is never cleared here.
_UPSERT_BY_PHONE = """
WITH input AS (
    SELECT * FROM unnest($3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[])
                  AS u (phone, first_name, last_name, email, company_name, timezone)
), written AS (
    INSERT INTO leads AS l (tenant_id, created_by_user_id, phone, first_name, last_name, email, company_name,
                            timezone)
    SELECT $1, $2, phone, first_name, last_name, email, company_name, timezone FROM input
    ON CONFLICT (tenant_id, phone) WHERE deleted_at IS NULL AND phone IS NOT NULL DO UPDATE SET
        first_name = COALESCE(EXCLUDED.first_name, l.first_name),
        last_name = COALESCE(EXCLUDED.last_name, l.last_name),
        email = COALESCE(EXCLUDED.email, l.email),
        company_name = COALESCE(EXCLUDED.company_name, l.company_name),
        timezone = COALESCE(EXCLUDED.timezone, l.timezone)
    -- Leads whose fields would not change are not rewritten (the common case when a list is launched again).
    WHERE (l.first_name, l.last_name, l.email, l.company_name, l.timezone) IS DISTINCT FROM
          (COALESCE(EXCLUDED.first_name, l.first_name), COALESCE(EXCLUDED.last_name, l.last_name),
           COALESCE(EXCLUDED.email, l.email), COALESCE(EXCLUDED.company_name, l.company_name),
           COALESCE(EXCLUDED.timezone, l.timezone))
    RETURNING l.id, l.phone, l.timezone, l.do_not_call, l.first_name, l.last_name, l.email, l.company_name
)
SELECT * FROM written
UNION ALL
-- The rest existed unchanged: read as of the statement's start (the INSERT above did not touch them).
SELECT l.id, l.phone, l.timezone, l.do_not_call, l.first_name, l.last_name, l.email, l.company_name
FROM input i
JOIN leads l ON l.tenant_id = $1 AND l.phone = i.phone AND l.deleted_at IS NULL
WHERE NOT EXISTS (SELECT 1 FROM written w WHERE w.phone = i.phone)
"""


async def upsert_by_phone(
    conn: asyncpg.Connection,
    tenant_id: uuid.UUID,
    user_id: uuid.UUID | None,
    columns: Sequence[Sequence[str | None]],
) -> list[asyncpg.Record]:
    """Upsert by (tenant, phone), as a batch launch does; `columns` = phones, first_names, last_names, emails,
    company_names, timezones (phones unique). Returns every lead's id, phone, timezone, do_not_call and name fields."""
    if not columns[0]:
        return []
    return await conn.fetch(_UPSERT_BY_PHONE, tenant_id, user_id, *[list(c) for c in columns])


# --- the call analysis: a lead who asked not to be called ---


async def mark_do_not_call(
    conn: asyncpg.Connection, tenant_id: uuid.UUID, lead_id: uuid.UUID, reason: str
) -> bool:
    """Set do_not_call (with its time and reason) unless it is set already; True when this call set it."""
    return (
        await conn.fetchval(
            "UPDATE leads SET do_not_call = true, do_not_call_at = now(), do_not_call_reason = $3 "
            "WHERE tenant_id = $1 AND id = $2 AND NOT do_not_call RETURNING true",
            tenant_id,
            lead_id,
            reason,
        )
        is not None
    )

"""The calls CSV export: every call log matching the list's filters, with its cost per category and its analysis,
streamed page by page (newest first) so an export of any size holds one page in memory.

Each page is read in its own short tenant transaction (keyset on created_at, id), so a long download holds no
transaction open. Free-text cells that a spreadsheet would run as a formula (starting with = + - @) are prefixed
with a quote; phone numbers and amounts are written as they are.
"""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import AsyncIterator, Mapping
from datetime import datetime
from typing import Any

import asyncpg
import msgspec

from voice_service.calls import repository as repo
from voice_service.db import tenant_tx

__all__ = ["COLUMNS", "PAGE_SIZE", "export_csv"]

PAGE_SIZE = 1000
CATEGORIES = ("telephony", "stt", "llm", "tts")
COLUMNS = (
    "id", "created_at", "direction", "status", "end_reason", "from", "to", "agent_id", "lead_id", "batch_id",
    "attempt", "provider", "answered_by", "started_at", "ended_at", "duration_seconds", "cost", "currency",
    *(f"cost_{c}" for c in CATEGORIES), "analysis_status", "summary", "sentiment", "lead_category", "success",
    "lead_extraction",
)
_FORMULA = ("=", "+", "-", "@", "\t", "\r")
_json = msgspec.json.Encoder(decimal_format="number")


def _text(value: str | None) -> str:
    if not value:
        return ""
    return "'" + value if value.startswith(_FORMULA) else value


def _when(value: datetime | None) -> str:
    return value.isoformat() if value is not None else ""


def _plain(value: Any) -> str:
    return "" if value is None else str(value)


def _row(r: asyncpg.Record) -> list[str]:
    per = r["cost_by_category"] or {}
    extraction = r["lead_extraction"]
    return [
        str(r["id"]), _when(r["created_at"]), r["direction"], r["status"], _text(r["end_reason"]),
        _plain(r["from_e164"]), _plain(r["to_e164"]), _plain(r["agent_id"]), _plain(r["lead_id"]),
        _plain(r["batch_id"]), _plain(r["attempt"]), _plain(r["provider"]), _text(r["answered_by"]),
        _when(r["started_at"]), _when(r["ended_at"]), _plain(r["duration_seconds"]), _plain(r["cost"]),
        _plain(r["currency"]), *(_plain(per.get(c)) for c in CATEGORIES), _plain(r["analysis_status"]),
        _text(r["summary"]), _text(r["sentiment"]), _text(r["lead_category"]), _plain(r["success"]),
        _text(_json.encode(extraction).decode()) if extraction else "",
    ]


async def export_csv(
    pool: asyncpg.Pool,
    tenant_id: uuid.UUID,
    filters: Mapping[str, Any],
    *,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
) -> AsyncIterator[bytes]:
    """The CSV, header first, one chunk per page of calls."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    yield buffer.getvalue().encode()
    after: tuple[datetime, uuid.UUID] | None = None
    while True:
        async with tenant_tx(pool, tenant_id) as conn:
            rows = await repo.export_page(conn, tenant_id, filters=filters, created_after=created_after,
                                          created_before=created_before, after=after, limit=PAGE_SIZE)
        if not rows:
            return
        buffer.seek(0)
        buffer.truncate()
        writer.writerows(_row(r) for r in rows)
        yield buffer.getvalue().encode()
        if len(rows) < PAGE_SIZE:
            return
        after = (rows[-1]["created_at"], rows[-1]["id"])

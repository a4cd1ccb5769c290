"""CSV exports of the call log for people and spreadsheets: one row per call, or one row per cost item of each call.

Rows stream from a server-side cursor (calls/repository.export_cursor) in chunks, so an export of a busy month never
sits in memory. Times are written in the reader's time zone with their offset (ISO 8601), money as exact decimals.
"""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, tzinfo
from typing import Any

import asyncpg

from voice_service.calls import repository as repo

__all__ = ["CALL_COLUMNS", "COST_COLUMNS", "call_rows", "cost_rows"]

CALL_COLUMNS = ("call_id", "created_at", "direction", "status", "end_reason", "from", "to", "agent_id", "agent",
                "batch_id", "lead_id", "started_at", "ended_at", "duration_seconds", "cost", "currency")
COST_COLUMNS = ("call_id", "call_created_at", "category", "provider", "model", "unit", "quantity", "unit_price",
                "cost", "currency")
_CHUNK_ROWS = 500


def _time(value: datetime | None, tz: tzinfo) -> str:
    return "" if value is None else value.astimezone(tz).isoformat(timespec="seconds")


def _cell(value: Any) -> Any:
    # A cell a spreadsheet would run as a formula is kept as text (CSV injection): names and reasons come from
    # callers and carriers.
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r") and not _numberish(value):
        return "'" + value
    return "" if value is None else value


def _numberish(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return True


async def _rows(conn: asyncpg.Connection, tenant_id: uuid.UUID, since: datetime, until: datetime, *, costs: bool,
                header: tuple[str, ...], convert: Any) -> AsyncIterator[bytes]:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(header)
    n = 0
    async for row in repo.export_cursor(conn, tenant_id, since, until, costs=costs):
        writer.writerow([_cell(v) for v in convert(row)])
        n += 1
        if n % _CHUNK_ROWS == 0:
            yield out.getvalue().encode()
            out.seek(0)
            out.truncate()
    yield out.getvalue().encode()


def call_rows(conn: asyncpg.Connection, tenant_id: uuid.UUID, since: datetime, until: datetime,
              tz: tzinfo) -> AsyncIterator[bytes]:
    """calls.csv: one row per call created in [since, until)."""
    def convert(r: asyncpg.Record) -> list[Any]:
        return [r["id"], _time(r["created_at"], tz), r["direction"], r["status"], r["end_reason"], r["from_e164"],
                r["to_e164"], r["agent_id"], r["agent_name"], r["batch_id"], r["lead_id"], _time(r["started_at"], tz),
                _time(r["ended_at"], tz), r["duration_seconds"], r["cost"], r["currency"]]

    return _rows(conn, tenant_id, since, until, costs=False, header=CALL_COLUMNS, convert=convert)


def cost_rows(conn: asyncpg.Connection, tenant_id: uuid.UUID, since: datetime, until: datetime,
              tz: tzinfo) -> AsyncIterator[bytes]:
    """costs.csv: one row per cost item (category, provider, model, unit, quantity, unit price, cost) of each call
    created in [since, until)."""
    def convert(r: asyncpg.Record) -> list[Any]:
        return [r["id"], _time(r["created_at"], tz), r["category"], r["provider"], r["model"], r["unit"],
                r["quantity"], r["unit_price"], r["cost"], r["currency"]]

    return _rows(conn, tenant_id, since, until, costs=True, header=COST_COLUMNS, convert=convert)

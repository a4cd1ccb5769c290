"""The call log as CSV, for integrations and spreadsheets. Two readers, one set of rules:

- the API's export (`GET /v1/calls/export.csv`, `export_csv`): every call matching the list's filters with its cost
  per category and its analysis, page by page (newest first, keyset on created_at, id), each page read in its own
  short tenant transaction, so a long download holds no transaction open;
- the console's billing exports (`call_rows`, `cost_rows`): one row per call, or one row per cost item, of a period,
  streamed from a server-side cursor (calls/reports_repository.export_cursor), times in the reader's time zone.

Either way an export of any size is never held in memory, and a cell a spreadsheet would run as a formula (text
starting with = + - @, a tab or a return, and not a number) is prefixed with a quote; numbers and amounts are written
as they are.
"""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import AsyncIterator, Mapping
from datetime import datetime, tzinfo
from typing import Any

import asyncpg
import msgspec

from voice_service.calls import reports_repository as reports
from voice_service.db import tenant_tx

__all__ = ["CALL_COLUMNS", "COLUMNS", "COST_COLUMNS", "PAGE_SIZE", "call_rows", "cost_rows", "export_csv"]

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


def _cell(value: Any) -> Any:
    """A value as its CSV cell: text a spreadsheet would run as a formula kept as text (CSV injection: names and
    reasons come from callers and carriers), None empty."""
    if isinstance(value, str) and value.startswith(_FORMULA) and not _numberish(value):
        return "'" + value
    return "" if value is None else value


def _numberish(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return True


def _text(value: str | None) -> str:
    return str(_cell(value or None))


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
            rows = await reports.export_page(conn, tenant_id, filters=filters, created_after=created_after,
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


# --- the console's billing exports ---

CALL_COLUMNS = ("call_id", "created_at", "direction", "status", "end_reason", "from", "to", "agent_id", "agent",
                "batch_id", "lead_id", "started_at", "ended_at", "duration_seconds", "cost", "currency")
COST_COLUMNS = ("call_id", "call_created_at", "category", "provider", "model", "unit", "quantity", "unit_price",
                "cost", "currency")
_CHUNK_ROWS = 500


def _time(value: datetime | None, tz: tzinfo) -> str:
    return "" if value is None else value.astimezone(tz).isoformat(timespec="seconds")


async def _rows(conn: asyncpg.Connection, tenant_id: uuid.UUID, since: datetime, until: datetime, *, costs: bool,
                header: tuple[str, ...], convert: Any) -> AsyncIterator[bytes]:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(header)
    n = 0
    async for row in reports.export_cursor(conn, tenant_id, since, until, costs=costs):
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

"""Calls by creation time, and the CSV export: `created_after` / `created_before` on GET /v1/calls, and
GET /v1/calls/export.csv streaming every matching call of the tenant with its cost per category and its analysis."""

from __future__ import annotations

import csv
import io
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from tests.support.pipeline import insert_call
from voice_service.calls import export


async def _calls(admin: asyncpg.Connection, tenant_id: uuid.UUID, days: list[int]) -> list[uuid.UUID]:
    base = datetime(2025, 3, 10, 12, 0, tzinfo=UTC)
    return [(await insert_call(admin, tenant_id, created_at=base + timedelta(days=d)))[0] for d in days]


async def test_created_after_and_before_filter_the_list(client: Any, tenant: Any, admin_conn: asyncpg.Connection) -> None:
    ids = await _calls(admin_conn, tenant.id, [0, 1, 2, 3])
    r = await client.get("/v1/calls", headers=tenant.headers, params={
        "created_after": "2025-03-11T12:00:00Z", "created_before": "2025-03-13T12:00:00Z"})
    assert r.status_code == 200, r.text
    assert [c["id"] for c in r.json()["items"]] == [str(ids[2]), str(ids[1])]  # newest first, end excluded
    r = await client.get("/v1/calls", headers=tenant.headers, params={"created_after": "last tuesday"})
    assert r.status_code == 400 and r.json()["field"] == "created_after"


async def test_export_streams_calls_with_costs_and_analysis(
    client: Any, make_tenant: Any, admin_conn: asyncpg.Connection, monkeypatch: Any
) -> None:
    tenant, other = await make_tenant(), await make_tenant()
    monkeypatch.setattr(export, "PAGE_SIZE", 2)  # several pages, to check the keyset paging
    ids = await _calls(admin_conn, tenant.id, [0, 1, 2, 3, 4])
    await _calls(admin_conn, other.id, [0, 1])
    breakdown = [
        {"category": "telephony", "provider": "twilio", "model": None, "unit": "minute", "quantity": "3",
         "unit_price": "0.014", "cost": "0.042"},
        {"category": "llm", "provider": "openai", "model": "gpt-4o-mini", "unit": "token", "quantity": "1000",
         "unit_price": "0.0000006", "cost": "0.0006"},
        {"category": "llm", "provider": "openai", "model": "gpt-4o-mini", "unit": "token", "quantity": "500",
         "unit_price": "0.0000006", "cost": "0.0003"},
    ]
    await admin_conn.execute(
        "UPDATE voice_call_logs SET cost = 0.0429, currency = 'USD', cost_breakdown = $2::jsonb, "
        "metadata = metadata || '{\"end_reason\": \"agent_hangup\"}' WHERE id = $1",
        ids[3], json.dumps(breakdown))
    call_created = await admin_conn.fetchval("SELECT created_at FROM voice_call_logs WHERE id = $1", ids[3])
    await admin_conn.execute(
        "INSERT INTO voice_call_analysis (tenant_id, call_log_id, call_created_at, status, summary, sentiment, "
        "lead_category, success_evaluation, lead_extraction) VALUES ($1, $2, $3, 'completed', $4, 'positive', "
        "'interested', '{\"success\": true}', '{\"budget\": 5000}')",
        tenant.id, ids[3], call_created, "=HYPERLINK(\"http://evil\") wants a demo")

    r = await client.get("/v1/calls/export.csv", headers=tenant.headers,
                         params={"created_after": "2025-03-11T00:00:00Z"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/csv")
    assert "attachment" in r.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert [row["id"] for row in rows] == [str(i) for i in reversed(ids[1:])]  # this tenant's, newest first
    billed = next(row for row in rows if row["id"] == str(ids[3]))
    assert billed["cost"] == "0.042900" and billed["currency"] == "USD"
    assert billed["cost_telephony"] == "0.042" and billed["cost_llm"] == "0.0009" and billed["cost_tts"] == ""
    assert billed["end_reason"] == "agent_hangup" and billed["status"] == "ended"
    assert (billed["analysis_status"], billed["sentiment"], billed["lead_category"], billed["success"]) == (
        "completed", "positive", "interested", "true")
    assert json.loads(billed["lead_extraction"]) == {"budget": 5000}
    assert billed["summary"].startswith("'=HYPERLINK")  # a spreadsheet shows it, never runs it
    assert billed["to"] == "+14155550100"  # phone numbers are left as they are

    assert (await client.get("/v1/calls/export.csv")).status_code == 401
    bad = await client.get("/v1/calls/export.csv", params={"statsu": "ended"}, headers=tenant.headers)
    assert bad.status_code == 400 and bad.json()["field"] == "statsu"
    declined = await client.get("/v1/calls/export.csv", params={"status": "declined"}, headers=tenant.headers)
    assert declined.text.strip().splitlines() == [",".join(export.COLUMNS)]

"""The console's billing pages over HTTP: wallet, reservations and ledger, usage events, the price catalog, and the
CSV exports of calls and costs (the user's days and zone, exact money, only the tenant's own calls)."""

from __future__ import annotations

import csv
import io
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import msgspec

from tests.support.console import fund, signed_in, text_of


async def _call(admin: asyncpg.Connection, tenant_id: uuid.UUID, created_at: datetime, *, cost: str,
                breakdown: list[dict[str, Any]], to: str = "+14155550123", reason: str | None = None) -> uuid.UUID:
    return await admin.fetchval(  # type: ignore[no-any-return]
        """INSERT INTO voice_call_logs (id, tenant_id, created_at, status, direction, provider, started_at, ended_at,
               duration_seconds, to_e164, from_e164, cost, currency, cost_breakdown, metadata)
           VALUES (uuid_v7($2), $1, $2, 'ended', 'outbound', 'twilio', $2, $2 + interval '65 seconds', 65, $3,
                   '+14155550100', $4::numeric, 'USD', $5::jsonb, $6::jsonb) RETURNING id""",
        tenant_id, created_at, to, cost, msgspec.json.encode(breakdown).decode(),
        msgspec.json.encode({"end_reason": reason} if reason else {}).decode())


async def test_wallet_ledger_usage_and_prices(console: Any, tenant: Any, pg_dsn: str,
                                              admin_conn: asyncpg.Connection) -> None:
    c = await signed_in(console, tenant.key)
    empty = await c.http.get("/console/billing")
    assert "No ledger transactions yet" in empty.text
    await fund(pg_dsn, tenant.id, "12.5")
    page = await c.http.get("/console/billing")
    html = page.text
    assert re.search(r'data-figure="available">\s*12.50 USD', html)
    assert "topup" in html and "12.500000 USD" in html
    await admin_conn.execute(
        """INSERT INTO billing_usage_events (tenant_id, feature_key, total_cost, currency, status, idempotency_key,
                                             usage_items, metadata)
           VALUES ($1, 'voice-agent', 0.0421, 'USD', 'charged', $2,
                   '[{"category": "telephony", "provider": "twilio"}, {"category": "llm", "provider": "openai",
                     "model": "gpt-4o-mini"}]', jsonb_build_object('call_id', $3::text))""",
        tenant.id, f"t:{uuid.uuid4()}", str(uuid.uuid4()))
    usage = await c.http.get("/console/billing/usage")
    reading = text_of(usage.text)
    assert "0.042100 USD" in reading and "telephony twilio, llm openai gpt-4o-mini" in reading
    assert "No usage events of this kind" in (await c.http.get("/console/billing/usage",
                                                                params={"feature": "voice-agent-analysis"})).text
    r = await c.http.get("/console/billing/usage", params={"feature": "beer"})
    assert r.status_code == 422 and "Kind: choose calls or analyses" in r.text
    prices = await c.http.get("/console/billing/prices", params={"category": "stt"})
    assert prices.status_code == 200 and "deepgram" in prices.text and "list price" in prices.text
    assert "openai" not in prices.text


async def test_exports_of_calls_and_costs(console: Any, make_tenant: Any, admin_conn: asyncpg.Connection) -> None:
    tenant, other = await make_tenant(), await make_tenant()
    # 2024-03-10 23:30 in Los Angeles (06:30 UTC the next day); 2024-03-12 10:00 UTC is after the range.
    inside = datetime(2024, 3, 11, 6, 30, tzinfo=UTC)
    items = [{"category": "telephony", "provider": "twilio", "model": None, "unit": "minute", "quantity": "2",
              "unit_price": "0.0140", "cost": "0.028000"},
             {"category": "llm", "provider": "openai", "model": "gpt-4o-mini", "unit": "token", "quantity": "1200",
              "unit_price": "0.00000015", "cost": "0.000180"}]
    first = await _call(admin_conn, tenant.id, inside, cost="0.028180", breakdown=items, reason="=HYPERLINK(\"x\")")
    await _call(admin_conn, tenant.id, inside + timedelta(days=2), cost="1", breakdown=[])
    await _call(admin_conn, other.id, inside, cost="9", breakdown=items)
    c = await signed_in(console, tenant.key)
    c.http.cookies.set("console_tz", "America/Los_Angeles", domain="console.test", path="/console")
    form = await c.http.get("/console/billing/export")
    assert form.status_code == 200 and 'action="/console/billing/export/calls.csv"' in form.text

    r = await c.http.get("/console/billing/export/calls.csv", params={"from": "2024-03-10", "to": "2024-03-10"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert 'filename="calls-2024-03-10-to-2024-03-10.csv"' in r.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert [row["call_id"] for row in rows] == [str(first)]
    assert rows[0]["created_at"] == "2024-03-10T23:30:00-07:00" and rows[0]["cost"] == "0.028180"
    assert rows[0]["duration_seconds"] == "65" and rows[0]["to"] == "+14155550123"
    assert rows[0]["end_reason"] == "'=HYPERLINK(\"x\")"  # kept as text, never a formula

    r = await c.http.get("/console/billing/export/costs.csv", params={"from": "2024-03-10", "to": "2024-03-10"})
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert [(x["category"], x["provider"], x["model"], x["quantity"], x["unit_price"], x["cost"]) for x in rows] == [
        ("telephony", "twilio", "", "2", "0.0140", "0.028000"),
        ("llm", "openai", "gpt-4o-mini", "1200", "0.00000015", "0.000180")]
    assert {x["call_id"] for x in rows} == {str(first)}
    r = await c.http.get("/console/billing/export/calls.csv", params={"from": "2024-03-12", "to": "2024-03-01"})
    assert r.status_code == 422 and "To: choose a day on or after the first day" in r.text
    r = await c.http.get("/console/billing/export/calls.csv", params={"from": "yesterday"})
    assert r.status_code == 422 and "From: enter a day as YYYY-MM-DD" in r.text
    assert (await c.http.get("/console/billing/export/secrets.csv")).status_code == 404

"""Prices are the platform's: a tenant key of any role reads its prices but cannot change them (issue #15 §1).

The attack: a tenant admin posted `unit_price: 0`, back-dated, for every catalog row, and a batch refused with
402 went through with an empty wallet. Now the tenant routes refuse every write, the platform (PLATFORM_ADMIN_TOKEN)
sets global and per-tenant prices, never in the past, and a correction opens a new row from now on; the database
refuses the same things to the app role, whatever the HTTP layer does.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg
import msgspec
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from voice_service.app import create_app
from voice_service.billing import wallet
from voice_service.composition import open_runtime
from voice_service.db import system_tx, tenant_tx
from voice_service.runtime import Runtime
from voice_service.settings import Settings

TOKEN = "platform-pricing-test-token-0123456789"
PLATFORM = {"Authorization": f"Bearer {TOKEN}"}
FREE = {"unit_price": "0", "effective_from": "2024-01-01T00:00:00Z"}


@pytest.fixture(scope="module")
async def runtime(settings: Settings) -> AsyncIterator[Runtime]:
    async with open_runtime(settings) as rt:
        yield rt


@pytest.fixture(scope="module")
async def api(settings: Settings) -> AsyncIterator[AsyncTestClient[Litestar]]:
    app = create_app(msgspec.structs.replace(settings, platform_admin_token=TOKEN), bootstrap=False)
    async with AsyncTestClient(app=app, base_url="http://testserver.local") as c:
        yield c


async def _key(api: Any, tenant: Any, role: str) -> dict[str, str]:
    r = await api.post("/v1/api-keys", json={"name": role, "role": role}, headers=tenant.headers)
    assert r.status_code == 201, r.text
    return {"Authorization": f"Bearer {r.json()['key']}"}


def _problem(r: Any, status: int, field: str | None = None) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = r.json()
    if field is not None:
        assert field in [e.get("field") for e in body.get("errors", [])], body
    return body


async def _estimate(runtime: Runtime, tenant_id: uuid.UUID) -> Decimal:
    async with tenant_tx(runtime.pool, tenant_id) as conn:
        return await wallet.estimate_call_cost(conn, tenant_id, "twilio", 200, minutes=2)


async def test_a_tenant_key_of_any_role_cannot_make_its_usage_free(
    api: Any, tenant: Any, runtime: Runtime
) -> None:
    before = await _estimate(runtime, tenant.id)
    assert before > 0
    catalog = (await api.get("/v1/billing/pricing", headers=tenant.headers)).json()["items"]
    assert catalog, "tenants read their prices"
    keys = {"owner": tenant.headers, **{role: await _key(api, tenant, role) for role in ("admin", "member")}}
    for role, headers in keys.items():
        for row in catalog:
            body = {k: row[k] for k in ("category", "provider", "unit")} | FREE
            if row["model"]:
                body["model"] = row["model"]
            r = await api.post("/v1/billing/pricing", json=body, headers=headers)
            assert r.status_code == 403, (role, r.text)
        for row in catalog:
            assert (await api.delete(f"/v1/billing/pricing/{row['id']}", headers=headers)).status_code == 403
    # Nothing the tenant pays changed.
    assert await _estimate(runtime, tenant.id) == before
    assert (await api.get("/v1/billing/pricing", headers=tenant.headers)).json()["items"] == catalog
    # A 200-call batch is still refused with the wallet at 0.
    agent = (await api.post("/v1/agents", json={"name": "A"}, headers=tenant.headers)).json()
    number = await api.post("/v1/numbers", json={"phone_number": f"+1629{2_000_000 + uuid.uuid4().int % 8_000_000}",
                                                 "provider": "twilio"}, headers=tenant.headers)
    assert number.status_code == 201, number.text
    entries = [{"phone": f"+1646555{i:04d}"} for i in range(200)]
    r = await api.post("/v1/batches", json={"agent_id": agent["id"], "from_number_id": number.json()["id"],
                                            "entries": entries}, headers=tenant.headers)
    _problem(r, 402)


async def test_the_app_role_cannot_write_the_catalog(runtime: Runtime, tenant: Any) -> None:
    """Defence in depth: even SQL run by the service's own database role (a request's transaction, or none)
    cannot insert, change or delete a price row; only the platform's function writes, and never in the past."""
    async with runtime.pool.acquire() as conn:
        for sql in (
            "INSERT INTO billing_pricing_catalog (tenant_id, category, provider, unit, unit_price, effective_from) "
            "VALUES ($1, 'telephony', 'twilio', 'minute', 0, '2024-01-01')",
            "UPDATE billing_pricing_catalog SET unit_price = 0 WHERE tenant_id IS NULL OR tenant_id = $1",
            "DELETE FROM billing_pricing_catalog WHERE tenant_id IS NULL OR tenant_id = $1",
        ):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                async with tenant_tx(runtime.pool, tenant.id) as tx:
                    await tx.execute(sql, tenant.id)
        # The platform's function refuses to run inside a tenant's transaction...
        with pytest.raises(asyncpg.RaiseError, match="platform"):
            async with tenant_tx(runtime.pool, tenant.id) as tx:
                await tx.fetchval(
                    "SELECT id FROM catalog_add_price($1, 'telephony', 'twilio', NULL, 'minute', 0, NULL, now(), NULL, '{}')",
                    tenant.id,
                )
        # ... and refuses a price that would take effect in the past, wherever it runs.
        with pytest.raises(asyncpg.RaiseError, match="past"):
            async with conn.transaction():
                await conn.fetchval(
                    "SELECT id FROM catalog_add_price($1, 'telephony', 'twilio', NULL, 'minute', 0, NULL, "
                    "now() - interval '1 day', NULL, '{}')",
                    tenant.id,
                )


async def test_the_platform_sets_tenant_and_global_prices_from_now_on(
    api: Any, make_tenant: Any, runtime: Runtime, admin_conn: asyncpg.Connection
) -> None:
    a, b = await make_tenant(), await make_tenant()
    body = {"category": "telephony", "provider": "twilio", "unit": "minute", "unit_price": "0.0095",
            "metadata": {"direction": "outbound", "increment_seconds": 6, "minimum_seconds": 6},
            "description": "negotiated rate"}
    # The platform token, not a tenant key.
    assert (await api.post("/v1/billing/admin/pricing", json={**body, "tenant_id": str(a.id)},
                           headers=a.headers)).status_code == 401
    # Back-dated: refused, naming the field.
    _problem(await api.post("/v1/billing/admin/pricing",
                            json={**body, "tenant_id": str(a.id), "effective_from": "2024-01-01T00:00:00Z"},
                            headers=PLATFORM), 422, "effective_from")
    _problem(await api.post("/v1/billing/admin/pricing", json={**body, "tenant_id": str(uuid.uuid4())},
                            headers=PLATFORM), 404, "tenant_id")
    r = await api.post("/v1/billing/admin/pricing", json={**body, "tenant_id": str(a.id)}, headers=PLATFORM)
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["scope"] == "tenant" and created["unit_price"] == "0.0095"
    assert datetime.fromisoformat(created["effective_from"]) >= datetime.now(UTC) - timedelta(minutes=1)
    # Tenant a reads it; tenant b does not see it.
    a_rows = (await api.get("/v1/billing/pricing", params={"provider": "twilio"}, headers=a.headers)).json()
    assert created["id"] in [p["id"] for p in a_rows["items"]]
    b_rows = (await api.get("/v1/billing/pricing", params={"provider": "twilio"}, headers=b.headers)).json()
    assert created["id"] not in [p["id"] for p in b_rows["items"]]

    # A correction opens a new row from now on and closes the old one there: what was billed keeps its price.
    r = await api.post("/v1/billing/admin/pricing", json={**body, "tenant_id": str(a.id), "unit_price": "0.009"},
                       headers=PLATFORM)
    assert r.status_code == 201, r.text
    corrected = r.json()
    old = await admin_conn.fetchrow("SELECT effective_from, effective_to FROM billing_pricing_catalog WHERE id = $1",
                                    uuid.UUID(created["id"]))
    assert old["effective_to"] == datetime.fromisoformat(corrected["effective_from"])
    assert old["effective_from"] <= old["effective_to"]

    # Ending a price: from now on; it stays for what happened before.
    r = await api.delete(f"/v1/billing/admin/pricing/{corrected['id']}", headers=PLATFORM)
    assert r.status_code == 204, r.text
    ended = await admin_conn.fetchrow("SELECT is_active, effective_to FROM billing_pricing_catalog WHERE id = $1",
                                      uuid.UUID(corrected["id"]))
    assert ended["is_active"] and ended["effective_to"] is not None
    assert (await api.delete(f"/v1/billing/admin/pricing/{uuid.uuid4()}", headers=PLATFORM)).status_code == 404

    # A scheduled global price (no tenant_id), effective tomorrow: every tenant sees it coming.
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    global_body = {"category": "stt", "provider": "deepgram", "model": f"nova-test-{uuid.uuid4().hex[:6]}",
                   "unit": "minute", "unit_price": "0.0041", "effective_from": tomorrow}
    r = await api.post("/v1/billing/admin/pricing", json=global_body, headers=PLATFORM)
    assert r.status_code == 201, r.text
    scheduled = r.json()
    assert scheduled["scope"] == "global"
    seen = (await api.get("/v1/billing/pricing", params={"provider": "deepgram", "include_inactive": "true"},
                          headers=b.headers)).json()["items"]
    assert scheduled["id"] in [p["id"] for p in seen]
    # Ending a price that never took effect withdraws it.
    assert (await api.delete(f"/v1/billing/admin/pricing/{scheduled['id']}", headers=PLATFORM)).status_code == 204
    assert await admin_conn.fetchval("SELECT is_active FROM billing_pricing_catalog WHERE id = $1",
                                     uuid.UUID(scheduled["id"])) is False
    async with system_tx(runtime.pool) as conn:
        await conn.execute("SELECT 1")  # the platform's writes left the pool usable


async def test_the_platform_price_api_is_off_without_its_token(client: Any, tenant: Any) -> None:
    body = {"category": "stt", "provider": "deepgram", "unit": "minute", "unit_price": "0.001"}
    _problem(await client.post("/v1/billing/admin/pricing", json=body, headers=tenant.headers), 403)

"""Billing API: pricing catalog and tenant overrides, wallet, ledger, top-ups (platform admin API, CLI, demo
credit), batch reservations refused with 402, cost estimates."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import asyncpg
import msgspec
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from voice_service.app import create_app
from voice_service.billing import wallet
from voice_service.composition import AFTER_BOOTSTRAP
from voice_service.db import tenant_tx
from voice_service.errors import PaymentRequired
from voice_service.runtime import Runtime
from voice_service.settings import Settings

ADMIN_TOKEN = "platform-admin-test-token-0123456789"


@pytest.fixture(scope="module")
async def admin_client(settings: Settings) -> AsyncIterator[AsyncTestClient[Litestar]]:
    app = create_app(msgspec.structs.replace(settings, platform_admin_token=ADMIN_TOKEN), bootstrap=False)
    async with AsyncTestClient(app=app, base_url="http://testserver.local") as c:
        yield c


async def _key(client: Any, tenant: Any, role: str) -> dict[str, str]:
    r = await client.post(
        "/v1/api-keys",
        json={"name": role, "role": role, "user_email": f"{role}-{uuid.uuid4().hex[:6]}@example.com"},
        headers=tenant.headers,
    )
    assert r.status_code == 201, r.text
    return {"Authorization": f"Bearer {r.json()['key']}"}


async def test_pricing_lists_global_rows_and_tenant_overrides(
    admin_client: Any, client: Any, make_tenant: Any
) -> None:
    a, b = await make_tenant(), await make_tenant()
    r = await client.get("/v1/billing/pricing", params={"provider": "twilio"}, headers=a.headers)
    assert r.status_code == 200
    globals_ = r.json()["items"]
    assert {p["scope"] for p in globals_} == {"global"}
    outbound = next(p for p in globals_ if p["metadata"].get("direction") == "outbound")
    assert outbound["unit_price"] == "0.014" and "twilio.com" in outbound["description"]

    # The platform sets a tenant's negotiated rate (tenants cannot: test_platform_pricing.py).
    platform = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    r = await admin_client.post(
        "/v1/billing/admin/pricing",
        json={
            "tenant_id": str(a.id),
            "category": "telephony",
            "provider": "twilio",
            "unit": "minute",
            "unit_price": "0.0095",
            "metadata": {"direction": "outbound", "increment_seconds": 6, "minimum_seconds": 6},
            "description": "negotiated rate",
        },
        headers=platform,
    )
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["scope"] == "tenant" and created["unit_price"] == "0.0095" and created["tenant_id"] == str(a.id)
    # Exact decimals survive a JSON number too (no float on the way).
    r = await admin_client.post(
        "/v1/billing/admin/pricing",
        json={
            "tenant_id": str(a.id),
            "category": "llm",
            "provider": "openai",
            "model": "gpt-4o-mini",
            "unit": "token",
            "unit_price": 0.00000011,
            "metadata": {"direction": "input"},
        },
        headers=platform,
    )
    assert r.json()["unit_price"] == "0.00000011"

    a_rows = (
        await client.get("/v1/billing/pricing", params={"provider": "twilio"}, headers=a.headers)
    ).json()
    assert created["id"] in [p["id"] for p in a_rows["items"]]
    b_rows = (
        await client.get("/v1/billing/pricing", params={"provider": "twilio"}, headers=b.headers)
    ).json()
    assert created["id"] not in [p["id"] for p in b_rows["items"]]
    listed = (await admin_client.get("/v1/billing/admin/pricing", params={"tenant_id": str(a.id),
                                                                          "provider": "twilio"},
                                     headers=platform)).json()
    assert created["id"] in [p["id"] for p in listed]

    assert (await admin_client.delete(f"/v1/billing/admin/pricing/{created['id']}", headers=platform)).status_code == 204
    a_rows = (
        await client.get("/v1/billing/pricing", params={"provider": "twilio"}, headers=a.headers)
    ).json()
    assert created["id"] not in [p["id"] for p in a_rows["items"]]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"category": "telephony", "provider": "twilio", "unit": "minute", "unit_price": "-1"}, "unit_price"),
        (
            {
                "category": "telephony",
                "provider": "twilio",
                "unit": "minute",
                "unit_price": "0.1",
                "effective_from": "2099-02-01T00:00:00Z",
                "effective_to": "2099-01-01T00:00:00Z",
            },
            "effective_to",
        ),
        (
            {
                "category": "telephony",
                "provider": "twilio",
                "unit": "minute",
                "unit_price": "0.1",
                "effective_from": "2025-02-01T00:00:00Z",
            },
            "effective_from",
        ),
        ({"category": "phone", "provider": "twilio", "unit": "minute", "unit_price": "0.1"}, "category"),
        (
            {
                "category": "llm",
                "provider": "openai",
                "unit": "token",
                "unit_price": "0.1",
                "metadata": {"direction": "sideways"},
            },
            "metadata.direction",
        ),
    ],
)
async def test_invalid_prices_name_the_field(admin_client: Any, body: dict[str, Any], field: str) -> None:
    r = await admin_client.post(
        "/v1/billing/admin/pricing", json=body, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
    )
    assert r.status_code in (400, 422), r.text
    assert r.json()["errors"][0]["field"] == field


async def test_no_tenant_key_changes_prices(client: Any, tenant: Any) -> None:
    body = {
        "category": "stt",
        "provider": "deepgram",
        "model": "nova-3",
        "unit": "minute",
        "unit_price": "0.001",
    }
    for role in ("admin", "member"):
        key = await _key(client, tenant, role)
        assert (await client.post("/v1/billing/pricing", json=body, headers=key)).status_code == 403
        assert (await client.get("/v1/billing/pricing", headers=key)).status_code == 200
        assert (await client.get("/v1/billing/wallet", headers=key)).status_code == 200
    assert (await client.post("/v1/billing/pricing", json=body, headers=tenant.headers)).status_code == 403


async def test_platform_admin_topup(admin_client: Any, client: Any, tenant: Any) -> None:
    auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    body = {
        "tenant_id": str(tenant.id),
        "amount": "12.50",
        "idempotency_key": "pi_123",
        "description": "card",
    }
    r = await admin_client.post("/v1/billing/admin/topups", json=body, headers=auth)
    assert r.status_code == 200, r.text
    assert r.json()["created"] is True and r.json()["current_balance"] == "12.500000"
    assert r.json()["transaction"]["transaction_type"] == "topup"
    # The billing system retries: the same payment credits once.
    r = await admin_client.post("/v1/billing/admin/topups", json=body, headers=auth)
    assert r.json()["created"] is False and r.json()["current_balance"] == "12.500000"

    wallet_now = (await client.get("/v1/billing/wallet", headers=tenant.headers)).json()
    assert (wallet_now["current_balance"], wallet_now["available_balance"]) == ("12.500000", "12.500000")
    ledger = (await client.get("/v1/billing/ledger", headers=tenant.headers)).json()["items"]
    assert [(x["amount"], x["balance_before"], x["balance_after"]) for x in ledger] == [
        ("12.500000", "0.000000", "12.500000")
    ]

    # A tenant API key is not the platform token; a wrong token is refused; the API is off without the setting.
    assert (
        await admin_client.post("/v1/billing/admin/topups", json=body, headers=tenant.headers)
    ).status_code == 401
    assert (
        await admin_client.post(
            "/v1/billing/admin/topups", json=body, headers={"Authorization": "Bearer nope"}
        )
    ).status_code == 401
    assert (await client.post("/v1/billing/admin/topups", json=body, headers=auth)).status_code == 403
    r = await admin_client.post(
        "/v1/billing/admin/topups", json={**body, "tenant_id": str(uuid.uuid4())}, headers=auth
    )
    assert r.status_code == 404
    r = await admin_client.post(
        "/v1/billing/admin/topups", json={**body, "amount": "0", "idempotency_key": "x"}, headers=auth
    )
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "amount"


async def test_batch_refused_with_402_when_the_wallet_cannot_cover_it(
    client: Any, tenant: Any, runtime: Runtime, admin_conn: asyncpg.Connection
) -> None:
    agent = (await client.post("/v1/agents", json={"name": "Sales"}, headers=tenant.headers)).json()
    number = await client.post(
        "/v1/numbers",
        json={"phone_number": f"+14152{uuid.uuid4().int % 1_000_000:06d}", "provider": "twilio"},
        headers=tenant.headers,
    )
    assert number.status_code == 201, number.text
    entries = [{"phone": f"+1646555{i:04d}"} for i in range(50)]
    body = {"agent_id": agent["id"], "from_number_id": number.json()["id"], "entries": entries}

    async with tenant_tx(runtime.pool, tenant.id) as conn:
        estimate = await wallet.estimate_call_cost(conn, tenant.id, "twilio", 50, minutes=2)
    assert estimate > 0
    r = await client.post("/v1/batches", json=body, headers=tenant.headers)
    assert r.status_code == 402, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    problem = r.json()
    assert problem["errors"][0]["available"] == "0.000000" and Decimal(problem["errors"][0]["shortfall"]) > 0
    assert "top up" in problem["detail"]
    assert (
        await admin_conn.fetchval("SELECT count(*) FROM voice_call_batches WHERE tenant_id = $1", tenant.id)
        == 0
    )

    async with tenant_tx(runtime.pool, tenant.id) as conn:
        await wallet.topup(
            conn, tenant.id, Decimal(problem["errors"][0]["required"]) + 1, idempotency_key="test:enough"
        )
    r = await client.post("/v1/batches", json=body, headers=tenant.headers)
    assert r.status_code == 201, r.text
    w = (await client.get("/v1/billing/wallet", headers=tenant.headers)).json()
    [reservation] = w["reservations"]
    assert reservation["batch_id"] == r.json()["id"] and w["available_balance"] == "1.000000"


async def test_reserve_directly(runtime: Runtime, tenant: Any, admin_conn: asyncpg.Connection) -> None:
    agent = await admin_conn.fetchval(
        "INSERT INTO voice_agents (tenant_id, name) VALUES ($1, 'a') RETURNING id", tenant.id
    )
    batch = await admin_conn.fetchval(
        "INSERT INTO voice_call_batches (tenant_id, agent_id) VALUES ($1, $2) RETURNING id", tenant.id, agent
    )
    async with tenant_tx(runtime.pool, tenant.id) as conn:
        await wallet.topup(conn, tenant.id, Decimal("1"), idempotency_key="test:one")
        with pytest.raises(PaymentRequired) as exc:
            await wallet.reserve_for_batch(conn, tenant_id=tenant.id, batch_id=batch, amount=Decimal("1.5"))
        assert exc.value.errors[0]["shortfall"] == "0.500000"
        # With enforcement off (bill afterwards) the reservation is taken anyway.
        await wallet.reserve_for_batch(
            conn, tenant_id=tenant.id, batch_id=batch, amount=Decimal("1.5"), enforce=False
        )
    row = await admin_conn.fetchrow(
        "SELECT current_balance, reserved_balance FROM billing_wallets WHERE tenant_id = $1", tenant.id
    )
    assert (row["current_balance"], row["reserved_balance"]) == (Decimal("1"), Decimal("1.5"))


async def test_estimate_scales_with_calls_and_minutes(runtime: Runtime, tenant: Any) -> None:
    async with tenant_tx(runtime.pool, tenant.id) as conn:
        one = await wallet.estimate_call_cost(conn, tenant.id, "twilio", 1, minutes=2)
        ten = await wallet.estimate_call_cost(conn, tenant.id, "twilio", 10, minutes=2)
        free = await wallet.estimate_call_cost(conn, tenant.id, "simulator", 1, minutes=2)
    assert ten == one * 10
    # Twilio's list price for 2 minutes (0.028) is part of it; the simulator's telephony is free.
    assert one - free == Decimal("0.028000")


async def test_demo_credit_for_the_bootstrap_tenant(
    tenant: Any, settings: Settings, pg_dsn: str, admin_conn: asyncpg.Connection
) -> None:
    assert wallet.give_demo_credit in AFTER_BOOTSTRAP
    # As bootstrap runs it: on a plain connection of the migrating user.
    conn = await asyncpg.connect(pg_dsn)
    try:
        await wallet.give_demo_credit(conn, tenant.id, settings)
        await wallet.give_demo_credit(conn, tenant.id, settings)
    finally:
        await conn.close()
    assert await admin_conn.fetchval(
        "SELECT current_balance FROM billing_wallets WHERE tenant_id = $1", tenant.id
    ) == Decimal(settings.demo_credit)


def test_topup_cli(pg_dsn: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import asyncio

    from voice_service import cli
    from voice_service.tenancy.service import create_tenant

    async def make() -> uuid.UUID:
        conn = await asyncpg.connect(pg_dsn)
        try:
            return (await create_tenant(conn, f"cli-{uuid.uuid4().hex[:8]}"))[0]
        finally:
            await conn.close()

    tenant_id = asyncio.run(make())
    monkeypatch.setenv("DATABASE_URL", pg_dsn)
    assert cli.main(["topup", str(tenant_id), "7.25", "--idempotency-key", "inv-1"]) == 0
    assert "balance 0.000000 -> 7.250000" in capsys.readouterr().out
    assert cli.main(["topup", str(tenant_id), "7.25", "--idempotency-key", "inv-1"]) == 0
    out = capsys.readouterr().out
    assert "(already posted)" in out and "0.000000 -> 7.250000" in out
    assert cli.main(["topup", str(uuid.uuid4()), "1"]) == 2
    assert cli.main(["topup", str(tenant_id), "-3"]) == 2

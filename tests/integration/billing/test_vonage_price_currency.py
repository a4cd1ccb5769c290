"""A Vonage `completed` event carries the call's `price` and `rate` in the account's currency, which it does not name:
VONAGE_ACCOUNT_CURRENCY says which. The carrier's price is never dropped: in the bill's currency it is reconciled into
the breakdown (an adjustment item); in another it is kept beside the estimate, in its own currency, and the call is
flagged (`carrier_price.reconciled: false` with the reason) on the call, its cost event and its usage event."""

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

from providers.telephony.vonage import account_currency
from tests.support.pipeline import NoLlm, drop_jobs
from voice_service import composition
from voice_service.app import create_app
from voice_service.billing import pipeline
from voice_service.billing.pipeline import POST_CALL_JOB, RECONCILE_JOB
from voice_service.call_analysis.service import ANALYSIS_JOB
from voice_service.calls import service
from voice_service.calls.schemas import CallRef
from voice_service.composition import open_runtime
from voice_service.db import tenant_tx
from voice_service.runtime import Runtime
from voice_service.settings import Settings
from voice_service.simulator.signing import vonage_signed_jwt

SECRET = "vonage-signature-secret-for-the-currency-tests-0123"
_json = msgspec.json.Encoder()
_dec = msgspec.json.Decoder()


@pytest.fixture(scope="module", params=["EUR", "USD"])
async def vonage_app(request: Any, settings: Settings) -> AsyncIterator[tuple[str, AsyncTestClient[Litestar]]]:
    app = create_app(
        msgspec.structs.replace(
            settings, vonage_signature_secret=SECRET, vonage_account_currency=request.param.lower()
        ),
        bootstrap=False,
    )
    async with AsyncTestClient(app=app, base_url="http://testserver.local") as client:
        yield request.param, client


@pytest.fixture(scope="module")
async def runtime(settings: Settings) -> AsyncIterator[Runtime]:
    """The test's own runtime (the app's lives on the test client's loop)."""
    async with open_runtime(settings) as rt:
        rt.analysis_llm = NoLlm()
        yield rt


@pytest.fixture(autouse=True)
async def _no_leftover_jobs(admin_conn: asyncpg.Connection) -> AsyncIterator[None]:
    yield
    await drop_jobs(admin_conn, POST_CALL_JOB, ANALYSIS_JOB, RECONCILE_JOB, "events.deliver")


async def _event(client: Any, payload: dict[str, Any]) -> None:
    body = _json.encode(payload)
    token = vonage_signed_jwt(SECRET, body, api_key="key")
    r = await client.post(
        "/v1/telephony/vonage/events",
        content=body,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    assert r.status_code == 204, r.text


async def _vonage_call(runtime: Runtime, tenant: Any) -> tuple[CallRef, str]:
    call_uuid = str(uuid.uuid4())
    async with tenant_tx(runtime.pool, tenant.id) as conn:
        ref = await service.create_call(
            conn,
            listeners=composition.call_listeners(),
            tenant_id=tenant.id,
            initiated_by_user_id=None,
            agent_id=None,
            from_number={"id": None, "e164": "+442079400000", "provider": "vonage"},
            to_e164="+14155550123",
            lead_id=None,
            voice_id=None,
            variables={},
            provider_call_id=call_uuid,
        )
    return ref, call_uuid


async def _price_telephony(admin_conn: asyncpg.Connection, tenant: Any) -> None:
    """A known tenant price for Vonage outbound minutes (the estimate the carrier's price is set against), in force
    since before the call (set up as the table's owner: the API takes no back-dated price, rightly)."""
    await admin_conn.execute(
        "INSERT INTO billing_pricing_catalog (tenant_id, category, provider, unit, unit_price, effective_from, "
        "metadata) VALUES ($1, 'telephony', 'vonage', 'minute', 0.0150, '2020-01-01T00:00:00Z', $2::jsonb)",
        tenant.id,
        '{"direction": "outbound"}',
    )


async def test_a_completed_event_price_is_reconciled_or_kept_and_flagged(
    vonage_app: tuple[str, Any], runtime: Runtime, tenant: Any, admin_conn: asyncpg.Connection
) -> None:
    currency, client = vonage_app
    await _price_telephony(admin_conn, tenant)
    ref, call_uuid = await _vonage_call(runtime, tenant)
    await _event(client, {"status": "answered", "uuid": call_uuid, "timestamp": "2025-06-01T12:00:00.000Z"})
    await _event(client, {
        "status": "completed", "uuid": call_uuid, "duration": "125", "rate": "0.01270000", "price": "0.03810000",
        "start_time": "2025-06-01T12:00:00.000Z", "end_time": "2025-06-01T12:02:05.000Z",
        "timestamp": "2025-06-01T12:02:05.000Z", "direction": "outbound",
    })
    async with tenant_tx(runtime.pool, tenant.id) as conn:
        billed = await pipeline.finalize_call(
            conn, listeners=runtime.billing_listeners, tenant_id=tenant.id, call_id=ref.id,
            call_created_at=ref.created_at,
        )
    assert billed is not None

    call = (await client.get(f"/v1/calls/{ref.id}", headers=tenant.headers)).json()
    telephony = [i for i in call["cost_breakdown"] if i["category"] == "telephony"]
    estimate = Decimal("0.0150") * 3  # 125 s: three started minutes
    event = await admin_conn.fetchrow(
        "SELECT payload FROM domain_events WHERE tenant_id = $1 AND aggregate_id = $2 "
        "AND event_type = 'voice_call.cost_recorded'",
        tenant.id,
        ref.id,
    )
    usage = await admin_conn.fetchval(
        "SELECT metadata FROM billing_usage_events WHERE tenant_id = $1 AND idempotency_key = $2",
        tenant.id,
        f"voice_call:{ref.id}",
    )
    shown = call["carrier_price"]
    assert (Decimal(shown["amount"]), shown["currency"]) == (Decimal("0.0381"), currency)
    assert _dec.decode(event["payload"])["carrier_price"] == shown == _dec.decode(usage)["carrier_price"]
    if currency == "USD":
        # Same currency as the bill: the carrier's figure replaces the estimate (an adjustment item).
        assert shown["reconciled"] is True and shown.get("reason") is None
        assert [i["unit"] for i in telephony] == ["minute", "adjustment"]
        assert sum(Decimal(i["cost"]) for i in telephony) == Decimal("0.0381")
        assert Decimal(call["cost"]) == Decimal("0.0381")
    else:
        # Another currency: the bill stays the estimate, the carrier's price is kept beside it, and flagged.
        assert shown["reconciled"] is False and "EUR" in shown["reason"] and "USD" in shown["reason"]
        assert [i["unit"] for i in telephony] == ["minute"] and Decimal(telephony[0]["cost"]) == estimate
        assert Decimal(call["cost"]) == estimate and call["currency"] == "USD"


async def test_a_late_price_in_another_currency_is_flagged_too(
    vonage_app: tuple[str, Any], runtime: Runtime, tenant: Any, admin_conn: asyncpg.Connection
) -> None:
    currency, client = vonage_app
    await _price_telephony(admin_conn, tenant)
    ref, call_uuid = await _vonage_call(runtime, tenant)
    await _event(client, {"status": "completed", "uuid": call_uuid, "duration": "0"})
    async with tenant_tx(runtime.pool, tenant.id) as conn:
        assert await pipeline.finalize_call(
            conn, listeners=runtime.billing_listeners, tenant_id=tenant.id, call_id=ref.id,
            call_created_at=ref.created_at,
        )
    # The price comes after the bill, in a second `completed` delivery; the reconciliation job handles it.
    await _event(client, {"status": "completed", "uuid": call_uuid, "duration": "0", "price": "0.01000000"})
    async with tenant_tx(runtime.pool, tenant.id) as conn:
        await pipeline.reconcile_call(conn, tenant_id=tenant.id, call_id=ref.id, call_created_at=ref.created_at)
    call = (await client.get(f"/v1/calls/{ref.id}", headers=tenant.headers)).json()
    assert (Decimal(call["carrier_price"]["amount"]), call["carrier_price"]["currency"]) == (Decimal("0.01"), currency)
    assert call["carrier_price"]["reconciled"] is (currency == "USD")
    assert Decimal(call["cost"]) == (Decimal("0.01") if currency == "USD" else Decimal(0))


def test_the_account_currency_setting_is_an_iso_code() -> None:
    assert account_currency(None) == "EUR" and account_currency(" usd ") == "USD"
    for bad in ("euro", "E1R", "€€€", ""):
        if bad == "":
            assert account_currency(bad) == "EUR"
            continue
        with pytest.raises(ValueError, match="VONAGE_ACCOUNT_CURRENCY"):
            account_currency(bad)

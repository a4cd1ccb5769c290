"""The post-call billing step: trigger, exact cost breakdown, idempotency, crash safety, reconciliation,
reservations and concurrent debits on one wallet."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg
import msgspec
import pytest

from tests.support.pipeline import (
    credit,
    drop_jobs,
    insert_agent,
    insert_batch,
    insert_call,
    jobs_for,
    sample_meter,
)
from voice_service.billing import pipeline, wallet
from voice_service.billing.pipeline import POST_CALL_JOB, RECONCILE_JOB
from voice_service.call_analysis.service import ANALYSIS_JOB
from voice_service.db import tenant_tx
from voice_service.runtime import Runtime

_dec = msgspec.json.Decoder()
CALL_START = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
async def _no_leftover_jobs(admin_conn: asyncpg.Connection) -> AsyncIterator[None]:
    yield
    await drop_jobs(admin_conn, POST_CALL_JOB, ANALYSIS_JOB, RECONCILE_JOB, "events.deliver")


async def add_prices(client: Any, tenant: Any) -> None:
    """A known tenant catalog (tenant rows win over the global list prices), plus one row that only takes
    effect after the call started and so must not apply."""
    rows = [
        {
            "category": "telephony",
            "provider": "twilio",
            "unit": "minute",
            "unit_price": "0.0130",
            "metadata": {"direction": "outbound"},
        },
        {
            "category": "stt",
            "provider": "deepgram",
            "model": "nova-3",
            "unit": "minute",
            "unit_price": "0.0060",
        },
        {
            "category": "llm",
            "provider": "openai",
            "model": "gpt-4o-mini",
            "unit": "token",
            "unit_price": "0.00000015",
            "metadata": {"direction": "input"},
        },
        {
            "category": "llm",
            "provider": "openai",
            "model": "gpt-4o-mini",
            "unit": "token",
            "unit_price": "0.0000006",
            "metadata": {"direction": "output"},
        },
        {
            "category": "llm",
            "provider": "openai",
            "model": "gpt-4o-mini",
            "unit": "token",
            "unit_price": "0.001",
            "metadata": {"direction": "input"},
            "effective_from": "2025-07-01T00:00:00Z",
        },
    ]
    for row in rows:
        body = {"effective_from": "2025-01-01T00:00:00Z", **row}
        r = await client.post("/v1/billing/pricing", json=body, headers=tenant.headers)
        assert r.status_code == 201, r.text


EXPECTED_ITEMS = [
    {
        "category": "telephony",
        "provider": "twilio",
        "model": None,
        "unit": "minute",
        "quantity": "3",
        "unit_price": "0.013000000000",
        "cost": "0.039000",
        "direction": "outbound",
    },
    {
        "category": "stt",
        "provider": "deepgram",
        "model": "nova-3",
        "unit": "minute",
        "quantity": "1.970833",
        "unit_price": "0.006000000000",
        "cost": "0.011825",
    },
    {
        "category": "llm",
        "provider": "openai",
        "model": "gpt-4o-mini-2024-07-18",
        "unit": "token",
        "quantity": "12345",
        "unit_price": "0.000000150000",
        "cost": "0.001852",
        "direction": "input",
    },
    {
        "category": "llm",
        "provider": "openai",
        "model": "gpt-4o-mini-2024-07-18",
        "unit": "token",
        "quantity": "678",
        "unit_price": "0.000000600000",
        "cost": "0.000407",
        "direction": "output",
    },
    {
        "category": "tts",
        "provider": "elevenlabs",
        "model": "eleven_flash_v2_5",
        "unit": "character",
        "quantity": "1234",
        "unit_price": "0.000050000000",
        "cost": "0.061700",
    },
    {
        "category": "tts",
        "provider": "acme-tts",
        "model": "v1",
        "unit": "character",
        "quantity": "50",
        "unit_price": "0",
        "cost": "0.000000",
        "warning": "no_price",
    },
]
EXPECTED_TOTAL = Decimal("0.114784")


def _without_price_ids(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in i.items() if k != "price_id"} for i in items]


async def snapshot(admin: asyncpg.Connection, tenant_id: uuid.UUID, call_id: uuid.UUID) -> dict[str, Any]:
    """Everything the billing step writes for one call (ids included: a rerun must not make new rows)."""
    call = await admin.fetchrow(
        "SELECT cost, currency, cost_breakdown, metadata FROM voice_call_logs WHERE id = $1", call_id
    )
    usage = await admin.fetch(
        "SELECT id, idempotency_key, total_cost, usage_items, status, ledger_transaction_id "
        "FROM billing_usage_events WHERE tenant_id = $1 AND metadata ->> 'call_id' = $2 ORDER BY idempotency_key",
        tenant_id,
        str(call_id),
    )
    ledger = await admin.fetch(
        "SELECT id, transaction_type, amount, balance_before, balance_after, idempotency_key "
        "FROM billing_ledger_transactions WHERE tenant_id = $1 AND idempotency_key LIKE $2 ORDER BY idempotency_key",
        tenant_id,
        f"debit:voice_call:{call_id}%",
    )
    events = await admin.fetch(
        "SELECT id, event_type, payload FROM domain_events WHERE tenant_id = $1 AND aggregate_id = $2 ORDER BY seq",
        tenant_id,
        call_id,
    )
    analysis = await admin.fetch("SELECT id, status FROM voice_call_analysis WHERE call_log_id = $1", call_id)
    jobs = await jobs_for(admin, ANALYSIS_JOB, call_id)
    wallet_row = await admin.fetchrow(
        "SELECT current_balance, reserved_balance FROM billing_wallets WHERE tenant_id = $1", tenant_id
    )
    return {
        "call": (
            call["cost"],
            call["currency"],
            _dec.decode(call["cost_breakdown"]),
            _dec.decode(call["metadata"]).get("billing", {}).get("usage_event_id"),
        ),
        "usage": [dict(r) for r in usage],
        "ledger": [dict(r) for r in ledger],
        "events": [dict(r) for r in events],
        "analysis": [dict(r) for r in analysis],
        "jobs": [(j["dedupe_key"], j["status"]) for j in jobs],
        "wallet": dict(wallet_row) if wallet_row else None,
    }


async def _bill(
    runtime: Runtime, tenant_id: uuid.UUID, call_id: uuid.UUID, created_at: datetime, **kwargs: Any
) -> pipeline.Billed | None:
    async with tenant_tx(runtime.pool, tenant_id) as conn:
        return await pipeline.finalize_call(
            conn,
            listeners=runtime.billing_listeners,
            tenant_id=tenant_id,
            call_id=call_id,
            call_created_at=created_at,
            **kwargs,
        )


def _meter_with_unpriced_tts() -> Any:
    meter = sample_meter()
    meter.add_tts("acme-tts", "v1", 50)
    return meter


async def test_exact_breakdown_and_one_of_each_row(
    client: Any, tenant: Any, runtime: Runtime, admin_conn: asyncpg.Connection
) -> None:
    await add_prices(client, tenant)
    await credit(runtime, tenant.id, "10")
    call_id, created_at = await insert_call(
        admin_conn, tenant.id, created_at=CALL_START, meter=_meter_with_unpriced_tts()
    )

    billed = await _bill(runtime, tenant.id, call_id, created_at)
    assert billed is not None and billed.total == EXPECTED_TOTAL

    snap = await snapshot(admin_conn, tenant.id, call_id)
    cost, currency, items, usage_event_id = snap["call"]
    assert (cost, currency) == (EXPECTED_TOTAL, "USD")
    assert _without_price_ids(items) == EXPECTED_ITEMS
    assert sum(Decimal(i["cost"]) for i in items) == EXPECTED_TOTAL
    # The telephony price is the tenant's (0.013), not Twilio's global list price (0.014).
    [usage] = snap["usage"]
    assert usage["idempotency_key"] == f"voice_call:{call_id}" and str(usage["id"]) == usage_event_id
    assert usage["total_cost"] == EXPECTED_TOTAL and usage["status"] == "charged"
    assert _without_price_ids(_dec.decode(usage["usage_items"])) == EXPECTED_ITEMS
    [debit] = snap["ledger"]
    assert debit["transaction_type"] == "debit" and debit["amount"] == -EXPECTED_TOTAL
    assert (debit["balance_before"], debit["balance_after"]) == (
        Decimal("10"),
        Decimal("10") - EXPECTED_TOTAL,
    )
    assert usage["ledger_transaction_id"] == debit["id"]
    [event] = snap["events"]
    assert event["event_type"] == "voice_call.cost_recorded"
    payload = _dec.decode(event["payload"])
    assert payload["cost"] == "0.114784" and payload["usage_event_id"] == usage_event_id
    assert snap["jobs"] == [(f"analysis:{call_id}", "queued")]
    assert snap["analysis"][0]["status"] == "pending"

    # The same call processed again: nothing new.
    assert await _bill(runtime, tenant.id, call_id, created_at) is None
    assert await snapshot(admin_conn, tenant.id, call_id) == snap

    # And through the API.
    r = await client.get("/v1/billing/wallet", headers=tenant.headers)
    assert r.json()["current_balance"] == "9.885216" and r.json()["available_balance"] == "9.885216"
    r = await client.get("/v1/billing/usage-events", params={"call_id": str(call_id)}, headers=tenant.headers)
    [listed] = r.json()["items"]
    assert listed["total_cost"] == "0.114784" and listed["feature_key"] == "voice-agent"


STEPS = ["priced", "usage_event", "call_updated", "event", "analysis_enqueued", "charged"]


@pytest.mark.parametrize("step", STEPS)
async def test_crash_between_steps_then_rerun_gives_the_same_rows(
    client: Any, make_tenant: Any, runtime: Runtime, admin_conn: asyncpg.Connection, step: str
) -> None:
    # Reference: the same call billed without a crash, in a twin tenant with the same prices and credit.
    ref_tenant, tenant = await make_tenant(), await make_tenant()
    for t in (ref_tenant, tenant):
        await add_prices(client, t)
        await credit(runtime, t.id, "5")
    ref_call, ref_created = await insert_call(
        admin_conn, ref_tenant.id, created_at=CALL_START, meter=sample_meter()
    )
    await _bill(runtime, ref_tenant.id, ref_call, ref_created)
    expected = await snapshot(admin_conn, ref_tenant.id, ref_call)

    call_id, created_at = await insert_call(
        admin_conn, tenant.id, created_at=CALL_START, meter=sample_meter()
    )
    before = await snapshot(admin_conn, tenant.id, call_id)

    class Crash(Exception):
        pass

    async def crash_at(name: str) -> None:
        if name == step:
            raise Crash(name)

    with pytest.raises(Crash):
        await _bill(runtime, tenant.id, call_id, created_at, checkpoint=crash_at)
    assert await snapshot(admin_conn, tenant.id, call_id) == before, "a crashed run left rows behind"

    await _bill(runtime, tenant.id, call_id, created_at)
    after = await snapshot(admin_conn, tenant.id, call_id)
    await _bill(runtime, tenant.id, call_id, created_at)
    assert await snapshot(admin_conn, tenant.id, call_id) == after

    def shape(s: dict[str, Any]) -> Any:
        return (
            s["call"][:2],
            _without_price_ids(s["call"][2]),
            [(u["total_cost"], u["status"]) for u in s["usage"]],
            [(x["amount"], x["balance_before"], x["balance_after"]) for x in s["ledger"]],
            [e["event_type"] for e in s["events"]],
            len(s["jobs"]),
            s["wallet"],
        )

    assert shape(after) == shape(expected)


async def test_trigger_waits_for_both_ends_and_dedupes(
    tenant: Any, runtime: Runtime, admin_conn: asyncpg.Connection
) -> None:
    call_id, created_at = await insert_call(
        admin_conn, tenant.id, meter=sample_meter(), media_ended=False, provider_final=True
    )

    async def progress() -> None:
        async with tenant_tx(runtime.pool, tenant.id) as conn:
            await pipeline.on_call_progress(
                conn, tenant_id=tenant.id, call_id=call_id, call_created_at=created_at
            )

    await progress()
    assert await jobs_for(admin_conn, POST_CALL_JOB, call_id) == []
    await admin_conn.execute("UPDATE voice_call_logs SET media_ended_at = now() WHERE id = $1", call_id)
    await progress()
    await progress()
    [job] = await jobs_for(admin_conn, POST_CALL_JOB, call_id)
    assert job["dedupe_key"] == f"post_call:{call_id}"

    # A call that was never answered has no media: its final status is enough.
    declined, declined_at = await insert_call(
        admin_conn, tenant.id, status="declined", media_ended=False, started=False
    )
    async with tenant_tx(runtime.pool, tenant.id) as conn:
        await pipeline.on_call_progress(
            conn, tenant_id=tenant.id, call_id=declined, call_created_at=declined_at
        )
        await pipeline.schedule_finalize_timeout(
            conn,
            tenant_id=tenant.id,
            call_id=call_id,
            call_created_at=created_at,
            after=timedelta(minutes=30),
        )
    assert len(await jobs_for(admin_conn, POST_CALL_JOB, declined)) == 1
    timeouts = [
        j
        for j in await jobs_for(admin_conn, POST_CALL_JOB, call_id)
        if j["dedupe_key"].endswith(f"timeout:{call_id}")
    ]
    assert len(timeouts) == 1
    assert timeouts[0]["execute_after"] > datetime.now(UTC) + timedelta(minutes=29)


async def test_job_bills_a_declined_call_at_zero(
    tenant: Any, runtime: Runtime, admin_conn: asyncpg.Connection
) -> None:
    from voice_service.billing.jobs import post_call_job

    call_id, created_at = await insert_call(
        admin_conn, tenant.id, status="declined", media_ended=False, started=False, transcripts=[]
    )
    await admin_conn.execute("UPDATE voice_call_logs SET duration_seconds = 0 WHERE id = $1", call_id)
    await post_call_job(runtime, pipeline.call_payload(tenant.id, call_id, created_at))
    snap = await snapshot(admin_conn, tenant.id, call_id)
    assert snap["call"][0] == Decimal(0) and snap["call"][2] == []
    [usage] = snap["usage"]
    assert (
        usage["total_cost"] == 0 and usage["status"] == "charged" and usage["ledger_transaction_id"] is None
    )
    assert snap["ledger"] == []


PRICE_FORMS = {
    # As a number with its currency beside it, announced with on_provider_price.
    "flat": '{"provider_price": "-0.04500", "provider_price_currency": "USD"}',
    # As the telephony code records it with the final status event (then on_call_progress runs).
    "object": '{"provider_price": {"amount": "-0.04500", "currency": "USD"}}',
}


@pytest.mark.parametrize("form", sorted(PRICE_FORMS))
async def test_provider_price_is_reconciled_as_an_adjustment(
    client: Any, tenant: Any, runtime: Runtime, admin_conn: asyncpg.Connection, form: str
) -> None:
    await add_prices(client, tenant)
    await credit(runtime, tenant.id, "1")
    call_id, created_at = await insert_call(
        admin_conn, tenant.id, created_at=CALL_START, meter=sample_meter()
    )
    await _bill(runtime, tenant.id, call_id, created_at)
    billed = await snapshot(admin_conn, tenant.id, call_id)

    # Twilio reports charges as negative numbers: -0.04500 means the call cost 0.045, not the 0.039 we priced.
    await admin_conn.execute(
        "UPDATE voice_call_logs SET metadata = metadata || $2::jsonb WHERE id = $1",
        call_id,
        PRICE_FORMS[form],
    )
    hook = pipeline.on_provider_price if form == "flat" else pipeline.on_call_progress
    async with tenant_tx(runtime.pool, tenant.id) as conn:
        await hook(conn, tenant_id=tenant.id, call_id=call_id, call_created_at=created_at)
    assert len(await jobs_for(admin_conn, RECONCILE_JOB, call_id)) == 1

    async def reconcile() -> Any:
        async with tenant_tx(runtime.pool, tenant.id) as conn:
            return await pipeline.reconcile_call(
                conn, tenant_id=tenant.id, call_id=call_id, call_created_at=created_at
            )

    item = await reconcile()
    assert item is not None and item.cost == Decimal("0.006000")
    snap = await snapshot(admin_conn, tenant.id, call_id)
    cost, _, items, _ = snap["call"]
    assert cost == EXPECTED_TOTAL + Decimal("0.006")
    # The original items are untouched; the adjustment is a new item.
    assert items[:-1] == billed["call"][2]
    assert {k: items[-1][k] for k in ("category", "unit", "cost")} == {
        "category": "telephony",
        "unit": "adjustment",
        "cost": "0.006000",
    }
    assert [u["idempotency_key"] for u in snap["usage"]] == [
        f"voice_call:{call_id}",
        f"voice_call:{call_id}:adjustment:1",
    ]
    assert [(x["transaction_type"], x["amount"]) for x in snap["ledger"]] == [
        ("debit", -EXPECTED_TOTAL),
        ("adjustment", Decimal("-0.006000")),
    ]
    assert [e["event_type"] for e in snap["events"]] == [
        "voice_call.cost_recorded",
        "voice_call.cost_adjusted",
    ]

    assert await reconcile() is None
    assert await snapshot(admin_conn, tenant.id, call_id) == snap


async def test_batch_reservation_released_by_calls_then_by_batch_end(
    client: Any, tenant: Any, runtime: Runtime, admin_conn: asyncpg.Connection
) -> None:
    await add_prices(client, tenant)
    await credit(runtime, tenant.id, "3")
    agent = await insert_agent(admin_conn, tenant.id)
    batch_id, _ = await insert_batch(admin_conn, tenant.id, agent, n_entries=4)
    async with tenant_tx(runtime.pool, tenant.id) as conn:
        await wallet.reserve_for_batch(
            conn, tenant_id=tenant.id, batch_id=batch_id, amount=Decimal("2"), n_calls=4
        )
        # Idempotent per batch.
        await wallet.reserve_for_batch(
            conn, tenant_id=tenant.id, batch_id=batch_id, amount=Decimal("2"), n_calls=4
        )
    r = (await client.get("/v1/billing/wallet", headers=tenant.headers)).json()
    assert (r["current_balance"], r["reserved_balance"], r["available_balance"]) == (
        "3.000000",
        "2.000000",
        "1.000000",
    )
    assert r["reservations"][0]["per_call"] == "0.500000"

    call_id, created_at = await insert_call(
        admin_conn, tenant.id, created_at=CALL_START, meter=sample_meter(), batch_id=batch_id
    )
    await _bill(runtime, tenant.id, call_id, created_at)
    r = (await client.get("/v1/billing/wallet", headers=tenant.headers)).json()
    assert r["current_balance"] == "2.885216" and r["reserved_balance"] == "1.500000"
    assert r["reservations"][0]["remaining"] == "1.500000"

    async with tenant_tx(runtime.pool, tenant.id) as conn:
        assert await wallet.release_batch_reservation(
            conn, tenant_id=tenant.id, batch_id=batch_id
        ) == Decimal("1.5")
        assert await wallet.release_batch_reservation(conn, tenant_id=tenant.id, batch_id=batch_id) == 0
    r = (await client.get("/v1/billing/wallet", headers=tenant.headers)).json()
    assert (r["reserved_balance"], r["available_balance"], r["reservations"]) == ("0.000000", "2.885216", [])


async def test_concurrent_debits_on_one_wallet_chain(
    tenant: Any, runtime: Runtime, admin_conn: asyncpg.Connection
) -> None:
    await credit(runtime, tenant.id, "100")
    n = 60

    async def debit(i: int) -> None:
        async with tenant_tx(runtime.pool, tenant.id) as conn:
            await wallet.post(
                conn,
                tenant.id,
                transaction_type="debit",
                amount=Decimal("-0.010001"),
                idempotency_key=f"debit:test:{i}",
            )

    # Each key twice, all at once: the duplicates must not debit again.
    await asyncio.gather(*(debit(i % n) for i in range(2 * n)))
    rows = await admin_conn.fetch(
        "SELECT amount, balance_before, balance_after FROM billing_ledger_transactions "
        "WHERE tenant_id = $1 ORDER BY balance_after DESC",
        tenant.id,
    )
    assert len(rows) == n + 1  # the top-up and n debits
    for prev, row in zip(rows, rows[1:], strict=False):
        assert row["balance_before"] == prev["balance_after"], "a concurrent debit lost an update"
        assert row["balance_after"] == row["balance_before"] + row["amount"]
    balance = await admin_conn.fetchval(
        "SELECT current_balance FROM billing_wallets WHERE tenant_id = $1", tenant.id
    )
    assert balance == rows[-1]["balance_after"] == Decimal("100") - n * Decimal("0.010001")

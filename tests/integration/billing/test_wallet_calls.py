"""Every call the service places or answers for a tenant goes through its wallet (issue #15 §2).

The attack: with the wallet at 0, a one-entry batch was refused with 402 but `POST /v1/calls` placed the call. Now
a single call reserves its estimated cost like a batch does (402 with the estimate when the wallet cannot cover
it), an inbound call to a tenant without balance gets the carrier's polite rejection (logged, counted in /metrics),
ENFORCE_WALLET_BALANCE=false turns both off, and the reservation is released when the call is billed.
"""

from __future__ import annotations

import logging
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
from voice_service.billing import jobs as billing_jobs
from voice_service.billing import wallet
from voice_service.billing.pipeline import call_payload
from voice_service.composition import open_runtime
from voice_service.db import tenant_tx
from voice_service.runtime import Runtime
from voice_service.settings import Settings
from voice_service.simulator.signing import twilio_signature

PUBLIC = "https://voice.example.test"


@pytest.fixture(scope="module")
async def runtime(settings: Settings) -> AsyncIterator[Runtime]:
    """The test's own Runtime: the apps' pools live on their test clients' event loops."""
    async with open_runtime(settings, apply_migrations=False) as rt:
        yield rt


@pytest.fixture(scope="module")
async def unenforced(settings: Settings) -> AsyncIterator[AsyncTestClient[Litestar]]:
    app = create_app(msgspec.structs.replace(settings, enforce_wallet_balance=False), bootstrap=False)
    async with AsyncTestClient(app=app, base_url="http://testserver.local") as c:
        yield c


def _phone() -> str:
    # Seven random digits in an area code no other test module uses: numbers are unique across tenants.
    return f"+1629{2_000_000 + uuid.uuid4().int % 8_000_000}"


async def _agent_and_number(client: Any, tenant: Any) -> tuple[int, str, str]:
    agent = (await client.post("/v1/agents", json={"name": "Ava"}, headers=tenant.headers)).json()
    phone = _phone()
    r = await client.post("/v1/numbers", json={"phone_number": phone, "provider": "twilio",
                                               "default_agent_id": agent["id"]}, headers=tenant.headers)
    assert r.status_code == 201, r.text
    return agent["id"], r.json()["id"], phone


async def _fund(runtime: Runtime, tenant_id: uuid.UUID, amount: str) -> None:
    async with tenant_tx(runtime.pool, tenant_id) as conn:
        await wallet.topup(conn, tenant_id, Decimal(amount), idempotency_key=f"test:{uuid.uuid4()}")


async def _calls(admin_conn: asyncpg.Connection, tenant_id: uuid.UUID) -> int:
    return int(await admin_conn.fetchval("SELECT count(*) FROM voice_call_logs WHERE tenant_id = $1", tenant_id))


async def test_a_single_call_needs_the_wallet_like_a_batch(
    client: Any, runtime: Runtime, tenant: Any, admin_conn: asyncpg.Connection
) -> None:
    agent_id, number_id, _ = await _agent_and_number(client, tenant)
    body = {"agent_id": agent_id, "from_number_id": number_id, "to": "+14155550199"}

    batch = await client.post("/v1/batches", json={"agent_id": agent_id, "from_number_id": number_id,
                                                   "entries": [{"phone": "+14155550199"}]}, headers=tenant.headers)
    assert batch.status_code == 402, batch.text
    r = await client.post("/v1/calls", json=body, headers=tenant.headers)
    assert r.status_code == 402, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    problem = r.json()
    [error] = problem["errors"]
    assert error["field"] == "wallet" and error["available"] == "0.000000"
    assert Decimal(error["required"]) == Decimal(batch.json()["errors"][0]["required"]) > 0
    assert "top up" in problem["detail"]
    assert await _calls(admin_conn, tenant.id) == 0
    # The same Idempotency-Key can be used again once the wallet is topped up: the refusal stored nothing.
    key = {"Idempotency-Key": f"k-{uuid.uuid4()}"}
    assert (await client.post("/v1/calls", json=body, headers=tenant.headers | key)).status_code == 402

    await _fund(runtime, tenant.id, error["required"])
    r = await client.post("/v1/calls", json=body, headers=tenant.headers | key)
    assert r.status_code == 201, r.text
    call = r.json()
    w = (await client.get("/v1/billing/wallet", headers=tenant.headers)).json()
    [reservation] = w["reservations"]
    assert reservation["call_id"] == call["id"] and reservation["batch_id"] is None
    assert reservation["amount"] == error["required"] and w["available_balance"] == "0.000000"
    # Nothing left for a second call.
    assert (await client.post("/v1/calls", json=body, headers=tenant.headers)).status_code == 402

    # The call ended (the carrier refused it in this setup) and is billed: its reservation is released.
    assert call["status"] in ("failed", "pending", "ringing", "ongoing", "ended")
    row = await admin_conn.fetchrow("SELECT created_at FROM voice_call_logs WHERE id = $1", uuid.UUID(call["id"]))
    await billing_jobs.post_call_job(runtime, call_payload(tenant.id, uuid.UUID(call["id"]), row["created_at"]))
    w = (await client.get("/v1/billing/wallet", headers=tenant.headers)).json()
    assert w["reservations"] == [] and w["reserved_balance"] == "0.000000"
    assert Decimal(w["available_balance"]) == Decimal(w["current_balance"])
    assert await admin_conn.fetchval(
        "SELECT status FROM billing_wallet_reservations WHERE tenant_id = $1 AND call_id = $2",
        tenant.id, uuid.UUID(call["id"]),
    ) == "released"


async def test_enforcement_off_places_the_call_anyway(unenforced: Any, tenant: Any) -> None:
    agent_id, number_id, _ = await _agent_and_number(unenforced, tenant)
    r = await unenforced.post("/v1/calls", json={"agent_id": agent_id, "from_number_id": number_id,
                                                 "to": "+14155550199"}, headers=tenant.headers)
    assert r.status_code == 201, r.text
    # Still reserved (the balance goes negative when it is billed), as batches do.
    w = (await unenforced.get("/v1/billing/wallet", headers=tenant.headers)).json()
    assert [x["call_id"] for x in w["reservations"]] == [r.json()["id"]]


def _inbound_form(settings: Settings, to: str) -> tuple[dict[str, str], dict[str, str]]:
    form = {"CallSid": "CA" + uuid.uuid4().hex, "AccountSid": settings.twilio_account_sid or "",
            "From": "+14155550100", "To": to, "CallStatus": "ringing", "Direction": "inbound"}
    url = PUBLIC + "/v1/telephony/twilio/voice"
    return form, {"X-Twilio-Signature": twilio_signature(settings.twilio_auth_token or "", url, form)}


async def test_an_inbound_call_to_a_tenant_without_balance_is_politely_rejected(
    client: Any, app: Litestar, runtime: Runtime, settings: Settings, tenant: Any, admin_conn: asyncpg.Connection,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def rejected() -> float:
        return app.state.metrics.registry.get_sample_value(
            "voice_inbound_calls_rejected_total", {"reason": "insufficient_balance"}) or 0.0

    _, _, phone = await _agent_and_number(client, tenant)
    before = rejected()
    form, headers = _inbound_form(settings, phone)
    with caplog.at_level(logging.WARNING, logger="voice_service"):
        r = await client.post("/v1/telephony/twilio/voice", data=form, headers=headers)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/xml")
    assert "<Say>" in r.text and "<Hangup/>" in r.text and "<Stream" not in r.text
    assert "balance" not in r.text.lower()  # the caller is not told about the tenant's wallet
    assert await _calls(admin_conn, tenant.id) == 0
    assert rejected() == before + 1
    assert any("insufficient balance" in rec.getMessage() for rec in caplog.records)
    metrics = (await client.get("/metrics")).text
    assert 'voice_inbound_calls_rejected_total{reason="insufficient_balance"}' in metrics

    # With balance, the same number answers and the call holds its reservation until it is billed.
    await _fund(runtime, tenant.id, "5")
    form, headers = _inbound_form(settings, phone)
    r = await client.post("/v1/telephony/twilio/voice", data=form, headers=headers)
    assert r.status_code == 200 and "<Stream" in r.text, r.text
    call_id = await admin_conn.fetchval("SELECT id FROM voice_call_logs WHERE provider_call_id = $1",
                                        form["CallSid"])
    w = (await client.get("/v1/billing/wallet", headers=tenant.headers)).json()
    assert [x["call_id"] for x in w["reservations"]] == [str(call_id)]
    # The carrier retrying its answer webhook reserves nothing more.
    r = await client.post("/v1/telephony/twilio/voice", data=form, headers=headers)
    assert "<Stream" in r.text
    w = (await client.get("/v1/billing/wallet", headers=tenant.headers)).json()
    assert len(w["reservations"]) == 1


async def test_enforcement_off_answers_inbound_calls_anyway(
    unenforced: Any, settings: Settings, tenant: Any, admin_conn: asyncpg.Connection
) -> None:
    _, _, phone = await _agent_and_number(unenforced, tenant)
    form, headers = _inbound_form(settings, phone)
    r = await unenforced.post("/v1/telephony/twilio/voice", data=form, headers=headers)
    assert r.status_code == 200 and "<Stream" in r.text, r.text
    assert await _calls(admin_conn, tenant.id) == 1

"""A phone number belongs to one tenant until that tenant deletes it, and a tenant registers only numbers the
service's carrier account has (issue #15 §3).

The attack: tenant B set its number inactive; tenant A registered the same E.164 (201), B could not reactivate it
(409, "… in another account") and a signed inbound webhook to the number created the call in tenant A.
"""

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

from tests.fakes.carrier_accounts import CarrierAccounts
from voice_service.app import create_app
from voice_service.billing import wallet
from voice_service.composition import open_runtime
from voice_service.db import tenant_tx
from voice_service.settings import Settings
from voice_service.simulator.signing import twilio_signature

TOKEN = "platform-numbers-test-token-0123456789"
PLATFORM = {"Authorization": f"Bearer {TOKEN}"}
PUBLIC = "https://voice.example.test"


@pytest.fixture(scope="module")
async def api(settings: Settings) -> AsyncIterator[AsyncTestClient[Litestar]]:
    app = create_app(msgspec.structs.replace(settings, platform_admin_token=TOKEN), bootstrap=False)
    async with AsyncTestClient(app=app, base_url="http://testserver.local") as c:
        yield c


def _phone() -> str:
    # Seven random digits in an area code no other test module uses: numbers are unique across tenants.
    return f"+1628{2_000_000 + uuid.uuid4().int % 8_000_000}"


def _problem(r: Any, status: int, field: str | None = None) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = r.json()
    if field is not None:
        assert field in [e.get("field") for e in body.get("errors", [])], body
    return body


async def test_an_inactive_number_stays_with_its_tenant(
    api: Any, make_tenant: Any, settings: Settings, admin_conn: asyncpg.Connection
) -> None:
    a, b = await make_tenant(), await make_tenant()
    phone = _phone()
    agent_b = (await api.post("/v1/agents", json={"name": "B"}, headers=b.headers)).json()
    agent_a = (await api.post("/v1/agents", json={"name": "A"}, headers=a.headers)).json()
    r = await api.post("/v1/numbers", json={"phone_number": phone, "provider": "twilio",
                                            "default_agent_id": agent_b["id"]}, headers=b.headers)
    assert r.status_code == 201, r.text
    number_b = r.json()["id"]
    assert (await api.patch(f"/v1/numbers/{number_b}", json={"status": "inactive"},
                            headers=b.headers)).status_code == 200

    # A cannot take it, whatever status it asks for, and is not told who holds it.
    for status in ("active", "inactive"):
        body = _problem(await api.post("/v1/numbers", json={"phone_number": phone, "provider": "twilio",
                                                            "status": status, "default_agent_id": agent_a["id"]},
                                       headers=a.headers), 409, "phone_number")
        text = str(body).lower()
        assert "another" not in text and "account" not in text and "tenant" not in text
    assert (await api.get("/v1/numbers", headers=a.headers)).json()["items"] == []

    # B reactivates it.
    r = await api.patch(f"/v1/numbers/{number_b}", json={"status": "active"}, headers=b.headers)
    assert r.status_code == 200, r.text
    # A correctly signed inbound call to the number is B's call, answered by B's agent.
    async with open_runtime(settings, apply_migrations=False) as runtime, tenant_tx(runtime.pool, b.id) as conn:
        await wallet.topup(conn, b.id, Decimal("5"), idempotency_key=f"test:{uuid.uuid4()}")
    form = {"CallSid": "CA" + uuid.uuid4().hex, "AccountSid": settings.twilio_account_sid or "",
            "From": "+14155550100", "To": phone, "CallStatus": "ringing", "Direction": "inbound"}
    signature = twilio_signature(settings.twilio_auth_token or "", PUBLIC + "/v1/telephony/twilio/voice", form)
    r = await api.post("/v1/telephony/twilio/voice", data=form, headers={"X-Twilio-Signature": signature})
    assert r.status_code == 200 and "<Stream" in r.text, r.text
    row = await admin_conn.fetchrow("SELECT tenant_id, agent_id FROM voice_call_logs WHERE provider_call_id = $1",
                                    form["CallSid"])
    assert (row["tenant_id"], row["agent_id"]) == (b.id, agent_b["id"])

    # Once B deletes it, the number is free: A may register it.
    assert (await api.delete(f"/v1/numbers/{number_b}", headers=b.headers)).status_code == 204
    r = await api.post("/v1/numbers", json={"phone_number": phone, "provider": "twilio"}, headers=a.headers)
    assert r.status_code == 201, r.text


async def test_the_same_tenant_registering_twice_gets_the_same_answer(api: Any, tenant: Any) -> None:
    phone = _phone()
    assert (await api.post("/v1/numbers", json={"phone_number": phone, "provider": "twilio"},
                           headers=tenant.headers)).status_code == 201
    _problem(await api.post("/v1/numbers", json={"phone_number": phone, "provider": "vonage"},
                            headers=tenant.headers), 409, "phone_number")


async def test_a_number_must_be_on_the_carrier_account(
    api: Any, tenant: Any, carrier_accounts: CarrierAccounts
) -> None:
    for provider in ("twilio", "vonage", "simulator"):
        phone = _phone()
        carrier_accounts.not_owned.add(phone)
        body = _problem(await api.post("/v1/numbers", json={"phone_number": phone, "provider": provider},
                                       headers=tenant.headers), 422, "phone_number")
        assert "account" in body["detail"].lower(), body
        assert (provider if provider != "simulator" else "twilio", phone.lstrip("+") if provider == "vonage"
                else phone) in carrier_accounts.lookups
        # Longer numbers containing it do not count (Twilio and Vonage match partial numbers).
        carrier_accounts.not_owned.discard(phone)
        r = await api.post("/v1/numbers", json={"phone_number": phone, "provider": provider}, headers=tenant.headers)
        assert r.status_code == 201, r.text

    # Switching carrier is registering the number with that carrier: checked again.
    phone = _phone()
    r = await api.post("/v1/numbers", json={"phone_number": phone, "provider": "twilio"}, headers=tenant.headers)
    assert r.status_code == 201, r.text
    carrier_accounts.not_owned.add(phone)
    _problem(await api.patch(f"/v1/numbers/{r.json()['id']}", json={"provider": "vonage"},
                             headers=tenant.headers), 422, "phone_number")
    # Other changes do not ask the carrier again.
    asked = len(carrier_accounts.lookups)
    assert (await api.patch(f"/v1/numbers/{r.json()['id']}", json={"status": "inactive"},
                            headers=tenant.headers)).status_code == 200
    assert len(carrier_accounts.lookups) == asked


async def test_when_the_carrier_cannot_answer_nothing_is_registered(
    api: Any, tenant: Any, carrier_accounts: CarrierAccounts
) -> None:
    phone = _phone()
    carrier_accounts.failing = 500
    try:
        _problem(await api.post("/v1/numbers", json={"phone_number": phone, "provider": "twilio"},
                                headers=tenant.headers), 503)
    finally:
        carrier_accounts.failing = None
    assert (await api.get("/v1/numbers", headers=tenant.headers)).json()["items"] == []


async def test_a_carrier_this_service_has_no_account_with_is_refused_by_name(
    settings: Settings, make_tenant: Any
) -> None:
    """A deployment without Twilio credentials cannot hold Twilio numbers: a 422 naming `provider` (not a 503)."""
    tenant = await make_tenant()
    bare = msgspec.structs.replace(settings, twilio_account_sid=None, twilio_auth_token=None)
    app = create_app(bare, bootstrap=False)
    async with AsyncTestClient(app=app, base_url="http://testserver.local") as c:
        body = _problem(await c.post("/v1/numbers", json={"phone_number": _phone(), "provider": "twilio"},
                                     headers=tenant.headers), 422, "provider")
        assert "TWILIO_ACCOUNT_SID" in body["detail"]
        assert (await c.get("/v1/numbers", headers=tenant.headers)).json()["items"] == []


async def test_the_platform_assigns_a_number_without_the_carrier_check(
    api: Any, make_tenant: Any, carrier_accounts: CarrierAccounts
) -> None:
    a, b = await make_tenant(), await make_tenant()
    phone = _phone()
    carrier_accounts.not_owned.add(phone)  # e.g. a number ported in, not listed on the account yet
    asked = len(carrier_accounts.lookups)
    body = {"tenant_id": str(a.id), "phone_number": phone, "provider": "twilio"}
    # Only with the platform's token.
    assert (await api.post("/v1/admin/numbers", json=body, headers=a.headers)).status_code == 401
    r = await api.post("/v1/admin/numbers", json=body, headers=PLATFORM)
    assert r.status_code == 201, r.text
    assert len(carrier_accounts.lookups) == asked
    assert [n["phone_number"] for n in (await api.get("/v1/numbers", headers=a.headers)).json()["items"]] == [phone]
    # Held by a: the platform cannot hand it to b as well.
    _problem(await api.post("/v1/admin/numbers", json={**body, "tenant_id": str(b.id)}, headers=PLATFORM),
             409, "phone_number")
    _problem(await api.post("/v1/admin/numbers", json={**body, "tenant_id": str(uuid.uuid4())}, headers=PLATFORM),
             404, "tenant_id")


async def test_the_upgrade_keeps_each_number_with_its_first_registration(pg_server_dsn: str, tmp_path: Any) -> None:
    """A database that already holds a taken-over number (B inactive since before, A active since after) is
    migrated: B keeps it, A's later registration is released, and the number is unique from then on."""
    import shutil

    from tests.support.database import drop_db, fresh_db
    from voice_service.migrations import load_migrations, migrate, sql_dir

    name, dsn = await fresh_db(pg_server_dsn)
    try:
        for m in load_migrations():
            if m.version < "0078":
                shutil.copy(sql_dir() / m.name, tmp_path / m.name)
        await migrate(dsn, tmp_path)
        conn = await asyncpg.connect(dsn)
        try:
            a, b = [await conn.fetchval("INSERT INTO tenants (name, slug) VALUES ($1, $1) RETURNING id", n)
                    for n in ("a", "b")]
            insert = ("INSERT INTO voice_agent_numbers (tenant_id, country_code, base_number, e164, provider, status, "
                      "created_at) VALUES ($1, '1', 6285550100, '+16285550100', 'twilio', $2, now() - $3::text::interval) "
                      "RETURNING id")
            held = await conn.fetchval(insert, b, "inactive", "2 days")
            taken = await conn.fetchval(insert, a, "active", "1 day")
            await migrate(dsn)
            rows = {r["id"]: r for r in await conn.fetch("SELECT id, deleted_at, metadata FROM voice_agent_numbers")}
            assert rows[held]["deleted_at"] is None
            assert rows[taken]["deleted_at"] is not None and "released" in rows[taken]["metadata"]
            with pytest.raises(asyncpg.UniqueViolationError):
                await conn.execute(insert, a, "inactive", "0 days")
        finally:
            await conn.close()
    finally:
        await drop_db(pg_server_dsn, name)


async def test_each_carrier_asks_its_account_through_its_sdk() -> None:
    """owns_number against the simulator's carrier accounts (Twilio's IncomingPhoneNumbers through the twilio SDK,
    Vonage's Numbers API through the vonage SDK), exact numbers only, and a clear error without credentials."""
    from providers.telephony.base import ProviderError
    from providers.telephony.twilio import TwilioProvider
    from providers.telephony.vonage import VonageProvider
    from voice_service.simulator import Simulator

    held, other = "+16285550142", "+16285550143"
    sid, token = "AC" + "7" * 32, "sim-token"
    async with Simulator(twilio_accounts={sid: token}, vonage_api_key="k", vonage_api_secret="s",
                         numbers={held}) as sim:
        twilio = TwilioProvider(sid, token, base_url=sim.base_url)
        vonage = VonageProvider("app", "", "secret", api_key="k", api_secret="s", rest_url=sim.base_url)
        wrong = TwilioProvider(sid, "wrong-token", base_url=sim.base_url)
        unkeyed = VonageProvider("app", "", "secret", rest_url=sim.base_url)
        try:
            for provider in (twilio, vonage):
                assert await provider.owns_number(held) is True
                assert await provider.owns_number(other) is False
                assert await provider.owns_number(held[:-1]) is False
            with pytest.raises(ProviderError) as refused:
                await wrong.owns_number(held)
            assert refused.value.code == "auth"
            with pytest.raises(ProviderError, match="VONAGE_API_KEY"):
                await unkeyed.owns_number(held)
        finally:
            for provider in (twilio, vonage, wrong, unkeyed):
                await provider.aclose()

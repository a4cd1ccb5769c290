"""Provider webhooks: signatures checked before anything is read, and call statuses that never go backwards.

Forged, missing, stale and replayed signatures → 403 problem+json and no row changed. Webhooks about unknown
calls → 204 (providers retry on errors). Duplicates and out-of-order deliveries leave the log right. The
status URL's ?call_id= finds a call whose provider id is not stored yet (callbacks can beat place_call).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import msgspec
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from twilio.request_validator import RequestValidator

from voice_service import composition
from voice_service.app import create_app
from voice_service.calls import repository as repo
from voice_service.calls import service
from voice_service.calls.schemas import CallRef
from voice_service.composition import open_runtime
from voice_service.db import create_pool, tenant_tx
from voice_service.settings import Settings
from voice_service.simulator.harness import running_service
from voice_service.simulator.signing import twilio_signature, vonage_signed_jwt

VONAGE_SECRET = "vonage-signature-secret-for-the-tests-0123456789"
TWILIO_SHARED_KEY = ("KS0123456789abcdef", "twilio-webhooks-shared-key-secret-0123")
PUBLIC = "https://voice.example.test"
_json = msgspec.json.Encoder()


@pytest.fixture(scope="module")
async def hooks_app(settings: Settings) -> Litestar:
    return create_app(
        msgspec.structs.replace(
            settings,
            vonage_signature_secret=VONAGE_SECRET,
            twilio_webhook_shared_keys=":".join(TWILIO_SHARED_KEY),
        ),
        bootstrap=False,
    )


@pytest.fixture(scope="module")
async def wh(hooks_app: Litestar) -> AsyncIterator[AsyncTestClient[Litestar]]:
    async with AsyncTestClient(app=hooks_app, base_url="http://testserver.local") as client:
        yield client


@pytest.fixture
def hook_calls(monkeypatch: pytest.MonkeyPatch, hooks_app: Litestar, wh: Any) -> dict[str, list[uuid.UUID]]:
    """Record the other domains' hooks (the call listeners) instead of running them: in the webhook app's runtime
    and in every runtime or call the test opens through the composition root."""
    seen: dict[str, list[uuid.UUID]] = {"final": [], "progress": [], "answered": [], "price": []}

    def recorder(kind: str) -> Any:
        async def hook(
            conn: asyncpg.Connection, *, tenant_id: uuid.UUID, call_id: uuid.UUID, call_created_at: Any
        ) -> None:
            assert conn.is_in_transaction()
            seen[kind].append(call_id)

        return hook

    recording = dataclasses.replace(
        composition.call_listeners(),
        on_final=recorder("final"),
        on_progress=recorder("progress"),
        on_answered=recorder("answered"),
        on_provider_price=recorder("price"),
    )
    monkeypatch.setattr(composition, "call_listeners", lambda: recording)
    monkeypatch.setattr(hooks_app.state.runtime, "call_listeners", recording)
    return seen


_pools: list[asyncpg.Pool] = []


@pytest.fixture(scope="module", autouse=True)
async def _pool(pg_dsn: str) -> AsyncIterator[None]:
    pool = await create_pool(pg_dsn, min_size=1, max_size=2)
    _pools[:] = [pool]
    yield
    await pool.close()


async def _new_call(_unused: Any, tenant: Any, provider: str, provider_call_id: str | None) -> CallRef:
    """A call as create_call makes it (in a tenant transaction, as the app role), optionally placed."""
    number = {"id": None, "e164": "+442079400000", "provider": provider}
    async with tenant_tx(_pools[0], tenant.id) as conn:
        ref = await service.create_call(
            conn,
            listeners=composition.call_listeners(),
            tenant_id=tenant.id,
            initiated_by_user_id=None,
            agent_id=None,
            from_number=number,
            to_e164="+14155550123",
            lead_id=None,
            voice_id=None,
            variables={},
        )
        if provider_call_id:
            await repo.record_provider_id(conn, tenant.id, ref.id, ref.created_at, provider, provider_call_id)
    return ref


async def _row(admin_conn: asyncpg.Connection, ref: CallRef) -> dict[str, Any]:
    row = await admin_conn.fetchrow(
        "SELECT * FROM voice_call_logs WHERE id = $1 AND created_at = $2", ref.id, ref.created_at
    )
    assert row is not None
    out = dict(row)
    out["metadata"] = msgspec.json.decode(out["metadata"])
    return out


def _twilio_form(
    settings: Settings, sid: str, status: str | None, seq: int | None, **extra: str
) -> dict[str, str]:
    form = {
        "CallSid": sid,
        "AccountSid": settings.twilio_account_sid or "",
        "From": "+442079400000",
        "To": "+14155550123",
        "Direction": "outbound-api",
        "ApiVersion": "2010-04-01",
        "Timestamp": "Mon, 16 Nov 2026 10:00:00 +0000",
    }
    if status is not None:
        form["CallStatus"] = status
    if seq is not None:
        form["SequenceNumber"] = str(seq)
    form.update(extra)
    return form


async def _twilio(
    wh: Any,
    settings: Settings,
    form: dict[str, str],
    *,
    query: str = "",
    token: str | None = None,
    signature: str | None = None,
) -> Any:
    path = "/v1/telephony/twilio/status" + (f"?{query}" if query else "")
    sig = (
        signature
        if signature is not None
        else twilio_signature(token or settings.twilio_auth_token or "", PUBLIC + path, form)
    )
    headers = {"X-Twilio-Signature": sig} if sig else {}
    return await wh.post(path, data=form, headers=headers)


async def _vonage(
    wh: Any,
    payload: dict[str, Any],
    *,
    secret: str = VONAGE_SECRET,
    iat: float | None = None,
    jti: str | None = None,
    tamper: bool = False,
    path: str = "/v1/telephony/vonage/events",
) -> Any:
    body = _json.encode(payload)
    token = vonage_signed_jwt(secret, body, iat=iat, jti=jti, api_key="key")
    if tamper:
        body = body.replace(b"answered", b"completed")
    return await wh.post(
        path, content=body, headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    )


def _is_403(r: Any) -> None:
    assert r.status_code == 403, r.text
    assert r.headers["content-type"].startswith("application/problem+json")


async def test_twilio_bad_signatures_are_refused_and_change_nothing(
    wh: Any, settings: Settings, tenant: Any, admin_conn: asyncpg.Connection
) -> None:
    sid = "CA" + uuid.uuid4().hex
    ref = await _new_call(admin_conn, tenant, "twilio", sid)
    before = await _row(admin_conn, ref)
    form = _twilio_form(settings, sid, "in-progress", 2)
    _is_403(await _twilio(wh, settings, form, signature=""))  # missing
    _is_403(await _twilio(wh, settings, form, signature="gVQFB32LVIBlKnVDsJUmY5defnk="))  # forged
    _is_403(await _twilio(wh, settings, form, token="not-the-auth-token"))
    # Signed for another URL than the public one (e.g. the internal host behind a proxy).
    sig = twilio_signature(
        settings.twilio_auth_token or "", "http://testserver.local/v1/telephony/twilio/status", form
    )
    _is_403(await _twilio(wh, settings, form, signature=sig))
    # Naming the simulator's account picks the simulator's token: a Twilio-token signature does not pass.
    sim_form = {**form, "AccountSid": settings.simulator_account_sid}
    _is_403(await _twilio(wh, settings, sim_form))
    # A body changed after signing.
    sig = twilio_signature(settings.twilio_auth_token or "", PUBLIC + "/v1/telephony/twilio/status", form)
    _is_403(await _twilio(wh, settings, {**form, "CallStatus": "completed"}, signature=sig))
    assert await _row(admin_conn, ref) == before


async def test_twilio_statuses_out_of_order_and_duplicated(
    wh: Any,
    settings: Settings,
    tenant: Any,
    admin_conn: asyncpg.Connection,
    hook_calls: dict[str, list[uuid.UUID]],
) -> None:
    sid = "CA" + uuid.uuid4().hex
    ref = await _new_call(admin_conn, tenant, "twilio", sid)
    r = await _twilio(wh, settings, _twilio_form(settings, sid, "ringing", 1))
    assert r.status_code == 204, r.text
    assert (await _row(admin_conn, ref))["status"] == "ringing"
    # completed (3) overtakes answered (2): the answer time comes from the duration.
    r = await _twilio(
        wh,
        settings,
        _twilio_form(
            settings, sid, "completed", 3, CallDuration="42", Timestamp="Mon, 16 Nov 2026 10:05:00 +0000"
        ),
    )
    assert r.status_code == 204
    row = await _row(admin_conn, ref)
    assert (row["status"], row["duration_seconds"], row["status_sequence"]) == ("ended", 42, 3)
    assert row["ended_at"].isoformat() == "2026-11-16T10:05:00+00:00"
    assert (row["ended_at"] - row["started_at"]).total_seconds() == 42
    assert row["provider_final_at"] is not None
    assert hook_calls == {"final": [ref.id], "progress": [ref.id], "answered": [], "price": []}
    settled = await _row(admin_conn, ref)
    for late in (
        _twilio_form(settings, sid, "in-progress", 2),
        _twilio_form(settings, sid, "ringing", 1),
        _twilio_form(settings, sid, "completed", 3, CallDuration="43"),
        _twilio_form(settings, sid, "busy", 3),
    ):
        r = await _twilio(wh, settings, late)
        assert r.status_code == 204
    assert await _row(admin_conn, ref) == settled
    assert hook_calls == {"final": [ref.id], "progress": [ref.id], "answered": [], "price": []}


async def test_twilio_busy_amd_and_callback_before_the_provider_id_is_stored(
    wh: Any, settings: Settings, tenant: Any, admin_conn: asyncpg.Connection
) -> None:
    sid = "CA" + uuid.uuid4().hex
    ref = await _new_call(admin_conn, tenant, "twilio", None)  # place_call has not stored the sid yet
    r = await _twilio(wh, settings, _twilio_form(settings, sid, "in-progress", 2), query=f"call_id={ref.id}")
    assert r.status_code == 204
    row = await _row(admin_conn, ref)
    assert (row["status"], row["provider_call_id"]) == ("ongoing", sid) and row["started_at"] is not None
    found = await admin_conn.fetchrow("SELECT * FROM find_call_by_provider_id('twilio', $1)", sid)
    assert found is not None and found["call_id"] == ref.id
    # Async AMD: a callback of its own, no CallStatus, no SequenceNumber.
    r = await _twilio(wh, settings, _twilio_form(settings, sid, None, None, AnsweredBy="machine_start"))
    assert r.status_code == 204
    assert (await _row(admin_conn, ref))["answered_by"] == "machine_start"

    busy_sid = "CA" + uuid.uuid4().hex
    busy = await _new_call(admin_conn, tenant, "twilio", busy_sid)
    r = await _twilio(
        wh, settings, _twilio_form(settings, busy_sid, "busy", 2, CallDuration="0", SipResponseCode="486")
    )
    row = await _row(admin_conn, busy)
    meta = row["metadata"]
    assert (row["status"], meta["end_reason"], meta["sip_response_code"], row["duration_seconds"]) == (
        "declined",
        "busy",
        486,
        0,
    )


async def test_unknown_calls_and_foreign_providers_change_nothing(
    wh: Any, settings: Settings, tenant: Any, admin_conn: asyncpg.Connection
) -> None:
    count = await admin_conn.fetchval("SELECT count(*) FROM voice_call_logs")
    r = await _twilio(wh, settings, _twilio_form(settings, "CA" + uuid.uuid4().hex, "completed", 3))
    assert r.status_code == 204
    r = await _twilio(
        wh,
        settings,
        _twilio_form(settings, "CA" + uuid.uuid4().hex, "completed", 3),
        query=f"call_id={uuid.uuid4()}",
    )
    assert r.status_code == 204
    r = await _twilio(
        wh,
        settings,
        _twilio_form(settings, "CA" + uuid.uuid4().hex, "completed", 3),
        query="call_id=not-a-uuid",
    )
    assert r.status_code == 204
    r = await _vonage(
        wh, {"status": "completed", "uuid": str(uuid.uuid4()), "timestamp": "2026-11-16T10:00:00Z"}
    )
    assert r.status_code == 204
    assert await admin_conn.fetchval("SELECT count(*) FROM voice_call_logs") == count
    # A Twilio-signed status naming a Vonage call (by ?call_id=) is not applied to it.
    ref = await _new_call(admin_conn, tenant, "vonage", str(uuid.uuid4()))
    before = await _row(admin_conn, ref)
    r = await _twilio(
        wh,
        settings,
        _twilio_form(settings, "CA" + uuid.uuid4().hex, "completed", 3),
        query=f"call_id={ref.id}",
    )
    assert r.status_code == 204
    assert await _row(admin_conn, ref) == before


async def test_vonage_signatures_stale_and_replayed(
    wh: Any, tenant: Any, admin_conn: asyncpg.Connection
) -> None:
    call_uuid = str(uuid.uuid4())
    ref = await _new_call(admin_conn, tenant, "vonage", call_uuid)
    before = await _row(admin_conn, ref)
    event = {"status": "answered", "uuid": call_uuid, "timestamp": "2026-11-16T10:00:00Z"}
    r = await wh.post(
        "/v1/telephony/vonage/events",
        content=_json.encode(event),
        headers={"Content-Type": "application/json"},
    )
    _is_403(r)  # missing
    _is_403(await _vonage(wh, event, secret="another-secret-that-is-long-enough-0123"))  # forged
    _is_403(await _vonage(wh, event, iat=time.time() - 3600))  # stale
    _is_403(await _vonage(wh, event, tamper=True))  # body changed after signing: payload_hash
    assert await _row(admin_conn, ref) == before

    jti = str(uuid.uuid4())
    assert (await _vonage(wh, event, jti=jti)).status_code == 204
    answered = await _row(admin_conn, ref)
    assert answered["status"] == "ongoing"
    _is_403(await _vonage(wh, {**event, "status": "completed"}, jti=jti))  # replayed jti
    assert await _row(admin_conn, ref) == answered


async def test_vonage_events_in_any_order(wh: Any, tenant: Any, admin_conn: asyncpg.Connection) -> None:
    call_uuid = str(uuid.uuid4())
    ref = await _new_call(admin_conn, tenant, "vonage", call_uuid)
    assert (await _vonage(wh, {"status": "ringing", "uuid": call_uuid})).status_code == 204
    completed = {
        "status": "completed",
        "uuid": call_uuid,
        "duration": "17",
        "price": "0.00423",
        "rate": "0.0127",
        "start_time": "2026-11-16T10:00:00.000Z",
        "end_time": "2026-11-16T10:00:17.000Z",
        "timestamp": "2026-11-16T10:00:17.100Z",
    }
    assert (await _vonage(wh, completed)).status_code == 204
    row = await _row(admin_conn, ref)
    assert (row["status"], row["duration_seconds"]) == ("ended", 17)
    assert row["metadata"]["provider_price"] == {"amount": "0.00423", "currency": "EUR"}
    settled = await _row(admin_conn, ref)
    for late in (
        {"status": "answered", "uuid": call_uuid},
        {"status": "ringing", "uuid": call_uuid},
        completed,
        {**completed, "status": "failed"},
    ):
        assert (await _vonage(wh, late)).status_code == 204  # each with a fresh jti: duplicates, not replays
    assert await _row(admin_conn, ref) == settled
    # The WebSocket leg's own events (another uuid, same ?call_id=) do not touch the phone call.
    r = await _vonage(
        wh,
        {"status": "failed", "uuid": str(uuid.uuid4())},
        path=f"/v1/telephony/vonage/events?call_id={ref.id}",
    )
    assert r.status_code == 204 and await _row(admin_conn, ref) == settled


async def test_inbound_answer_webhooks(
    wh: Any, settings: Settings, tenant: Any, admin_conn: asyncpg.Connection, client: Any
) -> None:
    agent = (await client.post("/v1/agents", json={"name": "Reception"}, headers=tenant.headers)).json()
    phone = f"+4420794{uuid.uuid4().int % 100000:05d}"
    r = await client.post(
        "/v1/numbers",
        json={"phone_number": phone, "provider": "twilio", "default_agent_id": agent["id"]},
        headers=tenant.headers,
    )
    assert r.status_code == 201, r.text
    number_id = r.json()["id"]
    sid = "CA" + uuid.uuid4().hex
    form = {
        "CallSid": sid,
        "AccountSid": settings.twilio_account_sid or "",
        "From": "+14155550199",
        "To": phone,
        "CallStatus": "ringing",
        "Direction": "inbound",
    }
    url = PUBLIC + "/v1/telephony/twilio/voice"
    r = await wh.post(
        "/v1/telephony/twilio/voice",
        data=form,
        headers={"X-Twilio-Signature": twilio_signature(settings.twilio_auth_token or "", url, form)},
    )
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/xml")
    assert '<Stream url="wss://voice.example.test/v1/telephony/twilio/media">' in r.text
    row = await admin_conn.fetchrow("SELECT * FROM voice_call_logs WHERE provider_call_id = $1", sid)
    assert (row["direction"], row["status"], row["agent_id"], row["to_e164"]) == (
        "inbound",
        "ringing",
        agent["id"],
        phone,
    )
    assert f'<Parameter name="call_id" value="{row["id"]}"/>' in r.text
    token = r.text.split('name="token" value="')[1].split('"')[0]
    stored = await admin_conn.fetchval(
        "SELECT token_hash FROM voice_call_media_tokens WHERE call_id = $1", row["id"]
    )
    assert stored == service.hash_token(token) and token not in str(stored)
    # The call is finalised (billed) even if its end never arrives: the agent's default 900 s + 10 min.
    [timeout_job] = await _jobs(admin_conn, "billing.post_call", row["id"])
    assert timeout_job["dedupe_key"] == f"post_call_timeout:{row['id']}"
    assert (timeout_job["execute_after"] - timeout_job["created"]).total_seconds() == pytest.approx(
        1500, abs=5
    )
    await admin_conn.execute("DELETE FROM pgqueuer WHERE dedupe_key = $1", timeout_job["dedupe_key"])

    # Unsigned: refused, no call created.
    r = await wh.post("/v1/telephony/twilio/voice", data={**form, "CallSid": "CA" + uuid.uuid4().hex})
    _is_403(r)
    # An inactive number: a polite rejection.
    r = await client.patch(f"/v1/numbers/{number_id}", json={"status": "inactive"}, headers=tenant.headers)
    assert r.status_code == 200
    form2 = {**form, "CallSid": "CA" + uuid.uuid4().hex}
    r = await wh.post(
        "/v1/telephony/twilio/voice",
        data=form2,
        headers={"X-Twilio-Signature": twilio_signature(settings.twilio_auth_token or "", url, form2)},
    )
    assert r.status_code == 200 and "<Say>" in r.text and "<Stream" not in r.text
    assert (
        await admin_conn.fetchval(
            "SELECT count(*) FROM voice_call_logs WHERE provider_call_id = $1", form2["CallSid"]
        )
        == 0
    )

    # Vonage answer webhooks are signed too (GET, no body).
    r = await wh.get(
        "/v1/telephony/vonage/answer",
        params={"to": phone[1:], "from": "14155550199", "uuid": str(uuid.uuid4())},
    )
    _is_403(r)


@pytest.fixture
async def drop_call_jobs(admin_conn: asyncpg.Connection) -> AsyncIterator[list[uuid.UUID]]:
    """Call ids whose queued jobs the test leaves behind (dropped afterwards: no worker runs them later)."""
    ids: list[uuid.UUID] = []
    yield ids
    await admin_conn.execute(
        "DELETE FROM pgqueuer WHERE status = 'queued' AND payload IS NOT NULL "
        "AND convert_from(payload, 'UTF8')::jsonb->>'call_id' = ANY ($1::text[])",
        [str(i) for i in ids],
    )


async def _jobs(admin_conn: asyncpg.Connection, entrypoint: str, call_id: uuid.UUID) -> list[asyncpg.Record]:
    rows = await admin_conn.fetch(
        "SELECT dedupe_key, payload, created, execute_after FROM pgqueuer WHERE entrypoint = $1 "
        "AND status = 'queued'",
        entrypoint,
    )
    return [r for r in rows if msgspec.json.decode(r["payload"])["call_id"] == str(call_id)]


async def test_answered_calls_run_the_batch_hook_once(
    wh: Any,
    settings: Settings,
    tenant: Any,
    admin_conn: asyncpg.Connection,
    hook_calls: dict[str, list[uuid.UUID]],
) -> None:
    sid = "CA" + uuid.uuid4().hex
    ref = await _new_call(admin_conn, tenant, "twilio", sid)
    assert (await _twilio(wh, settings, _twilio_form(settings, sid, "ringing", 1))).status_code == 204
    assert hook_calls["answered"] == []
    assert (await _twilio(wh, settings, _twilio_form(settings, sid, "in-progress", 2))).status_code == 204
    assert (await _twilio(wh, settings, _twilio_form(settings, sid, "in-progress", 2))).status_code == 204
    assert hook_calls["answered"] == [ref.id]
    # Vonage's answered event, and a call whose media socket attached first (answered once only).
    call_uuid = str(uuid.uuid4())
    vref = await _new_call(admin_conn, tenant, "vonage", call_uuid)
    assert (await _vonage(wh, {"status": "answered", "uuid": call_uuid})).status_code == 204
    assert hook_calls["answered"] == [ref.id, vref.id]
    mref = await _new_call(admin_conn, tenant, "twilio", "CA" + uuid.uuid4().hex)
    async with open_runtime(settings) as runtime:
        assert await service.media_connected(runtime, mref, stream_id="MZ1") is not None
        assert await service.media_connected(runtime, mref, stream_id="MZ1") is not None
    assert hook_calls["answered"] == [ref.id, vref.id, mref.id]
    assert (await _row(admin_conn, mref))["status"] == "ongoing"


async def test_a_price_after_billing_is_reconciled(
    wh: Any, tenant: Any, admin_conn: asyncpg.Connection, drop_call_jobs: list[uuid.UUID]
) -> None:
    call_uuid = str(uuid.uuid4())
    ref = await _new_call(admin_conn, tenant, "vonage", call_uuid)
    drop_call_jobs.append(ref.id)
    completed = {"status": "completed", "uuid": call_uuid, "duration": "17"}
    assert (await _vonage(wh, completed)).status_code == 204
    assert await _jobs(admin_conn, "billing.reconcile", ref.id) == []
    # A price before billing is left to the post-call job (it prices the call with it).
    assert (await _vonage(wh, {**completed, "price": "0.001"})).status_code == 204
    assert await _jobs(admin_conn, "billing.reconcile", ref.id) == []
    # The call was billed (the post-call job ran); then the provider's price changes.
    await admin_conn.execute(
        "UPDATE voice_call_logs SET cost = 0.0042, currency = 'USD' WHERE id = $1 AND created_at = $2",
        ref.id,
        ref.created_at,
    )
    assert (await _vonage(wh, {**completed, "price": "0.00423"})).status_code == 204
    row = await _row(admin_conn, ref)
    assert row["metadata"]["provider_price"] == {"amount": "0.00423", "currency": "EUR"}
    [job] = await _jobs(admin_conn, "billing.reconcile", ref.id)
    assert job["dedupe_key"] == f"reconcile:{ref.id}"
    # The same price again changes nothing and enqueues nothing new.
    assert (await _vonage(wh, {**completed, "price": "0.00423"})).status_code == 204
    assert len(await _jobs(admin_conn, "billing.reconcile", ref.id)) == 1


async def test_created_calls_are_finalised_even_if_their_end_never_comes(
    tenant: Any, admin_conn: asyncpg.Connection, client: Any, drop_call_jobs: list[uuid.UUID]
) -> None:
    r = await client.post(
        "/v1/agents", json={"name": "Short", "config": {"max_call_seconds": 120}}, headers=tenant.headers
    )
    assert r.status_code == 201, r.text
    agent_id = r.json()["id"]
    number = {"id": None, "e164": "+442079400000", "provider": "twilio"}
    refs = {}
    async with tenant_tx(_pools[0], tenant.id) as conn:
        for agent, wanted in ((agent_id, 120), (None, 900)):
            ref = await service.create_call(
                conn,
                listeners=composition.call_listeners(),
                tenant_id=tenant.id,
                initiated_by_user_id=None,
                agent_id=agent,
                from_number=number,
                to_e164="+14155550123",
                lead_id=None,
                voice_id=None,
                variables={},
            )
            refs[ref.id] = wanted
            drop_call_jobs.append(ref.id)
    for call_id, seconds in refs.items():
        [job] = await _jobs(admin_conn, "billing.post_call", call_id)
        assert job["dedupe_key"] == f"post_call_timeout:{call_id}"
        delay = (job["execute_after"] - job["created"]).total_seconds()
        assert delay == pytest.approx(seconds + 600, abs=5)


# --- Twilio signature settings, carrier retries, unsigned query parameters ---


async def test_twilio_webhooks_signed_with_hmac_sha256_signature_settings(
    wh: Any, settings: Settings, tenant: Any, admin_conn: asyncpg.Connection
) -> None:
    """Accounts under Twilio's webhook signature settings sign with a SharedKey and HMAC-SHA256, and say so in
    X-Twilio-Webhooks-Signature-Settings (the twilio SDK's RequestValidator checks both algorithms)."""
    sid = "CA" + uuid.uuid4().hex
    ref = await _new_call(admin_conn, tenant, "twilio", sid)
    path = "/v1/telephony/twilio/status"
    form = _twilio_form(settings, sid, "in-progress", 2)
    key_id, secret = TWILIO_SHARED_KEY
    sha256 = RequestValidator(secret).compute_signature(PUBLIC + path, form, "HMAC_SHA256")
    settings_header = f"key={key_id},algorithm=HMAC_SHA256"
    r = await wh.post(
        path,
        data=form,
        headers={"X-Twilio-Signature": sha256, "X-Twilio-Webhooks-Signature-Settings": settings_header},
    )
    assert r.status_code == 204, r.text
    assert (await _row(admin_conn, ref))["status"] == "ongoing"
    # The same signature without the settings header, or under another key, is refused.
    done = _twilio_form(settings, sid, "completed", 3, CallDuration="5")
    sha256 = RequestValidator(secret).compute_signature(PUBLIC + path, done, "HMAC_SHA256")
    _is_403(await wh.post(path, data=done, headers={"X-Twilio-Signature": sha256}))
    other = RequestValidator("not-the-shared-secret").compute_signature(PUBLIC + path, done, "HMAC_SHA256")
    _is_403(
        await wh.post(
            path,
            data=done,
            headers={"X-Twilio-Signature": other, "X-Twilio-Webhooks-Signature-Settings": settings_header},
        )
    )
    assert (await _row(admin_conn, ref))["status"] == "ongoing"


def _vonage_delivery(
    payload: dict[str, Any] | None, *, jti: str | None = None
) -> tuple[bytes, dict[str, str]]:
    """One signed Vonage delivery (body, headers); sent again as is, it is the carrier's retry."""
    body = _json.encode(payload) if payload is not None else b""
    token = vonage_signed_jwt(VONAGE_SECRET, body, jti=jti or str(uuid.uuid4()), api_key="key")
    headers = {"Authorization": f"Bearer {token}"}
    if body:
        headers["Content-Type"] = "application/json"
    return body, headers


async def test_vonage_retries_of_the_same_request_are_handled_again(
    wh: Any, tenant: Any, admin_conn: asyncpg.Connection
) -> None:
    call_uuid = str(uuid.uuid4())
    ref = await _new_call(admin_conn, tenant, "vonage", call_uuid)
    jti = str(uuid.uuid4())
    body, headers = _vonage_delivery({"status": "answered", "uuid": call_uuid}, jti=jti)
    assert (await wh.post("/v1/telephony/vonage/events", content=body, headers=headers)).status_code == 204
    answered = await _row(admin_conn, ref)
    assert answered["status"] == "ongoing"
    # Vonage retries with the same token when it got no answer in time (or a 429/5xx): same answer, no change.
    assert (await wh.post("/v1/telephony/vonage/events", content=body, headers=headers)).status_code == 204
    assert await _row(admin_conn, ref) == answered
    # The same token with another body (re-signed with the same jti), or on another path, is a replay.
    other, other_headers = _vonage_delivery({"status": "completed", "uuid": call_uuid}, jti=jti)
    _is_403(await wh.post("/v1/telephony/vonage/events", content=other, headers=other_headers))
    _is_403(await wh.post("/v1/telephony/vonage/answer", content=body, headers=headers))
    _is_403(await wh.post(f"/v1/telephony/vonage/events?call_id={ref.id}", content=body, headers=headers))
    assert await _row(admin_conn, ref) == answered


async def _vonage_number(client: Any, tenant: Any) -> str:
    agent = (await client.post("/v1/agents", json={"name": "Desk"}, headers=tenant.headers)).json()
    phone = f"+4420794{uuid.uuid4().int % 100000:05d}"
    r = await client.post(
        "/v1/numbers",
        json={"phone_number": phone, "provider": "vonage", "default_agent_id": agent["id"]},
        headers=tenant.headers,
    )
    assert r.status_code == 201, r.text
    return phone


async def test_vonage_answer_retry_gets_the_same_call_and_a_replay_elsewhere_is_refused(
    wh: Any, tenant: Any, admin_conn: asyncpg.Connection, client: Any, drop_call_jobs: list[uuid.UUID]
) -> None:
    phone, other_phone = await _vonage_number(client, tenant), await _vonage_number(client, tenant)
    call_uuid = str(uuid.uuid4())
    query = {"to": phone[1:], "from": "14155550199", "uuid": call_uuid}
    _, headers = _vonage_delivery(None)
    first = await wh.get("/v1/telephony/vonage/answer", params=query, headers=headers)
    assert first.status_code == 200, first.text
    retry = await wh.get("/v1/telephony/vonage/answer", params=query, headers=headers)
    assert retry.status_code == 200, retry.text
    [connect] = first.json()
    [again] = retry.json()
    call_id = connect["endpoint"][0]["headers"]["call_id"]
    drop_call_jobs.append(uuid.UUID(call_id))
    assert again["endpoint"][0]["headers"]["call_id"] == call_id  # the same call, answered again
    rows = await admin_conn.fetch(
        "SELECT id, to_e164 FROM voice_call_logs WHERE provider_call_id = $1", call_uuid
    )
    assert [(str(r["id"]), r["to_e164"]) for r in rows] == [(call_id, phone)]
    # The token of that GET, replayed with another (unsigned) `to`, is refused: no call to the other number.
    _is_403(
        await wh.get("/v1/telephony/vonage/answer", params={**query, "to": other_phone[1:]}, headers=headers)
    )
    assert (
        await admin_conn.fetchval("SELECT count(*) FROM voice_call_logs WHERE to_e164 = $1", other_phone) == 0
    )


async def test_vonage_query_parameters_are_not_trusted(
    wh: Any, tenant: Any, admin_conn: asyncpg.Connection, client: Any, drop_call_jobs: list[uuid.UUID]
) -> None:
    """The signed token covers the body, not the URL: ?to= on /answer and ?call_id= on /events name nothing."""
    phone = await _vonage_number(client, tenant)
    # A POST answer whose signed body names no called number is refused, whatever ?to= says.
    body, headers = _vonage_delivery({"from": "14155550199", "uuid": str(uuid.uuid4())})
    r = await wh.post(f"/v1/telephony/vonage/answer?to={phone[1:]}", content=body, headers=headers)
    assert r.status_code == 400 and "called number" in r.text
    assert await admin_conn.fetchval("SELECT count(*) FROM voice_call_logs WHERE to_e164 = $1", phone) == 0
    # The body's `to` is the number called, not the query's.
    call_uuid = str(uuid.uuid4())
    body, headers = _vonage_delivery({"to": phone[1:], "from": "14155550199", "uuid": call_uuid})
    r = await wh.post("/v1/telephony/vonage/answer?to=15550000000", content=body, headers=headers)
    assert r.status_code == 200, r.text
    row = await admin_conn.fetchrow(
        "SELECT id, to_e164 FROM voice_call_logs WHERE provider_call_id = $1", call_uuid
    )
    assert row is not None and row["to_e164"] == phone
    drop_call_jobs.append(row["id"])

    # An event naming, by ?call_id=, a call that has no carrier call id (here: hung up before it was placed) is
    # not bound to it: the event is about the call its signed uuid names, and no call has that one.
    ref = await _new_call(admin_conn, tenant, "vonage", None)
    await admin_conn.execute(
        "UPDATE voice_call_logs SET status = 'cancelled' WHERE id = $1 AND created_at = $2",
        ref.id,
        ref.created_at,
    )
    before = await _row(admin_conn, ref)
    body, headers = _vonage_delivery({"status": "completed", "uuid": str(uuid.uuid4()), "duration": "40"})
    r = await wh.post(f"/v1/telephony/vonage/events?call_id={ref.id}", content=body, headers=headers)
    assert r.status_code == 204
    assert await _row(admin_conn, ref) == before


async def test_vonage_events_of_a_call_still_being_placed(
    settings: Settings, tenant: Any, admin_conn: asyncpg.Connection
) -> None:
    """Vonage can post a call's first events before place_call has stored the uuid its REST answer gave. The
    event waits for it; a call still being placed after the wait gets a 503, and Vonage's retry (same token)
    is applied. (A real server: the test client would run the request to its end before anything else.)"""

    def make(base_url: str) -> Settings:
        return msgspec.structs.replace(
            settings, public_base_url=base_url, vonage_signature_secret=VONAGE_SECRET
        )

    async with running_service(make) as svc, httpx.AsyncClient(base_url=svc.base_url) as http:
        ref = await _new_call(admin_conn, tenant, "vonage", None)
        call_uuid = str(uuid.uuid4())
        path = f"/v1/telephony/vonage/events?call_id={ref.id}"
        body, headers = _vonage_delivery({"status": "ringing", "uuid": call_uuid})

        async def placed_meanwhile() -> None:
            await asyncio.sleep(0.3)
            async with tenant_tx(_pools[0], tenant.id) as conn:
                await repo.record_provider_id(conn, tenant.id, ref.id, ref.created_at, "vonage", call_uuid)

        r, _ = await asyncio.gather(http.post(path, content=body, headers=headers), placed_meanwhile())
        assert r.status_code == 204
        assert (await _row(admin_conn, ref))["status"] == "ringing"

        slow = await _new_call(admin_conn, tenant, "vonage", None)
        slow_uuid = str(uuid.uuid4())
        body, headers = _vonage_delivery({"status": "answered", "uuid": slow_uuid})
        path = f"/v1/telephony/vonage/events?call_id={slow.id}"
        r = await http.post(path, content=body, headers=headers)
        assert r.status_code == 503 and r.headers["content-type"].startswith("application/problem+json")
        assert (await _row(admin_conn, slow))["status"] == "pending"
        async with tenant_tx(_pools[0], tenant.id) as conn:
            await repo.record_provider_id(conn, tenant.id, slow.id, slow.created_at, "vonage", slow_uuid)
        r = await http.post(path, content=body, headers=headers)  # Vonage's retry of the 503
        assert r.status_code == 204
        assert (await _row(admin_conn, slow))["status"] == "ongoing"

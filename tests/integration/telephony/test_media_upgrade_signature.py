"""The Twilio media WebSocket upgrade must carry a valid X-Twilio-Signature (over the wss:// <Stream> URL): a bad
or missing one is refused with HTTP 403 before any message is read; a good one gets to the token check. A media
token opens only its own carrier's socket (and, on Twilio's, only under its own account's signature)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest
from twilio.request_validator import RequestValidator
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from voice_service.calls import repository as repo
from voice_service.calls import service
from voice_service.carriers.urls import media_url
from voice_service.db import tenant_tx
from voice_service.settings import Settings
from voice_service.simulator.harness import RunningService, running_service
from voice_service.simulator.signing import twilio_signature

PATH = "/v1/telephony/twilio/media"
SHARED_KEY = ("KSmedia0123456789", "twilio-webhooks-shared-secret-for-media")
_enc = msgspec.json.Encoder()


@pytest.fixture(scope="module")
async def svc(settings: Settings) -> AsyncIterator[RunningService]:
    async with running_service(
        lambda base: msgspec.structs.replace(
            settings, public_base_url=base, twilio_webhook_shared_keys=":".join(SHARED_KEY)
        )
    ) as running:
        yield running


def _start_frame(call_id: str, token: str) -> str:
    start = {
        "streamSid": "MZ0",
        "callSid": "CA0",
        "accountSid": "AC0",
        "tracks": ["inbound"],
        "customParameters": {"call_id": call_id, "token": token},
        "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
    }
    return _enc.encode({"event": "start", "sequenceNumber": "1", "streamSid": "MZ0", "start": start}).decode()


async def _refused_status(url: str, headers: dict[str, str]) -> int:
    with pytest.raises(InvalidStatus) as caught:
        async with connect(url, additional_headers=headers, open_timeout=5):
            pass
    return caught.value.response.status_code


async def _passes_upgrade_then_token_check_refuses(
    url: str,
    headers: dict[str, str],
    *,
    call_id: str = "0193a0c4-7d1e-7000-8000-000000000001",
    token: str = "not-a-valid-token",
) -> None:
    async with connect(url, additional_headers=headers, open_timeout=5) as ws:
        await ws.send(_enc.encode({"event": "connected", "protocol": "Call", "version": "1.0.0"}).decode())
        await ws.send(_start_frame(call_id, token))
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 10)
    assert ws.close_code == 1008


@pytest.mark.parametrize("account", ["twilio", "simulator"])
async def test_signed_upgrade_is_accepted_and_the_token_still_checked(
    svc: RunningService, account: str
) -> None:
    settings = svc.settings
    token = settings.twilio_auth_token if account == "twilio" else settings.simulator_auth_token
    signed_url = media_url(settings, "twilio")  # the URL the TwiML names, which Twilio signs
    assert signed_url == f"{svc.ws_url}{PATH}"
    signature = twilio_signature(token or "", signed_url)
    await _passes_upgrade_then_token_check_refuses(f"{svc.ws_url}{PATH}", {"X-Twilio-Signature": signature})


async def test_bad_signature_is_refused_with_403(svc: RunningService) -> None:
    url = f"{svc.ws_url}{PATH}"
    wrong_token = twilio_signature("not-the-auth-token", url)
    assert await _refused_status(url, {"X-Twilio-Signature": wrong_token}) == 403
    other_url = twilio_signature(svc.settings.twilio_auth_token or "", "wss://elsewhere.example/v1/x")
    assert await _refused_status(url, {"X-Twilio-Signature": other_url}) == 403
    # A signature over the URL without its query does not cover a request that has one.
    good_for_plain = twilio_signature(svc.settings.twilio_auth_token or "", url)
    assert await _refused_status(f"{url}?extra=1", {"X-Twilio-Signature": good_for_plain}) == 403
    assert await _refused_status(url, {"X-Twilio-Signature": "garbage"}) == 403


async def test_missing_signature_is_refused_with_403(svc: RunningService) -> None:
    assert await _refused_status(f"{svc.ws_url}{PATH}", {}) == 403
    assert await _refused_status(f"{svc.ws_url}{PATH}", {"X-Twilio-Signature": ""}) == 403


async def test_vonage_upgrade_needs_no_signature(svc: RunningService) -> None:
    # Vonage does not sign the upgrade: the socket opens and the one-time token is the check.
    async with connect(f"{svc.ws_url}/v1/telephony/vonage/media", open_timeout=5) as ws:
        await ws.send(
            _enc.encode(
                {
                    "event": "websocket:connected",
                    "content-type": "audio/l16;rate=16000",
                    "call_id": "0193a0c4-7d1e-7000-8000-000000000001",
                    "token": "not-a-valid-token",
                }
            ).decode()
        )
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 10)
    assert ws.close_code == 1008


async def test_upgrade_signed_under_signature_settings_with_hmac_sha256(svc: RunningService) -> None:
    url = media_url(svc.settings, "twilio")
    key_id, secret = SHARED_KEY
    signature = RequestValidator(secret).compute_signature(url, {}, "HMAC_SHA256")
    settings_header = f"key={key_id},algorithm=HMAC_SHA256"
    headers = {"X-Twilio-Signature": signature, "X-Twilio-Webhooks-Signature-Settings": settings_header}
    await _passes_upgrade_then_token_check_refuses(url, headers)
    assert await _refused_status(url, {"X-Twilio-Signature": signature}) == 403  # no settings: SHA-1 expected


async def _call_with_token(svc: RunningService, tenant: Any, provider: str) -> tuple[str, str]:
    """A call of `provider` waiting for its media socket: (call id, one-time media token)."""
    token = service.new_media_token()
    async with tenant_tx(svc.app.state.runtime.pool, tenant.id) as conn:
        ref = await service.create_call(
            conn,
            listeners=svc.app.state.runtime.call_listeners,
            tenant_id=tenant.id,
            initiated_by_user_id=None,
            agent_id=None,
            from_number={"id": None, "e164": "+442079400000", "provider": provider},
            to_e164="+14155550123",
            lead_id=None,
            voice_id=None,
            variables={},
        )
        await repo.store_media_token(
            conn,
            tenant.id,
            ref.id,
            ref.created_at,
            service.hash_token(token),
            datetime.now(UTC) + timedelta(minutes=5),
        )
    return str(ref.id), token


async def _status(admin_conn: Any, call_id: str) -> str:
    return str(
        await admin_conn.fetchval("SELECT status FROM voice_call_logs WHERE id = $1", uuid.UUID(call_id))
    )


async def _twilio_socket_refuses(url: str, account_token: str, call_id: str, token: str) -> None:
    await _passes_upgrade_then_token_check_refuses(
        url, {"X-Twilio-Signature": twilio_signature(account_token, url)}, call_id=call_id, token=token
    )


async def test_a_media_token_opens_only_its_own_carriers_socket(
    svc: RunningService, tenant: Any, admin_conn: Any, drop_jobs: list[str]
) -> None:
    settings = svc.settings
    url = media_url(settings, "twilio")
    # A Vonage call's token on Twilio's socket (a genuine Twilio-signed upgrade): refused, and not spent.
    vonage_call, vonage_token = await _call_with_token(svc, tenant, "vonage")
    drop_jobs.append(vonage_call)
    await _twilio_socket_refuses(url, settings.twilio_auth_token or "", vonage_call, vonage_token)
    assert await _status(admin_conn, vonage_call) == "pending"
    async with connect(media_url(settings, "vonage"), open_timeout=5) as ws:
        await ws.send(
            _enc.encode(
                {
                    "event": "websocket:connected",
                    "content-type": "audio/l16;rate=16000",
                    "call_id": vonage_call,
                    "token": vonage_token,
                }
            ).decode()
        )
        for _ in range(200):
            if await _status(admin_conn, vonage_call) == "ongoing":
                break
            await asyncio.sleep(0.02)
        assert await _status(admin_conn, vonage_call) == "ongoing"  # its own socket took it
    # Twilio and the simulator share the socket: a token opens it only under its own account's signature.
    twilio_call, twilio_token = await _call_with_token(svc, tenant, "twilio")
    drop_jobs.append(twilio_call)
    await _twilio_socket_refuses(url, settings.simulator_auth_token, twilio_call, twilio_token)
    assert await _status(admin_conn, twilio_call) == "pending"
    sim_call, sim_token = await _call_with_token(svc, tenant, "simulator")
    drop_jobs.append(sim_call)
    await _twilio_socket_refuses(url, settings.twilio_auth_token or "", sim_call, sim_token)
    assert await _status(admin_conn, sim_call) == "pending"


@pytest.fixture
async def drop_jobs(admin_conn: Any) -> AsyncIterator[list[str]]:
    """Call ids whose queued jobs (the finalize timeout) the test leaves behind: dropped afterwards."""
    ids: list[str] = []
    yield ids
    await admin_conn.execute(
        "DELETE FROM pgqueuer WHERE status = 'queued' AND payload IS NOT NULL "
        "AND convert_from(payload, 'UTF8')::jsonb->>'call_id' = ANY ($1::text[])",
        ids,
    )

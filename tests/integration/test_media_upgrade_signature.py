"""The Twilio media WebSocket upgrade must carry a valid X-Twilio-Signature (over the wss:// <Stream> URL): a bad
or missing one is refused with HTTP 403 before any message is read; a good one gets to the token check."""

from __future__ import annotations

from collections.abc import AsyncIterator

import msgspec
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from voice_service.settings import Settings
from voice_service.simulator.harness import RunningService, running_service
from voice_service.simulator.signing import twilio_signature
from voice_service.telephony.urls import media_url

PATH = "/v1/telephony/twilio/media"
_enc = msgspec.json.Encoder()


@pytest.fixture(scope="module")
async def svc(settings: Settings) -> AsyncIterator[RunningService]:
    async with running_service(
        lambda base: msgspec.structs.replace(settings, public_base_url=base)
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


async def _passes_upgrade_then_token_check_refuses(url: str, headers: dict[str, str]) -> None:
    async with connect(url, additional_headers=headers, open_timeout=5) as ws:
        await ws.send(_enc.encode({"event": "connected", "protocol": "Call", "version": "1.0.0"}).decode())
        await ws.send(_start_frame("0193a0c4-7d1e-7000-8000-000000000001", "not-a-valid-token"))
        with pytest.raises(ConnectionClosed):
            await ws.recv()
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
            await ws.recv()
    assert ws.close_code == 1008

"""`transfer` on each telephony adapter, mocked at the transport.

Twilio (and the simulator provider, Twilio's wire format): the SDK's async client is aiohttp-based, which respx
cannot see, so the real SDK talks to a small local aiohttp server playing api.twilio.com. Vonage: httpx + respx.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import jwt
import msgspec
import pytest
import respx
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from providers.telephony.base import ProviderError, TelephonyProvider
from providers.telephony.simulator import SimulatorProvider
from providers.telephony.twilio import TwilioProvider
from providers.telephony.vonage import VonageProvider

ACCOUNT = "AC0123456789abcdef0123456789abcdef"
TOKEN = "twilio-auth-token"
CALL_SID = "CA0123456789abcdef0123456789abcdef"
TARGET = "+15557654321"
OWN = "+15550001111"

# --- Twilio: a local api.twilio.com ---


@dataclass
class FakeTwilio:
    base_url: str = ""
    requests: list[tuple[str, str, dict[str, list[str]], str]] = field(default_factory=list)
    responses: list[tuple[int, dict[str, Any]]] = field(default_factory=list)


@pytest.fixture
async def fake_twilio() -> AsyncIterator[FakeTwilio]:
    fake = FakeTwilio()

    async def handle(request: web.Request) -> web.Response:
        form = await request.post()
        fields: dict[str, list[str]] = {}
        for key, value in form.items():
            fields.setdefault(key, []).append(str(value))
        fake.requests.append((request.method, request.path, fields, request.headers.get("Authorization", "")))
        status, body = fake.responses.pop(0)
        return web.json_response(body, status=status)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    fake.base_url = f"http://{host}:{port}"
    try:
        yield fake
    finally:
        await runner.cleanup()


@pytest.fixture(params=["twilio", "simulator"])
async def twilio(request: pytest.FixtureRequest, fake_twilio: FakeTwilio) -> AsyncIterator[TwilioProvider]:
    cls = TwilioProvider if request.param == "twilio" else SimulatorProvider
    provider = cls(ACCOUNT, TOKEN, base_url=fake_twilio.base_url)
    try:
        yield provider
    finally:
        await provider.aclose()


def in_progress() -> dict[str, Any]:
    return {"sid": CALL_SID, "account_sid": ACCOUNT, "status": "in-progress", "to": TARGET, "from": OWN}


async def test_twilio_transfer_updates_the_live_call_with_dial_twiml(twilio, fake_twilio):
    fake_twilio.responses.append((200, in_progress()))
    assert isinstance(twilio, TelephonyProvider)
    await twilio.transfer(CALL_SID, TARGET, caller_id=OWN)
    [(method, path, form, auth)] = fake_twilio.requests
    assert (method, path) == ("POST", f"/2010-04-01/Accounts/{ACCOUNT}/Calls/{CALL_SID}.json")
    assert form == {
        "Twiml": [f'<Response><Dial callerId="{OWN}"><Number>{TARGET}</Number></Dial></Response>']
    }
    assert auth.startswith("Basic ")


async def test_twilio_transfer_without_caller_id_dials_with_the_default(twilio, fake_twilio):
    fake_twilio.responses.append((200, in_progress()))
    await twilio.transfer(CALL_SID, TARGET, caller_id=None)
    assert fake_twilio.requests[0][2] == {
        "Twiml": [f"<Response><Dial><Number>{TARGET}</Number></Dial></Response>"]
    }


@pytest.mark.parametrize(
    ("status", "body", "code", "retryable"),
    [
        # The call has ended: the transfer failed (never success, unlike hangup).
        (
            404,
            {"code": 20404, "message": "The requested resource was not found", "status": 404},
            "rejected",
            False,
        ),
        (
            400,
            {"code": 21220, "message": "Call is not in-progress. Cannot redirect.", "status": 400},
            "rejected",
            False,
        ),
        (
            400,
            {"code": 13224, "message": "Dial: Invalid phone number", "status": 400},
            "invalid_number",
            False,
        ),
        (401, {"code": 20003, "message": "Authenticate", "status": 401}, "auth", False),
        (429, {"code": 20429, "message": "Too Many Requests", "status": 429}, "rate_limited", True),
        (500, {"code": 20500, "message": "Internal Server Error", "status": 500}, "unavailable", True),
    ],
)
async def test_twilio_transfer_errors_are_mapped(twilio, fake_twilio, status, body, code, retryable):
    fake_twilio.responses.append((status, body))
    with pytest.raises(ProviderError) as info:
        await twilio.transfer(CALL_SID, TARGET, caller_id=OWN)
    assert (info.value.code, info.value.status, info.value.retryable) == (code, status, retryable)
    if body["code"] in (20404, 21220):
        assert "not in progress" in info.value.message


async def test_twilio_transfer_unreachable_is_unavailable():
    provider = TwilioProvider(ACCOUNT, TOKEN, base_url="http://127.0.0.1:9")  # discard port: refused
    try:
        with pytest.raises(ProviderError) as info:
            await provider.transfer(CALL_SID, TARGET, caller_id=OWN)
    finally:
        await provider.aclose()
    assert (info.value.code, info.value.retryable) == ("unavailable", True)


# --- Vonage over httpx + respx ---

PRIVATE_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
PRIVATE_PEM = PRIVATE_KEY.private_bytes(
    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
).decode()
APP_ID = "aaaaaaaa-bbbb-cccc-dddd-0123456789ab"
BASE = "https://vonage.test"
CALL_UUID = "63f61863-4a51-4f6b-86e1-46edebcf9356"
URL = f"{BASE}/v1/calls/{CALL_UUID}"


@pytest.fixture
async def vonage() -> AsyncIterator[VonageProvider]:
    async with httpx.AsyncClient() as client:
        yield VonageProvider(APP_ID, PRIVATE_PEM, "signature-secret-0123456789abcdef-xyz", BASE, client)


@respx.mock(assert_all_called=True)
async def test_vonage_transfer_moves_the_call_to_a_connect_ncco(respx_mock, vonage):
    route = respx_mock.put(URL).respond(204)
    assert isinstance(vonage, TelephonyProvider)
    await vonage.transfer(CALL_UUID, TARGET, caller_id=OWN)
    [sent] = route.calls
    assert msgspec.json.decode(sent.request.content) == {
        "action": "transfer",
        "destination": {
            "type": "ncco",
            "ncco": [
                {
                    "action": "connect",
                    "from": "15550001111",
                    "endpoint": [{"type": "phone", "number": "15557654321"}],
                }
            ],
        },
    }
    scheme, _, token = sent.request.headers["authorization"].partition(" ")
    claims = jwt.decode(token, PRIVATE_KEY.public_key(), algorithms=["RS256"])
    assert scheme == "Bearer" and claims["application_id"] == APP_ID and claims["jti"]


@respx.mock(assert_all_called=True)
async def test_vonage_transfer_without_caller_id_has_no_from(respx_mock, vonage):
    route = respx_mock.put(URL).respond(204)
    await vonage.transfer(CALL_UUID, TARGET, caller_id=None)
    [connect] = msgspec.json.decode(route.calls[0].request.content)["destination"]["ncco"]
    assert connect == {"action": "connect", "endpoint": [{"type": "phone", "number": "15557654321"}]}


@pytest.mark.parametrize(
    ("status", "body", "code", "retryable"),
    [
        (
            404,
            {"title": "Not Found", "detail": "Call was not found or has already completed"},
            "rejected",
            False,
        ),
        (400, {"title": "Bad Request", "detail": "The call has already completed"}, "rejected", False),
        (
            400,
            {
                "title": "Bad Request",
                "invalid_parameters": [
                    {"name": "destination.ncco[0].endpoint[0].number", "reason": "invalid"}
                ],
            },
            "invalid_number",
            False,
        ),
        (400, {"title": "Bad Request", "detail": "Invalid action"}, "rejected", False),
        (401, {"title": "Unauthorized"}, "auth", False),
        (429, {"title": "Too Many Requests"}, "rate_limited", True),
        (503, {"title": "Service Unavailable"}, "unavailable", True),
    ],
)
@respx.mock
async def test_vonage_transfer_errors_are_mapped(respx_mock, vonage, status, body, code, retryable):
    respx_mock.put(URL).respond(status, json=body)
    with pytest.raises(ProviderError) as info:
        await vonage.transfer(CALL_UUID, TARGET, caller_id=OWN)
    assert (info.value.code, info.value.status, info.value.retryable) == (code, status, retryable)


@respx.mock
async def test_vonage_transfer_unreachable_is_unavailable(respx_mock, vonage):
    respx_mock.put(URL).mock(side_effect=httpx.ConnectError("refused"))
    with pytest.raises(ProviderError) as info:
        await vonage.transfer(CALL_UUID, TARGET, caller_id=OWN)
    assert (info.value.code, info.value.retryable) == ("unavailable", True)

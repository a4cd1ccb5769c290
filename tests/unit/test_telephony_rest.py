"""place_call / hangup against the providers' REST APIs, mocked at the transport.

Twilio: the SDK's async client is aiohttp-based (respx cannot see it), so the real SDK and its real
aiohttp client talk to a small local aiohttp server that plays api.twilio.com (TWILIO_BASE_URL).
Vonage: httpx, mocked with respx.
"""

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import jwt
import pytest
import respx
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from providers.telephony.base import PlaceCallRequest, ProviderError, TelephonyProvider
from providers.telephony.registry import carrier, names
from providers.telephony.twilio import RebasedTwilioHttpClient, TwilioProvider
from providers.telephony.vonage import VonageProvider

ACCOUNT = "AC0123456789abcdef0123456789abcdef"
TOKEN = "twilio-auth-token"
CALL_SID = "CA0123456789abcdef0123456789abcdef"

REQUEST = PlaceCallRequest(
    call_id="0193a0c4-7d1e-7000-8000-000000000001",
    to="+15551230001",
    from_="+15559870002",
    answer_url="https://svc.example.com/v1/telephony/vonage/answer",
    status_url="https://svc.example.com/v1/telephony/twilio/status?call_id=0193a0c4-7d1e-7000-8000-000000000001",
    media_url="wss://svc.example.com/v1/telephony/twilio/media",
    token="tok_abc",
    timeout_seconds=25,
    time_limit_seconds=600,
)


# --- a local api.twilio.com ---


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    form: dict[str, list[str]]


@dataclass
class FakeTwilio:
    base_url: str = ""
    requests: list[Recorded] = field(default_factory=list)
    responses: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    hold: asyncio.Event | None = None  # when set, requests wait for it before answering


@pytest.fixture
async def fake_twilio() -> AsyncIterator[FakeTwilio]:
    fake = FakeTwilio()

    async def handle(request: web.Request) -> web.Response:
        form = await request.post()
        fields: dict[str, list[str]] = {}
        for key, value in form.items():
            fields.setdefault(key, []).append(str(value))
        fake.requests.append(Recorded(request.method, request.path_qs, dict(request.headers), fields))
        if fake.hold is not None:
            await fake.hold.wait()
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
        if fake.hold is not None:
            fake.hold.set()
        await runner.cleanup()


@pytest.fixture
async def twilio(fake_twilio: FakeTwilio) -> AsyncIterator[TwilioProvider]:
    provider = TwilioProvider(ACCOUNT, TOKEN, base_url=fake_twilio.base_url)
    try:
        yield provider
    finally:
        await provider.aclose()


def call_resource(status: str = "queued") -> dict[str, Any]:
    return {
        "sid": CALL_SID,
        "account_sid": ACCOUNT,
        "status": status,
        "to": REQUEST.to,
        "from": REQUEST.from_,
    }


async def test_twilio_place_call_sends_the_documented_request(twilio, fake_twilio):
    fake_twilio.responses.append((201, call_resource()))
    result = await twilio.place_call(REQUEST)
    assert result.provider_call_id == CALL_SID

    [req] = fake_twilio.requests
    assert req.method == "POST"
    assert req.path == f"/2010-04-01/Accounts/{ACCOUNT}/Calls.json"
    assert req.headers["Authorization"] == "Basic " + base64.b64encode(f"{ACCOUNT}:{TOKEN}".encode()).decode()
    assert req.headers["Content-Type"].startswith("application/x-www-form-urlencoded")
    assert req.form == {
        "To": ["+15551230001"],
        "From": ["+15559870002"],
        "Twiml": [
            '<Response><Connect><Stream url="wss://svc.example.com/v1/telephony/twilio/media">'
            '<Parameter name="call_id" value="0193a0c4-7d1e-7000-8000-000000000001"/>'
            '<Parameter name="token" value="tok_abc"/></Stream></Connect></Response>'
        ],
        "StatusCallback": [REQUEST.status_url],
        "StatusCallbackMethod": ["POST"],
        "StatusCallbackEvent": ["initiated", "ringing", "answered", "completed"],
        "MachineDetection": ["Enable"],
        "AsyncAmd": ["true"],
        "AsyncAmdStatusCallback": [REQUEST.status_url],
        "Timeout": ["25"],
        "TimeLimit": ["600"],
    }


async def test_twilio_place_call_without_amd_or_time_limit(twilio, fake_twilio):
    fake_twilio.responses.append((201, call_resource()))
    req = PlaceCallRequest(**{**_fields(REQUEST), "machine_detection": False, "time_limit_seconds": None})
    await twilio.place_call(req)
    form = fake_twilio.requests[0].form
    assert "MachineDetection" not in form
    assert "AsyncAmd" not in form
    assert "TimeLimit" not in form


@pytest.mark.parametrize(
    ("status", "body", "code", "retryable"),
    [
        (
            400,
            {"code": 21211, "message": "The 'To' number +1555 is not a valid phone number.", "status": 400},
            "invalid_number",
            False,
        ),
        (
            400,
            {"code": 13224, "message": "Dial: Invalid phone number format", "status": 400},
            "invalid_number",
            False,
        ),
        (401, {"code": 20003, "message": "Authenticate", "status": 401}, "auth", False),
        (429, {"code": 20429, "message": "Too Many Requests", "status": 429}, "rate_limited", True),
        (500, {"code": 20500, "message": "Internal Server Error", "status": 500}, "unavailable", True),
        (503, {"message": "Service Unavailable"}, "unavailable", True),
        (
            400,
            {"code": 21210, "message": "'From' phone number not verified", "status": 400},
            "rejected",
            False,
        ),
    ],
)
async def test_twilio_errors_are_mapped(twilio, fake_twilio, status, body, code, retryable):
    fake_twilio.responses.append((status, body))
    with pytest.raises(ProviderError) as info:
        await twilio.place_call(REQUEST)
    assert (info.value.code, info.value.status, info.value.retryable) == (code, status, retryable)


async def test_twilio_unreachable_is_retryable():
    provider = TwilioProvider(ACCOUNT, TOKEN, base_url="http://127.0.0.1:9")  # discard port: refused
    try:
        with pytest.raises(ProviderError) as info:
            await provider.place_call(REQUEST)
    finally:
        await provider.aclose()
    assert (info.value.code, info.value.retryable) == ("unavailable", True)


async def test_twilio_requests_time_out(fake_twilio):
    # The SDK's own async client sends no timeout at all; ours must give up.
    fake_twilio.hold = asyncio.Event()
    fake_twilio.responses.append((201, call_resource()))
    provider = TwilioProvider(
        ACCOUNT, TOKEN, http_client_factory=lambda: RebasedTwilioHttpClient(fake_twilio.base_url, timeout=0.2)
    )
    try:
        with pytest.raises(ProviderError) as info:
            await provider.place_call(REQUEST)
    finally:
        await provider.aclose()
    assert (info.value.code, info.value.retryable) == ("unavailable", True)
    assert len(fake_twilio.requests) == 1


async def test_twilio_hangup_completes_the_call(twilio, fake_twilio):
    fake_twilio.responses.append((200, call_resource("completed")))
    await twilio.hangup(CALL_SID)
    [req] = fake_twilio.requests
    assert (req.method, req.path) == ("POST", f"/2010-04-01/Accounts/{ACCOUNT}/Calls/{CALL_SID}.json")
    assert req.form == {"Status": ["completed"]}


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (404, {"code": 20404, "message": "The requested resource was not found", "status": 404}),
        (400, {"code": 21220, "message": "Call is not in-progress. Cannot redirect.", "status": 400}),
    ],
)
async def test_twilio_hangup_of_an_ended_call_succeeds(twilio, fake_twilio, status, body):
    fake_twilio.responses.append((status, body))
    await twilio.hangup(CALL_SID)
    assert len(fake_twilio.requests) == 1


async def test_twilio_hangup_other_errors_raise(twilio, fake_twilio):
    fake_twilio.responses.append((401, {"code": 20003, "message": "Authenticate", "status": 401}))
    with pytest.raises(ProviderError) as info:
        await twilio.hangup(CALL_SID)
    assert info.value.code == "auth"


# --- Vonage over httpx + respx ---

PRIVATE_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
PRIVATE_PEM = PRIVATE_KEY.private_bytes(
    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
).decode()
PUBLIC_KEY = PRIVATE_KEY.public_key()
APP_ID = "aaaaaaaa-bbbb-cccc-dddd-0123456789ab"
BASE = "https://vonage.test"
CALL_UUID = "63f61863-4a51-4f6b-86e1-46edebcf9356"


@pytest.fixture
async def vonage() -> AsyncIterator[VonageProvider]:
    async with httpx.AsyncClient() as client:
        yield VonageProvider(APP_ID, PRIVATE_PEM, "signature-secret-0123456789abcdef-xyz", BASE, client)


def vonage_request() -> PlaceCallRequest:
    return PlaceCallRequest(
        **{
            **_fields(REQUEST),
            "status_url": "https://svc.example.com/v1/telephony/vonage/events?call_id=0193a0c4",
            "media_url": "wss://svc.example.com/v1/telephony/vonage/media",
        }
    )


def assert_app_jwt(request: httpx.Request) -> None:
    scheme, token = request.headers["authorization"].split(" ", 1)
    assert scheme == "Bearer"
    claims = jwt.decode(token, PUBLIC_KEY, algorithms=["RS256"])
    assert claims["application_id"] == APP_ID
    assert claims["exp"] > claims["iat"]
    assert claims["jti"]


@respx.mock(assert_all_called=True)
async def test_vonage_place_call_sends_the_documented_request(respx_mock, vonage):
    route = respx_mock.post(f"{BASE}/v1/calls").respond(
        201,
        json={"uuid": CALL_UUID, "status": "started", "direction": "outbound", "conversation_uuid": "CON-1"},
    )
    result = await vonage.place_call(vonage_request())
    assert result.provider_call_id == CALL_UUID

    sent = route.calls.last.request
    assert_app_jwt(sent)
    assert sent.headers["content-type"] == "application/json"
    assert json.loads(sent.content) == {
        "to": [{"type": "phone", "number": "15551230001"}],
        "from": {"type": "phone", "number": "15559870002"},
        "ncco": [
            {
                "action": "connect",
                "from": "15559870002",
                "endpoint": [
                    {
                        "type": "websocket",
                        "uri": "wss://svc.example.com/v1/telephony/vonage/media",
                        "content-type": "audio/l16;rate=16000",
                        "headers": {"call_id": "0193a0c4-7d1e-7000-8000-000000000001", "token": "tok_abc"},
                    }
                ],
            }
        ],
        "event_url": ["https://svc.example.com/v1/telephony/vonage/events?call_id=0193a0c4"],
        "event_method": "POST",
        "machine_detection": "continue",
        "ringing_timer": 25,
        "length_timer": 600,
    }


@pytest.mark.parametrize(
    ("status", "body", "code", "retryable"),
    [
        (
            400,
            {
                "type": "https://developer.nexmo.com/api-errors#bad-request",
                "title": "Bad Request",
                "invalid_parameters": [{"name": "to[0].number", "reason": "invalid"}],
            },
            "invalid_number",
            False,
        ),
        (
            400,
            {"title": "Bad Request", "invalid_parameters": [{"name": "from.number", "reason": "not owned"}]},
            "rejected",
            False,
        ),
        (
            401,
            {"type": "https://developer.nexmo.com/api-errors#unauthorized", "title": "Unauthorized"},
            "auth",
            False,
        ),
        (429, {"title": "Too Many Requests"}, "rate_limited", True),
        (500, {"title": "Internal Server Error"}, "unavailable", True),
    ],
)
@respx.mock
async def test_vonage_errors_are_mapped(respx_mock, vonage, status, body, code, retryable):
    respx_mock.post(f"{BASE}/v1/calls").respond(status, json=body)
    with pytest.raises(ProviderError) as info:
        await vonage.place_call(vonage_request())
    assert (info.value.code, info.value.status, info.value.retryable) == (code, status, retryable)


@respx.mock
async def test_vonage_unreachable_is_retryable(respx_mock, vonage):
    respx_mock.post(f"{BASE}/v1/calls").mock(side_effect=httpx.ConnectError("refused"))
    with pytest.raises(ProviderError) as info:
        await vonage.place_call(vonage_request())
    assert (info.value.code, info.value.retryable) == ("unavailable", True)


@respx.mock(assert_all_called=True)
async def test_vonage_hangup(respx_mock, vonage):
    route = respx_mock.put(f"{BASE}/v1/calls/{CALL_UUID}").respond(204)
    await vonage.hangup(CALL_UUID)
    sent = route.calls.last.request
    assert_app_jwt(sent)
    assert json.loads(sent.content) == {"action": "hangup"}


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (404, {"title": "Not Found", "detail": "Call not found"}),
        (400, {"title": "Bad Request", "detail": "Call has already been completed"}),
    ],
)
@respx.mock
async def test_vonage_hangup_of_an_ended_call_succeeds(respx_mock, vonage, status, body):
    respx_mock.put(f"{BASE}/v1/calls/{CALL_UUID}").respond(status, json=body)
    await vonage.hangup(CALL_UUID)


@respx.mock
async def test_vonage_hangup_other_errors_raise(respx_mock, vonage):
    respx_mock.put(f"{BASE}/v1/calls/{CALL_UUID}").respond(503, json={"title": "Service Unavailable"})
    with pytest.raises(ProviderError) as info:
        await vonage.hangup(CALL_UUID)
    assert (info.value.code, info.value.retryable) == ("unavailable", True)


# --- registry ---


async def test_registry_builds_each_provider_from_its_declared_settings():
    assert set(names()) >= {"twilio", "vonage", "simulator"}
    twilio = carrier("twilio").build(
        {
            "twilio_account_sid": ACCOUNT,
            "twilio_auth_token": TOKEN,
            "twilio_base_url": None,
            "twilio_webhook_shared_keys": None,
        }
    )
    vonage = carrier("vonage").build(
        {
            "vonage_application_id": APP_ID,
            "vonage_private_key": PRIVATE_PEM,
            "vonage_signature_secret": "s" * 32,
            "vonage_base_url": None,
        }
    )
    try:
        for provider, name in ((twilio, "twilio"), (vonage, "vonage")):
            assert isinstance(provider, TelephonyProvider)
            assert provider.name == name
    finally:
        await twilio.aclose()
        await vonage.aclose()
    with pytest.raises(ValueError, match="unknown telephony provider"):
        carrier("skype")


def _fields(req: PlaceCallRequest) -> dict[str, Any]:
    return {name: getattr(req, name) for name in req.__struct_fields__}
